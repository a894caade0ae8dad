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
 * recording, then its context is emptied for a later request.  Nothing
 * here runs inside a libcurl callback, and nothing here opens a
 * transaction while handling a finished request: token changes are
 * written by the main loop later.
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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "worker_internal.h"

/* after a refresh lease could not be taken, try again this much later */
#define REFRESH_RETRY_MS 1000
/* rows that do not fit a request looked at before it is sent as it is */
#define MAX_MISFITS 8
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

/*
 * The first block of a request's context: a request of one listing (its
 * rows, the adapter's request, the transfer and the parsed answer) fits in
 * it.  It is allocated with the context and kept when the context is
 * reset, so a finished request's context serves a later one: no malloc a
 * request (and glibc consolidates its fast bins before a malloc that
 * large).
 */
#define REQUEST_CONTEXT_INIT_SIZE (32 * 1024)
/* contexts of finished requests kept for new ones, at most */
#define SPARE_CONTEXTS_MAX 64

static MemoryContext spare_contexts[SPARE_CONTEXTS_MAX];
static int	nspare_contexts = 0;

/* a new request of the shop, with a context of its own, on the in-flight list */
PushRequest *
new_request(ShopState *shop)
{
	MemoryContext context;
	PushRequest *request;

	if (nspare_contexts > 0)
		context = spare_contexts[--nspare_contexts];
	else
		context = AllocSetContextCreate(TopMemoryContext, "invsync request",
										REQUEST_CONTEXT_INIT_SIZE,
										REQUEST_CONTEXT_INIT_SIZE,
										ALLOCSET_DEFAULT_MAXSIZE);
	request = MemoryContextAllocZero(context, sizeof(PushRequest));
	request->context = context;
	request->shop = shop;
	dlist_push_tail(&requests_in_flight, &request->node);
	return request;
}

/*
 * Take a request off the in-flight list and free everything it owns; its
 * context, emptied, is kept for a later request while there is room.
 */
