
# Copyright (c) 2026, invsync developers

# Order pushes rarely carry the order's lines: handle_webhook() queues a
# fetch, the worker reads the order from the marketplace (signed, with the
# push's X-Correlation-ID) and applies it.  One sku is listed on Shopee,
# TikTok Shop and Lazada.  A Shopee order push reserves the stock as soon
# as the order is fetched, and every channel's listing is pushed the lower
# level; a cancel push releases it; a shipped push deducts on-hand once,
# however often it is delivered.  Faults on the order-detail call (5xx, a
# timeout) are retried until the fetch converges.  TikTok and Lazada fetch
# their orders the same way (their push parsing and statuses come with the
# webhooks branch; until then their fetch is queued as handle_webhook
# queues it).

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_node('order_fetch');
my $shopee_sim = start_simulator(seed => 51);
my $tiktok_sim = start_simulator(script => 'tiktok_sim.py', seed => 52);
my $lazada_sim = start_lazada_simulator(seed => 53);

my $shopee_key = 'shpk-test-partner-key-0123456789';
my $shopee = create_shop($node, $shopee_sim, shop_id => 5101, partner_key => $shopee_key);
sim_post($shopee_sim, '/_sim/items', { shop_id => 5101, item_id => 990001, models => [0] });
my $tiktok = create_tiktok_shop($node, $tiktok_sim, shop_cipher => 'ROW_ORD_TT', region => 'MY');
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => 'ROW_ORD_TT', product_id => '1729000000000000051', skus => { 'TT-ORD' => ['W1'] } });
my $lazada = create_lazada_shop($node, $lazada_sim, seller_id => '300101');
sim_post($lazada_sim, '/_sim/products',
	{ seller_id => '300101', item_id => 9001, skus => [ { sku_id => 90011, seller_sku => 'ORD-SKU' } ] });

$node->safe_psql('postgres', qq{
	UPDATE invsync.shops SET push_shop_id = '7494049642642441651' WHERE shop_id = $tiktok;
	UPDATE invsync.shops SET push_shop_id = '300101' WHERE shop_id = $lazada;
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('ORD-SKU');
	SELECT FROM invsync.set_on_hand('ORD-SKU', 'WH1', 50, 'count', 'start');
	INSERT INTO invsync.listings (shop_id, sku, external_ids)
	VALUES ($shopee, 'ORD-SKU', '{"item_id": "990001"}'),
		   ($tiktok, 'ORD-SKU', '{"product_id": "1729000000000000051", "sku_id": "TT-ORD", "warehouse_id": "W1"}'),
		   ($lazada, 'ORD-SKU', '{"item_id": "9001", "sku_id": "90011", "seller_sku": "ORD-SKU"}');
});

# what each marketplace shows of the sku
sub levels
{
	my ($shopee_row) = @{ sim_get($shopee_sim, '/_sim/stock?shop_id=5101')->{stock} };
	my ($tt_row) = @{ sim_get($tiktok_sim, '/_sim/stock?shop_cipher=ROW_ORD_TT')->{stock} };
	my ($lz_row) = @{ sim_get($lazada_sim, '/_sim/stock?seller_id=300101')->{stock} };
	return join '/', $shopee_row->{stock}, $tt_row->{quantity}, $lz_row->{quantity};
}
sub wait_levels
{
	my ($want, $name) = @_;
	my $got;
	for (1 .. 150)
	{
		$got = levels();
		last if $got eq $want;
		select(undef, undef, undef, 0.2);
	}
	is($got, $want, $name);
}
wait_levels('50/50/50', 'every channel publishes the first level');

# a push, signed as the channel signs it; returns handle_webhook's answer,
# or undef when this build cannot read the channel's pushes yet
sub push_event
{
	my ($channel, $body, $correlation) = @_;
	my ($url, $sig) = ('https://example.com/webhooks/shopee', undef);
	if ($channel eq 'shopee')
	{
		$sig = hmac_sha256_hex("$url|$body", $shopee_key);
	}
	elsif ($channel eq 'tiktok')
	{
		$sig = hmac_sha256_hex('tt-app-key-0001' . $body, 'tt-app-secret-0123456789abcdef');
	}
	else
	{
		$sig = hmac_sha256_hex('120001' . $body, 'lzd-test-app-secret-0123456789abcdef');
	}
	my $headers = encode_json({ Authorization => $sig });
	my ($rc, $out, $err) = $node->psql('postgres', qq{
		SET invsync.correlation_id = '$correlation';
		SELECT invsync.handle_webhook('$channel', '$headers', \$b\$$body\$b\$, '$url');});
	return $out if $rc == 0;
	return undef if $err =~ /takes no pushes/;
	die "handle_webhook: $err";
}

