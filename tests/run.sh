#!/usr/bin/env bash
# Runs the test suite against one build directory: every unit binary, then (unless "unit" is
# given) every integration script. Prints one line per test file and a summary; exits non-zero
# if anything failed.
#
# Skips (COMMON convention): a unit test that cannot run prints "skipped: <why>" and calls
# cmocka's skip(), which logs "[  SKIPPED ] <name>"; an integration script that cannot run prints
# "skipped: <why>" and exits 77. Both are counted and listed as skipped, never as passed.
#
# CPU independence: in the normal build (not "san"), the numeric unit tests (those that include
# tests/unit/support/numcmp.h or say "numeric test: rerun") run a second time under an OpenBLAS
# kernel set other than the one this CPU selects (OPENBLAS_CORETYPE: Haswell, and SkylakeX where
# /proc/cpuinfo has AVX-512; Sandybridge when neither differs, e.g. on an AVX2-only CPU whose own
# kernels are Haswell's or Zen's), so a tolerance that only holds on one CPU's kernels fails here. FLUKE_CPU_RERUN=0 turns it off; FLUKE_CPU_RERUN="A B" names
# the core types to use instead. A core type the CPU cannot run is never forced (OpenBLAS 0.3.21
# dies with SIGILL on SkylakeX kernels without AVX-512 instead of falling back).
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
pass=0 fail=0 skip=0 failed="" skipped=""

# The unit tests a unit log reports skipped (cmocka lists each twice: once when it runs, once in
# the summary; the summary's count line is not a name).
skipped_in() {
    sed -n 's/^\[  SKIPPED \] //p' "$1" | grep -v '^[0-9][0-9]* test(s)' | sort -u
}

run_one() { # kind (unit|integration), name, command...
    local kind=$1 name=$2; shift 2
    local t0 rc log="$logdir/$name.log"
    t0=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ "$kind" = integration ] && [ "$rc" -eq 77 ]; then
        skip=$((skip + 1)); skipped="$skipped $name"
        printf '  skip  %-40s %3ss  (%s)\n' "$name" "$dt" \
            "$(grep -m1 '^skipped:' "$log" || echo 'exit 77, no reason given')"
    elif [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
        local s="" n
        [ "$kind" = unit ] && s=$(skipped_in "$log" | tr '\n' ' ')
        if [ -n "$s" ]; then
            n=$(echo $s | wc -w)
            skip=$((skip + n))
            local one
            for one in $s; do skipped="$skipped $name:$one"; done
            printf '  ok    %-40s %3ss  (%d skipped: %s)\n' "$name" "$dt" "$n" "${s% }"
        else
            printf '  ok    %-40s %3ss\n' "$name" "$dt"
        fi
    else
        fail=$((fail + 1)); failed="$failed $name"
        local why=""
        [ "$rc" -eq 132 ] && why=", illegal instruction"
        printf '  FAIL  %-40s %3ss  (exit %d%s; log: %s)\n' "$name" "$dt" "$rc" "$why" "$log"
        tail -n 30 "$log" | sed 's/^/        /'
    fi
}

echo "unit tests ($BUILD):"
for t in "$ROOT/$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one unit "$(basename "$t")" env CMOCKA_MESSAGE_OUTPUT=stdout "$t"
done

