
# Copyright (c) 2026, invsync developers

# invsync on Citus, distributed by tenant_id: a coordinator and two worker
# nodes on loopback, two tenants whose shards sit on different nodes.  The
# same script of public calls gives the same output as on a single node,
# check_consistency() is empty, ids are unique across nodes, and each
# node's worker serves the tenants whose shards it holds: a stock change
# reaches the Shopee simulator and its outcome is recorded.  Skipped where
# Citus is not installed (tools/build-citus builds it).

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $single = start_node('single');
if ($single->safe_psql('postgres',
		q{SELECT count(*) FROM pg_available_extensions WHERE name = 'citus'}) eq '0')
{
	plan skip_all => 'Citus is not installed (see tools/build-citus)';
}

# the coordinator first in the list: its workers are added to it
my @citus;
for my $name (qw(coordinator worker1 worker2))
{
	push @citus, start_node("citus_$name",
		shared_preload_libraries => "'citus,invsync'",
		listen_addresses => "'127.0.0.1'",
		max_prepared_transactions => 20,
		'citus.shard_count' => 4,
		'citus.log_remote_commands' => 'off',
		# the worker's ERRORs in the server log (LOG ranks above ERROR there)
		log_min_messages => 'warning');
}
my ($coordinator, @workers) = @citus;
for my $node (@citus)
{
	# invsync's extension exists already (start_node); Citus after it is
	# fine, Citus only has to come first in shared_preload_libraries
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	# the sync worker acts as invsync_worker, and Citus connects to the
	# other nodes as the role acting: it must be able to log in there
	$node->safe_psql('postgres', 'ALTER ROLE invsync_worker LOGIN');
}
$coordinator->safe_psql('postgres',
	"SELECT citus_set_coordinator_host('127.0.0.1', " . $coordinator->port . ')');
$coordinator->safe_psql('postgres', "SELECT citus_add_node('127.0.0.1', " . $_->port . ')')
  for @workers;
$coordinator->safe_psql('postgres', 'SELECT invsync.distribute()');
is($coordinator->safe_psql('postgres', q{
	SELECT count(*) FROM pg_dist_partition
	 WHERE logicalrelid::text LIKE 'invsync.%' AND colocationid =
		   (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'invsync.locations'::regclass)}),
	'18', 'distribute(): all 18 tables distributed by tenant_id, co-located');
is($coordinator->safe_psql('postgres', 'SELECT invsync.distribute()'), '',
	'distribute() again changes nothing');

# two tenants whose shards are on different worker nodes
my %tenant_on;
for my $t (1 .. 50)
{
	my $port = $coordinator->safe_psql('postgres', qq{
		SELECT nodeport FROM pg_dist_shard_placement
		 WHERE shardid = get_shard_id_for_distribution_column('invsync.locations', $t)});
	$tenant_on{$port} //= $t;
}
my @tenants = map { $tenant_on{ $_->port } } @workers;
ok(defined $tenants[0] && defined $tenants[1], "tenants @tenants on the two worker nodes");

# the same calls, in each tenant; ids and times left out (ids are drawn
# from node ranges under Citus)
my $cols = 'sku, location, operation, on_hand_change, reserved_change, on_hand_after,'
  . ' reserved_after, reason, reference, order_ref, idempotency_key, correlation_id';
