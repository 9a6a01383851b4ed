/* The run loop: compute keys in topological order, reuse cached results, run the rest in child
 * processes (at most -j at once, within the GPU and CPU-thread pools), commit their outputs
 * into the store (record last), publish user-facing outputs. */
#include "dag/exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dag/exec_slurm.h"
#include "dag/explain.h"
#include "dag/key.h"
#include "dag/pools.h"
#include "dag/publish.h"
#include "dag/remote_hook.h"
#include "dag/runner.h"


/* The one piece of process-wide state: set by SIGINT/SIGTERM/SIGHUP, read by the loop. */
static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) { g_interrupted = sig; }

enum { ST_PENDING, ST_WAITING, ST_RUNNING, ST_DONE, ST_FAILED, ST_SKIPPED };

typedef struct nstate {
    int st;
    int cached;
    fl_digest *in;      /* input digests (parallel to node inputs) */
    int have_key;
    fl_digest key;
    cJSON *desc;
    fl_digest out;      /* output tree digest when done */
    char *out_path;     /* checkout of the outputs */
    int lock_fd;
    pid_t pid;
    int reaped;         /* waited for while stopping after an interrupt */
    int err_fd;         /* read end of the child's error pipe */
    char *staging, *work;
    int *gpus;          /* pool slots the running stage holds */
    int ngpus;
    int threads;
    double t0, t1;      /* started, ended (a failed one: for the run report) */
    char *err;          /* why it failed, or NULL */
    int remote_tried;   /* the remote cache was asked once (a node waiting for resources is not
                           asked again on every pass of the loop) */
} nstate;

void fl_exec_say(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(1, line, (size_t)n); /* one write per line: lines never interleave */
    (void)w;
}

int fl_exec_input_digests(fl_session *s, size_t i, const fl_digest *outs, fl_digest *in,
                          int quiet, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    for (size_t k = 0; k < n->ninputs; k++) {
        fl_plan_input *inp = &n->inputs[k];
        if (inp->from_node) {
            in[k] = outs[fl_plan_find(&s->plan, inp->from_node)->index];
            continue;
        }
        /* A path several stages declare is walked once per session. */
        if (!s->external && !(s->external = cJSON_CreateObject())) return fl_errf(e, "out of memory");
        const cJSON *known = cJSON_GetObjectItemCaseSensitive(s->external, inp->path);
        if (cJSON_IsString(known) && fl_digest_from_hex(known->valuestring, &in[k]) == 0) continue;
        struct stat st;
        if (stat(inp->path, &st) != 0)
            return fl_errf(e, "stage '%s': input '%s': %s does not exist", n->id, inp->name,
                           inp->path);
        fl_hash_stats hs = {0};
        if (fl_store_hash_external(s->store, inp->path, &in[k], &hs, e))
            return fl_errprefix(e, "stage '%s': input '%s'", n->id, inp->name);
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&in[k], hex);
        cJSON_AddStringToObject(s->external, inp->path, hex);
        if (S_ISDIR(st.st_mode) && !quiet)
            fl_exec_say("[fluke] input %s: %llu files, %llu hashed", inp->path,
               (unsigned long long)hs.files_seen, (unsigned long long)hs.files_hashed);
    }
    return 0;
}

static int compute_key(fl_session *s, nstate *ns, size_t i, fl_err *e) {
    if (ns[i].have_key) return 0;
    fl_digest *outs = calloc(s->plan.n + 1, sizeof *outs);
    if (!outs) return fl_errf(e, "out of memory");
    for (size_t k = 0; k < s->plan.n; k++) outs[k] = ns[k].out;
    int rc = fl_exec_input_digests(s, i, outs, ns[i].in, 0, e);
    free(outs);
    if (rc) return -1;
    if (fl_key_compute(s->plan.nodes[i], s->cfg.root, ns[i].in, &ns[i].key, &ns[i].desc, e))
        return -1;
    ns[i].have_key = 1;
    return 0;
}

static char *reason_line(fl_session *s, nstate *ns, size_t i) {
    fl_reasons r;
    fl_explain_diff(fl_session_prev(s, s->plan.nodes[i]->id), ns[i].desc, &r);
    char *line = NULL;
    for (size_t k = 0; k < r.n; k++) {
        char *t = fl_reason_text(&r.v[k]);
        char *nl = fl_strdupf("%s%s%s", line ? line : "", line ? "; " : "", t);
        free(t);
        free(line);
        line = nl;
    }
    fl_reasons_free(&r);
    return line ? line : strdup("");
}

/* ------------------------------------------------------------------ parent */

