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

/*
 * The worker records outcomes and attempts as arrays of composite values
 * rather than JSON text, and never waits for a shop row someone else holds.
 */
DROP FUNCTION invsync._record_batch(jsonb, jsonb, timestamptz);
DROP FUNCTION invsync._store_refreshed_tokens(bigint, bigint, text, text, text,
											  timestamptz, timestamptz);
DROP FUNCTION invsync._refresh_failed(bigint, bigint, boolean, text);
/*
 * What the worker hands _record_batch: one outcome per claimed row, one
 * attempt per HTTP request (arrays of these, built by the worker in C).
 */
CREATE TYPE invsync.worker_outcome AS (
	tenant_id	bigint,
	listing_id	bigint,
	version		bigint,
	level		bigint,
	outcome		text,
	due_in_ms	bigint,
	error_class text,
	error		text
);
COMMENT ON TYPE invsync.worker_outcome IS
	'the sync worker''s outcome for one claimed queue row (ok, retry or dead)';
CREATE TYPE invsync.worker_attempt AS (
	tenant_id	bigint,
	shop_id		bigint,
	channel		text,
	kind		text,
	listing_ids bigint[],
	versions	bigint[],
	levels		bigint[],
	correlation_id text,
	request_url text,
	http_status integer,
	outcome		text,
	error_class text,
	error_message text,
	marketplace_request_id text,
	latency_ms	double precision,
	started_at	timestamptz
);
COMMENT ON TYPE invsync.worker_attempt IS
	'one HTTP request of the sync worker, as recorded in sync_attempts';

/*
 * Record what became of a batch of claimed rows, and the attempts that
 * produced it, in one statement each.  An outcome applies only if the row
 * is still claimed at the version pushed (compare-and-set): ok makes it
 * synced, or pending again at once when a newer version came in meanwhile;
 * retry makes it pending, due after the worker's backoff; dead makes it a
 * dead letter.  Rows are locked in key order with SKIP LOCKED, so the worker
 * never waits on (nor deadlocks with) an application transaction that is
 * queueing a change: the keys it could not lock are returned, and the worker
 * records them again a moment later.
 */
