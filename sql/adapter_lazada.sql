--
-- Lazada adapter: request signing (every worked vector of
-- marketplace-apis.md 3.2, reproduced with the extension's own code), the
-- exact bytes of the requests built, the country gateways, the batch
-- limit, the classification of Lazada's answers, the token refresh with
-- its non-extended refresh end, and the sync_status alert it feeds.  No
-- network: everything goes through invsync._hmac_sha256_hex and the
-- invsync._adapter_* hooks.  Tenant 53; its shops have no listings, so the
-- worker of this test server sends nothing.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

--
-- 1. Signature vectors
--

-- 3.2 (official, VEC) /order/get and (COMP) UpdateSellableQuantity; 7.5
-- (COMP) /order/items/get: UPPER hex over api_path + sorted name+value
SELECT v.name,
       invsync._hmac_sha256_hex('helloworld', v.message, true) AS sign,
       invsync._hmac_sha256_hex('helloworld', v.message, true) = v.expected AS matches
FROM (VALUES
  ('order/get (official)',
   '/order/getaccess_tokentestapp_key123456order_id1234sign_methodsha256timestamp1517820392000',
   '4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A'),
  ('sellable/update (COMP)',
   '/product/stock/sellable/updateaccess_tokentestapp_key123456payload'
   || '<Request><Product><Skus><Sku><ItemId>234234234</ItemId><SkuId>234</SkuId><SellableQuantity>20</SellableQuantity></Sku></Skus></Product></Request>'
   || 'sign_methodsha256timestamp1517820392000',
   '0D7B6906784B9492ACFB5A3582775CDB854DF8C977038E452E05A5C233A86368'),
  ('order/items/get (COMP)',
   '/order/items/getaccess_tokentestapp_key123456order_id1234sign_methodsha256timestamp1517820392000',
   '308A8EDA13B1CF572E3F0E7008918375A902D1CD7CF988BCFB92B9635E74276D')
) AS v(name, message, expected);

-- 3.6 (COMP) the push (webhook) signature: lower hex over app_key + body
SELECT invsync._hmac_sha256_hex('3412gyo124goi3124',
         '123456' || '{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","status_update_time":1603698638,"trade_order_id":"260422900198363","trade_order_line_id":"260422900298363"},"timestamp":1603766859530,"site":"lazada_vn"}')
       = '64ffc8b10a9921ded17f88bb861dd1c2d879514c51c6731946becba319ec6b63' AS push_vector_matches;

--
-- 2. Stock update requests
--

-- the COMP vector's shop: app_key 123456, secret helloworld, token "test"
\set shop '{"external_shop_id": "100200300", "app_key": "123456", "app_secret": "helloworld", "access_token": "test", "refresh_token": "refresh-token-of-the-seller", "base_url": "https://api.lazada.test.invalid/rest", "uses_locations": false}'

-- the adapter's own push builder, at the vector's time (1517820392 s, sent
-- as milliseconds), gives the vector's sign; system params and the sign in
-- the query, the payload as a form body
SELECT method, url, log_url, headers, body,
       substring(url FROM '&sign=([0-9A-F]{64})$')
         = '0D7B6906784B9492ACFB5A3582775CDB854DF8C977038E452E05A5C233A86368' AS sign_is_vector
FROM invsync._adapter_stock_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "234234234", "sku_id": "234", "level": 20}]', 1517820392);

-- a real token and secret never show in log_url
SELECT log_url,
       strpos(log_url, 'a-real-access-token-0123') = 0
         AND strpos(log_url, substring(url FROM '&sign=([0-9A-F]{64})$')) = 0 AS log_url_clean
FROM invsync._adapter_stock_request('lazada',
  :'shop'::jsonb || '{"access_token": "a-real-access-token-0123"}',
  '[{"listing_id": 1, "item_id": "234234234", "sku_id": "234", "level": 20}]', 1517820392);

-- SKUs of different products in one call; SellerSku when given, escaped
-- for XML and then for the form; a negative level goes out as 0; the sign
-- is over the raw XML
SELECT body,
       substring(url FROM '&sign=([0-9A-F]{64})$') =
         invsync._hmac_sha256_hex('helloworld',
           '/product/stock/sellable/updateaccess_tokentestapp_key123456payload'
           || '<Request><Product><Skus>'
           || '<Sku><ItemId>1001</ItemId><SkuId>2001</SkuId><SellerSku>TEE &amp; &lt;M&gt; &quot;red&quot; &apos;x&apos;</SellerSku><SellableQuantity>5</SellableQuantity></Sku>'
           || '<Sku><ItemId>1002</ItemId><SkuId>2002</SkuId><SellableQuantity>0</SellableQuantity></Sku>'
           || '<Sku><ItemId>1002</ItemId><SkuId>2003</SkuId><SellerSku>é/ü+1</SellerSku><SellableQuantity>7</SellableQuantity></Sku>'
           || '</Skus></Product></Request>'
           || 'sign_methodsha256timestamp1517820392000', true) AS sign_matches
