# The detector half of pipeline.model effnet_dolg on the embedded data (tiny preset):
# detector_train's outputs, cache hits and which edits rerun what, kill -9 after an epoch's
# checkpoint resuming to byte-identical weights, and bad box files named by file and line.
# sanitizer: no (trains a network: minutes under ASan)
. "$(dirname "$0")/_lib.sh"
command -v python3 > /dev/null || skip "python3 not found (the loopback release server needs it)"
F=$FLUKE
C=$FLUKE_SRC/configs/tiny.json
# Small and quick, but slow enough per epoch (~0.5 s) for the kill to land between epochs;
# batch 4 of a nominal 64 accumulates across epoch ends, so the pending gradients matter.
det='"detector": {"imgsz": 96, "width": 0.125, "epochs": 6, "batch": 4, "nbs": 64, "optimizer": "adam",
      "hyp": {"lr0": 0.003, "warmup_bias_lr": 0.003}}'
printf '{"extends": "%s", "name": "det", "pipeline": {"model": "effnet_dolg"}, %s}' "$C" "$det" > det.json

mkdir -p a && cp det.json a/
(cd a && $F run det.json --until detector_train > r1.log 2>&1); rc=$?
check "detector_train runs on tiny (rc=$rc)" [ $rc -eq 0 ]
check "it trained synth -> detector_train" sh -c "grep -q 'run    synth' a/r1.log && grep -q 'run    detector_train' a/r1.log"
check "progress shows epoch, step, loss parts, img/s and ETA" \
    grep -Eq 'step \([0-9.]+%\) .* ETA [0-9:]+ epoch [0-9]+/6 step [0-9]+/[0-9]+ box [0-9.]+ obj [0-9.]+ cls [0-9.]+ .* img/s' a/r1.log
check "validation is logged per epoch (P, R, mAP@0.5, mAP@0.5:0.95)" \
    sh -c "[ \$(grep -Ec 'epoch [0-9]+ val \(EMA\): P [0-9.]+ R [0-9.]+ mAP@0.5 [0-9.]+ mAP@0.5:0.95 [0-9.]+' a/r1.log) -eq 6 ]"
W=$(find a/.fluke -name detector.safetensors -path '*checkout*' 2> /dev/null | head -1)
[ -n "$W" ] || W=$(find a/.fluke -name detector.safetensors | head -1)
check "detector.safetensors holds ultralytics names and the yolo metadata" \
    sh -c "head -c 65536 '$W' | grep -aq '\"model.24.m.0.weight\"' && head -c 65536 '$W' | grep -aq '\"yolo.imgsz\":\"96\"'"
M=$(dirname "$W")/detector_metrics.json
check "detector_metrics.json has 6 epochs and the final figures" \
    sh -c "[ \$(grep -c '\"map50_95\"' '$M') -eq 7 ] && grep -q '\"final\"' '$M' && grep -q '\"precision\"' '$M'"
(cd a && $F run det.json --until detector_train > r2.log 2>&1)
check "a second run reruns nothing" all_cached a/r2.log 2

# kill -9 once the checkpoint holds an epoch, then rerun: resume, identical weights.
mkdir -p b && cp det.json b/
ck_epoch() { find b/.fluke/work -name detector_last.ckpt -exec head -c 65536 {} \; 2> /dev/null |
             grep -ao '"detector.epoch":"[0-9]*"' | grep -o '[0-9]*' | head -1; }
at_epoch() {
    local s; s=$(ck_epoch)
    [ -n "$s" ] && [ "$s" -ge 1 ] || ! kill -0 "$pid" 2> /dev/null
}
(cd b && exec setsid $F run det.json --until detector_train > k.log 2>&1) &
pid=$!
wait_for 300 at_epoch
kill -9 -- -"$pid" 2> /dev/null; wait "$pid" 2> /dev/null
killed=$(ck_epoch)
check "the first run was killed during training" sh -c "! grep -q 'done   detector_train' b/k.log"
check "a checkpoint survived the kill (epoch ${killed:-none} of 6)" \
    sh -c "[ -n '$killed' ] && [ '${killed:-0}' -ge 1 ] && [ '${killed:-9}' -lt 6 ]"
