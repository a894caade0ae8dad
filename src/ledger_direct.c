/*-------------------------------------------------------------------------
 *
 * ledger_direct.c
 *	  adjust()'s direct path: writing the key, stock and ledger rows of one
 *	  adjustment without SQL.
 *
 * In READ COMMITTED, when the key is new and the stock row exists and takes
 * the change, adjust() writes its three rows without SQL: the key row by
 * speculative insertion (what INSERT ... ON CONFLICT DO NOTHING does), the
 * stock row through an index lookup, a lock on its latest version (what
 * UPDATE does after a concurrent update in READ COMMITTED) and
 * ExecSimpleRelationUpdate(), and the ledger row through
 * ExecSimpleRelationInsert() (the executor's entry points for logical
 * replication).  Constraints, indexes, row triggers and AFTER triggers
 * work as they do for SQL, planning and executor start-up are skipped.
 * Everything else takes the SQL path, which gives the same result, and so
 * does every call for which SQL would check more than the direct path
 * does (DESIGN §7): a table with statement triggers or row security, or
 * adjust()'s owner lacking a privilege the SQL statements need.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/ledger_direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteManip.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "invsync.h"
#include "ledger.h"

/*
 * field4 of the advisory lock tags adjust() queues on for a busy stock row
 * (see lock_stock_row); SQL's advisory lock functions use 1 and 2.
 */
#define STOCK_ROW_QUEUE_LOCK 0x4956

/* the columns the direct path writes, per table */
enum
{
	KEY_TENANT, KEY_KEY, KEY_OPERATION, KEY_FINGERPRINT, KEY_CORRELATION,
	KEY_CREATED, KEY_NCOLUMNS
};
static const char *const key_columns[KEY_NCOLUMNS] = {
	"tenant_id", "idempotency_key", "operation", "fingerprint",
	"correlation_id", "created_at"
};

enum
{
	STOCK_TENANT, STOCK_SKU, STOCK_LOCATION, STOCK_ON_HAND, STOCK_RESERVED,
	STOCK_UPDATED, STOCK_NCOLUMNS
};
static const char *const stock_columns[STOCK_NCOLUMNS] = {
	"tenant_id", "sku", "location", "on_hand", "reserved", "updated_at"
};

enum
{
	LEDGER_TENANT, LEDGER_ID, LEDGER_SKU, LEDGER_LOCATION, LEDGER_OPERATION,
	LEDGER_ON_HAND_CHANGE, LEDGER_RESERVED_CHANGE, LEDGER_ON_HAND_AFTER,
	LEDGER_RESERVED_AFTER, LEDGER_REASON, LEDGER_REFERENCE, LEDGER_ORDER_REF,
	LEDGER_KEY, LEDGER_CORRELATION, LEDGER_ACTOR, LEDGER_RECORDED,
	LEDGER_NCOLUMNS
};
static const char *const ledger_columns[LEDGER_NCOLUMNS] = {
	"tenant_id", "ledger_id", "sku", "location", "operation",
	"on_hand_change", "reserved_change", "on_hand_after", "reserved_after",
	"reason", "reference", "order_ref", "idempotency_key", "correlation_id",
	"actor", "recorded_at"
};

typedef enum DirectTableId
{
	KEYS_TABLE, STOCK_TABLE, LEDGER_TABLE, DIRECT_NTABLES
} DirectTableId;

/* a table the direct path writes, looked up once per backend */
typedef struct DirectTable
{
	const char *name;
	int			ncolumns;
	const char *const *columns;
	bool		all_columns;	/* the direct path must set every column */
	Oid			relid;
	AttrNumber	attnums[LEDGER_NCOLUMNS];

	/*
	 * The table's CHECK constraints and trigger WHEN conditions, compiled
	 * as the executor compiles them for each statement (ExecRelCheck,
	 * TriggerEnabled), but once per backend: in PostgreSQL 15, parsing and
	 * planning them for each row was about a fifth of adjust()'s own time.
	 * Valid while compiled_generation is direct_tables_generation; kept in
	 * compiled_context.
	 */
	MemoryContext compiled_context;
	uint64		compiled_generation;
	int			ncheck;
	ExprState **checks;
	int			ntriggers;
	ExprState **trigger_whens;
} DirectTable;

