--
-- channel_setup: what an app's base URL may be (https only while
-- invsync.allow_insecure_http is off, no credentials, nothing a request URL
-- built on it could be confused by) and what set_shop_tokens() accepts.
-- Errors write nothing and never quote a URL or a token.  Tenant 41; its
-- shops have no listings, so the worker of this test server sends nothing.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 41;

-- the setting is off by default, and only postgresql.conf can turn it on
SHOW invsync.allow_insecure_http;
SET invsync.allow_insecure_http = on;

--
-- 1. Base URLs when stored
--
-- NULL (the marketplace's production host) and well-formed https URLs
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'secret-of-app-1', NULL),
	   ('shopee', '2', 'secret-of-app-2', 'https://partner.shopeemobile.com'),
	   ('shopee', '3', 'secret-of-app-3', 'https://127.0.0.1:8443/mock/shopee/'),
	   ('shopee', '4', 'secret-of-app-4', 'https://[::1]:443'),
	   ('shopee', '5', 'secret-of-app-5', 'https://openplatform.sandbox.test-stable.shopee.sg/');
SELECT app_key, base_url FROM invsync.apps WHERE tenant_id = 41 ORDER BY app_key;

-- an error's SQLSTATE, message and detail, or ok
CREATE FUNCTION pg_temp.try(p_sql text) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	v_state		text;
	v_message	text;
	v_detail	text;
BEGIN
	EXECUTE p_sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		v_detail = PG_EXCEPTION_DETAIL;
	RETURN v_state || ' ' || v_message || coalesce(': ' || nullif(v_detail, ''), '');
END
$$;

-- plain http: IV024, with a hint
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '6', 'secret-of-app-6', 'http://127.0.0.1:8080');
-- malformed: IV023; the reason never quotes the URL (it may hold a password)
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '6', 'secret-of-app-6', 'https://user:hunter2-password@partner.shopeemobile.com');
SELECT replace(left(u.url, 45), E'\t', '<tab>') AS url, pg_temp.try(format(
		'INSERT INTO invsync.apps (channel, app_key, app_secret, base_url) VALUES (%L, %L, %L, %L)',
		'shopee', '6', 'secret-of-app-6', u.url)) AS outcome
  FROM (VALUES ('http://127.0.0.1:8080'),
			   ('http://u:p@127.0.0.1'),
			   ('https://@partner.shopeemobile.com'),
			   ('partner.shopeemobile.com'),
			   ('ftp://partner.shopeemobile.com'),
			   ('HTTPS://partner.shopeemobile.com'),
			   ('https://partner.shopeemobile.com/a b'),
			   (E'https://partner.shopeemobile.com/\tx'),
			   ('https://partner.shopeemobile.com/"x"'),
			   ('https://partner.shopeemobile.com/?x=1'),
			   ('https://partner.shopeemobile.com#x'),
			   ('https://partnér.shopeemobile.com'),
			   ('https://'),
			   ('https://:443'),
			   ('https://-x.example.com'),
			   ('https://partner.shopeemobile.com:0'),
			   ('https://partner.shopeemobile.com:65536'),
			   ('https://partner.shopeemobile.com:44x'),
			   ('https://[::1'),
			   ('https://[]'),
			   ('https://partner.shopeemobile.com/' || repeat('a', 480))) AS u (url);
-- at the limit, 512 bytes, a base URL is accepted
SELECT pg_temp.try(format(
		'INSERT INTO invsync.apps (channel, app_key, app_secret, base_url) VALUES (%L, %L, %L, %L)',
		'shopee', '6', 'secret-of-app-6',
		'https://partner.shopeemobile.com/' || repeat('a', 479))) AS outcome;
-- nothing was written but apps 1 to 6
SELECT count(*) AS apps FROM invsync.apps WHERE tenant_id = 41;

-- the same on UPDATE, which changes nothing
UPDATE invsync.apps SET base_url = 'http://127.0.0.1:8080' WHERE tenant_id = 41 AND app_key = '2';
UPDATE invsync.apps SET base_url = 'https://x@127.0.0.1' WHERE tenant_id = 41 AND app_key = '2';
SELECT app_key, base_url FROM invsync.apps WHERE tenant_id = 41 AND app_key = '2';
-- back to the production host, and an update of another column passes
UPDATE invsync.apps SET base_url = NULL WHERE tenant_id = 41 AND app_key = '2';
UPDATE invsync.apps SET name = 'renamed' WHERE tenant_id = 41 AND app_key = '3';

