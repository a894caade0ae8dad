/*-------------------------------------------------------------------------
 *
 * worker_record.c
 *	  The sync worker's record transaction without SQL: its attempts
 *	  inserted and each outcome applied to its queue row through the
 *	  executor's entry points for single rows, as ledger_direct.c writes
 *	  adjust()'s rows.
 *
 * invsync._record_batch spent more on the executor around each row
 * (unnesting arrays of composite values, gathering the locked rows,
 * projecting) than on the row itself.  Here a row costs what it must: an
 * index probe, a lock, the update or insertion and its index entries.
 * What is written is what _record_batch writes.  Each outcome's row is
 * looked up by key and locked without waiting (SKIP LOCKED): a row an
 * application holds is counted as held, and the caller records the whole
 * list again later.  A locked row is updated only while it is still
 * claimed at the version pushed (compare-and-set), so an outcome recorded
 * twice changes nothing.
 *
 * The SQL path runs instead, with the same results, wherever it would
 * check more than this one (DESIGN §7): under Citus, when the DBA turned
 * invsync.direct_path off, when either table has statement triggers, row
 * security or columns of other names or types than these (or, for the
 * attempts, other columns at all), or when the worker's role lacks a
 * privilege the SQL statements need.  Row triggers, CHECK and NOT NULL
 * constraints and the queue's foreign key work as they do for SQL.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_record.c
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
#include "executor/executor.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
	Q_CHANGED, Q_CORRELATION, Q_ERROR_CLASS, Q_ERROR, Q_NCOLUMNS
};
static const RecordColumn queue_columns[Q_NCOLUMNS] = {
	{"tenant_id", INT8OID}, {"listing_id", INT8OID}, {"version", INT8OID},
	{"state", TEXTOID}, {"due_at", TIMESTAMPTZOID},
	{"lease_until", TIMESTAMPTZOID}, {"claimed_version", INT8OID},
	{"attempts", INT4OID}, {"force_push", BOOLOID},
	{"pushed_level", INT8OID}, {"pushed_version", INT8OID},
	{"pushed_at", TIMESTAMPTZOID}, {"changed_at", TIMESTAMPTZOID},
	{"correlation_ids", TEXTARRAYOID}, {"last_error_class", TEXTOID},
	{"last_error", TEXTOID}
};

/* what _record_batch's statements read of the queue, and what they set */
static const int queue_read[] = {
	Q_TENANT, Q_LISTING, Q_VERSION, Q_LEASE, Q_CLAIMED, Q_ATTEMPTS, Q_FORCE,
	Q_PUSHED_LEVEL, Q_PUSHED_VERSION, Q_PUSHED_AT, Q_CHANGED, Q_CORRELATION
};
static const int queue_set[] = {
	Q_STATE, Q_DUE, Q_LEASE, Q_ATTEMPTS, Q_FORCE, Q_PUSHED_LEVEL,
	Q_PUSHED_VERSION, Q_PUSHED_AT, Q_CHANGED, Q_CORRELATION, Q_ERROR_CLASS,
	Q_ERROR
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

#define SET(target, column, value, null) \
	do { \
		(target)->slot->tts_values[(target)->attnums[column] - 1] = (value); \
		(target)->slot->tts_isnull[(target)->attnums[column] - 1] = (null); \
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
 * The range table of _record_batch's statements, asking for the
 * privileges they need, as the current user (the worker's role): on the
 * queue, SELECT of the columns read and UPDATE of those set (the row lock
 * needs UPDATE too); on the attempts, INSERT of every column but the id,
 * which comes from its sequence.
 */
static List *
record_range_table(const RecordTarget *queue, const RecordTarget *attempts)
{
	static const int attempt_inserted[] = {
		A_TENANT, A_SHOP, A_CHANNEL, A_KIND, A_LISTINGS, A_VERSIONS,
		A_LEVELS, A_CORRELATION, A_URL, A_STATUS, A_OUTCOME, A_ERROR_CLASS,
		A_ERROR, A_REQUEST_ID, A_LATENCY, A_STARTED
	};
	RangeTblEntry *queue_rte = makeNode(RangeTblEntry);
	RangeTblEntry *attempts_rte = makeNode(RangeTblEntry);

	queue_rte->rtekind = RTE_RELATION;
	queue_rte->relid = RelationGetRelid(queue->rel);
	queue_rte->relkind = RELKIND_RELATION;
	queue_rte->rellockmode = RowExclusiveLock;
	queue_rte->requiredPerms = ACL_SELECT | ACL_UPDATE;
	queue_rte->selectedCols = column_set(queue, queue_read, lengthof(queue_read));
	/* also what UPDATE OF triggers compare with */
	queue_rte->updatedCols = column_set(queue, queue_set, lengthof(queue_set));

	attempts_rte->rtekind = RTE_RELATION;
	attempts_rte->relid = RelationGetRelid(attempts->rel);
	attempts_rte->relkind = RELKIND_RELATION;
	attempts_rte->rellockmode = RowExclusiveLock;
	attempts_rte->requiredPerms = ACL_INSERT;
	attempts_rte->insertedCols = column_set(attempts, attempt_inserted,
											lengthof(attempt_inserted));
	return list_make2(queue_rte, attempts_rte);
}

/* a text datum of value, or a NULL one */
static inline Datum
text_datum(const char *value, bool *isnull)
{
	*isnull = (value == NULL);
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}

/* a bigint[] of n values */
static Datum
int64_array_datum(const int64 *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		datums[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(datums, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
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
	SET(attempts, A_ID, Int64GetDatum(nextval_internal(sequence, false)), false);
	SET(attempts, A_TENANT, Int64GetDatum(a->tenant_id), false);
	SET(attempts, A_SHOP, Int64GetDatum(a->shop_id), false);
	SET(attempts, A_CHANNEL, text_datum(a->channel, &isnull), isnull);
	SET(attempts, A_KIND, CStringGetTextDatum(a->kind), false);
	SET(attempts, A_LISTINGS, int64_array_datum(a->listing_ids, a->nrows), false);
	SET(attempts, A_VERSIONS, int64_array_datum(a->versions, a->nrows), false);
	SET(attempts, A_LEVELS, int64_array_datum(a->levels, a->nrows), false);
	SET(attempts, A_CORRELATION, text_datum(a->correlation_id, &isnull), isnull);
	SET(attempts, A_URL, text_datum(a->request_url, &isnull), isnull);
	SET(attempts, A_STATUS, Int32GetDatum((int32) a->http_status),
		a->http_status <= 0);
	SET(attempts, A_OUTCOME, CStringGetTextDatum(a->outcome), false);
	SET(attempts, A_ERROR_CLASS, text_datum(a->error_class, &isnull), isnull);
	SET(attempts, A_ERROR, text_datum(a->error_message, &isnull), isnull);
	SET(attempts, A_REQUEST_ID, text_datum(a->request_id, &isnull), isnull);
	SET(attempts, A_LATENCY, Float8GetDatum(a->latency_ms), false);
	SET(attempts, A_STARTED, TimestampTzGetDatum(a->started_at), false);
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(attempts->rri, estate, slot);
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
	int			natts = locked->tts_tupleDescriptor->natts;
	Datum	   *old = locked->tts_values;
	bool	   *old_null = locked->tts_isnull;
	bool		ok = strcmp(o->outcome, "ok") == 0;
	bool		current;
	const char *state;
	bool		isnull;

#define OLD(column) (old[queue->attnums[column] - 1])
#define OLD_NULL(column) (old_null[queue->attnums[column] - 1])
#define SET_CHANGED(column, value, null) \
	do { \
		changed->tts_values[queue->attnums[column] - 1] = (value); \
		changed->tts_isnull[queue->attnums[column] - 1] = (null); \
	} while (0)

	slot_getallattrs(locked);
	if (OLD_NULL(Q_CLAIMED) || DatumGetInt64(OLD(Q_CLAIMED)) != o->version ||
		OLD_NULL(Q_LEASE))
		return;
	current = DatumGetInt64(OLD(Q_VERSION)) == o->version;
	if (strcmp(o->outcome, "dead") == 0)
		state = "dead";
	else
		state = (ok && current) ? "synced" : "pending";

	ExecClearTuple(changed);
	memcpy(changed->tts_values, old, sizeof(Datum) * natts);
	memcpy(changed->tts_isnull, old_null, sizeof(bool) * natts);
	SET_CHANGED(Q_LEASE, (Datum) 0, true);
	SET_CHANGED(Q_STATE, CStringGetTextDatum(state), false);
	SET_CHANGED(Q_DUE, TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, o->due_in_ms)),
				false);
	if (ok)
	{
		SET_CHANGED(Q_ATTEMPTS, Int32GetDatum(0), false);
		SET_CHANGED(Q_FORCE, BoolGetDatum(false), false);
		SET_CHANGED(Q_PUSHED_LEVEL, Int64GetDatum(o->level), false);
		SET_CHANGED(Q_PUSHED_VERSION, Int64GetDatum(o->version), false);
		SET_CHANGED(Q_PUSHED_AT, TimestampTzGetDatum(now), false);
		SET_CHANGED(Q_ERROR_CLASS, (Datum) 0, true);
		SET_CHANGED(Q_ERROR, (Datum) 0, true);
		if (current)
		{
			SET_CHANGED(Q_CHANGED, TimestampTzGetDatum(now), false);
			SET_CHANGED(Q_CORRELATION,
						PointerGetDatum(construct_empty_array(TEXTOID)), false);
		}
	}
	else
	{
		SET_CHANGED(Q_ERROR_CLASS, text_datum(o->error_class, &isnull), isnull);
		SET_CHANGED(Q_ERROR, text_datum(o->error, &isnull), isnull);
	}
	ExecStoreVirtualTuple(changed);
	ExecSimpleRelationUpdate(queue->rri, estate, epq, locked, changed);

#undef OLD
#undef OLD_NULL
#undef SET_CHANGED
}

/*
 * Record the outcomes and attempts without SQL when it may (see the head
 * of this file), in the caller's transaction, with its snapshot active.
 * Returns false, having written nothing, when the SQL path must record
 * them; else sets *held to the number of outcomes whose rows another
 * transaction held.
 */
bool
record_directly(const PendingOutcome *outcomes, int noutcomes,
				const PendingAttempt *attempts, int nattempts,
				TimestampTz now, int *held)
{
	Oid			namespace_oid;
	Oid			queue_relid;
	Oid			attempts_relid;
	Oid			sequence;
	EState	   *estate;
	MemoryContext caller_context;
	RecordTarget queue;
	RecordTarget attempt_rows;
	Relation	rels[2];
	List	   *range_table;
	Relation	pkey = NULL;
	bool		usable;

	if (!invsync_direct_path || OidIsValid(get_extension_oid("citus", true)))
		return false;
	namespace_oid = get_namespace_oid("invsync", false);
	queue_relid = get_relname_relid("sync_queue", namespace_oid);
	attempts_relid = get_relname_relid("sync_attempts", namespace_oid);
	sequence = get_relname_relid("attempt_id_seq", namespace_oid);
	if (!OidIsValid(queue_relid) || !OidIsValid(attempts_relid) ||
		!OidIsValid(sequence))
		return false;

	estate = CreateExecutorState();
	caller_context = MemoryContextSwitchTo(estate->es_query_cxt);
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();
	usable = open_target(estate, queue_relid, 1, &queue) &&
		find_columns(&queue, queue_columns, Q_NCOLUMNS, false);
	usable = open_target(estate, attempts_relid, 2, &attempt_rows) && usable &&
		find_columns(&attempt_rows, attempt_columns, A_NCOLUMNS, true);

	/* the queue's primary key, (tenant_id, listing_id), to find each row by */
	for (int i = 0; usable && i < queue.rri->ri_NumIndices; i++)
	{
		Relation	index = queue.rri->ri_IndexRelationDescs[i];

		if (RelationGetRelid(index) == RelationGetPrimaryKeyIndex(queue.rel) &&
			index->rd_index->indnkeyatts == 2 &&
			index->rd_index->indkey.values[0] == queue.attnums[Q_TENANT] &&
			index->rd_index->indkey.values[1] == queue.attnums[Q_LISTING])
			pkey = index;
	}
	rels[0] = queue.rel;
	rels[1] = attempt_rows.rel;
	if (usable)
	{
		range_table = record_range_table(&queue, &attempt_rows);
		ExecInitRangeTable(estate, range_table);
		usable = pkey != NULL &&
			!direct_has_statement_triggers(queue.rri) &&
			!direct_has_statement_triggers(attempt_rows.rri) &&
			!direct_sql_checks_more(range_table, sequence, rels, 2);
	}

	if (usable)
	{
		ScanKeyData keys[2];
		IndexScanDesc scan;
		TupleTableSlot *changed = table_slot_create(queue.rel,
													&estate->es_tupleTable);
		EPQState	epq;

		AfterTriggerBeginQuery();
		for (int i = 0; i < nattempts; i++)
		{
			insert_attempt(estate, &attempt_rows, sequence, &attempts[i]);
			ResetPerTupleExprContext(estate);
		}

		*held = 0;
		EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
		scan = index_beginscan(queue.rel, pkey, estate->es_snapshot, 2, 0);
		for (int i = 0; i < noutcomes; i++)
		{
			const PendingOutcome *o = &outcomes[i];
			ItemPointerData tid;
			TM_FailureData failure;
			TM_Result	result;

			ResetPerTupleExprContext(estate);
			ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber,
								   InvalidOid, pkey->rd_indcollation[0], F_INT8EQ,
								   Int64GetDatum(o->tenant_id));
			ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber,
								   InvalidOid, pkey->rd_indcollation[1], F_INT8EQ,
								   Int64GetDatum(o->listing_id));
			index_rescan(scan, keys, 2, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, queue.slot))
				continue;		/* its listing was deleted: nothing to record */
			tid = queue.slot->tts_tid;

			/*
			 * SELECT ... FOR UPDATE SKIP LOCKED in READ COMMITTED: the
			 * row's latest version, unless another transaction holds it.
			 */
			result = table_tuple_lock(queue.rel, &tid, estate->es_snapshot,
									  queue.slot, estate->es_output_cid,
									  LockTupleNoKeyExclusive, LockWaitSkip,
									  TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
									  &failure);
			if (result == TM_WouldBlock)
				(*held)++;
			else if (result == TM_Ok)
				apply_outcome(estate, &epq, &queue, changed, o, now);
			else if (result != TM_Deleted && result != TM_SelfModified)
				elog(ERROR, "unexpected result %d locking a queue row", result);
		}
		index_endscan(scan);
		EvalPlanQualEnd(&epq);
		AfterTriggerEndQuery(estate);
	}

	ExecCloseResultRelations(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	table_close(queue.rel, NoLock);
	table_close(attempt_rows.rel, NoLock);
	MemoryContextSwitchTo(caller_context);
	FreeExecutorState(estate);
	if (usable)
		CommandCounterIncrement();
	return usable;
}
