#!/usr/bin/env bash
# bench/webhooks.sh: what a marketplace push costs, and how soon it reaches
# the other channels, each against a baseline measured in the same run.
#
# Starts a throwaway cluster with the worker (as the unprivileged user
# tools/common.sh picks, in a private copy of the tree it builds and
# installs, like bench/sync.sh), then:
#
#  a. handle_webhook() latency: BENCH_CLIENTS (8) pgbench clients for
#     BENCH_SECONDS (15) each calling invsync.handle_webhook() with a
#     realistic signed push (bench/webhooks_helper.py pushes: a third each
#     Shopee, TikTok, Lazada order status pushes, each with a new event key;
#     half for orders whose lines were recorded first, whose push cancels
#     them (a release in the ledger), half for new orders (a fetch queued);
#     BENCH_DUP_PCT (20) % re-deliveries of an earlier push: duplicates).
#     The pushes are read from a table by a sequence, one a transaction, so
#     the baselines read the same row the same way:
#       lookup     the row's body length (the statement without the call)
#       available  invsync.available() of a sku, beside the row read
#     p50/p99 from pgbench's per-transaction log (-l).  The push shops are
#     disabled, so the worker fetches nothing here.  Then the same calls
#     from 1 client: the cost of a call without queueing.  Target: p99 < 20 ms
#     at BENCH_CLIENTS.
#  b. webhook -> reservation -> the other channels, end to end: BENCH_E2E_N
#     (100) orders at BENCH_E2E_RATE (5) per second, each on a sku of its
#     own listed on Shopee, TikTok and Lazada (the simulators over HTTPS);
#     the order is put on the Shopee simulator, its push signed and POSTed
#     to examples/webhook_handler.py over HTTP; the worker fetches the order
#     (pushes rarely carry lines), reserves it, and pushes the lowered level
#     to every channel.  Latency: the TikTok and Lazada simulators' arrival
#     time of the level minus the time the push was sent, p50/p99, with the
#     split at the fetch's start and the reservation.  Baseline: the
#     commit-to-marketplace latency of bench/sync.sh (a plain adjust),
#     measured here the same way on the same listings (BENCH_E2E_N adjusts
#     at the same rate, arrival minus commit).
#
# Writes bench/results-webhooks.md (BENCH_OUT) and prints it. Took 273 s on
# the busy 2-core machine on 2026-12-01, 149 s of it setup (the 24,000
# orders of (a) recorded, the simulators' shops and items).
# Settings: BENCH_PORT (54349), BENCH_CLIENTS, BENCH_SECONDS, BENCH_DUP_PCT,
# BENCH_PUSHES (rows generated; must exceed the calls made, 60,000; the
# baselines wrap around),
# BENCH_E2E_N, BENCH_E2E_RATE, BENCH_SKIP_INSTALL=1, BENCH_PG_BIN, BENCH_OUT.

# a work copy of its own, so that a concurrent tools/test is left alone
export INVSYNC_WORK=${INVSYNC_WORK:-/tmp/invsync-bench-webhooks}
. "$(dirname "$0")/../tools/common.sh"

PORT=${BENCH_PORT:-54349}
CLIENTS=${BENCH_CLIENTS:-8}
SECS=${BENCH_SECONDS:-15}
DUP_PCT=${BENCH_DUP_PCT:-20}
NPUSH=${BENCH_PUSHES:-60000}
E2E_N=${BENCH_E2E_N:-100}
E2E_RATE=${BENCH_E2E_RATE:-5}
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi
OUT=${BENCH_OUT:-$REPO/bench/results-webhooks.md}
PY=/usr/bin/python3
PUBLIC=https://hooks.bench.invalid
PARTNER=2001887
PARTNER_KEY=bench-partner-key-0123456789abcdef
TT_KEY=tt-bench-app
LZ_KEY=120001
APP_SECRET=bench-app-secret-0123456789abcdef
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date +%s)

