#!/usr/bin/env bash
# bench/sync.sh: how fast the sync worker gets committed changes to each
# marketplace, and how many pushes per second it sustains with a backlog,
# each against a baseline measured in the same run.
#
# Starts a throwaway cluster (as the unprivileged user tools/common.sh picks,
# in a private copy of the tree it builds and installs, like bench/ledger.sh),
# the simulators (sim/shopee_sim.py, sim/tiktok_sim.py for TikTok and
# Tokopedia shops, sim/lazada_sim.py) over HTTPS with a test CA made on the
# spot, and an nginx "sink" on loopback that answers every push with the
# channel's success shape. Then, in one run, per channel (BENCH_CHANNELS,
# "shopee tiktok tokopedia lazada" by default):
#
#  1. latency  lat-CHANNEL: BENCH_LAT_N (300) single invsync.adjust()
#              transactions, each on another listing, at BENCH_LAT_RATE (50)
#              per second (pgbench -R, Poisson arrivals, so ~20 ms apart),
#              against the channel's simulator (one shop, one listing per
#              product/item, the app's default batch size).
#              Commit time: pgbench's per-transaction log (-l), written when
#              the transaction's result (so its commit) came back, within
#              microseconds. Arrival: the simulator's log "time" of the
#              request that carried the new level. Latency = arrival - commit,
#              p50/p99 in ms, with the split at the worker's request start
#              (sync_attempts.started_at). Targets: p50 < 5 ms, p99 < 10 ms.
#  2. backlog  a group of BENCH_SHOPS (4) shops, their listings queued in one
#              commit (the shops are created disabled and enabled together),
#              timed from that commit to the last row synced (max pushed_at):
#                sim-shopee-1     BENCH_SIM_LISTINGS (5,000), 1 model per item
#                sim-shopee-50    BENCH_SIM_LISTINGS, 50 models per item
#                sink-shopee-1    BENCH_SINK_LISTINGS (20,000), 1 model per item
#                sink-shopee-50   BENCH_SINK_LISTINGS, 50 models per item
#                sink-tiktok-1    BENCH_SINK_LISTINGS, 1 SKU x 1 warehouse per
#                                 product (TikTok batches by product)
#                sink-tokopedia-1 the same, Tokopedia shops (TikTok's API)
#                sink-lazada-1    BENCH_SINK_LISTINGS, the app's batch_size 1
#                sink-lazada-20   BENCH_SINK_LISTINGS, batch_size NULL (the
#                                 adapter's default: 20 SKUs a request)
#              so one listing is one request (the -1 runs) or 50 or 20 are.
#              The sink's one-listing runs go BENCH_ROUNDS (3) times: after
#              the first, the shops stay enabled and every listing is queued
#              again in one commit (invsync.resync, which queues even levels
#              already published); the round whose worker CPU a push is the
#              median is reported, every round's beside it, so that a moment
#              when another session takes the CPU does not make the figure.
#              Beside each, wrk posts the channel's own request (the body,
#              content type, signed query and token header the adapter
#              builds; Shopee's without the query, as before) at the same
#              concurrency (invsync.max_in_flight connections) to the same
#              server for BENCH_WRK_SECONDS: the ceiling. The sink's
#              locations: /m1 and /m50 (Shopee), /tt (TikTok and Tokopedia,
#              a regex location for the product id in the path), /rest
#              (Lazada). Reported: requests/s, listings/s,
#              worker / ceiling, the worker's TCP connections to the server
#              (most seen, sampled every 0.1 s with ss, must stay <=
#              invsync.max_in_flight), the connections nginx accepted during
#              the run, the worker's CPU, and every attempt's outcome (all
#              must be 'ok'). Target: >= 5,000 pushes/s against the sink.
#
#  3. scale    against the sink, Shopee, one listing a request, each queued
#              in one commit (BENCH_SCALE=0 leaves them out):
#                scale-shops         BENCH_SCALE_SHOPS (10,000) shops of
#                                    BENCH_SCALE_PER_SHOP (10) listings
#                scale-backlog       one shop of BENCH_SCALE_BACKLOG (200,000)
#                scale-import-small  BENCH_SCALE_SMALL (2,000) adjust() calls
#                                    of that shop's skus in one statement
#                scale-import        BENCH_SCALE_BACKLOG of them likewise
#              with each claim's rows and time read from the worker's own
#              counters (invsync.worker_activity) as the backlog drains: the
#              median claim at ~100 %, ~10 % and ~1 % of the run's rows
#              unclaimed (see "scale" below), and an adjust's time in each
#              import. Targets: a claimed row's time within 2x across the
#              three, a claim at 200,000 pending within 2x of one at 2,000,
#              an adjust of the large import within 2x of the small one's.
#              BENCH_SCALE_TIMEOUT (900 s) bounds each.
#  4. soak     BENCH_SOAK_PUSHES (1,000,000) pushes to the sink (run "soak",
#              not in the default set: about 4 minutes), in rounds that
#              re-queue every listing of the sink-shopee-1 shops (resync). Every
#              BENCH_SOAK_SAMPLE (100,000) pushes: the worker's private RSS
#              (/proc/PID/status RssAnon) and the grand total of its memory
#              contexts (pg_log_backend_memory_contexts). Target: both flat
#              within 1 MB from the first sample to the last.
#
# Writes a markdown table to bench/results-sync.md (BENCH_OUT) and prints it.
# Took 589 s on the busy 2-core machine on 2026-12-01 (147 s of it setup of
# 130,000 listings; the TikTok and Tokopedia backlogs are the slowest runs).
#
# The worker runs at the extension's defaults (invsync.max_in_flight 64,
# invsync.batch_size 1000) unless BENCH_MAX_IN_FLIGHT or BENCH_BATCH_SIZE
# sets them; the values in force are read back from the server. Its CPU is
# read from /proc/PID/schedstat (nanoseconds) and reported per request;
# BENCH_PERF=PREFIX also records a call-graph profile of the worker over
# each backlog run (perf record -g, PREFIX-RUN.data, for perf report).
# On 2026-12-01, at those defaults and a load average of 2.3-3.3 from other
# sessions: Shopee 1,262 pushes/s (wrk 27,779 req/s: 0.05), 367 us of worker
# CPU a push, of which the claim (_claim) 64%, recording 23%; 0.4's
# defaults (batch 200) in the same conditions: 718/s, 637 us.
#
# Settings: BENCH_PORT (54339), BENCH_LAT_N, BENCH_LAT_RATE, BENCH_SHOPS,
# BENCH_SIM_LISTINGS, BENCH_SINK_LISTINGS, BENCH_MAX_IN_FLIGHT (the
# extension's default), BENCH_SHOP_IN_FLIGHT (16), BENCH_BATCH_SIZE (the
# extension's default: invsync.batch_size, the rows a claim takes; not the
# apps' batch_size), BENCH_PERF, BENCH_WRK_SECONDS (5), BENCH_ROUNDS (3),
# BENCH_RUN_TIMEOUT (120 s per backlog run), BENCH_CHANNELS (the channels
# whose runs are the default set), BENCH_RUNS (which of the runs above and
# "soak" to run, all but soak of BENCH_CHANNELS by default; the older names
# lat, sim-1, sim-50, sink-1 and sink-50 mean the Shopee runs), BENCH_SKIP_INSTALL=1
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
SHOP_IN_FLIGHT=${BENCH_SHOP_IN_FLIGHT:-16}
# the extension's own defaults unless overridden (read back from the server)
WORKER_CONF=""
[ -z "${BENCH_MAX_IN_FLIGHT:-}" ] || WORKER_CONF+="invsync.max_in_flight = $BENCH_MAX_IN_FLIGHT
"
[ -z "${BENCH_BATCH_SIZE:-}" ] || WORKER_CONF+="invsync.batch_size = $BENCH_BATCH_SIZE
"
SCALE_SHOPS=${BENCH_SCALE_SHOPS:-10000}
SCALE_PER_SHOP=${BENCH_SCALE_PER_SHOP:-10}
SCALE_BACKLOG=${BENCH_SCALE_BACKLOG:-200000}
SCALE_SMALL=${BENCH_SCALE_SMALL:-2000}
SCALE_TIMEOUT=${BENCH_SCALE_TIMEOUT:-900}
WRK_SECONDS=${BENCH_WRK_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-120}
ALL_CHANNELS="shopee tiktok tokopedia lazada"
CHANNELS=${BENCH_CHANNELS:-$ALL_CHANNELS}
default_runs() {
	local ch
	for ch in $CHANNELS; do
		case $ch in
			shopee) echo lat-shopee sim-shopee-1 sim-shopee-50 sink-shopee-1 sink-shopee-50 ;;
			tiktok | tokopedia) echo "lat-$ch sink-$ch-1" ;;
			lazada) echo lat-lazada sink-lazada-1 sink-lazada-20 ;;
		esac
	done
	[ "${BENCH_SCALE:-1}" = 0 ] || echo scale-shops scale-backlog scale-import
}
for ch in $CHANNELS; do
	[[ " $ALL_CHANNELS " == *" $ch "* ]] || { echo "BENCH_CHANNELS: unknown channel $ch (one of: $ALL_CHANNELS)" >&2; exit 1; }
