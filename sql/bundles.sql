--
-- bundles: availability is the minimum over components of
-- floor(available / qty), through nested bundles; cycles are refused
-- (IV009, also indirect ones); a bundle holds no stock (IV013); reserving a
-- bundle reserves its components, and release and fulfill give back or
-- deduct the components.  Bundles are flattened when defined
-- (bundle_leaves): redefining one rewrites the bundles containing it and
-- queues their listings; a diamond nested 18 deep stays a two-row list;
-- nesting deeper than max_bundle_depth() (IV016), more stocked skus than
-- max_bundle_size() (IV017), more than max_quantity() of one per unit
-- (IV003) and a component listed twice (IV014) are refused.  Tenant 11.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET invsync.tenant = 11;
SELECT nextval('invsync.ledger_id_seq') AS base \gset

SELECT location FROM invsync.upsert_location('W1', NULL, 1);
SELECT location FROM invsync.upsert_location('W2', NULL, 2);
SELECT sku FROM invsync.upsert_item('SHIRT');
SELECT sku FROM invsync.upsert_item('SOCK');
SELECT sku FROM invsync.upsert_item('BOX');
SELECT sku FROM invsync.upsert_item('KIT');
SELECT sku FROM invsync.upsert_item('GIFT');
SELECT sku FROM invsync.upsert_item('MIX');

--
-- 1. set_bundle
--
-- KIT = 1 SHIRT + 2 SOCK
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SHIRT", "qty": 1}, {"sku": "SOCK", "qty": 2}]');
-- set again: the new list replaces the old one
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 3}]');
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 2}, {"sku": "SHIRT", "qty": 1}]');
-- nested: GIFT = 2 KIT + 1 BOX, i.e. 2 SHIRT + 4 SOCK + 1 BOX
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('GIFT', '[{"sku": "KIT", "qty": 2}, {"sku": "BOX", "qty": 1}]');
-- MIX = 1 KIT + 1 SOCK: SOCK twice, 3 in all
SELECT bundle_sku, component_sku, qty
  FROM invsync.set_bundle('MIX', '[{"sku": "KIT", "qty": 1}, {"sku": "SOCK", "qty": 1}]');

--
-- 2. Availability
--
SELECT count(*) AS rows FROM (
	SELECT * FROM invsync.adjust('SHIRT', 'W1', 5, 'receipt', 'in-1')
	UNION ALL SELECT * FROM invsync.adjust('SHIRT', 'W2', 2, 'receipt', 'in-2')
	UNION ALL SELECT * FROM invsync.adjust('SOCK', 'W1', 7, 'receipt', 'in-3')
	UNION ALL SELECT * FROM invsync.adjust('SOCK', 'W2', 4, 'receipt', 'in-4')
	UNION ALL SELECT * FROM invsync.adjust('BOX', 'W2', 10, 'receipt', 'in-5')) x;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
-- KIT: min(7 / 1, floor(11 / 2)) = 5; at W1 min(5, 3) = 3; at W2 min(2, 2) = 2
-- GIFT: min(floor(7 / 2), floor(11 / 4), 10) = 2; at W1 BOX is missing: 0;
--       at W2 min(floor(2 / 2), floor(4 / 4), 10) = 1
-- MIX: min(7, floor(11 / 3)) = 3; at W1 min(5, floor(7 / 3)) = 2; at W2 1
SELECT s.sku, invsync.available(s.sku) AS total,
	   invsync.available(s.sku, 'W1') AS w1, invsync.available(s.sku, 'W2') AS w2
  FROM (VALUES ('SHIRT'), ('SOCK'), ('BOX'), ('KIT'), ('GIFT'), ('MIX')) s(sku);
-- one SOCK less: still 3 pairs at W1 and 5 in all (whole kits only)
SELECT on_hand_after FROM invsync.adjust('SOCK', 'W1', -1, 'damaged', 'out-1');
SELECT invsync.available('KIT') AS kit, invsync.available('KIT', 'W1') AS kit_w1;

