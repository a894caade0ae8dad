
# Copyright (c) 2026, invsync developers

# Lazada end to end, against sim/lazada_sim.py over HTTPS (it checks the
# app key, the millisecond timestamp, the UPPER-hex sign over every
# parameter, the token, the XML payload and its per-seller rate limit):
# the committed level arrives with the correlation id; SKUs of several
# products share calls; a multi-warehouse seller's warehouses of one SKU
# travel in one <Sku>; under injected faults (5xx, timeouts, resets,
# malformed answers, E901, "system busy", applied-then-reset) every SKU
# converges and no level is ever overwritten by an older one; a 501
# answer kills only the SKU it names; invsync's rate limit keeps the
# simulator's peak under its limit; an expired access token is refreshed
# once, and the refresh token's end Lazada reports (not extended) is
# stored and raises the sync_status alert.  No secret reaches the log.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $items = 6;
my $skus = 5;
my $sim_limit = 5;

my $node = start_node('lazada', max_connections => 30);
my $sim = start_lazada_simulator(seed => 33);
my $refresh_end = int(time()) + 5 * 86400;    # the seller authorised 175 days ago
my $shop = create_lazada_shop($node, $sim,
	sim_rate_limit => $sim_limit,
	rate_limit => 2,
	max_in_flight => 4,
	refresh_expires_at => $refresh_end);
my $seller = '100001';

# items 3001..3006, SKUs 40101..40605, SellerSku on every other one
for my $i (1 .. $items)
{
	sim_post($sim, '/_sim/products',
		{
			seller_id => $seller,
			item_id => 3000 + $i,
			skus => [ map { { sku_id => 40000 + 100 * $i + $_, seller_sku => "LZ-$i-$_" } } 1 .. $skus ]
		});
}
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('LZ-' || i || '-' || s)
	  FROM generate_series(1, $items) i, generate_series(1, $skus) s;
	INSERT INTO invsync.listings (shop_id, sku, external_ids)
	SELECT $shop, 'LZ-' || i || '-' || s,
		   jsonb_build_object('item_id', 3000 + i, 'sku_id', 40000 + 100 * i + s)
		   || CASE WHEN s % 2 = 1 THEN jsonb_build_object('seller_sku', 'LZ-' || i || '-' || s)
				   ELSE '{}' END
	  FROM generate_series(1, $items) i, generate_series(1, $skus) s;
});
my $all_synced = qq{SELECT count(*) FILTER (WHERE sync_state = 'synced' AND pushed_level = level)
	FROM invsync.listing_levels WHERE shop_id = $shop};
ok(wait_for($node, $all_synced, $items * $skus, 30), 'every new listing published its level');

# ----- one change, on the wire -----------------------------------------------

my $seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
$node->safe_psql('postgres', q{
	SET invsync.correlation_id = 'lazada-order-77';
	SELECT FROM invsync.adjust('LZ-2-3', 'WH1', 25, 'receipt', 'lz-push-1');
});
ok(wait_for($node, q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'LZ-2-3'}, '25'),
	'the committed level was published');
my ($stock) = grep { $_->{sku_id} eq '40203' } @{ sim_get($sim, "/_sim/stock?seller_id=$seller")->{stock} };
is($stock->{quantity}, 25, 'Lazada holds the new level');
my $log = sim_get($sim, "/_sim/log?since=$seq&limit=1000")->{entries};
my ($push) = grep { ($_->{headers}{'X-Correlation-ID'} // '') =~ /lazada-order-77/ } @$log;
ok($push, 'the request carried the correlation id in X-Correlation-ID');
is("$push->{status} $push->{code}", '200 0', 'Lazada accepted app key, timestamp, sign and token');
is($push->{api_path}, '/product/stock/sellable/update', 'UpdateSellableQuantity');
like($push->{query}{timestamp}, qr/^\d{13}$/, 'the timestamp is in milliseconds');
like($push->{query}{sign}, qr/^[0-9A-F]{64}$/, 'the sign is UPPER hex');
is($push->{headers}{'Content-Type'}, 'application/x-www-form-urlencoded', 'the payload is a form');
like($push->{form}{payload},
	qr{<Sku><ItemId>3002</ItemId><SkuId>40203</SkuId><SellerSku>LZ-2-3</SellerSku><SellableQuantity>25</SellableQuantity></Sku>},
	'the payload carries the absolute level');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM invsync.sync_attempts
	 WHERE correlation_id LIKE '%lazada-order-77%' AND outcome = 'ok' AND http_status = 200
	   AND request_url LIKE '%access_token=[redacted]%' AND request_url LIKE '%sign=[redacted]'}),
	'1', 'the attempt row has the outcome, and neither token nor sign');

# ----- a multi-warehouse seller ---------------------------------------------

