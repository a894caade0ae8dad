/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The sync worker: claims due rows of invsync.sync_queue, pushes their
 *	  absolute levels to the marketplaces through the adapters, and records
 *	  each outcome.
 *
 * One background worker serves every tenant of the database named by
 * invsync.database.  Each turn it
 *	 1. claims due rows with a lease, in a short transaction (_claim);
 *	 2. sends them, batched as the channel allows, through libcurl's multi
 *		interface, within each shop's token bucket and in-flight cap and the
 *		global cap invsync.max_in_flight, holding no transaction, lock or
 *		snapshot while any request is in flight;
 *	 3. records the outcomes and the attempts in a new transaction
 *		(_record_batch), compare-and-set on the version each row was claimed
 *		at.
 * It sleeps in one WaitEventSet on its latch (set at commit by backends
 * that queued changes, see wake_at_commit), postmaster death, and the
 * epoll set of libcurl's sockets; the poll interval bounds the sleep so
 * that backoffs falling due and expired leases are found without a commit.
 *
 * Locking: the worker never waits for a row lock an application may hold
 * (claims and records use SKIP LOCKED); applications wait on the worker's
 * locks only for its short claim and record transactions.
 *
 * Shared memory holds only the worker's latch; everything else lives in
 * this process, so a restarted worker trusts nothing of its predecessor.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "adapter.h"
#include "http.h"
#include "invsync.h"
#include "json.h"

/* refresh an access token this long before it expires */
#define TOKEN_REFRESH_MARGIN_MS (5 * 60 * 1000)
/* purge old attempts this often */
#define ATTEMPT_PURGE_INTERVAL_MS (60 * 1000)
/* the largest batch any adapter sends in one request */
#define MAX_ADAPTER_BATCH 50
/* how long to wait after the worker's own transaction failed */
#define ERROR_PAUSE_MS 5000

typedef struct InvsyncShared
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* NULL while no worker runs */
} InvsyncShared;

static InvsyncShared *invsync_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set by invsync._wake_worker(); acted on when the transaction commits */
static bool wake_at_commit = false;

PG_FUNCTION_INFO_V1(invsync_wake_worker);

/* a claimed queue row, from its claim until its outcome is recorded */
typedef struct ClaimedRow
{
	dlist_node	node;
	int64		tenant_id;
	int64		listing_id;
	int64		shop_id;
	int64		version;
	int64		level;
	int			attempts;
	bool		auth_retried;	/* already resent once after a refresh */
	TimestampTz send_by;		/* sent later, its request could outlive the
								 * lease and overlap a new claim's */
	char	   *correlation_ids;	/* comma-separated, for the header */
	char	   *item_id;
	char	   *model_id;
	char	   *location_id;
} ClaimedRow;

typedef struct ShopKey
{
	int64		tenant_id;
	int64		shop_id;
} ShopKey;

/* what the worker knows of a shop; the key must come first (hash entry) */
typedef struct ShopState
{
	ShopKey		key;
	MemoryContext context;		/* the strings below */
	const ChannelAdapter *adapter;
	ShopContext ctx;
	double		rate;			/* requests per second */
	int			max_in_flight;
	TimestampTz access_expires_at;
	double		tokens;			/* token bucket */
	TimestampTz tokens_at;
	TimestampTz paused_until;	/* throttled by the marketplace */
	int			in_flight;
	bool		refreshing;
	bool		needs_refresh;
	dlist_head	waiting;		/* ClaimedRow, to send */
} ShopState;

/* one request in flight */
typedef struct PushRequest
{
	ShopState  *shop;
	bool		is_refresh;
	int			nrows;
	ClaimedRow **rows;
	ListingPush *pushes;
	HttpRequestSpec spec;
	char	   *correlation_header;
	char	   *spent_refresh_token;
	TimestampTz started;
	MemoryContext context;
} PushRequest;

static HTAB *shops = NULL;
static HttpEngine *engine = NULL;
static MemoryContext rows_context = NULL;	/* ClaimedRow and their strings */
static MemoryContext record_context = NULL; /* the pending record batch */
static StringInfoData pending_outcomes; /* JSON array items, comma-joined */
static StringInfoData pending_attempts;
static int	pending_outcome_count = 0;
static int	pending_attempt_count = 0;

/*
 * How many times in a row an application's lock held outcomes back, and
 * when to try again (0: at once).
 */
static int	record_retries = 0;
static TimestampTz next_record_attempt = 0;

