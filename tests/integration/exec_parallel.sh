# -j 2 overlaps independent stages (shown by the logged start and end order, not a clock), and
# two concurrent `fluke run` on one store both finish correctly with each stage run once.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo "parallel" > in.txt
cat > p.json <<'J'
{ "name": "p",
  "text": {
    "x": {"op": "upper", "from": "file:in.txt", "delay_ms": 400},
    "y": {"op": "reverse", "from": "file:in.txt", "delay_ms": 400},
    "z": {"op": "concat", "from": ["x", "y"], "publish": true}
  } }
J
$F run p.json -j 2 > j2.log 2>&1; rc=$?
check "-j 2 run succeeds (rc=$rc)" [ $rc -eq 0 ]
check "-j 2: x starts before y ends" before j2.log '^\[fluke\] run    x ' '^\[fluke\] done   y '
check "-j 2: y starts before x ends" before j2.log '^\[fluke\] run    y ' '^\[fluke\] done   x '
rm -rf .fluke out
$F run p.json -j 1 > j1.log 2>&1; rc=$?
check "-j 1 run succeeds (rc=$rc)" [ $rc -eq 0 ]
check "-j 1: x and y run one after the other" no_overlap j1.log x y
# A stage needing more threads than remain waits for them (resource tags).
cat > r.json <<'J'
{ "name": "r", "resources": {"threads": 2},
  "text": {
    "x": {"op": "upper", "from": "file:in.txt", "delay_ms": 300, "threads": 2},
    "y": {"op": "reverse", "from": "file:in.txt", "delay_ms": 300, "threads": 2}
  } }
J
$F run r.json -j 2 > res.log 2>&1; rc=$?
check "resource-tag run succeeds (rc=$rc)" [ $rc -eq 0 ]
check "resource tags: two 2-thread stages on 2 threads do not overlap" no_overlap res.log x y

# Two concurrent runs on one store.
rm -rf .fluke out
$F run p.json > c1.log 2>&1 &
p1=$!
$F run p.json > c2.log 2>&1 &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
check "both concurrent runs succeed (rc $r1 and $r2)" [ "$r1 $r2" = "0 0" ]
runs=$(( $(count_runs c1.log) + $(count_runs c2.log) ))
check "each stage ran once across both runs ($runs runs)" [ "$runs" -eq 3 ]
check "the output is right" [ "$(cat out/p/z.txt)" = "$(printf 'PARALLEL\n\nlellarap')" ]
$F verify p.json > v.log 2>&1
check "verify clean after concurrent runs" grep -q ' 0 corrupt' v.log
finish
