--
-- webhooks_channels: TikTok Shop, Tokopedia (through TikTok) and Lazada
-- pushes through invsync.handle_webhook(): the worked signature vectors of
-- marketplace-apis.md sections 2.7 and 3.6, verified over the exact raw
-- body with the app key and secret; the shop found by the id the push
-- names (shops.push_shop_id: TikTok's shop id, Lazada's seller id); event
-- keys (tts_notification_id, or section 7.8's fallback; Lazada per line);
-- refusals, duplicates and ignored types; and order flows, TikTok's push
-- spelling CANCEL releasing, Lazada's lines each an order of its own.
-- Tenant 47; its shops are disabled, so the worker sends nothing.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 47;

\set tt_key 'fake_app_key'
\set tt_secret 'fake_app_secret'
\set tt_body '{"type":1,"shop_id":"7494726673780148744","timestamp":1664095733,"data":{"order_id":"576684019603311365","order_status":"AWAITING_SHIPMENT","update_time":1664095610}}'
\set lz_key '123456'
\set lz_secret '3412gyo124goi3124'
\set lz_body '{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","status_update_time":1603698638,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298363"},"timestamp":1603766859530,"site":"lazada_vn"}'

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

-- the Authorization header of a body signed with a key and secret
CREATE FUNCTION pg_temp.signed(p_key text, p_secret text, p_body text) RETURNS jsonb
	LANGUAGE sql SECURITY DEFINER AS $$
	SELECT jsonb_build_object('Authorization', invsync._hmac_sha256_hex(p_secret, p_key || p_body))
$$;
GRANT EXECUTE ON FUNCTION pg_temp.signed(text, text, text) TO PUBLIC;

--
-- 1. The signature vectors of sections 2.7 (TikTok) and 3.6 (Lazada)
--
SELECT invsync._hmac_sha256_hex(:'tt_secret', :'tt_key' || :'tt_body')
		 = '21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27' AS tiktok_vector,
	   invsync._hmac_sha256_hex(:'lz_secret', :'lz_key' || :'lz_body')
		 = '64ffc8b10a9921ded17f88bb861dd1c2d879514c51c6731946becba319ec6b63' AS lazada_vector;
SELECT v.channel,
	   invsync._webhook_verify(v.channel, v.app_key, v.secret, NULL,
							   jsonb_build_object('Authorization', v.sign), v.body) AS lower_case,
	   invsync._webhook_verify(v.channel, v.app_key, v.secret, NULL,
							   jsonb_build_object('authorization', upper(v.sign)), v.body) AS upper_case,
	   invsync._webhook_verify(v.channel, v.app_key, v.secret, NULL,
							   jsonb_build_object('Authorization', left(v.sign, 63)), v.body) AS one_digit_short,
	   invsync._webhook_verify(v.channel, v.app_key, 'another-secret', NULL,
							   jsonb_build_object('Authorization', v.sign), v.body) AS wrong_secret,
	   invsync._webhook_verify(v.channel, 'another-key', v.secret, NULL,
							   jsonb_build_object('Authorization', v.sign), v.body) AS wrong_key,
	   invsync._webhook_verify(v.channel, v.app_key, v.secret, NULL,
							   jsonb_build_object('Authorization', v.sign), v.body::jsonb::text) AS reserialised,
	   invsync._webhook_verify(v.channel, v.app_key, v.secret, NULL,
							   jsonb_build_object('X-Signature', v.sign), v.body) AS other_header
  FROM (VALUES
		('tiktok', :'tt_key', :'tt_secret', :'tt_body',
		 '21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27'),
		('tokopedia', :'tt_key', :'tt_secret', :'tt_body',
		 '21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27'),
		('lazada', :'lz_key', :'lz_secret', :'lz_body',
		 '64ffc8b10a9921ded17f88bb861dd1c2d879514c51c6731946becba319ec6b63')
	   ) AS v (channel, app_key, secret, body, sign);
SELECT * FROM invsync._webhook_read('tiktok', :'tt_body');
SELECT * FROM invsync._webhook_read('lazada', :'lz_body');

-- what each status means for stock, and its rank in an order's life
SELECT v.channel, v.status, st.effect, st.rank
  FROM (VALUES ('tiktok', 'UNPAID'), ('tiktok', 'ON_HOLD'), ('tiktok', 'AWAITING_SHIPMENT'),
			   ('tiktok', 'PARTIALLY_SHIPPING'), ('tiktok', 'AWAITING_COLLECTION'),
			   ('tiktok', 'IN_TRANSIT'), ('tiktok', 'DELIVERED'), ('tiktok', 'COMPLETED'),
			   ('tiktok', 'CANCELLED'), ('tiktok', 'CANCEL'), ('tiktok', 'cancel'),
			   ('tokopedia', 'AWAITING_SHIPMENT'), ('tokopedia', 'CANCEL'),
			   ('lazada', 'unpaid'), ('lazada', 'pending'), ('lazada', 'topack'),
			   ('lazada', 'packed'), ('lazada', 'repacked'), ('lazada', 'toship'),
			   ('lazada', 'ready_to_ship'), ('lazada', 'shipped'), ('lazada', 'delivered'),
			   ('lazada', 'canceled'), ('lazada', 'returned'), ('lazada', 'failed'),
			   ('lazada', 'lost'), ('lazada', 'shipped_back_success'), ('lazada', 'CANCELED'))
		AS v (channel, status),
	   LATERAL invsync._order_status(v.channel, v.status) st;

--
-- 2. Shops: pushes name TikTok's shop id and Lazada's seller id, which
--    shops.push_shop_id holds (the API takes the cipher, or another id)
--
SELECT count(invsync.upsert_location(l)) FROM unnest(ARRAY['JKT', 'HCM']) l;
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['KOPI', 'TEH', 'GULA']) s;
SELECT on_hand_after FROM invsync.adjust('KOPI', 'JKT', 10, 'receipt', 'wc-r1');
SELECT on_hand_after FROM invsync.adjust('TEH', 'HCM', 10, 'receipt', 'wc-r2');
SELECT on_hand_after FROM invsync.adjust('GULA', 'JKT', 10, 'receipt', 'wc-r3');
INSERT INTO invsync.apps (channel, app_key, app_secret)
VALUES ('tiktok', :'tt_key', :'tt_secret'),
	   ('tokopedia', 'toko_app_key', 'toko_app_secret'),
	   ('lazada', :'lz_key', :'lz_secret');
