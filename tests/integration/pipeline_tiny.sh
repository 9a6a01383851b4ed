# The shipped fluke on the embedded data (tiny preset). The raw-pixel baseline (configs/baseline.json
# on the tiny preset): synth -> baseline_knn -> score, with cache hits, a config edit, status, dag,
# submit --dry-run and the synth preview. Then configs/tiny.json itself, whose default model is the
# effnet_dolg chain (detector, crops, folds, embeddings, kNN; pipeline_embed.sh tests it in depth).
# sanitizer: yes (the effnet_dolg part trains networks and runs in the normal build only)
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
printf '{"extends": "%s", "name": "bt", "synth": {"preset": "tiny"}}' "$FLUKE_SRC/configs/baseline.json" > bt.json
C=$T/bt.json
$F run "$C" > r1.log 2>&1; rc=$?
check "the baseline on tiny runs (rc=$rc)" [ $rc -eq 0 ]
check "it runs synth, baseline_knn and score" runs_exactly r1.log synth baseline_knn score
check "the submission is published" sh -c "head -1 out/bt/submission.csv | grep -q '^image,predictions'"
check "MAP@5 is printed" grep -Eq 'MAP@5 0\.[0-9]+' r1.log
check "metrics.json holds MAP@5 public/private" sh -c "grep -q map5_public out/bt/metrics.json && grep -q map5_private out/bt/metrics.json"
$F run "$C" > r2.log 2>&1
check "a rerun is fully cached" all_cached r2.log 3
$F status "$C" > st.log 2>&1
check "status: all three cached" [ "$(grep -c '^cached ' st.log)" -eq 3 ]
printf '{"extends": "%s", "baseline": {"knn": {"thumb": 8}}}' "$C" > edit.json
$F status edit.json > st2.log 2>&1
check "a config extending it is its own run (name not inherited)" grep -q 'missing  baseline_knn ' st2.log
check "... that shares the cached synth data (same key)" grep -q '^cached   synth ' st2.log
printf '{"extends": "%s", "name": "bt", "baseline": {"knn": {"thumb": 8}}}' "$C" > edit.json
$F status edit.json > st3.log 2>&1
check "status (same config name): baseline_knn stale with 16 -> 8" grep -q 'stale    baseline_knn *config baseline.knn.thumb: 16 -> 8' st3.log
$F run edit.json > r3.log 2>&1
check "the edit reruns the baseline and the score, not synth" sh -c "grep -q 'cached synth' r3.log && [ $(count_runs r3.log) -eq 2 ]"
$F dag "$C" --dot > dag.dot
check "dag --dot" grep -q '"synth" -> "baseline_knn"' dag.dot
printf '{"extends": "%s", "name": "bt", "kaggle": {"competition": "happy-whale-and-dolphin"}}' "$C" > sub.json
$F submit sub.json --dry-run > sub.log 2>&1; rc=$?
check "submit --dry-run validates the file (rc=$rc)" [ $rc -eq 0 ]
$F synth --preview --preset tiny --out preview.jpg > pv.log 2>&1; rc=$?
check "synth --preview writes a JPEG (rc=$rc)" sh -c "[ -s preview.jpg ] && head -c 3 preview.jpg | od -An -tx1 | grep -q 'ff d8 ff'"

# configs/tiny.json as shipped: the effnet_dolg chain to a scored submission.
if grep -qa __asan_init "$FLUKE_TS"; then
    echo "     (sanitizer build: configs/tiny.json's effnet_dolg run is left to the normal build)"
else
    E=$FLUKE_SRC/configs/tiny.json
    $F dag "$E" --dot > dag2.dot
    check "tiny.json plans the effnet_dolg chain" sh -c \
        "grep -q '\"crop\" -> \"embed_train\[1\]\"' dag2.dot && grep -q '\"embed\[1\]\" -> \"knn\"' dag2.dot && grep -q '\"knn\" -> \"score\"' dag2.dot"
    $F run "$E" > ef.log 2>&1; rc=$?
    check "tiny.json runs it end to end (rc=$rc)" runs_exactly ef.log detector_train crop folds \
        'embed_train[0]' 'embed[0]' 'embed_train[1]' 'embed[1]' knn score
    check "... reusing the baseline's synth data (same key)" cached ef.log synth
    check "... and score prints MAP@5 and the OOF CV" sh -c \
        "grep -Eq '^\[score\] MAP@5 0\.[0-9]+' ef.log && grep -Eq '^\[score\] cv: OOF MAP@5 0\.[0-9]+ over 2 folds' ef.log"
    check "... publishing submission.csv, cv.json and metrics.json with cv.map5" sh -c \
        "head -1 out/tiny/submission.csv | grep -q '^image,predictions' && grep -q '\"folds\"' out/tiny/cv.json &&
         grep -q '\"cv\"' out/tiny/metrics.json && grep -q '\"map5_public\"' out/tiny/metrics.json"
fi
finish
