
# Copyright (c) 2026, invsync developers

# The example web handler (examples/webhook_handler.py) over real HTTP:
# started as a subprocess on a free loopback port, connected as a role
# granted only invsync_webhook, it is sent pushes signed as Shopee, TikTok
# Shop and Lazada sign them (HTTP::Tiny).  An accepted push answers 200
# with an empty body and its effect is in SQL; the same push again is a
# duplicate, 200; a tampered body 401; a malformed one, or an unknown
# channel, 400; a body over the limit 413 (the handler's own limit, and
# handle_webhook's IV032); a shop invsync does not know 200, logged as a
# warning; the database stopped 500, and the marketplace's retry once it is
# back is accepted.  The handler's log is one JSON line per request, with
# the correlation id, and holds neither the bodies nor the secrets.  The
# orders' lines are recorded first (record_order), so no simulator is
# needed; the shops are disabled, so the worker sends nothing.

use strict;
use warnings;
use lib 't';
use Cwd ();
use InvsyncTest;
use Digest::SHA qw(hmac_sha256_hex);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $repo = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $node = start_node('webhook_handler');

my $shopee_key = 'shpk-handler-partner-key-0123456789';
my $tt_key = 'tt-handler-app-key';
my $tt_secret = 'tt-handler-app-secret-0123456789abcdef';
my $lz_key = '120077';
my $lz_secret = 'lzd-handler-app-secret-0123456789abcdef';
my $public = 'https://hooks.example.com';

$node->safe_psql('postgres', q{
	CREATE ROLE hook_app LOGIN IN ROLE invsync_webhook;
	SELECT FROM invsync.upsert_location('WH1');
	SELECT FROM invsync.upsert_item('HOOK-SKU');
	SELECT FROM invsync.set_on_hand('HOOK-SKU', 'WH1', 50, 'count', 'start');});
my ($shopee, $tiktok, $lazada) = split /\n/, $node->safe_psql('postgres', qq{
	WITH a AS (
		INSERT INTO invsync.apps (channel, app_key, app_secret)
		VALUES ('shopee', '1077', '$shopee_key'), ('tiktok', '$tt_key', '$tt_secret'),
			   ('lazada', '$lz_key', '$lz_secret')
		RETURNING app_id, channel)
	INSERT INTO invsync.shops (app_id, external_shop_id, push_shop_id, region, enabled)
	SELECT app_id, CASE channel WHEN 'shopee' THEN '5301' WHEN 'tiktok' THEN 'ROW_HOOK_TT' ELSE '300777' END,
		   CASE channel WHEN 'tiktok' THEN '7494049642642440001' END,
		   CASE channel WHEN 'shopee' THEN NULL ELSE 'MY' END, false
	  FROM a ORDER BY CASE channel WHEN 'shopee' THEN 1 WHEN 'tiktok' THEN 2 ELSE 3 END
	RETURNING shop_id;});

# the handler, on a free port; its JSON log in a file
my $dir = PostgreSQL::Test::Utils::tempdir();
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $dsn = sprintf('host=%s port=%d dbname=postgres user=hook_app', $node->host, $node->port);
my $hpid = fork();
die "fork: $!" unless defined $hpid;
if ($hpid == 0)
{
	open STDOUT, '>', "$dir/handler.log";
	open STDERR, '>&', \*STDOUT;
	# a limit above handle_webhook's own, so that both 413s are seen
	exec $python, "$repo/examples/webhook_handler.py", '--host', '127.0.0.1', '--port', '0',
	  '--port-file', "$dir/port", '--dsn', $dsn, '--public-base-url', $public,
	  '--pool-size', '2', '--max-body', 300_000
	  or die "exec: $!";
}
END { kill 'TERM', $hpid if $hpid; }
for (1 .. 100) { last if -s "$dir/port"; usleep(100_000); }
my $port = PostgreSQL::Test::Utils::slurp_file("$dir/port");
chomp $port;
ok($port =~ /^\d+$/, "the handler listens on port $port");

