# Config errors through the real binaries (issue 19 items 3, 4, 7): out-of-range numbers,
# escaped duplicate keys, NULs, bad names and stores, deep nesting and what `extends` may name.
# Each must exit 2 with file:line and a clear reason, quickly, before anything is written.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
expect() { # description, pattern, binary, command, config
    local d=$1 pat=$2 bin=$3 cmd=$4 cfg=$5 rc
    timeout 60 "$bin" "$cmd" "$cfg" > out.log 2>&1; rc=$?
    if [ "$rc" -eq 2 ] && grep -Eq -- "$pat" out.log; then
        ok "$d"
    else
        bad "$d (rc=$rc, want 2 and /$pat/)"; sed 's/^/     /' out.log | head -5
    fi
}
ts() { expect "$1" "$2" "$FLUKE_TS" run "$3"; }
pl() { expect "$1" "$2" "$FLUKE" config "$3"; }
node='"text": {"a": {"op": "upper", "from": "file:in.txt"}}'
echo hello > in.txt

# item 3: numbers outside their range (these used to abort the sanitizer build in exec.c)
for g in -2 2147483648 3e9; do
    printf '{%s,\n "resources": {\n  "gpus": %s}}\n' "$node" "$g" > gpus.json
    ts "resources.gpus $g: the range" "gpus.json:3: key 'resources.gpus' is .*outside its range \[0, 1024\]" gpus.json
done
printf '{%s, "resources": {"threads": 0}}' "$node" > threads.json
ts "resources.threads 0" "key 'resources.threads' is 0, outside its range \[1, 4096\]" threads.json
printf '{"text": {"a": {"op": "upper", "gpus": 5000}}}' > nodegpus.json
ts "a node's gpus" "'text.a.gpus' is 5000, outside its range \[0, 1024\]" nodegpus.json
printf '{"pipeline": {"source": "synth", "model": "baseline_knn"},\n "baseline": {"knn": {"thumb": 2147483648}}}' > thumb.json
pl "thumb 2^31 is not reported as -2^31" "thumb.json:2: key 'baseline.knn.thumb' is 2147483648, outside its range \[2, 256\]" thumb.json
printf '{"pipeline": {"source": "synth", "model": "baseline_knn", "threads": -1}}' > plthreads.json
pl "pipeline.threads -1" "'pipeline.threads' is -1" plthreads.json
printf '{"pipeline": {"source": "synth", "model": "baseline_knn"}, "synth": {"seed": 1e16}}' > seed.json
pl "synth.seed past 2^53" "'synth.seed' is 10000000000000000, outside its range \[0, 9000000000000000\]" seed.json

# item 7: strictness
printf '{"pipeline": {"source": "synth", "model": "baseline_knn"},\n "synth": {"seed": 1,\n "se\\u0065d": 2}}' > dupesc.json
pl "a duplicate key spelled with an escape" "dupesc.json:3: duplicate key 'synth.seed' \(first at line 2\)" dupesc.json
printf '{"pipeline": {"source": "synth", "model": "baseline_knn"},\n "synth": {"preset": "tiny\\u0000large"}}' > nul.json
pl "\\u0000 in a value" 'nul.json:2:[0-9]+: a string contains \\u0000' nul.json
printf '{"name": "a\\u0000b", %s}' "$node" > nulname.json
ts "\\u0000 in the name" 'nulname.json:1:[0-9]+: a string contains \\u0000' nulname.json
printf '{\n "a": 1,\n "b\0": 2}' > nulbyte.json
ts "a NUL byte: its position" 'nulbyte.json:3:4: contains a NUL byte' nulbyte.json
mkdir empty && cd empty
printf '{"store": "", %s}' "$node" > ../store.json
cp ../in.txt . 2>/dev/null
timeout 60 "$FLUKE_TS" run ../store.json > ../out.log 2>&1; rc=$?
cd ..
if [ "$rc" -eq 2 ] && grep -q "store.json:1: key 'store' is empty" out.log && [ -z "$(ls empty | grep -v in.txt)" ]; then
    ok '"store": "" is an error and writes nothing'
else
    bad "\"store\": \"\" (rc=$rc)"; cat out.log; ls -la empty
fi
for n in .. . / a/b .x; do
    printf '{%s,\n "name": "%s"}' "$node" "$n" > name.json
    ts "name '$n' refused at load" "name.json:2: config name '$(printf %s "$n" | sed 's/\./\\./g')'" name.json
done
{ printf '{"globals": {\n"x": '; printf '%.0s[' $(seq 10000); printf '%.0s]' $(seq 10000); printf '}, %s}' "$node"; } > deep.json
ts "10,000 levels: nested too deep, with the line" 'deep.json:2:[0-9]+: nested too deep' deep.json

# items 4 and 7: what `extends` may name
printf '{%s,\n "extends": ""}' "$node" > ext_empty.json
ts 'extends "": names the referring file' "ext_empty.json:2: key 'extends' is empty" ext_empty.json
printf '{%s,\n "extends": "/tmp"}' "$node" > ext_dir.json
ts 'extends a directory' "ext_dir.json:2: extends '/tmp': /tmp is a directory, not a regular file" ext_dir.json
printf '{"extends": "/dev/zero"}' > ext_zero.json
ts 'extends /dev/zero: refused, not read' "ext_zero.json:1: extends '/dev/zero': .*character device" ext_zero.json
mkfifo fifo.json
printf '{"extends": "fifo.json"}' > ext_fifo.json
ts 'extends a FIFO: refused, does not block' "ext_fifo.json:1: extends 'fifo.json': .*a FIFO" ext_fifo.json
truncate -s 17M big.json
printf '{"extends": "big.json"}' > ext_big.json
ts 'extends a 17 MiB file: the cap' "ext_big.json:1: extends 'big.json': .*at most 16777216" ext_big.json
ts 'the config itself a FIFO' "fifo.json is a FIFO" fifo.json

# good configs still load
printf '{%s, "name": "ok-1.x", "resources": {"gpus": 0, "threads": 4096}}' "$node" > good.json
check "a good config still runs" "$FLUKE_TS" run good.json
finish
