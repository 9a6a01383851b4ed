# --force starts a stage from scratch (an earlier run's checkpoint is removed first, not resumed);
# gc keeps the work dirs of keys a config's runs started (failed or killed: they resume) and
# removes those no config references (a key the config moved away from, strays).
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo x > in.txt
cfg() { printf '{"name": "t", "text": {"a": {"op": "steps", "steps": %s, "from": "file:in.txt", "delay_ms": %s}}}' "$1" "${2:-0}" > t.json; }
works() { find .fluke/work -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
stray=.fluke/work/0123456789abcdef0123456789abcdef
ckpt() { for d in .fluke/work/*/; do [ "$d" = "$stray/" ] || cat "$d/ckpt" 2>/dev/null; done | head -1; }
cfg 6
FLUKE_TS_FAIL_AT=3 $F run t.json > f1.log 2>&1; rc=$?
check "a run failing at step 3 exits 1 and keeps its checkpoint" sh -c "[ $rc -eq 1 ] && [ '$(ckpt)' = 3 ]"
mkdir -p $stray && echo junk > $stray/ckpt
$F gc t.json > gc1.log 2>&1; rc=$?
check "gc exits 0" [ $rc -eq 0 ]
check "gc keeps the failed run's work dir" [ "$(ckpt)" = 3 ]
check "gc removes a work dir no config references" [ ! -e $stray ]
check "gc reports the removed work dir" grep -q ', 1 work dirs' gc1.log
FLUKE_TS_FAIL_AT=5 $F run t.json > r1.log 2>&1
check "without --force the rerun resumes at step 3" grep -q 'resuming at step 3' r1.log
$F run t.json --force a > force.log 2>&1; rc=$?
check "--force: exit 0" [ $rc -eq 0 ]
check "--force: says it starts from scratch" grep -q 'run    a  (forced (--force): from scratch)' force.log
check "--force: no resume from the crashed run's checkpoint" sh -c "! grep -q resuming force.log"
check "--force: ran all 6 steps" grep -q '1/6 step' force.log
check "--force: the committed result" grep -qx '6 steps done' <(cat .fluke/checkouts/*/a.txt)
check "the work dir goes with the commit" [ "$(works)" -eq 0 ]
# Killed (no chance to clean up): its work dir is referenced before the stage starts.
cfg 40 50
setsid $F run t.json > k.log 2>&1 &
pid=$!
has_ckpt() { [ "$(ckpt)" -ge 1 ] 2>/dev/null; }
wait_for 30 has_ckpt
kill -9 -- -"$pid"; wait "$pid" 2>/dev/null
check "the killed run left a checkpoint" [ "$(ckpt)" -ge 1 ] 2>/dev/null
$F gc t.json > gc2.log 2>&1
check "gc keeps a killed run's work dir" [ "$(works)" -eq 1 ]
# A damaged work ref is not "no references": gc refuses (exit 3, naming it) and deletes nothing.
ref=$(ls .fluke/refs/work/* | head -1)
cp "$ref" ref.bak
for dmg in zeros garbage symlink fifo; do
    rm -f "$ref"
    case $dmg in
    zeros) head -c 100000 /dev/zero > "$ref" ;;
    garbage) printf 'not a key\ngarbage\n' > "$ref" ;;
    symlink) ln -s "$T/ref.bak" "$ref" ;;
    fifo) mkfifo "$ref" ;;
    esac
    timeout 20 $F gc t.json > gcd.log 2>&1; rc=$?
    check "gc with a work ref that is $dmg: exit 3 naming it (rc=$rc)" sh -c "[ $rc -eq 3 ] && grep -q 'refs/work/' gcd.log"
    check "gc with a work ref that is $dmg keeps the work dir" [ "$(works)" -eq 1 ]
done
rm -f "$ref"; cp ref.bak "$ref"
# The config moves on (another key for a) and finishes: the old key's work dir is garbage.
cfg 7
$F run t.json > r2.log 2>&1
check "the new config's run completes" grep -q '1 ran' r2.log
$F gc t.json > gc3.log 2>&1
check "gc removes the work dir of a key the config moved away from" [ "$(works)" -eq 0 ]
finish
