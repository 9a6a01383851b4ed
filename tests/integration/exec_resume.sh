# A long stage checkpoints in its per-key work directory and resumes from the newest checkpoint
# when rerun with the same key after a kill; the work directory goes once the result commits.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo x > in.txt
printf '{"name": "t", "text": {"train": {"op": "steps", "steps": 60, "delay_ms": 50, "from": "file:in.txt", "publish": true}}}' > t.json
setsid $F run t.json > k.log 2>&1 &
pid=$!
# kill once the checkpoint says step 8 or later (the stage writes it after every step)
for i in $(seq 1 200); do
    step=$(cat .fluke/work/*/ckpt 2>/dev/null | head -1)
    [ "${step:-0}" -ge 8 ] 2>/dev/null && break
    sleep 0.02
done
kill -9 -- -"$pid"; wait "$pid" 2>/dev/null
check "the first run was killed mid-training" sh -c "! grep -q 'done   train' k.log"
check "a checkpoint survived the kill" [ -n "$(find .fluke/work -name ckpt)" ]
$F run t.json > r.log 2>&1
step=$(sed -n 's/.*resuming at step \([0-9]*\).*/\1/p' r.log)
check "the rerun resumed from the checkpoint (step ${step:-none})" [ "${step:-0}" -gt 0 ]
check "progress lines show step, rate and ETA" grep -Eq '60/60 step \(100.0%\) [0-9.]+ step/s ETA 0:00:00 loss' r.log
check "the result is complete" [ "$(cat out/t/train.txt)" = "60 steps done" ]
check "the work directory is removed after the commit" [ -z "$(find .fluke/work -mindepth 1 2>/dev/null)" ]
finish
