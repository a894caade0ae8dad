
# Copyright (c) 2026, invsync developers

# Permanent failures: the marketplace refuses some models of an item for
# good (failure_list).  Only those listings become dead letters, with the
# marketplace's own message, and are not retried; the other models of the
# same request are synced.  Once the marketplace is fixed, retry_dead()
# re-drives them with their newest level.  An item the marketplace does not
# know dead-letters too.  resync(shop) pushes every listing again even
# though no level changed.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = start_node('dead');
my $sim = start_simulator(seed => 14);
my $shop = create_shop($node, $sim);

my %fail = ('2' => 'Stock of this model is locked by an ongoing promotion.',
	'4' => 'This model is managed by the seller warehouse.');
sim_post($sim, '/_sim/items',
	{ shop_id => 5001, item_id => 700001, models => [ 1 .. 5 ], fail_models => \%fail });

$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('TEE-' || m) FROM generate_series(1, 5) m;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	SELECT $shop, 'TEE-' || m, '700001', m::text FROM generate_series(1, 5) m;
	SELECT FROM generate_series(1, 5) m,
		LATERAL invsync.adjust('TEE-' || m, 'WH1', 10 * m, 'receipt', 'tee-' || m);
	COMMIT;
});

sub state_of
{
	return $node->safe_psql('postgres', q{
		SELECT string_agg(l.sku || '=' || q.state, ',' ORDER BY l.sku)
		  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		 WHERE l.sku LIKE 'TEE-%'});
}
ok( wait_for(
		$node, q{SELECT count(*) FROM invsync.sync_queue q
				  JOIN invsync.listings l USING (tenant_id, listing_id)
				 WHERE l.sku LIKE 'TEE-%' AND (q.state = 'dead' OR q.pushed_level = 10 * substr(l.sku, 5)::int)},
		'5'),
	'every TEE listing is settled');
is(state_of(), 'TEE-1=synced,TEE-2=dead,TEE-3=synced,TEE-4=dead,TEE-5=synced',
	'only the refused models are dead letters');

is( $node->safe_psql('postgres', q{
		SELECT string_agg(sku || '|' || external_model_id || '|' || target_level || '|' || last_error, E'\n' ORDER BY sku)
		  FROM invsync.dead_letters}),
	"TEE-2|2|20|$fail{2}\nTEE-4|4|40|$fail{4}",
	"dead_letters shows them with the marketplace's message");
is($node->safe_psql('postgres', 'SELECT dead FROM invsync.sync_status'), '2', 'sync_status counts them');

my %stock = map { ($_->{model_id} => $_) } @{ sim_get($sim, '/_sim/stock?shop_id=5001')->{stock} };
is(join(',', map { $stock{$_}{stock} } 1 .. 5), '10,0,30,0,50',
	'the other models of the same item hold their levels');
is(scalar(@{ $stock{2}{history} }) + scalar(@{ $stock{4}{history} }), 0, 'the refused models were never set');

is( $node->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT outcome, ',') FROM invsync.sync_attempts
		 WHERE kind = 'stock_update' AND cardinality(listing_ids) > 1}),
	'partial', 'the batch is recorded as a partial failure');

# dead letters are not retried, even when their stock changes
$node->safe_psql('postgres', q{SELECT FROM invsync.adjust('TEE-2', 'WH1', 1, 'receipt', 'tee-2-more')});
usleep(1_500_000);    # longer than invsync.backoff_max
my $log = sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries};
my @model2 = grep { $_->{body} =~ /"model_id":2,/ } @$log;
is(scalar(@model2), 1, 'the dead listing was sent once and not retried');
is(state_of(), 'TEE-1=synced,TEE-2=dead,TEE-3=synced,TEE-4=dead,TEE-5=synced',
	'a new change to a dead letter keeps it dead');

# an item the marketplace does not have
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT invsync.upsert_item('GHOST');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($shop, 'GHOST', '799999');
	SELECT FROM invsync.adjust('GHOST', 'WH1', 3, 'receipt', 'ghost-1');
	COMMIT;
});
ok(wait_for($node, q{SELECT count(*) FROM invsync.dead_letters WHERE sku = 'GHOST'}, '1'),
	'an unknown item becomes a dead letter');
like($node->safe_psql('postgres', q{SELECT last_error_class || ' ' || last_error FROM invsync.dead_letters WHERE sku = 'GHOST'}),
	qr/error_item_not_found Item not found\.$/, 'with the marketplace error and message');

# the marketplace is fixed: retry_dead re-drives them, with their newest level
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [ 1 .. 5 ] });
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 799999, models => [0] });
is($node->safe_psql('postgres', "SELECT invsync.retry_dead($shop)"), '3', 'retry_dead() re-drives the 3 dead letters');
ok( wait_for(
		$node, q{SELECT count(*) FROM invsync.listing_levels WHERE sync_state = 'synced' AND pushed_level = level},
		'6'),
	'after retry_dead() every listing is synced');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.dead_letters'), '0', 'no dead letter is left');
%stock = map { ("$_->{item_id}/$_->{model_id}" => $_->{stock}) } @{ sim_get($sim, '/_sim/stock?shop_id=5001')->{stock} };
is(join(',', map { $stock{"700001/$_"} } 1 .. 5) . ',' . $stock{'799999/0'}, '10,21,30,40,50,3',
	'the marketplace holds every level, the newest one for the re-driven listing');

# resync pushes every listing again, though no level changed
my $since = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};
is($node->safe_psql('postgres', "SELECT invsync.resync($shop)"), '6', 'resync() queues the 6 listings');
ok( wait_for(
		$node, q{SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced' AND NOT force_push},
		'6'),
	'the resync is done');
my @again = grep { $_->{path} eq '/api/v2/product/update_stock' && $_->{status} eq '200' }
  @{ sim_get($sim, "/_sim/log?since=$since&limit=100000")->{entries} };
my %sent = map { my $e = $_; map { ("$e->{item_id}/$_->{model_id}" => $_->{stock}) } @{ $e->{applied} } } @again;
is(join(',', map { $sent{$_} // 'none' } ((map { "700001/$_" } 1 .. 5), '799999/0')), '10,21,30,40,50,3',
	'the marketplace received every listing again, at its unchanged level');
is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.listing_levels WHERE pushed_level <> level}),
	'0', 'levels unchanged');

ok(!$node->log_contains(qr/ERROR:|WARNING:/), 'the server log has no ERROR or WARNING');

$node->stop;
done_testing();