my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
# POST a body to a channel's route, signed as the channel signs it unless
# sig is given; returns the response
sub post
{
	my ($channel, $body, %o) = @_;
	my $path = "/webhooks/$channel";
	my $sig = $o{sig};
	if (!defined $sig)
	{
		$sig = $channel eq 'shopee' ? hmac_sha256_hex("$public$path|$body", $shopee_key)
		  : $channel eq 'tiktok' ? hmac_sha256_hex($tt_key . $body, $tt_secret)
		  : hmac_sha256_hex($lz_key . $body, $lz_secret);
	}
	return $http->request('POST', "http://127.0.0.1:$port$path", {
		headers => { 'Content-Type' => 'application/json', Authorization => $sig,
					 $o{correlation} ? ('X-Correlation-ID' => $o{correlation}) : () },
		content => $body });
}
sub answer { my ($r) = @_; return "$r->{status} [" . ($r->{content} // '') . ']'; }
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $t = time() - 100;

#
# Shopee: a known order's shipped push deducts on-hand, once
#
sql(qq{SELECT invsync.record_order($shopee, 'SO-H1', 'READY_TO_SHIP', to_timestamp($t),
	'[{"sku": "HOOK-SKU", "qty": 3}]')});
is(sql(q{SELECT on_hand || '/' || available FROM invsync.stock WHERE sku = 'HOOK-SKU'}), '50/47',
	'the recorded order holds three units');
my $shipped = qq({"data":{"items":[],"ordersn":"SO-H1","status":"SHIPPED","completed_scenario":"","update_time":@{[$t + 10]}},"shop_id":5301,"code":3,"timestamp":@{[$t + 10]}});
is(answer(post('shopee', $shipped, correlation => 'hook-so-h1')), '200 []',
	'the shipped push: 200, empty body');
is(sql(q{SELECT on_hand || '/' || available || ' ' || o.effect FROM invsync.stock, invsync.marketplace_orders o
	   WHERE sku = 'HOOK-SKU' AND o.order_id = 'SO-H1'}), '47/47 fulfill',
	'on-hand is deducted, the hold dropped');
is(sql(q{SELECT correlation_id FROM invsync.webhook_inbox WHERE order_id = 'SO-H1'}), 'hook-so-h1',
	'the push is recorded under the request\'s X-Correlation-ID');
is(answer(post('shopee', $shipped)), '200 []', 'the same push again: 200');
is(sql(q{SELECT on_hand || ' ' || (SELECT count(*) FROM invsync.ledger WHERE idempotency_key LIKE 'mp:shopee:%:SO-H1:fulfill')
	   FROM invsync.stock WHERE sku = 'HOOK-SKU'}), '47 1', 'and deducted nothing more');

#
# TikTok: a known order's cancel push releases it
#
sql(qq{SELECT invsync.record_order($tiktok, '576461413038780001', 'AWAITING_SHIPMENT', to_timestamp($t),
	'[{"sku": "HOOK-SKU", "qty": 2}]')});
is(sql(q{SELECT available FROM invsync.stock WHERE sku = 'HOOK-SKU'}), '45', 'the TikTok order holds two');
my $tt_body = qq({"type":1,"tts_notification_id":"7327112393057370001","shop_id":"7494049642642440001","timestamp":@{[$t + 20]},"data":{"order_id":"576461413038780001","order_status":"CANCEL","is_on_hold_order":false,"update_time":@{[$t + 20]}}});
is(answer(post('tiktok', $tt_body)), '200 []', 'the TikTok cancel push: 200, empty body');
is(sql(q{SELECT available FROM invsync.stock WHERE sku = 'HOOK-SKU'}), '47', 'the hold is released');
is(answer(post('tiktok', $tt_body)), '200 []', 'its re-delivery: 200');
is(sql(q{SELECT count(*) FROM invsync.webhook_inbox WHERE channel = 'tiktok'}), '1', 'recorded once');

#
# Lazada: an order line pushed before its lines are known queues a fetch
#
my $lz_body = qq({"seller_id":"300777","message_type":0,"data":{"order_status":"pending","trade_order_id":"7710077","trade_order_line_id":"7710077001","status_update_time":@{[$t + 30]}},"timestamp":@{[($t + 30) * 1000]}});
is(answer(post('lazada', $lz_body)), '200 []', 'the Lazada push: 200, empty body');
is(sql(q{SELECT state FROM invsync.order_fetches WHERE order_id = '7710077/7710077001'}), 'pending',
	'a fetch of the unknown line is queued');

#
# refusals
#
my $tampered = $shipped =~ s/SHIPPED/COMPLETED/r;
is(answer(post('shopee', $tampered, sig => hmac_sha256_hex("$public/webhooks/shopee|$shipped", $shopee_key))),
	"401 [bad_signature\n]", 'a tampered body: 401');
is(answer(post('shopee', $shipped, sig => hmac_sha256_hex("http://127.0.0.1:$port/webhooks/shopee|$shipped", $shopee_key))),
	"401 [bad_signature\n]", 'signed for another URL than the public one: 401');
is(answer(post('lazada', '{"seller_id": "300777", "message_type": 0')), "400 [malformed\n]",
	'a malformed body: 400');
is(answer(post('amazon', '{"x": 1}')), "400 [unknown_channel\n]", 'an unknown channel: 400');
my $big = '{"seller_id":"300777","message_type":0,"pad":"' . ('x' x 270_000) . '"}';
is(answer(post('lazada', $big)), "413 [too_large\n]", 'a body over handle_webhook\'s 256 kB: 413');
is(answer(post('lazada', 'x' x 400_000)), "413 [body too large\n]",
	'a body over the handler\'s limit: 413 (read and dropped, not passed on)');
my $unknown = qq({"data":{"items":[],"ordersn":"SO-X","status":"UNPAID","completed_scenario":"","update_time":$t},"shop_id":999999,"code":3,"timestamp":$t});
is(answer(post('shopee', $unknown)), '200 []', 'a shop invsync does not know: 200 (README), empty body');

#
# the database down: 500, and the marketplace's retry once it is back
#
$node->stop('fast');
my $retry = qq({"type":1,"tts_notification_id":"7327112393057370002","shop_id":"7494049642642440001","timestamp":@{[$t + 40]},"data":{"order_id":"576461413038780002","order_status":"UNPAID","is_on_hold_order":false,"update_time":@{[$t + 40]}}});
is(answer(post('tiktok', $retry)), "500 [try again later\n]", 'the database stopped: 500');
$node->start;
is(answer(post('tiktok', $retry)), '200 []', 'its retry once the database is back: 200');
is(sql(q{SELECT count(*) FROM invsync.webhook_inbox WHERE order_id = '576461413038780002'}), '1',
	'and recorded');

#
# the handler's log: one JSON line per request, the outcome and correlation id
#
my @log = map { decode_json($_) } grep { /^\{/ } split /\n/,
  PostgreSQL::Test::Utils::slurp_file("$dir/handler.log");
my @requests = grep { ($_->{method} // '') eq 'POST' } @log;
is(scalar(@requests), 14, 'one log line per request');
is(join(',', map { "$_->{status}:$_->{outcome}" } @requests),
	'200:accepted,200:duplicate,200:accepted,200:duplicate,200:accepted,'
	  . '401:bad_signature,401:bad_signature,400:malformed,400:unknown_channel,413:too_large,413:too_large,'
	  . '200:unknown_shop,500:error,200:accepted',
	'with each outcome')
  or diag(PostgreSQL::Test::Utils::slurp_file("$dir/handler.log"));
is($requests[0]{correlation_id}, 'hook-so-h1', 'the correlation id given');
ok((grep { !defined $_->{correlation_id} } @requests) == 0, 'every line has a correlation id');
is((grep { $_->{outcome} eq 'unknown_shop' } @requests)[0]{level}, 'warning',
	'the unknown shop is logged as a warning');
my $log = PostgreSQL::Test::Utils::slurp_file("$dir/handler.log");
for my $secret ($shopee_key, $tt_secret, $lz_secret, 'SO-H1","status', 'xxxxxxxxxx')
{
	ok(index($log, $secret) < 0, 'the log holds no secret or body: ' . substr($secret, 0, 6) . '…');
}

done_testing();
