# `fluke status` and `explain` on a store whose records are sound but whose outputs are not: the
# record's tree missing, damaged or not a regular file, or an object it names missing or not a
# regular file. The stage is reported `damaged` naming what is wrong (not `cached`), its
# dependants wait on it, nothing hangs on a FIFO and nothing in the store changes. A byte
# flipped inside an object is not status's to find (it reads no object): verify and run do.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo "abc" > in.txt
printf '{"name": "v", "text": {"a": {"op": "upper", "from": "file:in.txt"}, "b": {"op": "reverse", "from": "a", "publish": true}}}' > v.json
$F run v.json > first.log 2>&1 || { cat first.log; bad "the first run"; finish; }
$F status v.json > clean.log 2>&1
check "an intact store: a is cached" grep -q '^cached   a ' clean.log
check "an intact store: b is cached" grep -q '^cached   b ' clean.log
cp -a .fluke pristine
RA=$(grep -rl '"node":"a"' pristine/records | head -1)
TA=$(sed -n 's/^tree \([0-9a-f]*\)$/\1/p' "$RA")
TP=".fluke/trees/${TA:0:2}/${TA:2}"
OA=$(grep -rl "^ABC" pristine/objects | head -1 | sed 's|^pristine/|.fluke/|')
check "found a's tree and object" test -n "$TA" -a -n "$OA"
OH=$(echo "$OA" | sed 's|^.fluke/objects/\(..\)/|\1|')
# scenario, what status must say about it (an ERE), damage commands (the checkouts stay).
damage() {
    cd "$T"; chmod -R u+w .fluke 2>/dev/null; rm -rf .fluke; cp -a pristine .fluke
    chmod -R u+w .fluke/trees .fluke/objects
    case $1 in
    tree_missing) rm -f "$TP" ;;
    tree_garbage) echo junk >> "$TP" ;;
    tree_fifo) rm -f "$TP"; mkfifo "$TP" ;;
    tree_dir) rm -f "$TP"; mkdir "$TP" ;;
    tree_sparse) truncate -s 1T "$TP" ;;
    obj_missing) rm -f "$OA" ;;
    obj_fifo) rm -f "$OA"; mkfifo "$OA" ;;
    obj_dir) rm -f "$OA"; mkdir "$OA" ;;
    obj_symlink) rm -f "$OA"; ln -s "$T/in.txt" "$OA" ;;
    esac
}
SCEN="tree_missing:missing.tree.$TA tree_garbage:corrupt.tree.$TA tree_fifo:corrupt.tree.$TA
tree_dir:corrupt.tree.$TA tree_sparse:corrupt.tree.$TA obj_missing:missing.object.$OH
obj_fifo:object.$OH.*not.a.regular.file obj_dir:object.$OH.*not.a.regular.file
obj_symlink:object.$OH.*not.a.regular.file"
for entry in $SCEN; do
    sc=${entry%%:*}; want=${entry#*:}
    damage "$sc"
    before=$(find .fluke -path .fluke/locks -prune -o -print | LC_ALL=C sort | md5sum)
    timeout 20 $F status v.json > "$sc.status" 2>&1; rc=$?
    check "$sc: status exits 0" [ $rc -eq 0 ]
    grep -Eq "^damaged +a " "$sc.status" || sed 's/^/     /' "$sc.status"
    check "$sc: status says a is damaged, naming it" grep -Eq "^damaged +a +output ${TA:0:12} damaged \(.*$want" "$sc.status"
    check "$sc: status no longer says a is cached" sh -c "! grep -q '^cached   a ' '$sc.status'"
    check "$sc: b waits on a" grep -Eq '^stale +b +upstream a: output .* damaged' "$sc.status"
    timeout 20 $F explain a v.json > "$sc.explain" 2>&1; rc=$?
    check "$sc: explain says damaged" sh -c "[ $rc -eq 0 ] && grep -Eq '^damaged +a ' '$sc.explain'"
    after=$(find .fluke -path .fluke/locks -prune -o -print | LC_ALL=C sort | md5sum)
    check "$sc: status and explain changed nothing in the store" [ "$before" = "$after" ]
done
# A flipped byte inside the object: status stays cheap (cached); verify finds it.
damage obj_flip
printf 'J' | dd of="$OA" bs=1 seek=0 conv=notrunc 2>/dev/null
$F status v.json > flip.log 2>&1
check "a flipped object byte: status still cached (it reads no object)" grep -q '^cached   a ' flip.log
$F verify v.json > flip-verify.log 2>&1
check "and verify counts it" grep -Eq ' [1-9][0-9]* corrupt' flip-verify.log
finish
