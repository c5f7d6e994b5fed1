#!/bin/bash
# bench/scripts/gc-sustained.sh — the same relay rate twice in a row against one
# benchproxy (GODEBUG=gctrace=1), as make bench-compare's search does when it
# confirms a step: proxy pinned to CPU 0, SIPp caller and callee on CPU 1, fixed
# ports 25060/25080/25090-25091 on 127.0.0.1, 15 s per run. Prints SIPp's
# successful/failed calls for each run and the GC cycles; stops what it started
# by PID. Usage: RATE=3000 bench/scripts/gc-sustained.sh   (OUT: output dir)
set -u
OUT=${OUT:-$(mktemp -d /tmp/gc-sustained.XXXXXX)}
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
RATE=${RATE:-2950}; N=$((RATE*15))
go build -o "$OUT/benchproxy" ./bench/cmd/benchproxy || exit 1
taskset -c 1 sipp -sf bench/sipp/uas.xml -i 127.0.0.1 -p 25080 -nostdin -max_socket 64 -l 1000000 -buff_size 8388608 >/dev/null 2>&1 &
UASPID=$!
sleep 0.5
GODEBUG=gctrace=1 taskset -c 0 "$OUT/benchproxy" -scenario relay -listen udp:127.0.0.1:25060 -target 127.0.0.1:25080 2>"$OUT"/proxy-$RATE-x2.log &
PPID2=$!
sleep 1
cd "$OUT"
taskset -c 1 sipp -sf "$ROOT"/bench/sipp/uac.xml -i 127.0.0.1 -p 25090 -nostdin -r $RATE -rp 1000 -m $N -l $((N*2)) -s bob \
  -recv_timeout 5000 -default_behaviors all,-abortunexp -max_socket 64 -trace_stat -stf stat-$RATE-1.csv -fd 1 \
  -buff_size 8388608 127.0.0.1:25060 > sipp-$RATE-1.out 2>&1
echo "first rc=$?"
taskset -c 1 sipp -sf "$ROOT"/bench/sipp/uac.xml -i 127.0.0.1 -p 25091 -nostdin -r $RATE -rp 1000 -m $N -l $((N*2)) -s bob \
  -recv_timeout 5000 -default_behaviors all,-abortunexp -max_socket 64 -trace_stat -stf stat-$RATE-2.csv -fd 1 \
  -buff_size 8388608 127.0.0.1:25060 > sipp-$RATE-2.out 2>&1
echo "sipp rc=$?"
kill $PPID2; wait $PPID2 2>/dev/null
kill $UASPID 2>/dev/null
for i in 1 2; do echo "run $i:"; grep -E "Successful call|Failed call" "sipp-$RATE-$i.out" | tail -2; done
grep "^gc " "proxy-$RATE-x2.log"