done
RUNS=" "
for r in ${BENCH_RUNS:-$(default_runs)}; do
	case $r in
		lat) r=lat-shopee ;;
		sim-1 | sim-50 | sink-1 | sink-50) r=${r%-*}-shopee-${r#*-} ;;
	esac
	RUNS+="$r "
done
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi
OUT=${BENCH_OUT:-$REPO/bench/results-sync.md}
PY=/usr/bin/python3
PARTNER=2001887
PARTNER_KEY=bench-partner-key-0123456789abcdef
TT_KEY=tt-bench-app
TP_KEY=tp-bench-app
LZ_KEY=120001
APP_SECRET=bench-app-secret-0123456789abcdef
START_TIME=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# what this benchmark needs (tools/setup installs all but wrk)
install_packages wrk nginx-light openssl python3 iproute2 curl
id "$RUN_USER" >/dev/null 2>&1 || $SUDO useradd --system --home-dir "$INVSYNC_WORK" "$RUN_USER"

bench_prepare sync
as_run_user mkdir -p "$BENCH_DIR/pki" "$BENCH_DIR/nginx"
as_run_user cp "$REPO/bench/sync_helper.py" "$REPO/sim/shopee_sim.py" "$REPO/sim/tiktok_sim.py" \
	"$REPO/sim/lazada_sim.py" "$BENCH_DIR/"
helper() { as_run_user "$PY" "$BENCH_DIR/sync_helper.py" "$@"; }
# libcurl alone posting the worker's request (bench/http_floor.c)
as_run_user gcc -O2 -Wall -o "$BENCH_DIR/http_floor" "$REPO/bench/http_floor.c" -lcurl
FLOOR_REQUESTS=${BENCH_FLOOR_REQUESTS:-50000}

want() { [[ "$RUNS" == *" $1 "* ]]; }
want_any() { local r; for r in "$@"; do want "$r" && return 0; done; return 1; }

SIM_PIDS=()
NGINX_PID=""
SAMPLER_PID=""
cleanup() {
	[ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
	local pid
	for pid in "${SIM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
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

# start_sim NAME SCRIPT: a simulator over HTTPS on a free port; sets
# SIM_URL_NAME and SIM_PORT_NAME
start_sim() {
	local name=$1 script=$2 port
	say "starting $script (HTTPS)"
	as_run_user bash -c 'echo $$ > "$0"; exec "$@"' "$BENCH_DIR/$name.pid" "$PY" "$BENCH_DIR/$script" \
		--host 127.0.0.1 --port 0 --port-file "$BENCH_DIR/$name.port" \
		--tls-cert "$BENCH_DIR/pki/server.crt" --tls-key "$BENCH_DIR/pki/server.key" \
		--quiet --seed 1 >"$BENCH_DIR/$name.log" 2>&1 &
	for _ in $(seq 100); do [ -s "$BENCH_DIR/$name.port" ] && break; sleep 0.1; done
	[ -s "$BENCH_DIR/$name.port" ] || { cat "$BENCH_DIR/$name.log" >&2; echo "$script did not start" >&2; exit 1; }
	SIM_PIDS+=("$(cat "$BENCH_DIR/$name.pid")")
	port=$(cat "$BENCH_DIR/$name.port")
	printf -v "SIM_PORT_$name" '%s' "$port"
	printf -v "SIM_URL_$name" '%s' "https://127.0.0.1:$port"
}
SIM_URL_shopee=https://127.0.0.1:1 SIM_URL_tiktok=https://127.0.0.1:1 SIM_URL_lazada=https://127.0.0.1:1
want_any lat-shopee sim-shopee-1 sim-shopee-50 && start_sim shopee shopee_sim.py
want_any lat-tiktok lat-tokopedia && start_sim tiktok tiktok_sim.py
want_any lat-lazada && start_sim lazada lazada_sim.py
SIM_URL=$SIM_URL_shopee
SIM_PORT=${SIM_PORT_shopee:-0}
TT_URL=$SIM_URL_tiktok
LZ_URL=$SIM_URL_lazada

# the sink (tools/common.sh): every channel's success shape, for the ids
# the listings of the sink shops have, so every push is 'ok'
say "starting the nginx sink"
start_sink "$BENCH_DIR/nginx"
NGINX_PID=$(cat "$BENCH_DIR/nginx/nginx.pid")
sink_accepts() { curl -s "$SINK_URL/status" | awk 'NR == 3 { print $1 }'; }

SERVER_CONF="
shared_preload_libraries = 'invsync'
invsync.database = 'bench'
invsync.ca_file = '$CA'
# the nginx sink serves plain http on loopback
invsync.allow_insecure_http = on
${WORKER_CONF}shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on
fsync = on
max_connections = 50
${BENCH_EXTRA_CONF:-}
"
bench_start_cluster "$SERVER_CONF" "$PORT"

psql_bench() {
	as_run_user psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$PORT" -U bench -d bench "$@"
}
q() { psql_bench -At -c "$1"; }
# the worker's settings in force: the extension's defaults unless overridden
MAX_IN_FLIGHT=$(q "SHOW invsync.max_in_flight")
BATCH_SIZE=$(q "SHOW invsync.batch_size")
say "invsync.max_in_flight = $MAX_IN_FLIGHT, invsync.batch_size = $BATCH_SIZE"

# shop groups: name app external-shop-base listings models-per-item
# (listings per request: models per item for Shopee, the batch for Lazada)
# only the groups of the runs wanted (the soak uses sink-shopee-1's)
GROUPS_SPEC=$(while read -r name rest; do
	if want "$name" || { [ "$name" = sink-shopee-1 ] && want soak; }; then echo "$name $rest"; fi
done <<GROUPS
lat-shopee sim 7000 $LAT_N 1
lat-tiktok ttsim 7300 $LAT_N 1
lat-tokopedia tpsim 7400 $LAT_N 1
lat-lazada lzsim 7500 $LAT_N 1
sim-shopee-1 sim 7100 $SIM_LISTINGS 1
sim-shopee-50 sim 7200 $SIM_LISTINGS 50
sink-shopee-1 sink1 8100 $SINK_LISTINGS 1
sink-shopee-50 sink50 8200 $SINK_LISTINGS 50
sink-tiktok-1 ttsink 8300 $SINK_LISTINGS 1
sink-tokopedia-1 tpsink 8400 $SINK_LISTINGS 1
sink-lazada-1 lzsink1 8500 $SINK_LISTINGS 1
sink-lazada-20 lzsink20 8600 $SINK_LISTINGS 20
GROUPS
)
SCALE_RUNS=""
for r in scale-shops scale-backlog scale-import; do want "$r" && SCALE_RUNS+="$r "; done
[ -n "$GROUPS_SPEC$SCALE_RUNS" ] || { echo "BENCH_RUNS: nothing to run in '$RUNS'" >&2; exit 1; }
max_listings=$(printf '%s\n' "$GROUPS_SPEC" | awk '$1 !~ /^lat-/ { if ($4 > m) m = $4 } END { print m + 0 }')
LAT_CHANNELS=$(printf '%s\n' "$GROUPS_SPEC" | awk '$1 ~ /^lat-/ { sub(/^lat-/, "", $1); printf "%s ", $1 }')

say "creating $max_listings skus, $LAT_N latency skus for each of: ${LAT_CHANNELS:-none}, shops and listings"
setup_start=$(date +%s.%N)
psql_bench <<SQL
CREATE EXTENSION invsync;
SELECT invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('SKU-' || i)) FROM generate_series(1, $max_listings) i;
SELECT count(invsync.upsert_item('LAT-' || c || '-' || i))
  FROM unnest(string_to_array(trim('$LAT_CHANNELS'), ' ')) c, generate_series(1, $LAT_N) i;
SELECT count(*) FROM unnest(string_to_array(trim('$LAT_CHANNELS'), ' ')) c, generate_series(1, $LAT_N) i,
	LATERAL invsync.adjust('LAT-' || c || '-' || i, 'W1', 100, 'initial', 'lat-init-' || c || '-' || i);
-- apps: Shopee partner apps as before; TikTok and Lazada token calls go to
-- the auth host, the simulator or the sink; Lazada's batch_size NULL is the
-- adapter's default (20)
INSERT INTO invsync.apps (channel, name, app_key, app_secret, base_url, auth_base_url, batch_size) VALUES
	('shopee', 'sim', '$PARTNER', '$PARTNER_KEY', '$SIM_URL', NULL, NULL),
	('shopee', 'sink1', '$PARTNER', '$PARTNER_KEY', '$SINK_URL/m1', NULL, NULL),
	('shopee', 'sink50', '$PARTNER', '$PARTNER_KEY', '$SINK_URL/m50', NULL, NULL),
	('tiktok', 'ttsim', '$TT_KEY', '$APP_SECRET', '$TT_URL', '$TT_URL', NULL),
	('tiktok', 'ttsink', '$TT_KEY', '$APP_SECRET', '$SINK_URL/tt', '$SINK_URL/tt', NULL),
	('tokopedia', 'tpsim', '$TP_KEY', '$APP_SECRET', '$TT_URL', '$TT_URL', NULL),
	('tokopedia', 'tpsink', '$TP_KEY', '$APP_SECRET', '$SINK_URL/tt', '$SINK_URL/tt', NULL),
	('lazada', 'lzsim', '$LZ_KEY', '$APP_SECRET', '$LZ_URL/rest', '$LZ_URL/rest', NULL),
	('lazada', 'lzsink1', '$LZ_KEY', '$APP_SECRET', '$SINK_URL/rest', '$SINK_URL/rest', 1),
	('lazada', 'lzsink20', '$LZ_KEY', '$APP_SECRET', '$SINK_URL/rest', '$SINK_URL/rest', NULL);
CREATE TABLE bench_groups (name text PRIMARY KEY, shop_ids bigint[]);
-- a group's shops and listings: Shopee's item j / p_models + 1, model
-- j % p_models, in the generic columns as before; TikTok's (and
-- Tokopedia's) product j + 1 with SKU 100000 + j + 1 in warehouse W1, and
-- Lazada's item j + 1 with SKU 100000 + j + 1, in external_ids by the
-- channel's attribute names; the latency groups' skus are LAT-channel-n
CREATE FUNCTION bench_group(p_name text, p_app text, p_base int, p_listings int,
							p_models int, p_shops int, p_enabled boolean)
	RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	v_per int := p_listings / p_shops;
	v_shop bigint;
	v_ids bigint[] := '{}';
	v_channel text;
	v_ext text;
	v_region text;
	v_prefix text := CASE WHEN p_name LIKE 'lat-%' THEN 'LAT-' || substr(p_name, 5) || '-' ELSE 'SKU-' END;
BEGIN
	SELECT channel INTO v_channel FROM invsync.apps WHERE name = p_app;
	v_region := CASE v_channel WHEN 'lazada' THEN 'SG' WHEN 'shopee' THEN NULL ELSE 'ID' END;
	FOR k IN 1 .. p_shops LOOP
		v_ext := CASE v_channel WHEN 'tiktok' THEN 'TT' WHEN 'tokopedia' THEN 'TP' ELSE '' END || (p_base + k);
		INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
								   access_expires_at, rate_limit_per_sec, max_in_flight, enabled)
		SELECT app_id, v_ext, v_region, 'tok-' || v_ext, 'ref-' || v_ext,
			   now() + interval '1 day', 100000, $SHOP_IN_FLIGHT, p_enabled
		  FROM invsync.apps WHERE name = p_app
		RETURNING shop_id INTO v_shop;
		v_ids := v_ids || v_shop;
		IF v_channel = 'shopee' THEN
			INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
			SELECT v_shop, v_prefix || ((k - 1) * v_per + j + 1),
				   (j / p_models + 1)::text, (j % p_models)::text
			  FROM generate_series(0, v_per - 1) j;
		ELSIF v_channel IN ('tiktok', 'tokopedia') THEN
			INSERT INTO invsync.listings (shop_id, sku, external_ids)
			SELECT v_shop, v_prefix || ((k - 1) * v_per + j + 1),
				   jsonb_build_object('product_id', (j + 1)::text, 'sku_id', (100000 + j + 1)::text,
									  'warehouse_id', 'W1')
			  FROM generate_series(0, v_per - 1) j;
		ELSE
			INSERT INTO invsync.listings (shop_id, sku, external_ids)
			SELECT v_shop, v_prefix || ((k - 1) * v_per + j + 1),
				   jsonb_build_object('item_id', (j + 1)::text, 'sku_id', (100000 + j + 1)::text)
			  FROM generate_series(0, v_per - 1) j;
		END IF;
	END LOOP;
	INSERT INTO bench_groups VALUES (p_name, v_ids);
END
\$\$;
SQL
while read -r name app base listings models; do
	shops=$NSHOPS
	[[ "$name" == lat-* ]] && shops=1
	psql_bench -c "SELECT bench_group('$name', '$app', $base, $listings, $models, $shops, false)" >/dev/null
	case $app in
		sim)
			per=$((listings / shops))
			specs=()
			for k in $(seq 1 "$shops"); do specs+=("$((base + k)):$(((per + models - 1) / models)):$models"); done
			helper setup "$SIM_URL" "$CA" "$PARTNER" "$PARTNER_KEY" "${specs[@]}" ;;
		ttsim) helper setup-tiktok "$TT_URL" "$CA" "$TT_KEY" "$APP_SECRET" TIKTOK_SHOP "TT$((base + 1))" "$listings" ;;
		tpsim) helper setup-tiktok "$TT_URL" "$CA" "$TP_KEY" "$APP_SECRET" TOKOPEDIA "TP$((base + 1))" "$listings" ;;
		lzsim) helper setup-lazada "$LZ_URL" "$CA" "$LZ_KEY" "$APP_SECRET" "$((base + 1))" "$listings" ;;
	esac