FROM invsync._adapter_stock_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "seller_sku": "TEE & <M> \"red\" ''x''", "level": 5},
    {"listing_id": 2, "item_id": 1002, "sku_id": 2002, "level": -3},
    {"listing_id": 3, "item_id": "1002", "sku_id": "2003", "seller_sku": "é/ü+1", "level": 7}]', 1517820392);

-- the payload as Lazada reads it (URL-decoded): single-warehouse sellers
-- send no warehouse, whatever the listing says
CREATE FUNCTION pg_temp.payload(p_body text) RETURNS text
LANGUAGE sql AS $$
  SELECT convert_from(decode(string_agg(
           CASE WHEN m[1] IS NOT NULL THEN substr(m[1], 2)
                ELSE encode(convert_to(m[2], 'UTF8'), 'hex') END, '' ORDER BY n), 'hex'), 'UTF8')
  FROM regexp_matches(substr(p_body, length('payload=') + 1), '(%[0-9A-F]{2})|([^%])', 'g')
       WITH ORDINALITY AS r(m, n)
$$;
SELECT pg_temp.payload(body) AS payload
FROM invsync._adapter_stock_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-A", "level": 5}]', 1517820392);

-- a multi-warehouse seller: every warehouse of a SKU in one <Sku>; a
-- listing without a warehouse, a second listing of a SKU and warehouse,
-- and a sku_id under two item_ids never go on the wire (Lazada would
-- refuse the whole call)
SELECT pg_temp.payload(body) AS payload
FROM invsync._adapter_stock_request('lazada', :'shop'::jsonb || '{"uses_locations": true}',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-A", "level": 5},
    {"listing_id": 2, "item_id": "1002", "sku_id": "2002", "warehouse_code": "WH-A", "level": 9},
    {"listing_id": 3, "item_id": "1001", "sku_id": "2001", "seller_sku": "S-1", "warehouse_code": "WH<B>", "level": 6},
    {"listing_id": 4, "item_id": "1003", "sku_id": "2004", "level": 1},
    {"listing_id": 5, "item_id": "1001", "sku_id": "2001", "seller_sku": "S-1b", "warehouse_code": "WH-A", "level": 8},
    {"listing_id": 6, "item_id": "1009", "sku_id": "2002", "warehouse_code": "WH-C", "level": 2}]', 1517820392);

-- a single-warehouse seller: one SKU twice is sent once; ids that are not
-- integers, and levels above 2^31-1, are never sent
SELECT pg_temp.payload(body) AS payload
FROM invsync._adapter_stock_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "level": 5},
    {"listing_id": 2, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-B", "level": 6},
    {"listing_id": 3, "item_id": "1001", "sku_id": "2x", "level": 5},
    {"listing_id": 4, "item_id": "1001", "sku_id": "2005", "level": 2147483648},
    {"listing_id": 5, "item_id": "1001", "sku_id": "2006", "level": 2147483647}]', 1517820392);

-- no empty parameter is ever sent (nor signed): without an access token
-- the query has none
SELECT log_url
FROM invsync._adapter_stock_request('lazada', :'shop'::jsonb - 'access_token',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "level": 5}]', 1517820392);

-- escaped in the URL, signed raw
SELECT url,
       substring(url FROM '&sign=([0-9A-F]{64})$') =
         invsync._hmac_sha256_hex('helloworld',
           '/product/stock/sellable/updateaccess_tokena/b+c=d e~app_key123456payload'
           || '<Request><Product><Skus><Sku><ItemId>1</ItemId><SkuId>2</SkuId><SellableQuantity>3</SellableQuantity></Sku></Skus></Product></Request>'
           || 'sign_methodsha256timestamp1517820392000', true) AS sign_matches
FROM invsync._adapter_stock_request('lazada',
  :'shop'::jsonb || '{"base_url": "http://127.0.0.1:8080/mock/", "access_token": "a/b+c=d e~"}',
  '[{"listing_id": 1, "item_id": "1", "sku_id": "2", "level": 3}]', 1517820392);

