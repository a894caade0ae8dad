
# Copyright (c) 2026, invsync developers

# TikTok Shop end to end, against sim/tiktok_sim.py over HTTPS (which
# verifies the sign, timestamp, shop cipher and token as TikTok does):
# a committed change reaches the marketplace with the right level and its
# X-Correlation-ID, every warehouse of a SKU in every call; level 0 is
# published as 0; a partial failure (data.errors[]) makes only the failed
# SKU's listing a dead letter; under injected faults (5xx, timeouts, resets,
# malformed and empty answers, throttling, "internal error", applied then
# reset, latency; about half the requests) every listing converges to the ledger's level and no
# level ever goes back to an older one; an expired token is refreshed
# exactly once; and the shop's rate limit in invsync, below the
# simulator's, keeps every second's requests under the simulator's limit
# (invsync's bucket holds one second of requests, so a sliding second may
# see up to twice its rate: 7/s here, against the simulator's 20).

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $cipher = 'ROW_TTSHOP_031';
my $secret = 'tt-app-secret-0123456789abcdef';
my $p1 = '1729000000000000001';
my $p2 = '1729000000000000002';
my $sim_limit = 20;

my $node = start_node('tiktok', max_connections => 40);
my $sim = start_simulator(script => 'tiktok_sim.py', seed => 31);
my $shop = create_tiktok_shop($node, $sim, shop_cipher => $cipher, rate_limit => 7,
	sim_rate_limit => $sim_limit, max_in_flight => 4);

# S11 in two warehouses, S12 in one, S13 in one and listed without its id;
# S22 in two warehouses
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p1,
	  skus => { S11 => [ 'W1', 'W2' ], S12 => ['W1'], S13 => ['W1'] } });
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p2, skus => { S21 => ['W1'], S22 => [ 'W1', 'W2' ] } });

my %listings = (
	'S11-W1' => [ $p1, 'S11', 'W1' ],
	'S11-W2' => [ $p1, 'S11', 'W2' ],
	'S12' => [ $p1, 'S12', 'W1' ],
	'S13' => [ $p1, 'S13', undef ],
	'S21' => [ $p2, 'S21', 'W1' ],
	'S22-W1' => [ $p2, 'S22', 'W1' ],
	'S22-W2' => [ $p2, 'S22', 'W2' ]);
# in one transaction, as a seller's listings of one SKU should be created:
# a warehouse's listing claimed before its sibling exists would be sent
# alone, and TikTok refuses a call that omits a warehouse
$node->safe_psql('postgres', "BEGIN;\nSELECT invsync.upsert_location('WH1');\n"
	  . join('', map {
		my ($p, $s, $w) = @{ $listings{$_} };
		"SELECT invsync.upsert_item('$_');\n"
		  . "INSERT INTO invsync.listings (shop_id, sku, external_ids) VALUES ($shop, '$_', '"
		  . encode_json({ product_id => $p, sku_id => $s, defined $w ? (warehouse_id => $w) : () })
		  . "');\n"
	  } sort keys %listings) . "COMMIT;\n");
ok(wait_for($node, "SELECT count(*) FROM invsync.listing_levels WHERE sync_state = 'synced'", '7'),
	'new listings publish their level');

sub stock
{
	my %stock;
	for my $row (@{ sim_get($sim, "/_sim/stock?shop_cipher=$cipher")->{stock} })
	{
		$stock{"$row->{sku_id}/$row->{warehouse_id}"} = $row;
	}
	return \%stock;
}

sub log_since
{
	my ($since) = @_;
	return sim_get($sim, "/_sim/log?since=$since&limit=100000")->{entries};
}

# ----- a committed change, with its correlation id ---------------------------
$node->safe_psql('postgres', q{
	SET invsync.correlation_id = 'tiktok-order-31';
	SELECT FROM invsync.adjust('S11-W1', 'WH1', 25, 'receipt', 'tt-1');
});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'S11-W1'", '25'),
	'the committed level was published');
