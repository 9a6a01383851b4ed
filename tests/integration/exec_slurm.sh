# The Slurm executor (fluke run --executor slurm) against a fake Slurm client
# (tests/integration/fake_slurm/: sbatch, squeue, sacct, scancel that really run each batch script
# in the background, keep a job table, inject faults on demand and log every call with a time):
# same outputs and cache as a local run, and either executor then reruns nothing; sbatch options
# from the stage and the config; one batched squeue per poll interval, never faster than the
# minimum; failed, NODE_FAIL, PREEMPTED, CANCELLED, OUT_OF_MEMORY jobs fail their stage and cache
# nothing while independent stages complete; sacct and the exit files decide for jobs that left
# the queue; Ctrl-C cancels every live job with one scancel; busy-controller errors are retried,
# a lost sbatch answer is not submitted twice, and the retries are bounded.
# Normal build only: the run is bound by poll intervals and fake-Slurm start-ups (35 s), while the
# sbatch arguments and the squeue/sacct parsing it drives run under the sanitizers in
# test_slurm_cmd (the executor loop of dag/exec_slurm.c itself then only in this normal run).
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
FS=${FLUKE_SRC:?}/tests/integration/fake_slurm
command -v python3 > /dev/null || skip "python3 not found (the fake Slurm client is a python3 script)"
[ -x "$FS/sbatch" ] || skip "no fake Slurm client in $FS"
export PATH="$FS:$PATH" FAKE_SLURM_DIR="$T/slurm"
mkdir slurm
CALLS=$T/slurm/calls.log
# fresh_slurm: an empty job table and call log (between scenarios).
fresh_slurm() { rm -f slurm/jobs.json slurm/calls.log; : > "$CALLS"; }
# wipe: a fresh store (checkouts are read-only: a non-root user must make them writable first).
wipe() { chmod -R u+w .fluke out 2>/dev/null; rm -rf .fluke out; }
# calls CMD: the logged calls of CMD ("TIME<tab>CMD<tab>ARGS").
calls() { awk -F'\t' -v c="$1" '$2 == c' "$CALLS"; }
ncalls() { calls "$1" | wc -l; }
# jobid LOG NODE: the Slurm job fluke submitted NODE as.
jobid() { sed -n "s/^\[fluke\] slurm  job \([0-9_]*\): $2 .*/\1/p" "$1" | head -1; }
# poll_gaps MIN: consecutive squeue status polls (--jobs=) are at least MIN seconds apart.
poll_gaps() {
    calls squeue | grep -- '--jobs=' | python3 -c '
import sys
t = [float(l.split("\t")[0]) for l in sys.stdin]
bad = [b - a for a, b in zip(t, t[1:]) if b - a < float(sys.argv[1])]
if bad or not t: print("     (%d polls, gaps below %s s: %s)" % (len(t), sys.argv[1], bad)); sys.exit(1)' "$1"
}

echo "executor" > in.txt
# x needs 2 threads, y a GPU; executor.kind is not set: local unless --executor slurm. Polls
# every 2 s here, the floor min_poll_s over a poll_s of 0.5 (the other configs 0.5 s): well above what one fake command takes on a busy
# machine, so polling too often shows in the gaps.
cat > p.json <<'J'
{ "name": "p",
  "resources": {"gpus": 1},
  "executor": {"slurm": {"poll_s": 0.5, "min_poll_s": 2, "retry_s": 0.05, "retries": 4,
                         "exit_wait_s": 2, "partition": "testq", "account": "acct42",
                         "time": "00:10:00", "mem": "100M", "extra_args": ["--qos=low"]}},
  "text": {
    "x": {"op": "upper", "from": "file:in.txt", "threads": 2, "delay_ms": 1500},
    "y": {"op": "reverse", "from": "file:in.txt", "gpus": 1, "delay_ms": 1500},
    "z": {"op": "concat", "from": ["x", "y"], "publish": true}
  } }
J
mkdir loc sl
cp in.txt p.json loc/ && cp in.txt p.json sl/
(cd loc && env -u CUDA_VISIBLE_DEVICES "$F" run p.json > run.log 2>&1) || bad "local reference run"
(cd loc && "$F" status p.json > status.log 2>&1)

