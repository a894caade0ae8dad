--
-- The sync queue as the triggers fill it: which stock changes mark which
-- listings (bundles included), coalescing into one row per listing with a
-- version, bounded correlation ids, the published flag that lets unlisted
-- stock skip the trigger, and the levels listings publish.  The shop is in
-- state 'reauthorize' so the worker of this test server never claims it.
--
\set VERBOSITY terse
SET invsync.tenant = '31';

SELECT FROM invsync.upsert_location('W1');
SELECT FROM invsync.upsert_location('W2');
SELECT count(invsync.upsert_item(s)) FROM unnest(ARRAY['A', 'B', 'C', 'KIT']) s;
-- stock of A exists before any listing uses it
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 10, 'r', 'sq-a1');
SELECT FROM invsync.set_bundle('KIT', '[{"sku":"A","qty":2},{"sku":"B","qty":1}]');

INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '1', 'k', 'https://127.0.0.1:9') RETURNING app_id AS app \gset
INSERT INTO invsync.shops (app_id, external_shop_id, token_state)
VALUES (:app, '77', 'reauthorize') RETURNING shop_id AS shop \gset

SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 ORDER BY sku;
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id, buffer, source_locations)
VALUES (:shop, 'A', '1', '1', 1, NULL), (:shop, 'KIT', '1', '2', 0, '{W1}');
-- a listing marks the stock it publishes, and queues itself
SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 ORDER BY sku;
SELECT l.sku, q.state, q.version FROM invsync.sync_queue q
  JOIN invsync.listings l USING (tenant_id, listing_id) WHERE q.tenant_id = 31 ORDER BY l.sku;

-- B is used only through KIT: its first stock row is born published
SELECT on_hand_after FROM invsync.adjust('B', 'W1', 3, 'r', 'sq-b1');
SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 ORDER BY sku;
-- a component's change bumps the bundle's listing, not A's
SELECT l.sku, q.version FROM invsync.sync_queue q
  JOIN invsync.listings l USING (tenant_id, listing_id) WHERE q.tenant_id = 31 ORDER BY l.sku;

-- stock no listing uses is never queued
SELECT on_hand_after FROM invsync.adjust('C', 'W1', 5, 'r', 'sq-c1');
SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 AND sku = 'C';
SELECT count(*) FROM invsync.sync_queue WHERE tenant_id = 31;

-- a change at a location outside the bundle listing's sources skips it
SELECT on_hand_after FROM invsync.adjust('A', 'W2', 4, 'r', 'sq-a2');
SELECT l.sku, q.version FROM invsync.sync_queue q
  JOIN invsync.listings l USING (tenant_id, listing_id) WHERE q.tenant_id = 31 ORDER BY l.sku;

-- a burst coalesces into the one row; correlation ids are kept, at most 10
SELECT on_hand_after FROM (
	SELECT set_config('invsync.correlation_id', 'burst-' || g, false),
		   (SELECT on_hand_after FROM invsync.adjust('A', 'W1', 1, 'r', 'sq-burst-' || g))
	  FROM generate_series(1, 12) g) x (c, on_hand_after)
 ORDER BY 1 DESC LIMIT 1;
RESET invsync.correlation_id;
SELECT l.sku, q.version, cardinality(q.correlation_ids) AS ids, q.correlation_ids[10] AS newest
  FROM invsync.sync_queue q
  JOIN invsync.listings l USING (tenant_id, listing_id) WHERE q.tenant_id = 31 ORDER BY l.sku;

-- fulfilling moves on hand and reserved together: available, and the queue, stay
SELECT count(*) FROM invsync.reserve('sq-o1', '[{"sku":"A","qty":2,"location":"W1"}]', 'sq-r1');
SELECT version AS before FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 31 AND l.sku = 'A' \gset
SELECT count(*) FROM invsync.fulfill('sq-o1', 'sq-f1');
SELECT version = :before AS unchanged FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 31 AND l.sku = 'A';

-- a rolled-back change leaves the queue as it was
BEGIN;
SELECT on_hand_after FROM invsync.adjust('A', 'W1', 50, 'r', 'sq-rollback');
ROLLBACK;
SELECT version = :before AS unchanged FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 31 AND l.sku = 'A';

-- the levels listings would publish, and the terms behind them
UPDATE invsync.listings SET allocation_percent = 50, max_level = 7 WHERE tenant_id = 31 AND sku = 'A';
SELECT sku, available, buffer, allocation_percent, max_level, level
  FROM invsync.listing_levels ORDER BY sku;
SELECT invsync._publish_level(10, 0, 100, NULL, NULL) AS plain,
	   invsync._publish_level(10, 3, 100, NULL, NULL) AS buffered,
	   invsync._publish_level(10, 0, 33, NULL, NULL) AS allocated,
	   invsync._publish_level(2, 0, 100, 3, NULL) AS below_min,
	   invsync._publish_level(10, 0, 100, NULL, 4) AS capped,
	   invsync._publish_level(1, 5, 100, NULL, NULL) AS never_negative;

-- a listing loaded from a dump (created before this transaction) comes
-- with its queue row: it is not queued, but its stock is marked published;
-- a change of its terms queues it
SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 AND sku = 'C';
INSERT INTO invsync.listings (shop_id, sku, external_item_id, created_at)
VALUES (:shop, 'C', '3', now() - interval '1 day');
SELECT sku, published FROM invsync.stock_levels WHERE tenant_id = 31 AND sku = 'C';
SELECT count(*) AS queued FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 31 AND l.sku = 'C';
UPDATE invsync.listings SET buffer = 1 WHERE tenant_id = 31 AND sku = 'C';
SELECT q.state, q.version FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
 WHERE q.tenant_id = 31 AND l.sku = 'C';

-- operating functions refuse an unknown shop
SELECT invsync.resync(-1);
SELECT invsync.set_shop_tokens(-1, 'a', 'b', now());
SELECT invsync.retry_dead(:shop);
-- another tenant sees none of it
SET invsync.tenant = '32';
SELECT count(*) FROM invsync.listing_levels;
SELECT count(*) FROM invsync.sync_status;
RESET invsync.tenant;
