--
-- input_limits: every code and text a caller passes is bounded (README
-- lists the limits).  A value over its limit is refused before anything
-- is written (IV027; IV006 for order references and reservation lines,
-- IV010 for idempotency keys), on both paths of adjust(), and no error
-- shows more than the first 40 bytes of it, however large it is, and
-- whether it is passed directly or read compressed from a table.
-- Tenant 46.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 46;
SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_location('W2');
SELECT FROM invsync.upsert_item('A');
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 10, 'receipt', 'l-0');
SELECT reserved_after FROM invsync.reserve('O1', '[{"sku": "A", "qty": 1}]', 'l-1');

-- md5 over the tenant's rows of every ledger-half table
CREATE FUNCTION pg_temp.state() RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	t text;
	h text;
	result text := '';
BEGIN
	FOREACH t IN ARRAY ARRAY['items', 'locations', 'stock_levels', 'ledger',
							 'reservation_orders', 'reservations', 'idempotency_keys']
	LOOP
		EXECUTE format('SELECT md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), ''''))
						  FROM invsync.%I x WHERE tenant_id = 46', t) INTO h;
		result := result || t || ':' || h || ' ';
	END LOOP;
	RETURN md5(result);
END
$$;

--
-- 1. Values at their limits are taken (in characters, not bytes)
--
SELECT length(sku) AS sku, length(name) AS name
  FROM invsync.upsert_item(repeat('s', 128), repeat('ñ', 200));
SELECT length(location) AS location, length(name) AS name
  FROM invsync.upsert_location(repeat('w', 64), repeat('ñ', 200));
SELECT length(reason) AS reason, octet_length(reason) AS bytes, length(reference) AS reference
  FROM invsync.adjust('A', 'W1', 1, repeat('é', 500), 'l-2', repeat('r', 255));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT length(reason) AS reason, length(reference) AS reference
  FROM invsync.adjust('A', 'W1', 1, repeat('é', 500), 'l-3', repeat('r', 255));
COMMIT;
SELECT length(reason) AS reason, length(reference) AS reference
  FROM invsync.set_on_hand('A', 'W1', 20, repeat('é', 500), 'l-4', repeat('r', 255));
SELECT operation, length(reference) AS reference
  FROM invsync.transfer('A', 'W1', 'W2', 1, 'l-5', repeat('r', 255));
SELECT pg_temp.state() AS s0 \gset

--
-- 2. One character more is refused, on both paths of adjust()
--
SELECT * FROM invsync.adjust(repeat('s', 129), 'W1', 1, 'receipt', 'l-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', repeat('w', 65), 1, 'receipt', 'l-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', 1, repeat('é', 501), 'l-6');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', 'l-6', repeat('r', 256));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM invsync.adjust('A', 'W1', 1, repeat('é', 501), 'l-6');
ROLLBACK;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand(repeat('s', 129), 'W1', 1, 'count', 'l-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', repeat('w', 65), 1, 'count', 'l-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, repeat('c', 501), 'l-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, 'count', 'l-7', repeat('r', 256));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer(repeat('s', 129), 'W1', 'W2', 1, 'l-8');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', repeat('w', 65), 'W2', 1, 'l-8');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', repeat('w', 65), 1, 'l-8');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.transfer('A', 'W1', 'W2', 1, 'l-8', repeat('r', 256));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('O3', jsonb_build_array(jsonb_build_object('sku', repeat('s', 129), 'qty', 1)), 'l-10');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve('O3', jsonb_build_array(jsonb_build_object('sku', 'A', 'qty', 1, 'location', repeat('w', 65))), 'l-10');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.reserve(repeat('o', 256), '[{"sku": "A", "qty": 1}]', 'l-10');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.release(repeat('o', 256), 'l-11');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.fulfill(NULL, 'l-11');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT invsync.available(repeat('s', 129));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT invsync.available('A', repeat('w', 65));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.upsert_item(repeat('s', 129));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_item('B', repeat('n', 201));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_location(repeat('w', 65));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;
SELECT * FROM invsync.upsert_location('W3', repeat('n', 201));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, pg_temp.state() = :'s0' AS unchanged;

--
-- 3. 10 MB values: refused, and at most 40 bytes of them in the error
--
SELECT * FROM invsync.adjust(repeat('S', 10485760), 'W1', 1, 'receipt', 'l-12');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, length(:'LAST_ERROR_MESSAGE') AS message_length;
SELECT * FROM invsync.adjust('A', 'W1', 1, repeat('R', 10485760), 'l-12');
SELECT * FROM invsync.adjust('A', 'W1', 1, 'receipt', repeat('K', 10485760));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_on_hand('A', 'W1', 1, 'count', 'l-13', repeat('F', 10485760));
SELECT * FROM invsync.transfer('A', repeat('L', 10485760), 'W2', 1, 'l-14');
SELECT * FROM invsync.reserve(repeat('O', 10485760), '[{"sku": "A", "qty": 1}]', 'l-15');
SELECT * FROM invsync.release(repeat('O', 10485760), 'l-15');
SELECT * FROM invsync.upsert_item(repeat('S', 10485760));
SELECT * FROM invsync.upsert_location('W3', repeat('N', 10485760));
SELECT invsync.available(repeat('S', 10485760));
-- multibyte characters are never cut in two
SELECT * FROM invsync.adjust('A', 'W1', 1, repeat('€', 10485760), 'l-16');
-- reservation lines: over 1 MB in all, a long sku, a long unknown key,
-- a long number
SELECT * FROM invsync.reserve('O4', (SELECT jsonb_agg(jsonb_build_object('sku', 'A', 'qty', 1, 'location', repeat('w', 64)))
									   FROM generate_series(1, 1000)) || jsonb_build_array(jsonb_build_object('sku', repeat('s', 1048576))), 'l-17');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.reserve('O4', jsonb_build_array(jsonb_build_object('sku', repeat('S', 500000), 'qty', 1)), 'l-17');
SELECT * FROM invsync.reserve('O4', jsonb_build_array(jsonb_build_object('sku', 'A', 'qty', 1, 'note', repeat('N', 500000))), 'l-17');
SELECT * FROM invsync.reserve('O4', ('[{"sku": "A", "qty": 1' || repeat('0', 100000) || '}]')::jsonb, 'l-17');
SELECT pg_temp.state() = :'s0' AS unchanged;
-- invsync.tenant
SELECT set_config('invsync.tenant', repeat('9', 100000), false);
SHOW invsync.tenant;

--
-- 4. The same values read from a table, compressed and stored out of
-- line: only their headers and first bytes are read
--
CREATE TEMP TABLE big AS
	SELECT repeat('S', 10485760) AS value,
		   jsonb_build_array(jsonb_build_object('sku', repeat('S', 10485760), 'qty', 1)) AS lines;
SELECT pg_column_size(value) < 1048576 AS compressed, pg_column_size(lines) < 1048576 AS compressed
  FROM big;
SELECT * FROM invsync.adjust((SELECT value FROM big), 'W1', 1, 'receipt', 'l-18');
SELECT * FROM invsync.adjust('A', 'W1', 1, (SELECT value FROM big), 'l-18');
SELECT * FROM invsync.reserve('O5', (SELECT lines FROM big), 'l-19');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT invsync._clip(value) FROM big;
SELECT invsync._raw_size(lines) > 10485760 AS raw_size FROM big;
DROP TABLE big;

--
-- 5. _post(), which writes every ledger row, refuses what the functions
-- calling it refuse
--
SELECT * FROM invsync._post(46, 'A', 'W1', 1, 0, 'adjust', repeat('R', 501), NULL, NULL, 'l-20');
SELECT * FROM invsync._post(46, 'A', 'W1', 1, 0, 'adjust', NULL, repeat('F', 256), NULL, 'l-20');
SELECT * FROM invsync._post(46, 'A', 'W1', 0, 1, 'reserve', NULL, NULL, repeat('O', 256), 'l-20');
SELECT pg_temp.state() = :'s0' AS unchanged;

SELECT sku, location, on_hand, reserved FROM invsync.stock ORDER BY 1, 2;
SELECT count(*) AS inconsistent FROM invsync.check_consistency();
RESET invsync.tenant;
