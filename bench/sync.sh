#!/usr/bin/env bash
# bench/sync.sh: how fast the sync worker gets committed changes to a
# marketplace, and how many pushes per second it sustains with a backlog,
# each against a baseline measured in the same run.
#
# Starts a throwaway cluster (as the unprivileged user tools/common.sh picks,
# in a private copy of the tree it builds and installs, like bench/ledger.sh),
# the Shopee simulator over HTTPS with a test CA made on the spot, and an
# nginx "sink" on loopback that answers every update_stock with Shopee's
# success shape. Then, in one run:
#
#  1. latency  BENCH_LAT_N (300) single invsync.adjust() transactions, each on
#              another listing, at BENCH_LAT_RATE (50) per second (pgbench -R,
#              Poisson arrivals, so ~20 ms apart), against the simulator.
#              Commit time: pgbench's per-transaction log (-l), written when
#              the transaction's result (so its commit) came back, within
#              microseconds. Arrival: the simulator's log "time" of the
#              request that carried the new level. Latency = arrival - commit,
#              p50/p99 in ms, with the split at the worker's request start
#              (sync_attempts.started_at). Targets: p50 < 10 ms, p99 < 50 ms.
#  2. backlog  a group of BENCH_SHOPS (4) shops, their listings queued in one
#              commit (the shops are created disabled and enabled together),
#              timed from that commit to the last row synced (max pushed_at):
#                sim-1    BENCH_SIM_LISTINGS (5,000), 1 model per item
#                sim-50   BENCH_SIM_LISTINGS, 50 models per item
#                sink-1   BENCH_SINK_LISTINGS (20,000), 1 model per item
#                sink-50  BENCH_SINK_LISTINGS, 50 models per item
#              so one listing is one request (1 model) or 50 are (50 models).
#              Beside each, wrk posts the same body at the same concurrency
#              (invsync.max_in_flight connections) to the same server for
#              BENCH_WRK_SECONDS: the ceiling. Reported: requests/s, listings/s,
#              worker / ceiling, the worker's TCP connections to the server
#              (most seen, sampled every 0.1 s with ss, must stay <=
#              invsync.max_in_flight), the connections nginx accepted during
#              the run, the worker's CPU, and every attempt's outcome (all
#              must be 'ok'). Target: >= 5,000 pushes/s against the sink.
#
#  3. soak     BENCH_SOAK_PUSHES (1,000,000) pushes to the sink (run "soak",
#              not in the default set: about 4 minutes), in rounds that
#              re-queue every listing of the sink-1 shops (resync). Every
#              BENCH_SOAK_SAMPLE (100,000) pushes: the worker's private RSS
#              (/proc/PID/status RssAnon) and the grand total of its memory
#              contexts (pg_log_backend_memory_contexts). Target: both flat
#              within 1 MB from the first sample to the last.
#
# Writes a markdown table to bench/results-sync.md (BENCH_OUT) and prints it.
# Takes about a minute on the 2-core machine (most of it setup and wrk).
#
# Settings: BENCH_PORT (54339), BENCH_LAT_N, BENCH_LAT_RATE, BENCH_SHOPS,
# BENCH_SIM_LISTINGS, BENCH_SINK_LISTINGS, BENCH_MAX_IN_FLIGHT (64),
# BENCH_SHOP_IN_FLIGHT (16), BENCH_BATCH_SIZE (1000), BENCH_WRK_SECONDS (5),
# BENCH_RUN_TIMEOUT (120 s per backlog run), BENCH_RUNS (which of
# "lat sim-1 sim-50 sink-1 sink-50 soak" to run, all but soak by default), BENCH_SKIP_INSTALL=1
# to use the installed extension as it is, BENCH_PG_BIN to use another
# PostgreSQL 15 build (its pg_config installs), BENCH_EXTRA_CONF: lines
# appended to postgresql.conf (to try a variant), BENCH_OUT.
. "$(dirname "$0")/../tools/common.sh"