-- an app loaded from a dump (created before this transaction) keeps the
-- base URL it was stored with; the worker checks it before sending
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url, created_at)
VALUES ('shopee', '7', 'secret-of-app-7', 'http://127.0.0.1:8080', now() - interval '1 day');
SELECT app_key, base_url, invsync._base_url_refusal(base_url) IS NOT NULL AS refused_at_send
  FROM invsync.apps WHERE tenant_id = 41 AND app_key = '7';
-- created now, the same URL is refused
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url, created_at)
VALUES ('shopee', '8', 'secret-of-app-8', 'http://127.0.0.1:8080', now());

-- what the worker is told at send time (NULL: it may send)
SELECT u.url IS NULL AS is_null, invsync._base_url_refusal(u.url) AS refusal
FROM (VALUES (NULL), ('https://partner.shopeemobile.com'),
			 ('http://127.0.0.1:8080'), ('https://u:p@h')) AS u (url);

-- invsync.test_connect_to, for tests only, leads only to loopback
ALTER SYSTEM SET invsync.test_connect_to = 'partner.shopeemobile.com:443:10.1.2.3:8443';
ALTER SYSTEM SET invsync.test_connect_to = 'partner.shopeemobile.com:443:127.0.0.1.example.com:8443';
ALTER SYSTEM SET invsync.test_connect_to = 'partner.shopeemobile.com:443:127.0.0.1';
ALTER SYSTEM SET invsync.test_connect_to = 'partner.shopeemobile.com:443:127.0.0.1:8443,openplatform.shopee.com.br:443:localhost:8443';
ALTER SYSTEM RESET invsync.test_connect_to;

--
-- 2. set_shop_tokens(): both tokens required, bounded, printable; IV025,
-- and nothing written on error
--
INSERT INTO invsync.shops (app_id, external_shop_id, token_state, token_error)
SELECT app_id, '4101', 'reauthorize', 'refresh_token spent'
  FROM invsync.apps WHERE tenant_id = 41 AND app_key = '1'
RETURNING shop_id AS shop \gset

SELECT invsync.set_shop_tokens(:shop, NULL, NULL, NULL);
SELECT invsync.set_shop_tokens(:shop, 'access-token-41', repeat('r', 2049), now() + interval '4 hours');
SELECT left(t.access, 20) AS access, left(t.refresh, 20) AS refresh, pg_temp.try(format(
		'SELECT invsync.set_shop_tokens(%s, %L, %L, now() + interval ''4 hours'')',
		:shop, t.access, t.refresh)) AS outcome
  FROM (VALUES (NULL, 'refresh-token-41'),
			   ('', 'refresh-token-41'),
			   ('access-token-41', NULL),
			   ('access-token-41', ''),
			   (repeat('a', 2049), 'refresh-token-41'),
			   ('access token 41', 'refresh-token-41'),
			   (E'access-token-41\n', 'refresh-token-41'),
			   ('access-token-41', 'refresh-tökén-41')) AS t (access, refresh);
-- the shop is as it was: no tokens, still awaiting authorisation
SELECT access_token IS NULL AS no_access, refresh_token IS NULL AS no_refresh,
	   token_state, token_error
  FROM invsync.shops WHERE tenant_id = 41 AND shop_id = :shop;
-- an unknown shop, with good tokens
SELECT pg_temp.try('SELECT invsync.set_shop_tokens(-1, ''access-token-41'', ''refresh-token-41'', now())') AS outcome;

-- good tokens, the longest allowed included, are stored and clear the state
SELECT invsync.set_shop_tokens(:shop, 'access-token-41', repeat('r', 2048), now() + interval '4 hours');
SELECT access_token, length(refresh_token) AS refresh_length, token_state, token_error
  FROM invsync.shops WHERE tenant_id = 41 AND shop_id = :shop;

DELETE FROM invsync.shops WHERE tenant_id = 41;
DELETE FROM invsync.apps WHERE tenant_id = 41;
