/*-------------------------------------------------------------------------
 *
 * worker_dispatch.c
 *	  Batches and requests of the sync worker: take waiting rows into
 *	  requests within each shop's limits, send them, and handle each
 *	  finished request once the HTTP drive has returned.
 *
 * A request owns a memory context holding copies of the rows it carries,
 * the adapter's pushes and request, and the parsed response; it sits on
 * the in-flight list from its creation until its outcome is queued for
 * recording, then its context is deleted.  Nothing here runs inside a
 * libcurl callback, and nothing here opens a transaction while handling a
 * finished request: token changes are written by the main loop later.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "worker_internal.h"

/* after a refresh lease could not be taken, try again this much later */
#define REFRESH_RETRY_MS 1000
/* longest X-Correlation-ID the worker sends, in bytes (before the last id) */
#define CORRELATION_HEADER_MAX 512

static dlist_head requests_in_flight = DLIST_STATIC_INIT(requests_in_flight);

/* the finished transfer being handled, freed by abort_requests on ERROR */
static HttpTransfer *transfer_in_hand = NULL;

/*
 * Delay before retrying a row that failed attempts times: exponential from
 * invsync.backoff_base, capped by invsync.backoff_max, with "equal jitter"
 * (half fixed, half random) so retries spread out; never shorter than the
 * marketplace's retry-after hint.
 */
int64
backoff_ms(int attempts, int retry_after_ms)
{
	double		delay = invsync_backoff_base_ms;
	double		jitter;

	delay *= pow(2.0, Min(Max(attempts - 1, 0), 30));
	delay = Min(delay, (double) invsync_backoff_max_ms);
	jitter = (double) pg_prng_double(&pg_global_prng_state);
	delay = delay / 2 + jitter * delay / 2;
	return (int64) Max(delay, (double) retry_after_ms);
}

/* a new request of the shop, with a context of its own, on the in-flight list */
static PushRequest *
new_request(ShopState *shop)
{
	MemoryContext context = AllocSetContextCreate(TopMemoryContext, "invsync request",
												  ALLOCSET_SMALL_SIZES);
	PushRequest *request = MemoryContextAllocZero(context, sizeof(PushRequest));

	request->context = context;
	request->shop = shop;
	dlist_push_tail(&requests_in_flight, &request->node);
	return request;
}

/* take a request off the in-flight list and free everything it owns */
static void
free_request(PushRequest *request)
{
	rows_held -= request->nrows;
	dlist_delete(&request->node);
	MemoryContextDelete(request->context);
}

/* a comma-joined list of the rows' correlation ids, deduplicated, bounded */
static char *
join_correlation_ids(const ClaimedRow *rows, int nrows)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < nrows && buf.len < CORRELATION_HEADER_MAX; i++)
	{
		if (strstr(buf.data, rows[i].correlation_ids) != NULL)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, rows[i].correlation_ids);
	}
	return buf.data;
}

/* the rows' listing ids as a JSON array, for log records */
static char *
listing_ids_json(const ClaimedRow *rows, int nrows)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < nrows; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i ? "," : "", rows[i].listing_id);
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* what the adapter needs of a row; strings point into the row */
static void
fill_push(ListingPush *push, const ClaimedRow *row)
{
	memset(push, 0, sizeof(ListingPush));
	push->listing_id = row->listing_id;
	push->external_item_id = row->item_id;
	push->external_model_id = row->model_id;
	push->external_location_id = row->location_id;
	push->level = row->level;
}

/* copy a waiting row into the request's context and free the original */
static void
move_row_into(PushRequest *request, int slot, ClaimedRow *row)
{
	ClaimedRow *copy = &request->rows[slot];
	MemoryContext context = request->context;

	*copy = *row;
	copy->correlation_ids = MemoryContextStrdup(context, row->correlation_ids);
	copy->item_id = MemoryContextStrdup(context, row->item_id);
	copy->model_id = row->model_id ? MemoryContextStrdup(context, row->model_id) : NULL;
	copy->location_id = row->location_id ?
		MemoryContextStrdup(context, row->location_id) : NULL;
	dlist_delete(&row->node);
	forget_row(row);
	rows_held++;				/* still held, by the request now */
	fill_push(&request->pushes[slot], copy);
}

