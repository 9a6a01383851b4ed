# The identification half of pipeline.model effnet_dolg on the embedded data (tiny preset):
# folds -> embed_train[k] -> embed[k] -> knn -> score and its outputs, which edits rerun what,
# a crashed fold and kill -9 of the run resuming to byte-identical weights, two directories
# giving the same submission, and bad input (too many folds, a NaN loss) named by key and stage.
# sanitizer: no (trains networks: minutes under ASan)
. "$(dirname "$0")/_lib.sh"
command -v python3 > /dev/null || skip "python3 not found (the JSON checks need it)"
command -v pgrep > /dev/null || skip "pgrep not found (the crash check finds the stage process)"
F=$FLUKE
C=$FLUKE_SRC/configs/tiny.json
printf '{"extends": "%s", "name": "emb"}' "$C" > emb.json
# For the kills: 8 epochs of 15 batches (~0.3 s each here, several polls), a checkpoint after each.
printf '{"extends": "%s", "name": "ep", "embed": {"imgsz": 48, "train": {"epochs": 8, "batch": 4, "val_every": 0}}}' \
    "$C" > ep.json
# model_of DIR CONFIG: the embed_model.safetensors of DIR's cached embed_train[1].
model_of() {
    local h
    h=$(cd "$1" && $F explain 'embed_train[1]' "$2" 2> /dev/null | sed -n '1s/.*output \([0-9a-f]*\).*/\1/p')
    [ -n "$h" ] && find "$1/.fluke" -path "*$h*" -name embed_model.safetensors | head -1
}

# ---- the chain, its outputs and its logs ------------------------------------------------------
mkdir -p a && cp emb.json a/
(cd a && $F run emb.json > r1.log 2>&1); rc=$?
check "the effnet_dolg chain runs on tiny (rc=$rc)" [ $rc -eq 0 ]
check "... every stage of it, once" runs_exactly a/r1.log synth detector_train crop folds \
    'embed_train[0]' 'embed[0]' 'embed_train[1]' 'embed[1]' knn score
for f in submission.csv cv.json folds.csv metrics.json; do
    check "out/emb/$f is published" test -s "a/out/emb/$f"
done
check "submission.csv: the 48 test images, five distinct labels each" python3 -c '
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0] == ["image", "predictions"], rows[0]
assert len(rows) == 49 and len({r[0] for r in rows[1:]}) == 48, len(rows)
assert all(len(set(r[1].split())) == 5 == len(r[1].split()) for r in rows[1:])' a/out/emb/submission.csv
check "folds.csv: the 120 train images in folds 0 and 1" python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 120 and {r["fold"] for r in rows} == {"0", "1"}, len(rows)
assert all(r["individual_id"] for r in rows)' a/out/emb/folds.csv
check "cv.json: overall and per-fold OOF MAP@5 of 2 folds" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert 0 <= m["map5"] <= 1 and [f["fold"] for f in m["folds"]] == [0, 1]
assert all(0 <= f["map5"] <= 1 for f in m["folds"]) and "threshold" in m' a/out/emb/cv.json
check "metrics.json: MAP@5, cv.map5 and the per-fold CV equal to cv.json" python3 -c '
import json, sys
m, cv = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert 0 <= m["map5"] <= 1 and "map5_public" in m
assert m["cv"]["map5"] == cv["map5"] and m["cv"]["folds"] == [f["map5"] for f in cv["folds"]]' \
    a/out/emb/metrics.json a/out/emb/cv.json
check "progress shows epoch, step, loss, img/s and ETA" grep -Eq \
    '^\[embed_train\[1\]\] [0-9]+/[0-9]+ step \([0-9.]+%\) .*ETA [0-9:]+ epoch [0-9]+/2 step [0-9]+/[0-9]+ loss [0-9.]+ .*[0-9.]+ img/s' a/r1.log
for k in 0 1; do
    check "embed_train[$k] logs val MAP@5 after each of its 2 epochs" sh -c \
        "[ \$(grep -Ec '^\[embed_train\[$k\]\] epoch [12]/2: loss [0-9.]+, .* val MAP@5 [0-9.]+ .*on 60 crops' a/r1.log) -eq 2 ]"
done
check "score prints MAP@5 and the CV" sh -c \
    "grep -Eq '^\[score\] MAP@5 0\.[0-9]+' a/r1.log && grep -Eq '^\[score\] cv: OOF MAP@5 0\.[0-9]+ over 2 folds' a/r1.log"
cp a/out/emb/submission.csv first.csv

(cd a && $F run emb.json > r2.log 2>&1)
check "a second run reruns nothing" all_cached a/r2.log 10

