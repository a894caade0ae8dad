/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The ledger's hot path in C: taking an idempotency key, posting one
 *	  movement to the ledger and stock_levels, and invsync.adjust() itself.
 *
 * Every stock mutation goes through _take_idempotency_key() and _post();
 * the PL/pgSQL functions (set_on_hand, transfer, reserve, ...) call them
 * as SQL functions.  Both run saved plans through SPI.  adjust(), the call
 * an ERP or POS makes most, usually writes its three rows without SQL (the
 * direct path, below) and falls back to the same two functions otherwise.
 * What is rare stays in PL/pgSQL: _prepare_stock_row() creates a missing
 * stock row and raises the errors of a change that does not fit, _replay()
 * returns what an earlier call under a key wrote.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/ledger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "commands/extension.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteManip.h"
#include "common/hashfn.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "invsync.h"

/* must equal invsync.max_quantity() */
#define MAX_QUANTITY INT64CONST(1000000000)

/* longest idempotency key, in characters */
#define MAX_KEY_LENGTH 255

#define SHA256_LENGTH 32

/*
 * field4 of the advisory lock tags adjust() queues on for a busy stock row
 * (see lock_stock_row); SQL's advisory lock functions use 1 and 2.
 */
#define STOCK_ROW_QUEUE_LOCK 0x4956

PG_FUNCTION_INFO_V1(invsync_check_quantity_sql);
PG_FUNCTION_INFO_V1(invsync_take_idempotency_key_sql);
PG_FUNCTION_INFO_V1(invsync_post_sql);
PG_FUNCTION_INFO_V1(invsync_adjust);

/*
 * A statement prepared once per backend and kept; SPI revalidates it when
 * the objects it names change.
 */
typedef struct SavedStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[12];
	SPIPlanPtr	plan;
} SavedStatement;

static SavedStatement take_key_statement = {
	"INSERT INTO invsync.idempotency_keys"
	" (tenant_id, idempotency_key, operation, fingerprint, correlation_id)"
	" VALUES ($1, $2, $3, $4, $5)"
	" ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
	5, {INT8OID, TEXTOID, TEXTOID, BYTEAOID, TEXTOID}
};

static SavedStatement find_key_statement = {
	"SELECT k.operation, k.fingerprint FROM invsync.idempotency_keys k"
	" WHERE k.tenant_id = $1 AND k.idempotency_key = $2",
	2, {INT8OID, TEXTOID}
};

/*
 * The one statement that writes the ledger: it applies the change to an
 * existing stock row when the result fits, and records the row's balances
 * after it.  Nothing is written when the stock row is missing or the
 * change does not fit; _prepare_stock_row() then sorts that out.
 */
static SavedStatement post_statement = {
	"WITH level AS ("
	"  UPDATE invsync.stock_levels s"
	"     SET on_hand = s.on_hand + $4, reserved = s.reserved + $5,"
	"         updated_at = now()"
	"   WHERE s.tenant_id = $1 AND s.sku = $2 AND s.location = $3"
	"     AND s.reserved + $5 >= 0"
	"     AND s.reserved + $5 <= s.on_hand + $4"
	"     AND s.on_hand + $4 <= invsync.max_quantity()"
	"  RETURNING s.on_hand, s.reserved)"
	" INSERT INTO invsync.ledger"
	"  (tenant_id, sku, location, operation, on_hand_change, reserved_change,"
	"   on_hand_after, reserved_after, reason, reference, order_ref,"
	"   idempotency_key, correlation_id, actor)"
	" SELECT $1, $2, $3, $6, $4, $5, level.on_hand, level.reserved,"
	"        $7, $8, $9, $10, $11, $12"
	"   FROM level"
	" RETURNING *",
	12, {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID}
};

static SavedStatement prepare_stock_row_statement = {
	"SELECT invsync._prepare_stock_row($1, $2, $3, $4, $5)",
	5, {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID}
};