install_packages python3 python3-psycopg2 openssl
id "$RUN_USER" >/dev/null 2>&1 || $SUDO useradd --system --home-dir "$INVSYNC_WORK" "$RUN_USER"
bench_prepare webhooks
as_run_user mkdir -p "$BENCH_DIR/pki"
as_run_user cp "$REPO/bench/sync_helper.py" "$REPO/bench/webhooks_helper.py" "$REPO/sim/shopee_sim.py" \
	"$REPO/sim/tiktok_sim.py" "$REPO/sim/lazada_sim.py" "$REPO/examples/webhook_handler.py" "$BENCH_DIR/"
helper() { as_run_user "$PY" "$BENCH_DIR/webhooks_helper.py" "$@"; }

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	as_run_user pg_ctl -D "$DATA" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "making a test CA and a certificate for 127.0.0.1"
as_run_user bash -c '
	set -e; cd "$1"
	echo "subjectAltName = IP:127.0.0.1, DNS:localhost" > san.cnf
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=invsync-bench-ca -keyout ca.key -out ca.crt
	openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
	openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.cnf -out server.crt
' _ "$BENCH_DIR/pki" >/dev/null 2>&1
CA=$BENCH_DIR/pki/ca.crt

# start NAME CMD...: a server that writes its port to $BENCH_DIR/NAME.port
start() {
	local name=$1
	shift
	as_run_user bash -c 'echo $$ > "$0"; exec "$@"' "$BENCH_DIR/$name.pid" "$@" \
		--port-file "$BENCH_DIR/$name.port" >"$BENCH_DIR/$name.log" 2>&1 &
	for _ in $(seq 100); do [ -s "$BENCH_DIR/$name.port" ] && break; sleep 0.1; done
	[ -s "$BENCH_DIR/$name.port" ] || { cat "$BENCH_DIR/$name.log" >&2; echo "$name did not start" >&2; exit 1; }
	PIDS+=("$(cat "$BENCH_DIR/$name.pid")")
}
for s in shopee tiktok lazada; do
	say "starting the $s simulator (HTTPS)"
	start "$s" "$PY" "$BENCH_DIR/${s}_sim.py" --host 127.0.0.1 --port 0 \
		--tls-cert "$BENCH_DIR/pki/server.crt" --tls-key "$BENCH_DIR/pki/server.key" --quiet --seed 1
done
SHOPEE_URL=https://127.0.0.1:$(cat "$BENCH_DIR/shopee.port")
TT_URL=https://127.0.0.1:$(cat "$BENCH_DIR/tiktok.port")
LZ_URL=https://127.0.0.1:$(cat "$BENCH_DIR/lazada.port")

SERVER_CONF="
shared_preload_libraries = 'invsync'
invsync.database = 'bench'
invsync.ca_file = '$CA'
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on
fsync = on
max_connections = 50
"
bench_start_cluster "$SERVER_CONF" "$PORT"
psql_bench() {
	as_run_user psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$PORT" -U bench -d bench "$@"
}
q() { psql_bench -At -c "$1"; }

say "generating $NPUSH signed pushes"
T=$(($(date +%s) - 3600))
helper pushes "$BENCH_DIR/pushes.csv" "$NPUSH" "$DUP_PCT" "$PUBLIC" "$T"

say "setting up: apps, shops, $E2E_N skus listed on three simulators, the pushes' known orders"
setup_start=$(date +%s)
psql_bench >/dev/null <<SQL
CREATE EXTENSION invsync;
CREATE ROLE bench_hook LOGIN IN ROLE invsync_webhook;
SELECT FROM invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('HOOK-' || i)) FROM generate_series(1, 100) i;
SELECT count(*) FROM generate_series(1, 100) i,
	LATERAL invsync.adjust('HOOK-' || i, 'W1', 1000000, 'initial', 'hook-init-' || i);
