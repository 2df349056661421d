#!/usr/bin/env bash
# compare_tls.sh - TLS handshakes per second, memstashd -Z against Debian's
# memcached -Z, same certificate, same flags, alternating A B A B.
#
# `openssl s_time -new` opens a fresh TLS connection (full handshake, no
# resumption) and fetches nothing, as fast as it can for SECONDS_PER_RUN;
# the rate is its connection count over its real seconds. A benchmark, not
# a test.
#
#   bench/compare_tls.sh                     # ROUNDS=3 SECONDS_PER_RUN=5
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
MEMSTASHD=${MEMSTASHD:-build/src/server/memstashd}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
PORT=${PORT:-22135}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$DIR/key.pem" -out "$DIR/cert.pem" \
    -days 1 -subj /CN=127.0.0.1 >/dev/null 2>&1
userflag=""
[ "$(id -u)" = 0 ] && userflag="-u root"
TLSOPT="ssl_chain_cert=$DIR/cert.pem,ssl_key=$DIR/key.pem"

run_one() { # name binary
    "$2" -p "$PORT" -U 0 -l 127.0.0.1 -t 2 $userflag -Z -o "$TLSOPT" 2>/dev/null &
    local pid=$!
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
        sleep 0.1
    done
    local rate
    rate=$(openssl s_time -connect 127.0.0.1:"$PORT" -new -time "$SECONDS_PER_RUN" 2>/dev/null |
           awk '/real seconds/ {printf "%.1f", $1 / $4}' | head -1)
    kill "$pid"
    wait "$pid" || true
    echo "$1,$rate"
}

for r in $(seq "$ROUNDS"); do
    run_one memstashd "$MEMSTASHD"
    run_one memcached "$MEMCACHED"
done | tee "$DIR/runs.csv"
python3 - "$DIR/runs.csv" <<'PYEOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rate = line.strip().split(",")
    runs.setdefault(name, []).append(float(rate))
med = {k: statistics.median(v) for k, v in runs.items()}
for k, v in runs.items():
    print(f"{k:10s} median handshakes/s {med[k]:10.1f}  runs {v}")
print(f"ratio memstashd/memcached: {med['memstashd'] / med['memcached']:.3f}")
PYEOF
