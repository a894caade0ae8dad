--
-- errors: every SQLSTATE of class IV the ledger raises, each triggered,
-- with its message, and proof that the failed call wrote nothing.  After
-- each failure, "unchanged" compares a fingerprint of every ledger-half
-- table (all tenants) with the one taken before.  Also: invalid tenant
-- settings.  Tenant 12.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 12;

-- md5 over every row of every ledger-half table, all tenants
CREATE FUNCTION pg_temp.state() RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	t text;
	h text;
	result text := '';
BEGIN
	FOREACH t IN ARRAY ARRAY['items', 'locations', 'bundle_components',
							 'bundle_leaves', 'bundle_versions',
							 'stock_levels', 'ledger', 'reservation_orders',
							 'reservations', 'idempotency_keys']
	LOOP
		EXECUTE format('SELECT md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), ''''))
						  FROM invsync.%I x', t) INTO h;
		result := result || t || ':' || h || ' ';
	END LOOP;
	RETURN md5(result);
END
$$;

-- a small world: A at W1 (5, 2 of them reserved by order R1), B at W1 (1),
-- a bundle K of 2 A, and an order R2 already fulfilled, R3 released
SELECT location FROM invsync.upsert_location('W1');
SELECT location FROM invsync.upsert_location('W2');
SELECT sku FROM invsync.upsert_item('A');
SELECT sku FROM invsync.upsert_item('B');
SELECT sku FROM invsync.upsert_item('K');
SELECT bundle_sku, component_sku, qty FROM invsync.set_bundle('K', '[{"sku": "A", "qty": 2}]');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 9, 'receipt', 'setup-1');
SELECT on_hand_after FROM invsync.adjust('B', 'W1', 1, 'receipt', 'setup-2');
SELECT reserved_after FROM invsync.reserve('R1', '[{"sku": "A", "qty": 2}]', 'setup-3');
SELECT reserved_after FROM invsync.reserve('R2', '[{"sku": "A", "qty": 1}]', 'setup-4');
SELECT on_hand_after, reserved_after FROM invsync.fulfill('R2', 'setup-5');
SELECT reserved_after FROM invsync.reserve('R3', '[{"sku": "A", "qty": 1}]', 'setup-6');
SELECT reserved_after FROM invsync.release('R3', 'setup-7');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', -3, 'damaged', 'setup-8');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT pg_temp.state() AS s0 \gset

--
-- IV001 unknown sku
--
SELECT * FROM invsync.adjust('NOPE', 'W1', 1, 'receipt', 'e-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('NOPE', 'W1', 1, 'count', 'e-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('NOPE', 'W1', 'W2', 1, 'e-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- on the second line: the first line's reservation is undone
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1}, {"sku": "NOPE", "qty": 1}]', 'e-4');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT invsync.available('NOPE');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('NOPE', '[{"sku": "A", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- an unknown component: the bundle keeps its old components
SELECT * FROM invsync.set_bundle('K', '[{"sku": "B", "qty": 1}, {"sku": "NOPE", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a NULL sku, on adjust()'s direct path (a stock row exists, READ
-- COMMITTED) and its SQL path, and on the other movements
SELECT * FROM invsync.adjust(NULL, 'W1', 1, 'receipt', 'e-null-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM invsync.adjust(NULL, 'W1', 1, 'receipt', 'e-null-1');
ROLLBACK;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand(NULL, 'W1', 1, 'count', 'e-null-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer(NULL, 'W1', 'W2', 1, 'e-null-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a sku of another tenant is unknown here
SET invsync.tenant = 13;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'e-5');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SET invsync.tenant = 12;

--
-- IV002 unknown location
--
SELECT * FROM invsync.adjust('A', 'NOWHERE', 1, 'receipt', 'e-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', NULL, 1, 'receipt', 'e-null-4');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM invsync.adjust('A', NULL, 1, 'receipt', 'e-null-4');
ROLLBACK;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust(NULL, NULL, 1, 'receipt', 'e-null-5');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', NULL, 1, 'count', 'e-null-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', NULL, 1, 'e-null-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- the transfer_out row was already written when transfer_in fails
SELECT * FROM invsync.transfer('A', 'W1', 'NOWHERE', 1, 'e-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1, "location": "NOWHERE"}]', 'e-8');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT invsync.available('A', 'NOWHERE');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- IV003 invalid quantity, or a level out of range
--
SELECT * FROM invsync.adjust('A', 'W1', 0, 'receipt', 'e-9');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', NULL, 'receipt', 'e-10');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', 1000000001, 'receipt', 'e-11');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', -1000000001, 'receipt', 'e-12');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- each delta fits, the level would not
SELECT * FROM invsync.adjust('A', 'W1', 1000000000, 'receipt', 'e-13');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', -1, 'count', 'e-14');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1000000001, 'count', 'e-15');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', NULL, 'count', 'e-16');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W2', 0, 'e-17');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W2', -1, 'e-18');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 0}]', 'e-19');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1.5}]', 'e-20');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": -2}]', 'e-21');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1000000001}]', 'e-22');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a bundle line whose components would need more than one movement carries
SELECT * FROM invsync.reserve('E1', '[{"sku": "K", "qty": 600000000}]', 'e-23');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- a bundle one unit of which would need more than one movement carries
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['Q1', 'Q2', 'Q3', 'Q4']) s;
SELECT component_sku FROM invsync.set_bundle('Q1', '[{"sku": "B", "qty": 1000}]');
SELECT component_sku FROM invsync.set_bundle('Q2', '[{"sku": "Q1", "qty": 1000}]');
SELECT component_sku FROM invsync.set_bundle('Q3', '[{"sku": "Q2", "qty": 1000}]');
SELECT pg_temp.state() AS s0 \gset
SELECT * FROM invsync.set_bundle('Q4', '[{"sku": "Q3", "qty": 2}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV004 insufficient stock (A at W1: 5 on hand, 2 reserved; B at W1: 1)
--
SELECT * FROM invsync.adjust('A', 'W1', -7, 'damaged', 'e-24');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- on hand may not drop below what is reserved
SELECT * FROM invsync.adjust('A', 'W1', -5, 'damaged', 'e-25');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, 'count', 'e-26');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- no stock row at all: nothing to take
SELECT * FROM invsync.adjust('A', 'W2', -1, 'damaged', 'e-27');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W2', 5, 'e-28');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W2', 'W1', 1, 'e-29');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 5}]', 'e-30');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1, "location": "W2"}]', 'e-31');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- the first line fits, the second does not: neither is reserved
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 3}, {"sku": "B", "qty": 2}]', 'e-32');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- two lines of one sku together need more than there is
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 3}, {"sku": "A", "qty": 2}]', 'e-33');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "K", "qty": 3}]', 'e-34');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV005 idempotency key reused with other parameters
--
SELECT * FROM invsync.adjust('A', 'W1', 10, 'receipt', 'setup-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 9, 'receipt', 'setup-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.release('R1', 'setup-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV006 invalid order reference or reservation lines
--
SELECT * FROM invsync.reserve(NULL, '[{"sku": "A", "qty": 1}]', 'e-35');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('', '[{"sku": "A", "qty": 1}]', 'e-36');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve(repeat('r', 256), '[{"sku": "A", "qty": 1}]', 'e-37');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', NULL, 'e-38');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[]', 'e-39');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '{"sku": "A", "qty": 1}', 'e-40');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', (SELECT jsonb_agg(jsonb_build_object('sku', 'A', 'qty', 1))
									   FROM generate_series(1, 1001)), 'e-41');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '["A"]', 'e-42');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A"}]', 'e-43');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": "1"}]', 'e-44');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": 7, "qty": 1}]', 'e-45');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1, "location": 3}]', 'e-46');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1, "price": 3}]', 'e-47');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV007 unknown order
--
SELECT * FROM invsync.release('NO-SUCH-ORDER', 'e-48');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.fulfill('NO-SUCH-ORDER', 'e-49');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- R1 of this tenant is unknown to another
SET invsync.tenant = 13;
SELECT * FROM invsync.release('R1', 'e-50');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SET invsync.tenant = 12;

--
-- IV008 order already fulfilled (R2)
--
SELECT * FROM invsync.fulfill('R2', 'e-51');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.release('R2', 'e-52');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV009 a bundle that would contain itself
--
SELECT * FROM invsync.set_bundle('K', '[{"sku": "K", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT sku FROM invsync.upsert_item('K2');
SELECT pg_temp.state() AS s0 \gset
SELECT component_sku FROM invsync.set_bundle('K2', '[{"sku": "K", "qty": 1}]');
SELECT pg_temp.state() AS s0 \gset
SELECT * FROM invsync.set_bundle('K', '[{"sku": "K2", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV010 invalid idempotency key
--
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', '');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', repeat('k', 256));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, 'count', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W2', 1, '');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('E1', '[{"sku": "A", "qty": 1}]', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.release('R1', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.fulfill('R1', '');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
-- 255 characters are a valid key
SELECT on_hand_change FROM invsync.adjust('B', 'W1', 1, 'receipt', repeat('k', 255));
SELECT pg_temp.state() AS s0 \gset

--
-- IV011 order already released (R3)
--
SELECT * FROM invsync.release('R3', 'e-53');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.fulfill('R3', 'e-54');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV012 an order reference reserves once (open, fulfilled or released)
--
SELECT * FROM invsync.reserve('R1', '[{"sku": "A", "qty": 1}]', 'e-55');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('R2', '[{"sku": "A", "qty": 1}]', 'e-56');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('R3', '[{"sku": "A", "qty": 1}]', 'e-57');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV013 a bundle holds no stock; a sku with stock cannot become a bundle
--
SELECT * FROM invsync.adjust('K', 'W1', 1, 'receipt', 'e-58');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('K', 'W1', 1, 'count', 'e-59');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('K', 'W1', 'W2', 1, 'e-60');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('B', '[{"sku": "A", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV014 invalid argument
--
SELECT * FROM invsync.upsert_item('has space');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_item('');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_item(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_item(repeat('s', 129));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_location('main hall');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_location(repeat('l', 65));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '{"sku": "A", "qty": 1}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A", "qty": 0}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A", "qty": 1001}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A", "qty": 1.5}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A"}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A", "qty": "1"}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '["A"]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2', '[{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1}, {"sku": "A", "qty": 2}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_bundle('K2',
	(SELECT jsonb_agg(jsonb_build_object('sku', 'A', 'qty', 1)) FROM generate_series(1, 1001)));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W1', 1, 'e-61');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT invsync.purge_idempotency_keys('1 day', 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV015 the ledger is append-only, for the superuser too
--
SELECT current_setting('is_superuser') AS superuser;
UPDATE invsync.ledger SET reason = 'rewritten' WHERE tenant_id = 12;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
DELETE FROM invsync.ledger WHERE tenant_id = 12;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
TRUNCATE invsync.ledger;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- The internal C functions refuse the NULLs their callers never pass
-- (only the owner may call them)
--
SELECT invsync._check_quantity(1, NULL);
SELECT invsync._take_idempotency_key(NULL, 'e-null-8', 'adjust', '[]');
SELECT invsync._take_idempotency_key(12, 'e-null-8', NULL, '[]');
SELECT invsync._take_idempotency_key(12, 'e-null-8', 'adjust', NULL);
SELECT * FROM invsync._post(NULL, 'A', 'W1', 1, 0, 'adjust', NULL, NULL, NULL, 'e-null-9');
SELECT * FROM invsync._post(12, 'A', 'W1', NULL, 0, 'adjust', NULL, NULL, NULL, 'e-null-9');
SELECT * FROM invsync._post(12, 'A', 'W1', 1, NULL, 'adjust', NULL, NULL, NULL, 'e-null-9');
SELECT * FROM invsync._post(12, 'A', 'W1', 1, 0, NULL, NULL, NULL, NULL, 'e-null-9');
SELECT * FROM invsync._post(12, 'A', 'W1', 1, 0, 'adjust', NULL, NULL, NULL, NULL);
SELECT * FROM invsync._post(12, NULL, 'W1', 1, 0, 'adjust', NULL, NULL, NULL, 'e-null-9');
SELECT pg_temp.state() = :'s0' AS unchanged;

--
-- IV016 bundles nested deeper than max_bundle_depth(): N1 = [N2], N2 =
-- [N3], ..., N32 = [N33] nests N1 32 levels deep; N33 = [A] would make it 33
--
SELECT count(invsync.upsert_item('N' || g)) FROM generate_series(1, 33) g;
DO $$
BEGIN
	FOR g IN 1 .. 32
	LOOP
		PERFORM invsync.set_bundle('N' || g, jsonb_build_array(jsonb_build_object('sku', 'N' || (g + 1), 'qty', 1)));
	END LOOP;
END
$$;
SELECT max(depth) AS n1_depth FROM invsync.bundle_leaves WHERE tenant_id = 12 AND bundle_sku = 'N1';
SELECT pg_temp.state() AS s0 \gset
SELECT * FROM invsync.set_bundle('N33', '[{"sku": "A", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- IV017 a bundle consuming more than max_bundle_size() stocked skus
--
SELECT count(invsync.upsert_item(s)) FROM (
	SELECT 'M' || g FROM generate_series(1, 1001) g
	UNION ALL VALUES ('M-LOW'), ('M-HIGH'), ('M-ALL')) x (s);
SELECT count(*) FROM invsync.set_bundle('M-LOW',
	(SELECT jsonb_agg(jsonb_build_object('sku', 'M' || g, 'qty', 1)) FROM generate_series(1, 1000) g));
SELECT count(*) FROM invsync.set_bundle('M-HIGH', '[{"sku": "M1001", "qty": 1}]');
SELECT pg_temp.state() AS s0 \gset
SELECT * FROM invsync.set_bundle('M-ALL', '[{"sku": "M-LOW", "qty": 1}, {"sku": "M-HIGH", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- invsync.tenant accepts only a non-negative bigint; empty means 0
--
SET invsync.tenant = 'abc';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET invsync.tenant = '-1';
SET invsync.tenant = '1.5';
SET invsync.tenant = '12abc';
SET invsync.tenant = '9223372036854775808';
SELECT set_config('invsync.tenant', 'abc', true);
-- refused values leave the tenant as it was
SHOW invsync.tenant;
SELECT invsync.current_tenant();
SET invsync.tenant = '9223372036854775807';
SELECT invsync.current_tenant();
SET invsync.tenant = '';
SELECT invsync.current_tenant();
RESET invsync.tenant;
SELECT invsync.current_tenant();
SET invsync.tenant = 12;

-- after all of that, nothing is out of step
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
