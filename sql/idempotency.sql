--
-- idempotency: the same key with the same parameters returns the original
-- result (the same ledger rows) and changes nothing; the same key with
-- other parameters is IV005; a failed call keeps no key; purged keys make a
-- later reuse a new request.  Tenant 13.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 13;
SELECT nextval('invsync.ledger_id_seq') AS base \gset

-- what this tenant has: ledger rows, keys, and stock
CREATE TEMP VIEW counts AS
	SELECT (SELECT count(*) FROM invsync.ledger_entries) AS ledger_rows,
		   (SELECT count(*) FROM invsync.idempotency_keys k
			 WHERE k.tenant_id = invsync.current_tenant()) AS keys,
		   (SELECT string_agg(sku || '@' || location || '=' || on_hand || '/' || reserved,
							  ' ' ORDER BY sku, location)
			  FROM invsync.stock) AS stock;

SELECT location FROM invsync.upsert_location('W1');
SELECT location FROM invsync.upsert_location('W2');
SELECT sku FROM invsync.upsert_item('A');
SELECT sku FROM invsync.upsert_item('B');

--
-- 1. adjust
--
SET invsync.correlation_id = 'first-call';
SELECT ledger_id AS adj_id, correlation_id AS adj_corr
  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1') \gset
SELECT ledger_id - :base AS id, on_hand_change, on_hand_after FROM invsync.ledger_entries;
SELECT * FROM counts;
-- resent, from another request context: the original row, nothing new
SET invsync.correlation_id = 'retry-call';
SELECT ledger_id = :adj_id AS same_ledger_id, correlation_id, on_hand_after
  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1');
SELECT ledger_id = :adj_id AS same_ledger_id
  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1');
