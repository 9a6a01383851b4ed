/* The Slurm executor's parent side: job files, sbatch, batched squeue/sacct polling, exit files,
 * classification, scancel (see exec_slurm.h). The job side is dag/slurm_job.c. */
#include "dag/exec_slurm.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dag/exec.h"

#include "dag/config.h"
#include "dag/slurm_cmd.h"

/* Consecutive polls without an answer from the controller (each already retried with backoff)
 * before the run gives its jobs up as lost. */
#define MAX_FAILED_POLLS 10
/* After scancel: how long to wait for the jobs to leave the queue. */
#define CANCEL_WAIT_S 30.0
/* Per-command time limit: a hung client counts as a transient failure. */
#define CMD_LIMIT_S 120.0

enum { J_QUEUED, J_LIVE, J_DONE };

typedef struct sjob {
    size_t node;
    char *node_id, *stage, *prefix, *work_dir; /* prefix: <run dir>/<node>, + .spec.json, .exit */
    int threads, gpus;
    int phase;
    int group;          /* the sbatch (script number) it went with */
    char id[64];        /* "123", or "123_4" for task 4 of array job 123 */
    double gone_since;  /* when it was first found finished without its exit file */
} sjob;

typedef struct sevent {
    size_t node;
    char *msg;
} sevent;

struct fl_slurm {
    char *dir, *run_id, *exe, *cfg_name;
    const char *partition, *account, *time, *mem;
    const cJSON *extra;
    double poll_s, min_poll_s, exit_wait_s;
    int array;
    fl_slurm_retry retry;
    volatile sig_atomic_t *stop;
    sjob *jobs;
    size_t njobs, cap;
    sevent *ev;
    size_t nev, evcap, evhead;
    double next_poll;
    int failed_polls;
    int nscripts;
};

static const char *cfg_str(const cJSON *c, const char *path) {
    const cJSON *j = fl_config_get(c, path);
    return cJSON_IsString(j) && j->valuestring[0] ? j->valuestring : NULL;
}

static double cfg_num(const cJSON *c, const char *path, double dflt) {
    const cJSON *j = fl_config_get(c, path);
    return cJSON_IsNumber(j) ? j->valuedouble : dflt;
}

/* [A-Za-z0-9._-] only: job names and file names. */
static void clean_name(char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            *s = '_';
}

