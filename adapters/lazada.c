/*-------------------------------------------------------------------------
 *
 * lazada.c
 *	  The Lazada Open Platform (LazOP) adapter: signed UpdateSellableQuantity
 *	  calls carrying up to 50 SKUs of any products as an XML payload, token
 *	  refresh on the central auth gateway, GetProductItem to read levels,
 *	  and the classification of Lazada's answers.
 *
 * Signing (marketplace-apis.md section 3.2): sign = UPPER-hex
 * HMAC-SHA256(key = app_secret, msg = api_path + name1 + value1 + ...),
 * over every parameter sent but sign, sorted by name in ASCII order, with
 * raw (not URL-encoded) values.  The API path is what follows "/rest"; a
 * base URL's own path ("/rest", or a test double's prefix) is in the URL
 * but not signed.  Empty parameters are never sent: Lazada's SDKs disagree
 * on whether they are signed.
 *
 * Transport, as EcomPHP/lazada-php does it (section 3.2): the system
 * parameters (app_key, timestamp in milliseconds, sign_method, the access
 * token) and the sign go in the query, where the engine redacts the
 * secret ones from logs; the business parameter "payload" goes in an
 * application/x-www-form-urlencoded body, built once and sent as built.
 * The token refresh has no body: its refresh_token is a secret, and only
 * query parameters are redacted.
 *
 * Listings are (item_id, sku_id) pairs, with an optional seller_sku sent
 * as SellerSku and, for multi-warehouse sellers (shops.uses_locations), a
 * warehouse_code.  SKUs of different products share calls (batch_by is
 * empty).  Every warehouse of one SKU must be in the same <Sku> element,
 * and Lazada reports failures per SKU, not per warehouse: so item_id and
 * sku_id make sibling groups, which the engine claims, sends and settles
 * together.  A single-warehouse seller's groups are single listings.
 *
 * Pushes (LPM, section 3.6) are signed with the app key and secret and
 * name the seller.  A trade order push is about one order item, which is
 * one unit with a status of its own: invsync keeps each line as an order
 * of its own, "trade_order_id/trade_order_line_id".
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  adapters/lazada.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "adapter.h"
#include "crypto.h"
#include "json.h"

#define LAZADA_STOCK_PATH		"/product/stock/sellable/update"
#define LAZADA_ITEM_GET_PATH	"/product/item/get"
#define LAZADA_REFRESH_PATH		"/auth/token/refresh"
#define LAZADA_ORDER_ITEMS_PATH	"/order/items/get"

#define LAZADA_AUTH_HOST		"https://auth.lazada.com/rest"

/* SKUs per UpdateSellableQuantity: 20 advised, 50 at most (section 3.3) */
#define LAZADA_DEFAULT_SKUS		20
#define LAZADA_MAX_SKUS			50

/* the largest SellableQuantity Lazada's integers hold */
#define LAZADA_MAX_QUANTITY		INT64CONST(2147483647)

/* longest token lifetime believed, in seconds */
#define LAZADA_MAX_EXPIRES_IN	(366 * 86400)

/* the shortest pause after a throttling answer, in milliseconds */
#define LAZADA_MIN_THROTTLE_MS	1000

/* the listing attributes, by index */
#define LAZADA_ITEM_ID			0
#define LAZADA_SKU_ID			1
#define LAZADA_SELLER_SKU		2
#define LAZADA_WAREHOUSE_CODE	3

/* most parameters one Lazada call carries, sign excluded */
#define LAZADA_MAX_PARAMS		8

/* One parameter of a call, before it is signed and placed. */
typedef struct LazadaParam
{
	const char *name;
	const char *value;
	bool		secret;
	bool		in_body;		/* form body rather than query */
} LazadaParam;

/* The country gateways (section 3.1), by region code. */
typedef struct LazadaGateway
{
	const char *region;
	const char *base_url;
} LazadaGateway;

static const LazadaGateway lazada_gateways[] = {
	{"SG", "https://api.lazada.sg/rest"},
	{"TH", "https://api.lazada.co.th/rest"},
	{"MY", "https://api.lazada.com.my/rest"},
	{"VN", "https://api.lazada.vn/rest"},
	{"PH", "https://api.lazada.com.ph/rest"},
	{"ID", "https://api.lazada.co.id/rest"},
};

static const ListingAttribute lazada_attributes[] = {
	[LAZADA_ITEM_ID] = {"item_id", LISTING_SLOT_ITEM, LISTING_ID_INTEGER, true, NULL},
	[LAZADA_SKU_ID] = {"sku_id", LISTING_SLOT_VARIANT, LISTING_ID_INTEGER, true, NULL},
	[LAZADA_SELLER_SKU] = {"seller_sku", LISTING_SLOT_NONE, LISTING_ID_TEXT, false, NULL},
	[LAZADA_WAREHOUSE_CODE] = {"warehouse_code", LISTING_SLOT_LOCATION, LISTING_ID_TEXT, false, NULL},
};

static const char *lazada_api_base_url(const char *region);
static void lazada_build_push(const ShopContext *shop,
							  const ListingPush *items, int nitems,
							  int64 now_ms, HttpRequestSpec *request);
static void lazada_parse_push(const ShopContext *shop,
							  ListingPush *items, int nitems,
							  const HttpResponseView *response,
							  CallResult *result);
static void lazada_build_read_levels(const ShopContext *shop,
									 const ListingPush *items, int nitems,
									 int64 now_ms, HttpRequestSpec *request);
static void lazada_parse_read_levels(const ShopContext *shop,
									 ListingPush *items, int nitems,
									 const HttpResponseView *response,
									 CallResult *result);
static void lazada_build_order_fetch(const ShopContext *shop,
									 const char *order_id, int64 now_ms,
									 HttpRequestSpec *request);
static void lazada_parse_order_fetch(const ShopContext *shop,
									 const char *order_id,
									 const HttpResponseView *response,
									 OrderDetail *out);