static int	rows_held = 0;		/* claimed rows not yet recorded */
static bool extension_present = false;
static bool worker_started_recorded = false;
static TimestampTz next_poll = 0;
static TimestampTz next_purge = 0;
static TimestampTz next_dispatch = 0;	/* a token bucket refills */
static bool claim_found_rows = false;	/* more rows may be due at once */

static void invsync_shmem_request(void);
static void invsync_shmem_startup(void);
static void wake_xact_callback(XactEvent event, void *arg);
static void request_done(void *request_arg, const HttpResult *result);

/*
 * Called from _PG_init in the postmaster: reserve shared memory, hook the
 * commit wake-up, and register the worker.
 */
void
invsync_worker_init(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = invsync_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = invsync_shmem_startup;

	RegisterXactCallback(wake_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "invsync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "invsync_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "invsync sync worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "invsync sync worker");
	RegisterBackgroundWorker(&worker);
}

static void
invsync_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(InvsyncShared)));
}

static void
invsync_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	invsync_shared = ShmemInitStruct("invsync", sizeof(InvsyncShared), &found);
	if (!found)
	{
		SpinLockInit(&invsync_shared->mutex);
		invsync_shared->worker_latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * SQL: invsync._wake_worker().  The queue triggers call it; the worker is
 * woken only if and when the transaction commits, so it never looks for a
 * row it cannot see yet, and a rolled-back change wakes nobody.
 */
Datum
invsync_wake_worker(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	PG_RETURN_VOID();
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	Latch	   *latch;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit && invsync_shared != NULL)
			{
				SpinLockAcquire(&invsync_shared->mutex);
				latch = invsync_shared->worker_latch;
				SpinLockRelease(&invsync_shared->mutex);
				if (latch != NULL)
					SetLatch(latch);
			}
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED is found by the poll instead */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

static void
clear_worker_latch(int code, Datum arg)
{
	SpinLockAcquire(&invsync_shared->mutex);
	invsync_shared->worker_latch = NULL;
	SpinLockRelease(&invsync_shared->mutex);
}

/* ---------------------------------------------------------------------
 * Structured log records: one JSON object per event, fixed keys
 * --------------------------------------------------------------------- */

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
 * apply), so a consumer can rely on the shape.  Callers pass no secrets:
 * errors come from adapter_copy_message, URLs only as log_url.
 */
static void
log_event(int elevel, const char *event, const char *correlation_id,
		  const ShopState *shop, const char *listings, int attempt,
		  long http_status, double latency_ms, const char *error)
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

/* ---------------------------------------------------------------------
 * Transactions
 * --------------------------------------------------------------------- */

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "invsync: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = activity;
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	debug_query_string = NULL;
	/* without it autovacuum never learns of the worker's writes */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* run a parameterised statement; SPI errors are bugs, not outcomes */
static void
execute(const char *sql, int nargs, Oid *types, Datum *values,
		const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   false, 0);

	if (rc != expected)
		elog(ERROR, "invsync: unexpected SPI result %d for: %s", rc, sql);
}

static char *
spi_text(HeapTuple tuple, int column)
{
	return SPI_getvalue(tuple, SPI_tuptable->tupdesc, column);
}

static int64
spi_int64(HeapTuple tuple, int column)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, SPI_tuptable->tupdesc, column, &isnull);

	return isnull ? 0 : DatumGetInt64(value);
}

static int32
spi_int32(HeapTuple tuple, int column)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, SPI_tuptable->tupdesc, column, &isnull);

	return isnull ? 0 : DatumGetInt32(value);
}

static Datum
interval_ms_datum(int64 ms)
{
	Interval   *span = palloc0(sizeof(Interval));

	span->time = ms * INT64CONST(1000);
	return IntervalPGetDatum(span);
}

/* ---------------------------------------------------------------------
 * Shops
 * --------------------------------------------------------------------- */

static char *
copy_or_null(MemoryContext context, const char *value)
{
	return value ? MemoryContextStrdup(context, value) : NULL;
}