my $mw_shop = create_lazada_shop($node, $sim,
	app_key => '120002', seller_id => '100002', country => 'th', multi_warehouse => 1);
sim_post($sim, '/_sim/products',
	{ seller_id => '100002', item_id => 5001, skus => [ { sku_id => 60001, seller_sku => 'MW-1', warehouses => [ 'WH-A', 'WH-B' ] } ] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('A');
	SELECT invsync.upsert_location('B');
	SELECT invsync.upsert_item('MW-1');
	INSERT INTO invsync.listings (shop_id, sku, external_ids, source_locations)
	VALUES ($mw_shop, 'MW-1', '{"item_id": 5001, "sku_id": 60001, "warehouse_code": "WH-A"}', '{A}'),
		   ($mw_shop, 'MW-1', '{"item_id": 5001, "sku_id": 60001, "warehouse_code": "WH-B"}', '{B}');
	SELECT FROM invsync.adjust('MW-1', 'A', 7, 'receipt', 'mw-a');
	SELECT FROM invsync.adjust('MW-1', 'B', 4, 'receipt', 'mw-b');
});
ok(wait_for($node, "SELECT string_agg(pushed_level::text, ',' ORDER BY external_location_id) FROM invsync.listing_levels WHERE shop_id = $mw_shop", '7,4'),
	'both warehouses published');
is( join(',', map { "$_->{warehouse_code}=$_->{quantity}" }
		sort { $a->{warehouse_code} cmp $b->{warehouse_code} } @{ sim_get($sim, '/_sim/stock?seller_id=100002')->{stock} }),
	'WH-A=7,WH-B=4', 'Lazada holds each warehouse\'s level');
