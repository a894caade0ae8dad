/*-------------------------------------------------------------------------
 *
 * worker_claim.c
 *	  The sync worker's transactions on the queue: claim due rows with a
 *	  lease, and record what became of them and of each request.
 *
 * Every statement is prepared once and kept (SPI_keepplan).  Outcomes and
 * attempts are written without SQL where they may be (worker_direct.c);
 * otherwise they go to invsync._record_batch as arrays of the composite
 * types invsync.worker_outcome and invsync.worker_attempt, built here as
 * tuples: no text is formatted or parsed between the worker and SQL.
 *
 * Outcomes wait in record_context until the next record transaction.
 * While rows are in flight or waiting to be sent, more outcomes are
 * coming: they are gathered for up to RECORD_DELAY_MS (or RECORD_BATCH of
 * them) and written together, since a record transaction's fixed cost
 * (about a millisecond) is that of dozens of outcomes.  When the worker
 * holds no other row they are written at once.  When an application holds
 * some of their queue rows, _record_batch skips them (SKIP LOCKED) and the
 * whole outcome list is recorded again a little later: outcomes already
 * applied no longer match their claim, so recording them twice changes
 * nothing.
 *
 * Record transactions commit asynchronously (synchronous_commit off for
 * that transaction only).  A record lost to a server crash leaves its rows
 * claimed, exactly as a worker that crashed before recording does: their
 * leases (shortened at the next start) bring them back and their levels,
 * computed afresh, are pushed again.  Claims stay synchronous: a request
 * sent before a crash may still reach the marketplace after the restart,
 * and only a lease that survived the crash keeps the row from being sent
 * again meanwhile (t/013 sees two pushes of a listing at once otherwise).
 * Token writes stay synchronous too (a refresh token the marketplace has
 * rotated cannot be had again); each synchronous commit also flushes every
 * record committed before it.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "invsync.h"
#include "worker_internal.h"

/*
 * While requests are in flight, outcomes wait this long, or until this
 * many are pending, before a record transaction writes them together.
 */
#define RECORD_DELAY_MS 50
#define RECORD_BATCH 512

bool		extension_present = false;
bool		claim_found_rows = false;	/* more rows may be due at once */
int			rows_held = 0;		/* claimed rows not yet recorded */

static bool worker_start_recorded = false;

static MemoryContext record_context = NULL;
static PendingOutcome *outcomes = NULL;
static int	noutcomes = 0;
static int	outcomes_size = 0;
static PendingAttempt *attempts = NULL;
static int	nattempts = 0;
static int	attempts_size = 0;

/*
 * How many times in a row an application's lock held outcomes back, and
 * when to try again (0: at once).
 */
static int	record_retries = 0;
static TimestampTz next_record_attempt = 0;

static void record_flushed(int held, instr_time started);

/* when the oldest outcome or attempt now pending was queued */
static TimestampTz first_record_at = 0;

/* statements, prepared at first use and kept */
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr worker_started_plan = NULL;
static SPIPlanPtr purge_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static Oid	record_plan_types[2];	/* the array types record_plan takes */

/*
 * The shop the last claim ended with: the next one starts after it, so the
 * claim goes round every shop with due rows (none yet: from the first).
 */
static bool claim_resumes = false;
static int64 claim_after_tenant;
static int64 claim_after_shop;

/* set up the record buffers; once per worker */
void
claim_init(void)
{
	record_context = AllocSetContextCreate(TopMemoryContext, "invsync records",
										   ALLOCSET_DEFAULT_SIZES);
	reset_records();
}

/* a bigint column of the current SPI result row; 0 when NULL */
static int64
column_int64(HeapTuple tuple, int column)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, SPI_tuptable->tupdesc, column, &isnull);

	return isnull ? 0 : DatumGetInt64(value);
}

/*
 * A text column of the current SPI result row, copied into context; NULL
 * when NULL.  No output function is looked up, as SPI_getvalue would.
 */
static char *
column_text(HeapTuple tuple, int column, MemoryContext context)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, SPI_tuptable->tupdesc, column, &isnull);
	MemoryContext old;
	char	   *result;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(context);
	result = TextDatumGetCString(value);
	MemoryContextSwitchTo(old);
	return result;
}

