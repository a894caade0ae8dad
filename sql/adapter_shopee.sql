--
-- Shopee adapter: request signing, the exact bytes of the requests built,
-- and the classification of Shopee's answers.  No network: everything goes
-- through the invsync._hmac_sha256_hex and invsync._adapter_* hooks.
--

-- the partner key of Shopee's PHP demo (marketplace-apis.md section 1.2)
\set partner_key '57615053704d6470644f554a78656d50484143644964436a5568777544524579'
\set token '59777174636562737266615546704c6d'

--
-- 1. HMAC-SHA256 vectors
--

-- RFC 4231 test case 2, in lower and upper case
SELECT invsync._hmac_sha256_hex('Jefe', 'what do ya want for nothing?') AS rfc4231_lower,
       invsync._hmac_sha256_hex('Jefe', 'what do ya want for nothing?', true) AS rfc4231_upper;

-- keys in turn, each signature right whatever key came before it (the
-- worker keeps the last key's hashed state): RFC 4231 case 2, a key
-- longer than a SHA-256 block, one longer than the key kept (256 bytes),
-- and the empty key (expected values from Python's hmac module)
SELECT v.n, invsync._hmac_sha256_hex(v.key, v.msg) = v.expected AS matches
  FROM (VALUES
	(1, 'Jefe', 'what do ya want for nothing?',
	 '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
	(2, 'Jefe', 'what do ya want for nothing?',
	 '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
	(3, repeat('k', 131), 'Test Using Larger Than Block-Size Key - Hash Key First',
	 '70e4b005732fa7ff79392aa24fb240159b925dbc9f1398420c0f45e6763dcf14'),
	(4, 'Jefe', 'what do ya want for nothing?',
	 '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
	(5, repeat('x', 300), 'm',
	 'd2f319795eafc4164d0877331a2b4efe78c8510beffdbc742873f9a8bbc4252e'),
	(6, repeat('x', 300), 'm',
	 'd2f319795eafc4164d0877331a2b4efe78c8510beffdbc742873f9a8bbc4252e'),
	(7, '', 'm',
	 'a64092104c76d9ef65599c33c177609ecd49857456eb28133c4daea25bea960a'),
	(8, '', 'm',
	 'a64092104c76d9ef65599c33c177609ecd49857456eb28133c4daea25bea960a'),
	(9, repeat('k', 131), 'Test Using Larger Than Block-Size Key - Hash Key First',
	 '70e4b005732fa7ff79392aa24fb240159b925dbc9f1398420c0f45e6763dcf14'),
	(10, 'Jefe', 'what do ya want for nothing?',
	 '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'))
	AS v (n, key, msg, expected)
 ORDER BY v.n;

-- the [COMP] vectors: Public and Shop signing (1.2), get_order_detail (7.1)
SELECT v.name,
       invsync._hmac_sha256_hex(:'partner_key', v.base) AS sign,
       invsync._hmac_sha256_hex(:'partner_key', v.base) = v.expected AS matches
FROM (VALUES
  ('public auth_partner',
   '847892/api/v2/shop/auth_partner1655714431',
   'ec7539db4814c81ea28c8ef7824149f4e80c229ffd47e629bd3ebcafbd8f8f03'),
  ('shop update_stock',
   '847892/api/v2/product/update_stock1655714431' || :'token' || '14701711',
   '15fb9b380608ff5bdb5ea6fc73f577130deb901a64afe57c6caf47bf1fd9032c'),
  ('shop get_order_detail',
   '847892/api/v2/order/get_order_detail1655714431' || :'token' || '14701711',
   '088d875991a3958a3c2ddd9779c4695c9ec5afd379bb24260d0fc0e4079eb31b')
) AS v(name, base, expected);

--
-- 2. Stock update requests
--

\set shop '{"external_shop_id": "14701711", "app_key": "847892", "app_secret": "57615053704d6470644f554a78656d50484143644964436a5568777544524579", "access_token": "59777174636562737266615546704c6d", "refresh_token": "4e6f77596f7552656672657368546f6b", "base_url": "https://partner.test-stable.invalid", "uses_locations": false}'

-- two models of one item; location ids ignored for a shop without
-- warehouses; a negative level goes out as 0
SELECT method, url, body
FROM invsync._adapter_stock_request('shopee', :'shop',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "location_id": "SGZ", "level": 5},
    {"listing_id": 2, "item_id": 800123, "model_id": 12, "level": -3}]', 1655714431);

-- the sign in the URL is the [COMP] vector, recomputed in SQL over the
-- documented base string; log_url has neither the token nor the sign
SELECT substring(url FROM '&sign=([0-9a-f]{64})$') AS sign,
       substring(url FROM '&sign=([0-9a-f]{64})$') =
         invsync._hmac_sha256_hex(:'partner_key',
           '847892' || '/api/v2/product/update_stock' || '1655714431' || :'token' || '14701711')
         AS sign_matches,
       log_url,
       strpos(log_url, :'token') = 0 AND strpos(log_url, substring(url FROM '&sign=([0-9a-f]{64})$')) = 0
         AS log_url_clean
FROM invsync._adapter_stock_request('shopee', :'shop',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5}]', 1655714431);

-- an item without variants: model_id absent, null or "" is 0
SELECT body
FROM invsync._adapter_stock_request('shopee', :'shop',
  '[{"listing_id": 1, "item_id": "900001", "model_id": null, "level": 7}]', 1655714431);

-- a shop with warehouses: one stock_list entry per model, one seller_stock
-- entry per location; a listing without a location id is sent without one
SELECT body
FROM invsync._adapter_stock_request('shopee', :'shop'::jsonb || '{"uses_locations": true}',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "location_id": "SGZ", "level": 5},
    {"listing_id": 2, "item_id": "800123", "model_id": "12", "location_id": "SGZ", "level": 9},
    {"listing_id": 3, "item_id": "800123", "model_id": "11", "location_id": "SG\"B", "level": 6},
    {"listing_id": 4, "item_id": "800123", "model_id": "13", "level": 1}]', 1655714431);

-- a listing whose id is not an integer never goes on the wire
SELECT body
FROM invsync._adapter_stock_request('shopee', :'shop',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5},
    {"listing_id": 2, "item_id": "800123", "model_id": "12a", "level": 5},
    {"listing_id": 3, "item_id": "800123", "model_id": "-12", "level": 5}]', 1655714431);

-- a base_url path prefix (a test double, a proxy) and a trailing slash:
-- the prefix is in the URL, not in the signed path; query values are
-- escaped in the URL but signed raw
SELECT url,
       substring(url FROM '&sign=([0-9a-f]{64})$') =
         invsync._hmac_sha256_hex(:'partner_key',
           '847892/api/v2/product/update_stock1655714431' || 'a/b+c=d e~' || '14701711')
         AS sign_matches,
       log_url
FROM invsync._adapter_stock_request('shopee',
  :'shop'::jsonb || '{"base_url": "http://127.0.0.1:8080/mock/shopee/", "access_token": "a/b+c=d e~"}',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5}]', 1655714431);