static void lazada_build_refresh(const ShopContext *shop, int64 now_ms,
								 HttpRequestSpec *request);
static void lazada_parse_refresh(const ShopContext *shop,
								 const HttpResponseView *response,
								 TokenRefreshResult *result);
static bool lazada_parse_webhook(const WebhookRequest *request,
								 WebhookEvent *event, const char **why);
static bool lazada_verify_webhook(const char *app_key, const char *secret,
								  const WebhookRequest *request);

/* LPM message types invsync acts on (marketplace-apis.md sections 3.6, 7.6) */
#define LAZADA_PUSH_TRADE_ORDER		0
#define LAZADA_PUSH_SHALLOW_STOCK	6

/*
 * Order item statuses and their effect (marketplace-apis.md section 7.7).
 * Lazada has no order-level status: each item (one unit) has its own, so
 * a marketplace order here is one line, "trade_order_id/line_id".  Ranks
 * follow a line's life, for two changes within one second.  What follows
 * delivery (returns, failed or lost parcels, parcels shipped back) changes
 * no stock automatically: returned goods are restocked explicitly.
 */
static const OrderStatus lazada_order_statuses[] = {
	{"unpaid", ORDER_EFFECT_RESERVE, 10},
	{"pending", ORDER_EFFECT_RESERVE, 15},
	{"topack", ORDER_EFFECT_RESERVE, 20},
	{"packed", ORDER_EFFECT_RESERVE, 25},
	{"repacked", ORDER_EFFECT_RESERVE, 27},
	{"toship", ORDER_EFFECT_RESERVE, 30},
	{"ready_to_ship", ORDER_EFFECT_RESERVE, 35},
	{"shipped", ORDER_EFFECT_FULFILL, 50},
	{"delivered", ORDER_EFFECT_FULFILL, 60},
	{"failed_delivery", ORDER_EFFECT_NONE, 62},
	{"failed", ORDER_EFFECT_NONE, 63},
	{"lost_by_3pl", ORDER_EFFECT_NONE, 64},
	{"damaged_by_3pl", ORDER_EFFECT_NONE, 65},
	{"lost", ORDER_EFFECT_NONE, 66},
	{"shipped_back", ORDER_EFFECT_NONE, 70},
	{"shipped_back_failed", ORDER_EFFECT_NONE, 72},
	{"shipped_back_success", ORDER_EFFECT_NONE, 74},
	{"returned", ORDER_EFFECT_NONE, 76},
	{"package_scrapped", ORDER_EFFECT_NONE, 78},
	{"canceled", ORDER_EFFECT_RELEASE, 90},
};

const ChannelAdapter lazada_adapter = {
	.channel = "lazada",
	.attributes = lazada_attributes,
	.nattributes = lengthof(lazada_attributes),
	.batch_by = 0,
	.siblings_by = LISTING_ATTRIBUTE(LAZADA_ITEM_ID) | LISTING_ATTRIBUTE(LAZADA_SKU_ID),
	.default_batch = LAZADA_DEFAULT_SKUS,
	.max_batch = LAZADA_MAX_SKUS,
	.max_read_batch = LAZADA_MAX_SKUS,
	.read_by = LISTING_ATTRIBUTE(LAZADA_ITEM_ID),
	.api_base_url = lazada_api_base_url,
	.auth_base_url = LAZADA_AUTH_HOST,
	.build_push = lazada_build_push,
	.parse_push = lazada_parse_push,
	.build_read_levels = lazada_build_read_levels,
	.parse_read_levels = lazada_parse_read_levels,
	.build_order_fetch = lazada_build_order_fetch,
	.parse_order_fetch = lazada_parse_order_fetch,
	.build_refresh = lazada_build_refresh,
	.parse_refresh = lazada_parse_refresh,
	.parse_webhook = lazada_parse_webhook,
	.verify_webhook = lazada_verify_webhook,
	.webhook_signature_header = "Authorization",
	.order_statuses = lazada_order_statuses,
	.norder_statuses = lengthof(lazada_order_statuses)
};

/*
 * The country gateway for a region (any case), or NULL for a region
 * Lazada does not serve, or none: the engine then refuses the shop's rows
 * rather than guess a country.
 */
static const char *
lazada_api_base_url(const char *region)
{
	int			i;

	if (region == NULL)
		return NULL;
	for (i = 0; i < lengthof(lazada_gateways); i++)
	{
		if (pg_strcasecmp(region, lazada_gateways[i].region) == 0)
			return lazada_gateways[i].base_url;
	}
	return NULL;
}

/* an attribute's value, NULL when absent or empty */
static const char *
lazada_id(const ListingPush *item, int attribute)
{
	const char *value = item->ids[attribute];

	return value != NULL && value[0] != '\0' ? value : NULL;
}

/* the warehouse a listing's level goes to, for multi-warehouse sellers only */
static const char *
lazada_warehouse(const ShopContext *shop, const ListingPush *item)
{
	return shop->uses_locations ? lazada_id(item, LAZADA_WAREHOUSE_CODE) : NULL;
}

/*
 * Why each listing must stay off the wire, or NULL when it may go, into
 * why[0..nitems-1].  Sending it would make Lazada refuse the whole call
 * (error 5), failing the other SKUs with it: a multi-warehouse seller's
 * listing without a warehouse (such sellers may not send a bare
 * SellableQuantity), a level no Lazada quantity holds, or a SKU (and, for
 * multi-warehouse sellers, warehouse) already in the call, as listings
 * stored twice under different ids would give.  A pure function of the
 * batch, so that lazada_parse_push finds the same listings
 * lazada_build_push left out.
 */