/* put a row of a request back on its shop's waiting list (resend) */
static void
return_row(ShopState *shop, const ClaimedRow *row)
{
	ClaimedRow *copy = MemoryContextAlloc(rows_context, sizeof(ClaimedRow));

	*copy = *row;
	copy->correlation_ids = MemoryContextStrdup(rows_context, row->correlation_ids);
	copy->item_id = MemoryContextStrdup(rows_context, row->item_id);
	copy->model_id = row->model_id ? MemoryContextStrdup(rows_context, row->model_id) : NULL;
	copy->location_id = row->location_id ?
		MemoryContextStrdup(rows_context, row->location_id) : NULL;
	dlist_push_head(&shop->waiting, &copy->node);
	rows_held++;
}

/*
 * Move up to the adapter's batch size of waiting rows that may share one
 * request into it.  Rows the adapter can never send are settled as dead
 * here.  Returns how many rows were taken.
 */
static int
take_batch(ShopState *shop, PushRequest *request)
{
	int			n = 0;
	int			max = Min(shop->adapter->max_batch, MAX_ADAPTER_BATCH);
	int			misfits = 0;
	TimestampTz now = GetCurrentTimestamp();
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &shop->waiting)
	{
		ClaimedRow *row = dlist_container(ClaimedRow, node, iter.cur);
		ListingPush candidate;
		bool		fits = true;
		int			i;

		/* too late to send within its lease: the next claim hands it back */
		if (row->send_by <= now)
			continue;
		fill_push(&candidate, row);
		if (!adapter_check_listing(shop->adapter, &candidate))
		{
			char		listing[32];

			snprintf(listing, sizeof(listing), "[" INT64_FORMAT "]", row->listing_id);
			log_event(WARNING, "listing_refused", row->correlation_ids, shop,
					  listing, row->attempts, 0, -1, candidate.error_message);
			add_outcome(row, "dead", 0, candidate.error_code, candidate.error_message);
			dlist_delete(&row->node);
			forget_row(row);
			continue;
		}
		for (i = 0; i < n && fits; i++)
			fits = shop->adapter->can_batch(&request->pushes[i], &candidate);
		if (!fits)
		{
			/*
			 * Claims come ordered by item, so the rows of one request are
			 * found together: look no further than one batch past them,
			 * rather than through every waiting row for every request.
			 */
			if (++misfits >= max)
				break;
			continue;
		}
		move_row_into(request, n, row);
		if (++n == max)
			break;
	}
	return n;
}

/*
 * Build and send one stock update of the shop's waiting rows.  False when
 * none of them could go: every one is too late for its lease (the next
 * claim hands them back) or was refused.
 */
static bool
start_stock_update(ShopState *shop)
{
	PushRequest *request = new_request(shop);
	MemoryContext old = MemoryContextSwitchTo(request->context);
	int			n;

	request->rows = palloc(sizeof(ClaimedRow) * MAX_ADAPTER_BATCH);
	request->pushes = palloc(sizeof(ListingPush) * MAX_ADAPTER_BATCH);
	n = take_batch(shop, request);
	request->nrows = n;
	MemoryContextSwitchTo(old);
	if (n == 0)
	{
		free_request(request);
		return false;
	}

	old = MemoryContextSwitchTo(request->context);
	request->correlation_header = join_correlation_ids(request->rows, n);
	request->started = GetCurrentTimestamp();
	shop->adapter->build_stock_update(&shop->ctx, request->pushes, n,
									  (int64) time(NULL), &request->spec);
	MemoryContextSwitchTo(old);

	shop->in_flight++;
	shop->tokens -= 1;
	http_engine_start(worker_engine, &request->spec, request->correlation_header,
					  false, request);
	return true;
}

