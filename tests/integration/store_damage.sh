# A damaged store, scenario by scenario (issue 19, items 4 and 10): every one of run, status,
# explain, verify, gc, dag and config is run against a fresh copy of the damaged store. None may
# crash, hang (20 s) or go quiet with wrong output: run rebuilds what is damaged and still
# publishes the right bytes; run, status and verify name damaged records; verify counts the
# damage as corrupt (exit 1), and a run after verify or gc is right too.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
command -v python3 >/dev/null || { echo "skipped: python3 not installed"; exit 77; }
echo "abc" > in.txt
printf '{"name": "v", "text": {"a": {"op": "upper", "from": "file:in.txt"}, "b": {"op": "reverse", "from": "a", "publish": true}}}' > v.json
$F run v.json > first.log 2>&1 || { cat first.log; bad "the first run"; finish; }
want=$(cat out/v/b.txt)
cp -a .fluke pristine
# Paths in the pristine store (relative to .fluke/).
rec_of() { grep -rl "\"node\":\"$1\"" pristine/records | head -1 | sed 's|^pristine/||'; }
RA=$(rec_of a); RB=$(rec_of b)
tree_of() { sed -n 's/^tree \([0-9a-f]*\)$/\1/p' "pristine/$1"; }
TA=$(tree_of "$RA"); TB=$(tree_of "$RB")
TPA="trees/${TA:0:2}/${TA:2}"
OA=$(grep -rl "^ABC" pristine/objects | head -1 | sed 's|^pristine/||')
check "found the records, trees and object of the pristine store" \
    test -n "$RA" -a -n "$RB" -a -n "$TA" -a -n "$TB" -a -n "$OA"
