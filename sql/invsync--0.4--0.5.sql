/*
 * invsync--0.4--0.5.sql
 *	  Upgrade from 0.4: a claim and an enqueue path whose cost follows the
 *	  rows they touch, not the backlog or the number of shops; outcomes
 *	  recorded with one index probe and one update by row address each; and
 *	  what invsync needs to run on Citus, distributed by tenant_id.
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.5'" to load this file. \quit

/* the bundles containing a sku: led by the sku (see invsync.sql) */
DROP INDEX invsync.bundle_leaves_component_idx;
CREATE INDEX bundle_leaves_component_idx
	ON invsync.bundle_leaves (component_sku, tenant_id);

/* ---------------------------------------------------------------------
 * Citus: functions whose statements Citus can route to a tenant's shard
 * (see invsync.sql and invsync_sync.sql for why each changed)
 * --------------------------------------------------------------------- */
CREATE OR REPLACE FUNCTION invsync._replay(p_tenant bigint, p_key text)
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

CREATE OR REPLACE FUNCTION invsync.available(p_sku text, p_location text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION invsync.check_consistency(p_all_tenants boolean DEFAULT false)
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
 * The level a listing publishes: available stock over its source
 * locations (bundle-aware: _listings_available, below), less the buffer,
 * times the allocation, 0 below min_level, at most max_level.  One
 * definition, used by the claim and the listing_levels view.
 */
CREATE OR REPLACE FUNCTION invsync._publish_level(p_available bigint, p_buffer bigint,
									   p_allocation_percent numeric,
									   p_min_level bigint, p_max_level bigint)
	RETURNS bigint
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN (CASE
			  /* all of it, the usual case: the same value in integers */
			  WHEN p_allocation_percent = 100 THEN
				CASE
				  WHEN greatest(0, p_available - p_buffer) < coalesce(p_min_level, 0) THEN 0
				  ELSE least(greatest(0, p_available - p_buffer), p_max_level)
				END
			  WHEN greatest(0, floor((p_available - p_buffer) * p_allocation_percent / 100))
				   < coalesce(p_min_level, 0) THEN 0
			  ELSE least(greatest(0, floor((p_available - p_buffer) * p_allocation_percent / 100)),
						 p_max_level)
			END)::bigint;

/*
 * The available stock and level of a tenant's listings, in one statement
 * inlined into its caller's (a SQL-standard body, no SET clause):
 * PostgreSQL plans a SQL function it calls anew on every call, and a level
 * computed by a call per row cost the claim some 200 us a row.  Each
 * listing is looked up from the row given (LATERAL, not pulled up): a plan
 * from statistics of small tables could otherwise scan the tenant's
 * listings and look the given rows up for each.  Its available stock is an
 * aggregate over its own bundle list, so the rows need no sorting into
 * groups; the list is read by one probe of bundle_leaves (a SKU that is
 * no bundle is its own list), and the arithmetic is in integers.  With
 * each listing come what the claim batches and sends by (batch and
 * sibling keys, the marketplace's ids), read in the same
 * lookup, and its position in the array given (ordinal, from 1): the
 * claim reads no listing twice.
 *
 * The bundle list is _expand_bundle's statement, written out, and every
 * table is named with p_tenant: so on a Citus node the whole statement
 * goes to the tenant's shard as one (see _citus_node_setup), where a call
 * of a function reading tables could not run.
 */
CREATE FUNCTION invsync._listings_available(p_tenant bigint, p_listings bigint[])
	RETURNS TABLE (tenant_id bigint, listing_id bigint, available bigint, level bigint,
				   ordinal bigint, batch_key text, sibling_key text, external_ids jsonb)
	LANGUAGE sql STABLE
BEGIN ATOMIC
	SELECT l.tenant_id, l.listing_id, b.available,
		   invsync._publish_level(b.available, l.buffer, l.allocation_percent,
								  l.min_level, l.max_level),
		   c.ordinal, l.batch_key, l.sibling_key, l.external_ids
	  FROM unnest(p_listings) WITH ORDINALITY AS c (listing_id, ordinal)
	 CROSS JOIN LATERAL (SELECT l.tenant_id, l.listing_id, l.sku, l.source_locations,
								l.buffer, l.allocation_percent, l.min_level, l.max_level,
								l.batch_key, l.sibling_key, l.external_ids
						   FROM invsync.listings l
						  WHERE l.tenant_id = p_tenant AND l.listing_id = c.listing_id
						 OFFSET 0) l
	 CROSS JOIN LATERAL (
			/* whole bundles: the floor of each component's stock over its quantity */
			SELECT coalesce(min(CASE
								  WHEN e.qty = 1 OR a.available >= 0 THEN a.available / e.qty
								  ELSE (a.available - e.qty + 1) / e.qty
								END), 0) AS available
			  FROM (SELECT coalesce(f.component_sku, l.sku) AS sku, coalesce(f.qty, 1) AS qty
					  FROM (VALUES (true)) AS self (listed)
					  LEFT JOIN invsync.bundle_leaves f
						ON f.tenant_id = p_tenant AND f.bundle_sku = l.sku) e
			  LEFT JOIN LATERAL (
					SELECT coalesce(sum(s.on_hand - s.reserved), 0)::bigint AS available
					  FROM invsync.stock_levels s
					 WHERE s.tenant_id = p_tenant AND s.sku = e.sku
					   AND (l.source_locations IS NULL
							OR s.location = ANY (l.source_locations))) a ON true) b;
END;

CREATE OR REPLACE FUNCTION invsync._listing_levels()
	RETURNS TABLE (listing_id bigint, shop_id bigint, channel text,
				   external_shop_id text, sku text, external_item_id text,
				   external_model_id text, external_location_id text,
				   source_locations text[], available bigint, buffer bigint,
				   allocation_percent numeric, min_level bigint, max_level bigint,
				   level bigint, enabled boolean, sync_state text,
				   pushed_level bigint, pushed_at timestamptz, external_ids jsonb)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
#variable_conflict use_column
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_listings	bigint[];
	v_available bigint[];
	r			record;
BEGIN
	/*
	 * The levels in a statement of their own: under Citus, a function
	 * reading tables may not run inside a statement sent to a shard.
	 */
	v_listings := ARRAY(SELECT l.listing_id FROM invsync.listings l
						 WHERE l.tenant_id = v_tenant ORDER BY l.listing_id);
	SELECT array_agg(v.available ORDER BY v.listing_id) INTO v_available
	  FROM invsync._listings_available(v_tenant, v_listings) v;
	FOR r IN
		SELECT l.listing_id, l.shop_id, a.channel, s.external_shop_id, l.sku,
			   l.external_item_id, l.external_model_id, l.external_location_id,
			   l.source_locations, l.buffer, l.allocation_percent,
			   l.min_level, l.max_level, l.enabled AND s.enabled AS enabled,
			   q.state, q.pushed_level, q.pushed_at, l.external_ids, v.available
		  FROM unnest(v_listings, v_available) AS v (listing_id, available)
		  JOIN invsync.listings l
			ON l.tenant_id = v_tenant AND l.listing_id = v.listing_id
		  JOIN invsync.shops s ON s.tenant_id = l.tenant_id AND s.shop_id = l.shop_id
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		  LEFT JOIN invsync.sync_queue q
			ON q.tenant_id = l.tenant_id AND q.listing_id = l.listing_id
	LOOP
		listing_id := r.listing_id;
		shop_id := r.shop_id;
		channel := r.channel;
		external_shop_id := r.external_shop_id;
		sku := r.sku;
		external_item_id := r.external_item_id;
		external_model_id := r.external_model_id;
		external_location_id := r.external_location_id;
		source_locations := r.source_locations;
		available := r.available;
		buffer := r.buffer;
		allocation_percent := r.allocation_percent;
		min_level := r.min_level;
		max_level := r.max_level;
		level := invsync._publish_level(available, r.buffer, r.allocation_percent,
										r.min_level, r.max_level);
		enabled := r.enabled;
		sync_state := r.state;
		pushed_level := r.pushed_level;
		pushed_at := r.pushed_at;
		external_ids := r.external_ids;
		RETURN NEXT;
	END LOOP;
END
$$;
DROP FUNCTION invsync._listing_available(bigint, text, text[]);

/* inlined into the enqueue statement: a SQL-standard body, no SET clause */
CREATE OR REPLACE FUNCTION invsync._append_correlation_id(p_ids text[], p_id text)
	RETURNS text[]
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN CASE
			 WHEN p_id = ANY (p_ids) THEN p_ids
			 WHEN cardinality(p_ids) >= 10 THEN p_ids[cardinality(p_ids) - 8:] || p_id
			 ELSE p_ids || p_id
		   END;

/* was a set-returning SQL function: now an array, from PL/pgSQL */
DROP FUNCTION invsync._skus_and_bundles(bigint, text[]);
CREATE FUNCTION invsync._skus_and_bundles(p_tenant bigint, p_skus text[])
	RETURNS text[]
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_sku		text;
	v_bundles	text[] := '{}';
BEGIN
	FOREACH v_sku IN ARRAY p_skus LOOP
		v_bundles := v_bundles || ARRAY(SELECT f.bundle_sku
										  FROM invsync.bundle_leaves f
										 WHERE f.tenant_id = p_tenant
										   AND f.component_sku = v_sku);
	END LOOP;
	IF cardinality(p_skus) = 1 AND cardinality(v_bundles) = 0 THEN
		RETURN p_skus;
	END IF;
	RETURN ARRAY(SELECT DISTINCT u.sku FROM unnest(p_skus || v_bundles) AS u (sku)
				  ORDER BY u.sku);
END
$$;

/* p_shop: a shop enabled or resynced queues its own listings only */
DROP FUNCTION invsync._enqueue_skus(bigint, text[], text, boolean);
CREATE FUNCTION invsync._enqueue_skus(p_tenant bigint, p_skus text[],
									  p_location text, p_force boolean DEFAULT false,
									  p_shop bigint DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_sku		text;
	v_rows		integer;
	v_count		integer := 0;
	/* values, not calls: under Citus the INSERT runs on the tenant's shard */
	v_correlation_ids text[] := ARRAY[invsync.correlation_id()];
BEGIN
	FOREACH v_sku IN ARRAY invsync._skus_and_bundles(p_tenant, p_skus) LOOP
		INSERT INTO invsync.sync_queue AS q
			(tenant_id, listing_id, shop_id, force_push, correlation_ids)
		SELECT l.tenant_id, l.listing_id, l.shop_id, p_force, v_correlation_ids
		  FROM invsync.listings l
		 /*
		  * The shop by its key, from the listing: with statistics taken
		  * before the tenant's shops came, a join read every shop of the
		  * tenant through another index for each change.
		  */
		 CROSS JOIN LATERAL (SELECT s.enabled
							   FROM invsync.shops s
							  WHERE s.tenant_id = p_tenant AND s.shop_id = l.shop_id
							 OFFSET 0) s
		 WHERE l.tenant_id = p_tenant AND l.sku = v_sku
		   /* a range the index answers, unlike "p_shop IS NULL OR ..." */
		   AND l.shop_id BETWEEN coalesce(p_shop, 0) AND coalesce(p_shop, 9223372036854775807)
		   AND l.enabled AND s.enabled
		   AND (p_location IS NULL OR l.source_locations IS NULL
				OR p_location = ANY (l.source_locations))
		 ORDER BY l.listing_id
		/*
		 * Searched CASEs: Citus 13.2 evaluates a simple CASE (CASE q.state
		 * WHEN ...) in ON CONFLICT on the coordinator with its test value
		 * lost.
		 */
		ON CONFLICT (tenant_id, listing_id) DO UPDATE
			SET version = q.version + 1,
				force_push = q.force_push OR excluded.force_push,
				state = CASE WHEN q.state = 'dead' THEN 'dead' ELSE 'pending' END,
				due_at = CASE WHEN q.state = 'synced' THEN excluded.due_at ELSE q.due_at END,
				attempts = CASE WHEN q.state = 'synced' THEN 0 ELSE q.attempts END,
				changed_at = CASE WHEN q.state = 'synced' THEN excluded.changed_at
							 ELSE q.changed_at END,
				correlation_ids = CASE
									WHEN q.state = 'synced' THEN excluded.correlation_ids
									ELSE invsync._append_correlation_id(q.correlation_ids,
																		excluded.correlation_ids[1])
								  END;
		GET DIAGNOSTICS v_rows = ROW_COUNT;
		v_count := v_count + v_rows;
	END LOOP;
	IF v_count > 0 THEN
		PERFORM invsync._wake_worker();
	END IF;
	RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION invsync._is_published(p_tenant bigint, p_sku text)
	RETURNS boolean
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_sku		text;
BEGIN
	FOREACH v_sku IN ARRAY invsync._skus_and_bundles(p_tenant, ARRAY[p_sku]) LOOP
		IF EXISTS (SELECT FROM invsync.listings l
					WHERE l.tenant_id = p_tenant AND l.sku = v_sku) THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;

CREATE OR REPLACE FUNCTION invsync._mark_published(p_tenant bigint, p_skus text[])
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_sku		text;
	v_stocked	text;
BEGIN
	FOREACH v_sku IN ARRAY p_skus LOOP
		FOR v_stocked IN SELECT e.sku FROM invsync._expand_bundle(p_tenant, v_sku) e
		LOOP
			UPDATE invsync.stock_levels s
			   SET published = true
			 WHERE s.tenant_id = p_tenant AND s.sku = v_stocked AND NOT s.published;
		END LOOP;
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION invsync._listing_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_skus		text[];
BEGIN
	/*
	 * Under Citus the trigger fires on a shard, shops_<shard id>.  The
	 * skus first: a statement reading tables calls no function that does.
	 */
	IF TG_TABLE_NAME = 'shops' OR TG_TABLE_NAME LIKE 'shops\_%' THEN
		v_skus := ARRAY(SELECT l.sku FROM invsync.listings l
						 WHERE l.tenant_id = NEW.tenant_id AND l.shop_id = NEW.shop_id);
		PERFORM invsync._enqueue_skus(NEW.tenant_id, v_skus, NULL, false, NEW.shop_id);
	ELSE
		PERFORM invsync._mark_published(NEW.tenant_id, ARRAY[NEW.sku]);
		/* this listing's shop only: a stock change queues the others */
		IF TG_OP = 'UPDATE' OR NEW.created_at = pg_catalog.now() THEN
			PERFORM invsync._enqueue_skus(NEW.tenant_id, ARRAY[NEW.sku], NULL, false,
										  NEW.shop_id);
		END IF;
	END IF;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION invsync._bundles_changed(p_tenant bigint, p_bundles text[])
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_listed	text[] := ARRAY(SELECT l.sku FROM invsync.listings l
								 WHERE l.tenant_id = p_tenant AND l.sku = ANY (p_bundles));
BEGIN
	PERFORM invsync._mark_published(p_tenant, v_listed);
	PERFORM invsync._enqueue_skus(p_tenant, p_bundles, NULL);
END
$$;

CREATE OR REPLACE FUNCTION invsync.resync(p_shop bigint)
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint := invsync.current_tenant();
	v_skus		text[];
	v_count		integer;
BEGIN
	IF NOT EXISTS (SELECT FROM invsync.shops s
					WHERE s.tenant_id = v_tenant AND s.shop_id = p_shop) THEN
		RAISE EXCEPTION 'unknown shop %', p_shop USING ERRCODE = 'IV022';
	END IF;
	UPDATE invsync.sync_queue q
	   SET state = 'pending', due_at = now(), attempts = 0, lease_until = NULL
	 WHERE q.tenant_id = v_tenant AND q.shop_id = p_shop AND q.state = 'dead';
	/* the skus first: a statement reading tables calls no function that does */
	v_skus := ARRAY(SELECT l.sku FROM invsync.listings l
					 WHERE l.tenant_id = v_tenant AND l.shop_id = p_shop);
	v_count := invsync._enqueue_skus(v_tenant, v_skus, NULL, true, p_shop);
	RETURN v_count;
END
$$;
COMMENT ON FUNCTION invsync.resync(bigint) IS
	'publish every enabled listing of a shop again, whatever was published before; returns how many were queued';

/* distributing the tables, and which node's worker serves which tenants */
CREATE FUNCTION invsync._distributed_tables()
	RETURNS text[]
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN ARRAY['locations', 'items', 'bundle_components', 'bundle_leaves',
				 'bundle_versions', 'stock_levels', 'ledger', 'reservation_orders',
				 'reservations', 'idempotency_keys', 'apps', 'shops', 'listings',
				 'sync_queue', 'sync_attempts', 'marketplace_orders',
				 'webhook_inbox', 'order_fetches'];

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

CREATE FUNCTION invsync._citus_node_setup()
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_group		bigint;
	v_low		bigint;
	v_high		bigint;
	v_seq		record;
	v_fn		record;
	v_body		text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'IV035';
	END IF;
	/* these objects belong to the extension on every node: change them here only */
	PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);

	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO v_group;
	v_low := (v_group << 48) + 1;
	v_high := ((v_group + 1) << 48) - 1;
	FOR v_seq IN
		SELECT s.seqrelid::regclass AS seq, s.seqmin, s.seqmax
		  FROM pg_catalog.pg_sequence s
		  JOIN pg_catalog.pg_depend d
			ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.seqrelid
		   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
		  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'invsync'
	LOOP
		CONTINUE WHEN v_seq.seqmin = v_low AND v_seq.seqmax = v_high;
		/* a sequence used below the range starts at its beginning */
		EXECUTE pg_catalog.format('ALTER SEQUENCE %s MINVALUE %s MAXVALUE %s START WITH %s%s',
								  v_seq.seq, v_low, v_high, v_low,
								  CASE WHEN pg_catalog.pg_sequence_last_value(v_seq.seq) >= v_low
									   THEN '' ELSE ' RESTART WITH ' || v_low END);
	END LOOP;

	FOR v_fn IN
		SELECT p.proname, p.proretset,
			   pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
			   pg_catalog.pg_get_function_result(p.oid) AS result,
			   pg_catalog.pg_get_function_sqlbody(p.oid) AS body
		  FROM pg_catalog.pg_proc p
		 WHERE p.oid IN ('invsync._expand_bundle(bigint, text)'::regprocedure,
						 'invsync._listings_available(bigint, bigint[])'::regprocedure)
		   AND p.prosqlbody IS NOT NULL
	LOOP
		/* BEGIN ATOMIC <one statement>; END, as pg_get_function_sqlbody prints it */
		v_body := pg_catalog.format(E'#variable_conflict use_column\nBEGIN RETURN QUERY %s; END',
									pg_catalog.regexp_replace(v_fn.body,
										'^\s*BEGIN ATOMIC\s*(.*?);\s*END\s*$', '\1', 's'));
		EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION invsync.%I(%s) RETURNS %s'
								  ' LANGUAGE plpgsql STABLE'
								  ' SET search_path = pg_catalog, pg_temp'
								  ' SET plan_cache_mode = force_custom_plan AS %L',
								  v_fn.proname, v_fn.arguments, v_fn.result, v_body);
	END LOOP;
