#!/usr/bin/env python3
"""A fake Slurm client for tests/integration/exec_slurm.sh: sbatch, squeue, sacct and scancel
behave like the real commands as fluke calls them, over a job table in $FAKE_SLURM_DIR, and really
run each batch script in the background (one process group per job, so scancel can kill it).

Every call is appended to $FAKE_SLURM_DIR/calls.log as "<unix time>\t<command>\t<args>".

Faults, from the caller's environment (fluke's, since it runs these commands):
  FAKE_SLURM_TRANSIENT="sbatch=2,squeue=1"  the first N calls of a command fail like a busy
                                            controller ("Socket timed out", exit 1)
  FAKE_SLURM_SBATCH_LOST=1                  ... and such a failing sbatch did submit its job
  FAKE_SLURM_STATE="b=NODE_FAIL,c=CANCELLED" a job whose name ends in -<id> ends in that state:
                                            CANCELLED jobs never run; the others run their
                                            script to the end first (the stage may well have
                                            written its exit file), then report the state
  FAKE_SLURM_NO_SACCT="a,b"                 sacct does not know these jobs (accounting lag)
  FAKE_SLURM_ACCT_DISABLED=1                sacct fails: accounting storage is disabled
  FAKE_SLURM_MIN_AGE=S                      finished jobs stay in squeue S seconds (default 0:
                                            gone at once, only sacct knows how they ended),
                                            listed only with --states=all (as real squeue)
  FAKE_SLURM_PENDING_S=S                    jobs wait S seconds in PENDING before they run
"""
import fcntl, json, os, signal, subprocess, sys, time

D = os.environ.get("FAKE_SLURM_DIR")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}


def log_call(cmd, args):
    with open(os.path.join(D, "calls.log"), "a") as f:
        f.write("%.6f\t%s\t%s\n" % (time.time(), cmd, " ".join(args)))


class Table:
    """The job table, under an exclusive lock for the whole with-block."""
    def __enter__(self):
        self.lk = open(os.path.join(D, "jobs.lock"), "a+")
        fcntl.flock(self.lk, fcntl.LOCK_EX)
        p = os.path.join(D, "jobs.json")
        self.t = json.load(open(p)) if os.path.exists(p) else {"next": 100, "jobs": {}, "calls": {}}
        return self.t

    def __exit__(self, *a):
        p = os.path.join(D, "jobs.json")
        with open(p + ".tmp", "w") as f:
            json.dump(self.t, f)
        os.rename(p + ".tmp", p)
        fcntl.flock(self.lk, fcntl.LOCK_UN)
        self.lk.close()


def env_map(name):
    out = {}
    for part in filter(None, os.environ.get(name, "").split(",")):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def transient(cmd):
    """Whether this call is one of the first N of cmd that fail (counted in the table)."""
    n = int(env_map("FAKE_SLURM_TRANSIENT").get(cmd, "0"))
    with Table() as t:
        c = t["calls"].get(cmd, 0) + 1
        t["calls"][cmd] = c
    return c <= n


def injected(name, var):
    """The value FAKE_SLURM_<var> gives the job named name (matched on its '-<id>' tail)."""
    for k, v in env_map(var).items():
        if name.endswith("-" + k) or k == "*":
            return v or "1"
    return None


def run_job(jid):
    """The detached runner of one job (task): pending, running, final state."""
    with Table() as t:
        j = t["jobs"][jid]
    pend = float(os.environ.get("FAKE_SLURM_PENDING_S", "0"))
    forced = injected(j["name"], "FAKE_SLURM_STATE")
    time.sleep(pend)
    with Table() as t:
        j = t["jobs"][jid]
        if j["state"] != "PENDING":   # cancelled while pending
            return
        if forced == "CANCELLED":
            j.update(state="CANCELLED", exit="0:15", end=time.time())
            return
        env = dict(os.environ)
        env.update(SLURM_JOB_ID=jid.replace("_", ""), SLURM_JOB_NAME=j["name"],
                   SLURM_CPUS_PER_TASK=str(j["cpus"]), SLURMD_NODENAME="fake-node")
        if j["task"] is not None:
            env.update(SLURM_ARRAY_JOB_ID=j["base"], SLURM_ARRAY_TASK_ID=str(j["task"]))
        else:
            env.pop("SLURM_ARRAY_TASK_ID", None)
        if j["gpus"]:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(j["gpus"]))
        out = open(j["output"], "ab")
        p = subprocess.Popen([j["script"]], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             env=env, start_new_session=True)
        j.update(state="RUNNING", pid=p.pid)
    rc = p.wait()
    with Table() as t:
        j = t["jobs"][jid]
        if j["state"] == "CANCELLED":
            return
        if forced:
            j.update(state=forced, exit="0:9" if forced != "OUT_OF_MEMORY" else "0:125")
        elif rc == 0:
            j.update(state="COMPLETED", exit="0:0")
        elif rc < 0:
            j.update(state="FAILED", exit="0:%d" % -rc)
        else:
            j.update(state="FAILED", exit="%d:0" % rc)
        j["end"] = time.time()


def detach(jid):
    if os.fork() == 0:
        os.setsid()
        fd = os.open(os.devnull, os.O_RDWR)
        for k in (0, 1, 2):
            os.dup2(fd, k)
        try:
            run_job(jid)
        finally:
            os._exit(0)


