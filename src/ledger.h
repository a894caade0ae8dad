/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  What the ledger's hot path shares between its SQL path (ledger.c) and
 *	  adjust()'s direct path (ledger_direct.c): one movement, as _post()
 *	  takes it, and the direct path's entry points.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/ledger.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_LEDGER_H
#define INVSYNC_LEDGER_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/tuplestore.h"

/* must equal invsync.max_quantity() */
#define MAX_QUANTITY INT64CONST(1000000000)

/*
 * A movement's parameters, in the order of _post()'s statement ($1 .. $12),
 * then the fingerprint of its key, which only the direct path takes from
 * here.
 */
typedef enum MovementParam
{
	MOVE_TENANT,
	MOVE_SKU,
	MOVE_LOCATION,
	MOVE_ON_HAND_CHANGE,
	MOVE_RESERVED_CHANGE,
	MOVE_OPERATION,
	MOVE_REASON,
	MOVE_REFERENCE,
	MOVE_ORDER_REF,
	MOVE_KEY,
	MOVE_CORRELATION,
	MOVE_ACTOR,
	MOVE_FINGERPRINT,
	MOVEMENT_NARGS
} MovementParam;

/* one movement: SPI-style values and nulls (' ' or 'n') */
typedef struct Movement
{
	Datum		values[MOVEMENT_NARGS];
	char		nulls[MOVEMENT_NARGS];
	NameData	actor;			/* what values[MOVE_ACTOR] points to */
} Movement;

typedef enum DirectResult
{
	DIRECT_POSTED,				/* all written; the ledger row is in out */
	DIRECT_KEY_NOT_TAKEN,		/* nothing written: the key was used before,
								 * or the tables need the SQL way */
	DIRECT_NOT_POSTED			/* only the key written: post the SQL way */
} DirectResult;

/* ledger.c */
extern HeapTuple ledger_row_as_result(HeapTuple tuple, TupleDesc tuple_desc,
									  TupleDesc result_desc);

/* adjust()'s direct path (ledger_direct.c) */
extern bool direct_path_allowed(void);
extern DirectResult adjust_directly(Movement *movement, Tuplestorestate *out,
									TupleDesc out_desc);

#endif							/* INVSYNC_LEDGER_H */