/* true when the extension is installed in this database; in a transaction */
bool
check_extension(void)
{
	extension_present = OidIsValid(get_extension_oid("invsync", true));
	return extension_present;
}

/* a new incarnation of the worker, or the extension created again */
void
claim_forget_worker_start(void)
{
	worker_start_recorded = false;
}

/*
 * Rows that waited here (behind a slow or paused shop) too long to be sent
 * within their lease go back to the queue, to be claimed afresh.  In the
 * claim's transaction.
 */
static void
release_late_rows(TimestampTz now)
{
	static SPIPlanPtr release_plan = NULL;
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	dlist_iter	shops;

	dlist_foreach(shops, busy_shops())
	{
		ShopState  *shop = dlist_container(ShopState, list_node, shops.cur);
		dlist_mutable_iter iter;

		dlist_foreach_modify(iter, &shop->waiting)
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node, iter.cur);
			Datum		values[3];

			if (row->send_by > now)
				continue;
			values[0] = Int64GetDatum(row->tenant_id);
			values[1] = Int64GetDatum(row->listing_id);
			values[2] = Int64GetDatum(row->version);
			execute_plan(keep_plan(&release_plan,
								   "SELECT invsync._release_claim($1, $2, $3)",
								   3, types),
						 values, NULL, SPI_OK_SELECT);
			dlist_delete(&row->node);
			forget_row(row);
		}
	}
}

/* true when some waiting row is too late to be sent within its lease */
static bool
late_rows_waiting(TimestampTz now)
{
	dlist_iter	shops;

	dlist_foreach(shops, busy_shops())
	{
		ShopState  *shop = dlist_container(ShopState, list_node, shops.cur);
		dlist_iter	iter;

		dlist_foreach(iter, &shop->waiting)
		{
			ClaimedRow *row = dlist_container(ClaimedRow, node, iter.cur);

			if (row->send_by <= now)
				return true;
		}
	}
	return false;
}

/*
 * The current transaction commits without waiting for its WAL to reach
 * disk: see the header comment for why a lost record is a crash before it.
 */