# ---- a Slurm run: the same outputs and records as the local one
fresh_slurm
t0=$(date +%s.%N)
(cd sl && "$F" run p.json --executor slurm > run.log 2>&1); rc=$?
t1=$(date +%s.%N)
check "slurm run succeeds (rc=$rc)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || sed 's/^/     /' sl/run.log
check "slurm run: the same published output as the local run" cmp -s sl/out/p/z.txt loc/out/p/z.txt
(cd sl && "$F" status p.json > status.log 2>&1)
check "slurm run: the same cached stages and output digests as the local run" cmp -s sl/status.log loc/status.log
check "slurm run: three sbatch jobs, one per stage ($(ncalls sbatch))" [ "$(ncalls sbatch)" -eq 3 ]
run_id=$(sed -n 's/^\[fluke\] slurm  run \([^:]*\):.*/\1/p' sl/run.log)
check "the run has an id ($run_id)" [ -n "$run_id" ]
check "poll_s below min_poll_s is raised to it, and says so" grep -q "poll_s 0.5 is below min_poll_s 2 .*: polling every 2 s" sl/run.log
sb_x=$(calls sbatch | grep -- "--job-name=fluke-$run_id-[0-9]*-x ")
sb_y=$(calls sbatch | grep -- "--job-name=fluke-$run_id-[0-9]*-y ")
check "sbatch of x: --parsable, --cpus-per-task=2 from its threads, no GPU" \
    sh -c 'case "$1" in *--parsable*--cpus-per-task=2\ *) case "$1" in *--gres*) exit 1;; esac;; *) exit 1;; esac' - "$sb_x"
check "sbatch of y: --gres=gpu:1 from its GPU need, 1 cpu" \
    sh -c 'case "$1" in *--cpus-per-task=1\ *--gres=gpu:1\ *) ;; *) exit 1;; esac' - "$sb_y"
check "sbatch: partition, account, time, mem and extra_args from executor.slurm" \
    sh -c 'for o in --partition=testq --account=acct42 --time=00:10:00 --mem=100M --qos=low; do
               case "$1" in *" $o "*) ;; *) echo "     (missing $o in: $1)"; exit 1;; esac; done' - "$sb_x"
jx=$(jobid sl/run.log x) jy=$(jobid sl/run.log y)
check "x and y were polled together in one squeue call (jobs $jx, $jy)" \
    sh -c 'calls() { awk -F"\t" "\$2 == \"squeue\"" "$1"; }; calls "$1" | grep -q -- "--jobs=$2,$3 "' - "$CALLS" "$jx" "$jy"
check "every status poll is one squeue call, polls at least 1.9 s apart (min_poll_s 2)" poll_gaps 1.9
polls=$(calls squeue | grep -c -- '--jobs=')
max=$(python3 -c "print(int(($t1 - $t0) / 2) + 1)")
check "at most one squeue per interval over the run ($polls polls in $(python3 -c "print(round($t1 - $t0, 1))") s, <= $max)" [ "$polls" -le "$max" ]
check "sacct only for what a poll's squeue no longer listed: at most one per poll" \
    sh -c '[ "$(awk -F"\t" "\$2 == \"sacct\"" "$1" | wc -l)" -le "$2" ]' - "$CALLS" "$polls"

check "the run directory in the store is gone after the run" sh -c '! ls -d sl/.fluke/tmp/*-slurm-* 2>/dev/null'

# ---- a second run, with either executor, reruns nothing
fresh_slurm
(cd sl && "$F" run p.json --executor slurm > run2.log 2>&1)
check "second slurm run: every stage cached" all_cached sl/run2.log 3
check "second slurm run: no job submitted" [ "$(ncalls sbatch)" -eq 0 ]
(cd sl && env -u CUDA_VISIBLE_DEVICES "$F" run p.json > run3.log 2>&1)
check "then a local run on the Slurm-built store: every stage cached" all_cached sl/run3.log 3
(cd loc && "$F" run p.json --executor slurm > run2.log 2>&1)
check "a slurm run on the locally built store: every stage cached" all_cached loc/run2.log 3
check "executor.kind slurm in the config selects Slurm too" \
    sh -c 'cd "$1" && sed "s/\"executor\": {/\"executor\": {\"kind\": \"slurm\", /" p.json > k.json &&
           "$2" run k.json --force x > k.log 2>&1 && grep -q "^\[fluke\] slurm  job .*: x " k.log' - "$T/sl" "$F"

