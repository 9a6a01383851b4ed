/* The run loop: compute keys in topological order, reuse cached results, run the rest in child
 * processes (at most -j at once, within the GPU and CPU-thread pools), commit their outputs
 * into the store (record last), publish user-facing outputs. */
#include "dag/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dag/explain.h"
#include "dag/key.h"

/* The one piece of process-wide state: set by SIGINT/SIGTERM, read by the loop. */
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
    int err_fd;         /* read end of the child's error pipe */
    char *staging, *work;
    int gpu;
    int threads;
    double t0;
} nstate;

static void ev(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ev(const char *fmt, ...) {
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
        if (!s->external) s->external = cJSON_CreateObject();
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
            ev("[fluke] input %s: %llu files, %llu hashed", inp->path,
               (unsigned long long)hs.files_seen, (unsigned long long)hs.files_hashed);
    }
    return 0;
}

static int compute_key(fl_session *s, nstate *ns, size_t i, fl_err *e) {
    if (ns[i].have_key) return 0;
    fl_digest *outs = calloc(s->plan.n + 1, sizeof *outs);
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

/* ------------------------------------------------------------------ child */

static void run_child(fl_session *s, nstate *ns, size_t i, int err_w) {
    fl_plan_node *n = s->plan.nodes[i];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* Lock descriptors of other stages must not outlive the parent's hold on them. */
    if (err_w > 3) close_range(3, (unsigned)err_w - 1, 0);
    close_range((unsigned)err_w + 1, ~0U, 0);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", ns[i].threads);
    setenv("OMP_NUM_THREADS", buf, 1);
    setenv("OPENBLAS_NUM_THREADS", buf, 1);
    if (ns[i].gpu >= 0) {
        snprintf(buf, sizeof buf, "%d", ns[i].gpu);
        setenv("CUDA_VISIBLE_DEVICES", buf, 1);
    }
    const char **paths = calloc(n->ninputs + 1, sizeof *paths);
    for (size_t k = 0; k < n->ninputs; k++)
        paths[k] = n->inputs[k].from_node
                       ? ns[fl_plan_find(&s->plan, n->inputs[k].from_node)->index].out_path
                       : n->inputs[k].path;
    fl_stage_ctx ctx = {.node = n,
                        .config = s->cfg.root,
                        .out_dir = ns[i].staging,
                        .work_dir = ns[i].work,
                        .input_paths = paths,
                        .threads = ns[i].threads,
                        .gpu = ns[i].gpu,
                        .t_start = fl_now(),
                        .out_fd = 1};
    fl_err e = {{0}};
    int rc = n->def->run(&ctx, &e);
    if (rc != 0) {
        if (!e.msg[0]) snprintf(e.msg, sizeof e.msg, "failed without a message");
        ssize_t w = write(err_w, e.msg, strlen(e.msg));
        (void)w;
        _exit(1);
    }
    _exit(0);
}

/* ------------------------------------------------------------------ parent */

typedef struct pools {
    int jobs, running;
    int threads_total, threads_used;
    int ngpus;
    unsigned char *gpu_busy;
} pools;

static int start_node(fl_session *s, nstate *ns, size_t i, pools *pl, int forced, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&ns[i].key, hex);
    if (ns[i].lock_fd < 0) {
        char lname[64];
        snprintf(lname, sizeof lname, "key-%s", hex);
        int fd = fl_store_lock(s->store, lname, 1, 0, e);
        if (fd == -2) { /* another fluke runs this stage now: wait, then reuse its result */
            if (ns[i].st != ST_WAITING) ev("[fluke] wait   %s (running in another fluke process)", n->id);
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
            ev("[fluke] note   record for %s damaged (%s): rerunning", n->id, e->msg);
        if (rc == 1) {
            char *path = fl_store_checkout(s->store, &tree, e);
            if (path) {
                ns[i].out = tree;
                ns[i].out_path = path;
                ns[i].st = ST_DONE;
                ns[i].cached = 1;
                fl_store_unlock(ns[i].lock_fd);
                ns[i].lock_fd = -1;
                ev("[fluke] cached %s", n->id);
                return 0;
            }
            ev("[fluke] note   %s: cached result unusable (%s); recomputing", n->id, e->msg);
            if (fl_store_record_drop(s->store, &ns[i].key, e)) return -1;
        }
    }
    /* Resources: wait for a GPU and for threads (a lone stage always gets to start). */
    int threads = n->threads > pl->threads_total ? pl->threads_total : n->threads;
    if (pl->running > 0 && pl->threads_used + threads > pl->threads_total) return 0;
    int gpu = -1;
    if (n->gpus > 0 && pl->ngpus > 0) {
        for (int g = 0; g < pl->ngpus && gpu < 0; g++)
            if (!pl->gpu_busy[g]) gpu = g;
        if (gpu < 0) return 0;
    }
    char *why = forced ? strdup("forced (--force)") : reason_line(s, ns, i);
    ns[i].staging = fl_store_staging_dir(s->store, n->id, e);
    ns[i].work = ns[i].staging ? fl_store_work_dir(s->store, &ns[i].key, e) : NULL;
    if (!ns[i].work) {
        free(why);
        return -1;
    }
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        free(why);
        return fl_errf(e, "pipe: %s", strerror(errno));
    }
    ns[i].gpu = gpu;
    ns[i].threads = threads;
    ns[i].t0 = fl_now();
    ev("[fluke] run    %s  (%s)", n->id, why);
    free(why);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return fl_errf(e, "fork: %s", strerror(errno));
    }
    if (pid == 0) run_child(s, ns, i, pfd[1]);
    close(pfd[1]);
    ns[i].pid = pid;
    ns[i].err_fd = pfd[0];
    ns[i].st = ST_RUNNING;
    pl->running++;
    pl->threads_used += threads;
    if (gpu >= 0) pl->gpu_busy[gpu] = 1;
    return 0;
}