--
-- 3. Cycles are refused, directly or through other bundles
--
SELECT sku FROM invsync.upsert_item('X');
SELECT sku FROM invsync.upsert_item('Y');
SELECT sku FROM invsync.upsert_item('Z');
SELECT component_sku FROM invsync.set_bundle('X', '[{"sku": "Y", "qty": 1}]');
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "Z", "qty": 1}]');
-- X -> Y -> Z -> X
SELECT * FROM invsync.set_bundle('Z', '[{"sku": "X", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- Y -> X while X -> Y
SELECT * FROM invsync.set_bundle('Y', '[{"sku": "X", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('Z', '[{"sku": "Z", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a component list that replaces the one causing the cycle is fine:
-- Y -> SOCK, so Z -> X -> Y no longer loops
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "SOCK", "qty": 1}]');
SELECT component_sku FROM invsync.set_bundle('Z', '[{"sku": "X", "qty": 1}]');
SELECT bundle_sku, component_sku FROM invsync.bundle_components
 WHERE tenant_id = 11 AND bundle_sku IN ('X', 'Y', 'Z') ORDER BY 1;
SELECT invsync.available('Z') AS z;
-- the same pair of skus in another tenant is unaffected
SET invsync.tenant = 111;
SELECT sku FROM invsync.upsert_item('X');
SELECT sku FROM invsync.upsert_item('Y');
SELECT component_sku FROM invsync.set_bundle('Y', '[{"sku": "X", "qty": 1}]');
SET invsync.tenant = 11;

--
-- 4. A bundle holds no stock; a sku with stock cannot become a bundle
--
SELECT * FROM invsync.adjust('KIT', 'W1', 1, 'receipt', 'b-1');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_on_hand('GIFT', 'W1', 1, 'count', 'b-2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.transfer('KIT', 'W1', 'W2', 1, 'b-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('SHIRT', '[{"sku": "BOX", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS bundle_stock_rows FROM invsync.stock WHERE sku IN ('KIT', 'GIFT', 'MIX');

--
-- 5. Reserving a bundle reserves its components
--
-- stock now: SHIRT W1 5, W2 2; SOCK W1 6, W2 4; BOX W2 10
SELECT ledger_id - :base AS id, sku, location, operation, reserved_change,
	   reserved_after, order_ref
  FROM invsync.reserve('B-1', '[{"sku": "KIT", "qty": 2}]', 'rb-1');
SELECT order_ref, line_no, line_sku, sku, location, qty
  FROM invsync.open_reservations ORDER BY 1, 2, 4, 5;
SELECT invsync.available('KIT') AS kit, invsync.available('SHIRT') AS shirt,
	   invsync.available('SOCK') AS sock;
-- nested bundle, a bundle and its component on one order
SELECT sku, location, reserved_change
  FROM invsync.reserve('B-2', '[{"sku": "GIFT", "qty": 1}, {"sku": "SOCK", "qty": 1, "location": "W2"}]', 'rb-2');
SELECT order_ref, line_no, line_sku, sku, location, qty
  FROM invsync.open_reservations WHERE order_ref = 'B-2' ORDER BY 2, 4, 5;
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT invsync.available('KIT') AS kit, invsync.available('GIFT') AS gift,
	   invsync.available('MIX') AS mix;
-- more bundles than the components allow: nothing is reserved
SELECT * FROM invsync.reserve('B-3', '[{"sku": "KIT", "qty": 2}]', 'rb-3');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT sum(reserved) AS reserved_total FROM invsync.stock;
-- one more SOCK makes one more KIT, and that one can be reserved
SELECT on_hand_after FROM invsync.adjust('SOCK', 'W2', 1, 'receipt', 'in-6');
SELECT invsync.available('KIT') AS kit;
SELECT sku, location, reserved_change
  FROM invsync.reserve('B-3', '[{"sku": "KIT", "qty": 1}]', 'rb-3b');
SELECT invsync.available('KIT') AS kit;

--
-- 6. release gives the components back; fulfill deducts them
--
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.release('B-1', 'relb-1');
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.fulfill('B-2', 'fulb-2');
SELECT sku, location, operation, on_hand_change, reserved_change, on_hand_after, reserved_after
  FROM invsync.fulfill('B-3', 'fulb-3');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY 1, 2;
SELECT s.sku, invsync.available(s.sku) AS total
  FROM (VALUES ('KIT'), ('GIFT'), ('MIX')) s(sku);

--
-- 7. The flat lists: the stocked skus one unit consumes, quantities
-- multiplied, at the depth of the longest chain leading to each
--
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 ORDER BY 1, 2;
-- a component listed twice is refused (IV014), also when the sum would not
-- fit one component; the bundle keeps its components
SELECT * FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 1}, {"sku": "SOCK", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM invsync.set_bundle('KIT', '[{"sku": "SOCK", "qty": 600}, {"sku": "SHIRT", "qty": 1}, {"sku": "SOCK", "qty": 600}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT component_sku, qty FROM invsync.bundle_components
 WHERE tenant_id = 11 AND bundle_sku = 'KIT' ORDER BY 1;

--
-- 8. Redefining a nested bundle rewrites the lists of the bundles containing
-- it, so their levels change, and queues their listings.  The shop is in
-- state 'reauthorize' so the worker of this test server never claims it.
--
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id, token_state)
VALUES (:app, '11', 'reauthorize') RETURNING shop_id AS shop \gset
INSERT INTO invsync.listings (shop_id, sku, external_item_id)
SELECT :shop, s, 'item-' || s FROM unnest(ARRAY['KIT', 'GIFT', 'MIX', 'BOX']) s;
CREATE TEMP VIEW queue AS
	SELECT l.sku, q.version FROM invsync.sync_queue q
	  JOIN invsync.listings l USING (tenant_id, listing_id)
	 WHERE q.tenant_id = 11;
SELECT sku, version FROM queue ORDER BY 1;
SELECT sku, available, level FROM invsync.listing_levels ORDER BY 1;
-- KIT = 1 SHIRT + 1 SOCK: GIFT needs 2 SOCK instead of 4, MIX 2 instead of 3
SELECT component_sku, qty FROM invsync.set_bundle('KIT', '[{"sku": "SHIRT", "qty": 1}, {"sku": "SOCK", "qty": 1}]');
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku IN ('KIT', 'GIFT', 'MIX') ORDER BY 1, 2;
SELECT sku, available, level FROM invsync.listing_levels ORDER BY 1;
SELECT s.sku, invsync.available(s.sku) AS total
  FROM (VALUES ('KIT'), ('GIFT'), ('MIX')) s(sku);
-- the three bundles' listings are queued again; BOX's is not
SELECT sku, version FROM queue ORDER BY 1;

--
-- 9. A diamond nested 18 deep: DAk and DBk each hold one DA(k-1) and one
-- DB(k-1), so 2^18 paths lead from DA18 down to DA0, yet its flat list is
-- two rows and reading it costs two rows.
--
SELECT count(invsync.upsert_item(p || g))
  FROM generate_series(0, 18) g, unnest(ARRAY['DA', 'DB']) p;
DO $$
BEGIN
	FOR g IN 1 .. 18
	LOOP
		PERFORM invsync.set_bundle(p || g, jsonb_build_array(
					jsonb_build_object('sku', 'DA' || (g - 1), 'qty', 1),
					jsonb_build_object('sku', 'DB' || (g - 1), 'qty', 1)))
		   FROM unnest(ARRAY['DA', 'DB']) p;
	END LOOP;
END
$$;
SELECT count(*) AS diamond_rows FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku ~ '^D[AB]';
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku IN ('DA1', 'DB2', 'DA18') ORDER BY 1, 2;
SELECT count(*) FROM (
	SELECT * FROM invsync.adjust('DA0', 'W1', 393216, 'receipt', 'dia-1')
	UNION ALL SELECT * FROM invsync.adjust('DB0', 'W1', 262144, 'receipt', 'dia-2')
	UNION ALL SELECT * FROM invsync.adjust('DB0', 'W2', 131072, 'receipt', 'dia-3')) x;
-- 3 x 2^17 of each: 3 in all; at W1 DB0 allows 2
SELECT invsync.available('DA18') AS total, invsync.available('DA18', 'W1') AS w1;
INSERT INTO invsync.listings (shop_id, sku, external_item_id)
VALUES (:shop, 'DA18', 'item-DA18');
SELECT sku, available, level FROM invsync.listing_levels WHERE sku = 'DA18';
SELECT sku, version FROM queue WHERE sku = 'DA18';
-- redefine the bottom of the diamond: every bundle above it is rewritten,
-- DA18 now needs 2^16 x 2 DA0 and 2^16 x 3 DB0
SELECT component_sku, qty FROM invsync.set_bundle('DA1', '[{"sku": "DA0", "qty": 1}, {"sku": "DB0", "qty": 2}]');
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku IN ('DA1', 'DB2', 'DA18') ORDER BY 1, 2;
SELECT invsync.available('DA18') AS total, invsync.available('DA18', 'W1') AS w1;
SELECT sku, available, level FROM invsync.listing_levels WHERE sku = 'DA18';
SELECT sku, version FROM queue WHERE sku = 'DA18';
-- reserving one DA18 reserves every stocked sku of it, nothing of the bundles
SELECT sku, location, reserved_change, reserved_after
  FROM invsync.reserve('D-1', '[{"sku": "DA18", "qty": 1}]', 'rd-1') ORDER BY 1, 2;
SELECT order_ref, line_sku, sku, location, qty
  FROM invsync.open_reservations WHERE order_ref = 'D-1' ORDER BY 3, 4;
SELECT invsync.available('DA18') AS da18;

--
-- 10. Nesting is limited to max_bundle_depth() levels, also for the
-- bundles containing the one being defined (IV016)
--
SELECT invsync.max_bundle_depth() AS max_depth, invsync.max_bundle_size() AS max_size;
-- define p1 = [p0], p2 = [p1], ... (upwards), or p1 = [p2], p2 = [p3], ...
-- (downwards: each call nests p1 one level deeper), up to the first refusal
CREATE FUNCTION pg_temp.chain(p_prefix text, p_levels integer, p_downwards boolean)
	RETURNS text
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM invsync.upsert_item(p_prefix || g) FROM generate_series(0, p_levels + 1) g;
	FOR g IN 1 .. p_levels
	LOOP
		BEGIN
			PERFORM invsync.set_bundle(p_prefix || g, jsonb_build_array(jsonb_build_object(
						'sku', p_prefix || CASE WHEN p_downwards THEN g + 1 ELSE g - 1 END,
						'qty', 1)));
		EXCEPTION WHEN OTHERS THEN
			RETURN format('level %s refused: %s %s', g, SQLSTATE, SQLERRM);
		END;
	END LOOP;
	RETURN format('%s levels built', p_levels);
END
$$;
-- a chain 65 deep: the 33rd level is refused
SELECT pg_temp.chain('UP', 65, false);
SELECT * FROM invsync.set_bundle('UP33', '[{"sku": "UP32", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS up33_components FROM invsync.bundle_components
 WHERE tenant_id = 11 AND bundle_sku = 'UP33';
-- UP32 nests 32 deep and consumes UP0 only
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku = 'UP32';
SELECT on_hand_after FROM invsync.adjust('UP0', 'W1', 5, 'receipt', 'up-1');
SELECT invsync.available('UP32') AS up32;
SELECT sku, reserved_change FROM invsync.reserve('U-1', '[{"sku": "UP32", "qty": 2}]', 'ru-1');
-- built downwards, the 33rd call would push DN1 (an ancestor) to 33 levels
SELECT pg_temp.chain('DN', 65, true);
SELECT count(*) AS dn33_components FROM invsync.bundle_components
 WHERE tenant_id = 11 AND bundle_sku = 'DN33';
SELECT max(depth) AS dn1_depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku = 'DN1';

--
-- 11. At most max_bundle_size() stocked skus per bundle (IV017), at most
-- max_quantity() of one per unit (IV003)
--
SELECT count(invsync.upsert_item('L' || g)) FROM generate_series(1, 1001) g;
SELECT count(invsync.upsert_item(b)) FROM unnest(ARRAY['BIG', 'BIG1', 'BIG2']) b;
SELECT count(*) FROM invsync.set_bundle('BIG1',
	(SELECT jsonb_agg(jsonb_build_object('sku', 'L' || g, 'qty', 1)) FROM generate_series(1, 600) g));
SELECT count(*) FROM invsync.set_bundle('BIG2',
	(SELECT jsonb_agg(jsonb_build_object('sku', 'L' || g, 'qty', 1)) FROM generate_series(501, 1001) g));
SELECT * FROM invsync.set_bundle('BIG', '[{"sku": "BIG1", "qty": 1}, {"sku": "BIG2", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- more than 1000 components in one call
SELECT * FROM invsync.set_bundle('BIG',
	(SELECT jsonb_agg(jsonb_build_object('sku', 'L' || g, 'qty', 1)) FROM generate_series(1, 1001) g));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(invsync.upsert_item(q)) FROM unnest(ARRAY['Q1', 'Q2', 'Q3', 'Q4', 'QB']) q;
SELECT component_sku, qty FROM invsync.set_bundle('Q1', '[{"sku": "BOX", "qty": 500}]');
SELECT component_sku, qty FROM invsync.set_bundle('Q2', '[{"sku": "Q1", "qty": 1000}]');
SELECT component_sku, qty FROM invsync.set_bundle('Q3', '[{"sku": "Q2", "qty": 1000}]');
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku = 'Q3';
SELECT * FROM invsync.set_bundle('Q4', '[{"sku": "Q3", "qty": 3}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- also when a bundle containing the one defined would need too many:
-- Q1 = 1000 BOX + QB (1 BOX) makes Q3 need 1,001,000,000 BOX
SELECT component_sku, qty FROM invsync.set_bundle('QB', '[{"sku": "BOX", "qty": 1}]');
SELECT * FROM invsync.set_bundle('Q1', '[{"sku": "BOX", "qty": 1000}, {"sku": "QB", "qty": 1}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT component_sku, qty FROM invsync.set_bundle('Q1', '[{"sku": "BOX", "qty": 999}, {"sku": "QB", "qty": 1}]');
SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves
 WHERE tenant_id = 11 AND bundle_sku IN ('Q1', 'Q3') ORDER BY 1, 2;

-- the flat lists are what flattening every bundle afresh gives
CREATE TEMP TABLE leaves_before AS
	SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves WHERE tenant_id = 11;
SELECT invsync._flatten_bundles(11, ARRAY(SELECT DISTINCT bundle_sku FROM invsync.bundle_components
										   WHERE tenant_id = 11));
SELECT count(*) AS differ FROM (
	(SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves WHERE tenant_id = 11
	 EXCEPT SELECT * FROM leaves_before)
	UNION ALL
	(SELECT * FROM leaves_before
	 EXCEPT SELECT bundle_sku, component_sku, qty, depth FROM invsync.bundle_leaves WHERE tenant_id = 11)) d;
-- every bundle has a list, and nothing else has one
SELECT count(*) AS bundles_without_list FROM invsync.bundle_components c
 WHERE tenant_id = 11 AND NOT EXISTS (SELECT FROM invsync.bundle_leaves f
									   WHERE f.tenant_id = 11 AND f.bundle_sku = c.bundle_sku);
SELECT count(*) AS lists_without_bundle FROM invsync.bundle_leaves f
 WHERE tenant_id = 11 AND NOT EXISTS (SELECT FROM invsync.bundle_components c
									   WHERE c.tenant_id = 11 AND c.bundle_sku = f.bundle_sku);

SELECT * FROM invsync.check_consistency();
SELECT count(*) AS inconsistent_anywhere FROM invsync.check_consistency(true);