int fl_slurm_open(fl_slurm **out, const cJSON *config, const char *file, const char *config_name,
                  fl_store *store, volatile sig_atomic_t *stop, fl_err *e) {
    *out = NULL;
    fl_slurm *x = calloc(1, sizeof *x);
    if (!x) return fl_errf(e, "out of memory");
    x->stop = stop;
    x->partition = cfg_str(config, "executor.slurm.partition");
    x->account = cfg_str(config, "executor.slurm.account");
    x->time = cfg_str(config, "executor.slurm.time");
    x->mem = cfg_str(config, "executor.slurm.mem");
    x->extra = fl_config_get(config, "executor.slurm.extra_args");
    x->poll_s = cfg_num(config, "executor.slurm.poll_s", 10);
    x->min_poll_s = cfg_num(config, "executor.slurm.min_poll_s", 2);
    x->exit_wait_s = cfg_num(config, "executor.slurm.exit_wait_s", 60);
    x->array = cJSON_IsTrue(fl_config_get(config, "executor.slurm.array"));
    if (x->poll_s < x->min_poll_s) {
        fl_exec_say("[fluke] slurm  executor.slurm.poll_s %g is below min_poll_s %g in %s: polling every %g s",
            x->poll_s, x->min_poll_s, file, x->min_poll_s);
        x->poll_s = x->min_poll_s;
    }
    x->retry.tries = (int)cfg_num(config, "executor.slurm.retries", 6);
    x->retry.first_s = cfg_num(config, "executor.slurm.retry_s", 1);
    x->retry.limit_s = CMD_LIMIT_S;
    x->retry.stop = stop;
    /* A run id unique across runs and hosts sharing a cluster: config name, time, pid. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long h = ((unsigned long long)ts.tv_sec * 1000003ULL) ^
                           ((unsigned long long)ts.tv_nsec << 7) ^ ((unsigned long long)getpid() << 32);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
    x->cfg_name = strdup(config_name);
    x->run_id = fl_strdupf("%.40s-%08llx", config_name, h & 0xffffffffULL);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = '\0';
    x->exe = n > 0 ? strdup(exe) : NULL;
    if (!x->run_id || !x->cfg_name || !x->exe) {
        fl_slurm_close(x);
        return fl_errf(e, n > 0 ? "out of memory" : "cannot read /proc/self/exe: %s", strerror(errno));
    }
    clean_name(x->run_id);
    char label[80];
    snprintf(label, sizeof label, "slurm-%s", x->run_id);
    if (!(x->dir = fl_store_staging_dir(store, label, e))) {
        fl_slurm_close(x);
        return -1;
    }
    *out = x;
    return 0;
}

void fl_slurm_close(fl_slurm *x) {
    if (!x) return;
    if (x->dir) {
        fl_err ignore;
        fl_remove_tree(x->dir, &ignore);
    }
    for (size_t i = 0; i < x->njobs; i++) {
        free(x->jobs[i].node_id);
        free(x->jobs[i].stage);
        free(x->jobs[i].prefix);
        free(x->jobs[i].work_dir);
    }
    for (size_t i = x->evhead; i < x->nev; i++) free(x->ev[i].msg);
    free(x->ev);
    free(x->jobs);
    free(x->dir);
    free(x->run_id);
    free(x->cfg_name);
    free(x->exe);
    free(x);
}

const char *fl_slurm_run_id(const fl_slurm *x) { return x->run_id; }

size_t fl_slurm_live(const fl_slurm *x) {
    size_t n = 0;
    for (size_t i = 0; i < x->njobs; i++) n += x->jobs[i].phase != J_DONE;
    return n;
}

/* A finished job: an event for the run loop (msg NULL: success). */
static void finish(fl_slurm *x, sjob *j, char *msg) {
    j->phase = J_DONE;
    if (x->nev == x->evcap) {
        size_t cap = x->evcap ? x->evcap * 2 : 16;
        sevent *v = realloc(x->ev, cap * sizeof *v);
        if (!v) { /* cannot report it: the run loop would wait forever, so fail loudly */
            fprintf(stderr, "fluke: out of memory recording the end of stage %s\n", j->node_id);
            abort();
        }
        x->ev = v;
        x->evcap = cap;
    }
    x->ev[x->nev].node = j->node;
    x->ev[x->nev].msg = msg;
    x->nev++;
}

/* The last non-empty line of a file (a job log), at most 200 characters; "" when none. */
static void last_line(const char *path, char *out, size_t len) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\n");
        line[n] = '\0';
        if (n) snprintf(out, len, "%.200s", line);
    }
    fclose(f);
}

/* A failure: the message names the job and its log, which moves into the stage's work dir (gc
 * keeps the work dirs of keys a config started; the run dir goes away with the run). */