/* (re)load a shop's channel, credentials and limits; inside a transaction */
static void
load_shop(ShopState *shop)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	HeapTuple	tuple;
	MemoryContext context;
	bool		isnull;
	Datum		expires;

	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	execute("SELECT * FROM invsync._shop_context($1, $2)",
			2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	tuple = SPI_tuptable->vals[0];

	MemoryContextReset(shop->context);
	context = shop->context;
	shop->ctx.tenant_id = shop->key.tenant_id;
	shop->ctx.shop_id = shop->key.shop_id;
	shop->ctx.channel = copy_or_null(context, spi_text(tuple, 1));
	shop->ctx.external_shop_id = copy_or_null(context, spi_text(tuple, 2));
	shop->ctx.region = copy_or_null(context, spi_text(tuple, 3));
	shop->ctx.app_key = copy_or_null(context, spi_text(tuple, 4));
	shop->ctx.app_secret = copy_or_null(context, spi_text(tuple, 5));
	shop->ctx.access_token = copy_or_null(context, spi_text(tuple, 6));
	shop->ctx.refresh_token = copy_or_null(context, spi_text(tuple, 7));
	shop->ctx.base_url = copy_or_null(context, spi_text(tuple, 8));
	shop->ctx.uses_locations =
		DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 9, &isnull));
	shop->rate = DatumGetFloat8(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 10, &isnull));
	shop->max_in_flight =
		DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 11, &isnull));
	expires = SPI_getbinval(tuple, SPI_tuptable->tupdesc, 12, &isnull);
	shop->access_expires_at = isnull ? 0 : DatumGetTimestampTz(expires);
	shop->adapter = adapter_for_channel(shop->ctx.channel);

	/* refresh ahead of expiry rather than after a refused push */
	if (shop->access_expires_at != 0 && shop->ctx.refresh_token != NULL &&
		GetCurrentTimestamp() >
		TimestampTzPlusMilliseconds(shop->access_expires_at, -TOKEN_REFRESH_MARGIN_MS))
		shop->needs_refresh = true;
}

static ShopState *
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
		shop->tokens = 1;
		shop->tokens_at = GetCurrentTimestamp();
	}
	return shop;
}

/* ---------------------------------------------------------------------
 * Recording outcomes
 * --------------------------------------------------------------------- */

static int64
backoff_ms(int attempts, int retry_after_ms)
{
	double		delay = invsync_backoff_base_ms;
	double		jitter;

	delay *= pow(2.0, Min(Max(attempts - 1, 0), 30));
	delay = Min(delay, (double) invsync_backoff_max_ms);
	/* "equal jitter": half fixed, half random, so retries spread out */
	jitter = (double) pg_prng_double(&pg_global_prng_state);
	delay = delay / 2 + jitter * delay / 2;
	return (int64) Max(delay, (double) retry_after_ms);
}

/* free a claimed row the worker no longer holds */
static void
forget_row(ClaimedRow *row)
{
	rows_held--;
	pfree(row->correlation_ids);
	pfree(row->item_id);
	if (row->model_id)
		pfree(row->model_id);
	if (row->location_id)
		pfree(row->location_id);
	pfree(row);
}

/* queue one row's outcome for the next record transaction */
static void
add_outcome(ClaimedRow *row, const char *outcome, int64 due_in_ms,
			const char *error_class, const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(record_context);
	StringInfo	buf = &pending_outcomes;

	if (pending_outcome_count++ > 0)
		appendStringInfoChar(buf, ',');
	appendStringInfo(buf,
					 "{\"tenant_id\":" INT64_FORMAT ",\"listing_id\":" INT64_FORMAT
					 ",\"version\":" INT64_FORMAT ",\"level\":" INT64_FORMAT
					 ",\"outcome\":\"%s\",\"due_in_ms\":" INT64_FORMAT,
					 row->tenant_id, row->listing_id, row->version, row->level,
					 outcome, due_in_ms);
	append_json_key(buf, "error_class", error_class);
	append_json_key(buf, "error", error);
	appendStringInfoChar(buf, '}');
	MemoryContextSwitchTo(old);

	forget_row(row);
}