INSERT INTO invsync.shops (app_id, external_shop_id, push_shop_id, region, enabled)
SELECT a.app_id, v.external, v.push, v.region, false
  FROM invsync.apps a
  JOIN (VALUES ('tiktok', 'ROW_wc_tiktok_cipher', '7494726673780148744', 'ID'),
			   ('tokopedia', 'ROW_wc_tokopedia_cipher', '7495000000000000047', 'ID'),
			   ('lazada', 'wc-lazada-vn', '1234567', 'VN')) AS v (channel, external, push, region)
	ON v.channel = a.channel
 WHERE a.tenant_id = 47;
SELECT shop_id AS tt_shop FROM invsync.shops WHERE tenant_id = 47 AND push_shop_id = '7494726673780148744' \gset
SELECT shop_id AS toko_shop FROM invsync.shops WHERE tenant_id = 47 AND push_shop_id = '7495000000000000047' \gset
SELECT shop_id AS lz_shop FROM invsync.shops WHERE tenant_id = 47 AND push_shop_id = '1234567' \gset
INSERT INTO invsync.listings (shop_id, sku, external_ids)
VALUES (:tt_shop, 'KOPI', '{"product_id": "1729582718312380123", "sku_id": "2729382476852921560"}'),
	   (:toko_shop, 'GULA', '{"product_id": "1729582718312380999", "sku_id": "2729382476852921999"}'),
	   (:lz_shop, 'TEH', '{"item_id": "12345", "sku_id": "666"}');

CREATE ROLE regress_hook_channels IN ROLE invsync_webhook;
SET ROLE regress_hook_channels;
RESET invsync.tenant;

