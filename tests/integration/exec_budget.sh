# Each stage runs as a fresh process under its budget: OpenMP and OpenBLAS report the stage's
# thread budget, not the parent's; the GPU pool maps onto the inherited CUDA_VISIBLE_DEVICES
# (ids or UUIDs) and every stage sees exactly its GPUs; impossible GPU or thread settings fail
# before anything runs.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
out() { cat .fluke/checkouts/*/"$1.txt" 2>/dev/null; } # the committed output of node $1
ncpu=$(nproc)

# --- threads: the parent runs with 4 OpenMP / 2+ OpenBLAS threads, the stages with their budget
printf '{"resources": {"threads": 4}, "text": {"one": {"op": "budget", "threads": 1},
  "three": {"op": "budget", "threads": 3}, "many": {"op": "budget", "threads": 64}}}' > th.json
OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 OMP_THREAD_LIMIT=64 $F run th.json -j 3 > th.log 2>&1; rc=$?
check "budget run succeeds" [ $rc -eq 0 ]
check "budget 1: omp_get_max_threads() is 1" grep -q '^omp 1 .* budget 1$' <(out one)
if [ "$ncpu" -ge 2 ]; then
    check "budget 1: openblas_get_num_threads() is 1" grep -q 'openblas 1 budget 1$' <(out one)
else
    echo "note: 1 CPU, OpenBLAS reports 1 whatever the budget; the OpenBLAS check proves nothing here"
fi
check "budget 3: omp_get_max_threads() is 3" grep -q '^omp 3 .* budget 3$' <(out three)
check "a stage asking 64 threads gets resources.threads (4)" grep -q '^omp 4 .* budget 4$' <(out many)
out one | sed 's/^/     one:   /'; out three | sed 's/^/     three: /'

# --- GPUs: the pool is the inherited list; two stages at once (rendezvous) get disjoint slices
mkdir rv
printf '{"resources": {"gpus": 3}, "text": {"g2": {"op": "gpus", "gpus": 2}, "g1": {"op": "gpus", "gpus": 1},
  "cpu": {"op": "gpus"}}}' > g.json
CUDA_VISIBLE_DEVICES=3,5,7 FLUKE_TS_RENDEZVOUS=2:$T/rv $F run g.json -j 3 > g.log 2>&1; rc=$?
check "GPU run succeeds (both GPU stages ran at once)" [ $rc -eq 0 ]
g2=$(out g2 | sed -n 's/^gpus 2 first 0 visible //p'); g1=$(out g1 | sed -n 's/^gpus 1 first 0 visible //p')
echo "     g2 sees '$g2', g1 sees '$g1'"
sorted=$(printf '%s,%s' "$g2" "$g1" | tr , '\n' | sort | tr '\n' ' ')
check "two GPU stages at once: disjoint slices covering 3,5,7" [ "$sorted" = "3 5 7 " ]
check "a 2-GPU stage sees two entries of the list" sh -c "echo '$g2' | grep -Eq '^[357],[357]$'"
check "a CPU stage sees no GPU" grep -qx 'gpus 0 first -1 visible ' <(out cpu)
rm -rf .fluke
printf '{"resources": {"gpus": 2}, "text": {"u": {"op": "gpus", "gpus": 2}}}' > u.json
CUDA_VISIBLE_DEVICES=GPU-1b2c,GPU-9f00,GPU-dead $F run u.json > u.log 2>&1
check "UUIDs in CUDA_VISIBLE_DEVICES: the stage gets the first two" grep -qx 'gpus 2 first 0 visible GPU-1b2c,GPU-9f00' <(out u)
rm -rf .fluke
(unset CUDA_VISIBLE_DEVICES; $F run u.json > u0.log 2>&1)
check "no CUDA_VISIBLE_DEVICES: devices 0 and 1" grep -qx 'gpus 2 first 0 visible 0,1' <(out u)
# Two stages that each need the whole pool run one after the other, not never.
printf '{"resources": {"gpus": 2}, "text": {"x": {"op": "gpus", "gpus": 2}, "y": {"op": "gpus", "gpus": 2}}}' > xy.json
CUDA_VISIBLE_DEVICES=4,6 $F run xy.json -j 2 > xy.log 2>&1; rc=$?
check "two stages needing the whole pool both finish" sh -c "[ $rc -eq 0 ] && grep -q '2 ran' xy.log"

# --- impossible settings: exit 2, a clear message, nothing runs
expect2() { # description, pattern, config, env...
    local d=$1 pat=$2 cfg=$3; shift 3
    env "$@" $F run "$cfg" > bad.log 2>&1; local rc=$?
    if [ $rc -eq 2 ] && grep -Eq -- "$pat" bad.log && ! grep -q '^\[fluke\] run ' bad.log; then ok "$d"
    else bad "$d (rc=$rc)"; sed 's/^/     /' bad.log; fi
}
printf '{"text": {"n": {"op": "gpus", "gpus": 1}}}' > none.json
expect2 "a GPU stage without GPUs in the config" "stage 'n' needs 1 GPU but .*none.json has none" none.json CUDA_VISIBLE_DEVICES=0
printf '{"resources": {"gpus": 2}, "text": {"n": {"op": "gpus", "gpus": 3}}}' > more.json
expect2 "a stage needing more GPUs than the pool" "stage 'n' needs 3 GPUs but .*more.json has 2" more.json CUDA_VISIBLE_DEVICES=0,1
printf '{"resources": {"gpus": 4}, "text": {"n": {"op": "gpus", "gpus": 1}}}' > four.json
expect2 "resources.gpus beyond CUDA_VISIBLE_DEVICES" 'resources.gpus is 4 but CUDA_VISIBLE_DEVICES="3,5,7" lists 3 devices' four.json CUDA_VISIBLE_DEVICES=3,5,7
for v in -2 2147483648 3e9 1.5; do
    printf '{"resources": {"gpus": %s}, "text": {"n": {"op": "gpus"}}}' "$v" > gv.json
    expect2 "resources.gpus $v is refused" 'resources.gpus' gv.json
done
for v in 0 -1 1e12; do
    printf '{"resources": {"threads": %s}, "text": {"n": {"op": "budget"}}}' "$v" > tv.json
    expect2 "resources.threads $v is refused" 'resources.threads' tv.json
done
finish