is(stock()->{'S11/W1'}{quantity}, 25, 'the marketplace holds the new level');
my ($push) = grep { ($_->{headers}{'x-correlation-id'} // '') =~ /tiktok-order-31/ } @{ log_since(0) };
ok($push, 'the request carried the correlation id in X-Correlation-ID');
is($push->{status}, 200, 'the simulator accepted sign, timestamp, shop cipher and token');
is($push->{code}, 0, 'with code 0');
is($push->{path}, "/product/202309/products/$p1/inventory/update", 'on the product\'s Update Inventory path');
my $body = decode_json($push->{body});
my ($s11) = grep { $_->{id} eq 'S11' } @{ $body->{skus} };
is_deeply([ sort map { "$_->{warehouse_id}=$_->{quantity}" } @{ $s11->{inventory} } ],
	[ 'W1=25', 'W2=0' ], 'both warehouses of S11 were sent, with absolute levels');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM invsync.sync_attempts WHERE request_url LIKE '%access-$cipher%' OR request_url NOT LIKE '%sign=[redacted]%'"),
	'0', 'attempt rows hold no token or signature');

# ----- level 0 is published as 0 ---------------------------------------------
$node->safe_psql('postgres', q{
	SELECT FROM invsync.adjust('S12', 'WH1', 3, 'receipt', 'tt-2');
});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'S12'", '3'), 'S12 at 3');
$node->safe_psql('postgres', q{
	SELECT FROM invsync.adjust('S12', 'WH1', -3, 'sale', 'tt-3');
});
ok(wait_for($node, "SELECT pushed_level || ' ' || sync_state FROM invsync.listing_levels WHERE sku = 'S12'", '0 synced'),
	'S12 back to 0, published');
is(stock()->{'S12/W1'}{quantity}, 0, 'the marketplace shows quantity 0');
is(stock()->{'S13/W1'}{quantity}, 0, 'a listing without warehouse_id updates the SKU\'s only warehouse');

# ----- a partial failure: only the failed SKU's listing is dead --------------
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p2, skus => { S21 => ['W1'], S22 => [ 'W1', 'W2' ] },
	  fail_skus => { S21 => { code => 12052393, message => 'Product locked for Promotion' } } });
$node->safe_psql('postgres', q{
	SELECT FROM invsync.adjust('S21', 'WH1', 5, 'receipt', 'tt-4');
	SELECT FROM invsync.adjust('S22-W1', 'WH1', 7, 'receipt', 'tt-5');
});
ok(wait_for($node, "SELECT sync_state FROM invsync.listing_levels WHERE sku = 'S21'", 'dead'),
	'the failed SKU\'s listing is a dead letter');
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'S22-W1'", '7'),
	'the other SKU of the same call was published');
is($node->safe_psql('postgres',
	"SELECT string_agg(sku || ':' || sync_state, ',' ORDER BY sku) FROM invsync.listing_levels WHERE sku <> 'S21'"),
	join(',', map { "$_:synced" } grep { $_ ne 'S21' } sort keys %listings), 'no other listing is dead');
like($node->safe_psql('postgres',
	"SELECT q.last_error FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id) WHERE l.sku = 'S21'"),
	qr/Product locked for Promotion/, 'the dead letter holds TikTok\'s reason');
is(stock()->{'S22/W1'}{quantity}, 7, 'the marketplace holds S22\'s level');
is_deeply(stock()->{'S21/W1'}{history}, [0], 'and never got the failed SKU\'s new level');

# ----- faults: convergence, no stale overwrite --------------------------------
my @kinds = qw(http_500 http_503 timeout reset malformed_json empty_body throttle
  error_server_busy apply_then_reset latency);
sim_post($sim, '/_sim/faults', { rules => [ map {
	{
		kind => $_,
		probability => 0.05,
		$_ eq 'timeout' ? (delay_ms => 2500) : (),
		$_ eq 'latency' ? (delay_ms => 300) : (),
		$_ eq 'throttle' ? (retry_after => 1) : (),
	}
} @kinds ] });
my @live = grep { $_ ne 'S21' } sort keys %listings;
my $array = join(',', map { "'$_'" } @live);
$node->pgbench(
	'--no-vacuum --client=2 --jobs=2 --transactions=300 --rate=30',
	0,
	[qr{number of transactions actually processed: 600/600}],
	[qr{^$}],
	'two sessions commit 600 changes',
	{
		'031_adjust.sql' => qq{
\\set i random(1, ${\ scalar @live})
\\set d random(1, 5)
SELECT FROM invsync.adjust((ARRAY[$array])[:i], 'WH1', :d, 'receipt', gen_random_uuid()::text);
}
	},
	'postgres');