static void
commit_without_flush(void)
{
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * The values of the adapter's attributes in a listing's external_ids, read
 * from the jsonb as stored (by key, no text in between) into the row's
 * ids, in rows_context.  A value of another form than a JSON string or
 * number is left absent; adapter_check_listing then refuses the listing.
 */
static void
read_listing_ids(ClaimedRow *row, Datum external_ids, bool isnull,
				 const ChannelAdapter *adapter)
{
	MemoryContext old;
	Jsonb	   *ids;
	int			i;

	if (isnull || adapter == NULL)
		return;
	ids = DatumGetJsonbP(external_ids);
	if (!JB_ROOT_IS_OBJECT(ids))
		return;
	old = MemoryContextSwitchTo(rows_context);
	for (i = 0; i < adapter->nattributes; i++)
	{
		const char *name = adapter->attributes[i].name;
		JsonbValue	found;

		if (getKeyJsonValueFromContainer(&ids->root, name, strlen(name), &found) == NULL)
			continue;
		if (found.type == jbvString)
			row->ids[i] = pnstrdup(found.val.string.val, found.val.string.len);
		else if (found.type == jbvNumeric)
			row->ids[i] = DatumGetCString(DirectFunctionCall1(numeric_out,
															  NumericGetDatum(found.val.numeric)));
	}
	MemoryContextSwitchTo(old);
}

/*
 * The rows this worker holds of each shop, waiting to be sent or in a
 * request in flight, as the two arrays (shop ids, counts) _claim takes:
 * the queue keeps no index of leased rows to count them from.
 */
static void
held_rows_by_shop(Datum *shop_ids, Datum *counts)
{
	dlist_iter	shops;
	int			room = 16;
	int			n = 0;
	int64	   *ids = palloc(room * sizeof(int64));
	Datum	   *held = palloc(room * sizeof(Datum));

	dlist_foreach(shops, busy_shops())
	{
		ShopState  *shop = dlist_container(ShopState, list_node, shops.cur);
		int			rows = shop->rows_in_flight;
		dlist_iter	iter;

		dlist_foreach(iter, &shop->waiting)
			rows++;
		if (rows == 0)
			continue;
		if (n == room)
		{
			room *= 2;
			ids = repalloc(ids, room * sizeof(int64));
			held = repalloc(held, room * sizeof(Datum));
		}
		ids[n] = shop->key.shop_id;
		held[n] = Int32GetDatum(rows);
		n++;
	}
	*shop_ids = int64_array(ids, n);
	*counts = PointerGetDatum(construct_array(held, n, INT4OID, sizeof(int32),
											  true, TYPALIGN_INT));
}

/*
 * Claim due rows and put them on their shops' waiting lists; reload the
 * shops they belong to.  One short transaction.
 */
void
claim_rows(void)
{
	Oid			types[8] = {TIMESTAMPTZOID, INTERVALOID, INT4OID, INT4OID,
	INT8OID, INT8OID, INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz now = GetCurrentTimestamp();
	instr_time	started;
	int64		send_window;
	int			limit;
	uint64		i;

	/*
	 * A claimed row must be sent early enough for its request to end before
	 * its lease does; else the row could be claimed again while still
	 * waiting here or in flight, and one listing pushed twice at once.
	 */
	send_window = (int64) invsync_lease_ms - invsync_http_timeout_ms -
		invsync_connect_timeout_ms;
	send_window = Max(send_window, invsync_lease_ms / 2);

	/* nothing to claim and nothing to hand back: no transaction */
	if (2 * invsync_batch_size - rows_held <= 0 && !late_rows_waiting(now) &&
		fetches_held >= invsync_batch_size)
		return;

	INSTR_TIME_SET_CURRENT(started);
	begin_work("invsync: claim");
	if (!check_extension())
	{
		worker_start_recorded = false;
		end_work();
		return;
	}

	if (!worker_start_recorded)
	{
		Oid			start_types[2] = {TIMESTAMPTZOID, INTERVALOID};
		Datum		start_values[2];

		start_values[0] = TimestampTzGetDatum(now);
		start_values[1] = interval_ms_datum(invsync_http_timeout_ms +
											invsync_connect_timeout_ms);
		execute_plan(keep_plan(&worker_started_plan,
							   "SELECT invsync._worker_started($1, $2)",
							   2, start_types),
					 start_values, NULL, SPI_OK_SELECT);
		worker_start_recorded = true;
	}

	/*
	 * Rows that waited too long to be sent within their lease go back, also
	 * when no new row is to be claimed: a full local queue of late rows
	 * would otherwise never drain.
	 */
	release_late_rows(now);

	/* order fetches first: they reserve stock the other channels still sell */
	claim_order_fetches(now, send_window);

	/* hold no more than two batches locally */
	limit = Min(invsync_batch_size, 2 * invsync_batch_size - rows_held);
	if (limit <= 0)
	{
		reload_claimed_shops();
		end_work();
		return;
	}

	values[0] = TimestampTzGetDatum(now);
	values[1] = interval_ms_datum(invsync_lease_ms);
	values[2] = Int32GetDatum(Max(limit, 0));
	values[3] = Int32GetDatum(MAX_ADAPTER_BATCH);
	values[4] = Int64GetDatum(claim_after_tenant);
	values[5] = Int64GetDatum(claim_after_shop);
	if (!claim_resumes)
		nulls[4] = nulls[5] = 'n';
	held_rows_by_shop(&values[6], &values[7]);
	execute_plan(keep_plan(&claim_plan,
						   "SELECT tenant_id, listing_id, shop_id, version, "
						   "target_level, attempts, "
						   "array_to_string(correlation_ids, ', '), "
						   "external_ids, sibling_key, channel "
						   "FROM invsync._claim($1, $2, $3, $4, $5, $6, $7, $8)",
						   8, types),
				 values, nulls, SPI_OK_SELECT);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClaimedRow *row = MemoryContextAllocZero(rows_context, sizeof(ClaimedRow));
		char	   *ids = column_text(tuple, 7, rows_context);
		char	   *channel = column_text(tuple, 10, CurrentMemoryContext);
		bool		isnull;
		ShopState  *shop;

		row->tenant_id = column_int64(tuple, 1);
		row->listing_id = column_int64(tuple, 2);
		row->shop_id = column_int64(tuple, 3);
		row->version = column_int64(tuple, 4);
		row->level = column_int64(tuple, 5);
		row->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 6, &isnull));
		row->send_by = TimestampTzPlusMilliseconds(now, send_window);
		row->correlation_ids = ids && ids[0] ? ids : MemoryContextStrdup(rows_context, "none");
		read_listing_ids(row, SPI_getbinval(tuple, desc, 8, &isnull), isnull,
						 channel ? adapter_for_channel(channel) : NULL);
		row->sibling_key = column_text(tuple, 9, rows_context);

		shop = get_shop(row->tenant_id, row->shop_id);
		shop_wait(shop, &shop->waiting, &row->node, false);
		rows_held++;

		/* rows come shop by shop as visited: the last is where it ended */
		claim_resumes = true;
		claim_after_tenant = row->tenant_id;
		claim_after_shop = row->shop_id;
	}
	claim_found_rows = SPI_processed > 0;
	worker_activity.claimed_rows += SPI_processed;

	/* credentials and limits may have changed: reload the shops involved */
	reload_claimed_shops();
	end_work();

	worker_activity.claims++;
	worker_activity.claim_us += microseconds_since(started);
	worker_activity.last_claim_at = now;
	publish_activity();
}

