/*
 * invsync--0.4--0.5.sql
 *	  Upgrade from 0.4: a claim and an enqueue path whose cost follows the
 *	  rows they touch, not the backlog or the number of shops; and what
 *	  invsync needs to run on Citus, distributed by tenant_id.
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.5'" to load this file. \quit

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
			   sum(l.on_hand_change) AS on_hand, sum(l.reserved_change) AS reserved,
			   max(l.ledger_id) AS last_id
		  FROM invsync.ledger l
		 WHERE v_all OR l.tenant_id = v_tenant
		 GROUP BY l.tenant_id, l.sku, l.location
	)
	SELECT coalesce(s.tenant_id, m.tenant_id), coalesce(s.sku, m.sku),
		   coalesce(s.location, m.location), s.on_hand, s.reserved,
		   m.on_hand, m.reserved, last.on_hand_after, last.reserved_after
	  FROM (SELECT * FROM invsync.stock_levels x
			 WHERE v_all OR x.tenant_id = v_tenant) s
	  FULL JOIN sums m
		ON m.tenant_id = s.tenant_id AND m.sku = s.sku AND m.location = s.location
	  LEFT JOIN invsync.ledger last
		ON last.tenant_id = m.tenant_id AND last.ledger_id = m.last_id
	 WHERE s.on_hand IS DISTINCT FROM m.on_hand
		OR s.reserved IS DISTINCT FROM m.reserved
		OR s.on_hand IS DISTINCT FROM last.on_hand_after
		OR s.reserved IS DISTINCT FROM last.reserved_after
	 ORDER BY 1, 2, 3;
END
$$;
COMMENT ON FUNCTION invsync.check_consistency(boolean) IS
	'rows where the cached stock level differs from the ledger; always empty';

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
	r			record;
BEGIN
	/*
	 * The level of each listing in a statement of its own: under Citus, a
	 * function reading tables may not run inside a statement sent to a
	 * shard.
	 */
	FOR r IN
		SELECT l.listing_id, l.shop_id, a.channel, s.external_shop_id, l.sku,
			   l.external_item_id, l.external_model_id, l.external_location_id,
			   l.source_locations, l.buffer, l.allocation_percent,
			   l.min_level, l.max_level, l.enabled AND s.enabled AS enabled,
			   q.state, q.pushed_level, q.pushed_at, l.external_ids
		  FROM invsync.listings l
		  JOIN invsync.shops s ON s.tenant_id = l.tenant_id AND s.shop_id = l.shop_id
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		  LEFT JOIN invsync.sync_queue q
			ON q.tenant_id = l.tenant_id AND q.listing_id = l.listing_id
		 WHERE l.tenant_id = v_tenant
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
		available := invsync._listing_available(v_tenant, r.sku, r.source_locations);
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

