#!/usr/bin/env bash
# Runs the test suite against one build directory: every unit binary, then (unless "unit" is
# given) every integration script. Prints one line per test file and a summary; exits non-zero
# if anything failed.
set -u
BUILD=${1:-build}
WHAT=${2:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export FLUKE="$ROOT/$BUILD/fluke" FLUKE_TS="$ROOT/$BUILD/fluke-teststages" FLUKE_SRC="$ROOT"
# Many short parallel regions on a 2-core runner: spinning OpenMP workers only steal time.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logdir="$ROOT/$BUILD/test-logs"
mkdir -p "$logdir"
pass=0 fail=0 failed=""
run_one() { # name, command...
    local name=$1; shift
    local t0=$(date +%s)
    if "$@" >"$logdir/$name.log" 2>&1; then
        pass=$((pass + 1)); printf '  ok    %-40s %3ss\n' "$name" $(( $(date +%s) - t0 ))
    else
        fail=$((fail + 1)); failed="$failed $name"
        printf '  FAIL  %-40s %3ss  (log: %s)\n' "$name" $(( $(date +%s) - t0 )) "$logdir/$name.log"
        tail -n 30 "$logdir/$name.log" | sed 's/^/        /'
    fi
}
echo "unit tests ($BUILD):"
for t in "$ROOT/$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" env CMOCKA_MESSAGE_OUTPUT=stdout "$t"
done
# WHAT=all: every integration script; WHAT=san: those marked "# sanitizer: yes" (the slow
# ones — 20 kill trials, 20,000-file inputs — run once, in the normal build).
if [ "$WHAT" != unit ]; then
    echo "integration tests ($BUILD):"
    for t in "$ROOT"/tests/integration/[!_]*.sh; do
        [ -f "$t" ] || continue
        [ "$WHAT" = san ] && ! grep -q '^# sanitizer: yes' "$t" && continue
        run_one "$(basename "$t" .sh)" bash "$t"
    done
fi
echo "$pass passed, $fail failed${failed:+:$failed}"
[ "$fail" -eq 0 ]
