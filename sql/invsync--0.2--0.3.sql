/*
 * invsync--0.2--0.3.sql
 *	  Upgrade from 0.2: the hardening release.  Every function the worker
 *	  or a trigger runs pins search_path; bundles are flattened when they
 *	  are defined; roles can be pinned to one tenant; secrets are readable
 *	  only by the worker's role and invsync_secrets.
 *	  CREATE OR REPLACE keeps each function's privileges.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  sql/invsync--0.2--0.3.sql
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.3'" to load this file. \quit

/*
 * The sync worker's own role (invsync.worker_role), no longer a superuser,
 * and the one role besides it that may read secrets.
 */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['invsync_worker', 'invsync_secrets']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

/* a NULL sku or location is reported as NULL, as adjust() reports it */
CREATE OR REPLACE FUNCTION invsync._check_stockable(p_tenant bigint, p_sku text, p_location text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM invsync.items i
					WHERE i.tenant_id = p_tenant AND i.sku = p_sku) THEN
		RAISE EXCEPTION 'unknown sku %', coalesce('"' || p_sku || '"', 'NULL')
			USING ERRCODE = 'IV001',
				  HINT = 'Create it first with invsync.upsert_item().';
	END IF;
	IF NOT EXISTS (SELECT FROM invsync.locations l
					WHERE l.tenant_id = p_tenant AND l.location = p_location) THEN
		RAISE EXCEPTION 'unknown location %', coalesce('"' || p_location || '"', 'NULL')
			USING ERRCODE = 'IV002',
				  HINT = 'Create it first with invsync.upsert_location().';
	END IF;
	IF EXISTS (SELECT FROM invsync.bundle_components b
				WHERE b.tenant_id = p_tenant AND b.bundle_sku = p_sku) THEN
		RAISE EXCEPTION 'sku "%" is a bundle and holds no stock of its own', p_sku
			USING ERRCODE = 'IV013',
				  HINT = 'Move stock of its components instead.';
	END IF;
END
$$;

/*
 * Roles pinned to one tenant (src/tenant.c): invsync.current_tenant() is
 * the pinned tenant of a pinned role, whatever it sets invsync.tenant to.
 */
COMMENT ON FUNCTION invsync.current_tenant() IS
	'the tenant invsync functions work in: the tenant the role is pinned to, else the invsync.tenant setting, 0 when unset';

/* the tenant this session is pinned to, NULL when it is not */
CREATE FUNCTION invsync._pinned_tenant() RETURNS bigint
	AS 'MODULE_PATHNAME', 'invsync_pinned_tenant_sql'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION invsync._pinned_tenant() IS
	'the tenant the calling role is pinned to (see invsync.tenant_roles), NULL when it is not pinned';

CREATE TABLE invsync.tenant_roles (
	role		regrole PRIMARY KEY,
	tenant_id	bigint NOT NULL,
	pinned_at	timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT tenant_roles_tenant_range CHECK (tenant_id >= 0)
);
COMMENT ON TABLE invsync.tenant_roles IS
	'roles pinned to one tenant: each, and every role that is a member of it, works in that tenant whatever invsync.tenant says';

/* pins are cached per backend: a change invalidates them everywhere */
CREATE FUNCTION invsync._tenant_roles_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'invsync_tenant_roles_changed'
	LANGUAGE C;

CREATE TRIGGER tenant_roles_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON invsync.tenant_roles
	FOR EACH STATEMENT EXECUTE FUNCTION invsync._tenant_roles_changed();

/*
 * Pin a role to a tenant, or move its pin.  Not SECURITY DEFINER and
 * granted to no role: only the extension's owner (or a superuser) pins.
 * Pinning a role that reads invsync's tables directly (invsync_admin)
 * confines its functions and views only, and says so.
 */
CREATE FUNCTION invsync.pin_role(p_role regrole, p_tenant bigint)
	RETURNS invsync.tenant_roles
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		invsync.tenant_roles;
BEGIN
	IF p_role IS NULL OR p_role OPERATOR(pg_catalog.=) 0 THEN
		RAISE EXCEPTION 'invalid role NULL'
			USING ERRCODE = 'IV014';
	END IF;
	IF p_tenant IS NULL OR p_tenant < 0 THEN
		RAISE EXCEPTION 'invalid tenant %', coalesce(p_tenant::text, 'NULL')
			USING ERRCODE = 'IV014',
				  DETAIL = 'A tenant is a non-negative bigint.';
	END IF;
	IF has_table_privilege(p_role, 'invsync.ledger', 'SELECT') THEN
		RAISE WARNING 'role "%" reads invsync''s tables directly', p_role
			USING DETAIL = 'The pin confines what the role does through invsync''s functions and views, not what it reads from the tables.',
				  HINT = 'Pin roles granted invsync_reader, invsync_writer or invsync_webhook.';
	END IF;
	INSERT INTO invsync.tenant_roles AS t (role, tenant_id)
	VALUES (p_role, p_tenant)
	ON CONFLICT (role) DO UPDATE
		SET tenant_id = excluded.tenant_id, pinned_at = now()
	RETURNING * INTO v_row;
	RETURN v_row;
