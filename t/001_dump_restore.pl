# Copyright (c) 2026, invsync developers
#
# pg_dump and restore keep every row of the extension's tables (they are
# registered with pg_extension_config_dump) and their sequences.  The
# source holds what a database in use holds: three tenants with the same
# codes, nested bundles, every ledger operation, apps with their secrets
# (one base URL stored while plain http was allowed, one written past the
# check, as before 0.3), shops with tokens (one disabled), listings of
# plain skus and bundles (one disabled), queue rows in every state (never
# claimed, in flight, failing and due later, published, published and
# changed since, dead letters) and the attempts that made them.
#
# It is dumped in the custom and in the plain format (COPY, and INSERTs)
# and restored into fresh databases with pg_restore and psql, statement by
# statement and in one transaction, the extension's triggers enabled while
# the rows load in the order pg_dump writes them (listings, then stock,
# then the queue).  (Not with pg_restore --jobs: it loads the extension's
# tables in parallel, ignoring their foreign keys, and fails whatever the
# triggers do.)  Every table must come back with exactly the source's rows,
# check_consistency() empty, and the restored database must work: new
# movements continue the ledger, a change of published stock queues a
# push, a new listing is queued, and the worker still refuses a base URL
# the server does not allow.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'invsync'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION invsync');

# invsync.allow_insecure_http is a postgresql.conf setting
sub allow_insecure_http
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET invsync.allow_insecure_http = $value");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('src',
		"SELECT current_setting('invsync.allow_insecure_http') = '$value'")
	  or die "invsync.allow_insecure_http did not become $value";
}

# every kind of stock row, in three tenants with the same codes
my @tenants = (0, 7, 12);
for my $tenant (@tenants)
{
	$node->safe_psql('src', qq{
		SET invsync.tenant = '$tenant';
		SET invsync.correlation_id = 'dump-test-$tenant';
		SELECT invsync.upsert_location('W1', 'first', 1);
		SELECT invsync.upsert_location('W2', 'second', 2);
		SELECT invsync.upsert_item('A', 'apple');
		SELECT invsync.upsert_item('B', 'pear');
		SELECT invsync.upsert_item('C', 'plum');
		SELECT invsync.upsert_item('KIT', 'two apples and a pear');
		SELECT invsync.upsert_item('BOX', 'a kit and a plum');
		SELECT invsync.set_bundle('KIT', '[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]');
		SELECT invsync.set_bundle('BOX', '[{"sku": "KIT", "qty": 1}, {"sku": "C", "qty": 1}]');
		SELECT invsync.adjust('A', 'W1', 20 + $tenant, 'receipt', 'in-a', 'PO-1');
		SELECT invsync.adjust('B', 'W1', 10, 'receipt', 'in-b');
		SELECT invsync.set_on_hand('B', 'W2', 4, 'count', 'count-b');
		SELECT invsync.transfer('A', 'W1', 'W2', 3, 'move-a');
		SELECT invsync.adjust('C', 'W2', 6, 'receipt', 'in-c');
		SELECT invsync.reserve('ORD-1', '[{"sku": "KIT", "qty": 2}]', 'res-1');
		SELECT invsync.reserve('ORD-2', '[{"sku": "A", "qty": 1}]', 'res-2');
		SELECT invsync.reserve('ORD-3', '[{"sku": "B", "qty": 2, "location": "W2"}]', 'res-3');
		SELECT invsync.release('ORD-2', 'rel-2');
		SELECT invsync.fulfill('ORD-3', 'ful-3');
	});
}

