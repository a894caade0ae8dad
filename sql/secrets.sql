--
-- secrets: app secrets and shop tokens are readable only by invsync_worker
-- and invsync_secrets, not by invsync_admin, who still manages apps and
-- shops; the sync worker's role holds exactly what the internal functions
-- it calls need, and each of them runs under it.  Tenant 43.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 43;

CREATE ROLE regress_sec_admin IN ROLE invsync_admin;
CREATE ROLE regress_sec_secrets IN ROLE invsync_secrets;
CREATE ROLE regress_sec_reader IN ROLE invsync_reader;

--
-- 1. Who may read which column of apps and shops
--
SELECT c.relname, a.attname,
	   has_column_privilege('invsync_admin', c.oid, a.attnum, 'SELECT') AS admin,
	   has_column_privilege('invsync_secrets', c.oid, a.attnum, 'SELECT') AS secrets,
	   has_column_privilege('invsync_worker', c.oid, a.attnum, 'SELECT') AS worker,
	   has_column_privilege('invsync_writer', c.oid, a.attnum, 'SELECT') AS writer
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.oid IN ('invsync.apps'::regclass, 'invsync.shops'::regclass)
   AND a.attname IN ('app_key', 'app_secret', 'push_secret', 'base_url',
					 'external_shop_id', 'access_token', 'refresh_token', 'token_error')
 ORDER BY c.relname, a.attnum;
