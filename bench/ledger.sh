#!/usr/bin/env bash
# bench/ledger.sh: throughput of the ledger's hot path against a plain INSERT.
#
# Starts a throwaway cluster (as the unprivileged user tools/common.sh picks,
# in a private copy of the tree it builds and installs, like tools/test), then
# measures with pgbench, in one run and on one configuration:
#   insert       one single-row INSERT per transaction into a table with a
#                bigserial primary key and three columns (the baseline)
#   adjust       one invsync.adjust() per transaction, a unique idempotency
#                key per call, on a random one of 10,000 skus
#   adjust_hot   the same on one sku (every client on one stock row)
# each at 1 and 16 clients for BENCH_SECONDS (default 12) seconds, and
# prints a markdown table, also written to bench/results-ledger.md.
#
# Targets (the issue): at 16 clients adjust on distinct skus >= 0.5x the
# INSERT rate; one hot sku >= 3,000 adjustments/s.
#
# Settings: BENCH_SECONDS, BENCH_SKUS (10000), BENCH_PORT (54329),
# BENCH_SKIP_INSTALL=1 to use the installed extension as it is,
# BENCH_PG_BIN to use another PostgreSQL 15 build (its pg_config installs),
# BENCH_SETUP_SQL: SQL run after CREATE EXTENSION (to try a variant),
# BENCH_OUT: where to write the table instead of bench/results-ledger.md.

# a work copy of its own, so that a concurrent tools/test is left alone
export INVSYNC_WORK=${INVSYNC_WORK:-/tmp/invsync-bench-ledger}
. "$(dirname "$0")/../tools/common.sh"

SECONDS_PER_CELL=${BENCH_SECONDS:-12}
SKUS=${BENCH_SKUS:-10000}
PORT=${BENCH_PORT:-54329}
if [ -n "${BENCH_PG_BIN:-}" ]; then
	PG_BIN=$BENCH_PG_BIN
	export PATH=$PG_BIN:$PATH
fi
OUT=${BENCH_OUT:-$REPO/bench/results-ledger.md}

# the configuration every cell runs with (baseline and subject alike)
SERVER_CONF="
shared_preload_libraries = 'invsync'
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on
fsync = on
max_connections = 50
"

bench_prepare ledger

stop_server() {
	as_run_user pg_ctl -D "$DATA" -m fast stop >/dev/null 2>&1 || true
}
trap stop_server EXIT

bench_start_cluster "$SERVER_CONF" "$PORT"

psql_bench() {
	as_run_user psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$PORT" -U bench -d bench "$@"
}

