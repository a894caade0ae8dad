--
-- privileges: what invsync_reader, invsync_writer, invsync_admin,
-- invsync_webhook and PUBLIC may do; the calling role is the ledger's
-- actor; every SECURITY DEFINER function pins search_path.  Tenant 15.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 15;

CREATE ROLE regress_inv_reader IN ROLE invsync_reader;
CREATE ROLE regress_inv_writer IN ROLE invsync_writer;
CREATE ROLE regress_inv_admin IN ROLE invsync_admin;
CREATE ROLE regress_inv_webhook IN ROLE invsync_webhook;
CREATE ROLE regress_inv_nobody;

SELECT location FROM invsync.upsert_location('W1');
SELECT location FROM invsync.upsert_location('W2');
SELECT sku FROM invsync.upsert_item('A');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 10, 'receipt', 'su-1');

--
-- 1. Generic checks over every object of the extension
--
-- every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp
SELECT count(*) > 0 AS has_security_definer_functions
  FROM pg_proc p WHERE p.pronamespace = 'invsync'::regnamespace AND p.prosecdef;
SELECT p.oid::regprocedure AS not_pinned, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'invsync'::regnamespace AND p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);
-- PUBLIC holds no privilege on the schema or on any relation or function of
-- the extension (a NULL proacl would mean the default: EXECUTE to PUBLIC)
SELECT has_schema_privilege('public', 'invsync', 'USAGE') AS public_schema_usage;
SELECT c.oid::regclass AS public_may_use, c.relacl
  FROM pg_class c
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'invsync'
 WHERE c.relacl IS NULL
	OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0);
SELECT p.oid::regprocedure AS public_may_execute, p.proacl
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'invsync'
 WHERE p.proacl IS NULL
	OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0);
-- neither reader nor writer may write any table of the schema directly
SELECT r.rolname, c.oid::regclass AS may_write
  FROM pg_class c
 CROSS JOIN (VALUES ('regress_inv_reader'), ('regress_inv_writer')) r(rolname)
 WHERE c.relnamespace = 'invsync'::regnamespace AND c.relkind IN ('r', 'p', 'v')
   AND has_table_privilege(r.rolname, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE');
-- no role but the owner may UPDATE, DELETE or TRUNCATE the ledger or write
-- stock_levels, or write the bundle tables set_bundle() keeps
SELECT r.rolname, t.tab, t.priv
  FROM (VALUES ('regress_inv_reader'), ('regress_inv_writer'), ('regress_inv_admin'),
			   ('regress_inv_webhook'), ('regress_inv_nobody')) r(rolname)
 CROSS JOIN (VALUES ('invsync.ledger', 'UPDATE'), ('invsync.ledger', 'DELETE'),
					('invsync.ledger', 'TRUNCATE'), ('invsync.ledger', 'INSERT'),
					('invsync.stock_levels', 'INSERT'), ('invsync.stock_levels', 'UPDATE'),
					('invsync.stock_levels', 'DELETE'), ('invsync.stock_levels', 'TRUNCATE'),
					('invsync.bundle_components', 'INSERT, UPDATE, DELETE, TRUNCATE'),
					('invsync.bundle_leaves', 'INSERT, UPDATE, DELETE, TRUNCATE'),
					('invsync.bundle_versions', 'INSERT, UPDATE, DELETE, TRUNCATE')) t(tab, priv)
 WHERE has_table_privilege(r.rolname, t.tab, t.priv);
-- the webhook role may run no stock function
SELECT p.oid::regprocedure AS webhook_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'invsync'::regnamespace
   AND p.proname IN ('adjust', 'set_on_hand', 'transfer', 'reserve', 'release',
					 'fulfill', 'available', 'check_consistency',
					 'purge_idempotency_keys', 'upsert_item', 'upsert_location',
					 'set_bundle', '_post', '_take_idempotency_key')
   AND has_function_privilege('regress_inv_webhook', p.oid, 'EXECUTE');

--
-- 2. reader: the views and available(), nothing else
--
SET ROLE regress_inv_reader;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock;
SELECT operation, on_hand_change, actor = session_user AS actor_is_superuser
  FROM invsync.ledger_entries;
SELECT count(*) AS open_lines FROM invsync.open_reservations;
SELECT invsync.available('A') AS a, invsync.current_tenant() AS tenant;
SELECT count(*) AS inconsistent FROM invsync.check_consistency();
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'rd-1');
SELECT * FROM invsync.reserve('O1', '[{"sku": "A", "qty": 1}]', 'rd-2');
SELECT * FROM invsync.upsert_item('B');
SELECT invsync.purge_idempotency_keys('0');
SELECT count(*) FROM invsync.ledger;
SELECT count(*) FROM invsync.stock_levels;
INSERT INTO invsync.items (sku) VALUES ('B');
UPDATE invsync.stock_levels SET on_hand = 100;
SELECT * FROM invsync._post(15, 'A', 'W1', 1, 0, 'adjust', NULL, NULL, NULL, 'rd-3');
RESET ROLE;

