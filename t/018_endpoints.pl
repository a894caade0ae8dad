
# Copyright (c) 2026, invsync developers

# Where the worker sends.  An app without a base URL pushes (and refreshes
# tokens) at Shopee's production host for the shop's region:
# partner.shopeemobile.com, or openplatform.shopee.com.br for Brazil.  Here
# invsync.test_connect_to sends those names to the simulator on loopback,
# TLS still verified for them, so nothing leaves the machine.  A plain-http
# base URL is refused when stored, and one that got into the table anyway
# is never sent to while invsync.allow_insecure_http is off: its rows
# become dead letters saying why, and go out once a superuser allows http
# and retry_dead() re-drives them.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $sim = start_simulator(seed => 18);
my $plain = start_simulator(seed => 19, plain => 1);
my $connect_to = join(',',
	map { "$_:443:127.0.0.1:$sim->{port}" }
	  qw(partner.shopeemobile.com openplatform.shopee.com.br));
my $node = start_node('endpoints', 'invsync.test_connect_to' => "'$connect_to'");

# no test may reach the internet: go no further unless the production hosts
# lead to the simulator
BAIL_OUT('invsync.test_connect_to is not in effect')
  unless $node->safe_psql('postgres', 'SHOW invsync.test_connect_to') eq $connect_to;
is($node->safe_psql('postgres', 'SHOW invsync.allow_insecure_http'), 'off',
	'plain http is off by default');

$node->safe_psql('postgres', q{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item(s) FROM unnest(ARRAY['SG-MUG', 'BR-MUG', 'HTTP-MUG']) s;
});

# the request URL of a shop's attempts, of one kind
sub attempt_urls
{
	my ($shop, $kind) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(DISTINCT regexp_replace(request_url, 'timestamp=[0-9]+', 'timestamp=T'), ' ')
		  FROM invsync.sync_attempts WHERE shop_id = $shop AND kind = '$kind'});
}

# the Host headers the simulator received for a shop
sub hosts_seen
{
	my ($s, $shop_id) = @_;
	my $log = sim_get($s, '/_sim/log?since=0&limit=100000')->{entries};
	my %hosts = map { ($_->{headers}{Host} // 'none') => 1 }
	  grep { ($_->{shop_id} // 0) == $shop_id } @$log;
	return join(' ', sort keys %hosts);
}

# ----- no base URL: the production host for the region ----------------------

my $sg = create_shop($node, $sim, partner_id => 1001, shop_id => 5001, base_url => undef);
my $br = create_shop($node, $sim, partner_id => 1002, shop_id => 5002, base_url => undef,
	region => 'BR');
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [0] });
sim_post($sim, '/_sim/items', { shop_id => 5002, item_id => 700002, models => [0] });
$node->safe_psql('postgres', qq{
	INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	VALUES ($sg, 'SG-MUG', '700001'), ($br, 'BR-MUG', '700002');
	SELECT invsync.adjust('SG-MUG', 'WH1', 7, 'receipt', 'sg-1');
	SELECT invsync.adjust('BR-MUG', 'WH1', 9, 'receipt', 'br-1');
});
ok(wait_for($node, q{SELECT string_agg(sku || '=' || pushed_level, ' ' ORDER BY sku)
	FROM invsync.listing_levels WHERE sku LIKE '%-MUG' AND sku <> 'HTTP-MUG'}, 'BR-MUG=9 SG-MUG=7'),
	'both levels published through the production hosts');
is(attempt_urls($sg, 'stock_update'),
	'https://partner.shopeemobile.com/api/v2/product/update_stock?partner_id=1001&timestamp=T&access_token=[redacted]&shop_id=5001&sign=[redacted]',
	'a shop without a base URL or region pushes to partner.shopeemobile.com, token and sign redacted');
is(attempt_urls($br, 'stock_update'),
	'https://openplatform.shopee.com.br/api/v2/product/update_stock?partner_id=1002&timestamp=T&access_token=[redacted]&shop_id=5002&sign=[redacted]',
	'a Brazilian shop pushes to openplatform.shopee.com.br');
is(hosts_seen($sim, 5001), 'partner.shopeemobile.com', 'the request named its host in Host and TLS');
is(hosts_seen($sim, 5002), 'openplatform.shopee.com.br', 'so did the Brazilian one');

# a token refresh goes to the same host
sim_post($sim, '/_sim/expire_token', { shop_id => 5001 });
$node->safe_psql('postgres', q{SELECT invsync.adjust('SG-MUG', 'WH1', 1, 'receipt', 'sg-2')});
ok(wait_for($node, q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'SG-MUG'}, '8'),
	'the push after the token expired is published');
is(attempt_urls($sg, 'token_refresh'),
	'https://partner.shopeemobile.com/api/v2/auth/access_token/get?partner_id=1001&timestamp=T&sign=[redacted]',
	'the refresh went to partner.shopeemobile.com, its sign redacted');

# ----- plain http ------------------------------------------------------------

my ($rc, $out, $err) = $node->psql('postgres', qq{
	INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
	VALUES ('shopee', '1003', 'shpk-test-partner-key-0123456789', '$plain->{url}')});
like($err, qr/base URL must use https/, 'an http base URL is refused when stored');

# an http base URL written past the check (stored while http was allowed,
# or by a superuser): the worker refuses it at send time
my $http = create_shop($node, $plain, partner_id => 1003, shop_id => 5003,
	base_url => 'https://127.0.0.1:1');
sim_post($plain, '/_sim/items', { shop_id => 5003, item_id => 700003, models => [0] });
$node->safe_psql('postgres', qq{
	BEGIN;
	ALTER TABLE invsync.apps DISABLE TRIGGER apps_base_url;
	UPDATE invsync.apps SET base_url = '$plain->{url}' WHERE app_key = '1003';
	ALTER TABLE invsync.apps ENABLE TRIGGER apps_base_url;
	COMMIT;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($http, 'HTTP-MUG', '700003');
	SELECT invsync.adjust('HTTP-MUG', 'WH1', 4, 'receipt', 'http-1');
});
ok(wait_for($node, qq{SELECT state || ' ' || last_error_class FROM invsync.sync_queue WHERE shop_id = $http},
		'dead base_url'),
	'the row of a shop with an http base URL becomes a dead letter');
like($node->safe_psql('postgres', qq{SELECT last_error FROM invsync.dead_letters WHERE shop_id = $http}),
	qr/Plain http is refused \(invsync.allow_insecure_http is off\)/,
	'with the reason');
is(scalar @{ sim_get($plain, '/_sim/log?since=0&limit=1000')->{entries} }, 0,
	'nothing was sent in clear text');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM invsync.sync_attempts WHERE shop_id = $http}),
	'0', 'and no attempt was made');
