--
-- TikTok Shop and Tokopedia adapters: request signing against every
-- worked vector of marketplace-apis.md section 2.2, the exact bytes of the
-- requests built, level 0 and capping, warehouses grouped per SKU, the
-- classification of TikTok's answers, token refresh, and what differs for
-- Tokopedia shops.  No network: everything goes through the
-- invsync._hmac_sha256_hex and invsync._adapter_* hooks.
--

--
-- 1. Signature vectors (section 2.2)
--

-- each documented string to sign, HMAC-SHA256'd by the extension
SELECT v.name,
       invsync._hmac_sha256_hex(v.secret, v.base) AS sign,
       invsync._hmac_sha256_hex(v.secret, v.base) = v.expected AS matches
FROM (VALUES
  ('official GET /authorization/202309/shops', 'e59af819cc',
   'e59af819cc/authorization/202309/shopsapp_key29a39dtimestamp1623812664e59af819cc',
   'b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8'),
  ('SKIT GET /event/202309/webhooks', 'e59af819cc',
   'e59af819cc/event/202309/webhooks' || 'app_key68xu9ks5p4i8'
     || 'shop_cipherROW_xkMbgAAAeVAQra0eZWebFQq5aIK' || 'timestamp1696909648' || 'e59af819cc',
   'ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37'),
  ('SKIT PUT /event/202309/webhooks', 'e59af819cc',
   'e59af819cc/event/202309/webhooks' || 'app_key68xu9ks5p4i8'
     || 'shop_cipherROW_xkMbgAAAeVAQra0eZWebFQq5aIK' || 'timestamp1696909648'
     || '{"event_type":"PACKAGE_UPDATE","address":"https://partner.tiktokshop.com"}' || 'e59af819cc',
   '701dd6deb2389fe4c469b89bd37fc56f96a6da6afeb4d01c9077a65169752fa7'),
  ('EcomPHP GET /test-api', 'app_secret',
   'app_secret/test-apifoobarapp_secret',
   'd3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f'),
  ('COMP inventory update', 'e59af819cc',
   'e59af819cc/product/202309/products/1729382561353664372/inventory/update'
     || 'app_key29a39d' || 'shop_cipherROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY' || 'timestamp1623812664'
     || '{"skus":[{"id":"1729592969712207013","inventory":[{"warehouse_id":"7068517275539719942","quantity":999}]}]}'
     || 'e59af819cc',
   '1bc4db98fb26d22f8f9174f863a9511bd5a1eba3fd91697a7684c1f6de9f8edf')
) AS v(name, secret, base, expected);

-- the shop of the COMP vector: app 29a39d, its cipher, a token
\set shop '{"external_shop_id": "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY", "app_key": "29a39d", "app_secret": "e59af819cc", "access_token": "TTP_access_0123456789abcdef", "refresh_token": "TTP_refresh_0123456789abcdef", "base_url": "https://open-api.test.invalid"}'
\set comp '[{"listing_id": 1, "product_id": "1729382561353664372", "sku_id": "1729592969712207013", "warehouse_id": "7068517275539719942", "level": 999}]'

-- the adapter builds the COMP request: same path, query and body, same
-- sign; the token travels in x-tts-access-token, redacted in the log form
SELECT method, url, log_url, headers, body
FROM invsync._adapter_stock_request('tiktok', :'shop', :'comp', 1623812664);
SELECT substring(url FROM '&sign=([0-9a-f]{64})') AS sign,
       substring(url FROM '&sign=([0-9a-f]{64})') =
         '1bc4db98fb26d22f8f9174f863a9511bd5a1eba3fd91697a7684c1f6de9f8edf' AS comp_vector,
       strpos(log_url, substring(url FROM '&sign=([0-9a-f]{64})')) = 0
         AND strpos(log_url, 'TTP_access') = 0 AND strpos(url, 'TTP_access') = 0
         AND strpos(headers::text, 'TTP_access') = 0 AS secrets_kept_out
