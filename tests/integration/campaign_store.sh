# What the issue-19 campaign found where the store and out/ meet the user's folders: a "store"
# naming a folder that holds other things ("/", ".", a home directory) was opened and filled
# with the store layout, and its stale-tmp sweep deletes "<pid>-*" entries of that folder's tmp/
# (with "store": "/", the system's /tmp); an out_dir inside the store published into it. Now a
# store needs a folder of its own (empty, marked, or an unmarked store made before the marker),
# and an out_dir inside the store is refused (exit 2 by path; exit 1 through a link, before
# anything is created in the store).
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
wipe() { chmod -R u+w .fluke 2> /dev/null; rm -rf .fluke; } # checkouts are read-only
echo hello > in.txt

# --- a store in a folder that is not one
mkdir -p home/tmp && echo keep > home/tmp/1999999-notes && echo mine > home/notes.txt
printf '{"name": "s", "store": "home", "text": {"a": {"op": "upper", "from": "file:in.txt"}}}' > h.json
$F run h.json > h.log 2>&1; rc=$?
sed 's/^/     /' h.log
check "a store in a non-empty folder: exit 3" [ $rc -eq 3 ]
check "the message says why" grep -q "holds '.*', which is not part of a fluke store" h.log
check "the folder's tmp/ file of a dead pid is untouched" [ "$(cat home/tmp/1999999-notes 2>/dev/null)" = keep ]
check "no store layout was made in it" [ ! -e home/objects ]
for cmd in status gc verify; do
    $F $cmd h.json > hc.log 2>&1; rc=$?
    check "$cmd on it: exit 3" [ $rc -eq 3 ]
done
check "still untouched after status, gc and verify" [ "$(cat home/tmp/1999999-notes 2>/dev/null)" = keep ]
printf '{"name": "s", "store": "fresh", "text": {"a": {"op": "upper", "from": "file:in.txt"}}}' > n.json
$F run n.json > n.log 2>&1; rc=$?
check "a new store folder works" [ $rc -eq 0 ]
check "and is marked as a store" [ -f fresh/.fluke-store ]
$F run n.json > n2.log 2>&1
check "the marked store is reused" all_cached n2.log 1
rm fresh/.fluke-store
$F run n.json > n3.log 2>&1
check "an unmarked store made before the marker is still accepted" all_cached n3.log 1
check "and marked now" [ -f fresh/.fluke-store ]

# --- out_dir inside the store
od2() { # description, out_dir
    wipe
    printf '{"name": "p", "out_dir": "%s", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' "$2" > p.json
    $F run p.json > p.log 2>&1; local rc=$?
    if [ $rc -eq 2 ] && grep -q "is inside the store" p.log && ! grep -q '^\[fluke\] run ' p.log; then ok "$1"
    else bad "$1 (rc=$rc)"; sed 's/^/     /' p.log; fi
}
od2 "out_dir the store itself" ".fluke"
od2 "out_dir a store folder" ".fluke/objects"
od2 "out_dir with a trailing slash" "./.fluke/"
od2 "out_dir through .." "out/../.fluke/tmp"
od2 "out_dir absolute" "$T/.fluke/refs"
wipe && ln -s .fluke lnk
printf '{"name": "p", "out_dir": "lnk/x", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' > l.json
$F run l.json > l.log 2>&1; rc=$?
check "out_dir into the store through a link: exit 1" [ $rc -eq 1 ]
check "the message says so" grep -q 'not publishing to .*lnk/x: it is inside the store' l.log
check "nothing was created in the store" [ ! -e .fluke/x ]
printf '{"name": "p", "out_dir": ".flukes", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' > q.json
$F run q.json > q.log 2>&1; rc=$?
check "a sibling whose name starts like the store's is fine" sh -c "[ $rc -eq 0 ] && [ -f .flukes/a.txt ]"
finish
