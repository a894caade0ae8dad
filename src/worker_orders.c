/*-------------------------------------------------------------------------
 *
 * worker_orders.c
 *	  Order fetches: a marketplace's order push rarely carries the order's
 *	  lines, so handle_webhook() queues a fetch (invsync.order_fetches) and
 *	  the worker reads the order through the channel's adapter, then
 *	  applies it (invsync._record_order_fetch, which calls _apply_order).
 *
 * A fetch follows the rules of a push: it is claimed with a lease in the
 * claim's transaction (_claim_order_fetches, FOR UPDATE SKIP LOCKED),
 * waits on its shop's fetch list, and is sent through the same HTTP
 * engine within the shop's token bucket and in-flight cap, holding no
 * transaction; an AUTH answer refreshes the shop's token and resends it
 * once under the same lease.  Its outcome waits in fetch_context and is
 * recorded in a new transaction, compare-and-set on the version claimed:
 * a fetch whose lease was lost changes nothing, and one whose order was
 * pushed again meanwhile is applied and fetched again.  The attempt row
 * (kind order_fetch) goes with the push attempts (add_attempt).
 *
 * An application holding the fetch row makes _record_order_fetch answer
 * "locked": the outcome stays and is recorded again a little later, after
 * a wait that doubles, as outcomes of pushes are.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_orders.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "worker_internal.h"

/* longest X-Correlation-ID of a fetch, in bytes */
#define FETCH_CORRELATION_MAX 512

/* one fetch outcome waiting to be recorded */
typedef struct PendingFetch
{
	int64		tenant_id;
	int64		shop_id;
	char	   *order_id;
	int64		version;
	const char *outcome;		/* "ok", "retry" or "dead" (static) */
	int64		due_in_ms;
	char	   *status;			/* ok: the order fetched */
	int64		update_time;	/* ok: Unix seconds */
	char	   *lines;			/* ok: JSON, as _apply_order takes them */
	char	   *error_class;
	char	   *error;
	char	   *correlation_id;
	char	   *channel;
} PendingFetch;

int			fetches_held = 0;	/* claimed fetches not yet settled */

static MemoryContext fetch_context = NULL;
static PendingFetch *pending = NULL;
static int	npending = 0;
static int	pending_size = 0;
static int	record_retries = 0;
static TimestampTz next_record_attempt = 0;

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr record_plan = NULL;

/* set up the outcome buffer; once per worker */
void
orders_init(void)
{
	fetch_context = AllocSetContextCreate(TopMemoryContext,
										  "invsync order fetch records",
										  ALLOCSET_DEFAULT_SIZES);
	reset_fetches();
}

/* forget every fetch outcome not written yet (after an ERROR) */
void
reset_fetches(void)
{
	MemoryContextReset(fetch_context);
	pending_size = 16;
	pending = MemoryContextAlloc(fetch_context, sizeof(PendingFetch) * pending_size);
	npending = 0;
	record_retries = 0;
	next_record_attempt = 0;
	fetches_held = 0;
}

/*
 * Claim due order fetches and put them on their shops' fetch lists.  In
 * the claim's transaction; the caller reloads the shops.
 */
void
claim_order_fetches(TimestampTz now, int64 send_window)
{
	Oid			types[3] = {TIMESTAMPTZOID, INTERVALOID, INT4OID};
	Datum		values[3];
	int			limit = invsync_batch_size - fetches_held;
	uint64		i;

	if (limit <= 0)
		return;
	values[0] = TimestampTzGetDatum(now);
	values[1] = interval_ms_datum(invsync_lease_ms);
	values[2] = Int32GetDatum(limit);
	execute_plan(keep_plan(&claim_plan,
						   "SELECT tenant_id, shop_id, order_id, version, attempts, "
						   "array_to_string(correlation_ids, ', ') "
						   "FROM invsync._claim_order_fetches($1, $2, $3)",
						   3, types),
				 values, NULL, SPI_OK_SELECT);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClaimedFetch *fetch = MemoryContextAllocZero(rows_context, sizeof(ClaimedFetch));
		char	   *ids = SPI_getvalue(tuple, desc, 6);
		ShopState  *shop;
		bool		isnull;

		fetch->tenant_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		fetch->shop_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		fetch->order_id = MemoryContextStrdup(rows_context,
											  SPI_getvalue(tuple, desc, 3));
		fetch->version = DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull));
		fetch->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 5, &isnull));
		fetch->send_by = TimestampTzPlusMilliseconds(now, send_window);
		fetch->correlation_ids = MemoryContextStrdup(rows_context,
													 ids && ids[0] ? ids : "none");
		if (strlen(fetch->correlation_ids) > FETCH_CORRELATION_MAX)
			fetch->correlation_ids[FETCH_CORRELATION_MAX] = '\0';
		shop = get_shop(fetch->tenant_id, fetch->shop_id);
		shop_wait(shop, &shop->fetches, &fetch->node, false);
		fetches_held++;
	}
}