END
$$;
COMMENT ON FUNCTION invsync.pin_role(regrole, bigint) IS
	'pin a role (and its members) to one tenant: from its next transaction on, it works in that tenant whatever it sets invsync.tenant to';

/* remove a role's pin; returns whether it had one */
CREATE FUNCTION invsync.unpin_role(p_role regrole)
	RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	DELETE FROM invsync.tenant_roles t WHERE t.role OPERATOR(pg_catalog.=) p_role;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invsync.unpin_role(regrole) IS
	'remove a role''s pin to a tenant; returns whether it had one';

REVOKE ALL ON invsync.tenant_roles FROM PUBLIC;
GRANT SELECT ON invsync.tenant_roles TO invsync_admin;
REVOKE ALL ON FUNCTION invsync._pinned_tenant(), invsync._tenant_roles_changed(),
	invsync.pin_role(regrole, bigint), invsync.unpin_role(regrole) FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('invsync.tenant_roles', '');

/*
 * Every (sku, location) where stock_levels differs from the ledger: the sum
 * of the changes, or the balance the newest ledger row recorded.  Empty,
 * always; anything it returns is a bug or tampering.  For a role pinned to
 * a tenant, all tenants means its own.
 */
CREATE OR REPLACE FUNCTION invsync.check_consistency(p_all_tenants boolean DEFAULT false)
	RETURNS TABLE (tenant_id bigint, sku text, location text,
				   on_hand bigint, reserved bigint,
				   ledger_on_hand numeric, ledger_reserved numeric,
				   last_on_hand_after bigint, last_reserved_after bigint)
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH sums AS (
		SELECT l.tenant_id, l.sku, l.location,
			   sum(l.on_hand_change) AS on_hand, sum(l.reserved_change) AS reserved,
			   max(l.ledger_id) AS last_id
		  FROM invsync.ledger l
		 WHERE (p_all_tenants AND invsync._pinned_tenant() IS NULL)
			OR l.tenant_id = invsync.current_tenant()
		 GROUP BY l.tenant_id, l.sku, l.location
	)
	SELECT coalesce(s.tenant_id, m.tenant_id), coalesce(s.sku, m.sku),
		   coalesce(s.location, m.location), s.on_hand, s.reserved,
		   m.on_hand, m.reserved, last.on_hand_after, last.reserved_after
	  FROM (SELECT * FROM invsync.stock_levels x
			 WHERE (p_all_tenants AND invsync._pinned_tenant() IS NULL)
				OR x.tenant_id = invsync.current_tenant()) s
	  FULL JOIN sums m
		ON m.tenant_id = s.tenant_id AND m.sku = s.sku AND m.location = s.location
	  LEFT JOIN invsync.ledger last
		ON last.tenant_id = m.tenant_id AND last.ledger_id = m.last_id
	 WHERE s.on_hand IS DISTINCT FROM m.on_hand
		OR s.reserved IS DISTINCT FROM m.reserved
		OR s.on_hand IS DISTINCT FROM last.on_hand_after
		OR s.reserved IS DISTINCT FROM last.reserved_after
	 ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION invsync.check_consistency(boolean) IS
	'rows where the cached stock level differs from the ledger; always empty';

/*
 * Bounded inputs: codes, texts, order references and reservation lines
 * have documented limits (IV027, IV006), checked before anything is
 * written, and errors never repeat an oversized value.
 */
/*
 * Bounded inputs (src/inputs.c): IV027 unless p_value has at most the
 * characters allowed for p_what ('sku', 'location code', 'reason',
 * 'reference' or 'name'); the size of a value, read from its header; and
 * what an error message may show of a caller's value (40 bytes).
 */
CREATE FUNCTION invsync._check_length(p_value text, p_what text)
	RETURNS void
	LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'invsync_check_length_sql';

