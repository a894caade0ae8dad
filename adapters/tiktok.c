/*-------------------------------------------------------------------------
 *
 * tiktok.c
 *	  The TikTok Shop Partner API (202309) adapter: signed Update Inventory
 *	  requests, one product and up to 100 SKUs per call with every warehouse
 *	  of a SKU, Inventory Search, token refresh, and the classification of
 *	  TikTok's answers.  The Tokopedia adapter (tokopedia.c) reuses all of
 *	  it; see tiktok_common.h.
 *
 * Signing (marketplace-apis.md section 2.2): sign = lower-hex
 * HMAC-SHA256(key = app_secret, msg = app_secret + path + every query
 * parameter but sign and access_token as key + value, sorted by key bytes
 * + the exact body bytes + app_secret).  The path is the API path alone:
 * a base URL with a path prefix (a test double, a proxy) puts the prefix in
 * the URL, not in what is signed, as for Shopee.  Values are signed raw and
 * percent-encoded only on the wire.  The access token travels in the
 * x-tts-access-token header, which is never signed.
 *
 * Listings are identified by product_id (in the URL path, so declared an
 * integer: nothing but digits can reach the path), sku_id and, when the SKU
 * has more than one warehouse, warehouse_id.  TikTok wants every warehouse
 * of a SKU in the call (errors 12019028, 12052037, 12052533), so a SKU's
 * listings are siblings, which the engine claims and sends whole.  A
 * warehouse id is sent whenever the listing has one, whatever the shop's
 * uses_locations says: on TikTok the warehouse is part of what a listing
 * is, not a shop option.
 *
 * Level 0 (an open question, marketplace-apis.md section 6): the current
 * documentation gives quantity the range [1, 99999], an older one allowed
 * 0.  invsync sends 0: an absolute "none left" is the only way to stop
 * selling what is gone, and omitting the SKU would leave the old level on
 * sale.  Should TikTok refuse it (12052055, which rejects the whole call),
 * the listings at 0 and their sibling warehouses become dead letters that
 * say TikTok refused quantity 0; the other listings of the call are
 * retried without them.  Negative levels are sent as 0 and levels above
 * 99,999 as 99,999, the most TikTok accepts.
 *
 * Classification (section 2.4): the envelope's code decides, the HTTP
 * status only where there is none (response_json classifies 429 and bodies
 * that are not JSON for every channel).  36009004 covers an unknown app
 * key, a missing sign, a foreign shop cipher and a timestamp outside
 * [now - 5 min, now + 30 s]; a timestamp is a clock skew that the next
 * attempt, signed afresh, may not have, so 36009004 is RETRY when its
 * message names the timestamp and PERMANENT otherwise.
 *
 * Pushes (section 2.7) are signed with the app key and secret, name the
 * shop by its shop id (not its cipher) and carry their own idempotency
 * key, tts_notification_id.  Tokopedia shops' pushes are the same.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  adapters/tiktok.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "adapter.h"
#include "crypto.h"
#include "json.h"
#include "tiktok_common.h"

#define TIKTOK_INVENTORY_PATH_FMT	"/product/202309/products/%s/inventory/update"
#define TIKTOK_SEARCH_PATH			"/product/202309/inventory/search"
#define TIKTOK_REFRESH_PATH			"/api/v2/token/refresh"
#define TIKTOK_ORDERS_PATH			"/order/202309/orders"

/* quantity range of Update Inventory */
#define TIKTOK_MAX_QUANTITY		99999

/* codes of section 2.3 and 2.4 */
#define TT_OK					0
#define TT_TOO_MANY_REQUESTS	36009002
#define TT_INTERNAL_ERROR		36009003
#define TT_INVALID_CREDENTIALS	36009004
#define TT_TIMEOUT				36009007
#define TT_TOKEN_INVALID		101000
#define TT_TOKEN_EXPIRED		105002
#define TT_INVALID_SIGN			106001
#define TT_QUANTITY_LIMITS		12052055

/*
 * Every Unix time after 2001-09-09 has ten digits; an "absolute" expiry
 * below that is a duration sent by mistake, and is read as one.
 */
#define TIKTOK_MIN_ABSOLUTE_TIME	INT64CONST(1000000000)

const ListingAttribute tiktok_attributes[TIKTOK_NATTRIBUTES] = {
	[TIKTOK_PRODUCT_ID] = {"product_id", LISTING_SLOT_ITEM, LISTING_ID_INTEGER, true, NULL},
	[TIKTOK_SKU_ID] = {"sku_id", LISTING_SLOT_VARIANT, LISTING_ID_TEXT, true, NULL},
	[TIKTOK_WAREHOUSE_ID] = {"warehouse_id", LISTING_SLOT_LOCATION, LISTING_ID_TEXT, false, NULL},
};

static void tiktok_parse_push(const ShopContext *shop, ListingPush *items,
							  int nitems, const HttpResponseView *response,
							  CallResult *result);

