--
-- bundles: availability is the minimum over components of
-- floor(available / qty), through nested bundles; cycles are refused
-- (IV009, also indirect ones, also by a direct INSERT); a bundle holds no
-- stock (IV013); reserving a bundle reserves its components, and release
-- and fulfill give back or deduct the components.  Tenant 11.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 11;
SELECT nextval('invsync.ledger_id_seq') AS base \gset

SELECT location FROM invsync.upsert_location('W1', NULL, 1);
SELECT location FROM invsync.upsert_location('W2', NULL, 2);
SELECT sku FROM invsync.upsert_item('SHIRT');
SELECT sku FROM invsync.upsert_item('SOCK');
SELECT sku FROM invsync.upsert_item('BOX');
SELECT sku FROM invsync.upsert_item('KIT');
SELECT sku FROM invsync.upsert_item('GIFT');
SELECT sku FROM invsync.upsert_item('MIX');

--
-- 1. set_bundle
--
-- KIT = 1 SHIRT + 2 SOCK
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SHIRT", "qty": 1}, {"sku": "SOCK", "qty": 2}]');
-- set again: the new list replaces the old one
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 3}]');
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 2}, {"sku": "SHIRT", "qty": 1}]');
-- nested: GIFT = 2 KIT + 1 BOX, i.e. 2 SHIRT + 4 SOCK + 1 BOX
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('GIFT', '[{"sku": "KIT", "qty": 2}, {"sku": "BOX", "qty": 1}]');
-- MIX = 1 KIT + 1 SOCK: SOCK twice, 3 in all
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('MIX', '[{"sku": "KIT", "qty": 1}, {"sku": "SOCK", "qty": 1}]');

--
-- 2. Availability
--
SELECT count(*) AS rows FROM (
	SELECT * FROM invsync.adjust('SHIRT', 'W1', 5, 'receipt', 'in-1')
	UNION ALL SELECT * FROM invsync.adjust('SHIRT', 'W2', 2, 'receipt', 'in-2')
	UNION ALL SELECT * FROM invsync.adjust('SOCK', 'W1', 7, 'receipt', 'in-3')
	UNION ALL SELECT * FROM invsync.adjust('SOCK', 'W2', 4, 'receipt', 'in-4')
	UNION ALL SELECT * FROM invsync.adjust('BOX', 'W2', 10, 'receipt', 'in-5')) x;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
-- KIT: min(7 / 1, floor(11 / 2)) = 5; at W1 min(5, 3) = 3; at W2 min(2, 2) = 2
-- GIFT: min(floor(7 / 2), floor(11 / 4), 10) = 2; at W1 BOX is missing: 0;
--       at W2 min(floor(2 / 2), floor(4 / 4), 10) = 1
-- MIX: min(7, floor(11 / 3)) = 3; at W1 min(5, floor(7 / 3)) = 2; at W2 1
SELECT s.sku, invsync.available(s.sku) AS total,
	   invsync.available(s.sku, 'W1') AS w1, invsync.available(s.sku, 'W2') AS w2
  FROM (VALUES ('SHIRT'), ('SOCK'), ('BOX'), ('KIT'), ('GIFT'), ('MIX')) s(sku);
-- one SOCK less: still 3 pairs at W1 and 5 in all (whole kits only)
SELECT on_hand_after FROM invsync.adjust('SOCK', 'W1', -1, 'damaged', 'out-1');
SELECT invsync.available('KIT') AS kit, invsync.available('KIT', 'W1') AS kit_w1;

