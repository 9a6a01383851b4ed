# The first half of pipeline.model effnet_dolg on the embedded smoke data (configs/smoke.json up to
# crop, 2 threads): detector_train's and crop's wall time and images/s, their sum against the 3-minute
# goal of issue 11, and the detector and crop figures the run reached. The YOLOv5 training step
# against PyTorch at the same size is bench_yolo's "smoke det" case (same run of make bench).
set -u
: "${FLUKE:?}" "${FLUKE_SRC:?}"
T=$(mktemp -d /tmp/fluke-bench-XXXXXX)
trap 'chmod -R u+w "$T" 2> /dev/null; rm -rf "$T"' EXIT
cd "$T"
"$FLUKE" run "$FLUKE_SRC/configs/smoke.json" --until crop > run.log 2>&1 || {
    echo "bench_detector_crop: the run failed:"; tail -5 run.log; exit 1; }
det=$(sed -n 's/^\[fluke\] done   detector_train  \([0-9.]*\)s$/\1/p' run.log)
crop=$(sed -n 's/^\[fluke\] done   crop  \([0-9.]*\)s$/\1/p' run.log)
ips=$(grep -o '[0-9.]* img/s$' run.log | tail -1)
cline=$(grep '^\[crop\] [0-9]* images in' run.log | sed 's/^\[crop\] //')
printf '  detector_train  %7.1f s  (training steps at %s; validation and checkpoints included)\n' "$det" "$ips"
printf '  crop            %7.1f s  (%s)\n' "$crop" "$cline"
printf '  together        %7.1f s  (issue 11 goal: at most 180 s on 2 cores)\n' "$(echo "$det + $crop" | bc)"
grep -E '^\[detector_train\] epoch [0-9]+ val' run.log | tail -1 | sed 's/^\[detector_train\] /  detector: last /'