def sbatch(args):
    opts, script = {}, None
    for a in args:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            opts[k] = v
        else:
            script = a
    fail = transient("sbatch")
    if fail and not os.environ.get("FAKE_SLURM_SBATCH_LOST"):
        sys.stderr.write("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")
        return 1
    if "parsable" not in opts or not script or not os.access(script, os.X_OK):
        sys.stderr.write("sbatch: error: fake sbatch wants --parsable and an executable script\n")
        return 1
    gres = opts.get("gres", "")
    gpus = int(gres.split(":")[-1]) if gres.startswith("gpu:") else 0
    tasks = [None]
    if "array" in opts:
        lo, _, hi = opts["array"].partition("-")
        tasks = list(range(int(lo), int(hi or lo) + 1))
    with Table() as t:
        base = str(t["next"])
        t["next"] += 1
        ids = []
        for k in tasks:
            jid = base if k is None else "%s_%d" % (base, k)
            out = opts.get("output", "slurm-%j.log").replace("%j", jid).replace("%A", base) \
                .replace("%a", str(k) if k is not None else "")
            t["jobs"][jid] = dict(name=opts.get("job-name", "sbatch"), base=base, task=k,
                                  cpus=int(opts.get("cpus-per-task", "1")), gpus=gpus,
                                  script=script, output=out, state="PENDING", exit="0:0",
                                  end=None, pid=None, opts=opts)
            ids.append(jid)
    for jid in ids:
        detach(jid)
    if fail:   # submitted, but the answer got lost
        sys.stderr.write("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")
        return 1
    print(base)
    return 0


def visible(j, now, all_states):
    if j["state"] not in FINAL:
        return True
    if not all_states:  # as real squeue: finished jobs only with -t all / --states=all
        return False
    return j["end"] is not None and now - j["end"] < float(os.environ.get("FAKE_SLURM_MIN_AGE", "0"))


def squeue(args):
    if transient("squeue"):
        sys.stderr.write("squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n")
        return 1
    want, name, fmt, all_states = None, None, "%i|%T", False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--states=all", "--states=ALL"):
            all_states = True
        elif a == "-t":
            i += 1
            all_states = args[i].lower() == "all"
        elif a.startswith("--jobs="):
            want = set(a[7:].split(","))
        elif a.startswith("--name="):
            name = a[7:]
        elif a == "-o":
            i += 1
            fmt = args[i]
        i += 1
    now = time.time()
    with Table() as t:
        rows = [(jid, j) for jid, j in sorted(t["jobs"].items())
                if visible(j, now, all_states) and (want is None or jid in want or j["base"] in want)
                and (name is None or j["name"] == name)]
    if want is not None and not rows:
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        return 1
    for jid, j in rows:
        print(fmt.replace("%i", jid).replace("%T", j["state"]).replace("%F", j["base"]))
    return 0


def sacct(args):
    if transient("sacct"):
        sys.stderr.write("sacct: error: slurm_persist_conn_open: Connection timed out\n")
        return 1
    if os.environ.get("FAKE_SLURM_ACCT_DISABLED"):
        sys.stderr.write("Slurm accounting storage is disabled\n")
        return 1
    want = set(args[args.index("-j") + 1].split(",")) if "-j" in args else None
    name = [a[7:] for a in args if a.startswith("--name=")]
    with Table() as t:
        for jid, j in sorted(t["jobs"].items()):
            if want is not None and jid not in want and j["base"] not in want:
                continue
            if name and j["name"] != name[0]:
                continue
            if "-o" in args and args[args.index("-o") + 1] == "JobID":
                print(jid)
                continue
            if injected(j["name"], "FAKE_SLURM_NO_SACCT"):
                continue
            st = j["state"]
            if st == "OUT_OF_MEMORY":   # as older Slurm: the job FAILED, its step ran out of memory
                print("%s|FAILED|%s" % (jid, j["exit"]))
                print("%s.batch|OUT_OF_MEMORY|%s" % (jid, j["exit"]))
                continue
            if st == "CANCELLED":
                st = "CANCELLED by %d" % os.getuid()
            print("%s|%s|%s" % (jid, st, j["exit"]))
            if j["state"] in FINAL and j["pid"]:
                print("%s.batch|%s|%s" % (jid, j["state"], j["exit"]))
    return 0


def scancel(args):
    if transient("scancel"):
        sys.stderr.write("scancel: error: Kill job error: Unable to contact slurm controller (connect failure)\n")
        return 1
    kill = []
    with Table() as t:
        for a in args:
            for jid, j in t["jobs"].items():
                if (jid == a or j["base"] == a) and j["state"] not in FINAL:
                    j.update(state="CANCELLED", exit="0:15", end=time.time())
                    if j["pid"]:
                        kill.append(j["pid"])
    for pid in kill:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.time() + 2
    for pid in kill:
        while time.time() < end:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return 0


def main():
    if not D:
        sys.stderr.write("fake slurm: FAKE_SLURM_DIR is not set\n")
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    log_call(cmd, args)
    return {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel}[cmd](args)


if __name__ == "__main__":
    sys.exit(main())