--
-- 3. Hosts: a gateway per country, the central auth host
--
SELECT r.region, x.kind, x.log_url
FROM (VALUES ('SG'), ('th'), ('MY'), ('vn'), ('PH'), ('ID')) AS r (region),
     LATERAL (SELECT (:'shop'::jsonb - 'base_url') || jsonb_build_object('region', r.region) AS shop) s,
     LATERAL (SELECT 'stock' AS kind, q.log_url
                FROM invsync._adapter_stock_request('lazada', s.shop,
                       '[{"listing_id": 1, "item_id": "1", "sku_id": "2", "level": 3}]', 1517820392) q
              UNION ALL
              SELECT 'refresh', q.log_url
                FROM invsync._adapter_refresh_request('lazada', s.shop, 1517820392) q) x
ORDER BY 1, 2;
-- an unknown region, or none: no host (the engine dead-letters "no_host")
SELECT * FROM invsync._adapter_stock_request('lazada',
  (:'shop'::jsonb - 'base_url') || '{"region": "BR"}',
  '[{"listing_id": 1, "item_id": "1", "sku_id": "2", "level": 3}]', 1517820392);
SELECT * FROM invsync._adapter_stock_request('lazada', :'shop'::jsonb - 'base_url',
  '[{"listing_id": 1, "item_id": "1", "sku_id": "2", "level": 3}]', 1517820392);
-- an app's auth_base_url overrides the auth host
SELECT log_url FROM invsync._adapter_refresh_request('lazada',
  :'shop'::jsonb || '{"auth_base_url": "https://127.0.0.1:9443/rest"}', 1517820392);

--
-- 4. Attributes and batch sizes
--
SELECT attribute, attribute_position, mirrored_in, kind, required, batch, siblings,
       default_batch, max_batch
FROM invsync.channel_attributes() WHERE channel = 'lazada' ORDER BY attribute_position;

-- at most 50 SKUs a call: apps.batch_size above it is refused (IV029)
SET invsync.tenant = 53;
CREATE FUNCTION pg_temp.try(p_sql text) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	v_state		text;
	v_message	text;
BEGIN
	EXECUTE p_sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
	RETURN v_state || ' ' || v_message;
END
$$;
SELECT b.size, pg_temp.try(format(
         'INSERT INTO invsync.apps (channel, app_key, app_secret, batch_size) VALUES (''lazada'', %L, ''s'', %s)',
         'batch-' || b.size, b.size)) AS outcome
FROM (VALUES (1), (20), (50), (51), (500)) AS b (size);
-- and so is the hook, beyond 50 listings
SELECT count(*) FROM invsync._adapter_stock_request('lazada', :'shop',
  (SELECT jsonb_agg(jsonb_build_object('listing_id', i, 'item_id', 1000 + i, 'sku_id', 2000 + i, 'level', i))
     FROM generate_series(1, 51) i), 1517820392);
SELECT (length(pg_temp.payload(body)) - length(replace(pg_temp.payload(body), '<Sku>', ''))) / 5 AS skus
FROM invsync._adapter_stock_request('lazada', :'shop',
  (SELECT jsonb_agg(jsonb_build_object('listing_id', i, 'item_id', 1000 + i, 'sku_id', 2000 + i, 'level', i))
     FROM generate_series(1, 50) i), 1517820392);

--
-- 5. Stock update responses
--

-- the call's outcome, then each listing's (for the single-warehouse shop
-- above unless another is given)
CREATE FUNCTION pg_temp.stock_response(p_listings jsonb, p_status integer,
                                       p_body text, p_retry_after text DEFAULT NULL,
                                       p_shop jsonb DEFAULT :'shop')
RETURNS TABLE (who text, outcome text, retry_ms integer, request_id text,
               error_code text, error_message text)
LANGUAGE sql AS $$
  WITH r AS (
    SELECT invsync._adapter_stock_response('lazada', p_listings, p_status, p_body,
                                           p_retry_after, NULL, p_shop) AS j)
  SELECT who, outcome, retry_ms, request_id, error_code, error_message
  FROM (
    SELECT 0::bigint AS n, 'call' AS who, j->>'outcome' AS outcome,
           (j->>'retry_after_ms')::integer AS retry_ms, j->>'request_id' AS request_id,
           j->>'error_code' AS error_code, j->>'error_message' AS error_message
    FROM r
    UNION ALL
    SELECT e.n, 'listing ' || (e.l->>'listing_id'), e.l->>'outcome', NULL, NULL,
           e.l->>'error_code', e.l->>'error_message'
    FROM r, jsonb_array_elements(j->'listings') WITH ORDINALITY AS e(l, n)
  ) AS s
  ORDER BY n
