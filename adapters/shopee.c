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
 * Shopee ids are int64 and go out as JSON integers: the listing attributes
 * item_id and model_id are declared integers, so invsync stores them
 * canonical and the engine never hands this adapter anything else.  A
 * listing without variants has model_id 0.  Classification branches on
 * Shopee's "error" field first and on the HTTP status only where the body
 * says nothing, as the documentation advises; transport-level answers (429,
 * a body that is not JSON) are classified by response_json for every
 * channel.
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
#define SHOPEE_MODEL_LIST_PATH	"/api/v2/product/get_model_list"
#define SHOPEE_ITEM_INFO_PATH	"/api/v2/product/get_item_base_info"
#define SHOPEE_ORDER_DETAIL_PATH	"/api/v2/order/get_order_detail"
#define SHOPEE_MAX_MODELS		50

/* the listing attributes, by index */
#define SHOPEE_ITEM_ID			0
#define SHOPEE_MODEL_ID			1
#define SHOPEE_LOCATION_ID		2

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

static const char *shopee_api_base_url(const char *region);
static const char *shopee_location(const ShopContext *shop,
								   const ListingPush *item);
static void shopee_sign_request(const ShopContext *shop,
								HttpRequestSpec *request, const char *path,
								int64 now_ms, bool shop_api);
static void shopee_append_int(StringInfo buf, const char *id);
static void shopee_build_push(const ShopContext *shop,
							  const ListingPush *items, int nitems,
							  int64 now_ms, HttpRequestSpec *request);
static bool in_list(const char *code, const char *const *list);
static const char *error_suffix(const char *error);
static SyncOutcome shopee_classify_error(long status, const char *error,
										 const char *message, bool refresh);
static const JsonValue *shopee_read_envelope(const ShopContext *shop,
											 const HttpResponseView *response,
											 CallResult *result,
											 bool refresh);
static const JsonValue *shopee_find_entry(const JsonValue *list,
										  const ListingPush *item,
										  const char *location);
static void shopee_parse_push(const ShopContext *shop,
							  ListingPush *items, int nitems,
							  const HttpResponseView *response,
							  CallResult *result);
static void shopee_build_read_levels(const ShopContext *shop,
									 const ListingPush *items, int nitems,
									 int64 now_ms, HttpRequestSpec *request);
static void shopee_parse_read_levels(const ShopContext *shop,
									 ListingPush *items, int nitems,
									 const HttpResponseView *response,
									 CallResult *result);
static void shopee_build_order_fetch(const ShopContext *shop,
									 const char *order_id, int64 now_ms,
									 HttpRequestSpec *request);
static void shopee_parse_order_fetch(const ShopContext *shop,
									 const char *order_id,
									 const HttpResponseView *response,
									 OrderDetail *out);
static void shopee_build_refresh(const ShopContext *shop, int64 now_ms,
								 HttpRequestSpec *request);
static void shopee_parse_refresh(const ShopContext *shop,
								 const HttpResponseView *response,
								 TokenRefreshResult *result);
static bool shopee_parse_webhook(const WebhookRequest *request,
								 WebhookEvent *event, const char **why);
static bool shopee_verify_webhook(const char *app_key, const char *secret,
								  const WebhookRequest *request);

/* push codes invsync acts on (marketplace-apis.md section 1.6) */
#define SHOPEE_PUSH_ORDER_STATUS	3
#define SHOPEE_PUSH_RESERVED_STOCK	8

/*
 * Order statuses and their effect (marketplace-apis.md section 7.7);
 * ranks follow an order's life, for two changes within one second.
 * CANCELLED after SHIPPED (a parcel lost) releases nothing: the order was
 * fulfilled, and release applies only to orders that were not.
 */
static const OrderStatus shopee_order_statuses[] = {
	{"UNPAID", ORDER_EFFECT_RESERVE, 10},
	{"PENDING", ORDER_EFFECT_RESERVE, 15},
	{"INVOICE_PENDING", ORDER_EFFECT_RESERVE, 18},
	{"READY_TO_SHIP", ORDER_EFFECT_RESERVE, 20},
	{"PROCESSED", ORDER_EFFECT_RESERVE, 30},
	{"RETRY_SHIP", ORDER_EFFECT_RESERVE, 35},
	{"IN_CANCEL", ORDER_EFFECT_RESERVE, 40},
	{"CANCELLED", ORDER_EFFECT_RELEASE, 90},
	{"SHIPPED", ORDER_EFFECT_FULFILL, 50},
	{"TO_CONFIRM_RECEIVE", ORDER_EFFECT_FULFILL, 60},
	{"COMPLETED", ORDER_EFFECT_FULFILL, 80},
	{"TO_RETURN", ORDER_EFFECT_NONE, 70},
};

