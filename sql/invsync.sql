/*
 * invsync.sql
 *	  Install script of the invsync extension: the inventory ledger, its
 *	  functions and views, and the roles that may use them.
 *
 * Conventions: every user-data table leads its keys with tenant_id (DESIGN
 * §6); the current tenant is invsync.current_tenant(), read from the
 * invsync.tenant setting, or the tenant a DBA pinned the role to.  Tables are written only by the SECURITY DEFINER
 * functions below, which pin search_path and qualify every name.  Errors a
 * caller can cause raise SQLSTATEs of class IV, listed in README.md.
 */

\echo Use "CREATE EXTENSION invsync" to load this file. \quit

/* ---------------------------------------------------------------------
 * Roles.  Roles are cluster-wide, so they outlive the extension and are
 * created only when missing.
 * --------------------------------------------------------------------- */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['invsync_reader', 'invsync_writer',
							 'invsync_admin', 'invsync_webhook',
							 'invsync_worker', 'invsync_secrets']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

GRANT invsync_reader TO invsync_writer;
GRANT invsync_writer TO invsync_admin;

/* ---------------------------------------------------------------------
 * Session helpers (C)
 * --------------------------------------------------------------------- */
CREATE FUNCTION invsync.current_tenant() RETURNS bigint
	AS 'MODULE_PATHNAME', 'invsync_current_tenant_sql'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION invsync.current_tenant() IS
	'the tenant invsync functions work in: the tenant the role is pinned to, else the invsync.tenant setting, 0 when unset';

/* the tenant this session is pinned to, NULL when it is not */
CREATE FUNCTION invsync._pinned_tenant() RETURNS bigint
	AS 'MODULE_PATHNAME', 'invsync_pinned_tenant_sql'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION invsync._pinned_tenant() IS
	'the tenant the calling role is pinned to (see invsync.tenant_roles), NULL when it is not pinned';

CREATE FUNCTION invsync.correlation_id() RETURNS text
	AS 'MODULE_PATHNAME', 'invsync_correlation_id_sql'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION invsync.correlation_id() IS
	'the invsync.correlation_id setting, or an id generated once per transaction when it is unset';

CREATE FUNCTION invsync._caller() RETURNS name
	AS 'MODULE_PATHNAME', 'invsync_caller_sql'
	LANGUAGE C STABLE;
COMMENT ON FUNCTION invsync._caller() IS
	'the role calling from outside SECURITY DEFINER functions (the actor of a ledger row)';

/* largest quantity one movement may carry, and largest level one stock row may hold */
CREATE FUNCTION invsync.max_quantity() RETURNS bigint
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 1000000000::bigint;
COMMENT ON FUNCTION invsync.max_quantity() IS
	'the largest quantity one movement may carry and the largest level a stock row may hold';

/* how deep bundles nest, and how many stocked skus one bundle consumes */
CREATE FUNCTION invsync.max_bundle_depth() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 32;
COMMENT ON FUNCTION invsync.max_bundle_depth() IS
	'the deepest a bundle may nest: a bundle of plain items is 1 level deep, a bundle containing it 2';

CREATE FUNCTION invsync.max_bundle_size() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 1000;
COMMENT ON FUNCTION invsync.max_bundle_size() IS
	'the most components one set_bundle call may list, and the most different stocked skus one bundle may consume through all its nesting';

/* ---------------------------------------------------------------------
 * Roles pinned to a tenant (src/tenant.c has the rules)
 *
 * Keyed by role, not tenant: a role is a cluster-wide object, and this is
 * the DBA's security setting, not a tenant's data.  With Citus it would be
 * a reference table.  A role's OID follows renames; a dropped role's pin
 * stays behind (as a bare OID) until unpin_role() removes it.
 * --------------------------------------------------------------------- */
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

/* ---------------------------------------------------------------------
 * Catalog
 * --------------------------------------------------------------------- */
CREATE TABLE invsync.locations (
	tenant_id	bigint NOT NULL DEFAULT invsync.current_tenant(),
	location	text NOT NULL,
	name		text,
	priority	integer NOT NULL DEFAULT 100,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, location),
	CONSTRAINT location_code_format
		CHECK (location ~ '^[[:graph:]]{1,64}$')
);
COMMENT ON TABLE invsync.locations IS
	'stock-holding places (warehouses, stores); a reservation naming no location draws from them by priority, lowest first';

CREATE TABLE invsync.items (
	tenant_id	bigint NOT NULL DEFAULT invsync.current_tenant(),
	sku			text NOT NULL,
	name		text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, sku),
	CONSTRAINT sku_format CHECK (sku ~ '^[[:graph:]]{1,128}$')
);
COMMENT ON TABLE invsync.items IS
	'stock-keeping units; an item with bundle_components is a bundle and holds no stock of its own';

CREATE TABLE invsync.bundle_components (
	tenant_id	bigint NOT NULL DEFAULT invsync.current_tenant(),
	bundle_sku	text NOT NULL,
	component_sku text NOT NULL,
	qty			bigint NOT NULL,
	PRIMARY KEY (tenant_id, bundle_sku, component_sku),
	FOREIGN KEY (tenant_id, bundle_sku)
		REFERENCES invsync.items (tenant_id, sku) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, component_sku)
		REFERENCES invsync.items (tenant_id, sku),
	CONSTRAINT component_is_not_bundle CHECK (bundle_sku <> component_sku),
	CONSTRAINT component_qty_range CHECK (qty BETWEEN 1 AND 1000)
);
CREATE INDEX bundle_components_component_idx
	ON invsync.bundle_components (tenant_id, component_sku);
