#!/usr/bin/env bash
# bench/citus.sh: under Citus, whether the sync worker's claims stay flat
# as the number of tenants a node serves grows.
#
# Needs a PostgreSQL with Citus installed (tools/build-citus builds it;
# BENCH_PG_BIN names that PostgreSQL's bindir); says it was skipped and
# exits 0 where Citus is missing.  Starts a coordinator and two worker
# nodes on loopback (throwaway clusters, as the unprivileged user
# tools/common.sh picks, from a private copy of the tree it builds and
# installs), distributes invsync by tenant (invsync.distribute()), and no
# sync worker runs (invsync.database names no database), so that every
# claim is the benchmark's own.  Tenant 1 has one Shopee shop of 100
# pending listings; tenants are then added, each with an app and an enabled
# shop with nothing to send, up to 10, 100 and BENCH_TENANTS (1,000) in
# all.  At each step, on the worker node holding tenant 1, in one session
# as the sync worker's, the median of BENCH_REPEAT (7) calls, each in a
# transaction rolled back, the first (planning) call left out:
#
#   claim          invsync._claim(): 100 rows of tenant 1
#   record         invsync._record_batch(): those rows' outcomes, 'ok'
#                  (claimed in the same transaction, not timed)
#   order fetches  invsync._claim_order_fetches(), none due
#   purge          invsync._purge_attempts(), none old enough
#
# Ratios are against the 10-tenant step of the same run; the target is
# the issue's for shops on one node: within 2x.
#
# Writes a markdown table to bench/results-citus.md (BENCH_OUT) and prints
# it.  Settings: BENCH_TENANTS, BENCH_REPEAT, BENCH_PORT (54360; the
# workers take the next two), BENCH_SKIP_INSTALL=1, BENCH_PG_BIN, BENCH_OUT.

export INVSYNC_WORK=${INVSYNC_WORK:-/tmp/invsync-bench-citus}
. "$(dirname "$0")/../tools/common.sh"
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi

TENANTS=${BENCH_TENANTS:-1000}
REPEAT=${BENCH_REPEAT:-7}
PORT=${BENCH_PORT:-54360}
OUT=${BENCH_OUT:-$REPO/bench/results-citus.md}

if [ ! -f "$("$PG_BIN/pg_config" --sharedir)/extension/citus.control" ]; then
	say "skipped: Citus is not installed in $PG_BIN (see tools/build-citus)"
	exit 0
fi

