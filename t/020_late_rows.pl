# Copyright (c) 2026, invsync developers
#
# Rows that wait past the time they could still be sent within their lease
# go back to the queue and are claimed afresh; the worker neither spins on
# them nor stops serving.  The marketplace throttles the shop's first
# request for 5 s, longer than the 3 s send window (lease 6 s, HTTP timeout
# 2 s, connect 1 s), while the worker holds as many rows as it may (batch 1:
# two rows).  Before 0.3, a full local queue of late rows was never handed
# back, and when the pause ended the worker built empty requests for them
# for ever, deaf to SIGTERM: the hang t/012 met on a busy machine, where
# starvation made rows late the same way.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = start_node('late_rows', 'invsync.batch_size' => '1');
my $sim = start_simulator(seed => 20);
my $shop = create_shop($node, $sim, rate_limit => 2, max_in_flight => 1);
my $listings = 6;
for my $i (1 .. $listings)
{
	sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 600000 + $i, models => [0] });
}
sim_post($sim, '/_sim/faults',
	{ rules => [ { kind => 'throttle', count => 1, retry_after => 5 } ] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT count(invsync.upsert_item('LATE-' || i)) FROM generate_series(1, $listings) i;
	SELECT count(*) FROM generate_series(1, $listings) i,
		LATERAL invsync.adjust('LATE-' || i, 'WH1', i, 'receipt', 'late-' || i);
	INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	SELECT $shop, 'LATE-' || i, (600000 + i)::text FROM generate_series(1, $listings) i;
});

my $synced = q{SELECT count(*) FROM invsync.listing_levels
				WHERE sync_state = 'synced' AND pushed_level = level};
ok(wait_for($node, $synced, "$listings", 60),
	"all $listings listings are published after the shop's 5 s pause");

my $stock = sim_get($sim, '/_sim/stock?shop_id=5001')->{stock};
my @wrong = grep { $_->{stock} != $_->{item_id} - 600000 } @$stock;
is(scalar @wrong, 0, 'the marketplace holds every level');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM invsync.sync_attempts WHERE outcome = 'ok'}),
	"$listings", 'one successful push per listing: late rows went back unsent');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM invsync.sync_attempts WHERE outcome = 'throttled'}),
	'1', 'after the one throttled request');

my $pid = worker_pid($node);
my $start = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 5),
	'the worker still answers SIGTERM at once');
cmp_ok(time() - $start, '<', 5, 'within 5 s');

$node->stop;
done_testing();
