/*
 * invsync--0.1--0.2.sql
 *	  Upgrade from 0.1: the ledger's hot path moves to C (src/ledger.c).
 *	  _check_quantity, _take_idempotency_key, _post and adjust become C
 *	  functions with the same signatures, results, errors and fingerprints;
 *	  the slow part of _post stays in PL/pgSQL as _prepare_stock_row.
 *	  CREATE OR REPLACE keeps each function's privileges.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  sql/invsync--0.1--0.2.sql
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.2'" to load this file. \quit

/* quantities are positive and at most max_quantity(); IV003 otherwise */
CREATE OR REPLACE FUNCTION invsync._check_quantity(p_value bigint, p_what text,
										p_allow_negative boolean DEFAULT false)
	RETURNS void
	LANGUAGE c IMMUTABLE
	AS 'MODULE_PATHNAME', 'invsync_check_quantity_sql';

/*
 * Take an idempotency key for this call.  Returns true when the key is new
 * and the caller should do the work; false when the same call already
 * committed under this key (the caller then replays its result).  A call
 * with the same key but other parameters is refused (IV005); a concurrent
 * call with the same key waits until the first one commits or aborts.
 */
CREATE OR REPLACE FUNCTION invsync._take_idempotency_key(p_tenant bigint, p_key text,
											  p_operation text, p_params jsonb)
	RETURNS boolean
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'invsync_take_idempotency_key_sql';

/*
 * The slow path of _post: the stock row is missing or the change does not
 * fit.  Raises IV001 / IV002 / IV013 for an unknown sku or location or a
 * bundle, IV003 / IV004 for a change out of range or overselling; otherwise
 * leaves the row existing and locked by this transaction, so that _post's
 * statement applies.  An existing stock row proves the sku and location
 * exist and the sku is no bundle (set_bundle refuses skus with stock rows),
 * so they are checked only when the row is missing.
 */
CREATE FUNCTION invsync._prepare_stock_row(p_tenant bigint, p_sku text, p_location text,
										   p_on_hand_change bigint, p_reserved_change bigint)
	RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_on_hand	bigint;
	v_reserved	bigint;
	v_exists	boolean;
BEGIN
	LOOP
		SELECT s.on_hand, s.reserved INTO v_on_hand, v_reserved
		  FROM invsync.stock_levels s
		 WHERE s.tenant_id = p_tenant AND s.sku = p_sku AND s.location = p_location
		   FOR UPDATE;
		v_exists := FOUND;
		IF NOT v_exists THEN
			PERFORM invsync._check_stockable(p_tenant, p_sku, p_location);
		END IF;
		v_on_hand := coalesce(v_on_hand, 0) + p_on_hand_change;
		v_reserved := coalesce(v_reserved, 0) + p_reserved_change;

		IF v_on_hand > invsync.max_quantity() THEN
			RAISE EXCEPTION 'stock of "%" at "%" would exceed the largest level allowed', p_sku, p_location
				USING ERRCODE = 'IV003',
					  DETAIL = pg_catalog.format('The level would be %s; at most %s is allowed.',
												 v_on_hand, invsync.max_quantity());
		END IF;
		IF v_reserved < 0 OR v_reserved > v_on_hand OR v_on_hand < 0 THEN
			RAISE EXCEPTION 'insufficient stock of "%" at "%"', p_sku, p_location
				USING ERRCODE = 'IV004',
					  DETAIL = pg_catalog.format('On hand would be %s with %s reserved.',
												 v_on_hand, v_reserved);
		END IF;
		IF v_exists THEN
			RETURN;
		END IF;

		/* a first movement creates the row empty; the movement fills it */
		INSERT INTO invsync.stock_levels (tenant_id, sku, location)
		VALUES (p_tenant, p_sku, p_location)
		ON CONFLICT (tenant_id, sku, location) DO NOTHING;
		IF FOUND THEN
			RETURN;
		END IF;
		/* created concurrently: check again against what it holds now */
	END LOOP;
END
$$;

/*
 * Write one ledger row and apply it to stock_levels: the only place either
 * table is written.  A change that would oversell or exceed the range
 * raises IV004 / IV003 and writes nothing.
 */
CREATE OR REPLACE FUNCTION invsync._post(p_tenant bigint, p_sku text, p_location text,
							  p_on_hand_change bigint, p_reserved_change bigint,
							  p_operation text, p_reason text, p_reference text,
							  p_order_ref text, p_key text)
	RETURNS invsync.ledger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'invsync_post_sql';

/* add (positive delta) or remove (negative delta) on-hand stock */
CREATE OR REPLACE FUNCTION invsync.adjust(p_sku text, p_location text, p_delta bigint,
							   p_reason text, p_idempotency_key text,
							   p_reference text DEFAULT NULL)
	RETURNS SETOF invsync.ledger
	LANGUAGE c SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	ROWS 1
	AS 'MODULE_PATHNAME', 'invsync_adjust';

REVOKE ALL ON FUNCTION invsync._prepare_stock_row(bigint, text, text, bigint, bigint) FROM PUBLIC;