static void release(nstate *ns, size_t i, pools *pl) {
    pl->running--;
    pl->threads_used -= ns[i].threads;
    if (ns[i].gpu >= 0) pl->gpu_busy[ns[i].gpu] = 0;
    if (ns[i].lock_fd >= 0) fl_store_unlock(ns[i].lock_fd);
    ns[i].lock_fd = -1;
    if (ns[i].err_fd >= 0) close(ns[i].err_fd);
    ns[i].err_fd = -1;
}

static int commit_node(fl_session *s, nstate *ns, size_t i, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    for (size_t k = 0; k < n->outputs.n; k++) {
        char *p = fl_strdupf("%s/%s", ns[i].staging, n->outputs.v[k]);
        struct stat st;
        int ok = lstat(p, &st) == 0;
        free(p);
        if (!ok)
            return fl_errf(e, "stage '%s' finished but did not write its declared output '%s'",
                           n->id, n->outputs.v[k]);
    }
    fl_digest tree;
    if (fl_store_ingest(s->store, ns[i].staging, &tree, e)) return -1;
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&tree, hex);
    cJSON_AddStringToObject(ns[i].desc, "output", hex);
    cJSON_AddNumberToObject(ns[i].desc, "seconds", fl_now() - ns[i].t0);
    cJSON_AddNumberToObject(ns[i].desc, "finished", (double)time(NULL));
    char *json = cJSON_PrintUnformatted(ns[i].desc);
    int rc = fl_store_record_put(s->store, &ns[i].key, &tree, json, e); /* the record is last */
    free(json);
    if (rc) return -1;
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
    default: return "a signal";
    }
}

/* A child exited: commit or report. Returns 0, or -1 with e set when the stage failed. */
static int reap(fl_session *s, nstate *ns, size_t i, int status, pools *pl, fl_err *e) {
    fl_plan_node *n = s->plan.nodes[i];
    char msg[FL_ERRLEN] = "";
    ssize_t r = read(ns[i].err_fd, msg, sizeof msg - 1);
    if (r > 0) msg[r] = '\0';
    int rc = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = commit_node(s, ns, i, e);
        if (rc == 0) {
            ns[i].st = ST_DONE;
            ev("[fluke] done   %s  %.2fs", n->id, fl_now() - ns[i].t0);
        } else {
            fl_errprefix(e, "committing '%s'", n->id);
        }
    } else if (WIFEXITED(status)) {
        rc = fl_errf(e, "stage '%s' failed: %s", n->id,
                     msg[0] ? msg : "exited with an error and no message");
    } else if (WIFSIGNALED(status)) {
        rc = fl_errf(e, "stage '%s' crashed (%s, signal %d)%s%s", n->id, signame(WTERMSIG(status)),
                     WTERMSIG(status), msg[0] ? ": " : "", msg);
    } else {
        rc = fl_errf(e, "stage '%s' ended abnormally", n->id);
    }
    if (rc != 0) {
        ns[i].st = ST_FAILED;
        ev("[fluke] failed %s: %s", n->id, e->msg);
        fl_err ignore;
        if (ns[i].staging) fl_remove_tree(ns[i].staging, &ignore); /* never cached, never kept */
    }
    release(ns, i, pl);
    return rc;
}

static int publish(fl_session *s, nstate *ns, fl_err *e) {
    int any = 0;
    for (size_t i = 0; i < s->plan.n; i++) {
        fl_plan_node *n = s->plan.nodes[i];
        if (ns[i].st != ST_DONE || n->publish.n == 0) continue;
        if (!any && fl_mkdirs(s->out_dir, e)) return -1;
        any = 1;
        for (size_t k = 0; k < n->publish.n; k++) {
            const char *rel = n->publish.v[k];
            const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
            char *src = fl_strdupf("%s/%s", ns[i].out_path, rel);
            char *dst = fl_strdupf("%s/%s", s->out_dir, base);
            int rc = fl_copy_file(src, dst, e);
            if (rc == 0) ev("[fluke] output %s", dst);
            free(src);
            free(dst);
            if (rc) return -1;
        }
    }
    return 0;
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
        if (ns[i].lock_fd >= 0) fl_store_unlock(ns[i].lock_fd);
        if (ns[i].err_fd >= 0) close(ns[i].err_fd);
    }
    free(ns);
}

