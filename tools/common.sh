# tools/common.sh: shared by tools/setup, tools/test and tools/demo.
#
# PostgreSQL refuses to run as root, so when these scripts run as root
# (a fresh machine, CI) everything that starts a server runs as an
# unprivileged user in a private copy of the tree under $INVSYNC_WORK.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
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
