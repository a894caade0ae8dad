/*-------------------------------------------------------------------------
 *
 * worker_direct.c
 *	  The sync worker's claim and record without SQL: the levels of the
 *	  rows claimed, their lease, and the outcomes and attempts recorded,
 *	  through index probes and the executor's entry points for single
 *	  rows, as ledger_direct.c writes adjust()'s rows.
 *
 * The statements these replace (invsync._record_batch's, the lease in
 * _lease_claimed, the claim's levels) spent more on the executor around
 * each row (unnesting arrays of composite values, joining, aggregating,
 * gathering the locked rows, projecting, materialising RETURNING rows)
 * than on the row itself.  Here a row costs what it must: index probes or
 * a fetch by address, a lock, the update or insertion and its index
 * entries.  What is computed and written is what the statements compute
 * and write, value for value.
 *
 * Recording: each outcome's row is looked up by key and locked without
 * waiting (SKIP LOCKED); a row an application holds is counted as held,
 * and the caller records the whole list again later.  A locked row is
 * updated only while it is still claimed at the version pushed
 * (compare-and-set), so an outcome recorded twice changes nothing.
 *
 * Levels: once _claim_shop has locked the rows, _claim_levels computes
 * each listing's level (its stock over its source locations, bundles
 * whole, less the buffer, times the allocation, within its bounds) by
 * probes of three primary keys, where _listings_available's statement
 * joined and aggregated per row; tells whether a row must go with its
 * sibling group (a probe of the listings' sibling index); and sorts the
 * rows into the worker's batches.
 *
 * Leasing: each row is then updated at the address it was locked at.
 * _lease_claimed is this C function, which runs the lease as a statement
 * when it may not write directly (and by key under Citus).
 *
 * The statements run instead, with the same results, wherever they would
 * check more than this file does (DESIGN §7), or would fail (a value out
 * of range: the statement says so): under Citus, when the DBA turned
 * invsync.direct_path off, when a table has statement triggers, row
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
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
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
 * Find the columns in a table as it is now (locked), their attribute
 * numbers into attnums (by the columns' index).  False when one is
 * missing or of another type, or, with every_column, when the table has
 * others as well (an INSERT would fill those from their defaults).
 */
static bool
find_columns(Relation rel, const RecordColumn *columns, int ncolumns,
			 AttrNumber *attnums, bool every_column)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			live = 0;

	for (int c = 0; c < ncolumns; c++)
		attnums[c] = InvalidAttrNumber;
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
				attnums[c] = att->attnum;
			}
	}
	for (int c = 0; c < ncolumns; c++)
		if (attnums[c] == InvalidAttrNumber)
			return false;
	return !every_column || live == ncolumns;
}

/*
 * Some of a table's columns (indexes into attnums; NULL for the first
 * ncolumns of them), as a column set.
 */