static void fail(fl_slurm *x, sjob *j, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(fl_slurm *x, sjob *j, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char *log = j->id[0] ? fl_strdupf("%s/slurm-%s.log", x->dir, j->id) : NULL;
    char *kept = log && j->work_dir ? fl_strdupf("%s/slurm-%s.log", j->work_dir, j->id) : NULL;
    struct stat st;
    const char *shown = log && stat(log, &st) == 0 ? log : NULL; /* none: the job never started */
    if (shown && kept && rename(log, kept) == 0) shown = kept;
    char tail[256] = "";
    if (shown) last_line(shown, tail, sizeof tail);
    char *msg;
    if (j->id[0])
        msg = fl_strdupf("stage '%s' failed: %s (Slurm job %s, log %s%s%s)", j->node_id, what, j->id,
                         shown ? shown : "none: it never started", tail[0] ? ": " : "", tail);
    else
        msg = fl_strdupf("stage '%s' failed: %s", j->node_id, what);
    free(log);
    free(kept);
    finish(x, j, msg ? msg : strdup("out of memory"));
}

/* ------------------------------------------------------------------ submitting */

int fl_slurm_submit(fl_slurm *x, const fl_slurm_stage *st, fl_err *e) {
    if (x->njobs == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        sjob *v = realloc(x->jobs, cap * sizeof *v);
        if (!v) return fl_errf(e, "out of memory");
        x->jobs = v;
        x->cap = cap;
    }
    char *text = fl_runner_spec_text(st->spec, e);
    if (!text) return -1;
    sjob *j = &x->jobs[x->njobs];
    memset(j, 0, sizeof *j);
    j->node = st->node;
    j->threads = st->spec->threads;
    j->gpus = st->spec->ngpus;
    j->node_id = strdup(st->spec->node_id);
    j->stage = strdup(st->stage_name);
    j->work_dir = strdup(st->spec->work_dir);
    j->prefix = fl_strdupf("%s/%zu", x->dir, st->node);
    char *spec = j->prefix ? fl_strdupf("%s.spec.json", j->prefix) : NULL;
    int rc = 0;
    if (!j->node_id || !j->stage || !j->work_dir || !spec)
        rc = fl_errf(e, "out of memory");
    else /* durable before sbatch: the compute node opens it (close-to-open on NFS) */
        rc = fl_write_file_atomic(spec, text, strlen(text), e);
    free(spec);
    free(text);
    if (rc) {
        free(j->node_id);
        free(j->stage);
        free(j->work_dir);
        free(j->prefix);
        return -1;
    }
    j->phase = J_QUEUED;
    x->njobs++;
    return 0;
}

/* Shell single quotes: 'it'\''s'. */
static char *sh_quote(const char *s) {
    size_t n = 3;
    for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
    char *q = malloc(n), *w = q;
    if (!q) return NULL;
    *w++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(w, "'\\''", 4);
            w += 4;
        } else {
            *w++ = *p;
        }
    }
    *w++ = '\'';
    *w = '\0';
    return q;
}