sub script
{
	my ($t) = @_;
	return qq{
SET invsync.tenant = '$t';
SET invsync.correlation_id = 'citus-$t';
SELECT location, name, priority FROM invsync.upsert_location('JKT-1', 'Jakarta', 10);
SELECT location, name, priority FROM invsync.upsert_location('SBY-1', 'Surabaya', 20);
SELECT sku, name FROM invsync.upsert_item('KOPI-250', 'Kopi Toraja 250 g');
SELECT sku, name FROM invsync.upsert_item('MUG-01');
SELECT sku, name FROM invsync.upsert_item('GIFT-SET');
SELECT sku, name FROM invsync.upsert_item('GIFT-BOX');
SELECT bundle_sku, component_sku, qty FROM invsync.set_bundle('GIFT-SET', '[{"sku":"KOPI-250","qty":2},{"sku":"MUG-01","qty":1}]');
SELECT bundle_sku, component_sku, qty FROM invsync.set_bundle('GIFT-BOX', '[{"sku":"GIFT-SET","qty":2}]');
SELECT $cols FROM invsync.adjust('KOPI-250', 'JKT-1', 40, 'receipt', 'po-1', 'PO-1');
SELECT $cols FROM invsync.adjust('KOPI-250', 'JKT-1', 40, 'receipt', 'po-1', 'PO-1');
SELECT $cols FROM invsync.adjust('MUG-01', 'JKT-1', 20, 'receipt', 'po-2');
SELECT $cols FROM invsync.adjust('MUG-01', 'JKT-1', -3, 'breakage', 'po-3');
SELECT $cols FROM invsync.set_on_hand('KOPI-250', 'JKT-1', 38, 'count', 'count-1');
SELECT $cols FROM invsync.transfer('KOPI-250', 'JKT-1', 'SBY-1', 10, 'tr-1');
SELECT $cols FROM invsync.transfer('KOPI-250', 'JKT-1', 'SBY-1', 10, 'tr-1');
SELECT $cols FROM invsync.reserve('INV-1', '[{"sku":"GIFT-SET","qty":3},{"sku":"KOPI-250","qty":1,"location":"SBY-1"}]', 'order-1');
SELECT invsync.available('GIFT-SET'), invsync.available('GIFT-BOX'), invsync.available('KOPI-250'), invsync.available('KOPI-250', 'SBY-1');
SELECT $cols FROM invsync.fulfill('INV-1', 'ship-1');
SELECT $cols FROM invsync.reserve('INV-2', '[{"sku":"MUG-01","qty":2}]', 'order-2');
SELECT order_ref, line_no, line_sku, sku, location, qty FROM invsync.open_reservations ORDER BY 1, 2, 3, 4, 5;
SELECT $cols FROM invsync.release('INV-2', 'release-2');
SELECT sku, location, on_hand, reserved, available FROM invsync.stock ORDER BY sku, location;
SELECT $cols FROM invsync.ledger_entries ORDER BY ledger_id;
SELECT * FROM invsync.check_consistency();
SELECT count(*) FROM invsync.check_consistency(true);
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url) VALUES ('shopee', '100$t', 'key-$t', 'https://127.0.0.1:1');
SELECT app_id AS app FROM invsync.apps WHERE app_key = '100$t' \\gset
INSERT INTO invsync.shops (app_id, external_shop_id, access_token, refresh_token, access_expires_at, enabled)
VALUES (:app, '500$t', 'access-$t', 'refresh-$t', now() + interval '4 hours', false);
SELECT shop_id AS shop FROM invsync.shops WHERE external_shop_id = '500$t' \\gset
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id, buffer)
VALUES (:shop, 'KOPI-250', '7001', '11', 2), (:shop, 'GIFT-SET', '7001', '12', 0);
SELECT sku, external_item_id, external_model_id, available, buffer, level, enabled, sync_state FROM invsync.listing_levels ORDER BY sku;
SELECT channel, external_shop_id, enabled, pending, dead FROM invsync.sync_status;
SELECT invsync.resync(:shop);
SELECT r ->> 'result', r ->> 'status', r ->> 'effect', r ->> 'error' FROM invsync.record_order(:shop, 'MO-1', 'READY_TO_SHIP', '2026-01-01 00:00+00', '[{"ids": {"item_id": "7001", "model_id": "11"}, "qty": 2}]') r;
SELECT r ->> 'result', r ->> 'status', r ->> 'effect' FROM invsync.record_order(:shop, 'MO-1', 'READY_TO_SHIP', '2026-01-01 00:00+00') r;
SELECT invsync.available('KOPI-250');
SELECT r ->> 'result', r ->> 'status', r ->> 'effect' FROM invsync.record_order(:shop, 'MO-1', 'CANCELLED', '2026-01-01 00:10+00') r;
SELECT order_id, status, effect, jsonb_array_length(lines) FROM invsync.marketplace_orders WHERE tenant_id = $t;
SELECT invsync.set_shop_tokens(:shop, 'access-2-$t', 'refresh-2-$t', '2030-01-01 00:00+00');
SELECT token_state, access_token, access_expires_at FROM invsync.shops WHERE tenant_id = $t AND shop_id = :shop;
SELECT invsync.retry_dead(:shop);
SELECT invsync.purge_idempotency_keys(interval '1 day');
SELECT $cols FROM invsync.adjust('KOPI-250', 'SBY-1', 5, 'receipt', 'po-4');
SELECT l.sku, q.state, q.version, q.correlation_ids FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id) WHERE q.tenant_id = $t ORDER BY 1;
SELECT invsync.adjust('NOPE', 'JKT-1', 1, 'x', 'e-1');
\\echo :SQLSTATE
SELECT invsync.adjust('KOPI-250', 'JKT-1', -1000, 'x', 'e-2');
\\echo :SQLSTATE
SELECT invsync.adjust('KOPI-250', 'JKT-1', 7, 'x', 'po-1');
\\echo :SQLSTATE
SELECT invsync.reserve('INV-1', '[{"sku":"MUG-01","qty":1}]', 'order-1b');
\\echo :SQLSTATE
SELECT invsync.fulfill('INV-9', 'ship-9');
\\echo :SQLSTATE
SELECT invsync.set_bundle('KOPI-250', '[{"sku":"GIFT-BOX","qty":1}]');
\\echo :SQLSTATE
SELECT invsync.set_bundle('MUG-01', '[{"sku":"GIFT-BOX","qty":1}]');
\\echo :SQLSTATE
SELECT invsync.resync(999999);
\\echo :SQLSTATE
SELECT * FROM invsync.check_consistency();
};
}