CREATE OR REPLACE FUNCTION invsync._enqueue_skus(p_tenant bigint, p_skus text[],
									  p_location text, p_force boolean DEFAULT false)
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
		  JOIN invsync.shops s ON s.tenant_id = l.tenant_id AND s.shop_id = l.shop_id
		 WHERE l.tenant_id = p_tenant AND l.sku = v_sku
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
	IF TG_TABLE_NAME = 'shops' OR TG_TABLE_NAME ~ '^shops_[0-9]+$' THEN
		v_skus := ARRAY(SELECT l.sku FROM invsync.listings l
						 WHERE l.tenant_id = NEW.tenant_id AND l.shop_id = NEW.shop_id);
		PERFORM invsync._enqueue_skus(NEW.tenant_id, v_skus, NULL);
	ELSE
		PERFORM invsync._mark_published(NEW.tenant_id, ARRAY[NEW.sku]);
		IF TG_OP = 'UPDATE' OR NEW.created_at = pg_catalog.now() THEN
			PERFORM invsync._enqueue_skus(NEW.tenant_id, ARRAY[NEW.sku], NULL);
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
	v_count := invsync._enqueue_skus(v_tenant, v_skus, NULL, true);
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
						 'invsync._listing_available(bigint, text, text[])'::regprocedure)
		   AND p.prosqlbody IS NOT NULL
	LOOP
		/* BEGIN ATOMIC <one statement>; END, as pg_get_function_sqlbody prints it */
		v_body := CASE v_fn.proname
					WHEN '_listing_available'
					THEN 'BEGIN RETURN coalesce(invsync._available(p_tenant, p_sku, p_source_locations), 0); END'
					ELSE pg_catalog.format(E'#variable_conflict use_column\nBEGIN RETURN QUERY %s; END',
										   pg_catalog.regexp_replace(v_fn.body,
											   '^\s*BEGIN ATOMIC\s*(.*?);\s*END\s*$', '\1', 's'))
				  END;
		EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION invsync.%I(%s) RETURNS %s'
								  ' LANGUAGE plpgsql STABLE'
								  ' SET search_path = pg_catalog, pg_temp AS %L',
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
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'IV035',
				  HINT = 'CREATE EXTENSION citus first, on every node, and add the worker nodes.';
	END IF;
	LOCK TABLE invsync.apps, invsync.shops, invsync.listings, invsync.sync_queue,
		invsync.sync_attempts, invsync.order_fetches, invsync.marketplace_orders,
		invsync.webhook_inbox
		IN EXCLUSIVE MODE;
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	IF p_shard_count IS NOT NULL THEN
		PERFORM pg_catalog.set_config('citus.shard_count', p_shard_count::text, true);
	END IF;
	FOREACH v_table IN ARRAY invsync._distributed_tables()
	LOOP
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
							   WHERE p.logicalrelid = ('invsync.' || v_table)::regclass);
		PERFORM pg_catalog.create_distributed_table(
			('invsync.' || v_table)::regclass, 'tenant_id',
			colocate_with => CASE v_table WHEN 'locations' THEN 'default'
										  ELSE 'invsync.locations' END);
	END LOOP;
	PERFORM invsync._citus_node_setup();
	SELECT r.nodename || ':' || r.nodeport || ': ' || r.result INTO v_failed
	  FROM pg_catalog.run_command_on_workers('SELECT invsync._citus_node_setup()') r
	 WHERE NOT r.success
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'could not prepare worker node %', v_failed
			USING ERRCODE = 'IV035';
	END IF;
END
$$;
COMMENT ON FUNCTION invsync.distribute(integer) IS
	'on a Citus coordinator: distribute invsync''s tables by tenant_id, co-located, in foreign-key order, and prepare every node; idempotent';

CREATE FUNCTION invsync._served_shops()
	RETURNS TABLE (tenant_id bigint, shop_id bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
#variable_conflict use_column
DECLARE
	v_local_shards bigint[];
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		RETURN QUERY
			SELECT s.tenant_id, s.shop_id FROM invsync.shops s
			 WHERE s.enabled AND s.token_state = 'ok';
		RETURN;
	END IF;
	/* Citus's catalogs are named only here, where they exist */
	EXECUTE $q$
		SELECT array_agg(p.shardid)
		  FROM pg_catalog.pg_dist_placement p
		  JOIN pg_catalog.pg_dist_shard d ON d.shardid = p.shardid
		 WHERE d.logicalrelid = 'invsync.shops'::regclass
		   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)$q$
	   INTO v_local_shards;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
					WHERE p.logicalrelid = 'invsync.shops'::regclass) THEN
		RETURN QUERY
			SELECT s.tenant_id, s.shop_id FROM invsync.shops s
			 WHERE s.enabled AND s.token_state = 'ok';
		RETURN;
	END IF;
	RETURN QUERY EXECUTE $q$
		SELECT s.tenant_id, s.shop_id FROM invsync.shops s
		 WHERE s.enabled AND s.token_state = 'ok'
		   AND pg_catalog.get_shard_id_for_distribution_column('invsync.shops', s.tenant_id)
			   = ANY ($1)$q$
	  USING coalesce(v_local_shards, '{}');
END
$$;
COMMENT ON FUNCTION invsync._served_shops() IS
	'the shops whose rows this node''s sync worker serves: all of them, or under Citus those of the tenants whose shards are on this node';

REVOKE ALL ON FUNCTION invsync._skus_and_bundles(bigint, text[]),
	invsync._distributed_tables(), invsync._available(bigint, text, text[]),
	invsync._citus_node_setup(), invsync.distribute(integer), invsync._served_shops()
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._served_shops(), invsync._available(bigint, text, text[])
	TO invsync_worker;