/* free a claimed row that waited on its shop's list */
void
forget_row(ClaimedRow *row)
{
	int			i;

	rows_held--;
	pfree(row->correlation_ids);
	if (row->sibling_key)
		pfree(row->sibling_key);
	for (i = 0; i < LISTING_MAX_ATTRIBUTES; i++)
	{
		if (row->ids[i] != NULL)
			pfree(row->ids[i]);
	}
	pfree(row);
}

/* a copy in record_context, or NULL */
static char *
record_strdup(const char *value)
{
	return value ? MemoryContextStrdup(record_context, value) : NULL;
}

/*
 * Queue one row's outcome for the next record transaction.  The row itself
 * stays its owner's to free (its shop's list, or its request).
 */
void
add_outcome(const ClaimedRow *row, const char *outcome, int64 due_in_ms,
			const char *error_class, const char *error)
{
	PendingOutcome *o;

	if (!records_pending())
		first_record_at = GetCurrentTimestamp();
	if (noutcomes == outcomes_size)
	{
		outcomes_size *= 2;
		outcomes = repalloc(outcomes, sizeof(PendingOutcome) * outcomes_size);
	}
	o = &outcomes[noutcomes++];
	o->tenant_id = row->tenant_id;
	o->listing_id = row->listing_id;
	o->version = row->version;
	o->level = row->level;
	o->outcome = outcome;
	o->due_in_ms = due_in_ms;
	o->error_class = record_strdup(error_class);
	o->error = record_strdup(error);
}

/* queue one attempt row for the next record transaction */
void
add_attempt(const PushRequest *request, long http_status, const char *outcome,
			const char *error_class, const char *error, const char *request_id,
			double latency_ms)
{
	PendingAttempt *a;
	int			i;

	if (!records_pending())
		first_record_at = GetCurrentTimestamp();
	if (nattempts == attempts_size)
	{
		attempts_size *= 2;
		attempts = repalloc(attempts, sizeof(PendingAttempt) * attempts_size);
	}
	a = &attempts[nattempts++];
	a->tenant_id = request->shop->key.tenant_id;
	a->shop_id = request->shop->key.shop_id;
	a->channel = record_strdup(request->shop->ctx.channel);
	a->kind = request->is_refresh ? "token_refresh" :
		(request->fetch ? "order_fetch" : "stock_update");
	a->nrows = request->nrows;
	a->listing_ids = MemoryContextAlloc(record_context, sizeof(int64) * Max(request->nrows, 1));
	a->versions = MemoryContextAlloc(record_context, sizeof(int64) * Max(request->nrows, 1));
	a->levels = MemoryContextAlloc(record_context, sizeof(int64) * Max(request->nrows, 1));
	for (i = 0; i < request->nrows; i++)
	{
		a->listing_ids[i] = request->rows[i].listing_id;
		a->versions[i] = request->rows[i].version;
		a->levels[i] = request->rows[i].level;
	}
	a->correlation_id = record_strdup(request->correlation_header);
	a->request_url = record_strdup(request->log_url ? request->log_url : "");
	a->http_status = http_status;
	a->outcome = outcome;
	a->error_class = record_strdup(error_class);
	a->error_message = record_strdup(error);
	a->request_id = record_strdup(request_id && request_id[0] ? request_id : NULL);
	a->latency_ms = latency_ms;
	a->started_at = request->started;
}

