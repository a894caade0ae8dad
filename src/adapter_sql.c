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
 *				 "refresh_token", "base_url", "auth_base_url",
 *				 "uses_locations", "region"}
 *	p_listings: [{"listing_id", "level", <attribute>: <id>, ...}, ...]
 *
 * where the attributes are the channel's listing attributes (Shopee:
 * item_id, model_id, location_id; see invsync.channel_attributes).  Ids
 * may be given as JSON strings or numbers; absent or null base URLs mean
 * the marketplace's production hosts, as in invsync.apps.  Listings go
 * through the engine's own rules: one that can never be sent is settled
 * without a call and left out of the request, and listings that could not
 * share one request are an error.  A response is read the way the engine
 * does: the adapter's parse function, then adapter_settle_outcomes.
 * Without a shop, a response is read as for a shop with warehouses.
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
PG_FUNCTION_INFO_V1(invsync_adapter_read_request);
PG_FUNCTION_INFO_V1(invsync_adapter_read_response);
PG_FUNCTION_INFO_V1(invsync_adapter_order_request);
PG_FUNCTION_INFO_V1(invsync_adapter_order_response);

static const ChannelAdapter *lookup_adapter(text *channel);
static JsonValue *jsonb_to_dom(Jsonb *jb, const char *argname);
static const char *member_text(const JsonValue *object, const char *argname,
							   const char *key, bool required);
static void shop_from_jsonb(Jsonb *jb, const char *channel,
							ShopContext *shop);
static ListingPush *listings_from_jsonb(const ChannelAdapter *adapter,
										Jsonb *jb, int max_items,
										bool levels, int *nitems);
static ListingPush *sendable_batch(const ChannelAdapter *adapter,
								   ListingAttributeSet batch_by,
								   ListingPush *items, int nitems,
								   int *nsendable);
static void response_from_args(FunctionCallInfo fcinfo, int status_arg,
							   int body_arg, int headers_arg,
							   HttpResponseView *response);
static void settle_batch(ListingPush *items, int nitems, ListingPush *batch,
						 int nbatch, const CallResult *result);
static Datum listings_result(const CallResult *result,
							 const ListingPush *items, int nitems,
							 bool levels);
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
				 errhint("See invsync.channel_attributes() for the channels with an adapter.")));
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
	shop->region = member_text(object, "p_shop", "region", false);
	adapter_resolve_hosts(adapter_for_channel(channel), shop,
						  member_text(object, "p_shop", "base_url", false),
						  member_text(object, "p_shop", "auth_base_url", false));
	if (shop->api_base_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has no API host for region \"%s\"", channel,
						shop->region ? shop->region : ""),
				 errhint("Give p_shop a base_url or a region the channel serves.")));

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
 * most max_items objects; see the file header for the keys.  A level is
 * required when levels is set.
 */
static ListingPush *
listings_from_jsonb(const ChannelAdapter *adapter, Jsonb *jb, int max_items,
					bool levels, int *nitems)
{
	const JsonValue *array = jsonb_to_dom(jb, "p_listings");
	ListingPush *items;
	int			i;
	int			k;

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
		if ((levels || json_get(object, "level") != NULL) &&
			!json_get_int64(object, "level", &item->level))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_listings[%d].level must be an integer", i)));
		for (k = 0; k < adapter->nattributes; k++)
		{
			const ListingAttribute *attribute = &adapter->attributes[k];

			item->ids[k] = member_text(object, "p_listings[]", attribute->name,
									   false);
			if (item->ids[k] == NULL && attribute->default_value != NULL)
				item->ids[k] = attribute->default_value;
		}
		item->outcome = SYNC_OUTCOME_NONE;
		item->read_level = -1;
	}
	*nitems = array->count;
	return items;
}

/*
 * The listings of items that go on the wire, as the engine would send
 * them: those adapter_check_listing refuses are settled and left out; the
 * others must fit in one request (ERROR otherwise).
 */
