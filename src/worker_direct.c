/*-------------------------------------------------------------------------
 *
 * worker_direct.c
 *	  The sync worker's writes to the queue without SQL: recording outcomes
 *	  and attempts, and leasing claimed rows, through the executor's entry
 *	  points for single rows, as ledger_direct.c writes adjust()'s rows.
 *
 * The statements these replace (invsync._record_batch's, the lease in
 * _lease_claimed) spent more on the executor around each row (unnesting
 * arrays of composite values, gathering the locked rows, projecting,
 * materialising RETURNING rows) than on the row itself.  Here a row costs
 * what it must: an index probe or a fetch by address, a lock, the update
 * or insertion and its index entries.  What is written is what the
 * statements write, value for value.
 *
 * Recording: each outcome's row is looked up by key and locked without
 * waiting (SKIP LOCKED); a row an application holds is counted as held,
 * and the caller records the whole list again later.  A locked row is
 * updated only while it is still claimed at the version pushed
 * (compare-and-set), so an outcome recorded twice changes nothing.
 *
 * Leasing: _claim_shop has locked the rows and computed their levels; each
 * is updated at the address it was locked at.  _lease_claimed is this C
 * function, which runs the lease as a statement when it may not write
 * directly (and by key under Citus).
 *
 * The statements run instead, with the same results, wherever they would
 * check more than this file does (DESIGN §7): under Citus, when the DBA
 * turned invsync.direct_path off, when a table has statement triggers, row
 * security or columns of other names or types than these (or, for the
 * attempts, other columns at all), or when the worker's role lacks a
 * privilege the statements need.  Row triggers, CHECK and NOT NULL
 * constraints and the queue's foreign key work as they do for SQL.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "invsync.h"
#include "worker_internal.h"

/* a column the record path reads or writes: its name and type */
typedef struct RecordColumn
{
	const char *name;
	Oid			type;
} RecordColumn;

/* sync_queue's columns, by the index the code uses */
enum
{
	Q_TENANT, Q_LISTING, Q_VERSION, Q_STATE, Q_DUE, Q_LEASE, Q_CLAIMED,
	Q_ATTEMPTS, Q_FORCE, Q_PUSHED_LEVEL, Q_PUSHED_VERSION, Q_PUSHED_AT,
	Q_CHANGED, Q_CORRELATION, Q_ERROR_CLASS, Q_ERROR, Q_TARGET, Q_NCOLUMNS
};
static const RecordColumn queue_columns[Q_NCOLUMNS] = {
	{"tenant_id", INT8OID}, {"listing_id", INT8OID}, {"version", INT8OID},
	{"state", TEXTOID}, {"due_at", TIMESTAMPTZOID},
	{"lease_until", TIMESTAMPTZOID}, {"claimed_version", INT8OID},
	{"attempts", INT4OID}, {"force_push", BOOLOID},
	{"pushed_level", INT8OID}, {"pushed_version", INT8OID},
	{"pushed_at", TIMESTAMPTZOID}, {"changed_at", TIMESTAMPTZOID},
	{"correlation_ids", TEXTARRAYOID}, {"last_error_class", TEXTOID},
	{"last_error", TEXTOID}, {"target_level", INT8OID}
};

/* what _record_batch's statements read of the queue, and what they set */
static const int record_read[] = {
	Q_TENANT, Q_LISTING, Q_VERSION, Q_LEASE, Q_CLAIMED, Q_ATTEMPTS, Q_FORCE,
	Q_PUSHED_LEVEL, Q_PUSHED_VERSION, Q_PUSHED_AT, Q_CHANGED, Q_CORRELATION
};
static const int record_set[] = {
	Q_STATE, Q_DUE, Q_LEASE, Q_ATTEMPTS, Q_FORCE, Q_PUSHED_LEVEL,
	Q_PUSHED_VERSION, Q_PUSHED_AT, Q_CHANGED, Q_CORRELATION, Q_ERROR_CLASS,
	Q_ERROR
};