/* start empty outcome and attempt lists */
void
reset_records(void)
{
	MemoryContextReset(record_context);
	outcomes_size = 64;
	outcomes = MemoryContextAlloc(record_context, sizeof(PendingOutcome) * outcomes_size);
	noutcomes = 0;
	attempts_size = 16;
	attempts = MemoryContextAlloc(record_context, sizeof(PendingAttempt) * attempts_size);
	nattempts = 0;
	next_record_attempt = 0;
	record_retries = 0;
}

/* true when outcomes or attempts wait to be recorded */
bool
records_pending(void)
{
	return noutcomes > 0 || nattempts > 0;
}

/* how long the main loop may sleep before records are due; -1: none */
long
record_wait_ms(TimestampTz now)
{
	if (!records_pending())
		return -1;
	if (next_record_attempt != 0)
		return TimestampDifferenceMilliseconds(now, next_record_attempt);
	/* no row in flight or waiting, nothing more to wait for: write now */
	if (rows_held == 0 || noutcomes + nattempts >= RECORD_BATCH)
		return 0;
	return TimestampDifferenceMilliseconds(now,
										   TimestampTzPlusMilliseconds(first_record_at,
																	   RECORD_DELAY_MS));
}

/* a text datum of value, or a NULL one (also worker_direct.c's) */
Datum
text_or_null(const char *value, bool *isnull)
{
	*isnull = (value == NULL);
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}

/* a bigint[] of n values */
Datum
int64_array(const int64 *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		datums[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(datums, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* the OID of one of invsync's composite types, in a transaction */
static Oid
worker_type_oid(const char *name)
{
	Oid			namespace = get_namespace_oid("invsync", false);
	Oid			type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									   CStringGetDatum(name),
									   ObjectIdGetDatum(namespace));

	if (!OidIsValid(type))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invsync type %s is missing", name),
				 errhint("Update the extension: ALTER EXTENSION invsync UPDATE.")));
	return type;
}

/* an array of n composite values of the given type */
static Datum
composite_array(Oid type, Datum *rows, int n)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(rows, n, type, typlen, typbyval, typalign));
}