done < <([ -z "$GROUPS_SPEC" ] || printf '%s\n' "$GROUPS_SPEC")
# the scale groups, against the sink's Shopee location for one model an
# item, their shops disabled: SCALE_SHOPS shops of SCALE_PER_SHOP listings
# (skus SS-n), and one shop of SCALE_BACKLOG listings (skus SB-n), which
# the import adjusts; each shop of a group built by one statement
if [ -n "$SCALE_RUNS" ]; then
	psql_bench <<SQL
CREATE TABLE bench_sampler_stop (stop boolean);
CREATE FUNCTION bench_scale_group(p_name text, p_prefix text, p_base int, p_shops int,
								  p_per int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	v_ids bigint[];
BEGIN
	PERFORM count(invsync.upsert_item(p_prefix || i)) FROM generate_series(1, p_shops * p_per) i;
	WITH s AS (
		INSERT INTO invsync.shops (app_id, external_shop_id, access_token, refresh_token,
								   access_expires_at, rate_limit_per_sec, max_in_flight, enabled)
		SELECT a.app_id, (p_base + k)::text, 'tok-' || (p_base + k), 'ref-' || (p_base + k),
			   now() + interval '1 day', 100000, $SHOP_IN_FLIGHT, false
		  FROM invsync.apps a, generate_series(1, p_shops) k
		 WHERE a.name = 'sink1'
		RETURNING shop_id)
	SELECT array_agg(shop_id ORDER BY shop_id) INTO v_ids FROM s;
	INSERT INTO invsync.listings (shop_id, sku, external_item_id, external_model_id)
	SELECT v_ids[k], p_prefix || ((k - 1) * p_per + j + 1), (j + 1)::text, '0'
	  FROM generate_series(1, p_shops) k, generate_series(0, p_per - 1) j;
	INSERT INTO bench_groups VALUES (p_name, v_ids);
END
\$\$;
SQL
	if want scale-shops; then
		say "scale-shops: $SCALE_SHOPS shops of $SCALE_PER_SHOP listings"
		q "SELECT bench_scale_group('scale-shops', 'SS-', 1000000, $SCALE_SHOPS, $SCALE_PER_SHOP)" >/dev/null
	fi
	if want_any scale-backlog scale-import; then
		say "scale-backlog: one shop of $SCALE_BACKLOG listings"
		q "SELECT bench_scale_group('scale-backlog', 'SB-', 2000000, 1, $SCALE_BACKLOG)" >/dev/null
	fi
fi
psql_bench -c 'VACUUM ANALYZE' >/dev/null
say "set up in $(awk -v a="$setup_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# the worker started before the database existed; it restarts within 5 s
for _ in $(seq 150); do
	WPID=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'")
	[ -n "$WPID" ] && break
	sleep 0.1
done
[ -n "$WPID" ] || { echo "the sync worker is not running" >&2; exit 1; }
# the worker's CPU time in nanoseconds (schedstat: time on a CPU, user and
# system, at nanosecond resolution where /proc/PID/stat counts 10 ms ticks)
cpu_ns() { awk '{ print $1 }' "/proc/$WPID/schedstat"; }

# wait until no row of the group is pending: one psql session polls
# (\watch), each poll its own short transaction.  A loop inside one
# statement (a DO block) would hold its snapshot for the whole run, so no
# row the worker synced meanwhile could be pruned, nor its entry in the
# queue's ready index marked dead: every claim would step over all of
# them, and the run would measure that.  A group's shops are consecutive
# ids (each group is made by one call), so the poll is one range scan of
# that index.  The poll's query fails once nothing is pending, which ends
# \watch.
wait_synced() {
	local out
	out=$(echo "SELECT CASE WHEN NOT EXISTS (
			SELECT FROM invsync.sync_queue q, bench_groups g
			 WHERE g.name = '$1' AND q.tenant_id = 0 AND q.state = 'pending'
			   AND q.shop_id BETWEEN g.shop_ids[1] AND g.shop_ids[cardinality(g.shop_ids)])
		THEN 1 / floor(random())::int END \\watch 0.02" |
		as_run_user timeout "$RUN_TIMEOUT" psql -X -q -At -h "$BENCH_DIR" -p "$PORT" -U bench -d bench 2>&1 >/dev/null)
	case $out in
		*"division by zero"*) ;;
		*) echo "group $1 not synced after $RUN_TIMEOUT s${out:+: $out}" >&2; exit 1 ;;
	esac
}
set_group() {
	psql_bench -c "UPDATE invsync.shops SET enabled = $2
		WHERE tenant_id = 0 AND shop_id = ANY ((SELECT shop_ids FROM bench_groups WHERE name = '$1')::bigint[])" >/dev/null
}

