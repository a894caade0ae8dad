# Copyright (c) 2026, invsync developers
#
# When an application holds the lock of a queue row whose push is in
# flight, the worker cannot record the outcome; it tries again with a
# growing pause (10 ms doubling to 1.28 s) instead of spinning, and records
# the outcome once the lock is gone.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_node('record_waits');
my $sim = start_simulator();
my $shop = create_shop($node, $sim);
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [ 1 ] });

$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('CUP');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	VALUES ($shop, 'CUP', '700001', '1');
});
ok(wait_for($node, "SELECT state FROM invsync.sync_queue", 'synced'),
	'the listing is published');

# every request now takes 1.5 s, long enough to lock the row meanwhile
sim_post($sim, '/_sim/faults', { rules => [ { kind => 'latency', delay_ms => 1500 } ] });
$node->safe_psql('postgres',
	q{SELECT FROM invsync.adjust('CUP', 'WH1', 8, 'receipt', 'cup-1')});
ok(wait_for($node, 'SELECT in_flight FROM invsync.sync_status', '1', 10),
	'the push is in flight');

# an application locks the queue row for 4 s
my ($out, $err) = ('', '');
my $holder;
{
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port);
	$holder = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', 'postgres', '-c', q{
			BEGIN;
			SELECT FROM invsync.sync_queue FOR UPDATE;
			SELECT pg_sleep(4);
			COMMIT;} ],
		'>', \$out, '2>', \$err);
}
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		 WHERE c.relname = 'sync_queue' AND l.mode = 'RowShareLock' AND l.granted}),
	'the application holds the row');

# the worker's CPU time while the lock is held (utime + stime, in ticks)
sub worker_ticks
{
	my $pid = worker_pid($node);
	open(my $fh, '<', "/proc/$pid/stat") or die "no /proc/$pid/stat: $!";
	my $stat = <$fh>;
	close $fh;
	$stat =~ s/^.*\) //;
	my @fields = split / /, $stat;
	return $fields[11] + $fields[12];
}
my $ticks_before = worker_ticks();
sleep 3;
my $ticks = worker_ticks() - $ticks_before;
my $per_second = `getconf CLK_TCK` + 0 || 100;
cmp_ok($ticks, '<', $per_second / 2,
	"the worker spent under 0.5 s of CPU in 3 s of waiting ($ticks ticks)");
is($node->safe_psql('postgres', 'SELECT pushed_level FROM invsync.sync_queue'), '0',
	'the outcome is not recorded while the row is locked');

$holder->finish;
is($err, '', 'the application transaction ended cleanly');
ok(wait_for($node, 'SELECT pushed_level FROM invsync.sync_queue', '8', 10),
	'the outcome is recorded once the lock is gone');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM invsync.sync_attempts WHERE outcome = 'ok' AND http_status = 200}),
	'2', 'both pushes have their attempt rows');

$node->stop;
done_testing();