static void
lazada_unsendable(const ShopContext *shop, const ListingPush *items,
				  int nitems, const char **why)
{
	int			i;
	int			j;

	for (i = 0; i < nitems; i++)
	{
		const ListingPush *item = &items[i];
		const char *warehouse = lazada_warehouse(shop, item);

		why[i] = NULL;
		if (shop->uses_locations && warehouse == NULL)
			why[i] = "a multi-warehouse seller's listing needs a warehouse_code";
		else if (item->level > LAZADA_MAX_QUANTITY)
			why[i] = "the level is above the largest quantity Lazada takes";
		for (j = 0; j < i && why[i] == NULL; j++)
		{
			const ListingPush *other = &items[j];

			if (why[j] != NULL ||
				strcmp(item->ids[LAZADA_SKU_ID], other->ids[LAZADA_SKU_ID]) != 0)
				continue;
			if (strcmp(item->ids[LAZADA_ITEM_ID], other->ids[LAZADA_ITEM_ID]) != 0)
				why[i] = "another listing of the call has this sku_id under another item_id";
			else if (!shop->uses_locations)
				why[i] = "another listing of the call has this sku_id, and the seller has one warehouse";
			else if (strcmp(warehouse, lazada_warehouse(shop, other)) == 0)
				why[i] = "another listing of the call has this sku_id and warehouse_code";
		}
	}
}

/* qsort comparator: parameters by name, in ASCII (byte) order */
static int
param_cmp(const void *a, const void *b)
{
	return strcmp(((const LazadaParam *) a)->name,
				  ((const LazadaParam *) b)->name);
}

/*
 * Sign params[0..nparams-1] (their order changes) for api_path, then add
 * them to the request: query parameters in name order followed by the
 * sign, body parameters as a form.  Empty parameters are dropped before
 * signing, so what is signed is exactly what is sent.  A failing HMAC
 * leaves the sign out: Lazada answers MissingParameter, PERMANENT.
 */
static void
lazada_sign_and_place(const ShopContext *shop, HttpRequestSpec *request,
					  const char *api_path, LazadaParam *params, int nparams)
{
	StringInfoData message;
	StringInfoData body;
	char		sign[HMAC_SHA256_HEX_LEN + 1];
	const char *secret = shop->app_secret ? shop->app_secret : "";
	int			n = 0;
	int			i;

	for (i = 0; i < nparams; i++)
	{
		if (params[i].value != NULL && params[i].value[0] != '\0')
			params[n++] = params[i];
	}
	qsort(params, n, sizeof(LazadaParam), param_cmp);

	initStringInfo(&message);
	appendStringInfoString(&message, api_path);
	for (i = 0; i < n; i++)
		appendStringInfo(&message, "%s%s", params[i].name, params[i].value);
	if (!hmac_sha256_hex(secret, strlen(secret), message.data, message.len,
						 true, sign))
		sign[0] = '\0';
	/* the message holds the access token */
	memset(message.data, 0, message.len);
	pfree(message.data);

	initStringInfo(&body);
	for (i = 0; i < n; i++)
	{
		if (!params[i].in_body)
			request_add_query(request, params[i].name, params[i].value,
							  params[i].secret);
		else
		{
			if (body.len > 0)
				appendStringInfoChar(&body, '&');
			url_escape_append(&body, params[i].name);
			appendStringInfoChar(&body, '=');
			url_escape_append(&body, params[i].value);
		}
	}
	if (sign[0] != '\0')
		request_add_query(request, "sign", sign, true);
	if (body.len > 0)
		request_set_body(request, body.data, body.len,
						 "application/x-www-form-urlencoded");
	else
		pfree(body.data);
}

/*
 * The system parameters of a call into params: app_key, timestamp (Unix
 * milliseconds), sign_method and, for seller APIs, the access token.
 * Returns how many; timestamp must outlive the call.
 */
static int
lazada_system_params(const ShopContext *shop, LazadaParam *params,
					 int64 now_ms, char *timestamp, size_t timestamp_size,
					 bool seller_api)
{
	int			n = 0;

	snprintf(timestamp, timestamp_size, INT64_FORMAT, now_ms);
	params[n++] = (LazadaParam) {"app_key", shop->app_key, false, false};
	params[n++] = (LazadaParam) {"timestamp", timestamp, false, false};
	params[n++] = (LazadaParam) {"sign_method", "sha256", false, false};
	if (seller_api)
		params[n++] = (LazadaParam) {"access_token", shop->access_token, true, false};
	return n;
}

/* append text to an XML document, escaped for element content */
static void
xml_append_escaped(StringInfo buf, const char *text)
{
	const char *p;

	for (p = text; *p != '\0'; p++)
	{
		switch (*p)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&apos;");
				break;
			default:
				appendStringInfoChar(buf, *p);
				break;
		}
	}
}

/* <Name>escaped value</Name> */
static void
xml_append_element(StringInfo buf, const char *name, const char *value)
{
	appendStringInfo(buf, "<%s>", name);
	xml_append_escaped(buf, value);
	appendStringInfo(buf, "</%s>", name);
}

/*
 * The UpdateSellableQuantity payload for the sendable listings: one <Sku>
 * per SKU with its ItemId, SkuId, the first SellerSku its listings give,
 * and either the SellableQuantity (single-warehouse sellers) or one
 * MultiWarehouseInventory per warehouse.  Negative levels are sent as 0:
 * Lazada refuses negative quantities and "none left" is what they mean.
 */