# ---------------------------------------------------------------- latency
# the channel's simulator and the shop's id there (the logs key on it)
declare -A LAT_URL=([shopee]="$SIM_URL" [tiktok]="$TT_URL" [tokopedia]="$TT_URL" [lazada]="$LZ_URL")
declare -A LAT_SHOP=([shopee]=7001 [tiktok]=TT7301 [tokopedia]=TP7401 [lazada]=7501)
declare -A LAT
latency_run() {
	local ch=$1 key=lat-$1 json
	say "$key: initial sync of the $LAT_N latency listings"
	set_group "$key" true
	wait_synced "$key"
	sleep 1
	as_run_user tee "$BENCH_DIR/$key.sql" >/dev/null <<SQL
SELECT nextval('bench_lat_seq') AS n \gset
SELECT 1 FROM invsync.adjust('LAT-$ch-' || :n, 'W1', 1, 'bench', 'lat-$ch-' || :n);
SQL
	q "DROP SEQUENCE IF EXISTS bench_lat_seq; CREATE SEQUENCE bench_lat_seq" >/dev/null
	say "$key: $LAT_N adjustments at $LAT_RATE/s"
	as_run_user pgbench -n -h "$BENCH_DIR" -p "$PORT" -U bench -c 1 -j 1 -t "$LAT_N" -R "$LAT_RATE" \
		-l --log-prefix="$BENCH_DIR/$key-log" -f "$BENCH_DIR/$key.sql" bench >"$BENCH_DIR/$key-pgbench.log" 2>&1 ||
		{ cat "$BENCH_DIR/$key-pgbench.log" >&2; exit 1; }
	wait_synced "$key"
	# every listing of an attempt (a Lazada call may carry several)
	q "SELECT regexp_replace(l.sku, '^.*-', ''), extract(epoch FROM a.started_at)
		 FROM invsync.sync_attempts a, unnest(a.listing_ids, a.levels) u(listing_id, level)
		 JOIN invsync.listings l ON l.listing_id = u.listing_id
		WHERE l.tenant_id = a.tenant_id
		  AND a.shop_id = (SELECT shop_ids[1] FROM bench_groups WHERE name = '$key')
		  AND u.level = 101 ORDER BY a.attempt_id" | tr '|' ' ' |
		as_run_user tee "$BENCH_DIR/$key-starts.txt" >/dev/null
	json=$(helper latency "$ch" "${LAT_URL[$ch]}" "$CA" "${LAT_SHOP[$ch]}" 101 \
		"$(ls "$BENCH_DIR/$key-log".* | head -n 1)" "$BENCH_DIR/$key-starts.txt")
	say "$key: $json"
	LAT[$ch]=$json
	set_group "$key" false
}
# lat CHANNEL total|pickup|wire p50|p90|p99|max
lat() { $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.1f" % d[sys.argv[2]][sys.argv[3]])' "${LAT[$1]}" "$2" "$3"; }
lat_matched() { $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["matched"], "of", d["transactions"])' "${LAT[$1]}"; }
for ch in $LAT_CHANNELS; do latency_run "$ch"; done

# ---------------------------------------------------------------- ceilings
# the request the worker sends (the channel's body, content type, query and
# headers; sync_helper.py wrk), at the same concurrency, for WRK_SECONDS.
# For the sink also the floor: the CPU that libcurl and the kernel spend on
# that request (with the query the worker sends) with nothing else to do,
# FLOOR_REQUESTS of them (bench/http_floor.c), user and system time apart.
declare -A R
# ceiling KEY CHANNEL BASE_URL LISTINGS_PER_REQUEST [URL, for a signed Shopee one]
ceiling() {
	local key=$1 ch=$2 base=$3 n=$4 url out
	url=$(helper wrk "$ch" "$base" "$n" "$BENCH_DIR/body-$key" "$BENCH_DIR/wrk-$key.lua")
	[ -z "${5:-}" ] || url=$5
	out=$(wrk -t1 -c"$MAX_IN_FLIGHT" -d"${WRK_SECONDS}s" -s "$BENCH_DIR/wrk-$key.lua" "$url" 2>&1)
	echo "$out" >"$BENCH_DIR/wrk-$key.log"
	if echo "$out" | grep -q 'Non-2xx'; then
		echo "$out" >&2
		echo "wrk got errors from $url" >&2
		exit 1
	fi
	R[$key-ceiling]=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
	say "$key ceiling (wrk -c$MAX_IN_FLIGHT): ${R[$key-ceiling]} requests/s"
	[ -z "${5:-}" ] || return 0
	local floor_args
	mapfile -t floor_args <"$BENCH_DIR/wrk-$key.lua.floor"
	out=$(as_run_user "$BENCH_DIR/http_floor" "${floor_args[0]}" "$BENCH_DIR/body-$key" \
		"$MAX_IN_FLIGHT" "$FLOOR_REQUESTS" "${floor_args[@]:1}") ||
		{ echo "http_floor failed against ${floor_args[0]}" >&2; exit 1; }
	read -r _ _ R[$key-floor-user] R[$key-floor-sys] <<<"$out"
	R[$key-floor]=$(awk -v u="${R[$key-floor-user]}" -v s="${R[$key-floor-sys]}" 'BEGIN { printf "%.0f", u + s }')
	say "$key floor (libcurl alone, $FLOOR_REQUESTS requests): ${R[$key-floor]} us CPU a request (user ${R[$key-floor-user]}, system ${R[$key-floor-sys]})"
}

# ---------------------------------------------------------------- backlogs
backlog() {
	local key=$1 port=$2 listings=$3 models=$4 t0 before_ns after_ns a0 a1 res perf_pid="" last_attempt
	local group=${BACKLOG_GROUP:-$1}
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
	# a later round of the same shops counts its own attempts only
	last_attempt=$(q "SELECT coalesce(max(attempt_id), 0) FROM invsync.sync_attempts")
	a0=$( [ "$port" = "$SINK_PORT" ] && sink_accepts || echo 0)
	if [ -n "${BENCH_PERF:-}" ]; then
		# a call-graph profile of the worker over the run, for perf report
		perf record -q -g -F 999 -p "$WPID" -o "$BENCH_PERF-$key.data" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	before_ns=$(cpu_ns)
	# the shops' listings queued in one commit: by enabling the shops, or
	# (a later round, the shops enabled and every listing synced) by
	# resyncing them, which queues even the levels already published
	if [ -n "${BACKLOG_QUEUE_SQL:-}" ]; then
		# the caller's statements in one transaction; their output but the
		# commit's time is kept in R[KEY-queued]
		res=$(psql_bench -At <<SQL
BEGIN;
$BACKLOG_QUEUE_SQL
COMMIT;
SELECT extract(epoch FROM clock_timestamp());
SQL
)
		t0=$(echo "$res" | tail -n 1)
		R[$key-queued]=$(echo "$res" | sed '$d' | tr '\n' ' ')
	elif [ -z "${BACKLOG_REQUEUE:-}" ]; then
		t0=$(psql_bench -At <<SQL
UPDATE invsync.shops SET enabled = true
 WHERE tenant_id = 0 AND shop_id = ANY ((SELECT shop_ids FROM bench_groups WHERE name = '$group')::bigint[]);
SELECT extract(epoch FROM clock_timestamp());
SQL
)
	else
		t0=$(psql_bench -At <<SQL
BEGIN;
SELECT count(invsync.resync(s)) FROM bench_groups g, unnest(g.shop_ids) s WHERE g.name = '$group';
COMMIT;
SELECT extract(epoch FROM clock_timestamp());
SQL
)
		t0=$(echo "$t0" | tail -n 1)
	fi
	wait_synced "$group"
	after_ns=$(cpu_ns)
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" 2>/dev/null || true
	fi
	a1=$( [ "$port" = "$SINK_PORT" ] && sink_accepts || echo 0)
	touch "$sample.stop"
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=""
	# the worker's writing transactions (claims, records): xids spent,
	# less this script's two (the UPDATE above and this txid_current())
	R[$key-xacts]=$(($(q "SELECT txid_current()") - x0 - 2))
	# a group's shops are consecutive ids: a range, its bounds read once
	# (= ANY of 10,000 ids compared every attempt row with each of them, a
	# minute; the array's subscripts in the join, detoasted a row, longer)
	res=$(q "WITH g AS (SELECT shop_ids[1] AS first, shop_ids[cardinality(shop_ids)] AS last
					FROM bench_groups WHERE name = '$group')
		SELECT (SELECT count(*) FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id BETWEEN g.first AND g.last AND q.state = 'synced'),
			   (SELECT extract(epoch FROM max(q.pushed_at)) - $t0 FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id BETWEEN g.first AND g.last),
			   (SELECT extract(epoch FROM min(a.started_at)) - $t0 FROM invsync.sync_attempts a, g WHERE a.tenant_id = 0 AND a.shop_id BETWEEN g.first AND g.last AND a.attempt_id > $last_attempt),
			   (SELECT count(*) FROM invsync.sync_attempts a, g WHERE a.tenant_id = 0 AND a.shop_id BETWEEN g.first AND g.last AND a.attempt_id > $last_attempt),
			   (SELECT string_agg(outcome || '=' || n, ' ') FROM (SELECT a.outcome, count(*) n FROM invsync.sync_attempts a, g
				 WHERE a.tenant_id = 0 AND a.shop_id BETWEEN g.first AND g.last AND a.attempt_id > $last_attempt GROUP BY 1 ORDER BY 1) o),
			   (SELECT count(DISTINCT q.pushed_at) FROM invsync.sync_queue q, g WHERE q.tenant_id = 0 AND q.shop_id BETWEEN g.first AND g.last)")
	IFS='|' read -r R[$key-synced] R[$key-elapsed] R[$key-first] R[$key-requests] R[$key-outcomes] R[$key-records] <<<"$res"
	R[$key-listings]=$listings
	R[$key-rps]=$(awk -v n="${R[$key-requests]}" -v t="${R[$key-elapsed]}" 'BEGIN { printf "%.0f", n / t }')
	R[$key-lps]=$(awk -v n="${R[$key-synced]}" -v t="${R[$key-elapsed]}" 'BEGIN { printf "%.0f", n / t }')
	R[$key-conns]=$(sort -n "$sample" | tail -n 1)
	R[$key-accepts]=$((a1 - a0 - 1))	# less the status request itself
	[ "$port" = "$SINK_PORT" ] || R[$key-accepts]="n/a"
	R[$key-cpu]=$(awk -v a="$before_ns" -v b="$after_ns" -v t="${R[$key-elapsed]}" \
		'BEGIN { printf "%.0f", 100 * (b - a) / 1e9 / t }')
	R[$key-us]=$(awk -v a="$before_ns" -v b="$after_ns" -v n="${R[$key-requests]}" \
		'BEGIN { printf "%.0f", (b - a) / 1e3 / n }')
	say "$key: ${R[$key-synced]}/$listings synced in ${R[$key-elapsed]} s, ${R[$key-requests]} requests (${R[$key-rps]}/s, ${R[$key-lps]} listings/s), outcomes ${R[$key-outcomes]}, worker conns max ${R[$key-conns]}, worker CPU ${R[$key-cpu]}% (${R[$key-us]} us/request), ${R[$key-xacts]} worker transactions (${R[$key-records]} recording)"
	[ -n "${BACKLOG_KEEP_ENABLED:-}" ] || set_group "$group" false
}

# whether the backlog run of KEY just measured synced every listing, every
# attempt answered 'ok'
run_ok() {
	case "${R[$1-outcomes]}" in "ok="*" "* | "") return 1 ;; "ok="*) ;; *) return 1 ;; esac
	[ "${R[$1-synced]}" = "${R[$1-listings]}" ]
}

