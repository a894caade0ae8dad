
# Copyright (c) 2026, invsync developers

# Crashes: (a) the worker is killed with SIGKILL while pushes are in flight
# and changes are being committed (the postmaster then restarts every
# process and recovers, as for any backend crash); (b) the server stops in
# immediate mode right after changes commit and starts again.  Either way
# nothing committed is lost, nothing stale is published: the marketplace
# ends up holding exactly the ledger's levels, and no model ever goes back
# to an older level (levels only grow here).

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use IPC::Run ();
use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $items = 5;
my $models = 10;
my $listings = $items * $models;

# the test framework turns restart_after_crash off; a real server has it on
my $node = start_node('crash', restart_after_crash => 'on');
my $sim = start_simulator(seed => 13);
my $shop = create_shop($node, $sim, max_in_flight => 4);
for my $i (1 .. $items)
{
	sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 600000 + $i, models => [ 1 .. $models ] });
}
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('SKU-' || i || '-' || m)
	  FROM generate_series(1, $items) i, generate_series(1, $models) m;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	SELECT $shop, 'SKU-' || i || '-' || m, (600000 + i)::text, m::text
	  FROM generate_series(1, $items) i, generate_series(1, $models) m;
});

is( $node->safe_psql('postgres', q{
		SELECT string_agg(relname || '=' || relpersistence::text, ',' ORDER BY relname)
		  FROM pg_class
		 WHERE relnamespace = 'invsync'::regnamespace
		   AND relname IN ('sync_queue', 'sync_attempts', 'ledger', 'stock_levels', 'listings', 'shops')}),
	'ledger=p,listings=p,shops=p,stock_levels=p,sync_attempts=p,sync_queue=p',
	'the queue and the tables it depends on are logged (survive crash recovery)');

my $synced = q{SELECT count(*) FROM invsync.listing_levels
				WHERE sync_state = 'synced' AND pushed_level = level};
ok(wait_for($node, $synced, "$listings"), 'initial levels published');

my $round = 0;

# one positive change to every listing, one transaction per item
sub change_all
{
	$round++;
	$node->safe_psql('postgres', join('', map {
		my $i = $_;
		"BEGIN;\n"
		  . "SELECT FROM generate_series(1, $models) m, LATERAL invsync.adjust('SKU-$i-' || m, 'WH1', 1 + (m + $round) % 3, 'receipt', 'r$round-$i-' || m);\n"
		  . "COMMIT;\n"
	} 1 .. $items));
}

