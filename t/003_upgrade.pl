# Copyright (c) 2026, invsync developers
#
# ALTER EXTENSION invsync UPDATE takes a database from every earlier
# version to the current one: the upgraded schema is exactly what a fresh
# install creates (functions with their bodies, options and privileges,
# tables, constraints, indexes, triggers, views, grants, the rows
# registered for pg_dump), the rows written before the upgrade stay, and
# the calls made before it replay after it under the same keys.  Bundles
# defined before 0.3 (nested, a diamond, a chain deeper than 0.3 lets one
# define, in two tenants) are flattened by the upgrade: the same
# availability, every stocked sku reserved, and new definitions limited.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'invsync'");
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'invsync'});
my @earlier = split /\n/, $node->safe_psql('postgres', qq{
	SELECT version FROM pg_available_extension_versions
	 WHERE name = 'invsync' AND version <> '$current' ORDER BY version});
ok(@earlier > 0, "earlier versions to upgrade from: @earlier");

# everything the extension defines, as text that differs when they differ
my $schema_query = q{
	SELECT 'function ' || p.oid::regprocedure || ': ' || pg_get_functiondef(p.oid)
		   || ' acl ' || coalesce(p.proacl::text, 'default')
	  FROM pg_proc p WHERE p.pronamespace = 'invsync'::regnamespace
	UNION ALL
	SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl '
		   || coalesce(c.relacl::text, 'default')
		   || ' options ' || coalesce(c.reloptions::text, '')
	  FROM pg_class c WHERE c.relnamespace = 'invsync'::regnamespace
	UNION ALL
	SELECT 'column ' || c.relname || '.' || a.attname || ' '
		   || format_type(a.atttypid, a.atttypmod)
		   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
		   || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
		   || ' position ' || (SELECT count(*) FROM pg_attribute b
								WHERE b.attrelid = a.attrelid AND b.attnum <= a.attnum
								  AND b.attnum > 0 AND NOT b.attisdropped)
		   || ' acl ' || coalesce(a.attacl::text, 'none')
	  FROM pg_attribute a
	  JOIN pg_class c ON c.oid = a.attrelid
	  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	 WHERE c.relnamespace = 'invsync'::regnamespace AND a.attnum > 0
	   AND NOT a.attisdropped
	UNION ALL
	SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ': '
		   || pg_get_constraintdef(oid)
	  FROM pg_constraint WHERE connamespace = 'invsync'::regnamespace
	UNION ALL
	SELECT 'index ' || indexname || ': ' || indexdef
	  FROM pg_indexes WHERE schemaname = 'invsync'
	UNION ALL
	SELECT 'trigger ' || pg_get_triggerdef(oid)
	  FROM pg_trigger WHERE tgrelid IN
		(SELECT oid FROM pg_class WHERE relnamespace = 'invsync'::regnamespace)
	   AND NOT tgisinternal
	UNION ALL
	SELECT 'view ' || viewname || ': ' || definition
	  FROM pg_views WHERE schemaname = 'invsync'
	UNION ALL
	SELECT 'type ' || t.typname
	  FROM pg_type t WHERE t.typnamespace = 'invsync'::regnamespace
	UNION ALL
	SELECT 'dumped ' || x::regclass
	  FROM pg_extension e, unnest(e.extconfig) x WHERE e.extname = 'invsync'
	UNION ALL
	SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
	  FROM pg_depend
	 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invsync')
	ORDER BY 1
};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION invsync');
my $fresh_schema = $node->safe_psql('fresh', $schema_query);

# what a few calls return, by key: the same before and after the upgrade
my $calls = q{
	SELECT sku, location, operation, on_hand_change, reserved_change,
		   on_hand_after, reserved_after, idempotency_key
	  FROM invsync.adjust('A', 'W1', 10, 'receipt', 'up-1')
	UNION ALL
	SELECT sku, location, operation, on_hand_change, reserved_change,
		   on_hand_after, reserved_after, idempotency_key
	  FROM invsync.transfer('A', 'W1', 'W2', 3, 'up-2')
	UNION ALL
	SELECT sku, location, operation, on_hand_change, reserved_change,
		   on_hand_after, reserved_after, idempotency_key
	  FROM invsync.reserve('o-1', '[{"sku": "A", "qty": 2, "location": "W1"}]', 'up-3')
};

