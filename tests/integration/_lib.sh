# Shared helpers for the executor integration tests (sourced, not run).
set -u
: "${FLUKE_TS:?run through tests/run.sh (FLUKE_TS unset)}"
T=$(mktemp -d /tmp/fluke-it-XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { # description, command...
    local d=$1; shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
# ran LOG ID: did the run log start stage ID?
ran() { grep -q "^\[fluke\] run    $2  " "$1"; }
cached() { grep -q "^\[fluke\] cached $2\$" "$1"; }
count_runs() { grep -c "^\[fluke\] run    " "$1" || true; }
finish() { [ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }; }