static void
free_request(PushRequest *request)
{
	MemoryContext context = request->context;

	rows_held -= request->nrows;
	request->shop->rows_in_flight -= request->nrows;
	if (request->fetch != NULL)
		fetches_held--;
	dlist_delete(&request->node);
	if (nspare_contexts < SPARE_CONTEXTS_MAX)
	{
		MemoryContextReset(context);
		spare_contexts[nspare_contexts++] = context;
	}
	else
		MemoryContextDelete(context);
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

/*
 * What the adapter needs of a row: its level and the values of the
 * adapter's attributes (read from external_ids when it was claimed).
 */
static void
fill_push(ListingPush *push, ClaimedRow *row, const ChannelAdapter *adapter)
{
	int			i;

	memset(push, 0, sizeof(ListingPush));
	push->listing_id = row->listing_id;
	push->level = row->level;
	push->read_level = -1;
	for (i = 0; i < adapter->nattributes; i++)
		push->ids[i] = row->ids[i] ? row->ids[i] : adapter->attributes[i].default_value;
}

/* a copy of row in context, off any list */
static ClaimedRow *
copy_row(const ClaimedRow *row, ClaimedRow *copy, MemoryContext context)
{
	int			i;

	if (copy == NULL)
		copy = MemoryContextAlloc(context, sizeof(ClaimedRow));
	*copy = *row;
	copy->correlation_ids = MemoryContextStrdup(context, row->correlation_ids);
	copy->sibling_key = row->sibling_key ?
		MemoryContextStrdup(context, row->sibling_key) : NULL;
	for (i = 0; i < LISTING_MAX_ATTRIBUTES; i++)
		copy->ids[i] = row->ids[i] ? MemoryContextStrdup(context, row->ids[i]) : NULL;
	return copy;
}

/*
 * Copy a waiting row into the request's context, with the push take_batch
 * read from it, and free the original.
 */
static void
move_row_into(PushRequest *request, int slot, ClaimedRow *row,
			  const ListingPush *push)
{
	ListingPush *copy = &request->pushes[slot];
	ClaimedRow *moved = copy_row(row, &request->rows[slot], request->context);
	int			i;

	/* the push's ids are the row's (now the copy's) or static defaults */
	*copy = *push;
	for (i = 0; i < LISTING_MAX_ATTRIBUTES; i++)
	{
		if (copy->ids[i] != NULL && copy->ids[i] == row->ids[i])
			copy->ids[i] = moved->ids[i];
	}
	dlist_delete(&row->node);
	forget_row(row);
	rows_held++;				/* still held, by the request now */
	request->shop->rows_in_flight++;
}

/* put a row of a request back on its shop's waiting list (resend) */
static void
return_row(ShopState *shop, const ClaimedRow *row)
{
	ClaimedRow *copy = copy_row(row, NULL, rows_context);

	shop_wait(shop, &shop->waiting, &copy->node, true);
	rows_held++;
}

/* settle a row the adapter can never send as a dead letter */
static void
refuse_row(ShopState *shop, ClaimedRow *row, const char *code,
		   const char *message)
{
	char		listing[32];

	snprintf(listing, sizeof(listing), "[" INT64_FORMAT "]", row->listing_id);
	log_event(WARNING, "listing_refused", row->correlation_ids, shop,
			  listing, row->attempts, 0, -1, message);
	add_outcome(row, "dead", 0, code, message);
	dlist_delete(&row->node);
	forget_row(row);
}

/*
 * Room for the rows a batch is made of: the sibling group looked at, its
 * pushes, and the request's rows and pushes.  Sized for a batch, grown for
 * a sibling group larger than that (it goes alone), never for the whole
 * waiting list: a shop may have thousands of rows waiting.
 */
typedef struct BatchScratch
{
	int			room;
	ClaimedRow **group;
	ListingPush *candidates;
} BatchScratch;

static void
grow_scratch(BatchScratch *scratch, int room)
{
	if (room <= scratch->room)
		return;
	scratch->group = repalloc(scratch->group, sizeof(ClaimedRow *) * room);
	scratch->candidates = repalloc(scratch->candidates, sizeof(ListingPush) * room);
	scratch->room = room;
}

static void
grow_request(PushRequest *request, int room)
{
	if (room <= request->room)
		return;
	request->rows = repalloc(request->rows, sizeof(ClaimedRow) * room);
	request->pushes = repalloc(request->pushes, sizeof(ListingPush) * room);
	request->room = room;
}

/*
 * The waiting rows of row's sibling group (row first), or row alone.  The
 * claim takes a group whole and orders it together, and a request hands
 * its rows back together, so a group's rows wait side by side: only the
 * rows that follow row are looked at, not the whole list.
 */
static int
sibling_group(ShopState *shop, ClaimedRow *row, BatchScratch *scratch)
{
	dlist_node *next = &row->node;
	int			n = 1;

	scratch->group[0] = row;
	if (row->sibling_key == NULL)
		return n;
	while (dlist_has_next(&shop->waiting, next))
	{
		ClaimedRow *other;

		next = dlist_next_node(&shop->waiting, next);
		other = dlist_container(ClaimedRow, node, next);
		if (other->sibling_key == NULL ||
			strcmp(other->sibling_key, row->sibling_key) != 0)
			break;
		if (n == scratch->room)
			grow_scratch(scratch, 2 * scratch->room);
		scratch->group[n++] = other;
	}
	return n;
}

/*
 * Move up to the shop's batch size of waiting rows that may share one
 * request into it, sibling groups whole (a group larger than the batch
 * goes alone).  Rows the adapter can never send are settled as dead here.
 * Returns how many rows were taken.
 */
static int
take_batch(ShopState *shop, PushRequest *request)
{
	const ChannelAdapter *adapter = shop->adapter;
	int			n = 0;
	int			max = Max(shop->batch_size, 1);
	int			misfits = 0;
	TimestampTz now = GetCurrentTimestamp();
	BatchScratch scratch;
	dlist_mutable_iter iter;

	if (shop->ctx.api_base_url == NULL)
	{
		/* no host: every waiting row is refused alike */
		while (!dlist_is_empty(&shop->waiting))
			refuse_row(shop, dlist_container(ClaimedRow, node,
											 dlist_head_node(&shop->waiting)),
					   "no_host", "the channel has no API host for the shop's region; set the app's base_url");
		return 0;
	}

	scratch.room = max;
	scratch.group = palloc(sizeof(ClaimedRow *) * max);
	scratch.candidates = palloc(sizeof(ListingPush) * max);
restart:
	dlist_foreach_modify(iter, &shop->waiting)
	{
		ClaimedRow *row = dlist_container(ClaimedRow, node, iter.cur);
		ClaimedRow **group;
		ListingPush *candidates;
		int			ngroup;
		bool		fits = true;
		int			i;

		/* too late to send within its lease: the next claim hands it back */
		if (row->send_by <= now)
			continue;
		ngroup = sibling_group(shop, row, &scratch);
		group = scratch.group;
		candidates = scratch.candidates;
		for (i = 0; i < ngroup; i++)
			fill_push(&candidates[i], group[i], adapter);
		if (n > 0 && (n + ngroup > max || row->alone || request->rows[0].alone))
			fits = false;
		for (i = 0; i < ngroup && fits; i++)
			fits = adapter_batch_fits(adapter, adapter->batch_by,
									  request->pushes, n, &candidates[i]) &&
				adapter_batch_fits(adapter, adapter->batch_by,
								   candidates, i, &candidates[i]);
		if (!fits)
		{
			/*
			 * Claims come ordered by batch key, so the rows of one request
			 * are found together: look only a few rows past them (rows of
			 * a later claim may join), not through every waiting row for
			 * every request.  A row that does not fit is checked when it
			 * heads a request of its own.
			 */
			if (++misfits >= MAX_MISFITS)
				break;
			continue;
		}
		for (i = 0; i < ngroup; i++)
		{
			if (!adapter_check_listing(adapter, &candidates[i]))
			{
				/* one unsendable sibling holds back the group: refuse them all */
				int			k;

				for (k = 0; k < ngroup; k++)
					refuse_row(shop, group[k], candidates[i].error_code,
							   candidates[i].error_message);
				goto restart;
			}
		}
		grow_request(request, n + ngroup);
		for (i = 0; i < ngroup; i++)
			move_row_into(request, n++, group[i], &candidates[i]);
		if (n >= max || request->rows[0].alone)
			break;
		/* the group's other rows left the list: walk it again */
		if (ngroup > 1)
			goto restart;
	}
	pfree(scratch.group);
	pfree(scratch.candidates);
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
	MemoryContext old;
	int			n;

	old = MemoryContextSwitchTo(request->context);
	request->room = Max(shop->batch_size, 1);
	request->rows = palloc(sizeof(ClaimedRow) * request->room);
	request->pushes = palloc(sizeof(ListingPush) * request->room);
	MemoryContextSwitchTo(old);
	n = take_batch(shop, request);
	request->nrows = n;
	if (n == 0)
	{
		free_request(request);
		return false;
	}

	old = MemoryContextSwitchTo(request->context);
	request->correlation_header = join_correlation_ids(request->rows, n);
	request->started = GetCurrentTimestamp();
	shop->adapter->build_push(&shop->ctx, request->pushes, n,
							  (int64) time(NULL) * 1000, &request->spec);
	request->log_url = request_url(&request->spec, true);
	MemoryContextSwitchTo(old);

	shop->in_flight++;
	shop->tokens -= 1;
	http_engine_start(worker_engine, &request->spec, request->correlation_header,
					  false, request, request->context);
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
	shop->adapter->build_refresh(&shop->ctx, (int64) time(NULL) * 1000, &request->spec);
	request->log_url = request_url(&request->spec, true);
	MemoryContextSwitchTo(old);
	pfree(refresh_token);

	shop->refreshing = true;
	shop->in_flight++;
	/* never resent by libcurl: Shopee's refresh tokens are single-use */
	http_engine_start(worker_engine, &request->spec, request->correlation_header,
					  true, request, request->context);
}

/* send what every shop's limits allow now */
void
dispatch(void)
{
	dlist_mutable_iter shops;
	TimestampTz now = GetCurrentTimestamp();
	ShopState **to_refresh = NULL;
	int			nrefresh = 0;
	int			room = 0;
	int			i;

	next_dispatch = 0;
	dlist_foreach_modify(shops, busy_shops())
	{
		ShopState  *shop = dlist_container(ShopState, list_node, shops.cur);

		if (dlist_is_empty(&shop->waiting) && dlist_is_empty(&shop->fetches))
		{
			move_if_idle(shop);	/* to the idle list, if so */
			continue;
		}

		if (shop->adapter == NULL)
		{
			/* their leases bring them back, for a version that has one */
			while (!dlist_is_empty(&shop->fetches))
				forget_fetch(dlist_container(ClaimedFetch, node,
											 dlist_pop_head_node(&shop->fetches)));
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

		refill_tokens(shop, now);

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
			/*
			 * Refreshes start after the scan: each takes its refresh lease
			 * in a transaction of its own.
			 */
			if (nrefresh == room)
			{
				room = Max(8, 2 * room);
				if (to_refresh == NULL)
					to_refresh = palloc(room * sizeof(ShopState *));
				else
					to_refresh = repalloc(to_refresh, room * sizeof(ShopState *));
			}
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
		while ((!dlist_is_empty(&shop->waiting) || !dlist_is_empty(&shop->fetches)) &&
			   shop->in_flight < shop->max_in_flight &&
			   http_engine_running(worker_engine) < invsync_max_in_flight &&
			   shop->tokens >= 1.0)
		{
			bool		sent = false;

			CHECK_FOR_INTERRUPTS();
			/* an order fetch goes first: its order holds stock nowhere yet */
			if (!dlist_is_empty(&shop->fetches))
				sent = start_order_fetch(shop);
			if (!sent && !dlist_is_empty(&shop->waiting))
				sent = start_stock_update(shop);
			if (!sent)
				break;
		}

		if ((!dlist_is_empty(&shop->waiting) || !dlist_is_empty(&shop->fetches)) &&
			shop->tokens < 1.0)
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
	if (to_refresh)
		pfree(to_refresh);
	forget_idle_shops();
}

/*
 * A marketplace may refuse a whole call for what one of its listings is
 * (TikTok's 400 for a SKU whose warehouses do not match), without saying
 * which.  Rather than make dead letters of every listing the call carried,
 * send each sibling group of it again on its own, under the same lease:
 * the listings that are fine go through, and the one at fault is refused
 * alone, with the marketplace's reason.  True when the request was split
 * (its rows are waiting again); only a call refused as a whole
 * (PERMANENT, no listing decided by the adapter) carrying more than one
 * group is.
 */
static bool
split_refused_request(PushRequest *request, const CallResult *call,
					  const HttpResult *result)
{
	ShopState  *shop = request->shop;
	int			groups = 0;
	int			i;

	if (call->outcome != SYNC_OUTCOME_PERMANENT)
		return false;
	for (i = 0; i < request->nrows; i++)
	{
		const ClaimedRow *row = &request->rows[i];

		if (request->pushes[i].outcome != SYNC_OUTCOME_NONE || row->alone)
			return false;
		if (i == 0 || row->sibling_key == NULL ||
			request->rows[i - 1].sibling_key == NULL ||
			strcmp(row->sibling_key, request->rows[i - 1].sibling_key) != 0)
			groups++;
	}
	if (groups < 2)
		return false;

	for (i = request->nrows - 1; i >= 0; i--)
	{
		request->rows[i].alone = true;
		return_row(shop, &request->rows[i]);
	}
	add_attempt(request, result->response.status, "permanent", "split",
				call->error_message, call->request_id, result->latency_ms);
	log_event(LOG, "stock_push_split", request->correlation_header, shop,
			  listing_ids_json(request->rows, request->nrows),
			  request->rows[0].attempts, result->response.status,
			  result->latency_ms, call->error_message);
	return true;
}

/* classify a finished stock update and queue its outcomes and attempt */
static void
stock_update_done(PushRequest *request, const HttpResult *result)
{
	ShopState  *shop = request->shop;
	CallResult	call;
	int			nok = 0;
	int			max_attempt = 0;
	int			i;
	int			elevel;
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
	{
		shop->adapter->parse_push(&shop->ctx, request->pushes, request->nrows,
								  &result->response, &call);
		if (split_refused_request(request, &call, result))
			return;
	}
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
	/* a success is a DEBUG1 record: build its listing list only if kept */
	elevel = nok == request->nrows ? DEBUG1 : LOG;
	if (message_level_is_interesting(elevel))
		log_event(elevel,
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
		refresh.call.outcome = SYNC_OUTCOME_RETRY;
		reauthorize = result->request_sent;
		strlcpy(refresh.call.error_code, "transport", sizeof(refresh.call.error_code));
		adapter_copy_message(refresh.call.error_message, sizeof(refresh.call.error_message),
							 result->transport_error, &shop->ctx);
	}
	else
	{
		shop->adapter->parse_refresh(&shop->ctx, &result->response, &refresh);
		reauthorize = refresh.call.outcome == SYNC_OUTCOME_PERMANENT;
	}

	if (refresh.call.outcome == SYNC_OUTCOME_OK)
		shop_store_tokens(shop, request->spent_refresh_token, &refresh);
	else
	{
		shop_refresh_failed(shop, reauthorize, refresh.call.error_message);
		fail_waiting_fetches(shop, reauthorize, refresh.call.error_message);
		/* the rows waiting for the new token try again later */
		while (!dlist_is_empty(&shop->waiting))
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node,
											  dlist_pop_head_node(&shop->waiting));

			add_outcome(row, "retry",
						reauthorize ? invsync_backoff_max_ms : backoff_ms(row->attempts, 0),
						"auth", refresh.call.error_message);
			forget_row(row);
		}
	}

	add_attempt(request, result->response.status,
				sync_outcome_name(refresh.call.outcome),
				refresh.call.outcome == SYNC_OUTCOME_OK ? NULL : refresh.call.error_code,
				refresh.call.outcome == SYNC_OUTCOME_OK ? NULL : refresh.call.error_message,
				refresh.call.request_id, result->latency_ms);
	log_event(refresh.call.outcome == SYNC_OUTCOME_OK ? LOG : WARNING,
			  refresh.call.outcome == SYNC_OUTCOME_OK ? "token_refreshed" :
			  (reauthorize ? "token_refresh_failed_reauthorize" : "token_refresh_failed"),
			  request->correlation_header, shop, NULL, 0,
			  result->response.status, result->latency_ms,
			  refresh.call.outcome == SYNC_OUTCOME_OK ? NULL : refresh.call.error_message);
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
		worker_activity.requests++;

		/*
		 * A slot is free: dispatch at the next turn, without waiting for a
		 * socket, timer or latch that may never come.
		 */
		next_dispatch = GetCurrentTimestamp();

		old = MemoryContextSwitchTo(request->context);
		if (request->is_refresh)
			refresh_done(request, result);
		else if (request->fetch != NULL)
			order_fetch_done(request, result);
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
