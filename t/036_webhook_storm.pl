
# Copyright (c) 2026, invsync developers

# A webhook storm.  1,000 marketplace orders on all four channels (Shopee;
# TikTok Shop and a Tokopedia shop on the TikTok simulator; Lazada, whose
# order is one unit, "trade_order_id/order_item_id"), each living through
# five status events with rising update times and ending still reserved,
# cancelled before shipping, or shipped.  Every event is delivered twice
# (the re-delivery in a new envelope), and the 10,000 deliveries are
# shuffled (seeded) and sent by 8 concurrent sessions of a role granted
# invsync_webhook.  The simulators hold each order at its final status with
# its lines, so the worker's fetch of an order is the authority.
#
# Afterwards every duplicate was detected (5,000 inbox rows), no delivery
# failed, and the ledger shows each order's effect exactly once: per sku,
# on-hand is the initial count less the units shipped, reserved the units
# of orders still reserved; check_consistency() is empty, and every
# listing on every channel was pushed the final level.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use List::Util qw(shuffle sum0);
use Time::HiRes qw(time);
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_node('webhook_storm', max_connections => 30);
my $shopee_sim = start_simulator(seed => 361);
my $tiktok_sim = start_simulator(script => 'tiktok_sim.py', seed => 362);
my $lazada_sim = start_lazada_simulator(seed => 363);

srand(36);

#
# Shops and 20 skus listed on every channel
#
my $nskus = 20;
my $initial = 100_000;
my @skus = map { sprintf 'STORM-%02d', $_ } 1 .. $nskus;

my $shopee_key = 'shpk-storm-partner-key-0123456789';
my $shopee_url = 'https://example.com/webhooks/shopee';
my %app = (
	tiktok => { key => 'tt-app-key-0001', secret => 'tt-app-secret-0123456789abcdef',
				push_shop => '7494049642642443601', cipher => 'ROW_STORM_TT', product => '1729000000000036001' },
	tokopedia => { key => 'tt-app-key-0002', secret => 'tt-toko-secret-0123456789abcdef',
				   push_shop => '7494049642642443602', cipher => 'ID_STORM_TOKO', product => '1729000000000036002' },
	lazada => { key => '120001', secret => 'lzd-test-app-secret-0123456789abcdef', seller => '300361' });

my $shopee = create_shop($node, $shopee_sim, shop_id => 5361, partner_key => $shopee_key);
my $tiktok = create_tiktok_shop($node, $tiktok_sim, shop_cipher => $app{tiktok}{cipher}, region => 'MY');
my $tokopedia = create_tiktok_shop($node, $tiktok_sim, channel => 'tokopedia',
	app_key => $app{tokopedia}{key}, app_secret => $app{tokopedia}{secret},
	shop_cipher => $app{tokopedia}{cipher}, region => 'ID');
my $lazada = create_lazada_shop($node, $lazada_sim, seller_id => $app{lazada}{seller});

# the marketplace ids of sku $i (1-based) on each channel
sub shopee_item { return 960000 + $_[0]; }
sub tt_sku { return sprintf 'TT-S%02d', $_[0]; }
sub toko_sku { return sprintf 'TK-S%02d', $_[0]; }
sub lz_sku { return 3600100 + $_[0]; }

sim_post($shopee_sim, '/_sim/items', { shop_id => 5361, item_id => shopee_item($_), models => [0] })
  for 1 .. $nskus;
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => $app{tiktok}{cipher}, product_id => $app{tiktok}{product},
	  skus => { map { (tt_sku($_) => ['W1']) } 1 .. $nskus } });
sim_post($tiktok_sim, '/_sim/products',
	{ shop_cipher => $app{tokopedia}{cipher}, product_id => $app{tokopedia}{product},
	  skus => { map { (toko_sku($_) => ['W9']) } 1 .. $nskus } });
sim_post($lazada_sim, '/_sim/products',
	{ seller_id => $app{lazada}{seller}, item_id => 36001,
	  skus => [ map { { sku_id => lz_sku($_), seller_sku => $skus[ $_ - 1 ] } } 1 .. $nskus ] });

