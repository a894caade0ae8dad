--
-- claim_reads: a claim takes rows whose leases ran out (a worker that
-- died) as ready ones, and what it reads is in proportion to the rows it
-- claims, with the plans the worker made at its first claim, on an empty
-- queue, and keeps for its session.  Counted in tuples its scans return, not
-- timed.  (A sweep of expired leases, as a self-join, once read the whole
-- queue once per expired row with some statistics: bench/sync.sh with 2,000
-- listings ran at 26 pushes/s.  There is no sweep now.)  All in one
-- transaction, rolled back, so the worker of this test server never sees
-- the rows.  Tenant 48.
--
\set VERBOSITY terse
-- the tuples this transaction's scans of a table and its indexes returned
CREATE FUNCTION pg_temp.tuples_read(p_table regclass) RETURNS bigint
	LANGUAGE sql AS $$
	SELECT sum(pg_stat_get_xact_tuples_returned(r))::bigint
	  FROM (SELECT p_table::oid
			UNION ALL
			SELECT indexrelid FROM pg_index WHERE indrelid = p_table) s (r)
$$;
SET invsync.tenant = 48;

BEGIN;
SELECT FROM invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('CR-' || i)) FROM generate_series(1, 2000) i;
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id)
VALUES (:app, '48') RETURNING shop_id AS shop \gset
-- The queue as a new deployment has it: empty, analyzed empty.  The
-- worker's first claim plans its statements then.
TRUNCATE invsync.sync_queue;
ANALYZE invsync.sync_queue;
SET LOCAL ROLE invsync_worker;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 10, 50);
RESET ROLE;

-- then 2,000 listings are queued, and a worker that died leased them all
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
SELECT :shop, 'CR-' || i, i::text, '0' FROM generate_series(1, 2000) i;
UPDATE invsync.sync_queue
   SET lease_until = now() - interval '1 second', claimed_version = version
 WHERE tenant_id = 48;

SELECT pg_temp.tuples_read('invsync.sync_queue') AS reads_before \gset

-- the next claim takes 10 of the 2,000 rows whose leases ran out
SET LOCAL ROLE invsync_worker;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 10, 50);
RESET ROLE;
SELECT count(*) FILTER (WHERE lease_until > now()) AS leased,
	   count(*) FILTER (WHERE lease_until IS NULL OR lease_until <= now()) AS ready
  FROM invsync.sync_queue WHERE tenant_id = 48;
-- at most ten tuples a queue row (the bound of the sweep there once was);
-- the claim reads a few tuples a row it claims
SELECT pg_temp.tuples_read('invsync.sync_queue') - :reads_before AS reads \gset
SELECT CASE WHEN :reads <= 20000 THEN 'proportionate' ELSE :reads || ' read' END
	   AS claim_reads;

-- a shop's claim is bounded by its cap less the rows the caller says it
-- holds of the shop (the worker counts its own): 3 short of the cap, 3
-- rows; at the cap, none; another shop's holdings do not count
SELECT least(s.max_in_flight * 50, ceil(s.rate_limit_per_sec * 60 / 4))::integer AS cap
  FROM invsync.shops s WHERE s.shop_id = :shop \gset
SET LOCAL ROLE invsync_worker;
SELECT (SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 1000, 50, NULL, NULL,
											ARRAY[:shop]::bigint[], ARRAY[:cap - 3]))
		 AS three_short,
	   (SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 1000, 50, NULL, NULL,
											ARRAY[:shop]::bigint[], ARRAY[:cap]))
		 AS at_cap,
	   (SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 5, 50, NULL, NULL,
											ARRAY[:shop + 1]::bigint[], ARRAY[:cap]))
		 AS other_shop_held;
RESET ROLE;
ROLLBACK;

-- Siblings (a TikTok SKU's warehouses) are claimed all or none: a group
-- with a member in flight waits a moment, and goes whole once that member
-- has landed.
BEGIN;
SELECT FROM invsync.upsert_location('W1');
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['T1-W1', 'T1-W2', 'T2']) s;
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('tiktok', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id)
VALUES (:app, 'cipher-48') RETURNING shop_id AS shop \gset
INSERT INTO invsync.listings (shop_id, sku, external_ids)
VALUES (:shop, 'T1-W1', '{"product_id": "1", "sku_id": "T1", "warehouse_id": "W1"}'),
	   (:shop, 'T1-W2', '{"product_id": "1", "sku_id": "T1", "warehouse_id": "W2"}'),
	   (:shop, 'T2', '{"product_id": "1", "sku_id": "T2", "warehouse_id": "W1"}');
UPDATE invsync.sync_queue q
   SET lease_until = now() + interval '1 minute', claimed_version = q.version
  FROM invsync.listings l
 WHERE q.tenant_id = 48 AND l.tenant_id = 48 AND l.listing_id = q.listing_id
   AND l.sku = 'T1-W2';
CREATE TEMP VIEW siblings AS
SELECT l.sku, l.sibling_key, q.lease_until IS NOT NULL AS leased, q.due_at > now() AS waits
  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 48 ORDER BY l.sku;