static char *
lazada_payload(const ShopContext *shop, const ListingPush *items, int nitems)
{
	StringInfoData xml;
	bool	   *done = palloc0(sizeof(bool) * Max(nitems, 1));
	const char **why = palloc0(sizeof(char *) * Max(nitems, 1));
	int			i;
	int			j;

	lazada_unsendable(shop, items, nitems, why);
	for (i = 0; i < nitems; i++)
		done[i] = why[i] != NULL;

	initStringInfo(&xml);
	appendStringInfoString(&xml, "<Request><Product><Skus>");
	for (i = 0; i < nitems; i++)
	{
		const char *seller_sku = NULL;

		if (done[i])
			continue;
		for (j = i; j < nitems && seller_sku == NULL; j++)
		{
			if (!done[j] &&
				strcmp(items[i].ids[LAZADA_SKU_ID], items[j].ids[LAZADA_SKU_ID]) == 0)
				seller_sku = lazada_id(&items[j], LAZADA_SELLER_SKU);
		}

		appendStringInfoString(&xml, "<Sku>");
		xml_append_element(&xml, "ItemId", items[i].ids[LAZADA_ITEM_ID]);
		xml_append_element(&xml, "SkuId", items[i].ids[LAZADA_SKU_ID]);
		if (seller_sku != NULL)
			xml_append_element(&xml, "SellerSku", seller_sku);
		if (!shop->uses_locations)
		{
			appendStringInfo(&xml, "<SellableQuantity>" INT64_FORMAT "</SellableQuantity>",
							 Max(items[i].level, (int64) 0));
			done[i] = true;
		}
		else
		{
			appendStringInfoString(&xml, "<MultiWarehouseInventories>");
			for (j = i; j < nitems; j++)
			{
				if (done[j] ||
					strcmp(items[i].ids[LAZADA_SKU_ID], items[j].ids[LAZADA_SKU_ID]) != 0)
					continue;
				done[j] = true;
				appendStringInfoString(&xml, "<MultiWarehouseInventory>");
				xml_append_element(&xml, "WarehouseCode",
								   lazada_warehouse(shop, &items[j]));
				appendStringInfo(&xml, "<SellableQuantity>" INT64_FORMAT "</SellableQuantity>",
								 Max(items[j].level, (int64) 0));
				appendStringInfoString(&xml, "</MultiWarehouseInventory>");
			}
			appendStringInfoString(&xml, "</MultiWarehouseInventories>");
		}
		appendStringInfoString(&xml, "</Sku>");
	}
	appendStringInfoString(&xml, "</Skus></Product></Request>");
	pfree(done);
	pfree(why);
	return xml.data;
}

/*
 * build_push: POST {api}/product/stock/sellable/update, system parameters
 * and sign in the query, "payload=<XML>" as the form body.  The engine
 * never hands a listing without item_id and sku_id (both required
 * integers).
 */
static void
lazada_build_push(const ShopContext *shop, const ListingPush *items,
				  int nitems, int64 now_ms, HttpRequestSpec *request)
{
	LazadaParam params[LAZADA_MAX_PARAMS];
	char		timestamp[32];
	int			n;

	n = lazada_system_params(shop, params, now_ms, timestamp,
							 sizeof(timestamp), true);
	params[n++] = (LazadaParam) {"payload", lazada_payload(shop, items, nitems), false, true};
	request_init(request, "POST", shop->api_base_url, LAZADA_STOCK_PATH);
	lazada_sign_and_place(shop, request, LAZADA_STOCK_PATH, params, n);
}

/*
 * Case-insensitive strstr for ASCII needles; the position or NULL.
 */
static const char *
find_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);

	if (haystack == NULL)
		return NULL;
	for (; *haystack != '\0'; haystack++)
	{
		if (pg_strncasecmp(haystack, needle, n) == 0)
			return haystack;
	}
	return NULL;
}

/*
 * The pause a throttling message asks for: "this ban will last N seconds"
 * (ApiCallLimit), at least LAZADA_MIN_THROTTLE_MS, and never shorter than
 * a Retry-After already read.
 */
static int
lazada_throttle_ms(const char *message, int retry_after_ms)
{
	const char *p = find_ci(message, "will last");
	int64		seconds = 0;

	if (p != NULL)
	{
		for (p += strlen("will last"); *p == ' '; p++)
			;
		for (; *p >= '0' && *p <= '9' && seconds < 86400; p++)
			seconds = seconds * 10 + (*p - '0');
	}
	return (int) Max(Max((int64) retry_after_ms, Min(seconds, 86400) * 1000),
					 (int64) LAZADA_MIN_THROTTLE_MS);
}

/*
 * Classify a Lazada error code (not "0" nor "501") with its type and
 * message.  Throttling first, whatever else; then the access token, which
 * for a seller call means refresh and retry once; then what the docs call
 * retryable (6, 513), the clock (a timestamp refused only says our clock
 * was off when it arrived), and known client errors.  An unknown code is
 * decided by its type: ISP and SYSTEM are Lazada's side, retried; ISV is
 * ours, dead.  Without a type, the HTTP status decides.  For a refresh
 * every token or client error is PERMANENT: the seller must authorise
 * again.
 */
static SyncOutcome
lazada_classify(long status, const char *code, const char *type,
				const char *message, bool refresh)
{
	if (strcmp(code, "901") == 0 || pg_strcasecmp(code, "ApiCallLimit") == 0 ||
		find_ci(message, "too frequent") != NULL ||
		find_ci(message, "frequency exceeds") != NULL)
		return SYNC_OUTCOME_THROTTLED;
	if (!refresh &&
		(pg_strcasecmp(code, "IllegalAccessToken") == 0 ||
		 find_ci(code, "AccessToken") != NULL ||
		 find_ci(message, "access_token") != NULL ||
		 find_ci(message, "access token") != NULL))
		return SYNC_OUTCOME_AUTH;
	if (pg_strcasecmp(code, "IllegalRefreshToken") == 0)
		return SYNC_OUTCOME_PERMANENT;
	if (strcmp(code, "6") == 0 || strcmp(code, "513") == 0 ||
		pg_strcasecmp(code, "InvalidTimestamp") == 0)
		return SYNC_OUTCOME_RETRY;
	if (strcmp(code, "5") == 0 || strcmp(code, "204") == 0)
		return SYNC_OUTCOME_PERMANENT;
	if (type != NULL &&
		(pg_strcasecmp(type, "ISP") == 0 || pg_strcasecmp(type, "SYSTEM") == 0))
		return SYNC_OUTCOME_RETRY;
	if (type != NULL && pg_strcasecmp(type, "ISV") == 0)
		return SYNC_OUTCOME_PERMANENT;
	return status >= 500 ? SYNC_OUTCOME_RETRY : SYNC_OUTCOME_PERMANENT;
}

