--
-- direct_path_checks: adjust()'s direct path steps aside wherever the SQL
-- path would check something it does not (DESIGN §7), so that both refuse
-- alike: a privilege that adjust()'s owner lacks on one of the tables (or
-- on the ledger's sequence), and row security on them.  Each case is tried
-- on the SQL path (REPEATABLE READ) and on the direct path (READ COMMITTED,
-- a stock row that takes the change); neither writes anything.  Tenants 44
-- and 45.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 45;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_item('PEN');
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 10, 'receipt', 'g-0');
SET invsync.tenant = 44;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_item('PEN');
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 10, 'receipt', 'g-0');

-- what the tenants' ledger-half tables hold, to show nothing was written
CREATE FUNCTION pg_temp.state() RETURNS text
	LANGUAGE sql AS $$
	SELECT md5(concat_ws(' ',
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.ledger x
		  WHERE tenant_id IN (44, 45)),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.stock_levels x
		  WHERE tenant_id IN (44, 45)),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM invsync.idempotency_keys x
		  WHERE tenant_id IN (44, 45))))
$$;

-- adjust() is owned, for this test, by a role that is no superuser and
-- may do everything the SQL path does
SELECT proowner::regrole AS adjust_owner FROM pg_proc
 WHERE oid = 'invsync.adjust(text, text, bigint, text, text, text)'::regprocedure \gset
CREATE ROLE regress_adjust_owner;
GRANT USAGE ON SCHEMA invsync TO regress_adjust_owner;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA invsync TO regress_adjust_owner;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA invsync TO regress_adjust_owner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invsync TO regress_adjust_owner;
ALTER FUNCTION invsync.adjust(text, text, bigint, text, text, text)
	OWNER TO regress_adjust_owner;

-- with every privilege, both paths write
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-1');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-2');
COMMIT;
SELECT pg_temp.state() AS s0 \gset

--
-- 1. The owner lacks a privilege the SQL path needs: both paths refuse
--
-- INSERT on the ledger
REVOKE INSERT ON invsync.ledger FROM regress_adjust_owner;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-3');
ROLLBACK;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
GRANT INSERT ON invsync.ledger TO regress_adjust_owner;
-- UPDATE on stock_levels
REVOKE UPDATE ON invsync.stock_levels FROM regress_adjust_owner;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-4');
ROLLBACK;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-4');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a column privilege does not do: the statement updates reserved too
GRANT UPDATE (on_hand, updated_at) ON invsync.stock_levels TO regress_adjust_owner;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-5');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- the three columns do
GRANT UPDATE (reserved) ON invsync.stock_levels TO regress_adjust_owner;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-5');
REVOKE UPDATE (on_hand, reserved, updated_at) ON invsync.stock_levels FROM regress_adjust_owner;
GRANT UPDATE ON invsync.stock_levels TO regress_adjust_owner;
SELECT pg_temp.state() AS s0 \gset
-- INSERT on idempotency_keys
REVOKE INSERT ON invsync.idempotency_keys FROM regress_adjust_owner;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-6');
ROLLBACK;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
GRANT INSERT ON invsync.idempotency_keys TO regress_adjust_owner;
-- USAGE on the ledger's sequence
REVOKE USAGE ON SEQUENCE invsync.ledger_id_seq FROM regress_adjust_owner;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-7');
ROLLBACK;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
GRANT USAGE ON SEQUENCE invsync.ledger_id_seq TO regress_adjust_owner;
-- a privilege held through a role counts, and its revocation too
REVOKE INSERT ON invsync.ledger FROM regress_adjust_owner;
CREATE ROLE regress_ledger_inserter;
GRANT INSERT ON invsync.ledger TO regress_ledger_inserter;
GRANT regress_ledger_inserter TO regress_adjust_owner;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-8');
REVOKE regress_ledger_inserter FROM regress_adjust_owner;
SELECT pg_temp.state() AS s0 \gset
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-9');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
GRANT INSERT ON invsync.ledger TO regress_adjust_owner;

--
-- 2. Row security: a policy confines the owner to tenant 44 (FORCE: it
-- would hold for the tables' owner too)
--
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['idempotency_keys', 'stock_levels', 'ledger'] LOOP
		EXECUTE format('ALTER TABLE invsync.%I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format('ALTER TABLE invsync.%I FORCE ROW LEVEL SECURITY', t);
		EXECUTE format('CREATE POLICY regress_tenant_44 ON invsync.%I USING (tenant_id = 44)', t);
	END LOOP;
END
$$;
-- tenant 44 still writes, on both paths
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-10');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-11');
COMMIT;
SELECT pg_temp.state() AS s0 \gset
-- tenant 45 is refused on both paths
SET invsync.tenant = 45;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-12');
ROLLBACK;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-12');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a policy on one table is enough
DROP POLICY regress_tenant_44 ON invsync.idempotency_keys;
DROP POLICY regress_tenant_44 ON invsync.ledger;
ALTER TABLE invsync.idempotency_keys DISABLE ROW LEVEL SECURITY;
ALTER TABLE invsync.ledger DISABLE ROW LEVEL SECURITY;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-13');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- with row security off, a query it would affect fails rather than
-- silently bypassing it
SET row_security = off;
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-14');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
RESET row_security;
DROP POLICY regress_tenant_44 ON invsync.stock_levels;
ALTER TABLE invsync.stock_levels NO FORCE ROW LEVEL SECURITY;
ALTER TABLE invsync.stock_levels DISABLE ROW LEVEL SECURITY;
ALTER TABLE invsync.idempotency_keys NO FORCE ROW LEVEL SECURITY;
ALTER TABLE invsync.ledger NO FORCE ROW LEVEL SECURITY;
-- and without the policy, tenant 45 writes again
SELECT on_hand_after FROM invsync.adjust('PEN', 'W1', 1, 'receipt', 'g-15');

ALTER FUNCTION invsync.adjust(text, text, bigint, text, text, text)
	OWNER TO :"adjust_owner";
DROP OWNED BY regress_adjust_owner, regress_ledger_inserter;
DROP ROLE regress_adjust_owner, regress_ledger_inserter;
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relnamespace = 'invsync'::regnamespace AND (relrowsecurity OR relforcerowsecurity);

SELECT tenant, sku, location, on_hand, reserved FROM (
	SELECT 44 AS tenant, * FROM invsync.stock_levels WHERE tenant_id = 44
	UNION ALL
	SELECT 45, * FROM invsync.stock_levels WHERE tenant_id = 45) s ORDER BY 1;
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
RESET invsync.tenant;
