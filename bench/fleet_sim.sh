#!/usr/bin/env bash
# fleet_sim.sh - builds bench/fleet_sim (the CMake target, linked against the
# in-tree libmemstash static library and its real placement code) and runs it:
# key spread and key movement on node loss/addition for ketama, weighted
# ketama, modula and python placement over a simulated fleet. Prints a
# Markdown table and saves the CSV under bench/results/. No servers, no I/O.
#
#   bench/fleet_sim.sh                               # BUILD=build, 100 nodes, 1M keys
#   BUILD=/tmp/b bench/fleet_sim.sh --nodes 50 --keys 2000000 --trials 10
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMSTASH_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD" -j 2 --target fleet_sim >/dev/null

mkdir -p bench/results
CSV=bench/results/fleet_sim-$(date -u +%Y%m%d-%H%M%S).csv
"$BUILD/bench/fleet_sim" --csv "$CSV" "$@"
echo
echo "csv: $CSV"
