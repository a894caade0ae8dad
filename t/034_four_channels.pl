
# Copyright (c) 2026, invsync developers

# One sku sold on all four channels (Shopee, TikTok Shop in two
# warehouses, Tokopedia through TikTok's API, Lazada), each listing with
# its own buffer, allocation and bounds, is changed 1,000 times by 8
# concurrent sessions.  Every marketplace ends holding exactly the level
# its listing publishes from the final stock, each through its own
# protocol, signed as that marketplace checks.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_node('four_channels', max_connections => 40);
my $shopee_sim = start_simulator(seed => 41);
my $tiktok_sim = start_simulator(script => 'tiktok_sim.py', seed => 42);
my $lazada_sim = start_lazada_simulator(seed => 43);

my $shopee = create_shop($node, $shopee_sim, shop_id => 5001);
sim_post($shopee_sim, '/_sim/items', { shop_id => 5001, item_id => 880001, models => [0] });
my $tiktok = create_tiktok_shop($node, $tiktok_sim, shop_cipher => 'ROW_FOUR_TT', region => 'MY');
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => 'ROW_FOUR_TT', product_id => '1729000000000000041',
	  skus => { 'TT-ONE' => [ 'W1', 'W2' ] } });
my $tokopedia = create_tiktok_shop($node, $tiktok_sim, channel => 'tokopedia',
	app_key => 'tt-app-key-0002', shop_cipher => 'ID_FOUR_TOKO', region => 'ID');
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => 'ID_FOUR_TOKO', product_id => '1729000000000000042',
	  skus => { 'TOKO-ONE' => ['W9'] } });
my $lazada = create_lazada_shop($node, $lazada_sim, seller_id => '300001');
sim_post($lazada_sim, '/_sim/products',
	{ seller_id => '300001', item_id => 7001, skus => [ { sku_id => 70011, seller_sku => 'ONE-SKU' } ] });

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_location('WH2');
	SELECT invsync.upsert_item('ONE-SKU');
	SELECT FROM invsync.set_on_hand('ONE-SKU', 'WH1', 100, 'count', 'start-1');
	SELECT FROM invsync.set_on_hand('ONE-SKU', 'WH2', 100, 'count', 'start-2');
	INSERT INTO invsync.listings (shop_id, sku, external_ids, source_locations, buffer,
								  allocation_percent, min_level, max_level)
	VALUES ($shopee, 'ONE-SKU', '{"item_id": "880001"}', NULL, 2, 100, NULL, NULL),
		   ($tiktok, 'ONE-SKU', '{"product_id": "1729000000000000041", "sku_id": "TT-ONE", "warehouse_id": "W1"}',
			'{WH1}', 0, 50, NULL, NULL),
		   ($tiktok, 'ONE-SKU', '{"product_id": "1729000000000000041", "sku_id": "TT-ONE", "warehouse_id": "W2"}',
			'{WH2}', 3, 70, NULL, NULL),
		   ($tokopedia, 'ONE-SKU', '{"product_id": "1729000000000000042", "sku_id": "TOKO-ONE", "warehouse_id": "W9"}',
			NULL, 1, 80, NULL, 150),
		   ($lazada, 'ONE-SKU', '{"item_id": "7001", "sku_id": "70011", "seller_sku": "ONE-SKU"}',
			NULL, 5, 100, 20, NULL);
});

my $converged = q{
	SELECT count(*) FILTER (WHERE sync_state = 'synced' AND pushed_level = level) || '/' || count(*)
	  FROM invsync.listing_levels};
ok(wait_for($node, $converged, '5/5', 60), 'every listing publishes its first level');

# 8 sessions, 63 transactions each, 2 changes per transaction: 1,008
# changes, absolute counts and receipts at both locations
$node->pgbench(
	'--no-vacuum --client=8 --jobs=2 --transactions=63',
	0,
	[qr{processed: 504/504}],
	[qr{^$}],
	'1,008 concurrent changes of one sku',
	{
		'four_channels' => q{
\set loc random(1, 2)
\set q random(0, 400)
\set d random(1, 25)
SELECT invsync.set_on_hand('ONE-SKU', 'WH' || :loc, :q, 'count', 'c-' || gen_random_uuid());
SELECT invsync.adjust('ONE-SKU', 'WH' || (3 - :loc), :d, 'receipt', 'a-' || gen_random_uuid());
}
	});

is($node->safe_psql('postgres',
		q{SELECT count(*) FROM invsync.ledger WHERE idempotency_key ~ '^[ca]-'}),
	'1008', 'the ledger holds every change');
ok(wait_for($node, $converged, '5/5', 120), 'every listing converges to the final level');

my %level = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT listing_id || '|' || level FROM invsync.listing_levels});
my %listing_of = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT coalesce(external_ids ->> 'warehouse_id', channel) || '|' || listing_id
	  FROM invsync.listing_levels});
my %stock = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT location || '|' || available FROM invsync.stock WHERE sku = 'ONE-SKU'});
my $all = $stock{WH1} + $stock{WH2};
diag("final available: WH1 $stock{WH1}, WH2 $stock{WH2}");

# what each listing's terms make of the final stock, the allocation in
# integer percent: 360 * 0.7 is 251.99999999999997 in floating point
my %expected = (
	shopee => max0($all - 2),
	W1 => max0(int($stock{WH1} * 50 / 100)),
	W2 => max0(int(($stock{WH2} - 3) * 70 / 100)),
	W9 => min(150, max0(int(($all - 1) * 80 / 100))),
	lazada => ($all - 5 < 20 ? 0 : $all - 5));
sub max0 { my ($v) = @_; return $v < 0 ? 0 : $v; }
sub min { my ($a, $b) = @_; return $a < $b ? $a : $b; }
for my $key (sort keys %expected)
{
	is($level{ $listing_of{$key} }, $expected{$key}, "$key: the level applies its buffer, allocation and bounds");
}

# and what each marketplace holds
my ($shopee_row) = @{ sim_get($shopee_sim, '/_sim/stock?shop_id=5001')->{stock} };
is($shopee_row->{stock}, $expected{shopee}, 'Shopee holds its level');
my %tt = map { ("$_->{sku_id}/$_->{warehouse_id}" => $_->{quantity}) }
  @{ sim_get($tiktok_sim, '/_sim/stock')->{stock} };
is($tt{'TT-ONE/W1'}, $expected{W1}, 'TikTok Shop holds its level in warehouse W1');
is($tt{'TT-ONE/W2'}, $expected{W2}, 'and in warehouse W2');
is($tt{'TOKO-ONE/W9'}, $expected{W9}, 'Tokopedia holds its level');
my ($lazada_row) = @{ sim_get($lazada_sim, '/_sim/stock?seller_id=300001')->{stock} };
is($lazada_row->{quantity}, $expected{lazada}, 'Lazada holds its level');

is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_attempts
		WHERE outcome NOT IN ('ok', 'retry', 'throttled', 'partial')}),
	'0', 'no push was refused for good');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency()'),
	'0', 'the ledger and stock_levels agree');

done_testing();