/* queue one attempt row */
static void
add_attempt(PushRequest *request, long http_status, const char *outcome,
			const char *error_class, const char *error, const char *request_id,
			double latency_ms)
{
	MemoryContext old = MemoryContextSwitchTo(record_context);
	StringInfo	buf = &pending_attempts;
	ShopState  *shop = request->shop;
	int			i;

	if (pending_attempt_count++ > 0)
		appendStringInfoChar(buf, ',');
	appendStringInfo(buf, "{\"tenant_id\":" INT64_FORMAT ",\"shop_id\":" INT64_FORMAT,
					 shop->key.tenant_id, shop->key.shop_id);
	append_json_key(buf, "channel", shop->ctx.channel);
	append_json_key(buf, "kind", request->is_refresh ? "token_refresh" : "stock_update");
	appendStringInfoString(buf, ",\"listing_ids\":[");
	for (i = 0; i < request->nrows; i++)
		appendStringInfo(buf, "%s" INT64_FORMAT, i ? "," : "", request->rows[i]->listing_id);
	appendStringInfoString(buf, "],\"versions\":[");
	for (i = 0; i < request->nrows; i++)
		appendStringInfo(buf, "%s" INT64_FORMAT, i ? "," : "", request->rows[i]->version);
	appendStringInfoString(buf, "],\"levels\":[");
	for (i = 0; i < request->nrows; i++)
		appendStringInfo(buf, "%s" INT64_FORMAT, i ? "," : "", request->rows[i]->level);
	appendStringInfoChar(buf, ']');
	append_json_key(buf, "correlation_id", request->correlation_header);
	append_json_key(buf, "request_url", request->spec.log_url);
	if (http_status > 0)
		appendStringInfo(buf, ",\"http_status\":%ld", http_status);
	append_json_key(buf, "outcome", outcome);
	append_json_key(buf, "error_class", error_class);
	append_json_key(buf, "error_message", error);
	append_json_key(buf, "marketplace_request_id",
					request_id && request_id[0] ? request_id : NULL);
	appendStringInfo(buf, ",\"latency_ms\":%.3f,\"started_at_ms\":%.3f}",
					 latency_ms,
					 (double) (request->started -
							   ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
								-USECS_PER_DAY)) / 1000.0);
	MemoryContextSwitchTo(old);
}

/* start empty outcome and attempt lists */
static void
reset_records(void)
{
	MemoryContext old;

	MemoryContextReset(record_context);
	old = MemoryContextSwitchTo(record_context);
	initStringInfo(&pending_outcomes);
	initStringInfo(&pending_attempts);
	MemoryContextSwitchTo(old);
	pending_outcome_count = 0;
	pending_attempt_count = 0;
}

/*
 * Write the pending outcomes and attempts in one transaction.  When some
 * rows were locked by an application transaction, the whole outcome list
 * is sent again a little later: outcomes already applied no longer match
 * their claim, so sending them twice changes nothing.
 */
static void
flush_records(void)
{
	Oid			types[3] = {JSONBOID, JSONBOID, TIMESTAMPTZOID};
	Datum		values[3];
	char	   *outcomes;
	char	   *attempts;
	uint64		locked_out;

	if (pending_outcome_count == 0 && pending_attempt_count == 0)
		return;
	if (next_record_attempt != 0 && GetCurrentTimestamp() < next_record_attempt)
		return;

	outcomes = psprintf("[%s]", pending_outcomes.data);
	attempts = psprintf("[%s]", pending_attempts.data);

	begin_work("invsync: record outcomes");
	values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(outcomes));
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(attempts));
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	execute("SELECT tenant_id, listing_id FROM invsync._record_batch($1, $2, $3)",
			3, types, values, NULL, SPI_OK_SELECT);
	locked_out = SPI_processed;
	end_work();

	reset_records();
	if (locked_out > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(record_context);

		appendStringInfoString(&pending_outcomes, outcomes + 1);
		pending_outcomes.data[--pending_outcomes.len] = '\0';
		MemoryContextSwitchTo(old);
		pending_outcome_count = (int) locked_out;

		/*
		 * 10 ms, doubling up to 1.28 s while the application keeps its
		 * lock: soon enough for a short transaction, cheap for a long one.
		 */
		next_record_attempt =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										10 << Min(record_retries, 7));
		record_retries++;
	}
	else
	{
		next_record_attempt = 0;
		record_retries = 0;
	}
}

/* ---------------------------------------------------------------------
 * Claiming
 * --------------------------------------------------------------------- */

/* true when the extension is installed in this database */
static bool
check_extension(void)
{
	extension_present = OidIsValid(get_extension_oid("invsync", true));
	return extension_present;
}

