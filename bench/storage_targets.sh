#!/usr/bin/env bash
# storage_targets.sh - runs the six storage-engine targets of issue 6, memstashd
# against Debian's memcached 1.6 with the same flags in the same run.
#
#   1, 2  bench/storage_fill.py       items stored until eviction; items per MiB of RSS
#   3     bench/storage_missratio.py  cache-aside miss ratio, Zipf 1.0 / 0.8
#   4     bench/storage_expiry.py     memory of expired items reused within 2 s
#   5     bench/storage_calcify.py    100-byte -> 1000-byte switch, no calcification
#   6     bench/storage_hashgrow.py   request latency while the hash table grows
#
# Each script starts and stops its own servers (by pid) on free loopback ports,
# alternates memcached and memstashd, prints medians and ratios, and writes CSV
# files under bench/results/. Benchmarks, not tests: nothing is asserted.
#
#   bench/storage_targets.sh            # full: 3 rounds where noise matters (~30 min)
#   bench/storage_targets.sh --quick    # 1 round, smaller runs (~5 min)
#   MEMSTASHD=/path/to/memstashd bench/storage_targets.sh
set -euo pipefail
cd "$(dirname "$0")"

quick=()
if [ "${1:-}" = "--quick" ]; then
    quick=(--quick)
fi
PY=${PYTHON:-/usr/bin/python3}
for b in "${MEMSTASHD:-../build/src/server/memstashd}" "${MEMCACHED:-/usr/bin/memcached}"; do
    if [ ! -x "$b" ]; then
        echo "missing server binary: $b (build first, or install memcached)" >&2
        exit 1
    fi
done
for s in storage_fill storage_missratio storage_expiry storage_calcify storage_hashgrow; do
    echo "=== $s ${quick[*]:-}"
    "$PY" "$s.py" "${quick[@]}"
    echo
done