sub run_script
{
	my ($node, $t) = @_;
	my ($stdout, $stderr);
	$node->psql('postgres', script($t), stdout => \$stdout, stderr => \$stderr,
		on_error_stop => 0, extra_params => [ '-X', '-A', '-t' ]);
	return ($stdout, $stderr);
}

for my $i (0, 1)
{
	my $t = $tenants[$i];
	my ($expected, $single_err) = run_script($single, $t);
	my ($got, $citus_err) = run_script($coordinator, $t);
	note "single node errors:\n$single_err";
	note "Citus errors:\n$citus_err";
	is($got, $expected, "tenant $t (shards on worker node " . ($i + 1)
		  . '): every call gives the output it gives on a single node');
	like($got, qr/IV001\nIV004\nIV005\nIV012\nIV007\nIV013\nIV013\nIV022/,
		'bad input gets the SQLSTATEs it gets on a single node');
}

is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency(true)'),
	'0', 'check_consistency(true) is empty over both tenants');

# Each node's worker serves the tenants whose shards it holds, and the
# claim on the node takes their pending rows, at the levels listing_levels
# shows: the per-shop statements route to the shards of those tenants.
# Checked in a transaction a node that enables both tenants' shops and is
# rolled back, so that the nodes' sync workers, which see committed shops
# only, leave the rows alone meanwhile.  As the superuser: Citus reaches
# the other node's shard of shops over the connection that enabled it.
# (Citus 13.2 crashed the node's backend here while the claim's UPDATE
# set a column from an array element; the claim now sets scalars.)
for my $node (@citus)
{
	my ($tenant) = grep { $tenant_on{ $node->port } && $_ == $tenant_on{ $node->port } } @tenants;
	my $enable = join('',
		map { "SET LOCAL invsync.tenant = '$_'; UPDATE invsync.shops SET enabled = true;\n" }
		  @tenants);
	my $levels = defined $tenant
	  ? qq{SET LOCAL invsync.tenant = '$tenant';
		SELECT coalesce(string_agg(format('%s:%s=%s', $tenant, sku, level), ' '
								   ORDER BY listing_id), 'none')
		  FROM invsync.listing_levels WHERE sync_state = 'pending' AND enabled;}
	  : q{SELECT 'none';};
	my ($served, $expected, $claimed) = split /\n/, $node->safe_psql('postgres', qq{
		BEGIN;
		$enable
		SELECT coalesce(string_agg(tenant_id::text, ',' ORDER BY tenant_id), 'none')
		  FROM invsync._served_shops();
		$levels
		SELECT coalesce(string_agg(format('%s:%s=%s', tenant_id, sku, target_level), ' '
								   ORDER BY tenant_id, listing_id), 'none')
		  FROM invsync._claim(now(), interval '1 minute', 100, 50) c
		  JOIN invsync.listings l USING (tenant_id, listing_id);
		ROLLBACK;
	});
	is($served, $tenant // 'none',
		$node->name . (defined $tenant ? ' serves the shop of its tenant only'
			: ', holding no shard, serves no shop'));
	isnt($expected, 'none', $node->name . ': its tenant has pending rows') if defined $tenant;
	is($claimed, $expected,
		$node->name . ': the claim takes the pending rows of the tenants it serves, at their levels');
}