PORT=${BENCH_PORT:-54339}
LAT_N=${BENCH_LAT_N:-300}
LAT_RATE=${BENCH_LAT_RATE:-50}
NSHOPS=${BENCH_SHOPS:-4}
SIM_LISTINGS=${BENCH_SIM_LISTINGS:-5000}
SINK_LISTINGS=${BENCH_SINK_LISTINGS:-20000}
MAX_IN_FLIGHT=${BENCH_MAX_IN_FLIGHT:-64}
SHOP_IN_FLIGHT=${BENCH_SHOP_IN_FLIGHT:-16}
BATCH_SIZE=${BENCH_BATCH_SIZE:-1000}
WRK_SECONDS=${BENCH_WRK_SECONDS:-5}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-120}
RUNS=" ${BENCH_RUNS:-lat sim-1 sim-50 sink-1 sink-50} "
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi
OUT=${BENCH_OUT:-$REPO/bench/results-sync.md}
PY=/usr/bin/python3
PARTNER=2001887
PARTNER_KEY=bench-partner-key-0123456789abcdef
START_TIME=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# what this benchmark needs (tools/setup installs all but wrk)
install_packages wrk nginx-light openssl python3 iproute2 curl
id "$RUN_USER" >/dev/null 2>&1 || $SUDO useradd --system --home-dir "$INVSYNC_WORK" "$RUN_USER"

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
	prepare_build
elif [ ! -d "$INVSYNC_WORK" ]; then
	$SUDO mkdir -p "$INVSYNC_WORK"
	$SUDO chown "$RUN_USER" "$INVSYNC_WORK"
fi

BENCH_DIR=$INVSYNC_WORK/.bench-sync
DATA=$BENCH_DIR/data
as_run_user rm -rf "$BENCH_DIR"
as_run_user mkdir -p "$BENCH_DIR/pki" "$BENCH_DIR/nginx"
as_run_user cp "$REPO/bench/sync_helper.py" "$REPO/sim/shopee_sim.py" "$BENCH_DIR/"
helper() { as_run_user "$PY" "$BENCH_DIR/sync_helper.py" "$@"; }