END
$$;
COMMENT ON FUNCTION invsync._citus_node_setup() IS
	'on a Citus node: give the extension''s sequences the node''s own id range, and the helpers the claim inlines PL/pgSQL bodies Citus can route';

CREATE FUNCTION invsync.distribute(p_shard_count integer DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_table		text;
	v_failed	text;
	v_distributed text[] := '{}';
	v_replication_role text;
	v_try		integer;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'IV035',
				  HINT = 'CREATE EXTENSION citus first, on every node, and add the worker nodes.';
	END IF;
	/*
	 * The queue tables all at once or none.  A LOCK of several tables takes
	 * them one by one, and the worker's transactions take theirs in other
	 * orders (a claim: order_fetches, then sync_queue; a recording:
	 * sync_attempts, then sync_queue): waiting for one while holding others
	 * deadlocked with a claim.  So without waiting, again after a pause,
	 * for up to 30 s.
	 */
	FOR v_try IN 1 .. 600 LOOP
		BEGIN
			LOCK TABLE invsync.apps, invsync.shops, invsync.listings, invsync.sync_queue,
				invsync.sync_attempts, invsync.order_fetches, invsync.marketplace_orders,
				invsync.webhook_inbox
				IN EXCLUSIVE MODE NOWAIT;
			EXIT;
		EXCEPTION WHEN lock_not_available THEN
			IF v_try = 600 THEN
				RAISE;
			END IF;
		END;
		PERFORM pg_catalog.pg_sleep(0.05);
	END LOOP;
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	IF p_shard_count IS NOT NULL THEN
		PERFORM pg_catalog.set_config('citus.shard_count', p_shard_count::text, true);
	END IF;
	/*
	 * Every node is prepared first.  Rows the tables already hold (a
	 * restored dump) are copied to the shards, and the shards' triggers,
	 * which pass over a loaded row (see "Rows loaded from a dump") but
	 * still call _expand_bundle, can run there only its prepared version.
	 */
	PERFORM invsync._citus_node_setup();
	SELECT r.nodename || ':' || r.nodeport || ': ' || r.result INTO v_failed
	  FROM pg_catalog.run_command_on_workers('SELECT invsync._citus_node_setup()') r
	 WHERE NOT r.success
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'could not prepare worker node %', v_failed
			USING ERRCODE = 'IV035';
	END IF;
	FOREACH v_table IN ARRAY invsync._distributed_tables()
	LOOP
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
							   WHERE p.logicalrelid = ('invsync.' || v_table)::regclass);
		PERFORM pg_catalog.create_distributed_table(
			('invsync.' || v_table)::regclass, 'tenant_id',
			colocate_with => CASE v_table WHEN 'locations' THEN 'default'
										  ELSE 'invsync.locations' END);
		v_distributed := v_distributed || v_table;
	END LOOP;
	/*
	 * Rows a table held before (a restored dump) were copied to its shards
	 * and stay on the coordinator's disk, out of sight, until truncated;
	 * only once every table is distributed, as Citus truncates no table a
	 * local one still references.  The ledger's guard against TRUNCATE (a
	 * trigger, not fired for a replica) is for its rows, which the shards
	 * now hold.
	 */
	v_replication_role := pg_catalog.current_setting('session_replication_role');
	PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
	FOREACH v_table IN ARRAY v_distributed
	LOOP
		PERFORM pg_catalog.truncate_local_data_after_distributing_table(
			('invsync.' || v_table)::regclass);
	END LOOP;
	PERFORM pg_catalog.set_config('session_replication_role', v_replication_role, true);