static DirectTable direct_tables[DIRECT_NTABLES] = {
	{"idempotency_keys", KEY_NCOLUMNS, key_columns, true},
	{"stock_levels", STOCK_NCOLUMNS, stock_columns, false},
	{"ledger", LEDGER_NCOLUMNS, ledger_columns, true},
};
static Oid	ledger_sequence = InvalidOid;

/*
 * Whether direct_tables holds what the catalogs say (a relcache
 * invalidation of one of them clears it and bumps the generation), and
 * whether the tables, as they are, allow the direct path.
 */
static bool direct_tables_known = false;
static uint64 direct_tables_generation = 1;
static bool direct_path_usable = false;
static bool invalidation_registered = false;

/* a table being written: its relation, result relation info and a slot */
typedef struct DirectTarget
{
	DirectTable *table;
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} DirectTarget;

#define COLUMN(target, column) ((target)->table->attnums[column] - 1)

/* set a column of the row being built in target->slot */
static inline void
set_column(DirectTarget *target, int column, Datum value, bool isnull)
{
	target->slot->tts_values[COLUMN(target, column)] = value;
	target->slot->tts_isnull[COLUMN(target, column)] = isnull;
}

/*
 * A relation changed: if it may be one of ours, look them up again and
 * compile their expressions again.  (Only flags: what was compiled may be
 * in use.)
 */
static void
forget_direct_tables(Datum arg, Oid relid)
{
	for (int t = 0; t < DIRECT_NTABLES; t++)
		if (!OidIsValid(relid) || relid == direct_tables[t].relid)
		{
			direct_tables_known = false;
			direct_tables_generation++;
			return;
		}
}

/*
 * Find invsync's tables and the attribute numbers of their columns.  The
 * direct path is usable when every column is there and the tables whose
 * rows it makes whole have no other columns.
 */
static void
look_up_direct_tables(void)
{
	Oid			namespace_oid;

	if (direct_tables_known)
		return;
	if (!invalidation_registered)
	{
		CacheRegisterRelcacheCallback(forget_direct_tables, (Datum) 0);
		invalidation_registered = true;
	}

	direct_path_usable = true;
	namespace_oid = get_namespace_oid("invsync", false);
	for (int t = 0; t < DIRECT_NTABLES; t++)
	{
		DirectTable *table = &direct_tables[t];
		Relation	rel;
		int			live_columns = 0;

		table->relid = get_relname_relid(table->name, namespace_oid);
		if (!OidIsValid(table->relid))
			elog(ERROR, "table invsync.%s is missing", table->name);
		/* read under a lock, so that no DDL on it is under way */
		rel = table_open(table->relid, AccessShareLock);
		for (int c = 0; c < table->ncolumns; c++)
		{
			table->attnums[c] = get_attnum(table->relid, table->columns[c]);
			if (table->attnums[c] == InvalidAttrNumber)
				direct_path_usable = false;
		}
		if (rel->rd_rel->relkind != RELKIND_RELATION ||
			rel->rd_rel->relam != HEAP_TABLE_AM_OID)
			direct_path_usable = false;
		for (int a = 0; a < RelationGetNumberOfAttributes(rel); a++)
			if (!TupleDescAttr(RelationGetDescr(rel), a)->attisdropped)
				live_columns++;
		if (table->all_columns && live_columns != table->ncolumns)
			direct_path_usable = false;
		table_close(rel, AccessShareLock);
	}
	ledger_sequence = get_relname_relid("ledger_id_seq", namespace_oid);
	if (!OidIsValid(ledger_sequence))
		direct_path_usable = false;

	/*
	 * With Citus, these tables may be distributed: their rows live in
	 * shards that only SQL reaches (DESIGN §6 keeps that way out open).
	 */
	if (OidIsValid(get_extension_oid("citus", true)))
		direct_path_usable = false;
	direct_tables_known = true;
}

