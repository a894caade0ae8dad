/*-------------------------------------------------------------------------
 *
 * adapter_sql.c
 *	  SQL-callable hooks into the signing helpers and the channel adapters,
 *	  so that pg_regress can check the exact bytes invsync would put on the
 *	  wire, and how it would read the answers, without any network.
 *
 * These are internal (_-prefixed) functions; the install script declares
 * them and keeps them from PUBLIC.  They take shops and listings as jsonb:
 *
 *	p_shop:		{"external_shop_id", "app_key", "app_secret", "access_token",
 *				 "refresh_token", "base_url", "uses_locations", "region"}
 *	p_listings: [{"listing_id", "item_id", "model_id", "location_id",
 *				  "level"}, ...]
 *
 * Ids may be given as JSON strings or numbers; an absent or null base_url
 * means the marketplace's production host, as in invsync.apps.  A stock response is read
 * the way the engine does: parse_stock_update, then
 * adapter_settle_outcomes.  Having no shop, it treats each listing's
 * location_id as sent (uses_locations on); pass null for shops without
 * warehouses.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/adapter_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "adapter.h"
#include "crypto.h"
#include "json.h"

PG_FUNCTION_INFO_V1(invsync_hmac_sha256_hex);
PG_FUNCTION_INFO_V1(invsync_adapter_stock_request);
PG_FUNCTION_INFO_V1(invsync_adapter_stock_response);
PG_FUNCTION_INFO_V1(invsync_adapter_refresh_request);
PG_FUNCTION_INFO_V1(invsync_adapter_refresh_response);

static const ChannelAdapter *lookup_adapter(text *channel);
static JsonValue *jsonb_to_dom(Jsonb *jb, const char *argname);
static const char *member_text(const JsonValue *object, const char *argname,
							   const char *key, bool required);
static void shop_from_jsonb(Jsonb *jb, const char *channel,
							ShopContext *shop);
static ListingPush *listings_from_jsonb(Jsonb *jb, int max_items,
										int *nitems);
static Datum request_to_record(FunctionCallInfo fcinfo,
							   const HttpRequestSpec *request);
static void append_json_text_or_null(StringInfo buf, const char *value);
static Datum jsonb_from_buf(StringInfo buf);

/*
 * The adapter for a channel argument; ERROR for channels without one.
 */
static const ChannelAdapter *
lookup_adapter(text *channel)
{
	char	   *name = text_to_cstring(channel);
	const ChannelAdapter *adapter = adapter_for_channel(name);

	if (adapter == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown channel \"%s\"", name),
				 errhint("Channels with an adapter: shopee.")));
	return adapter;
}

/*
 * Turn a jsonb argument into a DOM through its text form, so the hooks read
 * their input with the same code the worker reads responses with.
 */
static JsonValue *
jsonb_to_dom(Jsonb *jb, const char *argname)
{
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	JsonValue  *dom = json_parse(text, strlen(text));

	if (dom == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is nested too deeply", argname),
				 errdetail("At most %d levels are accepted.",
						   JSON_MAX_DEPTH)));
	return dom;
}

/*
 * Member key of an argument object as text: strings as they are, numbers
 * as written.  NULL when absent or JSON null and not required; ERROR when
 * required and missing, or of another kind.
 */
static const char *
member_text(const JsonValue *object, const char *argname, const char *key,
			bool required)
{
	const JsonValue *value = json_get(object, key);

	if (value == NULL || value->kind == JSON_KIND_NULL)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s lacks \"%s\"", argname, key)));
		return NULL;
	}
	if (value->kind != JSON_KIND_STRING && value->kind != JSON_KIND_NUMBER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s.%s must be a string or a number", argname, key)));
	return value->text;
}

/*
 * Fill a ShopContext from p_shop; see the file header for the keys.
 */