--
-- 3. Accepted, then duplicates
--
-- the vectors' pushes: accepted, and a re-delivery is a duplicate; the
-- TikTok one has no tts_notification_id (an older sender) and is keyed by
-- (shop_id, type, order_id, order_status, update_time)
SELECT v.channel,
	   invsync.handle_webhook(v.channel, jsonb_build_object('Authorization', v.sign), v.body)
		 ->> 'status' AS first,
	   invsync.handle_webhook(v.channel, jsonb_build_object('authorization', v.sign), v.body)
		 ->> 'status' AS again
  FROM (VALUES
		('tiktok', :'tt_body', '21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27'),
		('lazada', :'lz_body', '64ffc8b10a9921ded17f88bb861dd1c2d879514c51c6731946becba319ec6b63')
	   ) AS v (channel, body, sign);

-- a TikTok push keyed by its tts_notification_id: re-delivered with a new
-- envelope timestamp, it is still a duplicate
\set tt_n1 '{"type":1,"tts_notification_id":"7327112393057371910","shop_id":"7494726673780148744","timestamp":1664095800,"data":{"order_id":"576684019603311366","order_status":"UNPAID","is_on_hold_order":false,"update_time":1664095790}}'
SELECT invsync.handle_webhook('tiktok', pg_temp.signed(:'tt_key', :'tt_secret', :'tt_n1'), :'tt_n1')
		 - 'shops' AS first,
	   invsync.handle_webhook('tiktok', pg_temp.signed(:'tt_key', :'tt_secret', replace(:'tt_n1', '1664095800', '1664099999')),
							  replace(:'tt_n1', '1664095800', '1664099999')) ->> 'status' AS new_envelope;

-- Lazada pushes that differ only in the order line are two events; the
-- same line again, with a new envelope timestamp, is a duplicate
\set lz_l2 '{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","status_update_time":1603698638,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298364"},"timestamp":1603766859531,"site":"lazada_vn"}'
SELECT invsync.handle_webhook('lazada', pg_temp.signed(:'lz_key', :'lz_secret', :'lz_l2'), :'lz_l2')
		 - 'shops' AS other_line,
	   invsync.handle_webhook('lazada', pg_temp.signed(:'lz_key', :'lz_secret', replace(:'lz_body', '1603766859530', '1603766999999')),
							  replace(:'lz_body', '1603766859530', '1603766999999')) ->> 'status' AS new_envelope;

--
-- 4. Ignored and stock pushes
--
\set tt_deauth '{"type":6,"tts_notification_id":"7327112393057370006","shop_id":"7494726673780148744","timestamp":1664095800,"data":{"eventtime":1664095800}}'
\set tt_stock '{"type":27,"tts_notification_id":"7327112393057370027","shop_id":"7494726673780148744","timestamp":1664095800,"data":{"product_id":"1729582718312380123","sku_id":"2729382476852921560","current_inventory_status":"LOW_STOCK","update_time":1664095800}}'
\set tt_app '{"type":7,"tts_notification_id":"7327112393057370007","timestamp":1664095800,"data":{}}'
\set lz_token '{"seller_id":"1234567","message_type":8,"data":{"app_key":"123456","auth_expiry_time":1700000000,"seller_id":"1234567"},"timestamp":1603766859,"site":"lazada_vn"}'
\set lz_stock '{"seller_id":"1234567","message_type":6,"data":{"seller_sku":"TEH-1","sku_id":"666","warehouse":"dropshipping","real_quantity":4,"withhold_quantity":0,"occupy_quantity":1,"pre_order_quantity":0},"timestamp":1603766859,"site":"lazada_vn"}'
SELECT v.what, r ->> 'status' AS status, r ->> 'event' AS event, r ->> 'event_key' AS event_key
  FROM (VALUES
		(1, 'tiktok deauthorization', 'tiktok', :'tt_key', :'tt_secret', :'tt_deauth'),
		(2, 'tiktok inventory status', 'tiktok', :'tt_key', :'tt_secret', :'tt_stock'),
		(3, 'tiktok app-level push', 'tiktok', :'tt_key', :'tt_secret', :'tt_app'),
		(4, 'lazada token expiry', 'lazada', :'lz_key', :'lz_secret', :'lz_token'),
		(5, 'lazada shallow stock', 'lazada', :'lz_key', :'lz_secret', :'lz_stock')
	   ) AS v (n, what, channel, app_key, secret, body),
	   LATERAL invsync.handle_webhook(v.channel, pg_temp.signed(v.app_key, v.secret, v.body), v.body) r
 ORDER BY v.n;

