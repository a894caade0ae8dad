
# Copyright (c) 2026, invsync developers

# A stalled marketplace does not delay pushes to the others.  One sku is
# listed on Shopee, Lazada and TikTok Shop.  The commit-to-marketplace
# latency at Shopee and Lazada is measured with every marketplace
# answering, then while TikTok Shop accepts connections and never answers
# (every request to it runs into the HTTP timeout, 2 s here).  Had a push
# to Shopee or Lazada waited behind TikTok's, it would have taken the
# timeout; they must stay as fast as before.  Once TikTok answers again,
# it converges to the same level.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = start_node('stalled');
my $shopee_sim = start_simulator(seed => 1);
my $lazada_sim = start_lazada_simulator(seed => 2);
my $tiktok_sim = start_simulator(script => 'tiktok_sim.py', seed => 3);
my $shopee = create_shop($node, $shopee_sim, shop_id => 5002);
sim_post($shopee_sim, '/_sim/items', { shop_id => 5002, item_id => 900002, models => [0] });
my $lazada = create_lazada_shop($node, $lazada_sim, seller_id => '200001');
sim_post($lazada_sim, '/_sim/products',
	{ seller_id => '200001', item_id => 9003, skus => [ { sku_id => 90031, seller_sku => 'MUG' } ] });
my $tiktok = create_tiktok_shop($node, $tiktok_sim, shop_cipher => 'ROW_STALLED', region => 'SG');
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => 'ROW_STALLED', product_id => '1729000000000000021', skus => { S1 => ['W1'] } });

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('MUG');
	INSERT INTO invsync.listings (shop_id, sku, external_ids)
	VALUES ($shopee, 'MUG', '{"item_id": "900002"}'),
		   ($lazada, 'MUG', '{"item_id": "9003", "sku_id": "90031"}'),
		   ($tiktok, 'MUG', '{"product_id": "1729000000000000021", "sku_id": "S1", "warehouse_id": "W1"}');
	SELECT FROM invsync.set_on_hand('MUG', 'WH1', 1, 'count', 'stall-1');
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND pushed_level = 1", '3'),
	'every marketplace publishes');

# the level each marketplace shows
sub shopee_level { return sim_get($shopee_sim, '/_sim/stock?shop_id=5002')->{stock}[0]{stock}; }
sub lazada_level { return sim_get($lazada_sim, '/_sim/stock?seller_id=200001')->{stock}[0]{quantity}; }
sub tiktok_level { return sim_get($tiktok_sim, '/_sim/stock?shop_cipher=ROW_STALLED')->{stock}[0]{quantity}; }

# commit a new level; milliseconds until Shopee and Lazada both show it,
# each on its own
my $next = 1;
sub latencies
{
	$next++;
	my $start = time();
	my %done;
	$node->safe_psql('postgres',
		"SELECT FROM invsync.set_on_hand('MUG', 'WH1', $next, 'count', 'stall-$next')");
	while (keys %done < 2 && time() - $start < 20)
	{
		$done{shopee} //= (time() - $start) * 1000 if shopee_level() == $next;
		$done{lazada} //= (time() - $start) * 1000 if lazada_level() == $next;
		usleep(10_000);
	}
	return ($done{shopee} // 20_000, $done{lazada} // 20_000);
}

sub summary
{
	my @sorted = sort { $a <=> $b } @_;
	return ($sorted[ int($#sorted / 2) ], $sorted[-1]);
}

my (@base, @stalled);
push @base, [ latencies() ] for 1 .. 12;

sim_post($tiktok_sim, '/_sim/faults', { rules => [ { kind => 'hang' } ] });
# spread over more than the HTTP timeout, so that TikTok's requests hang
# the whole time
for (1 .. 12)
{
	usleep(200_000);
	push @stalled, [ latencies() ];
}

for my $i (0, 1)
{
	my $name = $i ? 'Lazada' : 'Shopee';
	my ($base_p50, $base_max) = summary(map { $_->[$i] } @base);
	my ($stall_p50, $stall_max) = summary(map { $_->[$i] } @stalled);
	diag(sprintf('%s commit-to-marketplace: %.0f ms p50, %.0f ms max with TikTok answering; '
		  . '%.0f ms p50, %.0f ms max with TikTok stalled', $name, $base_p50, $base_max,
		  $stall_p50, $stall_max));
	ok($stall_max < 1500,
		"no push to $name waited for TikTok: every one well under the 2 s HTTP timeout");
	ok($stall_p50 <= 3 * $base_p50 + 100,
		"$name is about as fast with TikTok stalled as with TikTok answering");
}

my $hung = grep { ($_->{status} // '') eq 'hang' }
  @{ sim_get($tiktok_sim, '/_sim/log?since=0&limit=100000')->{entries} };
ok($hung >= 1, "TikTok held requests without answering ($hung)");

sim_post($tiktok_sim, '/_sim/faults', { rules => [] });
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE shop_id = $tiktok", $next, 30),
	'TikTok converges once it answers again');
is(tiktok_level(), $next, 'and shows the newest level');

done_testing();
