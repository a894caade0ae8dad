
# Copyright (c) 2026, invsync developers

# The worker as a good citizen of the server: it idles without crashing
# while the extension is absent, never holds up DROP DATABASE, stops
# promptly on SIGTERM and is restarted, and still finds changes committed
# through two-phase commit, which no commit callback announces.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = start_node('lifecycle', max_prepared_transactions => 4);
$node->safe_psql('postgres', 'DROP EXTENSION invsync');

# absent extension: the same worker process stays up, idle
my $pid = worker_pid($node);
like($pid, qr/^\d+$/, 'the worker runs without the extension');
$node->safe_psql('postgres', 'SELECT pg_sleep(1.5)');
is(worker_pid($node), $pid, 'and does not crash-loop while it is absent');
ok(wait_for($node,
	"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid", 'Extension', 5),
	'it waits on its latch, reported in pg_stat_activity');

# DROP DATABASE of another database needs every backend, the worker too,
# to absorb a ProcSignalBarrier
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
my $start = time();
$node->safe_psql('postgres', 'DROP DATABASE scratch');
cmp_ok(time() - $start, '<', 5, 'DROP DATABASE does not wait on the worker');

# SIGTERM: prompt exit, then the postmaster starts a new worker
$start = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node,
	"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 5),
	'the worker exits promptly on SIGTERM');
ok(wait_for($node,
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'", '1', 20),
	'and is started again');
isnt(worker_pid($node), $pid, 'as a new process');

# a change committed with COMMIT PREPARED is found by the poll
$node->safe_psql('postgres', 'CREATE EXTENSION invsync');
my $sim = start_simulator();
my $shop = create_shop($node, $sim);
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 800001, models => [0] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('SOAP');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($shop, 'SOAP', '800001');
});
ok(wait_for($node, "SELECT state FROM invsync.sync_queue", 'synced'), 'the listing is published');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT FROM invsync.adjust('SOAP', 'WH1', 12, 'receipt', 'soap-2pc');
	PREPARE TRANSACTION 'invsync-2pc';
});
$node->safe_psql('postgres', q{COMMIT PREPARED 'invsync-2pc'});
ok(wait_for($node, "SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'SOAP'", '12', 10),
	'a change committed through two-phase commit is published');
is($node->safe_psql('postgres',
	'SELECT pid || \' \' || claimed_rows FROM invsync.worker_activity'),
	worker_pid($node) . ' 2', 'worker_activity shows the new worker, counting from its start');

$node->stop;
done_testing();
