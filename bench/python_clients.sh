#!/usr/bin/env bash
# python_clients.sh - the memstash Python module against python-memcached and
# pylibmc on one memstashd (bench/python_clients.py): ops/s of get, set,
# get_multi(100) and set_multi(100), clients alternating A B C per round,
# medians and ratios printed, every measurement saved as CSV under
# bench/results/. Starts the server on a free loopback port and stops it by
# pid. A benchmark, not a test: make test does not run it.
#
#   bench/python_clients.sh                          # BUILD=build ROUNDS=15 SECONDS_PER=0.3
#   BUILD=/tmp/build ROUNDS=31 SECONDS_PER=0.5 VALUE_SIZE=100 bench/python_clients.sh
#   PIN=cross bench/python_clients.sh   # server on CPU 0, clients on CPU 1
#   PIN=same bench/python_clients.sh    # server and clients both on CPU 0
#
# Single-key calls are one loopback round trip each, whose cost depends on
# whether the scheduler puts client and server on the same core (a context
# switch) or on two (a cross-core wake-up, tens of µs on a VM). Unpinned runs
# mix the two; PIN makes the placement explicit.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-15}
SECONDS_PER=${SECONDS_PER:-0.3}
VALUE_SIZE=${VALUE_SIZE:-100}
SERVER_FLAGS=${SERVER_FLAGS:-"-t 2 -m 64 -U 0 -l 127.0.0.1"}
PIN=${PIN:-none}
case "$PIN" in
none) server_pin=() client_pin=() ;;
same) server_pin=(taskset -c 0) client_pin=(taskset -c 0) ;;
cross) server_pin=(taskset -c 0) client_pin=(taskset -c 1) ;;
*)
    echo "python_clients: PIN must be none, same or cross" >&2
    exit 2
    ;;
esac
MEMSTASHD=${MEMSTASHD:-$BUILD/src/server/memstashd}
PYMOD=${MEMSTASH_PYTHONPATH:-$BUILD/python}

if [ ! -x "$MEMSTASHD" ] || ! ls "$PYMOD"/memstash*.so >/dev/null 2>&1; then
    echo "python_clients: build first (cmake -S . -B $BUILD && cmake --build $BUILD)" >&2
    exit 2
fi
if ! /usr/bin/python3 -c 'import memcache, pylibmc' 2>/dev/null; then
    echo "python_clients: needs python3-memcache and python3-pylibmc (make deps-bench)" >&2
    exit 2
fi

userflag=""
[ "$(id -u)" = 0 ] && userflag="-u root"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# shellcheck disable=SC2086
"${server_pin[@]}" "$MEMSTASHD" $userflag $SERVER_FLAGS -p "$port" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do
    if /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

mkdir -p bench/results
out=bench/results/python_clients-$(date -u +%Y%m%dT%H%M%SZ).csv
echo "# placement: PIN=$PIN"
MEMSTASH_PYTHONPATH=$PYMOD "${client_pin[@]}" /usr/bin/python3 bench/python_clients.py --server "127.0.0.1:$port" \
    --rounds "$ROUNDS" --seconds "$SECONDS_PER" --value-size "$VALUE_SIZE" --csv "$out"
