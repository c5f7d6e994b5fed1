#!/usr/bin/env bash
# .ci/pg.sh start|stop|env — a private, throw-away PostgreSQL cluster for tests.
#
#   start  initdb a new cluster in a temp dir, listen on 127.0.0.1 only
#          (port $ASYNCSIP_PG_PORT, default 55432, unix socket inside the temp
#          dir), trust auth, create database asyncsip_test and wait until it
#          accepts connections. Prints nothing unless something fails.
#   env    print ASYNCSIP_TEST_POSTGRES_DSN=postgres://...  for the running cluster.
#   stop   stop the cluster (pg_ctl -m fast) and remove its temp dir.
#
# initdb and postgres refuse to run as root: as root the server runs as the
# `postgres` system user (runuser), and the temp dir is owned by it. As any
# other user it runs as that user. The database superuser is always named
# "postgres" (initdb -U postgres), so the DSN is the same either way.
#
# The temp dir and the server's PID are recorded in a per-port state file
# under this checkout (.ci/.state/pg-<port>.state, git-ignored; or under
# $ASYNCSIP_PG_STATE_DIR) so that `stop` (from another process) finds them.
# `stop` stops only the server of the recorded data dir, and only if that dir
# is one this script created for this state file (a marker inside names it).
# Another checkout's cluster, or any other PostgreSQL, is never touched.
# ASYNCSIP_PG_BINDIR overrides where the server binaries are looked up.
set -euo pipefail

PORT="${ASYNCSIP_PG_PORT:-55432}"
DBNAME=asyncsip_test
DBUSER=postgres
HOST=127.0.0.1
BASE="${TMPDIR:-/tmp}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${ASYNCSIP_PG_STATE_DIR:-$ROOT/.ci/.state}"
STATE="$STATE_DIR/pg-${PORT}.state"
START_TIMEOUT=30 # seconds

die() { printf 'pg.sh: %s\n' "$*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "ASYNCSIP_PG_PORT must be a number, got '$PORT'"

# find_bindir prints the directory holding initdb/pg_ctl/postgres, newest
# major version first. Fails if there is none.
find_bindir() {
	if [[ -n "${ASYNCSIP_PG_BINDIR:-}" ]]; then
		[[ -x "$ASYNCSIP_PG_BINDIR/initdb" ]] || return 1
		printf '%s\n' "$ASYNCSIP_PG_BINDIR"
		return 0
	fi
	local d
	# Debian layout: /usr/lib/postgresql/<major>/bin (not on PATH).
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	done
	# Anything else on PATH (resolve symlinks so pg_ctl finds its postgres).
	local i
	i="$(command -v initdb 2>/dev/null)" || return 1
	d="$(dirname "$(readlink -f "$i")")"
	[[ -x "$d/pg_ctl" ]] || return 1
	printf '%s\n' "$d"
}

# as_server runs a command as the user that owns the cluster, from inside the
# cluster dir (so a cwd the postgres user cannot read does not matter).
as_server() {
	if [[ "$(id -u)" == 0 ]]; then
		(cd "$DIR" && runuser -u postgres -- "$@")
	else
		(cd "$DIR" && "$@")
	fi
}

# load_state reads DIR and BINDIR of the running cluster from the state file.
load_state() {
	[[ -f "$STATE" ]] || return 1
	DIR="$(sed -n 's/^dir=//p' "$STATE")"
	BINDIR="$(sed -n 's/^bindir=//p' "$STATE")"
	PID="$(sed -n 's/^pid=//p' "$STATE")"
	[[ -n "$DIR" && -n "$BINDIR" ]]
}

# ours reports whether the recorded dir is one this script created: named
# by make_dir and holding the marker make_dir wrote, naming this state file.
# pg_ctl -D then reaches only the server of that data dir (the PID in its
# postmaster.pid: the one started here, or restarted there by a test).
ours() {
	case "$DIR" in
	*/asyncsip-pg-*) ;;
	*) return 1 ;;
	esac
	[[ -f "$DIR/.asyncsip-pg" && "$(cat "$DIR/.asyncsip-pg")" == "$STATE" ]]
}

# make_dir creates the cluster's temp dir, owned by the server user.
make_dir() {
	if [[ "$(id -u)" == 0 ]]; then
		getent passwd postgres >/dev/null ||
			die "running as root needs a 'postgres' system user to run the server (install the postgresql package)"
		DIR="$(mktemp -d "$BASE/asyncsip-pg-$$.XXXXXX")"
		chown postgres: "$DIR"
		# $TMPDIR may be private to root (e.g. /root/tmp); fall back to /tmp.
		if ! runuser -u postgres -- test -w "$DIR"; then
			rm -rf "$DIR"
			DIR="$(mktemp -d "/tmp/asyncsip-pg-$$.XXXXXX")"
			chown postgres: "$DIR"
		fi
	else
		DIR="$(mktemp -d "$BASE/asyncsip-pg-$$.XXXXXX")"
	fi
	chmod 700 "$DIR"
	printf '%s\n' "$STATE" >"$DIR/.asyncsip-pg"
}

