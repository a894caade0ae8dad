/*-------------------------------------------------------------------------
 *
 * channels.c
 *	  SQL functions that apply what the adapters declare: which channels
 *	  exist, the identifier attributes of each channel's listings (checked,
 *	  made canonical and mirrored into the generic columns when a listing
 *	  is stored), and the per-app batch size.
 *
 * It also reads marketplace pushes for invsync.handle_webhook(): the
 * channel's adapter finds the shop and the event in a push and checks its
 * signature, and tells what an order status means for stock.
 *
 * Adding a channel touches none of this: it reads the registry.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/channels.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "access/detoast.h"
#include "utils/jsonb.h"

#include "adapter.h"
#include "invsync.h"
#include "json.h"

PG_FUNCTION_INFO_V1(invsync_is_channel);
PG_FUNCTION_INFO_V1(invsync_channel_attributes);
PG_FUNCTION_INFO_V1(invsync_listing_ids);
PG_FUNCTION_INFO_V1(invsync_order_status);
PG_FUNCTION_INFO_V1(invsync_webhook_read);
PG_FUNCTION_INFO_V1(invsync_webhook_verify);

static const char *const effect_names[] = {
	[ORDER_EFFECT_NONE] = "none",
	[ORDER_EFFECT_RESERVE] = "reserve",
	[ORDER_EFFECT_FULFILL] = "fulfill",
	[ORDER_EFFECT_RELEASE] = "release"
};

static const char *const webhook_kind_names[] = {
	[WEBHOOK_IGNORED] = "ignored",
	[WEBHOOK_ORDER] = "order",
	[WEBHOOK_STOCK] = "stock"
};

static const char *const slot_names[] = {
	[LISTING_SLOT_NONE] = NULL,
	[LISTING_SLOT_ITEM] = "external_item_id",
	[LISTING_SLOT_VARIANT] = "external_model_id",
	[LISTING_SLOT_LOCATION] = "external_location_id"
};

/* the adapter of a channel; ERROR (IV028) when there is none */
static const ChannelAdapter *
channel_adapter(const char *channel)
{
	const ChannelAdapter *adapter = adapter_for_channel(channel);

	if (adapter == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
				 errmsg("channel \"%s\" has no adapter", channel)));
	return adapter;
}

/*
 * SQL: invsync._is_channel(p_channel text) returns boolean, for the CHECK
 * on invsync.apps: is the channel in the registry?
 */