static void
shop_from_jsonb(Jsonb *jb, const char *channel, ShopContext *shop)
{
	const JsonValue *object = jsonb_to_dom(jb, "p_shop");
	const JsonValue *uses_locations;

	if (object->kind != JSON_KIND_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_shop must be a JSON object")));

	memset(shop, 0, sizeof(ShopContext));
	shop->channel = channel;
	shop->external_shop_id = member_text(object, "p_shop",
										 "external_shop_id", true);
	shop->app_key = member_text(object, "p_shop", "app_key", true);
	shop->app_secret = member_text(object, "p_shop", "app_secret", true);
	shop->access_token = member_text(object, "p_shop", "access_token", false);
	shop->refresh_token = member_text(object, "p_shop", "refresh_token",
									  false);
	shop->base_url = member_text(object, "p_shop", "base_url", false);
	shop->region = member_text(object, "p_shop", "region", false);

	uses_locations = json_get(object, "uses_locations");
	if (uses_locations != NULL && uses_locations->kind != JSON_KIND_NULL)
	{
		if (uses_locations->kind != JSON_KIND_BOOL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_shop.uses_locations must be a boolean")));
		shop->uses_locations = uses_locations->boolean;
	}
}

/*
 * Build the ListingPush array from p_listings, a non-empty array of at
 * most max_items objects; see the file header for the keys.
 */
static ListingPush *
listings_from_jsonb(Jsonb *jb, int max_items, int *nitems)
{
	const JsonValue *array = jsonb_to_dom(jb, "p_listings");
	ListingPush *items;
	int			i;

	if (array->kind != JSON_KIND_ARRAY || array->count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_listings must be a non-empty JSON array")));
	if (array->count > max_items)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_listings has %d listings, more than one call carries",
						array->count),
				 errdetail("This channel takes at most %d listings per call.",
						   max_items)));

	items = palloc0(sizeof(ListingPush) * array->count);
	for (i = 0; i < array->count; i++)
	{
		const JsonValue *object = array->items[i];
		ListingPush *item = &items[i];

		if (object->kind != JSON_KIND_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_listings[%d] must be a JSON object", i)));
		if (!json_get_int64(object, "listing_id", &item->listing_id))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_listings[%d].listing_id must be an integer", i)));
		if (!json_get_int64(object, "level", &item->level))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_listings[%d].level must be an integer", i)));
		item->external_item_id = member_text(object, "p_listings[]",
											 "item_id", true);
		item->external_model_id = member_text(object, "p_listings[]",
											  "model_id", false);
		item->external_location_id = member_text(object, "p_listings[]",
												 "location_id", false);
		item->outcome = SYNC_OUTCOME_NONE;
	}
	*nitems = array->count;
	return items;
}

/*
 * The (method, url, log_url, body) record of a built request.
 */
static Datum
request_to_record(FunctionCallInfo fcinfo, const HttpRequestSpec *request)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = CStringGetTextDatum(request->method);
	values[1] = CStringGetTextDatum(request->url);
	values[2] = CStringGetTextDatum(request->log_url);
	if (request->body != NULL)
		values[3] = PointerGetDatum(cstring_to_text_with_len(request->body,
															 request->body_len));
	else
		nulls[3] = true;

	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * Append value as a JSON string, or null when it is NULL or empty.
 */
static void
append_json_text_or_null(StringInfo buf, const char *value)
{
	if (value == NULL || value[0] == '\0')
		appendStringInfoString(buf, "null");
	else
		json_append_string(buf, value);
}

/*
 * The jsonb for JSON text built here.
 */
static Datum
jsonb_from_buf(StringInfo buf)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf->data));
}

/*
 * invsync._hmac_sha256_hex(p_key, p_message, p_upper): HMAC-SHA256 of the
 * message's bytes under the key's bytes, as hex.
 */