static void
claim_rows(void)
{
	Oid			types[4] = {TIMESTAMPTZOID, INTERVALOID, INT4OID, INT4OID};
	Datum		values[4];
	TimestampTz now = GetCurrentTimestamp();
	int64		send_window;
	int			limit;
	uint64		i;
	MemoryContext old;
	HASH_SEQ_STATUS status;
	ShopState  *shop;

	/* hold no more than two batches locally */
	limit = Min(invsync_batch_size, 2 * invsync_batch_size - rows_held);
	if (limit <= 0)
		return;

	/*
	 * A claimed row must be sent early enough for its request to end
	 * before its lease does; else the row could be claimed again while
	 * still waiting here or in flight, and one listing pushed twice at once.
	 */
	send_window = (int64) invsync_lease_ms - invsync_http_timeout_ms -
		invsync_connect_timeout_ms;
	send_window = Max(send_window, invsync_lease_ms / 2);

	begin_work("invsync: claim");
	if (!check_extension())
	{
		end_work();
		return;
	}

	if (!worker_started_recorded)
	{
		Oid			start_types[2] = {TIMESTAMPTZOID, INTERVALOID};
		Datum		start_values[2];

		start_values[0] = TimestampTzGetDatum(now);
		start_values[1] = interval_ms_datum(invsync_http_timeout_ms +
											invsync_connect_timeout_ms);
		execute("SELECT invsync._worker_started($1, $2)", 2, start_types,
				start_values, NULL, SPI_OK_SELECT);
		worker_started_recorded = true;
	}

	/*
	 * Rows that waited here (behind a slow or paused shop) too long to be
	 * sent within their lease go back to the queue, to be claimed afresh.
	 */
	hash_seq_init(&status, shops);
	while ((shop = hash_seq_search(&status)) != NULL)
	{
		dlist_mutable_iter iter;

		dlist_foreach_modify(iter, &shop->waiting)
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node, iter.cur);
			Oid			release_types[3] = {INT8OID, INT8OID, INT8OID};
			Datum		release_values[3];

			if (row->send_by > now)
				continue;
			release_values[0] = Int64GetDatum(row->tenant_id);
			release_values[1] = Int64GetDatum(row->listing_id);
			release_values[2] = Int64GetDatum(row->version);
			execute("SELECT invsync._release_claim($1, $2, $3)", 3, release_types,
					release_values, NULL, SPI_OK_SELECT);
			dlist_delete(&row->node);
			forget_row(row);
		}
	}
	limit = Min(invsync_batch_size, 2 * invsync_batch_size - rows_held);

	values[0] = TimestampTzGetDatum(now);
	values[1] = interval_ms_datum(invsync_lease_ms);
	values[2] = Int32GetDatum(limit);
	values[3] = Int32GetDatum(MAX_ADAPTER_BATCH);
	execute("SELECT tenant_id, listing_id, shop_id, version, target_level, attempts, "
			"array_to_string(correlation_ids, ', '), external_item_id, "
			"external_model_id, external_location_id "
			"FROM invsync._claim($1, $2, $3, $4)",
			4, types, values, NULL, SPI_OK_SELECT);

	old = MemoryContextSwitchTo(rows_context);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		ClaimedRow *row = palloc0(sizeof(ClaimedRow));
		char	   *ids;

		row->tenant_id = spi_int64(tuple, 1);
		row->listing_id = spi_int64(tuple, 2);
		row->shop_id = spi_int64(tuple, 3);
		row->version = spi_int64(tuple, 4);
		row->level = spi_int64(tuple, 5);
		row->attempts = (int) spi_int32(tuple, 6);
		row->send_by = TimestampTzPlusMilliseconds(now, send_window);
		ids = spi_text(tuple, 7);
		row->correlation_ids = pstrdup(ids && ids[0] ? ids : "none");
		row->item_id = pstrdup(spi_text(tuple, 8));
		row->model_id = copy_or_null(rows_context, spi_text(tuple, 9));
		row->location_id = copy_or_null(rows_context, spi_text(tuple, 10));

		shop = get_shop(row->tenant_id, row->shop_id);
		dlist_push_tail(&shop->waiting, &row->node);
		rows_held++;
	}
	MemoryContextSwitchTo(old);
	claim_found_rows = SPI_processed > 0;

	/* credentials and limits may have changed: reload the shops involved */
	hash_seq_init(&status, shops);
	while ((shop = hash_seq_search(&status)) != NULL)
	{
		if (!dlist_is_empty(&shop->waiting) && shop->in_flight == 0 &&
			!shop->refreshing)
			load_shop(shop);
	}
	end_work();
}

/* ---------------------------------------------------------------------
 * Sending
 * --------------------------------------------------------------------- */

/* a comma-joined list of the listings' correlation ids, deduplicated, bounded */
static char *
join_correlation_ids(ClaimedRow **rows, int nrows)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < nrows && buf.len < 512; i++)
	{
		if (strstr(buf.data, rows[i]->correlation_ids) != NULL)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, rows[i]->correlation_ids);
	}
	return buf.data;
}

