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
ALTER FUNCTION invsync._record_batch(jsonb, jsonb, timestamptz)
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
	invsync.bundle_components TO invsync_worker;
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
	invsync._record_batch(jsonb, jsonb, timestamptz),
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