/* the index that is a relation's primary key, among those rri opened */
static Relation
primary_key_of(DirectTarget *target)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(target->rel);

	for (int i = 0; i < target->rri->ri_NumIndices; i++)
		if (RelationGetRelid(target->rri->ri_IndexRelationDescs[i]) == pkey)
			return target->rri->ri_IndexRelationDescs[i];
	elog(ERROR, "table %s has no primary key",
		 RelationGetRelationName(target->rel));
	return NULL;				/* keep compiler quiet */
}

/*
 * Whether a table has statement triggers (or transition tables) for
 * INSERT or UPDATE: a direct path fires row triggers only.  Also used by
 * the sync worker's record path (worker_direct.c).
 */
bool
direct_has_statement_triggers(const ResultRelInfo *rri)
{
	const TriggerDesc *triggers = rri->ri_TrigDesc;

	return triggers != NULL &&
		(triggers->trig_insert_before_statement ||
		 triggers->trig_insert_after_statement ||
		 triggers->trig_update_before_statement ||
		 triggers->trig_update_after_statement ||
		 triggers->trig_insert_new_table ||
		 triggers->trig_update_old_table ||
		 triggers->trig_update_new_table);
}

/*
 * Take the key with a speculative insertion.  Returns false, having
 * written nothing, when the key is already taken (or being taken: then
 * after waiting for that transaction to commit).
 */
static bool
insert_key_directly(EState *estate, DirectTarget *keys, const Movement *movement)
{
	TupleTableSlot *slot = keys->slot;
	List	   *arbiters = list_make1_oid(RelationGetPrimaryKeyIndex(keys->rel));
	TransactionId xid = GetCurrentTransactionId();

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	set_column(keys, KEY_TENANT, movement->values[MOVE_TENANT], false);
	set_column(keys, KEY_KEY, movement->values[MOVE_KEY], false);
	set_column(keys, KEY_OPERATION, movement->values[MOVE_OPERATION], false);
	set_column(keys, KEY_FINGERPRINT, movement->values[MOVE_FINGERPRINT], false);
	set_column(keys, KEY_CORRELATION, movement->values[MOVE_CORRELATION], false);
	set_column(keys, KEY_CREATED,
			   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), false);
	ExecStoreVirtualTuple(slot);
	ExecConstraints(keys->rri, slot, estate);

	/*
	 * Unlike INSERT ... ON CONFLICT, the first attempt does not look for the
	 * key before inserting: keys are new far more often than not, and a
	 * conflict is found by the insertion too.
	 */
	for (bool first_attempt = true;; first_attempt = false)
	{
		ItemPointerData conflict_tid;
		uint32		token;
		bool		conflict = false;

		if (!first_attempt &&
			!ExecCheckIndexConstraints(keys->rri, slot, estate,
									   &conflict_tid, arbiters))
			return false;
		token = SpeculativeInsertionLockAcquire(xid);
		table_tuple_insert_speculative(keys->rel, slot, estate->es_output_cid,
									   0, NULL, token);
		list_free(ExecInsertIndexTuples(keys->rri, slot, estate, false, true,
										&conflict, arbiters));
		table_tuple_complete_speculative(keys->rel, slot, token, !conflict);
		SpeculativeInsertionLockRelease(xid);
		if (!conflict)
			return true;
		/* lost a race for the key: check again, waiting for the winner */
	}
}

/* hash of a text datum, mixed with seed */
static uint64
hash_text(Datum value, uint64 seed)
{
	text	   *t = DatumGetTextPP(value);

	return DatumGetUInt64(hash_any_extended((unsigned char *) VARDATA_ANY(t),
											VARSIZE_ANY_EXHDR(t), seed));
}

