# What the issue-19 campaign found in the stage processes, the GPU pool, interrupts and publishing:
# `__stage` by hand (stdin as its spec blocked forever, stdout took its errors) is refused with
# exit 2 before reading anything; CUDA_VISIBLE_DEVICES entries CUDA does not accept ("-1",
# "NoDevFiles", one after an empty entry) name no device and a device listed twice is refused
# (two stages would share it); SIGHUP stops a run like SIGINT (exit 130, no record, no staging
# left), and a stage deaf to SIGTERM is killed after a grace period instead of keeping the
# interrupted run alive; gc and verify say that they wait for a run (they waited silently, for
# hours of training); publishing never writes through a symlink: not through out/<name> linked
# to a user's folder, not through a link left at its temporary file's name.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
wipe() { chmod -R u+w .fluke 2> /dev/null; rm -rf .fluke; } # checkouts are read-only

# --- __stage by hand: exit 2, a clear message, no store, no hang on a terminal-like stdin
mkfifo hold && exec 5<> hold # stdin for __stage: a pipe with a writer that never writes
stage2() { # description, args...
    local d=$1; shift
    timeout 20 $F __stage "$@" < hold > st.out 2> st.err 3< st.spec 4> st.fd4; local rc=$?
    if [ "$rc" -eq 2 ] && grep -q '__stage is internal (run by the executor)' st.err && [ ! -e .fluke ] && [ ! -s st.out ]; then ok "$d"
    else bad "$d (rc=$rc)"; sed 's/^/     /' st.err st.out; fi
}
printf '{"inputs": [], "config_dir": ".", "node": "a", "out_dir": "o", "work_dir": "w", "threads": 1, "gpus": 0, "config": {}}' > st.spec
stage2 "__stage without arguments" 
stage2 "__stage with two descriptors and no node" 0 1
stage2 "__stage reading its spec from stdin, errors to stdout" 0 1 a
stage2 "__stage with stderr for both" 2 2 a
stage2 "__stage with one descriptor for both" 3 3 a
stage2 "__stage with a spec file and a file for errors" 3 4 a
stage2 "__stage with descriptors that are not open" 77 78 a
stage2 "__stage with a huge descriptor" 2147483647 4 a
stage2 "__stage with extra arguments" 3 4 a b
check "no output directory was made from the hand-made spec" [ ! -e o ]
exec 5>&-

# --- CUDA_VISIBLE_DEVICES: the entries CUDA would use, each device once
printf '{"resources": {"gpus": 2}, "text": {"x": {"op": "gpus", "gpus": 1}, "y": {"op": "gpus", "gpus": 1}}}' > xy.json
cvd2() { # description, value, pattern
    wipe
    CUDA_VISIBLE_DEVICES=$2 $F run xy.json -j 2 > g.log 2>&1; local rc=$?
    if [ $rc -eq 2 ] && grep -Eq -- "$3" g.log && ! grep -q '^\[fluke\] run ' g.log; then ok "$1"
    else bad "$1 (rc=$rc)"; sed 's/^/     /' g.log; fi
}
cvd2 "a device listed twice is refused" "0,0" 'CUDA_VISIBLE_DEVICES="0,0" lists device 0 twice'
cvd2 "a UUID listed twice is refused" "GPU-ab12,GPU-ab12" 'lists device GPU-ab12 twice'
cvd2 "-1 names no device" "-1" 'lists 0 devices \(CUDA ignores the entries from "-1" on\)'
cvd2 "NoDevFiles names no device" "NoDevFiles" 'lists 0 devices \(CUDA ignores the entries from "NoDevFiles" on\)'
cvd2 "entries after an invalid one name no device" "0,-1,1" 'lists 1 device \(CUDA ignores the entries from "-1" on\)'
cvd2 "entries after an empty one name no device" "0,,1" 'lists 1 device \(CUDA ignores an empty entry'
cvd2 "non-ASCII entries name no device" "ü,ß" 'lists 0 devices'
wipe
CUDA_VISIBLE_DEVICES=' 3 , GPU-9f00 ' $F run xy.json -j 2 > g.log 2>&1; rc=$?
check "spaces around valid entries are fine" [ $rc -eq 0 ]
seen=$(cat .fluke/checkouts/*/[xy].txt 2>/dev/null | sed -n 's/^gpus 1 first 0 visible //p' | sort | tr '\n' ' ')
check "each stage got one of the two devices ($seen)" [ "$seen" = "3 GPU-9f00 " ]

# --- interrupts
echo x > in.txt
printf '{"name": "t", "text": {"a": {"op": "steps", "steps": 3000, "from": "file:in.txt", "delay_ms": 20}}}' > t.json
started() { ls .fluke/work/*/ckpt > /dev/null 2>&1; }
interrupt() { # description, signal, env...: start a run, send the signal once the stage checkpoints
    local d=$1 sig=$2; shift 2
    wipe
    env "$@" setsid $F run t.json > k.log 2>&1 &
    local pid=$! kid t0
    wait_for 30 started
    kid=$(pgrep -P "$pid" | head -1)
    t0=$SECONDS
    kill -"$sig" "$pid"
    wait "$pid"; local rc=$? took=$((SECONDS - t0))
    check "$d: exit 130" [ $rc -eq 130 ]
    check "$d: says so" grep -q "interrupted (SIG$sig)" k.log
    check "$d: within 20 s (took ${took}s)" [ $took -le 20 ]
    check "$d: the stage process is gone" sh -c "[ -n '$kid' ] && [ ! -e '/proc/$kid' ]"
    check "$d: no record" [ -z "$(find .fluke/records -type f 2>/dev/null)" ]
    check "$d: no staging left in the store's tmp" [ -z "$(ls -A .fluke/tmp 2>/dev/null)" ]
    kill -9 -- -"$pid" 2> /dev/null
}
interrupt "SIGHUP (terminal closed)" HUP
interrupt "SIGTERM to a run whose stage ignores SIGTERM" TERM FLUKE_TS_IGNORE_TERM=1

