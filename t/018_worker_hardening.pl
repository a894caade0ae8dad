# Copyright (c) 2026, invsync developers
#
# The sync worker cannot be fooled, stalled or corrupted:
#   - it acts as invsync_worker, not a superuser, with search_path pinned:
#     an operator planted in public by a role with CREATE there never runs
#     in its session (it did, as the bootstrap superuser, before 0.3);
#   - an ERROR in its loop while requests are in flight aborts them before
#     their memory is freed, and the worker goes on without a restart;
#   - an admin holding one shop's row does not delay another shop's push;
#   - it refuses to run as a superuser role.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# warning, not log: ERROR and WARNING rank below LOG for log_min_messages
my $node = start_node('worker_hardening', log_min_messages => 'warning');
my $sim = start_simulator(seed => 18);
my $shop_a = create_shop($node, $sim, partner_id => 1001, shop_id => 5001);
my $shop_b = create_shop($node, $sim, partner_id => 1002, shop_id => 5002,
	partner_key => 'shpk-test-partner-key-second-shop');
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [0] });
sim_post($sim, '/_sim/items', { shop_id => 5002, item_id => 800001, models => [0] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('CUP');
	SELECT invsync.upsert_item('PLATE');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	VALUES ($shop_a, 'CUP', '700001'), ($shop_b, 'PLATE', '800001');
});
my $all_synced = q{SELECT bool_and(sync_state = 'synced' AND pushed_level = level)
					 FROM invsync.listing_levels};
ok(wait_for($node, $all_synced, 't'), 'both listings are published');

# ---------------------------------------------------------------------
# A planted operator never runs in the worker's session
# ---------------------------------------------------------------------
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	GRANT CREATE ON SCHEMA public TO mallory;
});
$node->safe_psql('postgres', q{
	SET ROLE mallory;
	CREATE FUNCTION public.planted_div(numeric, integer) RETURNS numeric
		LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'PLANTED OPERATOR RAN as %', current_user;
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN $1 OPERATOR(pg_catalog./) $2::numeric;
	END $$;
	CREATE OPERATOR public./ (LEFTARG = numeric, RIGHTARG = integer,
							  FUNCTION = public.planted_div);
	CREATE FUNCTION public.planted_div(double precision, numeric) RETURNS double precision
		LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'PLANTED OPERATOR RAN as %', current_user;
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN $1 OPERATOR(pg_catalog./) $2::double precision;
	END $$;
	CREATE OPERATOR public./ (LEFTARG = double precision, RIGHTARG = numeric,
							  FUNCTION = public.planted_div);
});
$node->safe_psql('postgres', qq{
	UPDATE invsync.listings SET allocation_percent = 50 WHERE shop_id = $shop_a;
	SELECT FROM invsync.adjust('CUP', 'WH1', 10, 'receipt', 'cup-1');
});
ok(wait_for($node, q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'CUP'}, '5'),
	'a level with an allocation percent is pushed');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'the planted operator did not make its owner a superuser');
my $log = slurp_file($node->logfile);
unlike($log, qr/PLANTED OPERATOR RAN/, 'the planted operator never ran in the worker');

# ---------------------------------------------------------------------
# An ERROR in the loop with requests in flight
# ---------------------------------------------------------------------
my $pid = worker_pid($node);
my $log_offset = -s $node->logfile;

# shop A's requests take 1.5 s; the outcome of shop B's, recorded while A's
# is in flight, fails for want of a privilege
sim_post($sim, '/_sim/faults',
	{ rules => [ { kind => 'latency', delay_ms => 1500, shop_id => 5001 } ] });
$node->safe_psql('postgres',
	q{SELECT FROM invsync.adjust('CUP', 'WH1', 2, 'receipt', 'cup-2')});
ok(wait_for($node,
		"SELECT in_flight FROM invsync.sync_status WHERE shop_id = $shop_a", '1', 10),
	"shop A's push is in flight");
