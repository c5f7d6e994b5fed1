#!/usr/bin/env bash
# .ci/deps.sh — make sure the external programs the tests drive are installed.
#
#   sipp             (Debian package sip-tester)  SIPp interop tests
#   initdb, pg_ctl   (Debian package postgresql)  modules/db PostgreSQL tests
#   mariadbd         (mariadb-server)             modules/db MySQL suite (private server)
#   redis-server     (redis-server)               modules/redis tests (private servers, .ci/redis.sh)
#   kamailio         (kamailio)                   bench: Kamailio config syntax check
#   gnuplot          (gnuplot-nox)                bench: report plots
#   strace           (strace)                     bench: syscall counts (bench/cmd/benchcompare)
#   rtpengine        (rtpengine-daemon)           modules/rtpengine real-daemon tests
#
# As root, missing packages are installed with apt-get (apt-get update runs at
# most once, and only when something is missing). The packages' services are
# not started (policy-rc.d, below): tests use private servers they start and
# stop themselves (.ci/pg.sh, the MariaDB suite). Nothing is stopped by name.
# As a non-root user nothing is installed; the script only says which tests
# will skip.
#
# Idempotent, and fast when everything is present (no apt calls at all).
# Exits non-zero only if an install was attempted and failed while CI=true.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }

is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }

have_sipp() { command -v sipp >/dev/null 2>&1; }

# initdb is not on PATH on Debian (pg_wrapper does not cover it): look in the
# versioned bin directories too.
have_initdb() {
	command -v initdb >/dev/null 2>&1 && return 0
	local f
	for f in /usr/lib/postgresql/*/bin/initdb; do
		[[ -x "$f" ]] && return 0
	done
	return 1
}

# Installing postgresql, mariadb-server, redis-server or kamailio would start
# Debian's own services (a "main" cluster on :5432, MariaDB on :3306, Redis on
# :6379, Kamailio on :5060).
# Tests never use them: they start private instances and stop only those, by
# the PID or data directory they recorded. So the services are kept from
# starting at all: during the install, /usr/sbin/policy-rc.d answers 101
# ("action forbidden"), which invoke-rc.d and deb-systemd-invoke honour.
# Nothing is ever stopped by name. An existing policy-rc.d (the machine's
# own) is left as it is.
POLICY=/usr/sbin/policy-rc.d
policy_ours=false
forbid_service_starts() {
	[[ -e "$POLICY" ]] && return 0
	printf '#!/bin/sh\n# written by asyncsip .ci/deps.sh for the duration of apt-get install\nexit 101\n' >"$POLICY"
	chmod 755 "$POLICY"
	policy_ours=true
}
allow_service_starts() {
	if $policy_ours; then
		rm -f "$POLICY"
		policy_ours=false
	fi
}

missing=()        # Debian packages to install
skips=()          # human-readable consequences when not installed
if ! have_sipp; then
	missing+=(sip-tester)
	skips+=("sipp not found: SIPp interop tests will skip (fail under CI=true)")
fi
if ! have_initdb; then
	missing+=(postgresql)
	skips+=("initdb not found: PostgreSQL tests will skip (fail under CI=true)")
fi

if ! command -v mariadbd >/dev/null 2>&1 && [[ ! -x /usr/sbin/mariadbd ]]; then
	missing+=(mariadb-server)
	skips+=("mariadbd not found: the MySQL suite will skip (fail under CI=true)")
fi
if ! command -v redis-server >/dev/null 2>&1 && [[ ! -x /usr/bin/redis-server ]]; then
	missing+=(redis-server)
	skips+=("redis-server not found: the Redis tests will skip (fail under CI=true)")
fi
# rtpengine: tests start their own daemons (testenv.StartRTPEngine: userspace
# forwarding with --table=-1, no kernel module, on 127.0.0.1, stopped by PID);
# the package's own service is kept from starting like the others.
if ! command -v rtpengine >/dev/null 2>&1 && [[ ! -x /usr/bin/rtpengine ]]; then
	missing+=(rtpengine-daemon)
	skips+=("rtpengine not found: the modules/rtpengine real-daemon tests will skip (fail under CI=true)")
fi
if ! command -v kamailio >/dev/null 2>&1 && [[ ! -x /usr/sbin/kamailio ]]; then
	missing+=(kamailio)
	skips+=("kamailio not found: the Kamailio config check will skip (fail under CI=true)")
fi
if ! command -v gnuplot >/dev/null 2>&1; then
	missing+=(gnuplot-nox)
	skips+=("gnuplot not found: the benchmark report test will skip (fail under CI=true)")
fi
if ! command -v strace >/dev/null 2>&1; then
	missing+=(strace)
	skips+=("strace not found: the benchmark driver's syscall-count test will skip (fail under CI=true)")
fi

# Fast path: everything present.
if (( ${#missing[@]} == 0 )); then
	exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
	for s in "${skips[@]}"; do log "$s"; done
	log "to install as root: apt-get install -y --no-install-recommends ${missing[*]}"
	exit 0
fi

log "installing: ${missing[*]}"
# Wait (bounded) for a concurrent apt/dpkg run to release its locks instead of
# failing immediately.
apt_opts=(-o DPkg::Lock::Timeout=300 -q)
export DEBIAN_FRONTEND=noninteractive

# apt_update runs apt-get update, retrying a few times in case another apt
# process holds the package-list lock.
apt_update() {
	local try
	for try in 1 2 3 4 5 6; do
		apt-get "${apt_opts[@]}" update >/dev/null && return 0
		if (( try < 6 )); then sleep 10; fi
	done
	return 1
}

forbid_service_starts
trap allow_service_starts EXIT
if apt_update &&
	apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null; then
	status=0
else
	status=$?
fi
allow_service_starts

if (( status != 0 )); then
	log "apt-get failed (exit $status)"
	for s in "${skips[@]}"; do log "$s"; done
	is_ci && exit "$status"
	exit 0
fi

# Re-check: report anything still missing after the install.
have_sipp || log "sipp still not found after installing sip-tester"
have_initdb || log "initdb still not found after installing postgresql"
exit 0