/* free a claimed fetch that waited on its shop's list (off the list) */
void
forget_fetch(ClaimedFetch *fetch)
{
	fetches_held--;
	pfree(fetch->order_id);
	pfree(fetch->correlation_ids);
	pfree(fetch);
}

/* a copy in fetch_context, or NULL */
static char *
fetch_strdup(const char *value)
{
	return value ? MemoryContextStrdup(fetch_context, value) : NULL;
}

/* queue a fetch's outcome for the next record transaction */
static void
add_fetch_outcome(const ClaimedFetch *fetch, const ShopState *shop,
				  const char *outcome, int64 due_in_ms, const OrderDetail *detail,
				  const char *lines, const char *error_class, const char *error)
{
	PendingFetch *p;

	if (npending == pending_size)
	{
		pending_size *= 2;
		pending = repalloc(pending, sizeof(PendingFetch) * pending_size);
	}
	p = &pending[npending++];
	memset(p, 0, sizeof(PendingFetch));
	p->tenant_id = fetch->tenant_id;
	p->shop_id = fetch->shop_id;
	p->order_id = fetch_strdup(fetch->order_id);
	p->version = fetch->version;
	p->outcome = outcome;
	p->due_in_ms = due_in_ms;
	p->status = fetch_strdup(detail ? detail->status : NULL);
	p->update_time = detail ? detail->update_time : 0;
	p->lines = fetch_strdup(lines);
	p->error_class = fetch_strdup(error_class);
	p->error = fetch_strdup(error);
	p->correlation_id = fetch_strdup(fetch->correlation_ids);
	p->channel = fetch_strdup(shop->ctx.channel);
}

/*
 * Build and send the fetch of the shop's first waiting order.  A fetch too
 * late for its lease is dropped (the lease brings it back); one whose
 * channel cannot fetch orders becomes a dead letter.  False when no fetch
 * was waiting.
 */
bool
start_order_fetch(ShopState *shop)
{
	ClaimedFetch *fetch;
	PushRequest *request;
	MemoryContext old;

	if (dlist_is_empty(&shop->fetches))
		return false;
	fetch = dlist_container(ClaimedFetch, node, dlist_pop_head_node(&shop->fetches));

	if (fetch->send_by <= GetCurrentTimestamp())
	{
		forget_fetch(fetch);
		return true;
	}
	if (shop->adapter->build_order_fetch == NULL || shop->ctx.api_base_url == NULL)
	{
		const char *why = shop->ctx.api_base_url == NULL ?
			"the channel has no API host for the shop's region; set the app's base_url" :
			"this channel's adapter cannot fetch orders";

		log_order_event(WARNING, "order_fetch_refused", fetch->correlation_ids,
						shop, fetch->order_id, fetch->attempts, 0, -1, why);
		add_fetch_outcome(fetch, shop, "dead", 0, NULL, NULL,
						  shop->ctx.api_base_url == NULL ? "no_host" : "no_order_fetch",
						  why);
		forget_fetch(fetch);
		return true;
	}

	/* the request owns a copy of the fetch; it stays held until settled */
	request = new_request(shop);
	old = MemoryContextSwitchTo(request->context);
	request->fetch = palloc(sizeof(ClaimedFetch));
	*request->fetch = *fetch;
	request->fetch->order_id = pstrdup(fetch->order_id);
	request->fetch->correlation_ids = pstrdup(fetch->correlation_ids);
	request->correlation_header = request->fetch->correlation_ids;
	request->started = GetCurrentTimestamp();
	shop->adapter->build_order_fetch(&shop->ctx, request->fetch->order_id,
									 (int64) time(NULL) * 1000, &request->spec);
	request->log_url = request_url(&request->spec, true);
	MemoryContextSwitchTo(old);
	forget_fetch(fetch);
	fetches_held++;				/* still held, by the request now */

	shop->in_flight++;
	shop->tokens -= 1;
	http_engine_start(worker_engine, &request->spec, request->correlation_header,
					  false, request, request->context);
	return true;
}