$node->safe_psql('postgres', 'SELECT pg_sleep(0.5)');
is(scalar @{ sim_get($plain, '/_sim/log?since=0&limit=1000')->{entries} }, 0,
	'nor later: a dead letter is not retried');

# a superuser allows plain http (tests, benchmarks): retry_dead() sends it
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET invsync.allow_insecure_http = on;
	SELECT pg_reload_conf();
});
my $deadline = time() + 60;
my $state = '';
while (time() < $deadline)
{
	# until the worker has read the new setting, the row dies again
	$node->safe_psql('postgres', "SELECT invsync.retry_dead($http)");
	usleep(300_000);
	$state = $node->safe_psql('postgres',
		"SELECT state || ' ' || coalesce(pushed_level::text, '') FROM invsync.sync_queue WHERE shop_id = $http");
	last if $state eq 'synced 4';
}
is($state, 'synced 4', 'with invsync.allow_insecure_http on, the level goes out over http');
my ($push) = grep { $_->{status} eq '200' } @{ sim_get($plain, '/_sim/log?since=0&limit=1000')->{entries} };
ok($push, 'the plain-http simulator accepted it');

# ----- through a plain-http proxy --------------------------------------------

# The worker gives libcurl a URL's origin and its path and query apart (the
# request target), which is right only when it talks to the server itself:
# a proxy named by the environment (http_proxy) must be sent the whole URL
# in the request line.  https goes through a tunnel and is not affected.
my $proxy = start_proxy();
{
	local $ENV{http_proxy} = $proxy->{url};
	local $ENV{no_proxy} = '';
	local $ENV{NO_PROXY} = '';
	$node->restart;
}
# an https push first: its handle, kept for the next request, must not
# carry its request target over to the plain-http one
$node->safe_psql('postgres', q{SELECT invsync.adjust('SG-MUG', 'WH1', 1, 'receipt', 'sg-3')});
ok(wait_for($node, q{SELECT pushed_level FROM invsync.listing_levels WHERE sku = 'SG-MUG'}, '9'),
	'with a proxy in the environment, https still goes out directly');
$node->safe_psql('postgres', q{SELECT invsync.adjust('HTTP-MUG', 'WH1', 2, 'receipt', 'http-2')});
ok(wait_for($node, qq{SELECT state || ' ' || pushed_level FROM invsync.sync_queue WHERE shop_id = $http},
		'synced 6'),
	'through a proxy from the environment, the level goes out');
my @proxied = grep { /update_stock/ } PostgreSQL::Test::Utils::slurp_file($proxy->{request_log}) =~ /^(.*)$/mg;
like($proxied[0] // '',
	qr{^POST http://127\.0\.0\.1:$plain->{port}/api/v2/product/update_stock\?partner_id=1003&timestamp=[0-9]+&access_token=[^&]+&shop_id=5003&sign=[0-9a-f]{64} HTTP/1\.1$},
	'the proxy was sent the whole URL in the request line');
is(scalar(grep { !m{^POST http://} } @proxied), 0, 'every request through it was');
$node->restart;
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET invsync.allow_insecure_http;
	SELECT pg_reload_conf();
});

secrets_absent_from_log($node, 'shpk-test-partner-key-0123456789',
	map { ("access-$_-initial-token", "refresh-$_-initial-token") } 5001, 5002, 5003);

$node->stop;
done_testing();
