--
-- adapter_orders: the order-fetch requests of each channel's adapter, signed
-- exactly as the marketplace's COMP vectors (marketplace-apis.md sections
-- 7.1, 7.3, 7.5), and how the answers are read: status, update time, lines
-- (as invsync._apply_order takes them), errors and malformed answers.
--
\set VERBOSITY terse

--
-- 1. Shopee v2.order.get_order_detail (section 7.1): partner 847892, the
-- PHP-demo key, ts 1655714431, shop 14701711
--
\set shopee '{"external_shop_id": "14701711", "app_key": "847892", "app_secret": "57615053704d6470644f554a78656d50484143644964436a5568777544524579", "access_token": "59777174636562737266615546704c6d", "base_url": "https://partner.test-stable.invalid"}'
SELECT r.method, r.url, r.log_url, r.headers, r.body,
	   r.url LIKE '%sign=088d875991a3958a3c2ddd9779c4695c9ec5afd379bb24260d0fc0e4079eb31b%' AS comp_sign
  FROM invsync._adapter_order_request('shopee', :'shopee', '2404098R48U37H', 1655714431) r;

-- the trimmed answer of section 7.1, and one with a variant-less item twice
SELECT invsync._adapter_order_response('shopee', '2404098R48U37H', 200,
	'{"error":"","message":"","request_id":"023c50ace933ba38473a5fb2a7dc8821","response":{"order_list":[{"order_sn":"2404098R48U37H","order_status":"COMPLETED","create_time":1712601591,"update_time":1713139948,"item_list":[{"item_id":23620853561,"item_sku":"","model_id":221404189791,"model_sku":"QAZ-SADOER-05","model_quantity_purchased":1,"order_item_id":23620853561}]}]}}');
SELECT invsync._adapter_order_response('shopee', 'A1', 200,
	'{"error":"","request_id":"r","response":{"order_list":[{"order_sn":"A1","order_status":"READY_TO_SHIP","update_time":1700000000,"item_list":[{"item_id":"5","model_id":0,"model_quantity_purchased":2},{"item_id":6,"model_quantity_purchased":1},{"item_id":5,"model_id":0,"model_quantity_purchased":3}]}]}}');
-- errors: not found, token, sign, server, throttled, not JSON
SELECT v.name, r ->> 'outcome' AS outcome, r ->> 'error_code' AS code
  FROM (VALUES
	('not found', 200, '{"error":"error_not_found","message":"Wrong parameters, detail: the order is not found.","request_id":"x"}'),
	('absent from the list', 200, '{"error":"","request_id":"x","response":{"order_list":[]}}'),
	('token', 403, '{"error":"error_auth","message":"Invalid access_token.","request_id":"x"}'),
	('sign', 403, '{"error":"error_sign","message":"Wrong sign.","request_id":"x"}'),
	('server', 500, '{"error":"error_server","message":"busy","request_id":"x"}'),
	('5xx not JSON', 503, '<html>busy</html>'),
	('throttled', 429, ''),
	('no status', 200, '{"error":"","response":{"order_list":[{"order_sn":"A1","update_time":1,"item_list":[]}]}}'),
	('no item_list', 200, '{"error":"","response":{"order_list":[{"order_sn":"A1","order_status":"UNPAID","update_time":1}]}}'),
	('bad quantity', 200, '{"error":"","response":{"order_list":[{"order_sn":"A1","order_status":"UNPAID","update_time":1,"item_list":[{"item_id":5,"model_quantity_purchased":0}]}]}}'),
	('no items', 200, '{"error":"","response":{"order_list":[{"order_sn":"A1","order_status":"UNPAID","update_time":1,"item_list":[]}]}}'),
	('not an object', 200, '[1]')
  ) AS v (name, status, body),
  LATERAL invsync._adapter_order_response('shopee', 'A1', v.status, v.body) r;

--
-- 2. TikTok Get Order Detail 202309 (section 7.3): secret e59af819cc, app
-- 29a39d, two orders in ids; Tokopedia shops go the same way
--
\set tiktok '{"external_shop_id": "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY", "app_key": "29a39d", "app_secret": "e59af819cc", "access_token": "TTP_access_0123456789abcdef", "base_url": "https://open-api.test.invalid"}'
SELECT r.method, r.url, r.log_url, r.headers, r.body,
	   r.url LIKE '%sign=483b0106bdc4dec3d1a6587a220f20a1d1f7226061300ad3f4cc5307a3ad295b%' AS comp_sign
  FROM invsync._adapter_order_request('tiktok', :'tiktok',
									  '576461413038785752,576461413038785753', 1623812664) r;
SELECT r.url = t.url AS tokopedia_same_request
  FROM invsync._adapter_order_request('tiktok', :'tiktok', '576461413038785752', 1623812664) r,
	   invsync._adapter_order_request('tokopedia', :'tiktok', '576461413038785752', 1623812664) t;

-- the trimmed answer; a quantity is one line item per unit; a combined
-- listing counts its components
SELECT invsync._adapter_order_response('tiktok', '576461413038785752', 200,
	'{"code":0,"message":"Success","request_id":"202203070749000101890810281E8C70B7","data":{"orders":[{"id":"576461413038785752","status":"UNPAID","update_time":1619621355,"line_items":[{"id":"577086512123755123","sku_id":"2729382476852921560","product_id":"1729582718312380123","seller_sku":"red_iphone_256"}]}]}}');