# ids unique across nodes: each node draws the sequences from its own range
for my $node (@citus)
{
	is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE s.min_value = (g.groupid::bigint << 48) + 1
								  AND s.max_value = ((g.groupid::bigint + 1) << 48) - 1)
		  FROM pg_sequences s, pg_dist_local_group g
		 WHERE s.schemaname = 'invsync'}),
		'3', $node->name . ": invsync's three sequences draw from the node's range");
}
is($coordinator->safe_psql('postgres',
	'SELECT count(*) = count(DISTINCT (tenant_id, ledger_id)) FROM invsync.ledger'),
	't', 'ledger ids are unique');

# whether a successful push carrying this correlation id reached the
# simulator within 30 s
sub pushed_with
{
	my ($sim, $correlation_id) = @_;
	for (1 .. 300)
	{
		my $log = sim_get($sim, '/_sim/log?since=0&limit=1000')->{entries};
		return 1
		  if grep { index($_->{headers}{'X-Correlation-ID'} // '', $correlation_id) >= 0
			  && $_->{status} == 200 } @$log;
		usleep(100_000);
	}
	return 0;
}

# a change reaches the Shopee simulator with its correlation id
my $sim = start_simulator();
sim_post($sim, '/_sim/partners', { partner_id => 2001, partner_key => 'shpk-citus-partner-key-0123456789' });
sim_post($sim, '/_sim/shops',
	{ partner_id => 2001, shop_id => 6001, access_token => 'access-6001', refresh_token => 'refresh-6001' });
sim_post($sim, '/_sim/items', { shop_id => 6001, item_id => 800001, models => [21] });
# The app, the shop and the listing are written through the coordinator:
# their shards' triggers take them for new rows, not for rows loaded from a
# dump, and check and queue them.
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '2001', 'shpk-citus-partner-key-0123456789', '$sim->{url}');
SELECT app_id AS app FROM invsync.apps WHERE app_key = '2001' \\gset
INSERT INTO invsync.shops (app_id, external_shop_id, access_token, refresh_token, access_expires_at)
VALUES (:app, '6001', 'access-6001', 'refresh-6001', now() + interval '4 hours');
SELECT shop_id AS shop FROM invsync.shops WHERE external_shop_id = '6001' \\gset
INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
VALUES (:shop, 'MUG-01', '800001', '21');
});
is($coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SELECT l.batch_key IS NOT NULL, count(q.*)
  FROM invsync.listings l
  LEFT JOIN invsync.sync_queue q USING (tenant_id, listing_id)
 WHERE l.sku = 'MUG-01'
 GROUP BY 1}), 't|1',
	'a listing inserted through the coordinator is a new one: its ids checked and keyed, its row queued');