static Bitmapset *
column_set(const AttrNumber *attnums, const int *columns, int ncolumns)
{
	Bitmapset  *set = NULL;

	for (int i = 0; i < ncolumns; i++)
		set = bms_add_member(set, attnums[columns ? columns[i] : i] -
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
 * too); the columns as column_set takes them.
 */
static RangeTblEntry *
make_rte(Relation rel, const AttrNumber *attnums, AclMode perms,
		 const int *read, int nread, const int *written, int nwritten)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = (perms & (ACL_INSERT | ACL_UPDATE)) ?
		RowExclusiveLock : AccessShareLock;
	rte->requiredPerms = perms;
	rte->selectedCols = column_set(attnums, read, nread);
	/* updatedCols are also what UPDATE OF triggers compare with */
	if (perms & ACL_INSERT)
		rte->insertedCols = column_set(attnums, written, nwritten);
	else
		rte->updatedCols = column_set(attnums, written, nwritten);
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
		find_columns(w->queue.rel, queue_columns, Q_NCOLUMNS,
					 w->queue.attnums, false);
	rels[0] = w->queue.rel;
	if (with_attempts)
	{
		usable = open_target(w->estate, attempts_relid, 2, &w->attempts) &&
			usable &&
			find_columns(w->attempts.rel, attempt_columns, A_NCOLUMNS,
						 w->attempts.attnums, true);
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

	range_table = list_make1(make_rte(w->queue.rel, w->queue.attnums,
									  ACL_SELECT | ACL_UPDATE,
									  read, nread, set, nset));
	if (with_attempts)
		range_table = lappend(range_table,
							  make_rte(w->attempts.rel, w->attempts.attnums,
									   ACL_INSERT, NULL, 0,
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
" WHERE NOT l.settle"
" ORDER BY l.ordinal";

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
 * already published (p_settle); return the leased rows in the order of
 * the arrays, each with its ordinal in them (from 1).
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


/* ---------------------------------------------------------------------
 * The claim's levels
 * --------------------------------------------------------------------- */

/* what the levels read: listings, bundle_leaves and stock_levels columns */
enum
{
	L_TENANT, L_LISTING, L_SKU, L_SOURCES, L_BUFFER, L_ALLOCATION, L_MIN,
	L_MAX, L_BATCH, L_SIBLING, L_IDS, L_SHOP, L_ENABLED, L_NCOLUMNS
};
static const RecordColumn listing_columns[L_NCOLUMNS] = {
	{"tenant_id", INT8OID}, {"listing_id", INT8OID}, {"sku", TEXTOID},
	{"source_locations", TEXTARRAYOID}, {"buffer", INT8OID},
	{"allocation_percent", NUMERICOID}, {"min_level", INT8OID},
	{"max_level", INT8OID}, {"batch_key", TEXTOID}, {"sibling_key", TEXTOID},
	{"external_ids", JSONBOID}, {"shop_id", INT8OID}, {"enabled", BOOLOID}
};
enum
{
	B_TENANT, B_BUNDLE, B_COMPONENT, B_QTY, B_NCOLUMNS
};
static const RecordColumn leaf_columns[B_NCOLUMNS] = {
	{"tenant_id", INT8OID}, {"bundle_sku", TEXTOID},
	{"component_sku", TEXTOID}, {"qty", INT8OID}
};
enum
{
	S_TENANT, S_SKU, S_LOCATION, S_ON_HAND, S_RESERVED, S_NCOLUMNS
};
static const RecordColumn stock_columns[S_NCOLUMNS] = {
	{"tenant_id", INT8OID}, {"sku", TEXTOID}, {"location", TEXTOID},
	{"on_hand", INT8OID}, {"reserved", INT8OID}
};

/*
 * A table the levels read by an index that leads with the tenant and the
 * keys looked up (its primary key, or the listings' sibling groups): one
 * index scan, probed again for each key.
 */
typedef struct ReadTable
{
	Relation	rel;
	bool		rel_borrowed;	/* another ReadTable's, closed by it */
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	AttrNumber	attnums[L_NCOLUMNS];	/* by the column enum's index */
} ReadTable;

/*
 * Open a table for the levels: false when it is not a plain heap table,
 * lacks one of the columns, or its primary key does not lead with key
 * (and the tenant before it).
 */
static bool
open_read_table(ReadTable *table, Oid namespace_oid, const char *name,
				const RecordColumn *columns, int ncolumns, int key)
{
	Oid			relid = get_relname_relid(name, namespace_oid);
	Oid			pkey;

	if (!OidIsValid(relid))
		return false;
	table->rel = table_open(relid, AccessShareLock);
	if (table->rel->rd_rel->relkind != RELKIND_RELATION ||
		table->rel->rd_rel->relam != HEAP_TABLE_AM_OID ||
		!find_columns(table->rel, columns, ncolumns, table->attnums, false))
		return false;
	pkey = RelationGetPrimaryKeyIndex(table->rel);
	if (!OidIsValid(pkey))
		return false;
	table->index = index_open(pkey, AccessShareLock);
	return table->index->rd_index->indnkeyatts >= 2 &&
		table->index->rd_rel->relam == BTREE_AM_OID &&
		table->index->rd_index->indkey.values[0] == table->attnums[0] &&
		table->index->rd_index->indkey.values[1] == table->attnums[key];
}

/*
 * The listings' index of sibling groups, (tenant_id, shop_id,
 * sibling_key), every row or those with a sibling key: false when there
 * is none such.
 */
static bool
open_siblings_index(ReadTable *siblings, const ReadTable *listings)
{
	List	   *indexes = RelationGetIndexList(listings->rel);
	ListCell   *lc;

	siblings->rel = listings->rel;
	siblings->rel_borrowed = true;
	memcpy(siblings->attnums, listings->attnums, sizeof(listings->attnums));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		List	   *predicate = RelationGetIndexPredicate(index);
		NullTest   *not_null = list_length(predicate) == 1 &&
			IsA(linitial(predicate), NullTest) ? linitial(predicate) : NULL;

		if (index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_index->indnkeyatts >= 3 &&
			index->rd_index->indkey.values[0] == listings->attnums[L_TENANT] &&
			index->rd_index->indkey.values[1] == listings->attnums[L_SHOP] &&
			index->rd_index->indkey.values[2] == listings->attnums[L_SIBLING] &&
			(predicate == NIL ||
			 (not_null != NULL && not_null->nulltesttype == IS_NOT_NULL &&
			  IsA(not_null->arg, Var) &&
			  ((Var *) not_null->arg)->varattno == listings->attnums[L_SIBLING])))
		{
			siblings->index = index;
			return true;
		}
		index_close(index, AccessShareLock);
	}
	return false;
}

static void
close_read_table(ReadTable *table)
{
	if (table->scan != NULL)
		index_endscan(table->scan);
	if (table->slot != NULL)
		ExecDropSingleTupleTableSlot(table->slot);
	if (table->index != NULL)
		index_close(table->index, NoLock);
	if (table->rel != NULL && !table->rel_borrowed)
		table_close(table->rel, NoLock);
}

/*
 * Look up the tenant and nkeys more keys (each with its equality) in a
 * table's index; the rows come from next_row.
 */
static void
probe(ReadTable *table, int64 tenant, int nkeys, const Datum *values,
	  const RegProcedure *equals)
{
	ScanKeyData keys[3];

	Assert(nkeys < lengthof(keys));
	if (table->scan == NULL)
	{
		table->scan = index_beginscan(table->rel, table->index,
									  GetActiveSnapshot(), nkeys + 1, 0);
		table->slot = table_slot_create(table->rel, NULL);
	}
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   table->index->rd_indcollation[0], F_INT8EQ,
						   Int64GetDatum(tenant));
	for (int k = 0; k < nkeys; k++)
		ScanKeyEntryInitialize(&keys[k + 1], 0, k + 2, BTEqualStrategyNumber,
							   InvalidOid, table->index->rd_indcollation[k + 1],
							   equals[k], values[k]);
	index_rescan(table->scan, keys, nkeys + 1, NULL, 0);
}

static bool
next_row(ReadTable *table)
{
	if (!index_getnext_slot(table->scan, ForwardScanDirection, table->slot))
		return false;
	slot_getallattrs(table->slot);
	return true;
}

/* the equality of a key probed, for probe's arrays */
static const RegProcedure int8_equal = F_INT8EQ;
static const RegProcedure text_equal = F_TEXTEQ;

#define READ_VALUE(table, column) \
	((table)->slot->tts_values[(table)->attnums[column] - 1])
#define READ_NULL(table, column) \
	((table)->slot->tts_isnull[(table)->attnums[column] - 1])

/* one listing's claim values, and where it was in the arrays given */
typedef struct ClaimLevel
{
	int			ordinal;		/* from 0 */
	int64		listing_id;
	int64		level;
	text	   *batch_key;		/* NULL for none */
	text	   *sibling_key;
	Datum		external_ids;
	int			unchanged;		/* 1, 0, or -1 for NULL */
} ClaimLevel;

/* the SQL's "value = ANY (array)", for a location and source_locations */
static bool
location_listed(Datum location, ArrayType *sources, Oid collation)
{
	ArrayIterator it = array_create_iterator(sources, 0, NULL);
	Datum		source;
	bool		isnull;
	bool		found = false;

	while (!found && array_iterate(it, &source, &isnull))
		found = !isnull &&
			DatumGetBool(DirectFunctionCall2Coll(texteq, collation, location,
												 source));
	array_free_iterator(it);
	return found;
}

/*
 * The stock of one SKU over the listing's source locations (every
 * location when sources is NULL): _listings_available's sum.  False when
 * the SQL would fail (bigint out of range), for it to say so.
 */
static bool
stock_available(ReadTable *stock, int64 tenant, Datum sku, ArrayType *sources,
				int64 *available)
{
	int64		sum = 0;
	Oid			collation = TupleDescAttr(RelationGetDescr(stock->rel),
										  stock->attnums[S_LOCATION] - 1)->attcollation;

	probe(stock, tenant, 1, &sku, &text_equal);
	while (next_row(stock))
	{
		int64		row;

		if (READ_NULL(stock, S_ON_HAND) || READ_NULL(stock, S_RESERVED))
			return false;
		if (sources != NULL &&
			(READ_NULL(stock, S_LOCATION) ||
			 !location_listed(READ_VALUE(stock, S_LOCATION), sources, collation)))
			continue;

		/*
		 * The SQL sums in numeric: a sum out of range on the way that
		 * comes back into range is the statement's to compute.
		 */
		if (pg_sub_s64_overflow(DatumGetInt64(READ_VALUE(stock, S_ON_HAND)),
								DatumGetInt64(READ_VALUE(stock, S_RESERVED)),
								&row) ||
			pg_add_s64_overflow(sum, row, &sum))
			return false;
	}
	*available = sum;
	return true;
}

/*
 * A listing's available stock: the whole bundles its components make (the
 * floor of each component's stock over its quantity), or its own SKU's
 * stock when it is no bundle.  False when the SQL would fail.
 */
static bool
listing_available(ReadTable *leaves, ReadTable *stock, int64 tenant, Datum sku,
				  ArrayType *sources, int64 *available)
{
	bool		bundle = false;
	int64		least = 0;

	probe(leaves, tenant, 1, &sku, &text_equal);
	while (next_row(leaves))
	{
		int64		qty = DatumGetInt64(READ_VALUE(leaves, B_QTY));
		int64		component;
		int64		whole;

		if (READ_NULL(leaves, B_QTY) || READ_NULL(leaves, B_COMPONENT))
			return false;
		if (!stock_available(stock, tenant, READ_VALUE(leaves, B_COMPONENT),
							 sources, &component))
			return false;
		/* bigint division truncates: floor it for negative stock */
		if (qty == 0 || (qty == -1 && component == PG_INT64_MIN))
			return false;
		if (qty == 1 || component >= 0)
			whole = component / qty;
		else if (pg_sub_s64_overflow(component, qty - 1, &whole))
			return false;
		else
			whole /= qty;
		if (!bundle || whole < least)
			least = whole;
		bundle = true;
	}
	if (bundle)
	{
		*available = least;
		return true;
	}
	return stock_available(stock, tenant, sku, sources, available);
}

/*
 * _publish_level: available less the buffer, times the allocation, 0
 * below min_level, at most max_level; in integers at 100 % (hundred: the
 * numeric 100, made once by the caller), else in numeric with the SQL's
 * own operators.  False when the SQL would fail.
 */
static bool
publish_level(int64 available, ReadTable *listings, Datum hundred,
			  int64 *level)
{
	int64		buffer = DatumGetInt64(READ_VALUE(listings, L_BUFFER));
	Datum		allocation = READ_VALUE(listings, L_ALLOCATION);
	bool		has_min = !READ_NULL(listings, L_MIN);
	bool		has_max = !READ_NULL(listings, L_MAX);
	int64		min_level = has_min ? DatumGetInt64(READ_VALUE(listings, L_MIN)) : 0;
	int64		max_level = has_max ? DatumGetInt64(READ_VALUE(listings, L_MAX)) : 0;
	int64		spare;

	if (pg_sub_s64_overflow(available, buffer, &spare))
		return false;
	if (DatumGetBool(DirectFunctionCall2(numeric_eq, allocation, hundred)))
	{
		spare = Max(spare, 0);
		if (spare < min_level)
			*level = 0;
		else
			*level = has_max ? Min(spare, max_level) : spare;
	}
	else
	{
		Datum		zero = NumericGetDatum(int64_to_numeric(0));
		Datum		share;

		share = DirectFunctionCall2(numeric_mul,
									NumericGetDatum(int64_to_numeric(spare)),
									allocation);
		share = DirectFunctionCall2(numeric_div, share, hundred);
		share = DirectFunctionCall1(numeric_floor, share);
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, share, zero)) < 0)
			share = zero;
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, share,
											  NumericGetDatum(int64_to_numeric(min_level)))) < 0)
			share = zero;
		else if (has_max &&
				 DatumGetInt32(DirectFunctionCall2(numeric_cmp, share,
												   NumericGetDatum(int64_to_numeric(max_level)))) > 0)
			share = NumericGetDatum(int64_to_numeric(max_level));
		*level = DatumGetInt64(DirectFunctionCall1(numeric_int8, share));
	}
	return true;
}

