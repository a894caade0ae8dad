--
-- pinning: a DBA pins a role to one tenant; the role, and every role that
-- is a member of it, then works in that tenant whatever invsync.tenant
-- says: adjust() on both paths, every other function, every view.  SET of
-- another tenant is refused (IV026); a setting that names another tenant
-- anyway makes every function and view refuse.  Tenants 41 and 42.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

-- two tenants with the same codes: A at W1, 10 in tenant 41, 20 in 42
SET invsync.tenant = 41;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_item('A');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 10, 'receipt', 'p-0');
SET invsync.tenant = 42;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_item('A');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 20, 'receipt', 'p-0');
SELECT reserved_after FROM invsync.reserve('O-42', '[{"sku": "A", "qty": 1}]', 'p-1');
RESET invsync.tenant;

-- tenant 42's rows, to show that nothing a pinned role does touches them
CREATE FUNCTION pg_temp.tenant_42() RETURNS text
	LANGUAGE sql AS $$
	SELECT md5(concat_ws(' ',
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.ledger x
		  WHERE tenant_id = 42),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.stock_levels x
		  WHERE tenant_id = 42),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.idempotency_keys x
		  WHERE tenant_id = 42),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.items x
		  WHERE tenant_id = 42)))
$$;
SELECT pg_temp.tenant_42() AS t42 \gset

CREATE ROLE regress_pin_writer IN ROLE invsync_writer;
CREATE ROLE regress_pin_reader IN ROLE invsync_reader;
CREATE ROLE regress_pin_webhook IN ROLE invsync_webhook;
CREATE ROLE regress_pin_group;
CREATE ROLE regress_pin_member IN ROLE regress_pin_group, invsync_writer;
CREATE ROLE regress_free_writer IN ROLE invsync_writer;
GRANT regress_free_writer TO regress_pin_writer;

--
-- 1. Pinning: only the owner may; the pins are rows of tenant_roles
--
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_writer', 41);
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_reader', 41);
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_webhook', 41);
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_group', 41);
-- pinning again moves the pin
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_reader', 42);
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_reader', 41);
SELECT role, tenant_id FROM invsync.tenant_roles ORDER BY role::text;
-- an admin reads the tables directly: a pin confines its functions only
SELECT role, tenant_id FROM invsync.pin_role('invsync_admin', 41);
SELECT invsync.unpin_role('invsync_admin');
SELECT * FROM invsync.pin_role(NULL, 41);
SELECT * FROM invsync.pin_role('regress_pin_reader', -1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- no invsync role may pin, unpin or read the pins
SET ROLE regress_pin_writer;
SELECT * FROM invsync.pin_role('regress_pin_writer', 42);
SELECT invsync.unpin_role('regress_pin_writer');
SELECT * FROM invsync.tenant_roles;
RESET ROLE;
SET ROLE regress_free_writer;
SELECT * FROM invsync.pin_role('regress_free_writer', 42);
RESET ROLE;

--
-- 2. A pinned writer, invsync.tenant unset: works in tenant 41 on both
-- paths of adjust() and in every other function
--
SET ROLE regress_pin_writer;
SELECT invsync.current_tenant();
SELECT sku, on_hand_after, actor FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-1');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sku, on_hand_after FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-2');
COMMIT;
SELECT sku, on_hand_after FROM invsync.set_on_hand('A', 'W1', 15, 'count', 'pw-3');
SELECT sku, reserved_after FROM invsync.reserve('O-41', '[{"sku": "A", "qty": 2}]', 'pw-4');
SELECT sku, on_hand_after, reserved_after FROM invsync.fulfill('O-41', 'pw-5');
SELECT location FROM invsync.upsert_location('W2');
SELECT operation, on_hand_after FROM invsync.transfer('A', 'W1', 'W2', 1, 'pw-6');
SELECT invsync.available('A');
SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT count(*) AS ledger_rows FROM invsync.ledger_entries;
-- its own tenant may be named
SET invsync.tenant = 41;
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-7');
RESET invsync.tenant;
-- another one may not, however it is set
SET invsync.tenant = 42;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT set_config('invsync.tenant', '42', false);
BEGIN;
SET LOCAL invsync.tenant = 0;
ROLLBACK;
SHOW invsync.tenant;
RESET ROLE;
-- SET ROLE to an unpinned role does not lift the pin: the session's own
-- role is still pinned
SET SESSION AUTHORIZATION regress_pin_writer;
SET ROLE regress_free_writer;
SELECT session_user, current_user, invsync.current_tenant();
SET invsync.tenant = 42;
SELECT on_hand_after, actor FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-8');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT pg_temp.tenant_42() = :'t42' AS tenant_42_unchanged;

