# The remote cache against a real server: nginx with WebDAV PUT on 127.0.0.1 (the setup the
# README shows), bearer token checked by nginx. Store A uploads; a fresh store B gets every stage
# as a remote hit and runs nothing; a byte flipped in an object on nginx's disk is caught and
# that stage recomputed; nginx stopped mid-way degrades to local runs.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2> /dev/null) || skip "nginx not found (ci/deps.sh installs it)"
command -v python3 > /dev/null || skip "python3 not found (picking a free port)"
"$NGINX" -V 2>&1 | grep -q -- --with-http_dav_module || skip "this nginx has no WebDAV module"
TOKEN="fluke-nginx-token-$$-s3cret"
N=$T/ngx
mkdir -p "$N/data/cache" "$N/tmp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user=""
[ "$(id -u)" -eq 0 ] && user="user root root;" # workers write the cache as the test's user
cat > "$N/nginx.conf" <<C
$user
worker_processes 1;
error_log $N/error.log;
pid $N/nginx.pid;
events { worker_connections 64; }
http {
    access_log $N/access.log;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 0;
        location /cache/ {
            if (\$http_authorization != "Bearer $TOKEN") { return 401; }
            root $N/data;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }
    }
}
C
"$NGINX" -p "$N" -c "$N/nginx.conf" -g 'daemon off;' 2> "$N/stderr" &
npid=$!
trap 'kill $npid 2>/dev/null; wait $npid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2> /dev/null; }
wait_for 20 listening
check "nginx is up on 127.0.0.1:$port" listening

head -c 3145728 /dev/urandom | base64 > in.bin # text (the ops are text ops), about 4 MiB
cat > base.json <<J
{ "name": "ng", "cache": {"remote": "http://127.0.0.1:$port/cache", "remote_token_env": "NG_TOKEN", "remote_timeout_s": 2},
  "text": {
    "a": {"op": "upper", "from": "file:$T/in.bin"},
    "b": {"op": "length", "from": "a"},
    "c": {"op": "concat", "from": ["b", "b"], "publish": true}
  } }
J
run_in() { mkdir -p "$T/$1" && cp base.json "$T/$1/c.json" && (cd "$T/$1" && NG_TOKEN=$TOKEN $F run c.json > "$T/$1.log" 2>&1); }

run_in A; rc=$?
check "A runs against nginx (rc=$rc)" [ $rc -eq 0 ]
check "A uploaded 3 stages to nginx" grep -q ': 0 hits, 3 uploaded' A.log
check "nginx holds 3 /ac/ entries" [ "$(ls "$N/data/cache/ac" 2> /dev/null | wc -l)" -eq 3 ]
check "nginx saw no unauthorized request" sh -c "! grep -q '\" 401 ' '$N/access.log'"
run_in B; rc=$?
check "B runs (rc=$rc)" [ $rc -eq 0 ]
check "B: every stage a remote hit from nginx" [ "$(grep -c '(remote hit)$' B.log)" -eq 3 ]
check "B started no stage process" [ "$(count_runs B.log)" -eq 0 ]
check "B's output is A's" cmp -s A/out/ng/c.txt B/out/ng/c.txt
check "B's a is A's bytes" cmp -s "$(ls A/.fluke/checkouts/*/a.txt)" "$(ls B/.fluke/checkouts/*/a.txt)"

# A byte flipped on nginx's disk: the 4 MiB object of a.
big=$(find "$N/data/cache/cas" -type f -size +1M | head -1)
check "the 4 MiB object is on nginx's disk" [ -n "$big" ]
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' "$big"
run_in C; rc=$?
check "C runs (rc=$rc)" [ $rc -eq 0 ]
check "C caught the flipped byte" grep -q 'unusable.*object [0-9a-f]* does not match its digest' C.log
check "C recomputed a, took b and c from nginx" runs_exactly C.log a
check "C's a is the right bytes" cmp -s "$(ls A/.fluke/checkouts/*/a.txt)" "$(ls C/.fluke/checkouts/*/a.txt)"

run_in C3; rc=$?
check "C replaced the bad copy: a fresh store gets 3 remote hits again (rc=$rc)" [ "$(grep -c '(remote hit)$' C3.log)" -eq 3 ]

# A wrong token: nginx answers 401; one warning; the run succeeds locally.
mkdir -p W && cp base.json W/c.json
(cd W && NG_TOKEN=nope $F run c.json > "$T/W.log" 2>&1); rc=$?
check "W with a wrong token runs locally (rc=$rc)" [ $rc -eq 0 ]
check "W warns about the 401 once" [ "$(grep -c 'failed (HTTP 401' W.log)" -eq 1 ]

# nginx gone: one warning, local runs.
kill $npid; wait $npid 2> /dev/null
run_in D; rc=$?
check "D runs with nginx stopped (rc=$rc)" [ $rc -eq 0 ]
check "D warns once" [ "$(grep -c 'warning: remote cache' D.log)" -eq 1 ]
check "D ran every stage" runs_exactly D.log a b c
check "the token is in no output" sh -c "! grep -l -- '$TOKEN' $T/*.log"
check "no sanitizer report in any log" sh -c "! grep -l -e 'Sanitizer' -e 'runtime error:' $T/*.log"
finish