static SavedStatement replay_statement = {
	"SELECT * FROM invsync._replay($1, $2)",
	2, {INT8OID, TEXTOID}
};

/*
 * One movement, as _post() takes it, in the order of post_statement's
 * parameters ($1 .. $12), followed by the key's fingerprint, which only
 * the direct path takes from here.
 */
#define MOVEMENT_NARGS 13

typedef struct Movement
{
	Datum		values[MOVEMENT_NARGS];
	char		nulls[MOVEMENT_NARGS];
	NameData	actor;
} Movement;

static EVP_MD *sha256_md = NULL;

/*
 * Run a saved statement (preparing it on first use) inside the caller's
 * SPI connection; returns SPI_processed.
 */
static uint64
run_statement(SavedStatement *statement, Datum *values, const char *nulls)
{
	int			rc;

	if (statement->plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare_cursor(statement->sql, statement->nargs,
								  statement->argtypes,
								  CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s",
				 statement->sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep a plan: %s",
				 SPI_result_code_string(SPI_result));
		statement->plan = plan;
	}
	rc = SPI_execute_plan(statement->plan, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "could not run \"%s\": %s",
			 statement->sql, SPI_result_code_string(rc));
	return SPI_processed;
}

static void
connect_spi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
}

static inline text *
text_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : PG_GETARG_TEXT_PP(argno);
}

/* set parameter n of a movement to a text argument of the SQL function */
static inline void
set_text(Movement *movement, int n, FunctionCallInfo fcinfo, int argno)
{
	movement->nulls[n] = PG_ARGISNULL(argno) ? 'n' : ' ';
	movement->values[n] = PG_ARGISNULL(argno) ? (Datum) 0 : PG_GETARG_DATUM(argno);
}

/*
 * Start a movement: everything but sku, location, changes, reason,
 * reference and order ref, which the caller sets.
 */
static void
init_movement(Movement *movement, int64 tenant, const char *operation,
			  text *key)
{
	memset(movement->nulls, ' ', sizeof(movement->nulls));
	namestrcpy(&movement->actor, GetUserNameFromId(GetOuterUserId(), false));
	movement->values[0] = Int64GetDatum(tenant);
	movement->values[5] = CStringGetTextDatum(operation);
	movement->values[9] = PointerGetDatum(key);
	movement->nulls[9] = key == NULL ? 'n' : ' ';
	movement->values[10] =
		CStringGetTextDatum(invsync_current_correlation_id());
	movement->values[11] = NameGetDatum(&movement->actor);
	movement->nulls[12] = 'n';
}

/*
 * IV003 unless value is a whole quantity: non-zero, within max_quantity(),
 * and positive unless allow_negative.
 */
static void
check_quantity(bool isnull, int64 value, const char *what,
			   bool allow_negative)
{
	if (!isnull && value != 0 && (value > 0 || allow_negative) &&
		value <= MAX_QUANTITY && value >= -MAX_QUANTITY)
		return;

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE('I', 'V', '0', '0', '3')),
			 isnull ? errmsg("invalid %s NULL", what)
			 : errmsg("invalid %s " INT64_FORMAT, what, value),
			 allow_negative
			 ? errdetail("A %s is a non-zero whole number between -" INT64_FORMAT " and " INT64_FORMAT ".",
						 what, MAX_QUANTITY, MAX_QUANTITY)
			 : errdetail("A %s is a whole number between 1 and " INT64_FORMAT ".",
						 what, MAX_QUANTITY)));
}

/* IV010 unless key is a usable idempotency key */
static void
check_key(text *key)
{
	if (key != NULL &&
		VARSIZE_ANY_EXHDR(key) > 0 &&
		pg_mbstrlen_with_len(VARDATA_ANY(key),
							 VARSIZE_ANY_EXHDR(key)) <= MAX_KEY_LENGTH)
		return;

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE('I', 'V', '0', '1', '0')),
			 errmsg("invalid idempotency key"),
			 errdetail("An idempotency key is a non-empty string of at most %d characters.",
					   MAX_KEY_LENGTH),
			 errhint("Pass a key that identifies this request, such as a UUID or \"<system>:<document>:<line>\".")));
}