FROM invsync._adapter_stock_request('tiktok', :'shop', :'comp', 1623812664);

-- a base_url path prefix (a test double, a proxy) and a trailing slash:
-- the prefix is in the URL but not signed, so the sign is the same
SELECT url,
       substring(url FROM '&sign=([0-9a-f]{64})') =
         '1bc4db98fb26d22f8f9174f863a9511bd5a1eba3fd91697a7684c1f6de9f8edf' AS comp_vector
FROM invsync._adapter_stock_request('tiktok',
  :'shop'::jsonb || '{"base_url": "http://127.0.0.1:8080/mock/tiktok/"}', :'comp', 1623812664);

-- no base_url: TikTok's production host, whatever the region
SELECT r.region, x.log_url
FROM (VALUES (NULL), ('ID'), ('US')) AS r (region),
     LATERAL invsync._adapter_stock_request('tiktok',
       (:'shop'::jsonb - 'base_url') || jsonb_build_object('region', r.region),
       :'comp', 1623812664) x;

--
-- 2. Stock update requests
--

-- warehouses grouped per SKU, SKUs in the order they come; a listing
-- without a warehouse is sent without warehouse_id; levels clamped to
-- [0, 99999] (0 is sent: "none left"); query values escaped in the URL,
-- signed raw
SELECT body,
       substring(url FROM '&sign=([0-9a-f]{64})') =
         invsync._hmac_sha256_hex('e59af819cc',
           'e59af819cc/product/202309/products/42/inventory/update'
           || 'app_key29a39d' || 'shop_cipherROW a/b+c' || 'timestamp1623812664' || body
           || 'e59af819cc') AS sign_matches,
       log_url
FROM invsync._adapter_stock_request('tiktok',
  :'shop'::jsonb || '{"external_shop_id": "ROW a/b+c"}',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "A", "warehouse_id": "W1", "level": 0},
    {"listing_id": 2, "product_id": "42", "sku_id": "B", "warehouse_id": "W1", "level": -5},
    {"listing_id": 3, "product_id": "42", "sku_id": "A", "warehouse_id": "W2", "level": 100000},
    {"listing_id": 4, "product_id": "42", "sku_id": "C", "level": 99999},
    {"listing_id": 5, "product_id": 42, "sku_id": "B\"q", "warehouse_id": "W\u00e9", "level": 7}]',
  1623812664);

-- a product id that is not a canonical integer never reaches the URL path
SELECT body
FROM invsync._adapter_stock_request('tiktok', :'shop',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "A", "level": 1},
    {"listing_id": 2, "product_id": "42/../x", "sku_id": "B", "level": 1}]', 1623812664);

-- listings of two products never share a call
SELECT body
FROM invsync._adapter_stock_request('tiktok', :'shop',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "A", "level": 1},
    {"listing_id": 2, "product_id": "43", "sku_id": "B", "level": 1}]', 1623812664);

--
-- 3. Stock update responses
--

-- the call's outcome, then each listing's
CREATE FUNCTION pg_temp.stock_response(p_channel text, p_listings jsonb, p_status integer,
                                       p_body text, p_retry_after text DEFAULT NULL)
RETURNS TABLE (who text, outcome text, retry_ms integer, request_id text,
               error_code text, error_message text)
LANGUAGE sql AS $$
  SELECT who, outcome, retry_ms, request_id, error_code, error_message
  FROM (
    SELECT 0::bigint AS n, 'call' AS who, j->>'outcome' AS outcome,
           (j->>'retry_after_ms')::integer AS retry_ms, j->>'request_id' AS request_id,
           j->>'error_code' AS error_code, j->>'error_message' AS error_message
    FROM invsync._adapter_stock_response(p_channel, p_listings, p_status, p_body, p_retry_after) AS j
    UNION ALL
    SELECT e.n, 'listing ' || (e.l->>'listing_id'), e.l->>'outcome', NULL, NULL,
           e.l->>'error_code', e.l->>'error_message'
    FROM invsync._adapter_stock_response(p_channel, p_listings, p_status, p_body, p_retry_after) AS j,
         jsonb_array_elements(j->'listings') WITH ORDINALITY AS e(l, n)
  ) AS s
  ORDER BY n
