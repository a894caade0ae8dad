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

/*
 * The sync worker's role: exactly what its transactions need, no more.
 * It reads every tenant's queue, listings, stock and channels (secrets
 * included), and writes the queue, the attempts and the shops' tokens.
 */
GRANT USAGE ON SCHEMA invsync TO invsync_worker;
GRANT EXECUTE ON FUNCTION
	invsync._claim(timestamptz, interval, integer, integer),
	invsync._shop_context(bigint, bigint),
	invsync._record_batch(invsync.worker_outcome[], invsync.worker_attempt[], timestamptz),
	invsync._worker_started(timestamptz, interval),
	invsync._release_claim(bigint, bigint, bigint),
	invsync._take_refresh_lease(bigint, bigint, timestamptz, interval),
	invsync._store_refreshed_tokens(bigint, bigint, text, text, text, timestamptz, timestamptz),
	invsync._refresh_failed(bigint, bigint, boolean, text),
	invsync._purge_attempts(timestamptz, integer),
	invsync._listing_available(bigint, text, text[]),
	invsync._publish_level(bigint, bigint, numeric, bigint, bigint),
	invsync._expand_bundle(bigint, text)
	TO invsync_worker;
GRANT SELECT ON invsync.apps, invsync.listings, invsync.stock_levels,
	invsync.bundle_components TO invsync_worker;
GRANT SELECT, UPDATE ON invsync.sync_queue, invsync.shops TO invsync_worker;
GRANT SELECT, INSERT, DELETE ON invsync.sync_attempts TO invsync_worker;
GRANT USAGE ON SEQUENCE invsync.attempt_id_seq TO invsync_worker;