# apps and shops: two apps per tenant, an enabled shop on each and a
# disabled one; in tenant 12 also an app whose base URL is plain http,
# stored while that was allowed, and one whose URL carries a password,
# written past the check (as a row stored before 0.3 may be)
for my $tenant (@tenants)
{
	$node->safe_psql('src', qq{
		SET invsync.tenant = '$tenant';
		INSERT INTO invsync.apps (channel, app_key, app_secret, push_secret, base_url)
		VALUES ('shopee', '100$tenant', 'app-secret-$tenant', 'push-secret-$tenant', NULL),
			   ('shopee', '200$tenant', 'app-secret-2-$tenant', NULL, 'https://sandbox.invalid/p');
	});
}
allow_insecure_http('on');
$node->safe_psql('src', q{
	SET invsync.tenant = 12;
	INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
	VALUES ('shopee', '300', 'app-secret-http', 'http://127.0.0.1:9/plain');
	SET session_replication_role = replica;
	-- past the trigger that gives a new app its creation time, too
	INSERT INTO invsync.apps (channel, app_key, app_secret, base_url, created_at)
	VALUES ('shopee', '400', 'app-secret-userinfo', 'https://user:password@127.0.0.1:9', now());
});
allow_insecure_http('off');
for my $tenant (@tenants)
{
	$node->safe_psql('src', qq{
		SET invsync.tenant = '$tenant';
		SET invsync.correlation_id = 'listings-$tenant';
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, token_state)
		SELECT app_id, 'shop-' || app_key, 'ID', 'access-' || app_key, 'refresh-' || app_key,
			   now() + interval '4 hours', 'ok'
		  FROM invsync.apps WHERE tenant_id = $tenant;
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, token_state, enabled)
		SELECT app_id, 'off-' || app_key, 'ID', 'access-off-' || app_key, 'refresh-off-' || app_key,
			   now() + interval '4 hours', 'reauthorize', false
		  FROM invsync.apps WHERE tenant_id = $tenant AND app_key = '100$tenant';
		-- every shop lists the skus, the bundles and a disabled listing
		INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id,
									  source_locations, buffer, allocation_percent,
									  min_level, max_level, enabled)
		SELECT s.shop_id, x.sku, 'item-' || x.sku, x.model, x.sources, x.buffer, x.alloc,
			   x.min_level, x.max_level, x.enabled
		  FROM invsync.shops s,
			   (VALUES ('A', NULL, NULL::text[], 0, 100, NULL::bigint, NULL::bigint, true),
					   ('B', 'm1', '{W1}', 1, 100, NULL, 50, true),
					   ('C', NULL, NULL, 0, 50, 2, NULL, true),
					   ('KIT', 'k1', '{W1}', 0, 100, NULL, NULL, true),
					   ('BOX', NULL, NULL, 0, 100, NULL, NULL, true),
					   ('B', 'm2', NULL, 0, 100, NULL, NULL, false))
					AS x (sku, model, sources, buffer, alloc, min_level, max_level, enabled)
		 WHERE s.tenant_id = $tenant;
	});
}

# the worker's protocol, by hand: claim every due row (the rows of the
# shops whose base URL is refused become dead letters), then record A and
# BOX published, KIT refused for good and B failing, due again in an hour;
# C stays in flight.  One attempt row per shop.
is($node->safe_psql('src', q{
	CREATE TEMP TABLE claimed AS
		SELECT * FROM invsync._claim(now(), interval '1 hour', 1000, 50);
	SELECT count(*) FROM invsync._record_batch(
		(SELECT array_agg(ROW(c.tenant_id, c.listing_id, c.version, c.target_level,
							  CASE l.sku WHEN 'KIT' THEN 'dead' WHEN 'B' THEN 'retry' ELSE 'ok' END,
							  CASE l.sku WHEN 'B' THEN 3600000 ELSE 0 END,
							  CASE l.sku WHEN 'KIT' THEN 'permanent' WHEN 'B' THEN 'retryable' END,
							  CASE l.sku WHEN 'KIT' THEN 'item not found' WHEN 'B' THEN 'HTTP 503' END
							 )::invsync.worker_outcome ORDER BY c.tenant_id, c.listing_id)
		   FROM claimed c JOIN invsync.listings l USING (tenant_id, listing_id)
		  WHERE l.sku <> 'C'),
		(SELECT array_agg(ROW(c.tenant_id, c.shop_id, 'shopee', 'stock_update', c.listings,
							  c.versions, c.levels, 'claim-' || c.shop_id,
							  'https://sandbox.invalid/p/api/v2/product/update_stock?sign=[redacted]',
							  200, 'partial', 'permanent', 'item not found', 'req-' || c.shop_id,
							  12.5, now())::invsync.worker_attempt ORDER BY c.tenant_id, c.shop_id)
		   FROM (SELECT tenant_id, shop_id,
						array_agg(listing_id ORDER BY listing_id) AS listings,
						array_agg(version ORDER BY listing_id) AS versions,
						array_agg(target_level ORDER BY listing_id) AS levels
				   FROM claimed GROUP BY 1, 2) c),
		now());
}), '0', 'the outcomes of the claimed rows are recorded');