my ($ok, $out, $err) = $coordinator->psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
VALUES ('shopee', '2002', 'k', 'https://user:pw\@example.com');
});
like($err, qr/base URL/, 'an app with a malformed base URL is refused through the coordinator');
# The session's correlation id reaches the trigger that queues the push,
# which runs on the node holding the shard: the movement sends it there.
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SET invsync.correlation_id = 'citus-push-42';
SELECT FROM invsync.adjust('MUG-01', 'JKT-1', 4, 'receipt', 'citus-push-1');
});

# the node's worker claims the row, pushes it and records the outcome,
# every statement routed to the tenant's shard
my $pushed = pushed_with($sim, 'citus-push-42');
ok($pushed, 'a stock change reaches the Shopee simulator with its correlation id')
  or diag('queue: '
	  . $workers[0]->safe_psql('postgres', qq{
		SELECT string_agg(format('%s', q), ' ') FROM invsync.sync_queue q
		 WHERE q.tenant_id = $tenants[0]})
	  . "\nworker: "
	  . $workers[0]->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s %s', state, wait_event, query), ' ')
		  FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'})
	  . "\nattempts: "
	  . $workers[0]->safe_psql('postgres', qq{
		SELECT string_agg(format('%s %s', http_status, correlation_id), ' ')
		  FROM invsync.sync_attempts WHERE tenant_id = $tenants[0]})
	  . "\nsimulator: "
	  . join(' ', map { "$_->{status} $_->{path}" }
		  @{ sim_get($sim, '/_sim/log?since=0&limit=1000')->{entries} }));
ok($pushed && $coordinator->poll_query_until('postgres', qq{
	SELECT EXISTS (SELECT FROM invsync.sync_queue q
					 JOIN invsync.listings l USING (tenant_id, listing_id)
					WHERE q.tenant_id = $tenants[0] AND l.external_item_id = '800001'
					  AND q.state = 'synced' AND q.pushed_version = q.version)
	   AND EXISTS (SELECT FROM invsync.sync_attempts a
					WHERE a.tenant_id = $tenants[0] AND a.http_status = 200
					  AND a.correlation_id LIKE '%citus-push-42%')}),
	'the push is recorded: its queue row synced, its attempt with the correlation id');

# The sweep of expired leases, the claim of order fetches and the purge of
# attempts visit only the tenants with such rows in the node's shards
# (_local_tenants_where), not every tenant the node serves: checked on the
# first tenant's node, in a transaction rolled back, with one of its rows
# given a lease that ran out and its attempts past the retention.
my $expired = q{'state = ''pending'' AND lease_until <= $1'};
my ($none_expired, $expired_before, $expired_tenants, undef, $swept, $purged, $attempts_left, $other_node) =
  split /\n/, $workers[0]->safe_psql('postgres', qq{
BEGIN;
SELECT count(*) FROM invsync._local_tenants_where('sync_queue', $expired, now());
UPDATE invsync.sync_queue SET state = 'pending', lease_until = now() - interval '1 second',
	   claimed_version = version
 WHERE tenant_id = $tenants[0]
   AND listing_id = (SELECT min(listing_id) FROM invsync.sync_queue WHERE tenant_id = $tenants[0]);
SELECT count(*) FROM invsync.sync_queue WHERE tenant_id = $tenants[0] AND lease_until <= now();
SELECT string_agg(t::text, ',') FROM invsync._local_tenants_where('sync_queue', $expired, now()) t;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 100, 50);
SELECT count(*) FROM invsync.sync_queue
 WHERE tenant_id = $tenants[0] AND lease_until <= now();
SELECT invsync._purge_attempts(now() + interval '1 day', 100000) > 0;
SELECT count(*) FROM invsync.sync_attempts WHERE tenant_id = $tenants[0];
ROLLBACK;
SELECT count(*) FROM invsync._local_tenants_where('sync_attempts', 'tenant_id = $tenants[1]', now());
});
is($none_expired, '0', 'no tenant has an expired lease on the node');
is("$expired_before $expired_tenants", "1 $tenants[0]", 'a lease run out: its tenant, and only it, is found');
is($swept, '0', 'the claim sweeps the expired lease');
is("$purged $attempts_left", 't 0', 'the purge deletes the attempts of the tenant past the retention');
is($other_node, '0', "the other node's tenant has no rows in this node's shards");

