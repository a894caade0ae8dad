# Copyright (c) 2026, invsync developers
#
# invsync must be loaded through shared_preload_libraries: without it,
# CREATE EXTENSION and LOAD fail with a clear message, SQLSTATE 55000 and a
# hint; with it, the extension installs and the invsync.* settings exist.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('preload');
$node->init;
$node->start;

for my $sql ('CREATE EXTENSION invsync', q{LOAD 'invsync'})
{
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "without preload, \"$sql\" fails");
	like($stderr,
		qr/ERROR:  55000: invsync must be loaded via shared_preload_libraries/,
		"without preload, \"$sql\" says why, with SQLSTATE 55000");
	like($stderr,
		qr/HINT:  Add invsync to shared_preload_libraries in postgresql.conf and restart the server\./,
		"without preload, \"$sql\" hints at the fix");
}
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'invsync'}),
	'0', 'nothing was installed');

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'invsync'");
$node->restart;
$node->safe_psql('postgres', 'CREATE EXTENSION invsync');
is($node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'invsync'}),
	$node->safe_psql('postgres',
		q{SELECT default_version FROM pg_available_extensions WHERE name = 'invsync'}),
	'with preload, CREATE EXTENSION works');
is($node->safe_psql('postgres', q{SET invsync.tenant = 5; SELECT invsync.current_tenant()}),
	'5', 'the invsync.tenant setting is defined');
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', 'SET invsync.no_such_setting = 1');
like($stderr, qr/invalid configuration parameter name "invsync.no_such_setting"/,
	'the invsync prefix is reserved: unknown invsync.* settings are refused');

$node->stop;
done_testing();
