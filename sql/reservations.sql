--
-- reservations: reserve with and without a location, drawing by location
-- priority and splitting across locations; all lines or none; release and
-- fulfill; order status rules; what reserved stock forbids.  Tenant 16.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 16;
SELECT nextval('invsync.ledger_id_seq') AS base \gset

-- priority: lower first; ties by location code.  EMPTY comes first but
-- never has stock.
SELECT location, priority FROM invsync.upsert_location('NORTH', NULL, 10);
SELECT location, priority FROM invsync.upsert_location('SOUTH', NULL, 20);
SELECT location, priority FROM invsync.upsert_location('EAST', NULL, 20);
SELECT location, priority FROM invsync.upsert_location('EMPTY', NULL, 1);
SELECT sku FROM invsync.upsert_item('TEE');
SELECT sku FROM invsync.upsert_item('CAP');
SELECT count(*) AS rows FROM (
	SELECT * FROM invsync.adjust('TEE', 'NORTH', 2, 'receipt', 'in-1')
	UNION ALL SELECT * FROM invsync.adjust('TEE', 'SOUTH', 3, 'receipt', 'in-2')
	UNION ALL SELECT * FROM invsync.adjust('TEE', 'EAST', 4, 'receipt', 'in-3')
	UNION ALL SELECT * FROM invsync.adjust('CAP', 'NORTH', 5, 'receipt', 'in-4')) x;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;

--
-- 1. Without a location: the highest-priority location first
--
SELECT ledger_id - :base AS id, sku, location, operation, on_hand_change,
	   reserved_change, on_hand_after, reserved_after, order_ref, idempotency_key
  FROM invsync.reserve('ORD-1', '[{"sku": "TEE", "qty": 1}]', 'r-1');
-- split: the rest of NORTH, then EAST before SOUTH (same priority, by code)
SELECT ledger_id - :base AS id, location, reserved_change, reserved_after
  FROM invsync.reserve('ORD-2', '[{"sku": "TEE", "qty": 5}]', 'r-2');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT invsync.available('TEE') AS tee, invsync.available('TEE', 'SOUTH') AS tee_south;

--
-- 2. With a location: only there
--
SELECT location, reserved_change
  FROM invsync.reserve('ORD-3', '[{"sku": "TEE", "qty": 2, "location": "SOUTH"}]', 'r-3');
-- NORTH has none left although SOUTH has one: refused
SELECT * FROM invsync.reserve('ORD-4', '[{"sku": "TEE", "qty": 1, "location": "NORTH"}]', 'r-4');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a JSON null location means "any"
SELECT location, reserved_change
  FROM invsync.reserve('ORD-4', '[{"sku": "TEE", "qty": 1, "location": null}]', 'r-4b');

--
-- 3. All lines or none: CAP fits, TEE does not (none left), so CAP is not
-- reserved either and ORD-5 does not exist
--
SELECT * FROM invsync.reserve('ORD-5', '[{"sku": "CAP", "qty": 2}, {"sku": "TEE", "qty": 1}]', 'r-5');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT sku, location, on_hand, reserved FROM invsync.stock WHERE sku = 'CAP';
SELECT count(*) AS ord5 FROM invsync.reservation_orders WHERE tenant_id = 16 AND order_ref = 'ORD-5';
-- several lines, two of one sku, each line its own rows
SELECT count(*) AS rows FROM invsync.adjust('TEE', 'EAST', 3, 'receipt', 'in-5');
SELECT ledger_id - :base AS id, sku, location, reserved_change, reserved_after
  FROM invsync.reserve('ORD-6', '[{"sku": "CAP", "qty": 2},
								   {"sku": "TEE", "qty": 1, "location": "EAST"},
								   {"sku": "TEE", "qty": 2}]', 'r-6');

--
-- 4. What the orders hold
--
SELECT order_ref, line_no, line_sku, sku, location, qty
  FROM invsync.open_reservations ORDER BY 1, 2, 4, 5;
SELECT order_ref, status, idempotency_key
  FROM invsync.reservation_orders WHERE tenant_id = 16 ORDER BY 1;

--
-- 5. release gives back, fulfill deducts on hand and reserved
--
SELECT ledger_id - :base AS id, sku, location, operation, on_hand_change,
	   reserved_change, on_hand_after, reserved_after, order_ref
  FROM invsync.release('ORD-2', 'rel-2');
SELECT ledger_id - :base AS id, sku, location, operation, on_hand_change,
	   reserved_change, on_hand_after, reserved_after, order_ref
  FROM invsync.fulfill('ORD-6', 'ful-6');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT order_ref, status, closed_at IS NOT NULL AS closed
  FROM invsync.reservation_orders WHERE tenant_id = 16 ORDER BY 1;
SELECT order_ref, line_no, sku, location, qty
  FROM invsync.open_reservations ORDER BY 1, 2, 3, 4;

--
-- 6. Status rules: closed orders stay closed; an order reference reserves once
--
SELECT * FROM invsync.release('ORD-6', 'rel-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.fulfill('ORD-2', 'ful-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.release('ORD-2', 'rel-2b');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.reserve('ORD-2', '[{"sku": "TEE", "qty": 1}]', 'r-2b');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 7. Reserved stock cannot be adjusted, counted or moved away
-- (NORTH: 2 on hand, 1 reserved by ORD-1)
--
SELECT * FROM invsync.adjust('TEE', 'NORTH', -2, 'damaged', 'x-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_on_hand('TEE', 'NORTH', 0, 'count', 'x-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.transfer('TEE', 'NORTH', 'SOUTH', 2, 'x-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- the unreserved unit can
SELECT location, on_hand_change, on_hand_after, reserved_after
  FROM invsync.transfer('TEE', 'NORTH', 'SOUTH', 1, 'x-4');

--
-- 8. Changing a priority changes where the next reservation draws from
--
SELECT sku, location, available FROM invsync.stock WHERE sku = 'TEE' ORDER BY 2;
SELECT location, priority FROM invsync.upsert_location('EAST', NULL, 30);
SELECT location, reserved_change
  FROM invsync.reserve('ORD-7', '[{"sku": "TEE", "qty": 3}]', 'r-7');
SELECT location, reserved_change FROM invsync.fulfill('ORD-7', 'ful-7');
SELECT location, reserved_change FROM invsync.release('ORD-3', 'rel-3');
SELECT location, reserved_change FROM invsync.release('ORD-4', 'rel-4');
SELECT location, reserved_change FROM invsync.release('ORD-1', 'rel-1');

SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT count(*) AS open_lines FROM invsync.open_reservations;
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