# after the pushes: in tenants 0 and 7, more of A at W2 (its listings and
# the bundles' pending again above the version published); in every
# tenant, one more order and a listing no worker has claimed yet
for my $tenant (@tenants)
{
	$node->safe_psql('src', qq{
		SET invsync.tenant = '$tenant';
		SET invsync.correlation_id = 'after-push-$tenant';
		SELECT invsync.adjust('A', 'W2', 2, 'receipt', 'in-a-2') WHERE $tenant <> 12;
		SELECT invsync.reserve('ORD-4', '[{"sku": "B", "qty": 1, "location": "W1"}]', 'res-4');
		INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
		SELECT shop_id, 'C', 'item-C', 'late' FROM invsync.shops
		 WHERE tenant_id = $tenant AND external_shop_id = 'shop-200$tenant';
	});
}
is($node->safe_psql('src', 'SELECT count(*) FROM invsync.check_consistency(true)'),
	'0', 'source is consistent');

# the queue holds every state a queue row can be in
my $queue_states = q{
	SELECT string_agg(format('%s=%s', k, n), ' ' ORDER BY k)
	  FROM (SELECT CASE
					 WHEN state = 'dead' THEN 'dead/' || last_error_class
					 WHEN state = 'synced' THEN 'synced'
					 WHEN lease_until IS NOT NULL THEN 'pending/in-flight'
					 WHEN attempts > 0 THEN 'pending/failing'
					 WHEN pushed_version IS NOT NULL THEN 'pending/changed-since-push'
					 ELSE 'pending/never-claimed'
				   END AS k, count(*) AS n
			  FROM invsync.sync_queue GROUP BY 1) x};
is($node->safe_psql('src', $queue_states),
	'dead/base_url=10 dead/permanent=6 pending/changed-since-push=10 '
	  . 'pending/failing=6 pending/in-flight=6 pending/never-claimed=3 synced=2',
	'the source queue holds rows in every state');
is($node->safe_psql('src', q{
		SELECT count(*) FROM invsync.listings l
		  JOIN invsync.shops s USING (tenant_id, shop_id)
		 WHERE NOT (l.enabled AND s.enabled)
		   AND NOT EXISTS (SELECT FROM invsync.sync_queue q
							WHERE q.tenant_id = l.tenant_id AND q.listing_id = l.listing_id)}),
	'26', 'disabled listings and the listings of disabled shops have no queue rows');

# every table and sequence registered for dumping
my @config = split /\n/, $node->safe_psql('src', q{
	SELECT c.oid::regclass || ' ' || c.relkind::text
	  FROM pg_extension e, unnest(e.extconfig) t(oid)
	  JOIN pg_class c ON c.oid = t.oid
	 WHERE e.extname = 'invsync'
	 ORDER BY 1});