CREATE FUNCTION invsync._record_batch(p_outcomes invsync.worker_outcome[],
									  p_attempts invsync.worker_attempt[],
									  p_now timestamptz)
	RETURNS TABLE (tenant_id bigint, listing_id bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	INSERT INTO invsync.sync_attempts
		(tenant_id, shop_id, channel, kind, listing_ids, versions, levels,
		 correlation_id, request_url, http_status, outcome, error_class,
		 error_message, marketplace_request_id, latency_ms, started_at)
	SELECT a.tenant_id, a.shop_id, a.channel, a.kind, a.listing_ids, a.versions,
		   a.levels, a.correlation_id, a.request_url, a.http_status, a.outcome,
		   a.error_class, a.error_message, a.marketplace_request_id, a.latency_ms,
		   a.started_at
	  FROM pg_catalog.unnest(p_attempts) AS a;

	RETURN QUERY
	WITH o AS (
		SELECT * FROM pg_catalog.unnest(p_outcomes) AS x
	),
	locked AS (
		SELECT q.tenant_id, q.listing_id
		  FROM invsync.sync_queue q
		  JOIN o ON o.tenant_id OPERATOR(pg_catalog.=) q.tenant_id
				AND o.listing_id OPERATOR(pg_catalog.=) q.listing_id
		 ORDER BY q.tenant_id, q.listing_id
		   FOR UPDATE OF q SKIP LOCKED
	),
	recorded AS (			/* data-modifying: runs whether read or not */
		UPDATE invsync.sync_queue q
		   SET lease_until = NULL,
			   state = CASE
						 WHEN o.outcome = 'dead' THEN 'dead'
						 WHEN o.outcome = 'ok' AND q.version = o.version THEN 'synced'
						 ELSE 'pending'
					   END,
			   due_at = p_now + o.due_in_ms * interval '1 millisecond',
			   attempts = CASE WHEN o.outcome = 'ok' THEN 0 ELSE q.attempts END,
			   force_push = q.force_push AND o.outcome <> 'ok',
			   pushed_level = CASE WHEN o.outcome = 'ok' THEN o.level ELSE q.pushed_level END,
			   pushed_version = CASE WHEN o.outcome = 'ok' THEN o.version ELSE q.pushed_version END,
			   pushed_at = CASE WHEN o.outcome = 'ok' THEN p_now ELSE q.pushed_at END,
			   changed_at = CASE
							  WHEN o.outcome = 'ok' AND q.version = o.version THEN p_now
							  ELSE q.changed_at
							END,
			   correlation_ids = CASE
								   WHEN o.outcome = 'ok' AND q.version = o.version THEN '{}'
								   ELSE q.correlation_ids
								 END,
			   last_error_class = CASE WHEN o.outcome = 'ok' THEN NULL ELSE o.error_class END,
			   last_error = CASE WHEN o.outcome = 'ok' THEN NULL ELSE o.error END
		  FROM o, locked
		 WHERE q.tenant_id = o.tenant_id AND q.listing_id = o.listing_id
		   AND locked.tenant_id = q.tenant_id AND locked.listing_id = q.listing_id
		   AND q.claimed_version = o.version AND q.lease_until IS NOT NULL)
	SELECT o.tenant_id, o.listing_id
	  FROM o
	 WHERE NOT EXISTS (SELECT FROM locked
						WHERE locked.tenant_id = o.tenant_id
						  AND locked.listing_id = o.listing_id);
END
$$;

/*
 * Token refresh, in two transactions around the HTTP call.  Taking the
 * refresh lease is the per-shop lock: only the holder may spend the refresh
 * token it read, and the new tokens are stored only if the refresh token is
 * still the one spent (compare-and-set), so two processes never spend one
 * refresh token.  The worker never waits for a shop row someone else holds
 * (SKIP LOCKED): no lease this time, or a change it writes later.
 */
CREATE OR REPLACE FUNCTION invsync._take_refresh_lease(p_tenant bigint, p_shop bigint,
											p_now timestamptz, p_lease interval)
	RETURNS text
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH free AS (
		SELECT s.tenant_id, s.shop_id
		  FROM invsync.shops s
		 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
		   AND s.token_state = 'ok' AND s.refresh_token IS NOT NULL
		   AND (s.refresh_lease_until IS NULL OR s.refresh_lease_until <= p_now)
		   FOR UPDATE SKIP LOCKED)
	UPDATE invsync.shops s
	   SET refresh_lease_until = p_now + p_lease
	  FROM free
	 WHERE s.tenant_id = free.tenant_id AND s.shop_id = free.shop_id
	RETURNING s.refresh_token
$$;

/*
 * Store refreshed tokens.  Returns 'stored'; 'stale' when the refresh
 * token is no longer the one spent (a new authorisation came in) or the
 * shop is gone; 'busy' when someone holds the shop's row, to try later.
 */
CREATE FUNCTION invsync._store_refreshed_tokens(p_tenant bigint, p_shop bigint,
												p_spent_refresh_token text,
												p_access_token text,
												p_refresh_token text,
												p_access_expires_at timestamptz,
												p_refresh_expires_at timestamptz)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM FROM invsync.shops s
	  WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
	  FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM invsync.shops s
					WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop) THEN
			RETURN 'busy';
		END IF;
		RETURN 'stale';
	END IF;
	UPDATE invsync.shops s
	   SET access_token = p_access_token,
		   refresh_token = p_refresh_token,
		   access_expires_at = p_access_expires_at,
		   refresh_expires_at = coalesce(p_refresh_expires_at, s.refresh_expires_at),
		   refresh_lease_until = NULL,
		   token_error = NULL
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
	   AND s.refresh_token = p_spent_refresh_token;
	RETURN CASE WHEN FOUND THEN 'stored' ELSE 'stale' END;
END
$$;

/* record a failed refresh: 'stored', 'stale' (shop gone) or 'busy' */
CREATE FUNCTION invsync._refresh_failed(p_tenant bigint, p_shop bigint,
										p_reauthorize boolean, p_error text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM FROM invsync.shops s
	  WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
	  FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM invsync.shops s
					WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop) THEN
			RETURN 'busy';
		END IF;
		RETURN 'stale';
	END IF;
	UPDATE invsync.shops s
	   SET refresh_lease_until = NULL,
		   token_state = CASE WHEN p_reauthorize THEN 'reauthorize' ELSE s.token_state END,
		   token_error = p_error
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop;
	RETURN 'stored';
END
$$;