Datum
invsync_is_channel(PG_FUNCTION_ARGS)
{
	char	   *channel = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *const *names;

	for (names = adapter_channel_names(); *names != NULL; names++)
	{
		if (strcmp(*names, channel) == 0)
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}

/*
 * SQL: invsync.channel_attributes() returns setof record: per channel with
 * an adapter, each listing attribute: its position, the generic column it
 * is mirrored in, its kind, whether it is required and its default, and
 * whether it groups listings into one request (batch) or claims them
 * together (siblings); with the channel's default and largest batch.
 */
Datum
invsync_channel_attributes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *const *names;

	InitMaterializedSRF(fcinfo, 0);
	for (names = adapter_channel_names(); *names != NULL; names++)
	{
		const ChannelAdapter *adapter = adapter_for_channel(*names);
		int			i;

		if (adapter == NULL)
			continue;
		for (i = 0; i < adapter->nattributes; i++)
		{
			const ListingAttribute *attribute = &adapter->attributes[i];
			Datum		values[11];
			bool		nulls[11] = {0};

			values[0] = CStringGetTextDatum(adapter->channel);
			values[1] = CStringGetTextDatum(attribute->name);
			values[2] = Int32GetDatum(i + 1);
			if (slot_names[attribute->slot] != NULL)
				values[3] = CStringGetTextDatum(slot_names[attribute->slot]);
			else
				nulls[3] = true;
			values[4] = CStringGetTextDatum(attribute->kind == LISTING_ID_INTEGER ?
											"integer" : "text");
			values[5] = BoolGetDatum(attribute->required);
			if (attribute->default_value != NULL)
				values[6] = CStringGetTextDatum(attribute->default_value);
			else
				nulls[6] = true;
			values[7] = BoolGetDatum((adapter->batch_by & LISTING_ATTRIBUTE(i)) != 0);
			values[8] = BoolGetDatum((adapter->siblings_by & LISTING_ATTRIBUTE(i)) != 0);
			values[9] = Int32GetDatum(adapter->default_batch);
			values[10] = Int32GetDatum(adapter->max_batch);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}

/* the text of a JSON string or integer id; ERROR (IV028) for anything else */
static const char *
id_text(const ChannelAdapter *adapter, const char *name, const JsonValue *value)
{
	if (value->kind == JSON_KIND_STRING)
		return value->text;
	if (value->kind == JSON_KIND_NUMBER && strspn(value->text, "0123456789") == strlen(value->text))
		return value->text;
	ereport(ERROR,
			(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
			 errmsg("%s listing attribute %s must be a string or an integer",
					adapter->channel, name)));
	return NULL;				/* keep compiler quiet */
}

/* a JSON array of the values of the attributes in set, or NULL if none */
static char *
key_of(const ChannelAdapter *adapter, ListingAttributeSet set,
	   const char **values)
{
	StringInfoData key;
	int			i;
	bool		first = true;

	if (set == 0)
		return NULL;
	initStringInfo(&key);
	appendStringInfoChar(&key, '[');
	for (i = 0; i < adapter->nattributes; i++)
	{
		if ((set & LISTING_ATTRIBUTE(i)) == 0)
			continue;
		if (!first)
			appendStringInfoChar(&key, ',');
		first = false;
		if (values[i] != NULL)
			json_append_string(&key, values[i]);
		else
			appendStringInfoString(&key, "null");
	}
	appendStringInfoChar(&key, ']');
	return key.data;
}

/*
 * SQL: invsync._listing_ids(p_channel, p_ids jsonb, p_item, p_model,
 * p_location, p_use_ids, p_use_columns) returns (external_ids jsonb,
 * item_id text, model_id text, location_id text, batch_key text,
 * sibling_key text).
 *
 * The identifiers of a listing being stored, from listings.external_ids
 * (p_use_ids) and from the generic columns (p_use_columns), checked against
 * the channel's attributes: unknown attributes, values of the wrong form,
 * missing required ones and disagreeing sources are IV028.  Returns them
 * canonical (integers without leading zeros, defaults filled in), the
 * generic columns that mirror them, and the keys the claim groups by.
 */
Datum
invsync_listing_ids(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	const char *values[LISTING_MAX_ATTRIBUTES] = {0};
	const char *columns[4] = {0};
	bool		use_ids;
	bool		use_columns;
	TupleDesc	tupdesc;
	Datum		result[6];
	bool		nulls[6] = {0};
	StringInfoData ids;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
				 errmsg("the listing's shop has no channel")));
	adapter = channel_adapter(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	for (i = 1; i <= 3; i++)
		columns[i] = PG_ARGISNULL(i + 1) ? NULL :
			text_to_cstring(PG_GETARG_TEXT_PP(i + 1));
	use_ids = !PG_ARGISNULL(5) && PG_GETARG_BOOL(5);
	use_columns = !PG_ARGISNULL(6) && PG_GETARG_BOOL(6);

	if (use_ids && !PG_ARGISNULL(1))
	{
		Jsonb	   *jb = PG_GETARG_JSONB_P(1);
		char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		JsonValue  *object = json_parse(text, strlen(text));

		if (object == NULL || object->kind != JSON_KIND_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
					 errmsg("external_ids must be a JSON object of the channel's listing attributes")));
		for (i = 0; i < object->count; i++)
		{
			int			index = adapter_attribute_index(adapter, object->keys[i]);

			if (index < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
						 errmsg("%s listings have no attribute \"%.40s\"",
								adapter->channel, object->keys[i]),
						 errhint("invsync.channel_attributes() lists them.")));
			if (object->items[i]->kind != JSON_KIND_NULL)
				values[index] = id_text(adapter, adapter->attributes[index].name,
										object->items[i]);
		}
	}

	for (i = 0; i < adapter->nattributes; i++)
	{
		const ListingAttribute *attribute = &adapter->attributes[i];
		const char *column = use_columns ? columns[attribute->slot] : NULL;
		const char *why;

		if (values[i] != NULL && values[i][0] == '\0')
			values[i] = NULL;
		if (column != NULL && column[0] == '\0')
			column = NULL;
		if (attribute->slot != LISTING_SLOT_NONE && column != NULL)
		{
			if (values[i] != NULL && strcmp(values[i], column) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
						 errmsg("%s and external_ids.%s differ",
								slot_names[attribute->slot], attribute->name),
						 errhint("Give the id once, or the same in both.")));
			values[i] = column;
		}
		if (values[i] == NULL)
			values[i] = attribute->default_value;

		/* integers canonical: "007" is item 7 */
		if (values[i] != NULL && attribute->kind == LISTING_ID_INTEGER &&
			strspn(values[i], "0123456789") == strlen(values[i]))
		{
			while (values[i][0] == '0' && values[i][1] != '\0')
				values[i]++;
		}
		if ((why = adapter_check_id(attribute, values[i], false)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
					 errmsg("%s listing attribute %s %s", adapter->channel,
							attribute->name, why)));
	}

	/* a slot no attribute fills must stay empty */
	for (i = 1; i <= 3; i++)
	{
		int			k;
		bool		used = false;

		for (k = 0; k < adapter->nattributes; k++)
			used |= adapter->attributes[k].slot == (ListingSlot) i;
		if (!used && use_columns && columns[i] != NULL && columns[i][0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_BAD_LISTING_IDS),
					 errmsg("%s listings have no id for %s", adapter->channel,
							slot_names[i])));
	}

	initStringInfo(&ids);
	appendStringInfoChar(&ids, '{');
	for (i = 0; i < adapter->nattributes; i++)
	{
		if (values[i] == NULL)
			continue;
		if (ids.len > 1)
			appendStringInfoChar(&ids, ',');
		json_append_string(&ids, adapter->attributes[i].name);
		appendStringInfoChar(&ids, ':');
		json_append_string(&ids, values[i]);
	}
	appendStringInfoChar(&ids, '}');

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	result[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ids.data));
	for (i = 1; i <= 3; i++)
	{
		int			k;

		nulls[i] = true;
		for (k = 0; k < adapter->nattributes; k++)
		{
			if (adapter->attributes[k].slot == (ListingSlot) i && values[k] != NULL)
			{
				result[i] = CStringGetTextDatum(values[k]);
				nulls[i] = false;
			}
		}
	}
	{
		char	   *batch_key = key_of(adapter, adapter->batch_by, values);
		char	   *sibling_key = key_of(adapter, adapter->siblings_by, values);

		nulls[4] = batch_key == NULL;
		if (batch_key)
			result[4] = CStringGetTextDatum(batch_key);
		nulls[5] = sibling_key == NULL;
		if (sibling_key)
			result[5] = CStringGetTextDatum(sibling_key);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, nulls)));
}