const ChannelAdapter tiktok_adapter = {
	.channel = "tiktok",
	.attributes = tiktok_attributes,
	.nattributes = TIKTOK_NATTRIBUTES,
	.batch_by = LISTING_ATTRIBUTE(TIKTOK_PRODUCT_ID),
	.siblings_by = LISTING_ATTRIBUTE(TIKTOK_PRODUCT_ID) | LISTING_ATTRIBUTE(TIKTOK_SKU_ID),
	.default_batch = TIKTOK_MAX_BATCH,
	.max_batch = TIKTOK_MAX_BATCH,
	.max_read_batch = TIKTOK_MAX_READ_BATCH,
	.read_by = 0,
	.api_base_url = tiktok_api_base_url,
	.auth_base_url = TIKTOK_AUTH_HOST,
	.build_push = tiktok_build_push,
	.parse_push = tiktok_parse_push,
	.build_read_levels = tiktok_build_read_levels,
	.parse_read_levels = tiktok_parse_read_levels,
	.build_order_fetch = tiktok_build_order_fetch,
	.parse_order_fetch = tiktok_parse_order_fetch,
	.build_refresh = tiktok_build_refresh,
	.parse_refresh = tiktok_parse_refresh,
	.parse_webhook = tiktok_parse_webhook,
	.verify_webhook = tiktok_verify_webhook,
	.webhook_signature_header = "Authorization",
	.order_statuses = tiktok_order_statuses,
	.norder_statuses = TIKTOK_NORDER_STATUSES
};

/*
 * TikTok serves every region from one host.
 */
const char *
tiktok_api_base_url(const char *region)
{
	return TIKTOK_API_HOST;
}

/* an id of a listing, "" when absent */
static const char *
tiktok_id(const ListingPush *item, int attribute)
{
	const char *value = item->ids[attribute];

	return value != NULL ? value : "";
}

/* the listing's warehouse, or NULL when it names none */
static const char *
tiktok_warehouse(const ListingPush *item)
{
	const char *value = item->ids[TIKTOK_WAREHOUSE_ID];

	return value != NULL && value[0] != '\0' ? value : NULL;
}

/* qsort comparator of query parameters by name bytes */
static int
param_name_cmp(const void *a, const void *b)
{
	const HttpParam *pa = *(const HttpParam *const *) a;
	const HttpParam *pb = *(const HttpParam *const *) b;

	return strcmp(pa->name, pb->name);
}

/*
 * Add the common parameters (app_key, timestamp, and shop_cipher for a
 * shop's call) and the access token header, then the sign over path, the
 * query so far and the body, which must already be set.  No key is
 * ever sent twice, so the order of equal keys never matters.
 */
static void
tiktok_sign_request(const ShopContext *shop, HttpRequestSpec *request,
					const char *path, int64 now_ms)
{
	const char *secret = shop->app_secret ? shop->app_secret : "";
	const HttpParam *sorted[HTTP_MAX_PARAMS];
	StringInfoData base;
	char		timestamp[32];
	char		sign[HMAC_SHA256_HEX_LEN + 1];
	int			n = 0;
	int			i;

	snprintf(timestamp, sizeof(timestamp), INT64_FORMAT, now_ms / 1000);
	request_add_query(request, "app_key", shop->app_key, false);
	request_add_query(request, "timestamp", timestamp, false);
	request_add_query(request, "shop_cipher", shop->external_shop_id, false);
	request_add_header(request, "x-tts-access-token", shop->access_token, true);

	for (i = 0; i < request->nquery; i++)
	{
		const HttpParam *param = &request->query[i];

		if (strcmp(param->name, "sign") != 0 &&
			strcmp(param->name, "access_token") != 0)
			sorted[n++] = param;
	}
	qsort(sorted, n, sizeof(HttpParam *), param_name_cmp);

	initStringInfo(&base);
	appendStringInfoString(&base, secret);
	appendStringInfoString(&base, path);
	for (i = 0; i < n; i++)
		appendStringInfo(&base, "%s%s", sorted[i]->name, sorted[i]->value);
	if (request->body != NULL)
		appendBinaryStringInfo(&base, request->body, request->body_len);
	appendStringInfoString(&base, secret);

	if (!hmac_sha256_hex(secret, strlen(secret), base.data, base.len, false, sign))
		sign[0] = '\0';			/* TikTok answers 36009004: PERMANENT */
	pfree(base.data);
	request_add_query(request, "sign", sign, true);
}

/*
 * build_push: POST {base}/product/202309/products/{product_id}/inventory/
 * update with body {"skus":[{"id":"S","inventory":[{"warehouse_id":"W",
 * "quantity":N},...]},...]}, one skus entry per SKU in the order the
 * listings come, one inventory entry per listing of the SKU (without
 * warehouse_id for a listing that names none).  The engine batches one
 * product per call.  Levels are clamped to [0, 99999]; see the file header
 * for 0.
 */
