# The crop half of pipeline.model effnet_dolg on the embedded data (tiny preset): synth ->
# detector_train -> crop, `--until crop`, crops.csv and the crops, the crop and detector metrics
# in score's metrics.json (the identification stages in between: pipeline_embed.sh), cache hits,
# which edits rerun what, and given boxes (1 vs 2 threads byte-identical: tests/unit/test_crop_stage.c, with a fixed detector.)
# sanitizer: no (trains a network)
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
C=$FLUKE_SRC/configs/tiny.json
det='"detector": {"imgsz": 64, "width": 0.125, "epochs": 2, "batch": 8, "nbs": 64, "optimizer": "adam",
      "hyp": {"lr0": 0.003, "warmup_bias_lr": 0.003}}'
printf '{"extends": "%s", "name": "pc", "pipeline": {"model": "effnet_dolg"}, %s, "crop": {"size": 48, "train_boxes": "given"}}' \
    "$C" "$det" > pc.json
mkdir -p a && cp pc.json a/

(cd a && $F run pc.json --until crop > r1.log 2>&1); rc=$?
check "synth -> detector_train -> crop runs with --until crop (rc=$rc)" [ $rc -eq 0 ]
check "crop ran after detector_train" before a/r1.log 'run    detector_train' 'run    crop'
check "--until crop stops before score" sh -c "! grep -q 'run    score' a/r1.log"
check "crop logs img/s and the fallback count" grep -Eq '\[crop\] 168 images in .* img/s.* fallback to the whole image' a/r1.log
check "train images with a box in train_boxes.csv keep it (crop.train_boxes given)" \
    grep -Eq '\[crop\] .* [1-9][0-9]* given boxes' a/r1.log
CSV=$(find a/.fluke -name crops.csv | head -1)
check "crops.csv has a row per image (168) with the columns" \
    sh -c "[ \$(tail -n +2 '$CSV' | wc -l) -eq 168 ] && head -1 '$CSV' | grep -q '^image,split,x1,y1,x2,y2,conf,fallback'"
D=$(dirname "$CSV")
check "crops/train and crops/test hold 120 and 48 JPEGs" \
    sh -c "[ \$(ls '$D/crops/train' | wc -l) -eq 120 ] && [ \$(ls '$D/crops/test' | wc -l) -eq 48 ]"

(cd a && $F run pc.json > r2.log 2>&1); rc=$?
check "the full run adds the identification stages and score only (rc=$rc)" runs_exactly a/r2.log \
    folds 'embed_train[0]' 'embed[0]' 'embed_train[1]' 'embed[1]' knn score
M=a/out/pc/metrics.json
check "metrics.json has crops.test_iou50_recall and crops.fallback_share" \
    sh -c "grep -q '\"test_iou50_recall\"' $M && grep -q '\"fallback_share\"' $M"
check "metrics.json has detector.map50 and map50_95" sh -c "grep -q '\"map50\"' $M && grep -q '\"map50_95\"' $M"
(cd a && $F run pc.json > r3.log 2>&1)
check "a second run reruns nothing" all_cached a/r3.log 10

# crop.margin reruns crop and score only (the given boxes' crops change even while the short-trained
# detector finds nothing); detector.epochs reruns the detector and what follows.
sed 's/"crop": {"size": 48,/"crop": {"size": 48, "margin": 0.3,/' pc.json > a/pc.json
(cd a && $F run pc.json > r4.log 2>&1)
check "editing crop.margin reruns crop" ran a/r4.log crop
check "... and score" ran a/r4.log score
check "... but not synth" cached a/r4.log synth
check "... nor detector_train" cached a/r4.log detector_train
sed 's/"epochs": 2/"epochs": 1/' pc.json > a/pc.json
(cd a && $F run pc.json > r5.log 2>&1)
check "editing detector.epochs reruns detector_train" ran a/r5.log detector_train
check "... and crop" ran a/r5.log crop
check "... but not synth" cached a/r5.log synth

finish