# ---- failures: a failing stage, NODE_FAIL, PREEMPTED, CANCELLED, OUT_OF_MEMORY. As locally, the
# stages already running when one fails complete and are cached; nothing new starts.
cat > f.json <<'J'
{ "name": "f",
  "executor": {"kind": "slurm",
               "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.05, "exit_wait_s": 2}},
  "text": {
    "a":  {"op": "upper", "from": "file:in.txt"},
    "b":  {"op": "fail", "from": "file:in.txt"},
    "bc": {"op": "concat", "from": ["a", "b"]},
    "nf": {"op": "upper", "from": "file:in.txt", "suffix": "n"},
    "pr": {"op": "upper", "from": "file:in.txt", "suffix": "p"},
    "ca": {"op": "upper", "from": "file:in.txt", "suffix": "c"},
    "om": {"op": "upper", "from": "file:in.txt", "suffix": "o"},
    "ok": {"op": "reverse", "from": "a"}
  } }
J
fresh_slurm
FAKE_SLURM_STATE="nf=NODE_FAIL,pr=PREEMPTED,ca=CANCELLED,om=OUT_OF_MEMORY" "$F" run f.json > f1.log 2>&1; rc=$?
check "a run with failed jobs fails (rc=$rc, want 1)" [ $rc -eq 1 ]
check "the failing stage's own message, its job and its log are reported" \
    grep -Eq "^\[fluke\] failed b: stage 'b' failed: deliberate failure \(op fail\) \(Slurm job [0-9]+, log [^ ]+/work/[0-9a-f]+/slurm-[0-9]+\.log" f1.log
check "a job cancelled before it started says it has no log" grep -q "^\[fluke\] failed ca: .*log none: it never started" f1.log
blog=$(sed -n "s/^\[fluke\] failed b: .*, log \([^ :)]*\.log\).*/\1/p" f1.log)
check "its log was kept in the stage's work dir ($blog)" grep -q "stage process ended (exit 1" "$blog"
check "NODE_FAIL fails the stage (its exit file said 0)" grep -q "^\[fluke\] failed nf: .*Slurm job ended NODE_FAIL" f1.log
check "PREEMPTED fails the stage" grep -q "^\[fluke\] failed pr: .*Slurm job ended PREEMPTED" f1.log
check "CANCELLED fails the stage" grep -q "^\[fluke\] failed ca: .*Slurm job ended CANCELLED" f1.log
check "an out-of-memory step makes the job OUT_OF_MEMORY" grep -q "^\[fluke\] failed om: .*Slurm job ended OUT_OF_MEMORY" f1.log
check "jobs that left the queue together were asked about in one sacct call" \
    sh -c 'awk -F"\t" "\$2 == \"sacct\"" "$1" | grep -Eq -- "-j [0-9]+,[0-9]+"' - "$CALLS"
check "the independent stage running beside them completed (a)" grep -q "^\[fluke\] done   a " f1.log
check "nothing new started after the failures (bc, ok skipped)" grep -q "^\[fluke\] 8 stages: 1 ran, 0 cached, 5 failed, 2 skipped" f1.log
"$F" status f.json > fst.log 2>&1
check "nothing of the failed jobs is cached" sh -c '! grep -Eq "^cached +(b|nf|pr|ca|om|bc) " "$1"' - fst.log
check "the completed stage is cached" grep -Eq "^cached +a " fst.log
check "status: the cached stage is a local hit" grep -Eq "^cached +a .*  \[local hit\]$" fst.log
check "status: the failed stage would run" grep -Eq "^(stale|missing) +b .*  \[would run\]$" fst.log
check "status: the stage below it would run" grep -Eq "^(stale|missing) +bc +upstream b: .*  \[would run\]$" fst.log
fresh_slurm
"$F" run f.json > f2.log 2>&1
check "rerun without faults: exactly the failed (and never started) stages run" runs_exactly f2.log b nf pr ca om ok

# ---- jobs gone from squeue: sacct, then the exit file, decide
cat > g.json <<'J'
{ "name": "g",
  "executor": {"kind": "slurm",
               "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.05, "exit_wait_s": 2}},
  "text": {
    "q":  {"op": "upper", "from": "file:in.txt"},
    "qf": {"op": "fail", "from": "file:in.txt"}
  } }
J
fresh_slurm
FAKE_SLURM_NO_SACCT="q,qf" "$F" run g.json > g1.log 2>&1
check "sacct does not know the jobs: the exit file says q succeeded" grep -q "^\[fluke\] done   q " g1.log
check "... and that qf failed, with the stage's message" grep -q "^\[fluke\] failed qf: stage 'qf' failed: deliberate failure" g1.log
wipe
fresh_slurm
FAKE_SLURM_ACCT_DISABLED=1 "$F" run g.json > g2.log 2>&1
check "accounting disabled: exit files decide (q done, qf failed)" \
    sh -c 'grep -q "^\[fluke\] done   q " "$1" && grep -q "^\[fluke\] failed qf: .*deliberate failure" "$1"' - g2.log
wipe
fresh_slurm
# Accounting off too: only squeue (--states=all) can tell that qf ended NODE_FAIL.
FAKE_SLURM_ACCT_DISABLED=1 FAKE_SLURM_MIN_AGE=30 FAKE_SLURM_STATE="qf=NODE_FAIL" "$F" run g.json > g3.log 2>&1
check "finished jobs still listed by squeue are classified from its state (q done)" grep -q "^\[fluke\] done   q " g3.log
check "... qf NODE_FAIL from squeue" grep -q "^\[fluke\] failed qf: .*Slurm job ended NODE_FAIL" g3.log
check "... without asking sacct" [ "$(ncalls sacct)" -eq 0 ]
# A job that vanished with no trace anywhere: neither cached nor waited for forever.
wipe
fresh_slurm
FAKE_SLURM_NO_SACCT="q" FAKE_SLURM_STATE="q=CANCELLED" "$F" run g.json > g4.log 2>&1; rc=$?
check "a job that left no trace fails after exit_wait_s (rc=$rc)" \
    grep -q "^\[fluke\] failed q: .*left the queue, sacct does not know it, and it wrote no exit file" g4.log

# ---- Ctrl-C: one scancel of every live job; nothing cached
cat > c.json <<'J'
{ "name": "c",
  "executor": {"kind": "slurm", "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.05}},
  "text": {
    "l1": {"op": "steps", "steps": 400, "delay_ms": 50},
    "l2": {"op": "steps", "steps": 400, "delay_ms": 50, "suffix": "2"},
    "l3": {"op": "upper", "from": "l1"}
  } }
J
wipe
fresh_slurm
"$F" run c.json > c1.log 2>&1 &
pid=$!
ckpts() { [ "$(find .fluke/work -name ckpt 2>/dev/null | wc -l)" -eq 2 ]; }
check "both long stages run in their jobs" wait_for 60 ckpts
kill -INT "$pid"
wait "$pid"; rc=$?
check "interrupted run exits 130 (rc=$rc)" [ $rc -eq 130 ]
j1=$(jobid c1.log l1) j2=$(jobid c1.log l2)
check "exactly one scancel, naming both live jobs ($j1 $j2)" \
    sh -c '[ "$(awk -F"\t" "\$2 == \"scancel\"" "$1" | wc -l)" -eq 1 ] &&
           awk -F"\t" "\$2 == \"scancel\"" "$1" | grep -Eq "	($2 $3|$3 $2)$"' - "$CALLS" "$j1" "$j2"
gone() { python3 -c '
import json, os, sys
t = json.load(open(sys.argv[1]))
for j in t["jobs"].values():
    try:
        os.killpg(j["pid"], 0); sys.exit(1)
    except (ProcessLookupError, TypeError):
        pass' slurm/jobs.json; }
check "the jobs' processes are gone" wait_for 10 gone
"$F" status c.json > cst.log 2>&1
check "nothing of the interrupted stages is cached" sh -c '! grep -q "^cached" "$1"' - cst.log

# ---- transient controller errors are retried; a lost sbatch answer is not a second job
wipe
fresh_slurm
FAKE_SLURM_TRANSIENT="sbatch=2,squeue=2,sacct=1" "$F" run g.json > t1.log 2>&1
check "transient sbatch/squeue/sacct errors: the run still completes q" grep -q "^\[fluke\] done   q " t1.log
check "... sbatch was retried (try 1 of 6)" grep -q "sbatch: .*Socket timed out.*(try 1 of 6, retrying)" t1.log
check "... squeue was retried (>= 3 calls)" [ "$(ncalls squeue)" -ge 3 ]
wipe
fresh_slurm
cat > one.json <<'J'
{ "name": "one",
  "executor": {"kind": "slurm", "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "retry_s": 0.05, "retries": 3}},
  "text": {"q": {"op": "upper", "from": "file:in.txt"}} }
J
FAKE_SLURM_TRANSIENT="sbatch=1" FAKE_SLURM_SBATCH_LOST=1 "$F" run one.json > t2.log 2>&1; rc=$?
check "an sbatch whose answer was lost: the run succeeds (rc=$rc)" [ $rc -eq 0 ]
check "... using the job it did submit" grep -q "failed but job [0-9]* was submitted: using it" t2.log
njobs=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["jobs"]))' slurm/jobs.json)
check "... which is the only job ($njobs)" [ "$njobs" -eq 1 ]
wipe
fresh_slurm
FAKE_SLURM_TRANSIENT="sbatch=100" "$F" run one.json > t3.log 2>&1; rc=$?
check "a controller that never answers: the stage fails after the bounded retries (rc=$rc)" \
    grep -q "^\[fluke\] failed q: .*sbatch failed 3 times: .*Socket timed out" t3.log
check "... 3 sbatch tries in all" [ "$(ncalls sbatch)" -eq 3 ]

# ---- instances of one stage ready together as one job array
cat > a.json <<'J'
{ "name": "a",
  "executor": {"kind": "slurm", "slurm": {"poll_s": 0.5, "min_poll_s": 0.5, "array": true}},
  "text": {
    "f0": {"op": "upper", "from": "file:in.txt", "suffix": "0"},
    "f1": {"op": "upper", "from": "file:in.txt", "suffix": "1"},
    "f2": {"op": "upper", "from": "file:in.txt", "suffix": "2"},
    "all": {"op": "concat", "from": ["f0", "f1", "f2"], "publish": true}
  } }
J
wipe
fresh_slurm
"$F" run a.json > a1.log 2>&1; rc=$?
check "array run succeeds (rc=$rc)" [ $rc -eq 0 ]
check "f0..f2 went as one sbatch --array=0-2" sh -c '[ "$(awk -F"\t" "\$2 == \"sbatch\"" "$1" | grep -c -- "--array=0-2 ")" -eq 1 ]' - "$CALLS"
check "two sbatch calls in all (the array, then 'all')" [ "$(ncalls sbatch)" -eq 2 ]
check "array output right" [ "$(cat out/a/all.txt)" = "$(printf 'EXECUTOR\n0EXECUTOR\n1EXECUTOR\n2')" ]

# ---- config errors
sed 's/"kind": "slurm"/"kind": "pbs"/' g.json > bad.json
"$F" run bad.json > bad.log 2>&1; rc=$?
check "executor.kind pbs: usage error naming file:line (rc=$rc)" \
    sh -c '[ "$2" -eq 2 ] && grep -q "bad.json:2: executor.kind is .pbs.: expected" "$1"' - bad.log "$rc"
sed 's/"poll_s": 0.5,/"poll_s": 0.5, "bogus": 1,/' g.json > bad2.json
"$F" run bad2.json > bad2.log 2>&1; rc=$?
check "unknown key executor.slurm.bogus is refused (rc=$rc)" grep -q "unknown key 'executor.slurm.bogus'" bad2.log
mkdir nobin
PATH="$T/nobin" "$F" run g.json > nobin.log 2>&1; rc=$?
check "no sbatch on PATH: the stages fail saying so (rc=$rc)" \
    grep -q "^\[fluke\] failed q: stage 'q' failed: cannot run sbatch: .*(is the Slurm client installed and on PATH?)" nobin.log
"$F" run g.json --executor pbs > bad3.log 2>&1; rc=$?
check "--executor pbs is a usage error (rc=$rc)" [ $rc -eq 2 ]
finish