static char *
listing_ids_json(ClaimedRow **rows, int nrows)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < nrows; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i ? "," : "", rows[i]->listing_id);
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

static void
fill_push(ListingPush *push, ClaimedRow *row)
{
	memset(push, 0, sizeof(ListingPush));
	push->listing_id = row->listing_id;
	push->external_item_id = row->item_id;
	push->external_model_id = row->model_id;
	push->external_location_id = row->location_id;
	push->level = row->level;
}

/* take up to max_batch waiting rows that may share one request */
static int
take_batch(ShopState *shop, ClaimedRow **batch, ListingPush *pushes)
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
			dlist_delete(&row->node);
			log_event(WARNING, "listing_refused", row->correlation_ids, shop,
					  psprintf("[" INT64_FORMAT "]", row->listing_id),
					  row->attempts, 0, -1, candidate.error_message);
			add_outcome(row, "dead", 0, candidate.error_code, candidate.error_message);
			continue;
		}
		for (i = 0; i < n && fits; i++)
			fits = shop->adapter->can_batch(&pushes[i], &candidate);
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
		dlist_delete(&row->node);
		batch[n] = row;
		pushes[n] = candidate;
		if (++n == max)
			break;
	}
	return n;
}

static void
start_stock_update(ShopState *shop)
{
	MemoryContext context;
	MemoryContext old;
	PushRequest *request;
	int			n;

	context = AllocSetContextCreate(TopMemoryContext, "invsync push",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(context);
	request = palloc0(sizeof(PushRequest));
	request->context = context;
	request->shop = shop;
	request->rows = palloc(sizeof(ClaimedRow *) * MAX_ADAPTER_BATCH);
	request->pushes = palloc(sizeof(ListingPush) * MAX_ADAPTER_BATCH);
	n = take_batch(shop, request->rows, request->pushes);
	if (n == 0)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(context);
		return;
	}
	request->nrows = n;
	request->correlation_header = join_correlation_ids(request->rows, n);
	request->started = GetCurrentTimestamp();
	shop->adapter->build_stock_update(&shop->ctx, request->pushes, n,
									  (int64) time(NULL), &request->spec);
	MemoryContextSwitchTo(old);

	shop->in_flight++;
	shop->tokens -= 1;
	http_engine_start(engine, &request->spec, request->correlation_header, false,
					  request);
}

/*
 * Take the shop's refresh lease and send the refresh.  Someone else holding
 * it, or a shop that needs re-authorisation, means no refresh here: the
 * shop is reloaded and its rows go out with whatever token it now has.
 */
static void
start_refresh(ShopState *shop)
{
	Oid			types[4] = {INT8OID, INT8OID, TIMESTAMPTZOID, INTERVALOID};
	Datum		values[4];
	char	   *refresh_token = NULL;
	MemoryContext context;
	MemoryContext old;
	PushRequest *request;

	shop->needs_refresh = false;
	begin_work("invsync: take refresh lease");
	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[3] = interval_ms_datum(invsync_http_timeout_ms + invsync_connect_timeout_ms);
	execute("SELECT invsync._take_refresh_lease($1, $2, $3, $4)",
			4, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
		refresh_token = spi_text(SPI_tuptable->vals[0], 1);
	if (refresh_token != NULL)
		refresh_token = MemoryContextStrdup(TopMemoryContext, refresh_token);
	load_shop(shop);
	shop->needs_refresh = false;
	end_work();

	if (refresh_token == NULL)
		return;

	context = AllocSetContextCreate(TopMemoryContext, "invsync refresh",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(context);
	request = palloc0(sizeof(PushRequest));
	request->context = context;
	request->shop = shop;
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
	http_engine_start(engine, &request->spec, request->correlation_header, true,
					  request);
}

/* send what every shop's limits allow now */
static void
dispatch(void)
{
	HASH_SEQ_STATUS status;
	ShopState  *shop;
	TimestampTz now = GetCurrentTimestamp();
	ShopState **to_refresh;
	int			nrefresh = 0;
	int			i;

	/*
	 * Refreshes start after the scan: start_refresh commits a transaction,
	 * and a commit ends every hash_seq_search scan still open.
	 */
	to_refresh = palloc(sizeof(ShopState *) * (hash_get_num_entries(shops) + 1));

	next_dispatch = 0;
	hash_seq_init(&status, shops);
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
			http_engine_running(engine) + nrefresh < invsync_max_in_flight)
		{
			to_refresh[nrefresh++] = shop;
			continue;
		}
		if (shop->refreshing)
			continue;

		while (!dlist_is_empty(&shop->waiting) &&
			   shop->in_flight < shop->max_in_flight &&
			   http_engine_running(engine) < invsync_max_in_flight &&
			   shop->tokens >= 1.0)
			start_stock_update(shop);

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

/* ---------------------------------------------------------------------
 * Completions
 * --------------------------------------------------------------------- */

static void
stock_update_done(PushRequest *request, const HttpResult *result)
{
	ShopState  *shop = request->shop;
	StockCallResult call;
	char	   *listings = listing_ids_json(request->rows, request->nrows);
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
		 * Sent but unanswered, the request may still be applied late: wait
		 * at least as long as it was allowed to take before sending a newer
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
		ClaimedRow *row = request->rows[i];
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
					dlist_push_head(&shop->waiting, &row->node);
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
			  request->correlation_header, shop, listings, max_attempt,
			  result->response.status, result->latency_ms,
			  nok == request->nrows ? NULL : call.error_message);
}

static void
store_tokens(ShopState *shop, PushRequest *request, TokenRefreshResult *refresh)
{
	Oid			types[7] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7] = "       ";

	begin_work("invsync: store refreshed tokens");
	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	values[2] = CStringGetTextDatum(request->spent_refresh_token);
	values[3] = CStringGetTextDatum(refresh->access_token);
	values[4] = CStringGetTextDatum(refresh->refresh_token);
	values[5] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) refresh->access_expires_at));
	if (refresh->refresh_expires_at > 0)
		values[6] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) refresh->refresh_expires_at));
	else
		nulls[6] = 'n';
	execute("SELECT invsync._store_refreshed_tokens($1, $2, $3, $4, $5, $6, $7)",
			7, types, values, nulls, SPI_OK_SELECT);
	load_shop(shop);
	shop->needs_refresh = false;
	end_work();
}