/* what the lease statement reads (and returns) of the queue, and sets */
static const int lease_read[] = {
	Q_LISTING, Q_VERSION, Q_ATTEMPTS, Q_PUSHED_VERSION, Q_CHANGED,
	Q_CORRELATION, Q_ERROR_CLASS, Q_ERROR, Q_TARGET
};
static const int lease_set[] = {
	Q_TARGET, Q_CLAIMED, Q_STATE, Q_LEASE, Q_ATTEMPTS, Q_PUSHED_VERSION,
	Q_CHANGED, Q_ERROR_CLASS, Q_ERROR
};

/* sync_attempts' columns: every one, the id first */
enum
{
	A_ID, A_TENANT, A_SHOP, A_CHANNEL, A_KIND, A_LISTINGS, A_VERSIONS,
	A_LEVELS, A_CORRELATION, A_URL, A_STATUS, A_OUTCOME, A_ERROR_CLASS,
	A_ERROR, A_REQUEST_ID, A_LATENCY, A_STARTED, A_NCOLUMNS
};
static const RecordColumn attempt_columns[A_NCOLUMNS] = {
	{"attempt_id", INT8OID}, {"tenant_id", INT8OID}, {"shop_id", INT8OID},
	{"channel", TEXTOID}, {"kind", TEXTOID}, {"listing_ids", INT8ARRAYOID},
	{"versions", INT8ARRAYOID}, {"levels", INT8ARRAYOID},
	{"correlation_id", TEXTOID}, {"request_url", TEXTOID},
	{"http_status", INT4OID}, {"outcome", TEXTOID},
	{"error_class", TEXTOID}, {"error_message", TEXTOID},
	{"marketplace_request_id", TEXTOID}, {"latency_ms", FLOAT8OID},
	{"started_at", TIMESTAMPTZOID}
};

/* a table the record path writes */
typedef struct RecordTarget
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	AttrNumber	attnums[A_NCOLUMNS];	/* by the enum's index */
} RecordTarget;

/* a column's value and null flag in a slot of the target's table */
#define COLUMN_VALUE(slot, target, column) \
	((slot)->tts_values[(target)->attnums[column] - 1])
#define COLUMN_NULL(slot, target, column) \
	((slot)->tts_isnull[(target)->attnums[column] - 1])
#define SET_COLUMN(slot, target, column, value, null) \
	do { \
		COLUMN_VALUE(slot, target, column) = (value); \
		COLUMN_NULL(slot, target, column) = (null); \
	} while (0)

/*
 * Find the columns in the table as it is now (locked).  False when one is
 * missing or of another type, or, with every_column, when the table has
 * others as well (an INSERT would fill those from their defaults).
 */
static bool
find_columns(RecordTarget *target, const RecordColumn *columns, int ncolumns,
			 bool every_column)
{
	TupleDesc	desc = RelationGetDescr(target->rel);
	int			live = 0;

	for (int c = 0; c < ncolumns; c++)
		target->attnums[c] = InvalidAttrNumber;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (att->attisdropped)
			continue;
		live++;
		for (int c = 0; c < ncolumns; c++)
			if (strcmp(NameStr(att->attname), columns[c].name) == 0)
			{
				if (att->atttypid != columns[c].type)
					return false;
				target->attnums[c] = att->attnum;
			}
	}
	for (int c = 0; c < ncolumns; c++)
		if (target->attnums[c] == InvalidAttrNumber)
			return false;
	return !every_column || live == ncolumns;
}

/* some of a target's columns, as a range table entry's column set */
static Bitmapset *
column_set(const RecordTarget *target, const int *columns, int ncolumns)
{
	Bitmapset  *set = NULL;

	for (int i = 0; i < ncolumns; i++)
		set = bms_add_member(set, target->attnums[columns[i]] -
							 FirstLowInvalidHeapAttributeNumber);
	return set;
}