-- no base_url: Shopee's production host for the shop's region
-- (marketplace-apis.md 1.1): partner.shopeemobile.com, but
-- openplatform.shopee.com.br for Brazil; the token and the sign are
-- redacted from log_url as for any other host
SELECT r.region, x.kind, x.log_url,
       strpos(x.log_url, :'token') = 0 AND strpos(x.log_url, :'partner_key') = 0
         AND strpos(x.log_url, '4e6f77596f7552656672657368546f6b') = 0 AS log_url_clean,
       substring(x.url FROM '^[a-z]+://[^/]+') = substring(x.log_url FROM '^[a-z]+://[^/]+')
         AS same_host
FROM (VALUES (NULL), ('ID'), ('sg'), ('BR'), ('br')) AS r (region),
     LATERAL (SELECT (:'shop'::jsonb - 'base_url') || jsonb_build_object('region', r.region) AS shop) s,
     LATERAL (SELECT 'stock' AS kind, q.url, q.log_url
                FROM invsync._adapter_stock_request('shopee', s.shop,
                       '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5}]', 1655714431) q
              UNION ALL
              SELECT 'refresh', q.url, q.log_url
                FROM invsync._adapter_refresh_request('shopee', s.shop, 1655714431) q) x;
-- a JSON null base_url is the same as none
SELECT log_url
FROM invsync._adapter_stock_request('shopee', :'shop'::jsonb || '{"base_url": null}',
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5}]', 1655714431);

