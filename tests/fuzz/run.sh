#!/usr/bin/env bash
# run.sh - builds the libFuzzer drivers and runs each for a bounded time.
#
#   tests/fuzz/run.sh <build-dir> <seconds-per-driver>
#
# Configures tests/fuzz/ (a standalone CMake project) with clang into
# <build-dir> and builds it. Then, for every driver: replays each file under
# tests/fuzz/regressions/<driver>/ once (bugs that were fixed stay fixed),
# and fuzzes for <seconds-per-driver> seconds on a fresh copy of
# tests/fuzz/corpus/<driver>/ (the repository's corpus is never modified)
# with tests/fuzz/<driver>.dict. Crash reproducers land in
# <build-dir>/artifacts/<driver>/ and the log in <build-dir>/logs/.
#
# Prints one line per driver and ends with "N passed, M failed"; exits
# non-zero when any driver crashed, timed out, ran out of memory or failed a
# regression replay.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 <build-dir> <seconds-per-driver>" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$1
secs=$2
case $secs in
'' | *[!0-9]*)
    echo "seconds-per-driver must be a whole number" >&2
    exit 2
    ;;
esac
mkdir -p "$build"
build=$(cd "$build" && pwd)

CC=${FUZZ_CC:-clang}
if ! CC=$CC cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "configure failed" >&2
    exit 1
fi
# Keep going past a driver that does not compile (the client module is young):
# that driver fails below and the others still run. Old binaries are removed
# first so a failed build cannot leave a stale one behind.
drivers="fuzz_text fuzz_meta fuzz_binary fuzz_server"
if [ -f "$here/../../src/client/reply.c" ]; then
    drivers="$drivers fuzz_reply"
fi
for driver in $drivers; do
    rm -f "$build/$driver"
done
jobs=$(nproc 2>/dev/null || echo 2)
if ! cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1; then
    for driver in $drivers; do
        cmake --build "$build" -j "$jobs" --target "$driver" >>"$build/build.log" 2>&1
    done
fi

mkdir -p "$build/logs" "$build/artifacts" "$build/corpus"
passed=0
failed=0
for driver in $drivers; do
    bin=$build/$driver
    if [ ! -x "$bin" ]; then
        failed=$((failed + 1))
        printf '%-4s %-12s not built (see %s)\n' FAIL "$driver" "$build/build.log"
        continue
    fi
    log=$build/logs/$driver.log
    : >"$log"
    ok=1
    why=""

    # Regressions first: each reproducer runs once, directly.
    nreg=0
    if [ -d "$here/regressions/$driver" ]; then
        for f in "$here/regressions/$driver"/*; do
            [ -f "$f" ] || continue
            case $(basename "$f") in README* | .*) continue ;; esac
            nreg=$((nreg + 1))
            if ! "$bin" "$f" >>"$log" 2>&1; then
                ok=0
                why="$why regression $(basename "$f") fails;"
            fi
        done
    fi

    # Then fuzzing, on a copy of the corpus.
    corpus=$build/corpus/$driver
    rm -rf "$corpus"
    mkdir -p "$corpus" "$build/artifacts/$driver"
    if [ -d "$here/corpus/$driver" ]; then
        cp "$here/corpus/$driver"/* "$corpus"/ 2>/dev/null
    fi
    dict=()
    if [ -f "$here/$driver.dict" ]; then
        dict=("-dict=$here/$driver.dict")
    fi
    # 0 seconds: run the corpus once (libFuzzer reads max_total_time=0 as "forever").
    limit=("-max_total_time=$secs")
    if [ "$secs" -eq 0 ]; then
        limit=("-runs=0")
    fi
    "$bin" "$corpus" "${dict[@]}" -max_len=4096 -timeout=5 -rss_limit_mb=2048 "${limit[@]}" \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$driver/" >>"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        ok=0
        why="$why libFuzzer exit $rc;"
    fi

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ "$ok" = 1 ]; then
        passed=$((passed + 1))
        status=PASS
    else
        failed=$((failed + 1))
        status=FAIL
    fi
    printf '%-4s %-12s regressions=%s runs=%s exec/s=%s cov=%s ft=%s corpus=%s%s\n' \
        "$status" "$driver" "$nreg" "${runs:-0}" "${speed:-0}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "${why:+ ($why see $log)}"
    if [ "$ok" != 1 ]; then
        grep -E 'ERROR: |SUMMARY: |fuzz invariant failed|storage_check|Test unit written' \
            "$log" | head -8 | sed 's/^/    /'
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
