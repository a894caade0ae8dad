/*-------------------------------------------------------------------------
 *
 * shopee.c
 *	  The Shopee Open Platform v2 adapter: signed v2.product.update_stock
 *	  requests, one item and up to 50 models per call, token refresh with
 *	  rotation, and the classification of Shopee's answers.
 *
 * Signing (marketplace-apis.md section 1.2): sign = lower-hex
 * HMAC-SHA256(key = partner_key bytes as-is, msg = partner_id + path +
 * timestamp [+ access_token + shop_id]), path being the API path alone.
 * A NULL base_url means Shopee's production host for the shop's region.
 * When base_url carries a path prefix (a test double or a forwarding
 * proxy), the prefix is part of the URL but not of the signed path: Shopee
 * signs the path it serves, and whatever sits in front of it must strip the
 * prefix anyway.  The body is not signed.
 *
 * Shopee ids are int64 and go out as JSON integers, so a listing whose
 * item or model id is not a decimal integer can never be sent: the
 * check_listing hook settles it as PERMANENT before batching, the builder
 * leaves it out of any body and the parser marks it again.  Classification
 * branches on Shopee's "error" field first and on the HTTP status only
 * where the body says nothing, as the documentation advises.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  adapters/shopee.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "adapter.h"
#include "crypto.h"
#include "json.h"

#define SHOPEE_STOCK_PATH		"/api/v2/product/update_stock"
#define SHOPEE_REFRESH_PATH		"/api/v2/auth/access_token/get"
#define SHOPEE_MAX_MODELS		50
#define SHOPEE_REDACTED			"[redacted]"

/*
 * Production hosts (marketplace-apis.md section 1.1): servers near
 * Singapore for every region but Brazil, whose shops are served from the US
 * servers.  Developers in mainland China use https://openplatform.shopee.cn
 * and set their app's base_url to it.
 */
#define SHOPEE_HOST_GLOBAL		"https://partner.shopeemobile.com"
#define SHOPEE_HOST_BRAZIL		"https://openplatform.shopee.com.br"

/* longest access-token lifetime believed, in seconds */
#define SHOPEE_MAX_EXPIRE_IN	(366 * 86400)

/* the "error" of a call whose models are reported one by one */
#define SHOPEE_ALL_FAILED		"error_busi_update_stock_failed"

/* Shopee's transient errors: back off and try again */
static const char *const shopee_transient_errors[] = {
	"error_server",
	"error_system_busy",
	"error_inner",
	"error_network",
	"error_busy",
	NULL
};

/* errors that no retry will cure, whatever the HTTP status */
static const char *const shopee_permanent_errors[] = {
	"error_auth",
	"error_sign",
	"error_param",
	"invalid_partner_id",
	"invalid_access_token",
	"error_item_not_found",
	"error_item_not_belong_shop",
	"error_cannt_edit_stock_in_promotion",
	"error_holiday_mode_change_stock",
	"error_wms_shop_block_upate_stock",
	"error_permission",
	NULL
};

static bool shopee_id_valid(const char *id, bool empty_is_zero, int64 *value);
static bool shopee_check_listing(ListingPush *item);
static bool shopee_same_id(const char *a, const char *b);
static bool shopee_can_batch(const ListingPush *a, const ListingPush *b);
static bool shopee_sendable(const ListingPush *items, int nitems, int i);
static const char *shopee_location(const ShopContext *shop,
								   const ListingPush *item);
static const char *shopee_default_base_url(const ShopContext *shop);
static void shopee_append_base(StringInfo buf, const ShopContext *shop,
							   const char *path);
static void shopee_append_int(StringInfo buf, const char *id);
static void shopee_build_stock_update(const ShopContext *shop,
									  const ListingPush *items, int nitems,
									  int64 now_seconds,
									  HttpRequestSpec *request);
static bool in_list(const char *code, const char *const *list);
static bool contains_ci(const char *haystack, const char *needle);
static const char *error_suffix(const char *error);
static SyncOutcome shopee_classify_error(long status, const char *error,
										 const char *message, bool refresh);
static const JsonValue *shopee_read_envelope(const ShopContext *shop,
											 const HttpResponseView *response,
											 char *request_id,
											 const char **error,
											 const char **message);
