# configs/baseline.json: the raw-pixel kNN baseline stays a config of its own (whatever smoke
# becomes): it plans synth -> baseline_knn -> score on the smoke data and nothing of the
# effnet_dolg chain; and the folds / embedding weights keys are in the pipeline's schema.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
mkdir -p c && cp "$FLUKE_SRC"/configs/base.json "$FLUKE_SRC"/configs/baseline.json c/
$F run c/baseline.json --dry-run > plan.log 2>&1; rc=$?
check "baseline.json plans (rc=$rc)" [ $rc -eq 0 ]
check "... synth, baseline_knn and score" \
    sh -c "grep -Eq '^missing +synth ' plan.log && grep -Eq '^missing +baseline_knn ' plan.log && grep -Eq '^missing +score ' plan.log"
check "... and no detector or folds stage" sh -c "! grep -Eq 'detector|folds|crop' plan.log"
$F config c/baseline.json > eff.json 2>&1
check "its effective config names model baseline_knn on the smoke preset" \
    sh -c "grep -q '\"model\":[[:space:]]*\"baseline_knn\"' eff.json && grep -q '\"preset\":[[:space:]]*\"smoke\"' eff.json && grep -q '\"name\":[[:space:]]*\"baseline\"' eff.json"
$F config c/baseline.json --keys > keys.txt 2>&1
check "folds.k is a schema key with its range" grep -Eq '^folds\.k +int \[2, 100\]' keys.txt
check "folds.by and folds.seed are schema keys" sh -c "grep -q '^folds.by ' keys.txt && grep -q '^folds.seed ' keys.txt"
check "embed.backbone.weights(_url) are schema keys" \
    sh -c "grep -q '^embed.backbone.weights ' keys.txt && grep -q '^embed.backbone.weights_url ' keys.txt"
printf '{"extends": "baseline.json", "name": "b2", "folds": {"k": 1}}' > c/bad.json
$F run c/bad.json --dry-run > bad.log 2>&1; rc=$?
check "folds.k 1 is a config error naming the file and key (rc=$rc)" \
    sh -c "[ $rc -eq 2 ] && grep -q 'bad.json:1: key .folds.k. is 1, outside its range \[2, 100\]' bad.log"
finish