--
-- 5. Refused, nothing written: for each channel a tampered body, a
--    re-serialised one (same JSON, other bytes), a wrong secret, the
--    signature of another app key, none; an unknown shop or seller
--    (signed by the app); a body that is not a push of the channel
--
RESET ROLE;
CREATE TEMP TABLE refused_pushes AS
SELECT v.n, v.what, v.channel, v.headers, v.body FROM (VALUES
		(1, 'tiktok: tampered body', 'tiktok',
		 pg_temp.signed(:'tt_key', :'tt_secret', :'tt_body'),
		 replace(:'tt_body', 'AWAITING_SHIPMENT', 'CANCEL')),
		(2, 'tiktok: re-serialised body', 'tiktok',
		 pg_temp.signed(:'tt_key', :'tt_secret', :'tt_body'), (:'tt_body')::jsonb::text),
		(3, 'tiktok: wrong secret', 'tiktok',
		 pg_temp.signed(:'tt_key', 'not-the-secret', :'tt_body'), :'tt_body'),
		(4, 'tiktok: another app key', 'tiktok',
		 pg_temp.signed('another_app_key', :'tt_secret', :'tt_body'), :'tt_body'),
		(5, 'tiktok: no signature', 'tiktok', '{}'::jsonb, :'tt_body'),
		(6, 'tiktok: unknown shop', 'tiktok',
		 pg_temp.signed(:'tt_key', :'tt_secret', replace(:'tt_body', '7494726673780148744', '7494726673780148745')),
		 replace(:'tt_body', '7494726673780148744', '7494726673780148745')),
		(7, 'tiktok: order push without update_time', 'tiktok', '{}'::jsonb,
		 '{"type":1,"shop_id":"7494726673780148744","data":{"order_id":"1","order_status":"UNPAID"}}'),
		(8, 'tiktok: a lazada push', 'tiktok',
		 pg_temp.signed(:'tt_key', :'tt_secret', :'lz_body'), :'lz_body'),
		(9, 'tiktok: app-level push, wrong secret', 'tiktok',
		 pg_temp.signed(:'tt_key', 'not-the-secret', :'tt_app'), :'tt_app'),
		(11, 'lazada: tampered body', 'lazada',
		 pg_temp.signed(:'lz_key', :'lz_secret', :'lz_body'),
		 replace(:'lz_body', '"unpaid"', '"canceled"')),
		(12, 'lazada: re-serialised body', 'lazada',
		 pg_temp.signed(:'lz_key', :'lz_secret', :'lz_body'), (:'lz_body')::jsonb::text),
		(13, 'lazada: wrong secret', 'lazada',
		 pg_temp.signed(:'lz_key', 'not-the-secret', :'lz_body'), :'lz_body'),
		(14, 'lazada: another app key', 'lazada',
		 pg_temp.signed('654321', :'lz_secret', :'lz_body'), :'lz_body'),
		(15, 'lazada: upper-case API-style sign of another message', 'lazada',
		 jsonb_build_object('Authorization', invsync._hmac_sha256_hex(:'lz_secret', :'lz_body', true)),
		 :'lz_body'),
		(16, 'lazada: unknown seller', 'lazada',
		 pg_temp.signed(:'lz_key', :'lz_secret', replace(:'lz_body', '1234567', '7654321')),
		 replace(:'lz_body', '1234567', '7654321')),
		(17, 'lazada: order push without line', 'lazada', '{}'::jsonb,
		 '{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","status_update_time":1,"trade_order_id":"1"}}'),
		(18, 'lazada: no message_type', 'lazada', '{}'::jsonb, '{"seller_id":"1234567"}'),
		(21, 'tokopedia: signed by the tiktok app', 'tokopedia',
		 pg_temp.signed(:'tt_key', :'tt_secret', replace(:'tt_body', '7494726673780148744', '7495000000000000047')),
		 replace(:'tt_body', '7494726673780148744', '7495000000000000047')),
		(22, 'tokopedia: shop of the tiktok channel', 'tokopedia',
		 pg_temp.signed(:'tt_key', :'tt_secret', :'tt_body'), :'tt_body')
	   ) AS v (n, what, channel, headers, body);