SELECT * FROM counts;
-- any parameter differing is IV005, and nothing changes
SELECT * FROM invsync.adjust('A', 'W1', 11, 'receipt', 'adj-1', 'PO-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('B', 'W1', 10, 'receipt', 'adj-1', 'PO-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('A', 'W2', 10, 'receipt', 'adj-1', 'PO-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('A', 'W1', 10, 'return', 'adj-1', 'PO-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- another operation under the same key
SELECT * FROM invsync.set_on_hand('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM counts;
-- the same key twice in one transaction: the second call replays the first
BEGIN;
SELECT ledger_id AS tx_id FROM invsync.adjust('B', 'W1', 3, 'receipt', 'adj-2') \gset
SELECT ledger_id = :tx_id AS same_ledger_id, on_hand_after
  FROM invsync.adjust('B', 'W1', 3, 'receipt', 'adj-2');
COMMIT;
SELECT * FROM counts;
RESET invsync.correlation_id;

--
-- 2. set_on_hand: a replay does not set the level again
--
SELECT ledger_id AS soh_id FROM invsync.set_on_hand('A', 'W1', 20, 'count', 'soh-1') \gset
SELECT on_hand_after FROM invsync.adjust('A', 'W1', -5, 'sold', 'adj-3');
SELECT ledger_id = :soh_id AS same_ledger_id, on_hand_change, on_hand_after
  FROM invsync.set_on_hand('A', 'W1', 20, 'count', 'soh-1');
SELECT * FROM counts;
SELECT * FROM invsync.set_on_hand('A', 'W1', 21, 'count', 'soh-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 3. transfer: both rows replayed
--
SELECT array_agg(ledger_id ORDER BY ledger_id)::text AS tr_ids
  FROM invsync.transfer('A', 'W1', 'W2', 4, 'tr-1') \gset
SELECT array_agg(ledger_id ORDER BY ledger_id)::text = :'tr_ids' AS same_ledger_ids,
	   count(*) AS rows
  FROM invsync.transfer('A', 'W1', 'W2', 4, 'tr-1');
SELECT * FROM counts;
SELECT * FROM invsync.transfer('A', 'W2', 'W1', 4, 'tr-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 4. reserve, release, fulfill
--
SELECT array_agg(ledger_id ORDER BY ledger_id)::text AS rs_ids
  FROM invsync.reserve('O1', '[{"sku": "A", "qty": 12}, {"sku": "B", "qty": 1}]', 'rs-1') \gset
SELECT * FROM counts;
-- the same lines, keys in another order: the same request
SELECT array_agg(ledger_id ORDER BY ledger_id)::text = :'rs_ids' AS same_ledger_ids,
	   count(*) AS rows
  FROM invsync.reserve('O1', '[{"qty": 12, "sku": "A"}, {"qty": 1, "sku": "B"}]', 'rs-1');
SELECT * FROM counts;
SELECT count(*) AS orders FROM invsync.reservation_orders WHERE tenant_id = 13;
-- other lines, or another order, under the key: IV005
SELECT * FROM invsync.reserve('O1', '[{"sku": "A", "qty": 13}, {"sku": "B", "qty": 1}]', 'rs-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.reserve('O2', '[{"sku": "A", "qty": 12}, {"sku": "B", "qty": 1}]', 'rs-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- lines in another order are another request
SELECT * FROM invsync.reserve('O1', '[{"sku": "B", "qty": 1}, {"sku": "A", "qty": 12}]', 'rs-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT array_agg(ledger_id ORDER BY ledger_id)::text AS rl_ids
  FROM invsync.release('O1', 'rl-1') \gset
SELECT array_agg(ledger_id ORDER BY ledger_id)::text = :'rl_ids' AS same_ledger_ids,
	   count(*) AS rows
  FROM invsync.release('O1', 'rl-1');
SELECT * FROM counts;
SELECT * FROM invsync.fulfill('O1', 'rl-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.release('O9', 'rl-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS rows FROM invsync.reserve('O2', '[{"sku": "A", "qty": 2}]', 'rs-2');
SELECT array_agg(ledger_id ORDER BY ledger_id)::text AS ff_ids
  FROM invsync.fulfill('O2', 'ff-1') \gset
SELECT array_agg(ledger_id ORDER BY ledger_id)::text = :'ff_ids' AS same_ledger_ids,
	   min(on_hand_after) AS on_hand_after
  FROM invsync.fulfill('O2', 'ff-1');
SELECT * FROM counts;

--
-- 5. A call that fails keeps no key: the key may be used again, with any
-- parameters
--
SELECT * FROM invsync.adjust('A', 'W1', -100, 'sold', 'fail-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS kept FROM invsync.idempotency_keys
 WHERE tenant_id = 13 AND idempotency_key = 'fail-1';
SELECT on_hand_change, on_hand_after FROM invsync.adjust('A', 'W1', -1, 'sold', 'fail-1');
SELECT * FROM invsync.reserve('O3', '[{"sku": "B", "qty": 50}]', 'fail-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT reserved_change FROM invsync.reserve('O3', '[{"sku": "B", "qty": 1}]', 'fail-2');
SELECT * FROM counts;

--
-- 6. Purging keys
--
SHOW invsync.idempotency_retention;
-- nothing is old enough yet
SELECT invsync.purge_idempotency_keys() AS purged;
SELECT invsync.purge_idempotency_keys('1 hour') AS purged;
-- age three keys (as the superuser) and purge what is older than a day
UPDATE invsync.idempotency_keys SET created_at = created_at - interval '2 days'
 WHERE tenant_id = 13 AND idempotency_key IN ('adj-1', 'soh-1', 'tr-1');
SELECT invsync.purge_idempotency_keys('1 day') AS purged;
SELECT idempotency_key FROM invsync.idempotency_keys
 WHERE tenant_id = 13 ORDER BY 1;
-- reuse after the purge is a new request: same parameters, a new row
SELECT * FROM counts;
SELECT ledger_id AS adj_id_2, ledger_id <> :adj_id AS new_ledger_id, on_hand_after
  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1') \gset
SELECT :'new_ledger_id' AS new_ledger_id, :on_hand_after AS on_hand_after;
SELECT * FROM counts;
-- and from now on it replays the new row only, not the purged request's
SELECT ledger_id = :adj_id_2 AS replays_new_row, count(*) OVER () AS rows
  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'adj-1', 'PO-1');
-- other parameters after a purge are a new request too
SELECT on_hand_change, on_hand_after FROM invsync.set_on_hand('A', 'W1', 5, 'count', 'soh-1');
SELECT count(*) AS rows FROM invsync.ledger_entries WHERE idempotency_key = 'soh-1';
-- in batches: five old keys, batches of two
UPDATE invsync.idempotency_keys SET created_at = created_at - interval '2 days'
 WHERE tenant_id = 13 AND idempotency_key IN ('adj-2', 'adj-3', 'rs-1', 'rs-2', 'rl-1');
SELECT invsync.purge_idempotency_keys('1 day', 2) AS purged;
-- the retention setting is the default age
UPDATE invsync.idempotency_keys SET created_at = created_at - interval '2 hours'
 WHERE tenant_id = 13 AND idempotency_key = 'ff-1';
SET invsync.idempotency_retention = '1h';
SELECT invsync.purge_idempotency_keys() AS purged;
RESET invsync.idempotency_retention;
-- an interval of 0 forgets every key from an earlier transaction, not the
-- ones of the current transaction
BEGIN;
SELECT on_hand_change FROM invsync.adjust('B', 'W2', 1, 'receipt', 'in-purge-tx');
SELECT invsync.purge_idempotency_keys('0') > 0 AS purged_some;
SELECT idempotency_key FROM invsync.idempotency_keys WHERE tenant_id = 13;
COMMIT;

SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);

-- many keyed movements in one transaction (a bulk import) need no lock per key
SET invsync.tenant = '909';
SELECT FROM invsync.upsert_location('BULK');
SELECT FROM invsync.upsert_item('BULK-1');
BEGIN;
SELECT count(*) FROM generate_series(1, 5000) g,
	LATERAL invsync.adjust('BULK-1', 'BULK', 1, 'import', 'bulk:' || g);
COMMIT;
SELECT on_hand FROM invsync.stock WHERE sku = 'BULK-1';
SELECT count(*) FROM invsync.ledger_entries WHERE idempotency_key LIKE 'bulk:%';
RESET invsync.tenant;
