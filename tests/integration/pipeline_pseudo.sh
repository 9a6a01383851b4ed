# Pseudo-label rounds (pipeline.pseudo_rounds) on the embedded data (tiny preset): the plan
# (pseudo[r], retrain[r][k], embed[r][k], knn[r]), the rounds' figures in metrics.json, what an
# edit of each pseudo key reruns, a second round starting from the first one's models, and the
# final round's outputs published.
# sanitizer: no (trains networks: minutes under ASan)
. "$(dirname "$0")/_lib.sh"
command -v python3 > /dev/null || skip "python3 not found (the JSON checks need it)"
F=$FLUKE
C=$FLUKE_SRC/configs/tiny.json
# tiny models are weak: a low precision target so that some labels are taken
printf '{"extends": "%s", "name": "ps", "pipeline": {"pseudo_rounds": 1},
  "pseudo": {"select": {"precision": 0.01, "min_n": 1}, "retrain": {"epochs": 1}}}' "$C" > ps.json

$F dag ps.json > dag.txt 2>&1; rc=$?
check "fluke dag plans one pseudo round (rc=$rc)" [ $rc -eq 0 ]
for s in 'pseudo[1]' 'retrain[1][0]' 'retrain[1][1]' 'embed[1][0]' 'embed[1][1]' 'knn[1]'; do
    check "... with $s" grep -q "^$(printf '%s' "$s" | sed 's/\[/\\[/g')  " dag.txt
done
check "... retrain[1][1] starts from embed_train[1] and reads pseudo[1]" sh -c \
    "sed -n '/^retrain\[1\]\[1\]  /,/^[a-z]/p' dag.txt | grep -q 'init <- embed_train\[1\]' &&
     sed -n '/^retrain\[1\]\[1\]  /,/^[a-z]/p' dag.txt | grep -q 'pseudo <- pseudo\[1\]'"

(cd . && $F run ps.json > r1.log 2>&1); rc=$?
check "the pipeline with one pseudo round runs (rc=$rc)" [ $rc -eq 0 ]
check "... every stage once" runs_exactly r1.log synth detector_train crop folds \
    'embed_train[0]' 'embed[0]' 'embed_train[1]' 'embed[1]' knn 'pseudo[1]' \
    'retrain[1][0]' 'retrain[1][1]' 'embed[1][0]' 'embed[1][1]' 'knn[1]' score
check "pseudo[1] logs its calibrated threshold and what it took" sh -c \
    "grep -Eq '^\[pseudo\[1\]\] threshold [0-9.]+: OOF top-1 precision [0-9.]+ on the [0-9]+ of [0-9]+ queries' r1.log &&
     grep -Eq '^\[pseudo\[1\]\] [0-9]+ of 48 test images pseudo-labelled' r1.log"
check "retrain[1][0] starts from round 0's model and takes pseudo-labels" sh -c \
    "grep -q '^\[retrain\[1\]\[0\]\] starting from .*embed_model.safetensors (heads new)' r1.log &&
     grep -Eq '^\[retrain\[1\]\[0\]\] [0-9]+ pseudo-labelled test crops join the training part' r1.log"
check "knn[1] puts the pseudo-labelled images in its gallery" \
    grep -Eq '^\[knn\[1\]\] [0-9]+ pseudo-labelled test images join the gallery' r1.log
check "metrics.json: rounds 0 and 1 with CV and MAP@5; the top level is round 1's" python3 -c '
import json, sys
m, cv = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = m["rounds"]
assert [x["round"] for x in r] == [0, 1], r
assert all(0 <= x["cv"] <= 1 and 0 <= x["map5"] <= 1 for x in r), r
assert m["map5"] == r[1]["map5"] and m["cv"]["map5"] == r[1]["cv"] == cv["map5"], (m["map5"], r)' \
    out/ps/metrics.json out/ps/cv.json
check "score prints each round" sh -c \
    "grep -Eq '^\[score\] round 0: CV 0\.[0-9]+, MAP@5 [01]\.[0-9]+' r1.log && grep -Eq '^\[score\] round 1: CV' r1.log"