GRANT SELECT ON refused_pushes TO regress_hook_channels;
SET ROLE regress_hook_channels;
SELECT v.what, pg_temp.try(format('SELECT invsync.handle_webhook(%L, %L, %L)::text',
								  v.channel, v.headers, v.body)) AS outcome
  FROM refused_pushes v ORDER BY v.n;

RESET ROLE;
SET invsync.tenant = 47;
SELECT channel, event_key, kind, event_type, order_id, status, update_time, listing_ids IS NOT NULL AS listings
  FROM invsync.webhook_inbox WHERE tenant_id = 47 ORDER BY channel, event_key;
-- the orders' lines are not known: their statuses are recorded, fetches queued
SELECT order_id, channel, status, effect, error FROM invsync.marketplace_orders
 WHERE tenant_id = 47 ORDER BY order_id;
SELECT order_id, state, version FROM invsync.order_fetches WHERE tenant_id = 47 ORDER BY order_id;

--
-- 6. TikTok orders: the fetched lines reserve; the push spelling CANCEL
--    releases; an older push changes nothing; a cancellation after the
--    carrier has the parcel releases nothing
--
SELECT invsync.record_order(:tt_shop, '576684019603311365', 'AWAITING_SHIPMENT', to_timestamp(1664095610),
	'[{"ids": {"product_id": "1729582718312380123", "sku_id": "2729382476852921560"}, "qty": 2}]');
SELECT invsync.record_order(:tt_shop, '576684019603311366', 'UNPAID', to_timestamp(1664095790),
	'[{"ids": {"sku_id": "2729382476852921560"}, "qty": 3}]');
SELECT on_hand, reserved, available FROM invsync.stock WHERE sku = 'KOPI';

SET ROLE regress_hook_channels;
RESET invsync.tenant;
\set tt_cancel '{"type":1,"tts_notification_id":"7327112393057371911","shop_id":"7494726673780148744","timestamp":1664096000,"data":{"order_id":"576684019603311365","order_status":"CANCEL","is_on_hold_order":false,"update_time":1664095990}}'
\set tt_old '{"type":1,"tts_notification_id":"7327112393057371912","shop_id":"7494726673780148744","timestamp":1664096001,"data":{"order_id":"576684019603311365","order_status":"AWAITING_COLLECTION","is_on_hold_order":false,"update_time":1664095900}}'
\set tt_ship '{"type":1,"tts_notification_id":"7327112393057371913","shop_id":"7494726673780148744","timestamp":1664096002,"data":{"order_id":"576684019603311366","order_status":"IN_TRANSIT","is_on_hold_order":false,"update_time":1664096000}}'
\set tt_late_cancel '{"type":1,"tts_notification_id":"7327112393057371914","shop_id":"7494726673780148744","timestamp":1664096003,"data":{"order_id":"576684019603311366","order_status":"CANCEL","is_on_hold_order":false,"update_time":1664096100}}'
SELECT v.what, invsync.handle_webhook('tiktok', pg_temp.signed(:'tt_key', :'tt_secret', v.body), v.body) ->> 'status' AS status
  FROM (VALUES (1, 'cancel', :'tt_cancel'), (2, 'older status', :'tt_old'),
			   (3, 'in transit', :'tt_ship'), (4, 'cancel after shipping', :'tt_late_cancel'),
			   (5, 'cancel again', :'tt_cancel')) AS v (n, what, body)
 ORDER BY v.n;
RESET ROLE;
SET invsync.tenant = 47;
SELECT order_id, status, effect, error FROM invsync.marketplace_orders
 WHERE tenant_id = 47 AND channel = 'tiktok' ORDER BY order_id;
SELECT on_hand, reserved, available FROM invsync.stock WHERE sku = 'KOPI';
SELECT operation, on_hand_change, reserved_change,
	   replace(idempotency_key, ':' || :tt_shop || ':', ':SHOP:') AS idempotency_key
  FROM invsync.ledger WHERE tenant_id = 47 AND sku = 'KOPI' AND order_ref LIKE 'mp:%' ORDER BY ledger_id;