static ListingPush *
sendable_batch(const ChannelAdapter *adapter, ListingAttributeSet batch_by,
			   ListingPush *items, int nitems, int *nsendable)
{
	ListingPush *batch = palloc0(sizeof(ListingPush) * nitems);
	int			n = 0;
	int			i;

	for (i = 0; i < nitems; i++)
	{
		if (!adapter_check_listing(adapter, &items[i]))
			continue;
		if (!adapter_batch_fits(adapter, batch_by, batch, n, &items[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_listings[%d] cannot share a request with the listings before it", i),
					 errdetail("The engine batches only listings that agree on the channel's batch attributes and differ in some id.")));
		batch[n++] = items[i];
	}
	*nsendable = n;
	return batch;
}

/*
 * The (method, url, log_url, headers, body) record of a built request:
 * headers as a JSON object, secret ones redacted as in the engine's logs.
 */
static Datum
request_to_record(FunctionCallInfo fcinfo, const HttpRequestSpec *request)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	StringInfoData headers;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	initStringInfo(&headers);
	appendStringInfoChar(&headers, '{');
	for (i = 0; i < request->nheaders; i++)
	{
		if (i > 0)
			appendStringInfoChar(&headers, ',');
		json_append_string(&headers, request->headers[i].name);
		appendStringInfoChar(&headers, ':');
		json_append_string(&headers, request->headers[i].secret ?
						   "[redacted]" : request->headers[i].value);
	}
	appendStringInfoChar(&headers, '}');

	values[0] = CStringGetTextDatum(request->method);
	values[1] = CStringGetTextDatum(request_url(request, false));
	values[2] = CStringGetTextDatum(request_url(request, true));
	values[3] = jsonb_from_buf(&headers);
	if (request->body != NULL)
		values[4] = PointerGetDatum(cstring_to_text_with_len(request->body,
															 request->body_len));
	else
		nulls[4] = true;

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
 * The response of a hook's arguments: HTTP status (100-599), body (NULL is
 * empty) and headers, a JSON object of name: value (NULL for none).
 */
static void
response_from_args(FunctionCallInfo fcinfo, int status_arg, int body_arg,
				   int headers_arg, HttpResponseView *response)
{
	memset(response, 0, sizeof(HttpResponseView));
	if (PG_ARGISNULL(status_arg) ||
		PG_GETARG_INT32(status_arg) < 100 || PG_GETARG_INT32(status_arg) > 599)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_status must be an HTTP status between 100 and 599")));
	response->status = PG_GETARG_INT32(status_arg);
	if (!PG_ARGISNULL(body_arg))
	{
		text	   *body = PG_GETARG_TEXT_PP(body_arg);

		response->body = VARDATA_ANY(body);
		response->body_len = VARSIZE_ANY_EXHDR(body);
	}
	else
		response->body = "";
	if (headers_arg < PG_NARGS() && !PG_ARGISNULL(headers_arg))
	{
		const JsonValue *object = jsonb_to_dom(PG_GETARG_JSONB_P(headers_arg),
											   "p_headers");
		StringInfoData lines;
		int			i;

		if (object->kind != JSON_KIND_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("p_headers must be a JSON object")));
		initStringInfo(&lines);
		for (i = 0; i < object->count; i++)
			appendStringInfo(&lines, "%s: %s\r\n", object->keys[i],
							 json_scalar_text(object->items[i]) ?
							 json_scalar_text(object->items[i]) : "");
		response->headers = lines.data;
	}
}

/*
 * Settle the listings of a batch the adapter read an answer for, as the
 * engine does, and put them back among the caller's listings, in the
 * caller's order (those sendable_batch left out are settled already).
 */
static void
settle_batch(ListingPush *items, int nitems, ListingPush *batch, int nbatch,
			 const CallResult *result)
{
	int			i;
	int			k;

	adapter_settle_outcomes(batch, nbatch, result);
	for (i = 0, k = 0; i < nitems && k < nbatch; i++)
	{
		if (items[i].outcome == SYNC_OUTCOME_NONE &&
			items[i].listing_id == batch[k].listing_id)
			items[i] = batch[k++];
	}
}

/*
 * {"outcome", "retry_after_ms", "request_id", "error_code",
 * "error_message", "listings": [{"listing_id", "outcome", ["level",]
 * "error_code", "error_message"}, ...]}
 */
static Datum
listings_result(const CallResult *result, const ListingPush *items,
				int nitems, bool levels)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"outcome\":");
	json_append_string(&buf, sync_outcome_name(result->outcome));
	appendStringInfo(&buf, ",\"retry_after_ms\":%d,\"request_id\":",
					 result->retry_after_ms);
	append_json_text_or_null(&buf, result->request_id);
	appendStringInfoString(&buf, ",\"error_code\":");
	append_json_text_or_null(&buf, result->error_code);
	appendStringInfoString(&buf, ",\"error_message\":");
	append_json_text_or_null(&buf, result->error_message);
	appendStringInfoString(&buf, ",\"listings\":[");
	for (i = 0; i < nitems; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"listing_id\":" INT64_FORMAT ",\"outcome\":",
						 items[i].listing_id);
		json_append_string(&buf, sync_outcome_name(items[i].outcome));
		if (levels)
		{
			if (items[i].read_level >= 0)
				appendStringInfo(&buf, ",\"level\":" INT64_FORMAT,
								 items[i].read_level);
			else
				appendStringInfoString(&buf, ",\"level\":null");
		}
		appendStringInfoString(&buf, ",\"error_code\":");
		append_json_text_or_null(&buf, items[i].error_code);
		appendStringInfoString(&buf, ",\"error_message\":");
		append_json_text_or_null(&buf, items[i].error_message);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return jsonb_from_buf(&buf);
}