SIM_PID=""
NGINX_PID=""
SAMPLER_PID=""
cleanup() {
	[ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
	[ -z "$SIM_PID" ] || kill "$SIM_PID" 2>/dev/null || true
	[ -z "$NGINX_PID" ] || kill "$NGINX_PID" 2>/dev/null || true
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

say "starting the Shopee simulator (HTTPS)"
as_run_user bash -c 'echo $$ > "$0"; exec "$@"' "$BENCH_DIR/sim.pid" "$PY" "$BENCH_DIR/shopee_sim.py" \
	--host 127.0.0.1 --port 0 --port-file "$BENCH_DIR/sim.port" \
	--tls-cert "$BENCH_DIR/pki/server.crt" --tls-key "$BENCH_DIR/pki/server.key" \
	--quiet --seed 1 >"$BENCH_DIR/sim.log" 2>&1 &
for _ in $(seq 100); do [ -s "$BENCH_DIR/sim.port" ] && break; sleep 0.1; done
SIM_PID=$(cat "$BENCH_DIR/sim.pid")
SIM_PORT=$(cat "$BENCH_DIR/sim.port")
SIM_URL=https://127.0.0.1:$SIM_PORT

# the sink: Shopee's success shape, model ids 0 (under /m1) or 0..49 (/m50),
# which is what the listings of the sink shops use, so every push is 'ok'
say "starting the nginx sink"
SINK_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK_URL=http://127.0.0.1:$SINK_PORT
success_body() {
	$PY -c '
import json, sys
n = int(sys.argv[1])
print(json.dumps({"request_id": "sink", "error": "", "message": "",
	"response": {"failure_list": [],
	"success_list": [{"model_id": m, "location_id": "", "stock": 0} for m in range(n)]}},
	separators=(",", ":")))' "$1"
}
as_run_user tee "$BENCH_DIR/nginx/nginx.conf" >/dev/null <<NGINX
worker_processes 1;
pid $BENCH_DIR/nginx/nginx.pid;
error_log $BENCH_DIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $BENCH_DIR/nginx/body;
	proxy_temp_path $BENCH_DIR/nginx/proxy;
	fastcgi_temp_path $BENCH_DIR/nginx/fastcgi;
	uwsgi_temp_path $BENCH_DIR/nginx/uwsgi;
	scgi_temp_path $BENCH_DIR/nginx/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 300s;
	server {
		listen 127.0.0.1:$SINK_PORT backlog=1024;
		default_type application/json;
		location = /m1/api/v2/product/update_stock { return 200 '$(success_body 1)'; }
		location = /m50/api/v2/product/update_stock { return 200 '$(success_body 50)'; }
		location = /status { stub_status; }
	}
}
NGINX
as_run_user nginx -e "$BENCH_DIR/nginx/error.log" -p "$BENCH_DIR/nginx" -c "$BENCH_DIR/nginx/nginx.conf"
for _ in $(seq 50); do curl -s -o /dev/null "$SINK_URL/status" && break; sleep 0.1; done
NGINX_PID=$(cat "$BENCH_DIR/nginx/nginx.pid")
sink_accepts() { curl -s "$SINK_URL/status" | awk 'NR == 3 { print $1 }'; }

SERVER_CONF="
shared_preload_libraries = 'invsync'
invsync.database = 'bench'
invsync.ca_file = '$CA'
# the nginx sink serves plain http on loopback
invsync.allow_insecure_http = on
invsync.max_in_flight = $MAX_IN_FLIGHT
invsync.batch_size = $BATCH_SIZE
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on
fsync = on
max_connections = 50
${BENCH_EXTRA_CONF:-}
"
say "starting a throwaway cluster on port $PORT"
as_run_user initdb -D "$DATA" -A trust -U bench --no-sync >/dev/null
printf '%s\nport = %s\nunix_socket_directories = %s\nlisten_addresses = %s\n' \
	"$SERVER_CONF" "$PORT" "'$BENCH_DIR'" "''" |
	as_run_user tee -a "$DATA/postgresql.conf" >/dev/null
as_run_user pg_ctl -D "$DATA" -l "$BENCH_DIR/server.log" -w start >/dev/null
as_run_user createdb -h "$BENCH_DIR" -p "$PORT" -U bench bench

psql_bench() {
	as_run_user psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$PORT" -U bench -d bench "$@"
}
q() { psql_bench -At -c "$1"; }

# shop groups: name app external-shop-base listings models-per-item
GROUPS_SPEC="lat sim 7000 $LAT_N 1
sim-1 sim 7100 $SIM_LISTINGS 1
sim-50 sim 7200 $SIM_LISTINGS 50
sink-1 sink1 8100 $SINK_LISTINGS 1
sink-50 sink50 8200 $SINK_LISTINGS 50"
max_listings=$(printf '%s\n' "$GROUPS_SPEC" | awk '$1 != "lat" { if ($4 > m) m = $4 } END { print m }')

say "creating $max_listings skus, $LAT_N latency skus, shops and listings"
setup_start=$(date +%s.%N)
psql_bench <<SQL
CREATE EXTENSION invsync;
SELECT invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('SKU-' || i)) FROM generate_series(1, $max_listings) i;
SELECT count(invsync.upsert_item('LAT-' || i)) FROM generate_series(1, $LAT_N) i;
SELECT count(*) FROM generate_series(1, $LAT_N) i,
	LATERAL invsync.adjust('LAT-' || i, 'W1', 100, 'initial', 'lat-init-' || i);
INSERT INTO invsync.apps (channel, name, app_key, app_secret, base_url) VALUES
	('shopee', 'sim', '$PARTNER', '$PARTNER_KEY', '$SIM_URL'),
	('shopee', 'sink1', '$PARTNER', '$PARTNER_KEY', '$SINK_URL/m1'),
	('shopee', 'sink50', '$PARTNER', '$PARTNER_KEY', '$SINK_URL/m50');
CREATE TABLE bench_groups (name text PRIMARY KEY, shop_ids bigint[]);
CREATE FUNCTION bench_group(p_name text, p_app text, p_base int, p_listings int,
							p_models int, p_shops int, p_enabled boolean)
	RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	v_per int := p_listings / p_shops;
	v_shop bigint;
	v_ids bigint[] := '{}';
