#!/usr/bin/env bash
# compare_memcaslap.sh - memstashd against Debian's memcached, same flags, same load.
#
# memcaslap (libmemcached-tools) drives a 9:1 get:set mix with 30-byte keys and
# 100-byte values. The two servers alternate A B A B ... for ROUNDS rounds in
# one run, each started fresh with identical flags, so machine noise falls on
# both. Prints each run, then medians and the memstashd/memcached ratio.
# A benchmark, not a test: it asserts nothing.
#
#   bench/compare_memcaslap.sh            # ROUNDS=3 SECONDS_PER_RUN=10
#   ROUNDS=5 SECONDS_PER_RUN=20 CONCURRENCY=64 bench/compare_memcaslap.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONCURRENCY=${CONCURRENCY:-64}
THREADS=${THREADS:-2}
SERVER_FLAGS=${SERVER_FLAGS:-"-t 2 -m 1024 -c 4096 -U 0 -l 127.0.0.1"}
MEMSTASHD=${MEMSTASHD:-build/src/server/memstashd}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
PORT=${PORT:-22122}
OUT=bench/results
mkdir -p "$OUT"
CSV="$OUT/memcaslap-$(date +%Y%m%d-%H%M%S).csv"
CFG=$(mktemp)
trap 'rm -f "$CFG"' EXIT
cat > "$CFG" <<'CFGEOF'
key
30 30 1
value
100 100 1
cmd
0 0.1
1 0.9
CFGEOF

userflag=""
[ "$(id -u)" = 0 ] && userflag="-u root"

run_one() { # name binary
    local name=$1 bin=$2 pid tps
    $bin -p "$PORT" $SERVER_FLAGS $userflag &
    pid=$!
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
        sleep 0.1
    done
    tps=$(memcaslap -s 127.0.0.1:"$PORT" -T "$THREADS" -c "$CONCURRENCY" -t "${SECONDS_PER_RUN}s" \
          -F "$CFG" 2>&1 | awk '/^Run time:/ {for (i = 1; i <= NF; i++) if ($i == "TPS:") print $(i+1)}' | tail -1)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$name,${tps:-0}" | tee -a "$CSV"
}

echo "server,tps" > "$CSV"
for r in $(seq "$ROUNDS"); do
    run_one memcached "$MEMCACHED"
    run_one memstashd "$MEMSTASHD"
done

python3 - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for name in ("memcached", "memstashd"):
    vals = [float(r["tps"]) for r in rows if r["server"] == name]
    med[name] = statistics.median(vals)
    print(f"{name:10s} median TPS {med[name]:12.0f}  runs {vals}")
if med["memcached"] > 0:
    print(f"ratio memstashd/memcached (median TPS): {med['memstashd'] / med['memcached']:.3f}")
print(f"raw results: {sys.argv[1]}")
PYEOF
