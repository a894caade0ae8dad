#!/usr/bin/env bash
# bench/instructions.sh: the sync worker's CPU work a push, counted in
# instructions (valgrind's callgrind), by phase, for this tree and for a
# baseline revision, in one run.
#
# Wall-clock CPU time on a shared machine moves by a fifth between runs
# (bench/sync.sh); an instruction count does not move at all, so a change
# that saves 2 % shows.  Per tree (BENCH_BASE first, then the working tree):
# build and install it, start a throwaway cluster and an nginx sink on
# loopback answering the channel's success shape, create BENCH_LISTINGS
# (2,000) listings of BENCH_CHANNEL (shopee, tiktok or lazada; Lazada's app
# at a batch_size of 1) over 4 shops, created disabled, restart the server under
# callgrind, enable the shops, wait until every row is synced (one listing
# a request, the extension's defaults), stop the server and read the
# worker's profile.  Reported per push (a request that was answered 'ok'):
# the worker's whole loop (invsync_worker_main, its start-up included) and
# its parts: the claim (claim_rows), recording (flush_records), building
# and starting requests (dispatch), libcurl and the sockets (http_engine_drive)
# and reading answers (handle_finished).  Kernel work (the loopback's TCP)
# is not counted: callgrind sees user space only.
#
# Settings: BENCH_BASE (a git revision, default HEAD; "none" to measure the
# working tree only), BENCH_CHANNEL (shopee), BENCH_LISTINGS, BENCH_PORT (54349), BENCH_PG_BIN to use
# another PostgreSQL 15 build, BENCH_OUT (bench/results-instructions.md).
# Takes about 2 minutes a tree on the 2-core machine.

export INVSYNC_WORK=${INVSYNC_WORK:-/tmp/invsync-bench-instructions}
. "$(dirname "$0")/../tools/common.sh"

BASE=${BENCH_BASE:-HEAD}
CHANNEL=${BENCH_CHANNEL:-shopee}
LISTINGS=${BENCH_LISTINGS:-2000}
PORT=${BENCH_PORT:-54349}
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi
OUT=${BENCH_OUT:-$REPO/bench/results-instructions.md}

install_packages valgrind nginx-light curl python3
bench_prepare instructions

cleanup() {
	as_run_user pg_ctl -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
	[ -f "$BENCH_DIR/nginx/nginx.pid" ] && kill "$(cat "$BENCH_DIR/nginx/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT
start_sink "$BENCH_DIR/nginx"

# the channel's app, and each listing's ids as its adapter reads them
case $CHANNEL in
	shopee)
		APP="('shopee', 'sink', '2001887', 'bench-partner-key', '$SINK_URL/m1', NULL, NULL)"
		REGION=NULL
		COLS="external_item_id, external_model_id"
		IDS="(j + 1)::text, '0'" ;;
	tiktok)
		APP="('tiktok', 'sink', 'tt-bench-app', 'bench-app-secret', '$SINK_URL/tt', '$SINK_URL/tt', NULL)"
		REGION="'ID'"
		COLS=external_ids
		IDS="jsonb_build_object('product_id', (j + 1)::text, 'sku_id', (100000 + j + 1)::text, 'warehouse_id', 'W1')" ;;
	lazada)
		APP="('lazada', 'sink', '120001', 'bench-app-secret', '$SINK_URL/rest', '$SINK_URL/rest', 1)"
		REGION="'SG'"
		COLS=external_ids
		IDS="jsonb_build_object('item_id', (j + 1)::text, 'sku_id', (100000 + j + 1)::text)" ;;
	*) echo "BENCH_CHANNEL: shopee, tiktok or lazada" >&2; exit 1 ;;
esac

SERVER_CONF="
shared_preload_libraries = 'invsync'
invsync.database = 'bench'
# the nginx sink serves plain http on loopback
invsync.allow_insecure_http = on
shared_buffers = 256MB
jit = off
"

psql_bench() {
	as_run_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$PORT" -U bench -d bench "$@"
}

# measure TREE_DIR LABEL: prints "label pushes loop claim record dispatch http answers"
measure() {
	local tree=$1 label=$2 wpid pushes profile
	say "$label: building and installing"
	as_run_user make -s -C "$tree" -j2 PG_CONFIG="$PG_BIN/pg_config" >/dev/null
	$SUDO make -s -C "$tree" install PG_CONFIG="$PG_BIN/pg_config" >/dev/null
	as_run_user rm -rf "$DATA" "$BENCH_DIR/cg"
	as_run_user mkdir -p "$BENCH_DIR/cg"
	bench_start_cluster "$SERVER_CONF" "$PORT"
	say "$label: $LISTINGS listings over 4 shops"
	psql_bench >/dev/null <<SQL
CREATE EXTENSION invsync;
SELECT invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('SKU-' || i)) FROM generate_series(1, $LISTINGS) i;
INSERT INTO invsync.apps (channel, name, app_key, app_secret, base_url, auth_base_url, batch_size)
VALUES $APP;
INSERT INTO invsync.shops (app_id, external_shop_id, region, access_token, refresh_token,
						   access_expires_at, rate_limit_per_sec, max_in_flight, enabled)