SELECT count(invsync.upsert_item('E2E-' || i)) FROM generate_series(1, $E2E_N) i;
SELECT count(*) FROM generate_series(1, $E2E_N) i,
	LATERAL invsync.adjust('E2E-' || i, 'W1', 100, 'initial', 'e2e-init-' || i);
-- (a) the push shops: disabled, so the worker fetches nothing
INSERT INTO invsync.apps (channel, name, app_key, app_secret) VALUES
	('shopee', 'hook-shopee', '2001888', 'bench-push-partner-key-0123456789'),
	('tiktok', 'hook-tiktok', 'tt-hook-app', 'tt-hook-secret-0123456789abcdef'),
	('lazada', 'hook-lazada', '120009', 'lzd-hook-secret-0123456789abcdef');
INSERT INTO invsync.shops (app_id, external_shop_id, push_shop_id, region, enabled)
SELECT app_id, CASE channel WHEN 'shopee' THEN '9001' WHEN 'tiktok' THEN 'ROW_HOOK' ELSE '900001' END,
	   CASE channel WHEN 'tiktok' THEN '7494049642642449001' END,
	   CASE channel WHEN 'shopee' THEN NULL ELSE 'MY' END, false
  FROM invsync.apps WHERE name LIKE 'hook-%';
CREATE TABLE bench_pushes (n bigint PRIMARY KEY, channel text, headers jsonb, body text, url text,
						   order_id text, known boolean, dup boolean);
\copy bench_pushes FROM '$BENCH_DIR/pushes.csv' WITH (FORMAT csv)
SELECT count(invsync.record_order(s.shop_id, p.order_id,
		CASE p.channel WHEN 'shopee' THEN 'READY_TO_SHIP' WHEN 'tiktok' THEN 'AWAITING_SHIPMENT' ELSE 'pending' END,
		to_timestamp($T - 60), jsonb_build_array(jsonb_build_object('sku', 'HOOK-' || (p.n % 100 + 1), 'qty', 1))))
  FROM bench_pushes p
  JOIN invsync.apps a ON a.channel = p.channel AND a.name LIKE 'hook-%'
  JOIN invsync.shops s ON s.app_id = a.app_id
 WHERE p.known AND NOT p.dup;
CREATE SEQUENCE bench_push_seq;
-- (b) a sku each listed on the three simulators, through the worker
INSERT INTO invsync.apps (channel, name, app_key, app_secret, push_secret, base_url, auth_base_url) VALUES
	('shopee', 'e2e-shopee', '$PARTNER', '$PARTNER_KEY', 'bench-push-partner-key-0123456789', '$SHOPEE_URL', NULL),
	('tiktok', 'e2e-tiktok', '$TT_KEY', '$APP_SECRET', NULL, '$TT_URL', '$TT_URL'),
	('lazada', 'e2e-lazada', '$LZ_KEY', '$APP_SECRET', NULL, '$LZ_URL/rest', '$LZ_URL/rest');
INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
						   access_expires_at, rate_limit_per_sec, max_in_flight, enabled)
SELECT app_id, CASE channel WHEN 'shopee' THEN '7001' WHEN 'tiktok' THEN 'TT7301' ELSE '7501' END,
	   CASE channel WHEN 'shopee' THEN NULL WHEN 'tiktok' THEN 'ID' ELSE 'SG' END,
	   'tok-' || CASE channel WHEN 'shopee' THEN '7001' WHEN 'tiktok' THEN 'TT7301' ELSE '7501' END,
	   'ref-x', now() + interval '1 day', 100000, 16, false
  FROM invsync.apps WHERE name LIKE 'e2e-%';
INSERT INTO invsync.listings (shop_id, sku, external_ids)
SELECT s.shop_id, 'E2E-' || i, jsonb_build_object('item_id', i::text)
  FROM invsync.shops s, generate_series(1, $E2E_N) i WHERE s.external_shop_id = '7001';