REVOKE ALL ON FUNCTION
	invsync._record_batch(invsync.worker_outcome[], invsync.worker_attempt[], timestamptz),
	invsync._store_refreshed_tokens(bigint, bigint, text, text, text, timestamptz, timestamptz),
	invsync._refresh_failed(bigint, bigint, boolean, text)
	FROM PUBLIC;

/* ---------------------------------------------------------------------
 * Bundles flattened when they are defined (issue 13, items 9 and 11a).
 * bundle_leaves holds each bundle's stocked skus with multiplied
 * quantities; availability, reservations, listing levels and the enqueue
 * triggers read it instead of walking the nesting.  set_bundle() is its
 * only writer, so invsync_admin no longer writes bundle_components
 * directly and the per-row triggers on it go.  Nesting is limited to
 * max_bundle_depth() levels (IV016) and max_bundle_size() stocked skus
 * (IV017); a component listed twice is IV014.  Existing bundles are
 * flattened below without the limits, so none stops working; redefining
 * one, or a bundle inside one, applies them.
 * --------------------------------------------------------------------- */
DROP TRIGGER bundle_components_no_cycle ON invsync.bundle_components;
DROP FUNCTION invsync._check_bundle_component();
DROP TRIGGER bundle_components_enqueue ON invsync.bundle_components;
DROP FUNCTION invsync._bundle_changed();
REVOKE INSERT, UPDATE, DELETE ON invsync.bundle_components FROM invsync_admin;

/* how deep bundles nest, and how many stocked skus one bundle consumes */
CREATE FUNCTION invsync.max_bundle_depth() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT 32 $$;
COMMENT ON FUNCTION invsync.max_bundle_depth() IS
	'the deepest a bundle may nest: a bundle of plain items is 1 level deep, a bundle containing it 2';

CREATE FUNCTION invsync.max_bundle_size() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT 1000 $$;
COMMENT ON FUNCTION invsync.max_bundle_size() IS
	'the most components one set_bundle call may list, and the most different stocked skus one bundle may consume through all its nesting';

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
CREATE INDEX bundle_leaves_component_idx
	ON invsync.bundle_leaves (tenant_id, component_sku);
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

/*
 * The stocked skus one unit of p_sku consumes, with quantities multiplied
 * through nested bundles; a plain sku consumes itself once.  Reads the
 * flat list set_bundle() keeps, never the nesting.
 */
CREATE OR REPLACE FUNCTION invsync._expand_bundle(p_tenant bigint, p_sku text)
	RETURNS TABLE (sku text, qty numeric)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT f.component_sku, f.qty::numeric
	  FROM invsync.bundle_leaves f
	 WHERE f.tenant_id = p_tenant AND f.bundle_sku = p_sku
	UNION ALL
	SELECT p_sku, 1::numeric
	 WHERE NOT EXISTS (SELECT FROM invsync.bundle_leaves f
						WHERE f.tenant_id = p_tenant AND f.bundle_sku = p_sku)
$$;

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
CREATE OR REPLACE FUNCTION invsync.set_bundle(p_sku text, p_components jsonb)
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

/*
 * The given skus and every bundle that consumes one of them as a stocked
 * sku (from the flat lists, at any depth; bundles given are kept, the
 * bundles containing them are not added).
 */
CREATE OR REPLACE FUNCTION invsync._skus_and_bundles(p_tenant bigint, p_skus text[])
	RETURNS SETOF text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT unnest(p_skus)
	UNION
	SELECT f.bundle_sku
	  FROM invsync.bundle_leaves f
	 WHERE f.tenant_id = p_tenant AND f.component_sku = ANY (p_skus)
$$;

/*
 * Bundles were (re-)defined: set_bundle() passes the bundle and every
 * bundle containing it.  Their listings' stock becomes published and the
 * listings are queued, as a stock change would queue them.
 */
CREATE FUNCTION invsync._bundles_changed(p_tenant bigint, p_bundles text[])
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM invsync._mark_published(p_tenant,
		ARRAY(SELECT l.sku FROM invsync.listings l
			   WHERE l.tenant_id = p_tenant AND l.sku = ANY (p_bundles)));
	PERFORM invsync._enqueue_skus(p_tenant, p_bundles, NULL);
END
$$;

SELECT pg_catalog.pg_extension_config_dump('invsync.bundle_leaves', '');
SELECT pg_catalog.pg_extension_config_dump('invsync.bundle_versions', '');

