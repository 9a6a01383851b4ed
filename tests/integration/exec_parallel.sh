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
$F run p.json -j 2 > j2.log 2>&1
# line numbers of the events
lx=$(grep -n '^\[fluke\] run    x ' j2.log | cut -d: -f1)
ly=$(grep -n '^\[fluke\] run    y ' j2.log | cut -d: -f1)
dx=$(grep -n '^\[fluke\] done   x ' j2.log | cut -d: -f1)
dy=$(grep -n '^\[fluke\] done   y ' j2.log | cut -d: -f1)
first_done=$(( dx < dy ? dx : dy ))
check "-j 2: x and y both start before either ends" [ "$lx" -lt "$first_done" ] && [ "$ly" -lt "$first_done" ]
rm -rf .fluke out
$F run p.json -j 1 > j1.log 2>&1
lx=$(grep -n '^\[fluke\] run    x ' j1.log | cut -d: -f1)
ly=$(grep -n '^\[fluke\] run    y ' j1.log | cut -d: -f1)
dx=$(grep -n '^\[fluke\] done   x ' j1.log | cut -d: -f1)
check "-j 1: y starts after x ends" [ "$ly" -gt "$dx" ]
# A stage needing more threads than remain waits for them (resource tags).
cat > r.json <<'J'
{ "name": "r", "resources": {"threads": 2},
  "text": {
    "x": {"op": "upper", "from": "file:in.txt", "delay_ms": 300, "threads": 2},
    "y": {"op": "reverse", "from": "file:in.txt", "delay_ms": 300, "threads": 2}
  } }
J
$F run r.json -j 2 > res.log 2>&1
ly=$(grep -n '^\[fluke\] run    y ' res.log | cut -d: -f1)
dx=$(grep -n '^\[fluke\] done   x ' res.log | cut -d: -f1)
check "resource tags: two 2-thread stages on 2 threads do not overlap" [ "$ly" -gt "$dx" ]

# Two concurrent runs on one store.
rm -rf .fluke out
$F run p.json > c1.log 2>&1 &
p1=$!
$F run p.json > c2.log 2>&1 &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
check "both concurrent runs succeed" [ $r1 -eq 0 ] && [ $r2 -eq 0 ]
runs=$(( $(count_runs c1.log) + $(count_runs c2.log) ))
check "each stage ran once across both runs ($runs runs)" [ "$runs" -eq 3 ]
check "the output is right" [ "$(cat out/p/z.txt)" = "$(printf 'PARALLEL\n\nlellarap')" ]
$F verify p.json > v.log 2>&1
check "verify clean after concurrent runs" grep -q ' 0 corrupt' v.log
finish
