--
-- claim_levels: the levels a claim computes for the rows it locked
-- (invsync._claim_levels).  With invsync.direct_path on they come from
-- index probes in C, with it off from one statement through
-- _listings_available: the same arrays, row for row, for bundles (nested),
-- source locations (none, some, empty, with a NULL), reservations,
-- buffers, allocations below 100 %, bounds, batch keys and sibling groups,
-- settle flags in three-valued logic (a forced push, a NULL flag, arrays
-- shorter than the ids), and ids that join no listing.  Each case is
-- printed, then compared with the other path in the same session, then
-- 300 random listings are compared, and every level with listing_levels.
-- Tenant 50, in a transaction rolled back.
--
\set VERBOSITY terse
SET invsync.tenant = 50;
BEGIN;
SELECT count(invsync.upsert_location(w)) FROM unnest(ARRAY['W1', 'W2', 'W3']) w;
SELECT count(invsync.upsert_item(s))
  FROM unnest(ARRAY['P1', 'P2', 'P3', 'P4', 'P5', 'K1', 'G1', 'T1', 'T2']) s;
SELECT count(*) FROM invsync.set_bundle('K1', '[{"sku": "P1", "qty": 2}, {"sku": "P2", "qty": 3}]');
SELECT count(*) FROM invsync.set_bundle('G1', '[{"sku": "K1", "qty": 2}, {"sku": "P3", "qty": 1}]');
SELECT count(*)
  FROM (VALUES ('P1', 'W1', 10), ('P1', 'W2', 7), ('P2', 'W1', 5), ('P2', 'W3', 9),
			   ('P3', 'W2', 4), ('P5', 'W1', 100), ('T1', 'W1', 8), ('T2', 'W2', 3)) v (sku, loc, n),
	   LATERAL invsync.adjust(v.sku, v.loc, v.n, 'count', 'cl-' || v.sku || v.loc);
SELECT count(*) FROM invsync.reserve('CL-ORDER', '[{"sku": "P5", "qty": 30, "location": "W1"}]', 'cl-r');

INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '50', 'k', 'https://127.0.0.1:9') RETURNING app_id AS shopee_app \gset
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('tiktok', '50', 'k', 'https://127.0.0.1:9') RETURNING app_id AS tiktok_app \gset
INSERT INTO invsync.shops (app_id, external_shop_id, enabled)
VALUES (:shopee_app, '50', false) RETURNING shop_id AS shopee \gset
INSERT INTO invsync.shops (app_id, external_shop_id, enabled)
VALUES (:tiktok_app, 'cipher-50', false) RETURNING shop_id AS tiktok \gset

-- Shopee listings: an item's models share a batch key
INSERT INTO invsync.listings (listing_id, shop_id, sku, external_item_id, external_model_id,
							  source_locations, buffer, allocation_percent, min_level, max_level)
VALUES (5001, :shopee, 'P1', '1', '1', NULL, 0, 100, NULL, NULL),
	   (5002, :shopee, 'P1', '1', '2', '{W1}', 3, 100, 5, NULL),
	   (5003, :shopee, 'P2', '2', '1', '{W2,W3}', 0, 70, NULL, 4),
	   (5004, :shopee, 'K1', '3', '1', NULL, 0, 33.33, NULL, NULL),
	   (5005, :shopee, 'G1', '1', '3', '{W1,W2}', 0, 100, NULL, NULL),
	   (5006, :shopee, 'P4', '4', '1', NULL, 0, 100, 1, NULL),
	   (5007, :shopee, 'P1', '2', '2', '{}', 0, 100, NULL, NULL),
	   (5008, :shopee, 'P2', '2', '3', '{NULL,W3}', 0, 100, NULL, NULL),
	   (5009, :shopee, 'P3', '5', '1', NULL, 0, 0, NULL, NULL),
	   (5010, :shopee, 'P1', '5', '2', NULL, 100, 100, NULL, NULL),
	   (5011, :shopee, 'P1', '5', '3', NULL, 0, 100, 17, 20),
	   (5012, :shopee, 'P5', '6', '1', NULL, 1, 99.5, NULL, 1000);
-- TikTok: a SKU in three warehouses is a sibling group
INSERT INTO invsync.listings (listing_id, shop_id, sku, external_ids)
VALUES (5021, :tiktok, 'T1', '{"product_id": "7", "sku_id": "71", "warehouse_id": "A"}'),
	   (5022, :tiktok, 'T1', '{"product_id": "7", "sku_id": "71", "warehouse_id": "B"}'),
	   (5023, :tiktok, 'T1', '{"product_id": "7", "sku_id": "71", "warehouse_id": "C"}'),
	   (5024, :tiktok, 'T2', '{"product_id": "7", "sku_id": "72", "warehouse_id": "A"}'),
	   (5025, :tiktok, 'T2', '{"product_id": "8", "sku_id": "81", "warehouse_id": "A"}');