static void
refresh_failed(ShopState *shop, bool reauthorize, const char *error)
{
	Oid			types[4] = {INT8OID, INT8OID, BOOLOID, TEXTOID};
	Datum		values[4];

	begin_work("invsync: record failed refresh");
	values[0] = Int64GetDatum(shop->key.tenant_id);
	values[1] = Int64GetDatum(shop->key.shop_id);
	values[2] = BoolGetDatum(reauthorize);
	values[3] = CStringGetTextDatum(error);
	execute("SELECT invsync._refresh_failed($1, $2, $3, $4)",
			4, types, values, NULL, SPI_OK_SELECT);
	end_work();
}

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
		store_tokens(shop, request, &refresh);
	else
	{
		refresh_failed(shop, reauthorize, refresh.error_message);
		/* the rows waiting for the new token try again later */
		while (!dlist_is_empty(&shop->waiting))
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node,
											  dlist_pop_head_node(&shop->waiting));

			add_outcome(row, "retry",
						reauthorize ? invsync_backoff_max_ms : backoff_ms(row->attempts, 0),
						"auth", refresh.error_message);
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

/* libcurl finished a request: classify and queue the records */
static void
request_done(void *request_arg, const HttpResult *result)
{
	PushRequest *request = (PushRequest *) request_arg;

	request->shop->in_flight--;

	/*
	 * A slot is free: dispatch at the next turn, without waiting.  The
	 * completion may come in the drive that follows dispatch() (libcurl
	 * often finishes a request on a reused connection within the call that
	 * starts it), and then no socket, timer or latch would end the wait
	 * before the next poll.
	 */
	next_dispatch = GetCurrentTimestamp();
	if (request->is_refresh)
		refresh_done(request, result);
	else
		stock_update_done(request, result);
	MemoryContextDelete(request->context);
}

/* ---------------------------------------------------------------------
 * Housekeeping
 * --------------------------------------------------------------------- */

static void
purge_attempts(void)
{
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];

	begin_work("invsync: purge attempts");
	if (check_extension())
	{
		values[0] = TimestampTzGetDatum(
										TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																	-(int64) invsync_attempt_retention_min * 60 * 1000));
		values[1] = Int32GetDatum(10000);
		execute("SELECT invsync._purge_attempts($1, $2)", 2, types, values, NULL,
				SPI_OK_SELECT);
	}
	end_work();
}

