#!/usr/bin/env bash
# async-cpu.sh: CPU per call of benchproxy's scenarios, interleaved.
#
# For each round and each scenario it starts the SIPp callee (bench/sipp/uas.xml),
# the HTTP delay server (rest) or the SQLite routes DB (db, filled by benchproxy),
# then benchproxy pinned to CPU $PROXY_CPU, warms up, runs the SIPp caller
# (bench/sipp/uac.xml) at $RATE calls/s for $CALLS calls pinned to $SIPP_CPU, and
# prints the proxy's CPU (utime+stime from /proc/PID/stat) per successful call.
# This is what bench/cmd/benchcompare does for one fixed-rate step
# (sipp.go, proxies.go, runner.go), without the search and the report.
#
#   bench/scripts/async-cpu.sh                       # relay sleep rest db, 3 rounds
#   SCENARIOS="relay rest" ROUNDS=5 bench/scripts/async-cpu.sh
#   CPUPROF=1 bench/scripts/async-cpu.sh             # + -cpuprofile per run
#   MEMRATE=1 ROUNDS=1 CALLS=2000 bench/scripts/async-cpu.sh  # + -memprofile, every allocation
#
# Environment: SCENARIOS, ROUNDS (3), RATE (1000), CALLS (10000), WORKERS (1),
# PROXY_CPU (0), SIPP_CPU (1), OUT (a new directory under /tmp), BIN (built
# binaries; built from this checkout when unset), BASE_PORT (27060: proxy
# BASE, callee BASE+20, caller BASE+40, HTTP BASE+60), EXTRA (more benchproxy
# flags). Output: one line per run, and $OUT/results.tsv
# (scenario round calls_ok failed cpu_s ms_per_call ctxsw_per_call: context
# switches of all the proxy's threads per call, from /proc/PID/task/*/status). Every process it starts
# is stopped by its PID when the run ends.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
SCENARIOS=${SCENARIOS:-"relay sleep rest db"}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-1000}
CALLS=${CALLS:-10000}
WORKERS=${WORKERS:-1}
PROXY_CPU=${PROXY_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}
BASE_PORT=${BASE_PORT:-27060}
OUT=${OUT:-$(mktemp -d /tmp/async-cpu.XXXXXX)}
EXTRA=${EXTRA:-}
CPUPROF=${CPUPROF:-}
MEMRATE=${MEMRATE:-}

port=$BASE_PORT uas_port=$((BASE_PORT + 20)) uac_port=$((BASE_PORT + 40)) http_port=$((BASE_PORT + 60))
mkdir -p "$OUT"
if [[ -z "${BIN:-}" ]]; then
	BIN=$OUT/bin
	(cd "$repo" && go build -o "$BIN/benchproxy" ./bench/cmd/benchproxy && go build -o "$BIN/httpdelay" ./bench/cmd/httpdelay)
fi
ticks=$(getconf CLK_TCK)