/* the adapter of a push's channel, with webhook support; IV034 otherwise */
static const ChannelAdapter *
push_adapter(text *channel_text)
{
	char	   *channel = text_to_cstring(channel_text);
	const ChannelAdapter *adapter = adapter_for_channel(channel);

	if (adapter == NULL || adapter->parse_webhook == NULL ||
		adapter->verify_webhook == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_UNKNOWN_CHANNEL),
				 errmsg("channel \"%.40s\" takes no pushes", channel),
				 errhint("invsync.channel_attributes() lists the channels.")));
	return adapter;
}

/*
 * SQL: invsync._order_status(p_channel, p_status) returns (effect text,
 * rank integer): what an order status of the channel means for stock
 * ("reserve", "fulfill", "release" or "none") and its place in an order's
 * life.  A status the channel does not list is "none", rank 0.
 */
Datum
invsync_order_status(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter =
		adapter_for_channel(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	const OrderStatus *status = NULL;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (adapter != NULL)
		status = adapter_order_status(adapter, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = CStringGetTextDatum(effect_names[status ? status->effect : ORDER_EFFECT_NONE]);
	values[1] = Int32GetDatum(status ? status->rank : 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* the push's raw body, bounded (IV032) */
static void
push_body(FunctionCallInfo fcinfo, int arg, WebhookRequest *request)
{
	text	   *body;

	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_MALFORMED_PUSH),
				 errmsg("the push has no body")));
	/* the size first, before the value is detoasted */
	if (toast_raw_datum_size(PG_GETARG_DATUM(arg)) - VARHDRSZ > WEBHOOK_MAX_BODY)
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_PUSH_TOO_LARGE),
				 errmsg("the push body is larger than %d bytes", WEBHOOK_MAX_BODY)));
	body = PG_GETARG_TEXT_PP(arg);
	request->body = VARDATA_ANY(body);
	request->body_len = VARSIZE_ANY_EXHDR(body);
}