$node->safe_psql('postgres', q{
	REVOKE INSERT ON invsync.sync_attempts FROM invsync_worker;
	SELECT FROM invsync.adjust('PLATE', 'WH1', 3, 'receipt', 'plate-1');
});
my $errored = 0;
for (1 .. 100)
{
	my $new = substr(slurp_file($node->logfile), $log_offset);
	if ($new =~ /permission denied for table sync_attempts/)
	{
		$errored = 1;
		last;
	}
	usleep(100_000);
}
ok($errored, 'recording failed with an ERROR while a request was in flight');
$node->safe_psql('postgres', q{GRANT INSERT ON invsync.sync_attempts TO invsync_worker});
sim_post($sim, '/_sim/faults', { rules => [] });

ok(wait_for($node, $all_synced, 't', 30), 'both shops converge after the ERROR');
is(worker_pid($node), $pid, 'the same worker process goes on');
my $after = substr(slurp_file($node->logfile), $log_offset);
unlike($after, qr/leaked hash_seq_search|terminated by signal|server process .* was terminated/,
	'no leaked scan, no crash');

# ---------------------------------------------------------------------
# An admin holding one shop's row does not delay another shop
# ---------------------------------------------------------------------
# shop A's token is about to expire, so the worker wants to refresh it
$node->safe_psql('postgres', qq{
	UPDATE invsync.shops SET access_expires_at = now() + interval '1 minute'
	 WHERE shop_id = $shop_a});
my ($out, $err) = ('', '');
my $holder;
{
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port);
	$holder = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', 'postgres', '-c', qq{
			BEGIN;
			SELECT FROM invsync.shops WHERE shop_id = $shop_a FOR UPDATE;
			SELECT pg_sleep(8);
			COMMIT;} ],
		'>', \$out, '2>', \$err);
}
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		 WHERE c.relname = 'shops' AND l.mode = 'RowShareLock' AND l.granted}),
	"an admin holds shop A's row");
$node->safe_psql('postgres', q{
	SELECT FROM invsync.adjust('CUP', 'WH1', 1, 'receipt', 'cup-3');
	SELECT FROM invsync.adjust('PLATE', 'WH1', 1, 'receipt', 'plate-2');
});
my $started = time();
ok(wait_for($node, q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'PLATE'},
		'4', 10),
	"shop B's push goes out");
my $elapsed = time() - $started;
cmp_ok($elapsed, '<', 4, sprintf("shop B was not held up by shop A's row (%.1f s)", $elapsed));
$holder->finish;
is($err, '', 'the admin transaction ended cleanly');
$node->safe_psql('postgres', q{SELECT FROM invsync.adjust('CUP', 'WH1', 1, 'receipt', 'cup-4')});
ok(wait_for($node, $all_synced, 't', 30), 'shop A converges once its row is free');
ok(wait_for($node, qq{SELECT access_expires_at > now() + interval '1 hour'
						FROM invsync.shops WHERE shop_id = $shop_a}, 't', 30),
	"shop A's token was refreshed and stored once its row was free");

# ---------------------------------------------------------------------
# A superuser role is refused
# ---------------------------------------------------------------------
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
$node->append_conf('postgresql.conf', "invsync.worker_role = '$superuser'\n");
$log_offset = -s $node->logfile;
$node->restart;
$node->safe_psql('postgres',
	q{SELECT FROM invsync.adjust('PLATE', 'WH1', 1, 'receipt', 'plate-3')});
my $refused = 0;
for (1 .. 100)
{
	if (substr(slurp_file($node->logfile), $log_offset) =~ /"event":"worker_role_superuser"/)
	{
		$refused = 1;
		last;
	}
	usleep(100_000);
}
ok($refused, 'the worker refuses to act as a superuser, and says so');
sleep 1;
is($node->safe_psql('postgres',
		q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'PLATE'}),
	'4', 'and pushes nothing as one');

$node->stop;
done_testing();
