# A single-node Slurm cluster on loopback for tests/integration/slurm_real.sh and
# tests/bench/bench_slurm.sh (sourced, not run): slurmctld -D and slurmd -D in the foreground of
# a temp dir, auth/none (loopback only, root only), one node named localhost with the CPUs
# nproc reports and one fake GPU (gres.conf File= a character device), no accounting database
# (sacct answers "accounting storage is disabled"; jobcomp/filetxt keeps each finished job's
# times). The client commands find it through SLURM_CONF, which slurm_start exports.
#
#   slurm_start DIR [EXTRA_CONF_LINE...]  0 when the node is idle; else 1 with SLURM_WHY set
#   slurm_stop                            cancels what is left, stops both daemons by PID
#
# The caller's EXIT trap must call slurm_stop (daemons must never outlive a test).
SLURM_CTLD_PID= SLURM_D_PID= SLURM_WHY=

# _slurm_until SECONDS COMMAND...: polls COMMAND every 0.05 s until it succeeds or time is up.
_slurm_until() {
    local end=$((SECONDS + $1 + 1)); shift
    while :; do
        "$@" && return 0
        [ $SECONDS -lt $end ] || return 1
        sleep 0.05 # lint: sleep is a poll interval
    done
}

_slurm_idle() { [ "$(sinfo -h -n localhost -o %t 2> /dev/null)" = idle ]; }
_slurm_empty() { [ -z "$(squeue -h -o %i 2> /dev/null)" ]; }
_slurm_gone() { ! kill -0 "$1" 2> /dev/null; }

slurm_start() {
    local d=$1; shift
    local b
    for b in slurmctld slurmd sbatch squeue sinfo scancel python3; do
        command -v "$b" > /dev/null || { SLURM_WHY="$b not found (ci/deps.sh installs slurm-wlm)"; return 1; }
    done
    [ "$(id -u)" = 0 ] || { SLURM_WHY="slurmd must run as root (the cluster runs jobs as root)"; return 1; }
    local lib=/usr/lib/x86_64-linux-gnu/slurm-wlm
    [ -d "$lib" ] || lib=$(dirname "$(find /usr/lib* -name auth_none.so 2> /dev/null | head -1)")
    [ -e "$lib/auth_none.so" ] || { SLURM_WHY="this Slurm has no auth/none plugin"; return 1; }
    mkdir -p "$d/state" "$d/spool"
    # The fake GPU: a character device of our own (the null device's numbers), or /dev/null.
    local gpu=$d/gpu0
    mknod "$gpu" c 1 3 2> /dev/null || gpu=/dev/null
    local ports
    ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))') || { SLURM_WHY="no free port"; return 1; }
    set -- $ports "$@"
    local cport=$1 dport=$2; shift 2
    {
        echo "ClusterName=flukeit"
        echo "SlurmctldHost=localhost"
        echo "SlurmctldPort=$cport"
        echo "SlurmdPort=$dport"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/none"
        echo "CredType=cred/none"
        echo "MpiDefault=none"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SlurmdParameters=config_overrides"
        echo "StateSaveLocation=$d/state"
        echo "SlurmdSpoolDir=$d/spool"
        echo "SlurmctldPidFile=$d/slurmctld.pid"
        echo "SlurmdPidFile=$d/slurmd.pid"
        echo "ReturnToService=2"
        echo "GresTypes=gpu"
        echo "JobCompType=jobcomp/filetxt"
        echo "JobCompLoc=$d/jobcomp.txt"
        local l
        for l in "$@"; do echo "$l"; done
        echo "NodeName=localhost CPUs=$(nproc) Gres=gpu:1 State=UNKNOWN"
        echo "PartitionName=fluke Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
    } > "$d/slurm.conf"
    echo "NodeName=localhost Name=gpu File=$gpu" > "$d/gres.conf"
    export SLURM_CONF=$d/slurm.conf
    slurmctld -D -i > "$d/slurmctld.log" 2>&1 &
    SLURM_CTLD_PID=$!
    slurmd -D -N localhost > "$d/slurmd.log" 2>&1 &
    SLURM_D_PID=$!
    if ! _slurm_until 30 _slurm_idle; then
        SLURM_WHY="the node did not become idle within 30 s: $(grep -h -m2 -i 'error\|fatal' \
            "$d/slurmctld.log" "$d/slurmd.log" | grep -v pmix | tr '\n' ' ' | cut -c1-300)"
        slurm_stop
        return 1
    fi
}

slurm_stop() {
    [ -n "$SLURM_CTLD_PID$SLURM_D_PID" ] || return 0
    if [ -n "$SLURM_CTLD_PID" ] && kill -0 "$SLURM_CTLD_PID" 2> /dev/null; then
        scancel --quiet --full -u root 2> /dev/null
        _slurm_until 20 _slurm_empty
    fi
    local p
    for p in $SLURM_D_PID $SLURM_CTLD_PID; do
        kill -TERM "$p" 2> /dev/null
        _slurm_until 10 _slurm_gone "$p" || kill -KILL "$p" 2> /dev/null
        wait "$p" 2> /dev/null
    done
    SLURM_CTLD_PID= SLURM_D_PID=
}