COMMENT ON TABLE invsync.bundle_components IS
	'what one unit of a bundle consumes, as defined; bundles may nest, cycles are refused; written only by set_bundle()';

/*
 * Each bundle flattened: the stocked skus one unit of it consumes through
 * all its nesting, with quantities multiplied.  set_bundle() rewrites the
 * lists of the bundle it defines and of every bundle containing it, so
 * availability, reservations and listing levels read one short list and
 * never walk the nesting.
 */
CREATE TABLE invsync.bundle_leaves (
	tenant_id	bigint NOT NULL,
	bundle_sku	text NOT NULL,
	component_sku text NOT NULL,
	qty			bigint NOT NULL,
	depth		integer NOT NULL,
	PRIMARY KEY (tenant_id, bundle_sku, component_sku),
	FOREIGN KEY (tenant_id, bundle_sku)
		REFERENCES invsync.items (tenant_id, sku) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, component_sku)
		REFERENCES invsync.items (tenant_id, sku),
	CONSTRAINT bundle_leaf_qty CHECK (qty >= 1),
	CONSTRAINT bundle_leaf_depth CHECK (depth >= 1)
);
/*
 * The bundles containing a sku.  Led by the sku, not the tenant: led by the
 * tenant, it served a lookup of one bundle's list too (the tenant as its
 * only bound, every other column a filter), and a plan made while the
 * table was small or empty chose it for that and read all of the tenant's
 * lists for every listing a claim priced.  Now each lookup has exactly one
 * index that bounds it by both of its columns.
 */
CREATE INDEX bundle_leaves_component_idx
	ON invsync.bundle_leaves (component_sku, tenant_id);
COMMENT ON TABLE invsync.bundle_leaves IS
	'each bundle flattened: the stocked skus one unit consumes through all its nesting, quantities multiplied; kept by set_bundle()';
COMMENT ON COLUMN invsync.bundle_leaves.depth IS
	'the longest chain of nesting from the bundle down to this sku: 1 when only the bundle itself lists it';

/*
 * One row per tenant that has defined bundles.  set_bundle() updates it
 * first, so definitions of one tenant's bundles take turns and each sees
 * the one before: two sessions cannot each add half of a cycle, or flatten
 * a bundle from a list the other is rewriting.  A REPEATABLE READ
 * transaction that would miss a concurrent definition fails with 40001.
 */
CREATE TABLE invsync.bundle_versions (
	tenant_id	bigint NOT NULL,
	version		bigint NOT NULL DEFAULT 1,
	changed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id)
);
COMMENT ON TABLE invsync.bundle_versions IS
	'per tenant: how many times its bundles were defined, and when last; set_bundle() calls of one tenant take turns on this row';

/* ---------------------------------------------------------------------
 * Stock and the ledger
 * --------------------------------------------------------------------- */
CREATE TABLE invsync.stock_levels (
	tenant_id	bigint NOT NULL,
	sku			text NOT NULL,
	location	text NOT NULL,
	on_hand		bigint NOT NULL DEFAULT 0,
	reserved	bigint NOT NULL DEFAULT 0,
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, sku, location),
	FOREIGN KEY (tenant_id, sku) REFERENCES invsync.items (tenant_id, sku),
	FOREIGN KEY (tenant_id, location)
		REFERENCES invsync.locations (tenant_id, location),
	CONSTRAINT stock_never_oversold
		CHECK (reserved >= 0 AND reserved <= on_hand),
	CONSTRAINT stock_within_range
		CHECK (on_hand <= 1000000000)
) WITH (fillfactor = 80);
COMMENT ON TABLE invsync.stock_levels IS
	'cache of the ledger: on hand and reserved per sku and location, kept in the transaction that writes the ledger';

CREATE SEQUENCE invsync.ledger_id_seq AS bigint;

CREATE TABLE invsync.ledger (
	tenant_id	bigint NOT NULL,
	ledger_id	bigint NOT NULL DEFAULT nextval('invsync.ledger_id_seq'),
	sku			text NOT NULL,
	location	text NOT NULL,
	operation	text NOT NULL,
	on_hand_change bigint NOT NULL,
	reserved_change bigint NOT NULL,
	on_hand_after bigint NOT NULL,
	reserved_after bigint NOT NULL,
	reason		text,
	reference	text,
	order_ref	text,
	idempotency_key text NOT NULL,
	correlation_id text NOT NULL,
	actor		name NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, ledger_id),
	CONSTRAINT ledger_operation CHECK (operation IN
		('adjust', 'set_on_hand', 'transfer_out', 'transfer_in',
		 'reserve', 'release', 'fulfill'))
);
ALTER SEQUENCE invsync.ledger_id_seq OWNED BY invsync.ledger.ledger_id;
CREATE INDEX ledger_idempotency_key_idx
	ON invsync.ledger (tenant_id, idempotency_key);
COMMENT ON TABLE invsync.ledger IS
	'append-only record of every change of on-hand or reserved stock; stock_levels always equals its sum';

