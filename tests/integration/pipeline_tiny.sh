# The shipped fluke on the embedded data (tiny preset): synth -> baseline kNN -> score, with
# cache hits, a config edit, status, dag, submit --dry-run and the synth preview.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
C=$FLUKE_SRC/configs/tiny.json
$F run "$C" > r1.log 2>&1; rc=$?
check "tiny pipeline runs (rc=$rc)" [ $rc -eq 0 ]
check "it runs synth, baseline_knn and score" [ "$(count_runs r1.log)" -eq 3 ]
check "the submission is published" sh -c "head -1 out/tiny/submission.csv | grep -q '^image,predictions'"
check "MAP@5 is printed" grep -Eq 'MAP@5 0\.[0-9]+' r1.log
check "metrics.json holds MAP@5 public/private" sh -c "grep -q map5_public out/tiny/metrics.json && grep -q map5_private out/tiny/metrics.json"
$F run "$C" > r2.log 2>&1
check "a rerun is fully cached" all_cached r2.log 3
$F status "$C" > st.log 2>&1
check "status: all three cached" [ "$(grep -c '^cached ' st.log)" -eq 3 ]
printf '{"extends": "%s", "baseline": {"knn": {"thumb": 8}}}' "$C" > edit.json
$F status edit.json > st2.log 2>&1
check "a config extending tiny is its own run (name not inherited)" grep -q 'missing  baseline_knn ' st2.log
check "... that shares the cached synth data (same key)" grep -q '^cached   synth ' st2.log
printf '{"extends": "%s", "name": "tiny", "baseline": {"knn": {"thumb": 8}}}' "$C" > edit.json
$F status edit.json > st3.log 2>&1
check "status (same config name): baseline_knn stale with 16 -> 8" grep -q 'stale    baseline_knn *config baseline.knn.thumb: 16 -> 8' st3.log
$F run edit.json > r3.log 2>&1
check "the edit reruns the baseline and the score, not synth" sh -c "grep -q 'cached synth' r3.log && [ $(count_runs r3.log) -eq 2 ]"
$F dag "$C" --dot > dag.dot
check "dag --dot" grep -q '"synth" -> "baseline_knn"' dag.dot
printf '{"extends": "%s", "name": "tiny", "kaggle": {"competition": "happy-whale-and-dolphin"}}' "$C" > sub.json
$F submit sub.json --dry-run > sub.log 2>&1; rc=$?
check "submit --dry-run validates the file (rc=$rc)" [ $rc -eq 0 ]
$F synth --preview --preset tiny --out preview.jpg > pv.log 2>&1; rc=$?
check "synth --preview writes a JPEG (rc=$rc)" sh -c "[ -s preview.jpg ] && head -c 3 preview.jpg | od -An -tx1 | grep -q 'ff d8 ff'"
printf '{"extends": "%s", "pipeline": {"model": "effnet_dolg"}}' "$C" > effnet.json
$F run effnet.json > ef.log 2>&1; rc=$?
check "effnet_dolg runs the detector, the crops and the score (rc=$rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q 'done   detector_train' ef.log && grep -q 'done   crop' ef.log && grep -q 'done   score' ef.log"
check "... and says the identification stages are not built yet (no MAP@5)" grep -q 'issue 12) are not built yet' ef.log
finish