# bundles defined in the old version: KIT in two tenants, GIFT holding
# KIT, a diamond 8 deep (2^8 paths from DA8 to DA0) and a chain CHAIN deep
# (40 where the version allows it, else its limit, 32)
my $bundles_setup_template = q{
	SET invsync.tenant = 4;
	SELECT invsync.upsert_item('A');
	SELECT invsync.upsert_item('KIT');
	SELECT invsync.set_bundle('KIT', '[{"sku": "A", "qty": 3}]');
	SET invsync.tenant = 3;
	SELECT invsync.upsert_item(s) FROM unnest(ARRAY['B', 'KIT', 'GIFT']) s;
	SELECT invsync.set_bundle('KIT', '[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]');
	SELECT invsync.set_bundle('GIFT', '[{"sku": "KIT", "qty": 2}, {"sku": "A", "qty": 1}]');
	SELECT invsync.upsert_item(p || g) FROM generate_series(0, 8) g, unnest(ARRAY['DA', 'DB']) p;
	SELECT invsync.upsert_item('CH' || g) FROM generate_series(0, CHAIN + 1) g;
	DO $$
	BEGIN
		FOR g IN 1 .. 8 LOOP
			PERFORM invsync.set_bundle(p || g, jsonb_build_array(
						jsonb_build_object('sku', 'DA' || (g - 1), 'qty', 1),
						jsonb_build_object('sku', 'DB' || (g - 1), 'qty', 1)))
			   FROM unnest(ARRAY['DA', 'DB']) p;
		END LOOP;
		FOR g IN 1 .. CHAIN LOOP
			PERFORM invsync.set_bundle('CH' || g, jsonb_build_array(
						jsonb_build_object('sku', 'CH' || (g - 1), 'qty', 1)));
		END LOOP;
	END
	$$;
	SELECT invsync.adjust('B', 'W1', 5, 'receipt', 'up-b1');
	SELECT invsync.adjust(s, 'W1', 300, 'receipt', 'up-' || s)
	  FROM unnest(ARRAY['DA0', 'DB0', 'CH0']) s;
};
my $bundles_query_template = q{
	SET invsync.tenant = 3;
	SELECT string_agg(format('%s=%s', s, invsync.available(s)), ' ' ORDER BY s)
	  FROM unnest(ARRAY['A', 'B', 'KIT', 'GIFT', 'DA8', 'CHCHAIN']) s;
};

# channels of the old version: Shopee listings with ids given in the
# generic columns, one of which Shopee would refuse
my $channels_setup = q{
	SET invsync.tenant = 3;
	INSERT INTO invsync.apps (channel, app_key, app_secret)
		VALUES ('shopee', '1001', 'secret-of-the-old-app');
	INSERT INTO invsync.shops (app_id, external_shop_id)
		SELECT app_id, '2002' FROM invsync.apps WHERE app_key = '1001';
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
		SELECT shop_id, 'A', '800', NULL FROM invsync.shops WHERE external_shop_id = '2002'
		UNION ALL
		SELECT shop_id, 'B', 'x-1', '7' FROM invsync.shops WHERE external_shop_id = '2002';
};
my $listings_query = q{
	SELECT string_agg(format('%s %s %s/%s %s', sku, external_ids, external_item_id,
							 external_model_id, batch_key), '; ' ORDER BY sku)
	  FROM invsync.listings WHERE tenant_id = 3
};

