/*-------------------------------------------------------------------------
 *
 * worker_shops.c
 *	  The sync worker's shop cache: each shop's channel, credentials and
 *	  limits, its token bucket and in-flight count, its token refresh, and
 *	  the shop changes (refreshed tokens, failed refreshes) waiting to be
 *	  written.
 *
 * The worker never waits for a shop row an application or an admin holds:
 * the refresh lease is taken with SKIP LOCKED (a busy row means no refresh
 * this turn), and refreshed tokens or a refresh failure that cannot be
 * written at once are kept here and written at a later turn.  Tokens are
 * never dropped while unwritten: a spent single-use refresh token cannot be
 * spent again, so the new one must reach the table.  Until it does, the
 * shop uses the new tokens from memory and is not reloaded.
 *
 * A turn looks only at the busy shops (rows or order fetches waiting,
 * requests in flight, a refresh under way), so that its work follows the
 * shops with something to do, not the thousands that had something once.
 * A shop with nothing to do waits on the idle list for
 * invsync.idle_shop_retention, keeping its token bucket for its next
 * burst, and then leaves the cache, so that the worker's memory follows
 * the shops at work too.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_shops.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "worker_internal.h"

/* longest wait between two tries to write a shop change */
#define SHOP_CHANGE_RETRY_MAX_MS 5000

static HTAB *shops = NULL;

/* shops with tokens or a refresh failure not written yet */
static int	shops_with_changes = 0;

/* ShopState by list_node: every shop with a row or fetch waiting is busy */
static dlist_head busy_list = DLIST_STATIC_INIT(busy_list);
/* ShopState by list_node, the longest idle first */
static dlist_head idle_list = DLIST_STATIC_INIT(idle_list);

/* create the shop cache; once per worker */
void
shops_init(void)
{
	HASHCTL		hash_ctl;

	memset(&hash_ctl, 0, sizeof(hash_ctl));
	hash_ctl.keysize = sizeof(ShopKey);
	hash_ctl.entrysize = sizeof(ShopState);
	hash_ctl.hcxt = TopMemoryContext;
	shops = hash_create("invsync shops", 64, &hash_ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* the busy shops, for the scans of every turn and every claim */
dlist_head *
busy_shops(void)
{
	return &busy_list;
}

static void
mark_busy(ShopState *shop)
{
	if (shop->listed == SHOP_BUSY)
		return;
	if (shop->listed == SHOP_IDLE)
		dlist_delete(&shop->list_node);
	dlist_push_tail(&busy_list, &shop->list_node);
	shop->listed = SHOP_BUSY;
}

/*
 * Something to send on one of the shop's lists (a ClaimedRow on waiting,
 * a ClaimedFetch on fetches): at the tail, or first (sent again before the
 * others).  The only way onto those lists, so every shop with something to
 * send is busy.
 */
void
shop_wait(ShopState *shop, dlist_head *list, dlist_node *node, bool first)
{
	if (first)
		dlist_push_head(list, node);
	else
		dlist_push_tail(list, node);
	mark_busy(shop);
}

/*
 * A busy shop with nothing left to do moves to the idle list.  Called by
 * dispatch, once a turn, for each busy shop without rows or fetches
 * waiting.
 */
void
move_if_idle(ShopState *shop)
{
	if (!dlist_is_empty(&shop->waiting) || !dlist_is_empty(&shop->fetches) ||
		shop->in_flight > 0 || shop->refreshing)
		return;
	dlist_delete(&shop->list_node);
	dlist_push_tail(&idle_list, &shop->list_node);
	shop->listed = SHOP_IDLE;
	shop->idle_since = GetCurrentTimestamp();
}

/* the shop's token bucket, refilled up to now: at most a second's worth */
void
refill_tokens(ShopState *shop, TimestampTz now)
{
	double		burst = Max(1.0, shop->rate);

	shop->tokens = Min(burst, shop->tokens +
					   shop->rate * (double) (now - shop->tokens_at) / USECS_PER_SEC);
	shop->tokens_at = now;
}

/* whether an idle shop holds something forgetting it would lose */
static bool
worth_keeping(ShopState *shop, TimestampTz now)
{
	refill_tokens(shop, now);
	return shop->unsaved.tokens || shop->unsaved.failure ||
		shop->needs_refresh || shop->paused_until > now ||
		shop->next_refresh_try > now || shop->tokens < 1.0;
}

/*
 * Drop from the cache the shops idle for invsync.idle_shop_retention, when
 * nothing of them is worth keeping: no change to write, no pause or refresh
 * wait running, and at least one token in the bucket (a shop met again
 * starts with one, so forgetting it never lets a request out sooner; it
 * only loses the rest of a full bucket).  One that is worth keeping waits
 * as long again.  Its credentials are loaded afresh when rows of it are
 * claimed again, as they would be anyway.  Once a turn.
 */
void
forget_idle_shops(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz idle_before;

	idle_before = TimestampTzPlusMilliseconds(now, -invsync_idle_shop_retention_ms);
	while (!dlist_is_empty(&idle_list))
	{
		ShopState  *shop = dlist_head_element(ShopState, list_node, &idle_list);

		/* strictly: a shop moved back to the tail now ends the pass */
		if (shop->idle_since >= idle_before)
			break;
		dlist_delete(&shop->list_node);
		if (worth_keeping(shop, now))
		{
			dlist_push_tail(&idle_list, &shop->list_node);
			shop->idle_since = now;
			continue;
		}
		MemoryContextDelete(shop->context);
		hash_search(shops, &shop->key, HASH_REMOVE, NULL);
	}
}

/* how many shops the cache holds, for invsync.worker_activity */
int
cached_shop_count(void)
{
	return (int) hash_get_num_entries(shops);
}

/* the cached shop, created empty (to be loaded) when new */
ShopState *
get_shop(int64 tenant_id, int64 shop_id)
{
	ShopKey		key;
	ShopState  *shop;
	bool		found;

	key.tenant_id = tenant_id;
	key.shop_id = shop_id;
	shop = hash_search(shops, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) shop) + sizeof(ShopKey), 0, sizeof(ShopState) - sizeof(ShopKey));
		shop->context = AllocSetContextCreate(TopMemoryContext, "invsync shop",
											  ALLOCSET_SMALL_SIZES);
		dlist_init(&shop->waiting);
		dlist_init(&shop->fetches);
		shop->tokens = 1;
		shop->tokens_at = GetCurrentTimestamp();
	}
	return shop;
}