# --- gc during a run: it waits (saying so), and the running stage's checkpoints survive
printf '{"name": "g", "text": {"a": {"op": "steps", "steps": 3000, "from": "file:in.txt", "delay_ms": 20}}}' > gr.json
wipe
setsid $F run gr.json > gr.log 2>&1 &
rpid=$!
wait_for 30 started
$F gc gr.json > gc.log 2>&1 &
gpid=$!
says_waiting() { grep -q 'gc: waiting for the runs using the store at .* to finish' gc.log 2> /dev/null; }
check "gc during a run says it waits for the run" wait_for 30 says_waiting
check "gc has not finished while the run goes on" [ -e "/proc/$gpid" ]
check "the running stage's work dir is still there" started
kill -INT "$rpid"; wait "$rpid"
wait "$gpid"; rc=$?
check "gc finishes once the run stopped" [ $rc -eq 0 ]
check "and keeps the interrupted stage's checkpoint (its work ref)" started
$F verify gr.json > gv.log 2>&1 &
vpid=$!
wait "$vpid"
check "verify with no run going does not wait" sh -c "! grep -q waiting gv.log"

# --- publishing never writes through a symlink
printf '{"name": "p", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' > p.json
mkdir -p udir out && echo MINE > udir/a.txt && ln -s ../udir out/p
$F run p.json > p1.log 2>&1; rc=$?
check "out/<name> linked to a user's folder: exit 1" [ $rc -eq 1 ]
check "the message names the link" grep -q 'not publishing to out/p: it is a symbolic link' p1.log
check "the user's file is untouched" [ "$(cat udir/a.txt)" = MINE ]
rm out/p
if unshare -Upf --map-root-user true 2> /dev/null; then
    # In a new PID namespace fluke is pid 1, so its temporary file's name is known in advance.
    mkdir -p out/p && echo SAFE > victim && ln -s ../../victim out/p/a.txt.fluke-publish.1.tmp.1
    unshare -Upf --map-root-user sh -c "exec $F run p.json" > p2.log 2>&1; rc=$?
    check "a link at the temporary file's name: publish succeeds" [ $rc -eq 0 ]
    check "the file the link points to is untouched" [ "$(cat victim)" = SAFE ]
    check "the published file is right" [ "$(cat out/p/a.txt)" = X ]
else
    echo "note: no unprivileged PID namespace here; the temporary-name link case is not checked"
fi
finish
