# A long stage checkpoints in its per-key work directory and resumes from the newest checkpoint
# when rerun with the same key after a kill; the work directory goes once the result commits.
# The kill is driven by the checkpoint, not a clock: it happens once the checkpoint file shows a
# step, and the rerun must resume at exactly the step the checkpoint held after the kill.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo x > in.txt
printf '{"name": "t", "text": {"train": {"op": "steps", "steps": 60, "delay_ms": 50, "from": "file:in.txt", "publish": true}}}' > t.json
ckpt_step() { cat .fluke/work/*/ckpt 2> /dev/null | head -1; }
# the event: the stage has checkpointed step 3 or later (it writes the file after every step);
# or the run ended, so that a broken stage fails the test instead of hanging it
at_step() {
    local s; s=$(ckpt_step)
    case "$s" in ''|*[!0-9]*) s=0 ;; esac
    [ "$s" -ge 3 ] || ! kill -0 "$pid" 2> /dev/null
}
setsid $F run t.json > k.log 2>&1 &
pid=$!
wait_for 120 at_step
kill -9 -- -"$pid" 2> /dev/null; wait "$pid" 2> /dev/null
killed_at=$(ckpt_step)
check "the first run started training" ran k.log train
check "the first run was killed mid-training" sh -c "! grep -q 'done   train' k.log"
check "a checkpoint survived the kill (step ${killed_at:-none} of 60)" \
    sh -c "echo '${killed_at:-x}' | grep -Eq '^[0-9]+\$' && [ '${killed_at:-0}' -ge 3 ] && [ '${killed_at:-0}' -lt 60 ]"
$F run t.json > r.log 2>&1; rc=$?
check "the rerun succeeds (rc=$rc)" [ $rc -eq 0 ]
step=$(sed -n 's/.*resuming at step \([0-9]*\).*/\1/p' r.log)
check "the rerun resumed at the checkpointed step (${step:-none}, checkpoint ${killed_at:-none})" \
    [ "${step:-none}" = "${killed_at:-unknown}" ]
check "progress lines show step, rate and ETA" grep -Eq '60/60 step \(100.0%\) [0-9.]+ step/s ETA 0:00:00 loss' r.log
check "the result is complete" [ "$(cat out/t/train.txt)" = "60 steps done" ]
check "the work directory existed" [ -d .fluke/work ]
check "the work directory is removed after the commit" [ -z "$(find .fluke/work -mindepth 1)" ]
finish
