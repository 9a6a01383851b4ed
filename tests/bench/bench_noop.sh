# A no-op rerun over an 80,000-file input (the size of the real train + test image folders):
# the first run hashes every file, the rerun only stats them. Peers in the same run: xxhsum
# (XXH128) over the same files, and a bare stat walk (find -printf), the floor for any tool
# that must notice changes. The no-op rerun and the walk are timed BENCH_NOOP_REPS times
# (default 5), interleaved, and the fastest of each is reported (a shared machine's noise only
# ever adds time). FLUKE_TS_BASE=<another fluke-teststages> times that binary's no-op rerun
# too, in the same rounds, on its own copy of the store (before/after comparisons).
set -u
: "${FLUKE_TS:?}"
N=${BENCH_NOOP_FILES:-80000}
T=$(mktemp -d /tmp/fluke-bench-XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
mkdir imgs
# N distinct 4 KB files in one process (split), not N forks
head -c $((N * 4096)) /dev/urandom | (cd imgs && split -b 4096 -a 6 -d - img)
find imgs -type f -exec touch -d '1 hour ago' {} +
printf '{"name": "b", "text": {"n": {"op": "count", "from": "dir:imgs"}}}' > b.json
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
sync
first=$(t "$FLUKE_TS" run b.json)
base=${FLUKE_TS_BASE:-}
if [ -n "$base" ]; then
    mkdir baseline && cp -a .fluke baseline/ && cp b.json baseline/ && ln -s ../imgs baseline/imgs
    (cd baseline && "$base" run b.json > /dev/null 2>&1) # its own stat cache, warm
fi
min() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
noop="" walk="" bnoop=""
for r in $(seq 1 "${BENCH_NOOP_REPS:-5}"); do
    noop=$(min "$noop" "$(t "$FLUKE_TS" run b.json)")
    walk=$(min "$walk" "$(t sh -c 'find imgs -type f -printf "%s %T@ %i\n" > /dev/null')")
    [ -n "$base" ] && bnoop=$(min "$bnoop" "$(cd baseline && t "$base" run b.json)")
done
if command -v xxhsum > /dev/null; then
    xx=$(t sh -c 'find imgs -type f -print0 | xargs -0 xxhsum -H2 > /dev/null')
else
    xx=""
fi
printf 'files                 %d x 4 KB\n' "$N"
printf 'fluke first run       %.3f s (hash every file)\n' "$first"
printf 'fluke no-op rerun     %.3f s (stat cache: 0 files read)\n' "$noop"
printf 'find stat walk        %.3f s\n' "$walk"
[ -n "$xx" ] && printf 'xxhsum -H2 all files  %.3f s\n' "$xx"
printf 'ratio first/no-op     %.1fx\n' "$(echo "$first / $noop" | bc -l)"
printf 'ratio no-op/stat-walk %.2fx (1.0 = as cheap as listing the files)\n' "$(echo "$noop / $walk" | bc -l)"
if [ -n "$base" ]; then
    printf 'baseline no-op rerun  %.3f s (%s)\n' "$bnoop" "$base"
    printf 'baseline no-op/walk   %.2fx\n' "$(echo "$bnoop / $walk" | bc -l)"
fi
[ -n "$xx" ] && printf 'ratio first/xxhsum    %.2fx (below 1 = fluke hashes faster than xxhsum)\n' "$(echo "$first / $xx" | bc -l)"
exit 0
