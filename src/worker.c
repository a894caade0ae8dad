/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The sync worker's lifecycle: shared memory and the wake-up at commit,
 *	  the worker's identity (a non-superuser role, a pinned search_path),
 *	  its transactions, the main loop and recovery from errors.  The other
 *	  parts are described in worker_internal.h.
 *
 * One background worker serves every tenant of the database named by
 * invsync.database.  A launcher, connected to no database, starts it once
 * that database exists and again whenever it stops.  Each turn it
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
 * Shared memory holds the worker's latch and the counters it publishes
 * for invsync.worker_activity; everything else lives in this process, so
 * a restarted worker trusts nothing of its predecessor.
 *
 * Identity: a background worker can only log in as a role allowed to log
 * in, so the worker connects as the bootstrap superuser and then runs
 * every transaction as invsync.worker_role (invsync_worker, a NOLOGIN
 * role the extension creates), in a security-restricted operation so that
 * no SQL it runs can SET ROLE or SET SESSION AUTHORIZATION back.  Its
 * search_path is pg_catalog, pg_temp: nothing it runs resolves a name
 * through a schema a user can create objects in.
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

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
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
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "worker_internal.h"

/* purge old attempts this often */
#define ATTEMPT_PURGE_INTERVAL_MS (60 * 1000)
/* how long to wait after the worker's own transaction failed */
#define ERROR_PAUSE_MS 5000
/* the launcher is restarted after this long if it exits */
#define LAUNCHER_RESTART_SECONDS 5
/* the sync worker is started again no sooner than this after its last start */
#define WORKER_RESTART_MS 5000
/* how often the launcher looks for a missing invsync.database */
#define DATABASE_CHECK_MS 5000
/* the worker's search_path */
#define WORKER_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct InvsyncShared
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* NULL while no worker runs */
	WorkerActivity activity;	/* as the worker last published it */
} InvsyncShared;

static InvsyncShared *invsync_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set by invsync._wake_worker(); acted on when the transaction commits */
static bool wake_at_commit = false;

PG_FUNCTION_INFO_V1(invsync_wake_worker);
PG_FUNCTION_INFO_V1(invsync_worker_activity);

WorkerActivity worker_activity;

HttpEngine *worker_engine = NULL;
MemoryContext rows_context = NULL;	/* ClaimedRow waiting on shop lists */
TimestampTz next_dispatch = 0;	/* a token bucket refills, a slot is free */

static TimestampTz next_poll = 0;
static TimestampTz next_purge = 0;

/* the worker runs as invsync.worker_role; false until it could switch */
static bool role_assumed = false;
static bool role_problem_logged = false;

/* the caller's memory context, restored by end_work after the commit */
static MemoryContext work_caller_context = NULL;

static void invsync_shmem_request(void);
static void invsync_shmem_startup(void);
static void wake_xact_callback(XactEvent event, void *arg);

/* one of invsync's background workers, connecting to a database */
static void
describe_worker(BackgroundWorker *worker, const char *function,
				const char *name, int restart_seconds)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_seconds;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "invsync");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", name);
}

/*
 * Called from _PG_init in the postmaster: reserve shared memory, hook the
 * commit wake-up, and register the launcher, which starts the sync worker
 * once invsync.database exists.
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

	describe_worker(&worker, "invsync_launcher_main", "invsync launcher",
					LAUNCHER_RESTART_SECONDS);
	RegisterBackgroundWorker(&worker);
}

/* shared memory for the worker's latch and counters */
static void
invsync_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(InvsyncShared)));
}

/* set up the shared struct, once per postmaster */
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
		memset(&invsync_shared->activity, 0, sizeof(WorkerActivity));
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

/* at commit, wake the worker if the transaction queued a change */
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

/* at exit: no worker latch to set any more, no activity to show */
static void
clear_worker_latch(int code, Datum arg)
{
	SpinLockAcquire(&invsync_shared->mutex);
	invsync_shared->worker_latch = NULL;
	invsync_shared->activity.pid = 0;
	SpinLockRelease(&invsync_shared->mutex);
}

