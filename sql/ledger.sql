--
-- ledger: items and locations, adjust, set_on_hand, transfer, the ledger
-- rows they write (balances, reasons, references, correlation ids, actors),
-- available(), the stock view and check_consistency() with and without
-- tampering.  Tenant 14; ledger ids are shown relative to :base so the
-- output does not depend on the tests that ran before.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 14;
SELECT nextval('invsync.ledger_id_seq') AS base \gset
CREATE TEMP VIEW rows AS
	SELECT ledger_id - :base AS id, sku, location, operation,
		   on_hand_change AS oh_chg, reserved_change AS rs_chg,
		   on_hand_after AS oh_after, reserved_after AS rs_after,
		   reason, reference, idempotency_key AS key,
		   actor = current_user AS actor_is_me
	  FROM invsync.ledger_entries;

--
-- 1. Catalog
--
SELECT sku, name FROM invsync.upsert_item('APPLE', 'Apple');
SELECT sku, name FROM invsync.upsert_item('PEAR');
-- upserting again renames; a NULL name keeps the old one
SELECT sku, name FROM invsync.upsert_item('PEAR', 'Pear');
SELECT sku, name FROM invsync.upsert_item('PEAR');
SELECT location, name, priority FROM invsync.upsert_location('MAIN', 'Main warehouse', 10);
SELECT location, name, priority FROM invsync.upsert_location('SHOP');
-- a NULL priority keeps the old one; a given one replaces it
SELECT location, name, priority FROM invsync.upsert_location('MAIN');
SELECT location, name, priority FROM invsync.upsert_location('SHOP', 'Store', 20);
SELECT sku, name FROM invsync.items WHERE tenant_id = 14 ORDER BY sku;

--
-- 2. adjust: each call writes one ledger row carrying the signed change and
-- the balance after it, and returns that row
--
SELECT ledger_id - :base AS id, sku, location, operation, on_hand_change,
	   reserved_change, on_hand_after, reserved_after, reason, reference,
	   order_ref, idempotency_key
  FROM invsync.adjust('APPLE', 'MAIN', 10, 'receipt', 'adj-1', 'PO-1');
SELECT ledger_id - :base AS id, on_hand_change, on_hand_after, reason, reference
  FROM invsync.adjust('APPLE', 'MAIN', -3, 'damaged', 'adj-2');
-- p_reference defaults to NULL
SELECT ledger_id - :base AS id, on_hand_after, reference
  FROM invsync.adjust('PEAR', 'SHOP', 4, 'receipt', 'adj-3');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;

--
-- 3. set_on_hand: the ledger records the difference to the counted level
--
SELECT ledger_id - :base AS id, operation, on_hand_change, on_hand_after, reason, reference
  FROM invsync.set_on_hand('APPLE', 'MAIN', 5, 'stock count', 'count-1', 'CNT-7');
-- at a location with no stock row yet: the whole level is the change
SELECT ledger_id - :base AS id, on_hand_change, on_hand_after
  FROM invsync.set_on_hand('APPLE', 'SHOP', 6, 'stock count', 'count-2');
-- a count that matches records a zero change (the count happened)
SELECT ledger_id - :base AS id, on_hand_change, on_hand_after
  FROM invsync.set_on_hand('APPLE', 'SHOP', 6, 'stock count', 'count-3');
-- down to zero
SELECT ledger_id - :base AS id, on_hand_change, on_hand_after
  FROM invsync.set_on_hand('PEAR', 'SHOP', 0, 'stock count', 'count-4');

--
-- 4. transfer: two rows, out of one location and into the other, with one
-- key and one correlation id
--
SELECT ledger_id - :base AS id, sku, location, operation, on_hand_change,
	   on_hand_after, reference, idempotency_key
  FROM invsync.transfer('APPLE', 'SHOP', 'MAIN', 4, 'move-1', 'TR-1');
SELECT count(DISTINCT correlation_id) AS correlation_ids, count(*) AS rows
  FROM invsync.ledger_entries WHERE idempotency_key = 'move-1';
-- into a location the sku never had stock at
SELECT location FROM invsync.upsert_location('BACK');
SELECT ledger_id - :base AS id, location, operation, on_hand_change, on_hand_after
  FROM invsync.transfer('APPLE', 'MAIN', 'BACK', 1, 'move-2');

--
-- 5. Reading stock: the stock view and available()
--
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT invsync.available('APPLE') AS apple_all,
	   invsync.available('APPLE', 'MAIN') AS apple_main,
	   invsync.available('APPLE', 'SHOP') AS apple_shop,
	   invsync.available('PEAR') AS pear_all,
	   invsync.available('PEAR', 'MAIN') AS pear_main_no_row;
-- an item that never had stock has none available
SELECT sku FROM invsync.upsert_item('PLUM');
SELECT invsync.available('PLUM') AS plum;

