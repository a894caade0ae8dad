
# Copyright (c) 2026, invsync developers

# Tokens: an expired access token makes a push fail with error_auth; the
# worker refreshes once (Shopee rotates the single-use refresh token),
# stores the new pair, and resends the push.  A refresh token is never
# spent twice, not even when the refresh answer is lost.  A refused refresh
# puts the shop in token_state 'reauthorize': its rows stay pending, not
# dead, until set_shop_tokens() stores a new authorisation, and then sync.
# No token or key ever shows in the server log, the attempt rows or the
# shop's token_error.

use strict;
use warnings;
use lib 't';
use InvsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $partner_key = 'shpk-test-partner-key-0123456789';
my $node = start_node('tokens');
my $sim = start_simulator(seed => 15);
my $shop = create_shop($node, $sim);
sim_post($sim, '/_sim/items', { shop_id => 5001, item_id => 700001, models => [0] });
$node->safe_psql('postgres', qq{
	SELECT invsync.upsert_location('WH1');
	SELECT invsync.upsert_item('MUG');
	INSERT INTO invsync.listings (shop_id, sku, external_item_id) VALUES ($shop, 'MUG', '700001');
});
my $synced = q{SELECT sync_state = 'synced' AND pushed_level = level FROM invsync.listing_levels WHERE sku = 'MUG'};
ok(wait_for($node, $synced, 't'), 'initial level published');

# every token the shop ever had, to look for in the logs at the end
my @secrets = ($partner_key, 'access-5001-initial-token', 'refresh-5001-initial-token');
my $level = 0;
my $seq = sim_get($sim, '/_sim/log?since=0&limit=100000')->{next};

sub change
{
	$level += 1;
	$node->safe_psql('postgres', "SELECT FROM invsync.adjust('MUG', 'WH1', 1, 'receipt', 'mug-$level')");
}

# the marketplace requests since the last call
my @last_entries;
sub requests
{
	my $entries = sim_get($sim, "/_sim/log?since=$seq&limit=100000")->{entries};
	$seq = $entries->[-1]{seq} if @$entries;
	@last_entries = @$entries;
	return map {
		($_->{path} =~ /access_token/ ? 'refresh' : 'push') . ':' . $_->{status}
		  . ($_->{error} ? ":$_->{error}" : '')
	} @$entries;
}

sub shop_tokens
{
	return $node->safe_psql('postgres',
		"SELECT access_token || ' ' || refresh_token || ' ' || token_state FROM invsync.shops WHERE shop_id = $shop");
}

# ----- expired access token: one refresh, the new pair stored, push resent -----

for my $round (1 .. 3)
{
	sim_post($sim, '/_sim/expire_token', { shop_id => 5001 });
	change();
	ok(wait_for($node, $synced, 't'), "round $round: the change is published after the token expired");
	is(join(' ', requests()), 'push:403:error_auth refresh:200 push:200',
		"round $round: refused push, exactly one refresh, the push resent");
	my $resent_after = @last_entries == 3 ? $last_entries[2]{time} - $last_entries[1]{time} : 99;
	cmp_ok($resent_after, '<', 2,
		sprintf("round $round: the push was resent %.3f s after the refresh, at once", $resent_after));
	my $sim_shop = sim_get($sim, '/_sim/shops?shop_id=5001');
	push @secrets, $sim_shop->{access_token}, $sim_shop->{refresh_token};
	is(shop_tokens(), "$sim_shop->{access_token} $sim_shop->{refresh_token} ok",
		"round $round: invsync stored the rotated tokens");
}
my $stats = sim_get($sim, '/_sim/stats');
is($stats->{refreshes}, 3, 'three refreshes');
is($stats->{spent_refresh_token_reuse}, 0, 'no spent refresh token was ever reused');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(outcome, ',') FROM invsync.sync_attempts WHERE kind = 'token_refresh'}),
	'ok,ok,ok', 'each refresh has its attempt row');

# ----- a refused refresh: reauthorize, rows stay pending ---------------------

