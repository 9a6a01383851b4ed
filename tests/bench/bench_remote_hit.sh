# A remote cache hit of a 100 MB artifact (GET /ac/, HEAD + GET /cas/, re-hash, ingest, record,
# checkout: a whole `fluke run` of a fresh store) against its peer, curl fetching the same
# object's bytes from the same server into a file. Server: nginx with WebDAV on 127.0.0.1 when
# installed, else tests/remote/cache_server.py. Each is timed BENCH_REMOTE_REPS times (default
# 3), interleaved, fastest reported. BENCH_REMOTE_MB sets the size.
set -u
: "${FLUKE_TS:?}" "${FLUKE_SRC:?}"
MB=${BENCH_REMOTE_MB:-100}
T=$(mktemp -d /tmp/fluke-bench-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2> /dev/null)
if [ -n "$NGINX" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p ngx/data ngx/tmp
    user=""; [ "$(id -u)" -eq 0 ] && user="user root root;"
    cat > ngx/nginx.conf <<C
$user
worker_processes 1; error_log $T/ngx/error.log; pid $T/ngx/nginx.pid;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $T/ngx/tmp/body; proxy_temp_path $T/ngx/tmp/p;
  fastcgi_temp_path $T/ngx/tmp/f; uwsgi_temp_path $T/ngx/tmp/u; scgi_temp_path $T/ngx/tmp/s;
  server { listen 127.0.0.1:$port; client_max_body_size 0;
    location /c/ { root $T/ngx/data; dav_methods PUT; create_full_put_path on; } } }
C
    "$NGINX" -p "$T/ngx" -c "$T/ngx/nginx.conf" -g 'daemon off;' 2> ngx/stderr &
    pid=$!
    server="nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
else
    python3 "$FLUKE_SRC/tests/remote/cache_server.py" --root "$T/srv" --log "$T/srv.log" > srv.out &
    pid=$!
    for _ in $(seq 100); do grep -q PORT srv.out 2> /dev/null && break; sleep 0.1; done # lint: sleep is a poll
    port=$(sed -n 's/^PORT //p' srv.out)
    server="tests/remote/cache_server.py"
fi
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done # lint: sleep is a poll
head -c $((MB * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 0 | head -c $((MB * 1000 * 1000)) > in.txt
cat > c.json <<J
{ "name": "bench", "cache": {"remote": "http://127.0.0.1:$port/c"},
  "text": {"a": {"op": "upper", "from": "file:$T/in.txt"}} }
J
mkdir A && cp c.json A/ && (cd A && "$FLUKE_TS" run c.json > ../a.log 2>&1) || { echo "upload run failed"; cat a.log; exit 1; }
obj=$(ls A/.fluke/objects/*/* | xargs ls -S | head -1)
hex=$(basename "$(dirname "$obj")")$(basename "$obj")
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
min() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
hit="" peer="" peers="" ok=1
for r in $(seq 1 "${BENCH_REMOTE_REPS:-3}"); do
    rm -rf B && mkdir B && cp c.json B/
    hit=$(min "$hit" "$(cd B && t "$FLUKE_TS" run c.json)")
    (cd B && "$FLUKE_TS" run c.json > ../b.log 2>&1) # all local hits now: just for the check
    grep -q ' 0 ran, 1 cached' b.log || ok=0
    rm -f peer.bin
    peer=$(min "$peer" "$(t curl -s -o peer.bin "http://127.0.0.1:$port/c/cas/$hex")")
    rm -f peer.bin
    peers=$(min "$peers" "$(t sh -c "curl -s -o peer.bin 'http://127.0.0.1:$port/c/cas/$hex' && sync peer.bin")")
done
cmp -s peer.bin "$obj" || ok=0
[ $ok -eq 1 ] || { echo "the remote hit or the curl fetch did not produce the object"; exit 1; }
printf 'server                %s on 127.0.0.1\n' "$server"
printf 'artifact              %d MB (one object)\n' "$MB"
printf 'fluke remote hit      %.3f s (whole run: /ac/, HEAD, GET, re-hash, ingest, record, checkout)\n' "$hit"
printf 'curl GET              %.3f s (bytes to a file, nothing checked)\n' "$peer"
printf 'curl GET + fsync      %.3f s (the bytes made durable, as the store does)\n' "$peers"
printf 'ratio                 %.2fx curl, %.2fx curl + fsync\n' "$(echo "$hit / $peer" | bc -l)" "$(echo "$hit / $peers" | bc -l)"