REVOKE ALL ON invsync.bundle_leaves, invsync.bundle_versions FROM PUBLIC;
GRANT SELECT ON invsync.bundle_leaves, invsync.bundle_versions TO invsync_admin;
REVOKE ALL ON FUNCTION invsync.max_bundle_depth(), invsync.max_bundle_size(),
	invsync._flatten_bundles(bigint, text[], boolean),
	invsync._bundles_changed(bigint, text[])
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync.max_bundle_depth(), invsync.max_bundle_size()
	TO invsync_reader;

/* flatten the bundles defined before 0.3, one tenant at a time */
DO $flatten$
DECLARE
	t			bigint;
BEGIN
	FOR t IN SELECT DISTINCT c.tenant_id FROM invsync.bundle_components c ORDER BY 1
	LOOP
		PERFORM invsync._flatten_bundles(t,
			ARRAY(SELECT DISTINCT c.bundle_sku FROM invsync.bundle_components c
				   WHERE c.tenant_id OPERATOR(pg_catalog.=) t),
			false);
	END LOOP;
END
$flatten$;

/* the worker reads the flat bundle lists its levels come from */
GRANT SELECT ON invsync.bundle_leaves TO invsync_worker;

/* ---------------------------------------------------------------------
 * Channel set-up (issue 13): base URLs, tokens, secrets
 * --------------------------------------------------------------------- */
COMMENT ON TABLE invsync.apps IS
	'marketplace app credentials (Shopee partner id and key, ...); the secrets are readable only by invsync_worker and invsync_secrets';
COMMENT ON COLUMN invsync.apps.base_url IS
	'API host override (sandbox, tests, demo, Shopee mainland-China developers); NULL means the channel''s production host. https only unless invsync.allow_insecure_http is on';

/*
 * Base URLs (src/endpoint.c): https://host[:port][/prefix], no user name
 * or password, query or fragment, at most 512 bytes; plain http only while
 * a superuser has set invsync.allow_insecure_http.  Checked when stored
 * (IV023 malformed, IV024 plain http) and again by _claim() before any row
 * of the app's shops is sent, under the setting as it is then.
 */
