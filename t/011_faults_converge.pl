
# Copyright (c) 2026, invsync developers

# Convergence under faults: 10,000 committed changes to 200 listings (20
# items x 10 models, two locations each), made by four concurrent sessions
# in 10,000 transactions, while the simulator fails about 30% of the
# requests in every way it knows (5xx, timeouts longer than
# invsync.http_timeout, resets, malformed JSON, throttling with
# Retry-After, "system busy", applied-then-reset, latency).  Once the
# faults stop, the marketplace holds exactly the ledger's levels, every
# queue row is synced, and no model ever went back to an older level
# (levels only grow here, so the history of each model must be
# non-decreasing).  The attempt log shows the retries and the throttling.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $items = 20;
my $models = 10;
my $listings = $items * $models;

my $node = start_node('faults', max_connections => 40);
my $sim = start_simulator(seed => 11);
my $shop = create_shop($node, $sim, max_in_flight => 8);

for my $i (1 .. $items)
{
	sim_post($sim, '/_sim/items',
		{ shop_id => 5001, item_id => 800000 + $i, models => [ 1 .. $models ] });
}

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_location('WH2');
	SELECT invsync.upsert_item('SKU-' || i || '-' || m)
	  FROM generate_series(1, $items) i, generate_series(1, $models) m;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	SELECT $shop, 'SKU-' || i || '-' || m, (800000 + i)::text, m::text
	  FROM generate_series(1, $items) i, generate_series(1, $models) m;
});

# about 30% of all marketplace requests fail: nine kinds at 4% each
my @kinds = qw(http_500 http_503 timeout reset malformed_json throttle
  error_server_busy apply_then_reset latency);
my @rules = map {
	{
		kind => $_,
		probability => 0.04,
		$_ eq 'timeout' ? (delay_ms => 2500) : (),
		$_ eq 'latency' ? (delay_ms => 300) : (),
		$_ eq 'throttle' ? (retry_after => 1) : (),
	}
} @kinds;
sim_post($sim, '/_sim/faults', { rules => \@rules });

# 10,000 positive adjustments, one per transaction, four sessions at once,
# spread over about ten seconds so that pushes are in flight all along
my $start = time();
$node->pgbench(
	'--no-vacuum --client=4 --jobs=4 --transactions=2500 --rate=1000',
	0,
	[qr{number of transactions actually processed: 10000/10000}],
	[qr{^$}],
	'four sessions commit 10,000 changes',
	{
		'011_adjust.sql' => q{
\set i random(1, 20)
\set m random(1, 10)
\set w random(1, 2)
\set d random(1, 5)
SELECT FROM invsync.adjust('SKU-' || :i || '-' || :m, 'WH' || :w, :d, 'receipt', gen_random_uuid()::text);
}
	},
	'postgres');
note(sprintf('changes committed in %.1f s', time() - $start));

is($node->safe_psql('postgres', "SELECT count(*) FROM invsync.ledger WHERE reason = 'receipt'"),
	'10000', 'the ledger holds the 10,000 changes');

# let the worker run under faults a little longer, then stop them
sleep 2;
my $faults = sim_get($sim, '/_sim/faults')->{rules};
sim_post($sim, '/_sim/faults', { rules => [] });

my $stats = sim_get($sim, '/_sim/stats');
note('simulator stats under faults: ' . JSON::PP->new->canonical->encode($stats));
for my $rule (@$faults)
{
	cmp_ok($rule->{fired}, '>', 0, "fault $rule->{kind} fired ($rule->{fired} times)");
}

ok( wait_for(
		$node,
		"SELECT count(*) FROM invsync.listing_levels WHERE sync_state = 'synced' AND pushed_level = level",
		"$listings", 60),
	'every listing is synced at its computed level');
note(sprintf('converged %.1f s after the first change', time() - $start));

is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency()'),
	'0', 'stock levels equal the ledger');
is($node->safe_psql('postgres', q{SELECT state || ':' || count(*) FROM invsync.sync_queue GROUP BY state}),
	"synced:$listings", 'the whole queue is synced');

# the listing's level is the ledger's sum over both locations
my %expected = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT l.external_item_id || '/' || l.external_model_id || '|' ||
		   coalesce((SELECT sum(g.on_hand_change) FROM invsync.ledger g WHERE g.sku = l.sku), 0)
	  FROM invsync.listings l});
