
# Copyright (c) 2026, invsync developers

# A shop's rate limit is honoured: the marketplace (the Shopee simulator,
# rate limiting the shop with a token bucket of 5 requests per second and
# a burst of 5) counts the requests of every sliding second and never sees
# more than it allows, nor refuses one.  Another shop without a limit, on
# the same worker at the same time, is not slowed by the first one's.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = start_node('rate_limits');
my $sim = start_simulator();
my $slow = create_shop($node, $sim, partner_id => 1001, shop_id => 5001,
	rate_limit => 5, sim_rate_limit => 5);
my $fast = create_shop($node, $sim, partner_id => 1002, shop_id => 5002,
	rate_limit => 1000);
my $n = 30;
for my $i (1 .. $n)
{
	sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 100000 + $i, models => [0] });
	sim_post($sim, '/_sim/items', { shop_id => 5002, item_id => 200000 + $i, models => [0] });
}

# one item per listing: one request each; both shops queued in one commit
my $start = time();
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT count(invsync.upsert_item('SKU-' || i)) FROM generate_series(1, $n) i;
	SELECT count(*) FROM generate_series(1, $n) i,
		LATERAL invsync.set_on_hand('SKU-' || i, 'WH1', i, 'count', 'rl-' || i);
	INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	SELECT $slow, 'SKU-' || i, (100000 + i)::text FROM generate_series(1, $n) i
	UNION ALL
	SELECT $fast, 'SKU-' || i, (200000 + i)::text FROM generate_series(1, $n) i;
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND shop_id = $fast",
		$n, 30), 'the shop without a limit publishes every listing');
my $fast_seconds = time() - $start;
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND shop_id = $slow",
		$n, 60), 'the rate-limited shop publishes every listing');
my $slow_seconds = time() - $start;
diag(sprintf('%d listings each: %.1f s for the shop without a limit, %.1f s at 5 requests/s',
		$n, $fast_seconds, $slow_seconds));

my $stats = sim_get($sim, '/_sim/stats');
my $peak = $stats->{peak_per_second}{5001};
ok($peak >= 5 && $peak <= 10,
	"the marketplace saw at most the shop's rate plus its burst in any second ($peak)");
is($stats->{throttled}, 0, 'and never had to refuse a request for it');
ok($slow_seconds >= ($n - 5) / 5 - 1, 'the limited shop took as long as its rate requires');
ok($fast_seconds < $slow_seconds / 2, 'the other shop did not wait for it');

# A shop whose request has been answered leaves the worker's cache once it
# is idle (here at once: the worker looks every 200 ms), but not with its
# token bucket empty: at one request every two seconds, a change made a
# second after a push waits for the next token.
$node->append_conf('postgresql.conf', "invsync.idle_shop_retention = 0\n");
$node->reload;
my $sparse = create_shop($node, $sim, partner_id => 1003, shop_id => 5003,
	rate_limit => 0.5);
sim_post($sim, '/_sim/items', { shop_id => 5003, item_id => 300001, models => [0] });
$node->safe_psql('postgres', qq{
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($sparse, 'SKU-1', '300001');
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND shop_id = $sparse",
		1, 30), 'the sparse shop publishes its listing');
$node->safe_psql('postgres', qq{
	SELECT pg_sleep_until(min(started_at) + interval '1 second')
	  FROM invsync.sync_attempts WHERE shop_id = $sparse;
	SELECT FROM invsync.adjust('SKU-1', 'WH1', 1, 'count', 'rl-sparse');
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_attempts WHERE shop_id = $sparse AND outcome = 'ok'",
		2, 30), 'and the change made a second later');
my $gap = $node->safe_psql('postgres', qq{
	SELECT extract(epoch FROM max(started_at) - min(started_at))
	  FROM invsync.sync_attempts WHERE shop_id = $sparse});
cmp_ok($gap, '>=', 1.8, "its second request waited for a token ($gap s after the first)");

done_testing();
