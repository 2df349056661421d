#!/usr/bin/env bash
# run_callgrind.sh - builds the micro benchmarks, runs them natively (ops/s), then
# under callgrind at two counts per case and prints instructions per operation:
# (Ir at N2 - Ir at N1) / (N2 - N1), so setup (building buffers, filling the
# cache) cancels out. valgrind is in BENCH_PKGS.
#
#   bench/micro/run_callgrind.sh                 # BUILD=build-bench N1=20000 N2=120000
#   CASES="text_get1 get_hit" bench/micro/run_callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench}
N1=${N1:-20000}
N2=${N2:-120000}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMSTASH_TESTS=OFF -DMEMSTASH_BENCH=ON \
    >/dev/null
cmake --build "$BUILD" -j2 --target bench_proto bench_storage >/dev/null
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ir() { # binary case n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$1" -n "$3" "$2" \
        >/dev/null 2>"$TMP/cg.err"
    awk '/^summary:/ {print $2}' "$TMP/cg.out"
}
for bin in bench_proto bench_storage; do
    "$BUILD/bench/micro/$bin"
done
echo
printf '%-24s %14s\n' case "instr/op"
for bin in bench_proto bench_storage; do
    cases=${CASES:-$("$BUILD/bench/micro/$bin" -n 1 | awk '{print $1}')}
    for c in $cases; do
        "$BUILD/bench/micro/$bin" -n 1 "$c" | grep -q . || continue
        a=$(ir "$BUILD/bench/micro/$bin" "$c" "$N1")
        b=$(ir "$BUILD/bench/micro/$bin" "$c" "$N2")
        awk -v a="$a" -v b="$b" -v c="$c" -v n="$((N2 - N1))" \
            'BEGIN {printf "%-24s %14.1f\n", c, (b - a) / n}'
    done
done