/*
 * Open a table for writing, with a result relation info, its indexes and
 * a slot; false when it is not a plain heap table.
 */
static bool
open_target(EState *estate, Oid relid, Index rtindex, RecordTarget *target)
{
	target->rel = table_open(relid, RowExclusiveLock);
	target->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(target->rri, target->rel, rtindex, NULL, 0);
	estate->es_opened_result_relations =
		lappend(estate->es_opened_result_relations, target->rri);
	ExecOpenIndices(target->rri, false);
	target->slot = table_slot_create(target->rel, &estate->es_tupleTable);
	return target->rel->rd_rel->relkind == RELKIND_RELATION &&
		target->rel->rd_rel->relam == HEAP_TABLE_AM_OID;
}

/*
 * A range table entry asking for the privileges a statement needs on a
 * table, as the current user (the worker's role): SELECT of the columns
 * it reads, INSERT or UPDATE of those it writes (a row lock needs UPDATE
 * too).
 */
static RangeTblEntry *
make_rte(const RecordTarget *target, AclMode perms, const int *read, int nread,
		 const int *written, int nwritten)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(target->rel);
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = perms;
	rte->selectedCols = column_set(target, read, nread);
	/* updatedCols are also what UPDATE OF triggers compare with */
	if (perms & ACL_INSERT)
		rte->insertedCols = column_set(target, written, nwritten);
	else
		rte->updatedCols = column_set(target, written, nwritten);
	return rte;
}

/*
 * The queue (and the attempts, for recording) opened for writing under an
 * executor state of their own.
 */
typedef struct DirectWrite
{
	EState	   *estate;
	MemoryContext caller_context;
	RecordTarget queue;
	RecordTarget attempts;		/* rel NULL: not opened */
	Relation	queue_pkey;
	Oid			sequence;		/* of the attempts' ids */
} DirectWrite;

/*
 * Decide whether the direct path may write what the statements would,
 * opening the queue, and the attempts when the statements insert some:
 * false when they would check more (see the head of this file), or the
 * DBA turned invsync.direct_path off, or Citus is installed.  The
 * queue's read and set columns are those the statements name.  Either
 * way end_direct_write() must follow.
 */