check "pseudo.json holds the threshold, its OOF precision and the count" python3 -c '
import json, sys, glob
p = [f for f in glob.glob(".fluke/checkouts/*/pseudo.json")]
assert len(p) == 1, p
m = json.load(open(p[0]))
assert m["reached"] and m["oof_precision"] >= 0.01 and m["taken"] > 0 and m["taken"] >= 0 and m["n_test"] == 48, m'

$F run ps.json > r2.log 2>&1
check "a second run reruns nothing" all_cached r2.log 16
cp out/ps/submission.csv ref_submission.csv

# ---- kill -9 at a random moment of the whole pipeline, three trials -----------------------------
T=$(sed -n 's/^\[fluke\] 16 stages: .*(\([0-9]*\)\.[0-9]*s)$/\1/p' r1.log)
T=${T:-20}
seed=${FLUKE_KILL_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "kill trials over a ${T} s run, seed $seed (FLUKE_KILL_SEED=$seed reproduces)"
for trial in 1 2 3; do
    mkdir -p "k$trial" && cp ps.json "k$trial/"
    at=$(( RANDOM % (T * 1000) ))
    cd "k$trial"
    setsid $F run ps.json > kill.log 2>&1 & # the session leader: its stage processes are members
    pid=$!
    cd ..
    sleep "$(( at / 1000 )).$(printf '%03d' $(( at % 1000 )))" # lint: sleep is the random kill moment
    kill -9 -- -"$pid" 2>/dev/null
    wait $pid 2>/dev/null
    pkill -9 -s "$pid" 2>/dev/null # a stage the group kill missed (none expected)
    (cd "k$trial" && $F run ps.json > final.log 2>&1); rc=$?
    check "trial $trial (kill -9 at ${at} ms): the rerun completes (rc=$rc) to a byte-identical submission" \
        sh -c "[ $rc -eq 0 ] && cmp -s k$trial/out/ps/submission.csv ref_submission.csv"
done

printf '{"extends": "ps.json", "name": "ps", "pseudo": {"retrain": {"epochs": 2}}}' > e1.json
$F run e1.json > e1.log 2>&1
check "editing pseudo.retrain.epochs reruns round 1 only" runs_exactly e1.log \
    'retrain[1][0]' 'retrain[1][1]' 'embed[1][0]' 'embed[1][1]' 'knn[1]' score
printf '{"extends": "e1.json", "name": "ps", "knn": {"k": 50}}' > e2.json
$F run e2.json > e2.log 2>&1
check "editing knn.k reruns both knn rounds and pseudo[1], never a training stage" sh -c \
    "grep -q '^\[fluke\] run    knn  ' e2.log && grep -q '^\[fluke\] run    knn\[1\]  ' e2.log &&
     grep -q '^\[fluke\] run    pseudo\[1\]  ' e2.log && ! grep -q '^\[fluke\] run    embed_train' e2.log"
printf '{"extends": "e2.json", "name": "ps", "pipeline": {"pseudo_rounds": 2}}' > e3.json
$F run e3.json > e3.log 2>&1; rc=$?
check "a second round runs (rc=$rc) from the first round's models, round 1 cached" sh -c \
    "[ $rc -eq 0 ] && grep -q '^\[fluke\] run    retrain\[2\]\[0\]  ' e3.log &&
     grep -q '^\[retrain\[2\]\[0\]\] starting from ' e3.log && grep -q '^\[fluke\] cached retrain\[1\]\[0\]$' e3.log"
check "... metrics.json lists rounds 0, 1, 2" python3 -c '
import json, sys
assert [x["round"] for x in json.load(open(sys.argv[1]))["rounds"]] == [0, 1, 2]' out/ps/metrics.json
printf '{"extends": "e3.json", "name": "ps", "pipeline": {"pseudo_rounds": 11}}' > bad.json
$F run bad.json > bad.log 2>&1; rc=$?
check "pipeline.pseudo_rounds 11 is refused naming the key (rc=$rc)" sh -c \
    "[ $rc -ne 0 ] && grep -q 'pipeline.pseudo_rounds' bad.log"
printf '{"extends": "e3.json", "name": "ps", "pseudo": {"retrain": {"init": "warm"}}}' > bad2.json
$F run bad2.json > bad2.log 2>&1; rc=$?
check "pseudo.retrain.init warm is refused naming the key (rc=$rc)" sh -c \
    "[ $rc -ne 0 ] && grep -q 'pseudo.retrain.init' bad2.log"
finish
