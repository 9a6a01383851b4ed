# kill -9 at random moments during a run (20 randomized trials; FLUKE_KILL_TRIALS sets another
# count): never a corrupt or partial record; the next run completes with outputs byte-identical
# to an uninterrupted run.
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
seed=${FLUKE_KILL_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "kill trials, seed $seed (FLUKE_KILL_SEED=$seed reproduces)"
seq 1 400 > in.txt
cat > k.json <<'J'
{ "name": "k",
  "text": {
    "a": {"op": "upper", "from": "file:in.txt", "delay_ms": 120},
    "b": {"op": "reverse", "from": "a", "delay_ms": 120},
    "c": {"op": "length", "from": "a", "delay_ms": 120},
    "d": {"op": "concat", "from": ["b", "c"], "delay_ms": 120},
    "e": {"op": "upper", "from": "d", "delay_ms": 60, "publish": true},
    "f": {"op": "reverse", "from": "c", "publish": true}
  } }
J
mkdir ref && (cd ref && cp ../in.txt ../k.json . && $F run k.json -j 2 > run.log 2>&1) || bad "reference run"
sessions="" # every killed run is the leader of its own session, its stage processes members
for trial in $(seq 1 "${FLUKE_KILL_TRIALS:-20}"); do
    rm -rf .fluke out
    # one to three kills per trial, each at a random moment, then a run to completion
    kills=$(( RANDOM % 3 + 1 ))
    for k in $(seq 1 $kills); do
        setsid $F run k.json -j $(( RANDOM % 2 + 1 )) > kill.log 2>&1 &
        pid=$!
        sessions="$sessions${sessions:+,}$pid"
        sleep "0.$(printf '%03d' $(( RANDOM % 700 )))" # lint: sleep is the random kill moment
        if [ $(( RANDOM % 2 )) -eq 0 ]; then kill -9 -- -"$pid" 2>/dev/null; else kill -9 "$pid" 2>/dev/null; fi
        wait "$pid" 2>/dev/null
        # every record that exists must point to a complete, uncorrupted tree
        $F verify k.json > verify.log 2>&1 || { bad "trial $trial kill $k: verify after kill"; cat verify.log; }
        grep -q ' 0 corrupt' verify.log || bad "trial $trial: corrupt objects after kill"
    done
    $F run k.json > final.log 2>&1 || { bad "trial $trial: run after kill"; cat final.log; continue; }
    if cmp -s out/k/e.txt ref/out/k/e.txt && cmp -s out/k/f.txt ref/out/k/f.txt; then
        ok "trial $trial ($kills kills): outputs byte-identical"
    else
        bad "trial $trial: outputs differ from the uninterrupted run"
    fi
    # The interrupted work never leaves a record that a later run trusts wrongly: a second run
    # is all cached and verify is clean.
    $F run k.json > again.log 2>&1
    all_cached again.log 6 || { bad "trial $trial: the rerun after completion is not all cached"; cat again.log; }
done
# No stage process outlives its killed parent: wait until the killed runs' sessions are empty
# (death signals arrive asynchronously). Only our sessions count, not other users' processes.
gone() { pgrep -s "$1" > /dev/null; [ $? -eq 1 ]; }
check "no orphaned stage processes (sessions $sessions)" wait_for 30 gone "$sessions"
# The same, deterministically: a stage that would live 30 s; kill -9 only the parent once the
# stage process exists; its session must empty long before the stage could have finished.
printf '{"name": "o", "text": {"slow": {"op": "upper", "from": "file:in.txt", "delay_ms": 30000}}}' > o.json
setsid $F run o.json > o.log 2>&1 &
pid=$!
members() { [ "$(pgrep -s "$pid" | wc -l)" -ge 2 ]; }
check "the slow stage's process started" wait_for 60 members
kill -9 "$pid"; wait "$pid" 2> /dev/null
check "the stage of a parent killed with -9 dies with it" wait_for 10 gone "$pid"
pkill -9 -s "$pid" 2> /dev/null
finish