/* The batch script for the jobs idx[0..n-1]: task k of an array runs idx[k]. */
static char *write_script(fl_slurm *x, const size_t *idx, size_t n, int num, fl_err *e) {
    char *path = fl_strdupf("%s/job%d.sh", x->dir, num);
    char *exe = sh_quote(x->exe);
    size_t cap = 1024 + strlen(x->exe) * 2;
    for (size_t k = 0; k < n; k++) cap += 64 + 4 * strlen(x->jobs[idx[k]].prefix);
    char *text = malloc(cap);
    int rc = -1;
    if (!path || !exe || !text) {
        fl_errf(e, "out of memory");
        goto out;
    }
    size_t len = (size_t)snprintf(text, cap,
                                  "#!/bin/sh\n"
                                  "# fluke run %s: written by fluke, runs %s\n",
                                  x->run_id, n > 1 ? "one stage per array task" : "one stage");
    /* A single job ignores SLURM_ARRAY_TASK_ID: it may be inherited from a `fluke run` that
     * itself runs inside an array task. */
    if (n > 1) len += (size_t)snprintf(text + len, cap - len, "case \"$SLURM_ARRAY_TASK_ID\" in\n");
    for (size_t k = 0; k < n; k++) {
        char *p = sh_quote(x->jobs[idx[k]].prefix);
        if (!p) {
            fl_errf(e, "out of memory");
            goto out;
        }
        if (n == 1) len += (size_t)snprintf(text + len, cap - len, "p=%s\n", p);
        else len += (size_t)snprintf(text + len, cap - len, "%zu) p=%s ;;\n", k, p);
        free(p);
    }
    if (n > 1)
        len += (size_t)snprintf(text + len, cap - len,
                                "*) echo \"fluke: no stage for array task $SLURM_ARRAY_TASK_ID\" >&2; "
                                "exit 2 ;;\nesac\n");
    len += (size_t)snprintf(text + len, cap - len, "exec %s __slurm_job \"$p\"\n", exe);
    if (fl_write_file_atomic(path, text, len, e) || chmod(path, 0700) != 0) {
        if (!e->msg[0]) fl_errf(e, "cannot make %s executable: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(exe);
    free(text);
    if (rc) {
        free(path);
        path = NULL;
    }
    return path;
}

typedef struct argvb {
    char *v[64 + 256];
    int n;
} argvb;

static int add(argvb *a, char *s) {
    if (!s || a->n >= (int)(sizeof a->v / sizeof *a->v) - 1) {
        free(s);
        return -1;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
    return 0;
}

static void argv_free(argvb *a) {
    for (int k = 0; k < a->n; k++) free(a->v[k]);
    a->n = 0;
}

/* The first job id a command printed (one per line, "123" or "123_4": the base id). */
static int first_id(const char *text, char *id, size_t len) {
    fl_err e = {{0}};
    char line[128];
    size_t l = strcspn(text, "\n");
    snprintf(line, sizeof line, "%.*s", (int)(l < sizeof line - 1 ? l : sizeof line - 1), text);
    line[strcspn(line, "_.|")] = '\0';
    return fl_slurm_parse_sbatch(line, id, len, &e) == 0;
}

/* The job a timed-out sbatch may have submitted after all (found by its unique name: in the
 * queue, or in accounting when it already ended), so a retry does not run the stage twice.
 * 1 with id set, 0 none found. */
static int adopt(fl_slurm *x, const char *name, char *id, size_t len) {
    char nm[300];
    snprintf(nm, sizeof nm, "--name=%s", name);
    char *q[] = {"squeue", nm, "-h", "--states=all", "-o", "%F", NULL};
    char *a[] = {"sacct", nm, "-X", "-n", "-P", "-o", "JobID", NULL};
    char **cmds[] = {q, a};
    for (int k = 0; k < 2; k++) {
        fl_slurm_out o = {0};
        fl_err e = {{0}};
        int found = fl_slurm_run_retry(cmds[k], &x->retry, &o, &e) == 0 && o.status == 0 &&
                    first_id(o.out, id, len);
        fl_slurm_out_free(&o);
        if (found) return 1;
    }
    return 0;
}

/* One sbatch for jobs idx[0..n-1] (n > 1: a job array). */
static void submit_group(fl_slurm *x, const size_t *idx, size_t n) {
    int num = x->nscripts++;
    sjob *j0 = &x->jobs[idx[0]];
    fl_err e = {{0}};
    char *script = write_script(x, idx, n, num, &e);
    char name[256];
    char label[96];
    snprintf(label, sizeof label, "%.80s", n > 1 ? j0->stage : j0->node_id);
    clean_name(label);
    snprintf(name, sizeof name, "fluke-%s-%d-%s", x->run_id, num, label);
    argvb a = {.n = 0};
    int bad = !script;
    bad |= add(&a, strdup("sbatch")) || add(&a, strdup("--parsable")) ||
           add(&a, fl_strdupf("--job-name=%s", name)) ||
           add(&a, fl_strdupf("--cpus-per-task=%d", j0->threads)) ||
           add(&a, fl_strdupf("--output=%s/slurm-%s.log", x->dir, n > 1 ? "%A_%a" : "%j"));
    if (j0->gpus > 0) bad |= add(&a, fl_strdupf("--gres=gpu:%d", j0->gpus));
    if (n > 1) bad |= add(&a, fl_strdupf("--array=0-%zu", n - 1));
    if (x->partition) bad |= add(&a, fl_strdupf("--partition=%s", x->partition));
    if (x->account) bad |= add(&a, fl_strdupf("--account=%s", x->account));
    if (x->time) bad |= add(&a, fl_strdupf("--time=%s", x->time));
    if (x->mem) bad |= add(&a, fl_strdupf("--mem=%s", x->mem));
    for (const cJSON *it = x->extra ? x->extra->child : NULL; it; it = it->next)
        bad |= add(&a, strdup(it->valuestring));
    if (!bad) bad |= add(&a, strdup(script));
    char id[64] = "";
    char why[600] = "";
    if (bad && !e.msg[0]) fl_errf(&e, "out of memory");
    if (bad) snprintf(why, sizeof why, "cannot prepare its job: %.500s", e.msg);
    /* Tried like fl_slurm_run_retry, but a transient failure may hide a submitted job. */
    double wait = x->retry.first_s;
    for (int t = 0; !bad && !id[0] && !why[0] && t < x->retry.tries; t++) {
        if (t > 0) {
            for (double end = fl_now() + wait; fl_now() < end && !(x->stop && *x->stop);) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            wait = wait * 2 > 60 ? 60 : wait * 2;
            if (adopt(x, name, id, sizeof id) == 1) {
                fl_exec_say("[fluke] slurm  sbatch of %s failed but job %s was submitted: using it", name, id);
                break;
            }
        }
        fl_slurm_out o;
        if (fl_slurm_run(a.v, CMD_LIMIT_S, &o, &e)) {
            snprintf(why, sizeof why, "%.590s", e.msg);
            break;
        }
        if (o.status == 0 && fl_slurm_parse_sbatch(o.out, id, sizeof id, &e))
            snprintf(why, sizeof why, "%.590s", e.msg);
        else if (o.status != 0 && !fl_slurm_transient(&o))
            snprintf(why, sizeof why, "sbatch failed (exit %d): %.400s", o.status,
                     o.err[0] ? o.err : o.out);
        else if (o.status != 0 && t + 1 < x->retry.tries)
            fl_exec_say("[fluke] slurm  sbatch: %.*s (try %d of %d, retrying)", (int)strcspn(o.err, "\n"),
                o.err, t + 1, x->retry.tries);
        else if (o.status != 0)
            snprintf(why, sizeof why, "sbatch failed %d times: %.400s", x->retry.tries, o.err);
        fl_slurm_out_free(&o);
        if (x->stop && *x->stop && !id[0] && !why[0]) snprintf(why, sizeof why, "interrupted");
    }
    for (size_t k = 0; k < n; k++) {
        sjob *j = &x->jobs[idx[k]];
        j->group = num;
        if (!id[0]) {
            size_t l = strcspn(why, "\n");
            why[l] = '\0';
            fail(x, j, "%s", why[0] ? why : "sbatch gave no job id");
            continue;
        }
        if (n > 1) snprintf(j->id, sizeof j->id, "%.40s_%zu", id, k);
        else snprintf(j->id, sizeof j->id, "%s", id);
        j->phase = J_LIVE;
        fl_exec_say("[fluke] slurm  job %s: %s (%d cpu%s%s%.0d%s)", j->id, j->node_id, j->threads,
            j->threads == 1 ? "" : "s", j->gpus ? ", " : "", j->gpus, j->gpus ? " gpu" : "");
    }
    argv_free(&a);
    free(script);
}

void fl_slurm_flush(fl_slurm *x) {
    size_t *idx = calloc(x->njobs + 1, sizeof *idx);
    if (!idx) {
        for (size_t i = 0; i < x->njobs; i++)
            if (x->jobs[i].phase == J_QUEUED) fail(x, &x->jobs[i], "out of memory");
        return;
    }
    int any = 0;
    for (size_t i = 0; i < x->njobs; i++) {
        if (x->jobs[i].phase != J_QUEUED) continue;
        size_t n = 0;
        idx[n++] = i;
        /* An array holds the instances of one stage with the same resources (one set of sbatch
         * options for all of its tasks). */
        for (size_t k = i + 1; x->array && k < x->njobs; k++) {
            sjob *a = &x->jobs[i], *b = &x->jobs[k];
            if (b->phase == J_QUEUED && !strcmp(a->stage, b->stage) && a->threads == b->threads &&
                a->gpus == b->gpus)
                idx[n++] = k;
        }
        for (size_t k = 0; k < n; k++) x->jobs[idx[k]].phase = J_LIVE; /* taken */
        submit_group(x, idx, n);
        any = 1;
    }
    free(idx);
    /* The first poll comes one interval after the first submission, not before. */
    if (any && x->next_poll == 0) x->next_poll = fl_now() + x->poll_s;
}

/* ------------------------------------------------------------------ status */

typedef struct exit_info {
    int code, sig;
    char msg[FL_ERRLEN];
} exit_info;

/* PREFIX.exit, which __slurm_job writes when the stage process ended: 1 read, 0 absent, -1
 * unreadable or malformed (msg says why). */
static int read_exit(const sjob *j, exit_info *ex) {
    memset(ex, 0, sizeof *ex);
    char *path = fl_strdupf("%s.exit", j->prefix);
    fl_err e = {{0}};
    size_t len;
    char *text = path ? fl_read_file_max(path, &len, 1 << 20, &e) : NULL;
    struct stat st;
    int absent = path && !text && stat(path, &st) != 0 && errno == ENOENT;
    free(path);
    if (!text) {
        if (absent) return 0;
        snprintf(ex->msg, sizeof ex->msg, "its exit file cannot be read: %.900s", e.msg);
        return -1;
    }
    cJSON *j2 = cJSON_Parse(text);
    free(text);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j2, "exit");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j2, "signal");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j2, "message");
    int ok = cJSON_IsNumber(c) && cJSON_IsNumber(s);
    if (ok) {
        ex->code = (int)c->valuedouble;
        ex->sig = (int)s->valuedouble;
        if (cJSON_IsString(m)) snprintf(ex->msg, sizeof ex->msg, "%s", m->valuestring);
    } else {
        snprintf(ex->msg, sizeof ex->msg, "its exit file is malformed");
    }
    cJSON_Delete(j2);
    return ok ? 1 : -1;
}

