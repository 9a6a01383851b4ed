# The Slurm executor's overhead per stage on a single-node loopback cluster
# (tests/integration/_slurm.sh): a chain of BENCH_SLURM_STAGES (default 5) trivial teststages
# stages, so one job runs at a time, through `fluke run --executor slurm` at two poll intervals
# (0.5 s, and 2 s: the default min_poll_s), against the same chain run locally. Per stage:
#   submit->start   fluke logged the job's submission (just after sbatch returned) -> Slurm's
#                   TaskProlog ran on the node (the job started)
#   run             TaskProlog -> TaskEpilog (the job's stage process, start to end)
#   end->detected   TaskEpilog -> fluke logged the stage done (after a poll saw it end)
#   ctld            Slurm's own StartTime - SubmitTime (jobcomp/filetxt; whole seconds: there
#                   is no accounting database, so no sacct)
# fluke's lines are timestamped as they arrive (its stdout through a pipe, one write per line).
# Medians over the stages. Skipped (exit 0, "skipped:") where the cluster cannot start.
set -u
: "${FLUKE_TS:?}" "${FLUKE_SRC:?}"
N=${BENCH_SLURM_STAGES:-5}
T=$(mktemp -d /tmp/fluke-bench-XXXXXX)
. "$FLUKE_SRC/tests/integration/_slurm.sh"
trap 'slurm_stop; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
mkdir c
cat > c/prolog.sh <<E
#!/bin/sh
echo "start \$SLURM_JOB_ID \$(date +%s.%N)" >> $T/c/times.txt
E
sed 's/start/end/' c/prolog.sh > c/epilog.sh
chmod +x c/prolog.sh c/epilog.sh
if ! slurm_start "$T/c" "TaskProlog=$T/c/prolog.sh" "TaskEpilog=$T/c/epilog.sh"; then
    echo "skipped: no Slurm cluster: $SLURM_WHY"
    exit 0
fi
echo "bench" > in.txt
chain() { # poll_s: the config of a chain of N stages
    local k text="" from="file:in.txt"
    for k in $(seq 1 "$N"); do
        text="$text${text:+,} \"s$k\": {\"op\": \"upper\", \"from\": \"$from\", \"suffix\": \"$k\"}"
        from="s$k"
    done
    printf '{"name": "b", "executor": {"slurm": {"poll_s": %s, "min_poll_s": 0.5}}, "text": {%s}}\n' "$1" "$text"
}
stamp() { python3 -u -c '
import sys, time
for l in sys.stdin: sys.stdout.write("%.6f %s" % (time.time(), l))'; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# jobcomp ID FIELD
jobcomp() { grep "^JobId=$1 " c/jobcomp.txt | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

chain 2 > local.json
t0=$(date +%s.%N)
"$FLUKE_TS" run local.json > local.log 2>&1 || { echo "local chain failed:"; cat local.log; exit 1; }
tlocal=$(echo "($(date +%s.%N) - $t0) / $N" | bc -l)
printf '%-10s %8s %14s %8s %14s %8s %12s\n' poll_s "wall/st" "submit->start" run "end->detected" ctld "vs local"
for poll in 0.5 2; do
    rm -rf .fluke out
    chain "$poll" > b.json
    : > c/times.txt
    t0=$(date +%s.%N)
    "$FLUKE_TS" run b.json --executor slurm 2>&1 | stamp > run.log
    wall=$(echo "($(date +%s.%N) - $t0) / $N" | bc -l)
    grep -q " \[fluke\] $N stages: $N ran" run.log || { echo "slurm chain failed:"; cat run.log; exit 1; }
    : > s2s; : > runs; : > e2d; : > ctld
    for k in $(seq 1 "$N"); do
        line=$(grep " \[fluke\] slurm  job [0-9]*: s$k " run.log)
        id=$(echo "$line" | sed 's/.* job \([0-9]*\): .*/\1/')
        sub=${line%% *}
        det=$(grep " \[fluke\] done   s$k " run.log | cut -d' ' -f1)
        st=$(awk -v j="$id" '$1 == "start" && $2 == j {print $3}' c/times.txt)
        en=$(awk -v j="$id" '$1 == "end" && $2 == j {print $3}' c/times.txt)
        [ -n "$st" ] && [ -n "$en" ] && [ -n "$det" ] || { echo "no times for s$k (job $id)"; exit 1; }
        echo "$st - $sub" | bc >> s2s
        echo "$en - $st" | bc >> runs
        echo "$det - $en" | bc >> e2d
        echo "$(date -d "$(jobcomp "$id" StartTime)" +%s) - $(date -d "$(jobcomp "$id" SubmitTime)" +%s)" | bc >> ctld
    done
    printf '%-10s %7.2fs %13.2fs %7.2fs %13.2fs %7.0fs %11.1fx\n' "$poll" "$wall" "$(median < s2s)" \
        "$(median < runs)" "$(median < e2d)" "$(median < ctld)" "$(echo "$wall / $tlocal" | bc -l)"
done
echo "(medians over $N chained stages; local: $(printf '%.2f' "$tlocal") s per stage; $(sinfo -V), $(nproc) cpus)"