# let the faults hit for a while longer, then stop them
$node->safe_psql('postgres', 'SELECT pg_sleep(2)');
sim_post($sim, '/_sim/faults', { rules => [] });
ok(wait_for($node,
	"SELECT count(*) FROM invsync.listing_levels WHERE sku <> 'S21' AND (sync_state <> 'synced' OR pushed_level <> level)",
	'0', 45), 'every listing converges once the faults stop');
my $stats = sim_get($sim, '/_sim/stats');
note('faults fired: ' . encode_json($stats->{faults}));
cmp_ok(scalar(grep { $_ } values %{ $stats->{faults} }), '>=', 5, 'the faults did fire');
my $stock = stock();
my @levels = split /\n/, $node->safe_psql('postgres',
	"SELECT sku || ' ' || level FROM invsync.listing_levels WHERE sku <> 'S21' ORDER BY sku");
my @mismatch;
for my $line (@levels)
{
	my ($sku, $level) = split / /, $line;
	my ($p, $s, $w) = @{ $listings{$sku} };
	my $held = $stock->{ "$s/" . ($w // 'W1') }{quantity};
	push @mismatch, "$sku: ledger $level, marketplace $held" if $held != $level;
}
is(join('; ', @mismatch), '', 'the marketplace holds exactly the ledger\'s levels');
my @stale;
for my $key (sort keys %$stock)
{
	my @h = @{ $stock->{$key}{history} };
	for my $i (1 .. $#h)
	{
		push @stale, "$key: $h[$i - 1] then $h[$i]" if $h[$i] < $h[ $i - 1 ] && $key ne 'S12/W1';
	}
}
is(join('; ', @stale), '', 'no level ever went back to an older one (levels only grew)');

# every call carried every warehouse of S11 and of S22
my @split;
for my $entry (@{ log_since(0) })
{
	next unless $entry->{path} =~ m{/inventory/update$} && $entry->{body};
	my $doc = eval { decode_json($entry->{body}) } or next;
	for my $sku (@{ $doc->{skus} })
	{
		next unless $sku->{id} eq 'S11' || $sku->{id} eq 'S22';
		my $w = join(',', sort map { $_->{warehouse_id} // '-' } @{ $sku->{inventory} });
		push @split, "seq $entry->{seq} $sku->{id}: $w" if $w ne 'W1,W2';
	}
}
is(join('; ', @split), '', 'a SKU with two warehouses was always pushed with both');

# ----- an expired token: refreshed once, the push resent ---------------------
my $seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
my $refreshes = sim_get($sim, '/_sim/stats')->{refreshes};
sim_post($sim, '/_sim/expire_token', { shop_cipher => $cipher });
$node->safe_psql('postgres', q{SELECT FROM invsync.adjust('S13', 'WH1', 1, 'receipt', 'tt-6')});
ok(wait_for($node,
	"SELECT sync_state = 'synced' AND pushed_level = level FROM invsync.listing_levels WHERE sku = 'S13'", 't'),
	'the change is published after the token expired');
is(sim_get($sim, '/_sim/stats')->{refreshes} - $refreshes, 1, 'exactly one refresh');
my @calls = map {
	($_->{path} eq '/api/v2/token/refresh' ? 'refresh' : 'push') . ":$_->{status}:" . ($_->{code} // '')
} @{ log_since($seq) };
is(join(' ', @calls), 'push:401:105002 refresh:200:0 push:200:0',
	'one refused push, one refresh, the push resent');
my $sim_shop = sim_get($sim, "/_sim/shops?shop_cipher=$cipher");
$sim_shop = $sim_shop->{shop} if $sim_shop->{shop};
is($node->safe_psql('postgres', "SELECT access_token || ' ' || refresh_token FROM invsync.shops WHERE shop_id = $shop"),
	"$sim_shop->{access_token} $sim_shop->{refresh_token}", 'the new (rotated) pair is stored');
my $expiry = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM access_expires_at)::bigint FROM invsync.shops WHERE shop_id = $shop");
is($expiry, int($sim_shop->{access_expires_at}), 'its expiry is the absolute time TikTok sent');

# ----- throttling honoured ----------------------------------------------------
$stats = sim_get($sim, '/_sim/stats');
note("peak per second: $stats->{peak_per_second}{$cipher}, requests: $stats->{requests}");
cmp_ok($stats->{peak_per_second}{$cipher}, '<=', $sim_limit,
	"no second saw more requests than the simulator's limit of $sim_limit");
is($stats->{throttled}, 0, 'the simulator\'s rate limiter never answered 429');

# ----- a call refused as a whole is split ------------------------------------
# TikTok refuses the whole call (HTTP 400) when one SKU's warehouses do not
# match, without naming it in data.errors[]: S32 has two warehouses, but
# invsync lists only one.  The SKUs are sent again one by one: S31 goes
# through, S32's listing alone becomes a dead letter with TikTok's reason.
my $p3 = '1729000000000000003';
sim_post($sim, '/_sim/products',
	{ shop_cipher => $cipher, product_id => $p3, skus => { S31 => ['W1'], S32 => [ 'W1', 'W2' ] } });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_item('S31');
	SELECT invsync.upsert_item('S32');
	INSERT INTO invsync.listings (shop_id, sku, external_ids)
	VALUES ($shop, 'S31', '{"product_id": "$p3", "sku_id": "S31", "warehouse_id": "W1"}'),
		   ($shop, 'S32', '{"product_id": "$p3", "sku_id": "S32", "warehouse_id": "W1"}');
});
ok(wait_for($node, q{SELECT string_agg(sku || ':' || sync_state, ' ' ORDER BY sku)
		FROM invsync.listing_levels WHERE sku IN ('S31', 'S32')}, 'S31:synced S32:dead', 30),
	'the SKU at fault is refused alone, the other goes through');
like($node->safe_psql('postgres', q{SELECT last_error FROM invsync.sync_queue q
		JOIN invsync.listings l USING (tenant_id, listing_id) WHERE l.sku = 'S32'}),
	qr/W2/, "with TikTok's reason");
is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_attempts
		WHERE error_class = 'split' AND cardinality(listing_ids) = 2}),
	'1', 'after the one call refused as a whole');