/*
 * The fingerprint of a call under a key: the SHA-256 of its parameters as
 * a JSON array (the text form of a jsonb array).
 */
static bytea *
fingerprint_of(const char *params, int len)
{
	bytea	   *result = palloc(VARHDRSZ + SHA256_LENGTH);
	unsigned int md_len = 0;

	/* fetched once: an implicit fetch on every digest costs more than it */
	if (sha256_md == NULL)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256_md == NULL ||
		!EVP_Digest(params, len, (unsigned char *) VARDATA(result), &md_len,
					sha256_md, NULL) ||
		md_len != SHA256_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 digest")));
	SET_VARSIZE(result, VARHDRSZ + SHA256_LENGTH);
	return result;
}

/*
 * Take an idempotency key (checked by the caller) for this call.  Returns
 * true when the key is new and the caller should do the work; false when
 * the same call already committed under this key (the caller then replays
 * its result).  A call with the same key but another operation or other
 * parameters is refused with IV005.  A concurrent call with the same key
 * waits on the unique index until the first one commits (then replays) or
 * aborts (then proceeds).  Runs inside the caller's SPI connection.
 */
static bool
take_idempotency_key(int64 tenant, text *key, const char *operation,
					 bytea *fingerprint)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(tenant);
	values[1] = PointerGetDatum(key);
	values[2] = CStringGetTextDatum(operation);
	values[3] = PointerGetDatum(fingerprint);
	values[4] = CStringGetTextDatum(invsync_current_correlation_id());

	for (;;)
	{
		bool		isnull;
		char	   *stored_operation;
		bytea	   *stored_fingerprint;

		if (run_statement(&take_key_statement, values, nulls) == 1)
			return true;

		if (run_statement(&find_key_statement, values, nulls) == 0)
			continue;			/* purged between the two statements */

		stored_operation = SPI_getvalue(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1);
		stored_fingerprint = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc,
														   2, &isnull));
		if (strcmp(stored_operation, operation) != 0 ||
			VARSIZE_ANY_EXHDR(stored_fingerprint) != SHA256_LENGTH ||
			memcmp(VARDATA_ANY(stored_fingerprint), VARDATA(fingerprint),
				   SHA256_LENGTH) != 0)
			ereport(ERROR,
					(errcode(MAKE_SQLSTATE('I', 'V', '0', '0', '5')),
					 errmsg("idempotency key \"%s\" was already used with different parameters",
							text_to_cstring(key)),
					 errdetail("The key was first used by %s; this call is %s with other parameters.",
							   stored_operation, operation),
					 errhint("Use a new key for a new request; resend a request only with its original parameters.")));
		return false;
	}
}

/*
 * The slow path of a movement post_statement did not apply: this raises
 * the error (IV001 / IV002 / IV013 for an unknown sku or location or a
 * bundle, IV003 / IV004 for a change out of range or overselling), or
 * leaves the stock row existing and locked by us, so that the statement
 * applies now.  Leaves the ledger row in SPI_tuptable.
 */
static void
post_movement_slowly(Movement *movement)
{
	run_statement(&prepare_stock_row_statement, movement->values,
				  movement->nulls);
	if (run_statement(&post_statement, movement->values,
					  movement->nulls) != 1)
		elog(ERROR, "stock row of \"%s\" at \"%s\" was not ready for a movement",
			 TextDatumGetCString(movement->values[1]),
			 TextDatumGetCString(movement->values[2]));
}

/*
 * Write one ledger row and apply it to stock_levels: the only place either
 * table is written.  Leaves the ledger row in SPI_tuptable.
 */
static void
post_movement(Movement *movement)
{
	if (run_statement(&post_statement, movement->values,
					  movement->nulls) != 1)
		post_movement_slowly(movement);
}

