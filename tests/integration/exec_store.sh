# External inputs hash once (stat cache); a flipped byte is caught by verify and recomputed;
# gc keeps what the latest run references.
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
mkdir big
for i in $(seq 1 20000); do echo "file $i" > big/f$i; done
find big -type f -exec touch -d '2 hours ago' {} +
cat > s.json <<'J'
{ "name": "s", "text": { "n": {"op": "count", "from": "dir:big", "publish": true},
                         "m": {"op": "count", "from": "dir:big", "suffix": "!"} } }
J
$F run s.json > s1.log 2>&1
check "first run hashes all 20,000 files" grep -q 'big: 20000 files, 20000 hashed' s1.log
check "two stages reading the folder walk it once" [ "$(grep -c 'big: 20000 files' s1.log)" -eq 1 ]
$F run s.json > s2.log 2>&1
check "second run reads none of them" grep -q 'big: 20000 files, 0 hashed' s2.log
check "second run is all cached" all_cached s2.log 2
echo "changed" > big/f777
touch -d '1 hour ago' big/f777
$F run s.json > s3.log 2>&1
check "touching one file re-hashes that file alone" grep -q 'big: 20000 files, 1 hashed' s3.log
check "... and the stage reruns" ran s3.log n
touch -d '30 minutes ago' big/f778  # same content, new mtime: re-hashed, but nothing reruns
$F run s.json > s4.log 2>&1
check "a touched but unchanged file is re-hashed" grep -q 'big: 20000 files, 1 hashed' s4.log
check "... and the stages stay cached" all_cached s4.log 2

# verify: flip one byte of the stage's stored output
echo "abc" > in.txt
printf '{"name": "v", "text": {"a": {"op": "upper", "from": "file:in.txt"}, "b": {"op": "reverse", "from": "a", "publish": true}}}' > v.json
$F run v.json > v1.log 2>&1
obj=$(grep -rl "ABC" .fluke/objects | head -1)
check "found the stored object of a" [ -n "$obj" ]
chmod u+w "$obj"; printf 'X' | dd of="$obj" bs=1 seek=0 conv=notrunc 2>/dev/null
$F verify v.json > v2.log 2>&1; rc=$?
check "verify exits 1 on corruption" [ $rc -eq 1 ]
check "verify reports the corrupt object" grep -qi 'corrupt object' v2.log
$F run v.json > v3.log 2>&1
check "the next run recomputes a" ran v3.log a
check "the output is right again" [ "$(cat out/v/b.txt)" = "$(printf '\nCBA')" ]
$F verify v.json > v4.log 2>&1
check "verify is clean afterwards" grep -q ' 0 corrupt' v4.log

# gc keeps the latest run's results, drops the rest
sed -i 's/"reverse"/"upper"/' v.json
$F run v.json > g1.log 2>&1
$F gc v.json > gc.log 2>&1; rc=$?
check "gc succeeds" [ $rc -eq 0 ]
check "gc removed the superseded record" grep -Eq 'removed [1-9][0-9]* records' gc.log
$F run v.json > g2.log 2>&1
check "after gc the latest results of v are still cached" all_cached g2.log 2
finish