/* Errors keep the first message and its kind (the exit code depends on it). */
typedef struct run_err {
    fl_err *e;
    int kind, set;
} run_err;

static int fail_kind(run_err *re, int kind, const fl_err *ce) {
    if (!re->set) {
        *re->e = *ce;
        re->kind = kind;
        re->set = 1;
    }
    return -1;
}

static int spawn(fl_session *s, nstate *ns, size_t i, const fl_pools *pl, fl_slurm *x, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    const char **paths = calloc(n->ninputs + 1, sizeof *paths);
    char *gl = fl_pools_gpu_list(pl, ns[i].gpus, ns[i].ngpus);
    if (!paths || !gl) {
        free(paths);
        free(gl);
        return fl_errf(e, "out of memory");
    }
    for (size_t k = 0; k < n->ninputs; k++)
        paths[k] = n->inputs[k].from_node
                       ? ns[fl_plan_find(&s->plan, n->inputs[k].from_node)->index].out_path
                       : n->inputs[k].path;
    fl_stage_spec sp = {.program = s->reg->program,
                        .config = s->cfg.root,
                        .config_dir = s->cfg.dir,
                        .node_id = n->id,
                        .out_dir = ns[i].staging,
                        .work_dir = ns[i].work,
                        .input_paths = paths,
                        .ninputs = n->ninputs,
                        .threads = ns[i].threads,
                        .gpu_list = x ? "" : gl, /* Slurm: the GPUs the job gets */
                        .ngpus = x ? n->gpus : ns[i].ngpus};
    int rc;
    if (x) { /* the Slurm executor: one job running the same stage entry point */
        fl_slurm_stage st = {.node = i, .stage_name = n->def->name, .spec = &sp};
        rc = fl_slurm_submit(x, &st, e);
    } else {
        rc = fl_runner_spawn(&sp, &ns[i].pid, &ns[i].err_fd, e);
    }
    free(paths);
    free(gl);
    return rc;
}

/* Starts node i, or finds it cached, or leaves it pending while resources are busy. -1 with
 * *kind set (FL_RUN_ERR_*) on error. */
static int start_node(fl_session *s, nstate *ns, size_t i, fl_pools *pl, int forced, fl_slurm *x,
                      int *kind, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&ns[i].key, hex);
    *kind = FL_RUN_ERR_STORE;
    if (ns[i].lock_fd < 0) {
        char lname[64];
        snprintf(lname, sizeof lname, "key-%s", hex);
        int fd = fl_store_lock(s->store, lname, 1, 0, e);
        if (fd == -2) { /* another fluke runs this stage now: wait, then reuse its result */
            if (ns[i].st != ST_WAITING) fl_exec_say("[fluke] wait   %s (running in another fluke process)", n->id);
            ns[i].st = ST_WAITING;
            return 0;
        }
        if (fd < 0) return -1;
        ns[i].lock_fd = fd;
    }
    if (!forced) {
        fl_digest tree;
        int rc = fl_store_record_get(s->store, &ns[i].key, &tree, NULL, e);
        if (rc < 0) return -1;
        if (rc == FL_RECORD_DAMAGED)
            fl_exec_say("[fluke] note   record for %s damaged (%s): rerunning", n->id, e->msg);
        int remote_hit = 0; /* no usable local record: perhaps the remote cache has it */
        if ((rc == FL_RECORD_ABSENT || rc == FL_RECORD_DAMAGED) && !ns[i].remote_tried) {
            ns[i].remote_tried = 1;
            if ((remote_hit = fl_remote_hook_pull(s, n->id, &ns[i].key, &tree, e)) < 0) return -1;
        }
        if (remote_hit) rc = 1;
        if (rc == 1) {
            char *path = fl_store_checkout(s->store, &tree, e);
            if (path) {
                ns[i].out = tree;
                ns[i].out_path = path;
                ns[i].st = ST_DONE;
                ns[i].cached = 1;
                fl_store_unlock(ns[i].lock_fd);
                ns[i].lock_fd = -1;
                if (remote_hit) fl_exec_say("[fluke] cached %s  (remote hit)", n->id);
                else fl_exec_say("[fluke] cached %s", n->id);
                return 0;
            }
            fl_exec_say("[fluke] note   %s: cached result unusable (%s); recomputing", n->id, e->msg);
            if (fl_store_record_drop(s->store, &ns[i].key, e)) return -1;
        }
    }
    /* Resources: wait for GPUs and for threads (a lone stage always gets to start). With Slurm
     * the cluster, not this host, has the CPUs and GPUs: only -j limits. */
    int threads = n->threads > pl->threads_total && !x ? pl->threads_total : n->threads;
    if (!x && pl->running > 0 && pl->threads_used + threads > pl->threads_total) return 0;
    int need = x ? 0 : n->gpus, nfree = 0;
    if (need > pl->ngpus) { /* fl_exec_run checked the plan; never run a GPU stage without one */
        *kind = FL_RUN_ERR_USAGE;
        return fl_errf(e, "stage '%s' needs %d GPU(s), the config has %d", n->id, need, pl->ngpus);
    }
    for (int g = 0; g < pl->ngpus; g++) nfree += !pl->gpu_busy[g];
    if (nfree < need) return 0;
    /* A forced stage starts from scratch: no checkpoint of an earlier (crashed) run. The key is
     * noted first, so gc keeps its work dir even when this process is killed. */
    if (forced && fl_store_work_dir_remove(s->store, &ns[i].key, e)) return -1;
    if (fl_session_note_started(s, n->id, &ns[i].key, e)) return -1;
    ns[i].staging = fl_store_staging_dir(s->store, n->id, e);
    ns[i].work = ns[i].staging ? fl_store_work_dir(s->store, &ns[i].key, e) : NULL;
    if (!ns[i].work) return -1;
    free(ns[i].gpus);
    ns[i].gpus = calloc((size_t)need + 1, sizeof *ns[i].gpus);
    if (!ns[i].gpus) return fl_errf(e, "out of memory");
    ns[i].ngpus = 0;
    for (int g = 0; g < pl->ngpus && ns[i].ngpus < need; g++)
        if (!pl->gpu_busy[g]) ns[i].gpus[ns[i].ngpus++] = g;
    ns[i].threads = threads;
    ns[i].t0 = fl_now();
    char *why = forced ? strdup("forced (--force): from scratch") : reason_line(s, ns, i);
    fl_exec_say("[fluke] run    %s  (%s)", n->id, why ? why : "");
    free(why);
    *kind = FL_RUN_ERR_STAGE;
    if (spawn(s, ns, i, pl, x, e)) return -1;
    ns[i].st = ST_RUNNING;
    pl->running++;
    pl->threads_used += threads;
    for (int k = 0; k < ns[i].ngpus; k++) pl->gpu_busy[ns[i].gpus[k]] = 1;
    return 0;
}

