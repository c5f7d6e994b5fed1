#!/usr/bin/env bash
# .ci/redis.sh start|stop|env — a private, throw-away Redis server for tests.
#
#   start  start redis-server in a new temp dir, listening on 127.0.0.1 only
#          (no unix socket), no persistence, and wait until it answers PING.
#          The port is $ASYNCSIP_REDIS_PORT when set; otherwise the first free
#          one from 56379 up (another checkout's server may hold 56379).
#          Prints nothing unless something fails.
#   env    print ASYNCSIP_TEST_REDIS_ADDR=127.0.0.1:<port> for the running server.
#   stop   stop the server (SIGTERM to its recorded PID, SIGKILL after 10s) and
#          remove its temp dir.
#
# The temp dir, port and the server's PID are recorded in a state file under
# this checkout (.ci/.state/redis.state, or redis-<port>.state for a given
# port; git-ignored; or under $ASYNCSIP_REDIS_STATE_DIR) so that `stop` (from
# another process) finds them.
# `stop` signals only the recorded PID, and only if the recorded dir is one this
# script created for this state file (a marker inside names it) and that PID is
# a redis-server whose working directory is that dir. Another checkout's server,
# or any other Redis, is never touched.
set -euo pipefail

PORT="${ASYNCSIP_REDIS_PORT:-}"
HOST=127.0.0.1
BASE="${TMPDIR:-/tmp}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${ASYNCSIP_REDIS_STATE_DIR:-$ROOT/.ci/.state}"
STATE="$STATE_DIR/redis.state"
START_TIMEOUT=15 # seconds

die() { printf 'redis.sh: %s\n' "$*" >&2; exit 1; }

if [[ -n "$PORT" ]]; then
	[[ "$PORT" =~ ^[0-9]+$ ]] || die "ASYNCSIP_REDIS_PORT must be a number, got '$PORT'"
	STATE="$STATE_DIR/redis-${PORT}.state"
fi

# port_busy reports whether something accepts TCP connections on port.
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# pick_port sets PORT to the first free port from $1 (default 56379) up.
pick_port() {
	local p
	for ((p = ${1:-56379}; p < 56479; p++)); do
		if ! port_busy "$p"; then
			PORT=$p
			return 0
		fi
	done
	die "no free port in 56379..56478"
}

find_server() {
	local p
	p="$(command -v redis-server 2>/dev/null)" && { printf '%s\n' "$p"; return 0; }
	for p in /usr/bin/redis-server /usr/sbin/redis-server; do
		[[ -x "$p" ]] && { printf '%s\n' "$p"; return 0; }
	done
	return 1
}

load_state() {
	[[ -f "$STATE" ]] || return 1
	DIR="$(sed -n 's/^dir=//p' "$STATE")"
	PID="$(sed -n 's/^pid=//p' "$STATE")"
	PORT="$(sed -n 's/^port=//p' "$STATE")"
	[[ -n "$DIR" && -n "$PORT" ]]
}

# ours reports whether the recorded dir is one this script created: named by
# make_dir and holding the marker naming this state file.
ours() {
	case "$DIR" in
	*/asyncsip-redis-*) ;;
	*) return 1 ;;
	esac
	[[ -f "$DIR/.asyncsip-redis" && "$(cat "$DIR/.asyncsip-redis")" == "$STATE" ]]
}

# pid_is_ours reports whether PID is alive and is the redis-server running in DIR.
pid_is_ours() {
	[[ "$PID" =~ ^[0-9]+$ ]] || return 1
	[[ -d "/proc/$PID" ]] || return 1
	tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep -q 'redis-server' || return 1
	[[ "$(readlink "/proc/$PID/cwd" 2>/dev/null)" == "$DIR" ]]
}

ping() {
	# A PING on a TCP connection of bash's own (no redis-cli needed).
	local reply
	exec 3<>"/dev/tcp/$HOST/$PORT" 2>/dev/null || return 1
	printf '*1\r\n$4\r\nPING\r\n' >&3
	IFS= read -r -t 2 reply <&3 || { exec 3>&-; return 1; }
	exec 3>&-
	[[ "$reply" == "+PONG"* ]]
}

do_stop() {
	load_state || { rm -f "$STATE"; return 0; } # nothing of ours is running
	if ! ours; then
		printf 'redis.sh: %s does not describe a server this script started (dir %s, pid %s); not stopping anything\n' \
			"$STATE" "$DIR" "${PID:-?}" >&2
		rm -f "$STATE"
		return 0
	fi
	if pid_is_ours; then
		kill -TERM "$PID" 2>/dev/null || true
		local i
		for ((i = 0; i < 100; i++)); do
			[[ -d "/proc/$PID" ]] || break
			sleep 0.1
		done
		if [[ -d "/proc/$PID" ]] && pid_is_ours; then
			kill -KILL "$PID" 2>/dev/null || true
		fi
	fi
	rm -rf "$DIR" # ours: created by make_dir
	rm -f "$STATE"
}

# launch starts redis-server on PORT in DIR and waits until it answers PING.
# It returns 2 when the server could not bind PORT (someone took it between
# pick_port and the bind), 1 on any other failure.
launch() {
	local server="$1" i
	(cd "$DIR" && "$server" --port "$PORT" --bind "$HOST" --dir "$DIR" \
		--save '' --appendonly no --protected-mode yes --unixsocket '' \
		--daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log") || return 1
	for ((i = 0; i < START_TIMEOUT * 10; i++)); do
		[[ -s "$DIR/redis.pid" ]] && ping && return 0
		grep -q 'Address already in use' "$DIR/redis.log" 2>/dev/null && return 2
		sleep 0.1
	done
	return 1
}

do_start() {
	local server
	server="$(find_server)" ||
		die "redis-server not found; install it (apt-get install redis-server, or run .ci/deps.sh as root)"

	local want="$PORT" attempt rc
	do_stop # a leftover server from an interrupted run would hold the port
	PORT="$want"

	mkdir -p "$STATE_DIR"
	trap 'rc=$?; if (( rc != 0 )); then do_stop; fi' EXIT
	local from=56379
	for ((attempt = 1; ; attempt++)); do
		[[ -n "$want" ]] || pick_port "$from"
		DIR="$(cd "$(mktemp -d "$BASE/asyncsip-redis-$$.XXXXXX")" && pwd -P)"
		chmod 700 "$DIR"
		printf '%s\n' "$STATE" >"$DIR/.asyncsip-redis"
		PID=
		printf 'dir=%s\nport=%s\n' "$DIR" "$PORT" >"$STATE"
		rc=0
		launch "$server" || rc=$?
		PID="$(cat "$DIR/redis.pid" 2>/dev/null || true)"
		[[ -n "$PID" ]] && printf 'pid=%s\n' "$PID" >>"$STATE"
		# A picked port taken by another process before our bind: pick again
		# (a given port is the caller's choice and is not replaced).
		if ((rc == 2)) && [[ -z "$want" ]] && ((attempt < 5)); then
			from=$((PORT + 1))
			do_stop
			continue
		fi
		break
	done
	if ! ping || ! pid_is_ours; then
		tail -n 30 "$DIR/redis.log" >&2 || true
		die "our redis-server is not answering PING on $HOST:$PORT after ${START_TIMEOUT}s (log above)"
	fi
	trap - EXIT
}

do_env() {
	load_state || die "no test Redis recorded in $STATE (run: .ci/redis.sh start)"
	printf 'ASYNCSIP_TEST_REDIS_ADDR=%s:%s\n' "$HOST" "$PORT"
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