# A worker started again shortens the leases its previous incarnation held,
# for the tenants its node serves, one statement a tenant, and pushes on.
my $old_pid = $workers[0]->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'});
$workers[0]->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
$workers[0]->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'invsync sync worker' AND pid <> $old_pid})
  or die 'the sync worker did not start again';
# no correlation id set: the one made for the transaction is the ledger
# row's and the push's
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SELECT FROM invsync.adjust('MUG-01', 'JKT-1', -1, 'sale', 'citus-push-2');
});
my $generated_id = $coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SELECT correlation_id FROM invsync.ledger_entries WHERE idempotency_key = 'citus-push-2'});
like($generated_id, qr/^[0-9a-f-]{36}$/, 'the ledger row has the id made for its transaction');
$pushed = pushed_with($sim, $generated_id);
ok($pushed, 'the worker started again pushes the next change, with its ledger row\'s correlation id');

# A stock row created through the coordinator (the sku's first stock at a
# location) is published: the function creating it says so, where its
# shard's triggers could not tell it from a row loaded from a dump.
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SET invsync.correlation_id = 'citus-push-44';
SELECT FROM invsync.adjust('MUG-01', 'SBY-1', 3, 'receipt', 'citus-push-3');
});
$pushed = pushed_with($sim, 'citus-push-44');
ok($pushed, 'the first stock at a new location, made through the coordinator, is pushed');

# An access token that expired: the node's worker refreshes it, stores the
# new pair on the tenant's shard and sends the push again.
sim_post($sim, '/_sim/expire_token', { shop_id => 6001 });
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SET invsync.correlation_id = 'citus-refresh-1';
SELECT FROM invsync.adjust('MUG-01', 'JKT-1', 1, 'receipt', 'citus-push-5');
});
ok(pushed_with($sim, 'citus-refresh-1'), 'a push refused for an expired token is sent again');
my $sim_tokens = sim_get($sim, '/_sim/shops?shop_id=6001');
is($coordinator->safe_psql('postgres', qq{
SELECT s.access_token = '$sim_tokens->{access_token}' AND s.refresh_token = '$sim_tokens->{refresh_token}'
	   AND s.token_state = 'ok'
	   AND (SELECT count(*) FROM invsync.sync_attempts a
			 WHERE a.tenant_id = $tenants[0] AND a.kind = 'token_refresh' AND a.outcome = 'ok') = 1
  FROM invsync.shops s WHERE s.tenant_id = $tenants[0] AND s.external_shop_id = '6001'}),
	't', 'after one refresh, whose new tokens are stored on the tenant\'s shard');

# An order push taken through the coordinator: handle_webhook() finds the
# shop's tenant and queues a fetch on the tenant's shard; that node's
# worker reads the order from the simulator, reserves its lines and pushes
# the lower level, every step with the push's correlation id.
my $t = time() - 100;
sim_post($sim, '/_sim/orders',
	{ shop_id => 6001, order_sn => 'CO-1', order_status => 'READY_TO_SHIP',
	  update_time => $t, lines => [ { item_id => 800001, model_id => 21, qty => 2 } ] });
my $hook_url = 'https://example.com/webhooks/shopee';
my $hook_body = qq({"data":{"items":[],"ordersn":"CO-1","status":"READY_TO_SHIP","completed_scenario":"","update_time":$t},"shop_id":6001,"code":3,"timestamp":$t});
my $hook_headers = encode_json({ Authorization =>
	  hmac_sha256_hex("$hook_url|$hook_body", 'shpk-citus-partner-key-0123456789') });