static const JsonValue *shopee_find_entry(const JsonValue *list,
										  const ListingPush *item,
										  const char *location);
static void shopee_parse_stock_update(const ShopContext *shop,
									  ListingPush *items, int nitems,
									  const HttpResponseView *response,
									  StockCallResult *result);
static void shopee_build_token_refresh(const ShopContext *shop,
									   int64 now_seconds,
									   HttpRequestSpec *request);
static void shopee_parse_token_refresh(const ShopContext *shop,
									   const HttpResponseView *response,
									   TokenRefreshResult *result);

const ChannelAdapter shopee_adapter = {
	.channel = "shopee",
	.max_batch = SHOPEE_MAX_MODELS,
	.can_batch = shopee_can_batch,
	.check_listing = shopee_check_listing,
	.build_stock_update = shopee_build_stock_update,
	.parse_stock_update = shopee_parse_stock_update,
	.build_token_refresh = shopee_build_token_refresh,
	.parse_token_refresh = shopee_parse_token_refresh
};

/*
 * Is id a Shopee id, i.e. a non-negative int64 written in decimal digits?
 * Model ids may be NULL or "" for items without variants, meaning 0.
 */
static bool
shopee_id_valid(const char *id, bool empty_is_zero, int64 *value)
{
	int64		v;

	if (id == NULL || id[0] == '\0')
	{
		if (!empty_is_zero)
			return false;
		v = 0;
	}
	else if (id[0] == '-' || !json_parse_int64_text(id, &v))
		return false;
	if (value != NULL)
		*value = v;
	return true;
}

/*
 * check_listing: a listing whose ids are not integers can never be sent,
 * because Shopee's body carries them as JSON integers.
 */
static bool
shopee_check_listing(ListingPush *item)
{
	const char *code = NULL;
	const char *message = NULL;

	if (!shopee_id_valid(item->external_item_id, false, NULL))
	{
		code = "invalid_item_id";
		message = "Shopee item_id must be a non-negative decimal integer";
	}
	else if (!shopee_id_valid(item->external_model_id, true, NULL))
	{
		code = "invalid_model_id";
		message = "Shopee model_id must be a non-negative decimal integer";
	}
	if (code == NULL)
		return true;

	item->outcome = SYNC_OUTCOME_PERMANENT;
	strlcpy(item->error_code, code, SYNC_ERROR_CODE_LEN);
	strlcpy(item->error_message, message, SYNC_ERROR_MESSAGE_LEN);
	return false;
}

/*
 * Do two ids name the same Shopee object?  Numerically when both are
 * valid ("007" is 7), NULL and "" both meaning 0; else as strings.
 */