/* What the exit file says of a stage that did not succeed, for the failure message. */
static void stage_said(const exit_info *ex, char *out, size_t len) {
    if (ex->sig)
        snprintf(out, len, "the stage process was killed by signal %d%s%s", ex->sig,
                 ex->msg[0] ? ": " : "", ex->msg);
    else
        snprintf(out, len, "%s", ex->msg[0] ? ex->msg : "exited with an error and no message");
}

/* A job Slurm reports finished (state), or no longer knows (FL_SJ_UNKNOWN). */
static void decide(fl_slurm *x, sjob *j, fl_sj state, const fl_slurm_row *acct) {
    if (state == FL_SJ_LIVE) {
        j->gone_since = 0;
        return;
    }
    exit_info ex;
    int have = read_exit(j, &ex);
    char said[FL_ERRLEN + 64];
    if (state == FL_SJ_COMPLETED || state == FL_SJ_UNKNOWN) {
        if (have == 1 && ex.code == 0 && ex.sig == 0) {
            finish(x, j, NULL);
            return;
        }
        if (have == 1) {
            stage_said(&ex, said, sizeof said);
            fail(x, j, "%s", said);
            return;
        }
        if (have < 0) {
            fail(x, j, "%s", ex.msg);
            return;
        }
        /* On NFS a file created on another host may take a while to show (attribute cache). */
        double now = fl_now();
        if (!j->gone_since) j->gone_since = now;
        if (now - j->gone_since < x->exit_wait_s) return;
        if (state == FL_SJ_COMPLETED)
            fail(x, j, "Slurm says the job COMPLETED, but its exit file %s.exit did not appear "
                       "within %g s (do the compute nodes share the store's filesystem?)",
                 j->prefix, x->exit_wait_s);
        else
            fail(x, j, "the job left the queue, sacct does not know it, and it wrote no exit file "
                       "within %g s (killed before the stage ended?)", x->exit_wait_s);
        return;
    }
    char code[64] = "";
    if (acct && acct->exit_code >= 0)
        snprintf(code, sizeof code, ", exit code %d:%d", acct->exit_code, acct->exit_signal);
    said[0] = '\0';
    if (have == 1 && (ex.code || ex.sig)) stage_said(&ex, said, sizeof said);
    if (state == FL_SJ_FAILED && said[0]) { /* the stage failed: its own words say it best */
        fail(x, j, "%s", said);
        return;
    }
    /* Even a stage that wrote "exit 0" is not trusted here: its node failed or was reclaimed
     * around the end, and outputs written there may not have reached the filesystem. */
    fail(x, j, "Slurm job ended %s%s%s%s", fl_slurm_state_name(state), code, said[0] ? "; " : "",
         said);
}