static void release(nstate *ns, size_t i, fl_pools *pl) {
    pl->running--;
    pl->threads_used -= ns[i].threads;
    for (int k = 0; k < ns[i].ngpus; k++) pl->gpu_busy[ns[i].gpus[k]] = 0;
    ns[i].ngpus = 0;
    if (ns[i].lock_fd >= 0) fl_store_unlock(ns[i].lock_fd);
    ns[i].lock_fd = -1;
    if (ns[i].err_fd >= 0) close(ns[i].err_fd);
    ns[i].err_fd = -1;
}

/* The stage's own mistakes in its outputs (a symlink, a FIFO) are its failure, not the store's:
 * checked before the commit, so any error after this point is a store write error. */
static int check_outputs(const char *id, const char *dir, fl_err *e) {
    DIR *d = opendir(dir);
    if (!d) return fl_errf(e, "stage '%s': cannot open its output %s: %s", id, dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        struct stat st;
        if (!p) rc = fl_errf(e, "out of memory");
        else if (lstat(p, &st) != 0) rc = fl_errf(e, "stage '%s': cannot stat %s: %s", id, p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = check_outputs(id, p, e);
        else if (!S_ISREG(st.st_mode))
            rc = fl_errf(e, "stage '%s' wrote %s, which is not a regular file (symlinks, devices "
                            "and FIFOs cannot be stored)", id, p);
        free(p);
    }
    closedir(d);
    return rc;
}

/* -1 with *kind: FL_RUN_ERR_STAGE when the outputs are wrong, FL_RUN_ERR_STORE when storing
 * them failed (disk full: exit 3). */
static int commit_node(fl_session *s, nstate *ns, size_t i, int *kind, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    *kind = FL_RUN_ERR_STAGE;
    for (size_t k = 0; k < n->outputs.n; k++) {
        char *p = fl_strdupf("%s/%s", ns[i].staging, n->outputs.v[k]);
        struct stat st;
        int ok = p && lstat(p, &st) == 0;
        free(p);
        if (!ok)
            return fl_errf(e, "stage '%s' finished but did not write its declared output '%s'",
                           n->id, n->outputs.v[k]);
    }
    if (check_outputs(n->id, ns[i].staging, e)) return -1;
    *kind = FL_RUN_ERR_STORE;
    fl_digest tree;
    if (fl_store_ingest(s->store, ns[i].staging, &tree, e)) return -1;
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&tree, hex);
    cJSON_AddStringToObject(ns[i].desc, "output", hex);
    cJSON_AddNumberToObject(ns[i].desc, "seconds", fl_now() - ns[i].t0);
    cJSON_AddNumberToObject(ns[i].desc, "finished", (double)time(NULL));
    char *json = cJSON_PrintUnformatted(ns[i].desc);
    if (!json) return fl_errf(e, "out of memory");
    int rc = fl_store_record_put(s->store, &ns[i].key, &tree, json, e); /* the record is last */
    free(json);
    if (rc) return -1;
    fl_remote_hook_push(s, n->id, &ns[i].key); /* /cas/ objects, then /ac/<key>; never fails */
    fl_err ignore;
    fl_store_work_dir_remove(s->store, &ns[i].key, &ignore);
    fl_remove_tree(ns[i].staging, &ignore);
    ns[i].out = tree;
    ns[i].out_path = fl_store_checkout(s->store, &tree, e);
    return ns[i].out_path ? 0 : -1;
}