static bool
shopee_same_id(const char *a, const char *b)
{
	int64		va;
	int64		vb;

	if (shopee_id_valid(a, true, &va) && shopee_id_valid(b, true, &vb))
		return va == vb;
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * can_batch: one item per call, and one entry per (model, location), so
 * two listings of the same model travel together only when both name
 * different warehouses.
 */
static bool
shopee_can_batch(const ListingPush *a, const ListingPush *b)
{
	const char *la = a->external_location_id;
	const char *lb = b->external_location_id;

	if (!shopee_same_id(a->external_item_id, b->external_item_id))
		return false;
	if (!shopee_same_id(a->external_model_id, b->external_model_id))
		return true;
	return la != NULL && la[0] != '\0' && lb != NULL && lb[0] != '\0' &&
		strcmp(la, lb) != 0;
}

/*
 * Does items[i] go on the wire?  Its ids must be valid, and it must be of
 * the item of the first valid listing: the engine never batches others,
 * but the builder and the parser must agree on what was sent if it did.
 */
static bool
shopee_sendable(const ListingPush *items, int nitems, int i)
{
	int			first;

	if (!shopee_id_valid(items[i].external_item_id, false, NULL) ||
		!shopee_id_valid(items[i].external_model_id, true, NULL))
		return false;
	for (first = 0; first < i; first++)
	{
		if (shopee_id_valid(items[first].external_item_id, false, NULL) &&
			shopee_id_valid(items[first].external_model_id, true, NULL))
			return shopee_same_id(items[first].external_item_id,
								  items[i].external_item_id);
	}
	return true;
}

/*
 * The location id sent for a listing: only for shops with warehouses, and
 * only when the listing has one (Shopee forbids mixing the two shapes).
 */
static const char *
shopee_location(const ShopContext *shop, const ListingPush *item)
{
	if (shop->uses_locations && item->external_location_id != NULL &&
		item->external_location_id[0] != '\0')
		return item->external_location_id;
	return NULL;
}

/*
 * The host to call when the app sets no base_url: Shopee's production host
 * for the shop's region (SHOPEE_HOST_BRAZIL for region "BR", else
 * SHOPEE_HOST_GLOBAL).  Always https.
 */
static const char *
shopee_default_base_url(const ShopContext *shop)
{
	if (shop->region != NULL && pg_strcasecmp(shop->region, "BR") == 0)
		return SHOPEE_HOST_BRAZIL;
	return SHOPEE_HOST_GLOBAL;
}

/*
 * Append base_url (less any trailing slash), or the production host when
 * the app has none, and the API path.
 */
static void
shopee_append_base(StringInfo buf, const ShopContext *shop, const char *path)
{
	const char *base = shop->base_url ? shop->base_url :
		shopee_default_base_url(shop);
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	appendBinaryStringInfo(buf, base, len);
	appendStringInfoString(buf, path);
}

/*
 * Append an id as a JSON integer when it is one, else as a JSON string
 * (the server then rejects the call with error_param: PERMANENT).  Used
 * for partner_id and shop_id, which are configuration, not listings.
 */
static void
shopee_append_int(StringInfo buf, const char *id)
{
	int64		value;

	if (shopee_id_valid(id, false, &value))
		appendStringInfo(buf, INT64_FORMAT, value);
	else
		json_append_string(buf, id ? id : "");
}

/*
 * build_stock_update: POST {base_url}/api/v2/product/update_stock with the
 * Shop API common parameters in the query and
 * {"item_id":I,"stock_list":[{"model_id":M,"seller_stock":[{"location_id":
 * "L","stock":N}]},...]} as the body, listings of one model grouped into
 * one stock_list entry.  Negative levels are sent as 0: Shopee refuses
 * negative stock and "none left" is what they mean.
 */
static void
shopee_build_stock_update(const ShopContext *shop,
						  const ListingPush *items, int nitems,
						  int64 now_seconds, HttpRequestSpec *request)
{
	StringInfoData base;
	StringInfoData url;
	StringInfoData log_url;
	StringInfoData body;
	char		sign[HMAC_SHA256_HEX_LEN + 1];
	char		timestamp[32];
	bool	   *done;
	bool		first_model = true;
	int64		item_id = 0;
	int			i;
	int			j;

	/* the body */
	done = palloc0(sizeof(bool) * Max(nitems, 1));
	for (i = 0; i < nitems; i++)
	{
		if (shopee_sendable(items, nitems, i))
		{
			shopee_id_valid(items[i].external_item_id, false, &item_id);
			break;
		}
	}
	initStringInfo(&body);
	appendStringInfo(&body, "{\"item_id\":" INT64_FORMAT ",\"stock_list\":[",
					 item_id);
	for (i = 0; i < nitems; i++)
	{
		int64		model_id = 0;
		bool		first_stock = true;

		if (done[i] || !shopee_sendable(items, nitems, i))
			continue;
		shopee_id_valid(items[i].external_model_id, true, &model_id);

		if (!first_model)
			appendStringInfoChar(&body, ',');
		first_model = false;
		appendStringInfo(&body,
						 "{\"model_id\":" INT64_FORMAT ",\"seller_stock\":[",
						 model_id);
		for (j = i; j < nitems; j++)
		{
			const char *location;

			if (done[j] || !shopee_sendable(items, nitems, j) ||
				!shopee_same_id(items[i].external_model_id,
								items[j].external_model_id))
				continue;
			done[j] = true;
			location = shopee_location(shop, &items[j]);

			if (!first_stock)
				appendStringInfoChar(&body, ',');
			first_stock = false;
			appendStringInfoChar(&body, '{');
			if (location != NULL)
			{
				appendStringInfoString(&body, "\"location_id\":");
				json_append_string(&body, location);
				appendStringInfoChar(&body, ',');
			}
			appendStringInfo(&body, "\"stock\":" INT64_FORMAT "}",
							 Max(items[j].level, (int64) 0));
		}
		appendStringInfoString(&body, "]}");
	}
	appendStringInfoString(&body, "]}");
	pfree(done);

	/* the signature over partner_id + path + timestamp + token + shop_id */
	snprintf(timestamp, sizeof(timestamp), INT64_FORMAT, now_seconds);
	initStringInfo(&base);
	appendStringInfo(&base, "%s%s%s%s%s",
					 shop->app_key ? shop->app_key : "",
					 SHOPEE_STOCK_PATH, timestamp,
					 shop->access_token ? shop->access_token : "",
					 shop->external_shop_id ? shop->external_shop_id : "");
	if (!hmac_sha256_hex(shop->app_secret ? shop->app_secret : "",
						 shop->app_secret ? strlen(shop->app_secret) : 0,
						 base.data, base.len, false, sign))
		sign[0] = '\0';			/* Shopee answers error_sign: PERMANENT */
	pfree(base.data);

	/* the URL, and the same URL with the token and the sign redacted */
	initStringInfo(&url);
	shopee_append_base(&url, shop, SHOPEE_STOCK_PATH);
	appendStringInfoString(&url, "?partner_id=");
	url_escape_append(&url, shop->app_key);
	appendStringInfo(&url, "&timestamp=%s&access_token=", timestamp);

	initStringInfo(&log_url);
	appendBinaryStringInfo(&log_url, url.data, url.len);
	appendStringInfoString(&log_url, SHOPEE_REDACTED);

	url_escape_append(&url, shop->access_token);
	appendStringInfoString(&url, "&shop_id=");
	url_escape_append(&url, shop->external_shop_id);
	appendStringInfo(&url, "&sign=%s", sign);

	appendStringInfoString(&log_url, "&shop_id=");
	url_escape_append(&log_url, shop->external_shop_id);
	appendStringInfoString(&log_url, "&sign=" SHOPEE_REDACTED);

	request->method = "POST";
	request->url = url.data;
	request->log_url = log_url.data;
	request->body = body.data;
	request->body_len = body.len;
	request->content_type = "application/json";
}

/*
 * Is code one of the NULL-terminated list?
 */
static bool
in_list(const char *code, const char *const *list)
{
	for (; *list != NULL; list++)
	{
		if (strcmp(code, *list) == 0)
			return true;
	}
	return false;
}

/*
 * Case-insensitive strstr for ASCII needles.
 */
static bool
contains_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);

	if (haystack == NULL)
		return false;
	for (; *haystack != '\0'; haystack++)
	{
		if (pg_strncasecmp(haystack, needle, n) == 0)
			return true;
	}
	return false;
}