Datum
invsync_hmac_sha256_hex(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	text	   *message = PG_GETARG_TEXT_PP(1);
	bool		upper = PG_GETARG_BOOL(2);
	char		hex[HMAC_SHA256_HEX_LEN + 1];

	if (!hmac_sha256_hex(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
						 VARDATA_ANY(message), VARSIZE_ANY_EXHDR(message),
						 upper, hex))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute HMAC-SHA256")));
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/*
 * invsync._adapter_stock_request(p_channel, p_shop, p_listings, p_now): the
 * signed stock update the channel's adapter builds for these listings.
 * Listings check_listing refuses are passed on as they are, to show that
 * the builder leaves them out.
 */
Datum
invsync_adapter_stock_request(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	ListingPush *items;
	int			nitems;
	HttpRequestSpec request;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	items = listings_from_jsonb(PG_GETARG_JSONB_P(2), adapter->max_batch,
								&nitems);
	memset(&request, 0, sizeof(request));
	adapter->build_stock_update(&shop, items, nitems, PG_GETARG_INT64(3),
								&request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_stock_response(p_channel, p_listings, p_status, p_body,
 * p_retry_after): how the engine would read this answer to a stock update
 * of these listings, as {"outcome", "retry_after_ms", "request_id",
 * "error_code", "error_message", "listings": [{"listing_id", "outcome",
 * "error_code", "error_message"}, ...]}.  A NULL body is an empty one.
 */
Datum
invsync_adapter_stock_response(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	ShopContext shop;
	ListingPush *items;
	int			nitems;
	HttpResponseView response;
	StockCallResult result;
	StringInfoData buf;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_channel, p_listings and p_status must not be null")));
	adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	items = listings_from_jsonb(PG_GETARG_JSONB_P(1), adapter->max_batch,
								&nitems);
	if (PG_GETARG_INT32(2) < 100 || PG_GETARG_INT32(2) > 599)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_status must be an HTTP status between 100 and 599")));

	memset(&shop, 0, sizeof(shop));
	shop.channel = adapter->channel;
	shop.uses_locations = true;

	memset(&response, 0, sizeof(response));
	response.status = PG_GETARG_INT32(2);
	if (!PG_ARGISNULL(3))
	{
		text	   *body = PG_GETARG_TEXT_PP(3);

		response.body = VARDATA_ANY(body);
		response.body_len = VARSIZE_ANY_EXHDR(body);
	}
	else
		response.body = "";
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
		response.retry_after = text_to_cstring(PG_GETARG_TEXT_PP(4));

	memset(&result, 0, sizeof(result));
	adapter->parse_stock_update(&shop, items, nitems, &response, &result);
	adapter_settle_outcomes(items, nitems, &result);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"outcome\":");
	json_append_string(&buf, sync_outcome_name(result.outcome));
	appendStringInfo(&buf, ",\"retry_after_ms\":%d,\"request_id\":",
					 result.retry_after_ms);
	append_json_text_or_null(&buf, result.request_id);
	appendStringInfoString(&buf, ",\"error_code\":");
	append_json_text_or_null(&buf, result.error_code);
	appendStringInfoString(&buf, ",\"error_message\":");
	append_json_text_or_null(&buf, result.error_message);
	appendStringInfoString(&buf, ",\"listings\":[");
	for (i = 0; i < nitems; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"listing_id\":" INT64_FORMAT ",\"outcome\":",
						 items[i].listing_id);
		json_append_string(&buf, sync_outcome_name(items[i].outcome));
		appendStringInfoString(&buf, ",\"error_code\":");
		append_json_text_or_null(&buf, items[i].error_code);
		appendStringInfoString(&buf, ",\"error_message\":");
		append_json_text_or_null(&buf, items[i].error_message);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");

	PG_RETURN_DATUM(jsonb_from_buf(&buf));
}

/*
 * invsync._adapter_refresh_request(p_channel, p_shop, p_now): the signed
 * token refresh the channel's adapter builds for the shop.
 */
Datum
invsync_adapter_refresh_request(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	HttpRequestSpec request;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	memset(&request, 0, sizeof(request));
	adapter->build_token_refresh(&shop, PG_GETARG_INT64(2), &request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_refresh_response(p_channel, p_status, p_body): how the
 * engine would read this answer to a token refresh, as {"outcome",
 * "access_token", "refresh_token", "access_expires_at",
 * "refresh_expires_at", "request_id", "error_code", "error_message"}.
 */
Datum
invsync_adapter_refresh_response(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	ShopContext shop;
	HttpResponseView response;
	TokenRefreshResult result;
	StringInfoData buf;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_channel and p_status must not be null")));
	adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	if (PG_GETARG_INT32(1) < 100 || PG_GETARG_INT32(1) > 599)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_status must be an HTTP status between 100 and 599")));

	memset(&shop, 0, sizeof(shop));
	shop.channel = adapter->channel;

	memset(&response, 0, sizeof(response));
	response.status = PG_GETARG_INT32(1);
	if (!PG_ARGISNULL(2))
	{
		text	   *body = PG_GETARG_TEXT_PP(2);

		response.body = VARDATA_ANY(body);
		response.body_len = VARSIZE_ANY_EXHDR(body);
	}
	else
		response.body = "";

	memset(&result, 0, sizeof(result));
	adapter->parse_token_refresh(&shop, &response, &result);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"outcome\":");
	json_append_string(&buf, sync_outcome_name(result.outcome));
	appendStringInfoString(&buf, ",\"access_token\":");
	append_json_text_or_null(&buf, result.access_token);
	appendStringInfoString(&buf, ",\"refresh_token\":");
	append_json_text_or_null(&buf, result.refresh_token);
	appendStringInfo(&buf,
					 ",\"access_expires_at\":" INT64_FORMAT
					 ",\"refresh_expires_at\":" INT64_FORMAT ",\"request_id\":",
					 result.access_expires_at, result.refresh_expires_at);
	append_json_text_or_null(&buf, result.request_id);
	appendStringInfoString(&buf, ",\"error_code\":");
	append_json_text_or_null(&buf, result.error_code);
	appendStringInfoString(&buf, ",\"error_message\":");
	append_json_text_or_null(&buf, result.error_message);
	appendStringInfoChar(&buf, '}');

	PG_RETURN_DATUM(jsonb_from_buf(&buf));
}