/* a copy in context, or NULL */
static char *
copy_or_null(MemoryContext context, const char *value)
{
	return value ? MemoryContextStrdup(context, value) : NULL;
}

/* (re)load a shop's channel, credentials and limits; in a transaction */
void
load_shop(ShopState *shop)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext context;
	bool		isnull;
	Datum		expires;

	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	execute_plan(keep_plan(&plan, "SELECT * FROM invsync._shop_context($1, $2)",
						   2, types),
				 values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	MemoryContextReset(shop->context);
	context = shop->context;
	shop->ctx.tenant_id = shop->key.tenant_id;
	shop->ctx.shop_id = shop->key.shop_id;
	shop->ctx.channel = copy_or_null(context, SPI_getvalue(tuple, desc, 1));
	shop->ctx.external_shop_id = copy_or_null(context, SPI_getvalue(tuple, desc, 2));
	shop->ctx.region = copy_or_null(context, SPI_getvalue(tuple, desc, 3));
	shop->ctx.app_key = copy_or_null(context, SPI_getvalue(tuple, desc, 4));
	shop->ctx.app_secret = copy_or_null(context, SPI_getvalue(tuple, desc, 5));
	shop->ctx.access_token = copy_or_null(context, SPI_getvalue(tuple, desc, 6));
	shop->ctx.refresh_token = copy_or_null(context, SPI_getvalue(tuple, desc, 7));
	shop->ctx.uses_locations = DatumGetBool(SPI_getbinval(tuple, desc, 9, &isnull));
	shop->rate = DatumGetFloat8(SPI_getbinval(tuple, desc, 10, &isnull));
	shop->max_in_flight = DatumGetInt32(SPI_getbinval(tuple, desc, 11, &isnull));
	expires = SPI_getbinval(tuple, desc, 12, &isnull);
	shop->access_expires_at = isnull ? 0 : DatumGetTimestampTz(expires);
	shop->adapter = adapter_for_channel(shop->ctx.channel);
	if (shop->adapter != NULL)
	{
		Datum		batch = SPI_getbinval(tuple, desc, 15, &isnull);

		adapter_resolve_hosts(shop->adapter, &shop->ctx,
							  copy_or_null(context, SPI_getvalue(tuple, desc, 8)),
							  copy_or_null(context, SPI_getvalue(tuple, desc, 14)));
		shop->batch_size = isnull ? shop->adapter->default_batch :
			Min(DatumGetInt32(batch), shop->adapter->max_batch);
	}

	/* refresh ahead of expiry rather than after a refused push */
	if (shop->access_expires_at != 0 && shop->ctx.refresh_token != NULL &&
		GetCurrentTimestamp() >
		TimestampTzPlusMilliseconds(shop->access_expires_at, -TOKEN_REFRESH_MARGIN_MS))
		shop->needs_refresh = true;
}

