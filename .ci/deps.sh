#!/usr/bin/env bash
# .ci/deps.sh — make sure the external programs the tests drive are installed.
#
#   sipp             (Debian package sip-tester)  SIPp interop tests
#   initdb, pg_ctl   (Debian package postgresql)  modules/db PostgreSQL tests
#   mariadbd         (mariadb-server)             modules/db MySQL suite (private server)
#   kamailio         (kamailio)                   bench: Kamailio config syntax check
#   gnuplot          (gnuplot-nox)                bench: report plots
#
# As root, missing packages are installed with apt-get (apt-get update runs at
# most once, and only when something is missing). Debian's own PostgreSQL
# cluster, if the package started one, is stopped again: tests use a private
# cluster started by .ci/pg.sh. As a non-root user nothing is installed; the
# script only says which tests will skip.
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

# Stop any cluster that installing the postgresql package started. Debian's
# maintainer scripts create and (policy permitting) start "main"; tests must
# not depend on it, and it would hold port 5432 and memory. Errors are ignored.
# Installing kamailio or mariadb-server may start Debian's services (on
# :5060 and :3306); tests start their own private instances instead.
stop_debian_services() {
	if command -v service >/dev/null 2>&1; then
		service kamailio stop >/dev/null 2>&1 || true
		service mariadb stop >/dev/null 2>&1 || true
	fi
	pkill -x kamailio >/dev/null 2>&1 || true
	pkill -x mariadbd >/dev/null 2>&1 || true
}

stop_debian_clusters() {
	if command -v pg_lsclusters >/dev/null 2>&1; then
		local ver name _rest
		while read -r ver name _rest; do
			[[ -n "$ver" && -n "$name" ]] || continue
			pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
		done < <(pg_lsclusters --no-header 2>/dev/null || true)
	fi
	if command -v service >/dev/null 2>&1; then
		service postgresql stop >/dev/null 2>&1 || true
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
if ! command -v kamailio >/dev/null 2>&1 && [[ ! -x /usr/sbin/kamailio ]]; then
	missing+=(kamailio)
	skips+=("kamailio not found: the Kamailio config check will skip (fail under CI=true)")
fi
if ! command -v gnuplot >/dev/null 2>&1; then
	missing+=(gnuplot-nox)
	skips+=("gnuplot not found: the benchmark report test will skip (fail under CI=true)")
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

if apt_update &&
	apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null; then
	status=0
else
	status=$?
fi

for p in "${missing[@]}"; do
	case "$p" in
	postgresql) stop_debian_clusters ;;
	kamailio | mariadb-server) stop_debian_services ;;
	esac
done

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
