/* Running the Slurm client commands and reading their output (see slurm_cmd.h). */
#include "dag/slurm_cmd.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define OUT_MAX ((size_t)4 << 20)

void fl_slurm_out_free(fl_slurm_out *o) {
    free(o->out);
    free(o->err);
    o->out = o->err = NULL;
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *d, size_t n) {
    if (b->n + n + 1 > b->cap) {
        if (b->n + n + 1 > OUT_MAX) n = b->n + 1 < OUT_MAX ? OUT_MAX - b->n - 1 : 0;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int fl_slurm_run(char *const argv[], double limit_s, fl_slurm_out *o, fl_err *e) {
    memset(o, 0, sizeof *o);
    o->status = -1;
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = -1;
    buf bo = {0}, be = {0};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int have_fa = 0, have_at = 0;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        fl_errf(e, "%s: pipe: %s", argv[0], strerror(errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) || posix_spawnattr_init(&at)) {
        fl_errf(e, "out of memory");
        goto out;
    }
    have_fa = have_at = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    /* A process group of its own: Ctrl-C on the terminal reaches fluke, which then cancels its
     * jobs itself, and never kills an sbatch half-way (it may or may not have submitted). The
     * command gets the default signal mask and dispositions, whatever fluke's are. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    if (err) {
        fl_errf(e, "cannot run %s: %s%s", argv[0], strerror(err),
                err == ENOENT ? " (is the Slurm client installed and on PATH?)" : "");
        goto out;
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    double t_end = fl_now() + limit_s;
    int open_fds = 2, killed = 0;
    while (open_fds) {
        struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        double left = t_end - fl_now();
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        int ms = killed ? 1000 : (int)(left * 1000) + 1;
        int r = poll(pf, 2, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (r == 0 && killed) break; /* a grandchild keeps the pipe open: stop reading */
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char tmp[8192];
            ssize_t n = read(pf[k].fd, tmp, sizeof tmp);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                close(k ? pe[0] : po[0]);
                if (k) pe[0] = -1;
                else po[0] = -1;
                open_fds--;
                continue;
            }
            if (buf_add(k ? &be : &bo, tmp, (size_t)n)) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        }
        if (po[0] < 0 && pe[0] < 0) break;
        /* a closed descriptor is polled as -1: ignored */
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    o->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    o->timed_out = killed;
    if (buf_add(&bo, "", 0) || buf_add(&be, "", 0)) {
        fl_errf(e, "out of memory");
        goto out;
    }
    o->out = bo.p;
    o->err = be.p;
    bo.p = be.p = NULL;
    rc = 0;
out:
    for (int k = 0; k < 2; k++) {
        if (po[k] >= 0) close(po[k]);
        if (pe[k] >= 0) close(pe[k]);
    }
    if (have_fa) posix_spawn_file_actions_destroy(&fa);
    if (have_at) posix_spawnattr_destroy(&at);
    free(bo.p);
    free(be.p);
    return rc;
}

int fl_slurm_invalid_job_id(const fl_slurm_out *o) {
    return o->status != 0 && o->err && strstr(o->err, "Invalid job id");
}

int fl_slurm_transient(const fl_slurm_out *o) {
    if (o->timed_out) return 1;
    if (o->status == 0 || !o->err) return 0;
    if (fl_slurm_invalid_job_id(o)) return 0; /* an answer: the jobs left the queue */
    static const char *const pat[] = {"Socket timed out", "Unable to contact slurm controller",
                                      "slurm_load_jobs error", "Zero Bytes were transmitted",
                                      "Connection timed out", "Transport endpoint is not connected",
                                      NULL};
    for (int k = 0; pat[k]; k++)
        if (strstr(o->err, pat[k])) return 1;
    return 0;
}