/*
 * Take the shop's refresh lease and send the refresh.  No lease (someone
 * else holds it, the row is busy, the shop needs re-authorisation) means
 * no refresh here: the shop was reloaded and its rows go out with the
 * token it now has.
 */
static void
start_refresh(ShopState *shop)
{
	char	   *refresh_token = take_refresh_lease(shop);
	PushRequest *request;
	MemoryContext old;

	if (refresh_token == NULL)
	{
		/* no lease: send with the token the shop has, look again later */
		shop->next_refresh_try = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 REFRESH_RETRY_MS);
		return;
	}

	request = new_request(shop);
	old = MemoryContextSwitchTo(request->context);
	request->is_refresh = true;
	request->spent_refresh_token = pstrdup(refresh_token);
	request->correlation_header = psprintf("refresh-" INT64_FORMAT "-" INT64_FORMAT,
										   shop->key.shop_id, (int64) time(NULL));
	request->started = GetCurrentTimestamp();
	shop->ctx.refresh_token = request->spent_refresh_token;
	shop->adapter->build_token_refresh(&shop->ctx, (int64) time(NULL), &request->spec);
	MemoryContextSwitchTo(old);
	pfree(refresh_token);

	shop->refreshing = true;
	shop->in_flight++;
	/* never resent by libcurl: Shopee's refresh tokens are single-use */
	http_engine_start(worker_engine, &request->spec, request->correlation_header,
					  true, request);
}

/* send what every shop's limits allow now */
void
dispatch(void)
{
	HASH_SEQ_STATUS status;
	ShopState  *shop;
	TimestampTz now = GetCurrentTimestamp();
	ShopState **to_refresh;
	int			nrefresh = 0;
	int			i;

	/*
	 * Refreshes start after the scan: taking a refresh lease commits a
	 * transaction, and a commit ends every hash_seq_search scan still open.
	 */
	to_refresh = palloc(sizeof(ShopState *) * (hash_get_num_entries(shop_table()) + 1));

	next_dispatch = 0;
	hash_seq_init(&status, shop_table());
	while ((shop = hash_seq_search(&status)) != NULL)
	{
		double		burst = Max(1.0, shop->rate);

		if (dlist_is_empty(&shop->waiting))
			continue;

		if (shop->adapter == NULL)
		{
			/* a channel without an adapter yet: keep the rows pending */
			while (!dlist_is_empty(&shop->waiting))
			{
				ClaimedRow *row = dlist_container(ClaimedRow, node,
												  dlist_pop_head_node(&shop->waiting));

				add_outcome(row, "retry", invsync_backoff_max_ms, "no_adapter",
							"this channel has no adapter in this version");
				forget_row(row);
			}
			continue;
		}

		shop->tokens = Min(burst, shop->tokens +
						   shop->rate * (double) (now - shop->tokens_at) / USECS_PER_SEC);
		shop->tokens_at = now;

		if (shop->paused_until > now)
		{
			if (next_dispatch == 0 || shop->paused_until < next_dispatch)
				next_dispatch = shop->paused_until;
			continue;
		}
		if (shop->needs_refresh && !shop->refreshing &&
			now >= shop->next_refresh_try &&
			http_engine_running(worker_engine) + nrefresh < invsync_max_in_flight)
		{
			to_refresh[nrefresh++] = shop;
			continue;
		}
		if (shop->refreshing)
			continue;

		/*
		 * Rows too late for their lease stay on the list until the next
		 * claim hands them back: stop at the first request that carries
		 * nothing, rather than build empty ones for ever.
		 */
		while (!dlist_is_empty(&shop->waiting) &&
			   shop->in_flight < shop->max_in_flight &&
			   http_engine_running(worker_engine) < invsync_max_in_flight &&
			   shop->tokens >= 1.0)
		{
			CHECK_FOR_INTERRUPTS();
			if (!start_stock_update(shop))
				break;
		}

		if (!dlist_is_empty(&shop->waiting) && shop->tokens < 1.0)
		{
			TimestampTz refill = TimestampTzPlusMilliseconds(now,
															 (int) ceil((1.0 - shop->tokens) * 1000.0 / shop->rate));

			if (next_dispatch == 0 || refill < next_dispatch)
				next_dispatch = refill;
		}
	}

	for (i = 0; i < nrefresh; i++)
	{
		start_refresh(to_refresh[i]);
		/* no refresh here after all: send with the token it now has */
		if (!to_refresh[i]->refreshing)
			next_dispatch = now;
	}
	pfree(to_refresh);
}

