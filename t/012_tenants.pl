
# Copyright (c) 2026, invsync developers

# Two tenants in one database, each with its own shop (its own partner and
# shop id on the same simulator), the same sku and location codes and
# different stock.  Each shop receives only its own tenant's levels; the
# operating views show each tenant only its own shops, listings and dead
# letters; and a backlog in tenant 1, behind a slow marketplace shop, does
# not hold up tenant 2's changes.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = start_node('tenants');
my $sim = start_simulator(seed => 12);

# tenant 1: partner 1001, shop 5001; tenant 2: partner 1002, shop 5002
my $shop1 = create_shop($node, $sim, tenant => 1, partner_id => 1001, shop_id => 5001,
	partner_key => 'shpk-tenant-one-key-0123456789', max_in_flight => 2);
my $shop2 = create_shop($node, $sim, tenant => 2, partner_id => 1002, shop_id => 5002,
	partner_key => 'shpk-tenant-two-key-0123456789');
isnt($shop1, $shop2, 'the two shops are different rows');

sub t1 { return $node->safe_psql('postgres', "SET invsync.tenant = 1;\n" . $_[0]); }
sub t2 { return $node->safe_psql('postgres', "SET invsync.tenant = 2;\n" . $_[0]); }

# the same catalog codes in both tenants; the same item ids on both shops
sim_post($sim, '/_sim/items', { shop_id => $_, item_id => 900001, models => [ 1 .. 5 ] })
  for (5001, 5002);
for my $t ([ \&t1, $shop1 ], [ \&t2, $shop2 ])
{
	my ($run, $shop) = @$t;
	$run->(qq{
		SELECT invsync.upsert_location('WH1');
		SELECT invsync.upsert_item('SHIRT-' || m) FROM generate_series(1, 5) m;
		INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
		SELECT $shop, 'SHIRT-' || m, '900001', m::text FROM generate_series(1, 5) m;
	});
}
# tenant 1 holds 10 + m of SHIRT-m, tenant 2 holds 1000 + m
t1(q{SELECT FROM generate_series(1, 5) m,
	   LATERAL invsync.adjust('SHIRT-' || m, 'WH1', 10 + m, 'receipt', 'same-key-' || m)});
t2(q{SELECT FROM generate_series(1, 5) m,
	   LATERAL invsync.adjust('SHIRT-' || m, 'WH1', 1000 + m, 'receipt', 'same-key-' || m)});

my $synced = q{SELECT count(*) FROM invsync.listing_levels
				WHERE sync_state = 'synced' AND pushed_level = level};
ok(wait_for($node, "SET invsync.tenant = 1; $synced", '5'), 'tenant 1 synced');
ok(wait_for($node, "SET invsync.tenant = 2; $synced", '5'), 'tenant 2 synced');

sub sim_levels
{
	my ($shop_id, $item) = @_;
	my %levels;
	for my $row (@{ sim_get($sim, "/_sim/stock?shop_id=$shop_id")->{stock} })
	{
		next if defined $item && $row->{item_id} != $item;
		$levels{ $row->{model_id} } = $row;
	}
	return \%levels;
}
my $s1 = sim_levels(5001, 900001);
my $s2 = sim_levels(5002, 900001);
is(join(',', map { $s1->{$_}{stock} } 1 .. 5), '11,12,13,14,15', 'shop 5001 holds tenant 1 levels');
is(join(',', map { $s2->{$_}{stock} } 1 .. 5), '1001,1002,1003,1004,1005', 'shop 5002 holds tenant 2 levels');
ok(!(grep { $_ >= 1000 } map { @{ $s1->{$_}{history} } } 1 .. 5),
	'shop 5001 never received a tenant 2 level');
ok(!(grep { $_ > 0 && $_ < 1000 } map { @{ $s2->{$_}{history} } } 1 .. 5),
	'shop 5002 never received a tenant 1 level');

