#!/usr/bin/env bash
# client_mget.sh - get_multi of 100 keys over 3 local memstashd: libmemstash
# (mst_get_multi) against libmemcached (memcached_mget + fetch), as keys/s.
#
# Builds bench/client_mget.c against the build tree's libmemstash and the
# system libmemcached (installs libmemcached-dev if it is missing: only the
# benchmark links it, never the library), starts three memstashd on free
# loopback ports, runs alternating rounds, prints medians and the ratio,
# and stops the servers by pid. A benchmark, not a test: make test does
# not run it.
#
#   bench/client_mget.sh                     # BUILD=build ROUNDS=7 ITERS=2000
#   BUILD=/tmp/build ROUNDS=9 ITERS=3000 NKEYS=100 VALUE_SIZE=100 bench/client_mget.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-7}
ITERS=${ITERS:-2000}
NKEYS=${NKEYS:-100}
VALUE_SIZE=${VALUE_SIZE:-100}
SERVER_FLAGS=${SERVER_FLAGS:-"-t 1 -m 64 -U 0 -l 127.0.0.1"}
MEMSTASHD=${MEMSTASHD:-$BUILD/src/server/memstashd}
LIBDIR=$BUILD/src/client

if [ ! -x "$MEMSTASHD" ] || [ ! -e "$LIBDIR/libmemstash.so" ]; then
    echo "client_mget: build first (cmake -S . -B $BUILD && cmake --build $BUILD)" >&2
    exit 2
fi
if ! pkg-config --exists libmemcached 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y libmemcached-dev
fi

BIN=$BUILD/bench/client_mget
mkdir -p "$(dirname "$BIN")"
cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude bench/client_mget.c -o "$BIN" \
   -L"$LIBDIR" -Wl,-rpath,"$(cd "$LIBDIR" && pwd)" -lmemstash \
   $(pkg-config --cflags --libs libmemcached)

userflag=""
[ "$(id -u)" = 0 ] && userflag="-u root"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

servers=""
for _ in 1 2 3; do
    port=$(free_port)
    # shellcheck disable=SC2086
    "$MEMSTASHD" -p "$port" $SERVER_FLAGS $userflag &
    pids+=($!)
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    servers="${servers:+$servers,}127.0.0.1:$port"
done

"$BIN" "$servers" "$ROUNDS" "$ITERS" "$NKEYS" "$VALUE_SIZE"