SELECT app_id, (8100 + k)::text, $REGION, 'tok-' || k, 'ref-' || k, now() + interval '1 day',
	   100000, 16, false
  FROM invsync.apps, generate_series(1, 4) k;
INSERT INTO invsync.listings (shop_id, sku, $COLS)
SELECT s.shop_id, 'SKU-' || ((s.n - 1) * ($LISTINGS / 4) + j + 1), $IDS
  FROM (SELECT shop_id, row_number() OVER (ORDER BY shop_id) AS n FROM invsync.shops) s,
	   generate_series(0, $LISTINGS / 4 - 1) j;
VACUUM ANALYZE;
SQL
	as_run_user pg_ctl -D "$DATA" -m fast stop >/dev/null
	say "$label: the server under callgrind, the shops enabled"
	as_run_user bash -c "valgrind --tool=callgrind --trace-children=yes \
		--callgrind-out-file='$BENCH_DIR/cg/%p.out' postgres -D '$DATA' \
		>>'$BENCH_DIR/server.log' 2>&1 &"
	wpid=""
	for _ in $(seq 300); do
		wpid=$(psql_bench -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'invsync sync worker'" 2>/dev/null || true)
		[ -n "$wpid" ] && break
		sleep 1
	done
	[ -n "$wpid" ] || { echo "the sync worker did not start" >&2; exit 1; }
	psql_bench -c "UPDATE invsync.shops SET enabled = true" >/dev/null
	for _ in $(seq 900); do
		[ "$(psql_bench -c "SELECT count(*) FROM invsync.sync_queue WHERE state = 'pending'")" = 0 ] && break
		sleep 1
	done
	pushes=$(psql_bench -c "SELECT count(*) FROM invsync.sync_attempts WHERE outcome = 'ok'")
	[ "$pushes" -gt 0 ] || { echo "no push was answered 'ok'" >&2; exit 1; }
	as_run_user pg_ctl -D "$DATA" -m fast -t 300 stop >/dev/null
	profile=$BENCH_DIR/cg/$wpid.out
	[ -f "$profile" ] || { echo "no profile of the worker ($profile)" >&2; exit 1; }
	callgrind_annotate --inclusive=yes "$profile" 2>/dev/null | awk -v label="$label" -v pushes="$pushes" '
		function per(name) { return (name in ir) ? int(ir[name] / pushes) : 0 }
		$2 == "(" || $3 ~ /:/ {
			n = $1; gsub(",", "", n)
			for (i = 1; i <= NF; i++)
				if ($i ~ /:(invsync_worker_main|claim_rows|flush_records|dispatch|http_engine_drive|handle_finished)$/) {
					split($i, part, ":"); if (!(part[2] in ir)) ir[part[2]] = n
				}
		}
		END {
			print label, pushes, per("invsync_worker_main"), per("claim_rows"), per("flush_records"),
				  per("dispatch"), per("http_engine_drive"), per("handle_finished")
		}'
}

RESULTS=()
if [ "$BASE" != none ]; then
	base_rev=$(git -C "$REPO" rev-parse --short "$BASE")
	base_dir=$BENCH_DIR/base
	as_run_user mkdir -p "$base_dir"
	git -C "$REPO" archive "$base_rev" | as_run_user tar -xf - -C "$base_dir"
	RESULTS+=("$(measure "$base_dir" "$base_rev")")
fi
RESULTS+=("$(measure "$INVSYNC_WORK" "this tree")")

{
	echo "# bench/instructions.sh"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $("$PG_BIN/postgres" --version), $(valgrind --version),"
	echo "$LISTINGS listings over 4 $CHANNEL shops, one listing a request to an nginx sink on loopback, the"
	echo "extension's defaults. Instructions of the sync worker (callgrind, user space) a push answered 'ok'."
	echo
	echo "| tree | pushes | worker loop | claim | record | build and send | libcurl and sockets | read answers | ratio to the first |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	first=""
	for r in "${RESULTS[@]}"; do
		read -r -a f <<<"${r/this tree/this_tree}"
		[ -n "$first" ] || first=${f[2]}
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${f[0]/this_tree/this tree}" "${f[1]}" \
			"${f[2]}" "${f[3]}" "${f[4]}" "${f[5]}" "${f[6]}" "${f[7]}" \
			"$(awk -v a="${f[2]}" -v b="$first" 'BEGIN { printf "%.3f", a / b }')"
	done
} | tee "$OUT"
say "written to $OUT"