/*
 * The ledger is append-only for everyone: no role is granted UPDATE or
 * DELETE, and these triggers stop the owner and superusers too.
 */
CREATE FUNCTION invsync._ledger_is_append_only() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	RAISE EXCEPTION 'invsync.ledger is append-only'
		USING ERRCODE = 'IV015',
			  DETAIL = pg_catalog.format('%s is not allowed on the ledger.', TG_OP),
			  HINT = 'Record a correcting movement with invsync.adjust() instead.';
END
$$;

CREATE TRIGGER ledger_no_update_or_delete
	BEFORE UPDATE OR DELETE ON invsync.ledger
	FOR EACH ROW EXECUTE FUNCTION invsync._ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate
	BEFORE TRUNCATE ON invsync.ledger
	FOR EACH STATEMENT EXECUTE FUNCTION invsync._ledger_is_append_only();

CREATE TABLE invsync.reservation_orders (
	tenant_id	bigint NOT NULL,
	order_ref	text NOT NULL,
	status		text NOT NULL DEFAULT 'reserved',
	idempotency_key text NOT NULL,
	correlation_id text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	closed_at	timestamptz,
	PRIMARY KEY (tenant_id, order_ref),
	CONSTRAINT reservation_order_status
		CHECK (status IN ('reserved', 'released', 'fulfilled'))
);
COMMENT ON TABLE invsync.reservation_orders IS
	'one row per order reference that reserved stock, with its status';

CREATE TABLE invsync.reservations (
	tenant_id	bigint NOT NULL,
	order_ref	text NOT NULL,
	line_no		integer NOT NULL,
	sku			text NOT NULL,
	location	text NOT NULL,
	qty			bigint NOT NULL CHECK (qty > 0),
	line_sku	text NOT NULL,
	PRIMARY KEY (tenant_id, order_ref, line_no, sku, location),
	FOREIGN KEY (tenant_id, order_ref)
		REFERENCES invsync.reservation_orders (tenant_id, order_ref)
);
COMMENT ON TABLE invsync.reservations IS
	'what each order line holds, per stocked sku and location (a bundle line holds its components)';
COMMENT ON COLUMN invsync.reservations.line_sku IS
	'the sku the order line named; differs from sku when the line is a bundle';

