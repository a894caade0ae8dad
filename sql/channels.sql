--
-- channels: what the adapters declare and invsync applies.  The channels
-- come from the registry, each app may set its auth host and batch size,
-- and a listing's marketplace ids are the channel's attributes, given in
-- external_ids or the generic columns, checked, made canonical and
-- mirrored.  Bad input is refused with a SQLSTATE and writes nothing.
-- Tenant 44; its shops are disabled, so the worker sends nothing.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 44;

-- an error's SQLSTATE and message, or ok
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

--
-- 1. The channel catalogue
--
SELECT * FROM invsync.channel_attributes() WHERE channel = 'shopee';

-- a channel outside the registry is refused by the CHECK
SELECT pg_temp.try($$INSERT INTO invsync.apps (channel, app_key, app_secret)
					 VALUES ('amazon', '1', 'secret-of-app-1')$$);

--
-- 2. Per-app settings
--
INSERT INTO invsync.apps (channel, app_key, app_secret, auth_base_url, batch_size)
VALUES ('shopee', '10', 'secret-of-app-10', 'https://auth.example.test/prefix', 20);
SELECT app_key, base_url, auth_base_url, batch_size
  FROM invsync.apps WHERE tenant_id = 44;
-- the auth host obeys the base URL rules (IV023 / IV024)
SELECT pg_temp.try($$INSERT INTO invsync.apps (channel, app_key, app_secret, auth_base_url)
					 VALUES ('shopee', '11', 'secret-of-app-11', 'http://127.0.0.1:80')$$);
SELECT pg_temp.try($$INSERT INTO invsync.apps (channel, app_key, app_secret, auth_base_url)
					 VALUES ('shopee', '11', 'secret-of-app-11', 'https://u:p@auth.example.test')$$);
-- a batch size the marketplace does not take: IV029 (Shopee: 50 models a call)
SELECT pg_temp.try($$UPDATE invsync.apps SET batch_size = 51 WHERE app_key = '10'$$);
SELECT pg_temp.try($$UPDATE invsync.apps SET batch_size = 0 WHERE app_key = '10'$$);
SELECT batch_size FROM invsync.apps WHERE app_key = '10' AND tenant_id = 44;

--
-- 3. Listing ids
--
INSERT INTO invsync.shops (app_id, external_shop_id, enabled)
SELECT app_id, '7001', false FROM invsync.apps WHERE app_key = '10' AND tenant_id = 44;
SELECT shop_id AS shop FROM invsync.shops WHERE tenant_id = 44 \gset
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['A', 'B', 'C', 'D', 'E']) s;

-- in external_ids by attribute name, numbers or strings; in the generic
-- columns; or both when they agree.  Integers lose their leading zeros,
-- an absent model is 0, and the other side is filled in.
INSERT INTO invsync.listings (shop_id, sku, external_ids)
VALUES (:shop, 'A', '{"item_id": 800123, "model_id": "0011", "location_id": "IDZ"}');
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
VALUES (:shop, 'B', '800124', NULL);
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_ids)
VALUES (:shop, 'C', '800125', '{"item_id": "800125", "model_id": 3}');
SELECT sku, external_ids, external_item_id, external_model_id, external_location_id,
	   batch_key, sibling_key
  FROM invsync.listings WHERE tenant_id = 44 ORDER BY sku;

-- an update of one side changes the other
UPDATE invsync.listings SET external_ids = '{"item_id": "900", "model_id": "5"}' WHERE sku = 'A';
UPDATE invsync.listings SET external_model_id = '6' WHERE sku = 'B';
SELECT sku, external_ids, external_item_id, external_model_id, external_location_id, batch_key
  FROM invsync.listings WHERE tenant_id = 44 AND sku IN ('A', 'B') ORDER BY sku;

-- refused, IV028, nothing written: an attribute the channel does not
-- have, disagreeing sides, a missing item, an id that is neither a string
-- nor an integer, a control character, an id over 128 bytes, ids that are
-- not an object
SELECT left(v.ids, 40) AS ids, pg_temp.try(format(
		'INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_ids) VALUES (%s, %L, %L, %L)',
		:shop, 'D', v.item, v.ids)) AS outcome
  FROM (VALUES (NULL, '{"item_id": "1", "sku_id": "2"}'),
			   ('2', '{"item_id": "1"}'),
			   (NULL, '{"model_id": "1"}'),
			   (NULL, '{"item_id": 1.5}'),
			   (NULL, '{"item_id": true}'),
			   (NULL, '{"item_id": "1", "location_id": "a\tb"}'),
			   (NULL, '{"item_id": "' || repeat('9', 129) || '"}'),
			   (NULL, '["1"]')) AS v (item, ids);
SELECT count(*) AS listings FROM invsync.listings WHERE tenant_id = 44;

-- an id the marketplace will refuse is still stored: the worker settles
-- it as a dead letter naming the attribute when it is sent
INSERT INTO invsync.listings (shop_id, sku, external_item_id)
VALUES (:shop, 'E', 'item-E');
SELECT sku, external_ids, batch_key FROM invsync.listings WHERE sku = 'E' AND tenant_id = 44;

-- the ids are what listing_levels shows
SELECT sku, external_item_id, external_model_id, external_ids
  FROM invsync.listing_levels ORDER BY sku;

-- a channel that claims listings together (siblings) batches them by
-- attributes of the sibling key only: a sibling group never spans batch
-- keys (the claim relies on it)
SELECT channel FROM invsync.channel_attributes()
 GROUP BY channel
HAVING bool_or(siblings) AND bool_or(batch AND NOT siblings);
SELECT channel, string_agg(attribute, ',' ORDER BY attribute_position) FILTER (WHERE batch) AS batch_by,
	   string_agg(attribute, ',' ORDER BY attribute_position) FILTER (WHERE siblings) AS siblings_by
  FROM invsync.channel_attributes() GROUP BY channel ORDER BY channel;
