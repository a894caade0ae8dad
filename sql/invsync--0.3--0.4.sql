/*
 * invsync--0.3--0.4.sql
 *	  Upgrade from 0.3: one adapter interface for every marketplace.
 *
 * Channels come from the adapter registry (no CHECK list); apps get an
 * auth host and a batch size of their own; listings carry the
 * marketplace's ids by the channel's attribute names (external_ids), from
 * which the generic columns and the claim's batch and sibling keys are
 * set; the claim takes sibling groups whole and returns the ids as the
 * channel defines them; the adapter hooks show headers and read levels.
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.4'" to load this file. \quit

/* the channels of the adapter registry (src/adapter.c) */
CREATE FUNCTION invsync._is_channel(p_channel text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'invsync_is_channel'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

ALTER TABLE invsync.apps
	ADD COLUMN auth_base_url text,
	ADD COLUMN batch_size integer,
	DROP CONSTRAINT app_channel,
	ADD CONSTRAINT app_channel CHECK (invsync._is_channel(channel)),
	ADD CONSTRAINT app_auth_base_url
		CHECK (auth_base_url IS NULL OR auth_base_url ~ '^https?://[^/[:space:]]+(/[^[:space:]]*)?$'),
	ADD CONSTRAINT app_batch_size CHECK (batch_size > 0);
COMMENT ON COLUMN invsync.apps.auth_base_url IS
	'host override for token calls (TikTok''s and Lazada''s differ from the API host); NULL means the channel''s production auth host, or for Shopee the API host';
COMMENT ON COLUMN invsync.apps.batch_size IS
	'listings per stock update; NULL means the channel''s default (invsync.channel_attributes()); at most the channel''s largest';

DROP TRIGGER apps_base_url ON invsync.apps;
CREATE TRIGGER apps_base_url
	BEFORE INSERT OR UPDATE OF channel, base_url, auth_base_url, batch_size ON invsync.apps
	FOR EACH ROW EXECUTE FUNCTION invsync._apps_check_base_url();
COMMENT ON FUNCTION invsync._apps_check_base_url() IS
	'refuse a malformed base URL (IV023), a plain http one while invsync.allow_insecure_http is off (IV024), a batch size the channel does not take (IV029); rows loaded from a dump pass';

ALTER TABLE invsync.listings
	ADD COLUMN external_ids jsonb NOT NULL DEFAULT '{}',
	ADD COLUMN batch_key text,
	ADD COLUMN sibling_key text;
CREATE INDEX listings_siblings_idx ON invsync.listings (tenant_id, shop_id, sibling_key)
	WHERE sibling_key IS NOT NULL;
COMMENT ON COLUMN invsync.listings.external_ids IS
	'the marketplace''s ids for the listing, by the channel''s attribute names (invsync.channel_attributes()): Shopee item_id, model_id, location_id; TikTok and Tokopedia product_id, sku_id, warehouse_id; Lazada item_id, sku_id, seller_sku, warehouse_code. Mirrored in external_item_id, external_model_id and external_location_id, which may be written instead';
COMMENT ON COLUMN invsync.listings.batch_key IS
	'set from external_ids: listings of one shop with equal keys may share a stock update';
COMMENT ON COLUMN invsync.listings.sibling_key IS
	'set from external_ids: listings of one shop with equal keys are sent together, all or none (TikTok: every warehouse of a SKU)';

/*
 * The identifiers of listings.  Each channel's adapter declares the
 * attributes of its listings; invsync.channel_attributes() lists them.
 */
CREATE FUNCTION invsync.channel_attributes()
	RETURNS TABLE (channel text, attribute text, attribute_position integer,
				   mirrored_in text, kind text, required boolean,
				   default_value text, batch boolean, siblings boolean,
				   default_batch integer, max_batch integer)
	AS 'MODULE_PATHNAME', 'invsync_channel_attributes'
	LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION invsync.channel_attributes() IS
	'the listing attributes of each channel (keys of listings.external_ids), the generic column each is mirrored in, and the channel''s batch sizes';

CREATE FUNCTION invsync._listing_ids(p_channel text, p_ids jsonb, p_item text,
									 p_model text, p_location text,
									 p_use_ids boolean, p_use_columns boolean,
									 OUT external_ids jsonb, OUT item_id text,
									 OUT model_id text, OUT location_id text,
									 OUT batch_key text, OUT sibling_key text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'invsync_listing_ids'
	LANGUAGE C STABLE;
COMMENT ON FUNCTION invsync._listing_ids(text, jsonb, text, text, text, boolean, boolean) IS
	'check a listing''s ids against its channel''s attributes (IV028) and return them canonical, mirrored and keyed';

/*
 * A listing's ids may be given in external_ids, in the generic columns, or
 * both when they agree; on UPDATE, the side that changed wins.  A row
 * loaded from a dump (see "Rows loaded from a dump" below) is kept as it
 * was stored.
 */
CREATE FUNCTION invsync._listings_check_ids() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_channel	text;
	v_ids_changed boolean;
	v_columns_changed boolean;
	r			record;
BEGIN
	IF TG_OP = 'INSERT' AND NEW.created_at <> pg_catalog.now() THEN
		RETURN NEW;
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


/*
 * The ids of the listings stored so far, from the generic columns.  A
 * listing whose ids its channel refuses (0.3 checked Shopee's only when
 * sending) keeps them as they were; the worker refuses it as before, as a
 * dead letter naming the attribute.  Nothing is queued: the marketplace's
 * objects are the same.
 */
ALTER TABLE invsync.listings DISABLE TRIGGER listings_enqueue;
DO $upgrade$
DECLARE
	l			record;
	r			record;
BEGIN
	FOR l IN
		SELECT x.tenant_id, x.listing_id, a.channel, x.external_item_id,
			   x.external_model_id, x.external_location_id
		  FROM invsync.listings x
		  JOIN invsync.shops s ON s.tenant_id = x.tenant_id AND s.shop_id = x.shop_id
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	LOOP
		BEGIN
			SELECT * INTO r
			  FROM invsync._listing_ids(l.channel, NULL, l.external_item_id,
										l.external_model_id, l.external_location_id,
										false, true);
		EXCEPTION WHEN SQLSTATE 'IV028' THEN
			SELECT coalesce(jsonb_object_agg(c.attribute, v.value)
							  FILTER (WHERE v.value IS NOT NULL), '{}'),
				   l.external_item_id, l.external_model_id, l.external_location_id,
				   NULL, NULL
			  INTO r
			  FROM invsync.channel_attributes() c
			 CROSS JOIN LATERAL (SELECT CASE c.mirrored_in
										  WHEN 'external_item_id' THEN l.external_item_id
										  WHEN 'external_model_id' THEN l.external_model_id
										  WHEN 'external_location_id' THEN l.external_location_id
										END AS value) v
			 WHERE c.channel = l.channel;
		END;
		UPDATE invsync.listings x
		   SET external_ids = r.external_ids, external_item_id = r.item_id,
			   external_model_id = r.model_id, external_location_id = r.location_id,
			   batch_key = r.batch_key, sibling_key = r.sibling_key
		 WHERE x.tenant_id = l.tenant_id AND x.listing_id = l.listing_id;
	END LOOP;
END
$upgrade$;
ALTER TABLE invsync.listings ENABLE TRIGGER listings_enqueue;

CREATE TRIGGER listings_ids
	BEFORE INSERT OR UPDATE OF shop_id, external_ids, external_item_id,
		external_model_id, external_location_id
	ON invsync.listings
	FOR EACH ROW EXECUTE FUNCTION invsync._listings_check_ids();

DROP TRIGGER listings_enqueue ON invsync.listings;
CREATE TRIGGER listings_enqueue
	AFTER INSERT OR UPDATE OF sku, external_item_id, external_model_id,
		external_location_id, source_locations, buffer, allocation_percent,
		min_level, max_level, enabled, external_ids
	ON invsync.listings
	FOR EACH ROW EXECUTE FUNCTION invsync._listing_changed();

DROP VIEW invsync.listing_levels;
DROP FUNCTION invsync._listing_levels();
CREATE FUNCTION invsync._listing_levels()
	RETURNS TABLE (listing_id bigint, shop_id bigint, channel text,
				   external_shop_id text, sku text, external_item_id text,
				   external_model_id text, external_location_id text,
				   source_locations text[], available bigint, buffer bigint,
				   allocation_percent numeric, min_level bigint, max_level bigint,
				   level bigint, enabled boolean, sync_state text,
				   pushed_level bigint, pushed_at timestamptz, external_ids jsonb)
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT l.listing_id, l.shop_id, a.channel, s.external_shop_id, l.sku,
		   l.external_item_id, l.external_model_id, l.external_location_id,
		   l.source_locations, v.available, l.buffer, l.allocation_percent,
		   l.min_level, l.max_level,
		   invsync._publish_level(v.available, l.buffer, l.allocation_percent,
								  l.min_level, l.max_level),
		   l.enabled AND s.enabled, q.state, q.pushed_level, q.pushed_at,
		   l.external_ids
	  FROM invsync.listings l
	  JOIN invsync.shops s ON s.tenant_id = l.tenant_id AND s.shop_id = l.shop_id
	  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	  LEFT JOIN invsync.sync_queue q
		ON q.tenant_id = l.tenant_id AND q.listing_id = l.listing_id
	 CROSS JOIN LATERAL (
			SELECT invsync._listing_available(l.tenant_id, l.sku, l.source_locations)
				   AS available) v
	 WHERE l.tenant_id = invsync.current_tenant()
$$;
CREATE VIEW invsync.listing_levels AS
	SELECT * FROM invsync._listing_levels();
COMMENT ON VIEW invsync.listing_levels IS
	'per listing of the current tenant: the level it would publish now, the terms it comes from, and what was last published';
REVOKE ALL ON FUNCTION invsync._listing_levels() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._listing_levels() TO invsync_reader, pg_monitor;
GRANT SELECT ON invsync.listing_levels TO invsync_reader, pg_monitor;

DROP FUNCTION invsync._claim(timestamptz, interval, integer, integer);
/*
 * Claim due rows: per shop at most what its in-flight cap times the
 * largest batch allows, and no more than its rate limit can send within a
 * quarter of the lease, minus rows it already holds; so one shop's backlog
 * never starves another's and a claimed row is sent long before its lease
 * ends.
 *
 * The levels are computed by a second statement, after the rows are
 * locked: its snapshot includes every transaction that changed stock
 * before our lock, and any later one must wait for our lock to bump the
 * version, so the level pushed is never older than the version claimed.
 * Rows whose level equals the one already published are settled here
 * without a call.
 */
CREATE FUNCTION invsync._claim(p_now timestamptz, p_lease interval, p_limit integer,
							   p_max_batch integer)
	RETURNS TABLE (tenant_id bigint, listing_id bigint, shop_id bigint,
				   version bigint, target_level bigint, attempts integer,
				   correlation_ids text[], channel text,
				   external_ids jsonb, sibling_key text)
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
		 CROSS JOIN LATERAL (SELECT coalesce(invsync._base_url_refusal(a.base_url),
											 invsync._base_url_refusal(a.auth_base_url))
									AS reason) r
		  JOIN invsync.shops s ON s.tenant_id = a.tenant_id AND s.app_id = a.app_id
		 WHERE (a.base_url IS NOT NULL OR a.auth_base_url IS NOT NULL)
		   AND r.reason IS NOT NULL
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
	 * Siblings (listings the marketplace wants in one call: TikTok lists
	 * every warehouse of a SKU) are claimed with the row that needs them,
	 * all or none.  A group with a member another transaction has locked,
	 * or leased to a request in flight, is left for a later claim: its
	 * picked rows wait a moment rather than be picked again at once.
	 */
	IF EXISTS (SELECT FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
				 JOIN invsync.listings l
				   ON l.tenant_id = c.tenant_id AND l.listing_id = c.listing_id
				WHERE l.sibling_key IS NOT NULL) THEN
		WITH picked AS (
			SELECT l.tenant_id, l.listing_id, l.shop_id, l.sibling_key
			  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
			  JOIN invsync.listings l
				ON l.tenant_id = c.tenant_id AND l.listing_id = c.listing_id
		),
		members AS (
			SELECT DISTINCT g.tenant_id, g.shop_id, g.sibling_key, l.listing_id
			  FROM picked g
			  JOIN invsync.listings l
				ON l.tenant_id = g.tenant_id AND l.shop_id = g.shop_id
			   AND l.sibling_key = g.sibling_key
			 WHERE l.enabled
		),
		locked AS (
			SELECT q.tenant_id, q.listing_id
			  FROM members m
			  JOIN invsync.sync_queue q
				ON q.tenant_id = m.tenant_id AND q.listing_id = m.listing_id
			 WHERE q.lease_until IS NULL OR q.lease_until <= p_now
			 ORDER BY q.tenant_id, q.listing_id
			   FOR UPDATE OF q SKIP LOCKED
		),
		complete AS (
			SELECT m.tenant_id, m.shop_id, m.sibling_key
			  FROM members m
			  LEFT JOIN locked k
				ON k.tenant_id = m.tenant_id AND k.listing_id = m.listing_id
			 GROUP BY m.tenant_id, m.shop_id, m.sibling_key
			HAVING count(*) = count(k.listing_id)
		),
		kept AS (
			SELECT g.tenant_id, g.listing_id
			  FROM picked g
			 WHERE g.sibling_key IS NULL
			UNION
			SELECT m.tenant_id, m.listing_id
			  FROM members m
			  JOIN complete USING (tenant_id, shop_id, sibling_key)
		),
		postponed AS (			/* data-modifying: runs whether read or not */
			UPDATE invsync.sync_queue q
			   SET due_at = p_now + interval '250 milliseconds'
			  FROM picked g
			 WHERE q.tenant_id = g.tenant_id AND q.listing_id = g.listing_id
			   AND g.sibling_key IS NOT NULL
			   AND NOT EXISTS (SELECT FROM complete
								WHERE complete.tenant_id = g.tenant_id
								  AND complete.shop_id = g.shop_id
								  AND complete.sibling_key = g.sibling_key)
		)
		SELECT array_agg(kept.tenant_id), array_agg(kept.listing_id)
		  INTO v_tenants, v_listings
		  FROM kept;

		IF v_tenants IS NULL THEN
			RETURN;
		END IF;
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

	/*
	 * Nothing to publish: the marketplace already shows this level.  A
	 * sibling stays in its group unless the whole group is unchanged.
	 */
	UPDATE invsync.sync_queue q
	   SET state = 'synced', lease_until = NULL, attempts = 0,
		   pushed_version = q.version, changed_at = p_now,
		   last_error_class = NULL, last_error = NULL
	  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
	  JOIN invsync.listings l
		ON l.tenant_id = c.tenant_id AND l.listing_id = c.listing_id
	 WHERE q.tenant_id = c.tenant_id AND q.listing_id = c.listing_id
	   AND NOT q.force_push AND q.pushed_level = q.target_level
	   AND (l.sibling_key IS NULL
			OR NOT EXISTS (
				SELECT FROM unnest(v_tenants, v_listings) AS c2 (tenant_id, listing_id)
				  JOIN invsync.listings l2
					ON l2.tenant_id = c2.tenant_id AND l2.listing_id = c2.listing_id
				  JOIN invsync.sync_queue q2
					ON q2.tenant_id = c2.tenant_id AND q2.listing_id = c2.listing_id
				 WHERE l2.tenant_id = l.tenant_id AND l2.shop_id = l.shop_id
				   AND l2.sibling_key = l.sibling_key
				   AND (q2.force_push OR q2.pushed_level IS DISTINCT FROM q2.target_level)));

	RETURN QUERY
		SELECT q.tenant_id, q.listing_id, q.shop_id, q.version, q.target_level,
			   q.attempts, q.correlation_ids, a.channel, l.external_ids,
			   l.sibling_key
		  FROM unnest(v_tenants, v_listings) AS c (tenant_id, listing_id)
		  JOIN invsync.sync_queue q
			ON q.tenant_id = c.tenant_id AND q.listing_id = c.listing_id
		  JOIN invsync.listings l
			ON l.tenant_id = q.tenant_id AND l.listing_id = q.listing_id
		  JOIN invsync.shops s ON s.tenant_id = q.tenant_id AND s.shop_id = q.shop_id
		  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
		 WHERE q.lease_until IS NOT NULL
		 ORDER BY q.tenant_id, q.shop_id, l.batch_key, l.sibling_key;
END
$$;

DROP FUNCTION invsync._shop_context(bigint, bigint);
/* the credentials of a shop, for the worker only */
CREATE FUNCTION invsync._shop_context(p_tenant bigint, p_shop bigint)
	RETURNS TABLE (channel text, external_shop_id text, region text,
				   app_key text, app_secret text, access_token text,
				   refresh_token text, base_url text, uses_locations boolean,
				   rate_limit_per_sec double precision, max_in_flight integer,
				   access_expires_at timestamptz, token_state text,
				   auth_base_url text, batch_size integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT a.channel, s.external_shop_id, s.region, a.app_key, a.app_secret,
		   s.access_token, s.refresh_token, a.base_url, s.uses_locations,
		   s.rate_limit_per_sec::double precision, s.max_in_flight,
		   s.access_expires_at, s.token_state, a.auth_base_url, a.batch_size
	  FROM invsync.shops s
	  JOIN invsync.apps a ON a.tenant_id = s.tenant_id AND a.app_id = s.app_id
	 WHERE s.tenant_id = p_tenant AND s.shop_id = p_shop
$$;
REVOKE ALL ON FUNCTION invsync._claim(timestamptz, interval, integer, integer),
	invsync._shop_context(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync._claim(timestamptz, interval, integer, integer),
	invsync._shop_context(bigint, bigint) TO invsync_worker;

DROP FUNCTION invsync._adapter_stock_request(text, jsonb, jsonb, bigint);
DROP FUNCTION invsync._adapter_stock_response(text, jsonb, integer, text, text);
DROP FUNCTION invsync._adapter_refresh_request(text, jsonb, bigint);
DROP FUNCTION invsync._adapter_refresh_response(text, integer, text);
CREATE FUNCTION invsync._adapter_stock_request(p_channel text, p_shop jsonb, p_listings jsonb,
											   p_now bigint, OUT method text, OUT url text,
											   OUT log_url text, OUT headers jsonb,
											   OUT body text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'invsync_adapter_stock_request'
	LANGUAGE C STRICT;
CREATE FUNCTION invsync._adapter_stock_response(p_channel text, p_listings jsonb,
												p_status integer, p_body text,
												p_retry_after text DEFAULT NULL,
												p_headers jsonb DEFAULT NULL,
												p_shop jsonb DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'invsync_adapter_stock_response'
	LANGUAGE C;
CREATE FUNCTION invsync._adapter_read_request(p_channel text, p_shop jsonb, p_listings jsonb,
											  p_now bigint, OUT method text, OUT url text,
											  OUT log_url text, OUT headers jsonb,
											  OUT body text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'invsync_adapter_read_request'
	LANGUAGE C STRICT;
CREATE FUNCTION invsync._adapter_read_response(p_channel text, p_shop jsonb, p_listings jsonb,
											   p_status integer, p_body text,
											   p_headers jsonb DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'invsync_adapter_read_response'
	LANGUAGE C;
CREATE FUNCTION invsync._adapter_refresh_request(p_channel text, p_shop jsonb, p_now bigint,
												 OUT method text, OUT url text,
												 OUT log_url text, OUT headers jsonb,
												 OUT body text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'invsync_adapter_refresh_request'
	LANGUAGE C STRICT;
CREATE FUNCTION invsync._adapter_refresh_response(p_channel text, p_status integer, p_body text,
												  p_headers jsonb DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'invsync_adapter_refresh_response'
	LANGUAGE C;

REVOKE ALL ON FUNCTION invsync._is_channel(text), invsync.channel_attributes(),
	invsync._listing_ids(text, jsonb, text, text, text, boolean, boolean),
	invsync._listings_check_ids(),
	invsync._adapter_stock_request(text, jsonb, jsonb, bigint),
	invsync._adapter_stock_response(text, jsonb, integer, text, text, jsonb, jsonb),
	invsync._adapter_read_request(text, jsonb, jsonb, bigint),
	invsync._adapter_read_response(text, jsonb, jsonb, integer, text, jsonb),
	invsync._adapter_refresh_request(text, jsonb, bigint),
	invsync._adapter_refresh_response(text, integer, text, jsonb)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invsync.channel_attributes()
	TO invsync_reader, invsync_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION invsync._is_channel(text),
	invsync._listing_ids(text, jsonb, text, text, text, boolean, boolean)
	TO invsync_admin;
GRANT SELECT (auth_base_url, batch_size) ON invsync.apps TO invsync_admin;

/*
 * Some marketplaces (Lazada) never extend a refresh token: refreshing
 * renews the access token only, and at refresh_expires_at the seller must
 * authorise again, whatever the worker does.  authorization_alert warns a
 * week ahead, for any channel whose adapter reports that end.
 */
CREATE OR REPLACE VIEW invsync.sync_status WITH (security_barrier) AS
	SELECT s.shop_id, a.channel, s.external_shop_id, s.enabled, s.token_state,
		   count(*) FILTER (WHERE q.state = 'pending') AS pending,
		   count(*) FILTER (WHERE q.state = 'pending' AND q.lease_until IS NOT NULL) AS in_flight,
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
COMMENT ON VIEW invsync.sync_status IS
	'per shop of the current tenant: pending, in flight, failing and dead listings, oldest pending change, last success, and when the seller must authorise again (authorization_alert: reauthorize, expired, or expires_soon within 7 days of refresh_expires_at)';
