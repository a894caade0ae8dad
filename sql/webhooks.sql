--
-- webhooks: invsync.handle_webhook() verifies a push over its exact raw
-- body, finds the shop (and so the tenant) it names, records it once under
-- its event key and answers accepted, duplicate or ignored; a bad
-- signature, an unknown shop, a malformed or oversized body each have
-- their SQLSTATE and write nothing.  record_order() applies an order's
-- status by the same rules: reserve, fulfil or release once, a status only
-- moving forward.  Tenant 45; its shop is disabled, so the worker sends
-- nothing.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 45;

\set push_key '57615053704d6470644f554a78656d50484143644964436a5568777544524579'
\set url 'https://example.com/webhooks/shopee'
\set body '{"data":{"items":[],"ordersn":"220810QSK8S7BX","status":"PROCESSED","completed_scenario":"","update_time":1660123127},"shop_id":727720655,"code":3,"timestamp":1660123127}'

-- an error's SQLSTATE and message, or the result
CREATE FUNCTION pg_temp.try(p_sql text) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	v_state		text;
	v_message	text;
	v_result	text;
BEGIN
	EXECUTE p_sql INTO v_result;
	RETURN coalesce(v_result, 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
	RETURN v_state || ' ' || v_message;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

--
-- 1. The signature vector of marketplace-apis.md section 7.2
--
SELECT invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || :'body') AS sign,
	   invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || :'body')
		 = '02108a567b7b14c1812b8fcaed71a20379fa5af95517cae2380553fed1fcdf7f' AS matches;
SELECT invsync._webhook_verify('shopee', NULL, :'push_key', :'url',
		'{"authorization": "02108a567b7b14c1812b8fcaed71a20379fa5af95517cae2380553fed1fcdf7f"}',
		:'body') AS lower_case,
	   invsync._webhook_verify('shopee', NULL, :'push_key', :'url',
		'{"Authorization": "02108A567B7B14C1812B8FCAED71A20379FA5AF95517CAE2380553FED1FCDF7F"}',
		:'body') AS upper_case,
	   invsync._webhook_verify('shopee', NULL, :'push_key', :'url',
		'{"Authorization": "02108a567b7b14c1812b8fcaed71a20379fa5af95517cae2380553fed1fcdf7"}',
		:'body') AS one_digit_short;
SELECT * FROM invsync._webhook_read('shopee', :'body');

--
-- 2. A shop whose pushes are signed with the app's push key
--
SELECT count(invsync.upsert_location(l)) FROM unnest(ARRAY['JKT', 'SBY']) l;
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['KOPI', 'TEH', 'GULA']) s;
SELECT on_hand_after FROM invsync.adjust('KOPI', 'JKT', 10, 'receipt', 'wh-r1');
SELECT on_hand_after FROM invsync.adjust('TEH', 'JKT', 5, 'receipt', 'wh-r2');
INSERT INTO invsync.apps (channel, app_key, app_secret, push_secret)
VALUES ('shopee', '847892', 'the-api-partner-key-not-the-push-key', :'push_key');
-- a fixed shop id: ledger keys and messages name it, whatever ran before
INSERT INTO invsync.shops (shop_id, app_id, external_shop_id, enabled)
SELECT 4501, app_id, '727720655', false FROM invsync.apps WHERE tenant_id = 45;
SELECT shop_id AS shop FROM invsync.shops WHERE tenant_id = 45 \gset
INSERT INTO invsync.listings (shop_id, sku, external_ids)
VALUES (:shop, 'KOPI', '{"item_id": "23620853561", "model_id": "221404189791"}'),
	   (:shop, 'TEH', '{"item_id": "23620853562"}');

CREATE ROLE regress_hook IN ROLE invsync_webhook;
SET ROLE regress_hook;
RESET invsync.tenant;

-- accepted, then a re-delivery is a duplicate
SELECT invsync.handle_webhook('shopee',
		'{"Content-Type": "application/json", "Authorization": "02108a567b7b14c1812b8fcaed71a20379fa5af95517cae2380553fed1fcdf7f"}',
		:'body', :'url') ->> 'status' AS first,
	   invsync.handle_webhook('shopee',
		'{"authorization": "02108a567b7b14c1812b8fcaed71a20379fa5af95517cae2380553fed1fcdf7f"}',
		:'body', :'url') ->> 'status' AS again;

-- refused, nothing written: a tampered body, a re-serialised one (same
-- JSON, other bytes), the API key instead of the push key, another URL,
-- no signature, an unknown shop, an unknown channel, a body that is not a
-- push, one over 256 kB, headers that are not an object
RESET ROLE;
CREATE TEMP TABLE refused_pushes AS
SELECT * FROM (VALUES
		(1, 'tampered body', 'shopee',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || :'body')),
		 replace(:'body', 'PROCESSED', 'CANCELLED'), :'url'),
		(2, 're-serialised body', 'shopee',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || :'body')),
		 (:'body')::jsonb::text, :'url'),
		(3, 'signed with the API key', 'shopee',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex('the-api-partner-key-not-the-push-key', :'url' || '|' || :'body')),
		 :'body', :'url'),
		(4, 'another URL', 'shopee',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || :'body')),
		 :'body', 'https://example.com/other'),
		(5, 'no signature', 'shopee', '{}'::jsonb, :'body', :'url'),
		(6, 'unknown shop', 'shopee',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex(:'push_key', :'url' || '|' || replace(:'body', '727720655', '727720656'))),
		 replace(:'body', '727720655', '727720656'), :'url'),
		(7, 'unknown channel', 'amazon', '{}'::jsonb, :'body', :'url'),
		(8, 'not a push', 'shopee', '{}'::jsonb, '[1, 2]', :'url'),
		(9, 'order push without status', 'shopee', '{}'::jsonb,
		 '{"shop_id":727720655,"code":3,"data":{"ordersn":"X"}}', :'url'),
		(10, 'over 256 kB', 'shopee', '{}'::jsonb, repeat(' ', 262145), :'url'),
		(11, 'headers not an object', 'shopee', '[]'::jsonb, :'body', :'url')
	   ) AS v (n, what, channel, headers, body, url);