static bool
begin_direct_write(DirectWrite *w, bool with_attempts,
				   const int *read, int nread, const int *set, int nset)
{
	static const int attempt_inserted[] = {
		A_TENANT, A_SHOP, A_CHANNEL, A_KIND, A_LISTINGS, A_VERSIONS,
		A_LEVELS, A_CORRELATION, A_URL, A_STATUS, A_OUTCOME, A_ERROR_CLASS,
		A_ERROR, A_REQUEST_ID, A_LATENCY, A_STARTED
	};
	Oid			namespace_oid = get_namespace_oid("invsync", false);
	Oid			queue_relid = get_relname_relid("sync_queue", namespace_oid);
	Oid			attempts_relid = get_relname_relid("sync_attempts", namespace_oid);
	Relation	rels[2];
	List	   *range_table;
	bool		usable;

	memset(w, 0, sizeof(DirectWrite));
	/* Citus's distributed tables are reached by SQL only */
	if (!invsync_direct_path || OidIsValid(get_extension_oid("citus", true)))
		return false;
	w->sequence = get_relname_relid("attempt_id_seq", namespace_oid);
	w->estate = CreateExecutorState();
	w->caller_context = MemoryContextSwitchTo(w->estate->es_query_cxt);
	w->estate->es_output_cid = GetCurrentCommandId(true);
	w->estate->es_snapshot = GetActiveSnapshot();
	if (!OidIsValid(queue_relid) || !OidIsValid(attempts_relid) ||
		!OidIsValid(w->sequence))
		return false;

	usable = open_target(w->estate, queue_relid, 1, &w->queue) &&
		find_columns(&w->queue, queue_columns, Q_NCOLUMNS, false);
	rels[0] = w->queue.rel;
	if (with_attempts)
	{
		usable = open_target(w->estate, attempts_relid, 2, &w->attempts) &&
			usable &&
			find_columns(&w->attempts, attempt_columns, A_NCOLUMNS, true);
		rels[1] = w->attempts.rel;
	}
	if (!usable)
		return false;

	/* the queue's primary key, (tenant_id, listing_id), to find rows by */
	for (int i = 0; i < w->queue.rri->ri_NumIndices; i++)
	{
		Relation	index = w->queue.rri->ri_IndexRelationDescs[i];

		if (RelationGetRelid(index) == RelationGetPrimaryKeyIndex(w->queue.rel) &&
			index->rd_index->indnkeyatts == 2 &&
			index->rd_index->indkey.values[0] == w->queue.attnums[Q_TENANT] &&
			index->rd_index->indkey.values[1] == w->queue.attnums[Q_LISTING])
			w->queue_pkey = index;
	}

	range_table = list_make1(make_rte(&w->queue, ACL_SELECT | ACL_UPDATE,
									  read, nread, set, nset));
	if (with_attempts)
		range_table = lappend(range_table,
							  make_rte(&w->attempts, ACL_INSERT, NULL, 0,
									   attempt_inserted,
									   lengthof(attempt_inserted)));
	ExecInitRangeTable(w->estate, range_table);
	return w->queue_pkey != NULL &&
		!direct_has_statement_triggers(w->queue.rri) &&
		!(with_attempts && direct_has_statement_triggers(w->attempts.rri)) &&
		!direct_sql_checks_more(range_table, w->sequence, rels,
								with_attempts ? 2 : 1);
}

/* close what begin_direct_write opened; after writes, make them visible */
static void
end_direct_write(DirectWrite *w, bool wrote)
{
	if (w->estate == NULL)
		return;
	ExecCloseResultRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	if (w->queue.rel != NULL)
		table_close(w->queue.rel, NoLock);
	if (w->attempts.rel != NULL)
		table_close(w->attempts.rel, NoLock);
	MemoryContextSwitchTo(w->caller_context);
	FreeExecutorState(w->estate);
	if (wrote)
		CommandCounterIncrement();
}