pids=()
cleanup() { # TERM, then KILL what is still there after 5 s (SIPp may ignore TERM)
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	local n=50
	while ((n-- > 0)); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap cleanup EXIT

udp_bound() { ss -Huln "sport = :$1" | grep -q .; }
tcp_listening() { ss -Htln "sport = :$1" | grep -q .; }
wait_for() { # wait_for SECONDS CMD...: poll CMD every 0.1 s, bounded
	local n=$(($1 * 10))
	shift
	while ((n-- > 0)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# ctx_switches PID: voluntary + involuntary context switches of all its threads
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/{n += $2} END{print n+0}'; }

uac() { # uac DIR RATE CALLS: the SIPp caller; prints "ok failed"
	local dir=$1 rate=$2 calls=$3
	mkdir -p "$dir"
	taskset -c "$SIPP_CPU" sipp -sf "$repo/bench/sipp/uac.xml" -i 127.0.0.1 -p "$uac_port" -nostdin \
		-r "$rate" -rp 1000 -m "$calls" -l 40000 -s bob -recv_timeout 5000 \
		-default_behaviors all,-abortunexp -max_socket 64 -trace_stat -stf "$dir/stat.csv" -fd 1 \
		-trace_err -error_file "$dir/errors.log" "127.0.0.1:$port" >"$dir/sipp.out" 2>&1 || true
	awk -F';' 'NR==1{for(i=1;i<=NF;i++)c[$i]=i; next} NF>1{l=$0} END{split(l,v,";"); print v[c["SuccessfulCall(C)"]]+0, v[c["FailedCall(C)"]]+0}' "$dir/stat.csv"
}

one() { # one SCENARIO ROUND
	local sc=$1 r=$2 dir="$OUT/$1-$2"
	mkdir -p "$dir"
	wait_for 10 bash -c "! ss -Huln 'sport = :$port' | grep -q . && ! ss -Huln 'sport = :$uas_port' | grep -q ." ||
		{ echo "ports $port/$uas_port busy" >&2; return 1; }
	taskset -c "$SIPP_CPU" sipp -sf "$repo/bench/sipp/uas.xml" -i 127.0.0.1 -p "$uas_port" -nostdin -max_socket 64 \
		-l 1000000 -buff_size 65535 -trace_err -error_file "$dir/uas-errors.log" >"$dir/uas.log" 2>&1 &
	pids+=($!)
	wait_for 15 udp_bound "$uas_port" || { echo "uas did not start" >&2; return 1; }
	if [[ $sc == rest ]]; then
		taskset -c "$SIPP_CPU" "$BIN/httpdelay" -listen "127.0.0.1:$http_port" -delay 20ms -target "127.0.0.1:$uas_port" \
			>"$dir/httpdelay.log" 2>&1 &
		pids+=($!)
		wait_for 15 tcp_listening "$http_port" || { echo "httpdelay did not start" >&2; return 1; }
	fi
	local args=(-scenario "$sc" -listen "udp:127.0.0.1:$port" -target "127.0.0.1:$uas_port" -workers "$WORKERS"
		-rest-url "http://127.0.0.1:$http_port/route" -db "sqlite:$OUT/routes.db")
	[[ -n $CPUPROF ]] && args+=(-cpuprofile "$dir/cpu.pprof")
	[[ -n $MEMRATE ]] && args+=(-memprofile "$dir/mem.pprof" -memprofilerate "$MEMRATE")
	# shellcheck disable=SC2206
	args+=($EXTRA)
	taskset -c "$PROXY_CPU" "$BIN/benchproxy" "${args[@]}" >"$dir/proxy.log" 2>&1 &
	local proxy=$!
	pids+=($proxy)
	wait_for 30 udp_bound "$port" || { echo "benchproxy did not start: $(tail -3 "$dir/proxy.log")" >&2; return 1; }
	uac "$dir/warmup" 200 400 >/dev/null # warm-up, not recorded
	sleep 1
	local before after res cs0 cs1
	before=$(cpu_ticks "$proxy")
	cs0=$(ctx_switches "$proxy")
	res=$(uac "$dir/run" "$RATE" "$CALLS")
	after=$(cpu_ticks "$proxy")
	cs1=$(ctx_switches "$proxy")
	local ok=${res% *} failed=${res#* }
	local cpu ms
	cpu=$(awk -v t=$((after - before)) -v hz="$ticks" 'BEGIN{printf "%.2f", t/hz}')
	ms=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="$ok" 'BEGIN{if(n>0)printf "%.3f", t/hz/n*1000; else print "nan"}')
	local csw
	csw=$(awk -v d=$((cs1 - cs0)) -v n="$ok" 'BEGIN{if(n>0)printf "%.1f", d/n; else print "nan"}')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$r" "$ok" "$failed" "$cpu" "$ms" "$csw" | tee -a "$OUT/results.tsv"
	sleep 1
	kill -INT "$proxy" 2>/dev/null || true
	wait "$proxy" 2>/dev/null || true
	cleanup
}

echo "# out=$OUT rate=$RATE calls=$CALLS workers=$WORKERS scenarios=($SCENARIOS) rounds=$ROUNDS $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'scenario\tround\tok\tfailed\tcpu_s\tms_per_call\tctxsw_per_call\n'
for ((r = 1; r <= ROUNDS; r++)); do
	for sc in $SCENARIOS; do
		one "$sc" "$r"
	done
done
echo "# summary (median ms/call per scenario)"
awk -F'\t' '{v[$1]=v[$1]" "$6} END{for(s in v){n=split(v[s],a," "); asort(a); printf "%s\tmedian %s\truns%s\n", s, a[int((n+1)/2)], v[s]}}' "$OUT/results.tsv"