/* the ledger rows an earlier call under key wrote, into SPI_tuptable */
static void
replay(int64 tenant, text *key)
{
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = Int64GetDatum(tenant);
	values[1] = PointerGetDatum(key);
	run_statement(&replay_statement, values, nulls);
}

/*
 * Check an SPI result row of the ledger against the function's result type
 * (the ledger's row type, which RETURNING * matches) and deform it.
 */
static void
deform_ledger_row(HeapTuple tuple, TupleDesc spi_desc, TupleDesc result_desc,
				  Datum *values, bool *nulls)
{
	if (spi_desc->natts != result_desc->natts)
		elog(ERROR, "ledger row has %d columns, its type %d",
			 spi_desc->natts, result_desc->natts);
	heap_deform_tuple(tuple, spi_desc, values, nulls);
}

/*
 * SQL: invsync._check_quantity(p_value bigint, p_what text,
 *		p_allow_negative boolean DEFAULT false) returns void
 */
Datum
invsync_check_quantity_sql(PG_FUNCTION_ARGS)
{
	check_quantity(PG_ARGISNULL(0), PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0),
				   text_to_cstring(PG_GETARG_TEXT_PP(1)),
				   !PG_ARGISNULL(2) && PG_GETARG_BOOL(2));
	PG_RETURN_VOID();
}

/*
 * SQL: invsync._take_idempotency_key(p_tenant bigint, p_key text,
 *		p_operation text, p_params jsonb) returns boolean
 */
Datum
invsync_take_idempotency_key_sql(PG_FUNCTION_ARGS)
{
	text	   *key = text_arg(fcinfo, 1);
	Jsonb	   *params = PG_GETARG_JSONB_P(3);
	char	   *params_text;
	bool		taken;

	check_key(key);
	params_text = JsonbToCString(NULL, &params->root, VARSIZE(params));
	connect_spi();
	taken = take_idempotency_key(PG_GETARG_INT64(0), key,
								 text_to_cstring(PG_GETARG_TEXT_PP(2)),
								 fingerprint_of(params_text,
												strlen(params_text)));
	SPI_finish();
	PG_RETURN_BOOL(taken);
}

/*
 * SQL: invsync._post(p_tenant bigint, p_sku text, p_location text,
 *		p_on_hand_change bigint, p_reserved_change bigint, p_operation text,
 *		p_reason text, p_reference text, p_order_ref text, p_key text)
 *		returns invsync.ledger
 */
Datum
invsync_post_sql(PG_FUNCTION_ARGS)
{
	Movement	movement;
	TupleDesc	result_desc;
	MemoryContext caller_context = CurrentMemoryContext;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	result;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "invsync._post must return a row type");
	init_movement(&movement, PG_GETARG_INT64(0),
				  text_to_cstring(PG_GETARG_TEXT_PP(5)), text_arg(fcinfo, 9));
	set_text(&movement, 1, fcinfo, 1);
	set_text(&movement, 2, fcinfo, 2);
	movement.values[3] = PG_GETARG_DATUM(3);
	movement.values[4] = PG_GETARG_DATUM(4);
	set_text(&movement, 6, fcinfo, 6);
	set_text(&movement, 7, fcinfo, 7);
	set_text(&movement, 8, fcinfo, 8);

	values = palloc(sizeof(Datum) * result_desc->natts);
	nulls = palloc(sizeof(bool) * result_desc->natts);

	connect_spi();
	post_movement(&movement);
	deform_ledger_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
					  result_desc, values, nulls);
	/* formed in the caller's context, which outlives SPI's */
	MemoryContextSwitchTo(caller_context);
	result = heap_form_tuple(result_desc, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * adjust()'s direct path.
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
 * Everything else, and any table with statement triggers, takes the SQL
 * path, which gives the same result.
 */

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
	 * TriggerEnabled), but once per backend: in PostgreSQL 15 that costs
	 * more than the rest of writing a row.  Valid while compiled_generation
	 * is direct_tables_generation; in compiled_context.
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