# figures of a backlog run, kept per round
ROUND_FIELDS="synced elapsed first requests outcomes records listings rps lps conns accepts cpu us xacts"
# a sink run of one listing a request, ROUNDS times, the shops left
# enabled between rounds and every listing queued again (resync) for each
# round after the first; the round of the median CPU a push stands for the
# run, R[KEY-us-rounds] lists each round's, R[KEY-all-ok] whether every
# round synced every listing with every attempt 'ok'
backlog_rounds() {
	local key=$1 r f median rounds=()
	R[$key-all-ok]=1
	for r in $(seq "$ROUNDS"); do
		BACKLOG_REQUEUE=$([ "$r" -gt 1 ] && echo 1 || true)
		BACKLOG_KEEP_ENABLED=$([ "$r" -lt "$ROUNDS" ] && echo 1 || true)
		backlog "$@"
		for f in $ROUND_FIELDS; do R[$key-r$r-$f]=${R[$key-$f]}; done
		run_ok "$key" || R[$key-all-ok]=0
		rounds+=("${R[$key-us]} $r")
	done
	BACKLOG_REQUEUE=""
	BACKLOG_KEEP_ENABLED=""
	median=$(printf '%s\n' "${rounds[@]}" | sort -n | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
	for f in $ROUND_FIELDS; do R[$key-$f]=${R[$key-r$median-$f]}; done
	R[$key-us-rounds]=$(for r in $(seq "$ROUNDS"); do printf '%s / ' "${R[$key-r$r-us]}"; done | sed 's| / $||')
	say "$key: median round $median of $ROUNDS, worker CPU ${R[$key-us-rounds]} us a request"
}

sim_sign() { helper sign "$SIM_URL" "$PARTNER" "$PARTNER_KEY" "$1" "tok-$1"; }
KEYS=()
for key in sim-shopee-1 sim-shopee-50 sink-shopee-1 sink-shopee-50 sink-tiktok-1 sink-tokopedia-1 \
	sink-lazada-1 sink-lazada-20; do
	want "$key" || continue
	KEYS+=("$key")
	models=${key##*-}	# listings per request
	ch=${key#*-}
	ch=${ch%-*}
	case $key in
		sim-*)
			ceiling "$key" shopee "$SIM_URL" "$models" "$(sim_sign $((models == 1 ? 7101 : 7201)))"
			backlog "$key" "$SIM_PORT" "$SIM_LISTINGS" "$models" ;;
		sink-shopee-*)
			ceiling "$key" shopee "$SINK_URL/m$models" "$models" ;;
		sink-tiktok-* | sink-tokopedia-*)
			ceiling "$key" "$ch" "$SINK_URL/tt" "$models" ;;
		sink-lazada-*)
			ceiling "$key" lazada "$SINK_URL/rest" "$models" ;;
	esac
	case $key in
		sink-*-1) backlog_rounds "$key" "$SINK_PORT" "$SINK_LISTINGS" "$models" ;;
		sink-*) backlog "$key" "$SINK_PORT" "$SINK_LISTINGS" "$models" ;;
	esac