/* Comma-separated ids of the jobs in phase ph (array tasks by their base id when base). */
static char *id_list(const fl_slurm *x, const unsigned char *want, int base) {
    size_t cap = 16;
    for (size_t i = 0; i < x->njobs; i++) cap += strlen(x->jobs[i].id) + 1;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t len = 0;
    s[0] = '\0';
    for (size_t i = 0; i < x->njobs; i++) {
        if (!want[i]) continue;
        char id[64];
        snprintf(id, sizeof id, "%s", x->jobs[i].id);
        if (base) id[strcspn(id, "_")] = '\0';
        int dup = 0; /* tasks of one array share a base id: list it once */
        for (const char *p = s; *p && !dup; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
            size_t l = strcspn(p, ",");
            dup = l == strlen(id) && !strncmp(p, id, l);
        }
        if (!dup) len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? "," : "", id);
    }
    return s;
}

/* One squeue (and, for what it no longer lists, one sacct) for every live job. 0 when the
 * controller answered. */
static int poll_once(fl_slurm *x) {
    size_t n = x->njobs;
    unsigned char *want = calloc(n + 1, 1);
    if (!want) return -1;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) live += want[i] = x->jobs[i].phase == J_LIVE;
    if (!live) {
        free(want);
        return 0;
    }
    char *ids = id_list(x, want, 1);
    char *jobs = ids ? fl_strdupf("--jobs=%s", ids) : NULL;
    fl_slurm_rows q = {0}, acct = {0};
    fl_err e = {{0}};
    fl_slurm_out o = {0};
    int ok = 0;
    /* --states=all: without it squeue hides finished jobs even while the controller still
     * holds them (MinJobAge), and a site without accounting then learns nothing of a job's
     * end (CANCELLED, NODE_FAIL) but its exit file. */
    char *argv[] = {"squeue", jobs, "-h", "-r", "--states=all", "-o", "%i|%T", NULL};
    if (!jobs) {
        fl_errf(&e, "out of memory");
    } else if (fl_slurm_run_retry(argv, &x->retry, &o, &e) == 0) {
        if (o.status == 0) ok = fl_slurm_parse_squeue(o.out, &q, &e) == 0;
        else if (fl_slurm_invalid_job_id(&o)) ok = 1; /* none of them is in the queue now */
        else fl_errf(&e, "squeue failed (exit %d): %.300s", o.status, o.err);
    }
    fl_slurm_out_free(&o);
    free(jobs);
    free(ids);
    if (!ok) {
        x->failed_polls++;
        fl_exec_say("[fluke] slurm  poll %d without an answer: %s", x->failed_polls, e.msg);
        if (x->failed_polls >= MAX_FAILED_POLLS)
            for (size_t i = 0; i < n; i++)
                if (want[i])
                    fail(x, &x->jobs[i], "lost the Slurm controller (%d polls without an answer: %s)",
                         x->failed_polls, e.msg);
        fl_slurm_rows_free(&q);
        free(want);
        return -1;
    }
    x->failed_polls = 0;
    /* Jobs squeue lists: live, or finished but still shown (MinJobAge). The rest: sacct. */
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (!want[i]) continue;
        const fl_slurm_row *r = fl_slurm_rows_find(&q, x->jobs[i].id);
        if (r) {
            want[i] = 0;
            decide(x, &x->jobs[i], r->state, NULL);
        } else {
            missing++;
        }
    }
    if (missing) {
        char *list = id_list(x, want, 0);
        char *jl = list ? fl_strdupf("%s", list) : NULL;
        char *sargv[] = {"sacct", "-j", jl, "-P", "-n", "-o", "JobID,State,ExitCode", NULL};
        fl_err se = {{0}};
        int sok = 0;
        if (jl && fl_slurm_run_retry(sargv, &x->retry, &o, &se) == 0) {
            /* Accounting may be off ("Slurm accounting storage is disabled"): the exit files
             * then decide alone. */
            sok = o.status == 0 && fl_slurm_parse_sacct(o.out, &acct, &se) == 0;
            fl_slurm_out_free(&o);
        }
        if (!sok) fl_slurm_rows_free(&acct);
        for (size_t i = 0; i < n; i++) {
            if (!want[i]) continue;
            const fl_slurm_row *r = fl_slurm_rows_find(&acct, x->jobs[i].id);
            decide(x, &x->jobs[i], r ? r->state : FL_SJ_UNKNOWN, r);
        }
        free(jl);
        free(list);
    }
    fl_slurm_rows_free(&q);
    fl_slurm_rows_free(&acct);
    free(want);
    return 0;
}