/* classify a finished stock update and queue its outcomes and attempt */
static void
stock_update_done(PushRequest *request, const HttpResult *result)
{
	ShopState  *shop = request->shop;
	StockCallResult call;
	int			nok = 0;
	int			max_attempt = 0;
	int			i;
	const char *attempt_outcome;

	memset(&call, 0, sizeof(call));
	if (result->response.status == 0)
	{
		call.outcome = SYNC_OUTCOME_RETRY;
		strlcpy(call.error_code, "transport", sizeof(call.error_code));
		adapter_copy_message(call.error_message, sizeof(call.error_message),
							 result->transport_error, &shop->ctx);

		/*
		 * Sent but unanswered, the request may still be applied late: wait at
		 * least as long as it was allowed to take before sending a newer
		 * level, so that it cannot land after it.
		 */
		if (result->request_sent)
			call.retry_after_ms = invsync_http_timeout_ms;
	}
	else
		shop->adapter->parse_stock_update(&shop->ctx, request->pushes, request->nrows,
										  &result->response, &call);
	adapter_settle_outcomes(request->pushes, request->nrows, &call);

	for (i = 0; i < request->nrows; i++)
	{
		ClaimedRow *row = &request->rows[i];
		ListingPush *push = &request->pushes[i];

		max_attempt = Max(max_attempt, row->attempts);
		switch (push->outcome)
		{
			case SYNC_OUTCOME_OK:
				nok++;
				add_outcome(row, "ok", 0, NULL, NULL);
				break;
			case SYNC_OUTCOME_AUTH:
				if (!row->auth_retried && shop->ctx.refresh_token != NULL)
				{
					/* refresh, then resend once, under the same lease */
					row->auth_retried = true;
					return_row(shop, row);
					shop->needs_refresh = true;
				}
				else
					add_outcome(row, "retry", backoff_ms(row->attempts, 0),
								"auth", push->error_message);
				break;
			case SYNC_OUTCOME_PERMANENT:
				add_outcome(row, "dead", 0, push->error_code, push->error_message);
				break;
			case SYNC_OUTCOME_THROTTLED:
				add_outcome(row, "retry",
							backoff_ms(row->attempts, call.retry_after_ms),
							"throttled", push->error_message);
				break;
			default:
				add_outcome(row, "retry",
							backoff_ms(row->attempts, call.retry_after_ms),
							push->error_code[0] ? push->error_code : "retry",
							push->error_message);
				break;
		}
	}

	if (call.outcome == SYNC_OUTCOME_THROTTLED)
		shop->paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 Max(call.retry_after_ms,
															 invsync_backoff_base_ms));

	if (nok == request->nrows)
		attempt_outcome = "ok";
	else if (nok > 0)
		attempt_outcome = "partial";
	else
		attempt_outcome = sync_outcome_name(call.outcome == SYNC_OUTCOME_NONE ?
											request->pushes[0].outcome : call.outcome);
	add_attempt(request, result->response.status, attempt_outcome,
				nok == request->nrows ? NULL : call.error_code,
				nok == request->nrows ? NULL : call.error_message,
				call.request_id, result->latency_ms);
	log_event(nok == request->nrows ? DEBUG1 : LOG,
			  nok == request->nrows ? "stock_pushed" : "stock_push_failed",
			  request->correlation_header, shop,
			  listing_ids_json(request->rows, request->nrows), max_attempt,
			  result->response.status, result->latency_ms,
			  nok == request->nrows ? NULL : call.error_message);
}