# ---- the numeric unit tests again, under another OpenBLAS kernel set ---------------------------
numeric_tests() {
    local src
    for src in "$ROOT"/tests/unit/test_*.c; do
        grep -q -E 'tests/unit/support/numcmp\.h|numeric test: rerun' "$src" || continue
        src=$(basename "$src" .c)
        [ -x "$ROOT/$BUILD/tests/$src" ] && echo "$src"
    done
}
# The core type OpenBLAS selects (or is told) in this environment: it says so at load time.
core_of() { # [CORETYPE]: prints what OpenBLAS would use, empty when unknown
    if [ -n "${1:-}" ]; then
        OPENBLAS_CORETYPE=$1 OPENBLAS_VERBOSE=2 "$FLUKE" --help 2>&1 | sed -n 's/^Core: //p' | head -n 1
    else
        OPENBLAS_VERBOSE=2 "$FLUKE" --help 2>&1 | sed -n 's/^Core: //p' | head -n 1
    fi
}
has_flags() { # flag...: every flag is in /proc/cpuinfo's first "flags" line
    local flags f
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for f in "$@"; do case "$flags" in *" $f "*) ;; *) return 1 ;; esac; done
}
runnable() { # CORETYPE: this CPU has the instructions that kernel set uses (unknown: no)
    case "$1" in
        SkylakeX|Cooperlake|SapphireRapids) has_flags avx512f avx512bw avx512dq avx512vl avx2 fma ;;
        Haswell|Zen) has_flags avx2 fma ;;
        Sandybridge) has_flags avx ;;
        Bulldozer|Piledriver|Steamroller|Excavator) has_flags avx fma4 ;;
        Dunnington) has_flags sse4_1 ;;
        Atom|Core2|Penryn) has_flags ssse3 ;;
        Barcelona) has_flags sse4a ;;
        Nehalem|Prescott) has_flags sse3 ;;
        *) return 1 ;;
    esac
}
cpu_rerun() {
    local own want="" ct got t
    if [ ! -x "$FLUKE" ]; then
        echo "numeric unit tests under another OpenBLAS core type: skipped ($FLUKE missing)"
        return
    fi
    own=$(core_of "${OPENBLAS_CORETYPE:-}")
    if [ "${FLUKE_CPU_RERUN:-1}" = 1 ]; then
        # OpenBLAS's Zen target runs the Haswell sgemm kernels (same figures, measured), so on
        # an AVX2 AMD CPU Haswell would repeat the first run: Sandybridge (AVX, no FMA) then.
        local fam=$own
        [ "$own" = Zen ] && fam=Haswell
        for ct in Haswell SkylakeX; do
            [ "$ct" = SkylakeX ] && ! has_flags avx512f && continue
            [ "$ct" != "$fam" ] && runnable "$ct" && want="$want $ct"
        done
        [ -z "$want" ] && [ "$own" != Sandybridge ] && runnable Sandybridge && want=Sandybridge
    else
        want=$FLUKE_CPU_RERUN
    fi
    [ -z "$want" ] && echo "numeric unit tests under another OpenBLAS core type: none applies (this CPU's own: ${own:-unknown})"
    local tests
    tests=$(numeric_tests)
    for ct in $want; do
        if ! runnable "$ct"; then
            echo "numeric unit tests under OPENBLAS_CORETYPE=$ct: skipped (not known to run on this CPU)"
            continue
        fi
        got=$(core_of "$ct")
        if [ "$got" != "$ct" ]; then
            echo "numeric unit tests under OPENBLAS_CORETYPE=$ct: skipped (OpenBLAS uses '${got:-?}' instead)"
            continue
        fi
        echo "numeric unit tests again, OPENBLAS_CORETYPE=$ct (this CPU's own: ${own:-unknown}):"
        for t in $tests; do
            run_one unit "$t@$ct" env OPENBLAS_CORETYPE="$ct" CMOCKA_MESSAGE_OUTPUT=stdout "$ROOT/$BUILD/tests/$t"
        done
    done
}
[ "$WHAT" != san ] && [ "${FLUKE_CPU_RERUN:-1}" != 0 ] && cpu_rerun

# WHAT=all: every integration script; WHAT=san: those marked "# sanitizer: yes" (the slow
# ones — 20 kill trials, 20,000-file inputs — run once, in the normal build).
if [ "$WHAT" != unit ]; then
    echo "integration tests ($BUILD):"
    for t in "$ROOT"/tests/integration/[!_]*.sh; do
        [ -f "$t" ] || continue
        [ "$WHAT" = san ] && ! grep -q '^# sanitizer: yes' "$t" && continue
        run_one integration "$(basename "$t" .sh)" bash "$t"
    done
fi
echo "$pass passed, $skip skipped, $fail failed${failed:+:$failed}"
[ -n "$skipped" ] && echo "skipped:$skipped"
[ "$fail" -eq 0 ]