/* a text value's order in COLLATE "C", NULLs last */
static int
compare_keys(const text *a, const text *b)
{
	int			la;
	int			lb;
	int			c;

	if (a == NULL || b == NULL)
		return (a == NULL) - (b == NULL);
	la = VARSIZE_ANY_EXHDR(a);
	lb = VARSIZE_ANY_EXHDR(b);
	c = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(la, lb));
	return c != 0 ? c : (la > lb) - (la < lb);
}

/*
 * The levels statement's order: by batch key, sibling key (each by
 * bytes), the listing when it has no sibling key, and the listing.
 */
static int
compare_claim_levels(const void *a, const void *b)
{
	const ClaimLevel *x = a;
	const ClaimLevel *y = b;
	int			c = compare_keys(x->batch_key, y->batch_key);

	if (c == 0)
		c = compare_keys(x->sibling_key, y->sibling_key);
	if (c == 0)
		c = (x->listing_id > y->listing_id) - (x->listing_id < y->listing_id);
	return c;
}

/* an element of an array argument, as "array[ordinal]" reads it */
static Datum
element_or_null(Datum *elements, bool *nulls, int n, int ordinal, bool *isnull)
{
	*isnull = ordinal >= n || nulls[ordinal];
	return *isnull ? (Datum) 0 : elements[ordinal];
}