SELECT invsync._adapter_order_response('tokopedia', '9', 200,
	'{"code":0,"request_id":"r","data":{"orders":[{"id":"9","status":"AWAITING_SHIPMENT","update_time":1700000000,"line_items":[{"id":"1","sku_id":"S1","product_id":"P1"},{"id":"2","sku_id":"S1","product_id":"P1"},{"id":"3","sku_id":"S2","product_id":"P1"},{"id":"4","sku_id":"KIT","product_id":"P9","combined_listing_skus":[{"sku_id":"S1","sku_count":2,"product_id":"P1"},{"sku_id":"S3","sku_count":1,"product_id":"P3"}]}]}]}}');
SELECT v.name, r ->> 'outcome' AS outcome, r ->> 'error_code' AS code
  FROM (VALUES
	('absent', 200, '{"code":0,"request_id":"x","data":{"orders":[]}}'),
	('token expired', 200, '{"code":105002,"message":"Expired credentials","request_id":"x"}'),
	('bad sign', 200, '{"code":106001,"message":"Invalid sign","request_id":"x"}'),
	('internal', 200, '{"code":36009003,"message":"Internal error","request_id":"x"}'),
	('5xx not JSON', 502, 'bad gateway'),
	('no code', 200, '{"data":{}}'),
	('no line items', 200, '{"code":0,"data":{"orders":[{"id":"9","status":"UNPAID","update_time":1}]}}'),
	('line without sku', 200, '{"code":0,"data":{"orders":[{"id":"9","status":"UNPAID","update_time":1,"line_items":[{"id":"1"}]}]}}'),
	('no update time', 200, '{"code":0,"data":{"orders":[{"id":"9","status":"UNPAID","line_items":[{"sku_id":"S"}]}]}}')
  ) AS v (name, status, body),
  LATERAL invsync._adapter_order_response('tiktok', '9', v.status, v.body) r;

--
-- 3. Lazada /order/items/get (section 7.5): secret helloworld, app 123456,
-- token "test", ts 1517820392000, order 1234; invsync's order id is
-- "trade_order_id/trade_order_line_id" and only the trade order is sent
--
\set lazada '{"external_shop_id": "100200300", "app_key": "123456", "app_secret": "helloworld", "access_token": "test", "base_url": "https://api.lazada.test.invalid/rest"}'
SELECT r.method, r.url, r.log_url, r.headers, r.body,
	   r.url LIKE '%sign=308A8EDA13B1CF572E3F0E7008918375A902D1CD7CF988BCFB92B9635E74276D%' AS comp_sign
  FROM invsync._adapter_order_request('lazada', :'lazada', '1234', 1517820392) r
UNION ALL
SELECT r.method, r.url, r.log_url, r.headers, r.body,
	   r.url LIKE '%sign=308A8EDA13B1CF572E3F0E7008918375A902D1CD7CF988BCFB92B9635E74276D%'
  FROM invsync._adapter_order_request('lazada', :'lazada', '1234/98108', 1517820392) r;

-- the trimmed answer (one unit per item): the line kept, its status and time
SELECT invsync._adapter_order_response('lazada', '31202/98108', 200,
	'{"code":"0","request_id":"0ba2887315178178017221014","data":[{"order_id":"31202","order_item_id":"98108","status":"canceled","sku":"BRSD#02","shop_sku":"BE494HLAAUE3SGAMZ-39898","sku_id":"666","product_id":"12345","warehouse_code":"WH-01","updated_at":"2014-10-15 19:12:15 +0800"},{"order_id":"31202","order_item_id":"98109","status":"pending","sku_id":"777","product_id":"12345","updated_at":"2014-10-15 19:00:00 +0800"}]}');
-- a bare trade order: every unit, when they agree
SELECT invsync._adapter_order_response('lazada', '31202', 200,
	'{"code":"0","request_id":"r","data":[{"order_item_id":1,"status":"pending","sku_id":666,"product_id":12345,"updated_at":"2024-01-01 00:00:00 +0700"},{"order_item_id":2,"status":"pending","sku_id":666,"product_id":12345,"updated_at":"2024-01-01 00:00:05 +0700"}]}');
SELECT v.name, r ->> 'outcome' AS outcome, r ->> 'error_code' AS code
  FROM (VALUES
	('31202/5', 'line absent', 200, '{"code":"0","data":[{"order_item_id":"1","status":"pending","sku_id":"1","updated_at":"2024-01-01 00:00:00 +0700"}]}'),
	('31202/5', 'unknown order', 200, '{"code":"16","type":"ISV","message":"E016: Invalid Order ID","request_id":"x"}'),
	('31202/5', 'token', 200, '{"code":"IllegalAccessToken","type":"ISV","message":"The specified access token is invalid or expired","request_id":"x"}'),
	('31202/5', 'throttled', 200, '{"code":"ApiCallLimit","type":"ISP","message":"The request is too frequent","request_id":"x"}'),
	('31202/5', 'system', 200, '{"code":"ServiceTimeout","type":"SYSTEM","message":"timeout","request_id":"x"}'),
	('31202/5', '5xx not JSON', 500, 'oops'),
	('31202/5', 'no data', 200, '{"code":"0","request_id":"x"}'),
	('31202/5', 'bad time', 200, '{"code":"0","data":[{"order_item_id":"5","status":"pending","sku_id":"1","updated_at":"yesterday"}]}'),
	('31202', 'mixed status', 200, '{"code":"0","data":[{"order_item_id":"1","status":"pending","sku_id":"1","updated_at":"2024-01-01 00:00:00 +0700"},{"order_item_id":"2","status":"canceled","sku_id":"1","updated_at":"2024-01-01 00:00:00 +0700"}]}')
  ) AS v (order_id, name, status, body),
  LATERAL invsync._adapter_order_response('lazada', v.order_id, v.status, v.body) r;

-- a channel without order fetches, and an unknown channel
SELECT invsync._adapter_order_response('nochannel', '1', 200, '{}');