like($coordinator->safe_psql('postgres', qq{
SET invsync.correlation_id = 'citus-order-1';
SELECT invsync.handle_webhook('shopee', '$hook_headers', \$b\$$hook_body\$b\$, '$hook_url');
}), qr/"status": "accepted"/, 'an order push is accepted through the coordinator');
ok($coordinator->poll_query_until('postgres', qq{
	SELECT EXISTS (SELECT 1 FROM invsync.marketplace_orders
					WHERE tenant_id = $tenants[0] AND order_id = 'CO-1' AND effect = 'reserve')
	   AND EXISTS (SELECT 1 FROM invsync.order_fetches
					WHERE tenant_id = $tenants[0] AND order_id = 'CO-1' AND state = 'done')}),
	'the node holding the tenant fetched the order and reserved its lines')
  or diag('orders: '
	  . $coordinator->safe_psql('postgres', qq{
		SELECT string_agg(format('%s', o), ' ') FROM invsync.marketplace_orders o
		 WHERE tenant_id = $tenants[0]})
	  . "\nfetches: "
	  . $coordinator->safe_psql('postgres', qq{
		SELECT string_agg(format('%s', f), ' ') FROM invsync.order_fetches f
		 WHERE tenant_id = $tenants[0]}));
is($coordinator->safe_psql('postgres', qq{
SELECT string_agg(DISTINCT correlation_id, ' ') FROM invsync.ledger
 WHERE tenant_id = $tenants[0] AND idempotency_key LIKE 'mp:shopee:%:CO-1:reserve'}),
	'citus-order-1', 'the reservation carries the push\'s correlation id');
# the listing publishes the sku's units over every location, less the two
# held: pushed once the hold is made
ok($coordinator->poll_query_until('postgres', qq{
	SELECT (SELECT sum(s.reserved) FROM invsync.stock_levels s
			 WHERE s.tenant_id = $tenants[0] AND s.sku = 'MUG-01') = 2
	   AND q.state = 'synced' AND q.pushed_version = q.version
	   AND q.pushed_level = (SELECT sum(s.on_hand - s.reserved) FROM invsync.stock_levels s
							  WHERE s.tenant_id = $tenants[0] AND s.sku = 'MUG-01')
	  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
	 WHERE q.tenant_id = $tenants[0] AND l.sku = 'MUG-01'}),
	'the level less the two units held is pushed');


# A shard move hands the tenant to the node that now holds its shards:
# tenant 1's shards (with every co-located table's) go from the first
# worker node to the second, whose sync worker then serves the tenant and
# pushes its next change.
my ($src, $dst) = @workers;
$coordinator->safe_psql('postgres', qq{
	SELECT citus_move_shard_placement(
			 get_shard_id_for_distribution_column('invsync.locations', $tenants[0]),
			 '127.0.0.1', @{[ $src->port ]}, '127.0.0.1', @{[ $dst->port ]},
			 shard_transfer_mode => 'block_writes')});
is(join(' ', map { $_->safe_psql('postgres', q{
		SELECT coalesce(string_agg(DISTINCT tenant_id::text, ',' ORDER BY tenant_id::text), 'none')
		  FROM invsync._served_shops()}) } @workers),
	"none $tenants[0]",
	'after the move, the second worker node serves the moved tenant\'s shop, the first none');
$coordinator->safe_psql('postgres', qq{
SET invsync.tenant = '$tenants[0]';
SET invsync.correlation_id = 'citus-after-move';
SELECT FROM invsync.adjust('MUG-01', 'JKT-1', 1, 'receipt', 'citus-after-move-1');
});
ok(pushed_with($sim, 'citus-after-move'),
	'a change made after the move is pushed, by the node now holding the tenant');
ok($coordinator->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM invsync.sync_attempts
	 WHERE tenant_id = $tenants[0] AND correlation_id LIKE '%citus-after-move%'
	   AND http_status = 200}),
	'and recorded there');
# MUG-01's ledger rows at JKT-1 now have ids from three nodes' ranges (the
# coordinator's adjusts, the first worker node's reservation of the order,
# then the coordinator's again): the newest is not the highest id, and the
# check follows the balances, not the ids.
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency(true)'),
	'0', 'check_consistency(true) is empty with one sku\'s ledger rows drawn on several nodes');