(cd b && $F run det.json --until detector_train > r.log 2>&1); rc=$?
check "the rerun succeeds (rc=$rc)" [ $rc -eq 0 ]
check "it resumed after the checkpointed epoch" grep -q "resuming from .* after epoch ${killed:-x} of 6" b/r.log
WB=$(find b/.fluke -name detector.safetensors | head -1)
check "the resumed weights are byte-identical to the uninterrupted run's" cmp -s "$W" "$WB"

# Edits: a detector key reruns detector_train.
sed 's/"epochs": 6/"epochs": 5/' det.json > a/det.json
(cd a && $F run det.json --until detector_train > r3.log 2>&1)
check "editing detector.epochs reruns detector_train, not synth" \
    sh -c "grep -q 'cached synth' a/r3.log && grep -q 'run    detector_train' a/r3.log"

# Pretrained ultralytics weights by name, from a loopback release server: the fixture YOLOv5
# (width 0.03125, one class, saved as ultralytics saves it) served as yolov5n.pt.
{
    mkdir -p srv && cp "$FLUKE_SRC/tests/fixtures/pt/yolo_tiny.pt" srv/yolov5n.pt
    python3 "$FLUKE_SRC/tests/kaggle/server.py" --mode ok --serve-dir srv > server.out 2> server.err &
    spid=$!
    up() { grep -qs '^PORT ' server.out || ! kill -0 $spid 2> /dev/null; }
    wait_for 60 up
    port=$(sed -n 's/^PORT //p' server.out)
    printf '{"extends": "det.json", "name": "pre", "detector": {"width": 0.03125, "epochs": 1, "weights": "yolov5n",
             "weights_url": "http://127.0.0.1:%s/releases/download/v7.0"}}' "$port" > a/pre.json
    (cd a && $F run pre.json --until detector_train > pre.log 2>&1); rc=$?
    check "detector.weights downloads, converts and loads the ultralytics checkpoint (rc=$rc)" \
        sh -c "grep -q 'done   detector_weights' a/pre.log && grep -Eq 'pretrained: [0-9]+ of [0-9]+ tensors transferred' a/pre.log"
    check "... all but the anchors transfer (same network)" grep -Eq 'pretrained: ([0-9]+) of \1 tensors|pretrained: [0-9]+ of [0-9]+ tensors .*0 of another shape' a/pre.log
    printf '{"extends": "pre.json", "name": "pre", "detector": {"epochs": 2}}' > a/pre2.json
    (cd a && $F run pre2.json --until detector_train > pre2.log 2>&1)
    check "editing detector.epochs does not download again" \
        sh -c "grep -q 'cached detector_weights' a/pre2.log && grep -q 'run    detector_train' a/pre2.log"
    kill $spid 2> /dev/null; wait $spid 2> /dev/null
}

# Bad box files: each error names the file and line.
bad_boxes() { # NAME CSV-CONTENT EXPECTED-ERE
    printf '%b' "$2" > "a/$1.csv"
    printf '{"extends": "det.json", "name": "det", "detector": {"boxes": "%s.csv"}}' "$1" > "a/$1.json"
    (cd a && $F run "$1.json" --until detector_train > "$1.log" 2>&1); rc=$?
    check "bad box file '$1' fails with a clear error (rc=$rc)" sh -c "[ $rc -ne 0 ] && grep -Eq '$3' a/$1.log"
}
bad_boxes unknown 'image,bbox\nnot_an_image.jpg,"[[1 2 3 4]]"\n' 'unknown\.csv:2: .*not_an_image\.jpg'
bad_boxes malformed 'image,bbox\nxx.jpg,"[[1 2 x 4]]"\n' 'malformed\.csv:2: '
bad_boxes empty '' 'empty\.csv'
bad_boxes header 'image,bbox\n' 'header\.csv'
printf '{"extends": "det.json", "name": "det", "detector": {"boxes": "missing.csv"}}' > a/missing.json
(cd a && $F run missing.json --until detector_train > missing.log 2>&1); rc=$?
check "a missing box file is named (rc=$rc)" sh -c "[ $rc -ne 0 ] && grep -q 'missing.csv' a/missing.log"
finish