static void sleep_s(double s, volatile sig_atomic_t *stop) {
    double end = fl_now() + s;
    while (!(stop && *stop)) {
        double left = end - fl_now();
        if (left <= 0) break;
        if (left > 0.1) left = 0.1;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* The first line of a command's stderr, for messages. */
static void first_line(const char *s, char *out, size_t len) {
    size_t n = s ? strcspn(s, "\n") : 0;
    if (n >= len) n = len - 1;
    if (n) memcpy(out, s, n);
    out[n] = '\0';
}

int fl_slurm_run_retry(char *const argv[], const fl_slurm_retry *r, fl_slurm_out *o, fl_err *e) {
    double wait = r->first_s;
    char last[512] = "";
    for (int t = 0; t < r->tries; t++) {
        if (t > 0) {
            sleep_s(wait, r->stop);
            wait = wait * 2 > 60 ? 60 : wait * 2;
            if (r->retried) (*r->retried)++;
        }
        if (fl_slurm_run(argv, r->limit_s, o, e)) return -1;
        if (!fl_slurm_transient(o)) return 0;
        if (o->timed_out) snprintf(last, sizeof last, "no answer within %.0f s", r->limit_s);
        else first_line(o->err, last, sizeof last);
        fl_slurm_out_free(o);
        if (r->stop && *r->stop) break;
    }
    return fl_errf(e, "%s: the Slurm controller did not answer after %d tries (%s)", argv[0],
                   r->tries, last);
}

/* ------------------------------------------------------------------ states */

static const struct {
    const char *name, *code;
    fl_sj st;
} states[] = {
    {"PENDING", "PD", FL_SJ_LIVE},          {"RUNNING", "R", FL_SJ_LIVE},
    {"CONFIGURING", "CF", FL_SJ_LIVE},      {"COMPLETING", "CG", FL_SJ_LIVE},
    {"SUSPENDED", "S", FL_SJ_LIVE},         {"REQUEUED", "RQ", FL_SJ_LIVE},
    {"REQUEUE_FED", "RF", FL_SJ_LIVE},      {"REQUEUE_HOLD", "RH", FL_SJ_LIVE},
    {"RESIZING", "RS", FL_SJ_LIVE},         {"RESV_DEL_HOLD", "RD", FL_SJ_LIVE},
    {"SIGNALING", "SI", FL_SJ_LIVE},        {"STAGE_OUT", "SO", FL_SJ_LIVE},
    {"STOPPED", "ST", FL_SJ_LIVE},          {"COMPLETED", "CD", FL_SJ_COMPLETED},
    {"FAILED", "F", FL_SJ_FAILED},          {"CANCELLED", "CA", FL_SJ_CANCELLED},
    {"TIMEOUT", "TO", FL_SJ_TIMEOUT},       {"NODE_FAIL", "NF", FL_SJ_NODE_FAIL},
    {"PREEMPTED", "PR", FL_SJ_PREEMPTED},   {"OUT_OF_MEMORY", "OOM", FL_SJ_OOM},
    {"BOOT_FAIL", "BF", FL_SJ_BOOT_FAIL},   {"DEADLINE", "DL", FL_SJ_DEADLINE},
    {"REVOKED", "RV", FL_SJ_OTHER_FINAL},   {"SPECIAL_EXIT", "SE", FL_SJ_OTHER_FINAL},
};

fl_sj fl_slurm_state(const char *word) {
    char w[64];
    size_t n = 0;
    while (*word == ' ' || *word == '\t') word++;
    while (word[n] && !isspace((unsigned char)word[n]) && word[n] != '+' && n < sizeof w - 1) {
        w[n] = word[n];
        n++;
    }
    w[n] = '\0';
    if (!n) return FL_SJ_UNKNOWN;
    for (size_t k = 0; k < sizeof states / sizeof *states; k++)
        if (!strcmp(w, states[k].name) || !strcmp(w, states[k].code)) return states[k].st;
    return FL_SJ_OTHER_FINAL;
}

const char *fl_slurm_state_name(fl_sj s) {
    switch (s) {
    case FL_SJ_UNKNOWN: return "UNKNOWN";
    case FL_SJ_LIVE: return "LIVE";
    case FL_SJ_OTHER_FINAL: return "an unknown final state";
    default: break;
    }
    for (size_t k = 0; k < sizeof states / sizeof *states; k++)
        if (states[k].st == s) return states[k].name;
    return "?";
}

void fl_slurm_rows_free(fl_slurm_rows *r) {
    free(r->v);
    memset(r, 0, sizeof *r);
}

const fl_slurm_row *fl_slurm_rows_find(const fl_slurm_rows *r, const char *id) {
    for (size_t k = 0; k < r->n; k++)
        if (!strcmp(r->v[k].id, id)) return &r->v[k];
    return NULL;
}

static fl_slurm_row *rows_add(fl_slurm_rows *r, fl_err *e) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        fl_slurm_row *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            fl_errf(e, "out of memory");
            return NULL;
        }
        r->v = v;
        r->cap = cap;
    }
    fl_slurm_row *w = &r->v[r->n++];
    memset(w, 0, sizeof *w);
    w->exit_code = w->exit_signal = -1;
    return w;
}