SET LOCAL ROLE invsync_worker;
SELECT l.sku FROM invsync._claim(now(), interval '1 minute', 100, 50) c
  JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE c.tenant_id = 48 ORDER BY l.sku;
RESET ROLE;
SELECT * FROM siblings;
-- T1-W2's request lands
UPDATE invsync.sync_queue q
   SET lease_until = NULL
  FROM invsync.listings l
 WHERE q.tenant_id = 48 AND l.tenant_id = 48 AND l.listing_id = q.listing_id
   AND l.sku = 'T1-W2';
SET LOCAL ROLE invsync_worker;
SELECT l.sku FROM invsync._claim(now() + interval '1 second', interval '1 minute', 100, 50) c
  JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE c.tenant_id = 48 ORDER BY l.sku;
RESET ROLE;
SELECT * FROM siblings;
ROLLBACK;

-- Outcomes recorded by key, tenant by tenant, as the worker records them
-- under Citus (_record_batch_by_key): each applies at the version claimed
-- only; a superseded one (another version claimed since) changes nothing.
BEGIN;
SELECT FROM invsync.upsert_location('W1');
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['R1', 'R2', 'R3']) s;
SELECT count(*) FROM invsync.adjust('R1', 'W1', 5, 'r', 'cr-r1');
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id)
VALUES (:app, '4848') RETURNING shop_id AS shop \gset
INSERT INTO invsync.listings (shop_id, sku, external_item_id)
VALUES (:shop, 'R1', '1'), (:shop, 'R2', '2'), (:shop, 'R3', '3');
SET LOCAL ROLE invsync_worker;
CREATE TEMP TABLE claimed AS
SELECT c.listing_id, c.version, c.target_level
  FROM invsync._claim(now(), interval '1 minute', 100, 50) c WHERE c.tenant_id = 48;
RESET ROLE;
SELECT l.sku, c.version, c.target_level
  FROM claimed c JOIN invsync.listings l ON l.tenant_id = 48 AND l.listing_id = c.listing_id
 ORDER BY l.sku;
SET LOCAL ROLE invsync_worker;
SELECT * FROM invsync._record_batch_by_key(
	ARRAY(SELECT ROW(48, c.listing_id,
					 CASE l.sku WHEN 'R3' THEN c.version + 1 ELSE c.version END,
					 c.target_level, CASE l.sku WHEN 'R2' THEN 'retry' ELSE 'ok' END,
					 1000, CASE l.sku WHEN 'R2' THEN 'http_500' END,
					 CASE l.sku WHEN 'R2' THEN 'HTTP 500' END)::invsync.worker_outcome
			FROM claimed c
			JOIN invsync.listings l ON l.tenant_id = 48 AND l.listing_id = c.listing_id),
	now());
RESET ROLE;
SELECT l.sku, q.state, q.lease_until IS NOT NULL AS leased, q.pushed_level, q.last_error
  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 48 ORDER BY l.sku;
ROLLBACK;

-- A claim prices each listing from its sku's bundle list, read by key:
-- with the plans made while bundle_leaves was empty, a tenant's other
-- bundle lists are not read once per listing.  (Its index of the bundles
-- containing a sku used to lead with the tenant; those plans then read all
-- of the tenant's lists for every listing.)  Tenant 49.
SET invsync.tenant = 49;
BEGIN;
SELECT FROM invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('BL-' || i)) FROM generate_series(1, 600) i;
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id)
VALUES (:app, '49') RETURNING shop_id AS shop \gset
-- bundle_leaves as a new deployment has it: empty, analyzed empty; the
-- claim's plans are made again from that.  Other tests' queue rows go too:
-- the claims below take this tenant's rows only.
TRUNCATE invsync.bundle_leaves, invsync.sync_queue;
ANALYZE invsync.bundle_leaves;
SET LOCAL ROLE invsync_worker;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 10, 50);
RESET ROLE;
-- then 200 bundles of two skus each (400 list entries), and 100 listings
-- of plain skus
SELECT count(*)
  FROM generate_series(1, 200) i,
	   invsync.set_bundle('BL-' || (400 + i),
						  jsonb_build_array(jsonb_build_object('sku', 'BL-' || (200 + i), 'qty', 1),
											jsonb_build_object('sku', 'BL-' || i, 'qty', 2)));
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
SELECT :shop, 'BL-' || i, i::text, '0' FROM generate_series(1, 100) i;
SELECT pg_temp.tuples_read('invsync.bundle_leaves') AS reads_before \gset
SET LOCAL ROLE invsync_worker;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 100, 50);
RESET ROLE;
-- a plain sku's list is empty: nothing to read but the probe
SELECT pg_temp.tuples_read('invsync.bundle_leaves') - :reads_before AS reads \gset
SELECT CASE WHEN :reads <= 100 THEN 'by key' ELSE :reads || ' read' END AS bundle_reads;
ROLLBACK;