/* the detoasted copy of a value, for the results */
static text *
copy_text_or_null(ReadTable *table, int column)
{
	return READ_NULL(table, column) ? NULL :
		DatumGetTextPCopy(READ_VALUE(table, column));
}

/*
 * Whether the listing just read (it has a sibling key) must be claimed
 * with its group: it is disabled, or another enabled listing of the shop
 * has its sibling key.
 */
static bool
in_sibling_group(ReadTable *siblings, ReadTable *listings, int64 tenant,
				 int64 shop)
{
	Datum		keys[2] = {Int64GetDatum(shop), READ_VALUE(listings, L_SIBLING)};
	RegProcedure equals[2] = {F_INT8EQ, F_TEXTEQ};
	int64		listing_id = DatumGetInt64(READ_VALUE(listings, L_LISTING));

	if (!DatumGetBool(READ_VALUE(listings, L_ENABLED)))
		return true;
	probe(siblings, tenant, 2, keys, equals);
	while (next_row(siblings))
		if (!READ_NULL(siblings, L_ENABLED) &&
			DatumGetBool(READ_VALUE(siblings, L_ENABLED)) &&
			DatumGetInt64(READ_VALUE(siblings, L_LISTING)) != listing_id)
			return true;
	return false;
}

/*
 * The levels of the listings claimed, as _claim_levels returns them, by
 * index probes: false, having computed nothing that counts, where the
 * statement must run instead (see the head of this file), or where it
 * would fail, for it to say so.
 */
