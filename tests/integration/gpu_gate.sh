# A config that asks for a GPU (resources.gpus >= 1) on a machine where training would run on the
# CPU: `fluke run` stops before anything runs, says why, and estimates the CPU time measured here;
# --cpu or resources.force_cpu trains on the CPU anyway; a run that trains nothing (none selected,
# or every training stage cached) is not stopped.
# (No CUDA training backend exists yet, so the gate holds on every machine, GPU or not.)
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
C=$FLUKE_SRC/configs

# The recipe itself: refused before the fetch (no credentials are needed to see the estimate).
$F run "$C/happywhale.json" > hw.log 2>&1; rc=$?
check "happywhale: refused with a usage error (rc=$rc)" [ $rc -eq 2 ]
check "happywhale: says it asks for a GPU and why it cannot use one" \
    grep -qE "happywhale.json asks for 1 GPU \(resources.gpus\) but (this fluke was built without CUDA|this machine has no usable CUDA device|fluke's CUDA training backend is not built yet)" hw.log
check "happywhale: a CPU-time estimate per kind of training stage, measured here" \
    grep -qE "would take about [0-9]+ (s|min|h|days) on this CPU with [0-9]+ threads? \(detector_train [0-9]+ [a-z]+ \([0-9.]+ s per image-epoch\), 10 embedding trainings [0-9]+ [a-z]+ \([0-9.]+ s per image-epoch\)" hw.log
check "happywhale: says how to go on (--cpu, resources.force_cpu)" \
    grep -qF 'Train on the CPU anyway with `fluke run --cpu` (or resources.force_cpu: true)' hw.log
check "happywhale: nothing ran, not even the fetch" sh -c "! grep -q '^\[fluke\] run ' hw.log"
$F run "$C/happywhale.json" --dry-run > hwdry.log 2>&1; rc=$?
check "happywhale: --dry-run still prints the plan (rc=$rc)" sh -c "[ $rc -eq 0 ] && grep -q '^missing  embed_train\[4\] ' hwdry.log"

# The tiny pipeline asking for a GPU: refused, then trained on the CPU when forced.
cat > gpu.json <<JSON
{"extends": "$C/tiny.json", "name": "tinygpu", "resources": {"gpus": 1}}
JSON
$F run gpu.json > refused.log 2>&1; rc=$?
check "tiny with resources.gpus 1: refused (rc=$rc)" sh -c "[ $rc -eq 2 ] && grep -q 'asks for 1 GPU' refused.log"
check "tiny with resources.gpus 1: nothing ran" sh -c "! grep -q '^\[fluke\] run ' refused.log && [ ! -e out/tinygpu/submission.csv ]"
$F run gpu.json --until folds > until.log 2>&1; rc=$?
check "--until folds trains nothing: not refused (rc=$rc)" sh -c "[ $rc -eq 0 ] && grep -q '^\[fluke\] run    folds ' until.log && ! grep -q 'asks for' until.log"
$F run gpu.json --cpu > cpu.log 2>&1; rc=$?
check "--cpu: the whole pipeline trains on the CPU (rc=$rc)" sh -c "[ $rc -eq 0 ] && [ -s out/tinygpu/submission.csv ]"
check "--cpu: says it trains on the CPU as asked, with the estimate" \
    grep -qE "^\[fluke\] .*gpu.json asks for 1 GPU but .*: training on the CPU as asked, about [0-9]+ (s|min|h|days) on [0-9]+ threads?" cpu.log
$F run gpu.json > again.log 2>&1; rc=$?
check "once trained, a rerun without --cpu is not refused: every training stage is cached (rc=$rc)" \
    sh -c "[ $rc -eq 0 ] && ! grep -q 'asks for' again.log && ! grep -q '^\[fluke\] run ' again.log"
$F run gpu.json --force "embed_train[1]" > force.log 2>&1; rc=$?
check "--force of a cached training stage without --cpu: refused again (rc=$rc)" \
    sh -c "[ $rc -eq 2 ] && grep -q '1 embedding trainings' force.log && ! grep -q '^\[fluke\] run ' force.log"
cat > forced.json <<JSON
{"extends": "gpu.json", "resources": {"force_cpu": true}}
JSON
$F run forced.json --force "embed_train[1]" > forced.log 2>&1; rc=$?
check "resources.force_cpu true does what --cpu does: the forced fold trains on the CPU (rc=$rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q 'training on the CPU as asked' forced.log && grep -q '^\[fluke\] run    embed_train\[1\] ' forced.log"
exit $((fails > 0))