/*
 * Credentials and limits may have changed since a shop was loaded: reload
 * every shop with rows to send and nothing in flight.  A shop whose new
 * tokens are not written yet keeps the ones in memory.  In the claim's
 * transaction.
 */
void
reload_claimed_shops(void)
{
	dlist_iter	iter;

	dlist_foreach(iter, &busy_list)
	{
		ShopState  *shop = dlist_container(ShopState, list_node, iter.cur);

		if ((!dlist_is_empty(&shop->waiting) || !dlist_is_empty(&shop->fetches)) &&
			shop->in_flight == 0 &&
			!shop->refreshing && !shop->unsaved.tokens)
			load_shop(shop);
	}
}

/*
 * Take the shop's refresh lease and return the refresh token to spend,
 * palloc'd in the caller's context; NULL when no refresh is to be sent
 * now: another process holds the lease, the shop needs re-authorisation
 * or has no refresh token, or its row is locked by someone else.  The
 * shop is reloaded either way, and its rows go out with the token it now
 * has.  One short transaction.
 */
char *
take_refresh_lease(ShopState *shop)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8OID, INT8OID, TIMESTAMPTZOID, INTERVALOID};
	Datum		values[4];
	MemoryContext caller = CurrentMemoryContext;
	char	   *refresh_token = NULL;

	shop->needs_refresh = false;
	if (shop->unsaved.tokens)
		return NULL;			/* just refreshed: write those first */

	begin_work("invsync: take refresh lease");
	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[3] = interval_ms_datum(invsync_http_timeout_ms + invsync_connect_timeout_ms);
	execute_plan(keep_plan(&plan,
						   "SELECT invsync._take_refresh_lease($1, $2, $3, $4)",
						   4, types),
				 values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		char	   *token = SPI_getvalue(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1);

		if (token != NULL)
			refresh_token = MemoryContextStrdup(caller, token);
	}
	load_shop(shop);
	shop->needs_refresh = false;
	end_work();
	return refresh_token;
}

/* forget a shop's unwritten change, freeing its strings */
static void
clear_unsaved(UnsavedShopChange *unsaved)
{
	if (unsaved->tokens || unsaved->failure)
		shops_with_changes--;
	if (unsaved->spent_refresh_token)
		pfree(unsaved->spent_refresh_token);
	if (unsaved->access_token)
		pfree(unsaved->access_token);
	if (unsaved->refresh_token)
		pfree(unsaved->refresh_token);
	if (unsaved->error)
		pfree(unsaved->error);
	memset(unsaved, 0, sizeof(UnsavedShopChange));
}

/*
 * A refresh succeeded: use the new tokens at once, and write them at the
 * next turn (compare-and-set on the refresh token spent).
 */
void
shop_store_tokens(ShopState *shop, const char *spent_refresh_token,
				  const TokenRefreshResult *refresh)
{
	UnsavedShopChange *unsaved = &shop->unsaved;

	clear_unsaved(unsaved);
	unsaved->tokens = true;
	shops_with_changes++;
	unsaved->spent_refresh_token = MemoryContextStrdup(TopMemoryContext, spent_refresh_token);
	unsaved->access_token = MemoryContextStrdup(TopMemoryContext, refresh->access_token);
	unsaved->refresh_token = MemoryContextStrdup(TopMemoryContext, refresh->refresh_token);
	unsaved->access_expires_at =
		time_t_to_timestamptz((pg_time_t) refresh->access_expires_at);
	unsaved->refresh_expires_at = refresh->refresh_expires_at > 0 ?
		time_t_to_timestamptz((pg_time_t) refresh->refresh_expires_at) : 0;

	shop->ctx.access_token = unsaved->access_token;
	shop->ctx.refresh_token = unsaved->refresh_token;
	shop->access_expires_at = unsaved->access_expires_at;
	shop->needs_refresh = false;
}

/* a refresh failed: write that at the next turn */
void
shop_refresh_failed(ShopState *shop, bool reauthorize, const char *error)
{
	UnsavedShopChange *unsaved = &shop->unsaved;

	clear_unsaved(unsaved);
	unsaved->failure = true;
	shops_with_changes++;
	unsaved->reauthorize = reauthorize;
	unsaved->error = MemoryContextStrdup(TopMemoryContext, error ? error : "");
}