static bool
levels_directly(FunctionCallInfo fcinfo, Datum *result, bool *result_nulls)
{
	Oid			namespace_oid = get_namespace_oid("invsync", false);
	int64		tenant = PG_GETARG_INT64(0);
	int64		shop = PG_GETARG_INT64(1);
	ReadTable	listings = {0};
	ReadTable	siblings = {0};
	ReadTable	leaves = {0};
	ReadTable	stock = {0};
	Relation	rels[3];
	List	   *range_table;
	bool		usable;
	Datum	   *ids;
	Datum	   *rows;
	Datum	   *forces;
	Datum	   *pushed;
	bool	   *id_nulls;
	bool	   *row_nulls;
	bool	   *force_nulls;
	bool	   *pushed_nulls;
	int			nids;
	int			nrows;
	int			nforces;
	int			npushed;
	ClaimLevel *claimed;
	int			nclaimed = 0;
	bool		grouped = false;
	Datum		hundred = NumericGetDatum(int64_to_numeric(100));

	/* Citus's distributed tables are reached by SQL only */
	if (!invsync_direct_path || OidIsValid(get_extension_oid("citus", true)))
		return false;
	usable = open_read_table(&listings, namespace_oid, "listings",
							 listing_columns, L_NCOLUMNS, L_LISTING) &&
		open_siblings_index(&siblings, &listings) &&
		open_read_table(&leaves, namespace_oid, "bundle_leaves", leaf_columns,
						B_NCOLUMNS, B_BUNDLE) &&
		open_read_table(&stock, namespace_oid, "stock_levels", stock_columns,
						S_NCOLUMNS, S_SKU);
	if (usable)
	{
		rels[0] = listings.rel;
		rels[1] = leaves.rel;
		rels[2] = stock.rel;
		/* every column of the three is read */
		range_table = list_make3(make_rte(listings.rel, listings.attnums,
										  ACL_SELECT, NULL, L_NCOLUMNS, NULL, 0),
								 make_rte(leaves.rel, leaves.attnums,
										  ACL_SELECT, NULL, B_NCOLUMNS, NULL, 0),
								 make_rte(stock.rel, stock.attnums,
										  ACL_SELECT, NULL, S_NCOLUMNS, NULL, 0));
		usable = !direct_sql_checks_more(range_table, InvalidOid, rels, 3);
	}
	if (!usable)
	{
		close_read_table(&stock);
		close_read_table(&leaves);
		close_read_table(&siblings);
		close_read_table(&listings);
		return false;
	}

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), INT8OID, sizeof(int64),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ids, &id_nulls, &nids);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TIDOID, sizeof(ItemPointerData),
					  false, TYPALIGN_SHORT, &rows, &row_nulls, &nrows);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), BOOLOID, sizeof(bool), true,
					  TYPALIGN_CHAR, &forces, &force_nulls, &nforces);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), INT8OID, sizeof(int64),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &pushed, &pushed_nulls,
					  &npushed);
	claimed = palloc(sizeof(ClaimLevel) * Max(nids, 1));
	for (int i = 0; i < nids && usable; i++)
	{
		ClaimLevel *c = &claimed[nclaimed];
		ArrayType  *sources;
		int64		available;

		CHECK_FOR_INTERRUPTS();
		/* a NULL id, or a listing gone, joins no listing */
		if (id_nulls[i])
			continue;
		probe(&listings, tenant, 1, &ids[i], &int8_equal);
		if (!next_row(&listings))
			continue;
		/* NOT NULL columns: a table that lets them be NULL is the SQL's */
		if (READ_NULL(&listings, L_SKU) || READ_NULL(&listings, L_BUFFER) ||
			READ_NULL(&listings, L_ALLOCATION) || READ_NULL(&listings, L_IDS) ||
			READ_NULL(&listings, L_ENABLED))
		{
			usable = false;
			break;
		}
		if (!grouped && !READ_NULL(&listings, L_SIBLING))
			grouped = in_sibling_group(&siblings, &listings, tenant, shop);
		sources = READ_NULL(&listings, L_SOURCES) ? NULL :
			DatumGetArrayTypeP(READ_VALUE(&listings, L_SOURCES));
		usable = listing_available(&leaves, &stock, tenant,
								   READ_VALUE(&listings, L_SKU), sources,
								   &available) &&
			publish_level(available, &listings, hundred, &c->level);
		c->ordinal = i;
		c->listing_id = DatumGetInt64(ids[i]);
		c->batch_key = copy_text_or_null(&listings, L_BATCH);
		c->sibling_key = copy_text_or_null(&listings, L_SIBLING);
		c->external_ids =
			PointerGetDatum(PG_DETOAST_DATUM_COPY(READ_VALUE(&listings, L_IDS)));
		nclaimed++;
	}
	close_read_table(&stock);
	close_read_table(&leaves);
	close_read_table(&siblings);
	close_read_table(&listings);
	if (!usable)
		return false;

	qsort(claimed, nclaimed, sizeof(ClaimLevel), compare_claim_levels);

	/*
	 * Unchanged: nothing to publish, neither forced nor a new level; a
	 * sibling only when its whole group is (bool_and over the group, NULLs
	 * ignored).  The order keeps a group together.
	 */
	for (int start = 0, end; start < nclaimed; start = end)
	{
		int			group = -1;

		for (end = start; end < nclaimed; end++)
		{
			ClaimLevel *c = &claimed[end];
			bool		force_null;
			bool		pushed_null;
			Datum		force = element_or_null(forces, force_nulls, nforces,
												c->ordinal, &force_null);
			Datum		level = element_or_null(pushed, pushed_nulls, npushed,
												c->ordinal, &pushed_null);
			int			value;

			if (end > start &&
				(compare_keys(c->batch_key, claimed[start].batch_key) != 0 ||
				 compare_keys(c->sibling_key, claimed[start].sibling_key) != 0 ||
				 (c->sibling_key == NULL &&
				  c->listing_id != claimed[start].listing_id)))
				break;
			/* NOT force AND pushed = level, in three-valued logic */
			if (!force_null && DatumGetBool(force))
				value = 0;
			else if (!pushed_null && DatumGetInt64(level) != c->level)
				value = 0;
			else if (force_null || pushed_null)
				value = -1;
			else
				value = 1;
			if (value == 0 || (value == 1 && group == -1))
				group = value;
		}
		for (int i = start; i < end; i++)
			claimed[i].unchanged = group;
	}

	memset(result_nulls, true, sizeof(bool) * 6);
	result[6] = BoolGetDatum(grouped);
	result_nulls[6] = false;
	if (nclaimed > 0)
	{
		Datum	   *values = palloc(sizeof(Datum) * nclaimed * 6);
		bool	   *nulls = palloc(sizeof(bool) * nclaimed * 6);
		int			dims[1] = {nclaimed};
		int			lbs[1] = {1};
		static const Oid types[6] = {
			INT8OID, TIDOID, INT8OID, BOOLOID, JSONBOID, TEXTOID
		};

		for (int i = 0; i < nclaimed; i++)
		{
			ClaimLevel *c = &claimed[i];

			values[i] = Int64GetDatum(c->listing_id);
			nulls[i] = false;
			values[nclaimed + i] = element_or_null(rows, row_nulls, nrows,
												   c->ordinal,
												   &nulls[nclaimed + i]);
			values[2 * nclaimed + i] = Int64GetDatum(c->level);
			nulls[2 * nclaimed + i] = false;
			values[3 * nclaimed + i] = BoolGetDatum(c->unchanged == 1);
			nulls[3 * nclaimed + i] = c->unchanged == -1;
			values[4 * nclaimed + i] = c->external_ids;
			nulls[4 * nclaimed + i] = false;
			values[5 * nclaimed + i] = PointerGetDatum(c->sibling_key);
			nulls[5 * nclaimed + i] = c->sibling_key == NULL;
		}
		for (int a = 0; a < 6; a++)
		{
			int16		typlen;
			bool		typbyval;
			char		typalign;

			get_typlenbyvalalign(types[a], &typlen, &typbyval, &typalign);
			result[a] = PointerGetDatum(construct_md_array(&values[a * nclaimed],
														   &nulls[a * nclaimed],
														   1, dims, lbs, types[a],
														   typlen, typbyval,
														   typalign));
			result_nulls[a] = false;
		}
	}
	return true;
}

