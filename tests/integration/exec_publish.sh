# What is published to out/ is re-hashed against the digest the record's tree names: a byte
# flipped in a cached object is refused (exit 1, nothing published), the object is quarantined
# and the record dropped, so the next run recomputes and publishes the right bytes. A damaged
# checkout over an intact object is removed and rebuilt by the next run, without recomputing.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo hello > in.txt
printf '{"name": "p", "text": {"a": {"op": "upper", "from": "file:in.txt", "publish": true}}}' > p.json
$F run p.json > r0.log 2>&1 || bad "first run"
check "published" [ "$(cat out/p/a.txt)" = HELLO ]
obj=$(grep -rlx HELLO .fluke/objects | head -1)
check "found the cached object" [ -n "$obj" ]
chmod u+w "$obj"; printf 'J' | dd of="$obj" bs=1 seek=0 conv=notrunc 2>/dev/null; chmod 0444 "$obj"
rm -rf out
$F run p.json > r1.log 2>&1; rc=$?
sed 's/^/     /' r1.log
check "a corrupt cached object: exit 1" [ $rc -eq 1 ]
check "the message names the stage, the file and the digests" grep -Eq "stage 'a': a.txt in the store is corrupt \(object [0-9a-f]{32}, content hashes to [0-9a-f]{32}\); not published" r1.log
check "nothing was published (the run's report aside)" [ -z "$(ls -A out/p 2>/dev/null | grep -vx report.html)" ]
check "the corrupt object is in quarantine" [ -n "$(ls -A .fluke/quarantine 2>/dev/null)" ]
$F run p.json > r2.log 2>&1; rc=$?
check "the next run recomputes the stage" sh -c "[ $rc -eq 0 ] && grep -q '^\[fluke\] run    a ' r2.log"
check "and publishes the right bytes" [ "$(cat out/p/a.txt)" = HELLO ]
$F verify p.json > v.log 2>&1
check "verify is clean afterwards" grep -q ' 0 corrupt' v.log
# The checkout alone damaged (its file replaced; the object is intact).
co=$(dirname "$(find .fluke/checkouts -name a.txt | head -1)")
chmod u+w "$co"; rm -f "$co/a.txt"; echo HELLP > "$co/a.txt"; chmod 0555 "$co"
$F run p.json > r3.log 2>&1; rc=$?
check "a damaged checkout: exit 1, the object is intact, the checkout removed" sh -c "[ $rc -eq 1 ] && grep -q 'object itself is intact' r3.log && [ ! -e '$co' ]"
$F run p.json > r4.log 2>&1; rc=$?
check "the next run reuses the record and publishes" sh -c "[ $rc -eq 0 ] && grep -q '^\[fluke\] cached a' r4.log && [ \"\$(cat out/p/a.txt)\" = HELLO ]"
finish