/* insert one attempt, its id from the sequence, as the INSERT does */
static void
insert_attempt(EState *estate, RecordTarget *attempts, Oid sequence,
			   const PendingAttempt *a)
{
	TupleTableSlot *slot = attempts->slot;
	bool		isnull;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	SET_COLUMN(slot, attempts, A_ID,
			   Int64GetDatum(nextval_internal(sequence, false)), false);
	SET_COLUMN(slot, attempts, A_TENANT, Int64GetDatum(a->tenant_id), false);
	SET_COLUMN(slot, attempts, A_SHOP, Int64GetDatum(a->shop_id), false);
	SET_COLUMN(slot, attempts, A_CHANNEL,
			   text_or_null(a->channel, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_KIND, CStringGetTextDatum(a->kind), false);
	SET_COLUMN(slot, attempts, A_LISTINGS,
			   int64_array(a->listing_ids, a->nrows), false);
	SET_COLUMN(slot, attempts, A_VERSIONS,
			   int64_array(a->versions, a->nrows), false);
	SET_COLUMN(slot, attempts, A_LEVELS,
			   int64_array(a->levels, a->nrows), false);
	SET_COLUMN(slot, attempts, A_CORRELATION,
			   text_or_null(a->correlation_id, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_URL,
			   text_or_null(a->request_url, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_STATUS,
			   Int32GetDatum((int32) a->http_status), a->http_status <= 0);
	SET_COLUMN(slot, attempts, A_OUTCOME,
			   CStringGetTextDatum(a->outcome), false);
	SET_COLUMN(slot, attempts, A_ERROR_CLASS,
			   text_or_null(a->error_class, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_ERROR,
			   text_or_null(a->error_message, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_REQUEST_ID,
			   text_or_null(a->request_id, &isnull), isnull);
	SET_COLUMN(slot, attempts, A_LATENCY, Float8GetDatum(a->latency_ms), false);
	SET_COLUMN(slot, attempts, A_STARTED,
			   TimestampTzGetDatum(a->started_at), false);
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(attempts->rri, estate, slot);
}

/* changed becomes a copy of row (its values read), to be changed column by column */
static void
start_new_version(TupleTableSlot *changed, TupleTableSlot *row)
{
	int			natts = row->tts_tupleDescriptor->natts;

	ExecClearTuple(changed);
	memcpy(changed->tts_values, row->tts_values, sizeof(Datum) * natts);
	memcpy(changed->tts_isnull, row->tts_isnull, sizeof(bool) * natts);
}

/*
 * Apply one outcome to the row locked in queue->slot, if it is still
 * claimed at the version pushed: _record_batch's UPDATE, value for value.
 */
static void
apply_outcome(EState *estate, EPQState *epq, RecordTarget *queue,
			  TupleTableSlot *changed, const PendingOutcome *o, TimestampTz now)
{
	TupleTableSlot *locked = queue->slot;
	bool		ok = strcmp(o->outcome, "ok") == 0;
	bool		current;
	const char *state;
	bool		isnull;

	slot_getallattrs(locked);
	if (COLUMN_NULL(locked, queue, Q_CLAIMED) || COLUMN_NULL(locked, queue, Q_LEASE) ||
		DatumGetInt64(COLUMN_VALUE(locked, queue, Q_CLAIMED)) != o->version)
		return;
	current = DatumGetInt64(COLUMN_VALUE(locked, queue, Q_VERSION)) == o->version;
	if (strcmp(o->outcome, "dead") == 0)
		state = "dead";
	else
		state = (ok && current) ? "synced" : "pending";

	start_new_version(changed, locked);
	SET_COLUMN(changed, queue, Q_LEASE, (Datum) 0, true);
	SET_COLUMN(changed, queue, Q_STATE, CStringGetTextDatum(state), false);
	SET_COLUMN(changed, queue, Q_DUE,
			   TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, o->due_in_ms)),
			   false);
	if (ok)
	{
		SET_COLUMN(changed, queue, Q_ATTEMPTS, Int32GetDatum(0), false);
		SET_COLUMN(changed, queue, Q_FORCE, BoolGetDatum(false), false);
		SET_COLUMN(changed, queue, Q_PUSHED_LEVEL, Int64GetDatum(o->level), false);
		SET_COLUMN(changed, queue, Q_PUSHED_VERSION, Int64GetDatum(o->version), false);
		SET_COLUMN(changed, queue, Q_PUSHED_AT, TimestampTzGetDatum(now), false);
		SET_COLUMN(changed, queue, Q_ERROR_CLASS, (Datum) 0, true);
		SET_COLUMN(changed, queue, Q_ERROR, (Datum) 0, true);
		if (current)
		{
			SET_COLUMN(changed, queue, Q_CHANGED, TimestampTzGetDatum(now), false);
			SET_COLUMN(changed, queue, Q_CORRELATION,
					   PointerGetDatum(construct_empty_array(TEXTOID)), false);
		}
	}
	else
	{
		SET_COLUMN(changed, queue, Q_ERROR_CLASS,
				   text_or_null(o->error_class, &isnull), isnull);
		SET_COLUMN(changed, queue, Q_ERROR, text_or_null(o->error, &isnull), isnull);
	}
	ExecStoreVirtualTuple(changed);
	ExecSimpleRelationUpdate(queue->rri, estate, epq, locked, changed);
}

/*
 * Record the outcomes and attempts without SQL when it may (see the head
 * of this file), in the caller's transaction, with its snapshot active.
 * Returns false, having written nothing, when _record_batch must record
 * them; else sets *held to the number of outcomes whose rows another
 * transaction held.
 */
bool
record_directly(const PendingOutcome *outcomes, int noutcomes,
				const PendingAttempt *attempts, int nattempts,
				TimestampTz now, int *held)
{
	DirectWrite w;
	EState	   *estate;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *changed;
	EPQState	epq;

	if (!begin_direct_write(&w, true, record_read, lengthof(record_read),
							record_set, lengthof(record_set)))
	{
		end_direct_write(&w, false);
		return false;
	}
	estate = w.estate;

	AfterTriggerBeginQuery();
	for (int i = 0; i < nattempts; i++)
	{
		insert_attempt(estate, &w.attempts, w.sequence, &attempts[i]);
		ResetPerTupleExprContext(estate);
	}

	*held = 0;
	changed = table_slot_create(w.queue.rel, &estate->es_tupleTable);
	EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
	scan = index_beginscan(w.queue.rel, w.queue_pkey, estate->es_snapshot, 2, 0);
	for (int i = 0; i < noutcomes; i++)
	{
		const PendingOutcome *o = &outcomes[i];
		ItemPointerData tid;
		TM_FailureData failure;
		TM_Result	result;

		ResetPerTupleExprContext(estate);
		ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber,
							   InvalidOid, w.queue_pkey->rd_indcollation[0],
							   F_INT8EQ, Int64GetDatum(o->tenant_id));
		ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber,
							   InvalidOid, w.queue_pkey->rd_indcollation[1],
							   F_INT8EQ, Int64GetDatum(o->listing_id));
		index_rescan(scan, keys, 2, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, w.queue.slot))
			continue;			/* its listing was deleted: nothing to record */
		tid = w.queue.slot->tts_tid;

		/*
		 * SELECT ... FOR UPDATE SKIP LOCKED in READ COMMITTED: the row's
		 * latest version, unless another transaction holds it.
		 */
		result = table_tuple_lock(w.queue.rel, &tid, estate->es_snapshot,
								  w.queue.slot, estate->es_output_cid,
								  LockTupleNoKeyExclusive, LockWaitSkip,
								  TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure);
		if (result == TM_WouldBlock)
			(*held)++;
		else if (result == TM_Ok)
			apply_outcome(estate, &epq, &w.queue, changed, o, now);
		else if (result != TM_Deleted && result != TM_SelfModified)
			elog(ERROR, "unexpected result %d locking a queue row", result);
	}
	index_endscan(scan);
	EvalPlanQualEnd(&epq);
	AfterTriggerEndQuery(estate);
	end_direct_write(&w, true);
	return true;
}

