
# Copyright (c) 2026, invsync developers

# Tokopedia end to end: a "Tokopedia & Shop" shop (platform TOKOPEDIA,
# region ID) reached through the TikTok API, against sim/tiktok_sim.py
# over HTTPS.  A change is published signed and with its correlation id,
# every warehouse of a SKU together; a product not listed on Tokopedia is a
# dead letter naming the reason; an error reported for the TIKTOK_SHOP
# platform of a SKU fails the Tokopedia listing too (one stock per SKU and
# warehouse: the simulator applied nothing) and says which platform; an
# expired token is refreshed once.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $cipher = 'ROW_TOKO_032';
my $p3 = '1729000000000000003';
my $p4 = '1729000000000000004';

my $node = start_node('tokopedia');
my $sim = start_simulator(script => 'tiktok_sim.py', seed => 32);
my $shop = create_tiktok_shop($node, $sim, channel => 'tokopedia', app_key => 'tt-app-key-toko',
	shop_cipher => $cipher, region => 'ID');

# T1 in two warehouses and T2 on a product listed on Tokopedia, whose T2
# TikTok Shop reports locked; T4 on a product listed on TikTok Shop only
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p3, skus => { T1 => [ 'W1', 'W2' ], T2 => ['W1'] },
	  fail_skus => { T2 => { code => 12052393, message => 'Product locked for Promotion',
			listing_platform => 'TIKTOK_SHOP' } } });
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p4, listing_platforms => ['TIKTOK_SHOP'],
	  skus => { T4 => ['W1'] } });

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item(s) FROM unnest(ARRAY['T1-W1', 'T1-W2', 'T2', 'T4']) s;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id, external_location_id)
	VALUES ($shop, 'T1-W1', '$p3', 'T1', 'W1'), ($shop, 'T1-W2', '$p3', 'T1', 'W2'),
		   ($shop, 'T2', '$p3', 'T2', 'W1'), ($shop, 'T4', '$p4', 'T4', 'W1');
});
ok(wait_for($node,
	"SELECT string_agg(sku || ':' || sync_state, ',' ORDER BY sku) FROM invsync.listing_levels",
	'T1-W1:synced,T1-W2:synced,T2:dead,T4:dead'),
	'the Tokopedia listings publish; the locked SKU and the product not on Tokopedia are dead letters');

my $errors = { split /\|/, $node->safe_psql('postgres', q{
	SELECT string_agg(l.sku || '|' || q.last_error, '|')
	  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
	 WHERE q.state = 'dead'}) };
like($errors->{T2}, qr/^\[TIKTOK_SHOP, sharing this SKU's stock with TOKOPEDIA\] Product locked for Promotion/,
	'the error TikTok Shop reported fails the Tokopedia listing and names its platform');
like($errors->{T4}, qr/not listed on TOKOPEDIA/, 'the product not listed on Tokopedia is refused for good');

$node->safe_psql('postgres', q{
	SET invsync.correlation_id = 'toko-order-32';
	SELECT FROM invsync.adjust('T1-W2', 'WH1', 9, 'receipt', 'toko-1');
});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'T1-W2'", '9'),
	'the committed level was published');
my %stock = map { ("$_->{sku_id}/$_->{warehouse_id}" => $_) }
  @{ sim_get($sim, "/_sim/stock?shop_cipher=$cipher")->{stock} };
is($stock{'T1/W2'}{quantity}, 9, 'the marketplace holds the new level');
is_deeply($stock{'T2/W1'}{history}, [], 'and nothing of the failed SKU');
my $log = sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries};
my ($push) = grep { ($_->{headers}{'x-correlation-id'} // '') =~ /toko-order-32/ } @$log;
is($push->{status} . ':' . $push->{code}, '200:0', 'signed as for TikTok, accepted, with the correlation id');
is_deeply([ sort map { "$_->{warehouse_id}=$_->{quantity}" } @{ decode_json($push->{body})->{skus}[0]{inventory} } ],
	[ 'W1=0', 'W2=9' ], 'with both warehouses of T1');
my ($failed) = grep { @{ $_->{failed} // [] } } @$log;
is($failed->{failed}[0]{detail}{listing_platform}, 'TIKTOK_SHOP', 'the simulator reported the error per platform');

# an expired token: one refresh, on the shared TikTok code
my $seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
sim_post($sim, '/_sim/expire_token', { shop_cipher => $cipher });
$node->safe_psql('postgres', q{SELECT FROM invsync.adjust('T1-W1', 'WH1', 4, 'receipt', 'toko-2')});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'T1-W1'", '4'),
	'published after the token expired');
is(join(' ', map { "$_->{path}:$_->{status}" } @{ sim_get($sim, "/_sim/log?since=$seq&limit=100")->{entries} }),
	"/product/202309/products/$p3/inventory/update:401 /api/v2/token/refresh:200 "
	  . "/product/202309/products/$p3/inventory/update:200",
	'one refused push, one refresh, the push resent');
is(sim_get($sim, '/_sim/stats')->{refreshes}, 1, 'exactly one refresh');

secrets_absent_from_log($node, 'tt-app-secret-0123456789abcdef', "access-$cipher-initial-token",
	"refresh-$cipher-initial-token");

$node->stop;
done_testing();