# ---- edits, each on top of the previous one -----------------------------------------------------
printf '{"extends": "emb.json", "name": "emb", "knn": {"k": 50}}' > a/e1.json
(cd a && $F run e1.json > e1.log 2>&1)
check "editing knn.k reruns only knn and score" runs_exactly a/e1.log knn score
check "... and says why" grep -q '^\[fluke\] run    knn  (config knn.k: 100 -> 50)' a/e1.log
printf '{"extends": "e1.json", "name": "emb", "embed": {"train": {"lr": 0.002}}}' > a/e2.json
(cd a && $F run e2.json > e2.log 2>&1)
check "editing embed.train.lr reruns embed_train[*], embed[*], knn and score" runs_exactly a/e2.log \
    'embed_train[0]' 'embed_train[1]' 'embed[0]' 'embed[1]' knn score
check "... never synth, detector_train, crop or folds (cached)" sh -c \
    "grep -q '^\[fluke\] cached synth$' a/e2.log && grep -q '^\[fluke\] cached detector_train$' a/e2.log &&
     grep -q '^\[fluke\] cached crop$' a/e2.log && grep -q '^\[fluke\] cached folds$' a/e2.log"
check "... and says why" grep -q '^\[fluke\] run    embed_train\[1\]  (config embed.train.lr: 0.003 -> 0.002)' a/e2.log
printf '{"extends": "e2.json", "name": "emb", "folds": {"k": 3}}' > a/e3.json
(cd a && $F run e3.json > e3.log 2>&1); rc=$?
check "folds.k 2 -> 3 reruns folds, 3 embed_train, 3 embed, knn and score (rc=$rc)" runs_exactly a/e3.log \
    folds 'embed_train[0]' 'embed_train[1]' 'embed_train[2]' 'embed[0]' 'embed[1]' 'embed[2]' knn score
check "... not the detector or the crops" sh -c \
    "grep -q '^\[fluke\] cached detector_train$' a/e3.log && grep -q '^\[fluke\] cached crop$' a/e3.log"
check "... and cv.json and metrics.json have 3 folds" python3 -c '
import json, sys
assert len(json.load(open(sys.argv[1]))["folds"]) == 3
assert len(json.load(open(sys.argv[2]))["cv"]["folds"]) == 3' a/out/emb/cv.json a/out/emb/metrics.json

# ---- bad input ------------------------------------------------------------------------------------
printf '{"extends": "emb.json", "name": "emb", "folds": {"k": 50}}' > a/k50.json
(cd a && $F run k50.json > k50.log 2>&1); rc=$?
check "folds.k 50 (tiny's train.csv has 37 individuals) fails in folds, naming folds.k and the file (rc=$rc)" sh -c \
    "[ $rc -eq 1 ] && grep -Eq \"^fluke run: error: stage 'folds' failed: folds.k is 50 but train.csv \(.*/data/train.csv\) has only 37 individuals\" a/k50.log"
printf '{"extends": "emb.json", "name": "emb", "embed": {"train": {"lr": 1e30}}}' > a/lr.json
(cd a && $F run lr.json > lr.log 2>&1); rc=$?
check "embed.train.lr 1e30 is refused before running, naming the key (rc=$rc)" sh -c \
    "[ $rc -eq 2 ] && grep -q \"key 'embed.train.lr' is 1e+30, outside its range\" a/lr.log"
# GeM p 100 overflows float (x^100) on the first batches: a NaN loss in every fold.
printf '{"extends": "emb.json", "name": "emb", "embed": {"dolg": {"gem_p": 100}}}' > a/nan.json
(cd a && $F run nan.json -j2 > nan.log 2>&1); rc=$?
check "a NaN loss or gradient fails the run, naming the stage, the epoch and the step (rc=$rc)" sh -c \
    "[ $rc -eq 1 ] && grep -Eq \"^fluke run: error: stage 'embed_train\[[01]\]' failed: embed_train\[[01]\]: the (loss|gradient norm) is NaN at epoch 1 step [0-9]+\" a/nan.log"
check "... and publishes nothing new (the submission is still the folds.k 3 one)" sh -c \
    "! grep -q '^\[fluke\] done   embed_train' a/nan.log && ! grep -q '^\[fluke\] output' a/nan.log"

# ---- an uninterrupted run of ep.json, the reference for the kills ---------------------------------
mkdir -p c && cp ep.json c/
(cd c && $F run ep.json -j1 > r.log 2>&1); rc=$?
check "the uninterrupted 8-epoch run succeeds (rc=$rc)" [ $rc -eq 0 ]