/*
 * Shopee prefixes some codes with a module ("product.error_param"): the
 * part after the last dot is what the documentation lists.
 */
static const char *
error_suffix(const char *error)
{
	const char *dot = strrchr(error, '.');

	return dot ? dot + 1 : error;
}

/*
 * Classify a non-empty Shopee "error" for a whole call.  Order matters:
 * throttling and transient failures first (whatever else the message says),
 * then the clock ("Invalid timestamp" comes as error_param but only means
 * our timestamp was stale when it arrived), then for stock calls the
 * access token (refresh and retry once), then known permanent errors.  An
 * error this code does not know is transient with a 5xx status and
 * permanent otherwise: Shopee's unknowns are overwhelmingly business
 * rules, and retrying them forever would hide them.  For token refresh
 * every auth, sign or parameter error is PERMANENT: the refresh token is
 * spent or wrong and the seller must authorise again.
 */
static SyncOutcome
shopee_classify_error(long status, const char *error, const char *message,
					  bool refresh)
{
	const char *code = error_suffix(error);

	if (contains_ci(message, "too many request") ||
		contains_ci(error, "rate_limit"))
		return SYNC_OUTCOME_THROTTLED;
	if (in_list(code, shopee_transient_errors))
		return SYNC_OUTCOME_RETRY;
	if (contains_ci(message, "invalid timestamp"))
		return SYNC_OUTCOME_RETRY;
	if (!refresh &&
		(strcmp(code, "error_auth") == 0 ||
		 strcmp(code, "invalid_access_token") == 0 ||
		 contains_ci(message, "access_token") ||
		 contains_ci(message, "access token")))
		return SYNC_OUTCOME_AUTH;
	if (in_list(code, shopee_permanent_errors) ||
		strncmp(code, "error_item_", 11) == 0)
		return SYNC_OUTCOME_PERMANENT;
	return status >= 500 ? SYNC_OUTCOME_RETRY : SYNC_OUTCOME_PERMANENT;
}