for my $from (@earlier)
{
	my $db = "from_$from";
	$db =~ s/\./_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION invsync VERSION '$from'");
	$node->safe_psql($db, q{
		SET invsync.tenant = 3;
		SELECT invsync.upsert_location('W1');
		SELECT invsync.upsert_location('W2');
		SELECT invsync.upsert_item('A');
	});
	my $chain = $from lt '0.3' ? 40 : 32;
	my $bundles_setup = $bundles_setup_template =~ s/CHAIN/$chain/gr;
	my $bundles_query = $bundles_query_template =~ s/CHAIN/$chain/gr;
	$node->safe_psql($db, $bundles_setup);
	$node->safe_psql($db, $channels_setup);
	my $before = $node->safe_psql($db, "SET invsync.tenant = 3; $calls");
	my $bundles_before = $node->safe_psql($db, $bundles_query);
	my ($ret, $stdout, $stderr);
	my $rows_before = $node->safe_psql($db,
		'SELECT count(*) FROM invsync.ledger');

	my $queue_query = q{
		SELECT string_agg(format('%s:%s', listing_id, version), ' ' ORDER BY listing_id)
		  FROM invsync.sync_queue};
	my $queue_before = $node->safe_psql($db, $queue_query);
	$node->safe_psql($db, 'ALTER EXTENSION invsync UPDATE');
	is($node->safe_psql($db, $queue_query), $queue_before,
		"$from: the upgrade queues nothing");
	is($node->safe_psql($db,
			q{SELECT extversion FROM pg_extension WHERE extname = 'invsync'}),
		$current, "$from: updated to $current");
	is($node->safe_psql($db, $schema_query), $fresh_schema,
		"$from: the upgraded schema is what a fresh install creates");

	is($node->safe_psql($db, "SET invsync.tenant = 3; $calls"), $before,
		"$from: calls made before the upgrade replay after it");
	is($node->safe_psql($db, 'SELECT count(*) FROM invsync.ledger'),
		$rows_before, "$from: and write nothing");

	# bundles: flattened, the same availability, every stocked sku reserved
	is($node->safe_psql($db, q{
			SELECT string_agg(format('%s:%s:%s:%s:%s', tenant_id, bundle_sku,
									 component_sku, qty, depth),
							  ' ' ORDER BY tenant_id, bundle_sku, component_sku)
			  FROM invsync.bundle_leaves
			 WHERE bundle_sku IN ('KIT', 'GIFT', 'DA8', 'CH} . $chain . q{')}),
		'3:CH' . $chain . ':CH0:1:' . $chain . ' 3:DA8:DA0:128:8 3:DA8:DB0:128:8 '
		  . '3:GIFT:A:5:2 3:GIFT:B:2:2 3:KIT:A:2:1 3:KIT:B:1:1 4:KIT:A:3:1',
		"$from: the upgrade flattens every bundle of every tenant");
	is($node->safe_psql($db, q{
			SELECT count(*) FROM invsync.bundle_components c
			 WHERE NOT EXISTS (SELECT FROM invsync.bundle_leaves f
								WHERE f.tenant_id = c.tenant_id
								  AND f.bundle_sku = c.bundle_sku)}),
		'0', "$from: no bundle is left without its flat list");
	is($node->safe_psql($db, $bundles_query), $bundles_before,
		"$from: bundles are as available as before the upgrade");
	is($node->safe_psql($db, q{
			SET invsync.tenant = 3;
			SELECT string_agg(format('%s+%s', sku, reserved_change), ' ' ORDER BY sku)
			  FROM invsync.reserve('o-b', '[{"sku": "GIFT", "qty": 1}]', 'up-b2')}),
		'A+5 B+2', "$from: reserving a bundle defined before reserves its stocked skus");
	my $deeper = $chain + 1;
	($ret, $stdout, $stderr) = $node->psql($db, qq{
		SET invsync.tenant = 3;
		SELECT invsync.set_bundle('CH$deeper', '[{"sku": "CH$chain", "qty": 1}]')});
	like($stderr, qr/bundle "CH$deeper" would nest $deeper levels deep/,
		"$from: a new definition deeper than the limit is refused");
	($ret, $stdout, $stderr) = $node->psql($db, q{
		SET invsync.tenant = 3;
		SELECT * FROM invsync.adjust('A', 'W1', 11, 'receipt', 'up-1')});
	like($stderr, qr/idempotency key "up-1" was already used with different parameters/,
		"$from: a key used before the upgrade still refuses other parameters");
	is($node->safe_psql($db, q{
			SET invsync.tenant = 3;
			SELECT on_hand_after FROM invsync.adjust('A', 'W1', 5, 'receipt', 'up-4')}),
		'12', "$from: new movements continue the balances");
	# listings: the ids in external_ids by Shopee's attribute names, a
	# missing model 0, an id Shopee refuses kept as it was; nothing queued
	is($node->safe_psql($db, $listings_query),
		'A {"item_id": "800", "model_id": "0"} 800/0 ["800"]; '
		  . 'B {"item_id": "x-1", "model_id": "7"} x-1/7 ["x-1"]',
		"$from: listings carry their ids by the channel's attribute names");
	is($node->safe_psql($db,
			'SELECT count(*) FROM invsync.check_consistency(true)'),
		'0', "$from: the ledger and stock_levels agree");
}

$node->stop;
done_testing();