my @tables = map { (split / /)[0] } grep { / [rp]$/ } @config;
my @sequences = map { (split / /)[0] } grep { / S$/ } @config;
for my $t (qw(locations items bundle_components bundle_leaves bundle_versions
	stock_levels ledger reservation_orders reservations idempotency_keys apps shops
	listings sync_queue sync_attempts))
{
	ok((grep { $_ eq "invsync.$t" } @tables), "invsync.$t is registered for pg_dump");
}
for my $s (qw(ledger_id_seq channel_id_seq attempt_id_seq))
{
	ok((grep { $_ eq "invsync.$s" } @sequences), "invsync.$s is registered for pg_dump");
}

# the rows of a table, every column, in one order
sub table_rows
{
	my ($db, $t) = @_;
	return $node->safe_psql($db,
		"SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM $t x");
}

sub sequence_state
{
	my ($db, $s) = @_;
	return $node->safe_psql($db, "SELECT last_value || ' ' || is_called FROM $s");
}

my %source = map { $_ => table_rows('src', $_) } @tables;
my %source_seq = map { $_ => sequence_state('src', $_) } @sequences;
# per tenant: 3 adjust, 1 set_on_hand, 2 transfer, 2 + 1 + 1 + 1 reserve,
# 1 release, 1 fulfill, and one more adjust in tenants 0 and 7
is($node->safe_psql('src', 'SELECT count(*) FROM invsync.ledger'), '41',
	'source has 41 ledger rows');
# the secrets are dumped too: pg_dump runs as a superuser
is($node->safe_psql('src', 'SELECT count(*) FROM invsync.shops'), '11', 'source has 11 shops');
is($node->safe_psql('src', 'SELECT count(*) FROM invsync.sync_attempts'), '6',
	'source has 6 attempts');
my $max_src = $node->safe_psql('src', 'SELECT max(ledger_id) FROM invsync.ledger');

my $tempdir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', "$tempdir/src.dump", '-d', $node->connstr('src') ],
	'pg_dump custom format');
$node->command_ok(
	[ 'pg_dump', '-Fp', '-f', "$tempdir/src.sql", '-d', $node->connstr('src') ],
	'pg_dump plain format');
$node->command_ok(
	[ 'pg_dump', '-Fp', '--inserts', '-f', "$tempdir/src-inserts.sql", '-d', $node->connstr('src') ],
	'pg_dump plain format with INSERT statements');

# pg_dump writes the listings before the queue (its foreign key), and the
# stock after the listings: the order in which the triggers would fire
my @data_order = grep { /TABLE DATA invsync (listings|stock_levels|sync_queue) / }
  split /\n/, `pg_restore -l $tempdir/src.dump`;
s/.*TABLE DATA invsync (\S+) .*/$1/ for @data_order;
is("@data_order", 'listings stock_levels sync_queue',
	'pg_dump writes listings, then stock, then the queue');