static const char *signame(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}

/* A stage ended (failure: NULL when it succeeded, else the whole message): commit or report.
 * Returns 0, or -1 with e and *kind set when it failed. */
static int finish_node(fl_session *s, nstate *ns, size_t i, const char *failure, fl_pools *pl,
                       int *kind, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    int rc = 0;
    *kind = FL_RUN_ERR_STAGE;
    if (!failure) {
        rc = commit_node(s, ns, i, kind, e);
        if (rc == 0) {
            ns[i].st = ST_DONE;
            fl_exec_say("[fluke] done   %s  %.2fs", n->id, fl_now() - ns[i].t0);
        } else {
            fl_errprefix(e, "committing '%s'", n->id);
        }
    } else {
        rc = fl_errf(e, "%s", failure);
    }
    if (rc != 0) {
        ns[i].st = ST_FAILED;
        ns[i].t1 = fl_now();
        free(ns[i].err);
        ns[i].err = strdup(e->msg);
        fl_exec_say("[fluke] failed %s: %s", n->id, e->msg);
        fl_err ignore;
        if (ns[i].staging) fl_remove_tree(ns[i].staging, &ignore); /* never cached, never kept */
    }
    release(ns, i, pl);
    return rc;
}

/* A child exited: its status and error pipe say how. */
static int reap(fl_session *s, nstate *ns, size_t i, int status, fl_pools *pl, int *kind, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    char msg[FL_ERRLEN] = "", why[FL_ERRLEN + 128];
    ssize_t r = read(ns[i].err_fd, msg, sizeof msg - 1);
    if (r > 0) msg[r] = '\0';
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return finish_node(s, ns, i, NULL, pl, kind, e);
    if (WIFEXITED(status))
        snprintf(why, sizeof why, "stage '%s' failed: %s", n->id,
                 msg[0] ? msg : "exited with an error and no message");
    else if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "stage '%s' crashed (%s, signal %d)%s%s", n->id,
                 signame(WTERMSIG(status)), WTERMSIG(status), msg[0] ? ": " : "", msg);
    else
        snprintf(why, sizeof why, "stage '%s' ended abnormally", n->id);
    return finish_node(s, ns, i, why, pl, kind, e);
}

/* out/<name> is fluke's own folder: a symlink there (to a user's folder) is refused rather than
 * written through, so publishing never replaces a file outside it. */