# ----- a sibling group larger than the app's batch goes whole, alone ----------
$node->safe_psql('postgres', q{UPDATE invsync.apps SET batch_size = 1});
$node->safe_psql('postgres', q{
	SET invsync.correlation_id = 'tiktok-group-alone';
	SELECT FROM invsync.adjust('S11-W2', 'WH1', 4, 'receipt', 'tt-group-1');
});
ok(wait_for($node, q{SELECT pushed_level = level AND sync_state = 'synced'
		FROM invsync.listing_levels WHERE sku = 'S11-W2'}, 't'),
	'with batch_size 1, a change of one warehouse of S11 is published');
my @alone = grep { ($_->{headers}{'x-correlation-id'} // '') =~ /tiktok-group-alone/ } @{ log_since(0) };
is(scalar @alone, 1, 'in one request');
($s11) = grep { $_->{id} eq 'S11' } @{ decode_json($alone[0]{body})->{skus} };
is_deeply([ sort map { $_->{warehouse_id} } @{ $s11->{inventory} } ], [ 'W1', 'W2' ],
	'carrying both warehouses of S11, two listings past the batch size of one');
$node->safe_psql('postgres', q{UPDATE invsync.apps SET batch_size = NULL});

secrets_absent_from_log($node, $secret, "access-$cipher-initial-token", "refresh-$cipher-initial-token",
	$sim_shop->{access_token}, $sim_shop->{refresh_token});

$node->stop;
done_testing();