--
-- 3. Stock update responses
--

-- the call's outcome, then each listing's
CREATE FUNCTION pg_temp.stock_response(p_listings jsonb, p_status integer,
                                       p_body text, p_retry_after text DEFAULT NULL)
RETURNS TABLE (who text, outcome text, retry_ms integer, request_id text,
               error_code text, error_message text)
LANGUAGE sql AS $$
  SELECT who, outcome, retry_ms, request_id, error_code, error_message
  FROM (
    SELECT 0::bigint AS n, 'call' AS who, j->>'outcome' AS outcome,
           (j->>'retry_after_ms')::integer AS retry_ms, j->>'request_id' AS request_id,
           j->>'error_code' AS error_code, j->>'error_message' AS error_message
    FROM invsync._adapter_stock_response('shopee', p_listings, p_status, p_body, p_retry_after) AS j
    UNION ALL
    SELECT e.n, 'listing ' || (e.l->>'listing_id'), e.l->>'outcome', NULL, NULL,
           e.l->>'error_code', e.l->>'error_message'
    FROM invsync._adapter_stock_response('shopee', p_listings, p_status, p_body, p_retry_after) AS j,
         jsonb_array_elements(j->'listings') WITH ORDINALITY AS e(l, n)
  ) AS s
  ORDER BY n
$$;

\set two '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5}, {"listing_id": 2, "item_id": "800123", "model_id": "12", "level": 0}]'

-- the whole jsonb, once
SELECT invsync._adapter_stock_response('shopee', :'two', 200,
  '{"request_id":"r-ok","error":"","message":"","warning":"","response":{"failure_list":[],"success_list":[{"model_id":11,"location_id":"SGZ","stock":5},{"model_id":12,"location_id":"SGZ","stock":0}]}}');

-- success
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"request_id":"r-ok","error":"","message":"","warning":"","response":{"failure_list":[],"success_list":[{"model_id":11,"location_id":"SGZ","stock":5},{"model_id":12,"location_id":"SGZ","stock":0}]}}');

-- partial failure: per model
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"request_id":"r-part","error":"","message":"","response":{"failure_list":[{"model_id":12,"failed_reason":"Stock should be greater than reserved stock"}],"success_list":[{"model_id":11,"location_id":"SGZ","stock":5}]}}');

-- all failed: error_busi_update_stock_failed, still read per model
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"request_id":"r-all","error":"error_busi_update_stock_failed","message":"Update stock failed, please check failure_list","response":{"failure_list":[{"model_id":11,"failed_reason":"item is in promotion"},{"model_id":12,"failed_reason":"model not found"}],"success_list":[]}}');

-- a listing in neither list of an otherwise successful answer is retried
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"request_id":"r-miss","error":"","message":"","response":{"failure_list":[],"success_list":[{"model_id":11,"stock":5}]}}');

-- expired token: refresh and retry
SELECT * FROM pg_temp.stock_response(:'two', 403,
  '{"error":"error_auth","message":"Invalid access_token.","request_id":"r-auth"}');
