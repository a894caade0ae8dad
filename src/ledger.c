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
 * direct path, ledger_direct.c) and falls back to the same two functions
 * otherwise.  What is rare stays in PL/pgSQL: _prepare_stock_row() creates
 * a missing stock row and raises the errors of a change that does not fit,
 * _replay() returns what an earlier call under a key wrote.
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

#include "access/htup_details.h"
#include "access/tupconvert.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "invsync.h"
#include "ledger.h"

/* longest idempotency key and order reference, in characters */
#define MAX_KEY_LENGTH 255
#define MAX_ORDER_REF_LENGTH 255

#define SHA256_LENGTH 32

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

static EVP_MD *sha256_md = NULL;

/*
 * Run a saved statement (preparing it on first use) inside the caller's
 * SPI connection; returns SPI_processed.
 */
static uint64
run_statement(SavedStatement *statement, Datum *values, const char *nulls)
{
	int			rc;
	int			guc_level;

	if (statement->plan == NULL)
	{
		SPIPlanPtr	plan;

		/*
		 * A generic plan saves planning every call.  Citus routes a
		 * statement to its tenant's shard only in a plan that sees the
		 * tenant's value: there the plan cache chooses (Citus makes the
		 * generic plans it cannot route look too costly to be chosen).
		 */
		plan = SPI_prepare_cursor(statement->sql, statement->nargs,
								  statement->argtypes,
								  invsync_citus_loaded ? 0 : CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s",
				 statement->sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep a plan: %s",
				 SPI_result_code_string(SPI_result));
		statement->plan = plan;
	}

	/*
	 * Every statement here reaches its rows by key.  The generic plan is
	 * made at the first call of the session (and again after an
	 * invalidation), possibly while a table is empty: it would then scan
	 * the table, and an import that fills it in one transaction would
	 * rescan every row it added on each call.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* a disabled path's cost must not make these statements JIT-compiled */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(statement->plan, values, nulls, false, 0);
	AtEOXact_GUC(true, guc_level);
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

/*
 * ERROR unless argument argno of an internal function is given: its
 * callers always pass it, and a NULL would be read as a pointer or as 0.
 */
static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/*
 * IV001 / IV002 unless a movement's sku and location are given.  Either
 * path would fail later anyway, but the direct path looks the stock row
 * up by them first.
 */
static void
check_stock_row_key(FunctionCallInfo fcinfo, int sku_argno, int location_argno)
{
	if (PG_ARGISNULL(sku_argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_UNKNOWN_SKU),
				 errmsg("unknown sku NULL"),
				 errhint("Create it first with invsync.upsert_item().")));
	if (PG_ARGISNULL(location_argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_UNKNOWN_LOCATION),
				 errmsg("unknown location NULL"),
				 errhint("Create it first with invsync.upsert_location().")));
}

/*
 * IV027 unless the texts of a movement fit their limits (a NULL sku or
 * location is left to check_stock_row_key or to SQL): checked before
 * anything is computed from them.
 */
