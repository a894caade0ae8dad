/*-------------------------------------------------------------------------
 *
 * worker_log.c
 *	  Structured log records of the sync worker: one JSON object per event,
 *	  with fixed keys, so that a consumer (jq, a log shipper) can rely on the
 *	  shape under both the stderr and jsonlog destinations.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_log.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "json.h"
#include "worker_internal.h"

/* ,"key":"value" (or null), value escaped as a JSON string */
static void
append_json_key(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		json_append_string(buf, value);
}

/*
 * Emit one event.  Every key is always present (null when it does not
 * apply).  Callers pass no secrets: errors come from adapter_copy_message,
 * URLs only as log_url.  The record is built in a buffer of its own and
 * freed here, whatever context the caller is in.  Order-fetch events
 * carry an "order" key as well.
 */
static void
emit_event(int elevel, const char *event, const char *correlation_id,
		   const ShopState *shop, const char *listings, const char *order_id,
		   int attempt, long http_status, double latency_ms, const char *error)
{
	StringInfoData buf;
	char		number[64];

	if (!message_level_is_interesting(elevel))
		return;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"time\":");
	json_append_string(&buf, timestamptz_to_str(GetCurrentTimestamp()));
	append_json_key(&buf, "level", error_severity(elevel));
	append_json_key(&buf, "event", event);
	append_json_key(&buf, "correlation_id", correlation_id);
	append_json_key(&buf, "channel", shop ? shop->ctx.channel : NULL);
	if (shop)
		appendStringInfo(&buf, ",\"tenant\":" INT64_FORMAT ",\"shop\":" INT64_FORMAT,
						 shop->key.tenant_id, shop->key.shop_id);
	else
		appendStringInfoString(&buf, ",\"tenant\":null,\"shop\":null");
	appendStringInfo(&buf, ",\"listing\":%s", listings ? listings : "null");
	if (order_id != NULL)
		append_json_key(&buf, "order", order_id);
	if (attempt > 0)
		appendStringInfo(&buf, ",\"attempt\":%d", attempt);
	else
		appendStringInfoString(&buf, ",\"attempt\":null");
	if (http_status > 0)
		appendStringInfo(&buf, ",\"http_status\":%ld", http_status);
	else
		appendStringInfoString(&buf, ",\"http_status\":null");
	if (latency_ms >= 0)
	{
		snprintf(number, sizeof(number), "%.3f", latency_ms);
		appendStringInfo(&buf, ",\"latency_ms\":%s", number);
	}
	else
		appendStringInfoString(&buf, ",\"latency_ms\":null");
	append_json_key(&buf, "error", error);
	appendStringInfoChar(&buf, '}');

	ereport(elevel,
			(errmsg_internal("%s", buf.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(buf.data);
}

/* an event about listings (or none) */
void
log_event(int elevel, const char *event, const char *correlation_id,
		  const ShopState *shop, const char *listings, int attempt,
		  long http_status, double latency_ms, const char *error)
{
	emit_event(elevel, event, correlation_id, shop, listings, NULL, attempt,
			   http_status, latency_ms, error);
}

/* an event about a marketplace order the worker fetches */
void
log_order_event(int elevel, const char *event, const char *correlation_id,
				const ShopState *shop, const char *order_id, int attempt,
				long http_status, double latency_ms, const char *error)
{
	emit_event(elevel, event, correlation_id, shop, NULL, order_id, attempt,
			   http_status, latency_ms, error);
}