SELECT * FROM pg_temp.stock_response(:'two', 400,
  '{"error":"invalid_access_token","message":"Invalid access token","request_id":"r-auth2"}');

-- wrong key: permanent
SELECT * FROM pg_temp.stock_response(:'two', 403,
  '{"error":"error_sign","message":"Wrong sign.","request_id":"r-sign"}');

-- a stale timestamp is error_param but transient
SELECT * FROM pg_temp.stock_response(:'two', 403,
  '{"error":"error_param","message":"Invalid timestamp","request_id":"r-ts"}');

-- other parameter and business errors: permanent for every listing
SELECT * FROM pg_temp.stock_response(:'two', 400,
  '{"error":"product.error_param","message":"invalid field ItemId: value must Not Null","request_id":"r-param"}');
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"error":"product.error_item_not_found","message":"Item not found","request_id":"r-nf"}');
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"error":"invalid_partner_id","message":"Invalid partner_id","request_id":"r-pid"}');

-- throttling: HTTP 429 with Retry-After, and Shopee's "Too many requests"
SELECT * FROM pg_temp.stock_response(:'two', 429, '', '7');
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"error":"error_server","message":"Too many requests at the moment, please try again later.","request_id":"r-tmr"}',
  '120');

-- transient errors
SELECT * FROM pg_temp.stock_response(:'two', 200,
  '{"error":"error_system_busy","message":"System busy","request_id":"r-busy"}');
SELECT * FROM pg_temp.stock_response(:'two', 503,
  '<html><body>503 Service Temporarily Unavailable</body></html>',
  'Wed, 21 Oct 2015 07:28:00 GMT');

-- an unknown error is permanent unless the status is 5xx
SELECT * FROM pg_temp.stock_response(:'two', 400,
  '{"error":"error_something_new","message":"new rule","request_id":"r-new"}');
SELECT * FROM pg_temp.stock_response(:'two', 500,
  '{"error":"error_something_new","message":"new rule","request_id":"r-new5"}');

-- malformed, empty, non-object and absurdly nested bodies are retried,
-- never an ERROR
SELECT * FROM pg_temp.stock_response(:'two', 200, '{"error":"","response":');
SELECT * FROM pg_temp.stock_response(:'two', 200, '');
SELECT * FROM pg_temp.stock_response(:'two', 200, NULL);
SELECT * FROM pg_temp.stock_response(:'two', 200, '[1,2]');
SELECT (invsync._adapter_stock_response('shopee', :'two', 200,
          repeat('[', 100000) || repeat(']', 100000)))->>'error_code' AS deep;

-- listings with ids that are not integers were never sent: permanent,
-- whatever the answer
SELECT * FROM pg_temp.stock_response(
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "level": 5},
    {"listing_id": 2, "item_id": "800123", "model_id": "x12", "level": 5},
    {"listing_id": 3, "item_id": "80O123", "model_id": "13", "level": 5}]', 200,
  '{"request_id":"r-inv","error":"","message":"","response":{"failure_list":[],"success_list":[{"model_id":11,"stock":5}]}}');

-- warehouses: matched by model_id and location_id
SELECT * FROM pg_temp.stock_response(
  '[{"listing_id": 1, "item_id": "800123", "model_id": "11", "location_id": "SGZ", "level": 5},
    {"listing_id": 2, "item_id": "800123", "model_id": "11", "location_id": "SGB", "level": 6},
    {"listing_id": 3, "item_id": "800123", "model_id": "12", "location_id": "SGB", "level": 7}]', 200,
  '{"request_id":"r-loc","error":"","message":"","response":{"failure_list":[{"model_id":11,"location_id":"SGB","failed_reason":"location not found"}],"success_list":[{"model_id":11,"location_id":"SGZ","stock":5},{"model_id":12,"location_id":"SGZ","stock":7}]}}');

