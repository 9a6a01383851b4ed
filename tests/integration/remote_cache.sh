# The remote cache (Bazel HTTP cache protocol) against a loopback server (tests/remote/
# cache_server.py): store A runs and uploads (every /cas/ object before its /ac/ entry); a fresh
# store B with the same config gets every stage as a remote hit, runs nothing and publishes the
# same bytes (also as an unprivileged user); a resumed download after a dropped connection; a
# corrupt object, a missing object, a 500, a slow server, a wrong token and no server at all are
# misses or warnings and the run succeeds locally with nothing bad committed; read-only never
# PUTs; the bearer token is sent and never printed or stored.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
command -v python3 > /dev/null || skip "python3 not found (the loopback cache server needs it)"
TOKEN="fluke-remote-token-$$-s3cret"
spid=
trap '[ -n "$spid" ] && kill $spid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
[ -n "${KEEP:-}" ] && trap "[ -n \"\$spid\" ] && kill \$spid" EXIT
: > faults
start_server() { # extra server options...
    python3 "$FLUKE_SRC/tests/remote/cache_server.py" --root "$T/srv" --log "$T/srv.log" \
        --faults "$T/faults" "$@" > "$T/server.out" 2> "$T/server.err" &
    spid=$!
    up() { grep -q '^PORT ' "$T/server.out" || ! kill -0 $spid 2> /dev/null; }
    wait_for 30 up
    port=$(sed -n 's/^PORT //p' "$T/server.out")
}
stop_server() { kill $spid 2> /dev/null; wait $spid 2> /dev/null; spid=; }
start_server --token "$TOKEN"
check "the loopback cache server is up" [ -n "$port" ]
URL="http://127.0.0.1:$port/team"

# a is 9 MiB (progress lines, a multi-chunk transfer); b, c small; c is published.
head -c 9437184 /dev/zero | tr '\0' 'w' > in.txt
echo "tail line" >> in.txt
cat > base.json <<J
{ "name": "rc",
  "cache": {"remote": "$URL", "remote_token_env": "RC_TOKEN", "remote_timeout_s": 2},
  "text": {
    "a": {"op": "upper", "from": "file:$T/in.txt"},
    "b": {"op": "length", "from": "a", "suffix": "!"},
    "c": {"op": "concat", "from": ["b", "b"], "publish": true}
  } }
J
newstore() { mkdir -p "$T/$1" && cp base.json "$T/$1/c.json"; }
run_in() { # DIR LOG [options...]: fluke run in DIR with the token in the environment
    local d=$1 log=$2; shift 2
    (cd "$T/$d" && RC_TOKEN=$TOKEN $F run c.json "$@" > "$T/$log" 2>&1)
}
mark() { wc -l < srv.log; }            # server log position
since() { tail -n +$(($1 + 1)) srv.log; } # server log lines after a position
no_get_since() { ! since "$1" | grep -q "^GET .*/cas/$2"; }
put_cas_since() { since "$1" | grep -q "^PUT .*/cas/$2 201"; }
range_get_since() { since "$1" | grep -q '^GET .*/cas/.* 206 .*range=[1-9][0-9]*-$'; }
no_put_since() { ! since "$1" | grep -q '^PUT '; }
ac_get_since() { since "$1" | grep -q '^GET .*/ac/'; }
drop_then_range_since() { since "$1" | grep -q dropped && since "$1" | grep -q 'range=[1-9][0-9]*-'; }