$$;

-- SKU 11 in two warehouses, SKU 12 in one, SKU 13 without a warehouse id
\set four '[{"listing_id": 1, "product_id": "42", "sku_id": "11", "warehouse_id": "W1", "level": 5}, {"listing_id": 2, "product_id": "42", "sku_id": "11", "warehouse_id": "W2", "level": 6}, {"listing_id": 3, "product_id": "42", "sku_id": "12", "warehouse_id": "W1", "level": 0}, {"listing_id": 4, "product_id": "42", "sku_id": "13", "level": 3}]'

-- success: code 0, data {} (or null)
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":0,"data":{},"message":"Success","request_id":"20240601093012A1"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":0,"data":null,"message":"Success","request_id":"20240601093012A2"}');

-- partial failure: only the SKUs in data.errors[] fail, on every
-- warehouse (TikTok applies a SKU whole or not at all); extra_errors
-- narrows the reason to the warehouse it names
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":0,"data":{"errors":[{"code":12052990,"message":"The check failed.","detail":{"sku_id":"11","extra_errors":[{"warehouse_id":"W2","code":12052097,"message":"The warehouse does not exist"}]}}]},"message":"Success","request_id":"20240601093012B1"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":0,"data":{"errors":[{"code":12052393,"message":"Product locked for Promotion and stock can''t be updated below current stock","detail":{"sku_id":"13","extra_errors":[]}},{"code":36009003,"message":"Internal error. Please try again.","detail":{"sku_id":"12"}}]},"message":"Success","request_id":"20240601093012B2"}');

-- a 0 refused (current doc: [1, 99999]): per SKU, or the whole call;
-- the listings at 0 and their sibling warehouses are dead letters saying
-- so, the others are retried
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":0,"data":{"errors":[{"code":12052055,"message":"quantity out of limits","detail":{"sku_id":"12"}}]},"message":"Success","request_id":"20240601093012C1"}');
SELECT * FROM pg_temp.stock_response('tiktok',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "11", "warehouse_id": "W1", "level": 0},
    {"listing_id": 2, "product_id": "42", "sku_id": "11", "warehouse_id": "W2", "level": 6},
    {"listing_id": 3, "product_id": "42", "sku_id": "12", "warehouse_id": "W1", "level": 4}]', 400,
  '{"code":12052055,"data":null,"message":"quantity out of limits","request_id":"20240601093012C2"}');

-- expired token: refresh and retry once; a token that is not the shop's
-- current one too
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 401,
  '{"code":105002,"data":null,"message":"Expired credentials. The access token has expired.","request_id":"20240601093012D1"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 401,
  '{"code":101000,"data":null,"message":"Invalid query or header. The x-tts-access-token header is invalid.","request_id":"20240601093012D2"}');

-- throttled: HTTP 429 with TikTok's code and Retry-After, or without a body
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 429,
  '{"code":36009002,"data":null,"message":"Too many requests. Please try again later.","request_id":"20240601093012E1"}', '2');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 429, '');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":36009002,"data":null,"message":"Too many requests.","request_id":"20240601093012E2"}');

-- a wrong sign is permanent
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 401,
  '{"code":106001,"data":null,"message":"Invalid credentials. The ''sign'' query parameter is invalid.","request_id":"20240601093012F1"}');

-- 36009004: a timestamp outside the window is clock skew, retried; an
-- unknown app key or shop cipher is permanent
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 401,
  '{"code":36009004,"data":null,"message":"Invalid timestamp. The timestamp is outside the allowed window.","request_id":"20240601093012G1"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 401,
  '{"code":36009004,"data":null,"message":"Invalid credentials. Invalid app_key.","request_id":"20240601093012G2"}');