my $log = sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries};
my @misrouted = grep {
	$_->{path} eq '/api/v2/product/update_stock'
	  && !(($_->{shop_id} == 5001 && $_->{query}{partner_id} eq '1001')
		|| ($_->{shop_id} == 5002 && $_->{query}{partner_id} eq '1002'))
} @$log;
is(scalar(@misrouted), 0, "each shop's requests are signed by its own partner");
is(scalar(grep { $_->{status} ne '200' } @$log), 0, 'the simulator accepted every request');

# the views show each tenant only its own rows
is(t1('SELECT shop_id FROM invsync.sync_status'), $shop1, 'sync_status of tenant 1 shows only its shop');
is(t2('SELECT shop_id FROM invsync.sync_status'), $shop2, 'sync_status of tenant 2 shows only its shop');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.sync_status'), '0',
	'tenant 0 sees no shop');
is(t1(q{SELECT string_agg(sku || '=' || level, ',' ORDER BY sku) FROM invsync.listing_levels}),
	'SHIRT-1=11,SHIRT-2=12,SHIRT-3=13,SHIRT-4=14,SHIRT-5=15', 'listing_levels of tenant 1');
is(t2(q{SELECT string_agg(sku || '=' || level, ',' ORDER BY sku) FROM invsync.listing_levels}),
	'SHIRT-1=1001,SHIRT-2=1002,SHIRT-3=1003,SHIRT-4=1004,SHIRT-5=1005', 'listing_levels of tenant 2');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.listing_levels'), '0',
	'tenant 0 sees no listing');

# a dead letter in tenant 2 (an item the shop does not have) stays in tenant 2
t2(qq{SELECT invsync.upsert_item('GHOST');
	 INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	 VALUES ($shop2, 'GHOST', '999999');
	 SELECT FROM invsync.adjust('GHOST', 'WH1', 7, 'receipt', 'ghost-1');});
ok(wait_for($node, 'SET invsync.tenant = 2; SELECT count(*) FROM invsync.dead_letters', '1'),
	'tenant 2 has a dead letter');
is(t1('SELECT count(*) FROM invsync.dead_letters'), '0', 'tenant 1 does not see it');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.dead_letters'), '0',
	'tenant 0 does not see it');
is(t1('SELECT dead FROM invsync.sync_status'), '0', 'nor counts it in its sync_status');
is(t1('SELECT invsync.retry_dead()'), '0', 'retry_dead() in tenant 1 touches no tenant 2 row');
is(t2(q{SELECT state FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		 WHERE q.tenant_id = 2 AND l.sku = 'GHOST'}), 'dead', 'the tenant 2 dead letter is still dead');

# A backlog in tenant 1: 100 items of 5 models behind a marketplace shop
# that takes 1.5 s per request, at most 2 at a time: far more than it can
# take within the 6 s lease.  Each listing is created and changed in one
# transaction, so each has exactly one version to publish.
for my $i (1 .. 100)
{
	sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 910000 + $i, models => [ 1 .. 5 ] });
}
sim_post($sim, '/_sim/faults',
	{ rules => [ { kind => 'latency', delay_ms => 1500, shop_id => 5001 } ] });
my $backlog_start = time();
t1(qq{
	BEGIN;
	SELECT invsync.upsert_item('BULK-' || i || '-' || m)
	  FROM generate_series(1, 100) i, generate_series(1, 5) m;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	SELECT $shop1, 'BULK-' || i || '-' || m, (910000 + i)::text, m::text
	  FROM generate_series(1, 100) i, generate_series(1, 5) m;
	SELECT FROM generate_series(1, 100) i, generate_series(1, 5) m,
		LATERAL invsync.adjust('BULK-' || i || '-' || m, 'WH1', i * 10 + m, 'receipt', 'bulk-' || i || '-' || m);
	COMMIT;
});
usleep(500_000);
cmp_ok(t1('SELECT pending FROM invsync.sync_status'), '>', 400, 'tenant 1 has a backlog');