/*
 * The levels as one statement, where the direct path may not compute
 * them: it reads no table but through _listings_available, so that under
 * Citus it goes to the tenant's shard as one.  The six arrays come from
 * one pass over rows sorted once, so they match each other.  The order
 * only has to keep a batch key's rows and a sibling group together: by
 * bytes, not by collation (five sorts by collation were a fifth of the
 * claim).  It is also the order of the window over sibling groups, so the
 * rows are sorted once: a group never spans batch keys, since every
 * adapter's sibling key includes its batch key's attributes (channels.c).
 */
static const char levels_statement[] =
"SELECT array_agg(x.listing_id), array_agg(x.row_id), array_agg(x.level),"
"	   array_agg(x.unchanged), array_agg(x.external_ids), array_agg(x.sibling_key)"
"  FROM (SELECT v.listing_id, $4[v.ordinal] AS row_id, v.batch_key, v.sibling_key,"
"			   v.external_ids, v.level,"
"			   bool_and(NOT $5[v.ordinal] AND $6[v.ordinal] = v.level)"
"				 OVER (PARTITION BY v.batch_key COLLATE \"C\", v.sibling_key COLLATE \"C\","
"							   CASE WHEN v.sibling_key IS NULL THEN v.listing_id END"
"					   ORDER BY v.listing_id"
"					   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
"			   AS unchanged"
"		  FROM invsync._listings_available($1, $3) v"
"		 ORDER BY v.batch_key COLLATE \"C\", v.sibling_key COLLATE \"C\","
"				  CASE WHEN v.sibling_key IS NULL THEN v.listing_id END, v.listing_id) x";

