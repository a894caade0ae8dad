# Copyright (c) 2026, invsync developers
#
# pg_dump and restore keep every row of the extension's tables (they are
# registered with pg_extension_config_dump) and the ledger id sequence:
# after a restore, in the custom and in the plain format, every table has
# the same rows, check_consistency() is empty, and a new movement continues
# the ledger ids without a collision.
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

# two tenants with the same codes, every kind of row: items, locations,
# bundles, stock, every ledger operation, open, released and fulfilled
# orders, idempotency keys, apps and shops with their secrets
for my $tenant (0, 7)
{
	$node->safe_psql('src', qq{
		SET invsync.tenant = '$tenant';
		SET invsync.correlation_id = 'dump-test-$tenant';
		SELECT invsync.upsert_location('W1', 'first', 1);
		SELECT invsync.upsert_location('W2', 'second', 2);
		SELECT invsync.upsert_item('A', 'apple');
		SELECT invsync.upsert_item('B', 'pear');
		SELECT invsync.upsert_item('KIT', 'two apples and a pear');
		SELECT invsync.set_bundle('KIT', '[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]');
		SELECT invsync.adjust('A', 'W1', 20 + $tenant, 'receipt', 'in-a', 'PO-1');
		SELECT invsync.adjust('B', 'W1', 10, 'receipt', 'in-b');
		SELECT invsync.set_on_hand('B', 'W2', 4, 'count', 'count-b');
		SELECT invsync.transfer('A', 'W1', 'W2', 3, 'move-a');
		SELECT invsync.reserve('ORD-1', '[{"sku": "KIT", "qty": 2}]', 'res-1');
		SELECT invsync.reserve('ORD-2', '[{"sku": "A", "qty": 1}]', 'res-2');
		SELECT invsync.reserve('ORD-3', '[{"sku": "B", "qty": 2, "location": "W2"}]', 'res-3');
		SELECT invsync.release('ORD-2', 'rel-2');
		SELECT invsync.fulfill('ORD-3', 'ful-3');
		INSERT INTO invsync.apps (channel, app_key, app_secret, push_secret, base_url)
		VALUES ('shopee', '100$tenant', 'app-secret-$tenant', 'push-secret-$tenant', NULL),
			   ('shopee', '200$tenant', 'app-secret-2-$tenant', NULL, 'https://sandbox.invalid/p');
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, token_state)
		SELECT app_id, 'shop-' || app_key, 'ID', 'access-' || app_key, 'refresh-' || app_key,
			   now() + interval '4 hours', 'reauthorize'
		  FROM invsync.apps WHERE tenant_id = $tenant;
	});
}
is($node->safe_psql('src', 'SELECT count(*) FROM invsync.check_consistency(true)'),
	'0', 'source is consistent');

# every table registered for dumping, and a fingerprint of its rows
my @tables = split /\n/, $node->safe_psql('src', q{
	SELECT c.oid::regclass
	  FROM pg_extension e, unnest(e.extconfig) t(oid)
	  JOIN pg_class c ON c.oid = t.oid
	 WHERE e.extname = 'invsync' AND c.relkind IN ('r', 'p')
	 ORDER BY 1::text});
for my $t (qw(locations items bundle_components bundle_leaves bundle_versions
	stock_levels ledger reservation_orders reservations idempotency_keys apps shops))
{
	ok((grep { $_ eq "invsync.$t" } @tables), "invsync.$t is registered for pg_dump");
}

sub fingerprint
{
	my ($db) = @_;
	my %result;
	for my $t (@tables)
	{
		$result{$t} = $node->safe_psql($db, qq{
			SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '')
			  FROM $t x});
	}
	return \%result;
}

my $source = fingerprint('src');
# per tenant: 2 adjust, 1 set_on_hand, 2 transfer, 2 + 1 + 1 reserve,
# 1 release, 1 fulfill
is((split / /, $source->{'invsync.ledger'})[0], '22', 'source has 22 ledger rows');
# the secrets are dumped too: pg_dump runs as a superuser
is((split / /, $source->{'invsync.shops'})[0], '4', 'source has 4 shops');
my $seq_src = $node->safe_psql('src',
	'SELECT last_value FROM invsync.ledger_id_seq');
my $max_src = $node->safe_psql('src', 'SELECT max(ledger_id) FROM invsync.ledger');

my $tempdir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', "$tempdir/src.dump", '-d', $node->connstr('src') ],
	'pg_dump custom format');
$node->command_ok(
	[ 'pg_dump', '-Fp', '-f', "$tempdir/src.sql", '-d', $node->connstr('src') ],
	'pg_dump plain format');

$node->safe_psql('postgres', 'CREATE DATABASE dst_custom');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst_custom'), "$tempdir/src.dump" ],
	'pg_restore into a fresh database');
$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tempdir/src.sql",
	  '-d', $node->connstr('dst_plain') ],
	'plain dump replayed with psql');

for my $db ('dst_custom', 'dst_plain')
{
	my $restored = fingerprint($db);
	for my $t (@tables)
	{
		is($restored->{$t}, $source->{$t}, "$db: $t has the same rows");
	}
	is($node->safe_psql($db, 'SELECT count(*) FROM invsync.check_consistency(true)'),
		'0', "$db: check_consistency() is empty");
	is($node->safe_psql($db, q{
			SELECT string_agg(a.app_secret || ' ' || coalesce(a.push_secret, '-') || ' '
							  || s.access_token || ' ' || s.refresh_token, ', '
							  ORDER BY a.tenant_id, a.app_key)
			  FROM invsync.apps a JOIN invsync.shops s USING (tenant_id, app_id)}),
		'app-secret-0 push-secret-0 access-1000 refresh-1000, '
		  . 'app-secret-2-0 - access-2000 refresh-2000, '
		  . 'app-secret-7 push-secret-7 access-1007 refresh-1007, '
		  . 'app-secret-2-7 - access-2007 refresh-2007',
		"$db: app secrets and shop tokens are restored");
	is($node->safe_psql($db, 'SELECT last_value FROM invsync.ledger_id_seq'),
		$seq_src, "$db: the ledger id sequence is restored");

	# per tenant, what the views show is what they showed before
	for my $tenant (0, 7)
	{
		my $views = qq{
			SET invsync.tenant = '$tenant';
			SELECT string_agg(format('%s@%s=%s/%s', sku, location, on_hand, reserved), ' ' ORDER BY sku, location) FROM invsync.stock;
			SELECT invsync.available('KIT');
			SELECT string_agg(format('%s:%s', order_ref, qty), ' ' ORDER BY order_ref, sku, location) FROM invsync.open_reservations;};
		is($node->safe_psql($db, $views), $node->safe_psql('src', $views),
			"$db: tenant $tenant sees the same stock, availability and reservations");
	}

	# a new movement continues the ledger ids, in both tenants
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
	is($node->safe_psql($db, 'SELECT count(*) FROM invsync.check_consistency(true)'),
		'0', "$db: still consistent after new movements");
	# the append-only guard came back with the extension
	($ret, $stdout, $stderr) = $node->psql($db, 'DELETE FROM invsync.ledger');
	like($stderr, qr/append-only/, "$db: the ledger is still append-only");
}

$node->stop;
done_testing();
