# Bad input: each case gives a clear error naming the file/line/key/stage, a non-zero exit, and
# leaves no record behind; the next good run completes.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
records() { find .fluke/records -type f 2>/dev/null | wc -l; }
echo "hello" > in.txt
expect() { # description, expected exit, pattern, config
    local d=$1 want=$2 pat=$3 cfg=$4 before after rc
    before=$(records)
    $F run "$cfg" > out.log 2>&1; rc=$?
    after=$(records)
    if [ "$rc" -eq "$want" ] && grep -Eq -- "$pat" out.log && [ "$before" -eq "$after" ]; then
        ok "$d"
    else
        bad "$d (rc=$rc want $want, records $before -> $after)"; sed 's/^/     /' out.log
    fi
}
printf '{\n  "text": {\n    "a": {"op": "upper",, "from": "file:in.txt"}\n  }\n}\n' > malformed.json
expect "malformed JSON: file, line and column" 2 'malformed.json:3:2[56]: malformed JSON' malformed.json
printf '{\n  "text": {\n    "a": {"op": "upper", "form": "file:in.txt"}\n  }\n}\n' > unknown.json
expect "unknown key: file, line, key path" 2 "unknown.json:3: unknown key 'text.a.form'" unknown.json
printf '{\n  "text": {\n    "a": {"op": "upper",\n          "delay_ms": "soon"}\n  }\n}\n' > type.json
expect "wrong type: file, line, key, types" 2 "type.json:4: key 'text.a.delay_ms' must be an integer, not a string" type.json
printf '{\n  "text": {\n    "a": {"from": "file:in.txt"}\n  }\n}\n' > missing.json
expect "missing value: names the key" 2 "missing required key 'text.a.op'" missing.json
printf '{"text": {"a": {"op": "upper", "from": "c"}, "b": {"op": "upper", "from": "a"}, "c": {"op": "upper", "from": "b"}}}' > cycle.json
expect "cycle: names the cycle" 2 'cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)' cycle.json
printf '{"text": {"a": {"op": "upper", "from": "nosuch"}}}' > dangling.json
expect "input from an unknown stage" 2 "reads from unknown stage 'nosuch'" dangling.json
printf '{"extends": "nothere.json"}' > ext.json
expect "extends a missing file" 2 "extends '.*nothere.json', which cannot be opened" ext.json
printf '{"extends": "loop2.json"}' > loop1.json; printf '{"extends": "loop1.json"}' > loop2.json
expect "extends cycle" 2 'extends. cycle' loop1.json
printf '{"text": {"a": {"op": "upper", "from": "file:absent.txt"}}}' > noinput.json
expect "missing external input names the path" 1 "input 'in0': .*absent.txt does not exist" noinput.json
printf '{"store": "/dev/null/store", "text": {"a": {"op": "upper", "from": "file:in.txt"}}}' > nostore.json
expect "unwritable store names the path" 3 '/dev/null' nostore.json
printf '{"text": {"b": {"op": "fail", "from": "file:in.txt"}, "c": {"op": "upper", "from": "b"}}}' > fail.json
expect "failing stage: its message, no record" 1 "stage 'b' failed: deliberate failure" fail.json
check "a stage after a failure is skipped" grep -q '1 failed, 1 skipped' out.log
printf '{"text": {"a": {"op": "crash", "from": "file:in.txt"}}}' > crash.json
expect "crashing stage: reported as a crash" 1 "stage 'a' (crashed \(SIGSEGV|failed)" crash.json
printf '{"globals": {"secret": 1}, "text": {"a": {"op": "peek", "from": "file:in.txt"}}}' > peek.json
expect "reading an undeclared key is a programming error" 1 "programming error: stage 'a' reads config key 'globals.secret' outside its declared sections" peek.json
printf '{"text": {"a": {"op": "noout", "from": "file:in.txt"}}}' > noout.json
expect "missing declared output" 1 "did not write its declared output 'a.txt'" noout.json
printf '{"text": {"a": {"op": "symlink", "from": "file:in.txt"}}}' > link.json
expect "a symlink in the output is refused" 1 "link" link.json
# Disk full during the commit (injected write failure): no record, no partial object; then a
# clean run succeeds and verify finds nothing wrong.
printf '{"text": {"a": {"op": "upper", "from": "file:in.txt"}}}' > full.json
for n in 1 2 3 4; do # the work ref (noted before the stage starts), the object, the tree, the record
    rm -rf .fluke
    FLUKE_FAULT=commit_write:$n expect "disk full at write $n of the commit: exit 3 (store error)" 3 'No space left on device' full.json
    # temporaries live in tmp/ (staging, copies, trees, records): none may outlive the run
    check "no temporary file left in the store after fault $n" \
        sh -c '[ -d .fluke/tmp ] && [ -z "$(find .fluke/tmp -mindepth 1)" ] && [ -z "$(find .fluke -name "*tmp*" ! -path .fluke/tmp)" ]'
    $F verify full.json > vf.log 2>&1; rc=$?
    check "verify is clean after fault $n (rc=$rc)" sh -c "[ $rc -eq 0 ] && grep -q ' 0 corrupt' vf.log"
done
$F run full.json > good.log 2>&1; rc=$?
check "after the faults a clean run completes (rc=$rc)" sh -c "[ $rc -eq 0 ] && grep -q '^\[fluke\] 1 stages: 1 ran, 0 cached, 0 failed' good.log"
$F verify full.json > v.log 2>&1; rc=$?
check "verify is clean after the injected faults" sh -c "[ $rc -eq 0 ] && grep -q ' 0 corrupt' v.log"
$F run nothing.json > none.log 2>&1; rc=$?
check "a missing config file: exit 2 naming it" sh -c "[ $rc -eq 2 ] && grep -q 'nothing.json' none.log"
$F frobnicate > cmd.log 2>&1; rc=$?
check "unknown command: exit 2" [ $rc -eq 2 ]
$F run full.json -j 0 > j.log 2>&1; rc=$?
check "-j 0: exit 2" [ $rc -eq 2 ]
finish
