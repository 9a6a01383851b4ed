# A stage process dies with its executor: kill -9 of the fluke parent alone (not its process
# group) takes the running stage with it (PR_SET_PDEATHSIG, set in the child before exec and
# re-checked against the parent's pid, so a parent dying in between is noticed too; that race
# itself is too narrow to hit from a test).
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
echo x > in.txt
printf '{"text": {"slow": {"op": "upper", "from": "file:in.txt", "delay_ms": 60000}}}' > s.json
mine() { # stage processes of this test (working directory $T)
    for p in $(pgrep -f 'fluke-teststages __stage'); do
        [ "$(readlink /proc/"$p"/cwd 2>/dev/null)" = "$T" ] && echo "$p"; done; }
setsid $F run s.json > s.log 2>&1 &
pid=$!
started() { [ -n "$(mine)" ]; }
wait_for 30 started
stage=$(mine)
check "the stage runs as its own process (argv: __stage)" [ -n "$stage" ]
check "with its budget in its environment" grep -qz '^OMP_NUM_THREADS=1$' /proc/"${stage:-0}"/environ
# alive: the process exists and is not a zombie (pid 1 here may be slow to reap)
alive() { [ -n "$1" ] && grep -q '^State:[[:space:]]*[^Z]' /proc/"$1"/status 2>/dev/null; }
kill -9 "$pid"; wait "$pid" 2>/dev/null
# the 60 s stage must go with its parent; 10 s is only a guard against hanging here
dead() { ! alive "$stage"; }
wait_for 10 dead
check "killing the executor alone kills the stage process" sh -c "! grep -q '^State:[[:space:]]*[^Z]' /proc/${stage:-0}/status 2>/dev/null"
alive "$stage" && kill -9 "$stage"
finish
