# Shared helpers for the executor integration tests (sourced, not run).
# A check is ONE command: `check "..." [ a ] && [ b ]` checks only a (the && binds outside it);
# write `check "..." sh -c '...'` or two checks. tests/integration/lint.sh enforces this.
set -u
: "${FLUKE_TS:?run through tests/run.sh (FLUKE_TS unset)}"
T=$(mktemp -d "${TMPDIR:-/tmp}/fluke-it-XXXXXX")
# Checkouts in a test's store are read-only folders: only root could remove them without chmod.
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { # description, command...
    local d=$1; shift
    [ $# -gt 0 ] || { bad "$d (no command to check)"; return; }
    if "$@"; then ok "$d"; else bad "$d"; fi
}
skip() { echo "skipped: $*"; exit 77; }
# ran LOG ID: did the run log start stage ID?
ran() { grep -q "^\[fluke\] run    $2  " "$1"; }
cached() { grep -q "^\[fluke\] cached $2\$" "$1"; }
count_runs() { grep -c "^\[fluke\] run    " "$1" || true; }
# runs_exactly LOG ID...: the run started exactly these stages (any order), nothing else.
runs_exactly() {
    local log=$1 want got; shift
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    got=$(sed -n 's/^\[fluke\] run    \([^ ]*\) .*/\1/p' "$log" | sort | tr '\n' ' ')
    [ "$want" = "$got" ] || { echo "     ($log ran: $got; expected: $want)"; return 1; }
}
# all_cached LOG N: the run finished with exactly N stages, every one cached. (Counting "run"
# lines is not enough: a run that fails before starting anything also runs nothing.)
all_cached() { grep -q "^\[fluke\] $2 stages: 0 ran, $2 cached, 0 failed, 0 skipped " "$1"; }
# line_of LOG ERE: line number of the first line matching ERE (empty when none).
line_of() { grep -En -m1 -- "$2" "$1" | cut -d: -f1; }
# before LOG ERE1 ERE2: both events were logged and the first ERE1 precedes the first ERE2.
before() {
    local a b
    a=$(line_of "$1" "$2") b=$(line_of "$1" "$3")
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ] && return 0
    echo "     ($1: '$2' at line ${a:-none}, '$3' at line ${b:-none})"
    return 1
}
# no_overlap LOG ID1 ID2: both stages started and finished, one ending before the other started.
no_overlap() {
    local seq
    seq=$(grep -E "^\[fluke\] (run |done)   ($2|$3) " "$1" | cut -c9-12 | tr -d ' \n')
    [ "$seq" = rundonerundone ] || { echo "     ($1: events $seq)"; return 1; }
}
# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds (0), or gives up once SECONDS of
# wall time have passed (1). The limit only bounds a hang; passing never depends on it.
wait_for() {
    local end=$((SECONDS + $1 + 1)); shift
    while :; do
        "$@" && return 0
        [ $SECONDS -lt $end ] || return 1
        sleep 0.02
    done
}
finish() { [ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }; }