/* write one shop's change; false when its row was busy */
static bool
save_shop_change(ShopState *shop)
{
	static SPIPlanPtr store_plan = NULL;
	static SPIPlanPtr failed_plan = NULL;
	UnsavedShopChange *unsaved = &shop->unsaved;
	char	   *status;

	if (unsaved->tokens)
	{
		Oid			types[7] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID};
		Datum		values[7];
		char		nulls[7] = "       ";

		values[0] = Int64GetDatum(shop->key.tenant_id);
		values[1] = Int64GetDatum(shop->key.shop_id);
		values[2] = CStringGetTextDatum(unsaved->spent_refresh_token);
		values[3] = CStringGetTextDatum(unsaved->access_token);
		values[4] = CStringGetTextDatum(unsaved->refresh_token);
		values[5] = TimestampTzGetDatum(unsaved->access_expires_at);
		values[6] = TimestampTzGetDatum(unsaved->refresh_expires_at);
		if (unsaved->refresh_expires_at == 0)
			nulls[6] = 'n';
		execute_plan(keep_plan(&store_plan,
							   "SELECT invsync._store_refreshed_tokens($1, $2, $3, $4, $5, $6, $7)",
							   7, types),
					 values, nulls, SPI_OK_SELECT);
	}
	else
	{
		Oid			types[4] = {INT8OID, INT8OID, BOOLOID, TEXTOID};
		Datum		values[4];

		values[0] = Int64GetDatum(shop->key.tenant_id);
		values[1] = Int64GetDatum(shop->key.shop_id);
		values[2] = BoolGetDatum(unsaved->reauthorize);
		values[3] = CStringGetTextDatum(unsaved->error);
		execute_plan(keep_plan(&failed_plan,
							   "SELECT invsync._refresh_failed($1, $2, $3, $4)",
							   4, types),
					 values, NULL, SPI_OK_SELECT);
	}
	status = SPI_processed == 1 ?
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	if (status != NULL && strcmp(status, "busy") == 0)
		return false;

	/* written, or overtaken (a new authorisation, the shop deleted) */
	if (status != NULL && strcmp(status, "stale") == 0)
		log_event(LOG, "refreshed_tokens_superseded", NULL, shop, NULL, 0, 0, -1,
				  "the shop's refresh token changed while the refresh was in flight");
	/* the shop's own copies, in case it is gone and load_shop finds nothing */
	shop->ctx.access_token = copy_or_null(shop->context, shop->ctx.access_token);
	shop->ctx.refresh_token = copy_or_null(shop->context, shop->ctx.refresh_token);
	clear_unsaved(unsaved);
	load_shop(shop);
	return true;
}

/*
 * Write the shop changes that are due, in one transaction.  A shop whose
 * row is busy is tried again after a wait that doubles up to 5 s.
 */
void
save_shop_changes(void)
{
	HASH_SEQ_STATUS status;
	ShopState  *shop;
	TimestampTz now;
	bool		started = false;

	/* the usual case, twice a turn: no scan of every shop */
	if (shops_with_changes == 0)
		return;

	now = GetCurrentTimestamp();
	hash_seq_init(&status, shops);
	while ((shop = hash_seq_search(&status)) != NULL)
	{
		UnsavedShopChange *unsaved = &shop->unsaved;

		if (!(unsaved->tokens || unsaved->failure) || unsaved->next_try > now)
			continue;
		if (!started)
		{
			begin_work("invsync: save shop changes");
			if (!check_extension())
			{
				hash_seq_term(&status);
				end_work();
				return;
			}
			started = true;
		}
		if (!save_shop_change(shop))
		{
			unsaved->next_try =
				TimestampTzPlusMilliseconds(now, Min(SHOP_CHANGE_RETRY_MAX_MS,
													 50 << Min(unsaved->tries, 7)));
			unsaved->tries++;
			if (next_dispatch == 0 || unsaved->next_try < next_dispatch)
				next_dispatch = unsaved->next_try;
		}
	}
	if (started)
		end_work();
}

/*
 * Forget what an error may have left inconsistent: rows waiting (their
 * leases bring them back), requests counted in flight (aborted by the
 * caller first), refreshes under way.  Unwritten tokens are kept.
 */
void
reset_shops(void)
{
	HASH_SEQ_STATUS status;
	ShopState  *shop;

	dlist_init(&busy_list);
	dlist_init(&idle_list);
	hash_seq_init(&status, shops);
	while ((shop = hash_seq_search(&status)) != NULL)
	{
		/* idle from now: nothing waits any more */
		dlist_push_tail(&idle_list, &shop->list_node);
		shop->listed = SHOP_IDLE;
		shop->idle_since = GetCurrentTimestamp();
		dlist_init(&shop->waiting);
		dlist_init(&shop->fetches);
		shop->in_flight = 0;
		shop->rows_in_flight = 0;
		if (shop->refreshing)
			shop->needs_refresh = true;
		shop->refreshing = false;
	}
}