void
tiktok_build_push(const ShopContext *shop, const ListingPush *items,
				  int nitems, int64 now_ms, HttpRequestSpec *request)
{
	StringInfoData body;
	char	   *path;
	bool	   *done;
	bool		first_sku = true;
	int			i;
	int			j;

	done = palloc0(sizeof(bool) * Max(nitems, 1));
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"skus\":[");
	for (i = 0; i < nitems; i++)
	{
		const char *sku = tiktok_id(&items[i], TIKTOK_SKU_ID);
		bool		first_level = true;

		if (done[i])
			continue;
		if (!first_sku)
			appendStringInfoChar(&body, ',');
		first_sku = false;
		appendStringInfoString(&body, "{\"id\":");
		json_append_string(&body, sku);
		appendStringInfoString(&body, ",\"inventory\":[");
		for (j = i; j < nitems; j++)
		{
			const char *warehouse;
			int64		quantity;

			if (done[j] || strcmp(sku, tiktok_id(&items[j], TIKTOK_SKU_ID)) != 0)
				continue;
			done[j] = true;
			warehouse = tiktok_warehouse(&items[j]);
			quantity = Min(Max(items[j].level, (int64) 0),
						   (int64) TIKTOK_MAX_QUANTITY);

			if (!first_level)
				appendStringInfoChar(&body, ',');
			first_level = false;
			appendStringInfoChar(&body, '{');
			if (warehouse != NULL)
			{
				appendStringInfoString(&body, "\"warehouse_id\":");
				json_append_string(&body, warehouse);
				appendStringInfoChar(&body, ',');
			}
			appendStringInfo(&body, "\"quantity\":" INT64_FORMAT "}", quantity);
		}
		appendStringInfoString(&body, "]}");
	}
	appendStringInfoString(&body, "]}");
	pfree(done);

	path = psprintf(TIKTOK_INVENTORY_PATH_FMT,
					nitems > 0 ? tiktok_id(&items[0], TIKTOK_PRODUCT_ID) : "0");
	request_init(request, "POST", shop->api_base_url, path);
	request_set_body(request, body.data, body.len, "application/json");
	tiktok_sign_request(shop, request, path, now_ms);
	pfree(path);
}

/*
 * Classify a TikTok code other than 0, for a whole call or one SKU.
 * Throttling and transient server errors first; then the token (refresh
 * and retry once: 105002 says it expired, 101000 that it is not the
 * shop's current one, which a refresh also cures when another process
 * rotated it); then 36009004, transient only for the clock.  Anything else
 * is a rule no retry will satisfy, unless the HTTP status says the server
 * failed.  For a token refresh every credential error is PERMANENT: the
 * seller must authorise again.
 */
static SyncOutcome
tiktok_classify(long status, int64 code, const char *message, bool refresh)
{
	if (code == TT_TOO_MANY_REQUESTS)
		return SYNC_OUTCOME_THROTTLED;
	if (code == TT_INTERNAL_ERROR || code == TT_TIMEOUT)
		return SYNC_OUTCOME_RETRY;
	if (!refresh && (code == TT_TOKEN_EXPIRED || code == TT_TOKEN_INVALID))
		return SYNC_OUTCOME_AUTH;
	if (code == TT_INVALID_CREDENTIALS && !refresh &&
		adapter_contains_ci(message, "timestamp"))
		return SYNC_OUTCOME_RETRY;
	if (code == TT_INVALID_SIGN || code == TT_INVALID_CREDENTIALS)
		return SYNC_OUTCOME_PERMANENT;
	return status >= 500 ? SYNC_OUTCOME_RETRY : SYNC_OUTCOME_PERMANENT;
}

/*
 * Read TikTok's envelope {"code", "message", "request_id", "data"}.
 * Returns the object when code is 0.  Otherwise result is decided (a
 * transport-level answer, a TikTok code, or no code at all) and NULL is
 * returned, with the code in *code (0 when there was none).
 */
static const JsonValue *
tiktok_read_envelope(const ShopContext *shop, const HttpResponseView *response,
					 CallResult *result, bool refresh, int64 *code)
{
	const JsonValue *root = response_json(shop, response, result);
	const char *message;
	char		code_text[32];

	*code = 0;
	if (root == NULL)
		return NULL;
	adapter_copy_message(result->request_id, SYNC_REQUEST_ID_LEN,
						 json_get_string(root, "request_id"), shop);
	message = json_get_string(root, "message");

	if (!json_get_int64(root, "code", code))
	{
		*code = 0;
		if (result->outcome != SYNC_OUTCOME_THROTTLED)
		{
			char		text[96];

			snprintf(text, sizeof(text),
					 "HTTP %ld with a JSON object that has no TikTok code",
					 response->status);
			adapter_set_result(result, SYNC_OUTCOME_RETRY,
							   "malformed_response", text, shop);
		}
		return NULL;
	}

	snprintf(code_text, sizeof(code_text), INT64_FORMAT, *code);
	if (result->outcome == SYNC_OUTCOME_THROTTLED)
	{
		/* a 429: keep the outcome, name TikTok's code */
		adapter_set_result(result, SYNC_OUTCOME_THROTTLED, code_text,
						   message, shop);
		return NULL;
	}
	if (*code != TT_OK)
	{
		adapter_set_result(result,
						   tiktok_classify(response->status, *code, message,
										   refresh),
						   code_text, message, shop);
		return NULL;
	}
	if (response->status < 200 || response->status >= 300)
	{
		char		text[64];

		snprintf(code_text, sizeof(code_text), "http_%ld", response->status);
		snprintf(text, sizeof(text), "HTTP %ld with code 0", response->status);
		adapter_set_result(result, SYNC_OUTCOME_RETRY, code_text, text, shop);
		return NULL;
	}
	return root;
}