static const ListingAttribute shopee_attributes[] = {
	[SHOPEE_ITEM_ID] = {"item_id", LISTING_SLOT_ITEM, LISTING_ID_INTEGER, true, NULL},
	[SHOPEE_MODEL_ID] = {"model_id", LISTING_SLOT_VARIANT, LISTING_ID_INTEGER, true, "0"},
	[SHOPEE_LOCATION_ID] = {"location_id", LISTING_SLOT_LOCATION, LISTING_ID_TEXT, false, NULL},
};

const ChannelAdapter shopee_adapter = {
	.channel = "shopee",
	.attributes = shopee_attributes,
	.nattributes = lengthof(shopee_attributes),
	.batch_by = LISTING_ATTRIBUTE(SHOPEE_ITEM_ID),
	.siblings_by = 0,
	.default_batch = SHOPEE_MAX_MODELS,
	.max_batch = SHOPEE_MAX_MODELS,
	.max_read_batch = SHOPEE_MAX_MODELS,
	.read_by = LISTING_ATTRIBUTE(SHOPEE_ITEM_ID),
	.api_base_url = shopee_api_base_url,
	.auth_base_url = NULL,
	.build_push = shopee_build_push,
	.parse_push = shopee_parse_push,
	.build_read_levels = shopee_build_read_levels,
	.parse_read_levels = shopee_parse_read_levels,
	.build_order_fetch = shopee_build_order_fetch,
	.parse_order_fetch = shopee_parse_order_fetch,
	.build_refresh = shopee_build_refresh,
	.parse_refresh = shopee_parse_refresh,
	.parse_webhook = shopee_parse_webhook,
	.verify_webhook = shopee_verify_webhook,
	.webhook_signature_header = "Authorization",
	.order_statuses = shopee_order_statuses,
	.norder_statuses = lengthof(shopee_order_statuses)
};

/*
 * Shopee's production host for a region: SHOPEE_HOST_BRAZIL for "BR",
 * else SHOPEE_HOST_GLOBAL.  Token calls go to the same host.
 */
static const char *
shopee_api_base_url(const char *region)
{
	if (region != NULL && pg_strcasecmp(region, "BR") == 0)
		return SHOPEE_HOST_BRAZIL;
	return SHOPEE_HOST_GLOBAL;
}

/*
 * The location id sent for a listing: only for shops with warehouses, and
 * only when the listing has one (Shopee forbids mixing the two shapes).
 */
static const char *
shopee_location(const ShopContext *shop, const ListingPush *item)
{
	const char *location = item->ids[SHOPEE_LOCATION_ID];

	if (shop->uses_locations && location != NULL && location[0] != '\0')
		return location;
	return NULL;
}

/*
 * Add the common parameters and the sign: partner_id, timestamp and, for
 * a Shop API call, access_token and shop_id.  The sign is lower-hex
 * HMAC-SHA256(partner_key, partner_id + path + timestamp [+ access_token +
 * shop_id]) over the API path alone, whatever prefix the base URL has.
 */
static void
shopee_sign_request(const ShopContext *shop, HttpRequestSpec *request,
					const char *path, int64 now_ms, bool shop_api)
{
	StringInfoData base;
	char		sign[HMAC_SHA256_HEX_LEN + 1];
	char		timestamp[32];
	const char *secret = shop->app_secret ? shop->app_secret : "";

	snprintf(timestamp, sizeof(timestamp), INT64_FORMAT, now_ms / 1000);
	initStringInfo(&base);
	appendStringInfo(&base, "%s%s%s", shop->app_key ? shop->app_key : "",
					 path, timestamp);
	if (shop_api)
		appendStringInfo(&base, "%s%s",
						 shop->access_token ? shop->access_token : "",
						 shop->external_shop_id ? shop->external_shop_id : "");
	if (!hmac_sha256_hex(secret, strlen(secret), base.data, base.len, false, sign))
		sign[0] = '\0';			/* Shopee answers error_sign: PERMANENT */
	pfree(base.data);

	request_add_query(request, "partner_id", shop->app_key, false);
	request_add_query(request, "timestamp", timestamp, false);
	if (shop_api)
	{
		request_add_query(request, "access_token", shop->access_token, true);
		request_add_query(request, "shop_id", shop->external_shop_id, false);
	}
	request_add_query(request, "sign", sign, true);
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

	if (id != NULL && id[0] != '-' && json_parse_int64_text(id, &value))
		appendStringInfo(buf, INT64_FORMAT, value);
	else
		json_append_string(buf, id ? id : "");
}