# tenant 2's change reaches its shop promptly, while tenant 1 still waits
for my $round (1 .. 3)
{
	my $committed = time();
	t2("SELECT FROM invsync.adjust('SHIRT-1', 'WH1', 1, 'receipt', 'prompt-$round')");
	my $want = 1001 + $round;
	my $arrived;
	while (time() - $committed < 10)
	{
		if (sim_levels(5002, 900001)->{1}{stock} == $want)
		{
			$arrived = time() - $committed;
			last;
		}
		usleep(20_000);
	}
	ok(defined $arrived && $arrived < 1.0,
		sprintf("round $round: tenant 2's change arrived in %.2f s despite tenant 1's backlog",
			$arrived // -1));
	usleep(1_500_000);
}
cmp_ok(t1('SELECT pending FROM invsync.sync_status'), '>', 0, 'tenant 1 was still working through its backlog');

# keep the shop slow for longer than the lease, so that claimed rows wait
# locally past it
usleep(1_000_000 * (10 - (time() - $backlog_start))) if time() - $backlog_start < 10;

# the backlog drains, exactly and without overlapping pushes of a listing
sim_post($sim, '/_sim/faults', { rules => [] });
ok(wait_for($node, "SET invsync.tenant = 1; $synced", '505', 60), 'tenant 1 backlog converges');
my %want1 = map { split /\|/ } split /\n/, t1(q{
	SELECT external_item_id || '/' || external_model_id || '|' || level FROM invsync.listing_levels});
my @mismatch;
my @regressed;
for my $row (@{ sim_get($sim, '/_sim/stock?shop_id=5001')->{stock} })
{
	my $key = "$row->{item_id}/$row->{model_id}";
	push @mismatch, "$key: $row->{stock} vs " . ($want1{$key} // 'none')
	  unless defined $want1{$key} && $want1{$key} == $row->{stock};
	my $h = $row->{history};
	push @regressed, "$key: @$h" if grep { $h->[$_] < $h->[ $_ - 1 ] } 1 .. $#$h;
}
is(scalar(@mismatch), 0, 'shop 5001 holds exactly tenant 1 levels') or diag(join("\n", grep { defined } @mismatch[0 .. 9]));
is(scalar(@regressed), 0, 'no level went backwards') or diag(join("\n", grep { defined } @regressed[0 .. 9]));
is( t1(q{
		SELECT count(*) FROM invsync.sync_attempts a JOIN invsync.sync_attempts b
		  ON a.tenant_id = 1 AND b.tenant_id = a.tenant_id AND b.attempt_id > a.attempt_id
		 AND a.kind = 'stock_update' AND b.kind = 'stock_update'
		 AND a.listing_ids && b.listing_ids
		 AND b.started_at < a.started_at + a.latency_ms * interval '1 ms'
		 AND a.started_at < b.started_at + b.latency_ms * interval '1 ms'}),
	'0', 'a listing never had two pushes in flight at once');
is( t1(q{
		SELECT count(*) FROM (
			SELECT a.listing_id, count(*) AS pushes
			  FROM invsync.sync_attempts t, unnest(t.listing_ids) AS a (listing_id)
			 WHERE t.tenant_id = 1 AND t.kind = 'stock_update' AND t.outcome = 'ok'
			   AND a.listing_id IN (SELECT listing_id FROM invsync.listings
									 WHERE tenant_id = 1 AND sku LIKE 'BULK-%')
			 GROUP BY a.listing_id) p
		 WHERE p.pushes = 1}),
	'500', 'each backlog listing, changed once, was pushed (successfully) exactly once');
is(t1(q{SELECT count(*) FROM invsync.sync_attempts WHERE tenant_id = 1 AND shop_id <> } . $shop1), '0',
	'tenant 1 attempt rows are only about its shop');
is(t2(q{SELECT count(*) FROM invsync.sync_attempts WHERE tenant_id = 2 AND shop_id <> } . $shop2), '0',
	'tenant 2 attempt rows are only about its shop');

secrets_absent_from_log($node, 'shpk-tenant-one-key-0123456789', 'shpk-tenant-two-key-0123456789',
	'access-5001-initial-token', 'access-5002-initial-token');

ok(!$node->log_contains(qr/ERROR:|WARNING:/), 'the server log has no ERROR or WARNING');

$node->stop;
done_testing();
