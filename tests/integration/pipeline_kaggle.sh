# The shipped fluke against the loopback Kaggle server: fetch (the competition zip, extracted)
# -> kNN baseline (configs/baseline.json) -> submission, then `fluke submit` prints the score; the
# effnet_dolg chain (configs/tiny.json) on the same fetched data, scored by its CV only (Kaggle
# data has no hidden truth); no secret in any output.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
command -v python3 > /dev/null || skip "python3 not found (the loopback server needs it)"
$F run "$FLUKE_SRC/configs/tiny.json" --until synth > synth.log 2>&1 || bad "making tiny data"
data=$(dirname "$(ls .fluke/checkouts/*/data/train.csv | head -1)")
TOKEN="fluke-test-token-$$-secret"
python3 "$FLUKE_SRC/tests/kaggle/server.py" --mode ok --token "$TOKEN" --data-dir "$data" > server.out 2> server.err &
spid=$!
trap 'kill $spid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
up() { grep -q '^PORT ' server.out || ! kill -0 $spid 2> /dev/null; }
wait_for 60 up
port=$(sed -n 's/^PORT //p' server.out)
check "the loopback server is up" [ -n "$port" ]
cat > k.json <<J
{ "extends": "$FLUKE_SRC/configs/baseline.json", "name": "kag",
  "pipeline": {"source": "kaggle"},
  "kaggle": {"competition": "happy-whale-and-dolphin", "base_url": "http://127.0.0.1:$port"} }
J
KAGGLE_API_TOKEN=$TOKEN HOME=$T $F run k.json > run.log 2>&1; rc=$?
check "fetch -> baseline_knn runs against the loopback server (rc=$rc)" [ $rc -eq 0 ]
check "it ran fetch and the baseline" sh -c "grep -q 'done   fetch' run.log && grep -q 'done   baseline_knn' run.log"
check "the submission is published" sh -c "head -1 out/kag/submission.csv | grep -q '^image,predictions'"
check "the fetched tree equals the served data (same train.csv)" cmp -s "$data/train.csv" "$(ls .fluke/checkouts/*/data/train.csv | grep -v "^$data" | head -1)"
KAGGLE_API_TOKEN=$TOKEN HOME=$T $F submit k.json -m "loopback" > submit.log 2>&1; rc=$?
check "fluke submit prints the public score (rc=$rc)" grep -qi 'public score' submit.log
curl -s "http://127.0.0.1:$port/_state" > state.json
check "the server saw no Authorization header at storage" grep -q '"violations": \[\]' state.json
# The default model on the same data: fetch is cached (same key), the chain runs, and score has
# the CV but no truth to compute MAP@5 against.
cat > k2.json <<J
{ "extends": "$FLUKE_SRC/configs/tiny.json", "name": "kag2",
  "pipeline": {"source": "kaggle"},
  "kaggle": {"competition": "happy-whale-and-dolphin", "base_url": "http://127.0.0.1:$port"} }
J
KAGGLE_API_TOKEN=$TOKEN HOME=$T $F run k2.json > ef.log 2>&1; rc=$?
check "effnet_dolg on the fetched data runs to a submission (rc=$rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q '^\[fluke\] cached fetch$' ef.log && grep -q 'done   knn' ef.log && head -1 out/kag2/submission.csv | grep -q '^image,predictions'"
check "... score says there is no hidden truth to score it against" \
    grep -q '^\[score\] no hidden truth to score the submission against' ef.log
check "... and metrics.json has cv.map5 and the detector, but no MAP@5" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert "map5" not in m and 0 <= m["cv"]["map5"] <= 1 and len(m["cv"]["folds"]) == 2 and "detector" in m' \
    out/kag2/metrics.json
kill $spid; wait $spid 2>/dev/null
$F run k.json > offline.log 2>&1; rc=$?
check "offline rerun without credentials succeeds (rc=$rc)" [ $rc -eq 0 ]
check "... and is fully cached" all_cached offline.log 2
check "no secret in any output" sh -c "! grep -rq '$TOKEN' run.log submit.log ef.log offline.log .fluke/records 2>/dev/null"
finish