my @listing_rows;
for my $i (1 .. $nskus)
{
	my $sku = $skus[ $i - 1 ];
	push @listing_rows,
	  "($shopee, '$sku', '{\"item_id\": \"" . shopee_item($i) . "\"}')",
	  "($tiktok, '$sku', '{\"product_id\": \"$app{tiktok}{product}\", \"sku_id\": \"" . tt_sku($i)
	  . "\", \"warehouse_id\": \"W1\"}')",
	  "($tokopedia, '$sku', '{\"product_id\": \"$app{tokopedia}{product}\", \"sku_id\": \""
	  . toko_sku($i) . "\", \"warehouse_id\": \"W9\"}')",
	  "($lazada, '$sku', '{\"item_id\": \"36001\", \"sku_id\": \"" . lz_sku($i)
	  . "\", \"seller_sku\": \"$sku\"}')";
}
$node->safe_psql('postgres', qq{
	UPDATE invsync.shops SET push_shop_id = '$app{tiktok}{push_shop}' WHERE shop_id = $tiktok;
	UPDATE invsync.shops SET push_shop_id = '$app{tokopedia}{push_shop}' WHERE shop_id = $tokopedia;
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item(sku) FROM unnest(ARRAY['@{[ join "','", @skus ]}']) sku;
	SELECT count(*) FROM unnest(ARRAY['@{[ join "','", @skus ]}']) sku,
	  LATERAL invsync.set_on_hand(sku, 'WH1', $initial, 'count', 'start-' || sku) s;
	INSERT INTO invsync.listings (shop_id, sku, external_ids) VALUES @{[ join ",\n", @listing_rows ]};
	CREATE ROLE storm_hook LOGIN;
	GRANT invsync_webhook TO storm_hook;
});
my $nlistings = 4 * $nskus;
my $converged = q{
	SELECT count(*) FILTER (WHERE sync_state = 'synced' AND pushed_level = level) || '/' || count(*)
	  FROM invsync.listing_levels};
ok(wait_for($node, $converged, "$nlistings/$nlistings", 60),
	'every listing publishes its first level');

#
# 1,000 orders: lifecycles, final outcomes, and the simulators' copies
#
my %life = (
	shopee => {
		reserved => [qw(UNPAID PENDING INVOICE_PENDING READY_TO_SHIP PROCESSED)],
		cancelled => [qw(UNPAID READY_TO_SHIP PROCESSED IN_CANCEL CANCELLED)],
		shipped => [qw(UNPAID READY_TO_SHIP PROCESSED SHIPPED COMPLETED)] },
	tiktok => {
		reserved => [qw(UNPAID ON_HOLD AWAITING_SHIPMENT PARTIALLY_SHIPPING AWAITING_COLLECTION)],
		cancelled => [qw(UNPAID ON_HOLD AWAITING_SHIPMENT AWAITING_COLLECTION CANCEL)],
		shipped => [qw(UNPAID AWAITING_SHIPMENT IN_TRANSIT DELIVERED COMPLETED)] },
	lazada => {
		reserved => [qw(unpaid pending topack packed ready_to_ship)],
		cancelled => [qw(unpaid pending topack packed canceled)],
		shipped => [qw(pending packed ready_to_ship shipped delivered)] });
$life{tokopedia} = $life{tiktok};
my %effect_of = (reserved => 'reserve', cancelled => 'release', shipped => 'fulfill');
my %shop_of = (shopee => $shopee, tiktok => $tiktok, tokopedia => $tokopedia, lazada => $lazada);
my @outcomes = qw(reserved cancelled shipped);
my $base = 1_767_225_600;	# 2026-01-01, update times are the marketplaces'

my @orders;	# {channel, id, outcome, times, lines {sku index => qty}, ...}
my $trade_no = 0;
for my $n (0 .. 999)
{
	my $channel = (qw(shopee tiktok tokopedia lazada))[ $n % 4 ];
	my $outcome = $outcomes[ int(rand(3)) ];
	my $t = $base + int(rand(86_400));
	my @times = map { $t += 1 + int(rand(600)) } 1 .. 5;
	my %lines;
	if ($channel eq 'lazada')
	{
		%lines = (1 + int(rand($nskus)) => 1);
	}
	else
	{
		$lines{ 1 + int(rand($nskus)) } = 1 + int(rand(3)) for 1 .. 1 + int(rand(3));
	}
	push @orders, { channel => $channel, outcome => $outcome, times => \@times,
					lines => \%lines, n => $n };
}

# Lazada: the units go into trade orders of one to three items
my @lazada_orders = grep { $_->{channel} eq 'lazada' } @orders;
my %trades;
while (@lazada_orders)
{
	my $trade = sprintf '36%05d', ++$trade_no;
	my $items = 1 + int(rand(3));
	my $item_no = 0;
	for my $o (splice @lazada_orders, 0, $items)
	{
		$o->{trade} = $trade;
		$o->{line} = sprintf '%s%03d', $trade, ++$item_no;
		$o->{id} = "$o->{trade}/$o->{line}";
		push @{ $trades{$trade} }, $o;
	}
}
for my $o (@orders)
{
	next if $o->{channel} eq 'lazada';
	$o->{id} = $o->{channel} eq 'shopee' ? sprintf('SN36%06dST', $o->{n})
	  : sprintf('5764614%s%06d', $o->{channel} eq 'tiktok' ? '1' : '2', $o->{n});
}