/* whether direct_tables holds what the catalogs say; and may be used */
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
		for (int c = 0; c < table->ncolumns; c++)
		{
			table->attnums[c] = get_attnum(table->relid, table->columns[c]);
			if (table->attnums[c] == InvalidAttrNumber)
				direct_path_usable = false;
		}
		rel = table_open(table->relid, AccessShareLock);
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

/* whether statement triggers of the given kinds are defined */
static bool
has_statement_triggers(const DirectTarget *target)
{
	const TriggerDesc *triggers = target->rri->ri_TrigDesc;

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
	slot->tts_values[COLUMN(keys, KEY_TENANT)] = movement->values[0];
	slot->tts_values[COLUMN(keys, KEY_KEY)] = movement->values[9];
	slot->tts_values[COLUMN(keys, KEY_OPERATION)] = movement->values[5];
	slot->tts_values[COLUMN(keys, KEY_FINGERPRINT)] = movement->values[12];
	slot->tts_values[COLUMN(keys, KEY_CORRELATION)] = movement->values[10];
	slot->tts_values[COLUMN(keys, KEY_CREATED)] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	for (int c = 0; c < KEY_NCOLUMNS; c++)
		slot->tts_isnull[COLUMN(keys, c)] = false;
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

	key = hash_combine64(hash_text(movement->values[1],
								   (uint64) DatumGetInt64(movement->values[0])),
						 hash_text(movement->values[2], 0));
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
						   movement->values[0]);
	ScanKeyEntryInitialize(&scankeys[1], 0, 2, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[1], F_TEXTEQ,
						   movement->values[1]);
	ScanKeyEntryInitialize(&scankeys[2], 0, 3, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[2], F_TEXTEQ,
						   movement->values[2]);
	InitDirtySnapshot(dirty);
	scan = index_beginscan(stock->rel, pkey, &dirty, 3, 0);
	for (;;)
	{
		TM_FailureData failure;
		TM_Result	result;

		index_rescan(scan, scankeys, 3, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, stock->slot);
		if (!found)
			break;
		/* a row being inserted: wait for its transaction, then look again */
		if (TransactionIdIsValid(dirty.xmin))
		{
			XactLockTableWait(dirty.xmin, stock->rel, &stock->slot->tts_tid,
							  XLTW_Lock);
			continue;
		}

		/*
		 * Another transaction is changing the row: queue for it first.
		 * Waiters on the row itself queue per tuple version, and every
		 * commit of a busy row wakes all of them to find the next version;
		 * queued here, by the row's key, a commit wakes one.
		 */
		if (TransactionIdIsValid(dirty.xmax) && !queued)
		{
			set_stock_row_queue_tag(&queue, movement);
			(void) LockAcquire(&queue, ExclusiveLock, false, false);
			queued = true;
			continue;
		}
		result = table_tuple_lock(stock->rel, &stock->slot->tts_tid,
								  GetLatestSnapshot(), stock->slot,
								  GetCurrentCommandId(false),
								  LockTupleNoKeyExclusive, LockWaitBlock,
								  TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								  &failure);
		if (result == TM_Ok)
			break;
		if (result != TM_Deleted)
			elog(ERROR, "unexpected result %d locking a stock row", result);
		/* deleted under us: look again */
	}
	index_endscan(scan);
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

/* a range table entry for a table the direct path writes */
static RangeTblEntry *
make_rte(DirectTableId id)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = direct_tables[id].relid;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	return rte;
}

typedef enum DirectResult
{
	DIRECT_POSTED,				/* all written; the ledger row is in out */
	DIRECT_KEY_NOT_TAKEN,		/* nothing written: the key was used before,
								 * or the tables need the SQL way */
	DIRECT_NOT_POSTED			/* only the key written: post the SQL way */
} DirectResult;