# --- A runs everything and uploads.
newstore A
run_in A a.log; rc=$?
check "A runs (rc=$rc)" [ $rc -eq 0 ]
check "A ran all 3 stages" runs_exactly a.log a b c
check "A uploaded 3 stages" grep -q 'remote cache http://127.0.0.1:[0-9]*/team: 0 hits, 3 uploaded' a.log
check "A showed progress for the 9 MiB object" grep -Eq '^\[fluke\] remote put a [0-9a-f]{12}: 9\.0 MiB in ' a.log
check "every request carried the bearer token" sh -c "[ -s srv.log ] && ! grep -v ' auth=ok' srv.log"
# Order: every object and tree an /ac/ entry lists was PUT (or found by HEAD) before the entry.
order_ok() {
    python3 - "$T/srv.log" "$T/srv/ac" <<'P'
import os, sys
log = [l.split() for l in open(sys.argv[1])]
have = set()
n_ac = 0
for m, path, st, *rest in log:
    kind, name = path.split("/")[-2:]
    if kind == "cas" and ((m == "PUT" and st == "201") or (m == "HEAD" and st == "200")):
        have.add(name)
    if kind == "ac" and m == "PUT":
        n_ac += 1
        body = open(os.path.join(sys.argv[2], name), "rb").read().split(b"\n")
        need = [l.split()[1].decode() for l in body if l.startswith((b"tree ", b"file "))]
        missing = [d for d in need if d not in have]
        if not need or missing:
            print("     /ac/%s PUT before /cas/ %s" % (name, missing)); sys.exit(1)
sys.exit(0 if n_ac == 3 else 1)
P
}
check "each /ac/ entry was PUT after all its /cas/ objects" order_ok
check "the server holds 3 entries" [ "$(ls srv/ac | wc -l)" -eq 3 ]

# --- B: a fresh store, same config: every stage a remote hit, nothing runs.
newstore B
(cd B && RC_TOKEN=$TOKEN $F status c.json > "$T/b-status.log" 2>&1)
check "status shows a remote hit for every stage" [ "$(grep -c '^remote   ' b-status.log)" -eq 3 ]
check "status names the remote hit" grep -Eq '^remote   c +remote hit: output [0-9a-f]{12}' b-status.log
run_in B b.log; rc=$?
check "B runs (rc=$rc)" [ $rc -eq 0 ]
check "B started no stage process" [ "$(count_runs b.log)" -eq 0 ]
check "B: every stage a remote hit" [ "$(grep -c '^\[fluke\] cached [abc]  (remote hit)$' b.log)" -eq 3 ]
check "B counts them as cache hits" all_cached b.log 3
check "B's published output is A's" cmp -s A/out/rc/c.txt B/out/rc/c.txt
check "B's checkout of a is A's bytes" cmp -s "$(ls A/.fluke/checkouts/*/a.txt)" "$(ls B/.fluke/checkouts/*/a.txt)"
check "B showed download progress for the 9 MiB object" grep -Eq '^\[fluke\] remote get a [0-9a-f]{12}: 9\.0 MiB in ' b.log
(cd B && $F verify c.json > "$T/b-verify.log" 2>&1); rc=$?
check "B's store verifies clean (rc=$rc)" grep -q ' 0 corrupt' b-verify.log
run_in B b2.log
check "B again: all cached" all_cached b2.log 3
check "B again: local hits, not remote ones" sh -c "! grep -q 'remote hit' b2.log"
check "status in B: all cached locally" sh -c "cd B && RC_TOKEN=$TOKEN $F status c.json | grep -c '^cached ' | grep -qx 3"

# --- A damaged local record: the remote still has the result.
akey=$(basename "$(grep -l '"node":"a"' srv/ac/*)") # an entry's name is its key
rec=B/.fluke/records/${akey:0:2}/${akey:2}
check "found a's record in B" [ -f "$rec" ]
chmod u+w "$rec" && echo garbage > "$rec"
run_in B b3.log; rc=$?
check "B with a damaged record runs (rc=$rc)" [ $rc -eq 0 ]
check "B: the damaged record's stage comes back as a remote hit" grep -q '^\[fluke\] cached a  (remote hit)$' b3.log
check "B ran nothing" [ "$(count_runs b3.log)" -eq 0 ]