# the marketplace equals the ledger, and no model's history went back
sub check_marketplace
{
	my ($label) = @_;
	my %ledger = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
		SELECT l.external_item_id || '/' || l.external_model_id || '|' ||
			   coalesce((SELECT sum(g.on_hand_change) FROM invsync.ledger g WHERE g.sku = l.sku), 0)
		  FROM invsync.listings l});
	my (@wrong, @stale);
	for my $row (@{ sim_get($sim, '/_sim/stock?shop_id=5001')->{stock} })
	{
		my $key = "$row->{item_id}/$row->{model_id}";
		push @wrong, "$key: marketplace $row->{stock}, ledger " . ($ledger{$key} // 'none')
		  unless defined $ledger{$key} && $ledger{$key} == $row->{stock};
		my $h = $row->{history};
		push @stale, "$key: @$h" if grep { $h->[$_] < $h->[ $_ - 1 ] } 1 .. $#$h;
	}
	is(scalar(keys %ledger), $listings, "$label: $listings listings");
	is(scalar(@wrong), 0, "$label: every marketplace level equals the ledger")
	  or diag(join("\n", @wrong));
	is(scalar(@stale), 0, "$label: no model went back to an older level")
	  or diag(join("\n", @stale));
	is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency()'),
		'0', "$label: stock levels equal the ledger");

	# a request delayed by the latency fault is processed 1.5 s after it
	# arrives: the next push of any of its models may only arrive after that
	my (%last, @overlap);
	my $pairs = 0;
	for my $e (@{ sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries} })
	{
		next unless $e->{path} eq '/api/v2/product/update_stock';
		my $body = eval { JSON::PP::decode_json($e->{body}) } or next;
		for my $m (map { $_->{model_id} } @{ $body->{stock_list} })
		{
			my $key = "$body->{item_id}/$m";
			my $prev = $last{$key};
			push @overlap, sprintf('%s: seq %d arrived %.3f s after seq %d', $key, $e->{seq},
				$e->{time} - $prev->{time}, $prev->{seq})
			  if $prev && ($prev->{fault} // '') eq 'latency' && $e->{time} < $prev->{time} + 1.45;
			$pairs++ if $prev && ($prev->{fault} // '') eq 'latency';
			$last{$key} = $e;
		}
	}
	cmp_ok($pairs, ">", 10, "$label: $pairs pushes followed a delayed push of the same listing");
	is(scalar(@overlap), 0, "$label: a listing never had two pushes at the marketplace at once")
	  or diag(join("\n", @overlap[0 .. ($#overlap < 9 ? $#overlap : 9)]));
}

# a background load that keeps committing through the crash; its sessions
# die with the crash and whatever they had not committed is not in the ledger
sub start_load
{
	my ($name, $seconds) = @_;
	my $script = $node->basedir . "/$name.sql";
	PostgreSQL::Test::Utils::append_to_file($script, q{
\set i random(1, 5)
\set m random(1, 10)
SELECT FROM invsync.adjust('SKU-' || :i || '-' || :m, 'WH1', 1, 'load', gen_random_uuid()::text);
});
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port);
	return IPC::Run::start(
		[ 'pgbench', '--no-vacuum', '--client=2', "--time=$seconds", '--rate=100', '-f', $script, 'postgres' ],
		'>', \$out, '2>', \$err);
}

# ----- (a) SIGKILL of the worker with pushes in flight --------------------

sim_post($sim, '/_sim/faults', { rules => [ { kind => 'latency', delay_ms => 1500 } ] });
my $load = start_load('load_a', 4);
change_all();
ok(wait_for($node, q{SELECT in_flight > 0 FROM invsync.sync_status}, 't', 10), 'pushes are in flight');
usleep(300_000);
my $log_offset = -s $node->logfile;
my $pid = worker_pid($node);
like($pid, qr/^\d+$/, 'the worker is running');
my $killed_at = time();
ok(kill('KILL', $pid), "SIGKILL the worker (pid $pid)");

# the postmaster treats it as a crash: every process restarts, the database recovers
$node->poll_query_until('postgres', 'SELECT true') or die 'the server did not come back';
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'}, '1', 30),
	'a worker runs again');
isnt(worker_pid($node), $pid, 'it is a new worker process');
ok($node->log_contains(qr/invsync sync worker.*terminated by signal 9/, $log_offset),
	'the server log shows the worker was killed');
ok($node->log_contains(qr/all server processes terminated; reinitializing/, $log_offset),
	'and that the cluster reinitialized after the crash');
$load->finish;
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.ledger WHERE reason = 'load'}), '>', 0,
	'the background sessions committed changes around the crash');

# changes after the restart, each published by a slow request and then
# changed again, so that the overlap check below has a pair for every
# listing however few requests were out when the worker died
change_all();
my $inflight = grep { $_->{time} < $killed_at && $_->{time} > $killed_at - 1.4 && $_->{status} eq '200' }
  @{ sim_get($sim, '/_sim/log?since=0&limit=100000')->{entries} };
cmp_ok($inflight, '>', 0, "$inflight requests were in flight when the worker died, and still applied");

ok(wait_for($node, $synced, "$listings", 60), '(a) every listing converges after the worker crash');
change_all();
ok(wait_for($node, $synced, "$listings", 60), '(a) and again after one more change');
sim_post($sim, '/_sim/faults', { rules => [] });
check_marketplace('(a)');

# ----- (b) immediate stop and start, right after changes commit ------------

sim_post($sim, '/_sim/faults', { rules => [ { kind => 'latency', delay_ms => 1500 } ] });
change_all();
my %before = map { ("$_->{item_id}/$_->{model_id}" => $_->{stock}) }
  @{ sim_get($sim, '/_sim/stock?shop_id=5001')->{stock} };
my $unpublished = $node->safe_psql('postgres',
	q{SELECT count(*) FROM invsync.listing_levels WHERE pushed_level IS DISTINCT FROM level});
cmp_ok($unpublished, '>', 0, "$unpublished committed changes not yet published at the stop");
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_queue}), "$listings",
	'every queue row survived the immediate stop');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_queue WHERE state = 'pending'}), '>', 0,
	'the unpublished changes are still pending after recovery');
sim_post($sim, '/_sim/faults', { rules => [] });
ok(wait_for($node, $synced, "$listings", 30), '(b) every listing converges after the immediate restart');
check_marketplace('(b)');
my $after = sim_get($sim, '/_sim/stock?shop_id=5001')->{stock};
is(scalar(grep { $_->{stock} != $before{"$_->{item_id}/$_->{model_id}"} } @$after), $listings,
	'the changes committed before the stop reached every listing');

secrets_absent_from_log($node, 'shpk-test-partner-key-0123456789', 'access-5001-initial-token',
	'refresh-5001-initial-token');

$node->stop;
done_testing();