/* adjust() without SQL when it can; see above */
static DirectResult
adjust_directly(Movement *movement, Tuplestorestate *out)
{
	EState	   *estate;
	MemoryContext caller_context;
	RangeTblEntry *stock_rte;
	DirectTarget keys;
	DirectTarget stock;
	DirectTarget ledger;
	DirectResult result = DIRECT_NOT_POSTED;

	estate = CreateExecutorState();
	caller_context = MemoryContextSwitchTo(estate->es_query_cxt);
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();

	stock_rte = make_rte(STOCK_TABLE);
	stock_rte->updatedCols =
		bms_make_singleton(direct_tables[STOCK_TABLE].attnums[STOCK_ON_HAND] -
						   FirstLowInvalidHeapAttributeNumber);
	stock_rte->updatedCols =
		bms_add_member(stock_rte->updatedCols,
					   direct_tables[STOCK_TABLE].attnums[STOCK_UPDATED] -
					   FirstLowInvalidHeapAttributeNumber);
	ExecInitRangeTable(estate, list_make3(make_rte(KEYS_TABLE), stock_rte,
										  make_rte(LEDGER_TABLE)));
	open_target(estate, KEYS_TABLE, 1, &keys);
	open_target(estate, STOCK_TABLE, 2, &stock);
	open_target(estate, LEDGER_TABLE, 3, &ledger);
	AfterTriggerBeginQuery();

	if (keys.rri->ri_TrigDesc != NULL || has_statement_triggers(&stock) ||
		has_statement_triggers(&ledger) ||
		!insert_key_directly(estate, &keys, movement))
		result = DIRECT_KEY_NOT_TAKEN;
	else if (lock_stock_row(&stock, movement))
	{
		TupleTableSlot *locked = stock.slot;
		TupleTableSlot *changed = table_slot_create(stock.rel,
													&estate->es_tupleTable);
		int			natts = locked->tts_tupleDescriptor->natts;
		int64		on_hand;
		int64		reserved;
		EPQState	epq;

		slot_getallattrs(locked);
		on_hand = DatumGetInt64(locked->tts_values[COLUMN(&stock, STOCK_ON_HAND)]) +
			DatumGetInt64(movement->values[3]);
		reserved = DatumGetInt64(locked->tts_values[COLUMN(&stock, STOCK_RESERVED)]);

		if (on_hand <= MAX_QUANTITY && reserved >= 0 && reserved <= on_hand)
		{
			ExecClearTuple(changed);
			memcpy(changed->tts_values, locked->tts_values, sizeof(Datum) * natts);
			memcpy(changed->tts_isnull, locked->tts_isnull, sizeof(bool) * natts);
			changed->tts_values[COLUMN(&stock, STOCK_ON_HAND)] = Int64GetDatum(on_hand);
			changed->tts_values[COLUMN(&stock, STOCK_UPDATED)] =
				TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
			ExecStoreVirtualTuple(changed);
			EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
			ExecSimpleRelationUpdate(stock.rri, estate, &epq, locked, changed);
			EvalPlanQualEnd(&epq);

			ExecClearTuple(ledger.slot);
			memset(ledger.slot->tts_isnull, false,
				   sizeof(bool) * ledger.slot->tts_tupleDescriptor->natts);
#define SET_LEDGER(column, value, isnull) \
	(ledger.slot->tts_values[COLUMN(&ledger, column)] = (value), \
	 ledger.slot->tts_isnull[COLUMN(&ledger, column)] = (isnull))
			SET_LEDGER(LEDGER_TENANT, movement->values[0], false);
			SET_LEDGER(LEDGER_ID,
					   Int64GetDatum(nextval_internal(ledger_sequence, false)),
					   false);
			SET_LEDGER(LEDGER_SKU, movement->values[1], false);
			SET_LEDGER(LEDGER_LOCATION, movement->values[2], false);
			SET_LEDGER(LEDGER_OPERATION, movement->values[5], false);
			SET_LEDGER(LEDGER_ON_HAND_CHANGE, movement->values[3], false);
			SET_LEDGER(LEDGER_RESERVED_CHANGE, movement->values[4], false);
			SET_LEDGER(LEDGER_ON_HAND_AFTER, Int64GetDatum(on_hand), false);
			SET_LEDGER(LEDGER_RESERVED_AFTER, Int64GetDatum(reserved), false);
			SET_LEDGER(LEDGER_REASON, movement->values[6],
					   movement->nulls[6] == 'n');
			SET_LEDGER(LEDGER_REFERENCE, movement->values[7],
					   movement->nulls[7] == 'n');
			SET_LEDGER(LEDGER_ORDER_REF, movement->values[8],
					   movement->nulls[8] == 'n');
			SET_LEDGER(LEDGER_KEY, movement->values[9], false);
			SET_LEDGER(LEDGER_CORRELATION, movement->values[10], false);
			SET_LEDGER(LEDGER_ACTOR, movement->values[11], false);
			SET_LEDGER(LEDGER_RECORDED,
					   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
					   false);
#undef SET_LEDGER
			ExecStoreVirtualTuple(ledger.slot);
			ExecSimpleRelationInsert(ledger.rri, estate, ledger.slot);
			tuplestore_puttupleslot(out, ledger.slot);
			result = DIRECT_POSTED;
		}
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

/* append a text argument as a JSON string, or null */
static void
append_json_arg(StringInfo buf, FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/*
 * SQL: invsync.adjust(p_sku text, p_location text, p_delta bigint,
 *		p_reason text, p_idempotency_key text, p_reference text DEFAULT NULL)
 *		returns SETOF invsync.ledger
 *
 * Add (positive delta) or remove (negative delta) on-hand stock; returns
 * the ledger row, or under a key already used by the same call, the row
 * that call wrote.
 */
Datum
invsync_adjust(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		tenant = invsync_current_tenant();
	text	   *key = text_arg(fcinfo, 4);
	Movement	movement;
	StringInfoData params;
	bytea	   *fingerprint;
	Datum	   *values;
	bool	   *nulls;
	DirectResult result = DIRECT_KEY_NOT_TAKEN;

	check_quantity(PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2),
				   "delta", true);
	check_key(key);

	/* the parameters that make two calls under one key the same call */
	initStringInfo(&params);
	appendStringInfoChar(&params, '[');
	append_json_arg(&params, fcinfo, 0);
	appendStringInfoString(&params, ", ");
	append_json_arg(&params, fcinfo, 1);
	appendStringInfo(&params, ", " INT64_FORMAT ", ", PG_GETARG_INT64(2));
	append_json_arg(&params, fcinfo, 3);
	appendStringInfoString(&params, ", ");
	append_json_arg(&params, fcinfo, 5);
	appendStringInfoChar(&params, ']');
	fingerprint = fingerprint_of(params.data, params.len);

	init_movement(&movement, tenant, "adjust", key);
	set_text(&movement, 1, fcinfo, 0);
	set_text(&movement, 2, fcinfo, 1);
	movement.values[3] = PG_GETARG_DATUM(2);
	movement.values[4] = Int64GetDatum(0);
	set_text(&movement, 6, fcinfo, 3);
	set_text(&movement, 7, fcinfo, 5);
	movement.nulls[8] = 'n';
	movement.values[12] = PointerGetDatum(fingerprint);
	movement.nulls[12] = ' ';

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	values = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
	nulls = palloc(sizeof(bool) * rsinfo->setDesc->natts);

	connect_spi();
	look_up_direct_tables();
	/*
	 * The direct path knows READ COMMITTED's rules only, and makes none of
	 * the checks SQL makes before writing.
	 */
	if (direct_path_usable && !IsolationUsesXactSnapshot() &&
		!XactReadOnly && !IsInParallelMode())
		result = adjust_directly(&movement, rsinfo->setResult);
	if (result == DIRECT_POSTED)
	{
		SPI_finish();
		return (Datum) 0;
	}
	if (result == DIRECT_NOT_POSTED ||
		take_idempotency_key(tenant, key, "adjust", fingerprint))
		post_movement(&movement);
	else
		replay(tenant, key);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		deform_ledger_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
						  rsinfo->setDesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
