#!/usr/bin/env bash
# server_callgrind.sh - user-space instructions per request in memstashd (or
# memcached), measured with callgrind over a bounded workload.
#
# Starts the server under valgrind --tool=callgrind, preloads the keys, zeroes
# the counters (callgrind_control -z), runs one `memstash bench --threads`
# workload, dumps, and divides the instructions by the requests the server
# answered (cmd_get + cmd_set deltas from `stats`). Kernel time is not in it:
# syscalls per request come from strace -c (see docs/performance.md).
# Prints "instr/request" and the top functions (inclusive) per request.
#
#   bench/perf/server_callgrind.sh                          # get, 1 key, 50 conns, rate 3000/s
#   WORKLOAD="--pipeline 16 --connections 8" bench/perf/server_callgrind.sh
#   SERVER=/usr/bin/memcached bench/perf/server_callgrind.sh
#   KEEP=/tmp/get1.cg bench/perf/server_callgrind.sh   # then callgrind_annotate /tmp/get1.cg
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVER=${SERVER:-build/src/server/memstashd}
CLI=${MEMSTASH:-build/src/cli/memstash}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
SECS=${SECS:-3}
WORKLOAD=${WORKLOAD:-"--connections 50 --rate 3000"}
TOP=${TOP:-25}
OUT=$(mktemp -d)
user=""
[ "$(id -u)" = 0 ] && user="-u root"
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" "$SERVER" -p "$PORT" \
    -t 2 -m 1024 -c 4096 -U 0 -l 127.0.0.1 $user 2>"$OUT/vg.err" &
VPID=$!
cleanup() { kill "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
for _ in $(seq 100); do
    kill -0 "$VPID" 2>/dev/null || { cat "$OUT/vg.err" >&2; exit 1; }
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.2
done
stat_of() { # name -> value
    python3 - "$PORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats\r\n")
d = b""
while not d.endswith(b"END\r\n"):
    d += s.recv(65536)
for line in d.decode().split("\r\n"):
    p = line.split()
    if len(p) == 3 and p[1] == sys.argv[2]:
        print(p[2])
PY
}
"$CLI" -s 127.0.0.1:"$PORT" bench --threads 1 --connections 1 --time 1 --keys 20000 \
    --ratio 1:0 >/dev/null
g0=$(stat_of cmd_get); s0=$(stat_of cmd_set)
callgrind_control -z "$VPID" >/dev/null
"$CLI" -s 127.0.0.1:"$PORT" bench --threads 1 --time "$SECS" --keys 20000 --no-prefill \
    --ratio 1:0 $WORKLOAD | grep -E "^ops|^latency"
callgrind_control -d "$VPID" >/dev/null
g1=$(stat_of cmd_get); s1=$(stat_of cmd_set)
reqs=$(( (g1 - g0) + (s1 - s0) ))
sleep 0.5
f=$(ls -t "$OUT"/cg.* | head -1)
# The dump must come from our server (callgrind_control matches other runs too).
grep -q "^pid: $VPID\$" "$f" || { echo "dump $f is not from pid $VPID" >&2; exit 1; }
echo "profiled: $(grep -m1 -o '/[^ ]*/memstashd$\|/[^ ]*/memcached$' "$f") (pid $VPID)"
[ -n "${KEEP:-}" ] && cp "$f" "$KEEP" # KEEP=file keeps the profile for callgrind_annotate
total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "requests: $reqs  instructions: $total  instr/request: $(awk -v t="$total" -v r="$reqs" 'BEGIN {printf "%.0f", t / r}')"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | awk -v r="$reqs" -v top="$TOP" '
    /^-+$/ {sep++; next}
    sep >= 3 && NF >= 2 && n < top {
        gsub(",", "", $1); v = $1 + 0; if (v == 0) next
        $1 = ""; printf "%10.0f  %s\n", v / r, $0; n++ }'