INSERT INTO invsync.listings (shop_id, sku, external_ids)
SELECT s.shop_id, 'E2E-' || i,
	   CASE s.external_shop_id WHEN 'TT7301'
		   THEN jsonb_build_object('product_id', i::text, 'sku_id', (100000 + i)::text, 'warehouse_id', 'W1')
		   ELSE jsonb_build_object('item_id', i::text, 'sku_id', (100000 + i)::text) END
  FROM invsync.shops s, generate_series(1, $E2E_N) i WHERE s.external_shop_id IN ('TT7301', '7501');
VACUUM ANALYZE;
SQL
as_run_user "$PY" "$BENCH_DIR/sync_helper.py" setup "$SHOPEE_URL" "$CA" "$PARTNER" "$PARTNER_KEY" "7001:$E2E_N:1"
as_run_user "$PY" "$BENCH_DIR/sync_helper.py" setup-tiktok "$TT_URL" "$CA" "$TT_KEY" "$APP_SECRET" TIKTOK_SHOP TT7301 "$E2E_N"
as_run_user "$PY" "$BENCH_DIR/sync_helper.py" setup-lazada "$LZ_URL" "$CA" "$LZ_KEY" "$APP_SECRET" 7501 "$E2E_N"
# the simulators know the shops now: their listings' first sync may start
q "UPDATE invsync.shops SET enabled = true WHERE external_shop_id IN ('7001', 'TT7301', '7501')" >/dev/null
say "set up in $(($(date +%s) - setup_start)) s"