my %restores = (
	dst_custom => [ 'pg_restore', '--exit-on-error', "$tempdir/src.dump" ],
	dst_custom_single => [ 'pg_restore', '--exit-on-error', '--single-transaction', "$tempdir/src.dump" ],
	dst_plain => [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tempdir/src.sql" ],
	dst_inserts => [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction',
		'-f', "$tempdir/src-inserts.sql" ]);

for my $db (sort keys %restores)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->command_ok([ @{ $restores{$db} }, '-d', $node->connstr($db) ],
		"$db: restored into a fresh database with $restores{$db}[0]");

	for my $t (@tables)
	{
		is(table_rows($db, $t), $source{$t}, "$db: $t has exactly the source's rows");
	}
	for my $s (@sequences)
	{
		is(sequence_state($db, $s), $source_seq{$s}, "$db: $s is restored");
	}
	is($node->safe_psql($db, 'SELECT count(*) FROM invsync.check_consistency(true)'),
		'0', "$db: check_consistency() is empty");
	is($node->safe_psql($db, $queue_states), $node->safe_psql('src', $queue_states),
		"$db: the queue rows are in the states they were in");
	is($node->safe_psql($db, q{
			SELECT string_agg(a.app_secret || ' ' || coalesce(a.push_secret, '-') || ' '
							  || s.access_token || ' ' || s.refresh_token, ', '
							  ORDER BY a.tenant_id, a.app_key)
			  FROM invsync.apps a JOIN invsync.shops s USING (tenant_id, app_id)
			 WHERE s.enabled AND a.tenant_id IN (0, 7)}),
		'app-secret-0 push-secret-0 access-1000 refresh-1000, '
		  . 'app-secret-2-0 - access-2000 refresh-2000, '
		  . 'app-secret-7 push-secret-7 access-1007 refresh-1007, '
		  . 'app-secret-2-7 - access-2007 refresh-2007',
		"$db: app secrets and shop tokens are restored");

	# per tenant, what the views show is what they showed before
	for my $tenant (@tenants)
	{
		my $views = qq{
			SET invsync.tenant = '$tenant';
			SELECT string_agg(format('%s@%s=%s/%s', sku, location, on_hand, reserved), ' ' ORDER BY sku, location) FROM invsync.stock;
			SELECT invsync.available('KIT'), invsync.available('BOX');
			SELECT string_agg(format('%s:%s', order_ref, qty), ' ' ORDER BY order_ref, sku, location) FROM invsync.open_reservations;
			SELECT string_agg(format('%s/%s/%s=%s %s %s', shop_id, sku, external_model_id, level, sync_state, pushed_level), ' ' ORDER BY listing_id) FROM invsync.listing_levels;
			SELECT string_agg(format('%s %s %s %s %s', shop_id, pending, in_flight, failing, dead), ', ' ORDER BY shop_id) FROM invsync.sync_status;
			SELECT string_agg(format('%s %s %s', listing_id, last_error_class, last_error), ', ' ORDER BY listing_id) FROM invsync.dead_letters;};
		is($node->safe_psql($db, $views), $node->safe_psql('src', $views),
			"$db: tenant $tenant sees the same stock, availability, reservations, levels and queue");
	}

	# a new movement continues the ledger ids, in two tenants
	my $new_ids = $node->safe_psql($db, q{
		SELECT ledger_id FROM invsync.adjust('A', 'W1', 1, 'receipt', 'after-restore');
		SET invsync.tenant = 7;
		SELECT ledger_id FROM invsync.adjust('A', 'W1', 1, 'receipt', 'after-restore');});
	my @ids = split /\n/, $new_ids;
	is_deeply(\@ids, [ $max_src + 1, $max_src + 2 ],
		"$db: new ledger ids continue after $max_src");
	# the restored idempotency keys still replay, and still refuse changes
	is($node->safe_psql($db, q{
		SET invsync.tenant = 7;
		SELECT string_agg(ledger_id::text, ',' ORDER BY ledger_id) FROM invsync.transfer('A', 'W1', 'W2', 3, 'move-a');}),
		$node->safe_psql('src', q{
		SET invsync.tenant = 7;
		SELECT string_agg(ledger_id::text, ',' ORDER BY ledger_id) FROM invsync.ledger_entries WHERE idempotency_key = 'move-a';}),
		"$db: a restored idempotency key replays the original rows");
	my ($ret, $stdout, $stderr) = $node->psql($db,
		q{SELECT * FROM invsync.adjust('A', 'W1', 99, 'receipt', 'in-a', 'PO-1')});
	like($stderr, qr/already used with different parameters/,
		"$db: a restored idempotency key refuses other parameters");

	# a change of published stock queues a push: in tenant 12, the listings
	# of A in the two shops that can be sent to were published, and are
	# pending again, one version on, carrying the change's correlation id
	my $a_queue = q{
		SET invsync.tenant = 12;
		SELECT string_agg(format('%s %s %s %s', q.listing_id, q.state, q.version, q.correlation_ids),
						  ', ' ORDER BY q.listing_id)
		  FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		  JOIN invsync.shops s ON s.tenant_id = q.tenant_id AND s.shop_id = q.shop_id
		 WHERE q.tenant_id = 12 AND l.sku = 'A'
		   AND s.external_shop_id IN ('shop-10012', 'shop-20012')};
	my $expected_a = $node->safe_psql($db, $a_queue);
	$expected_a =~ s/(\d+) synced (\d+) \{\}/"$1 pending " . ($2 + 1) . ' {restored-12}'/ge;
	$node->safe_psql($db, q{
		SET invsync.tenant = 12;
		SET invsync.correlation_id = 'restored-12';
		SELECT invsync.adjust('A', 'W1', 5, 'receipt', 'after-restore-12');});
	like($expected_a, qr/^\d+ pending \d+ \{restored-12\}, \d+ pending \d+ \{restored-12\}$/,
		"$db: tenant 12 has two published listings of A");
	is($node->safe_psql($db, $a_queue), $expected_a,
		"$db: an adjustment after the restore queues a push of every published listing");

	# a listing created after the restore is queued; so are the listings of
	# a shop enabled
	is($node->safe_psql($db, q{
		SET invsync.tenant = 7;
		WITH l AS (
			INSERT INTO invsync.listings (shop_id, sku, external_item_id)
			SELECT shop_id, 'C', 'item-C-new' FROM invsync.shops
			 WHERE tenant_id = 7 AND external_shop_id = 'shop-1007'
			RETURNING tenant_id, listing_id)
		SELECT listing_id > (SELECT max(listing_id) FROM invsync.listings) FROM l;
		SELECT q.state || ' ' || q.version FROM invsync.sync_queue q
		 WHERE q.tenant_id = 7 AND q.listing_id = (SELECT max(listing_id) FROM invsync.listings);}),
		"t\npending 1", "$db: a listing created after the restore gets a new id and is queued");
	is($node->safe_psql($db, q{
		SET invsync.tenant = 0;
		UPDATE invsync.shops SET enabled = true, token_state = 'ok'
		 WHERE tenant_id = 0 AND external_shop_id = 'off-1000';
		SELECT count(*) FROM invsync.sync_queue q JOIN invsync.shops s USING (tenant_id, shop_id)
		 WHERE s.tenant_id = 0 AND s.external_shop_id = 'off-1000' AND q.state = 'pending';}),
		'5', "$db: enabling a restored shop queues its enabled listings");

	# the loaded base URLs were kept as stored, and the worker still refuses
	# to send to them here: their rows, sent again, are dead letters again
	is($node->safe_psql($db, q{
		SET invsync.tenant = 12;
		SELECT invsync.retry_dead(shop_id) FROM invsync.shops s JOIN invsync.apps a USING (tenant_id, app_id)
		 WHERE a.app_key IN ('300', '400') AND s.enabled ORDER BY a.app_key;
		SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 1000, 50) c
		  JOIN invsync.shops s USING (tenant_id, shop_id) JOIN invsync.apps a USING (tenant_id, app_id)
		 WHERE a.app_key IN ('300', '400');
		SELECT string_agg(DISTINCT a.app_key || ' ' || q.state || '/' || q.last_error_class, ' '
						  ORDER BY a.app_key || ' ' || q.state || '/' || q.last_error_class)
		  FROM invsync.sync_queue q JOIN invsync.shops s USING (tenant_id, shop_id)
		  JOIN invsync.apps a USING (tenant_id, app_id)
		 WHERE q.tenant_id = 12 AND a.app_key IN ('300', '400');}),
		"5\n5\n0\n300 dead/base_url 400 dead/base_url",
		"$db: rows of an app whose loaded base URL is refused here are never sent");

	is($node->safe_psql($db, 'SELECT count(*) FROM invsync.check_consistency(true)'),
		'0', "$db: still consistent after new movements");
	# the append-only guard came back with the extension
	($ret, $stdout, $stderr) = $node->psql($db, 'DELETE FROM invsync.ledger');
	like($stderr, qr/append-only/, "$db: the ledger is still append-only");
}

$node->stop;
done_testing();