BEGIN
	FOR k IN 1 .. p_shops LOOP
		INSERT INTO invsync.shops (app_id, external_shop_id, access_token, refresh_token,
								   access_expires_at, rate_limit_per_sec, max_in_flight, enabled)
		SELECT app_id, (p_base + k)::text, 'tok-' || (p_base + k), 'ref-' || (p_base + k),
			   now() + interval '1 day', 100000, $SHOP_IN_FLIGHT, p_enabled
		  FROM invsync.apps WHERE name = p_app
		RETURNING shop_id INTO v_shop;
		v_ids := v_ids || v_shop;
		INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
		SELECT v_shop,
			   CASE WHEN p_name = 'lat' THEN 'LAT-' ELSE 'SKU-' END || ((k - 1) * v_per + j + 1),
			   (j / p_models + 1)::text, (j % p_models)::text
		  FROM generate_series(0, v_per - 1) j;
	END LOOP;
	INSERT INTO bench_groups VALUES (p_name, v_ids);
END
\$\$;
SQL
while read -r name app base listings models; do
	shops=$NSHOPS
	[ "$name" = lat ] && shops=1
	psql_bench -c "SELECT bench_group('$name', '$app', $base, $listings, $models, $shops, false)" >/dev/null
	if [ "$app" = sim ]; then
		per=$((listings / shops))
		specs=()
		for k in $(seq 1 "$shops"); do specs+=("$((base + k)):$(((per + models - 1) / models)):$models"); done
		helper setup "$SIM_URL" "$CA" "$PARTNER" "$PARTNER_KEY" "${specs[@]}"
	fi
done <<<"$GROUPS_SPEC"
psql_bench -c 'VACUUM ANALYZE' >/dev/null
say "set up in $(awk -v a="$setup_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# the worker started before the database existed; it restarts within 5 s
for _ in $(seq 150); do
	WPID=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'")
	[ -n "$WPID" ] && break
	sleep 0.1