/* an id the engine checked: a canonical integer, "0" when absent */
static const char *
shopee_id(const ListingPush *item, int attribute)
{
	const char *value = item->ids[attribute];

	return value != NULL && value[0] != '\0' ? value : "0";
}

/*
 * build_push: POST {base}/api/v2/product/update_stock with the Shop API
 * common parameters in the query and
 * {"item_id":I,"stock_list":[{"model_id":M,"seller_stock":[{"location_id":
 * "L","stock":N}]},...]} as the body, listings of one model grouped into
 * one stock_list entry.  The engine batches one item per call.  Negative
 * levels are sent as 0: Shopee refuses negative stock and "none left" is
 * what they mean.
 */
static void
shopee_build_push(const ShopContext *shop, const ListingPush *items,
				  int nitems, int64 now_ms, HttpRequestSpec *request)
{
	StringInfoData body;
	bool	   *done;
	bool		first_model = true;
	int			i;
	int			j;

	done = palloc0(sizeof(bool) * Max(nitems, 1));
	initStringInfo(&body);
	appendStringInfo(&body, "{\"item_id\":%s,\"stock_list\":[",
					 nitems > 0 ? shopee_id(&items[0], SHOPEE_ITEM_ID) : "0");
	for (i = 0; i < nitems; i++)
	{
		bool		first_stock = true;

		if (done[i])
			continue;
		if (!first_model)
			appendStringInfoChar(&body, ',');
		first_model = false;
		appendStringInfo(&body, "{\"model_id\":%s,\"seller_stock\":[",
						 shopee_id(&items[i], SHOPEE_MODEL_ID));
		for (j = i; j < nitems; j++)
		{
			const char *location;

			if (done[j] || strcmp(shopee_id(&items[i], SHOPEE_MODEL_ID),
								  shopee_id(&items[j], SHOPEE_MODEL_ID)) != 0)
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

	request_init(request, "POST", shop->api_base_url, SHOPEE_STOCK_PATH);
	shopee_sign_request(shop, request, SHOPEE_STOCK_PATH, now_ms, true);
	request_set_body(request, body.data, body.len, "application/json");
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
 * our timestamp was stale when it arrived), then for shop calls the
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

	if (adapter_contains_ci(message, "too many request") ||
		adapter_contains_ci(error, "rate_limit"))
		return SYNC_OUTCOME_THROTTLED;
	if (in_list(code, shopee_transient_errors))
		return SYNC_OUTCOME_RETRY;
	if (adapter_contains_ci(message, "invalid timestamp"))
		return SYNC_OUTCOME_RETRY;
	if (!refresh &&
		(strcmp(code, "error_auth") == 0 ||
		 strcmp(code, "invalid_access_token") == 0 ||
		 adapter_contains_ci(message, "access_token") ||
		 adapter_contains_ci(message, "access token")))
		return SYNC_OUTCOME_AUTH;
	if (in_list(code, shopee_permanent_errors) ||
		strncmp(code, "error_item_", 11) == 0)
		return SYNC_OUTCOME_PERMANENT;
	return status >= 500 ? SYNC_OUTCOME_RETRY : SYNC_OUTCOME_PERMANENT;
}

/*
 * Read Shopee's envelope {"request_id", "error", "message", ...}.  Returns
 * the object when the call went through: no error, or
 * error_busi_update_stock_failed, which only says "see failure_list".
 * Otherwise result is decided (transport-level answer, Shopee error, or a
 * non-2xx status without one) and NULL is returned.
 */
static const JsonValue *
shopee_read_envelope(const ShopContext *shop, const HttpResponseView *response,
					 CallResult *result, bool refresh)
{
	const JsonValue *root = response_json(shop, response, result);
	const char *error;
	const char *message;

	if (root == NULL)
		return NULL;
	adapter_copy_message(result->request_id, SYNC_REQUEST_ID_LEN,
						 json_get_string(root, "request_id"), shop);
	error = json_get_string(root, "error");
	if (error != NULL && error[0] == '\0')
		error = NULL;
	message = json_get_string(root, "message");

	if (result->outcome == SYNC_OUTCOME_THROTTLED)
	{
		if (error != NULL)
			adapter_set_result(result, SYNC_OUTCOME_THROTTLED, error,
							   message, shop);
		return NULL;
	}
	if (error != NULL &&
		(refresh || strcmp(error_suffix(error), SHOPEE_ALL_FAILED) != 0))
	{
		adapter_set_result(result,
						   shopee_classify_error(response->status, error,
												 message, refresh),
						   error, message, shop);
		return NULL;
	}
	if (error == NULL && (response->status < 200 || response->status >= 300))
	{
		char		code[32];
		char		text[64];

		snprintf(code, sizeof(code), "http_%ld", response->status);
		snprintf(text, sizeof(text), "HTTP %ld without a Shopee error",
				 response->status);
		adapter_set_result(result, SYNC_OUTCOME_RETRY, code, text, shop);
		return NULL;
	}
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
	json_parse_int64_text(shopee_id(item, SHOPEE_MODEL_ID), &model_id);
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
 * parse_push: see shopee_classify_error for call-level errors.  When the
 * call as a whole went through, each listing is decided by the lists:
 * failure_list is PERMANENT with Shopee's failed_reason, success_list is
 * OK, and a listing in neither is retried.
 */
static void
shopee_parse_push(const ShopContext *shop, ListingPush *items, int nitems,
				  const HttpResponseView *response, CallResult *result)
{
	const JsonValue *root;
	const JsonValue *lists;
	const JsonValue *success_list;
	const JsonValue *failure_list;
	const char *error;
	int			i;

	root = shopee_read_envelope(shop, response, result, false);
	if (root == NULL)
		return;

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

			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT,
								"update_stock_failed",
								reason ? reason : "listed in failure_list",
								shop);
		}
		else if (shopee_find_entry(success_list, item, location) != NULL)
			item->outcome = SYNC_OUTCOME_OK;
		else
			adapter_set_listing(item, SYNC_OUTCOME_RETRY,
								"missing_from_response",
								"model in neither success_list nor failure_list",
								NULL);
	}

	error = json_get_string(root, "error");
	if (error == NULL || error[0] == '\0')
		result->outcome = SYNC_OUTCOME_OK;
	else
		adapter_set_result(result, SYNC_OUTCOME_PERMANENT, error,
						   json_get_string(root, "message"), shop);
}

