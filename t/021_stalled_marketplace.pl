
# Copyright (c) 2026, invsync developers

# A stalled marketplace does not delay pushes to the others.  Two shops on
# two simulators sell one sku; the commit-to-marketplace latency of shop B
# is measured with both answering, then while shop A's marketplace accepts
# connections and never answers (every request to it runs into the HTTP
# timeout, 2 s here).  Had B's pushes waited behind A's, some would take
# the timeout; they must stay as fast as before.  Once A answers again, it
# converges to the same level.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = start_node('stalled');
my $sim_a = start_simulator(seed => 1);
my $sim_b = start_simulator(seed => 2);
my $shop_a = create_shop($node, $sim_a, partner_id => 1001, shop_id => 5001);
my $shop_b = create_shop($node, $sim_b, partner_id => 1002, shop_id => 5002);
sim_post($sim_a, '/_sim/items', { shop_id => 5001, item_id => 900001, models => [0] });
sim_post($sim_b, '/_sim/items', { shop_id => 5002, item_id => 900002, models => [0] });

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('MUG');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	VALUES ($shop_a, 'MUG', '900001'), ($shop_b, 'MUG', '900002');
	SELECT FROM invsync.set_on_hand('MUG', 'WH1', 1, 'count', 'stall-0');
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND pushed_level = 1", '2'),
	'both shops publish');

# the level the simulator shows for an item
sub level_at
{
	my ($sim, $shop) = @_;
	my ($row) = @{ sim_get($sim, "/_sim/stock?shop_id=$shop")->{stock} };
	return $row->{stock};
}

# commit a new level; milliseconds until shop B's marketplace shows it
my $next = 1;
sub latency_at_b
{
	$next++;
	my $start = time();
	$node->safe_psql('postgres',
		"SELECT FROM invsync.set_on_hand('MUG', 'WH1', $next, 'count', 'stall-$next')");
	while (time() - $start < 20)
	{
		return (time() - $start) * 1000 if level_at($sim_b, 5002) == $next;
		usleep(10_000);
	}
	return 20_000;
}

sub summary
{
	my @sorted = sort { $a <=> $b } @_;
	return ($sorted[int($#sorted / 2)], $sorted[-1]);
}

my @baseline = map { latency_at_b() } 1 .. 15;
my ($base_p50, $base_max) = summary(@baseline);

sim_post($sim_a, '/_sim/faults', { rules => [ { kind => 'timeout', delay_ms => 60_000 } ] });
# spread over more than the HTTP timeout, so that A's requests hang the
# whole time
my @stalled = map { usleep(200_000); latency_at_b() } 1 .. 15;
my ($stall_p50, $stall_max) = summary(@stalled);
diag(sprintf('shop B commit-to-marketplace: %.0f ms p50, %.0f ms max with A answering; '
	  . '%.0f ms p50, %.0f ms max with A stalled', $base_p50, $base_max, $stall_p50, $stall_max));

my $stalled_requests = grep { ($_->{status} // '') eq 'timeout' }
  @{ sim_get($sim_a, '/_sim/log?since=0&limit=100000')->{entries} };
ok($stalled_requests >= 1, "shop A's marketplace held requests without answering ($stalled_requests)");
ok($stall_max < 1500,
	'no push to shop B waited for shop A: every one under the 2 s HTTP timeout by far');
ok($stall_p50 <= 3 * $base_p50 + 100,
	'shop B is about as fast with A stalled as with A answering');

sim_post($sim_a, '/_sim/faults', { rules => [] });
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE shop_id = $shop_a", $next, 30),
	'shop A converges once its marketplace answers again');
is(level_at($sim_a, 5001), $next, "and its marketplace shows the newest level");

done_testing();