/*
 * invsync._adapter_stock_request(p_channel, p_shop, p_listings, p_now): the
 * signed stock update the channel's adapter builds for these listings at
 * p_now (Unix seconds).
 */
Datum
invsync_adapter_stock_request(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	ListingPush *items;
	ListingPush *batch;
	int			nitems;
	int			nbatch;
	HttpRequestSpec request;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	items = listings_from_jsonb(adapter, PG_GETARG_JSONB_P(2),
								adapter->max_batch, true, &nitems);
	batch = sendable_batch(adapter, adapter->batch_by, items, nitems, &nbatch);
	adapter->build_push(&shop, batch, nbatch, PG_GETARG_INT64(3) * 1000,
						&request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_stock_response(p_channel, p_listings, p_status, p_body,
 * p_retry_after, p_headers, p_shop): how the engine would read this answer
 * to a stock update of these listings (see listings_result).  p_retry_after
 * is a Retry-After header.
 */
Datum
invsync_adapter_stock_response(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	ShopContext shop;
	ListingPush *items;
	ListingPush *batch;
	int			nitems;
	int			nbatch;
	HttpResponseView response;
	CallResult	result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_channel and p_listings must not be null")));
	adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	items = listings_from_jsonb(adapter, PG_GETARG_JSONB_P(1),
								adapter->max_batch, true, &nitems);
	response_from_args(fcinfo, 2, 3, 5, &response);
	if (!PG_ARGISNULL(4))
		response.headers = psprintf("Retry-After: %s\r\n%s",
									text_to_cstring(PG_GETARG_TEXT_PP(4)),
									response.headers ? response.headers : "");
	if (!PG_ARGISNULL(6))
		shop_from_jsonb(PG_GETARG_JSONB_P(6), adapter->channel, &shop);
	else
	{
		memset(&shop, 0, sizeof(shop));
		shop.channel = adapter->channel;
		shop.uses_locations = true;
	}

	batch = sendable_batch(adapter, adapter->batch_by, items, nitems, &nbatch);
	memset(&result, 0, sizeof(result));
	adapter->parse_push(&shop, batch, nbatch, &response, &result);
	settle_batch(items, nitems, batch, nbatch, &result);
	PG_RETURN_DATUM(listings_result(&result, items, nitems, false));
}

/*
 * invsync._adapter_read_request(p_channel, p_shop, p_listings, p_now): the
 * signed request reading these listings' levels.
 */
Datum
invsync_adapter_read_request(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	ListingPush *items;
	ListingPush *batch;
	int			nitems;
	int			nbatch;
	HttpRequestSpec request;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	items = listings_from_jsonb(adapter, PG_GETARG_JSONB_P(2),
								adapter->max_read_batch, false, &nitems);
	batch = sendable_batch(adapter, adapter->read_by, items, nitems, &nbatch);
	adapter->build_read_levels(&shop, batch, nbatch, PG_GETARG_INT64(3) * 1000,
							   &request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_read_response(p_channel, p_shop, p_listings, p_status,
 * p_body, p_headers): the levels the engine would read from this answer,
 * as listings_result with each listing's "level".
 */
Datum
invsync_adapter_read_response(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	ListingPush *items;
	ListingPush *batch;
	int			nitems;
	int			nbatch;
	HttpResponseView response;
	CallResult	result;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	items = listings_from_jsonb(adapter, PG_GETARG_JSONB_P(2),
								adapter->max_read_batch, false, &nitems);
	response_from_args(fcinfo, 3, 4, 5, &response);
	batch = sendable_batch(adapter, adapter->read_by, items, nitems, &nbatch);
	memset(&result, 0, sizeof(result));
	adapter->parse_read_levels(&shop, batch, nbatch, &response, &result);
	settle_batch(items, nitems, batch, nbatch, &result);
	PG_RETURN_DATUM(listings_result(&result, items, nitems, true));
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
	adapter->build_refresh(&shop, PG_GETARG_INT64(2) * 1000, &request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_refresh_response(p_channel, p_status, p_body,
 * p_headers): how the engine would read this answer to a token refresh, as
 * {"outcome", "access_token", "refresh_token", "access_expires_at",
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

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_channel must not be null")));
	adapter = lookup_adapter(PG_GETARG_TEXT_PP(0));
	response_from_args(fcinfo, 1, 2, 3, &response);

	memset(&shop, 0, sizeof(shop));
	shop.channel = adapter->channel;

	memset(&result, 0, sizeof(result));
	adapter->parse_refresh(&shop, &response, &result);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"outcome\":");
	json_append_string(&buf, sync_outcome_name(result.call.outcome));
	appendStringInfoString(&buf, ",\"access_token\":");
	append_json_text_or_null(&buf, result.access_token);
	appendStringInfoString(&buf, ",\"refresh_token\":");
	append_json_text_or_null(&buf, result.refresh_token);
	appendStringInfo(&buf,
					 ",\"access_expires_at\":" INT64_FORMAT
					 ",\"refresh_expires_at\":" INT64_FORMAT ",\"request_id\":",
					 result.access_expires_at, result.refresh_expires_at);
	append_json_text_or_null(&buf, result.call.request_id);
	appendStringInfoString(&buf, ",\"error_code\":");
	append_json_text_or_null(&buf, result.call.error_code);
	appendStringInfoString(&buf, ",\"error_message\":");
	append_json_text_or_null(&buf, result.call.error_message);
	appendStringInfoChar(&buf, '}');

	PG_RETURN_DATUM(jsonb_from_buf(&buf));
}

/* the adapter of p_channel, which must fetch orders */
static const ChannelAdapter *
order_adapter(text *channel)
{
	const ChannelAdapter *adapter = lookup_adapter(channel);

	if (adapter->build_order_fetch == NULL || adapter->parse_order_fetch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("channel \"%s\" cannot fetch orders", adapter->channel)));
	return adapter;
}

/*
 * invsync._adapter_order_request(p_channel, p_shop, p_order_id, p_now): the
 * signed order-detail request the channel's adapter builds at p_now (Unix
 * seconds).
 */
Datum
invsync_adapter_order_request(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter = order_adapter(PG_GETARG_TEXT_PP(0));
	ShopContext shop;
	HttpRequestSpec request;

	shop_from_jsonb(PG_GETARG_JSONB_P(1), adapter->channel, &shop);
	adapter->build_order_fetch(&shop, text_to_cstring(PG_GETARG_TEXT_PP(2)),
							   PG_GETARG_INT64(3) * 1000, &request);
	return request_to_record(fcinfo, &request);
}

/*
 * invsync._adapter_order_response(p_channel, p_order_id, p_status, p_body,
 * p_headers): how the engine would read this answer to an order fetch, as
 * {"outcome", "retry_after_ms", "request_id", "error_code",
 * "error_message", "status", "update_time", "lines": [{"ids": {attribute:
 * id}, "qty"}]} (the lines as invsync._apply_order takes them).
 */
Datum
invsync_adapter_order_response(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	ShopContext shop;
	HttpResponseView response;
	OrderDetail detail;
	StringInfoData buf;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("p_channel and p_order_id must not be null")));
	adapter = order_adapter(PG_GETARG_TEXT_PP(0));
	response_from_args(fcinfo, 2, 3, 4, &response);

	memset(&shop, 0, sizeof(shop));
	shop.channel = adapter->channel;
	memset(&detail, 0, sizeof(detail));
	adapter->parse_order_fetch(&shop, text_to_cstring(PG_GETARG_TEXT_PP(1)),
							   &response, &detail);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"outcome\":");
	json_append_string(&buf, sync_outcome_name(detail.call.outcome));
	appendStringInfo(&buf, ",\"retry_after_ms\":%d,\"request_id\":",
					 detail.call.retry_after_ms);
	append_json_text_or_null(&buf, detail.call.request_id);
	appendStringInfoString(&buf, ",\"error_code\":");
	append_json_text_or_null(&buf, detail.call.error_code);
	appendStringInfoString(&buf, ",\"error_message\":");
	append_json_text_or_null(&buf, detail.call.error_message);
	if (detail.call.outcome != SYNC_OUTCOME_OK)
	{
		appendStringInfoChar(&buf, '}');
		PG_RETURN_DATUM(jsonb_from_buf(&buf));
	}
	appendStringInfoString(&buf, ",\"status\":");
	append_json_text_or_null(&buf, detail.status);
	appendStringInfo(&buf, ",\"update_time\":" INT64_FORMAT ",\"lines\":%s}",
					 detail.update_time, adapter_order_lines_json(adapter, &detail));
	PG_RETURN_DATUM(jsonb_from_buf(&buf));
}
