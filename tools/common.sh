# tools/common.sh: shared by tools/setup, tools/test, tools/demo and bench/.
#
# PostgreSQL refuses to run as root, so when these scripts run as root
# (a fresh machine, CI) everything that starts a server runs as an
# unprivileged user in a private copy of the tree under $INVSYNC_WORK.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
# INVSYNC_PG_BIN: another PostgreSQL 15 (a relocated copy, say) to build, install and test with
PG_BIN=${INVSYNC_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PATH=$PG_BIN:$PATH

if [ "$(id -u)" = 0 ]; then
	RUN_USER=${INVSYNC_RUN_USER:-postgres}
	SUDO=""
else
	RUN_USER=$(id -un)
	SUDO=sudo
fi
INVSYNC_WORK=${INVSYNC_WORK:-/tmp/invsync-$RUN_USER}

say() { printf '==> %s\n' "$*" >&2; }

# run a command as the unprivileged user, in the work copy
as_run_user() {
	if [ "$(id -un)" = "$RUN_USER" ]; then
		(cd "$INVSYNC_WORK" && "$@")
	else
		runuser -u "$RUN_USER" -- env PATH="$PATH" HOME="$INVSYNC_WORK" \
			bash -c 'cd "$0" && exec "$@"' "$INVSYNC_WORK" "$@"
	fi
}

# copy the working tree (committed or not, minus build products) to the work dir
stage_tree() {
	$SUDO rm -rf "$INVSYNC_WORK"
	$SUDO mkdir -p "$INVSYNC_WORK"
	(cd "$REPO" && tar --exclude=.git --exclude='*.o' --exclude='*.so' \
		--exclude=tmp_check --exclude=tmp_check_iso --exclude=results \
		--exclude=output_iso --exclude=.work -cf - .) |
		$SUDO tar -xf - -C "$INVSYNC_WORK"
	$SUDO chown -R "$RUN_USER" "$INVSYNC_WORK"
}

# build in the work copy as the run user, install as root
build_and_install() {
	as_run_user make -s -j2 PG_CONFIG=$PG_BIN/pg_config >/dev/null
	(cd "$INVSYNC_WORK" && $SUDO make -s install PG_CONFIG=$PG_BIN/pg_config >/dev/null)
}

# install the Debian packages given that are missing; the packaged
# PostgreSQL cluster and nginx are not wanted running, so a policy-rc.d
# (only if none exists) keeps the packages from starting them
install_packages() {
	local missing=() p own_policy=0
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		$SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
		own_policy=1
	fi
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ $own_policy = 0 ] || $SUDO rm -f /usr/sbin/policy-rc.d
}

# everything a command needs before it starts a server: the packages, the
# run user, and the extension built from a private copy of the tree
prepare_build() {
	"$REPO/tools/setup"
	say "staging the tree in $INVSYNC_WORK"
	stage_tree
	say "building and installing"
	build_and_install
}

# For bench/*.sh: the extension built and installed (unless
# BENCH_SKIP_INSTALL=1), and an empty $INVSYNC_WORK/.bench-NAME for the
# run; sets BENCH_DIR to it and DATA to its cluster's data directory.
bench_prepare() {
	if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
		prepare_build
	elif [ ! -d "$INVSYNC_WORK" ]; then
		$SUDO mkdir -p "$INVSYNC_WORK"
		$SUDO chown "$RUN_USER" "$INVSYNC_WORK"
	fi
	BENCH_DIR=$INVSYNC_WORK/.bench-$1
	DATA=$BENCH_DIR/data
	as_run_user rm -rf "$BENCH_DIR"
	as_run_user mkdir -p "$BENCH_DIR"
}

# Shopee's answer to an update_stock call: every one of N models (ids
# 0..N-1, as the benchmarks' listings have them) updated
shopee_success_body() {
	python3 -c '
import json, sys
n = int(sys.argv[1])
print(json.dumps({"request_id": "sink", "error": "", "message": "",
	"response": {"failure_list": [],
	"success_list": [{"model_id": m, "location_id": "", "stock": 0} for m in range(n)]}},
	separators=(",", ":")))' "$1"
}

# An nginx on loopback, the benchmarks' marketplace "sink", on a free port
# it sets in SINK_PORT (SINK_URL its base), its files in DIR.  It answers
# every push with the channel's success shape: Shopee's under /m1 (one
# model an item) and /m50 (50), TikTok's (and Tokopedia's) for any
# product's Update Inventory under /tt, Lazada's UpdateSellableQuantity
# under /rest; and /status with its counters.  Keep-alive connections
# never expire.  Returns once it answers.  start_sink DIR
start_sink() {
	SINK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	SINK_URL=http://127.0.0.1:$SINK_PORT
	as_run_user mkdir -p "$1"
	as_run_user tee "$1/nginx.conf" >/dev/null <<NGINX
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $1/body;
	proxy_temp_path $1/proxy;
	fastcgi_temp_path $1/fastcgi;
	uwsgi_temp_path $1/uwsgi;
	scgi_temp_path $1/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 300s;
	server {
		listen 127.0.0.1:$SINK_PORT backlog=1024;
		default_type application/json;
		location = /m1/api/v2/product/update_stock { return 200 '$(shopee_success_body 1)'; }
		location = /m50/api/v2/product/update_stock { return 200 '$(shopee_success_body 50)'; }
		location ~ ^/tt/product/202309/products/[0-9]+/inventory/update\$ {
			return 200 '{"code":0,"data":{},"message":"Success","request_id":"20261201000000SINK0000000000000000"}';
		}
		location = /rest/product/stock/sellable/update {
			return 200 '{"code":"0","data":{},"request_id":"0b0f0f0f17330000000000001"}';
		}
		location = /status { stub_status; }
	}
}
NGINX
	as_run_user nginx -e "$1/error.log" -p "$1" -c "$1/nginx.conf"
	for _ in $(seq 50); do curl -s -o /dev/null "$SINK_URL/status" && return; sleep 0.1; done
	echo "the nginx sink did not start" >&2
	return 1
}

# A throwaway cluster in $DATA with the settings SETTINGS, on PORT and a
# socket in $BENCH_DIR only (no TCP), and its database "bench", owned by
# the superuser bench: bench_start_cluster SETTINGS PORT
bench_start_cluster() {
	say "starting a throwaway cluster on port $2"
	as_run_user initdb -D "$DATA" -A trust -U bench --no-sync >/dev/null
	printf '%s\nport = %s\nunix_socket_directories = %s\nlisten_addresses = %s\n' \
		"$1" "$2" "'$BENCH_DIR'" "''" |
		as_run_user tee -a "$DATA/postgresql.conf" >/dev/null
	as_run_user pg_ctl -D "$DATA" -l "$BENCH_DIR/server.log" -w start >/dev/null
	as_run_user createdb -h "$BENCH_DIR" -p "$2" -U bench bench
}