done

# ---------------------------------------------------------------- scale
# A scale run is a backlog run (backlog() above, one listing a request to
# the sink) with the worker's own counters (invsync.worker_activity: claims,
# rows claimed, their time, commit included) sampled every 10 ms meanwhile
# by one psql session (\watch: each sample its own short transaction, so no
# snapshot is held while the worker drains).  Between two samples the
# counters move only at claims, so most claims are seen one by one (those
# two samples apart from another are left out): each is placed by the
# share of the run's rows not yet claimed when it began.  Reported per
# share, for the claims that began with more than 90 % (about 100 %),
# 5-15 % (about 10 %) and at most 2 % (about 1 %) of the run's rows
# unclaimed: how many, and the median claim by time (its ms, its rows, and
# µs a claimed row).  The median, because a claim's time is wall time: a
# claim that waited for the CPU (autovacuum, nginx) counts that wait.
declare -A SC
scale_drain() {
	local key=$1 rows=$2 file=$BENCH_DIR/activity-$1.txt sampler buckets b
	shift 2
	q "TRUNCATE bench_sampler_stop" >/dev/null
	# the sample query fails once the flag is set, which ends \watch
	echo "SELECT extract(epoch FROM clock_timestamp()), claims, claimed_rows, claim_time_ms, cached_shops,
			CASE WHEN EXISTS (SELECT FROM bench_sampler_stop) THEN 1 / (claims - claims) END
		FROM invsync.worker_activity \\watch 0.01" | psql_bench -At >"$file" 2>/dev/null &
	sampler=$!
	for _ in $(seq 100); do [ -s "$file" ] && break; sleep 0.05; done
	[ -s "$file" ] || { echo "$key: no sample of invsync.worker_activity" >&2; exit 1; }
	RUN_TIMEOUT=$SCALE_TIMEOUT backlog "$key" "$SINK_PORT" "$@"
	sleep 0.1
	q "INSERT INTO bench_sampler_stop VALUES (true)" >/dev/null
	wait "$sampler" 2>/dev/null || true
	# what the worker holds once the run is over and a poll has passed
	sleep 2
	SC[$key-cached]=$(q "SELECT cached_shops FROM invsync.worker_activity")
	SC[$key-rss]=$(awk '/^RssAnon:/ { print $2 }' "/proc/$WPID/status")
	# one line a claim seen alone between two samples: its share, its rows
	# and ms; then per share the count, and the median claim (by ms)
	awk -F'|' -v n="$rows" '
		NR == 1 { base = $3 }
		NR > 1 && $2 == pc + 1 && $3 > pr {
			u = (n - (pr - base)) / n
			b = u > 0.9 ? 1 : (u > 0.05 && u <= 0.15) ? 2 : (u <= 0.02) ? 3 : 0
			if (b) printf "%d %.3f %d\n", b, $4 - pm, $3 - pr
		}
		{ pc = $2; pr = $3; pm = $4 }' "$file" | sort -k1,1n -k2,2g >"$file.claims"
	for b in 1 2 3; do
		read -r SC[$key-c$b] SC[$key-ms$b] SC[$key-rpc$b] <<<"$(awk -v b="$b" '
			$1 == b { ms[++n] = $2; r[n] = $3 }
			END {
				if (n == 0) { print "0 n/a n/a"; exit }
				m = int((n + 1) / 2)
				printf "%d %.2f %d\n", n, ms[m], r[m]
			}' "$file.claims")"
		SC[$key-us$b]=n/a
		[ "${SC[$key-c$b]}" = 0 ] ||
			SC[$key-us$b]=$(awk -v m="${SC[$key-ms$b]}" -v r="${SC[$key-rpc$b]}" 'BEGIN { printf "%.1f", 1000 * m / r }')
	done
	SC[$key-rows]=$rows
	say "$key: a claim at ~100/10/1 % of $rows unclaimed: ${SC[$key-ms1]} / ${SC[$key-ms2]} / ${SC[$key-ms3]} ms (${SC[$key-rpc1]} / ${SC[$key-rpc2]} / ${SC[$key-rpc3]} rows), ${SC[$key-us1]} / ${SC[$key-us2]} / ${SC[$key-us3]} us a row"
}
# the import: N adjusts of the backlog shop's skus (one each, +1) in one
# statement of one transaction, timed around the statement
import_sql() {
	echo "SELECT extract(epoch FROM clock_timestamp());
SELECT count(*) FROM generate_series(1, $1) i,
	LATERAL invsync.adjust('SB-' || i, 'W1', 1, 'import', 'import-$2-' || i);
SELECT extract(epoch FROM clock_timestamp());"
}
SCALE_KEYS=()
if want scale-shops; then
	SCALE_KEYS+=(scale-shops)
	scale_drain scale-shops $((SCALE_SHOPS * SCALE_PER_SHOP)) $((SCALE_SHOPS * SCALE_PER_SHOP)) 1
fi
if want scale-backlog; then
	SCALE_KEYS+=(scale-backlog)
	BACKLOG_KEEP_ENABLED=1 scale_drain scale-backlog "$SCALE_BACKLOG" "$SCALE_BACKLOG" 1