-- the arrays of one call, a row per element; each row's address is (its
-- ordinal in p_listings, 1)
CREATE FUNCTION pg_temp.levels(p_shop bigint, p_listings bigint[], p_force boolean[],
								p_pushed bigint[])
	RETURNS TABLE (listing_id bigint, row_id tid, level bigint, unchanged boolean,
				   external_ids jsonb, sibling_key text)
	LANGUAGE sql AS $$
	SELECT u.*
	  FROM invsync._claim_levels(50, p_shop, p_listings,
								 ARRAY(SELECT format('(%s,1)', o)::tid
										 FROM unnest(p_listings) WITH ORDINALITY u (x, o)),
								 p_force, p_pushed) c,
		   unnest(c.listing_ids, c.row_ids, c.levels, c.unchanged, c.external_ids,
				  c.sibling_keys) u
$$;
-- one call's result, whole, with the direct path as it is set and the other way
CREATE FUNCTION pg_temp.both_paths(p_shop bigint, p_listings bigint[], p_force boolean[],
									p_pushed bigint[])
	RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_setting text := current_setting('invsync.direct_path');
	v_this	record;
	v_other record;
BEGIN
	SELECT * INTO v_this FROM invsync._claim_levels(50, p_shop, p_listings, '{}', p_force, p_pushed);
	PERFORM set_config('invsync.direct_path', CASE v_setting WHEN 'on' THEN 'off' ELSE 'on' END, true);
	SELECT * INTO v_other FROM invsync._claim_levels(50, p_shop, p_listings, '{}', p_force, p_pushed);
	PERFORM set_config('invsync.direct_path', v_setting, true);
	RETURN CASE WHEN v_this IS NOT DISTINCT FROM v_other THEN 'same'
				ELSE format('%s <> %s', v_this, v_other) END;
END
$$;

-- every Shopee listing, out of order, none forced, nothing published
SELECT * FROM pg_temp.levels(:shopee, ARRAY[5012, 5011, 5010, 5009, 5008, 5007, 5006, 5005, 5004,
								   5003, 5002, 5001],
							 array_fill(false, ARRAY[12]), array_fill(-1::bigint, ARRAY[12]));
SELECT pg_temp.both_paths(:shopee, ARRAY[5012, 5011, 5010, 5009, 5008, 5007, 5006, 5005, 5004,
								5003, 5002, 5001],
						  array_fill(false, ARRAY[12]), array_fill(-1::bigint, ARRAY[12]));

-- published levels: unchanged where the level is the one published and
-- the push is not forced; a NULL flag or level makes it NULL, unless the
-- other side already decides it; past the arrays' ends, NULL
SELECT listing_id, level, unchanged
  FROM pg_temp.levels(:shopee, ARRAY[5001, 5002, 5003, 5004, 5006, 5009],
					  ARRAY[false, true, NULL, NULL, false],
					  ARRAY[17, 14, 2, 99, NULL]);
SELECT pg_temp.both_paths(:shopee, ARRAY[5001, 5002, 5003, 5004, 5006, 5009],
						  ARRAY[false, true, NULL, NULL, false], ARRAY[17, 14, 2, 99, NULL]);

-- siblings: unchanged only when the whole group is; T2's listings are
-- not siblings of each other (other SKUs)
SELECT listing_id, level, unchanged, sibling_key
  FROM pg_temp.levels(:tiktok, ARRAY[5025, 5023, 5022, 5021, 5024],
					  ARRAY[false, false, false, false, false],
					  ARRAY[0, 8, 8, 8, 3]);
SELECT listing_id, level, unchanged
  FROM pg_temp.levels(:tiktok, ARRAY[5025, 5023, 5022, 5021, 5024],
					  ARRAY[false, false, false, false, false],
					  ARRAY[3, 8, 7, 8, 3]);
SELECT pg_temp.both_paths(:tiktok, ARRAY[5025, 5023, 5022, 5021, 5024],
						  ARRAY[false, false, false, false, false], ARRAY[3, 8, 7, 8, 3]);

-- grouped: a listing whose sibling group has another enabled member, or
-- that is disabled itself, is claimed with its group; a group of one is
-- not; Shopee listings have no sibling key
SELECT (SELECT grouped FROM invsync._claim_levels(50, :tiktok, ARRAY[5024, 5025]::bigint[], '{}', '{}', '{}'))
		 AS groups_of_one,
	   (SELECT grouped FROM invsync._claim_levels(50, :tiktok, ARRAY[5024, 5021]::bigint[], '{}', '{}', '{}'))
		 AS with_warehouses,
	   (SELECT grouped FROM invsync._claim_levels(50, :shopee, ARRAY[5001, 5002]::bigint[], '{}', '{}', '{}'))
		 AS shopee;
UPDATE invsync.listings SET enabled = false WHERE listing_id IN (5022, 5023, 5025) AND tenant_id = 50;
SELECT (SELECT grouped FROM invsync._claim_levels(50, :tiktok, ARRAY[5021]::bigint[], '{}', '{}', '{}'))
		 AS others_disabled,
	   (SELECT grouped FROM invsync._claim_levels(50, :tiktok, ARRAY[5025]::bigint[], '{}', '{}', '{}'))
		 AS itself_disabled,
	   (SELECT grouped FROM invsync._claim_levels(50, :shopee, ARRAY[5021]::bigint[], '{}', '{}', '{}'))
		 AS other_shop;