-- server messages: escapes decoded, control characters blanked, long
-- ones cut at a character boundary within 255 bytes
SELECT error_message FROM pg_temp.stock_response(:'two', 400,
  '{"error":"error_param","message":"caf\u00e9 \ud83d\ude00\ttab","request_id":"r-u"}')
WHERE who = 'call';
SELECT octet_length(error_message) AS bytes, length(error_message) AS chars,
       right(error_message, 3) AS tail
FROM pg_temp.stock_response(:'two', 400,
  '{"error":"error_param","message":"' || repeat('é', 300) || '","request_id":"r-long"}')
WHERE who = 'call';

--
-- 4. Token refresh
--

SELECT method, url, body, log_url,
       substring(url FROM '&sign=([0-9a-f]{64})$') =
         invsync._hmac_sha256_hex(:'partner_key',
           '847892' || '/api/v2/auth/access_token/get' || '1655714431')
         AS sign_matches,
       strpos(log_url, substring(url FROM '&sign=([0-9a-f]{64})$')) = 0 AS log_url_clean
FROM invsync._adapter_refresh_request('shopee', :'shop', 1655714431);

-- rotation: the new refresh token comes back; the access token expires
-- expire_in seconds from now
SELECT r->>'outcome' AS outcome, r->>'access_token' AS access_token,
       r->>'refresh_token' AS refresh_token,
       abs((r->>'access_expires_at')::bigint
           - (extract(epoch FROM clock_timestamp())::bigint + 14400)) <= 5 AS expiry_ok,
       r->>'refresh_expires_at' AS refresh_expires_at, r->>'request_id' AS request_id
FROM invsync._adapter_refresh_response('shopee', 200,
  '{"refresh_token":"726f74617465642d726566726573682d32","access_token":"6e65772d6163636573732d746f6b656e32","expire_in":14400,"request_id":"r-ref","error":"","message":"","partner_id":847892,"shop_id":14701711}') AS r;

-- refresh token spent or revoked: re-authorisation needed
SELECT invsync._adapter_refresh_response('shopee', 403,
  '{"error":"error_auth","message":"Invalid refresh_token.","request_id":"r-ref-auth"}');
SELECT invsync._adapter_refresh_response('shopee', 400,
  '{"error":"error_param","message":"Invalid refresh_token","request_id":"r-ref-param"}');

-- try later
SELECT invsync._adapter_refresh_response('shopee', 429, '');
SELECT invsync._adapter_refresh_response('shopee', 502, 'Bad Gateway');
SELECT invsync._adapter_refresh_response('shopee', 200, '{"error":"error_inner","message":"inner error","request_id":"r-in"}');
SELECT invsync._adapter_refresh_response('shopee', 200, '{"access_token":"x","expire_in":14400');
SELECT invsync._adapter_refresh_response('shopee', 200,
  '{"access_token":"6e65772d6163636573732d746f6b656e32","expire_in":14400,"request_id":"r-half","error":"","message":""}');

--
-- 5. Bad arguments
--

SELECT * FROM invsync._adapter_stock_request('nosuch', :'shop', '[]', 0);
SELECT * FROM invsync._adapter_stock_request('shopee', :'shop'::jsonb - 'app_secret',
  '[{"listing_id": 1, "item_id": "1", "level": 1}]', 0);
SELECT * FROM invsync._adapter_stock_request('shopee', :'shop'::jsonb || '{"uses_locations": "yes"}',
  '[{"listing_id": 1, "item_id": "1", "level": 1}]', 0);
SELECT * FROM invsync._adapter_stock_request('shopee', :'shop', '{"listing_id": 1}', 0);
SELECT * FROM invsync._adapter_stock_request('shopee', :'shop', '[{"listing_id": 1, "item_id": "1"}]', 0);
SELECT * FROM invsync._adapter_refresh_request('shopee', '[]', 0);
SELECT invsync._adapter_stock_response('shopee', :'two', 0, '{}');
SELECT invsync._adapter_refresh_response('nosuch', 200, '{}');