GRANT SELECT ON refused_pushes TO regress_hook;
SET ROLE regress_hook;
SELECT v.what, pg_temp.try(format('SELECT invsync.handle_webhook(%L, %L, %L, %L)::text',
								  v.channel, v.headers, v.body, v.url)) AS outcome
  FROM refused_pushes v ORDER BY v.n;

RESET ROLE;
SET invsync.tenant = 45;
SELECT event_key, kind, event_type, order_id, status, update_time
  FROM invsync.webhook_inbox WHERE tenant_id = 45;
-- the order's lines are not known: its status is recorded, a fetch queued
SELECT order_id, status, effect, lines, error FROM invsync.marketplace_orders
 WHERE tenant_id = 45;
SELECT order_id, state, version, attempts FROM invsync.order_fetches WHERE tenant_id = 45;

--
-- 3. Orders: reserve at once, fulfil once, an older event changes nothing
--
-- the fetched order brings its lines (marketplace ids): the status's
-- effect, reserve, takes place
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'PROCESSED', to_timestamp(1660123127),
	'[{"ids": {"item_id": 23620853561, "model_id": 221404189791}, "qty": 2},
	  {"ids": {"item_id": "23620853562"}, "qty": 1}]');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock
 WHERE sku IN ('KOPI', 'TEH') ORDER BY sku, location;
-- an older event (UNPAID, before) and the same one again change nothing
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'UNPAID', to_timestamp(1660120000));
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'PROCESSED', to_timestamp(1660123127));
-- shipped: on-hand deducted once, however often it is told
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'SHIPPED', to_timestamp(1660130000));
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'SHIPPED', to_timestamp(1660130000));
SELECT invsync.record_order(:shop, '220810QSK8S7BX', 'COMPLETED', to_timestamp(1660200000));
SELECT sku, location, on_hand, reserved, available FROM invsync.stock
 WHERE sku IN ('KOPI', 'TEH') ORDER BY sku, location;
SELECT operation, sku, on_hand_change, reserved_change, idempotency_key
  FROM invsync.ledger WHERE tenant_id = 45 AND order_ref LIKE 'mp:%' ORDER BY ledger_id;

-- cancelled before shipping: released, the stock comes back
SELECT invsync.record_order(:shop, 'ORDER-2', 'READY_TO_SHIP', to_timestamp(1700000000),
	'[{"sku": "KOPI", "qty": 3}]');
SELECT available FROM invsync.stock WHERE sku = 'KOPI';
SELECT invsync.record_order(:shop, 'ORDER-2', 'CANCELLED', to_timestamp(1700000100));
SELECT invsync.record_order(:shop, 'ORDER-2', 'READY_TO_SHIP', to_timestamp(1700000050));
SELECT available FROM invsync.stock WHERE sku = 'KOPI';

-- first seen shipped: reserved and fulfilled in one go
SELECT invsync.record_order(:shop, 'ORDER-3', 'SHIPPED', to_timestamp(1700000000),
	'[{"sku": "TEH", "qty": 1}]');
-- more than there is: recorded, the reason kept, nothing reserved
SELECT invsync.record_order(:shop, 'ORDER-4', 'UNPAID', to_timestamp(1700000000),
	'[{"sku": "KOPI", "qty": 50}]');
-- lines matching no listing: kept and reported, never dropped
SELECT invsync.record_order(:shop, 'ORDER-5', 'UNPAID', to_timestamp(1700000000),
	'[{"ids": {"item_id": "999", "model_id": "1"}, "qty": 1}, {"sku": "TEH", "qty": 1}]');
SELECT order_id, status, effect, error, unmatched_lines FROM invsync.order_problems
 ORDER BY order_id;
SELECT order_id, status, effect, lines FROM invsync.marketplace_orders
 WHERE tenant_id = 45 ORDER BY order_id;

-- malformed lines and statuses are refused, nothing written
SELECT pg_temp.try(format('SELECT invsync.record_order(%s, %L, %L, now(), %L)::text',
						  :shop, 'ORDER-9', v.status, v.lines)) AS outcome
  FROM (VALUES ('UNPAID', '[{"sku": "KOPI"}]'),
			   ('UNPAID', '[{"sku": "KOPI", "qty": 0}]'),
			   ('UNPAID', '[{"sku": "KOPI", "ids": {}, "qty": 1}]'),
			   ('UNPAID', '{"sku": "KOPI", "qty": 1}'),
			   ('', '[{"sku": "KOPI", "qty": 1}]')) AS v (status, lines);
SELECT pg_temp.try(format('SELECT invsync.record_order(%s, %L, %L, now())::text',
						  :shop + 1000, 'ORDER-9', 'UNPAID'));
SELECT count(*) AS orders FROM invsync.marketplace_orders WHERE order_id = 'ORDER-9';

SELECT * FROM invsync.check_consistency();
DROP ROLE regress_hook;