/*
 * Read Lazada's envelope, {"code", "type", "message", "request_id", ...}
 * or the IOP gateway's {"error_response": {"code", "type", "msg", ...}}.
 * Returns the object when code is "0" (a string, or the number 0), or
 * when it is "501" and accept_partial is set; *code_out then tells which.
 * Otherwise result is decided and NULL is returned.
 */
static const JsonValue *
lazada_read_envelope(const ShopContext *shop, const HttpResponseView *response,
					 CallResult *result, bool accept_partial, bool refresh,
					 const char **code_out)
{
	const JsonValue *root = response_json(shop, response, result);
	const JsonValue *wrapped;
	const char *code;
	const char *type;
	const char *message;

	*code_out = NULL;
	if (root == NULL)
	{
		/* HTTP 429 without a JSON body: still pause at least a second */
		if (result->outcome == SYNC_OUTCOME_THROTTLED)
			result->retry_after_ms = lazada_throttle_ms(NULL,
														result->retry_after_ms);
		return NULL;
	}
	if ((wrapped = json_get_object(root, "error_response")) != NULL)
		root = wrapped;
	adapter_copy_message(result->request_id, SYNC_REQUEST_ID_LEN,
						 json_scalar_text(json_get(root, "request_id")), shop);
	code = json_scalar_text(json_get(root, "code"));
	type = json_get_string(root, "type");
	message = json_get_string(root, "message");
	if (message == NULL)
		message = json_get_string(root, "msg");

	if (result->outcome == SYNC_OUTCOME_THROTTLED)
	{
		/* HTTP 429: keep the outcome, add Lazada's words if any */
		if (code != NULL)
			adapter_set_result(result, SYNC_OUTCOME_THROTTLED, code, message,
							   shop);
		result->retry_after_ms = lazada_throttle_ms(message,
													result->retry_after_ms);
		return NULL;
	}
	if (code == NULL || code[0] == '\0')
	{
		char		http_code[32];
		char		text[64];

		snprintf(http_code, sizeof(http_code), "http_%ld", response->status);
		snprintf(text, sizeof(text), "HTTP %ld without a Lazada code",
				 response->status);
		adapter_set_result(result, SYNC_OUTCOME_RETRY,
						   response->status >= 200 && response->status < 300 ?
						   "malformed_response" : http_code, text, shop);
		return NULL;
	}
	if (strcmp(code, "0") == 0 || (accept_partial && strcmp(code, "501") == 0))
	{
		*code_out = code;
		return root;
	}

	adapter_set_result(result,
					   lazada_classify(response->status, code, type, message,
									   refresh),
					   code, message ? message : type, shop);
	if (result->outcome == SYNC_OUTCOME_THROTTLED)
		result->retry_after_ms = lazada_throttle_ms(message,
													result->retry_after_ms);
	return NULL;
}

/*
 * Does a 501 detail entry name this listing?  Entries carry sku_id,
 * seller_sku and item_id as strings (numbers accepted), "" when unknown:
 * the most specific one given decides.  An entry with none of them
 * (e.g. {"field":"Product","message":"Category is inactive"}) names no
 * listing.
 */
static bool
lazada_detail_names(const JsonValue *entry, const ListingPush *item)
{
	const char *sku_id = json_scalar_text(json_get(entry, "sku_id"));
	const char *seller_sku = json_scalar_text(json_get(entry, "seller_sku"));
	const char *item_id = json_scalar_text(json_get(entry, "item_id"));
	const char *mine;

	if (sku_id != NULL && sku_id[0] != '\0')
		return strcmp(sku_id, item->ids[LAZADA_SKU_ID]) == 0;
	if (seller_sku != NULL && seller_sku[0] != '\0')
		return (mine = lazada_id(item, LAZADA_SELLER_SKU)) != NULL &&
			strcmp(seller_sku, mine) == 0;
	if (item_id != NULL && item_id[0] != '\0')
		return strcmp(item_id, item->ids[LAZADA_ITEM_ID]) == 0;
	return false;
}

/* an entry naming some listing, by any id */
static bool
lazada_detail_names_any(const JsonValue *entry)
{
	static const char *const keys[] = {"sku_id", "seller_sku", "item_id"};
	int			k;

	for (k = 0; k < lengthof(keys); k++)
	{
		const char *value = json_scalar_text(json_get(entry, keys[k]));

		if (value != NULL && value[0] != '\0')
			return true;
	}
	return false;
}

/*
 * parse_push.  Listings lazada_build_push left out are PERMANENT with the
 * reason, whatever the answer.  Code "0": every other listing is OK.
 * Code "501" (a batch with failures): a listing a detail entry names is
 * PERMANENT with Lazada's message ("field: message").  The others are
 * RETRY: Lazada does not document whether they were applied (section 6),
 * and while the simulator assumes they were, marking them OK on that
 * assumption could leave a listing wrong until its level next changes,
 * whereas resending an absolute level is harmless and costs one call.
 * When no entry names a listing but the call carried a single SKU, the
 * failure can only be that SKU's: PERMANENT.  Anything else is a call
 * error (see lazada_classify).
 */