END
$$;
COMMENT ON FUNCTION invsync.distribute(integer) IS
	'on a Citus coordinator: distribute invsync''s tables by tenant_id, co-located, in foreign-key order, and prepare every node; idempotent';

/*
 * The shards of an invsync table that are on this node, as relation names
 * (Citus only: its catalogs are named only here, where they exist).  A
 * worker reads them by name where a read through the distributed table
 * would reach every node.
 */
CREATE FUNCTION invsync._local_shards(p_table text)
	RETURNS text[]
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_shards	text[];
BEGIN
	EXECUTE $q$
		SELECT array_agg(pg_catalog.format('invsync.%I', $1 || '_' || p.shardid)
						 ORDER BY p.shardid)
		  FROM pg_catalog.pg_dist_placement p
		  JOIN pg_catalog.pg_dist_shard d ON d.shardid = p.shardid
		 WHERE d.logicalrelid = pg_catalog.format('invsync.%I', $1)::regclass
		   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)$q$
	   INTO v_shards
	  USING p_table;
	RETURN coalesce(v_shards, '{}');
END
$$;
COMMENT ON FUNCTION invsync._local_shards(text) IS
	'under Citus, the names of this node''s shards of an invsync table';

/*
 * Which node's sync worker serves which tenant: the node holding the
 * tenant's shards (with a single node, or tables not distributed, that
 * node serves every tenant).  A stock change runs its triggers, and wakes
 * the worker, on that node; a shop's rows, and so its rate limit and its
 * in-flight cap, are on one node; and every statement the worker runs for
 * the tenant is on a local shard.  After a shard moves, the next claim on
 * the new node takes its rows; a row leased by the old node comes back
 * when its lease ends, and an outcome the old node records still applies
 * only at the version it claimed.
 *
 * The claim, the purge and the worker's start visit only the tenants with
 * work in this node's shards
 * (_local_ready_shops, _local_tenants_where).
 */