done
[ -n "$WPID" ] || { echo "the sync worker is not running" >&2; exit 1; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$WPID/stat"; }
TICKS=$(getconf CLK_TCK)

# wait until no row of the group is pending; the DO block polls in one backend
wait_synced() {
	psql_bench -c "DO \$\$
	DECLARE deadline timestamptz := clock_timestamp() + interval '$RUN_TIMEOUT s';
	BEGIN
		LOOP
			EXIT WHEN NOT EXISTS (SELECT FROM invsync.sync_queue q, bench_groups g
								   WHERE g.name = '$1' AND q.tenant_id = 0
									 AND q.shop_id = ANY (g.shop_ids) AND q.state = 'pending');
			IF clock_timestamp() > deadline THEN
				RAISE EXCEPTION 'group $1 not synced after $RUN_TIMEOUT s';
			END IF;
			PERFORM pg_sleep(0.02);
		END LOOP;
	END \$\$" >/dev/null
}
set_group() {
	psql_bench -c "UPDATE invsync.shops SET enabled = $2
		WHERE tenant_id = 0 AND shop_id = ANY ((SELECT shop_ids FROM bench_groups WHERE name = '$1')::bigint[])" >/dev/null
}

want() { [[ "$RUNS" == *" $1 "* ]]; }

# ---------------------------------------------------------------- latency
if want lat; then
say "latency: initial sync of the $LAT_N latency listings"
set_group lat true
wait_synced lat
sleep 1
as_run_user tee "$BENCH_DIR/lat.sql" >/dev/null <<SQL
SELECT nextval('bench_lat_seq') AS n \gset
SELECT 1 FROM invsync.adjust('LAT-' || :n, 'W1', 1, 'bench', 'lat-' || :n);
SQL
q "CREATE SEQUENCE bench_lat_seq" >/dev/null
say "latency: $LAT_N adjustments at $LAT_RATE/s"
as_run_user pgbench -n -h "$BENCH_DIR" -p "$PORT" -U bench -c 1 -j 1 -t "$LAT_N" -R "$LAT_RATE" \
	-l --log-prefix="$BENCH_DIR/lat" -f "$BENCH_DIR/lat.sql" bench >"$BENCH_DIR/lat-pgbench.log" 2>&1 ||
	{ cat "$BENCH_DIR/lat-pgbench.log" >&2; exit 1; }
wait_synced lat
q "SELECT substr(l.sku, 5), extract(epoch FROM a.started_at)
	 FROM invsync.sync_attempts a
	 JOIN invsync.listings l ON l.tenant_id = a.tenant_id AND l.listing_id = a.listing_ids[1]
	WHERE a.shop_id = (SELECT shop_ids[1] FROM bench_groups WHERE name = 'lat')
	  AND a.levels[1] = 101 ORDER BY a.attempt_id" | tr '|' ' ' | as_run_user tee "$BENCH_DIR/lat-starts.txt" >/dev/null
LAT_JSON=$(helper latency "$SIM_URL" "$CA" 7001 101 "$(ls "$BENCH_DIR"/lat.* | grep -v '\.sql$' | head -n 1)" \
	"$BENCH_DIR/lat-starts.txt")
say "latency: $LAT_JSON"
lat() { $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.1f" % d[sys.argv[2]][sys.argv[3]])' "$LAT_JSON" "$1" "$2"; }
LAT_MATCHED=$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["matched"], "of", d["transactions"])' "$LAT_JSON")
set_group lat false
fi

# ---------------------------------------------------------------- ceilings
# the same request the worker sends, at the same concurrency, for WRK_SECONDS
wrk_body() {
	$PY -c '
import json, sys
n = int(sys.argv[1])
print(json.dumps({"item_id": 1, "stock_list": [{"model_id": m, "seller_stock": [{"stock": 5}]}
	for m in range(n)]}, separators=(",", ":")), end="")' "$1"
}
declare -A R
ceiling() {
	local key=$1 url=$2 models=$3 out
	wrk_body "$models" | as_run_user tee "$BENCH_DIR/body-$key.json" >/dev/null
	as_run_user tee "$BENCH_DIR/wrk-$key.lua" >/dev/null <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$BENCH_DIR/body-$key.json")
wrk.body = f:read("*a")
f:close()
LUA
	out=$(wrk -t1 -c"$MAX_IN_FLIGHT" -d"${WRK_SECONDS}s" -s "$BENCH_DIR/wrk-$key.lua" "$url" 2>&1)
	echo "$out" >"$BENCH_DIR/wrk-$key.log"
	if echo "$out" | grep -q 'Non-2xx'; then
		echo "$out" >&2
		echo "wrk got errors from $url" >&2
		exit 1
	fi
	R[$key-ceiling]=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
	say "$key ceiling (wrk -c$MAX_IN_FLIGHT): ${R[$key-ceiling]} requests/s"
}

# ---------------------------------------------------------------- backlogs
backlog() {
	local key=$1 port=$2 listings=$3 models=$4 t0 before_ticks after_ticks a0 a1 res
	local sample=$BENCH_DIR/conns-$key.txt
	: >"$sample"
	chmod 666 "$sample"
	rm -f "$sample.stop"
	(
		while [ ! -e "$sample.stop" ]; do
			$SUDO ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -c "pid=$WPID," >>"$sample" || true
			sleep 0.1
		done
	) &
	SAMPLER_PID=$!
	x0=$(q "SELECT txid_current()")
	a0=$( [ "$port" = "$SINK_PORT" ] && sink_accepts || echo 0)
	before_ticks=$(cpu_ticks)
	t0=$(psql_bench -At <<SQL
UPDATE invsync.shops SET enabled = true
 WHERE tenant_id = 0 AND shop_id = ANY ((SELECT shop_ids FROM bench_groups WHERE name = '$key')::bigint[]);
SELECT extract(epoch FROM clock_timestamp());
SQL
)
	wait_synced "$key"
	after_ticks=$(cpu_ticks)
	a1=$( [ "$port" = "$SINK_PORT" ] && sink_accepts || echo 0)
	touch "$sample.stop"
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=""
	# the worker's writing transactions (claims, records): xids spent,
	# less this script's two (the UPDATE above and this txid_current())
	R[$key-xacts]=$(($(q "SELECT txid_current()") - x0 - 2))
	res=$(q "WITH g AS (SELECT shop_ids FROM bench_groups WHERE name = '$key')
		SELECT (SELECT count(*) FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id = ANY (g.shop_ids) AND q.state = 'synced'),
			   (SELECT extract(epoch FROM max(q.pushed_at)) - $t0 FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id = ANY (g.shop_ids)),
			   (SELECT extract(epoch FROM min(a.started_at)) - $t0 FROM invsync.sync_attempts a, g WHERE a.tenant_id = 0 AND a.shop_id = ANY (g.shop_ids)),
			   (SELECT count(*) FROM invsync.sync_attempts a, g WHERE a.tenant_id = 0 AND a.shop_id = ANY (g.shop_ids)),
			   (SELECT string_agg(outcome || '=' || n, ' ') FROM (SELECT a.outcome, count(*) n FROM invsync.sync_attempts a, g
				 WHERE a.tenant_id = 0 AND a.shop_id = ANY (g.shop_ids) GROUP BY 1 ORDER BY 1) o),
			   (SELECT count(DISTINCT q.pushed_at) FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id = ANY (g.shop_ids))")
	IFS='|' read -r R[$key-synced] R[$key-elapsed] R[$key-first] R[$key-requests] R[$key-outcomes] R[$key-records] <<<"$res"
	R[$key-listings]=$listings
	R[$key-rps]=$(awk -v n="${R[$key-requests]}" -v t="${R[$key-elapsed]}" 'BEGIN { printf "%.0f", n / t }')
	R[$key-lps]=$(awk -v n="${R[$key-synced]}" -v t="${R[$key-elapsed]}" 'BEGIN { printf "%.0f", n / t }')
	R[$key-conns]=$(sort -n "$sample" | tail -n 1)
	R[$key-accepts]=$((a1 - a0 - 1))	# less the status request itself
	[ "$port" = "$SINK_PORT" ] || R[$key-accepts]="n/a"
	R[$key-cpu]=$(awk -v a="$before_ticks" -v b="$after_ticks" -v hz="$TICKS" -v t="${R[$key-elapsed]}" \
		'BEGIN { printf "%.0f", 100 * (b - a) / hz / t }')
	say "$key: ${R[$key-synced]}/$listings synced in ${R[$key-elapsed]} s, ${R[$key-requests]} requests (${R[$key-rps]}/s, ${R[$key-lps]} listings/s), outcomes ${R[$key-outcomes]}, worker conns max ${R[$key-conns]}, worker CPU ${R[$key-cpu]}%, ${R[$key-xacts]} worker transactions (${R[$key-records]} recording)"
	set_group "$key" false
}

sim_sign() { helper sign "$SIM_URL" "$PARTNER" "$PARTNER_KEY" "$1" "tok-$1"; }
KEYS=()
for key in sim-1 sim-50 sink-1 sink-50; do
	want "$key" || continue
	KEYS+=("$key")
	models=${key#*-}
	case $key in
		sim-*)
			ceiling "$key" "$(sim_sign $((models == 1 ? 7101 : 7201)))" "$models"
			backlog "$key" "$SIM_PORT" "$SIM_LISTINGS" "$models" ;;
		sink-*)
			ceiling "$key" "$SINK_URL/m$models/api/v2/product/update_stock" "$models"
			backlog "$key" "$SINK_PORT" "$SINK_LISTINGS" "$models" ;;
	esac
done

# ---------------------------------------------------------------- soak
SOAK_ROWS=()
if want soak; then
	SOAK_PUSHES=${BENCH_SOAK_PUSHES:-1000000}
	SOAK_SAMPLE=${BENCH_SOAK_SAMPLE:-100000}
	soak_memory() {
		local before after
		before=$(grep -c 'Grand total:' "$BENCH_DIR/server.log" || true)
		q "SELECT pg_log_backend_memory_contexts($WPID)" >/dev/null
		for _ in $(seq 50); do
			after=$(grep -c 'Grand total:' "$BENCH_DIR/server.log" || true)
			[ "$after" -gt "$before" ] && break
			sleep 0.1
		done
		grep 'Grand total:' "$BENCH_DIR/server.log" | tail -n 1 | sed 's/.*Grand total: \([0-9]*\) bytes.*/\1/'
	}
	soak_sample() {
		local rss anon mem
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$WPID/status")
		anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$WPID/status")
		mem=$(soak_memory)
		SOAK_ROWS+=("$1 $anon $mem $rss")
		say "soak: $1 pushes, worker RssAnon $anon kB (VmRSS $rss kB), memory contexts $mem bytes"
	}
	say "soak: $SOAK_PUSHES pushes to the sink, sampled every $SOAK_SAMPLE"
	set_group sink-1 true
	wait_synced sink-1
	soak_shops=$(q "SELECT array_to_string(shop_ids, ' ') FROM bench_groups WHERE name = 'sink-1'")
	soak_pushed=0
	soak_sample 0
	soak_next=$SOAK_SAMPLE
	soak_start=$(date +%s.%N)
	while [ "$soak_pushed" -lt "$SOAK_PUSHES" ]; do
		for shop in $soak_shops; do
			soak_pushed=$((soak_pushed + $(q "SELECT invsync.resync($shop)")))
		done
		wait_synced sink-1
		if [ "$soak_pushed" -ge "$soak_next" ]; then
			soak_sample "$soak_pushed"
			soak_next=$((soak_next + SOAK_SAMPLE))
		fi
	done
	SOAK_SECONDS=$(awk -v a="$soak_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	SOAK_BAD=$(q "SELECT count(*) FROM invsync.sync_attempts WHERE outcome <> 'ok'")
	set_group sink-1 false
fi

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
round() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
verdict() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { ok = (op == "<") ? a < b : a >= b; print ok ? "met" : "MISSED" }'; }
sec() { awk -v a="$1" 'BEGIN { printf "%.2f", a }'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed_total=$(($(date +%s) - START_TIME))
all_ok=1
for key in "${KEYS[@]}"; do
	case "${R[$key-outcomes]}" in "ok="*) [[ "${R[$key-outcomes]}" == *" "* ]] && all_ok=0 ;; *) all_ok=0 ;; esac
	[ "${R[$key-synced]}" = "${R[$key-listings]}" ] || all_ok=0
done
conns_ok=$(for key in "${KEYS[@]}"; do echo "${R[$key-conns]}"; done |
	awk -v cap="$MAX_IN_FLIGHT" '$1 > cap { bad = 1 } END { print bad ? "MISSED" : "met" }')
{
	echo "# Sync benchmark"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/sync.sh\` in ${elapsed_total} s on $(nproc) CPUs"
	echo "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)),"
	echo "$(as_run_user postgres --version), $(curl --version | head -n 1 | cut -d' ' -f1-2) (the worker's libcurl),"
	echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), Python $($PY -c 'import platform; print(platform.python_version())') (simulator)."
	echo "Everything (server, worker, simulator, sink, load generator) shares the"
	echo "$(nproc) CPUs; load average at the start: $LOAD_START, at the end: $load (other"
	echo "sessions may share the machine). Compare cells of one run, not runs."
	echo
	echo "Server settings:"
	echo '```'
	printf '%s\n' "$SERVER_CONF" | sed '/^$/d' | sed "s|$CA|<test CA>|"
	echo '```'
	echo "Shops: rate_limit_per_sec 100000, max_in_flight $SHOP_IN_FLIGHT; a backlog run uses $NSHOPS shops."
	echo
	if want lat; then
	echo "## Commit to marketplace, light load"
	echo
	echo "$LAT_N single \`invsync.adjust\` transactions, each on another listing, at $LAT_RATE/s"
	echo "(pgbench \`-R $LAT_RATE\`, one client), pushed to the Shopee simulator over HTTPS."
	echo "Commit time: pgbench's per-transaction log (\`-l\`: the moment the result came"
	echo "back, so after the commit); arrival: the simulator's log time of the request"
	echo "carrying the new level. Split at the worker's request start (\`sync_attempts.started_at\`)."
	echo "Matched: $LAT_MATCHED."
	echo
	echo "| ms | p50 | p90 | p99 | max |"
	echo "|---|---:|---:|---:|---:|"
	echo "| commit -> request start (worker) | $(lat pickup p50) | $(lat pickup p90) | $(lat pickup p99) | $(lat pickup max) |"
	echo "| request start -> simulator arrival | $(lat wire p50) | $(lat wire p90) | $(lat wire p99) | $(lat wire max) |"
	echo "| **commit -> simulator arrival** | **$(lat total p50)** | $(lat total p90) | **$(lat total p99)** | $(lat total max) |"
	echo
	echo "Targets: p50 < 10 ms: $(lat total p50) ms, $(verdict "$(lat total p50)" 10 '<'); p99 < 50 ms: $(lat total p99) ms, $(verdict "$(lat total p99)" 50 '<')."
	echo
	fi
	if [ ${#KEYS[@]} -gt 0 ]; then
	echo "## Backlog throughput"
	echo
	echo "Each run queues every listing of $NSHOPS shops in one commit and is timed from that"
	echo "commit to the last row synced (\`max(pushed_at)\`). The ceiling is wrk (\`-t1 -c$MAX_IN_FLIGHT\`,"
	echo "${WRK_SECONDS} s) posting the same body to the same server, just before the run."
	echo "Connections: the most TCP connections the worker held to the server at once"
	echo "(\`ss\`, every 0.1 s; cap: invsync.max_in_flight = $MAX_IN_FLIGHT) and, for the sink,"
	echo "how many it opened during the run (nginx stub_status accepts). Worker CPU: its"
	echo "utime + stime over the run (100% = one core; it is one process). Worker xacts: the"
	echo "transactions it wrote in (xids spent: claims and recordings), records: those that"
	echo "recorded outcomes."
	echo
	echo "| server | models/item | listings | requests | s | requests/s | listings/s | ceiling req/s | worker / ceiling | conns max | conns opened | worker CPU | worker xacts (records) | outcomes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for key in "${KEYS[@]}"; do
		case $key in sim-*) srv="Shopee simulator, HTTPS" ;; *) srv="nginx sink, HTTP" ;; esac
		echo "| $srv | ${key#*-} | ${R[$key-synced]}/${R[$key-listings]} | ${R[$key-requests]} | $(sec "${R[$key-elapsed]}") | ${R[$key-rps]} | ${R[$key-lps]} | $(round "${R[$key-ceiling]}") | $(ratio "${R[$key-rps]}" "${R[$key-ceiling]}") | ${R[$key-conns]} | ${R[$key-accepts]} | ${R[$key-cpu]}% | ${R[$key-xacts]} (${R[$key-records]}) | ${R[$key-outcomes]} |"
	done
	echo
	echo "First request of each run started $(for key in "${KEYS[@]}"; do printf '%s s (%s), ' "$(sec "${R[$key-first]}")" "$key"; done | sed 's/, $//') after the queueing commit."
	if want sink-1; then
		echo "Target: >= 5,000 pushes/s against the nginx sink: ${R[sink-1-rps]}/s, $(verdict "${R[sink-1-rps]}" 5000 '>=');"
	fi
	echo "worker connections <= invsync.max_in_flight in every run: $conns_ok;"
	echo "every listing synced and every attempt 'ok': $([ $all_ok = 1 ] && echo yes || echo NO)."
	fi
	if want soak; then
	echo "## Soak: memory over $SOAK_PUSHES pushes"
	echo
	echo "Rounds of \`invsync.resync()\` of the sink-1 shops ($SINK_LISTINGS listings a round) until"
	echo "$SOAK_PUSHES pushes, in $SOAK_SECONDS s (resync and settling between rounds included);"
	echo "attempts not 'ok': $SOAK_BAD. Sampled after the round that passed each $SOAK_SAMPLE."
	echo
	echo "RSS is the worker's private memory (RssAnon): VmRSS also counts the pages of"
	echo "shared_buffers it has touched, which grow with the tables it reads, not with a leak."
	echo
	echo "| pushes | worker RssAnon kB | memory contexts, bytes | VmRSS kB |"
	echo "|---:|---:|---:|---:|"
	for row in "${SOAK_ROWS[@]}"; do
		read -r n anon mem rss <<<"$row"
		echo "| $n | $anon | $mem | $rss |"
	done
	first=(${SOAK_ROWS[1]:-${SOAK_ROWS[0]}})
	last=(${SOAK_ROWS[-1]})
	rss_growth=$((last[1] - first[1]))
	mem_growth=$((last[2] - first[2]))
	echo
	echo "Growth from the first sample after warm-up (${first[0]} pushes) to the last: RssAnon ${rss_growth} kB,"
	echo "memory contexts ${mem_growth} bytes. Target: both within 1 MB:"
	echo "$( [ "$rss_growth" -le 1024 ] && [ "$mem_growth" -le 1048576 ] && echo met || echo MISSED)."
	echo
	fi
} | tee "$OUT"
say "written to $OUT"
[ $all_ok = 1 ]