/*
 * The lease as one statement (a second UPDATE of a row would cost another
 * row version).  On one node the rows are reached by their addresses: a
 * nested loop of TID scans, which no statistics can turn into anything
 * else (by key it was a hash join whose build side was the tenant's whole
 * queue).  Under Citus, where a row address means nothing to the
 * statement's router, they are found by key (= ANY, so that only they are
 * read) and joined with their levels by hashing: with nested loops
 * allowed, statistics taken while the queue was small have the planner
 * read the claimed rows once for every level.  The settings on
 * _lease_claimed (and the two set here under Citus) make those plans, for
 * the arrays given (force_custom_plan), and end with the function.
 */
static const char lease_statement[] =
"WITH leased AS ("
"	UPDATE invsync.sync_queue q"
"	   SET target_level = lv.level,"
"		   claimed_version = q.version,"
"		   state = CASE WHEN lv.settle THEN 'synced' ELSE 'pending' END,"
"		   lease_until = CASE WHEN lv.settle THEN NULL ELSE $2 END,"
"		   attempts = CASE WHEN lv.settle THEN 0 ELSE q.attempts + 1 END,"
"		   pushed_version = CASE WHEN lv.settle THEN q.version"
"							ELSE q.pushed_version END,"
"		   changed_at = CASE WHEN lv.settle THEN $1 ELSE q.changed_at END,"
"		   last_error_class = CASE WHEN lv.settle THEN NULL"
"							  ELSE q.last_error_class END,"
"		   last_error = CASE WHEN lv.settle THEN NULL ELSE q.last_error END"
"	  FROM unnest($4, $5, $6, $7) WITH ORDINALITY"
"			 AS lv (listing_id, row_id, level, settle, ordinal)"
"	 WHERE %s"
"	RETURNING lv.ordinal, lv.settle, q.listing_id, q.version, q.target_level,"
"			  q.attempts, q.correlation_ids"
") "
"SELECT l.ordinal, l.listing_id, l.version, l.target_level, l.attempts,"
"	   l.correlation_ids"
"  FROM leased l"
" WHERE NOT l.settle";