CREATE FUNCTION invsync._served_shops()
	RETURNS TABLE (tenant_id bigint, shop_id bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
#variable_conflict use_column
DECLARE
	v_shard		text;
BEGIN
	IF NOT invsync._citus_distributed() THEN
		RETURN QUERY
			SELECT s.tenant_id, s.shop_id FROM invsync.shops s
			 WHERE s.enabled AND s.token_state = 'ok';
		RETURN;
	END IF;
	/* read through the distributed table, every claim would scan every node */
	FOREACH v_shard IN ARRAY invsync._local_shards('shops') LOOP
		RETURN QUERY EXECUTE pg_catalog.format(
			'SELECT s.tenant_id, s.shop_id FROM %s s WHERE s.enabled AND s.token_state = %L',
			v_shard, 'ok');
	END LOOP;
END
$$;
COMMENT ON FUNCTION invsync._served_shops() IS
	'the shops whose rows this node''s sync worker serves: all of them, or under Citus those of the tenants whose shards are on this node';

/*
 * Under Citus, the shops with rows ready to claim (pending, and not leased
 * or their lease ran out) in this node's shards of the queue: each step
 * one descent of a shard's ready index, past the leased rows it meets, to
 * the next shop holding such a row, as _claim does on a single node.
 * Shops without pending rows are never read.
 */
CREATE FUNCTION invsync._local_ready_shops(p_now timestamptz)
	RETURNS TABLE (tenant_id bigint, shop_id bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_shard		text;
BEGIN
	FOREACH v_shard IN ARRAY invsync._local_shards('sync_queue') LOOP
		RETURN QUERY EXECUTE pg_catalog.format($q$
			WITH RECURSIVE ready AS (
				(SELECT q.tenant_id, q.shop_id
				   FROM %1$s q
				  WHERE q.state = 'pending' AND (q.lease_until IS NULL OR q.lease_until <= $1)
				  ORDER BY q.tenant_id, q.shop_id
				  LIMIT 1)
				UNION ALL
				SELECT n.tenant_id, n.shop_id
				  FROM ready r
				 CROSS JOIN LATERAL (
						SELECT q.tenant_id, q.shop_id
						  FROM %1$s q
						 WHERE q.state = 'pending'
						   AND (q.lease_until IS NULL OR q.lease_until <= $1)
						   AND (q.tenant_id, q.shop_id) > (r.tenant_id, r.shop_id)
						 ORDER BY q.tenant_id, q.shop_id
						 LIMIT 1) n)
			SELECT ready.tenant_id, ready.shop_id FROM ready$q$, v_shard)
			USING p_now;
	END LOOP;
END
$$;
COMMENT ON FUNCTION invsync._local_ready_shops(timestamptz) IS
	'under Citus, the shops with ready rows in this node''s shards of the sync queue';

REVOKE ALL ON FUNCTION invsync._skus_and_bundles(bigint, text[]),
	invsync._distributed_tables(), invsync._available(bigint, text, text[]),
	invsync._citus_node_setup(), invsync.distribute(integer), invsync._served_shops(),
	invsync._local_shards(text), invsync._local_ready_shops(timestamptz)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._served_shops(), invsync._local_shards(text),
	invsync._local_ready_shops(timestamptz)
	TO invsync_worker;

/* a lease that ran out is no longer in flight: no sweep clears it now */
CREATE OR REPLACE VIEW invsync.sync_status WITH (security_barrier) AS
	SELECT s.shop_id, a.channel, s.external_shop_id, s.enabled, s.token_state,
		   count(*) FILTER (WHERE q.state = 'pending') AS pending,
		   count(*) FILTER (WHERE q.state = 'pending' AND q.lease_until > now()) AS in_flight,
		   count(*) FILTER (WHERE q.state = 'pending' AND q.attempts > 0
							  AND q.last_error_class IS NOT NULL) AS failing,
		   count(*) FILTER (WHERE q.state = 'dead') AS dead,
		   now() - min(q.changed_at) FILTER (WHERE q.state = 'pending') AS oldest_pending_age,
		   max(q.pushed_at) AS last_success,
		   s.refresh_expires_at,
		   CASE
			   WHEN s.token_state = 'reauthorize' THEN 'reauthorize'
			   WHEN s.refresh_expires_at <= now() THEN 'expired'
			   WHEN s.refresh_expires_at <= now() + interval '7 days' THEN 'expires_soon'
		   END AS authorization_alert
	  FROM invsync.shops s
	  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	  LEFT JOIN invsync.sync_queue q ON q.tenant_id = s.tenant_id AND q.shop_id = s.shop_id
	 WHERE s.tenant_id = invsync.current_tenant()
	 GROUP BY s.shop_id, a.channel, s.external_shop_id, s.enabled, s.token_state,
			  s.refresh_expires_at;

/*
 * The claim visits only shops with ready rows, found from an index of the
 * pending rows, and resumes after the shop it last served.  No index
 * covers the lease, so that leasing a row is a HOT update: the claim skips
 * the leased rows it meets and takes those whose lease ran out.
 */
DROP INDEX invsync.sync_queue_due_idx;
DROP INDEX invsync.sync_queue_leased_idx;
/* room on each page for a row's lease to be a HOT version (new pages) */
ALTER TABLE invsync.sync_queue SET (fillfactor = 40);
CREATE INDEX sync_queue_ready_idx
	ON invsync.sync_queue (tenant_id, shop_id, due_at)
	WHERE state = 'pending';
/*
 * Whether invsync's tables are distributed by Citus here.  Citus's catalog
 * is named in a dynamic statement: without Citus it does not exist.
 */
CREATE FUNCTION invsync._citus_distributed()
	RETURNS boolean
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_distributed boolean;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RETURN false;
	END IF;
	EXECUTE $q$SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
							   WHERE p.logicalrelid = 'invsync.sync_queue'::regclass)$q$
	   INTO v_distributed;
	RETURN v_distributed;
END
$$;


/*
 * Lease the rows _claim_shop locked, at the addresses it locked them at
 * (p_rows), with their levels, or settle those whose level was already
 * published (p_settle); return the leased rows with their ordinals in the
 * arrays.  In C (worker_direct.c): the rows are written directly where
 * SQL would check nothing more, else by a statement, by key under Citus
 * (a row address means nothing off its shard).  The settings shape that
 * statement's plan.
 */
CREATE FUNCTION invsync._lease_claimed(p_now timestamptz, p_lease_until timestamptz,
									   p_tenant bigint, p_listings bigint[], p_rows tid[],
									   p_levels bigint[], p_settle boolean[])
	RETURNS TABLE (ordinal bigint, listing_id bigint, version bigint,
				   target_level bigint, attempts integer, correlation_ids text[])
	LANGUAGE C STRICT
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off
	SET enable_nestloop = on
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET jit = off
	SET plan_cache_mode = force_custom_plan
	AS 'MODULE_PATHNAME', 'invsync_lease_claimed';

/*
 * The levels of the rows _claim_shop locked, in the order the worker
 * batches them, as one row of arrays: by index probes where the worker
 * may read directly, else by one statement through _listings_available
 * (src/worker_direct.c, which holds it).  Called in a statement of its
 * own, after the rows are locked (see _claim_shop).
 */
CREATE FUNCTION invsync._claim_levels(p_tenant bigint, p_shop bigint, p_listings bigint[],
									  p_rows tid[], p_force_pushes boolean[],
									  p_pushed_levels bigint[],
									  OUT listing_ids bigint[], OUT row_ids tid[],
									  OUT levels bigint[], OUT unchanged boolean[],
									  OUT external_ids jsonb[], OUT sibling_keys text[],
									  OUT grouped boolean)
	RETURNS record
	LANGUAGE C STRICT
	AS 'MODULE_PATHNAME', 'invsync_claim_levels';

/*
 * Claim one shop's due rows, at most p_limit of them and never half a
 * sibling group (listings the marketplace wants in one call: TikTok lists
 * every warehouse of a SKU), and return the rows to push in the order the
 * worker batches them.  Every statement names the tenant: under Citus each
 * runs on the shard that holds it.
 *
 * The levels are computed after the rows are locked, by a statement of
 * their own: its snapshot includes every transaction that changed stock
 * before our lock, and any later one must wait for our lock to bump the
 * version, so the level pushed is never older than the version claimed.
 * Rows whose level equals the one already published are settled here
 * without a call.
 */
CREATE FUNCTION invsync._claim_shop(p_now timestamptz, p_lease interval, p_tenant bigint,
									p_shop bigint, p_channel text, p_limit integer)
	RETURNS TABLE (tenant_id bigint, listing_id bigint, shop_id bigint,
				   version bigint, target_level bigint, attempts integer,
				   correlation_ids text[], channel text,
				   external_ids jsonb, sibling_key text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	/*
	 * Every row read is reached by key, from the shop or from the rows
	 * claimed (LATERAL lookups): a plan made from the statistics of a small
	 * or empty table would otherwise scan it.  So the plans hold for any
	 * statistics and any number of rows, and _claim makes them generic.
	 * Each listing's stock is looked up once: no cache of lookups (a
	 * Memoize node only costs its hashing).
	 */
	SET enable_seqscan = off
	SET enable_memoize = off
	SET jit = off
	AS $$
DECLARE
	v_listings	bigint[];
	v_rows		tid[];			/* where each is, locked (_lease_claimed) */
	v_grouped	boolean;
	v_members	bigint[];
	v_member_keys text[];
	v_waiting	text[];
	/* the queue's, as locked: no one else changes them while we hold the rows */
	v_force_pushes boolean[];
	v_pushed_levels bigint[];	/* -1 for none: levels are never negative */
	v_levels	bigint[];
	v_unchanged boolean[];
	v_external_ids jsonb[];
	v_sibling_keys text[];
	/* values, not expressions: Citus allows no STABLE call inside a CASE */
	v_lease_until timestamptz := p_now + p_lease;
	v_wait_until timestamptz := p_now + interval '250 milliseconds';
BEGIN
	SELECT array_agg(c.listing_id), array_agg(c.ctid), array_agg(c.force_push),
		   array_agg(coalesce(c.pushed_level, -1))
	  INTO v_listings, v_rows, v_force_pushes, v_pushed_levels
	  FROM (SELECT q.listing_id, q.ctid, q.force_push, q.pushed_level
			  FROM invsync.sync_queue q
			 WHERE q.tenant_id = p_tenant AND q.shop_id = p_shop
			   AND q.state = 'pending' AND q.due_at <= p_now
			   AND (q.lease_until IS NULL OR q.lease_until <= p_now)
			 ORDER BY q.due_at
			 LIMIT p_limit
			   FOR UPDATE SKIP LOCKED) c;
	IF v_listings IS NULL THEN
		RETURN;
	END IF;

	/*
	 * A new statement, so a new snapshot (see above).  Rows whose level is
	 * already published, and whose siblings' are too, come back unchanged.
	 * Grouped: a row's listing has a sibling key and its group is more than
	 * the listing itself, enabled.  A group of one (TikTok's usual SKU in
	 * one warehouse) is claimed as it was picked, without the group
	 * statements below (a sixth of such a claim).
	 */
	SELECT c.listing_ids, c.row_ids, c.levels, c.unchanged, c.external_ids,
		   c.sibling_keys, c.grouped
	  INTO v_listings, v_rows, v_levels, v_unchanged, v_external_ids, v_sibling_keys,
		   v_grouped
	  FROM invsync._claim_levels(p_tenant, p_shop, v_listings, v_rows, v_force_pushes,
								 v_pushed_levels) c;

	/*
	 * Siblings are claimed with the row that needs them, all or none.  A
	 * group with a member another transaction has locked, or leased to a
	 * request in flight, is left for a later claim: its picked rows wait a
	 * moment rather than be picked again at once.
	 */
	IF v_grouped THEN
		/* every enabled listing of the picked rows' groups */
		SELECT array_agg(l.listing_id), array_agg(l.sibling_key)
		  INTO v_members, v_member_keys
		  FROM invsync.listings l
		 WHERE l.tenant_id = p_tenant AND l.shop_id = p_shop AND l.enabled
		   AND l.sibling_key IN (SELECT p.sibling_key
								   FROM invsync.listings p
								  WHERE p.tenant_id = p_tenant
									AND p.listing_id = ANY (v_listings)
									AND p.sibling_key IS NOT NULL);

		/*
		 * The members no one else holds are locked; a group with a member
		 * not locked waits.  One pass over the members: matching them
		 * against the array of those locked took the square of the claim.
		 */
		SELECT coalesce(array_agg(DISTINCT m.sibling_key)
							FILTER (WHERE k.listing_id IS NULL), '{}')
		  INTO v_waiting
		  FROM unnest(v_members, v_member_keys) AS m (listing_id, sibling_key)
		  LEFT JOIN LATERAL (
				SELECT q.listing_id
				  FROM invsync.sync_queue q
				 WHERE q.tenant_id = p_tenant AND q.listing_id = m.listing_id
				   AND (q.lease_until IS NULL OR q.lease_until <= p_now)
				   FOR UPDATE SKIP LOCKED) k ON true;
		IF cardinality(v_waiting) > 0 THEN
			UPDATE invsync.sync_queue q
			   SET due_at = v_wait_until
			  FROM invsync.listings l
			 WHERE q.tenant_id = p_tenant AND q.listing_id = ANY (v_listings)
			   AND l.tenant_id = p_tenant AND l.listing_id = q.listing_id
			   AND l.sibling_key = ANY (v_waiting);
		END IF;

		/* the picked rows without siblings, and every member of the other groups */
		SELECT array_agg(g.listing_id), array_agg(q.ctid), array_agg(q.force_push),
			   array_agg(coalesce(q.pushed_level, -1))
		  INTO v_listings, v_rows, v_force_pushes, v_pushed_levels
		  FROM (SELECT l.listing_id
				  FROM invsync.listings l
				 WHERE l.tenant_id = p_tenant AND l.listing_id = ANY (v_listings)
				   AND l.sibling_key IS NULL
				UNION
				SELECT m.listing_id
				  FROM unnest(v_members, v_member_keys) AS m (listing_id, sibling_key)
				 WHERE m.sibling_key <> ALL (v_waiting)) g
		 CROSS JOIN LATERAL (
				SELECT q.ctid, q.force_push, q.pushed_level
				  FROM invsync.sync_queue q
				 WHERE q.tenant_id = p_tenant AND q.listing_id = g.listing_id
				OFFSET 0) q;
		IF v_listings IS NULL THEN
			RETURN;
		END IF;

		/* and their levels, in a statement after these locks */
		SELECT c.listing_ids, c.row_ids, c.levels, c.unchanged, c.external_ids,
			   c.sibling_keys
		  INTO v_listings, v_rows, v_levels, v_unchanged, v_external_ids, v_sibling_keys
		  FROM invsync._claim_levels(p_tenant, p_shop, v_listings, v_rows, v_force_pushes,
									 v_pushed_levels) c;
	END IF;

	/*
	 * The rows to push, in the order the worker batches them: the order of
	 * the arrays, in which _lease_claimed returns its rows, so no sort.
	 */
	RETURN QUERY
		SELECT p_tenant, c.listing_id, p_shop, c.version, c.target_level, c.attempts,
			   c.correlation_ids, p_channel, v_external_ids[c.ordinal],
			   v_sibling_keys[c.ordinal]
		  FROM invsync._lease_claimed(p_now, v_lease_until, p_tenant, v_listings, v_rows,
									  v_levels, v_unchanged) c;
END
$$;


DROP FUNCTION invsync._claim(timestamptz, interval, integer, integer);
/*
 * Claim due rows: per shop at most what its in-flight cap times the
 * largest batch allows, and no more than its rate limit can send within a
 * quarter of the lease, minus the rows the caller already holds of it
 * (p_held_shops, p_held_rows: the worker counts its own); so one shop's
 * backlog never starves another's and a claimed row is sent long before
 * its lease ends.  Rows come shop by shop, each shop's in the order its
 * requests batch them.
 *
 * The cost follows the rows claimed and the rows held, not the backlog nor
 * the number of shops.  The shops to visit come from the queue's ready
 * index (pending rows, by tenant, shop and due time): each step finds the
 * next shop holding a row not leased, or whose lease ran out (a worker
 * that died, a shard moved away), by one descent of the index past the
 * leased rows it meets, starting after the shop the previous claim ended
 * with (p_after_tenant, p_after_shop, the last row's) and going round
 * once, so every shop with due rows gets its turn however many shops are
 * busy.  Under Citus, where an index does not span the shards, the same
 * descents run on this node's shards of the queue (_local_ready_shops),
 * and the per-shop statements through Citus.
 */
CREATE FUNCTION invsync._claim(p_now timestamptz, p_lease interval, p_limit integer,
							   p_max_batch integer, p_after_tenant bigint DEFAULT NULL,
							   p_after_shop bigint DEFAULT NULL,
							   p_held_shops bigint[] DEFAULT NULL,
							   p_held_rows integer[] DEFAULT NULL)
	RETURNS TABLE (tenant_id bigint, listing_id bigint, shop_id bigint,
				   version bigint, target_level bigint, attempts integer,
				   correlation_ids text[], channel text,
				   external_ids jsonb, sibling_key text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	/*
	 * Its statements read by key or along an index; a plan made while the
	 * queue was small would scan and sort it whole at every step.  Planned
	 * once per session (with _claim_shop's statements): planning afresh
	 * cost more than a small claim.  Not under Citus, which routes a
	 * statement to its tenant's shard only when it sees the tenant's value.
	 */
	SET enable_seqscan = off
	SET jit = off
	SET plan_cache_mode = force_generic_plan
	AS $$
DECLARE
	/* before every (tenant, shop): shop ids are positive */
	v_first		CONSTANT bigint := -9223372036854775808;
	v_tenant	bigint := coalesce(p_after_tenant, v_first);
	v_shop		bigint := coalesce(p_after_shop, v_first);
	v_wrapped	boolean := p_after_tenant IS NULL;
	v_served	bigint[][];
	v_next		integer := 1;
	v_claimed	integer := 0;
	v_rows		integer;
	v_shop_row	record;
	v_refusal	text;
	v_free		integer;
BEGIN
	IF invsync._citus_distributed() THEN
		/* until the function returns: the setting is one of its own */
		PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
		v_served := ARRAY(SELECT ARRAY[r.tenant_id, r.shop_id]
							FROM invsync._local_ready_shops(p_now) r
						   ORDER BY (r.tenant_id, r.shop_id) <= (v_tenant, v_shop),
									r.tenant_id, r.shop_id);
	END IF;

	WHILE v_claimed < p_limit LOOP
		IF v_served IS NOT NULL THEN
			EXIT WHEN v_next > coalesce(array_length(v_served, 1), 0);
			v_tenant := v_served[v_next][1];
			v_shop := v_served[v_next][2];
			v_next := v_next + 1;
		ELSE
			SELECT q.tenant_id, q.shop_id INTO v_tenant, v_shop
			  FROM invsync.sync_queue q
			 WHERE q.state = 'pending'
			   AND (q.lease_until IS NULL OR q.lease_until <= p_now)
			   AND (q.tenant_id, q.shop_id) > (v_tenant, v_shop)
			 ORDER BY q.tenant_id, q.shop_id
			 LIMIT 1;
			IF NOT FOUND THEN
				EXIT WHEN v_wrapped;
				v_wrapped := true;
				v_tenant := v_first;
				v_shop := v_first;
				CONTINUE;
			END IF;
			/* round once: past the starting shop again, every shop had its turn */
			EXIT WHEN v_wrapped AND p_after_tenant IS NOT NULL
				AND (v_tenant, v_shop) > (p_after_tenant, p_after_shop);
		END IF;

		SELECT s.enabled AND s.token_state = 'ok' AS ready, a.channel,
			   least(s.max_in_flight * p_max_batch,
					 ceil(s.rate_limit_per_sec * extract(epoch FROM p_lease) / 4))::integer
			   AS cap,
			   a.base_url, a.auth_base_url
		  INTO v_shop_row
		  FROM invsync.shops s
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		 WHERE s.tenant_id = v_tenant AND s.shop_id = v_shop;
		CONTINUE WHEN NOT coalesce(v_shop_row.ready, false);

		/*
		 * No row goes to a base URL the worker may not use now: plain http
		 * while invsync.allow_insecure_http is off, or a malformed one
		 * (stored while the setting was on, or written past the check on
		 * apps).  The shop's due rows become dead letters carrying the
		 * reason; retry_dead() sends them once the URL is fixed.
		 */
		v_refusal := coalesce(invsync._base_url_refusal(v_shop_row.base_url),
							  invsync._base_url_refusal(v_shop_row.auth_base_url));
		IF v_refusal IS NOT NULL THEN
			UPDATE invsync.sync_queue q
			   SET state = 'dead', last_error_class = 'base_url', last_error = v_refusal
			  FROM (SELECT r.listing_id
					  FROM invsync.sync_queue r
					 WHERE r.tenant_id = v_tenant AND r.shop_id = v_shop
					   AND r.state = 'pending' AND r.due_at <= p_now
					   AND (r.lease_until IS NULL OR r.lease_until <= p_now)
					 ORDER BY r.listing_id
					   FOR UPDATE SKIP LOCKED) d
			 WHERE q.tenant_id = v_tenant AND q.listing_id = d.listing_id;
			CONTINUE;
		END IF;

		v_free := v_shop_row.cap
			- coalesce((SELECT sum(h.held)
						  FROM unnest(p_held_shops, p_held_rows) AS h (shop_id, held)
						 WHERE h.shop_id = v_shop), 0)::integer;
		CONTINUE WHEN v_free <= 0;

		RETURN QUERY
			SELECT * FROM invsync._claim_shop(p_now, p_lease, v_tenant, v_shop,
											  v_shop_row.channel,
											  least(v_free, p_limit - v_claimed));
		GET DIAGNOSTICS v_rows = ROW_COUNT;
		v_claimed := v_claimed + v_rows;
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION invsync._claim(timestamptz, interval, integer, integer, bigint, bigint, bigint[], integer[]),
	invsync._claim_shop(timestamptz, interval, bigint, bigint, text, integer),
	invsync._lease_claimed(timestamptz, timestamptz, bigint, bigint[], tid[], bigint[], boolean[]),
	invsync._claim_levels(bigint, bigint, bigint[], tid[], boolean[], bigint[]),
	invsync._citus_distributed()
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._claim(timestamptz, interval, integer, integer, bigint, bigint, bigint[], integer[]),
	invsync._claim_shop(timestamptz, interval, bigint, bigint, text, integer),
	invsync._lease_claimed(timestamptz, timestamptz, bigint, bigint[], tid[], bigint[], boolean[]),
	invsync._claim_levels(bigint, bigint, bigint[], tid[], boolean[], bigint[]),
	invsync._citus_distributed()
	TO invsync_worker;
REVOKE ALL ON FUNCTION invsync._listings_available(bigint, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._listings_available(bigint, bigint[]) TO invsync_worker;

CREATE OR REPLACE FUNCTION invsync.handle_webhook(p_channel text, p_headers jsonb, p_body text,
									   p_url text DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_push		record;
	v_shop		record;
	v_verified	integer := 0;
	v_candidates integer := 0;
	v_key		text;
	v_status	text := 'duplicate';
	v_listings	bigint[];
	v_result	jsonb;
	v_shops		jsonb := '[]';
	v_inserted	boolean;
BEGIN
	IF p_headers IS NOT NULL AND (jsonb_typeof(p_headers) <> 'object'
								  OR invsync._raw_size(p_headers) > 65536) THEN
		RAISE EXCEPTION 'malformed push headers'
			USING ERRCODE = 'IV031',
				  DETAIL = 'Headers are a JSON object of name: value, of at most 64 kB.';
	END IF;
	SELECT * INTO v_push FROM invsync._webhook_read(p_channel, p_body);
	v_key := coalesce(v_push.event_key,
					  v_push.event_type || ':' || encode(sha256(convert_to(p_body, 'UTF8')), 'hex'));

	/* an app-level push names no shop: it is checked, then ignored */
	IF v_push.shop_key IS NULL THEN
		IF NOT EXISTS (SELECT FROM invsync.apps a
						WHERE a.channel = p_channel
						  AND invsync._webhook_verify(p_channel, a.app_key,
													  coalesce(a.push_secret, a.app_secret),
													  p_url, p_headers, p_body)) THEN
			RAISE EXCEPTION 'the push is not signed by any % app', p_channel
				USING ERRCODE = 'IV030';
		END IF;
		RETURN jsonb_build_object('status', 'ignored', 'event_key', v_key);
	END IF;

	FOR v_shop IN
		SELECT s.tenant_id, s.shop_id, a.app_key,
			   coalesce(a.push_secret, a.app_secret) AS secret
		  FROM invsync.shops s
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		 WHERE coalesce(s.push_shop_id, s.external_shop_id) = v_push.shop_key
		   AND a.channel = p_channel
		 ORDER BY s.tenant_id, s.shop_id
	LOOP
		v_candidates := v_candidates + 1;
		CONTINUE WHEN NOT invsync._webhook_verify(p_channel, v_shop.app_key, v_shop.secret,
												  p_url, p_headers, p_body);
		v_verified := v_verified + 1;

		v_listings := NULL;
		IF v_push.kind = 'stock' THEN
			SELECT array_agg(l.listing_id ORDER BY l.listing_id) INTO v_listings
			  FROM invsync.listings l
			 WHERE l.tenant_id = v_shop.tenant_id AND l.shop_id = v_shop.shop_id
			   AND l.external_ids @> v_push.ids;
		END IF;
		INSERT INTO invsync.webhook_inbox
			(tenant_id, shop_id, event_key, channel, kind, event_type, order_id, status,
			 update_time, listing_ids, body, correlation_id)
		VALUES (v_shop.tenant_id, v_shop.shop_id, v_key, p_channel, v_push.kind,
				v_push.event_type, v_push.order_id, v_push.status,
				to_timestamp(v_push.update_time), v_listings, p_body,
				invsync.correlation_id())
		ON CONFLICT (tenant_id, shop_id, event_key) DO NOTHING
		RETURNING true INTO v_inserted;
		v_shops := v_shops || jsonb_build_object('tenant', v_shop.tenant_id,
												 'shop_id', v_shop.shop_id);
		CONTINUE WHEN v_inserted IS NULL;

		v_status := CASE v_push.kind WHEN 'ignored' THEN 'ignored' ELSE 'accepted' END;
		IF v_push.kind = 'order' THEN
			/* the status takes effect at once if the lines are known */
			PERFORM invsync._apply_order(v_shop.tenant_id, v_shop.shop_id, v_push.order_id,
										 v_push.status, to_timestamp(v_push.update_time),
										 NULL);
			IF NOT EXISTS (SELECT FROM invsync.marketplace_orders o
							WHERE o.tenant_id = v_shop.tenant_id AND o.shop_id = v_shop.shop_id
							  AND o.order_id = v_push.order_id AND o.lines IS NOT NULL) THEN
				INSERT INTO invsync.order_fetches AS f
					(tenant_id, shop_id, order_id, correlation_ids)
				VALUES (v_shop.tenant_id, v_shop.shop_id, v_push.order_id,
						ARRAY[invsync.correlation_id()])
				/* searched CASEs: Citus 13.2 deparses a simple one wrongly here */
				ON CONFLICT (tenant_id, shop_id, order_id) DO UPDATE
					SET version = f.version + 1,
						state = CASE WHEN f.state = 'dead' THEN 'dead' ELSE 'pending' END,
						due_at = CASE WHEN f.state = 'done' THEN excluded.due_at ELSE f.due_at END,
						attempts = CASE WHEN f.state = 'done' THEN 0 ELSE f.attempts END,
						correlation_ids = invsync._append_correlation_id(f.correlation_ids,
																		 excluded.correlation_ids[1]);
				PERFORM invsync._wake_worker();
			END IF;
		ELSIF v_push.kind = 'stock' AND v_listings IS NOT NULL THEN
			PERFORM invsync._enqueue_skus(v_shop.tenant_id,
										  ARRAY(SELECT l.sku FROM invsync.listings l
												 WHERE l.tenant_id = v_shop.tenant_id
												   AND l.listing_id = ANY (v_listings)),
										  NULL, true, v_shop.shop_id);
		END IF;
	END LOOP;

	IF v_candidates = 0 THEN
		RAISE EXCEPTION 'no % shop "%"', p_channel, invsync._clip(v_push.shop_key)
			USING ERRCODE = 'IV033',
				  HINT = 'Shops are found by shops.push_shop_id, or by external_shop_id when it is NULL.';
	ELSIF v_verified = 0 THEN
		RAISE EXCEPTION 'the push is not signed by the shop''s app'
			USING ERRCODE = 'IV030';
	END IF;
	RETURN jsonb_build_object('status', v_status, 'event_key', v_key, 'event', v_push.kind,
							  'shops', v_shops);
END
$$;
REVOKE ALL ON FUNCTION invsync._enqueue_skus(bigint, text[], text, boolean, bigint) FROM PUBLIC;

/*
 * Record what became of a batch of claimed rows, and the attempts that
 * produced it.  An outcome applies only if the row is still claimed at the
 * version pushed (compare-and-set): ok makes it synced, or pending again at
 * once when a newer version came in meanwhile; retry makes it pending, due
 * after the worker's backoff; dead makes it a dead letter.  Rows are locked
 * with SKIP LOCKED, which never waits, so the worker never waits on (nor
 * deadlocks with) an application transaction that is queueing a change:
 * the keys of rows it could not lock are returned, and the worker records
 * them again a moment later.  An outcome whose row is gone (its listing
 * deleted meanwhile) has nothing to record and is not returned.
 *
 * Each outcome costs one index probe and one update by row address,
 * whatever the size of the queue or of the batch: the lock is a lateral
 * subquery per outcome (a locking subquery is never flattened into a join
 * that could scan the queue), and the update finds each locked row by its
 * ctid, which the lock keeps from changing.  Those plans do not depend on
 * the arrays' sizes, so they are generic, planned once per session.  Under
 * Citus, where a row address means nothing off its shard and a statement
 * reaches a shard only by naming its tenant, _record_batch_by_key records
 * instead.
 */
CREATE OR REPLACE FUNCTION invsync._record_batch(p_outcomes invsync.worker_outcome[],
									  p_attempts invsync.worker_attempt[],
									  p_now timestamptz)
	RETURNS TABLE (tenant_id bigint, listing_id bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET plan_cache_mode = force_generic_plan
	/*
	 * The generic plans may be made while the queue looks small (analyzed
	 * empty, then filled in one commit): a sequential scan hashed against
	 * the outcomes would then read the whole queue at every recording.
	 */
	SET enable_seqscan = off
	SET jit = off
	AS $$
DECLARE
	v_rows		tid[];
	v_locked	invsync.worker_outcome[];
	v_held_tenants bigint[];
	v_held_listings bigint[];
BEGIN
	IF invsync._citus_distributed() THEN
		/*
		 * Citus routes only a plan made for the values; until the function
		 * returns (the setting is one of its own).  The rows made here go
		 * to their tenants' shards.
		 */
		PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
	END IF;
	INSERT INTO invsync.sync_attempts
		(tenant_id, shop_id, channel, kind, listing_ids, versions, levels,
		 correlation_id, request_url, http_status, outcome, error_class,
		 error_message, marketplace_request_id, latency_ms, started_at)
	SELECT a.tenant_id, a.shop_id, a.channel, a.kind, a.listing_ids, a.versions,
		   a.levels, a.correlation_id, a.request_url, a.http_status, a.outcome,
		   a.error_class, a.error_message, a.marketplace_request_id, a.latency_ms,
		   a.started_at
	  FROM pg_catalog.unnest(p_attempts) AS a;

	IF invsync._citus_distributed() THEN
		RETURN QUERY
			SELECT b.tenant_id, b.listing_id
			  FROM invsync._record_batch_by_key(p_outcomes, p_now) b;
		RETURN;
	END IF;

	SELECT pg_catalog.array_agg(l.ctid) FILTER (WHERE l.ctid IS NOT NULL),
		   pg_catalog.array_agg(o) FILTER (WHERE l.ctid IS NOT NULL),
		   pg_catalog.array_agg(o.tenant_id) FILTER (WHERE l.ctid IS NULL),
		   pg_catalog.array_agg(o.listing_id) FILTER (WHERE l.ctid IS NULL)
	  INTO v_rows, v_locked, v_held_tenants, v_held_listings
	  FROM pg_catalog.unnest(p_outcomes) AS o
	  LEFT JOIN LATERAL (
			SELECT q.ctid
			  FROM invsync.sync_queue q
			 WHERE q.tenant_id OPERATOR(pg_catalog.=) o.tenant_id
			   AND q.listing_id OPERATOR(pg_catalog.=) o.listing_id
			   FOR UPDATE SKIP LOCKED) l ON true;

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
	  FROM unnest(v_rows, v_locked) AS o (row_id, tenant_id, listing_id, version, level,
										   outcome, due_in_ms, error_class, error)
	 WHERE q.ctid = o.row_id
	   AND q.claimed_version = o.version AND q.lease_until IS NOT NULL;

	RETURN QUERY
		SELECT h.tenant_id, h.listing_id
		  FROM unnest(v_held_tenants, v_held_listings) AS h (tenant_id, listing_id)
		 WHERE EXISTS (SELECT FROM invsync.sync_queue q
						WHERE q.tenant_id = h.tenant_id AND q.listing_id = h.listing_id);
END
$$;

/* listings by sku within a shop, for _enqueue_skus */
DROP INDEX invsync.listings_sku_idx;
CREATE INDEX listings_sku_idx ON invsync.listings (tenant_id, sku, shop_id);

/*
 * 0.5 on Citus: every statement of the sync worker names its tenant as a
 * value (PL/pgSQL, per tenant), so that Citus routes it to the shard.
 */

/*
 * _record_batch under Citus: the same outcomes, recorded tenant by tenant,
 * each statement naming its tenant so that it runs on the tenant's shard.
 * The tenant's rows are locked in one statement (SKIP LOCKED, as in
 * _record_batch), then each is updated by its key; the keys of rows
 * someone else held are returned.  Custom plans: Citus routes a plan that
 * sees the tenant's value (_record_batch's plans are generic).
 */
CREATE FUNCTION invsync._record_batch_by_key(p_outcomes invsync.worker_outcome[],
											 p_now timestamptz)
	RETURNS TABLE (tenant_id bigint, listing_id bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET plan_cache_mode = force_custom_plan
	AS $$
DECLARE
	v_tenant	bigint;
	v_listings	bigint[];
	v_locked	bigint[];
	v_held		bigint[];
	v_versions	bigint[];
	v_levels	bigint[];
	v_results	text[];
	v_due_ats	timestamptz[];
	v_error_classes text[];
	v_errors	text[];
BEGIN
	FOR v_tenant, v_listings IN
		SELECT o.tenant_id, pg_catalog.array_agg(o.listing_id)
		  FROM pg_catalog.unnest(p_outcomes) AS o
		 GROUP BY o.tenant_id
	LOOP
		v_locked := ARRAY(SELECT q.listing_id
							FROM invsync.sync_queue q
						   WHERE q.tenant_id = v_tenant AND q.listing_id = ANY (v_listings)
							 FOR UPDATE SKIP LOCKED);

		/*
		 * The outcomes of the rows locked here, as arrays of values: Citus
		 * allows no STABLE call on a column in an UPDATE (the due time),
		 * and the UPDATE goes whole to the tenant's shard.
		 */
		SELECT pg_catalog.array_agg(o.listing_id), pg_catalog.array_agg(o.version),
			   pg_catalog.array_agg(o.level), pg_catalog.array_agg(o.outcome),
			   pg_catalog.array_agg(p_now + o.due_in_ms * interval '1 millisecond'),
			   pg_catalog.array_agg(o.error_class), pg_catalog.array_agg(o.error)
		  INTO v_locked, v_versions, v_levels, v_results, v_due_ats, v_error_classes,
			   v_errors
		  FROM pg_catalog.unnest(p_outcomes) AS o
		 WHERE o.tenant_id = v_tenant AND o.listing_id = ANY (v_locked);

		IF v_locked IS NOT NULL THEN
			UPDATE invsync.sync_queue q
			   SET lease_until = NULL,
				   state = CASE
							 WHEN o.outcome = 'dead' THEN 'dead'
							 WHEN o.outcome = 'ok' AND q.version = o.version THEN 'synced'
							 ELSE 'pending'
						   END,
				   due_at = o.due_at,
				   attempts = CASE WHEN o.outcome = 'ok' THEN 0 ELSE q.attempts END,
				   force_push = q.force_push AND o.outcome <> 'ok',
				   pushed_level = CASE WHEN o.outcome = 'ok' THEN o.level
								  ELSE q.pushed_level END,
				   pushed_version = CASE WHEN o.outcome = 'ok' THEN o.version
									ELSE q.pushed_version END,
				   pushed_at = CASE WHEN o.outcome = 'ok' THEN p_now ELSE q.pushed_at END,
				   changed_at = CASE
								  WHEN o.outcome = 'ok' AND q.version = o.version THEN p_now
								  ELSE q.changed_at
								END,
				   correlation_ids = CASE
									   WHEN o.outcome = 'ok' AND q.version = o.version
									   THEN '{}'
									   ELSE q.correlation_ids
									 END,
				   last_error_class = CASE WHEN o.outcome = 'ok' THEN NULL
									  ELSE o.error_class END,
				   last_error = CASE WHEN o.outcome = 'ok' THEN NULL ELSE o.error END
			  FROM unnest(v_locked, v_versions, v_levels, v_results, v_due_ats,
						  v_error_classes, v_errors)
					 AS o (listing_id, version, level, outcome, due_at, error_class, error)
			 WHERE q.tenant_id = v_tenant AND q.listing_id = o.listing_id
			   AND q.claimed_version = o.version AND q.lease_until IS NOT NULL;
		END IF;

		v_held := ARRAY(SELECT pg_catalog.unnest(v_listings)
						EXCEPT
						SELECT pg_catalog.unnest(v_locked));
		CONTINUE WHEN cardinality(v_held) = 0;
		RETURN QUERY
			SELECT q.tenant_id, q.listing_id
			  FROM invsync.sync_queue q
			 WHERE q.tenant_id = v_tenant AND q.listing_id = ANY (v_held);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION invsync._record_batch_by_key(invsync.worker_outcome[], timestamptz)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._record_batch_by_key(invsync.worker_outcome[], timestamptz)
	TO invsync_worker;

/*
 * At worker start: rows and refresh leases a previous incarnation held can
 * be claimed again once any request it had sent has timed out.  Under
 * Citus, only the rows of the tenants this node serves (_served_shops),
 * one tenant a statement: the other nodes' workers are running and hold
 * their own leases.  A tenant none of whose shops is served now keeps its
 * leases until they run out.
 */
CREATE OR REPLACE FUNCTION invsync._worker_started(p_now timestamptz, p_grace interval)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint;
	v_until		timestamptz := p_now + p_grace;
BEGIN
	IF invsync._citus_distributed() THEN
		FOR v_tenant IN
			SELECT t FROM invsync._local_tenants_where('sync_queue', 'lease_until > $1', v_until) t
			UNION
			SELECT t FROM invsync._local_tenants_where('shops', 'refresh_lease_until > $1',
													   v_until) t
		LOOP
			UPDATE invsync.sync_queue q
			   SET lease_until = v_until
			 WHERE q.tenant_id = v_tenant AND q.lease_until > v_until;
			UPDATE invsync.shops s
			   SET refresh_lease_until = v_until
			 WHERE s.tenant_id = v_tenant AND s.refresh_lease_until > v_until;
		END LOOP;
		RETURN;
	END IF;
	UPDATE invsync.sync_queue q
	   SET lease_until = p_now + p_grace
	 WHERE q.lease_until > p_now + p_grace;
	UPDATE invsync.shops s
	   SET refresh_lease_until = p_now + p_grace
	 WHERE s.refresh_lease_until > p_now + p_grace;
END
$$;

/*
 * Hand a claimed row back untouched (worker shutting down, shop paused).
 * PL/pgSQL, as every function of the worker reading a table: Citus routes
 * no statement of a SQL function.
 */
CREATE OR REPLACE FUNCTION invsync._release_claim(p_tenant bigint, p_listing bigint,
									   p_claimed_version bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	UPDATE invsync.sync_queue q
	   SET lease_until = NULL, attempts = greatest(q.attempts - 1, 0)
	 WHERE q.tenant_id = p_tenant AND q.listing_id = p_listing
	   AND q.claimed_version = p_claimed_version AND q.lease_until IS NOT NULL;
END
$$;

/*
 * Token refresh, in two transactions around the HTTP call.  Taking the
 * refresh lease is the per-shop lock: only the holder may spend the refresh
 * token it read, and the new tokens are stored only if the refresh token is
 * still the one spent (compare-and-set), so two processes never spend one
 * refresh token.  The worker never waits for a shop row someone else holds
 * (SKIP LOCKED): no lease this time, or a change it writes later.
 * PL/pgSQL, so that Citus routes the statements to the tenant's shard.
 */
CREATE OR REPLACE FUNCTION invsync._take_refresh_lease(p_tenant bigint, p_shop bigint,
											p_now timestamptz, p_lease interval)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_refresh_token text;
BEGIN
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
	RETURNING s.refresh_token INTO v_refresh_token;
	RETURN v_refresh_token;
END
$$;

/*
 * The credentials of a shop, for the worker only.  PL/pgSQL: Citus routes
 * no statement of a SQL function that reads a distributed table.
 */
CREATE OR REPLACE FUNCTION invsync._shop_context(p_tenant bigint, p_shop bigint)
	RETURNS TABLE (channel text, external_shop_id text, region text,
				   app_key text, app_secret text, access_token text,
				   refresh_token text, base_url text, uses_locations boolean,
				   rate_limit_per_sec double precision, max_in_flight integer,
				   access_expires_at timestamptz, token_state text,
				   auth_base_url text, batch_size integer)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	RETURN QUERY
		SELECT a.channel, s.external_shop_id, s.region, a.app_key, a.app_secret,
			   s.access_token, s.refresh_token, a.base_url, s.uses_locations,
			   s.rate_limit_per_sec::double precision, s.max_in_flight,
			   s.access_expires_at, s.token_state, a.auth_base_url, a.batch_size
		  FROM invsync.shops s
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop;
END
$$;

/*
 * Delete attempts older than the retention, a bounded batch per call.
 * Under Citus, the attempts of the tenants this node serves, a tenant a
 * statement (a statement must name its tenant to reach its shard).
 */
CREATE OR REPLACE FUNCTION invsync._purge_attempts(p_cutoff timestamptz, p_limit integer)
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenant	bigint;
	v_deleted	bigint;
	v_total		bigint := 0;
	v_left		integer;
BEGIN
	IF invsync._citus_distributed() THEN
		FOR v_tenant IN
			SELECT t FROM invsync._local_tenants_where('sync_attempts', 'started_at < $1',
													   p_cutoff) t
		LOOP
			v_left := p_limit - v_total;
			EXIT WHEN v_left <= 0;
			DELETE FROM invsync.sync_attempts x
			 WHERE x.tenant_id = v_tenant AND x.attempt_id IN (
					SELECT a.attempt_id FROM invsync.sync_attempts a
					 WHERE a.tenant_id = v_tenant AND a.started_at < p_cutoff
					 LIMIT v_left);
			GET DIAGNOSTICS v_deleted = ROW_COUNT;
			v_total := v_total + v_deleted;
		END LOOP;
		RETURN v_total;
	END IF;
	DELETE FROM invsync.sync_attempts x
	 WHERE (x.tenant_id, x.attempt_id) IN (
			SELECT a.tenant_id, a.attempt_id FROM invsync.sync_attempts a
			 WHERE a.started_at < p_cutoff LIMIT p_limit);
	GET DIAGNOSTICS v_deleted = ROW_COUNT;
	RETURN v_deleted;
END
$$;

/*
 * The worker's side of order fetches, with the rules of pushes: a claim
 * takes due rows with a lease (FOR UPDATE SKIP LOCKED) and the worker
 * fetches the order over HTTP holding no transaction; the outcome is
 * recorded in a new transaction, compare-and-set on the version claimed.
 */
CREATE OR REPLACE FUNCTION invsync._claim_order_fetches(p_now timestamptz, p_lease interval,
											 p_limit integer)
	RETURNS TABLE (tenant_id bigint, shop_id bigint, order_id text, version bigint,
				   attempts integer, correlation_ids text[])
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_tenants	bigint[];
	v_tenant	bigint;
	v_share		integer;
	v_rows		integer;
	v_claimed	integer := 0;
BEGIN
	/*
	 * Under Citus, one statement per tenant with due fetches in this
	 * node's shards, each naming its tenant so that it routes to the
	 * tenant's shard (the tenant is a value in the plans there, which are
	 * made for their values); a tenant whose shops are all paused keeps its
	 * due fetches, as on a single node, and gets its statement.  Each
	 * tenant may take its share of what is left, so one tenant's backlog
	 * never keeps the others' fetches waiting.  On a single node, one
	 * statement for every tenant.
	 */
	IF invsync._citus_distributed() THEN
		v_tenants := ARRAY(SELECT t
							 FROM invsync._local_tenants_where('order_fetches',
										'state = ''pending'' AND due_at <= $1'
										' AND (lease_until IS NULL OR lease_until <= $1)',
										p_now) t
							ORDER BY t);
	ELSE
		v_tenants := ARRAY[NULL::bigint];
	END IF;
	FOR i IN 1 .. cardinality(v_tenants) LOOP
		EXIT WHEN v_claimed >= p_limit;
		v_tenant := v_tenants[i];
		v_share := ceil((p_limit - v_claimed)::numeric
						/ (cardinality(v_tenants) - i + 1))::integer;
		RETURN QUERY
			WITH picked AS (
				SELECT f.tenant_id, f.shop_id, f.order_id
				  FROM invsync.order_fetches f
				  JOIN invsync.shops s ON s.tenant_id = f.tenant_id AND s.shop_id = f.shop_id
				  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
				 WHERE (v_tenant IS NULL OR f.tenant_id = v_tenant)
				   AND f.state = 'pending' AND f.due_at <= p_now
				   AND (f.lease_until IS NULL OR f.lease_until <= p_now)
				   AND s.enabled AND s.token_state = 'ok'
				   AND invsync._base_url_refusal(a.base_url) IS NULL
				 ORDER BY f.due_at
				 LIMIT v_share
				   FOR UPDATE OF f SKIP LOCKED
			)
			UPDATE invsync.order_fetches f
			   SET lease_until = p_now + p_lease,
				   claimed_version = f.version,
				   attempts = f.attempts + 1
			  FROM picked
			 WHERE (v_tenant IS NULL OR f.tenant_id = v_tenant)
			   AND f.tenant_id = picked.tenant_id AND f.shop_id = picked.shop_id
			   AND f.order_id = picked.order_id
			RETURNING f.tenant_id, f.shop_id, f.order_id, f.version, f.attempts,
					  f.correlation_ids;
		GET DIAGNOSTICS v_rows = ROW_COUNT;
		v_claimed := v_claimed + v_rows;
	END LOOP;
END
$$;

/*
 * A stock row's published flag is set by _prepare_stock_row, which creates
 * the row; the trigger that set it could not tell, under Citus, a row
 * created through another node from one loaded from a dump.
 */
CREATE OR REPLACE FUNCTION invsync._prepare_stock_row(p_tenant bigint, p_sku text, p_location text,
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
DROP TRIGGER stock_levels_published ON invsync.stock_levels;
DROP FUNCTION invsync._stock_row_created();

/*
 * A new listing or app takes its created_at from its BEFORE INSERT trigger,
 * on the node storing it, not from a default evaluated on the node the
 * INSERT came through (see "Rows loaded from a dump" in invsync_sync.sql).
 */
ALTER TABLE invsync.apps ALTER COLUMN created_at DROP DEFAULT;
ALTER TABLE invsync.listings ALTER COLUMN created_at DROP DEFAULT;
CREATE OR REPLACE FUNCTION invsync._listings_check_ids() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_channel	text;
	v_ids_changed boolean;
	v_columns_changed boolean;
	r			record;
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.created_at <> pg_catalog.now() THEN
			RETURN NEW;
		END IF;
		NEW.created_at := pg_catalog.now();
	END IF;
	SELECT a.channel INTO v_channel
	  FROM invsync.shops s
	  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	 WHERE s.tenant_id = NEW.tenant_id AND s.shop_id = NEW.shop_id;
	IF NOT FOUND THEN
		RETURN NEW;				/* the foreign key reports it */
	END IF;
	IF TG_OP = 'INSERT' THEN
		v_ids_changed := true;
		v_columns_changed := true;
	ELSE
		v_ids_changed := NEW.external_ids IS DISTINCT FROM OLD.external_ids;
		v_columns_changed :=
			NEW.external_item_id IS DISTINCT FROM OLD.external_item_id
			OR NEW.external_model_id IS DISTINCT FROM OLD.external_model_id
			OR NEW.external_location_id IS DISTINCT FROM OLD.external_location_id;
		IF NOT v_ids_changed AND NOT v_columns_changed THEN
			v_ids_changed := true;	/* another shop: check them again */
		END IF;
	END IF;
	SELECT * INTO r
	  FROM invsync._listing_ids(v_channel, NEW.external_ids, NEW.external_item_id,
								NEW.external_model_id, NEW.external_location_id,
								v_ids_changed, v_columns_changed);
	NEW.external_ids := r.external_ids;
	NEW.external_item_id := r.item_id;
	NEW.external_model_id := r.model_id;
	NEW.external_location_id := r.location_id;
	NEW.batch_key := r.batch_key;
	NEW.sibling_key := r.sibling_key;
	RETURN NEW;
END
$$;

/* _apply_order: its correlation id a value, as Citus needs in an UPDATE */
CREATE OR REPLACE FUNCTION invsync._apply_order(p_tenant bigint, p_shop bigint, p_order_id text,
									 p_status text, p_update_time timestamptz,
									 p_lines jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_channel	text;
	v_order		invsync.marketplace_orders;
	v_effect	text;
	v_rank		integer;
	v_newer		boolean;
	v_lines		record;
	v_target	text;
	v_ref		text;
	v_key		text;
	v_recorded	boolean := false;
	v_applied	boolean := false;
	v_error		text;
	/* a value: Citus runs no UPDATE calling a volatile function */
	v_correlation_id text := invsync.correlation_id();
BEGIN
	IF p_order_id IS NULL OR length(p_order_id) NOT BETWEEN 1 AND 128 THEN
		RAISE EXCEPTION 'invalid marketplace order id'
			USING ERRCODE = 'IV006',
				  DETAIL = 'A marketplace order id is a non-empty string of at most 128 characters.';
	END IF;
	IF p_status IS NULL OR length(p_status) NOT BETWEEN 1 AND 64 OR p_update_time IS NULL THEN
		RAISE EXCEPTION 'invalid marketplace order status or update time'
			USING ERRCODE = 'IV006',
				  DETAIL = 'A status is a non-empty string of at most 64 characters, with the time it was set.';
	END IF;
	SELECT a.channel INTO v_channel
	  FROM invsync.shops s
	  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown shop %', p_shop USING ERRCODE = 'IV022';
	END IF;
	SELECT st.effect, st.rank INTO v_effect, v_rank
	  FROM invsync._order_status(v_channel, p_status) st;
	IF p_lines IS NOT NULL THEN
		v_lines := invsync._order_lines(p_tenant, p_shop, p_lines);
	END IF;

	/* one order at a time: concurrent events of one order take turns */
	INSERT INTO invsync.marketplace_orders AS o
		(tenant_id, shop_id, order_id, channel, status, status_rank, update_time,
		 correlation_id)
	VALUES (p_tenant, p_shop, p_order_id, v_channel, p_status, v_rank, p_update_time,
			v_correlation_id)
	ON CONFLICT (tenant_id, shop_id, order_id) DO NOTHING
	RETURNING true INTO v_newer;
	SELECT * INTO v_order
	  FROM invsync.marketplace_orders o
	 WHERE o.tenant_id = p_tenant AND o.shop_id = p_shop AND o.order_id = p_order_id
	   FOR UPDATE;
	v_newer := coalesce(v_newer, false)
		OR (p_update_time, v_rank) > (v_order.update_time, v_order.status_rank);

	IF NOT v_newer AND (p_lines IS NULL OR v_order.lines IS NOT NULL) THEN
		RETURN jsonb_build_object('result', 'stale', 'status', v_order.status,
								  'effect', v_order.effect);
	END IF;
	IF v_newer THEN
		v_order.status := p_status;
		v_order.status_rank := v_rank;
		v_order.update_time := p_update_time;
		v_recorded := true;
	END IF;
	/* lines from the marketplace's own order are the authority */
	IF p_lines IS NOT NULL AND (v_newer OR v_order.lines IS NULL) THEN
		v_order.lines := v_lines.lines;
		v_order.unmatched_lines := v_lines.unmatched;
		v_recorded := true;
	END IF;

	SELECT st.effect INTO v_target FROM invsync._order_status(v_channel, v_order.status) st;
	v_ref := pg_catalog.format('mp:%s:%s:%s', v_channel, p_shop, p_order_id);
	v_error := NULL;
	IF v_target <> 'none' AND v_order.lines IS NULL THEN
		v_error := 'the order''s lines are not known yet';
	ELSIF v_target <> 'none' AND jsonb_array_length(v_order.lines) = 0 THEN
		v_error := 'no line of the order matches a listing of the shop';
	ELSE
		BEGIN
			IF v_target IN ('reserve', 'fulfill') AND v_order.effect IS NULL THEN
				PERFORM invsync._reserve(p_tenant, v_ref, v_order.lines, v_ref || ':reserve');
				v_order.effect := 'reserve';
				v_applied := true;
			END IF;
			IF v_target = 'fulfill' AND v_order.effect = 'reserve' THEN
				PERFORM invsync._close_order(p_tenant, v_ref, v_ref || ':fulfill', 'fulfill');
				v_order.effect := 'fulfill';
				v_applied := true;
			ELSIF v_target = 'release' AND v_order.effect = 'reserve' THEN
				PERFORM invsync._close_order(p_tenant, v_ref, v_ref || ':release', 'release');
				v_order.effect := 'release';
				v_applied := true;
			ELSIF v_target = 'release' AND v_order.effect IS NULL THEN
				v_order.effect := 'release';	/* nothing was held */
			END IF;
		EXCEPTION WHEN SQLSTATE 'IV004' THEN
			/* the subtransaction undid a reserve that went through */
			GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
			SELECT o.effect INTO v_order.effect
			  FROM invsync.marketplace_orders o
			 WHERE o.tenant_id = p_tenant AND o.shop_id = p_shop AND o.order_id = p_order_id;
			v_applied := false;
		END;
	END IF;

	UPDATE invsync.marketplace_orders o
	   SET status = v_order.status, status_rank = v_order.status_rank,
		   update_time = v_order.update_time, effect = v_order.effect,
		   lines = v_order.lines, unmatched_lines = v_order.unmatched_lines,
		   error = v_error, correlation_id = v_correlation_id,
		   updated_at = now()
	 WHERE o.tenant_id = p_tenant AND o.shop_id = p_shop AND o.order_id = p_order_id;
	RETURN jsonb_build_object('result', CASE WHEN v_applied THEN 'applied'
											 WHEN v_recorded OR v_error IS NOT NULL THEN 'recorded'
											 ELSE 'unchanged' END,
							  'status', v_order.status, 'effect', v_order.effect,
							  'error', v_error);
END
$$;

/* _record_order_fetch: values, not STABLE calls, inside its CASEs (Citus) */
CREATE OR REPLACE FUNCTION invsync._record_order_fetch(p_tenant bigint, p_shop bigint, p_order_id text,
											p_version bigint, p_outcome text,
											p_due_in_ms bigint, p_status text,
											p_update_time timestamptz, p_lines jsonb,
											p_error_class text, p_error text,
											p_now timestamptz)
	RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_fetch		invsync.order_fetches;
	v_result	jsonb;
	v_error		text;
	v_due_at	timestamptz;
	v_last_error text;
BEGIN
	SELECT * INTO v_fetch
	  FROM invsync.order_fetches f
	 WHERE f.tenant_id = p_tenant AND f.shop_id = p_shop AND f.order_id = p_order_id
	   FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM invsync.order_fetches f
					WHERE f.tenant_id = p_tenant AND f.shop_id = p_shop
					  AND f.order_id = p_order_id) THEN
			RETURN 'locked';
		END IF;
		RETURN 'superseded';
	END IF;
	IF v_fetch.claimed_version IS DISTINCT FROM p_version OR v_fetch.lease_until IS NULL
		OR v_fetch.state <> 'pending' THEN
		RETURN 'superseded';
	END IF;

	IF p_outcome = 'ok' THEN
		/*
		 * The order's row too, without waiting: handle_webhook() locks it
		 * before it queues this fetch again, so waiting here while holding
		 * the fetch row would deadlock with a push of the same order.
		 */
		PERFORM FROM invsync.marketplace_orders o
		  WHERE o.tenant_id = p_tenant AND o.shop_id = p_shop AND o.order_id = p_order_id
			FOR UPDATE SKIP LOCKED;
		IF NOT FOUND AND EXISTS (SELECT FROM invsync.marketplace_orders o
								  WHERE o.tenant_id = p_tenant AND o.shop_id = p_shop
									AND o.order_id = p_order_id) THEN
			RETURN 'locked';
		END IF;
		PERFORM pg_catalog.set_config('invsync.correlation_id',
									  v_fetch.correlation_ids[1], true);
		BEGIN
			v_result := invsync._apply_order(p_tenant, p_shop, p_order_id, p_status,
											 p_update_time, p_lines);
		EXCEPTION WHEN SQLSTATE 'IV006' OR SQLSTATE 'IV022' THEN
			/* what the marketplace answered can never be applied */
			GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
			p_outcome := 'dead';
			p_error_class := 'invalid_order';
			p_error := v_error;
		END;
	END IF;

	/* values, not expressions: Citus allows no STABLE call inside a CASE */
	v_due_at := CASE WHEN p_outcome = 'retry'
					 THEN p_now + p_due_in_ms * interval '1 millisecond'
					 ELSE p_now END;
	v_last_error := CASE WHEN p_outcome = 'ok' THEN NULL
						 ELSE p_error_class || ': ' || coalesce(p_error, '') END;
	UPDATE invsync.order_fetches f
	   SET state = CASE
					 WHEN p_outcome = 'dead' THEN 'dead'
					 WHEN p_outcome = 'ok' AND f.version = p_version THEN 'done'
					 ELSE 'pending'
				   END,
		   lease_until = NULL,
		   due_at = v_due_at,
		   attempts = CASE WHEN p_outcome = 'ok' THEN 0 ELSE f.attempts END,
		   correlation_ids = CASE
							   WHEN p_outcome = 'ok' AND f.version = p_version THEN '{}'
							   ELSE f.correlation_ids
							 END,
		   last_error = v_last_error,
		   fetched_at = CASE WHEN p_outcome = 'ok' THEN p_now ELSE f.fetched_at END
	 WHERE f.tenant_id = p_tenant AND f.shop_id = p_shop AND f.order_id = p_order_id;
	RETURN CASE WHEN p_outcome = 'ok' THEN 'ok: ' || (v_result ->> 'result')
				ELSE p_outcome END;
END
$$;

/*
 * Under Citus, the tenants with rows in this node's shards of p_table that
 * meet p_condition (a WHERE clause over the table's columns, $1 standing
 * for p_value).  The claim of order fetches, the purge of attempts and the
 * worker's start (shortening the
 * leases it held) visit those tenants only, each with statements routed to
 * its shard: visiting every tenant the node serves cost one routed
 * statement per tenant, about 1.5 ms each, so a node serving 5,000 tenants
 * spent seconds on every claim.  Internal: its
 * callers pass constant conditions.
 */
CREATE FUNCTION invsync._local_tenants_where(p_table text, p_condition text,
											 p_value timestamptz)
	RETURNS SETOF bigint
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_shard		text;
BEGIN
	FOREACH v_shard IN ARRAY invsync._local_shards(p_table) LOOP
		RETURN QUERY EXECUTE pg_catalog.format(
			'SELECT DISTINCT t.tenant_id FROM %s t WHERE %s', v_shard, p_condition)
		  USING p_value;
	END LOOP;
END
$$;
COMMENT ON FUNCTION invsync._local_tenants_where(text, text, timestamptz) IS
	'under Citus, the tenants with rows meeting a condition in this node''s shards of an invsync table';
REVOKE ALL ON FUNCTION invsync._local_tenants_where(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._local_tenants_where(text, text, timestamptz) TO invsync_worker;

/*
 * The attempts' per-shop index: nothing of the extension reads it, and its
 * entry was a tenth of recording an outcome.
 */
DROP INDEX invsync.sync_attempts_shop_idx;

/*
 * What this server's sync worker has done since it started: one row while
 * it runs, none otherwise.  Counters of the whole server (every tenant), so
 * for the DBA (pg_monitor), not for a tenant's roles.  Two reads a few
 * seconds apart give rates, and claim_time_ms / claims the mean claim.
 */
CREATE FUNCTION invsync._worker_activity(
	OUT pid integer, OUT started_at timestamptz, OUT claims bigint,
	OUT claimed_rows bigint, OUT claim_time_ms double precision,
	OUT last_claim_at timestamptz, OUT records bigint,
	OUT recorded_outcomes bigint, OUT record_time_ms double precision,
	OUT requests bigint, OUT in_flight integer, OUT cached_shops integer)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'invsync_worker_activity'
	LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION invsync._worker_activity() IS
	'the sync worker''s counters as it last published them (after each claim and record transaction)';

CREATE VIEW invsync.worker_activity AS
	SELECT pid, started_at, claims, claimed_rows, claim_time_ms, last_claim_at,
		   records, recorded_outcomes, record_time_ms, requests, in_flight, cached_shops
	  FROM invsync._worker_activity();
COMMENT ON VIEW invsync.worker_activity IS
	'this server''s sync worker since it started: claim transactions, rows claimed and their time (commit included), record transactions, outcomes recorded and their time, requests finished, requests in flight, shops held in memory (those at work, paused or with a change to write)';
REVOKE ALL ON FUNCTION invsync._worker_activity() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._worker_activity() TO pg_monitor;
GRANT SELECT ON invsync.worker_activity TO pg_monitor;