/*
 * The lock that adjust() calls wanting a busy stock row queue on: an
 * advisory lock keyed by a hash of the row's key, in this database.
 * Shared by two rows only when their hashes collide, which merely queues
 * their waiters together.
 */
static void
set_stock_row_queue_tag(LOCKTAG *tag, const Movement *movement)
{
	uint64		key;

	key = hash_combine64(hash_text(movement->values[MOVE_SKU],
								   (uint64) DatumGetInt64(movement->values[MOVE_TENANT])),
						 hash_text(movement->values[MOVE_LOCATION], 0));
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, STOCK_ROW_QUEUE_LOCK);
}

/*
 * Find the stock row and lock its latest version into stock->slot, as
 * UPDATE does in READ COMMITTED.  Returns false when there is none.
 */
static bool
lock_stock_row(DirectTarget *stock, const Movement *movement)
{
	Relation	pkey = primary_key_of(stock);
	ScanKeyData scankeys[3];
	SnapshotData dirty;
	IndexScanDesc scan;
	bool		found;
	bool		queued = false;
	LOCKTAG		queue;

	/* the primary key is (tenant_id, sku, location) */
	ScanKeyEntryInitialize(&scankeys[0], 0, 1, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[0], F_INT8EQ,
						   movement->values[MOVE_TENANT]);
	ScanKeyEntryInitialize(&scankeys[1], 0, 2, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[1], F_TEXTEQ,
						   movement->values[MOVE_SKU]);
	ScanKeyEntryInitialize(&scankeys[2], 0, 3, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[2], F_TEXTEQ,
						   movement->values[MOVE_LOCATION]);
	for (;;)
	{
		ItemPointerData tid;
		TransactionId inserting;
		TransactionId changing;
		TM_FailureData failure;
		TM_Result	result;

		/*
		 * Look the row up, then let go of every buffer before waiting: a
		 * pin held while waiting would keep VACUUM and pruning off the
		 * busiest pages.
		 */
		InitDirtySnapshot(dirty);
		scan = index_beginscan(stock->rel, pkey, &dirty, 3, 0);
		index_rescan(scan, scankeys, 3, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, stock->slot);
		tid = stock->slot->tts_tid;
		inserting = dirty.xmin;
		changing = dirty.xmax;
		index_endscan(scan);
		ExecClearTuple(stock->slot);
		if (!found)
			break;

		/* a row being inserted: wait for its transaction, then look again */
		if (TransactionIdIsValid(inserting))
		{
			XactLockTableWait(inserting, stock->rel, &tid, XLTW_Lock);
			continue;
		}

		/*
		 * Another transaction is changing the row: queue for it first.
		 * Waiters on the row itself queue per tuple version, and every
		 * commit of a busy row wakes all of them to find the next version;
		 * queued here, by the row's key, a commit wakes one.
		 */
		if (TransactionIdIsValid(changing) && !queued)
		{
			set_stock_row_queue_tag(&queue, movement);
			(void) LockAcquire(&queue, ExclusiveLock, false, false);
			queued = true;
			continue;
		}
		result = table_tuple_lock(stock->rel, &tid, GetLatestSnapshot(),
								  stock->slot, GetCurrentCommandId(false),
								  LockTupleNoKeyExclusive, LockWaitBlock,
								  TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								  &failure);
		if (result == TM_Ok)
			break;
		if (result != TM_Deleted)
			elog(ERROR, "unexpected result %d locking a stock row", result);
		/* deleted under us: look again */
	}
	if (queued)
		LockRelease(&queue, ExclusiveLock, false);
	return found;
}

/*
 * Compile the CHECK constraints and trigger WHEN conditions of a table
 * (opened and locked) into its DirectTable, the way ExecRelCheck and
 * TriggerEnabled do.
 */
