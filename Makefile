# asyncsip — developer and CI entry points. CI runs .ci/run, i.e. `make test`
# with CI=true, where tests that need SIPp or PostgreSQL fail instead of skip.

GO ?= go
export GO

.PHONY: all test vet bench bench-compare cover fuzz soak pg-start pg-stop

all: test

# Full suite: installs test deps (as root), starts a private PostgreSQL, runs
# go vet and the race-enabled tests, always stops PostgreSQL afterwards.
# Extra go test flags: make test GOTESTFLAGS='-run Foo -v'
test:
	@bash .ci/test.sh

vet:
	$(GO) vet ./...

# Benchmarks only (no tests).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Side-by-side comparison with Kamailio and sipgo under SIPp (as root: it
# installs sip-tester, kamailio, gnuplot, and strace when perf cannot count
# syscalls, when missing). Writes bench/RESULTS.md, bench/results.json and
# the plots; about 45 min. See bench/README.md.
# Quick smoke run: make bench-compare BENCHFLAGS=-quick
BENCHFLAGS ?=
bench-compare:
	$(GO) run ./bench/cmd/benchcompare $(BENCHFLAGS)

# Fuzz every target for a bounded time each (FUZZTIME, default 30s). New
# crashers land in the package's testdata/fuzz and become regression tests.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Soak: SOAK_DURATION (default 10m) of mixed traffic (calls, failures with
# serial forking, CANCELs, await timeouts, Timer B timeouts) through the real
# server with SIPp, then transactions, goroutines, fds and heap must be back
# to their baseline. Not part of make test. Example: make soak SOAK_DURATION=2m
SOAK_DURATION ?= 10m
soak:
	ASYNCSIP_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 3h -run '^TestReliabilitySoak$$' -v .

# Coverage profile of the unit tests (no external peers started), then a summary.
cover:
	$(GO) test -count=1 -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -n 1

# Manual control of the private test PostgreSQL (see .ci/pg.sh).
pg-start:
	@bash .ci/pg.sh start
	@bash .ci/pg.sh env
pg-stop:
	@bash .ci/pg.sh stop
