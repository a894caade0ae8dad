--
-- tenancy: tenants 21 and 22 use the same sku and location codes, order
-- references and idempotency keys, and never see or change each other's
-- rows.  Unset, the tenant is 0.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
RESET invsync.tenant;
SELECT invsync.current_tenant() AS unset_means;
SET invsync.tenant = 21;
SELECT nextval('invsync.ledger_id_seq') AS base \gset

-- the same codes in both tenants, with different names
SELECT tenant_id, sku, name FROM invsync.upsert_item('SKU-1', 'first''s shirt');
SELECT tenant_id, location FROM invsync.upsert_location('MAIN', 'first''s store');
SET invsync.tenant = 22;
SELECT tenant_id, sku, name FROM invsync.upsert_item('SKU-1', 'other shirt');
SELECT tenant_id, location FROM invsync.upsert_location('MAIN', 'other store');
SELECT tenant_id, sku, name FROM invsync.items
 WHERE sku = 'SKU-1' AND tenant_id IN (21, 22) ORDER BY 1;

--
-- 1. One idempotency key, different parameters, one per tenant: no IV005
--
SET invsync.tenant = 21;
SELECT ledger_id AS t0_id, on_hand_after FROM invsync.adjust('SKU-1', 'MAIN', 10, 'receipt', 'same-key') \gset
SET invsync.tenant = 22;
SELECT ledger_id AS t22_id, on_hand_after FROM invsync.adjust('SKU-1', 'MAIN', 3, 'receipt', 'same-key') \gset
SELECT :t0_id <> :t22_id AS different_rows;
-- a replay in each tenant returns that tenant's row
SELECT ledger_id = :t22_id AS own_row, on_hand_after
  FROM invsync.adjust('SKU-1', 'MAIN', 3, 'receipt', 'same-key');
SET invsync.tenant = 21;
SELECT ledger_id = :t0_id AS own_row, on_hand_after
  FROM invsync.adjust('SKU-1', 'MAIN', 10, 'receipt', 'same-key');
-- and the other tenant's parameters are "other parameters" here
SELECT * FROM invsync.adjust('SKU-1', 'MAIN', 3, 'receipt', 'same-key');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 2. One order reference and key in both tenants
--
SELECT sku, location, reserved_after
  FROM invsync.reserve('ORDER-1', '[{"sku": "SKU-1", "qty": 4}]', 'order-key');
SET invsync.tenant = 22;
SELECT sku, location, reserved_after
  FROM invsync.reserve('ORDER-1', '[{"sku": "SKU-1", "qty": 1}]', 'order-key');
-- each tenant sees only its own rows
SELECT sku, location, on_hand, reserved, available FROM invsync.stock;
SELECT ledger_id - :base > 0 AS after_base, operation, on_hand_change, reserved_change,
	   order_ref, idempotency_key
  FROM invsync.ledger_entries ORDER BY ledger_id;
SELECT order_ref, sku, qty FROM invsync.open_reservations;
SELECT invsync.available('SKU-1') AS available;
SET invsync.tenant = 21;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock;
SELECT ledger_id - :base > 0 AS after_base, operation, on_hand_change, reserved_change,
	   order_ref, idempotency_key
  FROM invsync.ledger_entries ORDER BY ledger_id;
SELECT order_ref, sku, qty FROM invsync.open_reservations;
SELECT invsync.available('SKU-1') AS available;

--
-- 3. Fulfilling ORDER-1 in tenant 22 leaves tenant 21's ORDER-1 open
--
SET invsync.tenant = 22;
SELECT on_hand_after, reserved_after FROM invsync.fulfill('ORDER-1', 'close-key');
SET invsync.tenant = 21;
SELECT order_ref, sku, qty FROM invsync.open_reservations;
SELECT on_hand, reserved FROM invsync.stock;
SELECT tenant_id, order_ref, status FROM invsync.reservation_orders
 WHERE order_ref = 'ORDER-1' AND tenant_id IN (21, 22) ORDER BY 1;
-- tenant 21 may use "close-key" for its own purpose
SELECT on_hand_after, reserved_after FROM invsync.release('ORDER-1', 'close-key');
-- an order of neither tenant
SET invsync.tenant = 23;
SELECT * FROM invsync.release('ORDER-1', 'close-key');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS rows FROM invsync.stock;
SELECT count(*) AS rows FROM invsync.ledger_entries;
SELECT * FROM invsync.available('SKU-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 4. A sku may be a bundle in one tenant and a plain item in another
--
SET invsync.tenant = 22;
SELECT sku FROM invsync.upsert_item('PACK');
SELECT component_sku, qty FROM invsync.set_bundle('PACK', '[{"sku": "SKU-1", "qty": 2}]');
SELECT invsync.available('PACK') AS pack;
SET invsync.tenant = 21;
SELECT sku FROM invsync.upsert_item('PACK');
SELECT on_hand_after FROM invsync.adjust('PACK', 'MAIN', 7, 'receipt', 'pack-in');
SELECT invsync.available('PACK') AS pack;

--
-- 5. SET LOCAL switches the tenant for one transaction
--
BEGIN;
SET LOCAL invsync.tenant = 22;
SELECT invsync.current_tenant();
SELECT on_hand_after FROM invsync.adjust('SKU-1', 'MAIN', 1, 'receipt', 'local-key');
COMMIT;
SELECT invsync.current_tenant();
SELECT count(*) AS tenant21_rows_with_local_key
  FROM invsync.ledger_entries WHERE idempotency_key = 'local-key';

--
-- 6. The rows themselves, as the superuser sees them
--
SELECT tenant_id, count(*) AS ledger_rows, sum(on_hand_change) AS on_hand,
	   sum(reserved_change) AS reserved
  FROM invsync.ledger WHERE tenant_id IN (21, 22, 23) GROUP BY 1 ORDER BY 1;
SELECT tenant_id, sku, location, on_hand, reserved
  FROM invsync.stock_levels WHERE tenant_id IN (21, 22, 23) ORDER BY 1, 2;
SELECT tenant_id, idempotency_key, operation
  FROM invsync.idempotency_keys WHERE tenant_id IN (21, 22, 23) ORDER BY 1, 2;

--
-- 7. Unset, the tenant is 0
--
RESET invsync.tenant;
SELECT tenant_id, sku FROM invsync.upsert_item('TENANCY-ZERO');
SELECT tenant_id, location FROM invsync.upsert_location('TENANCY-ZERO');
SELECT tenant_id, sku, on_hand_after
  FROM invsync.adjust('TENANCY-ZERO', 'TENANCY-ZERO', 1, 'receipt', 'tenancy-zero-key');
SET invsync.tenant = '';
SELECT invsync.available('TENANCY-ZERO') AS seen_with_empty_setting;
SET invsync.tenant = 0;
SELECT invsync.available('TENANCY-ZERO') AS seen_with_0;
SET invsync.tenant = 21;
SELECT invsync.available('TENANCY-ZERO');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

SELECT * FROM invsync.check_consistency();
SET invsync.tenant = 22;
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
