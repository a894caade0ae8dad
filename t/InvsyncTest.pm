
# Copyright (c) 2026, invsync developers

=pod

=head1 NAME

InvsyncTest - what the end-to-end TAP tests of invsync share: a server with
the worker running, a marketplace simulator (Shopee's by default, or
TikTok's) over HTTPS with a test CA, and a shop wired to it.

=cut

package InvsyncTest;

use strict;
use warnings;

use Cwd ();
use File::Basename ();
use Exporter 'import';
use File::Temp ();
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(usleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(start_node start_simulator start_proxy sim_get sim_post create_shop
  create_tiktok_shop wait_for secrets_absent_from_log worker_pid);
push @EXPORT, qw(start_lazada_simulator create_lazada_shop);

my $repo = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $json = JSON::PP->new->canonical;
my $http = HTTP::Tiny->new(timeout => 30);
my $pki;

# A CA and a server certificate for 127.0.0.1, made once per test file.
# The certificate also names Shopee's and TikTok's production hosts, so that a test can
# send their requests to a simulator on loopback (invsync.test_connect_to)
# with TLS verified as in production; only invsync.ca_file trusts this CA.
sub test_pki
{
	return $pki if $pki;
	my $dir = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
	my $conf = "$dir/san.cnf";
	open my $fh, '>', $conf or die;
	print $fh "subjectAltName = IP:127.0.0.1, DNS:localhost, "
	  . "DNS:partner.shopeemobile.com, DNS:openplatform.shopee.com.br, "
	  . "DNS:open-api.tiktokglobalshop.com, DNS:auth.tiktok-shops.com\n";
	close $fh;
	for my $cmd (
		"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=invsync-test-ca -keyout $dir/ca.key -out $dir/ca.crt",
		"openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout $dir/server.key -out $dir/server.csr",
		"openssl x509 -req -in $dir/server.csr -CA $dir/ca.crt -CAkey $dir/ca.key -CAcreateserial -days 2 -extfile $conf -out $dir/server.crt"
	  )
	{
		system("$cmd >/dev/null 2>&1") == 0 or die "failed: $cmd";
	}
	$pki = { dir => $dir, ca => "$dir/ca.crt", cert => "$dir/server.crt", key => "$dir/server.key" };
	return $pki;
}

# A server with the library preloaded, the worker serving database
# "postgres", short timeouts and backoffs so that tests run fast.
sub start_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my %settings = (
		shared_preload_libraries => "'invsync'",
		'invsync.database' => "'postgres'",
		'invsync.ca_file' => "'" . test_pki()->{ca} . "'",
		'invsync.http_timeout' => "'2s'",
		'invsync.connect_timeout' => "'1s'",
		'invsync.lease' => "'6s'",
		'invsync.backoff_base' => "'50ms'",
		'invsync.backoff_max' => "'1s'",
		'invsync.poll_interval' => "'200ms'",
		log_min_messages => 'log',
		# the tests' own statements carry secrets; invsync's records must not
		log_statement => "'none'",
		%conf);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $settings{$_}\n" } sort keys %settings));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION invsync');
	# the launcher starts the sync worker a moment after the server
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'})
	  or die 'the sync worker did not start'
	  if $settings{'invsync.database'} eq "'postgres'";
	return $node;
}

# Run a helper of sim/ (SCRIPT with ARGS, and --port-file) in DIR, its
# output in DIR/sim.log, until the test ends; returns it once it listens,
# with its port.
sub _start_helper
{
	my ($dir, $script, @args) = @_;
	my $port_file = "$dir/port";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', "$dir/sim.log";
		open STDERR, '>&', \*STDOUT;
		exec('python3', "$repo/sim/$script", '--host', '127.0.0.1', '--port', '0',
			'--port-file', $port_file, @args)
		  or die "exec: $!";
	}
	for (1 .. 100)
	{
		last if -s $port_file;
		usleep(100_000);
	}
	open my $fh, '<', $port_file or die "$script did not start";
	my $port = <$fh>;
	chomp $port;
	my $helper = { pid => $pid, port => $port, log => "$dir/sim.log" };
	push @InvsyncTest::simulators, $helper;
	return $helper;
}