/* forget all local state after an error: leases expire, nothing is lost */
static void
reset_state(void)
{
	HASH_SEQ_STATUS status;
	ShopState  *shop;

	hash_seq_init(&status, shops);
	while ((shop = hash_seq_search(&status)) != NULL)
		dlist_init(&shop->waiting);
	MemoryContextReset(rows_context);
	rows_held = 0;
	reset_records();
	worker_started_recorded = false;
}

/* ---------------------------------------------------------------------
 * Main loop
 * --------------------------------------------------------------------- */

static long
wait_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = TimestampDifferenceMilliseconds(now, next_poll);
	long		curl_timeout = http_engine_timeout_ms(engine);

	if (curl_timeout >= 0)
		timeout = Min(timeout, curl_timeout);
	if (next_dispatch != 0)
		timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_dispatch));
	if (pending_outcome_count > 0)
		timeout = Min(timeout, next_record_attempt == 0 ? 0 :
					  TimestampDifferenceMilliseconds(now, next_record_attempt));
	return Max(timeout, 0);
}

static void
run_turn(bool woken)
{
	TimestampTz now = GetCurrentTimestamp();

	http_engine_drive(engine);
	flush_records();

	/*
	 * Claim when a commit announced changes, when the poll falls due, and,
	 * while a backlog drains, as soon as half a batch is left: waiting for
	 * the poll would cap the rate at one batch per poll interval.
	 */
	if ((woken || now >= next_poll ||
		 (claim_found_rows && rows_held <= invsync_batch_size / 2)) &&
		http_engine_running(engine) < invsync_max_in_flight)
	{
		claim_rows();
		next_poll = TimestampTzPlusMilliseconds(now, invsync_poll_interval_ms);
	}
	if (!extension_present)
	{
		next_dispatch = 0;		/* nothing is sent until it is back */
		return;
	}

	dispatch();
	http_engine_drive(engine);
	flush_records();

	if (now >= next_purge)
	{
		purge_attempts();
		next_purge = TimestampTzPlusMilliseconds(now, ATTEMPT_PURGE_INTERVAL_MS);
	}
}

void
invsync_worker_main(Datum main_arg)
{
	WaitEventSet *wait_set;
	MemoryContext loop_context;
	HASHCTL		hash_ctl;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&invsync_shared->mutex);
	invsync_shared->worker_latch = MyLatch;
	SpinLockRelease(&invsync_shared->mutex);
	before_shmem_exit(clear_worker_latch, 0);

	BackgroundWorkerInitializeConnection(invsync_database,
										 invsync_worker_role[0] ? invsync_worker_role : NULL,
										 0);
	pgstat_report_appname("invsync sync worker");

	/*
	 * Plan the statements inside _claim and _record_batch afresh on every
	 * call.  A generic plan cached while the queue was small (a nested loop
	 * over a sequential scan) stays in use when a backlog of thousands of
	 * rows arrives, and makes every claim quadratic in the queue's size.
	 */
	SetConfigOption("plan_cache_mode", "force_custom_plan", PGC_SUSET,
					PGC_S_OVERRIDE);

	memset(&hash_ctl, 0, sizeof(hash_ctl));
	hash_ctl.keysize = sizeof(ShopKey);
	hash_ctl.entrysize = sizeof(ShopState);
	shops = hash_create("invsync shops", 64, &hash_ctl, HASH_ELEM | HASH_BLOBS);
	rows_context = AllocSetContextCreate(TopMemoryContext, "invsync claimed rows",
										 ALLOCSET_DEFAULT_SIZES);
	record_context = AllocSetContextCreate(TopMemoryContext, "invsync records",
										   ALLOCSET_DEFAULT_SIZES);
	loop_context = AllocSetContextCreate(TopMemoryContext, "invsync worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	reset_state();
	engine = http_engine_create(request_done);

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, http_engine_fd(engine), NULL, NULL);

	log_event(LOG, "worker_started", NULL, NULL, NULL, 0, 0, -1, NULL);

	for (;;)
	{
		WaitEvent	event;
		bool		woken = false;
		int			nevents;

		nevents = WaitEventSetWait(wait_set, wait_timeout_ms(), &event, 1,
								   PG_WAIT_EXTENSION);
		if (nevents > 0 && event.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		PG_TRY();
		{
			run_turn(woken);
		}
		PG_CATCH();
		{
			/* report, roll back, forget local state; leases bring rows back */
			MemoryContextSwitchTo(loop_context);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			SPI_finish();
			debug_query_string = NULL;
			pgstat_report_activity(STATE_IDLE, NULL);
			reset_state();
			next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_PAUSE_MS);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
	}
}