# pg_dump keeps every row on Citus too: the coordinator's dump, restored
# into an empty database on a new coordinator, worker nodes added, then
# distribute(), gives every table of the extension the rows it had, and
# check_consistency() is empty.  The shops are paused and the workers idle
# first, so that no row changes meanwhile.
$coordinator->safe_psql('postgres',
	join('', map { "SET invsync.tenant = '$_'; UPDATE invsync.shops SET enabled = false;\n" } @tenants));
ok($coordinator->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM invsync.sync_queue WHERE lease_until IS NOT NULL)
		 + (SELECT count(*) FROM invsync.order_fetches WHERE lease_until > now()) = 0}),
	'the workers hold no lease');
my @invsync_tables = split /\n/, $coordinator->safe_psql('postgres', q{
	SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'invsync' AND c.relkind = 'r' ORDER BY 1});
# each table's rows, as text, in one order (the sync worker's purge and the
# tests' own rows give every queue table some)
sub table_rows
{
	my ($node) = @_;
	return join("\n", map {
		"$_: " . $node->safe_psql('postgres', qq{
			SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
			  FROM invsync.$_ t}) } @invsync_tables);
}
my $rows_before = table_rows($coordinator);
like($rows_before, qr/sync_attempts: [1-9]/, 'the cluster has sync attempts to dump');
my $dump_dir = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'pg_dump', '-Fc', '-f', "$dump_dir/coordinator.dump", '-d', $coordinator->connstr('postgres') ],
	'pg_dump of the coordinator');
is(table_rows($coordinator), $rows_before, 'no row changed while it was dumped');

my @restored;
for my $name (qw(restored_coordinator restored_worker1 restored_worker2))
{
	push @restored, start_node($name,
		shared_preload_libraries => "'citus,invsync'",
		listen_addresses => "'127.0.0.1'",
		max_prepared_transactions => 20,
		'citus.shard_count' => 4,
		log_min_messages => 'warning');
}
# the coordinator's database empty (start_node made the extension); the
# worker nodes with both extensions, as for any new cluster
$restored[0]->safe_psql('postgres', 'DROP EXTENSION invsync; DROP SCHEMA invsync');
command_ok([ 'pg_restore', '--exit-on-error', '-d', $restored[0]->connstr('postgres'),
		"$dump_dir/coordinator.dump" ], 'pg_restore on the new coordinator');
for my $node (@restored)
{
	$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS citus');
	$node->safe_psql('postgres', 'ALTER ROLE invsync_worker LOGIN');
}
$restored[0]->safe_psql('postgres',
	"SELECT citus_set_coordinator_host('127.0.0.1', " . $restored[0]->port . ')');
$restored[0]->safe_psql('postgres', "SELECT citus_add_node('127.0.0.1', " . $_->port . ')')
  for @restored[1, 2];
$restored[0]->safe_psql('postgres', 'SELECT invsync.distribute()');
is(table_rows($restored[0]), $rows_before, 'after distribute(), every table has the rows it had');
is($restored[0]->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency(true)'),
	'0', 'check_consistency(true) is empty on the restored cluster')
  or diag($restored[0]->safe_psql('postgres', 'SELECT string_agg(format(\'%s\', c), \' \') FROM invsync.check_consistency(true) c')
	  . "\noriginal: " . $coordinator->safe_psql('postgres', 'SELECT string_agg(format(\'%s\', c), \' \') FROM invsync.check_consistency(true) c'));
is($restored[0]->safe_psql('postgres', q{
	SELECT count(*) FROM invsync.ledger WHERE tableoid = 'invsync.ledger'::regclass}),
	'0', 'no copy of the rows is left in the coordinator\'s own tables');
# a new stock movement there draws a ledger id no restored row has
is($restored[0]->safe_psql('postgres', qq{
	SET invsync.tenant = '$tenants[1]';
	SELECT FROM invsync.adjust('MUG-01', 'JKT-1', 1, 'receipt', 'after-restore-1');
	SELECT count(*) = count(DISTINCT ledger_id) FROM invsync.ledger WHERE tenant_id = $tenants[1]}),
	't', 'ledger ids stay unique after the restore');

done_testing();