--
-- 6. The whole ledger of this tenant, in order: every change is one row and
-- each balance follows from the previous one
--
SELECT * FROM rows ORDER BY id;
SELECT bool_and(oh_after = prev_oh + oh_chg AND rs_after = prev_rs + rs_chg) AS balances_chain
  FROM (SELECT oh_chg, rs_chg, oh_after, rs_after,
			   coalesce(lag(oh_after) OVER w, 0) AS prev_oh,
			   coalesce(lag(rs_after) OVER w, 0) AS prev_rs
		  FROM rows WINDOW w AS (PARTITION BY sku, location ORDER BY id)) x;

--
-- 7. Correlation ids
--
-- unset: one id is generated per transaction and shared by all its rows
RESET invsync.correlation_id;
BEGIN;
SELECT invsync.correlation_id() = invsync.correlation_id() AS stable_in_transaction;
SELECT invsync.correlation_id() AS tx1_fn \gset
SELECT correlation_id AS tx1 FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-1') \gset
SELECT correlation_id = :'tx1' AS same_as_first
  FROM invsync.adjust('PEAR', 'MAIN', 1, 'receipt', 'corr-2');
COMMIT;
SELECT :'tx1' = :'tx1_fn' AS row_has_transaction_id,
	   :'tx1' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS is_uuid_v4;
-- the next transaction gets another one
SELECT correlation_id AS tx2 FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-3') \gset
SELECT correlation_id AS tx3 FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-4') \gset
SELECT :'tx2' <> :'tx1' AND :'tx3' <> :'tx2' AS differ_across_transactions,
	   :'tx2' ~ '^[0-9a-f-]{36}$' AND :'tx3' ~ '^[0-9a-f-]{36}$' AS both_generated;
-- set for the session: stored on every row, and on the idempotency key
SET invsync.correlation_id = 'import-2024-05/line:17';
SELECT correlation_id FROM invsync.transfer('PEAR', 'SHOP', 'MAIN', 1, 'corr-5');
SELECT correlation_id FROM invsync.idempotency_keys
 WHERE tenant_id = 14 AND idempotency_key = 'corr-5';
SELECT invsync.correlation_id();
-- SET LOCAL: this transaction only; then the session value again
BEGIN;
SET LOCAL invsync.correlation_id = 'req-abc';
SELECT correlation_id FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-6');
COMMIT;
SELECT correlation_id FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-7');
-- SET LOCAL with the session setting unset: generated again afterwards
RESET invsync.correlation_id;
BEGIN;
SET LOCAL invsync.correlation_id = 'req-def';
SELECT correlation_id FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-8');
COMMIT;
SELECT correlation_id ~ '^[0-9a-f-]{36}$' AS generated
  FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-9');
-- 128 bytes are accepted; 129, spaces, quotes, backslashes and control characters
-- are refused, and the previous value stays
SET invsync.correlation_id = 'keep-me';
SELECT set_config('invsync.correlation_id', repeat('x', 128), false) = repeat('x', 128) AS accepts_128;
SET invsync.correlation_id = 'keep-me';
SELECT set_config('invsync.correlation_id', repeat('x', 129), false);
SET invsync.correlation_id = 'has space';
SET invsync.correlation_id = 'has"quote';
SET invsync.correlation_id = 'back\slash';
SET invsync.correlation_id = E'tab\there';
SHOW invsync.correlation_id;
SELECT correlation_id FROM invsync.adjust('PEAR', 'SHOP', 1, 'receipt', 'corr-10');
RESET invsync.correlation_id;

--
-- 8. check_consistency(): empty, unless stock_levels is tampered with
--
SELECT * FROM invsync.check_consistency();
-- a superuser changes the cache behind the ledger's back
UPDATE invsync.stock_levels SET on_hand = on_hand + 5
 WHERE tenant_id = 14 AND sku = 'APPLE' AND location = 'MAIN';
SELECT * FROM invsync.check_consistency();
UPDATE invsync.stock_levels SET on_hand = on_hand - 5
 WHERE tenant_id = 14 AND sku = 'APPLE' AND location = 'MAIN';
SELECT * FROM invsync.check_consistency();
UPDATE invsync.stock_levels SET reserved = 1
 WHERE tenant_id = 14 AND sku = 'APPLE' AND location = 'SHOP';
SELECT * FROM invsync.check_consistency();
UPDATE invsync.stock_levels SET reserved = 0
 WHERE tenant_id = 14 AND sku = 'APPLE' AND location = 'SHOP';
-- a stock row that disappears, or one without any ledger row
DELETE FROM invsync.stock_levels
 WHERE tenant_id = 14 AND sku = 'APPLE' AND location = 'BACK';
SELECT * FROM invsync.check_consistency();
INSERT INTO invsync.stock_levels (tenant_id, sku, location, on_hand, reserved)
VALUES (14, 'APPLE', 'BACK', 1, 0), (14, 'PLUM', 'MAIN', 0, 0);
SELECT * FROM invsync.check_consistency();
DELETE FROM invsync.stock_levels
 WHERE tenant_id = 14 AND sku = 'PLUM' AND location = 'MAIN';
-- restored
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