$$;

\set three '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "seller_sku": "TEE-M", "level": 5}, {"listing_id": 2, "item_id": "1002", "sku_id": "2002", "level": 0}, {"listing_id": 3, "item_id": "1003", "sku_id": "2003", "seller_sku": "CAP", "level": 1}]'

-- success: code is a string; a number is accepted too
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"0","data":{},"request_id":"0ba2887315178178017221014"}');
SELECT * FROM pg_temp.stock_response(:'three', 200, '{"code":0,"data":{},"request_id":"r-num"}');

-- 501: the SKUs detail names (by sku_id, seller_sku or item_id) are
-- dead with Lazada's message; the others are resent, Lazada not saying
-- whether they were applied
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"501","type":"ISP","message":"E501: Update product failed","detail":[{"field":"SkuId","message":"SKU not exist","seller_sku":"","sku_id":"2002","item_id":"1002"}],"request_id":"r-501"}');
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"501","type":"ISP","message":"E501: Update product failed","detail":[{"field":"SellerSku","message":"SellerSku does not match","seller_sku":"CAP","sku_id":"","item_id":""},{"field":"ItemId","message":"wrong item","item_id":1001}],"request_id":"r-501b"}');
-- every SKU failed
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"501","type":"ISP","message":"E501: Update product failed","detail":[{"field":"SkuId","message":"SKU not exist","sku_id":"2001"},{"field":"SkuId","message":"SKU not exist","sku_id":"2002"},{"field":"SkuId","message":"SKU not exist","sku_id":"2003"}],"request_id":"r-501c"}');
-- a detail naming no SKU: the SKU's own when the call had one SKU (all its
-- warehouses), else nobody's
SELECT * FROM pg_temp.stock_response(
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-A", "level": 5},
    {"listing_id": 2, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-B", "level": 6}]', 200,
  '{"code":"501","type":"ISP","message":"E501: Update product failed","detail":[{"field":"Product","message":"Category is inactive"}],"request_id":"r-501d"}',
  NULL, :'shop'::jsonb || '{"uses_locations": true}');
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"501","type":"ISP","message":"E501: Update product failed","detail":[{"field":"Product","message":"Category is inactive"}],"request_id":"r-501e"}');

-- throttling: E901 (at least a second), ApiCallLimit's "ban will last N
-- seconds", HTTP 429 with Retry-After
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"901","type":"ISP","message":"E901: The request is too frequent, or the requested functionality is temporarily disabled.","request_id":"r-901"}');
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"ApiCallLimit","type":"ISP","message":"Api access frequency exceeds the limit. this ban will last 5 seconds","request_id":"r-acl"}');
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"ApiCallLimit","type":"ISP","message":"Api access frequency exceeds the limit. this ban will last 2 seconds","request_id":"r-acl2"}', '7');
SELECT * FROM pg_temp.stock_response(:'three', 429, '', '3') WHERE who = 'call';
SELECT * FROM pg_temp.stock_response(:'three', 429, '') WHERE who = 'call';

-- the access token: refresh and resend once
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"IllegalAccessToken","type":"ISV","message":"The specified access token is invalid or expired","request_id":"r-tok"}');
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"code":"MISSING_PARAMETER","type":"ISV","message":"missing required parameter: access_token","request_id":"r-miss"}')
WHERE who = 'call';

-- retryable: 6, 513, a refused timestamp, ISP and SYSTEM errors, 5xx pages
SELECT c.code, r.outcome, r.error_code, r.error_message
FROM (VALUES
  ('{"code":"6","type":"ISP","message":"E006: Unexpected internal error"}'),
  ('{"code":"513","type":"ISP","message":"E513: reduce to 20 SKUs"}'),
  ('{"code":"InvalidTimestamp","type":"ISV","message":"Invalid timestamp"}'),
  ('{"code":"ServiceUnavailable","type":"SYSTEM","message":"service unavailable"}'),
  ('{"code":"SomethingNew","type":"ISP","message":"backend trouble"}')
) AS c(code),
LATERAL pg_temp.stock_response(:'three', 200, c.code) r WHERE r.who = 'call';
SELECT * FROM pg_temp.stock_response(:'three', 503, '<html><body>503</body></html>') WHERE who = 'call';