/*
 * Whether a listing claimed must be claimed with its sibling group, as a
 * statement of its own: under Citus, one naming a table may not also call
 * _listings_available, which reads tables on the shard.
 */
static const char grouped_statement[] =
"SELECT coalesce(bool_or(l.sibling_key IS NOT NULL"
"						 AND (NOT l.enabled"
"							  OR EXISTS (SELECT 1 FROM invsync.listings m"
"										  WHERE m.tenant_id = $1 AND m.shop_id = $2"
"											AND m.sibling_key = l.sibling_key AND m.enabled"
"											AND m.listing_id <> l.listing_id))), false)"
"  FROM invsync.listings l"
" WHERE l.tenant_id = $1 AND l.listing_id = ANY ($3)";

static void
levels_by_statement(FunctionCallInfo fcinfo, Datum *result, bool *result_nulls)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8ARRAYOID, TIDARRAYOID,
	BOOLARRAYOID, INT8ARRAYOID};
	Datum		args[6];

	for (int i = 0; i < 6; i++)
		args[i] = PG_GETARG_DATUM(i);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(levels_statement, 6, types, args, NULL, true, 1) !=
		SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the levels statement failed");
	for (int a = 0; a < 6; a++)
	{
		Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, a);
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, a + 1,
										  &result_nulls[a]);

		result[a] = result_nulls[a] ? (Datum) 0 :
			SPI_datumTransfer(value, att->attbyval, att->attlen);
	}
	if (SPI_execute_with_args(grouped_statement, 3, types, args, NULL, true, 1) !=
		SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the statement of sibling groups failed");
	result[6] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							  &result_nulls[6]);
	SPI_finish();
}

/*
 * invsync._claim_levels(p_tenant, p_shop, p_listings, p_rows,
 * p_force_pushes, p_pushed_levels): the level of each listing of the shop
 * that _claim_shop locked (their queue rows at p_rows, as locked:
 * force_push and pushed_level, -1 for none), and whether each has nothing
 * to publish; returned in the order the worker batches them, as arrays of
 * one row (listing_ids, row_ids, levels, unchanged, external_ids,
 * sibling_keys), with grouped: whether one of them must be claimed with
 * its sibling group (it is disabled, or the group has another enabled
 * member).  A listing no longer there is left out.  The statement's
 * snapshot is taken after the rows were locked (see _claim_shop).
 */
PG_FUNCTION_INFO_V1(invsync_claim_levels);
Datum
invsync_claim_levels(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		result[7];
	bool		result_nulls[7];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!levels_directly(fcinfo, result, result_nulls))
		levels_by_statement(fcinfo, result, result_nulls);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result,
											 result_nulls));
}