--
-- 3. Cycles are refused, directly or through other bundles
--
SELECT sku FROM invsync.upsert_item('X');
SELECT sku FROM invsync.upsert_item('Y');
SELECT sku FROM invsync.upsert_item('Z');
SELECT component_sku FROM invsync.set_bundle('X', '[{"sku": "Y", "qty": 1}]');
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "Z", "qty": 1}]');
-- X -> Y -> Z -> X
SELECT * FROM invsync.set_bundle('Z', '[{"sku": "X", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- Y -> X while X -> Y
SELECT * FROM invsync.set_bundle('Y', '[{"sku": "X", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('Z', '[{"sku": "Z", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- the guard is a trigger: a direct INSERT is refused as well
INSERT INTO invsync.bundle_components (tenant_id, bundle_sku, component_sku, qty)
VALUES (11, 'Z', 'X', 1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE invsync.bundle_components SET component_sku = 'X'
 WHERE tenant_id = 11 AND bundle_sku = 'Y';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a component list that replaces the one causing the cycle is fine:
-- Y -> SOCK, so Z -> X -> Y no longer loops
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "SOCK", "qty": 1}]');
SELECT component_sku FROM invsync.set_bundle('Z', '[{"sku": "X", "qty": 1}]');
SELECT bundle_sku, component_sku FROM invsync.bundle_components
 WHERE tenant_id = 11 AND bundle_sku IN ('X', 'Y', 'Z') ORDER BY 1;
SELECT invsync.available('Z') AS z;
-- the same pair of skus in another tenant is unaffected
SET invsync.tenant = 111;
SELECT sku FROM invsync.upsert_item('X');
SELECT sku FROM invsync.upsert_item('Y');
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "X", "qty": 1}]');
SET invsync.tenant = 11;

--
-- 4. A bundle holds no stock; a sku with stock cannot become a bundle
--
SELECT * FROM invsync.adjust('KIT', 'W1', 1, 'receipt', 'b-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_on_hand('GIFT', 'W1', 1, 'count', 'b-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.transfer('KIT', 'W1', 'W2', 1, 'b-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('SHIRT', '[{"sku": "BOX", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS bundle_stock_rows FROM invsync.stock WHERE sku IN ('KIT', 'GIFT', 'MIX');

--
-- 5. Reserving a bundle reserves its components
--
-- stock now: SHIRT W1 5, W2 2; SOCK W1 6, W2 4; BOX W2 10
SELECT ledger_id - :base AS id, sku, location, operation, reserved_change,
	   reserved_after, order_ref
  FROM invsync.reserve('B-1', '[{"sku": "KIT", "qty": 2}]', 'rb-1');
SELECT order_ref, line_no, line_sku, sku, location, qty
  FROM invsync.open_reservations ORDER BY 1, 2, 4, 5;
SELECT invsync.available('KIT') AS kit, invsync.available('SHIRT') AS shirt,
	   invsync.available('SOCK') AS sock;
-- nested bundle, a bundle and its component on one order
SELECT sku, location, reserved_change
  FROM invsync.reserve('B-2', '[{"sku": "GIFT", "qty": 1}, {"sku": "SOCK", "qty": 1, "location": "W2"}]', 'rb-2');
SELECT order_ref, line_no, line_sku, sku, location, qty
  FROM invsync.open_reservations WHERE order_ref = 'B-2' ORDER BY 2, 4, 5;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT invsync.available('KIT') AS kit, invsync.available('GIFT') AS gift,
	   invsync.available('MIX') AS mix;
-- more bundles than the components allow: nothing is reserved
SELECT * FROM invsync.reserve('B-3', '[{"sku": "KIT", "qty": 2}]', 'rb-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT sum(reserved) AS reserved_total FROM invsync.stock;
-- one more SOCK makes one more KIT, and that one can be reserved
SELECT on_hand_after FROM invsync.adjust('SOCK', 'W2', 1, 'receipt', 'in-6');
SELECT invsync.available('KIT') AS kit;
SELECT sku, location, reserved_change
  FROM invsync.reserve('B-3', '[{"sku": "KIT", "qty": 1}]', 'rb-3b');
SELECT invsync.available('KIT') AS kit;

--
-- 6. release gives the components back; fulfill deducts them
--
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.release('B-1', 'relb-1');
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.fulfill('B-2', 'fulb-2');
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.fulfill('B-3', 'fulb-3');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT s.sku, invsync.available(s.sku) AS total
  FROM (VALUES ('KIT'), ('GIFT'), ('MIX')) s(sku);

SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