/* run the lease statement with the function's arguments; its rows go to out */
static void
lease_by_statement(FunctionCallInfo fcinfo, Tuplestorestate *out)
{
	Oid			types[7] = {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID,
	INT8ARRAYOID, TIDARRAYOID, INT8ARRAYOID, BOOLARRAYOID};
	Datum		args[7];
	bool		isnull;
	bool		by_key;

	for (int i = 0; i < 7; i++)
		args[i] = PG_GETARG_DATUM(i);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT invsync._citus_distributed()", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not learn whether invsync is distributed");
	by_key = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (by_key)
	{
		/* until the function returns: the settings are its own */
		(void) set_config_option("enable_nestloop", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		(void) set_config_option("enable_hashjoin", "on", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	}
	if (SPI_execute_with_args(psprintf(lease_statement,
									   by_key ? "q.tenant_id = $3 AND q.listing_id = ANY ($4) "
									   "AND q.listing_id = lv.listing_id"
									   : "q.ctid = lv.row_id"),
							  7, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "the lease statement failed");
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(out, SPI_tuptable->vals[i]);
	SPI_finish();
}

/*
 * Lease one row at its address, or settle it: the lease statement's
 * UPDATE, value for value, and its RETURNING row when leased.
 */
static void
lease_row(EState *estate, EPQState *epq, RecordTarget *queue,
		  TupleTableSlot *changed, ItemPointer tid, const Datum *level,
		  int settle_or_null, int64 ordinal, TimestampTz now,
		  TimestampTz lease_until, Tuplestorestate *out, TupleDesc out_desc)
{
	/* a NULL settle takes the ELSE branches and is not returned */
	bool		settle = settle_or_null == 1;
	TupleTableSlot *row = queue->slot;
	Datum		version;
	bool		version_null;
	int32		attempts;

	/* the version at the address, as the statement's snapshot sees it */
	if (!table_tuple_fetch_row_version(queue->rel, tid, estate->es_snapshot, row))
		return;
	slot_getallattrs(row);
	version = COLUMN_VALUE(row, queue, Q_VERSION);
	version_null = COLUMN_NULL(row, queue, Q_VERSION);
	if (settle)
		attempts = 0;
	else if (pg_add_s32_overflow(DatumGetInt32(COLUMN_VALUE(row, queue, Q_ATTEMPTS)),
								 1, &attempts))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("integer out of range")));

	start_new_version(changed, row);
	SET_COLUMN(changed, queue, Q_TARGET, level ? *level : (Datum) 0, level == NULL);
	SET_COLUMN(changed, queue, Q_CLAIMED, version, version_null);
	SET_COLUMN(changed, queue, Q_STATE,
			   CStringGetTextDatum(settle ? "synced" : "pending"), false);
	SET_COLUMN(changed, queue, Q_LEASE, TimestampTzGetDatum(lease_until), settle);
	SET_COLUMN(changed, queue, Q_ATTEMPTS, Int32GetDatum(attempts), false);
	if (settle)
	{
		SET_COLUMN(changed, queue, Q_PUSHED_VERSION, version, version_null);
		SET_COLUMN(changed, queue, Q_CHANGED, TimestampTzGetDatum(now), false);
		SET_COLUMN(changed, queue, Q_ERROR_CLASS, (Datum) 0, true);
		SET_COLUMN(changed, queue, Q_ERROR, (Datum) 0, true);
	}
	ExecStoreVirtualTuple(changed);
	/* row keeps its page pinned: the old version's values stay readable */
	ExecSimpleRelationUpdate(queue->rri, estate, epq, row, changed);

	if (settle_or_null == 0)
	{
		Datum		values[6];
		bool		nulls[6] = {false};

		values[0] = Int64GetDatum(ordinal);
		values[1] = COLUMN_VALUE(row, queue, Q_LISTING);
		values[2] = version;
		nulls[2] = version_null;
		values[3] = level ? *level : (Datum) 0;
		nulls[3] = level == NULL;
		values[4] = Int32GetDatum(attempts);
		values[5] = COLUMN_VALUE(row, queue, Q_CORRELATION);
		nulls[5] = COLUMN_NULL(row, queue, Q_CORRELATION);
		tuplestore_putvalues(out, out_desc, values, nulls);
	}
}