void fl_slurm_wait(fl_slurm *x, int block) {
    size_t live = 0;
    for (size_t i = 0; i < x->njobs; i++) live += x->jobs[i].phase == J_LIVE;
    if (!live) return;
    if (x->next_poll == 0) x->next_poll = fl_now() + x->poll_s;
    while (fl_now() < x->next_poll) {
        if (!block || (x->stop && *x->stop)) return;
        double left = x->next_poll - fl_now();
        if (left > 0.2) left = 0.2; /* a signal also ends it (no SA_RESTART) */
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
    x->next_poll = fl_now() + x->poll_s;
    poll_once(x);
}

int fl_slurm_next(fl_slurm *x, size_t *node, char *msg, size_t len) {
    if (x->evhead == x->nev) return 0;
    sevent *v = &x->ev[x->evhead++];
    *node = v->node;
    snprintf(msg, len, "%s", v->msg ? v->msg : "");
    free(v->msg);
    v->msg = NULL;
    return 1;
}

void fl_slurm_cancel(fl_slurm *x) {
    size_t n = x->njobs;
    unsigned char *want = calloc(n + 1, 1);
    if (!want) return;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (x->jobs[i].phase == J_QUEUED) x->jobs[i].phase = J_DONE;
        live += want[i] = x->jobs[i].phase == J_LIVE;
    }
    /* The interrupt that brought us here must not cut the cancel short. */
    fl_slurm_retry r = x->retry;
    r.stop = NULL;
    if (r.tries > 3) r.tries = 3;
    argvb a = {.n = 0};
    int bad = add(&a, strdup("scancel"));
    for (size_t i = 0; i < n; i++)
        if (want[i]) bad |= add(&a, strdup(x->jobs[i].id));
    if (live && !bad) {
        fl_slurm_out o;
        fl_err e = {{0}};
        fl_exec_say("[fluke] slurm  cancelling %zu job%s", live, live == 1 ? "" : "s");
        if (fl_slurm_run_retry(a.v, &r, &o, &e) == 0) {
            if (o.status != 0) fl_exec_say("[fluke] slurm  scancel: %.300s", o.err);
            fl_slurm_out_free(&o);
        } else {
            fl_exec_say("[fluke] slurm  scancel: %s", e.msg);
        }
        /* Wait for them to leave the queue (their stages stop writing into the store). */
        double end = fl_now() + CANCEL_WAIT_S;
        char *ids = id_list(x, want, 1);
        char *jobs = ids ? fl_strdupf("--jobs=%s", ids) : NULL;
        char *argv[] = {"squeue", jobs, "-h", "-r", "-o", "%i|%T", NULL};
        while (jobs && fl_now() < end) {
            for (double t = fl_now() + x->min_poll_s; fl_now() < t;) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            fl_slurm_rows q = {0};
            int still = 1;
            if (fl_slurm_run_retry(argv, &r, &o, &e) == 0) {
                if (fl_slurm_invalid_job_id(&o)) still = 0;
                else if (o.status == 0 && fl_slurm_parse_squeue(o.out, &q, &e) == 0) {
                    still = 0;
                    for (size_t k = 0; k < q.n; k++) still |= q.v[k].state == FL_SJ_LIVE;
                }
                fl_slurm_out_free(&o);
            }
            fl_slurm_rows_free(&q);
            if (!still) break;
        }
        free(jobs);
        free(ids);
    }
    for (size_t i = 0; i < n; i++)
        if (want[i]) x->jobs[i].phase = J_DONE;
    argv_free(&a);
    free(want);
}