/* A job id: digits, optionally "_" and digits (an array task); the span it covers. */
static size_t id_len(const char *s) {
    size_t n = 0;
    while (isdigit((unsigned char)s[n])) n++;
    if (!n) return 0;
    if (s[n] == '_') {
        size_t m = n + 1;
        while (isdigit((unsigned char)s[m])) m++;
        if (m == n + 1) return 0;
        n = m;
    }
    return n;
}

int fl_slurm_parse_sbatch(const char *text, char *out, size_t len, fl_err *e) {
    while (*text && isspace((unsigned char)*text)) text++;
    size_t n = 0;
    while (isdigit((unsigned char)text[n])) n++;
    const char *rest = text + n;
    if (*rest == ';') rest += strcspn(rest, "\n"); /* ID;CLUSTER */
    while (*rest && isspace((unsigned char)*rest)) rest++;
    if (!n || n >= len || *rest)
        return fl_errf(e, "sbatch --parsable printed '%.200s', not a job id", text);
    memcpy(out, text, n);
    out[n] = '\0';
    return 0;
}

/* Splits text into lines (without the newline), calls fn on each non-blank one. */
static int each_line(const char *text, int (*fn)(const char *, size_t, fl_slurm_rows *, fl_err *),
                     fl_slurm_rows *rows, fl_err *e) {
    for (const char *l = text ? text : ""; *l;) {
        size_t n = strcspn(l, "\n");
        size_t t = n;
        while (t && isspace((unsigned char)l[t - 1])) t--;
        size_t s = 0;
        while (s < t && isspace((unsigned char)l[s])) s++;
        if (t > s && fn(l + s, t - s, rows, e)) return -1;
        l += n + (l[n] == '\n');
    }
    return 0;
}

static int squeue_line(const char *l, size_t n, fl_slurm_rows *rows, fl_err *e) {
    size_t il = id_len(l);
    if (!il || il >= sizeof rows->v->id || il >= n || l[il] != '|')
        return fl_errf(e, "squeue printed '%.*s', not 'JOBID|STATE'", (int)(n > 200 ? 200 : n), l);
    char st[64];
    size_t sl = n - il - 1 < sizeof st - 1 ? n - il - 1 : sizeof st - 1;
    memcpy(st, l + il + 1, sl);
    st[sl] = '\0';
    fl_sj s = fl_slurm_state(st);
    if (s == FL_SJ_UNKNOWN)
        return fl_errf(e, "squeue printed '%.*s' without a state", (int)(n > 200 ? 200 : n), l);
    fl_slurm_row *w = rows_add(rows, e);
    if (!w) return -1;
    memcpy(w->id, l, il);
    w->id[il] = '\0';
    w->state = s;
    return 0;
}

int fl_slurm_parse_squeue(const char *text, fl_slurm_rows *rows, fl_err *e) {
    return each_line(text, squeue_line, rows, e);
}

static int sacct_line(const char *l, size_t n, fl_slurm_rows *rows, fl_err *e) {
    char line[512];
    if (n >= sizeof line) n = sizeof line - 1;
    memcpy(line, l, n);
    line[n] = '\0';
    char *f1 = strchr(line, '|'), *f2 = f1 ? strchr(f1 + 1, '|') : NULL;
    if (!f2) return fl_errf(e, "sacct printed '%.200s', not 'JobID|State|ExitCode'", line);
    *f1++ = '\0';
    *f2++ = '\0';
    if (strchr(line, '[')) return 0; /* a pending array range: not one job */
    size_t il = id_len(line);
    if (!il || il >= sizeof rows->v->id || (line[il] && line[il] != '.'))
        return fl_errf(e, "sacct printed job id '%.100s'", line);
    fl_sj s = fl_slurm_state(f1);
    int code = -1, sig = -1;
    if (sscanf(f2, "%d:%d", &code, &sig) != 2) code = sig = -1;
    if (line[il] == '.') { /* a step: only an out-of-memory step says more than its job */
        line[il] = '\0';
        for (size_t k = 0; k < rows->n; k++)
            if (!strcmp(rows->v[k].id, line) && s == FL_SJ_OOM &&
                (rows->v[k].state == FL_SJ_FAILED || rows->v[k].state == FL_SJ_COMPLETED))
                rows->v[k].state = FL_SJ_OOM;
        return 0;
    }
    fl_slurm_row *w = rows_add(rows, e);
    if (!w) return -1;
    memcpy(w->id, line, il + 1);
    w->state = s;
    w->exit_code = code;
    w->exit_signal = sig;
    return 0;
}

int fl_slurm_parse_sacct(const char *text, fl_slurm_rows *rows, fl_err *e) {
    return each_line(text, sacct_line, rows, e);
}