# A simulator over HTTPS (plain http with plain => 1): sim/shopee_sim.py,
# or the script named by script => 'tiktok_sim.py'; returns it, with its
# base URL and port.
sub start_simulator
{
	my (%opt) = @_;
	my $p = test_pki();
	my $dir = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
	my $sim = _start_helper($dir, $opt{script} // 'shopee_sim.py',
		$opt{plain} ? () : ('--tls-cert', $p->{cert}, '--tls-key', $p->{key}),
		'--quiet', '--seed', $opt{seed} // 1);
	$sim->{url} = ($opt{plain} ? 'http' : 'https') . "://127.0.0.1:$sim->{port}";
	return $sim;
}

# A plain-http forward proxy (sim/http_proxy.py); returns it, with its URL
# and the file where it writes each request line it receives (request_log).
sub start_proxy
{
	my $dir = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
	my $proxy = _start_helper($dir, 'http_proxy.py', '--log', "$dir/requests.log");
	$proxy->{url} = "http://127.0.0.1:$proxy->{port}";
	$proxy->{request_log} = "$dir/requests.log";
	return $proxy;
}

END
{
	kill 'TERM', map { $_->{pid} } @InvsyncTest::simulators;
}

sub _request
{
	my ($method, $sim, $path, $body) = @_;
	my $res = $http->request($method, "$sim->{url}$path",
		{
			headers => { 'Content-Type' => 'application/json' },
			defined $body ? (content => $json->encode($body)) : (),
			verify_SSL => 1,
			SSL_options => { SSL_ca_file => test_pki()->{ca} },
		});
	die "simulator $method $path: $res->{status} $res->{content}" unless $res->{success};
	return $json->decode($res->{content});
}

sub sim_get { return _request('GET', @_); }
sub sim_post { return _request('POST', @_); }

# A partner, a shop and items on the simulator, and the same in invsync
# (in the tenant given).  The app's base URL is the simulator's unless
# base_url is given (undef: NULL, the production host).  Returns the
# invsync shop id.
sub create_shop
{
	my ($node, $sim, %o) = @_;
	my $tenant = $o{tenant} // 0;
	my $partner = $o{partner_id} // 1001;
	my $key = $o{partner_key} // 'shpk-test-partner-key-0123456789';
	my $shop = $o{shop_id} // 5001;
	my $access = $o{access_token} // "access-$shop-initial-token";
	my $refresh = $o{refresh_token} // "refresh-$shop-initial-token";
	sim_post($sim, '/_sim/partners', { partner_id => $partner, partner_key => $key });
	sim_post($sim, '/_sim/shops',
		{
			partner_id => $partner,
			shop_id => $shop,
			access_token => $access,
			refresh_token => $refresh,
			rate_limit_per_sec => $o{sim_rate_limit}
		});
	my $rate = $o{rate_limit} // 1000;
	my $inflight = $o{max_in_flight} // 8;
	my $base_url = exists $o{base_url} ? $o{base_url} : $sim->{url};
	$base_url = defined $base_url ? "'$base_url'" : 'NULL';
	my $region = defined $o{region} ? "'$o{region}'" : 'NULL';
	return $node->safe_psql(
		'postgres', qq{
		SET invsync.tenant = '$tenant';
		WITH app AS (
			INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
			VALUES ('shopee', '$partner', '$key', $base_url) RETURNING app_id)
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, rate_limit_per_sec, max_in_flight)
		SELECT app_id, '$shop', $region, '$access', '$refresh', now() + interval '4 hours', $rate, $inflight
		  FROM app RETURNING shop_id;
	});
}

# An app and a shop on the TikTok simulator, and the same in invsync (in
# the tenant given), channel 'tiktok' or, with channel => 'tokopedia', a
# TOKOPEDIA-platform shop in region ID.  API and token calls both go to the
# simulator.  sim_rate_limit is the simulator's limit (none by default),
# rate_limit invsync's.  Returns the invsync shop id.
sub create_tiktok_shop
{
	my ($node, $sim, %o) = @_;
	my $tenant = $o{tenant} // 0;
	my $channel = $o{channel} // 'tiktok';
	my $app_key = $o{app_key} // 'tt-app-key-0001';
	my $secret = $o{app_secret} // 'tt-app-secret-0123456789abcdef';
	my $cipher = $o{shop_cipher} // 'ROW_TESTSHOP0001';
	my $access = $o{access_token} // "access-$cipher-initial-token";
	my $refresh = $o{refresh_token} // "refresh-$cipher-initial-token";
	my $region = $o{region} // 'ID';
	sim_post($sim, '/_sim/apps', { app_key => $app_key, app_secret => $secret });
	sim_post($sim, '/_sim/shops',
		{
			app_key => $app_key,
			shop_cipher => $cipher,
			region => $region,
			platform => $channel eq 'tokopedia' ? 'TOKOPEDIA' : 'TIKTOK_SHOP',
			access_token => $access,
			refresh_token => $refresh,
			rate_limit_per_sec => $o{sim_rate_limit},
			defined $o{reject_zero} ? (reject_zero => $o{reject_zero} ? JSON::PP::true : JSON::PP::false) : (),
		});
	my $rate = $o{rate_limit} // 1000;
	my $inflight = $o{max_in_flight} // 8;
	return $node->safe_psql(
		'postgres', qq{
		SET invsync.tenant = '$tenant';
		WITH app AS (
			INSERT INTO invsync.apps (channel, app_key, app_secret, base_url, auth_base_url)
			VALUES ('$channel', '$app_key', '$secret', '$sim->{url}', '$sim->{url}') RETURNING app_id)
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, rate_limit_per_sec, max_in_flight)
		SELECT app_id, '$cipher', '$region', '$access', '$refresh', now() + interval '7 days', $rate, $inflight
		  FROM app RETURNING shop_id;
	});
}