-- permanent: 5, 204, a wrong sign, unknown ISV errors
SELECT c.code, r.outcome, r.error_code, r.error_message
FROM (VALUES
  ('{"code":"5","type":"ISV","message":"E005: Invalid Request Format: not well-formed"}'),
  ('{"code":"204","type":"ISV","message":"E204: Too many SKU in one request (51 > 50)"}'),
  ('{"code":"IncompleteSignature","type":"ISV","message":"The request signature does not conform to lazada standards"}'),
  ('{"code":"InvalidAppKey","type":"ISV","message":"The specified App Key is invalid"}'),
  ('{"code":"4170","message":"cannot decrease during campaign"}')
) AS c(code),
LATERAL pg_temp.stock_response(:'three', 200, c.code) r WHERE r.who = 'call';

-- the IOP gateway's wrapper, read the same
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"error_response":{"type":"ISV","code":"IllegalAccessToken","msg":"The specified access token is invalid or expired","request_id":"r-wrap"}}')
WHERE who = 'call';
SELECT * FROM pg_temp.stock_response(:'three', 200,
  '{"error_response":{"type":"ISP","code":"ApiCallLimit","msg":"this ban will last 3 seconds","request_id":"r-wrap2"}}')
WHERE who = 'call';

-- malformed, empty, code-less and non-object answers are retried, never an
-- ERROR
SELECT c.body, r.outcome, r.error_code
FROM (VALUES ('{"code":"0","data":'), (''), ('{"data":{}}'), ('[1,2]'), ('"0"')) AS c(body),
LATERAL pg_temp.stock_response(:'three', 200, c.body) r WHERE r.who = 'call';

-- listings that were not sent are dead whatever the answer
SELECT * FROM pg_temp.stock_response(
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-A", "level": 5},
    {"listing_id": 2, "item_id": "1001", "sku_id": "2002", "level": 5},
    {"listing_id": 3, "item_id": "1001", "sku_id": "2x", "warehouse_code": "WH-A", "level": 5}]', 200,
  '{"code":"0","data":{},"request_id":"r-ns"}', NULL, :'shop'::jsonb || '{"uses_locations": true}');

-- a server message never shows a token
SELECT error_message FROM pg_temp.stock_response(:'three', 200,
  '{"code":"IllegalAccessToken","type":"ISV","message":"token a-real-access-token-0123 is invalid","request_id":"r-echo"}',
  NULL, :'shop'::jsonb || '{"access_token": "a-real-access-token-0123"}')
WHERE who = 'call';

--
-- 6. Token refresh
--

-- signed like any API, without an access token; the refresh token in the
-- query, redacted from log_url; no body
SELECT method, url, log_url, body,
       substring(url FROM '&sign=([0-9A-F]{64})$') =
         invsync._hmac_sha256_hex('helloworld',
           '/auth/token/refreshapp_key123456refresh_tokenrefresh-token-of-the-sellersign_methodsha256timestamp1517820392000',
           true) AS sign_matches,
       strpos(log_url, 'refresh-token-of-the-seller') = 0 AS log_url_clean
FROM invsync._adapter_refresh_request('lazada', :'shop', 1517820392);

-- new tokens; the access token lives expires_in from now; the refresh
-- token's end is refresh_expires_in from now, i.e. the end it always had:
-- refreshing does not move it (numbers may come as strings)
SELECT r->>'outcome' AS outcome, r->>'access_token' AS access_token,
       r->>'refresh_token' AS refresh_token,
       abs((r->>'access_expires_at')::bigint
           - (extract(epoch FROM clock_timestamp())::bigint + 2592000)) <= 5 AS access_expiry_ok,
       abs((r->>'refresh_expires_at')::bigint
           - (extract(epoch FROM clock_timestamp())::bigint + 86400)) <= 5 AS refresh_end_not_extended,
       r->>'request_id' AS request_id
FROM invsync._adapter_refresh_response('lazada', 200,
  '{"access_token":"50000701a12bcdefNEWACCESS","refresh_token":"50001701a12bcdefNEWREFRESH","expires_in":"2592000","refresh_expires_in":86400,"country":"sg","account_platform":"seller_center","account":"seller@example.com","country_user_info_list":[{"country":"sg","seller_id":"100200300","user_id":"1","short_code":"SG1"}],"code":"0","request_id":"r-ref"}') AS r;
-- without refresh_expires_in the end is unknown (0), not invented
SELECT r->>'outcome' AS outcome, r->>'refresh_expires_at' AS refresh_expires_at
FROM invsync._adapter_refresh_response('lazada', 200,
  '{"access_token":"a-new-access-token-00","refresh_token":"a-new-refresh-token-00","expires_in":604800,"code":"0","request_id":"r-ref2"}') AS r;