/*
 * invsync._lease_claimed(p_now, p_lease_until, p_tenant, p_listings,
 * p_rows, p_levels, p_settle): lease the rows _claim_shop locked (at the
 * addresses p_rows) with their levels, or settle those whose level was
 * already published (p_settle); return the leased rows, each with its
 * ordinal in the arrays (from 1).
 */
PG_FUNCTION_INFO_V1(invsync_lease_claimed);
Datum
invsync_lease_claimed(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DirectWrite w;
	Datum	   *rows;
	Datum	   *levels;
	Datum	   *settles;
	bool	   *row_nulls;
	bool	   *level_nulls;
	bool	   *settle_nulls;
	int			nrows;
	int			nlevels;
	int			nsettles;
	TupleTableSlot *changed;
	EPQState	epq;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (!begin_direct_write(&w, false, lease_read, lengthof(lease_read),
							lease_set, lengthof(lease_set)))
	{
		end_direct_write(&w, false);
		lease_by_statement(fcinfo, rsinfo->setResult);
		return (Datum) 0;
	}

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), TIDOID, sizeof(ItemPointerData),
					  false, TYPALIGN_SHORT, &rows, &row_nulls, &nrows);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), INT8OID, sizeof(int64),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &levels, &level_nulls, &nlevels);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(6), BOOLOID, sizeof(bool), true,
					  TYPALIGN_CHAR, &settles, &settle_nulls, &nsettles);
	changed = table_slot_create(w.queue.rel, &w.estate->es_tupleTable);
	EvalPlanQualInit(&epq, w.estate, NULL, NIL, -1);
	AfterTriggerBeginQuery();
	/*
	 * unnest() pads the shorter arrays with NULLs; a NULL address matches
	 * no row, and only rows not settled (settle false) are returned.
	 */
	for (int i = 0; i < nrows; i++)
	{
		if (row_nulls[i])
			continue;
		ResetPerTupleExprContext(w.estate);
		lease_row(w.estate, &epq, &w.queue, changed,
				  (ItemPointer) DatumGetPointer(rows[i]),
				  i < nlevels && !level_nulls[i] ? &levels[i] : NULL,
				  i < nsettles && !settle_nulls[i] ? DatumGetBool(settles[i]) : -1,
				  i + 1, PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_TIMESTAMPTZ(1),
				  rsinfo->setResult, rsinfo->setDesc);
	}
	EvalPlanQualEnd(&epq);
	AfterTriggerEndQuery(w.estate);
	end_direct_write(&w, true);
	return (Datum) 0;
}
