# Cache hits, reruns after a config edit (exactly the declaring stages and changed dependants),
# early cutoff, status naming the key old -> new, --until/--force/--dry-run, dag, config.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo "hello world" > in.txt
cat > base.json <<'J'
{ "name": "demo",
  "globals": {"shared": 1, "other": "x"},
  "text": {
    "a": {"op": "upper", "from": "file:in.txt"},
    "b": {"op": "reverse", "from": "a", "suffix": "!", "reads": ["globals.shared"]},
    "len": {"op": "length", "from": "a"},
    "c": {"op": "concat", "from": ["b", "len"], "publish": true},
    "d": {"op": "upper", "from": "len", "suffix": "-d"}
  } }
J
echo '{"extends": "base.json"}' > c.json

$F run c.json > r1.log 2>&1; rc=$?
check "first run exits 0" [ $rc -eq 0 ]
check "first run runs all 5 stages" [ "$(count_runs r1.log)" -eq 5 ]
check "published output lands in out/c/ (the top config's name)" [ "$(tail -c +2 out/c/c.txt)" = "DLROW OLLEH!12" ]
$F run c.json > r2.log 2>&1
check "second run runs nothing" all_cached r2.log 5
check "second run reports all 5 cached" [ "$(grep -c '^\[fluke\] cached ' r2.log)" -eq 5 ]

# Editing one value reruns exactly the stages that declare it, and dependants whose inputs changed.
cat > c.json <<'J'
{"extends": "base.json", "text": {"b": {"suffix": "?"}}}
J
$F status c.json > s3.log 2>&1
check "status names the key and old -> new" grep -q 'stale    b .*config text.b.suffix: "!" -> "?"' s3.log
check "status collapses c to its root cause b" grep -q 'c .*upstream b: config text.b.suffix' s3.log
check "status keeps unaffected stages cached" grep -q '^cached   d ' s3.log
$F run c.json > r3.log 2>&1
check "edit reruns b" ran r3.log b
check "edit reruns dependant c" ran r3.log c
check "edit keeps a, len, d cached" sh -c "! grep -Eq 'run    (a|len|d) ' r3.log"
check "edit ran exactly 2 stages" [ "$(count_runs r3.log)" -eq 2 ]

# A shared section: only the stages that declare it rerun.
sed -i 's/"shared": 1/"shared": 2/' base.json
$F run c.json > r4.log 2>&1
check "globals.shared change reruns only b (declares it)" [ "$(count_runs r4.log)" -eq 1 ]
check "b reproduces its bytes, so c stays cached (early cutoff)" cached r4.log c
check "reason names globals.shared 1 -> 2" grep -q 'config globals.shared: 1 -> 2' r4.log
sed -i 's/"other": "x"/"other": "y"/' base.json
$F run c.json > r5.log 2>&1
check "an undeclared section change reruns nothing" all_cached r5.log 5

# Early cutoff: a's output changes, len's output (a length) does not, so d stays cached.
echo "howdy world" > in.txt
$F run c.json > r6.log 2>&1
check "input edit reruns a" ran r6.log a
check "len reruns (its input changed)" ran r6.log len
check "b reruns (input changed)" ran r6.log b
check "early cutoff: d stays cached" cached r6.log d

# --until, --force, --dry-run
echo "new text here" > in.txt
$F run c.json --until len > r7.log 2>&1
check "--until len runs a and len only" [ "$(count_runs r7.log)" -eq 2 ]
check "--until does not run b" sh -c "! grep -q 'run    b ' r7.log"
$F run c.json --dry-run > r8.log 2>&1
check "--dry-run runs nothing" [ "$(count_runs r8.log)" -eq 0 ]
check "--dry-run shows b stale" grep -q '^stale    b ' r8.log
$F run c.json > r9.log 2>&1
$F run c.json --force len > r10.log 2>&1
check "--force reruns exactly len" [ "$(count_runs r10.log)" -eq 1 ] 
check "--force rerun with identical bytes keeps d cached" cached r10.log d
$F run c.json --until nosuch > r11.log 2>&1; rc=$?
check "--until unknown stage exits 2" [ $rc -eq 2 ]

# dag, config, explain
$F dag c.json --dot > dag.dot
check "dag --dot has the edges" grep -q '"a" -> "b"' dag.dot
$F config c.json > eff.json
check "config prints the merged config" grep -q '"suffix":\s*"?"' eff.json
$F explain c c.json > ex.log
check "explain lists inputs" grep -q 'input    in0 <- b' ex.log
$F run -h > help.log
check "--help documents exit codes" grep -q 'Exit codes' help.log
finish