/* read a finished refresh: keep the new tokens or the failure for writing */
static void
refresh_done(PushRequest *request, const HttpResult *result)
{
	ShopState  *shop = request->shop;
	TokenRefreshResult refresh;
	bool		reauthorize = false;

	memset(&refresh, 0, sizeof(refresh));
	shop->refreshing = false;
	if (result->response.status == 0)
	{
		/*
		 * Sent but unanswered, the refresh token may be spent: reusing it
		 * could be refused or, worse, count as reuse, so the seller must
		 * authorise again.  Not sent at all, it is safe to try later.
		 */
		refresh.outcome = SYNC_OUTCOME_RETRY;
		reauthorize = result->request_sent;
		strlcpy(refresh.error_code, "transport", sizeof(refresh.error_code));
		adapter_copy_message(refresh.error_message, sizeof(refresh.error_message),
							 result->transport_error, &shop->ctx);
	}
	else
	{
		shop->adapter->parse_token_refresh(&shop->ctx, &result->response, &refresh);
		reauthorize = refresh.outcome == SYNC_OUTCOME_PERMANENT;
	}

	if (refresh.outcome == SYNC_OUTCOME_OK)
		shop_store_tokens(shop, request->spent_refresh_token, &refresh);
	else
	{
		shop_refresh_failed(shop, reauthorize, refresh.error_message);
		/* the rows waiting for the new token try again later */
		while (!dlist_is_empty(&shop->waiting))
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node,
											  dlist_pop_head_node(&shop->waiting));

			add_outcome(row, "retry",
						reauthorize ? invsync_backoff_max_ms : backoff_ms(row->attempts, 0),
						"auth", refresh.error_message);
			forget_row(row);
		}
	}

	add_attempt(request, result->response.status,
				sync_outcome_name(refresh.outcome),
				refresh.outcome == SYNC_OUTCOME_OK ? NULL : refresh.error_code,
				refresh.outcome == SYNC_OUTCOME_OK ? NULL : refresh.error_message,
				refresh.request_id, result->latency_ms);
	log_event(refresh.outcome == SYNC_OUTCOME_OK ? LOG : WARNING,
			  refresh.outcome == SYNC_OUTCOME_OK ? "token_refreshed" :
			  (reauthorize ? "token_refresh_failed_reauthorize" : "token_refresh_failed"),
			  request->correlation_header, shop, NULL, 0,
			  result->response.status, result->latency_ms,
			  refresh.outcome == SYNC_OUTCOME_OK ? NULL : refresh.error_message);
}

/*
 * Handle every request libcurl finished, after the drive returned: classify
 * it in the request's own context, queue its outcomes, and free it.
 */
void
handle_finished(void)
{
	const HttpResult *result;
	void	   *arg;

	while ((transfer_in_hand = http_engine_take_finished(worker_engine, &result,
														 &arg)) != NULL)
	{
		PushRequest *request = (PushRequest *) arg;
		MemoryContext old;

		request->shop->in_flight--;

		/*
		 * A slot is free: dispatch at the next turn, without waiting for a
		 * socket, timer or latch that may never come.
		 */
		next_dispatch = GetCurrentTimestamp();

		old = MemoryContextSwitchTo(request->context);
		if (request->is_refresh)
			refresh_done(request, result);
		else
			stock_update_done(request, result);
		MemoryContextSwitchTo(old);

		http_transfer_free(transfer_in_hand);
		transfer_in_hand = NULL;
		free_request(request);
	}
}

/*
 * After an ERROR: abort every transfer first, so that libcurl holds no
 * pointer into a request, then free the requests.  Their rows' leases
 * bring them back; a request that was sent may still be applied, and the
 * lease (longer than the HTTP timeout) keeps a newer level from passing it.
 */
void
abort_requests(void)
{
	dlist_mutable_iter iter;

	if (transfer_in_hand != NULL)
	{
		http_transfer_free(transfer_in_hand);
		transfer_in_hand = NULL;
	}
	http_engine_abort_all(worker_engine);
	dlist_foreach_modify(iter, &requests_in_flight)
	{
		PushRequest *request = dlist_container(PushRequest, node, iter.cur);

		free_request(request);
	}
}