# ------------------------------------------------------------------ (a)
as_run_user tee "$BENCH_DIR/lookup.sql" >/dev/null <<SQL
SELECT length(body) FROM bench_pushes WHERE n = (SELECT nextval('bench_push_seq') % $NPUSH + 1);
SQL
as_run_user tee "$BENCH_DIR/available.sql" >/dev/null <<SQL
SELECT invsync.available('HOOK-' || (n % 100 + 1)) FROM bench_pushes WHERE n = (SELECT nextval('bench_push_seq') % $NPUSH + 1);
SQL
as_run_user tee "$BENCH_DIR/webhook.sql" >/dev/null <<'SQL'
SELECT invsync.handle_webhook(channel, headers, body, url) FROM bench_pushes WHERE n = (SELECT nextval('bench_push_seq'));
SQL
declare -A TPS LAT
# cell NAME SCRIPT CLIENTS
cell() {
	local name=$1 script=$2 clients=$3 out
	# the webhook cells take fresh pushes: the second where the first ended
	[ "$script" = webhook ] && [ -n "${TPS[webhook]:-}" ] ||
		q "SELECT setval('bench_push_seq', 1, false)" >/dev/null
	psql_bench -c CHECKPOINT >/dev/null
	out=$(as_run_user pgbench -n -M prepared -h "$BENCH_DIR" -p "$PORT" -U bench -c "$clients" -j $((clients < 2 ? 1 : 2)) \
		-T "$SECS" -l --log-prefix="$BENCH_DIR/$name-log" -f "$BENCH_DIR/$script.sql" bench 2>&1) ||
		{ echo "$out" >&2; exit 1; }
	echo "$out" >"$BENCH_DIR/$name-pgbench.log"
	TPS[$name]=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1)
	LAT[$name]=$(helper pct "$BENCH_DIR/$name-log".*)
	say "$name: ${TPS[$name]} tps, ${LAT[$name]}"
}
cell lookup lookup "$CLIENTS"
cell available available "$CLIENTS"
cell webhook webhook "$CLIENTS"
cell webhook1 webhook 1
CALLED=$(q "SELECT last_value FROM bench_push_seq")
[ "$CALLED" -lt "$NPUSH" ] || { echo "the pushes ran out ($CALLED calls): raise BENCH_PUSHES" >&2; exit 1; }
OUTCOMES=$(q "SELECT (SELECT count(*) FROM invsync.webhook_inbox) || ' recorded, '
	|| (SELECT count(*) FROM bench_pushes WHERE n <= $CALLED AND dup) || ' duplicates, '
	|| (SELECT count(*) FROM invsync.order_fetches) || ' fetches queued'")
RELEASED=$(q "SELECT count(*) FROM invsync.marketplace_orders WHERE effect = 'release'")

# ------------------------------------------------------------------ (b)
say "waiting for the e2e listings' first sync"
for _ in $(seq 600); do
	[ "$(q "SELECT count(*) FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		WHERE l.sku LIKE 'E2E-%' AND q.state = 'synced'")" = $((3 * E2E_N)) ] && break
	sleep 0.2
done
say "starting the example handler"
start handler "$PY" "$BENCH_DIR/webhook_handler.py" --host 127.0.0.1 --port 0 \
	--dsn "host=$BENCH_DIR port=$PORT dbname=bench user=bench_hook" --public-base-url "$PUBLIC"
HANDLER_URL=http://127.0.0.1:$(cat "$BENCH_DIR/handler.port")
say "e2e: $E2E_N orders pushed at $E2E_RATE/s"
E2E=$(helper e2e "host=$BENCH_DIR port=$PORT dbname=bench user=bench" "$PUBLIC" "$HANDLER_URL" \
	"$SHOPEE_URL" "$TT_URL" "$LZ_URL" "$CA" "$E2E_N" "$E2E_RATE")
say "e2e: $E2E"

# the baseline: the same skus lowered again by a plain adjust, at the same
# rate; arrival (level 98) minus commit
as_run_user tee "$BENCH_DIR/adjust.sql" >/dev/null <<'SQL'
SELECT nextval('bench_lat_seq') AS n \gset
SELECT 1 FROM invsync.adjust('E2E-' || :n, 'W1', -1, 'bench', 'e2e-adj-' || :n);
SQL
q "CREATE SEQUENCE bench_lat_seq" >/dev/null
as_run_user pgbench -n -h "$BENCH_DIR" -p "$PORT" -U bench -c 1 -j 1 -t "$E2E_N" -R "$E2E_RATE" \
	-l --log-prefix="$BENCH_DIR/adjust-log" -f "$BENCH_DIR/adjust.sql" bench >"$BENCH_DIR/adjust-pgbench.log" 2>&1 ||
	{ cat "$BENCH_DIR/adjust-pgbench.log" >&2; exit 1; }
for _ in $(seq 600); do
	[ "$(q "SELECT count(*) FROM invsync.sync_queue q JOIN invsync.listings l USING (tenant_id, listing_id)
		WHERE l.sku LIKE 'E2E-%' AND q.state <> 'synced'")" = 0 ] && break
	sleep 0.2
done
: >"$BENCH_DIR/none.txt"
chmod 644 "$BENCH_DIR/none.txt"
ADJ_TT=$(as_run_user "$PY" "$BENCH_DIR/sync_helper.py" latency tiktok "$TT_URL" "$CA" TT7301 98 \
	"$(ls "$BENCH_DIR/adjust-log".* | head -n 1)" "$BENCH_DIR/none.txt")
ADJ_LZ=$(as_run_user "$PY" "$BENCH_DIR/sync_helper.py" latency lazada "$LZ_URL" "$CA" 7501 98 \
	"$(ls "$BENCH_DIR/adjust-log".* | head -n 1)" "$BENCH_DIR/none.txt")
say "adjust baseline: tiktok $ADJ_TT lazada $ADJ_LZ"

# ------------------------------------------------------------------ report
j() { $PY -c 'import json,sys; d=json.loads(sys.argv[1])
for k in sys.argv[2:]: d=d[k]
print(("%.1f" % d) if isinstance(d, float) else json.dumps(d) if isinstance(d, dict) else d)' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? "met" : "MISSED" }'; }
W99=$(j "${LAT[webhook]}" p99)
{
	echo "# Webhook benchmark"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/webhooks.sh\` in $(($(date +%s) - START_TIME)) s on $(nproc) CPUs"
	echo "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(as_run_user postgres --version)."
	echo "Load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other sessions"
	echo "share the 2 CPUs: compare the cells of one run, not runs)."
	echo
	echo "## a. handle_webhook() latency, $CLIENTS clients, $SECS s a cell"
	echo
	echo "pgbench \`-M prepared\`, one push a transaction read by a sequence from a table of"
	echo "$NPUSH pre-signed pushes (a third each Shopee, TikTok, Lazada order status pushes; half"
	echo "cancelling an order recorded first, a release; half new orders, a fetch queued;"
	echo "$DUP_PCT % re-deliveries, duplicates). $CALLED calls: $OUTCOMES; $RELEASED orders released."
	echo
	echo "| cell ($CLIENTS clients unless said) | tps | p50 ms | p90 ms | p99 ms | p99 / lookup p99 |"
	echo "|---|---:|---:|---:|---:|---:|"
	for c in lookup available webhook webhook1; do
		case $c in
			webhook1) label="\`invsync.handle_webhook()\`, 1 client (no queueing; tps of one caller)" ;;
			lookup) label="baseline: read the push row (\`length(body)\`)" ;;
			available) label="baseline: \`invsync.available()\` beside the row read" ;;
			webhook) label="\`invsync.handle_webhook()\` of the row" ;;
		esac
		echo "| $label | $(printf '%.0f' "${TPS[$c]}") | $(j "${LAT[$c]}" p50) | $(j "${LAT[$c]}" p90) | $(j "${LAT[$c]}" p99) | $(ratio "$(j "${LAT[$c]}" p99)" "$(j "${LAT[lookup]}" p99)") |"
	done
	echo
	echo "Target p99 < 20 ms: ${W99} ms, $(verdict "$W99" 20)."
	echo
	echo "## b. webhook -> reservation -> the other channels"
	echo
	echo "$E2E_N Shopee orders at $E2E_RATE/s, one sku each listed on Shopee, TikTok and Lazada"
	echo "(simulators over HTTPS); each push signed and POSTed to examples/webhook_handler.py;"
	echo "the worker fetches the order from the Shopee simulator, reserves it, and pushes the"
	echo "lowered level everywhere. Latency: arrival of the level at the simulator minus the"
	echo "time the push was sent. Baseline: the same skus lowered again by a plain"
	echo "\`invsync.adjust()\` at the same rate, arrival minus commit (bench/sync.sh's measure)."
	echo "Handler answers: $(j "$E2E" answers); handler round trip p50 $(j "$E2E" handler_ms p50) ms, p99 $(j "$E2E" handler_ms p99) ms."
	echo
	echo "| path | TikTok p50 / p99 ms | Lazada p50 / p99 ms | ratio (p50) |"
	echo "|---|---:|---:|---:|"
	echo "| baseline: adjust commit -> marketplace | $(j "$ADJ_TT" total p50) / $(j "$ADJ_TT" total p99) | $(j "$ADJ_LZ" total p50) / $(j "$ADJ_LZ" total p99) | 1.0 / 1.0 |"
	echo "| push sent -> marketplace (fetch, reserve, push) | $(j "$E2E" tiktok p50) / $(j "$E2E" tiktok p99) | $(j "$E2E" lazada p50) / $(j "$E2E" lazada p99) | $(ratio "$(j "$E2E" tiktok p50)" "$(j "$ADJ_TT" total p50)") / $(ratio "$(j "$E2E" lazada p50)" "$(j "$ADJ_LZ" total p50)") |"
	echo
	echo "Split (p50 / p99 ms): push sent -> the worker starts the order fetch $(j "$E2E" push_to_fetch p50) / $(j "$E2E" push_to_fetch p99);"
	echo "push sent -> the reservation's transaction starts $(j "$E2E" push_to_reserve p50) / $(j "$E2E" push_to_reserve p99)."
	echo "Matched: TikTok $(j "$E2E" tiktok matched), Lazada $(j "$E2E" lazada matched) of $E2E_N."
} | tee "$OUT"
say "written to $OUT"