# --- A stage waiting for threads asks the remote once, not on every pass of the loop.
echo small > small.txt
newstore J
cat > J/c.json <<J
{ "name": "wait", "resources": {"threads": 2},
  "cache": {"remote": "$URL", "remote_token_env": "RC_TOKEN"},
  "text": {"x": {"op": "upper", "from": "file:$T/small.txt", "delay_ms": 800, "threads": 2},
           "y": {"op": "reverse", "from": "file:$T/small.txt", "threads": 2}} }
J
m=$(mark)
run_in J j.log -j 2; rc=$?
check "J runs x and y one after the other (rc=$rc)" no_overlap j.log x y
check "J asked /ac/ once per stage (2 GETs)" [ "$(since $m | grep -c '^GET .*/ac/')" -eq 2 ]

# --- A dropped connection mid-object: the download resumes with a Range request.
echo "fault=drop kind=cas method=GET minsize=1000000 times=1" > faults
newstore R
m=$(mark)
run_in R r.log; rc=$?
check "R runs (rc=$rc)" [ $rc -eq 0 ]
check "R: all 3 remote hits despite the drop" [ "$(grep -c '(remote hit)$' r.log)" -eq 3 ]
check "R said it resumed" grep -q 'connection lost after [0-9]* bytes.*resuming' r.log
check "the server saw the drop, then a Range request" drop_then_range_since $m
: > faults

# --- Content the local store already has is not downloaded again (and its object stays 0444).
mkdir -p K && cat > K/two.json <<J
{ "name": "only-a2", "cache": {"remote": "$URL", "remote_token_env": "RC_TOKEN"},
  "text": {"a2": {"op": "upper", "from": "file:$T/in.txt"}} }
J
(cd K && RC_TOKEN=$TOKEN $F run two.json --remote-readonly > "$T/k1.log" 2>&1); rc=$?
check "K ran a2 alone, locally (rc=$rc)" ran k1.log a2
cp base.json K/c.json
big=$(python3 -c 'import sys; print([l.split()[1] for l in open(sys.argv[1]) if l.startswith("file ")][0])' "$(grep -l '"node":"a"' srv/ac/*)")
m=$(mark)
run_in K k2.log; rc=$?
check "K: all 3 remote hits (rc=$rc)" [ "$(grep -c '(remote hit)$' k2.log)" -eq 3 ]
check "K did not download the 9 MiB object it had" no_get_since $m "$big"
check "K's object stays read-only" [ "$(stat -c %a K/.fluke/objects/${big:0:2}/${big:2})" = 444 ]