static void
lazada_parse_push(const ShopContext *shop, ListingPush *items, int nitems,
				  const HttpResponseView *response, CallResult *result)
{
	const JsonValue *root;
	const JsonValue *detail;
	const char *code;
	const char **why = palloc0(sizeof(char *) * Max(nitems, 1));
	const char *first_sku = NULL;
	bool		one_sku = true;
	bool		anonymous = false;
	int			i;
	int			k;

	lazada_unsendable(shop, items, nitems, why);
	for (i = 0; i < nitems; i++)
	{
		if (why[i] != NULL)
			adapter_set_listing(&items[i], SYNC_OUTCOME_PERMANENT, "not_sent",
								why[i], NULL);
		else if (first_sku == NULL)
			first_sku = items[i].ids[LAZADA_SKU_ID];
		else if (strcmp(first_sku, items[i].ids[LAZADA_SKU_ID]) != 0)
			one_sku = false;
	}
	pfree(why);

	root = lazada_read_envelope(shop, response, result, true, false, &code);
	if (root == NULL)
		return;
	if (strcmp(code, "0") == 0)
	{
		result->outcome = SYNC_OUTCOME_OK;
		return;
	}

	detail = json_get_array(root, "detail");
	for (k = 0; detail != NULL && k < detail->count; k++)
	{
		if (detail->items[k]->kind == JSON_KIND_OBJECT &&
			!lazada_detail_names_any(detail->items[k]))
			anonymous = true;
	}
	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const JsonValue *entry = NULL;

		if (item->outcome != SYNC_OUTCOME_NONE)
			continue;
		for (k = 0; detail != NULL && k < detail->count && entry == NULL; k++)
		{
			if (detail->items[k]->kind == JSON_KIND_OBJECT &&
				lazada_detail_names(detail->items[k], item))
				entry = detail->items[k];
		}
		if (entry == NULL && anonymous && one_sku)
			entry = detail->items[0];
		if (entry != NULL)
		{
			const char *field = json_get_string(entry, "field");
			const char *message = json_get_string(entry, "message");
			char	   *text = psprintf("%s%s%s", field ? field : "",
										field && message ? ": " : "",
										message ? message : "");

			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT, "501",
								text[0] ? text : "named in a 501 answer's detail",
								shop);
			pfree(text);
		}
		else
			adapter_set_listing(item, SYNC_OUTCOME_RETRY, "501_unconfirmed",
								"not named in a 501 answer: Lazada does not say whether it was applied; resent",
								NULL);
	}
	adapter_set_result(result, SYNC_OUTCOME_RETRY, "501",
					   json_get_string(root, "message"), shop);
}

/*
 * build_read_levels: GET {api}/product/item/get?item_id= for the item of
 * the listings (the engine reads one item per call), every parameter in
 * the query and signed.
 */
static void
lazada_build_read_levels(const ShopContext *shop, const ListingPush *items,
						 int nitems, int64 now_ms, HttpRequestSpec *request)
{
	LazadaParam params[LAZADA_MAX_PARAMS];
	char		timestamp[32];
	int			n;

	n = lazada_system_params(shop, params, now_ms, timestamp,
							 sizeof(timestamp), true);
	params[n++] = (LazadaParam) {"item_id",
		nitems > 0 ? items[0].ids[LAZADA_ITEM_ID] : NULL, false, false};
	request_init(request, "GET", shop->api_base_url, LAZADA_ITEM_GET_PATH);
	lazada_sign_and_place(shop, request, LAZADA_ITEM_GET_PATH, params, n);
}

/*
 * The sellable level of one SKU object of GetProductItem: for a warehouse,
 * its multiWarehouseInventories entry's sellableQuantity; otherwise the
 * sum over every warehouse, or else the SKU's "Available".  -1 when the
 * answer has none.
 */
static int64
lazada_sku_level(const JsonValue *sku, const char *warehouse)
{
	const JsonValue *inventories = json_get_array(sku, "multiWarehouseInventories");
	int64		total = 0;
	bool		found = false;
	int			i;

	for (i = 0; inventories != NULL && i < inventories->count; i++)
	{
		const JsonValue *entry = inventories->items[i];
		const char *code = json_scalar_text(json_get(entry, "warehouseCode"));
		int64		quantity;

		if (!json_get_int64(entry, "sellableQuantity", &quantity))
			continue;
		if (warehouse != NULL && (code == NULL || strcmp(code, warehouse) != 0))
			continue;
		total += quantity;
		found = true;
	}
	if (found)
		return total;
	if (warehouse == NULL && json_get_int64(sku, "Available", &total))
		return total;
	return -1;
}

/*
 * parse_read_levels: data.skus[], matched by SkuId (a number or a string).
 * A listing the answer does not mention is PERMANENT: Lazada does not
 * know it.
 */
static void
lazada_parse_read_levels(const ShopContext *shop, ListingPush *items,
						 int nitems, const HttpResponseView *response,
						 CallResult *result)
{
	const JsonValue *root;
	const JsonValue *skus;
	const char *code;
	int			i;
	int			k;

	root = lazada_read_envelope(shop, response, result, false, false, &code);
	if (root == NULL)
		return;
	skus = json_get_array(json_get_object(root, "data"), "skus");
	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];
		const JsonValue *sku = NULL;

		item->read_level = -1;
		for (k = 0; skus != NULL && k < skus->count && sku == NULL; k++)
		{
			const char *sku_id = json_scalar_text(json_get(skus->items[k], "SkuId"));

			if (sku_id != NULL && strcmp(sku_id, item->ids[LAZADA_SKU_ID]) == 0)
				sku = skus->items[k];
		}
		if (sku != NULL)
			item->read_level = lazada_sku_level(sku, lazada_warehouse(shop, item));
		if (item->read_level >= 0)
			item->outcome = SYNC_OUTCOME_OK;
		else
			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT, "not_found",
								"the answer has no sellable quantity for this listing",
								NULL);
	}
	result->outcome = SYNC_OUTCOME_OK;
}

/*
 * build_order_fetch: GET {api}/order/items/get?order_id=<trade order>,
 * signed with every parameter in the query.  invsync keys a Lazada order
 * per unit, "trade_order_id/trade_order_line_id" (one push per item): the
 * call reads the whole trade order and parse_order_fetch keeps the line.
 */