-- every column an admin may not read is a secret (worker_activity aside: the
-- whole server's counters, every tenant's, are pg_monitor's; see privileges)
SELECT c.relname, a.attname AS admin_may_not_read
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'invsync'::regnamespace AND c.relkind IN ('r', 'v')
   AND c.oid <> 'invsync.worker_activity'::regclass
   AND NOT has_column_privilege('invsync_admin', c.oid, a.attnum, 'SELECT')
 ORDER BY 1, 2;

--
-- 2. The admin manages apps and shops, secrets included, without reading them
--
SET ROLE regress_sec_admin;
INSERT INTO invsync.apps (channel, app_key, app_secret, push_secret, base_url)
VALUES ('shopee', '4201', 'app-secret-4201-not-for-admins', 'push-secret-4201', 'https://127.0.0.1:9')
RETURNING app_key, base_url;
INSERT INTO invsync.shops (app_id, external_shop_id, access_token, refresh_token,
						   access_expires_at)
SELECT app_id, '4202', 'access-4202-not-for-admins', 'refresh-4202-not-for-admins',
	   now() + interval '4 hours'
  FROM invsync.apps WHERE tenant_id = 43
RETURNING external_shop_id, token_state;
SELECT app_key, base_url FROM invsync.apps WHERE tenant_id = 43;
SELECT external_shop_id, token_state, enabled FROM invsync.shops WHERE tenant_id = 43;
UPDATE invsync.apps SET app_secret = 'app-secret-4201-rotated' WHERE tenant_id = 43;
UPDATE invsync.shops SET refresh_token = 'refresh-4202-replaced', rate_limit_per_sec = 5
 WHERE tenant_id = 43;
-- no read, not even indirectly
SELECT app_secret FROM invsync.apps WHERE tenant_id = 43;
SELECT * FROM invsync.shops WHERE tenant_id = 43;
SELECT count(*) FROM invsync.shops WHERE access_token LIKE 'a%';
UPDATE invsync.shops SET access_token = access_token || 'x' WHERE tenant_id = 43;
UPDATE invsync.apps SET name = 'x' WHERE tenant_id = 43 RETURNING app_secret;
SELECT * FROM invsync._shop_context(43, 0);
RESET ROLE;

-- a reader sees neither the tables nor the secrets
SET ROLE regress_sec_reader;
SELECT count(*) FROM invsync.apps;
SELECT count(*) FROM invsync.shops;
RESET ROLE;

-- invsync_secrets reads them, and nothing else of invsync
SET ROLE regress_sec_secrets;
SELECT a.app_secret, a.push_secret, s.access_token, s.refresh_token
  FROM invsync.apps a JOIN invsync.shops s USING (tenant_id, app_id)
 WHERE a.tenant_id = 43;
SELECT count(*) FROM invsync.listings;
UPDATE invsync.shops SET access_token = 'x' WHERE tenant_id = 43;
RESET ROLE;

--
-- 3. The sync worker's role: exactly these privileges in invsync
--
SELECT c.relname, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'invsync'::regnamespace
   AND a.grantee = 'invsync_worker'::regrole
 ORDER BY 1, 2;
SELECT c.relname, a.privilege_type,
	   string_agg(att.attname, ', ' ORDER BY att.attnum) AS columns
  FROM pg_class c
  JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0,
	   aclexplode(att.attacl) a
 WHERE c.relnamespace = 'invsync'::regnamespace
   AND a.grantee = 'invsync_worker'::regrole
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT p.oid::regprocedure AS worker_may_execute
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'invsync'::regnamespace
   AND a.grantee = 'invsync_worker'::regrole AND a.privilege_type = 'EXECUTE'
 ORDER BY p.oid::regprocedure::text;
SELECT has_schema_privilege('invsync_worker', 'invsync', 'USAGE') AS schema_usage,
	   rolsuper AS superuser, rolbypassrls AS bypassrls
  FROM pg_roles WHERE rolname = 'invsync_worker';
-- the functions the worker calls pin search_path and are SECURITY INVOKER,
-- but _record_order_fetch: it moves stock, which the worker's role may not
SELECT p.oid::regprocedure AS worker_function, p.prosecdef, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'invsync'::regnamespace
   AND p.proname IN ('_claim', '_record_batch', '_record_batch_by_key', '_release_claim',
					 '_worker_started',
					 '_shop_context', '_take_refresh_lease', '_store_refreshed_tokens',
					 '_refresh_failed', '_purge_attempts', '_lock_shop_row',
					 '_claim_order_fetches', '_record_order_fetch')
 ORDER BY p.oid::regprocedure::text;

--
-- 4. Every function the worker calls, run as invsync_worker on a fixture
-- no other session sees (the transaction rolls back, so the worker of this
-- test server never claims it)
--
BEGIN;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_item('A');
SELECT FROM invsync.upsert_item('B');
SELECT FROM invsync.upsert_item('KIT');
SELECT FROM invsync.set_bundle('KIT', '[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]');
SELECT FROM invsync.adjust('A', 'W1', 10, 'receipt', 'sec-a');
SELECT FROM invsync.adjust('B', 'W1', 3, 'receipt', 'sec-b');
SELECT shop_id AS shop FROM invsync.shops WHERE tenant_id = 43 \gset
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
VALUES (:shop, 'A', '1', '1'), (:shop, 'KIT', '1', '2');
INSERT INTO invsync.order_fetches (tenant_id, shop_id, order_id, correlation_ids)
VALUES (43, :shop, 'SEC-ORDER', '{sec-order}');

SET LOCAL ROLE invsync_worker;
SELECT invsync._worker_started(now(), interval '1 second');
SELECT l.sku, c.target_level, c.attempts, c.channel, c.external_ids,
	   c.sibling_key
  FROM invsync._claim(now(), interval '1 minute', 1000, 50) c
  JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE c.tenant_id = 43 ORDER BY l.sku;
SELECT channel, external_shop_id, app_key, app_secret, access_token, refresh_token,
	   base_url, token_state
  FROM invsync._shop_context(43, :shop);
SELECT q.listing_id AS listing_a, q.claimed_version AS version_a
  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 43 AND l.sku = 'A' \gset
SELECT q.listing_id AS listing_kit, q.claimed_version AS version_kit
  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 43 AND l.sku = 'KIT' \gset
SELECT * FROM invsync._record_batch(
	ARRAY[ROW(43, :listing_a, :version_a, 10, 'ok', 0, NULL, NULL)::invsync.worker_outcome],
	ARRAY[ROW(43, :shop, 'shopee', 'stock_update', ARRAY[:listing_a]::bigint[],
			  ARRAY[:version_a]::bigint[], ARRAY[10]::bigint[], 'sec-1',
			  'https://127.0.0.1:9/api/v2/product/update_stock?sign=[redacted]',
			  200, 'ok', NULL, NULL, NULL, 1.5,
			  '2023-11-14 22:13:20+00')::invsync.worker_attempt],
	now());
SELECT invsync._release_claim(43, :listing_kit, :version_kit);
SELECT order_id, version, attempts, correlation_ids
  FROM invsync._claim_order_fetches(now(), interval '1 minute', 10) WHERE tenant_id = 43;
SELECT invsync._record_order_fetch(43, :shop, 'SEC-ORDER', 1, 'ok', 0, 'READY_TO_SHIP',
	now(), '[{"ids": {"item_id": "1", "model_id": "1"}, "qty": 2}]', NULL, NULL, now());
SELECT state, attempts, correlation_ids FROM invsync.order_fetches WHERE tenant_id = 43;
SELECT l.sku, q.state, q.pushed_level, q.lease_until IS NULL AS released
  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 43 ORDER BY l.sku;
SELECT invsync._take_refresh_lease(43, :shop, now(), interval '10 seconds');
SELECT invsync._store_refreshed_tokens(43, :shop, 'refresh-4202-replaced',
	'access-4202-refreshed', 'refresh-4202-refreshed', now() + interval '4 hours', NULL);
SELECT invsync._refresh_failed(43, :shop, false, 'error_server: try later');
SELECT access_token, refresh_token, token_state, token_error
  FROM invsync.shops WHERE tenant_id = 43;
SELECT invsync._purge_attempts(now() - interval '1000 years', 10);
SELECT invsync._purge_attempts(now() + interval '1 day', 10) >= 1 AS purged;
-- and nothing beyond: no stock function, no version bump, no listing
SELECT has_function_privilege('invsync.adjust(text, text, bigint, text, text, text)', 'EXECUTE') AS adjust,
	   has_column_privilege('invsync.sync_queue', 'version', 'UPDATE') AS bump_version,
	   has_table_privilege('invsync.listings', 'INSERT, UPDATE, DELETE') AS write_listings,
	   has_table_privilege('invsync.ledger', 'SELECT') AS read_ledger,
	   has_column_privilege('invsync.apps', 'app_secret', 'UPDATE') AS write_app_secret;
ROLLBACK;

-- the admin's writes are all there
SELECT a.app_secret, a.push_secret, s.access_token, s.refresh_token, s.rate_limit_per_sec
  FROM invsync.apps a JOIN invsync.shops s USING (tenant_id, app_id)
 WHERE a.tenant_id = 43;

DELETE FROM invsync.shops WHERE tenant_id = 43;
DELETE FROM invsync.apps WHERE tenant_id = 43;
DROP ROLE regress_sec_admin, regress_sec_secrets, regress_sec_reader;