/*
 * SQL: invsync._webhook_read(p_channel, p_body) returns (kind, shop_key,
 * event_key, event_type, order_id, status, update_time, ids): what the
 * push says, before its signature is checked (the shop it names decides
 * the key).  IV032 for a body over WEBHOOK_MAX_BODY bytes, IV031 for one
 * that is not a push of the channel.
 */
Datum
invsync_webhook_read(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	WebhookRequest request;
	WebhookEvent event;
	const char *why = NULL;
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {0};
	StringInfoData ids;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_UNKNOWN_CHANNEL),
				 errmsg("the push names no channel")));
	adapter = push_adapter(PG_GETARG_TEXT_PP(0));
	memset(&request, 0, sizeof(request));
	push_body(fcinfo, 1, &request);
	if (!adapter->parse_webhook(&request, &event, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_MALFORMED_PUSH),
				 errmsg("malformed %s push", adapter->channel),
				 errdetail("%s.", why ? why : "The body is not a push of this marketplace")));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = CStringGetTextDatum(webhook_kind_names[event.kind]);
#define TEXT_OR_NULL(n, v) \
	do { if ((v) != NULL) values[n] = CStringGetTextDatum(v); else nulls[n] = true; } while (0)
	TEXT_OR_NULL(1, event.shop_key);
	TEXT_OR_NULL(2, event.event_key);
	TEXT_OR_NULL(3, event.event_type);
	TEXT_OR_NULL(4, event.order_id);
	TEXT_OR_NULL(5, event.status);
#undef TEXT_OR_NULL
	if (event.update_time > 0)
		values[6] = Int64GetDatum(event.update_time);
	else
		nulls[6] = true;

	initStringInfo(&ids);
	appendStringInfoChar(&ids, '{');
	for (i = 0; i < adapter->nattributes; i++)
	{
		if (event.ids[i] == NULL)
			continue;
		if (ids.len > 1)
			appendStringInfoChar(&ids, ',');
		json_append_string(&ids, adapter->attributes[i].name);
		appendStringInfoChar(&ids, ':');
		json_append_string(&ids, event.ids[i]);
	}
	appendStringInfoChar(&ids, '}');
	values[7] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ids.data));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * SQL: invsync._webhook_verify(p_channel, p_app_key, p_secret, p_url,
 * p_headers, p_body) returns boolean: is the push signed with this app's
 * key?  The signature is the header the channel names, matched without
 * regard to the case of header names.
 */
Datum
invsync_webhook_verify(PG_FUNCTION_ARGS)
{
	const ChannelAdapter *adapter;
	WebhookRequest request;
	const char *app_key;
	const char *secret;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	adapter = push_adapter(PG_GETARG_TEXT_PP(0));
	app_key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	secret = text_to_cstring(PG_GETARG_TEXT_PP(2));
	memset(&request, 0, sizeof(request));
	request.url = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	push_body(fcinfo, 5, &request);
	if (!PG_ARGISNULL(4))
	{
		Jsonb	   *jb = PG_GETARG_JSONB_P(4);
		char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		JsonValue  *headers = json_parse(text, strlen(text));
		int			i;

		for (i = 0; headers != NULL && headers->kind == JSON_KIND_OBJECT &&
			 i < headers->count; i++)
		{
			if (pg_strcasecmp(headers->keys[i], adapter->webhook_signature_header) == 0 &&
				headers->items[i]->kind == JSON_KIND_STRING)
				request.signature = headers->items[i]->text;
		}
	}
	PG_RETURN_BOOL(adapter->verify_webhook(app_key, secret, &request));
}
