# What the issue-19 campaign found in config loading (about 860 mutated configs, extends chains
# and flag values against run/status/config/dag): a UTF-8 byte-order mark was "malformed JSON
# near '{'" (the mark invisible in the message); an out_dir that is a file or longer than the
# path limit failed only after every stage had run (exit 1). Both are config errors now: the BOM
# is skipped, the out_dir problems exit 2 before anything runs.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo hello > in.txt
printf '\357\273\277{"name": "b", "text": {"a": {"op": "upper", "from": "file:in.txt"}}}' > bom.json
$F run bom.json > b.log 2>&1; rc=$?
check "a config starting with a UTF-8 byte-order mark loads" [ $rc -eq 0 ]
printf '\357\273\277{"extends": "bom.json", "name": "c"}' > bomc.json
$F run bomc.json > bc.log 2>&1; rc=$?
check "also as a parent and child through extends" [ $rc -eq 0 ]
printf '\357\273\277{"name": "b", "text": ' > bombad.json
$F run bombad.json > bb.log 2>&1; rc=$?
check "a broken config after a BOM still reports its position" sh -c "[ $rc -eq 2 ] && grep -q 'bombad.json:1:[0-9]*: malformed JSON' bb.log"
late2() { # description, out_dir, pattern
    printf '{"name": "p", "out_dir": "%s", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' "$2" > p.json
    $F run p.json > p.log 2>&1; local rc=$?
    if [ $rc -eq 2 ] && grep -q -- "$3" p.log && ! grep -q '^\[fluke\] run ' p.log; then ok "$1"
    else bad "$1 (rc=$rc)"; sed 's/^/     /' p.log; fi
}
late2 "out_dir naming a file: exit 2 before running" in.txt "out_dir .*/in.txt exists and is not a folder"
long=$(printf 'd%.0s/' $(seq 2100))
late2 "out_dir past the path limit: exit 2 before running" "$long" "out_dir is [0-9]* bytes long: at most 4000"
check "the file named as out_dir is untouched" [ "$(cat in.txt)" = hello ]
finish