# the order-detail calls a simulator logged, with their correlation ids
sub fetch_calls
{
	my ($sim, $path) = @_;
	return [ map { { status => $_->{status}, fault => $_->{fault},
					 correlation => $_->{headers}{'X-Correlation-ID'} // $_->{headers}{'x-correlation-id'} } }
			 grep { $_->{path} =~ /\Q$path\E$/ } @{ sim_get($sim, '/_sim/log?limit=10000')->{entries} } ];
}

my $t = time() - 100;

#
# Shopee: an order push without lines -> fetch -> reserve at once
#
sim_post($shopee_sim, '/_sim/orders',
	{ shop_id => 5101, order_sn => 'SO-1', order_status => 'READY_TO_SHIP',
	  update_time => $t, lines => [ { item_id => 990001, model_id => 0, qty => 3 } ] });
my $push = sub {
	my ($sn, $status, $time) = @_;
	return qq({"data":{"items":[],"ordersn":"$sn","status":"$status","completed_scenario":"","update_time":$time},"shop_id":5101,"code":3,"timestamp":$time});
};
like(push_event('shopee', $push->('SO-1', 'READY_TO_SHIP', $t), 'push-so-1'),
	qr/"status": "accepted"/, 'the Shopee push is accepted');
ok(wait_for($node, q{SELECT effect FROM invsync.marketplace_orders WHERE order_id = 'SO-1'},
		'reserve', 20), 'the worker fetched the order and reserved its lines');
is($node->safe_psql('postgres', q{SELECT available FROM invsync.stock WHERE sku = 'ORD-SKU'}),
	'47', 'three units are held');
wait_levels('47/47/47', 'every channel is pushed the lower level');
my $calls = fetch_calls($shopee_sim, '/api/v2/order/get_order_detail');
is(scalar(@$calls), 1, 'one order-detail call');
is($calls->[0]{status}, 200, 'signed as Shopee checks it');
is($calls->[0]{correlation}, 'push-so-1', 'with the push\'s X-Correlation-ID');
is($node->safe_psql('postgres', q{
	SELECT state || ' ' || (SELECT string_agg(kind || ':' || outcome, ',') FROM invsync.sync_attempts
							 WHERE kind = 'order_fetch' AND correlation_id = 'push-so-1')
	  FROM invsync.order_fetches WHERE order_id = 'SO-1'}),
	'done order_fetch:ok', 'the fetch is done, its attempt recorded');
is($node->safe_psql('postgres', q{
	SELECT correlation_id FROM invsync.ledger WHERE idempotency_key LIKE 'mp:shopee:%:SO-1:reserve'}),
	'push-so-1', 'the reservation carries the push\'s correlation id');

# a cancel push: the lines are known, released at once
like(push_event('shopee', $push->('SO-1', 'CANCELLED', $t + 10), 'push-so-1-cancel'),
	qr/accepted/, 'the cancel push is accepted');
is($node->safe_psql('postgres', q{SELECT available FROM invsync.stock WHERE sku = 'ORD-SKU'}),
	'50', 'the hold is released');
wait_levels('50/50/50', 'and the level rises again everywhere');

#
# Shopee, with faults on the order-detail call: a 500, then a timeout
#
sim_post($shopee_sim, '/_sim/faults', { rules => [
	{ kind => 'http_500', path => '/api/v2/order/get_order_detail', count => 1 },
	{ kind => 'timeout', path => '/api/v2/order/get_order_detail', count => 1, delay_ms => 3000 } ] });
sim_post($shopee_sim, '/_sim/orders',
	{ shop_id => 5101, order_sn => 'SO-2', order_status => 'PROCESSED',
	  update_time => $t + 20, lines => [ { item_id => 990001, model_id => 0, qty => 2 } ] });
like(push_event('shopee', $push->('SO-2', 'PROCESSED', $t + 20), 'push-so-2'),
	qr/accepted/, 'a second order is pushed');
ok(wait_for($node, q{SELECT effect FROM invsync.marketplace_orders WHERE order_id = 'SO-2'},
		'reserve', 30), 'the fetch converges through a 500 and a timeout');
$calls = fetch_calls($shopee_sim, '/api/v2/order/get_order_detail');
is(join(',', map { $_->{fault} // $_->{status} } @$calls[ 1 .. $#$calls ]),
	'http_500,timeout,200', 'the order-detail call was retried after each fault');
is($node->safe_psql('postgres', q{
	SELECT string_agg(outcome, ',' ORDER BY attempt_id) FROM invsync.sync_attempts
	 WHERE kind = 'order_fetch' AND correlation_id = 'push-so-2'}),
	'retry,retry,ok', 'each attempt is recorded');
wait_levels('48/48/48', 'the hold is published');

# shipped, delivered twice: on-hand deducted once
like(push_event('shopee', $push->('SO-2', 'SHIPPED', $t + 30), 'push-so-2-ship'),
	qr/accepted/, 'the shipped push is accepted');
like(push_event('shopee', $push->('SO-2', 'SHIPPED', $t + 30), 'push-so-2-ship-again'),
	qr/duplicate/, 'its re-delivery is a duplicate');
is($node->safe_psql('postgres', q{
	SELECT on_hand || '/' || available FROM invsync.stock WHERE sku = 'ORD-SKU'}),
	'48/48', 'on-hand is deducted exactly once, the hold dropped');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM invsync.ledger WHERE idempotency_key LIKE 'mp:shopee:%:SO-2:fulfill'}),
	'1', 'one fulfilment in the ledger');

#
# TikTok and Lazada: the same fetch through their own APIs
#
sub queue_fetch
{
	my ($shop, $order, $status, $time, $correlation) = @_;
	$node->safe_psql('postgres', qq{
		SET invsync.correlation_id = '$correlation';
		SELECT invsync._apply_order(0, $shop, '$order', '$status', to_timestamp($time), NULL);
		INSERT INTO invsync.order_fetches (tenant_id, shop_id, order_id, correlation_ids)
		VALUES (0, $shop, '$order', ARRAY['$correlation']);
		SELECT invsync._wake_worker();});
}

sim_post($tiktok_sim, '/_sim/orders',
	{ shop_cipher => 'ROW_ORD_TT', order_id => '576461413038785751', status => 'AWAITING_SHIPMENT',
	  update_time => $t + 40, lines => [ { product_id => '1729000000000000051', sku_id => 'TT-ORD', qty => 4 } ] });
my $tt_body = qq({"type":1,"tts_notification_id":"7327112393057371951","shop_id":"7494049642642441651","timestamp":@{[$t + 40]},"data":{"order_id":"576461413038785751","order_status":"AWAITING_SHIPMENT","is_on_hold_order":false,"update_time":@{[$t + 40]}}});
my $answer = push_event('tiktok', $tt_body, 'push-tt-1');
if (defined $answer)
{
	like($answer, qr/accepted/, 'the TikTok push is accepted');
}
else
{
	diag('this build cannot read TikTok pushes yet: the fetch is queued as handle_webhook queues it');
	queue_fetch($tiktok, '576461413038785751', 'AWAITING_SHIPMENT', $t + 40, 'push-tt-1');
}
ok(wait_for($node, q{SELECT lines::text FROM invsync.marketplace_orders WHERE order_id = '576461413038785751'},
		'[{"qty": 4, "sku": "ORD-SKU"}]', 20),
	'the TikTok order is fetched: four line items, one unit each, one sku');
$calls = fetch_calls($tiktok_sim, '/order/202309/orders');
is(join(',', map { "$_->{status}:$_->{correlation}" } @$calls), '200:push-tt-1',
	'signed as TikTok checks it, with the push\'s X-Correlation-ID');

sim_post($lazada_sim, '/_sim/orders',
	{ seller_id => '300101', order_id => '7710001', items => [
		{ order_item_id => '7710001001', item_id => 9001, sku_id => 90011, status => 'pending', update_time => $t + 50 },
		{ order_item_id => '7710001002', item_id => 9001, sku_id => 90011, status => 'canceled', update_time => $t + 50 } ] });
my $lz_body = qq({"seller_id":"300101","message_type":0,"data":{"order_status":"pending","trade_order_id":"7710001","trade_order_line_id":"7710001001","status_update_time":@{[$t + 50]}},"timestamp":@{[($t + 50) * 1000]}});
$answer = push_event('lazada', $lz_body, 'push-lz-1');
if (defined $answer)
{
	like($answer, qr/accepted/, 'the Lazada push is accepted');
}
else
{
	diag('this build cannot read Lazada pushes yet: the fetch is queued as handle_webhook queues it');
	queue_fetch($lazada, '7710001/7710001001', 'pending', $t + 50, 'push-lz-1');
}
ok(wait_for($node, q{SELECT status || ' ' || lines::text FROM invsync.marketplace_orders WHERE order_id = '7710001/7710001001'},
		'pending [{"qty": 1, "sku": "ORD-SKU"}]', 20),
	'the Lazada order line is fetched: its own unit and status, not its sibling\'s');
$calls = fetch_calls($lazada_sim, '/order/items/get');
is(join(',', map { "$_->{status}:$_->{correlation}" } @$calls), '200:push-lz-1',
	'signed as Lazada checks it, with the push\'s X-Correlation-ID');

# the effect of TikTok and Lazada statuses is their adapters' (webhooks branch)
my $effects = $node->safe_psql('postgres', q{
	SELECT (SELECT effect FROM invsync._order_status('tiktok', 'AWAITING_SHIPMENT'))
		   || '/' || (SELECT effect FROM invsync._order_status('lazada', 'pending'))});
SKIP:
{
	skip "TikTok and Lazada statuses have no effect in this build ($effects)", 1
	  unless $effects eq 'reserve/reserve';
	wait_levels('43/43/43', 'their orders hold stock too, published everywhere');
}

is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.order_fetches WHERE state <> 'done'}),
	'0', 'every fetch is done');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency()'),
	'0', 'the ledger and stock_levels agree');
secrets_absent_from_log($node, $shopee_key, 'access-5101-initial-token',
	'tt-app-secret-0123456789abcdef', 'access-ROW_ORD_TT-initial-token',
	'lzd-test-app-secret-0123456789abcdef', 'lzd-access-300101-initial-token');

done_testing();