OUTSIDE=$T/outside; mkdir -p "$OUTSIDE"; echo "ABC" > "$OUTSIDE/a.txt"
rw() { chmod -R u+w "$@" 2>/dev/null; }
nocheckouts() { rw .fluke/checkouts; rm -rf .fluke/checkouts/*; } # forces a rebuild from objects
py() { python3 -c "$@"; }
# Each scenario: name, kind (rec: a damaged record, to be named by run/status/verify; store:
# other damage verify must count; quiet: repaired in passing; fatal: a top-level directory of the
# store is not one, which every store command refuses with exit 3 naming it), damage commands.
damage() {
    local s=$1; cd "$T"; rw .fluke; rm -rf .fluke; cp -a pristine .fluke; rw .fluke/records .fluke/trees .fluke/objects
    case $s in
    rec_truncated) truncate -s 40 ".fluke/$RA" ;;
    rec_empty) : > ".fluke/$RA" ;;
    rec_garbage) printf 'garbage\n' > ".fluke/$RA" ;;
    rec_tree_swap) sed -i "s/^tree $TA\$/tree $TB/" ".fluke/$RA" ;;
    rec_other_key) cp ".fluke/$RB" ".fluke/$RA" ;;
    rec_nul_junk) py "import re,sys;p='.fluke/$RA';b=open(p,'rb').read();i=b.index(b'\njson ');j=b.index(b'\n',i+1);open(p,'wb').write(b[:j]+b'\0junk'+b[j:])" ;;
    rec_huge_len) py "import re;p='.fluke/$RA';b=open(p,'rb').read();open(p,'wb').write(re.sub(rb'json [0-9]+ ',b'json 99999999999999999999 ',b))" ;;
    rec_dir) rm -f ".fluke/$RA"; mkdir -p ".fluke/$RA/x" ;;
    rec_symlink_zero) rm -f ".fluke/$RA"; ln -s /dev/zero ".fluke/$RA" ;;
    rec_symlink_file) cp ".fluke/$RB" "$OUTSIDE/rec"; rm -f ".fluke/$RA"; ln -s "$OUTSIDE/rec" ".fluke/$RA" ;;
    rec_fifo) rm -f ".fluke/$RA"; mkfifo ".fluke/$RA" ;;
    rec_sparse) truncate -s 1T ".fluke/$RA" ;;
    rec_shard_file) rm -rf "$(dirname ".fluke/$RA")"; echo junk > "$(dirname ".fluke/$RA")" ;;
    obj_symlink) nocheckouts; rm -f ".fluke/$OA"; ln -s "$OUTSIDE/a.txt" ".fluke/$OA" ;;
    obj_dir) nocheckouts; rm -f ".fluke/$OA"; mkdir ".fluke/$OA" ;;
    obj_fifo) nocheckouts; rm -f ".fluke/$OA"; mkfifo ".fluke/$OA" ;;
    obj_shard_file) nocheckouts; rm -rf "$(dirname ".fluke/$OA")"; echo junk > "$(dirname ".fluke/$OA")" ;;
    tree_fifo) nocheckouts; rm -f ".fluke/$TPA"; mkfifo ".fluke/$TPA" ;;
    tree_dotdot) nocheckouts; py "p='.fluke/$TPA';b=open(p,'rb').read();open(p,'wb').write(b.replace(b' a.txt\0',b' ../x\0'))" ;;
    tree_sparse) nocheckouts; truncate -s 1T ".fluke/$TPA" ;;
    checkout_file) rw .fluke/checkouts; rm -rf ".fluke/checkouts/$TA"; echo x > ".fluke/checkouts/$TA" ;;
    checkout_symlink) rw .fluke/checkouts; rm -rf ".fluke/checkouts/$TA"; mkdir -p "$OUTSIDE/co"; echo WRONG > "$OUTSIDE/co/a.txt"; ln -s "$OUTSIDE/co" ".fluke/checkouts/$TA" ;;
    lock_symlink) rm -f .fluke/locks/gc; ln -s "$OUTSIDE/created-through-link" .fluke/locks/gc ;;
    lock_dir) rm -f .fluke/locks/gc; mkdir .fluke/locks/gc ;;
    lock_fifo) rm -f .fluke/locks/gc; mkfifo .fluke/locks/gc ;;
    statcache_fifo) rm -f .fluke/statcache; mkfifo .fluke/statcache ;;
    statcache_zero) rm -f .fluke/statcache; ln -s /dev/zero .fluke/statcache ;;
    ref_dir) rm -rf .fluke/refs/runs/v; mkdir -p .fluke/refs/runs/v/x ;;
    ref_fifo) rm -rf .fluke/refs/runs/v; mkfifo .fluke/refs/runs/v ;;
    layout_objects_file) rw .fluke/objects; rm -rf .fluke/objects; echo x > .fluke/objects ;;
    layout_tmp_link) rm -rf .fluke/tmp; ln -s /dev/null .fluke/tmp ;;
    esac
}
KINDS="rec_truncated:rec rec_empty:rec rec_garbage:rec rec_tree_swap:rec rec_other_key:rec
rec_nul_junk:rec rec_huge_len:rec rec_dir:rec rec_symlink_zero:rec rec_symlink_file:rec
rec_fifo:rec rec_sparse:rec rec_shard_file:rec obj_symlink:store obj_dir:store obj_fifo:store
obj_shard_file:store tree_fifo:store tree_dotdot:store tree_sparse:store checkout_file:quiet
checkout_symlink:quiet lock_symlink:quiet lock_dir:quiet lock_fifo:quiet statcache_fifo:quiet
statcache_zero:quiet ref_dir:quiet ref_fifo:quiet layout_objects_file:fatal layout_tmp_link:fatal"
# cmd LOG ARGS...: runs fluke with a time limit; fails the scenario on a hang or a crash.
cmd() {
    local log=$1; shift
    timeout 20 $F "$@" > "$log" 2>&1; local rc=$?
    if [ $rc -eq 124 ] || [ $rc -ge 128 ]; then bad "$sc: fluke $* hung or crashed (rc $rc)"; sed 's/^/     /' "$log"; fi
    return $rc
}
right_output() { [ -f out/v/b.txt ] && [ "$(cat out/v/b.txt)" = "$want" ]; }
n=0
for entry in $KINDS; do
    sc=${entry%%:*}; kind=${entry##*:}; n=$((n + 1)); f0=$fails
    if [ "$kind" = fatal ]; then
        for c in run status verify gc; do
            damage "$sc"; cmd $c.log $c v.json; rc=$?
            [ $rc -eq 3 ] && grep -q "\.fluke/\(objects\|tmp\).*Not a directory" $c.log ||
                { bad "$sc: $c (rc $rc) does not refuse the store naming the damage"; sed 's/^/     /' $c.log; }
        done
        damage "$sc"; cmd dag.log dag v.json || bad "$sc: dag failed"
        cmd config.log config v.json || bad "$sc: config failed"
        [ $fails -eq $f0 ] && ok "$sc ($kind): run, status, verify, gc exit 3 naming it; dag, config work"
        continue
    fi
    # run: completes, publishes the right bytes, names a damaged record.
    damage "$sc"; rm -rf out
    cmd run.log run v.json; rc=$?
    [ $rc -eq 0 ] && right_output || { bad "$sc: run (rc $rc) did not publish the right output"; sed 's/^/     /' run.log; }
    if [ "$kind" = rec ]; then
        grep -q "^\[fluke\] note   record for a damaged (.*): rerunning" run.log && ran run.log a ||
            { bad "$sc: run did not say the record was damaged and rerun a"; sed 's/^/     /' run.log; }
    fi
    cmd run2.log run v.json; rc=$?
    [ $rc -eq 0 ] && [ "$(count_runs run2.log)" -eq 0 ] && right_output || { bad "$sc: the second run is not all cached (rc $rc)"; sed 's/^/     /' run2.log; }
    # status / explain: name a damaged record, change nothing.
    damage "$sc"
    before=$(find .fluke -path .fluke/locks -prune -o -print | LC_ALL=C sort | md5sum)
    cmd status.log status v.json
    if [ "$kind" = rec ] && ! grep -q "record damaged" status.log; then bad "$sc: status does not name the damage"; sed 's/^/     /' status.log; fi
    cmd explain.log explain a v.json
    if [ "$kind" = rec ] && ! grep -q "record damaged" explain.log; then bad "$sc: explain does not name the damage"; sed 's/^/     /' explain.log; fi
    after=$(find .fluke -path .fluke/locks -prune -o -print | LC_ALL=C sort | md5sum)
    [ "$kind" = quiet ] || [ "$before" = "$after" ] || bad "$sc: status/explain changed the store"
    # verify: counts the damage, and what it leaves runs right.
    damage "$sc"
    cmd verify.log verify v.json; rc=$?
    if [ "$kind" != quiet ]; then
        [ $rc -eq 1 ] && grep -Eq ' [1-9][0-9]* corrupt' verify.log ||
            { bad "$sc: verify (rc $rc) did not count the damage as corrupt"; sed 's/^/     /' verify.log; }
    fi
    cmd verify2.log verify v.json; rc=$?
    [ $rc -eq 0 ] && grep -q ' 0 corrupt' verify2.log || { bad "$sc: a second verify is not clean (rc $rc)"; sed 's/^/     /' verify2.log; }
    rm -rf out; cmd run3.log run v.json; rc=$?
    [ $rc -eq 0 ] && right_output || { bad "$sc: run after verify (rc $rc) is wrong"; sed 's/^/     /' run3.log; }
    # gc, dag, config: no crash or hang; a run after gc is right.
    damage "$sc"
    cmd gc.log gc v.json
    rm -rf out; cmd run4.log run v.json; rc=$?
    [ $rc -eq 0 ] && right_output || { bad "$sc: run after gc (rc $rc) is wrong"; sed 's/^/     /' run4.log; }
    cmd dag.log dag v.json || bad "$sc: dag failed"
    cmd config.log config v.json || bad "$sc: config failed"
    [ -e "$OUTSIDE/created-through-link" ] && bad "$sc: a file was created through a link in the store"
    [ "$(cat "$OUTSIDE/a.txt")" = "ABC" ] || bad "$sc: a file outside the store was changed"
    [ $fails -eq $f0 ] && ok "$sc ($kind): run, status, explain, verify, gc, dag, config"
done
echo "$n scenarios"
finish