/*
 * A whole call refused with 12052055 (quantity out of limits).  Levels are
 * clamped before they are sent, so the quantity refused is a 0: the
 * listings at 0 are dead letters saying so, with their sibling warehouses
 * (a SKU is sent whole or not at all); the other listings of the call are
 * retried, and go without them next time.  When no listing was at 0 the
 * call's PERMANENT stands for all.
 */
static void
tiktok_quantity_refused(const ShopContext *shop, ListingPush *items,
						int nitems, CallResult *result)
{
	bool		any_zero = false;
	char		message[SYNC_ERROR_MESSAGE_LEN];
	int			i;
	int			j;

	for (i = 0; i < nitems; i++)
		any_zero |= items[i].level <= 0;
	if (!any_zero)
		return;

	snprintf(message, sizeof(message),
			 "TikTok refused quantity 0 (documented range [1, 99999]): %s",
			 result->error_message);
	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		bool		zero_sku = false;

		if (item->outcome != SYNC_OUTCOME_NONE)
			continue;
		for (j = 0; j < nitems && !zero_sku; j++)
			zero_sku = items[j].level <= 0 &&
				strcmp(tiktok_id(&items[j], TIKTOK_SKU_ID),
					   tiktok_id(item, TIKTOK_SKU_ID)) == 0;
		if (item->level <= 0)
			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT,
								result->error_code, message, shop);
		else if (zero_sku)
			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT,
								result->error_code,
								"not applied: another warehouse of this SKU was at quantity 0, which TikTok refused",
								NULL);
		else
			adapter_set_listing(item, SYNC_OUTCOME_RETRY, result->error_code,
								"not applied: TikTok refused quantity 0 for another SKU of the call",
								NULL);
	}
}

/*
 * The data.errors[] entry about a SKU, or NULL.
 */
static const JsonValue *
tiktok_find_error(const JsonValue *errors, const char *sku)
{
	int			i;

	if (errors == NULL)
		return NULL;
	for (i = 0; i < errors->count; i++)
	{
		const JsonValue *detail = json_get_object(errors->items[i], "detail");
		const char *entry_sku = json_scalar_text(json_get(detail, "sku_id"));

		if (entry_sku != NULL && strcmp(entry_sku, sku) == 0)
			return errors->items[i];
	}
	return NULL;
}

/*
 * Settle a listing whose SKU has an entry in data.errors[].  TikTok applies
 * a SKU on every warehouse or on none, so every listing of the SKU fails;
 * extra_errors[] narrows the reason: the listing of a warehouse named
 * there gets that warehouse's code and message, its siblings the SKU's.
 * Transient codes retry the SKU; every other code is PERMANENT.  With
 * platform (the Tokopedia channel), an entry reported for another
 * listing_platform still fails the listing, since both platforms draw on
 * one stock per SKU and warehouse, and its message says which platform.
 */
static void
tiktok_settle_sku_error(const ShopContext *shop, ListingPush *item,
						const JsonValue *entry, const char *platform)
{
	const JsonValue *detail = json_get_object(entry, "detail");
	const JsonValue *extra = json_get_array(detail, "extra_errors");
	const char *warehouse = tiktok_warehouse(item);
	const char *entry_platform = json_get_string(detail, "listing_platform");
	const char *message = json_get_string(entry, "message");
	int64		code = 0;
	char		code_text[32];
	StringInfoData text;
	SyncOutcome outcome;
	bool		narrowed = false;
	int			i;

	json_get_int64(entry, "code", &code);
	for (i = 0; extra != NULL && i < extra->count && warehouse != NULL; i++)
	{
		const char *extra_warehouse = json_scalar_text(json_get(extra->items[i],
																"warehouse_id"));
		int64		extra_code;

		if (extra_warehouse == NULL || strcmp(extra_warehouse, warehouse) != 0)
			continue;
		if (json_get_int64(extra->items[i], "code", &extra_code))
			code = extra_code;
		if (json_get_string(extra->items[i], "message") != NULL)
			message = json_get_string(extra->items[i], "message");
		narrowed = true;
		break;
	}

	initStringInfo(&text);
	if (entry_platform != NULL)
	{
		if (platform != NULL && strcmp(entry_platform, platform) != 0)
			appendStringInfo(&text, "[%s, sharing this SKU's stock with %s] ",
							 entry_platform, platform);
		else
			appendStringInfo(&text, "[%s] ", entry_platform);
	}
	if (!narrowed && extra != NULL && extra->count > 0 && warehouse != NULL)
		appendStringInfoString(&text, "not applied, another warehouse of this SKU failed: ");
	if (code == TT_QUANTITY_LIMITS && item->level <= 0)
		appendStringInfoString(&text, "TikTok refused quantity 0: ");
	appendStringInfoString(&text, message ? message : "listed in data.errors");

	if (code == TT_TOO_MANY_REQUESTS)
		outcome = SYNC_OUTCOME_THROTTLED;
	else if (code == TT_INTERNAL_ERROR || code == TT_TIMEOUT)
		outcome = SYNC_OUTCOME_RETRY;
	else
		outcome = SYNC_OUTCOME_PERMANENT;
	snprintf(code_text, sizeof(code_text), INT64_FORMAT, code);
	adapter_set_listing(item, outcome, code_text, text.data, shop);
	pfree(text.data);
}