/*
 * build_read_levels: GET v2.product.get_item_base_info for an item without
 * variants (every listing's model_id is 0), else v2.product.get_model_list;
 * both Shop API calls on one item.
 */
static void
shopee_build_read_levels(const ShopContext *shop, const ListingPush *items,
						 int nitems, int64 now_ms, HttpRequestSpec *request)
{
	const char *item_id = nitems > 0 ? shopee_id(&items[0], SHOPEE_ITEM_ID) : "0";
	bool		variants = false;
	int			i;

	for (i = 0; i < nitems; i++)
		variants |= strcmp(shopee_id(&items[i], SHOPEE_MODEL_ID), "0") != 0;

	if (variants)
	{
		request_init(request, "GET", shop->api_base_url, SHOPEE_MODEL_LIST_PATH);
		shopee_sign_request(shop, request, SHOPEE_MODEL_LIST_PATH, now_ms, true);
		request_add_query(request, "item_id", item_id, false);
	}
	else
	{
		request_init(request, "GET", shop->api_base_url, SHOPEE_ITEM_INFO_PATH);
		shopee_sign_request(shop, request, SHOPEE_ITEM_INFO_PATH, now_ms, true);
		request_add_query(request, "item_id_list", item_id, false);
	}
}

/*
 * The stock of one listing in a stock_info_v2 object: the seller_stock
 * entry of its warehouse, or the sum of them all when the listing names
 * none; -1 when there is no seller_stock.
 */