-- transient: internal error and timeout inside a 200, 5xx, non-JSON
-- bodies, truncated JSON, an object without a code
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200,
  '{"code":36009003,"data":null,"message":"Internal error. Please try again.","request_id":"20240601093012H1"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 504,
  '{"code":36009007,"data":null,"message":"Timeout.","request_id":"20240601093012H2"}');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 502,
  '<html><body>502 Bad Gateway</body></html>');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200, '{"code":0,"data":{"err');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200, '');
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 200, '{"message":"Success"}');

-- business rules refusing the whole call are permanent
SELECT * FROM pg_temp.stock_response('tiktok', :'four', 400,
  '{"code":12052037,"data":null,"message":"Couldn''t update inventory. Missing warehouse IDs","request_id":"20240601093012I1"}');

--
-- 4. Reading levels (Inventory Search)
--

-- each SKU once, products mixed, signed like any call
SELECT method, log_url, headers, body,
       substring(url FROM '&sign=([0-9a-f]{64})') =
         invsync._hmac_sha256_hex('e59af819cc',
           'e59af819cc/product/202309/inventory/search' || 'app_key29a39d'
           || 'shop_cipherROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY' || 'timestamp1623812664'
           || body || 'e59af819cc') AS sign_matches
FROM invsync._adapter_read_request('tiktok', :'shop',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "11", "warehouse_id": "W1"},
    {"listing_id": 2, "product_id": "42", "sku_id": "11", "warehouse_id": "W2"},
    {"listing_id": 3, "product_id": "43", "sku_id": "21"}]', 1623812664);

-- a warehouse's available_quantity, or the SKU's total without a
-- warehouse; unknown SKUs and warehouses are not found
SELECT e->>'listing_id' AS listing, e->>'outcome' AS outcome, e->>'level' AS level,
       e->>'error_code' AS error_code
FROM jsonb_array_elements(invsync._adapter_read_response('tiktok', :'shop',
  '[{"listing_id": 1, "product_id": "42", "sku_id": "11", "warehouse_id": "W1"},
    {"listing_id": 2, "product_id": "42", "sku_id": "11", "warehouse_id": "W2"},
    {"listing_id": 3, "product_id": "43", "sku_id": "21"},
    {"listing_id": 4, "product_id": "43", "sku_id": "22"},
    {"listing_id": 5, "product_id": "42", "sku_id": "11", "warehouse_id": "W9"}]', 200,
  '{"code":0,"data":{"inventory":[{"product_id":"42","skus":[{"id":"11","seller_sku":"TS-M","total_available_quantity":13,"total_committed_quantity":0,"warehouse_inventory":[{"warehouse_id":"W1","available_quantity":5,"committed_quantity":0},{"warehouse_id":"W2","available_quantity":8,"committed_quantity":0}]}]},{"product_id":"43","skus":[{"id":"21","total_available_quantity":0,"warehouse_inventory":[{"warehouse_id":"W7","available_quantity":0}]}]}]},"message":"Success","request_id":"20240601093012J1"}')->'listings') AS e;

--
-- 5. Token refresh
--

-- not signed; app_secret and refresh_token in the query, redacted in the
-- log form; TikTok's auth host unless the app overrides it
SELECT method, log_url, headers, body,
       url = 'https://auth.tiktok-shops.com/api/v2/token/refresh?app_key=29a39d&app_secret=e59af819cc'
             || '&refresh_token=TTP_refresh_0123456789abcdef&grant_type=refresh_token' AS url_ok
FROM invsync._adapter_refresh_request('tiktok', :'shop', 1623812664);
SELECT log_url
FROM invsync._adapter_refresh_request('tiktok',
  :'shop'::jsonb || '{"auth_base_url": "https://127.0.0.1:9443/"}', 1623812664);