fi
if want scale-import; then
	if ! want scale-backlog; then
		say "scale-import: first syncing the backlog shop's $SCALE_BACKLOG listings"
		set_group scale-backlog true
		RUN_TIMEOUT=$SCALE_TIMEOUT wait_synced scale-backlog
	fi
	for key in scale-import-small scale-import; do
		n=$([ "$key" = scale-import ] && echo "$SCALE_BACKLOG" || echo "$SCALE_SMALL")
		say "$key: $n adjusts in one transaction"
		SCALE_KEYS+=("$key")
		BACKLOG_GROUP=scale-backlog BACKLOG_KEEP_ENABLED=$([ "$key" = scale-import ] || echo 1) \
			BACKLOG_QUEUE_SQL=$(import_sql "$n" "$key") scale_drain "$key" "$n" "$SCALE_BACKLOG" 1
		read -r ta count tb <<<"${R[$key-queued]}"
		[ "$count" = "$n" ] || { echo "$key: $count adjusts, not $n" >&2; exit 1; }
		SC[$key-adjust-us]=$(awk -v a="$ta" -v b="$tb" -v n="$n" 'BEGIN { printf "%.1f", 1e6 * (b - a) / n }')
		say "$key: ${SC[$key-adjust-us]} us an adjust"
	done