static int64
shopee_stock_of(const JsonValue *stock_info, const char *location)
{
	const JsonValue *seller_stock = json_get_array(stock_info, "seller_stock");
	int64		total = 0;
	bool		found = false;
	int			i;

	if (seller_stock == NULL)
		return -1;
	for (i = 0; i < seller_stock->count; i++)
	{
		const JsonValue *entry = seller_stock->items[i];
		const char *entry_location = json_get_string(entry, "location_id");
		int64		stock;

		if (!json_get_int64(entry, "stock", &stock))
			continue;
		if (location != NULL &&
			(entry_location == NULL || strcmp(entry_location, location) != 0))
			continue;
		total += stock;
		found = true;
	}
	return found ? total : -1;
}

/*
 * parse_read_levels: response.model[] (get_model_list) or
 * response.item_list[] (get_item_base_info), each with stock_info_v2.  A
 * listing the answer does not mention is PERMANENT: the marketplace does
 * not know it.
 */
static void
shopee_parse_read_levels(const ShopContext *shop, ListingPush *items,
						 int nitems, const HttpResponseView *response,
						 CallResult *result)
{
	const JsonValue *root = shopee_read_envelope(shop, response, result, false);
	const JsonValue *payload;
	const JsonValue *models;
	const JsonValue *item_list;
	int			i;
	int			k;

	if (root == NULL)
		return;
	payload = json_get_object(root, "response");
	models = json_get_array(payload, "model");
	item_list = json_get_array(payload, "item_list");

	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const char *location = shopee_location(shop, item);
		const JsonValue *stock_info = NULL;

		item->read_level = -1;
		if (models != NULL)
		{
			int64		wanted;

			json_parse_int64_text(shopee_id(item, SHOPEE_MODEL_ID), &wanted);
			for (k = 0; k < models->count && stock_info == NULL; k++)
			{
				int64		model_id;

				if (json_get_int64(models->items[k], "model_id", &model_id) &&
					model_id == wanted)
					stock_info = json_get_object(models->items[k], "stock_info_v2");
			}
		}
		else if (item_list != NULL && item_list->count > 0)
			stock_info = json_get_object(item_list->items[0], "stock_info_v2");

		if (stock_info != NULL)
			item->read_level = shopee_stock_of(stock_info, location);
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
 * build_order_fetch: GET {base}/api/v2/order/get_order_detail with the Shop
 * API common parameters (the order parameters are not signed),
 * order_sn_list (one order) and response_optional_fields=item_list,
 * without which Shopee leaves the lines out (marketplace-apis.md 7.1).
 */
static void
shopee_build_order_fetch(const ShopContext *shop, const char *order_id,
						 int64 now_ms, HttpRequestSpec *request)
{
	request_init(request, "GET", shop->api_base_url, SHOPEE_ORDER_DETAIL_PATH);
	shopee_sign_request(shop, request, SHOPEE_ORDER_DETAIL_PATH, now_ms, true);
	request_add_query(request, "order_sn_list", order_id, false);
	request_add_query(request, "response_optional_fields", "item_list", false);
}

/* a JSON integer (or digits in a string) >= min, as canonical text; or NULL */
static char *
shopee_int_text(const JsonValue *value, int64 min)
{
	int64		number;

	if (value == NULL || !json_value_int64(value, &number) || number < min)
		return NULL;
	return psprintf(INT64_FORMAT, number);
}

/*
 * parse_order_fetch: response.order_list[] entry whose order_sn is the
 * order: order_status, update_time, and item_list[] {item_id, model_id (0
 * without variants), model_quantity_purchased}.  An order the answer does
 * not hold (error_not_found, or absent from the list) or cannot be read is
 * PERMANENT: asking again gives the same.
 */
static void
shopee_parse_order_fetch(const ShopContext *shop, const char *order_id,
						 const HttpResponseView *response, OrderDetail *out)
{
	const JsonValue *root = shopee_read_envelope(shop, response, &out->call, false);
	const JsonValue *orders;
	const JsonValue *order = NULL;
	const JsonValue *items;
	const char *status;
	int			i;

	if (root == NULL)
		return;
	orders = json_get_array(json_get_object(root, "response"), "order_list");
	for (i = 0; orders != NULL && i < orders->count && order == NULL; i++)
	{
		const char *sn = json_get_string(orders->items[i], "order_sn");

		if (sn != NULL && strcmp(sn, order_id) == 0)
			order = orders->items[i];
	}
	if (order == NULL)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "not_found",
						   "the answer does not hold the order", shop);
		return;
	}
	status = json_get_string(order, "order_status");
	items = json_get_array(order, "item_list");
	if (status == NULL || status[0] == '\0' ||
		!json_get_int64(order, "update_time", &out->update_time) ||
		out->update_time <= 0 || items == NULL)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
						   "the order lacks order_status, update_time or item_list", shop);
		return;
	}
	for (i = 0; i < items->count; i++)
	{
		const char *ids[LISTING_MAX_ATTRIBUTES] = {NULL};
		const JsonValue *model = json_get(items->items[i], "model_id");
		int64		qty = 0;

		ids[SHOPEE_ITEM_ID] = shopee_int_text(json_get(items->items[i], "item_id"), 0);
		ids[SHOPEE_MODEL_ID] = model == NULL || model->kind == JSON_KIND_NULL ?
			"0" : shopee_int_text(model, 0);
		if (ids[SHOPEE_ITEM_ID] == NULL || ids[SHOPEE_MODEL_ID] == NULL ||
			!json_get_int64(items->items[i], "model_quantity_purchased", &qty) ||
			qty < 1)
		{
			adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
							   "an item of the order lacks item_id, model_id or a quantity", shop);
			return;
		}
		adapter_add_order_line(&shopee_adapter, out, ids, qty);
		if (out->call.outcome != SYNC_OUTCOME_NONE)
			return;
	}
	if (out->nlines == 0)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "no_lines",
						   "the order has no items", shop);
		return;
	}
	out->status = pstrdup(status);
	out->call.outcome = SYNC_OUTCOME_OK;
}