-- the expiries are absolute Unix times, kept as they come; the returned
-- refresh token is the one to keep
SELECT invsync._adapter_refresh_response('tiktok', 200,
  '{"code":0,"message":"success","data":{"access_token":"TTP_new_access","access_token_expire_in":1900000000,"refresh_token":"TTP_new_refresh","refresh_token_expire_in":1950000000,"open_id":"o1","seller_name":"s","seller_base_region":"ID","user_type":0},"request_id":"20240601093012K1"}');

-- refresh token refused or expired, app secret wrong: authorise again
SELECT invsync._adapter_refresh_response('tiktok', 401,
  '{"code":105001,"data":null,"message":"Invalid credentials. The refresh_token is invalid.","request_id":"20240601093012K2"}');
SELECT invsync._adapter_refresh_response('tiktok', 401,
  '{"code":36009004,"data":null,"message":"Invalid credentials. app_secret does not match.","request_id":"20240601093012K3"}');

-- try later
SELECT invsync._adapter_refresh_response('tiktok', 429, '');
SELECT invsync._adapter_refresh_response('tiktok', 503, '<html>Service Unavailable</html>');
SELECT invsync._adapter_refresh_response('tiktok', 200,
  '{"code":0,"message":"success","data":{"access_token_expire_in":1900000000},"request_id":"20240601093012K4"}');

--
-- 6. Tokopedia shops (the same API, section 4.1)
--

SELECT channel, attribute, mirrored_in, kind, required, batch, siblings,
       default_batch, max_batch
FROM invsync.channel_attributes()
WHERE channel IN ('tiktok', 'tokopedia')
ORDER BY channel, attribute_position;

-- the same bytes as for a TikTok shop, on TikTok's host for region ID
SELECT regexp_replace(t.url, '^[a-z]+://[^/]+', '') = regexp_replace(k.url, '^[a-z]+://[^/]+', '')
         AND t.body = k.body AND t.headers = k.headers AS same_request,
       k.log_url
FROM invsync._adapter_stock_request('tiktok', :'shop', :'comp', 1623812664) t,
     invsync._adapter_stock_request('tokopedia',
       (:'shop'::jsonb - 'base_url') || '{"region": "ID"}', :'comp', 1623812664) k
WHERE k.url LIKE 'https://open-api.tiktokglobalshop.com/%';
SELECT substring(url FROM '&sign=([0-9a-f]{64})') =
         '1bc4db98fb26d22f8f9174f863a9511bd5a1eba3fd91697a7684c1f6de9f8edf' AS comp_vector
FROM invsync._adapter_stock_request('tokopedia', :'shop', :'comp', 1623812664);

-- Tokopedia shops are Indonesian: no production host for another region
SELECT * FROM invsync._adapter_stock_request('tokopedia',
  (:'shop'::jsonb - 'base_url') || '{"region": "SG"}', :'comp', 1623812664);

-- errors carry detail.listing_platform: both platforms share one stock per
-- SKU and warehouse, so an error fails the listing whichever platform it
-- names, and the message says which
SELECT * FROM pg_temp.stock_response('tokopedia', :'four', 200,
  '{"code":0,"data":{"errors":[{"code":12052393,"message":"Product locked for Promotion","detail":{"sku_id":"11","listing_platform":"TIKTOK_SHOP","extra_errors":[{"warehouse_id":"W1","code":12052393,"message":"Product locked for Promotion"},{"warehouse_id":"W2","code":12052393,"message":"Product locked for Promotion"}]}},{"code":12052990,"message":"The check failed.","detail":{"sku_id":"13","listing_platform":"TOKOPEDIA","extra_errors":[]}}]},"message":"Success","request_id":"20240601093012L1"}');

-- a product not listed on Tokopedia (merge not confirmed) is permanent
SELECT * FROM pg_temp.stock_response('tokopedia', :'four', 400,
  '{"code":12052048,"data":null,"message":"You cannot edit the specified product(s) as it isn''t listed in your account or shop. (the product is not listed on TOKOPEDIA)","request_id":"20240601093012L2"}');