static void
check_movement_lengths(FunctionCallInfo fcinfo, int sku_argno,
					   int location_argno, int reason_argno,
					   int reference_argno)
{
	if (!PG_ARGISNULL(sku_argno))
		invsync_check_length(PG_GETARG_DATUM(sku_argno), "sku",
							 INVSYNC_MAX_SKU_LENGTH);
	if (!PG_ARGISNULL(location_argno))
		invsync_check_length(PG_GETARG_DATUM(location_argno), "location code",
							 INVSYNC_MAX_LOCATION_LENGTH);
	if (!PG_ARGISNULL(reason_argno))
		invsync_check_length(PG_GETARG_DATUM(reason_argno), "reason",
							 INVSYNC_MAX_REASON_LENGTH);
	if (!PG_ARGISNULL(reference_argno))
		invsync_check_length(PG_GETARG_DATUM(reference_argno), "reference",
							 INVSYNC_MAX_REFERENCE_LENGTH);
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
	movement->values[MOVE_TENANT] = Int64GetDatum(tenant);
	movement->values[MOVE_OPERATION] = CStringGetTextDatum(operation);
	movement->values[MOVE_KEY] = PointerGetDatum(key);
	movement->nulls[MOVE_KEY] = key == NULL ? 'n' : ' ';
	movement->values[MOVE_CORRELATION] =
		CStringGetTextDatum(invsync_current_correlation_id());
	movement->values[MOVE_ACTOR] = NameGetDatum(&movement->actor);
	movement->nulls[MOVE_FINGERPRINT] = 'n';
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
			(errcode(ERRCODE_INVSYNC_INVALID_QUANTITY),
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
		VARSIZE_ANY_EXHDR(key) <= MAX_KEY_LENGTH * pg_database_encoding_max_length() &&
		pg_mbstrlen_with_len(VARDATA_ANY(key),
							 VARSIZE_ANY_EXHDR(key)) <= MAX_KEY_LENGTH)
		return;

	ereport(ERROR,
			(errcode(ERRCODE_INVSYNC_INVALID_KEY),
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
					(errcode(ERRCODE_INVSYNC_KEY_REUSED),
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
			 TextDatumGetCString(movement->values[MOVE_SKU]),
			 TextDatumGetCString(movement->values[MOVE_LOCATION]));
}

/*
 * Write one ledger row and apply it to stock_levels: the only place either
 * table is written.  Leaves the ledger row in SPI_tuptable.
 */
static void
post_movement(Movement *movement)
{
	invsync_citus_share_correlation_id();
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

/* whether rows of one descriptor can stand for rows of the other as they are */
static bool
same_row_layout(TupleDesc a, TupleDesc b)
{
	if (a->natts != b->natts)
		return false;
	for (int i = 0; i < a->natts; i++)
	{
		Form_pg_attribute x = TupleDescAttr(a, i);
		Form_pg_attribute y = TupleDescAttr(b, i);

		if (x->attisdropped != y->attisdropped || x->atttypid != y->atttypid ||
			x->atttypmod != y->atttypmod)
			return false;
	}
	return true;
}

/*
 * A ledger row (of tuple_desc) as a row of result_desc, the function's
 * result type.  They differ only when a column of the ledger was added,
 * dropped or changed after the calling statement was planned; columns are
 * then matched by name.
 */
HeapTuple
ledger_row_as_result(HeapTuple tuple, TupleDesc tuple_desc,
					 TupleDesc result_desc)
{
	TupleConversionMap *map;

	if (same_row_layout(tuple_desc, result_desc))
		return tuple;
	map = convert_tuples_by_name(tuple_desc, result_desc);
	return map == NULL ? tuple : execute_attr_map_tuple(tuple, map);
}

/*
 * SQL: invsync._check_quantity(p_value bigint, p_what text,
 *		p_allow_negative boolean DEFAULT false) returns void
 */
Datum
invsync_check_quantity_sql(PG_FUNCTION_ARGS)
{
	require_arg(fcinfo, 1, "p_what");
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
	Jsonb	   *params;
	char	   *params_text;
	bool		taken;

	require_arg(fcinfo, 0, "p_tenant");
	require_arg(fcinfo, 2, "p_operation");
	require_arg(fcinfo, 3, "p_params");
	check_key(key);
	params = PG_GETARG_JSONB_P(3);
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
	Datum		result;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "invsync._post must return a row type");
	/* a NULL sku or location is refused by _prepare_stock_row() */
	require_arg(fcinfo, 0, "p_tenant");
	require_arg(fcinfo, 3, "p_on_hand_change");
	require_arg(fcinfo, 4, "p_reserved_change");
	require_arg(fcinfo, 5, "p_operation");
	require_arg(fcinfo, 9, "p_key");
	/* the functions calling _post check these first; the ledger is forever */
	check_movement_lengths(fcinfo, 1, 2, 6, 7);
	if (!PG_ARGISNULL(8))
		invsync_check_length(PG_GETARG_DATUM(8), "order reference",
							 MAX_ORDER_REF_LENGTH);
	init_movement(&movement, PG_GETARG_INT64(0),
				  text_to_cstring(PG_GETARG_TEXT_PP(5)), text_arg(fcinfo, 9));
	set_text(&movement, MOVE_SKU, fcinfo, 1);
	set_text(&movement, MOVE_LOCATION, fcinfo, 2);
	movement.values[MOVE_ON_HAND_CHANGE] = PG_GETARG_DATUM(3);
	movement.values[MOVE_RESERVED_CHANGE] = PG_GETARG_DATUM(4);
	set_text(&movement, MOVE_REASON, fcinfo, 6);
	set_text(&movement, MOVE_REFERENCE, fcinfo, 7);
	set_text(&movement, MOVE_ORDER_REF, fcinfo, 8);

	connect_spi();
	post_movement(&movement);
	/* copied to the caller's context, which outlives SPI's */
	MemoryContextSwitchTo(caller_context);
	result = heap_copy_tuple_as_datum(ledger_row_as_result(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc,
														   result_desc),
									  result_desc);
	SPI_finish();
	PG_RETURN_DATUM(result);
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
	DirectResult result = DIRECT_KEY_NOT_TAKEN;

	check_quantity(PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2),
				   "delta", true);
	check_key(key);
	check_stock_row_key(fcinfo, 0, 1);
	check_movement_lengths(fcinfo, 0, 1, 3, 5);

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
	set_text(&movement, MOVE_SKU, fcinfo, 0);
	set_text(&movement, MOVE_LOCATION, fcinfo, 1);
	movement.values[MOVE_ON_HAND_CHANGE] = PG_GETARG_DATUM(2);
	movement.values[MOVE_RESERVED_CHANGE] = Int64GetDatum(0);
	set_text(&movement, MOVE_REASON, fcinfo, 3);
	set_text(&movement, MOVE_REFERENCE, fcinfo, 5);
	movement.nulls[MOVE_ORDER_REF] = 'n';
	movement.values[MOVE_FINGERPRINT] = PointerGetDatum(fingerprint);
	movement.nulls[MOVE_FINGERPRINT] = ' ';

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	if (direct_path_allowed())
		result = adjust_directly(&movement, rsinfo->setResult,
								 rsinfo->setDesc);
	ereport(DEBUG1,
			(errmsg_internal("invsync.adjust() %s",
							 result == DIRECT_POSTED ? "wrote directly" :
							 result == DIRECT_NOT_POSTED ? "took the key directly, posts through SQL" :
							 "runs through SQL")));
	if (result == DIRECT_POSTED)
		return (Datum) 0;

	connect_spi();
	if (result == DIRECT_NOT_POSTED ||
		take_idempotency_key(tenant, key, "adjust", fingerprint))
		post_movement(&movement);
	else
		replay(tenant, key);

	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult,
							ledger_row_as_result(SPI_tuptable->vals[i],
												 SPI_tuptable->tupdesc,
												 rsinfo->setDesc));
	SPI_finish();
	return (Datum) 0;
}