/*
 * Parse Shopee's envelope {"request_id", "error", "message", ...}: the
 * object, or NULL when the body is not a JSON object.  *error is set only
 * when the error string is non-empty.
 */
static const JsonValue *
shopee_read_envelope(const ShopContext *shop, const HttpResponseView *response,
					 char *request_id, const char **error, const char **message)
{
	JsonValue  *root = json_parse(response->body, response->body_len);
	const char *code;

	if (root == NULL || root->kind != JSON_KIND_OBJECT)
		return NULL;
	adapter_copy_message(request_id, SYNC_REQUEST_ID_LEN,
						 json_get_string(root, "request_id"), shop);
	code = json_get_string(root, "error");
	if (code != NULL && code[0] != '\0')
		*error = code;
	*message = json_get_string(root, "message");
	return root;
}

/*
 * The entry of success_list or failure_list about a listing: same model_id
 * (absent means 0) and, when both the entry and the listing as sent name a
 * warehouse, the same location_id.  Shopee echoes a location_id even for
 * shops without warehouses, so an entry's location alone does not decide.
 */
static const JsonValue *
shopee_find_entry(const JsonValue *list, const ListingPush *item,
				  const char *location)
{
	int64		model_id = 0;
	int			i;

	if (list == NULL)
		return NULL;
	shopee_id_valid(item->external_model_id, true, &model_id);
	for (i = 0; i < list->count; i++)
	{
		const JsonValue *entry = list->items[i];
		const char *entry_location;
		int64		entry_model = 0;

		if (entry->kind != JSON_KIND_OBJECT)
			continue;
		if (json_get(entry, "model_id") != NULL &&
			!json_get_int64(entry, "model_id", &entry_model))
			continue;
		if (entry_model != model_id)
			continue;
		entry_location = json_scalar_text(json_get(entry, "location_id"));
		if (location != NULL && entry_location != NULL &&
			entry_location[0] != '\0' && strcmp(location, entry_location) != 0)
			continue;
		return entry;
	}
	return NULL;
}

/*
 * parse_stock_update: see shopee_classify_error for call-level errors.
 * When the call as a whole went through (no error, or
 * error_busi_update_stock_failed which only says "see failure_list"), each
 * listing is decided by the lists: failure_list is PERMANENT with Shopee's
 * failed_reason, success_list is OK, and a listing in neither is retried.
 */