/*
 * build_refresh: POST {base}/api/v2/auth/access_token/get, a Public API
 * call (sign over partner_id + path + timestamp), body
 * {"refresh_token":"..","partner_id":P,"shop_id":S}.
 */
static void
shopee_build_refresh(const ShopContext *shop, int64 now_ms,
					 HttpRequestSpec *request)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"refresh_token\":");
	json_append_string(&body, shop->refresh_token ? shop->refresh_token : "");
	appendStringInfoString(&body, ",\"partner_id\":");
	shopee_append_int(&body, shop->app_key);
	appendStringInfoString(&body, ",\"shop_id\":");
	shopee_append_int(&body, shop->external_shop_id);
	appendStringInfoChar(&body, '}');

	request_init(request, "POST", shop->auth_base_url, SHOPEE_REFRESH_PATH);
	shopee_sign_request(shop, request, SHOPEE_REFRESH_PATH, now_ms, false);
	request_set_body(request, body.data, body.len, "application/json");
}

/*
 * parse_refresh: OK only with a new access_token, a new (rotated)
 * refresh_token and a positive expire_in; the access token's expiry is
 * counted from now, when the answer is read.  Shopee does not say when the
 * refresh token expires (30 days after issue, per its guide), so
 * refresh_expires_at stays 0.  A 2xx answer missing any of the three is
 * RETRY: the old refresh token may or may not be spent, and only a new
 * attempt can tell.
 */
static void
shopee_parse_refresh(const ShopContext *shop, const HttpResponseView *response,
					 TokenRefreshResult *result)
{
	const JsonValue *root;
	const char *access_token;
	const char *refresh_token;
	int64		expire_in = 0;

	result->access_token = NULL;
	result->refresh_token = NULL;
	result->access_expires_at = 0;
	result->refresh_expires_at = 0;

	root = shopee_read_envelope(shop, response, &result->call, true);
	if (root == NULL)
		return;

	access_token = json_get_string(root, "access_token");
	refresh_token = json_get_string(root, "refresh_token");
	if (access_token == NULL || access_token[0] == '\0' ||
		refresh_token == NULL || refresh_token[0] == '\0' ||
		!json_get_int64(root, "expire_in", &expire_in) || expire_in <= 0)
	{
		adapter_set_result(&result->call, SYNC_OUTCOME_RETRY,
						   "malformed_response",
						   "no error, but no access_token, refresh_token and expire_in",
						   NULL);
		return;
	}

	/* no Shopee token lives a year; a bigger number is noise, not a date */
	if (expire_in > SHOPEE_MAX_EXPIRE_IN)
		expire_in = SHOPEE_MAX_EXPIRE_IN;

	result->call.outcome = SYNC_OUTCOME_OK;
	result->access_token = pstrdup(access_token);
	result->refresh_token = pstrdup(refresh_token);
	result->access_expires_at = (int64) time(NULL) + expire_in;
}

