/*
 * invsync--0.4--0.5.sql
 *	  Upgrade from 0.4: a claim and an enqueue path whose cost follows the
 *	  rows they touch, not the backlog or the number of shops; outcomes
 *	  recorded with one index probe and one update by row address each.
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.5'" to load this file. \quit

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
 * the arrays' sizes, so they are generic, planned once per session, where
 * the worker's session otherwise plans every statement afresh.
 */
CREATE OR REPLACE FUNCTION invsync._record_batch(p_outcomes invsync.worker_outcome[],
									  p_attempts invsync.worker_attempt[],
									  p_now timestamptz)
	RETURNS TABLE (tenant_id bigint, listing_id bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET plan_cache_mode = force_generic_plan
	AS $$
DECLARE
	v_rows		tid[];
	v_locked	invsync.worker_outcome[];
	v_held_tenants bigint[];
	v_held_listings bigint[];
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