do_stop() {
	load_state || { rm -f "$STATE"; return 0; } # nothing of ours is running
	if ! ours; then
		printf 'pg.sh: %s does not describe a cluster this script started (dir %s, pid %s); not stopping anything\n' \
			"$STATE" "$DIR" "${PID:-?}" >&2
		rm -f "$STATE"
		return 0
	fi
	if [[ -d "$DIR/data" ]]; then
		if as_server "$BINDIR/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
			as_server "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w -t 30 -s stop >/dev/null 2>&1 ||
				as_server "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate -w -t 10 -s stop >/dev/null 2>&1 ||
				printf 'pg.sh: could not stop the server in %s\n' "$DIR" >&2
		fi
	fi
	rm -rf "$DIR" # ours: created by make_dir
	rm -f "$STATE"
}

do_start() {
	BINDIR="$(find_bindir)" ||
		die "initdb not found (looked in /usr/lib/postgresql/*/bin and PATH); install PostgreSQL (apt-get install postgresql, or run .ci/deps.sh as root) or set ASYNCSIP_PG_BINDIR"

	# A leftover cluster from an interrupted run would hold the port: stop it.
	do_stop

	make_dir
	mkdir -p "$STATE_DIR"
	PID=
	printf 'dir=%s\nbindir=%s\nport=%s\n' "$DIR" "$BINDIR" "$PORT" >"$STATE"
	# From here on, any failure tears the half-started cluster down again.
	trap 'rc=$?; if (( rc != 0 )); then do_stop; fi' EXIT

	mkdir -p "$DIR/sock"
	[[ "$(id -u)" == 0 ]] && chown postgres: "$DIR/sock"

	if ! as_server "$BINDIR/initdb" -D "$DIR/data" -U "$DBUSER" \
		--auth-local=trust --auth-host=trust \
		--encoding=UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1; then
		cat "$DIR/initdb.log" >&2
		die "initdb failed"
	fi

	# Loopback only; durability off (a test cluster is thrown away anyway).
	cat >>"$DIR/data/postgresql.conf" <<-CONF

		# --- asyncsip test cluster (.ci/pg.sh) ---
		listen_addresses = '$HOST'
		port = $PORT
		unix_socket_directories = '$DIR/sock'
		max_connections = 200
		fsync = off
		synchronous_commit = off
		full_page_writes = off
	CONF

	if ! as_server "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" \
		-w -t "$START_TIMEOUT" -s start >/dev/null 2>&1; then
		tail -n 30 "$DIR/server.log" >&2 || true
		die "postgres did not start on $HOST:$PORT (log above)"
	fi
	PID="$(head -n 1 "$DIR/data/postmaster.pid")"
	printf 'pid=%s\n' "$PID" >>"$STATE"

	# Wait until it accepts TCP connections on the loopback address.
	local isready="$BINDIR/pg_isready" i
	[[ -x "$isready" ]] || isready="$(command -v pg_isready || true)"
	if [[ -n "$isready" ]]; then
		for ((i = 0; i < START_TIMEOUT * 10; i++)); do
			"$isready" -q -h "$HOST" -p "$PORT" -U "$DBUSER" -d postgres && break
			sleep 0.1
		done
		"$isready" -q -h "$HOST" -p "$PORT" -U "$DBUSER" -d postgres ||
			die "postgres is not accepting connections on $HOST:$PORT after ${START_TIMEOUT}s"
	fi

	# Create the test database (over TCP, so no socket permissions matter).
	local psql="$BINDIR/psql"
	[[ -x "$psql" ]] || psql="$(command -v psql)" || die "psql not found"
	"$psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U "$DBUSER" -d postgres \
		-c "CREATE DATABASE $DBNAME" >/dev/null ||
		die "could not create database $DBNAME"
	trap - EXIT
}

do_env() {
	load_state || die "no test cluster running on port $PORT (run: .ci/pg.sh start)"
	printf 'ASYNCSIP_TEST_POSTGRES_DSN=postgres://%s@%s:%s/%s?sslmode=disable\n' \
		"$DBUSER" "$HOST" "$PORT" "$DBNAME"
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
env) do_env ;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