fi

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
	set_group sink-shopee-1 true
	wait_synced sink-shopee-1
	soak_shops=$(q "SELECT array_to_string(shop_ids, ' ') FROM bench_groups WHERE name = 'sink-shopee-1'")
	soak_pushed=0
	soak_sample 0
	soak_next=$SOAK_SAMPLE
	soak_start=$(date +%s.%N)
	while [ "$soak_pushed" -lt "$SOAK_PUSHES" ]; do
		for shop in $soak_shops; do
			soak_pushed=$((soak_pushed + $(q "SELECT invsync.resync($shop)")))
		done
		wait_synced sink-shopee-1
		if [ "$soak_pushed" -ge "$soak_next" ]; then
			soak_sample "$soak_pushed"
			soak_next=$((soak_next + SOAK_SAMPLE))
		fi
	done
	SOAK_SECONDS=$(awk -v a="$soak_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	SOAK_BAD=$(q "SELECT count(*) FROM invsync.sync_attempts WHERE outcome <> 'ok'")
	set_group sink-shopee-1 false
fi

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
round() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
verdict() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { ok = (op == "<") ? a < b : a >= b; print ok ? "met" : "MISSED" }'; }
sec() { awk -v a="$1" 'BEGIN { printf "%.2f", a }'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed_total=$(($(date +%s) - START_TIME))
all_ok=1
for key in "${KEYS[@]}" "${SCALE_KEYS[@]}"; do
	run_ok "$key" || all_ok=0
	[ "${R[$key-all-ok]:-1}" = 1 ] || all_ok=0
done
conns_ok=$(for key in "${KEYS[@]}"; do echo "${R[$key-conns]}"; done |
	awk -v cap="$MAX_IN_FLIGHT" '$1 > cap { bad = 1 } END { print bad ? "MISSED" : "met" }')
{
	echo "# Sync benchmark"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/sync.sh\` in ${elapsed_total} s on $(nproc) CPUs"
	echo "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)),"
	echo "$(as_run_user postgres --version), $(curl --version | head -n 1 | cut -d' ' -f1-2) (the worker's libcurl),"
	echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), Python $($PY -c 'import platform; print(platform.python_version())') (simulators)."
	echo "Everything (server, worker, simulators, sink, load generator) shares the"
	echo "$(nproc) CPUs; load average at the start: $LOAD_START, at the end: $load (other"
	echo "sessions may share the machine). Compare cells of one run, not runs."
	echo
	echo "Server settings:"
	echo '```'
	printf '%s\n' "$SERVER_CONF" | sed '/^$/d' | sed "s|$CA|<test CA>|"
	echo '```'
	echo "Shops: rate_limit_per_sec 100000, max_in_flight $SHOP_IN_FLIGHT; a backlog run uses $NSHOPS shops."
	echo
	if [ -n "$LAT_CHANNELS" ] || [ ${#KEYS[@]} -gt 0 ]; then
	echo "## Per channel"
	echo
	echo "One listing per request against the nginx sink (worker / wrk ceiling posting the"
	echo "channel's own request, same run), and commit to marketplace against the channel's"
	echo "simulator over HTTPS (details below). libcurl alone: the CPU a request costs"
	echo "bench/http_floor, which posts the same request (the worker's URL with its signed"
	echo "query, body and headers) at the same concurrency the way the worker drives libcurl,"
	echo "and does nothing else: no claim, no signing, no recording. It is the part of a"
	echo "push that neither SQL nor the adapters can save. The sink's figures are those of"
	echo "the round (of $ROUNDS) whose worker CPU a push is the median; every round's is listed."
	echo
	echo "| channel | sink pushes/s | sink ceiling req/s | worker / ceiling | worker CPU | worker CPU µs/push | each round | libcurl alone µs/request | worker / libcurl alone | commit -> simulator p50 ms | p99 ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for ch in $ALL_CHANNELS; do
		key=sink-$ch-1
		if [[ " ${KEYS[*]} " == *" $key "* ]]; then
			cells="${R[$key-rps]} | $(round "${R[$key-ceiling]}") | $(ratio "${R[$key-rps]}" "${R[$key-ceiling]}") | ${R[$key-cpu]}% | ${R[$key-us]} | ${R[$key-us-rounds]} | ${R[$key-floor]} | $(ratio "${R[$key-us]}" "${R[$key-floor]}")"
		else
			cells="| | | | | | |"
		fi
		if [ -n "${LAT[$ch]:-}" ]; then
			lcells="$(lat "$ch" total p50) | $(lat "$ch" total p99)"
		else
			lcells="|"
		fi
		[ "$cells" = "| | | | | | |" ] && [ "$lcells" = "|" ] && continue
		echo "| $ch | $cells | $lcells |"
	done
	if [[ " ${KEYS[*]} " == *" sink-lazada-20 "* ]]; then
		key=sink-lazada-20
		echo "| lazada, 20 SKUs a request (batch_size default) | ${R[$key-lps]} listings/s (${R[$key-rps]} req/s) | $(round "${R[$key-ceiling]}") | $(ratio "${R[$key-rps]}" "${R[$key-ceiling]}") | ${R[$key-cpu]}% | ${R[$key-us]} per request | | ${R[$key-floor]} | $(ratio "${R[$key-us]}" "${R[$key-floor]}") | | |"
	fi
	echo
	for ch in $ALL_CHANNELS; do
		key=sink-$ch-1
		[[ " ${KEYS[*]} " == *" $key "* ]] || continue
		echo "Target: <= 100 µs of worker CPU a push ($key, median round): ${R[$key-us]} µs, $(verdict 100 "${R[$key-us]}" '>=');"
	done
	echo
	fi
	if [ -n "$LAT_CHANNELS" ]; then
	echo "## Commit to marketplace, light load"
	echo
	echo "Per channel, $LAT_N single \`invsync.adjust\` transactions, each on another listing, at $LAT_RATE/s"
	echo "(pgbench \`-R $LAT_RATE\`, one client), pushed to the channel's simulator over HTTPS"
	echo "(one shop; TikTok and Tokopedia: one SKU in one warehouse per product; Lazada: one"
	echo "SKU per item, the app's default batch size, 20, so a call may carry more than one change)."
	echo "Commit time: pgbench's per-transaction log (\`-l\`: the moment the result came"
	echo "back, so after the commit); arrival: the simulator's log time of the request"
	echo "carrying the new level. Split at the worker's request start (\`sync_attempts.started_at\`):"
	echo "pickup = commit -> request start, wire = request start -> simulator arrival."
	echo
	echo "| channel | matched | pickup p50 | pickup p99 | wire p50 | wire p99 | **total p50** | total p90 | **total p99** | total max | targets |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for ch in $LAT_CHANNELS; do
		echo "| $ch | $(lat_matched "$ch") | $(lat "$ch" pickup p50) | $(lat "$ch" pickup p99) | $(lat "$ch" wire p50) | $(lat "$ch" wire p99) | **$(lat "$ch" total p50)** | $(lat "$ch" total p90) | **$(lat "$ch" total p99)** | $(lat "$ch" total max) | $(verdict "$(lat "$ch" total p50)" 5 '<'), $(verdict "$(lat "$ch" total p99)" 10 '<') |"
	done
	echo
	echo "Targets: p50 < 5 ms, p99 < 10 ms (met or MISSED, in that order). Milliseconds."
	echo
	fi
	if [ ${#KEYS[@]} -gt 0 ]; then
	echo "## Backlog throughput"
	echo
	echo "Each run queues every listing of $NSHOPS shops in one commit and is timed from that"
	echo "commit to the last row synced (\`max(pushed_at)\`). The ceiling is wrk (\`-t1 -c$MAX_IN_FLIGHT\`,"
	echo "${WRK_SECONDS} s) posting the channel's request (body, content type, and for TikTok,"
	echo "Tokopedia and Lazada the signed query and token header the adapter sends) to the same"
	echo "server, just before the run. Per request: Shopee's models of one item, TikTok's SKUs"
	echo "of one product, Lazada's SKUs (the app's batch_size)."
	echo "Connections: the most TCP connections the worker held to the server at once"
	echo "(\`ss\`, every 0.1 s; cap: invsync.max_in_flight = $MAX_IN_FLIGHT) and, for the sink,"
	echo "how many it opened during the run (nginx stub_status accepts). Worker CPU: its"
	echo "time on a CPU over the run (/proc/PID/schedstat; 100% = one core; it is one process),"
	echo "and that time divided by the requests it sent. Worker xacts: the"
	echo "transactions it wrote in (xids spent: claims and recordings), records: those that"
	echo "recorded outcomes. Runs of one listing a request against the sink: the round"
	echo "(of $ROUNDS) whose worker CPU a push is the median."
	echo
	echo "| run | server | listings/request | listings | requests | s | requests/s | listings/s | ceiling req/s | worker / ceiling | conns max | conns opened | worker CPU | worker CPU µs/request | worker xacts (records) | outcomes |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for key in "${KEYS[@]}"; do
		case $key in sim-*) srv="Shopee simulator, HTTPS" ;; *) srv="nginx sink, HTTP" ;; esac
		echo "| $key | $srv | ${key##*-} | ${R[$key-synced]}/${R[$key-listings]} | ${R[$key-requests]} | $(sec "${R[$key-elapsed]}") | ${R[$key-rps]} | ${R[$key-lps]} | $(round "${R[$key-ceiling]}") | $(ratio "${R[$key-rps]}" "${R[$key-ceiling]}") | ${R[$key-conns]} | ${R[$key-accepts]} | ${R[$key-cpu]}% | ${R[$key-us]} | ${R[$key-xacts]} (${R[$key-records]}) | ${R[$key-outcomes]} |"
	done
	echo
	echo "First request of each run started $(for key in "${KEYS[@]}"; do printf '%s s (%s), ' "$(sec "${R[$key-first]}")" "$key"; done | sed 's/, $//') after the queueing commit."
	for key in sink-shopee-1 sink-tiktok-1 sink-tokopedia-1 sink-lazada-1; do
		want "$key" || continue
		echo "Target: >= 5,000 pushes/s against the nginx sink ($key): ${R[$key-rps]}/s, $(verdict "${R[$key-rps]}" 5000 '>=');"
	done
	echo "worker connections <= invsync.max_in_flight in every run: $conns_ok;"
	echo "every listing synced and every attempt 'ok': $([ $all_ok = 1 ] && echo yes || echo NO)."
	fi
	if [ ${#SCALE_KEYS[@]} -gt 0 ]; then
	echo "## Scale: the claim while a backlog drains"
	echo
	echo "Live runs of the worker at its defaults against the sink (Shopee, one listing a"
	echo "request), each queued in one commit: scale-shops enables $SCALE_SHOPS shops of $SCALE_PER_SHOP listings;"
	echo "scale-backlog enables one shop of $SCALE_BACKLOG listings; scale-import-small and scale-import"
	echo "adjust $SCALE_SMALL and $SCALE_BACKLOG of that shop's skus in one statement of one transaction."
	echo "The worker's own counters (\`invsync.worker_activity\`, sampled every 10 ms) give"
	echo "each claim's rows and time (its whole transaction, commit included: wall time); a"
	echo "claim is placed by the share of the run's rows still unclaimed when it began: more"
	echo "than 90 % (~100 %), 5-15 % (~10 %), at most 2 % (~1 %). Per share: the median claim"
	echo "by time, its rows, and its time a claimed row. A claim takes up to"
	echo "invsync.batch_size ($BATCH_SIZE) rows; near the end fewer are left."
	echo
	echo "| run | rows queued | s | pushes/s | worker CPU µs/push | ms a claim ~100 % | ~10 % | ~1 % | rows a claim ~100 % | ~10 % | ~1 % | µs a claimed row ~100 % | ~10 % | ~1 % | shops cached after | worker RssAnon kB after | outcomes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for key in "${SCALE_KEYS[@]}"; do
		echo "| $key | ${SC[$key-rows]} | $(sec "${R[$key-elapsed]}") | ${R[$key-rps]} | ${R[$key-us]} | ${SC[$key-ms1]} | ${SC[$key-ms2]} | ${SC[$key-ms3]} | ${SC[$key-rpc1]} | ${SC[$key-rpc2]} | ${SC[$key-rpc3]} | ${SC[$key-us1]} | ${SC[$key-us2]} | ${SC[$key-us3]} | ${SC[$key-cached]} | ${SC[$key-rss]} | ${R[$key-outcomes]} |"
	done
	echo
	echo "Shops cached after: \`invsync.worker_activity.cached_shops\` 2 s after the run (the"
	echo "worker keeps a shop at work, and an idle one for invsync.idle_shop_retention,"
	echo "$(q "SHOW invsync.idle_shop_retention") here); RssAnon: the worker's private memory then (/proc/PID/status)."
	echo
	for key in "${SCALE_KEYS[@]}"; do
		[ "$key" = scale-import-small ] && continue
		spread=$(printf '%s\n' "${SC[$key-us1]}" "${SC[$key-us2]}" "${SC[$key-us3]}" | grep -v n/a |
			sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f", hi / lo; else print "n/a" }')
		echo "Target: a claimed row's time within 2x from ~100 % to ~1 % of the backlog ($key): largest / smallest $spread, $(verdict 2 "$spread" '>=');"
	done
	if [ -n "${SC[scale-import-small-ms1]:-}" ] && [ -n "${SC[scale-backlog-ms1]:-}" ]; then
		r=$(ratio "${SC[scale-backlog-ms1]}" "${SC[scale-import-small-ms1]}")
		echo "Target: a claim's time within 2x from $SCALE_SMALL to $SCALE_BACKLOG pending rows (~100 % of scale-import-small, of scale-backlog): ${SC[scale-import-small-ms1]} -> ${SC[scale-backlog-ms1]} ms, $r, $(verdict 2 "$r" '>=');"
	fi
	if [ -n "${SC[scale-import-adjust-us]:-}" ]; then
		r=$(ratio "${SC[scale-import-adjust-us]}" "${SC[scale-import-small-adjust-us]}")
		echo "Target: an adjust in an import of $SCALE_BACKLOG within 2x of one in an import of $SCALE_SMALL: ${SC[scale-import-small-adjust-us]} -> ${SC[scale-import-adjust-us]} µs, $r, $(verdict 2 "$r" '>=');"
	fi
	echo
	fi
	if want soak; then
	echo "## Soak: memory over $SOAK_PUSHES pushes"
	echo
	echo "Rounds of \`invsync.resync()\` of the sink-shopee-1 shops ($SINK_LISTINGS listings a round) until"
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