static void
compile_expressions(DirectTable *table, Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	TriggerDesc *triggers = rel->trigdesc;
	MemoryContext old_context;

	if (table->compiled_context == NULL)
		table->compiled_context =
			AllocSetContextCreate(CacheMemoryContext,
								  "invsync compiled expressions",
								  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(table->compiled_context);
	old_context = MemoryContextSwitchTo(table->compiled_context);

	table->ncheck = constr != NULL ? constr->num_check : 0;
	table->checks = palloc0(sizeof(ExprState *) * Max(table->ncheck, 1));
	for (int i = 0; i < table->ncheck; i++)
		table->checks[i] =
			ExecInitExpr(expression_planner(stringToNode(constr->check[i].ccbin)),
						 NULL);

	table->ntriggers = triggers != NULL ? triggers->numtriggers : 0;
	table->trigger_whens = palloc0(sizeof(ExprState *) *
								   Max(table->ntriggers, 1));
	for (int i = 0; i < table->ntriggers; i++)
	{
		Node	   *when;

		if (triggers->triggers[i].tgqual == NULL)
			continue;
		when = stringToNode(triggers->triggers[i].tgqual);
		/* OLD and NEW become the inner and outer tuples */
		ChangeVarNodes(when, PRS2_OLD_VARNO, INNER_VAR, 0);
		ChangeVarNodes(when, PRS2_NEW_VARNO, OUTER_VAR, 0);
		table->trigger_whens[i] =
			ExecInitQual((List *) expression_planner((Expr *) make_ands_implicit((Expr *) when)),
						 NULL);
	}
	MemoryContextSwitchTo(old_context);
	table->compiled_generation = direct_tables_generation;
}

/*
 * Apply a movement to the stock row locked in stock->slot when the result
 * fits, as post_statement's conditions say; else write nothing and return
 * false.  Sets *on_hand and *reserved to the balances after.
 */
static bool
update_stock_row(EState *estate, DirectTarget *stock, const Movement *movement,
				 int64 *on_hand, int64 *reserved)
{
	TupleTableSlot *locked = stock->slot;
	TupleTableSlot *changed;
	int			natts = locked->tts_tupleDescriptor->natts;
	EPQState	epq;

	slot_getallattrs(locked);
	*on_hand = DatumGetInt64(locked->tts_values[COLUMN(stock, STOCK_ON_HAND)]) +
		DatumGetInt64(movement->values[MOVE_ON_HAND_CHANGE]);
	*reserved = DatumGetInt64(locked->tts_values[COLUMN(stock, STOCK_RESERVED)]) +
		DatumGetInt64(movement->values[MOVE_RESERVED_CHANGE]);
	if (*on_hand > MAX_QUANTITY || *reserved < 0 || *reserved > *on_hand)
		return false;

	changed = table_slot_create(stock->rel, &estate->es_tupleTable);
	memcpy(changed->tts_values, locked->tts_values, sizeof(Datum) * natts);
	memcpy(changed->tts_isnull, locked->tts_isnull, sizeof(bool) * natts);
	changed->tts_values[COLUMN(stock, STOCK_ON_HAND)] = Int64GetDatum(*on_hand);
	changed->tts_values[COLUMN(stock, STOCK_RESERVED)] = Int64GetDatum(*reserved);
	changed->tts_values[COLUMN(stock, STOCK_UPDATED)] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecStoreVirtualTuple(changed);

	EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
	ExecSimpleRelationUpdate(stock->rri, estate, &epq, locked, changed);
	EvalPlanQualEnd(&epq);
	return true;
}

/* write the ledger row of a movement applied to stock; return it in out */
static void
insert_ledger_row(EState *estate, DirectTarget *ledger,
				  const Movement *movement, int64 on_hand, int64 reserved,
				  Tuplestorestate *out, TupleDesc out_desc)
{
	const Datum *values = movement->values;
	const char *nulls = movement->nulls;
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	ExecClearTuple(ledger->slot);
	memset(ledger->slot->tts_isnull, true,
		   sizeof(bool) * ledger->slot->tts_tupleDescriptor->natts);
	set_column(ledger, LEDGER_TENANT, values[MOVE_TENANT], false);
	set_column(ledger, LEDGER_ID,
			   Int64GetDatum(nextval_internal(ledger_sequence, false)), false);
	set_column(ledger, LEDGER_SKU, values[MOVE_SKU], false);
	set_column(ledger, LEDGER_LOCATION, values[MOVE_LOCATION], false);
	set_column(ledger, LEDGER_OPERATION, values[MOVE_OPERATION], false);
	set_column(ledger, LEDGER_ON_HAND_CHANGE, values[MOVE_ON_HAND_CHANGE], false);
	set_column(ledger, LEDGER_RESERVED_CHANGE, values[MOVE_RESERVED_CHANGE], false);
	set_column(ledger, LEDGER_ON_HAND_AFTER, Int64GetDatum(on_hand), false);
	set_column(ledger, LEDGER_RESERVED_AFTER, Int64GetDatum(reserved), false);
	set_column(ledger, LEDGER_REASON, values[MOVE_REASON],
			   nulls[MOVE_REASON] == 'n');
	set_column(ledger, LEDGER_REFERENCE, values[MOVE_REFERENCE],
			   nulls[MOVE_REFERENCE] == 'n');
	set_column(ledger, LEDGER_ORDER_REF, values[MOVE_ORDER_REF],
			   nulls[MOVE_ORDER_REF] == 'n');
	set_column(ledger, LEDGER_KEY, values[MOVE_KEY], false);
	set_column(ledger, LEDGER_CORRELATION, values[MOVE_CORRELATION], false);
	set_column(ledger, LEDGER_ACTOR, values[MOVE_ACTOR], false);
	set_column(ledger, LEDGER_RECORDED, now, false);
	ExecStoreVirtualTuple(ledger->slot);

	ExecSimpleRelationInsert(ledger->rri, estate, ledger->slot);
	tuplestore_puttuple(out,
						ledger_row_as_result(ExecFetchSlotHeapTuple(ledger->slot,
																	false, NULL),
											 ledger->slot->tts_tupleDescriptor,
											 out_desc));
}

/* open a table for writing and give it a result relation info and a slot */
static void
open_target(EState *estate, DirectTableId id, Index rtindex,
			DirectTarget *target)
{
	DirectTable *table = &direct_tables[id];

	target->table = table;
	target->rel = table_open(table->relid, RowExclusiveLock);
	target->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(target->rri, target->rel, rtindex, NULL, 0);

	/*
	 * Compiled after the lock was taken, the expressions stay right for
	 * this call: changing them needs a lock that conflicts with ours.
	 */
	if (table->compiled_generation != direct_tables_generation)
		compile_expressions(table, target->rel);
	if (table->ncheck > 0)
		target->rri->ri_ConstraintExprs = table->checks;
	if (table->ntriggers > 0)
		memcpy(target->rri->ri_TrigWhenExprs, table->trigger_whens,
			   sizeof(ExprState *) * table->ntriggers);
	estate->es_opened_result_relations =
		lappend(estate->es_opened_result_relations, target->rri);
	ExecOpenIndices(target->rri, id == KEYS_TABLE);
	target->slot = table_slot_create(target->rel, &estate->es_tupleTable);
}

/* some columns of a table, by their indexes in its DirectTable */
static Bitmapset *
column_set(DirectTableId id, const int *columns, int ncolumns)
{
	Bitmapset  *set = NULL;

	for (int i = 0; i < ncolumns; i++)
		set = bms_add_member(set, direct_tables[id].attnums[columns[i]] -
							 FirstLowInvalidHeapAttributeNumber);
	return set;
}

/*
 * A range table entry for a table the direct path writes, asking for the
 * privileges the SQL path's statements need on it (checked as the current
 * user, adjust()'s owner): on the keys, INSERT and (to find a used key)
 * SELECT; on the stock row, SELECT and UPDATE; on the ledger, INSERT and
 * SELECT (RETURNING *).  The columns are those the statements name.
 */
static RangeTblEntry *
make_rte(DirectTableId id)
{
	static const int key_inserted[] = {
		KEY_TENANT, KEY_KEY, KEY_OPERATION, KEY_FINGERPRINT, KEY_CORRELATION
	};
	static const int key_selected[] = {
		KEY_TENANT, KEY_KEY, KEY_OPERATION, KEY_FINGERPRINT
	};
	static const int stock_selected[] = {
		STOCK_TENANT, STOCK_SKU, STOCK_LOCATION, STOCK_ON_HAND, STOCK_RESERVED
	};
	static const int stock_updated[] = {
		STOCK_ON_HAND, STOCK_RESERVED, STOCK_UPDATED
	};
	static const int ledger_inserted[] = {
		LEDGER_TENANT, LEDGER_SKU, LEDGER_LOCATION, LEDGER_OPERATION,
		LEDGER_ON_HAND_CHANGE, LEDGER_RESERVED_CHANGE, LEDGER_ON_HAND_AFTER,
		LEDGER_RESERVED_AFTER, LEDGER_REASON, LEDGER_REFERENCE,
		LEDGER_ORDER_REF, LEDGER_KEY, LEDGER_CORRELATION, LEDGER_ACTOR
	};
	static const int ledger_selected[] = {
		LEDGER_TENANT, LEDGER_ID, LEDGER_SKU, LEDGER_LOCATION,
		LEDGER_OPERATION, LEDGER_ON_HAND_CHANGE, LEDGER_RESERVED_CHANGE,
		LEDGER_ON_HAND_AFTER, LEDGER_RESERVED_AFTER, LEDGER_REASON,
		LEDGER_REFERENCE, LEDGER_ORDER_REF, LEDGER_KEY, LEDGER_CORRELATION,
		LEDGER_ACTOR, LEDGER_RECORDED
	};
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = direct_tables[id].relid;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	rte->checkAsUser = InvalidOid;
	switch (id)
	{
		case KEYS_TABLE:
			rte->requiredPerms = ACL_INSERT | ACL_SELECT;
			rte->insertedCols = column_set(id, key_inserted,
										   lengthof(key_inserted));
			rte->selectedCols = column_set(id, key_selected,
										   lengthof(key_selected));
			break;
		case STOCK_TABLE:
			rte->requiredPerms = ACL_SELECT | ACL_UPDATE;
			rte->selectedCols = column_set(id, stock_selected,
										   lengthof(stock_selected));
			/* also what UPDATE OF triggers compare with */
			rte->updatedCols = column_set(id, stock_updated,
										  lengthof(stock_updated));
			break;
		case LEDGER_TABLE:
			rte->requiredPerms = ACL_INSERT | ACL_SELECT;
			rte->insertedCols = column_set(id, ledger_inserted,
										   lengthof(ledger_inserted));
			rte->selectedCols = column_set(id, ledger_selected,
										   lengthof(ledger_selected));
			break;
		default:
			elog(ERROR, "unexpected direct table %d", id);
	}
	return rte;
}

/*
 * Whether the SQL path would check something here that a direct path does
 * not (DESIGN §7): a privilege the current user (adjust()'s owner, when it
 * runs as SECURITY DEFINER; the sync worker's role) lacks on one of the
 * tables, as ExecCheckRTPerms() checks them for SQL, or on the sequence
 * the rows take their ids from (if any), as nextval() checks it; or row
 * security applying to one of the tables.  Then the SQL path runs, and
 * refuses or filters as it should.  Checked on every call, with the tables
 * locked: a privilege check costs a cached catalog lookup, and GRANT,
 * REVOKE and role membership take effect at once, as for SQL.
 */
bool
direct_sql_checks_more(List *range_table, Oid sequence, const Relation *rels,
					   int nrels)
{
	if (!ExecCheckRTPerms(range_table, false))
		return true;
	if (OidIsValid(sequence) &&
		pg_class_aclcheck(sequence, GetUserId(),
						  ACL_USAGE | ACL_UPDATE) != ACLCHECK_OK)
		return true;
	for (int r = 0; r < nrels; r++)
		if (rels[r]->rd_rel->relrowsecurity &&
			check_enable_rls(RelationGetRelid(rels[r]), InvalidOid,
							 true) == RLS_ENABLED)
			return true;
	return false;
}


/*
 * Whether adjust() may take the direct path now: unless a superuser turned
 * it off (invsync.direct_path), in READ COMMITTED, whose rules are the
 * only ones it knows.  (Whether SQL would check more is decided with the
 * tables locked, in adjust_directly.)
 */
bool
direct_path_allowed(void)
{
	if (!invsync_direct_path)
		return false;
	look_up_direct_tables();
	return direct_path_usable && !IsolationUsesXactSnapshot() &&
		!XactReadOnly && !IsInParallelMode();
}

/* adjust() without SQL when it can; see the head of this file */
DirectResult
adjust_directly(Movement *movement, Tuplestorestate *out, TupleDesc out_desc)
{
	EState	   *estate;
	MemoryContext caller_context;
	List	   *range_table;
	Relation	rels[DIRECT_NTABLES];
	DirectTarget keys;
	DirectTarget stock;
	DirectTarget ledger;
	int64		on_hand;
	int64		reserved;
	DirectResult result = DIRECT_NOT_POSTED;

	/* the stock row is found by these: without them, leave it to SQL */
	if (movement->nulls[MOVE_SKU] == 'n' ||
		movement->nulls[MOVE_LOCATION] == 'n' ||
		movement->nulls[MOVE_KEY] == 'n')
		return DIRECT_KEY_NOT_TAKEN;

	estate = CreateExecutorState();
	caller_context = MemoryContextSwitchTo(estate->es_query_cxt);
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();

	range_table = list_make3(make_rte(KEYS_TABLE), make_rte(STOCK_TABLE),
							 make_rte(LEDGER_TABLE));
	ExecInitRangeTable(estate, range_table);
	open_target(estate, KEYS_TABLE, 1, &keys);
	open_target(estate, STOCK_TABLE, 2, &stock);
	open_target(estate, LEDGER_TABLE, 3, &ledger);
	rels[KEYS_TABLE] = keys.rel;
	rels[STOCK_TABLE] = stock.rel;
	rels[LEDGER_TABLE] = ledger.rel;
	AfterTriggerBeginQuery();

	/*
	 * DDL that committed while we waited for our locks may have changed
	 * the tables from what direct_tables says: then leave it all to SQL.
	 * So do statement triggers, privileges and row security (checked once
	 * the tables are locked, as SQL checks them).
	 */
	if (!direct_tables_known ||
		keys.rri->ri_TrigDesc != NULL || direct_has_statement_triggers(stock.rri) ||
		direct_has_statement_triggers(ledger.rri) ||
		direct_sql_checks_more(range_table, ledger_sequence, rels, DIRECT_NTABLES) ||
		!insert_key_directly(estate, &keys, movement))
		result = DIRECT_KEY_NOT_TAKEN;
	else if (lock_stock_row(&stock, movement) &&
			 update_stock_row(estate, &stock, movement, &on_hand, &reserved))
	{
		insert_ledger_row(estate, &ledger, movement, on_hand, reserved,
						  out, out_desc);
		result = DIRECT_POSTED;
	}

	AfterTriggerEndQuery(estate);
	ExecCloseResultRelations(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	table_close(keys.rel, NoLock);
	table_close(stock.rel, NoLock);
	table_close(ledger.rel, NoLock);
	MemoryContextSwitchTo(caller_context);
	FreeExecutorState(estate);

	/* what came before is visible to what comes next in this statement */
	CommandCounterIncrement();
	return result;
}