--
-- 3. writer: every stock and catalog function, no table directly; the
-- ledger rows name the writer as actor
--
SET ROLE regress_inv_writer;
SELECT sku FROM invsync.upsert_item('B');
SELECT location FROM invsync.upsert_location('W3');
SELECT sku FROM invsync.upsert_item('AB');
SELECT component_sku FROM invsync.set_bundle('AB', '[{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1}]');
SELECT operation, on_hand_after, actor FROM invsync.adjust('B', 'W1', 5, 'receipt', 'wr-1');
SELECT operation, on_hand_after, actor FROM invsync.set_on_hand('A', 'W1', 8, 'count', 'wr-2');
SELECT operation, on_hand_after, actor FROM invsync.transfer('A', 'W1', 'W2', 1, 'wr-3');
SELECT operation, sku, reserved_after, actor FROM invsync.reserve('O1', '[{"sku": "AB", "qty": 2}]', 'wr-4');
SELECT operation, sku, reserved_after, actor FROM invsync.release('O1', 'wr-5');
SELECT operation, sku, reserved_after, actor FROM invsync.reserve('O2', '[{"sku": "A", "qty": 1}]', 'wr-6');
SELECT operation, sku, on_hand_after, actor FROM invsync.fulfill('O2', 'wr-7');
SELECT invsync.available('AB') AS ab;
SELECT current_user, session_user = current_user AS is_session_user;
-- no direct writes, not even through the views
INSERT INTO invsync.ledger (tenant_id, sku, location, operation, on_hand_change,
	reserved_change, on_hand_after, reserved_after, idempotency_key,
	correlation_id, actor)
VALUES (15, 'A', 'W1', 'adjust', 1, 0, 11, 0, 'forged', 'forged', 'nobody');
UPDATE invsync.ledger SET on_hand_change = 0;
DELETE FROM invsync.ledger;
INSERT INTO invsync.stock_levels (tenant_id, sku, location, on_hand) VALUES (15, 'B', 'W2', 1);
UPDATE invsync.stock_levels SET on_hand = 100;
DELETE FROM invsync.stock_levels;
UPDATE invsync.stock SET on_hand = 100;
INSERT INTO invsync.items (sku) VALUES ('C');
DELETE FROM invsync.idempotency_keys;
UPDATE invsync.reservation_orders SET status = 'reserved';
SELECT count(*) FROM invsync.ledger;
SELECT invsync.purge_idempotency_keys('0');
SELECT * FROM invsync._post(15, 'A', 'W1', 1, 0, 'adjust', NULL, NULL, NULL, 'wr-8');
SELECT invsync._take_idempotency_key(15, 'wr-9', 'adjust', '[]');
RESET ROLE;