# --- fluke killed mid-download: the partial object survives in work/<key>/ and the next run
# resumes it with a Range request instead of starting over.
echo "fault=stall seconds=20 kind=cas method=GET minsize=1000000 times=1" > faults
newstore P
sed -i 's/"remote_timeout_s": 2/"remote_timeout_s": 60/' P/c.json # the stall outlasts the kill
m=$(mark)
(cd P && RC_TOKEN=$TOKEN exec $F run c.json > "$T/p1.log" 2>&1) &
fpid=$!
stalled() { since $m | grep -q ' stalled$'; }
wait_for 20 stalled
partial() { ls P/.fluke/work/*/remote-*.part > /dev/null 2>&1; }
wait_for 10 partial
kill -9 $fpid; wait $fpid 2> /dev/null
check "a killed download leaves its partial object in work/" partial
: > faults
m=$(mark)
run_in P p2.log; rc=$?
check "P reruns (rc=$rc)" [ $rc -eq 0 ]
check "P resumed the partial object" grep -q 'remote get a [0-9a-f]*: resuming after [1-9][0-9]* of 9437194 bytes' p2.log
check "P asked only for the rest (Range)" range_get_since $m
check "P: all 3 remote hits" [ "$(grep -c '(remote hit)$' p2.log)" -eq 3 ]
check "P's a is A's bytes" cmp -s "$(ls A/.fluke/checkouts/*/a.txt)" "$(ls P/.fluke/checkouts/*/a.txt)"
check "the partial is gone after the commit" sh -c "! ls P/.fluke/work/*/remote-*.part 2> /dev/null"

# --- A corrupt object: a miss with a warning, local runs, nothing bad committed.
echo "fault=corrupt kind=cas method=GET minsize=1000000" > faults # the 9 MiB object only
newstore C
m=$(mark)
run_in C c.log; rc=$?
check "C runs (rc=$rc)" [ $rc -eq 0 ]
check "C warns that the remote result is unusable" grep -q 'warning: remote cache .*unusable.*object [0-9a-f]* does not match its digest' c.log
check "C ran a (the corrupt one) locally" runs_exactly c.log a
check "C: b and c, unaffected, are remote hits" [ "$(grep -c '^\[fluke\] cached [bc]  (remote hit)$' c.log)" -eq 2 ]
check "C published the right bytes" cmp -s A/out/rc/c.txt C/out/rc/c.txt
check "C re-sent the object that failed (a HEAD would have skipped it)" put_cas_since $m "$big"
check "C's a holds A's bytes, not the server's corrupt ones" cmp -s "$(ls A/.fluke/checkouts/*/a.txt)" "$(ls C/.fluke/checkouts/*/a.txt)"
(cd C && $F verify c.json > "$T/c-verify.log" 2>&1)
check "C's store holds no corrupt object" grep -q ' 0 corrupt' c-verify.log
echo "fault=corrupt kind=cas method=GET" > faults # trees too (they come first)
newstore C2
run_in C2 c2.log; rc=$?
check "C2 runs (rc=$rc)" [ $rc -eq 0 ]
check "C2 warns about a corrupt tree" grep -q 'warning: remote cache .*unusable.*tree [0-9a-f]* does not match its digest' c2.log
check "C2 ran every stage locally" runs_exactly c2.log a b c
: > faults

# --- An /ac/ entry whose object is missing on the server: a miss, not an error.
echo "fault=missing kind=cas" > faults
newstore M
run_in M m.log; rc=$?
check "M runs (rc=$rc)" [ $rc -eq 0 ]
check "M notes the missing object as a miss" grep -q 'is not on the server: a miss' m.log
check "M ran every stage locally" runs_exactly m.log a b c
check "M: no warning (a miss is normal)" sh -c "! grep -q 'warning' m.log"
: > faults

# --- 500s: one warning, then the run goes on without the remote.
echo "fault=500 kind=ac method=GET" > faults
newstore E
run_in E e.log; rc=$?
check "E runs through 500s (rc=$rc)" [ $rc -eq 0 ]
check "E warns exactly once" [ "$(grep -c 'warning: remote cache' e.log)" -eq 1 ]
check "the warning names the status" grep -q 'GET /ac/ failed (HTTP 500' e.log
check "E ran every stage locally" runs_exactly e.log a b c
: > faults

# --- A slow server (longer than cache.remote_timeout_s): a warning, local runs.
echo "fault=slow seconds=6 kind=ac method=GET times=1" > faults
newstore S
t0=$SECONDS
run_in S s.log; rc=$?
check "S runs past a stalled server (rc=$rc)" [ $rc -eq 0 ]
check "S warns about the timeout" grep -q 'warning: remote cache .*GET /ac/ failed (timed out: nothing moved for 2 s' s.log
check "S did not wait for the server (under 6 s)" [ $((SECONDS - t0)) -lt 6 ]
check "S ran every stage locally" runs_exactly s.log a b c
: > faults

# --- A wrong token: 401, one warning, the token (right or wrong) never printed.
newstore W
(cd W && RC_TOKEN=wrong-$TOKEN $F run c.json > "$T/w.log" 2>&1); rc=$?
check "W runs with a wrong token (rc=$rc)" [ $rc -eq 0 ]
check "W warns about HTTP 401" grep -q 'failed (HTTP 401' w.log
check "W ran every stage locally" runs_exactly w.log a b c

# --- Read-only (--remote-readonly, and cache.remote_mode): hits still work, nothing is PUT.
cp in.txt in.orig
echo "more" >> in.txt # new keys: the stages run and would upload
newstore O
m=$(mark)
run_in O o.log --remote-readonly; rc=$?
check "O runs read-only (rc=$rc)" [ $rc -eq 0 ]
check "O ran a (a new key)" ran o.log a
check "O sent no PUT" no_put_since $m
check "O looked the keys up" ac_get_since $m
check "O's summary says read-only" grep -q '(read-only): 0 hits, 0 uploaded' o.log
echo "and more" >> in.txt # keys O has not seen (had it uploaded, they would be hits now)
newstore O2
sed -i 's/"remote_timeout_s": 2}/"remote_timeout_s": 2, "remote_mode": "readonly"}/' O2/c.json
m=$(mark)
run_in O2 o2.log; rc=$?
check "O2 (remote_mode readonly) runs (rc=$rc)" [ $rc -eq 0 ]
check "O2 ran a" ran o2.log a
check "O2 sent no PUT" no_put_since $m
sed -i 's/"remote_mode": "readonly"/"remote_mode": "sometimes"/' O2/c.json
(cd O2 && $F run c.json > "$T/o3.log" 2>&1); rc=$?
check "an unknown remote_mode is a config error (exit 2)" [ $rc -eq 2 ]
check "the error names the file and the key" grep -q 'c.json:[0-9]*.*cache.remote_mode "sometimes"' o3.log
(cd O && RC_TOKEN="$TOKEN
Injected: header" $F run c.json > "$T/o4.log" 2>&1); rc=$?
check "a token with a newline is refused (exit 2), not sent" [ $rc -eq 2 ]
check "the refusal names the variable, not the token" grep -q 'the token in \$RC_TOKEN holds a control character' o4.log
mv in.orig in.txt # back to A's input

# --- The token never appears in any output, log or store file of any run.
check "the token is in no fluke output" sh -c "! grep -l -- '$TOKEN' $T/*.log"
check "the token is in no store file" sh -c "! grep -rl -- '$TOKEN' $T/A/.fluke $T/B/.fluke $T/W/.fluke"

# --- B as an unprivileged user (uid 65534): remote hits land in a store it owns.
if [ "$(id -u)" -eq 0 ] && command -v setpriv > /dev/null; then
    mkdir -p "$T/bin" "$T/N" && cp "$F" "$T/bin/" && cp base.json "$T/N/c.json"
    chmod 755 "$T" "$T/bin" && chmod -R a+rX "$T/bin" "$T/in.txt" && chown -R 65534:65534 "$T/N"
    (cd "$T/N" && setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$T/N" RC_TOKEN=$TOKEN \
        "$T/bin/$(basename "$F")" run c.json > "$T/n.log" 2>&1); rc=$?
    check "uid 65534 runs B (rc=$rc)" [ $rc -eq 0 ]
    check "uid 65534: every stage a remote hit" [ "$(grep -c '(remote hit)$' n.log)" -eq 3 ]
    check "uid 65534: same output" cmp -s A/out/rc/c.txt N/out/rc/c.txt
else
    echo "ok   (not root or no setpriv: the unprivileged run is skipped)"
fi

# --- No server at all (and a URL with user:password, never printed).
stop_server
newstore D
sed -i "s#http://127.0.0.1:$port/team#http://user:hunter2@127.0.0.1:$port/team#" D/c.json
run_in D d.log; rc=$?
check "D runs with the server gone (rc=$rc)" [ $rc -eq 0 ]
check "D warns exactly once" [ "$(grep -c 'warning: remote cache' d.log)" -eq 1 ]
check "D ran every stage locally" runs_exactly d.log a b c
check "D's messages hide the URL's password" sh -c "grep -q 'http://\*\*\*@127.0.0.1' d.log && ! grep -q hunter2 d.log"
(cd D && $F status c.json > "$T/d-status.log" 2>&1); rc=$?
check "status with the server gone still works (rc=$rc)" [ $rc -eq 0 ]
check "no sanitizer report in any log" sh -c "! grep -l -e 'Sanitizer' -e 'runtime error:' $T/*.log"
finish