/*
 * Copy the worker's counters to shared memory.  Called once a claim or
 * record transaction, never a request: the copy is a few dozen bytes under
 * the spinlock the committing backends take only to find the latch.
 */
void
publish_activity(void)
{
	worker_activity.in_flight = http_engine_running(worker_engine);
	worker_activity.cached_shops = cached_shop_count();
	SpinLockAcquire(&invsync_shared->mutex);
	invsync_shared->activity = worker_activity;
	SpinLockRelease(&invsync_shared->mutex);
}

int64
microseconds_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MICROSEC(now);
}

/*
 * SQL: invsync._worker_activity(), behind the view invsync.worker_activity.
 * One row while a sync worker runs on this server, none otherwise (also
 * when invsync is not preloaded, since then there is no shared memory).
 */
Datum
invsync_worker_activity(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerActivity activity;
	Datum		values[12];
	bool		nulls[12] = {false};

	InitMaterializedSRF(fcinfo, 0);
	if (invsync_shared == NULL)
		return (Datum) 0;

	SpinLockAcquire(&invsync_shared->mutex);
	activity = invsync_shared->activity;
	SpinLockRelease(&invsync_shared->mutex);
	if (activity.pid == 0)
		return (Datum) 0;

	values[0] = Int32GetDatum(activity.pid);
	values[1] = TimestampTzGetDatum(activity.started_at);
	values[2] = Int64GetDatum(activity.claims);
	values[3] = Int64GetDatum(activity.claimed_rows);
	values[4] = Float8GetDatum(activity.claim_us / 1000.0);
	values[5] = TimestampTzGetDatum(activity.last_claim_at);
	nulls[5] = activity.claims == 0;
	values[6] = Int64GetDatum(activity.records);
	values[7] = Int64GetDatum(activity.recorded_outcomes);
	values[8] = Float8GetDatum(activity.record_us / 1000.0);
	values[9] = Int64GetDatum(activity.requests);
	values[10] = Int32GetDatum(activity.in_flight);
	values[11] = Int32GetDatum(activity.cached_shops);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Transactions
 * --------------------------------------------------------------------- */

/*
 * Start one of the worker's short transactions, connected to SPI with a
 * snapshot.  end_work commits it and returns to the caller's memory
 * context: a commit leaves CurrentMemoryContext at TopMemoryContext, where
 * whatever the turn allocated next would stay for ever.
 */
void
begin_work(const char *activity)
{
	work_caller_context = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "invsync: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = activity;
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* commit the transaction begin_work started; back to the caller's context */
void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(work_caller_context);
	debug_query_string = NULL;
	/* without it autovacuum never learns of the worker's writes */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Prepare a statement once and keep it for the life of the worker.  The
 * plan cache re-plans it by itself when what it uses changes (a function
 * replaced, the extension dropped and created again).
 */
SPIPlanPtr
keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, types);

		if (prepared == NULL)
			elog(ERROR, "invsync: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(prepared) != 0)
			elog(ERROR, "invsync: could not keep the plan of \"%s\"", sql);
		*plan = prepared;
	}
	return *plan;
}

/* run a kept plan; SPI errors are bugs, not outcomes */
void
execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "invsync: unexpected SPI result %s",
			 SPI_result_code_string(rc));
}

/* an interval of ms milliseconds, palloc'd */
Datum
interval_ms_datum(int64 ms)
{
	Interval   *span = palloc0(sizeof(Interval));

	span->time = ms * INT64CONST(1000);
	return IntervalPGetDatum(span);
}

/* ---------------------------------------------------------------------
 * Identity
 * --------------------------------------------------------------------- */

/* log a problem with the worker's role once, until it changes */
static void
role_problem(const char *event, const char *message)
{
	if (role_problem_logged)
		return;
	role_problem_logged = true;
	log_event(WARNING, event, NULL, NULL, NULL, 0, 0, -1, message);
}