bench_prepare citus
NODES=(coordinator worker1 worker2)
cleanup() {
	local node
	for node in "${NODES[@]}"; do
		as_run_user pg_ctl -D "$BENCH_DIR/$node" -m immediate stop >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

# psql on node $1 (0, 1, 2) as the bench superuser
psql_node() {
	local node=$1
	shift
	as_run_user psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $((PORT + node)) \
		-U bench -d bench "$@"
}

for i in 0 1 2; do
	say "starting ${NODES[$i]} on port $((PORT + i))"
	data=$BENCH_DIR/${NODES[$i]}
	as_run_user initdb -D "$data" -A trust -U bench --no-sync >/dev/null
	cat <<CONF | as_run_user tee -a "$data/postgresql.conf" >/dev/null
shared_preload_libraries = 'citus,invsync'
port = $((PORT + i))
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BENCH_DIR'
max_prepared_transactions = 20
citus.shard_count = 4
# no sync worker: every claim is the benchmark's
invsync.database = 'none'
jit = off
CONF
	as_run_user pg_ctl -D "$data" -l "$BENCH_DIR/${NODES[$i]}.log" -w start >/dev/null
	as_run_user createdb -h 127.0.0.1 -p $((PORT + i)) -U bench bench
	psql_node "$i" -c 'CREATE EXTENSION citus' -c 'CREATE EXTENSION invsync' >/dev/null
done
psql_node 0 >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', $PORT);
SELECT citus_add_node('127.0.0.1', $((PORT + 1)));
SELECT citus_add_node('127.0.0.1', $((PORT + 2)));
SELECT invsync.distribute();
SQL
node_port=$(psql_node 0 -c "SELECT nodeport FROM pg_dist_shard_placement
	WHERE shardid = get_shard_id_for_distribution_column('invsync.locations', 1)")
NODE=$((node_port - PORT))
say "tenant 1's shards are on ${NODES[$NODE]}"

say "tenant 1: one shop, 100 pending listings"
psql_node 0 >/dev/null <<SQL
SET invsync.tenant = 1;
SELECT invsync.upsert_location('W1');
INSERT INTO invsync.apps (channel, app_key, app_secret, base_url)
	VALUES ('shopee', '1001', 'bench-secret', 'https://127.0.0.1:9');
INSERT INTO invsync.shops (app_id, external_shop_id, rate_limit_per_sec, max_in_flight, enabled,
						   access_token, refresh_token, access_expires_at)
	SELECT app_id, '2001', 100000, 64, true, 'tok', 'ref', now() + interval '1 day'
	  FROM invsync.apps;
SELECT count(invsync.upsert_item('S' || g)) FROM generate_series(1, 100) g;
INSERT INTO invsync.listings (shop_id, sku, external_item_id)
	SELECT shop_id, 'S' || g, (100000 + g)::text FROM invsync.shops, generate_series(1, 100) g;
SQL

# the median time in ms of statement $1, each run after statement $2 (if
# any) in a transaction rolled back, in one session; the first run
# (planning) left out
median_ms() {
	psql_node "$NODE" <<SQL | tail -n 1
CREATE TEMP TABLE timings (ms double precision);
DO \$\$
DECLARE
	t0			timestamptz;
	elapsed		double precision;
	outcomes	invsync.worker_outcome[];
BEGIN
	FOR i IN 0 .. $REPEAT LOOP
		/* the calls are rolled back by the exception; the variable is kept */
		BEGIN
			${2:-NULL};
			t0 := clock_timestamp();
			$1;
			elapsed := extract(epoch FROM clock_timestamp() - t0) * 1000;
			RAISE EXCEPTION USING ERRCODE = 'P0004';
		EXCEPTION WHEN assert_failure THEN
			NULL;
		END;
		IF i > 0 THEN
			INSERT INTO timings VALUES (elapsed);
		END IF;
	END LOOP;
END
\$\$;
SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM timings;
SQL
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A CLAIM RECORD FETCH PURGE ROWS
have=1
STEPS=$(for n in 10 100; do [ "$n" -lt "$TENANTS" ] && echo "$n"; done; echo "$TENANTS")
for n in $STEPS; do
	say "tenants $((have + 1)) to $n: an app and an enabled shop each"
	psql_node 0 >/dev/null <<SQL
INSERT INTO invsync.apps (tenant_id, channel, app_key, app_secret, base_url)
	SELECT g, 'shopee', '1001', 'bench-secret', 'https://127.0.0.1:9'
	  FROM generate_series($((have + 1)), $n) g;
INSERT INTO invsync.shops (tenant_id, app_id, external_shop_id, rate_limit_per_sec,
						   max_in_flight, enabled, access_token, refresh_token,
						   access_expires_at)
	SELECT a.tenant_id, a.app_id, '2001', 10, 4, true, 'tok', 'ref', now() + interval '1 day'
	  FROM invsync.apps a WHERE a.tenant_id > $have;
SQL
	have=$n
	ROWS[$n]=$(psql_node "$NODE" <<SQL | tail -n 1
BEGIN;
SELECT count(*) FROM invsync._claim(now(), interval '1 minute', 100, 50);
ROLLBACK;
SQL
)
	CLAIM[$n]=$(median_ms "PERFORM count(*) FROM invsync._claim(now(), interval '1 minute', 100, 50)")
	RECORD[$n]=$(median_ms "PERFORM count(*) FROM invsync._record_batch(outcomes, '{}', now())" \
		"SELECT array_agg(ROW(c.tenant_id, c.listing_id, c.version, c.target_level, 'ok', 0,
							  NULL, NULL)::invsync.worker_outcome) INTO outcomes
		   FROM invsync._claim(now(), interval '1 minute', 100, 50) c")
	FETCH[$n]=$(median_ms "PERFORM count(*) FROM invsync._claim_order_fetches(now(), interval '1 minute', 1000)")
	PURGE[$n]=$(median_ms "PERFORM invsync._purge_attempts(now() - interval '1 day', 10000)")
	say "$n tenants: claim of ${ROWS[$n]} rows ${CLAIM[$n]} ms, recording them ${RECORD[$n]} ms, order fetches ${FETCH[$n]} ms, purge ${PURGE[$n]} ms"
done

{
	echo "# bench/citus.sh, $(date -u +%Y-%m-%d), $(nproc) cores, $("$PG_BIN/postgres" --version), Citus $(psql_node 0 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'")"
	echo
	echo "A coordinator and two worker nodes on loopback; on the node holding tenant 1,"
	echo "the median of $REPEAT calls (each rolled back) as the number of tenants grows"
	echo "(about half of them on that node). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| call | $(for n in $STEPS; do printf '%s tenants | ' "$n"; done)ratio, $TENANTS to 10 | target |"
	echo "|---|$(for n in $STEPS; do printf -- '---:|'; done)---:|---|"
	first=$(echo "$STEPS" | head -n 1)
	last=$(echo "$STEPS" | tail -n 1)
	row() {
		local -n values=$2
		printf '| %s | ' "$1"
		for n in $STEPS; do printf '%s ms | ' "${values[$n]}"; done
		printf '%s | within 2x |\n' "$(ratio "${values[$last]}" "${values[$first]}")"
	}
	row "_claim, ${ROWS[$last]} rows of tenant 1" CLAIM
	row "_record_batch, their ${ROWS[$last]} outcomes 'ok'" RECORD
	row "_claim_order_fetches, none due" FETCH
	row "_purge_attempts, none old enough" PURGE
} | tee "$OUT"
say "written to $OUT"