/*
 * Read a finished fetch and queue its outcome and attempt.  In the
 * request's context; the caller frees the request.
 */
void
order_fetch_done(PushRequest *request, const HttpResult *result)
{
	ShopState  *shop = request->shop;
	ClaimedFetch *fetch = request->fetch;
	OrderDetail detail;
	CallResult *call = &detail.call;
	char	   *lines = NULL;

	memset(&detail, 0, sizeof(detail));
	if (result->response.status == 0)
	{
		call->outcome = SYNC_OUTCOME_RETRY;
		strlcpy(call->error_code, "transport", sizeof(call->error_code));
		adapter_copy_message(call->error_message, sizeof(call->error_message),
							 result->transport_error, &shop->ctx);
	}
	else
		shop->adapter->parse_order_fetch(&shop->ctx, fetch->order_id,
										 &result->response, &detail);

	switch (call->outcome)
	{
		case SYNC_OUTCOME_OK:
			lines = adapter_order_lines_json(shop->adapter, &detail);
			add_fetch_outcome(fetch, shop, "ok", 0, &detail, lines, NULL, NULL);
			break;
		case SYNC_OUTCOME_AUTH:
			if (!fetch->auth_retried && shop->ctx.refresh_token != NULL)
			{
				/* refresh, then resend once, under the same lease */
				ClaimedFetch *copy = MemoryContextAlloc(rows_context, sizeof(ClaimedFetch));

				*copy = *fetch;
				copy->auth_retried = true;
				copy->order_id = MemoryContextStrdup(rows_context, fetch->order_id);
				copy->correlation_ids = MemoryContextStrdup(rows_context,
															fetch->correlation_ids);
				shop_wait(shop, &shop->fetches, &copy->node, true);
				fetches_held++;
				shop->needs_refresh = true;
			}
			else
				add_fetch_outcome(fetch, shop, "retry", backoff_ms(fetch->attempts, 0),
								  NULL, NULL, "auth", call->error_message);
			break;
		case SYNC_OUTCOME_PERMANENT:
			add_fetch_outcome(fetch, shop, "dead", 0, NULL, NULL,
							  call->error_code, call->error_message);
			break;
		case SYNC_OUTCOME_THROTTLED:
			add_fetch_outcome(fetch, shop, "retry",
							  backoff_ms(fetch->attempts, call->retry_after_ms),
							  NULL, NULL, "throttled", call->error_message);
			shop->paused_until =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											Max(call->retry_after_ms,
												invsync_backoff_base_ms));
			break;
		default:
			add_fetch_outcome(fetch, shop, "retry",
							  backoff_ms(fetch->attempts, call->retry_after_ms),
							  NULL, NULL,
							  call->error_code[0] ? call->error_code : "retry",
							  call->error_message);
			break;
	}

	add_attempt(request, result->response.status,
				sync_outcome_name(call->outcome),
				call->outcome == SYNC_OUTCOME_OK ? NULL : call->error_code,
				call->outcome == SYNC_OUTCOME_OK ? NULL : call->error_message,
				call->request_id, result->latency_ms);
	log_order_event(call->outcome == SYNC_OUTCOME_OK ? LOG : WARNING,
					call->outcome == SYNC_OUTCOME_OK ? "order_fetched" : "order_fetch_failed",
					request->correlation_header, shop, fetch->order_id,
					fetch->attempts, result->response.status, result->latency_ms,
					call->outcome == SYNC_OUTCOME_OK ? NULL : call->error_message);
}

/* a shop's refresh failed: its waiting fetches try again later */
void
fail_waiting_fetches(ShopState *shop, bool reauthorize, const char *error)
{
	while (!dlist_is_empty(&shop->fetches))
	{
		ClaimedFetch *fetch = dlist_container(ClaimedFetch, node,
											  dlist_pop_head_node(&shop->fetches));

		add_fetch_outcome(fetch, shop, "retry",
						  reauthorize ? invsync_backoff_max_ms : backoff_ms(fetch->attempts, 0),
						  NULL, NULL, "auth", error);
		forget_fetch(fetch);
	}
}