/*
 * parse_push with the channel's listing platform (NULL for TikTok Shop):
 * see tiktok_classify for call-level codes.  When the call went through
 * (code 0), a SKU with an entry in data.errors[] fails and every other SKU
 * was applied.
 */
void
tiktok_parse_push_for(const ShopContext *shop, ListingPush *items,
					  int nitems, const HttpResponseView *response,
					  CallResult *result, const char *platform)
{
	const JsonValue *root;
	const JsonValue *errors;
	int64		code;
	int			i;

	root = tiktok_read_envelope(shop, response, result, false, &code);
	if (root == NULL)
	{
		if (code == TT_QUANTITY_LIMITS &&
			result->outcome == SYNC_OUTCOME_PERMANENT)
			tiktok_quantity_refused(shop, items, nitems, result);
		return;
	}

	errors = json_get_array(json_get_object(root, "data"), "errors");
	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const JsonValue *entry;

		if (item->outcome != SYNC_OUTCOME_NONE)
			continue;
		entry = tiktok_find_error(errors, tiktok_id(item, TIKTOK_SKU_ID));
		if (entry != NULL)
			tiktok_settle_sku_error(shop, item, entry, platform);
		else
			item->outcome = SYNC_OUTCOME_OK;
	}
	result->outcome = SYNC_OUTCOME_OK;
}

/* parse_push of the TikTok Shop channel */
static void
tiktok_parse_push(const ShopContext *shop, ListingPush *items, int nitems,
				  const HttpResponseView *response, CallResult *result)
{
	tiktok_parse_push_for(shop, items, nitems, response, result, NULL);
}

/*
 * build_read_levels: POST {base}/product/202309/inventory/search with
 * {"sku_ids":[...]}, each SKU once (at most 600: the engine's read batch),
 * signed like any call.  sku_ids takes precedence over product_ids, and
 * names exactly the SKUs wanted.
 */
void
tiktok_build_read_levels(const ShopContext *shop, const ListingPush *items,
						 int nitems, int64 now_ms, HttpRequestSpec *request)
{
	StringInfoData body;
	int			i;
	int			j;
	bool		first = true;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"sku_ids\":[");
	for (i = 0; i < nitems; i++)
	{
		const char *sku = tiktok_id(&items[i], TIKTOK_SKU_ID);
		bool		seen = false;

		for (j = 0; j < i && !seen; j++)
			seen = strcmp(sku, tiktok_id(&items[j], TIKTOK_SKU_ID)) == 0;
		if (seen)
			continue;
		if (!first)
			appendStringInfoChar(&body, ',');
		first = false;
		json_append_string(&body, sku);
	}
	appendStringInfoString(&body, "]}");

	request_init(request, "POST", shop->api_base_url, TIKTOK_SEARCH_PATH);
	request_set_body(request, body.data, body.len, "application/json");
	tiktok_sign_request(shop, request, TIKTOK_SEARCH_PATH, now_ms);
}

/*
 * The level of a listing in a skus[] entry of Inventory Search: the
 * available_quantity of its warehouse, or total_available_quantity when
 * it names none; -1 when the answer has no such number.
 */
static int64
tiktok_level_of(const JsonValue *sku_entry, const char *warehouse)
{
	const JsonValue *by_warehouse;
	int64		level;
	int			i;

	if (warehouse == NULL)
		return json_get_int64(sku_entry, "total_available_quantity", &level) &&
			level >= 0 ? level : -1;
	by_warehouse = json_get_array(sku_entry, "warehouse_inventory");
	for (i = 0; by_warehouse != NULL && i < by_warehouse->count; i++)
	{
		const char *id = json_scalar_text(json_get(by_warehouse->items[i],
												   "warehouse_id"));

		if (id != NULL && strcmp(id, warehouse) == 0 &&
			json_get_int64(by_warehouse->items[i], "available_quantity", &level) &&
			level >= 0)
			return level;
	}
	return -1;
}

/*
 * parse_read_levels: data.inventory[].skus[], matched by product and SKU
 * id.  A listing the answer does not mention is PERMANENT: TikTok does not
 * know it (Inventory Search leaves unknown ids out).
 */
