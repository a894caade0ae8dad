# Copyright (c) 2026, invsync developers
#
# The worker leases claimed rows and records outcomes and attempts without
# SQL (worker_direct.c) unless invsync.direct_path is off; both ways write
# the same rows.  The same pushes (synced, a dead letter, a retry after a
# 500) run once each way, on items of their own, and the queue and attempt
# columns compared.  The direct path steps aside wherever SQL would check
# more: with a privilege of the lease or of the record revoked, or row
# security on, the worker fails as the SQL statements do, and nothing is
# leased or recorded until it is put back.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

# errors logged: the worker's failed records are what the last part looks for
my $node = start_node('record_paths', track_functions => "'pl'",
	log_min_messages => 'warning');
my $sim = start_simulator(seed => 23);
my $shop = create_shop($node, $sim);
$node->safe_psql('postgres', q{SELECT invsync.upsert_location('WH1')});

sub record_batch_calls
{
	return $node->safe_psql('postgres', q{
		SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
		 WHERE schemaname = 'invsync' AND funcname = '_record_batch'});
}

# Three listings of a new item: model 1 syncs, model 2 is refused for good
# (a dead letter), model 3 is answered 500 once and synced on its retry.
# Returns what the queue and the attempts say of them, ids and times aside.
sub run_pushes
{
	my ($item) = @_;
	sim_post($sim, '/_sim/items',
		{
			shop_id => 5001,
			item_id => $item,
			models => [ 1 .. 3 ],
			fail_models => { '2' => 'This model is managed by the seller warehouse.' }
		});
	$node->safe_psql('postgres', qq{
		SELECT invsync.upsert_item('P$item-' || m) FROM generate_series(1, 3) m;
		INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
		SELECT $shop, 'P$item-' || m, '$item', m::text FROM generate_series(1, 3) m;
	});
	ok( wait_for($node, qq{
			SELECT count(*) FROM invsync.sync_queue q
			  JOIN invsync.listings l USING (tenant_id, listing_id)
			 WHERE l.sku LIKE 'P$item-%' AND q.state <> 'pending'}, '3'),
		"item $item: the first levels are recorded");

	# the next request of the shop fails with a 500, once
	sim_post($sim, '/_sim/faults', { rules => [ { kind => 'http_500', count => 1 } ] });
	$node->safe_psql('postgres', qq{
		SELECT invsync.adjust('P$item-3', 'WH1', 7, 'receipt', 'p$item-3');
	});
	ok( wait_for($node, qq{
			SELECT q.pushed_level FROM invsync.sync_queue q
			  JOIN invsync.listings l USING (tenant_id, listing_id)
			 WHERE l.sku = 'P$item-3'}, '7'),
		"item $item: the level is recorded after the retry");
	sim_post($sim, '/_sim/faults', { rules => [] });

	return $node->safe_psql('postgres', qq{
		SELECT string_agg(format('%s %s level=%s pushed=%s/%s attempts=%s force=%s lease=%s '
								 || 'error=%s ids=%s', substr(l.sku, length('P$item-') + 1),
								 q.state, q.target_level, q.pushed_level, q.pushed_version,
								 q.attempts, q.force_push, q.lease_until IS NOT NULL,
								 q.last_error_class, cardinality(q.correlation_ids)), E'\\n' ORDER BY l.sku)
		  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		 WHERE l.sku LIKE 'P$item-%'})
	  . "\n"
	  . $node->safe_psql('postgres', qq{
		SELECT string_agg(format('%s %s %s %s versions=%s levels=%s error=%s request=%s',
								 a.kind, a.outcome, a.http_status, a.channel, a.versions,
								 a.levels, a.error_class, a.marketplace_request_id IS NOT NULL),
						  E'\\n' ORDER BY a.attempt_id)
		  FROM invsync.sync_attempts a
		 WHERE a.listing_ids && ARRAY(SELECT l.listing_id FROM invsync.listings l
									   WHERE l.sku LIKE 'P$item-%')});
}

my $calls_before = record_batch_calls();
my $direct = run_pushes(700001);
is(record_batch_calls(), $calls_before,
	'with invsync.direct_path on, no outcome went through _record_batch');
like($direct, qr/^1 synced .*\n2 dead .*error=update_stock_failed.*\n3 synced .*attempts=0/,
	'direct: a synced row, a dead letter and a retried row');
like($direct, qr/stock_update retry 500 /, 'direct: the 500 has its attempt row');

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET invsync.direct_path = off;
	SELECT pg_reload_conf();
});
my $sql = run_pushes(700002);
# the worker's statistics reach the view within a second or so
ok(wait_for($node, qq{SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
							  WHERE schemaname = 'invsync' AND funcname = '_record_batch')
						 > $calls_before}, 't'),
	'with invsync.direct_path off, outcomes go through _record_batch');
is($direct, $sql, 'both ways record the same queue and attempt rows');

$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET invsync.direct_path;
	SELECT pg_reload_conf();
});
# the direct path again: the reload reaches the worker at its next turn
run_pushes(700003);

# SQL would refuse these: so must the direct path, and write nothing
for my $case (
	[ 'a column privilege of the lease revoked',
		'REVOKE UPDATE (target_level) ON invsync.sync_queue FROM invsync_worker',
		'GRANT UPDATE (target_level) ON invsync.sync_queue TO invsync_worker',
		qr/permission denied for table sync_queue/ ],
	[ 'a column privilege of the record revoked',
		'REVOKE UPDATE (pushed_at) ON invsync.sync_queue FROM invsync_worker',
		'GRANT UPDATE (pushed_at) ON invsync.sync_queue TO invsync_worker',
		qr/permission denied for table sync_queue/ ],
	[ 'row security on the attempts',
		'ALTER TABLE invsync.sync_attempts ENABLE ROW LEVEL SECURITY',
		'ALTER TABLE invsync.sync_attempts DISABLE ROW LEVEL SECURITY',
		qr/new row violates row-level security policy for table "sync_attempts"/ ])
{
	my ($what, $take, $give, $error) = @$case;
	my $log_offset = -s $node->logfile;
	my $attempts = $node->safe_psql('postgres', 'SELECT count(*) FROM invsync.sync_attempts');
	$node->safe_psql('postgres', $take);
	$node->safe_psql('postgres', q{
		SELECT invsync.adjust('P700001-1', 'WH1', 1, 'receipt', 'step-aside-' || clock_timestamp());
	});
	ok( $node->wait_for_log($error, $log_offset),
		"$what: the worker fails as SQL does");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.sync_attempts'),
		$attempts, "$what: no attempt row is written");
	isnt($node->safe_psql('postgres', q{
			SELECT q.state FROM invsync.sync_queue q
			  JOIN invsync.listings l USING (tenant_id, listing_id)
			 WHERE l.sku = 'P700001-1'}), 'synced',
		"$what: the outcome is not recorded");
	$node->safe_psql('postgres', $give);
	ok( wait_for($node, q{
			SELECT q.state FROM invsync.sync_queue q
			  JOIN invsync.listings l USING (tenant_id, listing_id)
			 WHERE l.sku = 'P700001-1'}, 'synced', 30),
		"$what: recorded once it is put back");
}

$node->stop;
done_testing();
