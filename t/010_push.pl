
# Copyright (c) 2026, invsync developers

# A committed stock change reaches the marketplace (the Shopee simulator
# over HTTPS, verifying signature, timestamp and token) with the right level
# and correlation id; a rolled-back one never does.  The worker shows in
# pg_stat_activity, survives the extension being dropped, and logs no
# secret.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_node('push');
my $sim = start_simulator();
my $shop = create_shop($node, $sim);
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [ 11, 12 ] });

like(worker_pid($node), qr/^\d+$/, 'the worker shows in pg_stat_activity');

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('TSHIRT-M');
	SELECT invsync.upsert_item('TSHIRT-L');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	VALUES ($shop, 'TSHIRT-M', '700001', '11'), ($shop, 'TSHIRT-L', '700001', '12');
});
ok(wait_for($node, "SELECT count(*) FROM invsync.sync_queue WHERE state = 'synced'", '2'),
	'new listings publish their level');

$node->safe_psql('postgres', qq{
	SET invsync.correlation_id = 'order-sync-test-42';
	SELECT FROM invsync.adjust('TSHIRT-M', 'WH1', 25, 'receipt', 'push-1');
});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'TSHIRT-M'", '25'),
	'the committed level was published');

my $stock = sim_get($sim, '/_sim/stock?shop_id=5001');
my ($m11) = grep { $_->{model_id} == 11 } @{ $stock->{stock} };
is($m11->{stock}, 25, 'the marketplace holds the new level');

my $log = sim_get($sim, '/_sim/log?since=0&limit=1000')->{entries};
my ($push) = grep { ($_->{headers}{'X-Correlation-ID'} // '') =~ /order-sync-test-42/ } @$log;
ok($push, 'the request carried the correlation id in X-Correlation-ID');
is($push->{status}, 200, 'the marketplace accepted the signature, timestamp and token');
like($push->{body}, qr/"model_id":11,"seller_stock":\[\{"stock":25\}\]/, 'the body carries the absolute level');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM invsync.sync_attempts WHERE correlation_id LIKE '%order-sync-test-42%' AND outcome = 'ok' AND http_status = 200"),
	'1', 'the attempt row carries the correlation id and the outcome');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM invsync.sync_attempts WHERE request_url LIKE '%access-5001%' OR request_url NOT LIKE '%sign=[redacted]%'"),
	'0', 'attempt rows hold no token or signature');

# the worker's counters: its pid, the three rows it claimed and recorded,
# none in flight, its one shop still held (idle for less than
# invsync.idle_shop_retention), every request it finished (one attempt row
# each)
is($node->safe_psql('postgres', q{
	SELECT concat_ws(' ', pid, claimed_rows, recorded_outcomes, in_flight, cached_shops,
					 requests = (SELECT count(*) FROM invsync.sync_attempts),
					 claims > 0 AND claim_time_ms > 0, records > 0 AND record_time_ms > 0,
					 started_at <= last_claim_at AND last_claim_at <= clock_timestamp())
	  FROM invsync.worker_activity}),
	worker_pid($node) . ' 3 3 0 1 t t t t', 'worker_activity counts the claims, records and requests');
$node->append_conf('postgresql.conf', "invsync.idle_shop_retention = 0\n");
$node->reload;
ok(wait_for($node, 'SELECT cached_shops FROM invsync.worker_activity', '0'),
	'a shop idle for invsync.idle_shop_retention leaves the worker\'s memory');

# a rolled-back change never leaves
my $before = scalar @{ sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries} };
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT FROM invsync.adjust('TSHIRT-L', 'WH1', 99, 'receipt', 'push-rolled-back');
	ROLLBACK;
});
$node->safe_psql('postgres', q{SELECT pg_sleep(1)});
my $after = sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries};
is(scalar @$after, $before, 'a rolled-back change sends nothing');
ok(!(grep { $_->{body} =~ /"stock":99/ } @$after), 'the rolled-back level never reached the marketplace');

# a burst while a push is in flight coalesces into at most two pushes
sim_post($sim, '/_sim/faults', { rules => [ { kind => 'latency', delay_ms => 300 } ] });
my $seq = $after->[-1]{seq};
$node->safe_psql('postgres', join('', map {
	"SELECT FROM invsync.adjust('TSHIRT-L', 'WH1', 1, 'burst', 'burst-$_');\n" } 1 .. 30));
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'TSHIRT-L'", '30'),
	'the burst converges to its last level');
sim_post($sim, '/_sim/faults', { rules => [] });
my $burst = sim_get($sim, "/_sim/log?since=$seq&limit=1000")->{entries};
cmp_ok(scalar(grep { $_->{body} =~ /"model_id":12/ } @$burst), '<=', 2,
	'30 commits of one listing produced at most two pushes');

# the extension dropped and created again: the worker idles, then resumes
$node->safe_psql('postgres', 'DROP EXTENSION invsync CASCADE');
$node->safe_psql('postgres', q{SELECT pg_sleep(0.5)});
like(worker_pid($node), qr/^\d+$/, 'the worker survives DROP EXTENSION');
$node->safe_psql('postgres', 'CREATE EXTENSION invsync');
$shop = create_shop($node, $sim, partner_id => 1002, shop_id => 5002);
sim_post($sim, '/_sim/items', { shop_id => 5002, item_id => 700002, models => [0] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('CAP');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($shop, 'CAP', '700002');
	SELECT FROM invsync.adjust('CAP', 'WH1', 3, 'receipt', 'cap-1');
});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'CAP'", '3'),
	'after CREATE EXTENSION the worker publishes again');

# SIGHUP reloads settings; a zero timeout is refused
$node->append_conf('postgresql.conf', "invsync.batch_size = 7\n");
$node->reload;
ok(wait_for($node, 'SHOW invsync.batch_size', '7'), 'settings reload on SIGHUP');
my ($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET invsync.http_timeout = 0});
isnt($rc, 0, 'a zero HTTP timeout is refused');
like($err, qr/0 ms is outside the valid range for parameter "invsync.http_timeout"/, 'with a clear error');

secrets_absent_from_log($node, 'shpk-test-partner-key-0123456789', 'access-5001-initial-token',
	'refresh-5001-initial-token');

$node->stop;
done_testing();