/*
 * Become invsync.worker_role for every transaction from now on.  Outside
 * any transaction, so that an aborted transaction restores this identity
 * rather than the superuser's.  False when the role is missing (the
 * extension not created yet) or is a superuser, which the worker refuses.
 */
static bool
assume_worker_role(void)
{
	Oid			role;
	bool		is_superuser = false;

	Assert(!IsTransactionState());
	StartTransactionCommand();
	role = get_role_oid(invsync_worker_role, true);
	if (OidIsValid(role))
		is_superuser = superuser_arg(role);
	CommitTransactionCommand();

	if (!OidIsValid(role))
	{
		role_problem("worker_role_missing",
					 psprintf("role \"%s\" (invsync.worker_role) does not exist: CREATE EXTENSION invsync creates invsync_worker",
							  invsync_worker_role));
		return false;
	}
	if (is_superuser)
	{
		role_problem("worker_role_superuser",
					 psprintf("role \"%s\" (invsync.worker_role) is a superuser: the worker runs only as a role without superuser rights",
							  invsync_worker_role));
		return false;
	}
	SetUserIdAndSecContext(role, SECURITY_RESTRICTED_OPERATION);
	role_problem_logged = false;
	return true;
}

/* ---------------------------------------------------------------------
 * Main loop
 * --------------------------------------------------------------------- */

/* how long the loop may sleep: the poll, libcurl's timer, work falling due */
static long
wait_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = TimestampDifferenceMilliseconds(now, next_poll);
	long		curl_timeout = http_engine_timeout_ms(worker_engine);
	long		record_wait = record_wait_ms(now);
	long		fetch_record_wait = fetch_record_wait_ms(now);

	if (curl_timeout >= 0)
		timeout = Min(timeout, curl_timeout);
	if (next_dispatch != 0)
		timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_dispatch));
	if (record_wait >= 0)
		timeout = Min(timeout, record_wait);
	if (fetch_record_wait >= 0)
		timeout = Min(timeout, fetch_record_wait);
	return Max(timeout, 0);
}

/* drive the transfers, then handle the finished ones and write outcomes */
static void
drive_and_record(void)
{
	http_engine_drive(worker_engine);
	handle_finished();
	flush_records();
	flush_fetch_records();
	save_shop_changes();
}

/* one turn of the loop: record, claim, send, record */
static void
run_turn(bool woken)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!role_assumed)
	{
		if (now < next_poll && !woken)
			return;
		next_poll = TimestampTzPlusMilliseconds(now, invsync_poll_interval_ms);
		role_assumed = assume_worker_role();
		if (!role_assumed)
			return;
		woken = true;
	}

	drive_and_record();

	/*
	 * Claim when a commit announced changes, when the poll falls due, and,
	 * while a backlog drains, as soon as half a batch is left: waiting for
	 * the poll would cap the rate at one batch per poll interval.
	 */
	if ((woken || now >= next_poll ||
		 (claim_found_rows && rows_held <= invsync_batch_size / 2)) &&
		http_engine_running(worker_engine) < invsync_max_in_flight)
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
	drive_and_record();

	if (now >= next_purge)
	{
		purge_attempts();
		next_purge = TimestampTzPlusMilliseconds(now, ATTEMPT_PURGE_INTERVAL_MS);
	}
}

/*
 * After an ERROR: abort the transaction, then the transfers (so nothing
 * points into what is freed next), then forget the requests, rows and
 * records.  Leases bring the rows back; the next claim shortens the
 * leases this incarnation held, as at a start.
 */
static void
recover_from_error(void)
{
	EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	/* hash scans an error left open outside a transaction */
	AtEOXact_HashTables(false);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);

	abort_requests();
	reset_shops();
	MemoryContextReset(rows_context);
	rows_held = 0;
	claim_found_rows = false;
	reset_records();
	reset_fetches();
	claim_forget_worker_start();
	/* the role may be gone, or changed: look it up again */
	role_assumed = false;
	next_dispatch = 0;
	next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_PAUSE_MS);
}

/* ---------------------------------------------------------------------
 * Launcher
 * --------------------------------------------------------------------- */