my %computed = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT external_item_id || '/' || external_model_id || '|' || level || '/' || pushed_level
	  FROM invsync.listing_levels});
is(scalar(keys %expected), $listings, "$listings listings");
is(scalar(grep { ($computed{$_} // '') ne "$expected{$_}/$expected{$_}" } keys %expected), 0,
	'each listing level and pushed level is the sum of its ledger');

my $stock = sim_get($sim, '/_sim/stock?shop_id=5001')->{stock};
is(scalar(@$stock), $listings, "the marketplace has $listings models");
my (@wrong, @stale);
for my $row (@$stock)
{
	my $key = "$row->{item_id}/$row->{model_id}";
	push @wrong, "$key: marketplace $row->{stock}, ledger " . ($expected{$key} // 'none')
	  unless defined $expected{$key} && $row->{stock} == $expected{$key};
	my $h = $row->{history};
	for my $i (1 .. $#$h)
	{
		if ($h->[$i] < $h->[ $i - 1 ])
		{
			push @stale, "$key: " . join(',', @$h);
			last;
		}
	}
}
is(scalar(@wrong), 0, 'every marketplace level equals the ledger')
  or diag(join("\n", @wrong[ 0 .. ($#wrong < 9 ? $#wrong : 9) ]));
is(scalar(@stale), 0, 'no model ever went back to an older level')
  or diag(join("\n", @stale[ 0 .. ($#stale < 9 ? $#stale : 9) ]));
# the check above means something only for models that received several
# levels; how many do depends on how the worker coalesced the burst
cmp_ok(scalar(grep { @{ $_->{history} } > 1 } @$stock), '>=', int($listings * 0.8),
	'most models received several levels, so the order of levels was put to the test');

# the attempt log saw each class of failure, and the throttling
my %classes = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT outcome || ':' || coalesce(error_class, '') || '|' || count(*)
	  FROM invsync.sync_attempts WHERE kind = 'stock_update' GROUP BY outcome, error_class});
note('attempts: ' . join(', ', map { "$_=$classes{$_}" } sort keys %classes));
ok($classes{'ok:'}, 'attempts that succeeded');
my $recorded = 0;
$recorded += $_ for values %classes;
note(sprintf('%d stock requests reached the marketplace, %d attempts recorded',
	scalar(grep { $_->{path} eq '/api/v2/product/update_stock' }
		  @{ sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries} }),
	$recorded));
ok($classes{'throttled:error_server'}, 'throttled attempts are classed throttled');
ok($classes{'retry:transport'}, 'timeouts and resets are retried (transport)');
ok($classes{'retry:http_500'} && $classes{'retry:http_503'}, '5xx answers are retried');
ok($classes{'retry:malformed_response'}, 'malformed answers are retried');
ok($classes{'retry:error_system_busy'}, '"system busy" is retried');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM invsync.sync_attempts WHERE outcome NOT IN ('ok', 'retry', 'throttled')"),
	'0', 'no attempt was classed permanent or auth');
is($node->safe_psql('postgres', "SELECT count(*) FROM invsync.sync_queue WHERE state = 'dead'"),
	'0', 'no dead letters');

# a throttle with Retry-After: 1 paused the shop for at least that long
my $paused = $node->safe_psql('postgres', q{
	SELECT count(*) FROM invsync.sync_attempts t
	 WHERE t.outcome = 'throttled'
	   AND EXISTS (SELECT FROM invsync.sync_attempts n
				   WHERE n.shop_id = t.shop_id AND n.kind = 'stock_update'
					 AND n.started_at > t.started_at
					 AND n.started_at < t.started_at + interval '900 ms'
					 AND n.started_at > t.started_at + t.latency_ms * interval '1 ms'
					 AND n.listing_ids && t.listing_ids)});
is($paused, '0', 'after Retry-After: 1 no listing of the throttled request was sent within the second');

secrets_absent_from_log($node, 'shpk-test-partner-key-0123456789', 'access-5001-initial-token',
	'refresh-5001-initial-token');

ok(!$node->log_contains(qr/ERROR:|WARNING:/), 'the server log has no ERROR or WARNING');

$node->stop;
done_testing();