static nstate *new_states(fl_session *s) {
    nstate *ns = calloc(s->plan.n + 1, sizeof *ns);
    for (size_t i = 0; i < s->plan.n; i++) {
        ns[i].in = calloc(s->plan.nodes[i]->ninputs + 1, sizeof *ns[i].in);
        ns[i].lock_fd = -1;
        ns[i].err_fd = -1;
        ns[i].gpu = -1;
    }
    return ns;
}

int fl_exec_run(fl_session *s, const fl_run_opts *o, fl_run_result *res, int *interrupted,
                fl_err *e) {
    memset(res, 0, sizeof *res);
    *interrupted = 0;
    size_t N = s->plan.n;
    unsigned char *sel = calloc(N + 1, 1);
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
        size_t hits = fl_session_select(s, o->force[k], m);
        free(m);
        if (!hits) {
            free(sel);
            return fl_errf(e, "--force %s: no such stage in %s", o->force[k], s->cfg.file);
        }
    }
    if (o->dry_run) {
        free(sel);
        return fl_exec_status(s, NULL, e) < 0 ? -1 : 0;
    }
    if (fl_session_store(s, e)) {
        free(sel);
        return -1;
    }
    int gc_fd = fl_store_lock(s->store, "gc", 0, 1, e);
    if (gc_fd < 0) {
        free(sel);
        return -1;
    }
    g_interrupted = 0;
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    pools pl = {.jobs = o->jobs < 1 ? 1 : o->jobs};
    const cJSON *th = fl_config_get(s->cfg.root, "resources.threads");
    const cJSON *gp = fl_config_get(s->cfg.root, "resources.gpus");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pl.threads_total = th ? (int)th->valuedouble : (int)(ncpu > 0 ? ncpu : 1);
    if (pl.threads_total < 1) pl.threads_total = 1;
    pl.ngpus = gp ? (int)gp->valuedouble : 0;
    pl.gpu_busy = calloc((size_t)pl.ngpus + 1, 1);

    nstate *ns = new_states(s);
    int rc = 0, failed = 0;
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
                int before = ns[i].st;
                if (compute_key(s, ns, i, e) || start_node(s, ns, i, &pl, forced_node(s, o, i), e)) {
                    ns[i].st = ST_FAILED;
                    ev("[fluke] failed %s: %s", s->plan.nodes[i]->id, e->msg);
                    failed = 1;
                    rc = -1;
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
        /* Reap finished children; block only when nothing else can make progress. */
        int status;
        pid_t pid = waitpid(-1, &status, (progress || waiting || pl.running == 0) ? WNOHANG : 0);
        if (pid > 0) {
            for (size_t i = 0; i < N; i++)
                if (ns[i].st == ST_RUNNING && ns[i].pid == pid) {
                    fl_err ce = {{0}};
                    if (reap(s, ns, i, status, &pl, &ce)) {
                        if (!failed) *e = ce;
                        failed = 1;
                        rc = -1;
                    }
                }
        } else if (!progress) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (g_interrupted) {
        *interrupted = 1;
        for (size_t i = 0; i < N; i++)
            if (ns[i].st == ST_RUNNING) kill(ns[i].pid, SIGTERM);
        for (size_t i = 0; i < N; i++)
            if (ns[i].st == ST_RUNNING) {
                int status;
                waitpid(ns[i].pid, &status, 0);
                fl_err ignore;
                fl_remove_tree(ns[i].staging, &ignore);
                release(ns, i, &pl);
                ns[i].st = ST_FAILED;
            }
        rc = fl_errf(e, "interrupted (%s)", g_interrupted == SIGINT ? "SIGINT" : "SIGTERM");
    }
    /* What finished is remembered even when something failed: status stays informative. */
    fl_digest *keys = calloc(N + 1, sizeof *keys);
    unsigned char *have = calloc(N + 1, 1);
    for (size_t i = 0; i < N; i++) {
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
    fl_err e2 = {{0}};
    if (fl_session_save_run(s, keys, have, &e2) || fl_store_statcache_save(s->store, &e2) ||
        (rc == 0 && publish(s, ns, &e2))) {
        if (rc == 0) *e = e2;
        rc = -1;
    }
    free(keys);
    free(have);
    ev("[fluke] %d stages: %d ran, %d cached, %d failed, %d skipped (%.1fs)",
       res->ran + res->cached + res->failed + res->skipped, res->ran, res->cached, res->failed,
       res->skipped, fl_now() - t0);
    free_states(s, ns);
    free(pl.gpu_busy);
    free(sel);
    fl_store_unlock(gc_fd);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