--
-- 4. admin: reads every table, manages the catalog tables, purges keys;
-- still cannot change the ledger or stock_levels
--
SET ROLE regress_inv_admin;
SELECT count(*) > 0 AS reads_ledger FROM invsync.ledger WHERE tenant_id = 15;
SELECT count(*) > 0 AS reads_keys FROM invsync.idempotency_keys WHERE tenant_id = 15;
INSERT INTO invsync.items (tenant_id, sku, name) VALUES (15, 'C', 'made by admin');
UPDATE invsync.items SET name = 'renamed by admin' WHERE tenant_id = 15 AND sku = 'C';
INSERT INTO invsync.locations (tenant_id, location, priority) VALUES (15, 'W4', 5);
UPDATE invsync.locations SET priority = 1 WHERE tenant_id = 15 AND location = 'W2';
-- bundles change only through set_bundle(), which keeps their flat lists:
-- no direct write to bundle_components or bundle_leaves
INSERT INTO invsync.items (tenant_id, sku) VALUES (15, 'AC');
INSERT INTO invsync.bundle_components (tenant_id, bundle_sku, component_sku, qty)
VALUES (15, 'AC', 'A', 1), (15, 'AC', 'C', 1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE invsync.bundle_components SET qty = 5 WHERE tenant_id = 15 AND bundle_sku = 'AB';
DELETE FROM invsync.bundle_components WHERE tenant_id = 15 AND bundle_sku = 'AB';
INSERT INTO invsync.bundle_leaves (tenant_id, bundle_sku, component_sku, qty, depth)
VALUES (15, 'AC', 'A', 1, 1);
UPDATE invsync.bundle_leaves SET qty = 5 WHERE tenant_id = 15 AND bundle_sku = 'AB';
SELECT component_sku FROM invsync.set_bundle('AC', '[{"sku": "A", "qty": 1}, {"sku": "C", "qty": 1}]');
SELECT component_sku, qty FROM invsync.bundle_leaves WHERE tenant_id = 15 AND bundle_sku = 'AC' ORDER BY 1;
-- deleting a bundle no other bundle contains takes its components and list along
DELETE FROM invsync.items WHERE tenant_id = 15 AND sku = 'AC';
SELECT count(*) AS ac_rows FROM invsync.bundle_leaves WHERE tenant_id = 15 AND bundle_sku = 'AC';
-- the stock functions, as a writer would
SELECT operation, on_hand_after, actor FROM invsync.adjust('A', 'W1', 1, 'receipt', 'ad-1');
SELECT invsync.purge_idempotency_keys('1 day') AS purged;
-- but never the ledger or the stock cache
UPDATE invsync.ledger SET on_hand_change = 0 WHERE tenant_id = 15;
DELETE FROM invsync.ledger WHERE tenant_id = 15;
TRUNCATE invsync.ledger;
INSERT INTO invsync.ledger SELECT * FROM invsync.ledger WHERE tenant_id = 15 LIMIT 1;
UPDATE invsync.stock_levels SET on_hand = 100 WHERE tenant_id = 15;
INSERT INTO invsync.stock_levels (tenant_id, sku, location, on_hand) VALUES (15, 'C', 'W1', 1);
DELETE FROM invsync.stock_levels WHERE tenant_id = 15;
UPDATE invsync.idempotency_keys SET fingerprint = '\x00' WHERE tenant_id = 15;
RESET ROLE;

--
-- 5. webhook: nothing of the ledger
--
SET ROLE regress_inv_webhook;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'wh-1');
SELECT * FROM invsync.reserve('O3', '[{"sku": "A", "qty": 1}]', 'wh-2');
SELECT invsync.available('A');
SELECT count(*) FROM invsync.stock;
SELECT count(*) FROM invsync.ledger_entries;
SELECT count(*) FROM invsync.ledger;
RESET ROLE;

--
-- 6. A role without any invsync role: not even the schema
--
SET ROLE regress_inv_nobody;
SELECT count(*) FROM invsync.stock;
SELECT invsync.available('A');
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'nb-1');
RESET ROLE;

--
-- 7. The actor is the role that called (after SET ROLE), never the owner
-- of the SECURITY DEFINER functions
--
SELECT idempotency_key,
	   CASE WHEN actor = session_user THEN '(the superuser)' ELSE actor END AS actor
  FROM invsync.ledger_entries ORDER BY ledger_id;
SELECT bool_and(actor <> f.owner) AS actor_is_never_the_owner
  FROM invsync.ledger_entries,
	   (SELECT pg_get_userbyid(p.proowner) AS owner FROM pg_proc p
		 WHERE p.oid = 'invsync.adjust(text, text, bigint, text, text, text)'::regprocedure) f
 WHERE idempotency_key LIKE 'wr-%' OR idempotency_key LIKE 'ad-%';
-- SET ROLE inside a transaction
BEGIN;
SET LOCAL ROLE regress_inv_writer;
SELECT actor FROM invsync.adjust('A', 'W1', 1, 'receipt', 'tx-1');
COMMIT;

--
-- 8. The ledger's append-only guard stops even the superuser
--
SELECT current_setting('is_superuser') AS superuser;
UPDATE invsync.ledger SET actor = 'someone' WHERE tenant_id = 15;
DELETE FROM invsync.ledger WHERE tenant_id = 15;
TRUNCATE invsync.ledger;
SELECT count(*) AS ledger_rows FROM invsync.ledger_entries;

SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);

--
-- 9. The worker's activity counts every tenant's work: it is for pg_monitor
-- (the DBA), and no tenant role may read it
--
CREATE ROLE regress_inv_monitor IN ROLE pg_monitor;
SELECT r.rolname, has_table_privilege(r.rolname, 'invsync.worker_activity', 'SELECT') AS may_read,
	   has_function_privilege(r.rolname, 'invsync._worker_activity()', 'EXECUTE') AS may_call
  FROM (VALUES ('regress_inv_reader'), ('regress_inv_writer'), ('regress_inv_admin'),
			   ('regress_inv_webhook'), ('regress_inv_nobody'), ('regress_inv_monitor')) r(rolname);
SET ROLE regress_inv_admin;
SELECT count(*) FROM invsync.worker_activity;
SET ROLE regress_inv_monitor;
SELECT pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker')
	   AS the_workers_pid, started_at <= now() AS started
  FROM invsync.worker_activity;
RESET ROLE;

DROP ROLE regress_inv_reader, regress_inv_writer, regress_inv_admin,
	regress_inv_webhook, regress_inv_nobody, regress_inv_monitor;