# poll a query until it returns the expected value (or the time runs out)
sub wait_for
{
	my ($node, $sql, $expected, $seconds) = @_;
	my $deadline = time() + ($seconds // 60);
	my $got;
	while (time() < $deadline)
	{
		$got = $node->safe_psql('postgres', $sql);
		return 1 if $got eq $expected;
		usleep(100_000);
	}
	diag("waited for [$sql] = [$expected], last got [$got]");
	return 0;
}

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'");
}

# no secret of the shops may appear in the server log
sub secrets_absent_from_log
{
	my ($node, @secrets) = @_;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
	for my $secret (@secrets)
	{
		ok(index($log, $secret) < 0, "server log does not contain secret " . substr($secret, 0, 6) . '…');
	}
}

# ----- Lazada ---------------------------------------------------------------

# The Lazada simulator (sim/lazada_sim.py) over HTTPS with the test CA;
# its url is without /rest.
sub start_lazada_simulator
{
	return start_simulator(script => 'lazada_sim.py', @_);
}

# A Lazada app and seller on the simulator, and the same app and shop in
# invsync (tenant given or 0), both hosts on the simulator's /rest.
# Options: app_key, app_secret, seller_id, country (region is its upper
# case), access_token, refresh_token, refresh_expires_at (Unix time, on the
# simulator; invsync stores it only if store_refresh_end), multi_warehouse
# (uses_locations), sim_rate_limit, rate_limit, max_in_flight, batch_size.
# Returns the invsync shop id.
sub create_lazada_shop
{
	my ($node, $sim, %o) = @_;
	my $tenant = $o{tenant} // 0;
	my $app_key = $o{app_key} // '120001';
	my $secret = $o{app_secret} // 'lzd-test-app-secret-0123456789abcdef';
	my $seller = $o{seller_id} // '100001';
	my $country = $o{country} // 'sg';
	my $access = $o{access_token} // "lzd-access-$seller-initial-token";
	my $refresh = $o{refresh_token} // "lzd-refresh-$seller-initial-token";
	my $multi = $o{multi_warehouse} ? 1 : 0;
	sim_post($sim, '/_sim/apps', { app_key => $app_key, app_secret => $secret });
	sim_post($sim, '/_sim/sellers',
		{
			app_key => $app_key,
			seller_id => $seller,
			country => $country,
			access_token => $access,
			refresh_token => $refresh,
			multi_warehouse => $multi ? JSON::PP::true : JSON::PP::false,
			rate_limit_per_sec => $o{sim_rate_limit},
			defined $o{refresh_expires_at} ? (refresh_expires_at => $o{refresh_expires_at}) : (),
		});
	my $rate = $o{rate_limit} // 1000;
	my $inflight = $o{max_in_flight} // 8;
	my $batch = defined $o{batch_size} ? $o{batch_size} : 'NULL';
	my $refresh_end = defined $o{refresh_expires_at} && $o{store_refresh_end}
	  ? "to_timestamp($o{refresh_expires_at})" : 'NULL';
	my $region = uc $country;
	my $uses = $multi ? 'true' : 'false';
	return $node->safe_psql(
		'postgres', qq{
		SET invsync.tenant = '$tenant';
		WITH app AS (
			INSERT INTO invsync.apps (channel, app_key, app_secret, base_url, auth_base_url, batch_size)
			VALUES ('lazada', '$app_key', '$secret', '$sim->{url}/rest', '$sim->{url}/rest', $batch)
			RETURNING app_id)
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, refresh_expires_at, uses_locations,
								   rate_limit_per_sec, max_in_flight)
		SELECT app_id, '$seller', '$region', '$access', '$refresh', now() + interval '30 days',
			   $refresh_end, $uses, $rate, $inflight
		  FROM app RETURNING shop_id;
	});
}

1;