/* how long the main loop may sleep before fetch outcomes are due; -1: none */
long
fetch_record_wait_ms(TimestampTz now)
{
	if (npending == 0)
		return -1;
	if (next_record_attempt == 0)
		return 0;
	return TimestampDifferenceMilliseconds(now, next_record_attempt);
}

/* a text datum, or a NULL one */
static Datum
text_datum(const char *value, char *null)
{
	*null = value ? ' ' : 'n';
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}

/*
 * Record the fetch outcomes waiting, each in a transaction of its own: it
 * applies its order (ok) and settles its fetch row.  One transaction for
 * all would hold the fetch, order and stock rows of the first while it
 * waits for those of the next, in no order a push's transaction can
 * follow (a push locks its order, then its skus in order, then its fetch
 * row): deadlocks under a storm of pushes.  Those whose row an
 * application held are kept for a later turn.
 */
void
flush_fetch_records(void)
{
	Oid			types[12] = {INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, INT8OID,
	TEXTOID, TIMESTAMPTZOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	int			kept = 0;
	int			i;

	if (npending == 0)
		return;
	if (next_record_attempt != 0 && GetCurrentTimestamp() < next_record_attempt)
		return;

	for (i = 0; i < npending; i++)
	{
		PendingFetch *p = &pending[i];
		Datum		values[12];
		char		nulls[13] = "            ";
		char	   *result;
		bool		ok = strcmp(p->outcome, "ok") == 0;
		ShopState	logged_shop;

		begin_work("invsync: record order fetches");
		if (i == 0 && !check_extension())
		{
			end_work();
			reset_fetches();
			return;
		}
		keep_plan(&record_plan,
				  "SELECT invsync._record_order_fetch($1, $2, $3, $4, $5, $6, $7, "
				  "$8, $9, $10, $11, $12)",
				  12, types);
		values[0] = Int64GetDatum(p->tenant_id);
		values[1] = Int64GetDatum(p->shop_id);
		values[2] = CStringGetTextDatum(p->order_id);
		values[3] = Int64GetDatum(p->version);
		values[4] = CStringGetTextDatum(p->outcome);
		values[5] = Int64GetDatum(p->due_in_ms);
		values[6] = text_datum(p->status, &nulls[6]);
		values[7] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) p->update_time));
		nulls[7] = ok ? ' ' : 'n';
		if (ok)
			values[8] = DirectFunctionCall1(jsonb_in, CStringGetDatum(p->lines));
		else
			values[8] = (Datum) 0;
		nulls[8] = ok ? ' ' : 'n';
		values[9] = text_datum(p->error_class, &nulls[9]);
		values[10] = text_datum(p->error, &nulls[10]);
		values[11] = TimestampTzGetDatum(GetCurrentTimestamp());
		execute_plan(record_plan, values, nulls, SPI_OK_SELECT);

		result = SPI_processed == 1 ?
			SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
		if (result != NULL && strcmp(result, "locked") == 0)
		{
			end_work();
			pending[kept++] = *p;
			continue;
		}
		/* the shop as the record names it: it may have left the cache */
		memset(&logged_shop, 0, sizeof(logged_shop));
		logged_shop.key.tenant_id = p->tenant_id;
		logged_shop.key.shop_id = p->shop_id;
		logged_shop.ctx.channel = p->channel;
		log_order_event(ok ? LOG : (strcmp(p->outcome, "dead") == 0 ? WARNING : DEBUG1),
						ok ? "order_applied" :
						(strcmp(p->outcome, "dead") == 0 ? "order_fetch_dead" : "order_fetch_retry"),
						p->correlation_id, &logged_shop,
						p->order_id, 0, 0, -1, ok ? NULL : result);
		end_work();
	}

	npending = kept;
	if (kept > 0)
	{
		next_record_attempt =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										10 << Min(record_retries, 7));
		record_retries++;
	}
	else
	{
		/* everything is written: start the buffer afresh */
		MemoryContextReset(fetch_context);
		pending_size = 16;
		pending = MemoryContextAlloc(fetch_context, sizeof(PendingFetch) * pending_size);
		record_retries = 0;
		next_record_attempt = 0;
	}
}