CREATE TABLE invsync.idempotency_keys (
	tenant_id	bigint NOT NULL,
	idempotency_key text NOT NULL,
	operation	text NOT NULL,
	fingerprint bytea NOT NULL,
	correlation_id text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at_idx
	ON invsync.idempotency_keys USING brin (created_at);
COMMENT ON TABLE invsync.idempotency_keys IS
	'keys of the stock mutations that committed, with a fingerprint of their parameters; purged by purge_idempotency_keys()';

/* ---------------------------------------------------------------------
 * Internal helpers
 * --------------------------------------------------------------------- */

/*
 * The ledger's hot path is C (src/ledger.c): _check_quantity,
 * _take_idempotency_key, _post and adjust.
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

/* quantities are positive and at most max_quantity(); IV003 otherwise */
CREATE FUNCTION invsync._check_quantity(p_value bigint, p_what text,
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
CREATE FUNCTION invsync._take_idempotency_key(p_tenant bigint, p_key text,
											  p_operation text, p_params jsonb)
	RETURNS boolean
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'invsync_take_idempotency_key_sql';

/*
 * The ledger rows a committed call wrote under an idempotency key.
 * PL/pgSQL, not SQL, here and in every function below that reads tables
 * with its arguments and is not one the claim inlines: Citus routes a
 * statement to its tenant's shard only when it sees the tenant's value,
 * which a SQL function's statements never do (they are planned with their
 * parameters unknown).
 */
CREATE FUNCTION invsync._replay(p_tenant bigint, p_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	RETURN QUERY
		SELECT l.*
		  FROM invsync.ledger l
		  JOIN invsync.idempotency_keys k
			ON k.tenant_id = l.tenant_id AND k.idempotency_key = l.idempotency_key
		 WHERE l.tenant_id = p_tenant
		   AND l.idempotency_key = p_key
		   AND l.recorded_at >= k.created_at
		 ORDER BY l.ledger_id;
END
$$;

/* IV001 / IV002 / IV013 unless sku and location exist and the sku holds stock */
CREATE FUNCTION invsync._check_stockable(p_tenant bigint, p_sku text, p_location text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
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
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_on_hand	bigint;
	v_reserved	bigint;
	v_exists	boolean;
	v_published boolean;
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

		/*
		 * A first movement creates the row empty, and the movement fills it.
		 * Whether a listing publishes it is found here, not by a trigger:
		 * under Citus the row's triggers run on the node holding its shard,
		 * which cannot tell it from one loaded from a dump (see
		 * _listing_changed).
		 */
		v_published := invsync._is_published(p_tenant, p_sku);
		INSERT INTO invsync.stock_levels (tenant_id, sku, location, published)
		VALUES (p_tenant, p_sku, p_location, v_published)
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
CREATE FUNCTION invsync._post(p_tenant bigint, p_sku text, p_location text,
							  p_on_hand_change bigint, p_reserved_change bigint,
							  p_operation text, p_reason text, p_reference text,
							  p_order_ref text, p_key text)
	RETURNS invsync.ledger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'invsync_post_sql';

/*
 * The stocked skus one unit of p_sku consumes, with quantities multiplied
 * through nested bundles; a plain sku consumes itself once.  Reads the
 * flat list set_bundle() keeps, never the nesting.
 */
CREATE FUNCTION invsync._expand_bundle(p_tenant bigint, p_sku text)
	RETURNS TABLE (sku text, qty numeric)
	LANGUAGE sql STABLE
BEGIN ATOMIC
	SELECT f.component_sku, f.qty::numeric
	  FROM invsync.bundle_leaves f
	 WHERE f.tenant_id = p_tenant AND f.bundle_sku = p_sku
	UNION ALL
	SELECT p_sku, 1::numeric
	 WHERE NOT EXISTS (SELECT FROM invsync.bundle_leaves f
						WHERE f.tenant_id = p_tenant AND f.bundle_sku = p_sku);
END;

/*
 * Rewrite the flat lists (bundle_leaves) of the given bundles from their
 * components.  Bundles not given must have correct lists already.  Each
 * round flattens every bundle none of whose components still waits, from
 * its components' lists: the rounds are as many as the nesting is deep and
 * each costs what the lists it writes hold, however many paths lead from a
 * bundle to a sku.  With p_enforce_limits, a list nested deeper than
 * max_bundle_depth() (IV016), longer than max_bundle_size() (IV017) or
 * needing more than max_quantity() of one sku per unit (IV003) is refused;
 * the caller's statement then fails and writes nothing.  Lists that only
 * contain each other raise IV009 (set_bundle refuses cycles before).
 */
CREATE FUNCTION invsync._flatten_bundles(p_tenant bigint, p_bundles text[],
										 p_enforce_limits boolean DEFAULT true)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_todo		text[] := ARRAY(SELECT DISTINCT b FROM unnest(p_bundles) AS b);
	v_ready		text[];
	v_bundles	text[];
	v_skus		text[];
	v_qtys		numeric[];
	v_depths	integer[];
	v_bad		record;
BEGIN
	WHILE cardinality(v_todo) > 0
	LOOP
		v_ready := ARRAY(
			SELECT t.sku FROM unnest(v_todo) AS t (sku)
			 WHERE NOT EXISTS (
					SELECT FROM invsync.bundle_components c
					 WHERE c.tenant_id = p_tenant AND c.bundle_sku = t.sku
					   AND c.component_sku IN (SELECT unnest(v_todo))));
		IF cardinality(v_ready) = 0 THEN
			RAISE EXCEPTION 'bundles % contain themselves', v_todo
				USING ERRCODE = 'IV009';
		END IF;

		/* a component that is no bundle is a leaf of its own */
		SELECT array_agg(x.bundle_sku), array_agg(x.sku), array_agg(x.qty),
			   array_agg(x.depth)
		  INTO v_bundles, v_skus, v_qtys, v_depths
		  FROM (SELECT c.bundle_sku, coalesce(f.component_sku, c.component_sku) AS sku,
					   sum(c.qty::numeric * coalesce(f.qty, 1)) AS qty,
					   max(coalesce(f.depth, 0) + 1) AS depth
				  FROM invsync.bundle_components c
				  LEFT JOIN invsync.bundle_leaves f
					ON f.tenant_id = c.tenant_id AND f.bundle_sku = c.component_sku
				 WHERE c.tenant_id = p_tenant AND c.bundle_sku = ANY (v_ready)
				 GROUP BY 1, 2) x;

		IF p_enforce_limits THEN
			SELECT l.bundle_sku, max(l.depth) AS depth INTO v_bad
			  FROM unnest(v_bundles, v_depths) AS l (bundle_sku, depth)
			 GROUP BY 1 HAVING max(l.depth) > invsync.max_bundle_depth()
			 ORDER BY 1 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'bundle "%" would nest % levels deep', v_bad.bundle_sku, v_bad.depth
					USING ERRCODE = 'IV016',
						  DETAIL = pg_catalog.format('Bundles nest at most %s levels; a bundle of plain items is 1 level deep.',
													 invsync.max_bundle_depth());
			END IF;
			SELECT l.bundle_sku, count(*) AS skus INTO v_bad
			  FROM unnest(v_bundles) AS l (bundle_sku)
			 GROUP BY 1 HAVING count(*) > invsync.max_bundle_size()
			 ORDER BY 1 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'bundle "%" would consume % different stocked skus', v_bad.bundle_sku, v_bad.skus
					USING ERRCODE = 'IV017',
						  DETAIL = pg_catalog.format('A bundle consumes at most %s different stocked skus, through all its nesting.',
													 invsync.max_bundle_size());
			END IF;
			SELECT l.bundle_sku, l.sku, l.qty INTO v_bad
			  FROM unnest(v_bundles, v_skus, v_qtys) AS l (bundle_sku, sku, qty)
			 WHERE l.qty > invsync.max_quantity()
			 ORDER BY 1, 2 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'one unit of bundle "%" would consume % of "%"', v_bad.bundle_sku, v_bad.qty, v_bad.sku
					USING ERRCODE = 'IV003',
						  DETAIL = pg_catalog.format('A unit of a bundle consumes at most %s of one sku, through all its nesting.',
													 invsync.max_quantity());
			END IF;
		END IF;

		DELETE FROM invsync.bundle_leaves f
		 WHERE f.tenant_id = p_tenant AND f.bundle_sku = ANY (v_ready);
		INSERT INTO invsync.bundle_leaves (tenant_id, bundle_sku, component_sku, qty, depth)
		SELECT p_tenant, l.bundle_sku, l.sku, l.qty::bigint, l.depth
		  FROM unnest(v_bundles, v_skus, v_qtys, v_depths) AS l (bundle_sku, sku, qty, depth);

		v_todo := ARRAY(SELECT t.sku FROM unnest(v_todo) AS t (sku)
						 WHERE t.sku NOT IN (SELECT unnest(v_ready)));
	END LOOP;
END
$$;

/* ---------------------------------------------------------------------
 * Catalog functions
 * --------------------------------------------------------------------- */
CREATE FUNCTION invsync.upsert_item(p_sku text, p_name text DEFAULT NULL)
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
COMMENT ON FUNCTION invsync.upsert_item(text, text) IS
	'create an item, or rename it when it exists';

CREATE FUNCTION invsync.upsert_location(p_location text, p_name text DEFAULT NULL,
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
COMMENT ON FUNCTION invsync.upsert_location(text, text, integer) IS
	'create a location, or change its name or allocation priority';

/*
 * Make p_sku a bundle of the given components, replacing earlier ones, and
 * flatten it and every bundle containing it (see _flatten_bundles).  The
 * tenant's bundle_versions row is updated first: one tenant's definitions
 * take turns, so the cycle check and the flat lists see every definition
 * committed before.  Refused, writing nothing: malformed, duplicate or too
 * many components (IV014), an unknown sku (IV001), a sku with stock (IV013),
 * a cycle (IV009), nesting too deep (IV016), too many stocked skus (IV017)
 * or more than max_quantity() of one per unit (IV003), for this bundle or
 * for any bundle containing it.
 */
CREATE FUNCTION invsync.set_bundle(p_sku text, p_components jsonb)
	RETURNS SETOF invsync.bundle_components
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_component jsonb;
	v_sku		text;
	v_skus		text[] := '{}';
	v_qtys		bigint[] := '{}';
	v_affected	text[];
BEGIN
	IF NOT EXISTS (SELECT FROM invsync.items i
					WHERE i.tenant_id = v_tenant AND i.sku = p_sku) THEN
		RAISE EXCEPTION 'unknown sku "%"', p_sku USING ERRCODE = 'IV001';
	END IF;
	IF p_components IS NULL OR jsonb_typeof(p_components) <> 'array'
		OR jsonb_array_length(p_components) NOT BETWEEN 1 AND invsync.max_bundle_size() THEN
		RAISE EXCEPTION 'invalid bundle components'
			USING ERRCODE = 'IV014',
				  DETAIL = pg_catalog.format('Components are a JSON array of 1 to %s objects {"sku": text, "qty": integer}.',
											 invsync.max_bundle_size());
	END IF;

	FOR v_component IN SELECT * FROM jsonb_array_elements(p_components)
	LOOP
		IF jsonb_typeof(v_component) <> 'object'
			OR jsonb_typeof(v_component -> 'sku') IS DISTINCT FROM 'string'
			OR jsonb_typeof(v_component -> 'qty') IS DISTINCT FROM 'number'
			OR (v_component ->> 'qty')::numeric NOT BETWEEN 1 AND 1000
			OR (v_component ->> 'qty')::numeric <> trunc((v_component ->> 'qty')::numeric) THEN
			RAISE EXCEPTION 'invalid bundle component %', v_component
				USING ERRCODE = 'IV014',
					  DETAIL = 'Each component is {"sku": text, "qty": integer from 1 to 1000}.';
		END IF;
		v_sku := v_component ->> 'sku';
		IF v_sku = ANY (v_skus) THEN
			RAISE EXCEPTION 'bundle component "%" is listed twice', v_sku
				USING ERRCODE = 'IV014',
					  HINT = 'List each component once, with its whole quantity.';
		END IF;
		IF NOT EXISTS (SELECT FROM invsync.items i
						WHERE i.tenant_id = v_tenant AND i.sku = v_sku) THEN
			RAISE EXCEPTION 'unknown sku "%"', v_sku USING ERRCODE = 'IV001';
		END IF;
		v_skus := v_skus || v_sku;
		v_qtys := v_qtys || (v_component ->> 'qty')::bigint;
	END LOOP;

	/* take the tenant's turn; later statements see every earlier definition */
	INSERT INTO invsync.bundle_versions AS v (tenant_id)
	VALUES (v_tenant)
	ON CONFLICT (tenant_id) DO UPDATE
		SET version = v.version + 1, changed_at = excluded.changed_at;

	IF EXISTS (SELECT FROM invsync.stock_levels s
				WHERE s.tenant_id = v_tenant AND s.sku = p_sku) THEN
		RAISE EXCEPTION 'sku "%" has stock history and cannot become a bundle', p_sku
			USING ERRCODE = 'IV013',
				  HINT = 'Create the bundle under a new sku.';
	END IF;

	/* this bundle and every bundle containing it, at any depth */
	v_affected := ARRAY(
		WITH RECURSIVE up (sku) AS (
			SELECT p_sku
			UNION
			SELECT c.bundle_sku
			  FROM up
			  JOIN invsync.bundle_components c
				ON c.tenant_id = v_tenant AND c.component_sku = up.sku)
		SELECT up.sku FROM up);
	SELECT s.sku INTO v_sku
	  FROM unnest(v_skus) WITH ORDINALITY AS s (sku, n)
	 WHERE s.sku = ANY (v_affected)
	 ORDER BY s.n LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'bundle "%" would contain itself through "%"', p_sku, v_sku
			USING ERRCODE = 'IV009';
	END IF;

	DELETE FROM invsync.bundle_components b
	 WHERE b.tenant_id = v_tenant AND b.bundle_sku = p_sku;
	INSERT INTO invsync.bundle_components (tenant_id, bundle_sku, component_sku, qty)
	SELECT v_tenant, p_sku, c.sku, c.qty
	  FROM unnest(v_skus, v_qtys) AS c (sku, qty);

	PERFORM invsync._flatten_bundles(v_tenant, v_affected);
	PERFORM invsync._bundles_changed(v_tenant, v_affected);

	RETURN QUERY
		SELECT * FROM invsync.bundle_components b
		 WHERE b.tenant_id = v_tenant AND b.bundle_sku = p_sku
		 ORDER BY b.component_sku;
END
$$;
COMMENT ON FUNCTION invsync.set_bundle(text, jsonb) IS
	'make an item a bundle of the given components (replacing earlier ones) and flatten it and the bundles containing it; cycles raise IV009, nesting deeper than max_bundle_depth() IV016';

/* ---------------------------------------------------------------------
 * Stock movements
 * --------------------------------------------------------------------- */
CREATE FUNCTION invsync.adjust(p_sku text, p_location text, p_delta bigint,
							   p_reason text, p_idempotency_key text,
							   p_reference text DEFAULT NULL)
	RETURNS SETOF invsync.ledger
	LANGUAGE c SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	ROWS 1
	AS 'MODULE_PATHNAME', 'invsync_adjust';
COMMENT ON FUNCTION invsync.adjust(text, text, bigint, text, text, text) IS
	'add (positive delta) or remove (negative delta) on-hand stock; returns the ledger row';

CREATE FUNCTION invsync.set_on_hand(p_sku text, p_location text, p_on_hand bigint,
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
COMMENT ON FUNCTION invsync.set_on_hand(text, text, bigint, text, text, text) IS
	'set on-hand stock to a counted level (the ledger records the difference); returns the ledger row';

CREATE FUNCTION invsync.transfer(p_sku text, p_from text, p_to text, p_qty bigint,
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
COMMENT ON FUNCTION invsync.transfer(text, text, text, bigint, text, text) IS
	'move on-hand stock between two locations; returns the two ledger rows';

/*
 * Reserve stock for every line of an order, or for none.  Lines are
 * [{"sku": text, "qty": integer, "location": text (optional)}].  A bundle
 * line reserves its components; a line without a location draws from the
 * tenant's locations in priority order, possibly from several.
 */
/* reserve() in a given tenant: the ledger side of marketplace orders too */
CREATE FUNCTION invsync._reserve(p_tenant bigint, p_order_ref text, p_lines jsonb,
								 p_idempotency_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := p_tenant;
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
CREATE FUNCTION invsync.reserve(p_order_ref text, p_lines jsonb, p_idempotency_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT * FROM invsync._reserve(invsync.current_tenant(), p_order_ref, p_lines,
								   p_idempotency_key)
$$;
COMMENT ON FUNCTION invsync.reserve(text, jsonb, text) IS
	'reserve stock for all lines of an order or none; bundle lines reserve their components; returns the ledger rows';

/* release or fulfil every reservation of an order: one body for both */
CREATE FUNCTION invsync._close_order(p_tenant bigint, p_order_ref text,
									 p_idempotency_key text, p_operation text)
	RETURNS SETOF invsync.ledger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := p_tenant;
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

CREATE FUNCTION invsync.release(p_order_ref text, p_idempotency_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT * FROM invsync._close_order(invsync.current_tenant(), p_order_ref,
									   p_idempotency_key, 'release')
$$;
COMMENT ON FUNCTION invsync.release(text, text) IS
	'give back everything an order reserved; returns the ledger rows';

CREATE FUNCTION invsync.fulfill(p_order_ref text, p_idempotency_key text)
	RETURNS SETOF invsync.ledger
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT * FROM invsync._close_order(invsync.current_tenant(), p_order_ref,
									   p_idempotency_key, 'fulfill')
$$;
COMMENT ON FUNCTION invsync.fulfill(text, text) IS
	'turn an order''s reservations into on-hand deductions (it shipped); returns the ledger rows';

/* ---------------------------------------------------------------------
 * Reading stock
 * --------------------------------------------------------------------- */
/*
 * Units of a sku available over the given locations (all when NULL): for a
 * bundle, the minimum over its stocked skus of floor(available / qty).  A
 * plain sku expands to itself once, so one formula serves both (the
 * claim's, for many listings at once, is _listings_available).  The
 * expansion is a statement of its own: under Citus, a function reading
 * tables may not run inside a statement sent to a shard.
 */
CREATE FUNCTION invsync._available(p_tenant bigint, p_sku text, p_locations text[])
	RETURNS bigint
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_skus		text[];
	v_qtys		numeric[];
	v_result	numeric;
BEGIN
	SELECT array_agg(e.sku), array_agg(e.qty) INTO v_skus, v_qtys
	  FROM invsync._expand_bundle(p_tenant, p_sku) e;
	SELECT min(floor(coalesce(a.available, 0) / e.qty)) INTO v_result
	  FROM unnest(v_skus, v_qtys) AS e (sku, qty)
	  LEFT JOIN LATERAL (
			SELECT sum(s.on_hand - s.reserved) AS available
			  FROM invsync.stock_levels s
			 WHERE s.tenant_id = p_tenant AND s.sku = e.sku
			   AND (p_locations IS NULL OR s.location = ANY (p_locations))) a ON true;
	RETURN v_result::bigint;
END
$$;

CREATE FUNCTION invsync.available(p_sku text, p_location text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
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

	RETURN invsync._available(v_tenant, p_sku,
							  CASE WHEN p_location IS NOT NULL THEN ARRAY[p_location] END);
END
$$;
COMMENT ON FUNCTION invsync.available(text, text) IS
	'units of a sku that can still be sold, at one location or over all; a bundle yields the minimum over its components of floor(available / qty)';

CREATE VIEW invsync.stock WITH (security_barrier) AS
	SELECT s.sku, s.location, s.on_hand, s.reserved,
		   s.on_hand - s.reserved AS available, s.updated_at
	  FROM invsync.stock_levels s
	 WHERE s.tenant_id = invsync.current_tenant();
COMMENT ON VIEW invsync.stock IS
	'on hand, reserved and available per sku and location of the current tenant';

CREATE VIEW invsync.ledger_entries WITH (security_barrier) AS
	SELECT l.ledger_id, l.sku, l.location, l.operation, l.on_hand_change,
		   l.reserved_change, l.on_hand_after, l.reserved_after, l.reason,
		   l.reference, l.order_ref, l.idempotency_key, l.correlation_id,
		   l.actor, l.recorded_at
	  FROM invsync.ledger l
	 WHERE l.tenant_id = invsync.current_tenant();
COMMENT ON VIEW invsync.ledger_entries IS
	'the current tenant''s ledger';

CREATE VIEW invsync.open_reservations WITH (security_barrier) AS
	SELECT r.order_ref, r.line_no, r.line_sku, r.sku, r.location, r.qty,
		   o.created_at
	  FROM invsync.reservations r
	  JOIN invsync.reservation_orders o
		ON o.tenant_id = r.tenant_id AND o.order_ref = r.order_ref
	 WHERE r.tenant_id = invsync.current_tenant()
	   AND o.status = 'reserved';
COMMENT ON VIEW invsync.open_reservations IS
	'what the current tenant''s unreleased, unfulfilled orders hold';

/*
 * Every (sku, location) where stock_levels differs from the ledger: the sum
 * of the changes, or the balance the ledger's rows lead to.  Empty,
 * always; anything it returns is a bug or tampering.  For a role pinned to
 * a tenant, all tenants means its own.
 *
 * Each ledger row is a step from the balance before it (the balance after,
 * less the change) to the balance after it; a stock row starts empty.  The
 * steps are one chain from (0, 0) exactly when every balance is left as
 * often as it is reached, but for the chain's end, reached once more: the
 * balance the newest row recorded (last_on_hand_after, last_reserved_after),
 * which must be the stock's.  No order of the rows is needed: under Citus
 * ledger ids come from the range of the node that drew them, so the
 * highest id is not always the newest row.
 */
CREATE FUNCTION invsync.check_consistency(p_all_tenants boolean DEFAULT false)
	RETURNS TABLE (tenant_id bigint, sku text, location text,
				   on_hand bigint, reserved bigint,
				   ledger_on_hand numeric, ledger_reserved numeric,
				   last_on_hand_after bigint, last_reserved_after bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
#variable_conflict use_column
DECLARE
	v_all		boolean := p_all_tenants AND invsync._pinned_tenant() IS NULL;
	v_tenant	bigint := invsync.current_tenant();
BEGIN
	RETURN QUERY
	WITH sums AS (
		SELECT l.tenant_id, l.sku, l.location,
			   sum(l.on_hand_change) AS on_hand, sum(l.reserved_change) AS reserved
		  FROM invsync.ledger l
		 WHERE v_all OR l.tenant_id = v_tenant
		 GROUP BY l.tenant_id, l.sku, l.location
	),
	/* balances reached (+1: the start, each row's after) and left (-1: each row's before) */
	unmatched AS (
		SELECT b.tenant_id, b.sku, b.location, b.on_hand, b.reserved, sum(b.times) AS times
		  FROM (SELECT l.tenant_id, l.sku, l.location, l.on_hand_after AS on_hand,
					   l.reserved_after AS reserved, 1 AS times
				  FROM invsync.ledger l
				 WHERE v_all OR l.tenant_id = v_tenant
				UNION ALL
				SELECT l.tenant_id, l.sku, l.location, l.on_hand_after - l.on_hand_change,
					   l.reserved_after - l.reserved_change, -1
				  FROM invsync.ledger l
				 WHERE v_all OR l.tenant_id = v_tenant
				UNION ALL
				SELECT m.tenant_id, m.sku, m.location, 0, 0, 1
				  FROM sums m) b
		 GROUP BY b.tenant_id, b.sku, b.location, b.on_hand, b.reserved
		HAVING sum(b.times) <> 0
	),
	/* the chain's end, where the balances make one chain */
	ends AS (
		SELECT u.tenant_id, u.sku, u.location,
			   min(u.on_hand) AS on_hand, min(u.reserved) AS reserved
		  FROM unmatched u
		 GROUP BY u.tenant_id, u.sku, u.location
		HAVING count(*) = 1 AND min(u.times) = 1
	)
	SELECT coalesce(s.tenant_id, m.tenant_id), coalesce(s.sku, m.sku),
		   coalesce(s.location, m.location), s.on_hand, s.reserved,
		   m.on_hand, m.reserved, e.on_hand::bigint, e.reserved::bigint
	  FROM (SELECT * FROM invsync.stock_levels x
			 WHERE v_all OR x.tenant_id = v_tenant) s
	  FULL JOIN sums m
		ON m.tenant_id = s.tenant_id AND m.sku = s.sku AND m.location = s.location
	  LEFT JOIN ends e
		ON e.tenant_id = m.tenant_id AND e.sku = m.sku AND e.location = m.location
	 WHERE s.on_hand IS DISTINCT FROM m.on_hand
		OR s.reserved IS DISTINCT FROM m.reserved
		OR s.on_hand IS DISTINCT FROM e.on_hand
		OR s.reserved IS DISTINCT FROM e.reserved
	 ORDER BY 1, 2, 3;
END
$$;
COMMENT ON FUNCTION invsync.check_consistency(boolean) IS
	'rows where the cached stock level differs from the ledger; always empty';

/*
 * Forget idempotency keys older than the retention (invsync.idempotency_
 * retention unless given), in batches so that a large purge does not hold
 * long locks.  A key reused after its purge is a new request.
 */
CREATE FUNCTION invsync.purge_idempotency_keys(p_older_than interval DEFAULT NULL,
											   p_batch_size integer DEFAULT 10000)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_cutoff	timestamptz := now() - coalesce(p_older_than,
		current_setting('invsync.idempotency_retention')::interval);
	v_total		bigint := 0;
	v_batch		bigint;
BEGIN
	IF p_batch_size IS NULL OR p_batch_size < 1 THEN
		RAISE EXCEPTION 'invalid batch size %', p_batch_size USING ERRCODE = 'IV014';
	END IF;
	LOOP
		DELETE FROM invsync.idempotency_keys k
		 WHERE (k.tenant_id, k.idempotency_key) IN (
				SELECT x.tenant_id, x.idempotency_key
				  FROM invsync.idempotency_keys x
				 WHERE x.created_at < v_cutoff
				 LIMIT p_batch_size);
		GET DIAGNOSTICS v_batch = ROW_COUNT;
		v_total := v_total + v_batch;
		EXIT WHEN v_batch < p_batch_size;
	END LOOP;
	RETURN v_total;
END
$$;
COMMENT ON FUNCTION invsync.purge_idempotency_keys(interval, integer) IS
	'delete idempotency keys older than the retention (default: the invsync.idempotency_retention setting); returns how many';

/* ---------------------------------------------------------------------
 * pg_dump keeps the rows of every user-data table
 * --------------------------------------------------------------------- */
SELECT pg_catalog.pg_extension_config_dump('invsync.locations', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.items', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.bundle_components', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.bundle_leaves', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.bundle_versions', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.stock_levels', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.reservation_orders', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.reservations', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.tenant_roles', '');

/* ---------------------------------------------------------------------
 * Privileges
 * --------------------------------------------------------------------- */
REVOKE ALL ON SCHEMA invsync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA invsync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA invsync FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA invsync FROM PUBLIC;

GRANT USAGE ON SCHEMA invsync
	TO invsync_reader, invsync_writer, invsync_admin, invsync_webhook;

GRANT EXECUTE ON FUNCTION invsync.current_tenant(), invsync.correlation_id(),
	invsync.max_quantity(), invsync.max_bundle_depth(), invsync.max_bundle_size(),
	invsync.available(text, text),
	invsync.check_consistency(boolean)
	TO invsync_reader;
GRANT SELECT ON invsync.stock, invsync.ledger_entries, invsync.open_reservations
	TO invsync_reader;

GRANT EXECUTE ON FUNCTION
	invsync.adjust(text, text, bigint, text, text, text),
	invsync.set_on_hand(text, text, bigint, text, text, text),
	invsync.transfer(text, text, text, bigint, text, text),
	invsync.reserve(text, jsonb, text),
	invsync.release(text, text),
	invsync.fulfill(text, text),
	invsync.upsert_item(text, text),
	invsync.upsert_location(text, text, integer),
	invsync.set_bundle(text, jsonb)
	TO invsync_writer;

GRANT SELECT ON ALL TABLES IN SCHEMA invsync TO invsync_admin;
/* bundles change only through set_bundle(), which keeps bundle_leaves */
GRANT INSERT, UPDATE, DELETE ON invsync.items, invsync.locations TO invsync_admin;
GRANT EXECUTE ON FUNCTION invsync.purge_idempotency_keys(interval, integer)
	TO invsync_admin;