SELECT pg_temp.both_paths(:tiktok, ARRAY[5021, 5022, 5023, 5024, 5025], '{}', '{}'),
	   pg_temp.both_paths(:tiktok, ARRAY[5021], '{}', '{}'),
	   pg_temp.both_paths(:tiktok, ARRAY[5025], '{}', '{}');
UPDATE invsync.listings SET enabled = true WHERE listing_id IN (5022, 5023, 5025) AND tenant_id = 50;

-- ids that join no listing (another tenant's, none, NULL) are left out;
-- a listing given twice comes twice; none at all gives NULL arrays
SELECT listing_id, row_id, level
  FROM pg_temp.levels(:shopee, ARRAY[5001, 999999, NULL, 5001], '{}', '{}');
SELECT pg_temp.both_paths(:shopee, ARRAY[5001, 999999, NULL, 5001], '{}', '{}');
SELECT * FROM invsync._claim_levels(50, :shopee, ARRAY[999999]::bigint[], '{}', '{}', '{}');
SELECT pg_temp.both_paths(:shopee, ARRAY[999999]::bigint[], '{}', '{}');

-- 300 random listings over the SKUs and locations above
SELECT setseed(0.5);
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id,
							  source_locations, buffer, allocation_percent, min_level, max_level)
SELECT :shopee, (ARRAY['P1', 'P2', 'P3', 'P4', 'P5', 'K1', 'G1', 'T1'])[1 + floor(random() * 8)::int],
	   (100 + floor(random() * 40))::text, i::text,
	   (ARRAY[NULL, '{W1}', '{W2,W3}', '{W3,W1,W2}', '{}', '{W9}'])[1 + floor(random() * 6)::int]::text[],
	   floor(random() * 6)::bigint,
	   (ARRAY[100, 100, 0, 12.5, 50, 66.67, 99.99])[1 + floor(random() * 7)::int],
	   CASE WHEN random() < 0.3 THEN floor(random() * 5)::bigint END,
	   CASE WHEN random() < 0.3 THEN 5 + floor(random() * 20)::bigint END
  FROM generate_series(1, 300) i;
SELECT count(*) FILTER (WHERE r = 'same') AS same, count(*) AS calls,
	   string_agg(r, '; ') FILTER (WHERE r <> 'same') AS differences
  FROM (SELECT pg_temp.both_paths(:shopee,
				   array_agg(l.listing_id ORDER BY random()),
				   array_agg(random() < 0.1),
				   array_agg(CASE WHEN random() < 0.5 THEN v.level ELSE floor(random() * 10)::bigint END)) AS r
		  FROM invsync.listings l
		  JOIN invsync.listing_levels v USING (listing_id)
		 WHERE l.tenant_id = 50 AND l.shop_id = :shopee
		 GROUP BY l.listing_id % 20) s;

-- and the levels are listing_levels' (the view's own statement)
SELECT count(*) AS listings,
	   count(*) FILTER (WHERE c.level IS DISTINCT FROM v.level) AS other_levels
  FROM invsync.listing_levels v
  LEFT JOIN pg_temp.levels(:shopee, ARRAY(SELECT listing_id FROM invsync.listing_levels),
						   '{}', '{}') c
	USING (listing_id);

-- A role without SELECT on a column the levels read (stock_levels.reserved):
-- the direct path steps aside and the statement refuses, as SQL does; with
-- the column granted, the same levels come back both ways.
CREATE ROLE regress_claim_levels_reader;
GRANT USAGE ON SCHEMA invsync TO regress_claim_levels_reader;
GRANT EXECUTE ON FUNCTION
	invsync._claim_levels(bigint, bigint, bigint[], tid[], boolean[], bigint[]),
	invsync._listings_available(bigint, bigint[]),
	invsync._publish_level(bigint, bigint, numeric, bigint, bigint)
	TO regress_claim_levels_reader;
GRANT SELECT ON invsync.listings, invsync.bundle_leaves TO regress_claim_levels_reader;
GRANT SELECT (tenant_id, sku, location, on_hand) ON invsync.stock_levels
	TO regress_claim_levels_reader;
SAVEPOINT without_reserved;
SET ROLE regress_claim_levels_reader;
SELECT c.levels
  FROM invsync._claim_levels(50, :shopee, '{5001,5003}', '{"(1,1)","(2,1)"}', '{}', '{}') c;
ROLLBACK TO without_reserved;
GRANT SELECT (reserved) ON invsync.stock_levels TO regress_claim_levels_reader;
SET ROLE regress_claim_levels_reader;
SELECT c.levels
  FROM invsync._claim_levels(50, :shopee, '{5001,5003}', '{"(1,1)","(2,1)"}', '{}', '{}') c;
RESET ROLE;
ROLLBACK;