--
-- 3. A setting made before the pin applies: every function and view
-- refuses, on both paths, rather than work in either tenant
--
SET invsync.tenant = 42;
SET ROLE regress_pin_writer;
SHOW invsync.tenant;
SELECT invsync.current_tenant();
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-9');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pw-9');
ROLLBACK;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, 'count', 'pw-10');
SELECT * FROM invsync.transfer('A', 'W1', 'W2', 1, 'pw-11');
SELECT * FROM invsync.reserve('O-42b', '[{"sku": "A", "qty": 1}]', 'pw-12');
SELECT * FROM invsync.release('O-42', 'pw-13');
SELECT * FROM invsync.upsert_item('B');
SELECT invsync.available('A');
SELECT count(*) FROM invsync.stock;
SELECT count(*) FROM invsync.ledger_entries;
SELECT count(*) FROM invsync.open_reservations;
SELECT count(*) FROM invsync.check_consistency();
RESET invsync.tenant;
SELECT invsync.current_tenant();
RESET ROLE;
SELECT pg_temp.tenant_42() = :'t42' AS tenant_42_unchanged;

--
-- 4. A pinned reader sees its tenant only, in every view
--
-- (an inconsistency in tenant 42, for check_consistency(true) to find)
UPDATE invsync.stock_levels SET on_hand = on_hand + 1 WHERE tenant_id = 42;
SELECT tenant_id, sku, location FROM invsync.check_consistency(true)
 WHERE tenant_id IN (41, 42);
SET ROLE regress_pin_reader;
SELECT invsync.current_tenant();
SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT DISTINCT idempotency_key FROM invsync.ledger_entries
 WHERE idempotency_key IN ('p-0', 'p-1') ORDER BY 1;
SELECT order_ref FROM invsync.open_reservations;
SELECT count(*) FROM invsync.listing_levels;
SELECT count(*) FROM invsync.sync_status;
SELECT count(*) FROM invsync.dead_letters;
-- also where the view runs in a parallel worker (which reads the pins
-- for itself)
SET force_parallel_mode = on;
SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT count(*) AS ledger_rows FROM invsync.ledger_entries;
RESET force_parallel_mode;
-- all tenants means its own
SELECT tenant_id, sku, location FROM invsync.check_consistency(true);
SET invsync.tenant = 42;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
UPDATE invsync.stock_levels SET on_hand = on_hand - 1 WHERE tenant_id = 42;

--
-- 5. The webhook role is pinned alike
--
SET ROLE regress_pin_webhook;
SET invsync.tenant = 42;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET invsync.tenant = 41;
RESET invsync.tenant;
RESET ROLE;

--
-- 6. A member of a pinned role is pinned; pins to two tenants refuse all
--
SET ROLE regress_pin_member;
SELECT invsync.current_tenant();
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pm-1');
SET invsync.tenant = 42;
RESET ROLE;
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_member', 42);
SET ROLE regress_pin_member;
SELECT invsync.current_tenant();
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'pm-2');
SET invsync.tenant = 42;
RESET ROLE;
-- a membership granted later applies at once
SELECT invsync.unpin_role('regress_pin_member');
REVOKE regress_pin_group FROM regress_pin_member;
SET ROLE regress_pin_member;
SET invsync.tenant = 42;
SELECT invsync.current_tenant();
RESET ROLE;
GRANT regress_pin_group TO regress_pin_member;
SET ROLE regress_pin_member;
SELECT invsync.current_tenant();
RESET ROLE;
RESET invsync.tenant;

--
-- 7. Unpinned, a role chooses its tenant again; a pin made in a
-- transaction that rolls back never applied
--
SELECT invsync.unpin_role('regress_pin_writer');
SELECT invsync.unpin_role('regress_pin_writer');
SET ROLE regress_pin_writer;
SET invsync.tenant = 42;
SELECT invsync.current_tenant();
RESET ROLE;
BEGIN;
SELECT role, tenant_id FROM invsync.pin_role('regress_pin_writer', 41);
SET LOCAL ROLE regress_pin_writer;
SELECT invsync.current_tenant();
ROLLBACK;
SET ROLE regress_pin_writer;
SELECT invsync.current_tenant();
RESET ROLE;
RESET invsync.tenant;

SELECT invsync.unpin_role(role) FROM invsync.tenant_roles ORDER BY role::text;
SELECT count(*) AS pins FROM invsync.tenant_roles;
SET invsync.tenant = 41;
SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
RESET invsync.tenant;
DROP ROLE regress_pin_writer, regress_pin_reader, regress_pin_webhook,
	regress_pin_member, regress_pin_group, regress_free_writer;