my $bogus = 'bogus-refresh-token-0123456789abcdef';
push @secrets, $bogus;
$node->safe_psql('postgres', "UPDATE invsync.shops SET refresh_token = '$bogus' WHERE shop_id = $shop");
sim_post($sim, '/_sim/expire_token', { shop_id => 5001 });
change();
ok( wait_for($node, "SELECT token_state FROM invsync.sync_status WHERE shop_id = $shop", 'reauthorize'),
	'a refused refresh puts the shop in reauthorize');
usleep(1_500_000);    # longer than invsync.backoff_max: no retry may go out
is(join(' ', requests()), 'push:403:error_auth refresh:403:error_auth',
	'one push, one refresh, then nothing while the shop awaits authorisation');
is($node->safe_psql('postgres', "SELECT state FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id) WHERE l.sku = 'MUG'"),
	'pending', 'the row stays pending');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invsync.dead_letters'), '0', 'it is not a dead letter');
like($node->safe_psql('postgres', "SELECT token_error FROM invsync.shops WHERE shop_id = $shop"),
	qr/refresh_token/i, "token_error holds the marketplace's message");

# the seller authorises again
sub reauthorize
{
	my ($tag) = @_;
	my ($access, $refresh) = ("access-5001-$tag-token", "refresh-5001-$tag-token");
	push @secrets, $access, $refresh;
	sim_post($sim, '/_sim/shops',
		{ partner_id => 1001, shop_id => 5001, access_token => $access, refresh_token => $refresh });
	$node->safe_psql('postgres',
		"SELECT invsync.set_shop_tokens($shop, '$access', '$refresh', now() + interval '4 hours')");
}
reauthorize('second');
ok(wait_for($node, $synced, 't'), 'after set_shop_tokens() the pending change is published');
is(join(' ', requests()), 'push:200', 'with the new access token, without a refresh');
is($node->safe_psql('postgres', "SELECT token_state || coalesce(token_error, '') FROM invsync.shops WHERE shop_id = $shop"),
	'ok', 'the shop is back to ok');

# ----- the refresh answer is lost: the spent token is not sent again --------

# the push before goes over the same keep-alive connection the refresh reuses
sim_post($sim, '/_sim/faults',
	{ rules => [ { kind => 'apply_then_reset', path => '/api/v2/auth/access_token/get', count => 1 } ] });
sim_post($sim, '/_sim/expire_token', { shop_id => 5001 });
change();
ok( wait_for($node, "SELECT token_state FROM invsync.sync_status WHERE shop_id = $shop", 'reauthorize'),
	'a refresh without an answer puts the shop in reauthorize');
usleep(1_500_000);
my $sim_shop = sim_get($sim, '/_sim/shops?shop_id=5001');
push @secrets, $sim_shop->{access_token}, $sim_shop->{refresh_token};
is(join(' ', requests()), 'push:403:error_auth refresh:reset',
	'the refresh was sent once and never resent with its spent token');
is(sim_get($sim, '/_sim/stats')->{spent_refresh_token_reuse}, 0, 'no spent refresh token was reused');
sim_post($sim, '/_sim/faults', { rules => [] });
reauthorize('third');
ok(wait_for($node, $synced, 't'), 'after set_shop_tokens() the change is published');

# ----- no secret anywhere ----------------------------------------------------

secrets_absent_from_log($node, @secrets);
ok(!$node->log_contains(qr/ERROR:|WARNING:  leaked/), 'the server log has no ERROR');
for my $secret (@secrets)
{
	is( $node->safe_psql('postgres', qq{
			SELECT (SELECT count(*) FROM invsync.sync_attempts
					 WHERE strpos(request_url || ' ' || coalesce(error_message, '') || ' ' || correlation_id, '$secret') > 0)
				 + (SELECT count(*) FROM invsync.shops WHERE strpos(coalesce(token_error, ''), '$secret') > 0)}),
		'0', 'no attempt row nor token_error holds ' . substr($secret, 0, 8) . '…');
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM invsync.sync_attempts WHERE request_url NOT LIKE '%sign=[redacted]%'}),
	'0', 'every request_url has its signature redacted');

$node->stop;
done_testing();