static void
lazada_build_order_fetch(const ShopContext *shop, const char *order_id,
						 int64 now_ms, HttpRequestSpec *request)
{
	LazadaParam params[LAZADA_MAX_PARAMS];
	char		timestamp[32];
	const char *slash = strchr(order_id, '/');
	char	   *trade_order = slash ? pnstrdup(order_id, slash - order_id) :
		pstrdup(order_id);
	int			n;

	n = lazada_system_params(shop, params, now_ms, timestamp,
							 sizeof(timestamp), true);
	params[n++] = (LazadaParam) {"order_id", trade_order, false, false};
	request_init(request, "GET", shop->api_base_url, LAZADA_ORDER_ITEMS_PATH);
	lazada_sign_and_place(shop, request, LAZADA_ORDER_ITEMS_PATH, params, n);
}

/*
 * Lazada's "2014-10-15 19:12:15 +0800" as Unix seconds; false when the
 * text has another form.
 */
static bool
lazada_time(const char *text, int64 *seconds)
{
	int			y, mo, d, h, mi, s, off;
	char		sign;
	int64		days;
	int			yy;
	int			mm;

	if (text == NULL ||
		sscanf(text, "%4d-%2d-%2d %2d:%2d:%2d %c%4d", &y, &mo, &d, &h, &mi, &s,
			   &sign, &off) != 8 ||
		(sign != '+' && sign != '-') || mo < 1 || mo > 12 || d < 1 || d > 31 ||
		h > 23 || mi > 59 || s > 60 || off > 1400)
		return false;
	/* days since 1970-01-01 of a proleptic Gregorian date */
	yy = mo <= 2 ? y - 1 : y;
	mm = mo <= 2 ? mo + 9 : mo - 3;
	days = (int64) 365 * yy + yy / 4 - yy / 100 + yy / 400 +
		(153 * mm + 2) / 5 + d - 1 - 719468;
	*seconds = days * 86400 + h * 3600 + mi * 60 + s -
		(sign == '-' ? -1 : 1) * ((off / 100) * 3600 + (off % 100) * 60);
	return true;
}

/*
 * parse_order_fetch: data[] holds the trade order's items, one per unit,
 * each with its own status.  For "order/line" the item whose
 * order_item_id is the line is the order: its status, updated_at and one
 * unit of (item_id = product_id, sku_id).  For a bare trade order id every
 * item counts, and they must agree on the status.  An order or line the
 * answer does not hold, or cannot be read, is PERMANENT.
 */
static void
lazada_parse_order_fetch(const ShopContext *shop, const char *order_id,
						 const HttpResponseView *response, OrderDetail *out)
{
	const char *code;
	const JsonValue *root = lazada_read_envelope(shop, response, &out->call,
												 false, false, &code);
	const JsonValue *items;
	const char *slash = strchr(order_id, '/');
	const char *status = NULL;
	int			i;

	if (root == NULL)
		return;
	items = json_get_array(root, "data");
	for (i = 0; items != NULL && i < items->count; i++)
	{
		const JsonValue *item = items->items[i];
		const char *line = json_scalar_text(json_get(item, "order_item_id"));
		const char *ids[LISTING_MAX_ATTRIBUTES] = {NULL};
		const char *item_status = json_get_string(item, "status");
		int64		updated;

		if (slash != NULL && (line == NULL || strcmp(line, slash + 1) != 0))
			continue;
		ids[LAZADA_ITEM_ID] = json_scalar_text(json_get(item, "product_id"));
		ids[LAZADA_SKU_ID] = json_scalar_text(json_get(item, "sku_id"));
		if (ids[LAZADA_SKU_ID] == NULL || item_status == NULL ||
			item_status[0] == '\0' ||
			!lazada_time(json_get_string(item, "updated_at"), &updated))
		{
			adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
							   "an item of the order lacks sku_id, status or updated_at", shop);
			return;
		}
		if (status != NULL && strcmp(status, item_status) != 0)
		{
			adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "mixed_status",
							   "the items of the trade order differ in status; invsync keys Lazada orders per line", shop);
			return;
		}
		status = item_status;
		out->update_time = Max(out->update_time, updated);
		adapter_add_order_line(&lazada_adapter, out, ids, 1);
		if (out->call.outcome != SYNC_OUTCOME_NONE)
			return;
	}
	if (items == NULL)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "malformed_order",
						   "the answer has no data array", shop);
		return;
	}
	if (out->nlines == 0)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "not_found",
						   "the answer does not hold the order line", shop);
		return;
	}
	out->status = pstrdup(status);
	out->call.outcome = SYNC_OUTCOME_OK;
}

/*
 * build_refresh: POST {auth}/auth/token/refresh, signed like any API but
 * without an access token; the refresh token goes in the query, marked
 * secret, and there is no body.
 */
static void
lazada_build_refresh(const ShopContext *shop, int64 now_ms,
					 HttpRequestSpec *request)
{
	LazadaParam params[LAZADA_MAX_PARAMS];
	char		timestamp[32];
	int			n;

	n = lazada_system_params(shop, params, now_ms, timestamp,
							 sizeof(timestamp), false);
	params[n++] = (LazadaParam) {"refresh_token", shop->refresh_token, true, false};
	request_init(request, "POST", shop->auth_base_url, LAZADA_REFRESH_PATH);
	lazada_sign_and_place(shop, request, LAZADA_REFRESH_PATH, params, n);
}

/*
 * A lifetime in seconds, a JSON number or a string of digits (Lazada's
 * samples have both); false when absent or malformed.
 */
static bool
lazada_seconds(const JsonValue *root, const char *key, int64 *seconds)
{
	if (!json_get_int64(root, key, seconds) || *seconds < 0)
		return false;
	*seconds = Min(*seconds, (int64) LAZADA_MAX_EXPIRES_IN);
	return true;
}