static int out_dir_owned(const char *dir, fl_err *e) {
    struct stat st;
    char d[4096];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; /* "out/p/" names the link itself, not its target */
    snprintf(d, sizeof d, "%.*s", (int)n, dir);
    if (lstat(d, &st) != 0) return fl_errf(e, "cannot publish to %s: %s", d, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return fl_errf(e,
                       "not publishing to %s: it is a symbolic link, and fluke writes only into a "
                       "folder of its own there (remove the link or set out_dir)",
                       d);
    return 0;
}

/* Whether dir resolves into the store through a link: the session compared the paths before the
 * store existed; now both can be resolved (dir up to its deepest existing folder, so nothing is
 * created inside the store before refusing). */
static int out_dir_in_store(const char *dir, const char *store, fl_err *e) {
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    char *rd = NULL, *rs = realpath(store, NULL);
    for (;;) {
        if ((rd = realpath(d, NULL)) || errno != ENOENT) break;
        char *sl = strrchr(d, '/');
        if (!sl || sl == d) break;
        *sl = '\0';
    }
    size_t l = rs ? strlen(rs) : 0;
    int inside = rd && rs && !strncmp(rd, rs, l) && (rd[l] == '\0' || rd[l] == '/');
    free(rd);
    free(rs);
    return inside ? fl_errf(e, "not publishing to %s: it is inside the store %s", dir, store) : 0;
}

static int publish(fl_session *s, nstate *ns, int *kind, fl_err *e) {
    int any = 0;
    *kind = FL_RUN_ERR_STAGE;
    for (size_t i = 0; i < s->plan.n; i++) {
        fl_plan_node *n = s->plan.nodes[i];
        if (ns[i].st != ST_DONE || n->publish.n == 0) continue;
        if (!any && (out_dir_in_store(s->out_dir, s->store_path, e) || fl_mkdirs(s->out_dir, e) ||
                     out_dir_owned(s->out_dir, e))) return -1;
        any = 1;
        for (size_t k = 0; k < n->publish.n; k++) {
            const char *rel = n->publish.v[k];
            const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
            char *dst = fl_strdupf("%s/%s", s->out_dir, base);
            if (!dst) return fl_errf(e, "out of memory");
            fl_publish_item it = {.node_id = n->id,
                                  .key = &ns[i].key,
                                  .tree = &ns[i].out,
                                  .checkout = ns[i].out_path,
                                  .rel = rel,
                                  .dst = dst};
            int rc = fl_publish_file(s->store, &it, kind, e);
            if (rc == 0) fl_exec_say("[fluke] output %s", dst);
            free(dst);
            if (rc) return -1;
        }
    }
    return 0;
}

/* On an interrupt: SIGTERM (and SIGCONT, so a stopped stage sees it) to every running stage,
 * then SIGKILL to those still there after the grace period: a stage that ignores SIGTERM or is
 * stopped must not keep the interrupted run (and its store locks) alive. Reaps them all. */
#define STOP_GRACE_MS 5000
static void stop_children(nstate *ns, size_t n) {
    size_t left = 0;
    for (size_t i = 0; i < n; i++)
        if (ns[i].st == ST_RUNNING) {
            kill(ns[i].pid, SIGTERM);
            kill(ns[i].pid, SIGCONT);
            ns[i].reaped = 0;
            left++;
        }
    double t_end = fl_now() + STOP_GRACE_MS / 1000.0;
    int killed = 0;
    while (left) {
        for (size_t i = 0; i < n; i++) {
            int status;
            if (ns[i].st != ST_RUNNING || ns[i].reaped) continue;
            pid_t r = waitpid(ns[i].pid, &status, WNOHANG);
            if (r == ns[i].pid || (r < 0 && errno == ECHILD)) {
                ns[i].reaped = 1;
                left--;
            }
        }
        if (!left) break;
        if (!killed && fl_now() >= t_end) {
            for (size_t i = 0; i < n; i++)
                if (ns[i].st == ST_RUNNING && !ns[i].reaped) kill(ns[i].pid, SIGKILL);
            killed = 1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int forced_node(const fl_session *s, const fl_run_opts *o, size_t i) {
    const fl_plan_node *n = s->plan.nodes[i];
    for (size_t k = 0; k < o->nforce; k++)
        if (!strcmp(o->force[k], n->id) || !strcmp(o->force[k], n->def->name)) return 1;
    return 0;
}

static void free_states(fl_session *s, nstate *ns) {
    for (size_t i = 0; i < s->plan.n; i++) {
        free(ns[i].in);
        cJSON_Delete(ns[i].desc);
        free(ns[i].out_path);
        free(ns[i].staging);
        free(ns[i].work);
        free(ns[i].gpus);
        free(ns[i].err);
        if (ns[i].lock_fd >= 0) fl_store_unlock(ns[i].lock_fd);
        if (ns[i].err_fd >= 0) close(ns[i].err_fd);
    }
    free(ns);
}

static nstate *new_states(fl_session *s) {
    nstate *ns = calloc(s->plan.n + 1, sizeof *ns);
    if (!ns) return NULL;
    for (size_t i = 0; i < s->plan.n; i++) {
        ns[i].lock_fd = -1;
        ns[i].err_fd = -1;
        if (!(ns[i].in = calloc(s->plan.nodes[i]->ninputs + 1, sizeof *ns[i].in))) {
            s->plan.n = i; /* free only what was made */
            free_states(s, ns);
            return NULL;
        }
    }
    return ns;
}

/* --executor, else executor.kind, else local: 1 for slurm, 0 local, -1 with e on a bad name. */
static int use_slurm(const fl_session *s, const fl_run_opts *o, fl_err *e) {
    const cJSON *k = fl_config_get(s->cfg.root, "executor.kind");
    const char *kind = o->executor ? o->executor : cJSON_IsString(k) ? k->valuestring : "local";
    if (!strcmp(kind, "local")) return 0;
    if (!strcmp(kind, "slurm")) return 1;
    if (o->executor) return fl_errf(e, "--executor %s: expected local or slurm", kind);
    char where[4200];
    return fl_errf(e, "%s: executor.kind is '%s': expected \"local\" or \"slurm\"",
                   fl_config_where(&s->cfg, "executor.kind", where, sizeof where), kind);
}

/* Fills the caller's per-node report (res->nodes) before the run's record replaces the
 * previous one, which the reasons are computed against. */
static void note_nodes(fl_session *s, nstate *ns, const fl_run_opts *o, fl_run_node *out) {
    for (size_t i = 0; out && i < s->plan.n; i++) {
        fl_run_node *r = &out[i];
        memset(r, 0, sizeof *r);
        r->have_key = ns[i].have_key;
        r->key = ns[i].key;
        int ran = ns[i].t0 > 0;
        r->state = ns[i].st == ST_DONE      ? (ns[i].cached ? FL_NODE_CACHED : FL_NODE_RAN)
                   : ns[i].st == ST_FAILED  ? FL_NODE_FAILED
                   : ns[i].st == ST_SKIPPED ? FL_NODE_SKIPPED
                                            : FL_NODE_NOT_RUN;
        if (r->state == FL_NODE_RAN || (r->state == FL_NODE_FAILED && ran)) {
            double t1 = ns[i].t1 > 0 ? ns[i].t1 : fl_now();
            const cJSON *sec = cJSON_GetObjectItemCaseSensitive(ns[i].desc, "seconds");
            r->seconds = cJSON_IsNumber(sec) ? sec->valuedouble : t1 - ns[i].t0;
        }
        if ((r->state == FL_NODE_RAN || r->state == FL_NODE_FAILED) && ns[i].desc) {
            char *why = forced_node(s, o, i) ? strdup("forced (--force): from scratch")
                                             : reason_line(s, ns, i);
            snprintf(r->why, sizeof r->why, "%s", why ? why : "");
            free(why);
        }
        if (ns[i].err) snprintf(r->error, sizeof r->error, "%s", ns[i].err);
    }
}

int fl_exec_out_dir_ready(fl_session *s, fl_err *e) {
    if (fl_session_store(s, e) || out_dir_in_store(s->out_dir, s->store_path, e) ||
        fl_mkdirs(s->out_dir, e) || out_dir_owned(s->out_dir, e))
        return -1;
    return 0;
}

/* The registry's preflight asks which selected stages would really run: a cached (or
 * remote-cached) stage needs nothing of this machine, a --force-d one runs whatever the store
 * holds. */
typedef struct preflight_ctx {
    fl_session *s;
    const fl_run_opts *o;
} preflight_ctx;

static int would_run(const fl_preflight *pf, unsigned char *will, fl_err *e) {
    const preflight_ctx *px = pf->ctx;
    fl_session *s = px->s;
    size_t N = s->plan.n;
    if (fl_exec_cached_nodes(s, will, e)) return -1;
    /* forget the external digests it took quietly: the run walks them again (the stat cache
     * makes that cheap) and reports each folder as it always does */
    cJSON_Delete(s->external);
    s->external = NULL;
    for (size_t i = 0; i < N; i++) {
        int forced = 0;
        for (size_t k = 0; k < px->o->nforce && !forced; k++) {
            unsigned char *m = calloc(N + 1, 1);
            if (!m) return fl_errf(e, "out of memory");
            forced = fl_session_select(s, px->o->force[k], m) && m[i];
            free(m);
        }
        will[i] = pf->sel[i] && (!will[i] || forced);
    }
    return 0;
}

int fl_exec_run(fl_session *s, const fl_run_opts *o, fl_run_result *res, int *interrupted,
                fl_err *e) {
    fl_run_node *nodes_out = res->nodes;
    memset(res, 0, sizeof *res);
    res->nodes = nodes_out;
    *interrupted = 0;
    res->error_kind = FL_RUN_ERR_USAGE;
    size_t N = s->plan.n;
    unsigned char *sel = calloc(N + 1, 1);
    if (!sel) return fl_errf(e, "out of memory");
    if (o->until) {
        if (!fl_session_select(s, o->until, sel)) {
            free(sel);
            return fl_errf(e, "--until %s: no such stage in %s", o->until, s->cfg.file);
        }
        fl_session_close_upstream(s, sel);
    } else {
        memset(sel, 1, N);
    }
    for (size_t k = 0; k < o->nforce; k++) {
        unsigned char *m = calloc(N + 1, 1);
        size_t hits = m ? fl_session_select(s, o->force[k], m) : 0;
        free(m);
        if (!hits) {
            free(sel);
            return fl_errf(e, "--force %s: no such stage in %s", o->force[k], s->cfg.file);
        }
    }
    int slurm = use_slurm(s, o, e);
    const cJSON *mj = fl_config_get(s->cfg.root, "executor.slurm.max_jobs");
    fl_pools pl = {.jobs = o->jobs >= 1 ? o->jobs : slurm == 1 ? (mj ? (int)mj->valuedouble : 64) : 1};
    /* With Slurm the GPUs are the cluster's: no stage's need is checked against this host's. */
    unsigned char *none = slurm == 1 ? calloc(N + 1, 1) : NULL;
    if (slurm < 0 || (slurm && !none) || fl_pools_make(s, slurm ? none : sel, &pl, e)) {
        if (slurm > 0 && !none) fl_errf(e, "out of memory");
        free(none);
        fl_pools_free(&pl);
        free(sel);
        return -1;
    }
    free(none);
    if (o->dry_run) {
        fl_pools_free(&pl);
        free(sel);
        return fl_exec_status(s, NULL, e) < 0 ? -1 : 0;
    }
    if (s->reg->preflight) {
        preflight_ctx px = {s, o};
        fl_preflight pf = {.config = s->cfg.root, .config_file = s->cfg.file, .plan = &s->plan,
                           .sel = sel, .force_cpu = o->force_cpu, .would_run = would_run, .ctx = &px};
        if (s->reg->preflight(&pf, e)) {
            res->error_kind = FL_RUN_ERR_USAGE;
            fl_pools_free(&pl);
            free(sel);
            return -1;
        }
    }
    res->error_kind = FL_RUN_ERR_STORE;
    int gc_fd = fl_session_store(s, e) ? -1 : fl_store_lock(s->store, "gc", 0, 0, e);
    if (gc_fd == -2) { /* a gc or verify holds the store: say so rather than hang silently */
        fl_exec_say("[fluke] waiting for a gc or verify of the store at %s to finish", fl_store_root(s->store));
        gc_fd = fl_store_lock(s->store, "gc", 0, 1, e);
    }
    nstate *ns = gc_fd < 0 ? NULL : new_states(s);
    fl_slurm *x = NULL;
    if (!ns || (slurm && fl_slurm_open(&x, s->cfg.root, s->cfg.file, s->cfg.name, s->store,
                                       &g_interrupted, e))) {
        if (gc_fd >= 0) {
            if (!ns) fl_errf(e, "out of memory");
            fl_store_unlock(gc_fd);
        }
        if (ns) free_states(s, ns);
        fl_pools_free(&pl);
        free(sel);
        return -1;
    }
    if (x) fl_exec_say("[fluke] slurm  run %s: stages as Slurm jobs, polled every %g s", fl_slurm_run_id(x),
              fl_config_get(s->cfg.root, "executor.slurm.poll_s")
                  ? fl_config_get(s->cfg.root, "executor.slurm.poll_s")->valuedouble : 10.0);
    res->error_kind = FL_RUN_ERR_STAGE;
    g_interrupted = 0;
    struct sigaction sa = {0}, old_int, old_term, old_hup;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup); /* a closed terminal: stop as cleanly as on Ctrl-C */

    run_err re = {.e = e};
    int failed = 0;
    double t0 = fl_now();
    for (;;) {
        if (g_interrupted) break;
        int progress = 0, waiting = 0, remaining = 0;
        for (size_t k = 0; k < N; k++) {
            size_t i = s->order[k];
            if (!sel[i]) continue;
            if (ns[i].st == ST_PENDING || ns[i].st == ST_WAITING) {
                int ready = 1;
                for (size_t j = 0; j < s->ndeps[i]; j++) {
                    int d = ns[s->deps[i][j]].st;
                    if (d == ST_FAILED || d == ST_SKIPPED) {
                        ns[i].st = ST_SKIPPED;
                        ready = 0;
                        break;
                    }
                    if (d != ST_DONE) ready = 0;
                }
                if (ns[i].st == ST_SKIPPED) {
                    progress = 1;
                    continue;
                }
                remaining++;
                if (!ready || failed || pl.running >= pl.jobs) continue;
                int before = ns[i].st, kind = FL_RUN_ERR_STAGE;
                fl_err ce = {{0}};
                if (compute_key(s, ns, i, &ce) ||
                    start_node(s, ns, i, &pl, forced_node(s, o, i), x, &kind, &ce)) {
                    ns[i].st = ST_FAILED;
                    free(ns[i].err);
                    ns[i].err = strdup(ce.msg);
                    fl_exec_say("[fluke] failed %s: %s", s->plan.nodes[i]->id, ce.msg);
                    fl_err ignore;
                    if (ns[i].staging) fl_remove_tree(ns[i].staging, &ignore);
                    fail_kind(&re, kind, &ce);
                    failed = 1;
                    progress = 1;
                    continue;
                }
                if (ns[i].st != before || ns[i].st == ST_DONE) progress = 1;
                if (ns[i].st == ST_WAITING) waiting = 1;
            }
        }
        if (pl.running == 0 && (remaining == 0 || (failed && !waiting))) {
            if (remaining == 0 || failed) break;
        }
        if (pl.running == 0 && !progress && !waiting) {
            /* nothing runs, nothing can start: everything left is blocked on a failure */
            break;
        }
        if (x) { /* Slurm: submit what became ready, poll (blocking when idle), commit what ended */
            fl_slurm_flush(x);
            fl_slurm_wait(x, !progress && !waiting);
            size_t i;
            char msg[FL_ERRLEN];
            while (fl_slurm_next(x, &i, msg, sizeof msg)) {
                fl_err ce = {{0}};
                int kind = FL_RUN_ERR_STAGE;
                if (ns[i].st == ST_RUNNING &&
                    finish_node(s, ns, i, msg[0] ? msg : NULL, &pl, &kind, &ce)) {
                    fail_kind(&re, kind, &ce);
                    failed = 1;
                }
            }
            if (waiting && !progress) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        /* Reap finished children; block only when nothing else can make progress. */
        int status;
        pid_t pid = waitpid(-1, &status, (progress || waiting || pl.running == 0) ? WNOHANG : 0);
        if (pid > 0) {
            for (size_t i = 0; i < N; i++)
                if (ns[i].st == ST_RUNNING && ns[i].pid == pid) {
                    fl_err ce = {{0}};
                    int kind = FL_RUN_ERR_STAGE;
                    if (reap(s, ns, i, status, &pl, &kind, &ce)) {
                        fail_kind(&re, kind, &ce);
                        failed = 1;
                    }
                }
        } else if (!progress) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (g_interrupted) {
        *interrupted = 1;
        if (x) fl_slurm_cancel(x);
        else stop_children(ns, N);
        for (size_t i = 0; i < N; i++)
            if (ns[i].st == ST_RUNNING) {
                fl_err ignore;
                fl_remove_tree(ns[i].staging, &ignore);
                release(ns, i, &pl);
                ns[i].st = ST_FAILED;
                ns[i].t1 = fl_now();
                free(ns[i].err);
                ns[i].err = strdup("interrupted");
            }
        re.set = 0; /* the interrupt is what this run reports */
        fl_err ie;
        fl_errf(&ie, "interrupted (%s)", signame(g_interrupted));
        fail_kind(&re, FL_RUN_ERR_STAGE, &ie);
    }
    /* What finished is remembered even when something failed: status stays informative. */
    fl_digest *keys = calloc(N + 1, sizeof *keys);
    unsigned char *have = calloc(N + 1, 1);
    if (!keys || !have) {
        fl_err oe;
        fl_errf(&oe, "out of memory");
        fail_kind(&re, FL_RUN_ERR_STAGE, &oe);
    }
    for (size_t i = 0; keys && have && i < N; i++) {
        if (ns[i].st == ST_DONE) {
            keys[i] = ns[i].key;
            have[i] = 1;
            if (ns[i].cached)
                res->cached++;
            else
                res->ran++;
        } else if (ns[i].st == ST_FAILED) {
            res->failed++;
        } else if (sel[i]) {
            res->skipped++;
        }
    }
    note_nodes(s, ns, o, res->nodes);
    fl_err e2 = {{0}};
    if (keys && have && (fl_session_save_run(s, keys, have, &e2) || fl_store_statcache_save(s->store, &e2)))
        fail_kind(&re, FL_RUN_ERR_STORE, &e2);
    int pkind = FL_RUN_ERR_STAGE;
    if (!re.set && publish(s, ns, &pkind, &e2)) fail_kind(&re, pkind, &e2);
    free(keys);
    free(have);
    fl_exec_say("[fluke] %d stages: %d ran, %d cached, %d failed, %d skipped (%.1fs)",
       res->ran + res->cached + res->failed + res->skipped, res->ran, res->cached, res->failed,
       res->skipped, fl_now() - t0);
    fl_remote_hook_summary(s);
    free_states(s, ns);
    fl_slurm_close(x);
    fl_pools_free(&pl);
    free(sel);
    fl_store_unlock(gc_fd);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    res->error_kind = re.kind;
    return re.set ? -1 : 0;
}
