# Copyright (c) 2026, invsync developers
#
# The launcher starts the sync worker once invsync.database exists: while
# it does not, the server log says so once, with what to do, and no worker
# is started and failed over and over; once it is created the worker
# starts there, and a worker that stops is started again.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = start_node('launcher', 'invsync.database' => "'shop_db'",
	log_min_messages => 'warning');

my $workers = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'};
ok(wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'invsync launcher'}, '1', 10),
	'the launcher runs');
sleep 6;
is($node->safe_psql('postgres', $workers), '0', 'no sync worker runs without its database');
my $log = slurp_file($node->logfile);
my @missing = ($log =~ /"event":"worker_database_missing"/g);
is(scalar @missing, 1, 'the missing database is reported once, not at every look');
like($log, qr/database \\"shop_db\\" \(invsync.database\) does not exist/,
	'naming the database and the setting');
unlike($log, qr/FATAL:  database "shop_db" does not exist/, 'and no worker fails to connect');

$node->safe_psql('postgres', 'CREATE DATABASE shop_db');
ok(wait_for($node, q{SELECT datname FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'},
		'shop_db', 20),
	'once the database exists the worker starts there');

my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node,
		qq{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'invsync sync worker' AND pid <> $pid},
		'1', 20),
	'a stopped worker is started again');

$node->stop;
done_testing();