CREATE FUNCTION invsync._raw_size(p_value jsonb)
	RETURNS bigint
	LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'invsync_raw_size_sql';

CREATE FUNCTION invsync._clip(p_value text)
	RETURNS text
	LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'invsync_clip_sql';

REVOKE ALL ON FUNCTION invsync._check_length(text, text), invsync._raw_size(jsonb),
	invsync._clip(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION invsync.upsert_item(p_sku text, p_name text DEFAULT NULL)
	RETURNS invsync.items
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		invsync.items;
BEGIN
	IF p_sku IS NULL THEN
		RAISE EXCEPTION 'invalid sku NULL'
			USING ERRCODE = 'IV014',
				  DETAIL = 'A sku is 1 to 128 printable characters without spaces.';
	END IF;
	PERFORM invsync._check_length(p_sku, 'sku'), invsync._check_length(p_name, 'name');
	IF p_sku !~ '^[[:graph:]]{1,128}$' THEN
		RAISE EXCEPTION 'invalid sku "%"', p_sku
			USING ERRCODE = 'IV014',
				  DETAIL = 'A sku is 1 to 128 printable characters without spaces.';
	END IF;
	INSERT INTO invsync.items AS i (tenant_id, sku, name)
	VALUES (invsync.current_tenant(), p_sku, p_name)
	ON CONFLICT (tenant_id, sku) DO UPDATE
		SET name = coalesce(excluded.name, i.name)
	RETURNING * INTO v_row;
	RETURN v_row;
END
$$;

CREATE OR REPLACE FUNCTION invsync.upsert_location(p_location text, p_name text DEFAULT NULL,
										p_priority integer DEFAULT NULL)
	RETURNS invsync.locations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		invsync.locations;
BEGIN
	IF p_location IS NULL THEN
		RAISE EXCEPTION 'invalid location code NULL'
			USING ERRCODE = 'IV014',
				  DETAIL = 'A location code is 1 to 64 printable characters without spaces.';
	END IF;
	PERFORM invsync._check_length(p_location, 'location code'),
			invsync._check_length(p_name, 'name');
	IF p_location !~ '^[[:graph:]]{1,64}$' THEN
		RAISE EXCEPTION 'invalid location code "%"', p_location
			USING ERRCODE = 'IV014',
				  DETAIL = 'A location code is 1 to 64 printable characters without spaces.';
	END IF;
	INSERT INTO invsync.locations AS l (tenant_id, location, name, priority)
	VALUES (invsync.current_tenant(), p_location, p_name, coalesce(p_priority, 100))
	ON CONFLICT (tenant_id, location) DO UPDATE
		SET name = coalesce(excluded.name, l.name),
			priority = coalesce(p_priority, l.priority)
	RETURNING * INTO v_row;
	RETURN v_row;
END
$$;

CREATE OR REPLACE FUNCTION invsync.set_on_hand(p_sku text, p_location text, p_on_hand bigint,
									p_reason text, p_idempotency_key text,
									p_reference text DEFAULT NULL)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_current	bigint;
BEGIN
	PERFORM invsync._check_length(p_sku, 'sku'),
			invsync._check_length(p_location, 'location code'),
			invsync._check_length(p_reason, 'reason'),
			invsync._check_length(p_reference, 'reference');
	IF p_on_hand IS NULL OR p_on_hand < 0 OR p_on_hand > invsync.max_quantity() THEN
		RAISE EXCEPTION 'invalid on-hand level %', coalesce(p_on_hand::text, 'NULL')
			USING ERRCODE = 'IV003',
				  DETAIL = pg_catalog.format('A level is a whole number between 0 and %s.',
											 invsync.max_quantity());
	END IF;
	IF NOT invsync._take_idempotency_key(v_tenant, p_idempotency_key, 'set_on_hand',
			jsonb_build_array(p_sku, p_location, p_on_hand, p_reason, p_reference)) THEN
		RETURN QUERY SELECT * FROM invsync._replay(v_tenant, p_idempotency_key);
		RETURN;
	END IF;
	SELECT s.on_hand INTO v_current
	  FROM invsync.stock_levels s
	 WHERE s.tenant_id = v_tenant AND s.sku = p_sku AND s.location = p_location
	   FOR UPDATE;
	RETURN NEXT invsync._post(v_tenant, p_sku, p_location,
							  p_on_hand - coalesce(v_current, 0), 0, 'set_on_hand',
							  p_reason, p_reference, NULL, p_idempotency_key);
END
$$;

CREATE OR REPLACE FUNCTION invsync.transfer(p_sku text, p_from text, p_to text, p_qty bigint,
								 p_idempotency_key text, p_reference text DEFAULT NULL)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
BEGIN
	PERFORM invsync._check_length(p_sku, 'sku'),
			invsync._check_length(p_from, 'location code'),
			invsync._check_length(p_to, 'location code'),
			invsync._check_length(p_reference, 'reference');
	PERFORM invsync._check_quantity(p_qty, 'quantity');
	IF p_from IS NOT DISTINCT FROM p_to THEN
		RAISE EXCEPTION 'cannot transfer from "%" to itself', p_from
			USING ERRCODE = 'IV014';
	END IF;
	IF NOT invsync._take_idempotency_key(v_tenant, p_idempotency_key, 'transfer',
			jsonb_build_array(p_sku, p_from, p_to, p_qty, p_reference)) THEN
		RETURN QUERY SELECT * FROM invsync._replay(v_tenant, p_idempotency_key);
		RETURN;
	END IF;
	/* both rows in one fixed order, as every multi-row writer does */
	PERFORM FROM invsync.stock_levels s
	  WHERE s.tenant_id = v_tenant AND s.sku = p_sku AND s.location IN (p_from, p_to)
	  ORDER BY s.location
	  FOR UPDATE;
	RETURN NEXT invsync._post(v_tenant, p_sku, p_from, -p_qty, 0, 'transfer_out',
							  NULL, p_reference, NULL, p_idempotency_key);
	RETURN NEXT invsync._post(v_tenant, p_sku, p_to, p_qty, 0, 'transfer_in',
							  NULL, p_reference, NULL, p_idempotency_key);
END
$$;

CREATE OR REPLACE FUNCTION invsync.reserve(p_order_ref text, p_lines jsonb, p_idempotency_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_line		jsonb;
	v_line_no	integer := 0;
	v_line_sku	text;
	v_line_qty	numeric;
	v_location	text;
	v_demand	record;
	v_stock		record;
	v_need		bigint;
	v_take		bigint;
	v_line_nos	integer[] := '{}';
	v_line_skus text[] := '{}';
	v_skus		text[] := '{}';
	v_qtys		bigint[] := '{}';
	v_locations text[] := '{}';
	i			integer;
BEGIN
	IF p_order_ref IS NULL OR length(p_order_ref) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid order reference'
			USING ERRCODE = 'IV006',
				  DETAIL = 'An order reference is a non-empty string of at most 255 characters.';
	END IF;
	/* the size first: it is read from the value's header, not the value */
	IF p_lines IS NULL OR invsync._raw_size(p_lines) > 1048576
		OR jsonb_typeof(p_lines) <> 'array'
		OR jsonb_array_length(p_lines) NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'invalid reservation lines'
			USING ERRCODE = 'IV006',
				  DETAIL = 'Lines are a JSON array of 1 to 1000 objects {"sku": text, "qty": integer, "location": text (optional)}, of at most 1 MB.';
	END IF;

	FOR v_line IN SELECT * FROM jsonb_array_elements(p_lines)
	LOOP
		v_line_no := v_line_no + 1;
		IF jsonb_typeof(v_line) <> 'object'
			OR jsonb_typeof(v_line -> 'sku') IS DISTINCT FROM 'string'
			OR jsonb_typeof(v_line -> 'qty') IS DISTINCT FROM 'number'
			OR coalesce(jsonb_typeof(v_line -> 'location'), 'null') NOT IN ('string', 'null')
			OR EXISTS (SELECT FROM jsonb_object_keys(v_line) k
						WHERE k NOT IN ('sku', 'qty', 'location')) THEN
			RAISE EXCEPTION 'invalid reservation line %', v_line_no
				USING ERRCODE = 'IV006',
					  DETAIL = pg_catalog.format('Line %s is %s; expected {"sku": text, "qty": integer, "location": text (optional)}.',
												 v_line_no, invsync._clip(v_line::text));
		END IF;
		PERFORM invsync._check_length(v_line ->> 'sku', 'sku'),
				invsync._check_length(v_line ->> 'location', 'location code');
		v_line_qty := (v_line ->> 'qty')::numeric;
		IF v_line_qty <> trunc(v_line_qty) OR v_line_qty < 1
			OR v_line_qty > invsync.max_quantity() THEN
			RAISE EXCEPTION 'invalid quantity % on reservation line %',
				invsync._clip(v_line ->> 'qty'), v_line_no
				USING ERRCODE = 'IV003',
					  DETAIL = pg_catalog.format('A quantity is a whole number between 1 and %s.',
												 invsync.max_quantity());
		END IF;
	END LOOP;

	IF NOT invsync._take_idempotency_key(v_tenant, p_idempotency_key, 'reserve',
			jsonb_build_array(p_order_ref, p_lines)) THEN
		RETURN QUERY SELECT * FROM invsync._replay(v_tenant, p_idempotency_key);
		RETURN;
	END IF;

	INSERT INTO invsync.reservation_orders
		(tenant_id, order_ref, idempotency_key, correlation_id)
	VALUES (v_tenant, p_order_ref, p_idempotency_key, invsync.correlation_id())
	ON CONFLICT (tenant_id, order_ref) DO NOTHING;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order "%" already has a reservation', p_order_ref
			USING ERRCODE = 'IV012',
				  DETAIL = 'An order reference reserves once, even after it was released or fulfilled.',
				  HINT = 'To get the original result, resend the original request with its original idempotency key.';
	END IF;

	/* expand every line into the stocked skus it consumes */
	v_line_no := 0;
	FOR v_line IN SELECT * FROM jsonb_array_elements(p_lines)
	LOOP
		v_line_no := v_line_no + 1;
		v_line_sku := v_line ->> 'sku';
		v_location := v_line ->> 'location';
		IF NOT EXISTS (SELECT FROM invsync.items it
						WHERE it.tenant_id = v_tenant AND it.sku = v_line_sku) THEN
			RAISE EXCEPTION 'unknown sku "%" on reservation line %', v_line_sku, v_line_no
				USING ERRCODE = 'IV001';
		END IF;
		IF v_location IS NOT NULL AND NOT EXISTS (
				SELECT FROM invsync.locations l
				 WHERE l.tenant_id = v_tenant AND l.location = v_location) THEN
			RAISE EXCEPTION 'unknown location "%" on reservation line %', v_location, v_line_no
				USING ERRCODE = 'IV002';
		END IF;
		FOR v_demand IN
			SELECT e.sku, e.qty * (v_line ->> 'qty')::numeric AS qty
			  FROM invsync._expand_bundle(v_tenant, v_line_sku) e
			 ORDER BY e.sku
		LOOP
			IF v_demand.qty > invsync.max_quantity() THEN
				RAISE EXCEPTION 'reservation line % needs % of "%", more than one movement may carry',
					v_line_no, v_demand.qty, v_demand.sku
					USING ERRCODE = 'IV003';
			END IF;
			v_line_nos := v_line_nos || v_line_no;
			v_line_skus := v_line_skus || v_line_sku;
			v_skus := v_skus || v_demand.sku;
			v_qtys := v_qtys || v_demand.qty::bigint;
			v_locations := v_locations || v_location;
		END LOOP;
	END LOOP;

	/*
	 * Lock every stock row involved in one fixed order, (sku, location), as
	 * every multi-row writer does, so that two orders touching the same
	 * skus in opposite orders cannot deadlock.
	 */
	PERFORM FROM invsync.stock_levels s
	  WHERE s.tenant_id = v_tenant AND s.sku = ANY (v_skus)
	  ORDER BY s.sku, s.location
	  FOR UPDATE;

	FOR i IN 1 .. array_length(v_skus, 1)
	LOOP
		v_need := v_qtys[i];
		FOR v_stock IN
			SELECT s.location, s.on_hand - s.reserved AS available
			  FROM invsync.stock_levels s
			  JOIN invsync.locations l
				ON l.tenant_id = s.tenant_id AND l.location = s.location
			 WHERE s.tenant_id = v_tenant AND s.sku = v_skus[i]
			   AND (v_locations[i] IS NULL OR s.location = v_locations[i])
			   AND s.on_hand > s.reserved
			 ORDER BY l.priority, s.location
		LOOP
			EXIT WHEN v_need = 0;
			v_take := least(v_need, v_stock.available);
			RETURN NEXT invsync._post(v_tenant, v_skus[i], v_stock.location, 0, v_take,
									  'reserve', NULL, NULL, p_order_ref, p_idempotency_key);
			INSERT INTO invsync.reservations AS r
				(tenant_id, order_ref, line_no, sku, location, qty, line_sku)
			VALUES (v_tenant, p_order_ref, v_line_nos[i], v_skus[i], v_stock.location,
					v_take, v_line_skus[i])
			ON CONFLICT (tenant_id, order_ref, line_no, sku, location) DO UPDATE
				SET qty = r.qty + excluded.qty;
			v_need := v_need - v_take;
		END LOOP;
		IF v_need > 0 THEN
			RAISE EXCEPTION 'insufficient stock of "%" for order "%"', v_skus[i], p_order_ref
				USING ERRCODE = 'IV004',
					  DETAIL = pg_catalog.format('Line %s needs %s more than is available%s.',
												 v_line_nos[i], v_need,
												 coalesce(' at ' || v_locations[i], ''));
		END IF;
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION invsync._close_order(p_order_ref text, p_idempotency_key text,
									 p_operation text)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_status	text;
	v_line		record;
	v_final		text := CASE p_operation WHEN 'release' THEN 'released' ELSE 'fulfilled' END;
BEGIN
	IF p_order_ref IS NULL OR length(p_order_ref) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid order reference'
			USING ERRCODE = 'IV006',
				  DETAIL = 'An order reference is a non-empty string of at most 255 characters.';
	END IF;
	IF NOT invsync._take_idempotency_key(v_tenant, p_idempotency_key, p_operation,
			jsonb_build_array(p_order_ref)) THEN
		RETURN QUERY SELECT * FROM invsync._replay(v_tenant, p_idempotency_key);
		RETURN;
	END IF;

	SELECT o.status INTO v_status
	  FROM invsync.reservation_orders o
	 WHERE o.tenant_id = v_tenant AND o.order_ref = p_order_ref
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown order "%"', p_order_ref
			USING ERRCODE = 'IV007',
				  DETAIL = 'No reservation was made for this order reference.';
	ELSIF v_status = 'fulfilled' THEN
		RAISE EXCEPTION 'order "%" is already fulfilled', p_order_ref
			USING ERRCODE = 'IV008';
	ELSIF v_status = 'released' THEN
		RAISE EXCEPTION 'order "%" is already released', p_order_ref
			USING ERRCODE = 'IV011';
	END IF;

	/* the same lock order as reserve() */
	PERFORM FROM invsync.stock_levels s
	  WHERE s.tenant_id = v_tenant
		AND (s.sku, s.location) IN (SELECT r.sku, r.location
									  FROM invsync.reservations r
									 WHERE r.tenant_id = v_tenant
									   AND r.order_ref = p_order_ref)
	  ORDER BY s.sku, s.location
	  FOR UPDATE;

	FOR v_line IN
		SELECT r.sku, r.location, sum(r.qty)::bigint AS qty
		  FROM invsync.reservations r
		 WHERE r.tenant_id = v_tenant AND r.order_ref = p_order_ref
		 GROUP BY r.sku, r.location
		 ORDER BY r.sku, r.location
	LOOP
		RETURN NEXT invsync._post(v_tenant, v_line.sku, v_line.location,
								  CASE p_operation WHEN 'fulfill' THEN -v_line.qty ELSE 0 END,
								  -v_line.qty, p_operation, NULL, NULL, p_order_ref,
								  p_idempotency_key);
	END LOOP;

	UPDATE invsync.reservation_orders o
	   SET status = v_final, closed_at = now()
	 WHERE o.tenant_id = v_tenant AND o.order_ref = p_order_ref;
END
$$;

CREATE OR REPLACE FUNCTION invsync.available(p_sku text, p_location text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_result	numeric;
BEGIN
	PERFORM invsync._check_length(p_sku, 'sku'),
			invsync._check_length(p_location, 'location code');
	IF NOT EXISTS (SELECT FROM invsync.items i
					WHERE i.tenant_id = v_tenant AND i.sku = p_sku) THEN
		RAISE EXCEPTION 'unknown sku "%"', p_sku USING ERRCODE = 'IV001';
	END IF;
	IF p_location IS NOT NULL AND NOT EXISTS (
			SELECT FROM invsync.locations l
			 WHERE l.tenant_id = v_tenant AND l.location = p_location) THEN
		RAISE EXCEPTION 'unknown location "%"', p_location USING ERRCODE = 'IV002';
	END IF;

	/* a plain sku expands to itself once, so one formula serves both */
	SELECT min(floor(coalesce(a.available, 0) / e.qty)) INTO v_result
	  FROM invsync._expand_bundle(v_tenant, p_sku) e
	  LEFT JOIN LATERAL (
			SELECT sum(s.on_hand - s.reserved) AS available
			  FROM invsync.stock_levels s
			 WHERE s.tenant_id = v_tenant AND s.sku = e.sku
			   AND (p_location IS NULL OR s.location = p_location)) a ON true;
	RETURN v_result::bigint;
END
$$;