# the simulators hold each order at its final status, with its lines
my @sim_orders;
for my $o (@orders)
{
	my $final = $life{ $o->{channel} }{ $o->{outcome} }[-1];
	my $time = $o->{times}[-1];
	my @l = sort { $a <=> $b } keys %{ $o->{lines} };
	if ($o->{channel} eq 'shopee')
	{
		push @sim_orders, [ $shopee_sim,
			{ shop_id => 5361, order_sn => $o->{id}, order_status => $final, update_time => $time,
			  lines => [ map { { item_id => shopee_item($_), model_id => 0, qty => $o->{lines}{$_} } } @l ] } ];
	}
	elsif ($o->{channel} eq 'tiktok' || $o->{channel} eq 'tokopedia')
	{
		my $a = $app{ $o->{channel} };
		push @sim_orders, [ $tiktok_sim,
			{ shop_cipher => $a->{cipher}, order_id => $o->{id},
			  status => $final eq 'CANCEL' ? 'CANCELLED' : $final, update_time => $time,
			  lines => [ map { { product_id => $a->{product},
								 sku_id => $o->{channel} eq 'tiktok' ? tt_sku($_) : toko_sku($_),
								 qty => $o->{lines}{$_} } } @l ] } ];
	}
}
for my $trade (sort keys %trades)
{
	push @sim_orders, [ $lazada_sim,
		{ seller_id => $app{lazada}{seller}, order_id => $trade, items => [
			map { my $o = $_; my ($i) = keys %{ $o->{lines} };
				  { order_item_id => $o->{line}, item_id => 36001, sku_id => lz_sku($i),
					status => $life{lazada}{ $o->{outcome} }[-1], update_time => $o->{times}[-1] } }
			  @{ $trades{$trade} } ] } ];
}
my $dir = PostgreSQL::Test::Utils::tempdir();
my $answers = '';
for my $sim ($shopee_sim, $tiktok_sim, $lazada_sim)
{
	# one curl for the lot: HTTP::Tiny waits out a delayed ACK on each post
	my @posts = grep { $_->[0] == $sim } @sim_orders;
	my $ca = InvsyncTest::test_pki()->{ca};
	open my $fh, '>', "$dir/orders_$sim->{port}.curl" or die;
	print $fh join("next\n", map { (my $json = encode_json($_->[1])) =~ s/(["\\])/\\$1/g;
		qq(url = "$sim->{url}/_sim/orders"\nrequest = "POST"\ncacert = "$ca"\n)
		. qq(header = "Content-Type: application/json"\ndata = "$json"\n)
		. qq(output = "/dev/null"\nwrite-out = "%{http_code}\\n"\n) } @posts);
	close $fh;
	$answers .= `curl -sS -K $dir/orders_$sim->{port}.curl`;
}
is(scalar(() = $answers =~ /^200$/mg) . '/' . scalar(@sim_orders), scalar(@sim_orders) . '/' . scalar(@sim_orders),
	'the simulators hold the orders at their final status');

#
# 5,000 events, each delivered twice: 10,000 deliveries, shuffled
#
my $notification = 7_327_112_393_057_360_000;
sub delivery
{
	my ($o, $status, $time, $envelope) = @_;
	my ($channel, $body, $sig) = ($o->{channel});
	if ($channel eq 'shopee')
	{
		$body = qq({"data":{"items":[],"ordersn":"$o->{id}","status":"$status","completed_scenario":"","update_time":$time},"shop_id":5361,"code":3,"timestamp":$envelope});
		$sig = hmac_sha256_hex("$shopee_url|$body", $shopee_key);
	}
	elsif ($channel eq 'lazada')
	{
		$body = qq({"seller_id":"$app{lazada}{seller}","message_type":0,"data":{"order_status":"$status","trade_order_id":"$o->{trade}","trade_order_line_id":"$o->{line}","status_update_time":$time},"timestamp":${envelope}000});
		$sig = hmac_sha256_hex($app{lazada}{key} . $body, $app{lazada}{secret});
	}
	else
	{
		my $a = $app{$channel};
		my $id = $o->{notification}{$status} //= $notification++;
		$body = qq({"type":1,"tts_notification_id":"$id","shop_id":"$a->{push_shop}","timestamp":$envelope,"data":{"order_id":"$o->{id}","order_status":"$status","is_on_hold_order":false,"update_time":$time}});
		$sig = hmac_sha256_hex($a->{key} . $body, $a->{secret});
	}
	die "a body must not hold the quote" if $body =~ /\$b\$/;
	my $url = $channel eq 'shopee' ? "'$shopee_url'" : 'NULL';
	return "SELECT invsync.handle_webhook('$channel', '{\"Authorization\": \"$sig\"}', \$b\$$body\$b\$, $url);\n";
}
my @deliveries;
for my $o (@orders)
{
	my $statuses = $life{ $o->{channel} }{ $o->{outcome} };
	for my $k (0 .. 4)
	{
		my $time = $o->{times}[$k];
		# the first delivery, and a retry in a new envelope later on
		push @deliveries, delivery($o, $statuses->[$k], $time, $time + 1),
		  delivery($o, $statuses->[$k], $time, $time + 1800);
	}
}
@deliveries = shuffle(@deliveries);
is(scalar(@deliveries), 10_000, '10,000 deliveries of 5,000 events');

my $sessions = 8;
for my $s (0 .. $sessions - 1)
{
	open my $fh, '>', "$dir/storm_$s.sql" or die;
	print $fh @deliveries[ grep { $_ % $sessions == $s } 0 .. $#deliveries ];
	close $fh;
}

my $connstr = $node->connstr('postgres') . ' user=storm_hook';
my $psql = $node->installed_command('psql');
my $started = time();
my @pids;
for my $s (0 .. $sessions - 1)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', "$dir/storm_$s.out" or die;
		open STDERR, '>', "$dir/storm_$s.err" or die;
		exec $psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-d', $connstr,
		  '-f', "$dir/storm_$s.sql"
		  or die "exec: $!";
	}
	push @pids, $pid;
}
waitpid($_, 0) for @pids;
my $storm_seconds = time() - $started;
diag(sprintf('storm: 10,000 deliveries from %d sessions in %.1f s (%.0f/s)',
		$sessions, $storm_seconds, 10_000 / $storm_seconds));

my (%answers, $errors);
for my $s (0 .. $sessions - 1)
{
	for my $line (split /\n/, slurp_file("$dir/storm_$s.out"))
	{
		next if $line eq '';
		my ($status) = $line =~ /"status": "(\w+)"/;
		$answers{ $status // 'unreadable' }++;
	}
	my $err = slurp_file("$dir/storm_$s.err");
	$errors .= $err;
}
is($errors, '', 'no delivery failed') or diag(substr($errors, 0, 2000));
is(join(' ', map { "$_:$answers{$_}" } sort keys %answers),
	'accepted:5000 duplicate:5000', 'every event accepted once, every re-delivery a duplicate');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.webhook_inbox'),
	'5000', 'the inbox holds each of the 5,000 events once');

#
# The worker fetches every order; each ends with its final effect
#
$node->safe_psql('postgres', 'CREATE TABLE public.storm_expected (channel text, shop_id bigint, order_id text, effect text, update_time bigint)');
$node->safe_psql('postgres', 'INSERT INTO public.storm_expected VALUES '
	  . join(',', map { "('$_->{channel}', $shop_of{ $_->{channel} }, '$_->{id}', '$effect_of{ $_->{outcome} }', $_->{times}[-1])" } @orders));
$started = time();
ok(wait_for($node, q{SELECT count(*) FROM invsync.order_fetches WHERE state <> 'done'}, '0', 60),
	'every order fetch is done');
ok(wait_for($node, q{
	SELECT count(*) FROM public.storm_expected e
	  JOIN invsync.marketplace_orders o ON o.shop_id = e.shop_id AND o.order_id = e.order_id
	 WHERE o.effect = e.effect AND o.update_time = to_timestamp(e.update_time)
	   AND o.error IS NULL AND o.unmatched_lines IS NULL}, '1000', 30),
	'every order holds its final status and effect');
diag(sprintf('fetches and effects settled %.1f s after the storm', time() - $started));
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.marketplace_orders'),
	'1000', 'one row per order, none more');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.storm_expected e
	  JOIN invsync.marketplace_orders o ON o.shop_id = e.shop_id AND o.order_id = e.order_id
	 WHERE o.channel = e.channel}), '1000', 'each on its own channel and shop');

