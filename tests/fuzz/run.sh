#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target of BUILD (build-fuzz) for SECONDS each under
# ASan/UBSan, starting from tests/fuzz/corpus/<target>/ (copied: what a run finds stays in the
# work dir and does not grow the checked-in corpus). Fork mode keeps fuzzing after a finding, so
# one known defect does not hide the next. Prints executions and findings per target; exits 1
# if any target found a crash, leak, timeout or out-of-memory. Findings (the reproducing inputs
# and logs) are kept under BUILD/fuzz-findings/<target>/: replay one with the cc build's binary,
# e.g. build/fuzz/fuzz_config FILE.
set -u
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/fluke-fuzz-run-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OUT="$ROOT/$BUILD/fuzz-findings"
rm -rf "$OUT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export TMPDIR=$WORK # the targets' scratch files, also those of a run that crashed
rc=0 n=0
printf '%-18s %12s %8s %8s  %s\n' target executions exec/s corpus findings
for bin in "$ROOT/$BUILD"/fuzz/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] || continue
    t=$(basename "$bin")
    seeds="$ROOT/tests/fuzz/corpus/$t"
    [ -d "$seeds" ] || { echo "$t: no seed corpus $seeds"; rc=1; continue; }
    mkdir -p "$WORK/$t" "$OUT/$t"
    cp "$seeds"/* "$WORK/$t/"
    n0=$(ls "$WORK/$t" | wc -l)
    log="$OUT/$t/fuzz.log"
    (cd "$OUT/$t" && "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -artifact_prefix="$OUT/$t/" "$WORK/$t" > "$log" 2>&1)
    # Fork mode's progress lines: "#EXECS: cov: .. corp: .. exec/s: N oom/timeout/crash: a/b/c ..".
    last=$(grep -E '^#[0-9]+: ' "$log" | tail -n 1)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    otc=$(echo "$last" | sed -n 's/.*oom\/timeout\/crash: \([0-9\/]*\).*/\1/p')
    found=$(find "$OUT/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) | wc -l)
    n1=$(ls "$WORK/$t" | wc -l)
    if [ -z "$execs" ]; then
        printf '%-18s %12s %8s %8s  did not run (log: %s)\n' "$t" - - - "$log"; tail -n 5 "$log"; rc=1
        continue
    fi
    what="none"
    if [ "$found" -gt 0 ] || { [ -n "$otc" ] && [ "$otc" != 0/0/0 ]; }; then
        what="oom/timeout/crash $otc, $found inputs in $OUT/$t/"; rc=1
        # Each finding replayed alone: its first report line says what broke, and where.
        for f in $(ls "$OUT/$t" | grep -E '^(crash|leak|timeout|oom)-' | head -n 10); do
            "$bin" -timeout=10 -rss_limit_mb=2048 "$OUT/$t/$f" > "$OUT/$t/$f.log" 2>&1
            why=$(grep -m1 -E 'broken invariant|runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' \
                "$OUT/$t/$f.log" | sed 's/^==[0-9]*== *//')
            where=$(grep -m1 -E '^ +#[0-9]+ .* in (fl_|LLVMFuzzer)' "$OUT/$t/$f.log" | sed 's/^ *#[0-9]* 0x[0-9a-f]* in //')
            echo "    $f: ${why:-see $f.log}${where:+ (at $where)}"
        done > "$OUT/$t/summary"
    fi
    printf '%-18s %12s %8s %8s  %s\n' "$t" "$execs" $((execs / SECONDS_EACH)) "$n0->$n1" "$what"
    [ -s "$OUT/$t/summary" ] && cat "$OUT/$t/summary"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no libFuzzer targets in $ROOT/$BUILD/fuzz"; exit 1; }
exit $rc