/* the pending outcomes as an invsync.worker_outcome[] */
static Datum
outcomes_datum(Oid type)
{
	TupleDesc	desc = BlessTupleDesc(TypeGetTupleDesc(type, NIL));
	Datum	   *rows = palloc(sizeof(Datum) * Max(noutcomes, 1));
	int			i;

	for (i = 0; i < noutcomes; i++)
	{
		PendingOutcome *o = &outcomes[i];
		Datum		values[8];
		bool		nulls[8] = {false};

		values[0] = Int64GetDatum(o->tenant_id);
		values[1] = Int64GetDatum(o->listing_id);
		values[2] = Int64GetDatum(o->version);
		values[3] = Int64GetDatum(o->level);
		values[4] = CStringGetTextDatum(o->outcome);
		values[5] = Int64GetDatum(o->due_in_ms);
		values[6] = text_or_null(o->error_class, &nulls[6]);
		values[7] = text_or_null(o->error, &nulls[7]);
		rows[i] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	return composite_array(type, rows, noutcomes);
}

/* the pending attempts as an invsync.worker_attempt[] */
static Datum
attempts_datum(Oid type)
{
	TupleDesc	desc = BlessTupleDesc(TypeGetTupleDesc(type, NIL));
	Datum	   *rows = palloc(sizeof(Datum) * Max(nattempts, 1));
	int			i;

	for (i = 0; i < nattempts; i++)
	{
		PendingAttempt *a = &attempts[i];
		Datum		values[17];
		bool		nulls[17] = {false};

		values[0] = Int64GetDatum(a->tenant_id);
		values[1] = Int64GetDatum(a->shop_id);
		values[2] = text_or_null(a->channel, &nulls[2]);
		values[3] = CStringGetTextDatum(a->kind);
		values[4] = int64_array(a->listing_ids, a->nrows);
		values[5] = int64_array(a->versions, a->nrows);
		values[6] = int64_array(a->levels, a->nrows);
		values[7] = text_or_null(a->correlation_id, &nulls[7]);
		values[8] = text_or_null(a->request_url, &nulls[8]);
		values[9] = Int32GetDatum((int32) a->http_status);
		nulls[9] = (a->http_status <= 0);
		values[10] = CStringGetTextDatum(a->outcome);
		values[11] = text_or_null(a->error_class, &nulls[11]);
		values[12] = text_or_null(a->error_message, &nulls[12]);
		values[13] = text_or_null(a->request_id, &nulls[13]);
		values[14] = Float8GetDatum(a->latency_ms);
		values[15] = TimestampTzGetDatum(a->started_at);
		rows[i] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	return composite_array(type, rows, nattempts);
}

/*
 * Write the pending outcomes and attempts in one transaction.  Outcomes
 * whose rows an application held are kept and written again later, after
 * a wait that doubles while the application keeps its lock.
 */
void
flush_records(void)
{
	Oid			types[3];
	Datum		values[3];
	Oid			outcome_type;
	Oid			attempt_type;
	instr_time	started;
	int			held;

	if (!records_pending() || record_wait_ms(GetCurrentTimestamp()) > 0)
		return;

	INSTR_TIME_SET_CURRENT(started);
	begin_work("invsync: record outcomes");
	commit_without_flush();
	if (!check_extension())
	{
		/* the queue is gone, and with it every row these outcomes were for */
		end_work();
		reset_records();
		return;
	}
	if (record_directly(outcomes, noutcomes, attempts, nattempts,
						GetCurrentTimestamp(), &held))
	{
		end_work();
		record_flushed(held, started);
		return;
	}
	outcome_type = worker_type_oid("worker_outcome");
	attempt_type = worker_type_oid("worker_attempt");
	types[0] = get_array_type(outcome_type);
	types[1] = get_array_type(attempt_type);
	types[2] = TIMESTAMPTZOID;
	/* the extension was created again: its types are new */
	if (record_plan != NULL &&
		(record_plan_types[0] != types[0] || record_plan_types[1] != types[1]))
	{
		SPI_freeplan(record_plan);
		record_plan = NULL;
	}
	record_plan_types[0] = types[0];
	record_plan_types[1] = types[1];

	values[0] = outcomes_datum(outcome_type);
	values[1] = attempts_datum(attempt_type);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	execute_plan(keep_plan(&record_plan,
						   "SELECT tenant_id, listing_id "
						   "FROM invsync._record_batch($1, $2, $3)",
						   3, types),
				 values, NULL, SPI_OK_SELECT);
	held = (int) SPI_processed;
	end_work();
	record_flushed(held, started);
}

/*
 * The pending attempts are written, and so are the outcomes, unless an
 * application held the rows of some (held of them): then every outcome is
 * written again later.  The transaction began at started.
 */
static void
record_flushed(int held, instr_time started)
{
	worker_activity.records++;
	worker_activity.record_us += microseconds_since(started);
	if (held == 0)
		worker_activity.recorded_outcomes += noutcomes;
	publish_activity();

	nattempts = 0;
	if (held > 0)
	{
		/*
		 * 10 ms, doubling up to 1.28 s while the application keeps its lock:
		 * soon enough for a short transaction, cheap for a long one.
		 */
		next_record_attempt =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										10 << Min(record_retries, 7));
		record_retries++;
	}
	else
		reset_records();
}

/* delete attempts older than invsync.attempt_retention, a bounded batch */
void
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
		execute_plan(keep_plan(&purge_plan,
							   "SELECT invsync._purge_attempts($1, $2)",
							   2, types),
					 values, NULL, SPI_OK_SELECT);
	}
	end_work();
}
