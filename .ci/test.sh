#!/usr/bin/env bash
# .ci/test.sh — the body of `make test`.
#
#  1. .ci/deps.sh: install sipp and PostgreSQL if missing (as root).
#  2. Start a private PostgreSQL (.ci/pg.sh) and export its DSN in
#     ASYNCSIP_TEST_POSTGRES_DSN, unless that is already set. If it cannot be
#     started: under CI (CI=true/1) fail; otherwise carry on without the DSN,
#     so the PostgreSQL tests skip.
#  3. Start a private Redis (.ci/redis.sh) and export its address in
#     ASYNCSIP_TEST_REDIS_ADDR, unless that is already set; same CI rule.
#  4. go vet ./... and go test -race.
#  5. Always stop PostgreSQL and Redis again (trap), and exit with the test status.
#
# GO (default go) and GOTESTFLAGS (extra go test flags) may be set by the caller.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO="${GO:-go}"
read -r -a extra_flags <<<"${GOTESTFLAGS:-}"

log() { printf 'test: %s\n' "$*" >&2; }
is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }

pg_started=false
redis_started=false
cleanup() {
	local rc=$?
	if $pg_started; then
		bash .ci/pg.sh stop || log "warning: stopping PostgreSQL failed"
	fi
	if $redis_started; then
		bash .ci/redis.sh stop || log "warning: stopping Redis failed"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash .ci/deps.sh

if [[ -n "${ASYNCSIP_TEST_POSTGRES_DSN:-}" ]]; then
	log "using PostgreSQL from the environment (ASYNCSIP_TEST_POSTGRES_DSN)"
else
	# Mark as started before trying: a half-started cluster is stopped too
	# (pg.sh stop is a no-op when nothing of ours is running).
	pg_started=true
	if bash .ci/pg.sh start; then
		dsn_line="$(bash .ci/pg.sh env)"
		export ASYNCSIP_TEST_POSTGRES_DSN="${dsn_line#ASYNCSIP_TEST_POSTGRES_DSN=}"
	elif is_ci; then
		log "could not start PostgreSQL, and CI=${CI} requires it"
		exit 1
	else
		log "could not start PostgreSQL; PostgreSQL tests will skip"
	fi
fi

if [[ -n "${ASYNCSIP_TEST_REDIS_ADDR:-}" ]]; then
	log "using Redis from the environment (ASYNCSIP_TEST_REDIS_ADDR)"
else
	redis_started=true # redis.sh stop is a no-op when nothing of ours runs
	if bash .ci/redis.sh start; then
		addr_line="$(bash .ci/redis.sh env)"
		export ASYNCSIP_TEST_REDIS_ADDR="${addr_line#ASYNCSIP_TEST_REDIS_ADDR=}"
	elif is_ci; then
		log "could not start Redis, and CI=${CI} requires it"
		exit 1
	else
		log "could not start Redis; Redis tests will skip"
	fi
fi

"$GO" vet ./...

status=0
"$GO" test -race -count=1 -timeout 20m ${extra_flags[@]+"${extra_flags[@]}"} ./... || status=$?
exit "$status"