say "creating $SKUS skus with stock"
psql_bench >/dev/null <<SQL
CREATE EXTENSION invsync;
${BENCH_SETUP_SQL:-}
CREATE TABLE plain_insert (
	id			bigserial PRIMARY KEY,
	sku			text NOT NULL,
	qty			bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
SELECT invsync.upsert_location('W1');
SELECT count(invsync.upsert_item('SKU-' || i)) FROM generate_series(1, $SKUS) i;
SELECT count(*) FROM generate_series(1, $SKUS) i,
	LATERAL invsync.adjust('SKU-' || i, 'W1', 1000, 'initial', 'init-' || i);
VACUUM ANALYZE;
SQL

# pgbench scripts; the key is unique per call: client id, a random 62-bit
# number and a per-run prefix
RUN_ID=$(date +%s)
as_run_user tee "$BENCH_DIR/insert.sql" >/dev/null <<SQL
\set s random(1, $SKUS)
INSERT INTO plain_insert (sku, qty) VALUES ('SKU-' || :s, 1);
SQL
as_run_user tee "$BENCH_DIR/adjust.sql" >/dev/null <<SQL
\set s random(1, $SKUS)
\set k random(1, 4611686018427387903)
SELECT ledger_id FROM invsync.adjust('SKU-' || :s, 'W1', 1, 'bench', '$RUN_ID-' || :client_id || '-' || :k);
SQL
as_run_user tee "$BENCH_DIR/adjust_hot.sql" >/dev/null <<SQL
\set k random(1, 4611686018427387903)
SELECT ledger_id FROM invsync.adjust('SKU-1', 'W1', 1, 'bench', '$RUN_ID-hot-' || :client_id || '-' || :k);
SQL

declare -A TPS
run_cell() {
	local name=$1 clients=$2 jobs tps
	jobs=$((clients < 2 ? 1 : 2))
	psql_bench -c 'CHECKPOINT' >/dev/null
	tps=$(as_run_user pgbench -n -M prepared -h "$BENCH_DIR" -p "$PORT" -U bench \
		-c "$clients" -j "$jobs" -T "$SECONDS_PER_CELL" -f "$BENCH_DIR/$name.sql" bench 2>&1 |
		tee "$BENCH_DIR/$name-$clients.log" |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1)
	if [ -z "$tps" ]; then
		cat "$BENCH_DIR/$name-$clients.log" >&2
		echo "pgbench failed for $name at $clients clients" >&2
		exit 1
	fi
	TPS[$name-$clients]=$tps
	say "$name, $clients clients: $tps tps"
}

for clients in 1 16; do
	run_cell insert "$clients"
	run_cell adjust "$clients"
	run_cell adjust_hot "$clients"
done

inconsistent=$(psql_bench -At -c 'SELECT count(*) FROM invsync.check_consistency(true)')
ledger_rows=$(psql_bench -At -c 'SELECT count(*) FROM invsync.ledger')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
round() {
	awk -v a="$1" 'BEGIN {
		s = sprintf("%.0f", a); n = length(s); out = ""
		for (i = 1; i <= n; i++) {
			out = out substr(s, i, 1)
			if (i < n && (n - i) % 3 == 0) out = out ","
		}
		print out
	}'
}
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "met" : "MISSED" }'; }

r16=$(ratio "${TPS[adjust-16]}" "${TPS[insert-16]}")
load=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "# Ledger benchmark"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/ledger.sh\` on $(nproc) CPUs"
	echo "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(as_run_user postgres --version),"
	echo "pgbench \`-M prepared\`, ${SECONDS_PER_CELL} s per cell after a CHECKPOINT, $SKUS skus with a"
	echo "stock row each, one unique idempotency key per call. Load average at the end: $load"
	echo "(other processes may share the CPUs: compare the cells of one run, not runs)."
	echo
	echo "Server settings (the same for every cell):"
	echo '```'
	printf '%s\n' "$SERVER_CONF" | sed '/^$/d'
	echo '```'
	echo
	echo "| workload | clients | tps | adjust / insert |"
	echo "|---|---:|---:|---:|"
	for clients in 1 16; do
		echo "| plain INSERT (bigserial PK) | $clients | $(round "${TPS[insert-$clients]}") | 1.00 |"
		echo "| \`invsync.adjust\`, random of $SKUS skus | $clients | $(round "${TPS[adjust-$clients]}") | $(ratio "${TPS[adjust-$clients]}" "${TPS[insert-$clients]}") |"
		echo "| \`invsync.adjust\`, one hot sku | $clients | $(round "${TPS[adjust_hot-$clients]}") | $(ratio "${TPS[adjust_hot-$clients]}" "${TPS[insert-$clients]}") |"
	done
	echo
	echo "Targets: adjust at 16 clients on distinct skus >= 0.5x INSERT: ${r16}x, $(verdict "$r16" 0.5);"
	echo "one hot sku >= 3,000 adjustments/s: $(round "${TPS[adjust_hot-16]}")/s at 16 clients, $(verdict "${TPS[adjust_hot-16]}" 3000);"
	echo "$(round "${TPS[adjust_hot-1]}")/s at 1 client, $(verdict "${TPS[adjust_hot-1]}" 3000)."
	echo "After the run: $ledger_rows ledger rows, check_consistency() returned $inconsistent rows."
} | tee "$OUT"
say "written to $OUT"
[ "$inconsistent" = 0 ]
