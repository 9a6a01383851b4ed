#!/usr/bin/env bash
# Runs every benchmark; each prints its own measurements and the ratio against its peer.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export FLUKE="$ROOT/$BUILD/fluke" FLUKE_TS="$ROOT/$BUILD/fluke-teststages" FLUKE_SRC="$ROOT"
rc=0
for b in "$ROOT/$BUILD"/bench/*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || rc=1
done
for s in "$ROOT"/tests/bench/*.sh; do
    [ "$(basename "$s")" = run.sh ] && continue
    echo "== $(basename "$s" .sh)"
    bash "$s" || rc=1
done
exit $rc