--
-- 7. A Tokopedia shop's push: TikTok's envelope and formula, the
--    Tokopedia app's key and secret, the shop's TikTok shop id
--
\set toko_body '{"type":1,"tts_notification_id":"7327112393057379001","shop_id":"7495000000000000047","timestamp":1664096000,"data":{"order_id":"579000000000000001","order_status":"AWAITING_SHIPMENT","is_on_hold_order":false,"update_time":1664095990}}'
SELECT invsync.record_order(:toko_shop, '579000000000000001', 'UNPAID', to_timestamp(1664095000),
	'[{"ids": {"product_id": "1729582718312380999", "sku_id": "2729382476852921999"}, "qty": 4}]');
SET ROLE regress_hook_channels;
RESET invsync.tenant;
SELECT invsync.handle_webhook('tokopedia', pg_temp.signed('toko_app_key', 'toko_app_secret', :'toko_body'), :'toko_body')
		 - 'shops' AS tokopedia,
	   pg_temp.try(format('SELECT invsync.handle_webhook(%L, %L, %L)::text', 'tiktok',
						  pg_temp.signed('toko_app_key', 'toko_app_secret', :'toko_body'), :'toko_body')) AS as_tiktok;
RESET ROLE;
SET invsync.tenant = 47;
SELECT order_id, channel, status, effect FROM invsync.marketplace_orders
 WHERE tenant_id = 47 AND shop_id = :toko_shop;
SELECT on_hand, reserved, available FROM invsync.stock WHERE sku = 'GULA';

--
-- 8. Lazada orders, per line: each line (one unit) is an order of its own,
--    "trade_order_id/trade_order_line_id"; cancelling one line releases
--    that unit only; a return's push changes no stock
--
SELECT invsync.record_order(:lz_shop, '260422900198363/260422900298363', 'unpaid', to_timestamp(1603698638),
	'[{"ids": {"sku_id": "666"}, "qty": 1}]');
SELECT invsync.record_order(:lz_shop, '260422900198363/260422900298364', 'unpaid', to_timestamp(1603698638),
	'[{"ids": {"sku_id": 666}, "qty": 1}]');
SELECT on_hand, reserved, available FROM invsync.stock WHERE sku = 'TEH';

SET ROLE regress_hook_channels;
RESET invsync.tenant;
\set lz_cancel '{"seller_id":"1234567","message_type":0,"data":{"order_status":"canceled","status_update_time":1603700000,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298363"},"timestamp":1603700001000,"site":"lazada_vn"}'
\set lz_rts '{"seller_id":"1234567","message_type":0,"data":{"order_status":"ready_to_ship","status_update_time":1603700000,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298364"},"timestamp":1603700001001,"site":"lazada_vn"}'
\set lz_ship '{"seller_id":"1234567","message_type":0,"data":{"order_status":"shipped","status_update_time":1603710000,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298364"},"timestamp":1603710001000,"site":"lazada_vn"}'
\set lz_return '{"seller_id":"1234567","message_type":0,"data":{"order_status":"returned","status_update_time":1603900000,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298364","reverse_order_id":"9001","reverse_order_line_id":"9002"},"timestamp":1603900001000,"site":"lazada_vn"}'
SELECT v.what, r ->> 'status' AS status, r ->> 'event_key' AS event_key
  FROM (VALUES (1, 'line 1 canceled', :'lz_cancel'), (2, 'line 2 ready to ship', :'lz_rts'),
			   (3, 'line 2 shipped', :'lz_ship'), (4, 'line 2 returned', :'lz_return'),
			   (5, 'line 2 shipped again', :'lz_ship')) AS v (n, what, body),
	   LATERAL invsync.handle_webhook('lazada', pg_temp.signed(:'lz_key', :'lz_secret', v.body), v.body) r
 ORDER BY v.n;
RESET ROLE;
SET invsync.tenant = 47;
SELECT order_id, status, effect, error FROM invsync.marketplace_orders
 WHERE tenant_id = 47 AND channel = 'lazada' ORDER BY order_id;
SELECT on_hand, reserved, available FROM invsync.stock WHERE sku = 'TEH';
SELECT operation, on_hand_change, reserved_change,
	   replace(idempotency_key, ':' || :lz_shop || ':', ':SHOP:') AS idempotency_key
  FROM invsync.ledger WHERE tenant_id = 47 AND sku = 'TEH' AND order_ref LIKE 'mp:%' ORDER BY ledger_id;

SELECT * FROM invsync.check_consistency();
DROP TABLE refused_pushes;
DROP ROLE regress_hook_channels;