CREATE FUNCTION invsync._base_url_refusal(p_url text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'invsync_base_url_refusal'
	LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION invsync._base_url_refusal(text) IS
	'why the worker may not send to this base URL now, or NULL when it may (NULL means the production host)';

CREATE FUNCTION invsync._apps_check_base_url() RETURNS trigger
	AS 'MODULE_PATHNAME', 'invsync_apps_check_base_url'
	LANGUAGE C;
COMMENT ON FUNCTION invsync._apps_check_base_url() IS
	'refuse a malformed base URL (IV023), or a plain http one while invsync.allow_insecure_http is off (IV024)';

CREATE TRIGGER apps_base_url
	BEFORE INSERT OR UPDATE OF base_url ON invsync.apps
	FOR EACH ROW EXECUTE FUNCTION invsync._apps_check_base_url();
REVOKE ALL ON FUNCTION invsync._base_url_refusal(text),
	invsync._apps_check_base_url() FROM PUBLIC;

/* the functions the worker calls pin search_path; _claim skips refused base URLs */
CREATE OR REPLACE FUNCTION invsync._claim(p_now timestamptz, p_lease interval, p_limit integer,
							   p_max_batch integer)
	RETURNS TABLE (tenant_id bigint, listing_id bigint, shop_id bigint,
				   version bigint, target_level bigint, attempts integer,
				   correlation_ids text[], channel text,
				   external_item_id text, external_model_id text,
				   external_location_id text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenants	bigint[];
	v_listings	bigint[];
BEGIN
	/*
	 * No row goes to a base URL the worker may not use now: plain http
	 * while invsync.allow_insecure_http is off, or a malformed one (stored
	 * while the setting was on, or written past the check on apps).  The
	 * due rows of such shops become dead letters carrying the reason;
	 * retry_dead() sends them once the URL is fixed.
	 */
	WITH refused AS (
		SELECT s.tenant_id, s.shop_id, r.reason
		  FROM invsync.apps a
		 CROSS JOIN LATERAL (SELECT invsync._base_url_refusal(a.base_url) AS reason) r
		  JOIN invsync.shops s ON s.tenant_id = a.tenant_id AND s.app_id = a.app_id
		 WHERE a.base_url IS NOT NULL AND r.reason IS NOT NULL
		   AND s.enabled AND s.token_state = 'ok'
	),
	locked AS (
		SELECT q.tenant_id, q.listing_id, refused.reason
		  FROM refused
		  JOIN invsync.sync_queue q
			ON q.tenant_id = refused.tenant_id AND q.shop_id = refused.shop_id
		 WHERE q.state = 'pending' AND q.due_at <= p_now
		   AND (q.lease_until IS NULL OR q.lease_until <= p_now)
		 ORDER BY q.tenant_id, q.listing_id
		   FOR UPDATE OF q SKIP LOCKED
	)
	UPDATE invsync.sync_queue q
	   SET state = 'dead', lease_until = NULL,
		   last_error_class = 'base_url', last_error = locked.reason
	  FROM locked
	 WHERE q.tenant_id = locked.tenant_id AND q.listing_id = locked.listing_id;

	WITH slots AS (
		SELECT s.tenant_id, s.shop_id,
			   least(s.max_in_flight * p_max_batch,
					 ceil(s.rate_limit_per_sec * extract(epoch FROM p_lease) / 4))::integer
			   - (SELECT count(*)
					FROM invsync.sync_queue h
				   WHERE h.tenant_id = s.tenant_id AND h.shop_id = s.shop_id
					 AND h.state = 'pending' AND h.lease_until IS NOT NULL
					 AND h.lease_until > p_now)::integer AS free
		  FROM invsync.shops s
		 WHERE s.enabled AND s.token_state = 'ok'
	),
	picked AS (
		SELECT c.tenant_id, c.listing_id
		  FROM slots
		 CROSS JOIN LATERAL (
				SELECT q.tenant_id, q.listing_id
				  FROM invsync.sync_queue q
				 WHERE q.tenant_id = slots.tenant_id AND q.shop_id = slots.shop_id
				   AND q.state = 'pending' AND q.due_at <= p_now
				   AND (q.lease_until IS NULL OR q.lease_until <= p_now)
				 ORDER BY q.due_at
				 LIMIT greatest(slots.free, 0)
				   FOR UPDATE OF q SKIP LOCKED) c
		 LIMIT p_limit
	)
	SELECT array_agg(picked.tenant_id), array_agg(picked.listing_id)
	  INTO v_tenants, v_listings
	  FROM picked;

	IF v_tenants IS NULL THEN
		RETURN;
	END IF;

	/*
	 * A new statement, so a new snapshot: see the comment above.  The lease
	 * is taken here too, in the one UPDATE: a second UPDATE of a row this
	 * transaction already updated costs a row version and a foreign-key
	 * check per row.
	 */
	UPDATE invsync.sync_queue q
	   SET target_level = lv.level,
		   lease_until = p_now + p_lease,
		   claimed_version = q.version,
		   attempts = q.attempts + 1
	  FROM (SELECT l.tenant_id, l.listing_id,
				   invsync._publish_level(invsync._listing_available(l.tenant_id, l.sku, l.source_locations),
										  l.buffer, l.allocation_percent,
										  l.min_level, l.max_level) AS level
			  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
			  JOIN invsync.listings l
				ON l.tenant_id = c.tenant_id AND l.listing_id = c.listing_id) lv
	 WHERE q.tenant_id = lv.tenant_id AND q.listing_id = lv.listing_id;

	/* nothing to publish: the marketplace already shows this level */
	UPDATE invsync.sync_queue q
	   SET state = 'synced', lease_until = NULL, attempts = 0,
		   pushed_version = q.version, changed_at = p_now,
		   last_error_class = NULL, last_error = NULL
	  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
	 WHERE q.tenant_id = c.tenant_id AND q.listing_id = c.listing_id
	   AND NOT q.force_push AND q.pushed_level = q.target_level;

	RETURN QUERY
		SELECT q.tenant_id, q.listing_id, q.shop_id, q.version, q.target_level,
			   q.attempts, q.correlation_ids, a.channel, l.external_item_id,
			   l.external_model_id, l.external_location_id
		  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
		  JOIN invsync.sync_queue q
			ON q.tenant_id = c.tenant_id AND q.listing_id = c.listing_id
		  JOIN invsync.listings l
			ON l.tenant_id = q.tenant_id AND l.listing_id = q.listing_id
		  JOIN invsync.shops s ON s.tenant_id = q.tenant_id AND s.shop_id = q.shop_id
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		 WHERE q.lease_until IS NOT NULL
		 ORDER BY q.tenant_id, q.shop_id, l.external_item_id;
END
$$;

ALTER FUNCTION invsync._shop_context(bigint, bigint)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._worker_started(timestamptz, interval)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._release_claim(bigint, bigint, bigint)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._take_refresh_lease(bigint, bigint, timestamptz, interval)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._store_refreshed_tokens(bigint, bigint, text, text, text,
											   timestamptz, timestamptz)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._refresh_failed(bigint, bigint, boolean, text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._purge_attempts(timestamptz, integer)
	SET search_path = pg_catalog, pg_temp;

/* set_shop_tokens() refuses missing and malformed tokens (IV025) */
CREATE OR REPLACE FUNCTION invsync.set_shop_tokens(p_shop bigint, p_access_token text,
										p_refresh_token text,
										p_access_expires_at timestamptz,
										p_refresh_expires_at timestamptz DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_name		text;
	v_token		text;
BEGIN
	FOREACH v_name IN ARRAY ARRAY['access', 'refresh']
	LOOP
		v_token := CASE v_name WHEN 'access' THEN p_access_token ELSE p_refresh_token END;
		IF v_token IS NULL OR v_token = '' THEN
			RAISE EXCEPTION 'the % token is required', v_name
				USING ERRCODE = 'IV025',
					  HINT = 'Store the access and refresh tokens the marketplace issued for the shop''s authorisation.';
		END IF;
		IF octet_length(v_token) > 2048 OR v_token !~ '^[!-~]+$' THEN
			RAISE EXCEPTION 'invalid % token', v_name
				USING ERRCODE = 'IV025',
					  DETAIL = 'A token is 1 to 2048 printable ASCII characters, without spaces.';
		END IF;
	END LOOP;

	UPDATE invsync.shops s
	   SET access_token = p_access_token, refresh_token = p_refresh_token,
		   access_expires_at = p_access_expires_at,
		   refresh_expires_at = p_refresh_expires_at,
		   token_state = 'ok', token_error = NULL, refresh_lease_until = NULL
	 WHERE s.tenant_id = invsync.current_tenant() AND s.shop_id = p_shop;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown shop %', p_shop USING ERRCODE = 'IV022';
	END IF;
	PERFORM invsync._wake_worker();
END
$$;

/* secrets: admins lose SELECT on the secret columns */
REVOKE SELECT ON invsync.apps, invsync.shops FROM invsync_admin;

/*
 * Secrets (apps.app_secret, apps.push_secret, shops.access_token,
 * shops.refresh_token) are readable only by the worker's role and
 * invsync_secrets.  Admins read every other column, and still write all of
 * them (a secret is write-only to them).
 */
GRANT SELECT (tenant_id, app_id, channel, name, app_key, base_url, created_at)
	ON invsync.apps TO invsync_admin;
GRANT SELECT (tenant_id, shop_id, app_id, external_shop_id, region,
			  access_expires_at, refresh_expires_at, token_state, token_error,
			  refresh_lease_until, uses_locations, rate_limit_per_sec,
			  max_in_flight, enabled, created_at)
	ON invsync.shops TO invsync_admin;
GRANT USAGE ON SCHEMA invsync TO invsync_worker, invsync_secrets;
GRANT SELECT ON invsync.apps, invsync.shops TO invsync_worker, invsync_secrets;

/*
 * The sync worker (invsync.worker_role, a member of invsync_worker): what
 * the internal functions it calls read and write, and nothing else.  They
 * are SECURITY INVOKER, so these are its own privileges: it reads the
 * catalog, queue and stock the levels come from; it updates only the
 * queue's claim and outcome columns (never a version or a key) and a
 * shop's tokens and their state; it writes and purges attempts.
 */
GRANT SELECT ON invsync.listings, invsync.sync_queue, invsync.stock_levels,
	invsync.bundle_leaves TO invsync_worker;
GRANT UPDATE (target_level, lease_until, claimed_version, attempts, state,
			  due_at, force_push, pushed_level, pushed_version, pushed_at,
			  changed_at, correlation_ids, last_error_class, last_error)
	ON invsync.sync_queue TO invsync_worker;
GRANT UPDATE (access_token, refresh_token, access_expires_at,
			  refresh_expires_at, token_state, token_error, refresh_lease_until)
	ON invsync.shops TO invsync_worker;
GRANT SELECT, INSERT, DELETE ON invsync.sync_attempts TO invsync_worker;
GRANT USAGE ON SEQUENCE invsync.attempt_id_seq TO invsync_worker;
GRANT EXECUTE ON FUNCTION
	invsync._worker_started(timestamptz, interval),
	invsync._claim(timestamptz, interval, integer, integer),
	invsync._shop_context(bigint, bigint),
	invsync._record_batch(invsync.worker_outcome[], invsync.worker_attempt[],
						  timestamptz),
	invsync._release_claim(bigint, bigint, bigint),
	invsync._take_refresh_lease(bigint, bigint, timestamptz, interval),
	invsync._store_refreshed_tokens(bigint, bigint, text, text, text,
									timestamptz, timestamptz),
	invsync._refresh_failed(bigint, bigint, boolean, text),
	invsync._purge_attempts(timestamptz, integer),
	invsync._publish_level(bigint, bigint, numeric, bigint, bigint),
	invsync._listing_available(bigint, text, text[]),
	invsync._expand_bundle(bigint, text),
	invsync._base_url_refusal(text)
	TO invsync_worker;

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

/* every function a trigger, the worker or another function runs pins search_path */
ALTER FUNCTION invsync._append_correlation_id(text[], text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._check_stockable(bigint, text, text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._close_order(text, text, text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._enqueue_skus(bigint, text[], text, boolean)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._is_published(bigint, text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._mark_published(bigint, text[])
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._prepare_stock_row(bigint, text, text, bigint, bigint)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION invsync._replay(bigint, text)
	SET search_path = pg_catalog, pg_temp;

/*
 * The helpers the claim runs once per listing have SQL-standard bodies:
 * their names are resolved when they are created, so no search_path can
 * redirect them, and the planner can still inline them (a SET clause would
 * stop that and cost a settings change per listing).
 */
CREATE OR REPLACE FUNCTION invsync._expand_bundle(p_tenant bigint, p_sku text)
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

CREATE OR REPLACE FUNCTION invsync._listing_available(p_tenant bigint, p_sku text,
										   p_source_locations text[])
	RETURNS bigint
	LANGUAGE sql STABLE
BEGIN ATOMIC
	SELECT coalesce(min(floor(coalesce(a.available, 0) / e.qty)), 0)::bigint
	  FROM invsync._expand_bundle(p_tenant, p_sku) e
	  LEFT JOIN LATERAL (
			SELECT sum(s.on_hand - s.reserved) AS available
			  FROM invsync.stock_levels s
			 WHERE s.tenant_id = p_tenant AND s.sku = e.sku
			   AND (p_source_locations IS NULL
					OR s.location = ANY (p_source_locations))) a ON true;
END;

CREATE OR REPLACE FUNCTION invsync._publish_level(p_available bigint, p_buffer bigint,
									   p_allocation_percent numeric,
									   p_min_level bigint, p_max_level bigint)
	RETURNS bigint
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN (CASE
			  WHEN greatest(0, floor((p_available - p_buffer) * p_allocation_percent / 100))
				   < coalesce(p_min_level, 0) THEN 0
			  ELSE least(greatest(0, floor((p_available - p_buffer) * p_allocation_percent / 100)),
						 p_max_level)
			END)::bigint;

/*
 * pg_dump and restore keep every row: the triggers pass over rows loaded
 * from a dump (a creation time other than now(); see "Rows loaded from a
 * dump" in the install script), whose effects the dump holds already.
 * Listings loaded are not queued (their queue rows are loaded after them),
 * stock rows loaded keep their published flag and are not queued, and apps
 * loaded keep the base URL they were stored with (_claim() checks it).
 */
CREATE OR REPLACE FUNCTION invsync._stock_row_created() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	NEW.published := invsync._is_published(NEW.tenant_id, NEW.sku);
	RETURN NEW;
END
$$;

DROP TRIGGER stock_levels_published ON invsync.stock_levels;
CREATE TRIGGER stock_levels_published
	BEFORE INSERT ON invsync.stock_levels
	FOR EACH ROW WHEN (NEW.updated_at = pg_catalog.now())
	EXECUTE FUNCTION invsync._stock_row_created();
DROP TRIGGER stock_levels_enqueue_insert ON invsync.stock_levels;
CREATE TRIGGER stock_levels_enqueue_insert
	AFTER INSERT ON invsync.stock_levels
	FOR EACH ROW WHEN (NEW.published AND NEW.on_hand <> NEW.reserved
					   AND NEW.updated_at = pg_catalog.now())
	EXECUTE FUNCTION invsync._stock_changed();

CREATE OR REPLACE FUNCTION invsync._listing_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF TG_TABLE_NAME = 'shops' THEN
		PERFORM invsync._enqueue_skus(NEW.tenant_id,
									  ARRAY(SELECT l.sku FROM invsync.listings l
											 WHERE l.tenant_id = NEW.tenant_id
											   AND l.shop_id = NEW.shop_id),
									  NULL);
	ELSE
		PERFORM invsync._mark_published(NEW.tenant_id, ARRAY[NEW.sku]);
		IF TG_OP = 'UPDATE' OR NEW.created_at = pg_catalog.now() THEN
			PERFORM invsync._enqueue_skus(NEW.tenant_id, ARRAY[NEW.sku], NULL);
		END IF;
	END IF;
	RETURN NULL;
END
$$;

ALTER FUNCTION invsync._apps_check_base_url()
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invsync._apps_check_base_url() IS
	'refuse a malformed base URL (IV023), or a plain http one while invsync.allow_insecure_http is off (IV024); rows loaded from a dump pass';

/* constants with SQL-standard bodies; the stock trigger pins search_path */
CREATE OR REPLACE FUNCTION invsync.max_quantity() RETURNS bigint
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 1000000000::bigint;
CREATE OR REPLACE FUNCTION invsync.max_bundle_depth() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 32;
CREATE OR REPLACE FUNCTION invsync.max_bundle_size() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN 1000;
ALTER FUNCTION invsync._stock_changed() SET search_path = pg_catalog, pg_temp;

/* one lock of a shop's row, without waiting, for the token writes */
/*
 * Lock a shop's row for the worker without waiting: 'locked', 'busy' when
 * someone else holds it (the worker writes later), 'stale' when the shop is
 * gone.
 */
CREATE FUNCTION invsync._lock_shop_row(p_tenant bigint, p_shop bigint)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM FROM invsync.shops s
	  WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
	  FOR UPDATE SKIP LOCKED;
	IF FOUND THEN
		RETURN 'locked';
	END IF;
	IF EXISTS (SELECT FROM invsync.shops s
				WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop) THEN
		RETURN 'busy';
	END IF;
	RETURN 'stale';
END
$$;

/*
 * Store refreshed tokens.  Returns 'stored'; 'stale' when the refresh
 * token is no longer the one spent (a new authorisation came in) or the
 * shop is gone; 'busy' when someone holds the shop's row, to try later.
 */
CREATE OR REPLACE FUNCTION invsync._store_refreshed_tokens(p_tenant bigint, p_shop bigint,
												p_spent_refresh_token text,
												p_access_token text,
												p_refresh_token text,
												p_access_expires_at timestamptz,
												p_refresh_expires_at timestamptz)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		text;
BEGIN
	v_row := invsync._lock_shop_row(p_tenant, p_shop);
	IF v_row <> 'locked' THEN
		RETURN v_row;
	END IF;
	UPDATE invsync.shops s
	   SET access_token = p_access_token,
		   refresh_token = p_refresh_token,
		   access_expires_at = p_access_expires_at,
		   refresh_expires_at = coalesce(p_refresh_expires_at, s.refresh_expires_at),
		   refresh_lease_until = NULL,
		   token_error = NULL
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
	   AND s.refresh_token = p_spent_refresh_token;
	RETURN CASE WHEN FOUND THEN 'stored' ELSE 'stale' END;
END
$$;

/* record a failed refresh: 'stored', 'stale' (shop gone) or 'busy' */
CREATE OR REPLACE FUNCTION invsync._refresh_failed(p_tenant bigint, p_shop bigint,
										p_reauthorize boolean, p_error text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		text;
BEGIN
	v_row := invsync._lock_shop_row(p_tenant, p_shop);
	IF v_row <> 'locked' THEN
		RETURN v_row;
	END IF;
	UPDATE invsync.shops s
	   SET refresh_lease_until = NULL,
		   token_state = CASE WHEN p_reauthorize THEN 'reauthorize' ELSE s.token_state END,
		   token_error = p_error
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop;
	RETURN 'stored';
END
$$;

REVOKE ALL ON FUNCTION invsync._lock_shop_row(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._lock_shop_row(bigint, bigint) TO invsync_worker;