/*
 * The OID of invsync.database, InvalidOid while it does not exist.  The
 * launcher is connected to no database: it can read only shared catalogs,
 * and only by a plain scan (as the autovacuum launcher does), not through
 * the name index.
 */
static Oid
lookup_worker_database(void)
{
	Oid			database = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tuple);

		if (strcmp(NameStr(form->datname), invsync_database) == 0)
		{
			database = form->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return database;
}

/* register the sync worker for the database; false if no slot was free */
static bool
start_sync_worker(Oid database, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	/* the launcher restarts it, after a pause (WORKER_RESTART_MS) */
	describe_worker(&worker, "invsync_worker_main", "invsync sync worker",
					BGW_NEVER_RESTART);
	worker.bgw_main_arg = ObjectIdGetDatum(database);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * The launcher: starts the sync worker once invsync.database exists, and
 * again whenever it stops, no more often than every WORKER_RESTART_MS.
 * While the database is missing it says so once, with what to do, and
 * looks again quietly.
 */
void
invsync_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz last_start = 0;
	bool		missing_logged = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("invsync launcher");

	for (;;)
	{
		long		timeout = DATABASE_CHECK_MS;
		pid_t		pid;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (handle != NULL &&
			GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			pfree(handle);
			handle = NULL;
		}
		if (handle == NULL)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz allowed = TimestampTzPlusMilliseconds(last_start,
															  WORKER_RESTART_MS);

			if (now < allowed)
				timeout = TimestampDifferenceMilliseconds(now, allowed);
			else
			{
				Oid			database = lookup_worker_database();

				if (!OidIsValid(database))
				{
					if (!missing_logged)
						log_event(WARNING, "worker_database_missing", NULL, NULL,
								  NULL, 0, 0, -1,
								  psprintf("database \"%s\" (invsync.database) does not exist: the sync worker starts once it is created, or set invsync.database and restart",
										   invsync_database));
					missing_logged = true;
				}
				else if (start_sync_worker(database, &handle))
				{
					missing_logged = false;
					last_start = now;
				}
				else
					log_event(WARNING, "worker_slot_missing", NULL, NULL, NULL, 0,
							  0, -1,
							  "no background worker slot is free for the sync worker: raise max_worker_processes");
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* the worker's entry point: connect, set up, and loop until told to stop */
void
invsync_worker_main(Datum main_arg)
{
	WaitEventSet *wait_set;
	MemoryContext loop_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&invsync_shared->mutex);
	invsync_shared->worker_latch = MyLatch;
	SpinLockRelease(&invsync_shared->mutex);
	before_shmem_exit(clear_worker_latch, 0);

	/* the launcher checked that the database exists */
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	pgstat_report_appname("invsync sync worker");

	SetConfigOption("search_path", WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Under Citus every statement is planned for its values: Citus routes
	 * a statement to the shard of its tenant only when it sees the
	 * tenant's value, which a generic plan hides behind a parameter.  (On
	 * a single node the functions choose; the claim's plans are generic.)
	 */
	if (invsync_citus_loaded)
		SetConfigOption("plan_cache_mode", "force_custom_plan", PGC_SUSET,
						PGC_S_OVERRIDE);

	/*
	 * Every statement of the worker is short and reaches its rows by key;
	 * a plan whose cost includes a disabled path (enable_seqscan is off in
	 * the claim) would otherwise be JIT-compiled, for far longer than the
	 * statement runs, on every call.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	rows_context = AllocSetContextCreate(TopMemoryContext, "invsync claimed rows",
										 ALLOCSET_DEFAULT_SIZES);
	loop_context = AllocSetContextCreate(TopMemoryContext, "invsync worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	shops_init();
	claim_init();
	orders_init();
	worker_engine = http_engine_create();

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, http_engine_fd(worker_engine),
					  NULL, NULL);

	worker_activity.pid = MyProcPid;
	worker_activity.started_at = GetCurrentTimestamp();
	publish_activity();

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
			MemoryContextSwitchTo(loop_context);
			recover_from_error();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
	}
}