static void
shopee_parse_stock_update(const ShopContext *shop,
						  ListingPush *items, int nitems,
						  const HttpResponseView *response,
						  StockCallResult *result)
{
	const JsonValue *root;
	const char *error = NULL;
	const char *message = NULL;
	const JsonValue *lists;
	const JsonValue *success_list;
	const JsonValue *failure_list;
	char		status_code[32];
	int			i;

	result->outcome = SYNC_OUTCOME_NONE;
	result->request_id[0] = '\0';
	result->error_code[0] = '\0';
	result->error_message[0] = '\0';
	result->retry_after_ms = adapter_retry_after_ms(response->retry_after);
	snprintf(status_code, sizeof(status_code), "http_%ld", response->status);

	/* listings that were never sent */
	for (i = 0; i < nitems; i++)
	{
		if (items[i].outcome != SYNC_OUTCOME_NONE)
			continue;
		if (!shopee_check_listing(&items[i]))
			continue;
		if (!shopee_sendable(items, nitems, i))
		{
			items[i].outcome = SYNC_OUTCOME_RETRY;
			strlcpy(items[i].error_code, "not_sent", SYNC_ERROR_CODE_LEN);
			strlcpy(items[i].error_message,
					"listing of another item was batched with this one",
					SYNC_ERROR_MESSAGE_LEN);
		}
	}

	root = shopee_read_envelope(shop, response, result->request_id,
								&error, &message);

	if (response->status == 429)
	{
		result->outcome = SYNC_OUTCOME_THROTTLED;
		adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN,
							 error ? error : status_code, shop);
		adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
							 message ? message : "HTTP 429 Too Many Requests",
							 shop);
		return;
	}

	if (root == NULL)
	{
		result->outcome = SYNC_OUTCOME_RETRY;
		if (response->status >= 500)
		{
			strlcpy(result->error_code, status_code, SYNC_ERROR_CODE_LEN);
			snprintf(result->error_message, SYNC_ERROR_MESSAGE_LEN,
					 "HTTP %ld", response->status);
		}
		else
		{
			strlcpy(result->error_code, "malformed_response",
					SYNC_ERROR_CODE_LEN);
			snprintf(result->error_message, SYNC_ERROR_MESSAGE_LEN,
					 "HTTP %ld with a body that is not a JSON object",
					 response->status);
		}
		return;
	}

	if (error != NULL && strcmp(error_suffix(error), SHOPEE_ALL_FAILED) != 0)
	{
		result->outcome = shopee_classify_error(response->status, error,
												message, false);
		adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN,
							 error, shop);
		adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
							 message, shop);
		return;
	}

	if (error == NULL && (response->status < 200 || response->status >= 300))
	{
		result->outcome = SYNC_OUTCOME_RETRY;
		strlcpy(result->error_code, status_code, SYNC_ERROR_CODE_LEN);
		snprintf(result->error_message, SYNC_ERROR_MESSAGE_LEN,
				 "HTTP %ld without a Shopee error", response->status);
		return;
	}

	/* the call went through: decide each listing from the two lists */
	lists = json_get_object(root, "response");
	success_list = json_get_array(lists, "success_list");
	failure_list = json_get_array(lists, "failure_list");
	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const char *location = shopee_location(shop, item);
		const JsonValue *entry;

		if (item->outcome != SYNC_OUTCOME_NONE)
			continue;
		if ((entry = shopee_find_entry(failure_list, item, location)) != NULL)
		{
			const char *reason = json_get_string(entry, "failed_reason");

			item->outcome = SYNC_OUTCOME_PERMANENT;
			strlcpy(item->error_code, "update_stock_failed",
					SYNC_ERROR_CODE_LEN);
			adapter_copy_message(item->error_message, SYNC_ERROR_MESSAGE_LEN,
								 reason ? reason : "listed in failure_list",
								 shop);
		}
		else if (shopee_find_entry(success_list, item, location) != NULL)
			item->outcome = SYNC_OUTCOME_OK;
		else
		{
			item->outcome = SYNC_OUTCOME_RETRY;
			strlcpy(item->error_code, "missing_from_response",
					SYNC_ERROR_CODE_LEN);
			strlcpy(item->error_message,
					"model in neither success_list nor failure_list",
					SYNC_ERROR_MESSAGE_LEN);
		}
	}

	if (error == NULL)
		result->outcome = SYNC_OUTCOME_OK;
	else
	{
		result->outcome = SYNC_OUTCOME_PERMANENT;
		adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN,
							 error, shop);
		adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
							 message, shop);
	}
}

/*
 * build_token_refresh: POST {base_url}/api/v2/auth/access_token/get, a
 * Public API (sign over partner_id + path + timestamp), body
 * {"refresh_token":"..","partner_id":P,"shop_id":S}.
 */
static void
shopee_build_token_refresh(const ShopContext *shop, int64 now_seconds,
						   HttpRequestSpec *request)
{
	StringInfoData base;
	StringInfoData url;
	StringInfoData log_url;
	StringInfoData body;
	char		sign[HMAC_SHA256_HEX_LEN + 1];
	char		timestamp[32];

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"refresh_token\":");
	json_append_string(&body, shop->refresh_token ? shop->refresh_token : "");
	appendStringInfoString(&body, ",\"partner_id\":");
	shopee_append_int(&body, shop->app_key);
	appendStringInfoString(&body, ",\"shop_id\":");
	shopee_append_int(&body, shop->external_shop_id);
	appendStringInfoChar(&body, '}');

	snprintf(timestamp, sizeof(timestamp), INT64_FORMAT, now_seconds);
	initStringInfo(&base);
	appendStringInfo(&base, "%s%s%s", shop->app_key ? shop->app_key : "",
					 SHOPEE_REFRESH_PATH, timestamp);
	if (!hmac_sha256_hex(shop->app_secret ? shop->app_secret : "",
						 shop->app_secret ? strlen(shop->app_secret) : 0,
						 base.data, base.len, false, sign))
		sign[0] = '\0';
	pfree(base.data);

	initStringInfo(&url);
	shopee_append_base(&url, shop, SHOPEE_REFRESH_PATH);
	appendStringInfoString(&url, "?partner_id=");
	url_escape_append(&url, shop->app_key);
	appendStringInfo(&url, "&timestamp=%s&sign=", timestamp);

	initStringInfo(&log_url);
	appendBinaryStringInfo(&log_url, url.data, url.len);
	appendStringInfoString(&log_url, SHOPEE_REDACTED);
	appendStringInfoString(&url, sign);

	request->method = "POST";
	request->url = url.data;
	request->log_url = log_url.data;
	request->body = body.data;
	request->body_len = body.len;
	request->content_type = "application/json";
}