void
tiktok_parse_read_levels(const ShopContext *shop, ListingPush *items,
						 int nitems, const HttpResponseView *response,
						 CallResult *result)
{
	const JsonValue *root;
	const JsonValue *inventory;
	int64		code;
	int			i;
	int			p;
	int			s;

	root = tiktok_read_envelope(shop, response, result, false, &code);
	if (root == NULL)
		return;
	inventory = json_get_array(json_get_object(root, "data"), "inventory");

	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const char *product = tiktok_id(item, TIKTOK_PRODUCT_ID);
		const char *sku = tiktok_id(item, TIKTOK_SKU_ID);
		const JsonValue *found = NULL;

		item->read_level = -1;
		for (p = 0; inventory != NULL && p < inventory->count && !found; p++)
		{
			const JsonValue *entry = inventory->items[p];
			const char *entry_product = json_scalar_text(json_get(entry, "product_id"));
			const JsonValue *skus = json_get_array(entry, "skus");

			if (entry_product != NULL && strcmp(entry_product, product) != 0)
				continue;
			for (s = 0; skus != NULL && s < skus->count && !found; s++)
			{
				const char *id = json_scalar_text(json_get(skus->items[s], "id"));

				if (id != NULL && strcmp(id, sku) == 0)
					found = skus->items[s];
			}
		}
		if (found != NULL)
			item->read_level = tiktok_level_of(found, tiktok_warehouse(item));
		if (item->read_level >= 0)
			item->outcome = SYNC_OUTCOME_OK;
		else
			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT, "not_found",
								"the answer has no stock for this listing",
								NULL);
	}
	result->outcome = SYNC_OUTCOME_OK;
}


/*
 * build_order_fetch: GET {base}/order/202309/orders?ids=<order> with the
 * common parameters, signed like any GET (ids is one signed value) and the
 * access token in x-tts-access-token (marketplace-apis.md 7.3).
 */
void
tiktok_build_order_fetch(const ShopContext *shop, const char *order_id,
						 int64 now_ms, HttpRequestSpec *request)
{
	request_init(request, "GET", shop->api_base_url, TIKTOK_ORDERS_PATH);
	request_add_query(request, "ids", order_id, false);
	tiktok_sign_request(shop, request, TIKTOK_ORDERS_PATH, now_ms);
}

/* add one unit of a line item, or of each component of a combined listing */
static bool
tiktok_add_line_item(const ShopContext *shop, const JsonValue *line,
					 OrderDetail *out)
{
	const JsonValue *combined = json_get_array(line, "combined_listing_skus");
	const char *ids[LISTING_MAX_ATTRIBUTES] = {NULL};
	int			i;

	if (combined != NULL && combined->count > 0)
	{
		/* a virtual bundle: stock moves on its components */
		for (i = 0; i < combined->count; i++)
		{
			const JsonValue *part = combined->items[i];
			const JsonValue *count = json_get(part, "sku_count");
			int64		qty = 1;

			ids[TIKTOK_PRODUCT_ID] = json_scalar_text(json_get(part, "product_id"));
			ids[TIKTOK_SKU_ID] = json_scalar_text(json_get(part, "sku_id"));
			if (ids[TIKTOK_SKU_ID] == NULL ||
				(count != NULL && (!json_value_int64(count, &qty) || qty < 1)))
				return false;
			adapter_add_order_line(&tiktok_adapter, out, ids, qty);
		}
		return true;
	}
	ids[TIKTOK_PRODUCT_ID] = json_scalar_text(json_get(line, "product_id"));
	ids[TIKTOK_SKU_ID] = json_scalar_text(json_get(line, "sku_id"));
	if (ids[TIKTOK_SKU_ID] == NULL)
		return false;
	/* no quantity field: one line item per unit */
	adapter_add_order_line(&tiktok_adapter, out, ids, 1);
	return true;
}

/*
 * parse_order_fetch: data.orders[] entry whose id is the order: status,
 * update_time and line_items[], counted per (product_id, sku_id); a line
 * item with combined_listing_skus counts its components, sku_count each.
 * An order the answer does not hold, or cannot be read, is PERMANENT.
 */
void
tiktok_parse_order_fetch(const ShopContext *shop, const char *order_id,
						 const HttpResponseView *response, OrderDetail *out)
{
	int64		code;
	const JsonValue *root = tiktok_read_envelope(shop, response, &out->call,
												 false, &code);
	const JsonValue *orders;
	const JsonValue *order = NULL;
	const JsonValue *lines;
	const char *status;
	int			i;

	if (root == NULL)
		return;
	orders = json_get_array(json_get_object(root, "data"), "orders");
	for (i = 0; orders != NULL && i < orders->count && order == NULL; i++)
	{
		const char *id = json_scalar_text(json_get(orders->items[i], "id"));

		if (id != NULL && strcmp(id, order_id) == 0)
			order = orders->items[i];
	}
	if (order == NULL)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "not_found",
						   "the answer does not hold the order", shop);
		return;
	}
	status = json_get_string(order, "status");
	lines = json_get_array(order, "line_items");
	if (status == NULL || status[0] == '\0' ||
		!json_get_int64(order, "update_time", &out->update_time) ||
		out->update_time <= 0 || lines == NULL)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
						   "the order lacks status, update_time or line_items", shop);
		return;
	}
	for (i = 0; i < lines->count; i++)
	{
		if (!tiktok_add_line_item(shop, lines->items[i], out))
		{
			adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
							   "a line item of the order lacks sku_id or a valid sku_count", shop);
			return;
		}
		if (out->call.outcome != SYNC_OUTCOME_NONE)
			return;
	}
	if (out->nlines == 0)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "no_lines",
						   "the order has no line items", shop);
		return;
	}
	out->status = pstrdup(status);
	out->call.outcome = SYNC_OUTCOME_OK;
}