my @mw = grep { ($_->{seller_id} // '') eq '100002' && ($_->{api_path} // '') eq '/product/stock/sellable/update' }
  @{ sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries} };
ok((grep { ($_->{form}{payload} // '') =~ m{<MultiWarehouseInventories><MultiWarehouseInventory><WarehouseCode>WH-A</WarehouseCode><SellableQuantity>\d+</SellableQuantity></MultiWarehouseInventory><MultiWarehouseInventory><WarehouseCode>WH-B</WarehouseCode>} } @mw) > 0,
	'the warehouses of one SKU go in one <Sku>');

# ----- convergence under faults ---------------------------------------------

$seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
my @kinds = qw(http_500 http_503 timeout reset malformed_json e901 error_server_busy
  apply_then_reset latency empty_body);
# each kind that must be seen fires once first (a timeout longer than
# invsync.http_timeout), then every kind at random, about 45% in all
my @once = qw(timeout reset malformed_json e901 http_503);
sim_post($sim, '/_sim/faults', { rules => [ map {
	my $kind = $_->[0];
	{
		kind => $kind,
		seller_id => $seller,
		@$_ > 1 ? (count => 1) : (probability => 0.06),
		$kind eq 'timeout' ? (delay_ms => 2500) : (),
		$kind eq 'latency' ? (delay_ms => 300) : (),
	}
} (map { [ $_, 'once' ] } @once), (map { [$_] } @kinds) ] });

my $start = time();
$node->pgbench(
	'--no-vacuum --client=3 --jobs=3 --time=6 --rate=150',
	0,
	[qr{number of transactions actually processed: \d+}],
	[qr{^$}],
	'three sessions commit changes for six seconds',
	{
		'033_adjust.sql' => qq{
\\set i random(1, $items)
\\set s random(1, $skus)
\\set d random(1, 5)
SELECT FROM invsync.adjust('LZ-' || :i || '-' || :s, 'WH1', :d, 'receipt', gen_random_uuid()::text);
}
	},
	'postgres');
note(sprintf('changes committed in %.1f s', time() - $start));
usleep(3_000_000);    # pushes go on under faults a while longer
sim_post($sim, '/_sim/faults', { rules => [] });
ok(wait_for($node, $all_synced, $items * $skus, 40), 'every listing converged to its level');

my %ledger = map { split /=/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT external_model_id || '=' || level FROM invsync.listing_levels WHERE shop_id = } . $shop);
my $stock_now = sim_get($sim, "/_sim/stock?seller_id=$seller")->{stock};
is(scalar(grep { ($ledger{ $_->{sku_id} } // -1) != $_->{quantity} } @$stock_now), 0,
	'Lazada holds exactly the ledger\'s levels');
my @went_back = grep {
	my $h = $_->{history};
	grep { $h->[$_] < $h->[ $_ - 1 ] } 1 .. $#$h
} @$stock_now;
is(scalar @went_back, 0, 'no SKU ever went back to an older level (levels only grew)');
my $stats = sim_get($sim, '/_sim/stats');
note('faults fired: ' . join(', ', map { "$_=$stats->{faults}{$_}" } sort keys %{ $stats->{faults} }));
is(join(' ', grep { ($stats->{faults}{$_} // 0) < 1 } @once), '', "faults of every kind fired (@once)");
is($stats->{rejected_sign} // 0, 0, 'no request had a bad sign');
cmp_ok($stats->{peak_per_second}{$seller}, '<=', $sim_limit,
	"invsync never exceeded Lazada's $sim_limit requests a second (peak $stats->{peak_per_second}{$seller})");
is($stats->{throttled} // 0, 0, "Lazada's rate limiter never had to refuse a request");
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_attempts WHERE outcome = 'throttled'}),
	'>', 0, 'E901 answers were recorded as throttled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.dead_letters'), '0', 'no dead letter');

# ----- 501: only the named SKU fails -----------------------------------------

sim_post($sim, '/_sim/products',
	{
		seller_id => $seller,
		item_id => 3001,
		skus => [ map { { sku_id => 40100 + $_, seller_sku => "LZ-1-$_" } } 1 .. $skus ],
		fail_skus => { '40102' => 'Price is invalid' }
	});
$seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
$node->safe_psql('postgres', q{
	SELECT FROM unnest(ARRAY['LZ-1-1', 'LZ-1-2', 'LZ-3-4']) s,
		LATERAL invsync.adjust(s, 'WH1', 3, 'receipt', 'lz-501-' || s);
});
ok(wait_for($node, q{SELECT count(*) FROM invsync.dead_letters}, '1'), 'one dead letter');
ok(wait_for($node, $all_synced, $items * $skus - 1), 'the other listings were published');
is($node->safe_psql('postgres', q{SELECT external_model_id || ' ' || last_error FROM invsync.dead_letters}),
	'40102 SkuId: Price is invalid', "the dead letter is the named SKU, with Lazada's reason");
$log = sim_get($sim, "/_sim/log?since=$seq&limit=1000")->{entries};
ok((grep { ($_->{code} // '') eq '501' } @$log) > 0, 'Lazada answered 501');

# ----- the access token expires: one refresh --------------------------------

$node->safe_psql('postgres', "UPDATE invsync.shops SET refresh_expires_at = NULL WHERE shop_id = $shop");
is($node->safe_psql('postgres', "SELECT coalesce(authorization_alert, 'none') FROM invsync.sync_status WHERE shop_id = $shop"),
	'none', 'no alert while the refresh token\'s end is unknown');
my $refreshes = sim_get($sim, '/_sim/stats')->{refreshes} // 0;
sim_post($sim, '/_sim/expire_token', { seller_id => $seller });
$seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
$node->safe_psql('postgres', q{SELECT FROM invsync.adjust('LZ-4-4', 'WH1', 2, 'receipt', 'lz-tok-1')});
ok(wait_for($node, $all_synced, $items * $skus - 1), 'the change is published after the token expired');
$log = [ grep { ($_->{seller_id} // '') eq $seller } @{ sim_get($sim, "/_sim/log?since=$seq&limit=1000")->{entries} } ];
is( join(' ', map { ($_->{api_path} =~ /refresh/ ? 'refresh' : 'push') . ":$_->{code}" } @$log),
	'push:IllegalAccessToken refresh:0 push:0', 'refused push, exactly one refresh, the push resent');
is(sim_get($sim, '/_sim/stats')->{refreshes}, $refreshes + 1, 'one refresh');
my $sim_seller = sim_get($sim, "/_sim/sellers?seller_id=$seller");
is( $node->safe_psql('postgres', "SELECT access_token || ' ' || refresh_token FROM invsync.shops WHERE shop_id = $shop"),
	"$sim_seller->{access_token} $sim_seller->{refresh_token}", 'invsync stored the new tokens');
cmp_ok(
	abs($node->safe_psql('postgres', "SELECT extract(epoch FROM refresh_expires_at)::bigint FROM invsync.shops WHERE shop_id = $shop")
		  - $refresh_end), '<=', 2,
	'the stored refresh end is the original one, not extended by the refresh');
is($node->safe_psql('postgres', "SELECT authorization_alert FROM invsync.sync_status WHERE shop_id = $shop"),
	'expires_soon', 'sync_status warns that the seller must authorise again soon');

# ----- no secret anywhere ----------------------------------------------------

my @secrets = ('lzd-test-app-secret-0123456789abcdef', "lzd-access-$seller-initial-token",
	"lzd-refresh-$seller-initial-token", $sim_seller->{access_token}, $sim_seller->{refresh_token});
secrets_absent_from_log($node, @secrets);
for my $secret (@secrets)
{
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM invsync.sync_attempts
			 WHERE strpos(request_url || ' ' || coalesce(error_message, ''), '$secret') > 0}),
		'0', 'no attempt row holds ' . substr($secret, 0, 10) . '…');
}

$node->stop;
done_testing();