/*
 * parse_token_refresh: OK only with a new access_token, a new (rotated)
 * refresh_token and a positive expire_in; the access token's expiry is
 * counted from now, when the answer is read.  Shopee does not say when the
 * refresh token expires (30 days after issue, per its guide), so
 * refresh_expires_at stays 0.  A 2xx answer missing any of the three is
 * RETRY: the old refresh token may or may not be spent, and only a new
 * attempt can tell.
 */
static void
shopee_parse_token_refresh(const ShopContext *shop,
						   const HttpResponseView *response,
						   TokenRefreshResult *result)
{
	const JsonValue *root;
	const char *error = NULL;
	const char *message = NULL;
	const char *access_token;
	const char *refresh_token;
	int64		expire_in = 0;
	char		status_code[32];

	result->outcome = SYNC_OUTCOME_NONE;
	result->access_token = NULL;
	result->refresh_token = NULL;
	result->access_expires_at = 0;
	result->refresh_expires_at = 0;
	result->request_id[0] = '\0';
	result->error_code[0] = '\0';
	result->error_message[0] = '\0';
	snprintf(status_code, sizeof(status_code), "http_%ld", response->status);

	root = shopee_read_envelope(shop, response, result->request_id,
								&error, &message);

	if (response->status == 429)
	{
		result->outcome = SYNC_OUTCOME_THROTTLED;
		adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN,
							 error ? error : status_code, shop);
		adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
							 message ? message : "HTTP 429 Too Many Requests",
							 shop);
		return;
	}
	if (root == NULL)
	{
		result->outcome = SYNC_OUTCOME_RETRY;
		strlcpy(result->error_code,
				response->status >= 500 ? status_code : "malformed_response",
				SYNC_ERROR_CODE_LEN);
		snprintf(result->error_message, SYNC_ERROR_MESSAGE_LEN,
				 "HTTP %ld with a body that is not a JSON object",
				 response->status);
		return;
	}
	if (error != NULL)
	{
		result->outcome = shopee_classify_error(response->status, error,
												message, true);
		adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN,
							 error, shop);
		adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
							 message, shop);
		return;
	}

	access_token = json_get_string(root, "access_token");
	refresh_token = json_get_string(root, "refresh_token");
	if (response->status < 200 || response->status >= 300 ||
		access_token == NULL || access_token[0] == '\0' ||
		refresh_token == NULL || refresh_token[0] == '\0' ||
		!json_get_int64(root, "expire_in", &expire_in) || expire_in <= 0)
	{
		result->outcome = SYNC_OUTCOME_RETRY;
		strlcpy(result->error_code,
				response->status >= 200 && response->status < 300 ?
				"malformed_response" : status_code,
				SYNC_ERROR_CODE_LEN);
		strlcpy(result->error_message,
				"no error, but no access_token, refresh_token and expire_in",
				SYNC_ERROR_MESSAGE_LEN);
		return;
	}

	/* no Shopee token lives a year; a bigger number is noise, not a date */
	if (expire_in > SHOPEE_MAX_EXPIRE_IN)
		expire_in = SHOPEE_MAX_EXPIRE_IN;

	result->outcome = SYNC_OUTCOME_OK;
	result->access_token = pstrdup(access_token);
	result->refresh_token = pstrdup(refresh_token);
	result->access_expires_at = (int64) time(NULL) + expire_in;
}
