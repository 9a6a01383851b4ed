# The Slurm executor against a real single-node Slurm cluster on loopback (_slurm.sh: slurmctld -D
# and slurmd -D in this test's temp dir, auth/none, a fake GPU in gres.conf, no accounting
# database): configs/tiny.json through Slurm publishes the same submission.csv as a local run and
# its store is a full cache hit for a local run; a job cancelled with scancel mid-stage leaves no
# record and the rerun recomputes it; a failing stage reports its exit code and log; array folds
# run at the same time within the node's CPUs; a stage asking for a GPU gets --gres=gpu:1 and the
# GPU Slurm bound. Skipped where Slurm is not installed or cannot start (not root).
# sanitizer: no (it runs the tiny pipeline, which trains networks: the normal build only)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/_lib.sh"
. "$HERE/_slurm.sh"
F=$FLUKE_TS
trap 'slurm_stop; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
slurm_start "$T/cluster" || skip "no Slurm cluster: $SLURM_WHY"
ok "a single-node Slurm cluster is up ($(sinfo -V), $(nproc) cpus, $(grep -o 'File=.*' cluster/gres.conf))"
NCPU=$(nproc)
# The executor block every config here uses: polls as fast as min_poll_s allows.
EX='"executor": {"kind": "slurm", "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.2, "exit_wait_s": 10}}'
# jobid LOG NODE: the Slurm job fluke submitted NODE as.
jobid() { sed -n "s/^\[fluke\] slurm  job \([0-9_]*\): $2 .*/\1/p" "$1" | head -1; }
# jobcomp ID FIELD: a field of the job's record in the cluster's jobcomp/filetxt log (Slurm's own
# account of how it ended: there is no accounting database, so sacct knows nothing).
jobcomp() { grep "^JobId=$1 " cluster/jobcomp.txt | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# jobcomp_is ID FIELD VALUE
jobcomp_is() {
    [ "$(jobcomp "$1" "$2")" = "$3" ] || { echo "     (job $1 $2: '$(jobcomp "$1" "$2")', want '$3')"; return 1; }
}
wipe() { chmod -R u+w .fluke out 2>/dev/null; rm -rf .fluke out; }

# ---- configs/tiny.json: the same submission through Slurm as locally
mkdir loc sl
(cd loc && "$FLUKE" run "$FLUKE_SRC/configs/tiny.json" > run.log 2>&1) || bad "local reference run of tiny.json"
printf '{"extends": "%s", "name": "tiny", %s}\n' "$FLUKE_SRC/configs/tiny.json" "$EX" > sl/tiny.json
(cd sl && "$FLUKE" run tiny.json > run.log 2>&1); rc=$?
check "tiny.json through Slurm succeeds (rc=$rc)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || sed 's/^/     /' sl/run.log | tail -20
nst=$(grep -c '^\[fluke\] run    ' sl/run.log)
check "every stage that ran was a Slurm job ($nst stages)" \
    sh -c '[ "$2" -gt 5 ] && [ "$(grep -c "^\[fluke\] slurm  job [0-9]*: " "$1")" -eq "$2" ]' - sl/run.log "$nst"
check "... which Slurm ran to COMPLETED" \
    sh -c '[ "$(grep -c "Name=fluke-tiny-.* JobState=COMPLETED " cluster/jobcomp.txt)" -eq "$1" ]' - "$nst"
check "the same submission.csv as the local run" cmp -s sl/out/tiny/submission.csv loc/out/tiny/submission.csv
(cd sl && "$FLUKE" run "$FLUKE_SRC/configs/tiny.json" > local.log 2>&1)
check "the Slurm-built store is a full cache hit for a local run" all_cached sl/local.log "$nst"

# ---- scancel mid-stage: no record; the rerun recomputes it
echo "slurm" > in.txt
cat > c.json <<J
{ "name": "c", $EX,
  "text": {
    "l1": {"op": "steps", "steps": 60, "delay_ms": 50},
    "l2": {"op": "upper", "from": "l1", "publish": true}
  } }
J
"$F" run c.json > c1.log 2>&1 &
pid=$!
ckpt() { [ -n "$(find .fluke/work -name ckpt 2> /dev/null)" ]; }
check "the long stage runs in its job (a checkpoint appeared)" wait_for 60 ckpt
j=$(jobid c1.log l1)
check "l1 is job $j, RUNNING in Slurm" sh -c '[ "$(squeue -h -j "$1" -o %T)" = RUNNING ]' - "$j"
scancel "$j"
wait "$pid"; rc=$?
check "the run with a cancelled job fails (rc=$rc, want 1)" [ $rc -eq 1 ]
check "... saying Slurm cancelled it" grep -q "^\[fluke\] failed l1: .*Slurm job ended CANCELLED.*(Slurm job $j, log " c1.log
check "... and l2 never started" grep -q "^\[fluke\] 2 stages: 0 ran, 0 cached, 1 failed, 1 skipped" c1.log
check "Slurm itself recorded the job CANCELLED" jobcomp_is "$j" JobState CANCELLED
"$F" status c.json > cst.log 2>&1
check "nothing of the cancelled stage is cached" sh -c '! grep -q "^cached" "$1"' - cst.log
"$F" run c.json > c2.log 2>&1; rc=$?
check "the rerun succeeds (rc=$rc)" [ $rc -eq 0 ]
check "... recomputing l1 and l2" runs_exactly c2.log l1 l2
check "... l1 as a new Slurm job" grep -q "^\[fluke\] slurm  job [0-9]*: l1 " c2.log
check "... to the right output" grep -qx "60 STEPS DONE" out/c/l2.txt

# ---- a failing stage: its exit code and its log
cat > f.json <<J
{ "name": "f", $EX,
  "text": {
    "g":  {"op": "upper", "from": "file:in.txt"},
    "b":  {"op": "fail", "from": "file:in.txt"},
    "bc": {"op": "concat", "from": ["g", "b"]}
  } }
J
"$F" run f.json > f1.log 2>&1; rc=$?
check "a run with a failing stage fails (rc=$rc, want 1)" [ $rc -eq 1 ]
jb=$(jobid f1.log b)
check "the failure names the stage's message, its job, its log and exit code 1" grep -Eq \
    "^\[fluke\] failed b: stage 'b' failed: deliberate failure \(op fail\) \(Slurm job $jb, log [^ ]+/slurm-$jb\.log: .*stage process ended \(exit 1, signal 0\)" f1.log
blog=$(sed -n "s/^\[fluke\] failed b: .*, log \([^ :)]*\.log\).*/\1/p" f1.log)
check "the log is kept in the stage's work dir ($blog)" sh -c \
    'case "$1" in "$2"/.fluke/work/*) grep -q "stage process ended (exit 1" "$1";; *) exit 1;; esac' - "$blog" "$T"
check "Slurm recorded the job FAILED" jobcomp_is "$jb" JobState FAILED
check "... with exit code 1" jobcomp_is "$jb" ExitCode 1:0
check "the independent stage completed; the one below the failure did not start" \
    grep -q "^\[fluke\] 3 stages: 1 ran, 0 cached, 1 failed, 1 skipped" f1.log

# ---- array folds: one sbatch --array whose tasks run at the same time within the node's CPUs.
# Each task waits (FLUKE_TS_RENDEZVOUS) until all have started: run one after another, the
# first would give up after 60 s and fail its stage.
n=$NCPU
[ "$n" -gt 4 ] && n=4
folds="" from=""
for k in $(seq 0 $((n - 1))); do
    folds="$folds\"f$k\": {\"op\": \"gpus\"},"
    from="$from${from:+, }\"f$k\""
done
cat > a.json <<J
{ "name": "a",
  "executor": {"kind": "slurm", "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.2, "array": true}},
  "text": { $folds
    "all": {"op": "concat", "from": [$from], "publish": true} } }
J
mkdir rv
# tasks_running N: N array tasks are RUNNING in Slurm at once (only this test uses the cluster).
tasks_running() { [ "$(squeue -h -r -t RUNNING -o %i 2> /dev/null | grep -c _)" -ge "$1" ]; }
FLUKE_TS_RENDEZVOUS="$n:$T/rv" "$F" run a.json > a1.log 2>&1 &
pid=$!
check "Slurm shows all $n array tasks RUNNING at once on the node's $NCPU cpus" wait_for 60 tasks_running "$n"
wait "$pid"; rc=$?
check "the array run succeeds: every task met the others (rc=$rc)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || grep failed a1.log | sed 's/^/     /'
ja=$(jobid a1.log f0)
check "f0..f$((n - 1)) were the $n tasks of one array job ($ja)" \
    sh -c '[ "$(grep -c "^\[fluke\] slurm  job ${1%_*}_[0-9]*: f[0-9] " "$2")" -eq "$3" ]' - "$ja" a1.log "$n"
check "... and 'all' went as one more job after them" \
    sh -c '[ "$(grep -c "^\[fluke\] slurm  job [0-9]*: all " "$1")" -eq 1 ]' - a1.log

# ---- a stage asking for a GPU: --gres=gpu:1 and the (fake) GPU Slurm bound
cat > g.json <<J
{ "name": "g", $EX,
  "text": {"gp": {"op": "gpus", "gpus": 1, "publish": true}} }
J
"$F" run g.json > g1.log 2>&1; rc=$?
check "the GPU stage runs through Slurm (rc=$rc)" [ $rc -eq 0 ]
jg=$(jobid g1.log gp)
# scontrol still holds the finished job (MinJobAge): what was asked for, what was allocated.
scontrol show job -d -o "$jg" | tr ' ' '\n' > g.job
check "its job asked Slurm for one GPU (TresPerNode=gres:gpu:1, from --gres=gpu:1)" grep -qx "TresPerNode=gres:gpu:1" g.job
check "... and Slurm allocated it the node's GPU (JOB_GRES=gpu:1)" grep -qx "JOB_GRES=gpu:1" g.job
check "the stage saw the GPU Slurm bound (CUDA_VISIBLE_DEVICES=0)" grep -q "^gpus 1 first 0 visible 0$" out/g/gp.txt
finish