/*
 * parse_webhook: {"shop_id":S,"code":C,"timestamp":T,"data":{...}}
 * (marketplace-apis.md sections 1.6 and 7.2).  Code 3 is an order status
 * change, keyed by (shop_id, code, ordersn, status, update_time): the
 * envelope's timestamp is left out, as a re-delivery may carry a new one.
 * Code 8 (reserved stock change) is a stock signal about the item and
 * model it names.  Every other code is read and ignored, keyed by the
 * body's hash (event_key NULL).  App-level pushes (1, 2, 12) name no shop.
 */
static bool
shopee_parse_webhook(const WebhookRequest *request, WebhookEvent *event,
					 const char **why)
{
	JsonValue  *root = json_parse(request->body, request->body_len);
	const JsonValue *data;
	const char *shop_id;
	int64		code;
	char		code_text[32];

	memset(event, 0, sizeof(WebhookEvent));
	if (root == NULL || root->kind != JSON_KIND_OBJECT)
	{
		*why = "the body is not a JSON object";
		return false;
	}
	if (!json_get_int64(root, "code", &code))
	{
		*why = "the push has no integer \"code\"";
		return false;
	}
	snprintf(code_text, sizeof(code_text), INT64_FORMAT, code);
	event->event_type = psprintf("push_%s", code_text);
	shop_id = json_scalar_text(json_get(root, "shop_id"));
	if (shop_id != NULL)
		event->shop_key = pstrdup(shop_id);
	data = json_get_object(root, "data");

	if (code == SHOPEE_PUSH_ORDER_STATUS)
	{
		const char *order = json_get_string(data, "ordersn");
		const char *status = json_get_string(data, "status");

		if (shop_id == NULL || order == NULL || order[0] == '\0' ||
			status == NULL || status[0] == '\0' ||
			!json_get_int64(data, "update_time", &event->update_time))
		{
			*why = "an order push needs shop_id, data.ordersn, data.status and data.update_time";
			return false;
		}
		event->kind = WEBHOOK_ORDER;
		event->event_type = pstrdup("order_status");
		event->order_id = pstrdup(order);
		event->status = pstrdup(status);
		event->event_key = psprintf("%s:%s:%s:%s:" INT64_FORMAT, shop_id,
									code_text, order, status,
									event->update_time);
	}
	else if (code == SHOPEE_PUSH_RESERVED_STOCK && shop_id != NULL &&
			 json_scalar_text(json_get(data, "item_id")) != NULL)
	{
		const char *model = json_scalar_text(json_get(data, "model_id"));

		event->kind = WEBHOOK_STOCK;
		event->event_type = pstrdup("reserved_stock");
		event->ids[SHOPEE_ITEM_ID] = pstrdup(json_scalar_text(json_get(data, "item_id")));
		event->ids[SHOPEE_MODEL_ID] = pstrdup(model ? model : "0");
	}
	else
		event->kind = WEBHOOK_IGNORED;
	return true;
}

/*
 * verify_webhook: Authorization = lower-hex HMAC-SHA256(push key,
 * callback URL + "|" + raw body), the URL being the one registered with
 * Shopee (marketplace-apis.md section 1.6).
 */
static bool
shopee_verify_webhook(const char *app_key, const char *secret,
					  const WebhookRequest *request)
{
	StringInfoData message;
	char		expected[HMAC_SHA256_HEX_LEN + 1];
	bool		ok;

	if (request->url == NULL || secret == NULL)
		return false;
	initStringInfo(&message);
	appendStringInfoString(&message, request->url);
	appendStringInfoChar(&message, '|');
	appendBinaryStringInfo(&message, request->body, request->body_len);
	ok = hmac_sha256_hex(secret, strlen(secret), message.data, message.len,
						 false, expected) &&
		adapter_signature_matches(expected, request->signature);
	pfree(message.data);
	return ok;
}