/*
 * build_refresh: GET {auth}/api/v2/token/refresh?app_key=&app_secret=
 * &refresh_token=&grant_type=refresh_token.  Not signed: the app secret
 * itself is in the query, marked secret like the refresh token.
 */
void
tiktok_build_refresh(const ShopContext *shop, int64 now_ms,
					 HttpRequestSpec *request)
{
	request_init(request, "GET", shop->auth_base_url, TIKTOK_REFRESH_PATH);
	request_add_query(request, "app_key", shop->app_key, false);
	request_add_query(request, "app_secret", shop->app_secret, true);
	request_add_query(request, "refresh_token", shop->refresh_token, true);
	request_add_query(request, "grant_type", "refresh_token", false);
}

/*
 * An expiry of the refresh answer as a Unix time: TikTok sends absolute
 * times (section 2.5); a number too small to be one is read as seconds
 * from now rather than as a date in 1970, which would expire the token at
 * once and refresh in a loop.
 */
static int64
tiktok_expiry(int64 value)
{
	if (value <= 0)
		return 0;
	if (value < TIKTOK_MIN_ABSOLUTE_TIME)
		return (int64) time(NULL) + value;
	return value;
}

/*
 * parse_refresh: OK with data.access_token and a positive
 * access_token_expire_in (an absolute Unix time).  The refresh token kept
 * is the one returned, or the one just used when none is: TikTok does not
 * say whether it rotates, and keeping what it returns is right either way.
 * An answer without the access token is RETRY: only a new attempt can
 * tell whether the refresh token was spent.
 */
void
tiktok_parse_refresh(const ShopContext *shop, const HttpResponseView *response,
					 TokenRefreshResult *result)
{
	const JsonValue *root;
	const JsonValue *data;
	const char *access_token;
	const char *refresh_token;
	int64		access_expire = 0;
	int64		refresh_expire = 0;
	int64		code;

	result->access_token = NULL;
	result->refresh_token = NULL;
	result->access_expires_at = 0;
	result->refresh_expires_at = 0;

	root = tiktok_read_envelope(shop, response, &result->call, true, &code);
	if (root == NULL)
		return;

	data = json_get_object(root, "data");
	access_token = json_get_string(data, "access_token");
	refresh_token = json_get_string(data, "refresh_token");
	if (refresh_token == NULL || refresh_token[0] == '\0')
		refresh_token = shop->refresh_token;
	json_get_int64(data, "access_token_expire_in", &access_expire);
	json_get_int64(data, "refresh_token_expire_in", &refresh_expire);
	if (access_token == NULL || access_token[0] == '\0' ||
		refresh_token == NULL || refresh_token[0] == '\0' ||
		access_expire <= 0)
	{
		adapter_set_result(&result->call, SYNC_OUTCOME_RETRY,
						   "malformed_response",
						   "code 0, but no access_token, refresh_token and access_token_expire_in",
						   NULL);
		return;
	}

	result->call.outcome = SYNC_OUTCOME_OK;
	result->access_token = pstrdup(access_token);
	result->refresh_token = pstrdup(refresh_token);
	result->access_expires_at = tiktok_expiry(access_expire);
	result->refresh_expires_at = tiktok_expiry(refresh_expire);
}

/* ----------------------------------------------------------------
 * Pushes and order statuses (shared with tokopedia.c)
 * ----------------------------------------------------------------
 */

/* push types invsync acts on (marketplace-apis.md sections 2.7, 7.4) */
#define TIKTOK_PUSH_ORDER_STATUS		1
#define TIKTOK_PUSH_INVENTORY_STATUS	27

/*
 * Order statuses and their effect (marketplace-apis.md section 7.7), in
 * the API's spelling and, for a cancellation, the push's (CANCEL); ranks
 * follow an order's life, for two changes within one second.  A
 * cancellation after IN_TRANSIT releases nothing: release applies only to
 * orders not fulfilled.  Returns are pushes of type 12, not statuses.
 */