-- a spent or expired refresh token: the seller must authorise again
SELECT invsync._adapter_refresh_response('lazada', 200,
  '{"code":"IllegalRefreshToken","type":"ISV","message":"The specified refresh token is invalid or expired","request_id":"r-ill"}');
-- try later
SELECT invsync._adapter_refresh_response('lazada', 200,
  '{"code":"ApiCallLimit","type":"ISP","message":"this ban will last 2 seconds","request_id":"r-lim"}');
SELECT invsync._adapter_refresh_response('lazada', 502, 'Bad Gateway');
SELECT invsync._adapter_refresh_response('lazada', 200, '{"code":"6","type":"ISP","message":"E006: Unexpected internal error"}');
SELECT invsync._adapter_refresh_response('lazada', 200,
  '{"access_token":"a-new-access-token-00","expires_in":604800,"code":"0","request_id":"r-half"}');

--
-- 7. Reading levels: GetProductItem, one item per call
--
SELECT method, log_url, body
FROM invsync._adapter_read_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001"}, {"listing_id": 2, "item_id": "1001", "sku_id": "2002"}]', 1517820392);
SELECT * FROM invsync._adapter_read_request('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001"}, {"listing_id": 2, "item_id": "1002", "sku_id": "2002"}]', 1517820392);

\set item_answer '{"code":"0","request_id":"r-get","data":{"item_id":1001,"itemId":1001,"status":"Active","skus":[{"SkuId":2001,"SellerSku":"TEE-M","quantity":12,"Available":12,"multiWarehouseInventories":[{"warehouseCode":"WH-A","quantity":5,"sellableQuantity":5},{"warehouseCode":"WH-B","quantity":7,"sellableQuantity":7}]},{"SkuId":"2002","SellerSku":"TEE-L","quantity":3,"Available":3}]}}'
-- a single-warehouse seller reads the SKU's total
SELECT invsync._adapter_read_response('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001"}, {"listing_id": 2, "item_id": "1001", "sku_id": "2002"}, {"listing_id": 3, "item_id": "1001", "sku_id": "2009"}]',
  200, :'item_answer');
-- a multi-warehouse seller reads each warehouse
SELECT invsync._adapter_read_response('lazada', :'shop'::jsonb || '{"uses_locations": true}',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-B"}, {"listing_id": 2, "item_id": "1001", "sku_id": "2001", "warehouse_code": "WH-Z"}]',
  200, :'item_answer');
SELECT invsync._adapter_read_response('lazada', :'shop',
  '[{"listing_id": 1, "item_id": "1001", "sku_id": "2001"}]',
  200, '{"code":"208","type":"ISV","message":"E208: Item not exist","request_id":"r-208"}');

--
-- 8. sync_status: when the seller must authorise again
--
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('lazada', 'alert-app', 'alert-secret', 'https://127.0.0.1:9443/rest');
INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
                           access_expires_at, refresh_expires_at, token_state)
SELECT a.app_id, s.id, 'SG', 'access-' || s.id, 'refresh-' || s.id, now() + interval '30 days',
       now() + s.refresh_left, s.state
  FROM invsync.apps a,
       (VALUES ('seller-far', interval '90 days', 'ok'),
               ('seller-soon', interval '3 days', 'ok'),
               ('seller-past', interval '-1 hour', 'ok'),
               ('seller-unknown', NULL, 'ok'),
               ('seller-refused', interval '60 days', 'reauthorize')) AS s(id, refresh_left, state)
 WHERE a.app_key = 'alert-app';
SELECT external_shop_id, channel, token_state,
       refresh_expires_at IS NOT NULL AS end_known, authorization_alert
  FROM invsync.sync_status ORDER BY external_shop_id;
-- the new columns come last
SELECT string_agg(attname, ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = 'invsync.sync_status'::regclass AND attnum > 0;

--
-- 9. Listings the engine never sends: ids missing or not integers
--
SELECT * FROM pg_temp.stock_response(
  '[{"listing_id": 1, "item_id": "1", "level": 1},
    {"listing_id": 2, "sku_id": "1", "level": 1},
    {"listing_id": 3, "item_id": "01", "sku_id": "1", "level": 1},
    {"listing_id": 4, "item_id": "1", "sku_id": "2", "level": 1}]', 200,
  '{"code":"0","data":{},"request_id":"r-ids"}');