# ---- a crashed fold, then kill -9 of the whole run, then the rerun -------------------------------
mkdir -p b && cp ep.json b/
ck_epoch() { find b/.fluke/work -name embed_last.ckpt -exec head -c 65536 {} \; 2> /dev/null |
             grep -ao '"embed.epoch":"[0-9]*"' | grep -o '[0-9]*' | head -1; }
fold1() { pgrep -P "$pid" -f 'embed_train\[1\]'; }
# past EPOCH: embed_train[1] runs and its checkpoint holds more than EPOCH epochs (or the run ended).
past() {
    local s
    kill -0 "$pid" 2> /dev/null || return 0
    [ -n "$(fold1)" ] || return 1
    s=$(ck_epoch)
    [ -n "$s" ] && [ "$s" -gt "$1" ]
}
# 1. Only the stage process of embed_train[1] dies (SIGKILL): the fold crashes, the run goes on.
(cd b && exec setsid $F run ep.json -j1 > k1.log 2>&1) &
pid=$!
wait_for 300 past 0
child=$(fold1)
[ -n "$child" ] && kill -9 "$child"
wait "$pid"; rc=$?
k1=$(ck_epoch)
check "the crashed fold fails the run, naming embed_train[1] (rc=$rc)" sh -c \
    "[ $rc -eq 1 ] && grep -q \"^fluke run: error: stage 'embed_train\[1\]' crashed (SIGKILL\" b/k1.log"
check "... after embed_train[0] finished" grep -q '^\[fluke\] done   embed_train\[0\]' b/k1.log
(cd b && $F status ep.json > st.log 2>&1)
check "... which stays cached with embed[0], while embed_train[1] is missing" sh -c \
    "grep -Eq '^cached +embed_train\[0\] ' b/st.log && grep -Eq '^cached +embed\[0\] ' b/st.log &&
     grep -Eq '^missing +embed_train\[1\] ' b/st.log"
check "... and its checkpoint survived (epoch ${k1:-none} of 8)" sh -c "[ '${k1:-0}' -ge 1 ] && [ '${k1:-9}' -lt 8 ]"
# 2. kill -9 of the whole run once the resumed fold checkpointed a further epoch.
(cd b && exec setsid $F run ep.json -j1 > k2.log 2>&1) &
pid=$!
wait_for 300 past "${k1:-0}"
kill -9 -- -"$pid" 2> /dev/null; wait "$pid" 2> /dev/null
k2=$(ck_epoch)
check "the second run resumed the crashed fold after epoch ${k1:-x}" grep -q "^\[embed_train\[1\]\] resuming from .* after epoch ${k1:-x} of 8" b/k2.log
check "... without rerunning embed_train[0]" sh -c \
    "grep -q '^\[fluke\] cached embed_train\[0\]$' b/k2.log && ! grep -q 'run    embed_train\[0\]' b/k2.log"
check "... and was killed during embed_train[1] (checkpoint epoch ${k2:-none} of 8)" sh -c \
    "! grep -q 'done   embed_train\[1\]' b/k2.log && [ '${k2:-0}' -gt '${k1:-9}' ] && [ '${k2:-9}' -lt 8 ]"
# 3. The rerun finishes.
(cd b && $F run ep.json -j1 > r.log 2>&1); rc=$?
check "the rerun after kill -9 succeeds (rc=$rc)" [ $rc -eq 0 ]
check "... embed_train[0] is cached, not rerun" sh -c \
    "grep -q '^\[fluke\] cached embed_train\[0\]$' b/r.log && ! grep -q 'run    embed_train\[0\]' b/r.log"
check "... embed_train[1] resumes after epoch ${k2:-x} of 8" grep -q "^\[embed_train\[1\]\] resuming from .*embed_last.ckpt after epoch ${k2:-x} of 8" b/r.log
MB=$(model_of b ep.json) MC=$(model_of c ep.json)
check "fold 1's embed_model.safetensors is byte-identical to the uninterrupted run's" \
    sh -c "[ -n '$MB' ] && [ -n '$MC' ] && cmp '$MB' '$MC'"
check "... and so is the submission" cmp b/out/ep/submission.csv c/out/ep/submission.csv

# ---- the same config in another directory -----------------------------------------------------------
mkdir -p d && cp emb.json d/
(cd d && $F run emb.json > r.log 2>&1); rc=$?
check "emb.json in a second directory runs (rc=$rc)" [ $rc -eq 0 ]
check "... to a byte-identical submission.csv" cmp first.csv d/out/emb/submission.csv
finish