const OrderStatus tiktok_order_statuses[] = {
	{"UNPAID", ORDER_EFFECT_RESERVE, 10},
	{"ON_HOLD", ORDER_EFFECT_RESERVE, 15},
	{"AWAITING_SHIPMENT", ORDER_EFFECT_RESERVE, 20},
	{"PARTIALLY_SHIPPING", ORDER_EFFECT_RESERVE, 30},
	{"AWAITING_COLLECTION", ORDER_EFFECT_RESERVE, 40},
	{"IN_TRANSIT", ORDER_EFFECT_FULFILL, 50},
	{"DELIVERED", ORDER_EFFECT_FULFILL, 60},
	{"COMPLETED", ORDER_EFFECT_FULFILL, 80},
	{"CANCELLED", ORDER_EFFECT_RELEASE, 90},
	{"CANCEL", ORDER_EFFECT_RELEASE, 90},
};

StaticAssertDecl(lengthof(tiktok_order_statuses) == TIKTOK_NORDER_STATUSES,
				 "TIKTOK_NORDER_STATUSES must count tiktok_order_statuses");

/*
 * parse_webhook: {"type":T,"tts_notification_id":N,"shop_id":S,
 * "timestamp":...,"data":{...}} (marketplace-apis.md sections 2.7, 7.4).
 * The shop is named by its shop id (shops.push_shop_id), not its cipher.
 * A push's key is its tts_notification_id; a type 1 push without one (older
 * senders) is keyed by (shop_id, type, order_id, order_status,
 * update_time), section 7.8, and any other push without one by the body's
 * hash (event_key NULL).
 *
 * Type 1 (ORDER_STATUS_CHANGE) is an order status; type 27 (inventory
 * status change) is a stock signal about the product and SKU it names.
 * Every other type is read and ignored.  A push with no shop_id is an
 * app-level one.
 */
bool
tiktok_parse_webhook(const WebhookRequest *request, WebhookEvent *event,
					 const char **why)
{
	JsonValue  *root = json_parse(request->body, request->body_len);
	const JsonValue *data;
	const char *shop_id;
	const char *notification;
	int64		type;
	char		type_text[32];

	memset(event, 0, sizeof(WebhookEvent));
	if (root == NULL || root->kind != JSON_KIND_OBJECT)
	{
		*why = "the body is not a JSON object";
		return false;
	}
	if (!json_get_int64(root, "type", &type))
	{
		*why = "the push has no integer \"type\"";
		return false;
	}
	snprintf(type_text, sizeof(type_text), INT64_FORMAT, type);
	event->event_type = psprintf("type_%s", type_text);
	shop_id = json_scalar_text(json_get(root, "shop_id"));
	if (shop_id != NULL && shop_id[0] != '\0')
		event->shop_key = pstrdup(shop_id);
	else
		shop_id = NULL;
	notification = json_scalar_text(json_get(root, "tts_notification_id"));
	if (notification != NULL && notification[0] != '\0')
		event->event_key = pstrdup(notification);
	data = json_get_object(root, "data");

	if (type == TIKTOK_PUSH_ORDER_STATUS)
	{
		const char *order = json_scalar_text(json_get(data, "order_id"));
		const char *status = json_get_string(data, "order_status");

		if (shop_id == NULL || order == NULL || order[0] == '\0' ||
			status == NULL || status[0] == '\0' ||
			!json_get_int64(data, "update_time", &event->update_time))
		{
			*why = "an order push needs shop_id, data.order_id, data.order_status and data.update_time";
			return false;
		}
		event->kind = WEBHOOK_ORDER;
		event->event_type = pstrdup("order_status_change");
		event->order_id = pstrdup(order);
		event->status = pstrdup(status);
		if (event->event_key == NULL)
			event->event_key = psprintf("%s:%s:%s:%s:" INT64_FORMAT, shop_id,
										type_text, order, status,
										event->update_time);
	}
	else if (type == TIKTOK_PUSH_INVENTORY_STATUS && shop_id != NULL &&
			 json_scalar_text(json_get(data, "sku_id")) != NULL)
	{
		const char *product = json_scalar_text(json_get(data, "product_id"));

		event->kind = WEBHOOK_STOCK;
		event->event_type = pstrdup("inventory_status_change");
		event->ids[TIKTOK_SKU_ID] = pstrdup(json_scalar_text(json_get(data, "sku_id")));
		if (product != NULL)
			event->ids[TIKTOK_PRODUCT_ID] = pstrdup(product);
	}
	else
		event->kind = WEBHOOK_IGNORED;
	return true;
}

/*
 * verify_webhook: Authorization = lower-hex HMAC-SHA256(app secret,
 * app key + raw body) (marketplace-apis.md section 2.7).  No URL and no
 * timestamp are signed.
 */
bool
tiktok_verify_webhook(const char *app_key, const char *secret,
					  const WebhookRequest *request)
{
	StringInfoData message;
	char		expected[HMAC_SHA256_HEX_LEN + 1];
	bool		ok;

	if (app_key == NULL || secret == NULL)
		return false;
	initStringInfo(&message);
	appendStringInfoString(&message, app_key);
	appendBinaryStringInfo(&message, request->body, request->body_len);
	ok = hmac_sha256_hex(secret, strlen(secret), message.data, message.len,
						 false, expected) &&
		adapter_signature_matches(expected, request->signature);
	pfree(message.data);
	return ok;
}