# per sku: on-hand less what shipped, reserved what is still held
my (%shipped, %reserved);
for my $o (@orders)
{
	my $into = $o->{outcome} eq 'shipped' ? \%shipped : $o->{outcome} eq 'reserved' ? \%reserved : next;
	$into->{ $skus[ $_ - 1 ] } += $o->{lines}{$_} for keys %{ $o->{lines} };
}
is($node->safe_psql('postgres', q{
	SELECT string_agg(sku || ' ' || on_hand || ' ' || reserved, E'\n' ORDER BY sku)
	  FROM invsync.stock WHERE location = 'WH1'}),
	join("\n", map { "$_ " . ($initial - ($shipped{$_} // 0)) . ' ' . ($reserved{$_} // 0) } @skus),
	'per sku: on-hand is the initial count less the units shipped, reserved the units held');
diag(sprintf('%d units shipped, %d held, over %d orders shipped, %d held, %d cancelled',
		sum0(values %shipped), sum0(values %reserved),
		map { my $k = $_; scalar grep { $_->{outcome} eq $k } @orders } qw(shipped reserved cancelled)));

# the ledger: one reserve per order ever applied, at most one close
my %want_lines = map { my $o = $_; ("mp:$o->{channel}:$shop_of{ $o->{channel} }:$o->{id}" =>
	  join(',', map { "$skus[$_ - 1]=$o->{lines}{$_}" } sort { $skus[ $a - 1 ] cmp $skus[ $b - 1 ] } keys %{ $o->{lines} })) } @orders;
my $ledger = $node->safe_psql('postgres', q{
	SELECT order_ref, operation, count(DISTINCT idempotency_key),
		   string_agg(sku || '=' || abs(CASE operation WHEN 'fulfill' THEN on_hand_change
											ELSE reserved_change END), ',' ORDER BY sku)
	  FROM invsync.ledger WHERE order_ref LIKE 'mp:%'
	 GROUP BY order_ref, operation});
my (%ops, @bad);
for my $row (split /\n/, $ledger)
{
	my ($ref, $op, $keys, $lines) = split /\|/, $row;
	$ops{$ref}{$op} = 1;
	push @bad, "$ref $op: $keys keys, $lines" if $keys != 1 || ($want_lines{$ref} // '') ne $lines;
}
for my $o (@orders)
{
	my $ref = "mp:$o->{channel}:$shop_of{ $o->{channel} }:$o->{id}";
	my $got = join(',', sort keys %{ $ops{$ref} // {} });
	# the fetch is the authority: a cancelled order whose lines were only
	# known once cancelled never held anything
	my $want = { reserved => 'reserve', shipped => 'fulfill,reserve',
				 cancelled => ($got eq '' ? '' : 'release,reserve') }->{ $o->{outcome} };
	push @bad, "$ref ($o->{outcome}): $got" if $got ne $want;
}
is(scalar(@bad), 0, 'the ledger holds exactly one reserve per order applied, one fulfilment per shipped order, no release of one')
  or diag(join("\n", @bad[ 0 .. ($#bad < 20 ? $#bad : 19) ]));
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM invsync.ledger
	 WHERE order_ref LIKE 'mp:%' AND idempotency_key NOT LIKE order_ref || ':%'}),
	'0', 'every order movement is keyed by its order and transition');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.check_consistency()'),
	'0', 'the ledger and stock_levels agree');

#
# Every channel saw the stock move
#
ok(wait_for($node, $converged, "$nlistings/$nlistings", 60),
	'every listing is pushed its final level');
my %level = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT channel || ':' || sku || '|' || level FROM invsync.listing_levels});
my %held;
$held{"shopee:$skus[$_->{item_id} - 960001]"} = $_->{stock}
  for @{ sim_get($shopee_sim, '/_sim/stock?shop_id=5361')->{stock} };
for (@{ sim_get($tiktok_sim, '/_sim/stock')->{stock} })
{
	my ($prefix, $i) = $_->{sku_id} =~ /^(TT|TK)-S(\d+)$/ or next;
	$held{ ($prefix eq 'TT' ? 'tiktok' : 'tokopedia') . ":$skus[$i - 1]" } = $_->{quantity};
}
$held{"lazada:$_->{seller_sku}"} = $_->{quantity}
  for @{ sim_get($lazada_sim, "/_sim/stock?seller_id=$app{lazada}{seller}")->{stock} };
is(join(' ', map { "$_=$held{$_}" } sort keys %held),
	join(' ', map { "$_=$level{$_}" } sort keys %level),
	'every marketplace holds the level of the final stock');
is(scalar(grep { $level{$_} != $initial } keys %level) > 0 ? 1 : 0, 1, 'which moved');

done_testing();