/*
 * parse_refresh: OK with a new access_token, refresh_token and a positive
 * expires_in at the top level.  Both ends are counted from now, when the
 * answer is read.  refresh_expires_in is the time left until the refresh
 * token's original end, which refreshing does not move (section 3.4): so
 * refresh_expires_at is that end, not a new one, and stays 0 (unknown)
 * when Lazada does not say.  IllegalRefreshToken and other client errors
 * are PERMANENT (the seller must authorise again); an answer without the
 * three is RETRY.
 */
static void
lazada_parse_refresh(const ShopContext *shop, const HttpResponseView *response,
					 TokenRefreshResult *result)
{
	const JsonValue *root;
	const char *code;
	const char *access_token;
	const char *refresh_token;
	int64		expires_in = 0;
	int64		refresh_expires_in = 0;
	int64		now = (int64) time(NULL);

	result->access_token = NULL;
	result->refresh_token = NULL;
	result->access_expires_at = 0;
	result->refresh_expires_at = 0;

	root = lazada_read_envelope(shop, response, &result->call, false, true,
								&code);
	if (root == NULL)
		return;

	access_token = json_get_string(root, "access_token");
	refresh_token = json_get_string(root, "refresh_token");
	if (access_token == NULL || access_token[0] == '\0' ||
		refresh_token == NULL || refresh_token[0] == '\0' ||
		!lazada_seconds(root, "expires_in", &expires_in) || expires_in == 0)
	{
		adapter_set_result(&result->call, SYNC_OUTCOME_RETRY,
						   "malformed_response",
						   "code 0, but no access_token, refresh_token and expires_in",
						   NULL);
		return;
	}

	result->call.outcome = SYNC_OUTCOME_OK;
	result->access_token = pstrdup(access_token);
	result->refresh_token = pstrdup(refresh_token);
	result->access_expires_at = now + expires_in;
	if (lazada_seconds(root, "refresh_expires_in", &refresh_expires_in))
		result->refresh_expires_at = now + refresh_expires_in;
}

/*
 * parse_webhook: {"seller_id":S,"message_type":M,"data":{...},
 * "timestamp":...,"site":...} (marketplace-apis.md sections 3.6, 7.6).
 * The shop is named by its seller id (shops.push_shop_id, or
 * external_shop_id when that is the seller id).
 *
 * Type 0 (trade order) comes once per order item and status change; the
 * item is one unit with its own status, so the order is the line,
 * "trade_order_id/trade_order_line_id", and the push is keyed by
 * (seller_id, message_type, trade_order_id, trade_order_line_id,
 * order_status, status_update_time) plus reverse_order_line_id for a
 * return's push (section 7.8): the envelope's timestamp is left out.
 * Type 6 (shallow stock) is a stock signal about the SKU it names.  Every
 * other type is read and ignored, keyed by the body's hash (event_key
 * NULL).  A push with no seller_id is an app-level one.
 */
static bool
lazada_parse_webhook(const WebhookRequest *request, WebhookEvent *event,
					 const char **why)
{
	JsonValue  *root = json_parse(request->body, request->body_len);
	const JsonValue *data;
	const char *seller;
	int64		type;
	char		type_text[32];

	memset(event, 0, sizeof(WebhookEvent));
	if (root == NULL || root->kind != JSON_KIND_OBJECT)
	{
		*why = "the body is not a JSON object";
		return false;
	}
	if (!json_get_int64(root, "message_type", &type))
	{
		*why = "the push has no integer \"message_type\"";
		return false;
	}
	snprintf(type_text, sizeof(type_text), INT64_FORMAT, type);
	event->event_type = psprintf("message_type_%s", type_text);
	seller = json_scalar_text(json_get(root, "seller_id"));
	if (seller != NULL && seller[0] != '\0')
		event->shop_key = pstrdup(seller);
	else
		seller = NULL;
	data = json_get_object(root, "data");

	if (type == LAZADA_PUSH_TRADE_ORDER)
	{
		const char *order = json_scalar_text(json_get(data, "trade_order_id"));
		const char *line = json_scalar_text(json_get(data, "trade_order_line_id"));
		const char *status = json_get_string(data, "order_status");
		const char *reverse = json_scalar_text(json_get(data, "reverse_order_line_id"));

		if (seller == NULL || order == NULL || order[0] == '\0' ||
			line == NULL || line[0] == '\0' ||
			status == NULL || status[0] == '\0' ||
			!json_get_int64(data, "status_update_time", &event->update_time))
		{
			*why = "a trade order push needs seller_id, data.trade_order_id, data.trade_order_line_id, data.order_status and data.status_update_time";
			return false;
		}
		event->kind = WEBHOOK_ORDER;
		event->event_type = pstrdup("trade_order");
		event->order_id = psprintf("%s/%s", order, line);
		event->status = pstrdup(status);
		event->event_key = psprintf("%s:%s:%s:%s:%s:" INT64_FORMAT, seller,
									type_text, order, line, status,
									event->update_time);
		if (reverse != NULL && reverse[0] != '\0')
			event->event_key = psprintf("%s:%s", event->event_key, reverse);
	}
	else if (type == LAZADA_PUSH_SHALLOW_STOCK && seller != NULL &&
			 json_scalar_text(json_get(data, "sku_id")) != NULL)
	{
		event->kind = WEBHOOK_STOCK;
		event->event_type = pstrdup("shallow_stock");
		event->ids[LAZADA_SKU_ID] = pstrdup(json_scalar_text(json_get(data, "sku_id")));
	}
	else
		event->kind = WEBHOOK_IGNORED;
	return true;
}

/*
 * verify_webhook: Authorization = lower-hex HMAC-SHA256(app secret,
 * app key + raw body) (marketplace-apis.md section 3.6).  Unlike API
 * calls, which Lazada signs in upper case, the doc's sample lower-cases
 * the hex; either case is accepted.
 */
static bool
lazada_verify_webhook(const char *app_key, const char *secret,
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
