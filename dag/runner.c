/* Stage processes: the parent side (spec into a memfd, environment with the budgets, fork, exec
 * of /proc/self/exe) and the child side (the hidden `__stage` command). */
#include "dag/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* The largest spec a child accepts: the effective config plus paths, never near this. */
#define SPEC_MAX ((size_t)256 << 20)

/* Variables the runner sets for the stage; inherited values are dropped. */
static const char *const budget_vars[] = {"OMP_NUM_THREADS=", "OMP_THREAD_LIMIT=",
                                          "OPENBLAS_NUM_THREADS=", "MKL_NUM_THREADS=",
                                          "CUDA_VISIBLE_DEVICES=", NULL};

static void free_strv0(char **v) {
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* A copy of environ with the budget variables replaced; built before fork, because the child
 * of a process that may have threads must only make async-signal-safe calls before exec. */
static char **stage_env(const fl_stage_spec *sp, fl_err *e) {
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = calloc(n + 8, sizeof *env);
    if (!env) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = 0;
        for (const char *const *b = budget_vars; *b && !drop; b++)
            drop = !strncmp(environ[i], *b, strlen(*b));
        if (drop) continue;
        if (!(env[k++] = strdup(environ[i]))) goto oom;
    }
    const int t = sp->threads;
    if (!(env[k++] = fl_strdupf("OMP_NUM_THREADS=%d", t)) ||
        !(env[k++] = fl_strdupf("OMP_THREAD_LIMIT=%d", t)) ||
        !(env[k++] = fl_strdupf("OPENBLAS_NUM_THREADS=%d", t)) ||
        !(env[k++] = fl_strdupf("MKL_NUM_THREADS=%d", t)) ||
        !(env[k++] = fl_strdupf("CUDA_VISIBLE_DEVICES=%s", sp->gpu_list ? sp->gpu_list : "")))
        goto oom;
    /* OpenMP threads that spin at barriers take the cores from everything else on a shared
     * machine and, when another process runs, from each other (measured on 2 cores beside one
     * busy process: 14 img/s spinning, 180 img/s passive in embedding training). Passive unless
     * the user chose a policy. */
    if (!getenv("OMP_WAIT_POLICY") && !(env[k++] = strdup("OMP_WAIT_POLICY=PASSIVE"))) goto oom;
    return env;
oom:
    free_strv0(env);
    fl_errf(e, "out of memory");
    return NULL;
}

char *fl_runner_spec_text(const fl_stage_spec *sp, fl_err *e) {
    cJSON *j = cJSON_CreateObject(), *in = cJSON_CreateArray();
    cJSON *cfg = cJSON_Duplicate(sp->config, 1);
    char *text = NULL;
    if (!j || !in || !cfg) goto out;
    cJSON_AddItemToObject(j, "inputs", in);
    for (size_t k = 0; k < sp->ninputs; k++)
        if (!cJSON_AddItemToArray(in, cJSON_CreateString(sp->input_paths[k]))) goto out;
    if (!cJSON_AddStringToObject(j, "config_dir", sp->config_dir) ||
        !cJSON_AddStringToObject(j, "node", sp->node_id) ||
        !cJSON_AddStringToObject(j, "out_dir", sp->out_dir) ||
        !cJSON_AddStringToObject(j, "work_dir", sp->work_dir) ||
        !cJSON_AddNumberToObject(j, "threads", sp->threads) ||
        !cJSON_AddNumberToObject(j, "gpus", sp->ngpus))
        goto out;
    cJSON_AddItemToObject(j, "config", cfg);
    cfg = NULL;
    text = cJSON_PrintUnformatted(j);
out:
    if (!text) fl_errf(e, "out of memory building the spec of stage '%s'", sp->node_id);
    cJSON_Delete(cfg);
    cJSON_Delete(j);
    return text;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void close_except(int a, int b) {
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo > 3) close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1) close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    close_range((unsigned)hi + 1, ~0U, 0);
}

/* In the forked child, before exec: async-signal-safe calls only. Never returns. */
static void exec_child(pid_t parent, int spec_fd, int err_w, char **argv, char **env) {
    /* Dies with the parent; if the parent died before prctl took effect, nobody would kill us,
     * so check once more now that it is in place. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    /* Lock descriptors of other stages must not outlive the parent's hold on them. */
    close_except(spec_fd, err_w);
    if (fcntl(spec_fd, F_SETFD, 0) != 0 || fcntl(err_w, F_SETFD, 0) != 0) _exit(1);
    execve("/proc/self/exe", argv, env);
    static const char msg[] = "cannot exec /proc/self/exe for the stage process";
    ssize_t w = write(err_w, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

int fl_runner_spawn(const fl_stage_spec *sp, pid_t *pid, int *err_fd, fl_err *e) {
    char *text = fl_runner_spec_text(sp, e);
    if (!text) return -1;
    int rc = -1, spec_fd = -1, pfd[2] = {-1, -1};
    char **env = NULL;
    char fdbuf[2][16];
    spec_fd = memfd_create("fluke-stage-spec", MFD_CLOEXEC);
    if (spec_fd < 0) {
        fl_errf(e, "stage '%s': memfd_create: %s", sp->node_id, strerror(errno));
        goto out;
    }
    if (write_all(spec_fd, text, strlen(text)) != 0 || lseek(spec_fd, 0, SEEK_SET) != 0) {
        fl_errf(e, "stage '%s': cannot write its spec: %s", sp->node_id, strerror(errno));
        goto out;
    }
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        fl_errf(e, "pipe: %s", strerror(errno));
        goto out;
    }
    if (!(env = stage_env(sp, e))) goto out;
    snprintf(fdbuf[0], sizeof fdbuf[0], "%d", spec_fd);
    snprintf(fdbuf[1], sizeof fdbuf[1], "%d", pfd[1]);
    char *argv[] = {(char *)sp->program, "__stage", fdbuf[0], fdbuf[1], (char *)sp->node_id, NULL};
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        fl_errf(e, "fork: %s", strerror(errno));
        goto out;
    }
    if (p == 0) exec_child(parent, spec_fd, pfd[1], argv, env);
    *pid = p;
    *err_fd = pfd[0];
    pfd[0] = -1;
    rc = 0;
out:
    if (pfd[0] >= 0) close(pfd[0]);
    if (pfd[1] >= 0) close(pfd[1]);
    if (spec_fd >= 0) close(spec_fd);
    free_strv0(env);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ child */

static int parse_fd(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return (errno || *end || end == s || v < 0 || v > INT_MAX) ? -1 : (int)v;
}

static char *read_spec(int fd, fl_err *e) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = cap < SPEC_MAX ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                if (cap < SPEC_MAX) fl_errf(e, "out of memory");
                else fl_errf(e, "stage spec larger than %zu bytes", SPEC_MAX);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fl_errf(e, "cannot read the stage spec: %s", strerror(errno));
            free(buf);
            return NULL;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    return buf;
}

static const char *spec_str(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int run_spec(const cJSON *spec, const fl_registry *reg, fl_err *e) {
    const char *dir = spec_str(spec, "config_dir"), *id = spec_str(spec, "node");
    const char *out = spec_str(spec, "out_dir"), *work = spec_str(spec, "work_dir");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(spec, "config");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(spec, "inputs");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(spec, "threads");
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(spec, "gpus");
    if (!dir || !id || !out || !work || !cJSON_IsObject(config) || !cJSON_IsArray(ins) ||
        !cJSON_IsNumber(th) || !cJSON_IsNumber(gp))
        return fl_errf(e, "malformed stage spec");
    fl_plan plan;
    fl_plan_init(&plan, dir);
    int rc = -1;
    const char **paths = NULL;
    if (reg->plan(config, dir, &plan, e) != 0) {
        fl_errprefix(e, "stage process: rebuilding the plan");
        goto out;
    }
    const fl_plan_node *n = fl_plan_find(&plan, id);
    if (!n) {
        fl_errf(e, "stage process: the plan has no stage '%s'", id);
        goto out;
    }
    if ((size_t)cJSON_GetArraySize(ins) != n->ninputs) {
        fl_errf(e, "stage process: '%s' has %zu inputs, the spec %d", id, n->ninputs,
                cJSON_GetArraySize(ins));
        goto out;
    }
    paths = calloc(n->ninputs + 1, sizeof *paths);
    if (!paths) {
        fl_errf(e, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *p = ins->child; p; p = p->next, k++) paths[k] = cJSON_IsString(p) ? p->valuestring : "";
    int ngpus = (int)gp->valuedouble;
    fl_stage_ctx ctx = {.node = n,
                        .config = config,
                        .out_dir = out,
                        .work_dir = work,
                        .input_paths = paths,
                        .threads = (int)th->valuedouble,
                        .gpu = ngpus > 0 ? 0 : -1, /* CUDA_VISIBLE_DEVICES renumbers from 0 */
                        .ngpus = ngpus,
                        .t_start = fl_now(),
                        .out_fd = 1};
    rc = n->def->run(&ctx, e);
    if (rc != 0 && !e->msg[0]) snprintf(e->msg, sizeof e->msg, "failed without a message");
out:
    free(paths);
    fl_plan_free(&plan);
    return rc;
}

/* Whether fd is what the executor passes: the spec a sealed-by-name memfd, the error channel a
 * pipe, both above stdio and distinct. Anything else is a hand-made invocation: refused before
 * reading, so it can neither block on a terminal nor run a stage from a spec file into a store. */
static const char *foreign_fds(int spec_fd, int err_w) {
    if (spec_fd < 3 || err_w < 3) return "its descriptors must not be stdin, stdout or stderr";
    if (spec_fd == err_w) return "the spec and error descriptors are the same";
    struct stat st;
    if (fstat(spec_fd, &st) != 0) return "the spec descriptor is not open";
    char link[64], target[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", spec_fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    static const char memfd[] = "/memfd:fluke-stage-spec";
    if (!S_ISREG(st.st_mode) || n < (ssize_t)sizeof memfd - 1 ||
        memcmp(target, memfd, sizeof memfd - 1) != 0)
        return "the spec descriptor is not the executor's spec";
    if (fstat(err_w, &st) != 0) return "the error descriptor is not open";
    if (!S_ISFIFO(st.st_mode)) return "the error descriptor is not a pipe";
    return NULL;
}

int fl_runner_child_main(int argc, char **argv, const fl_registry *reg) {
    int spec_fd = argc == 5 ? parse_fd(argv[2]) : -1, err_w = argc == 5 ? parse_fd(argv[3]) : -1;
    const char *why = spec_fd < 0 || err_w < 0 ? "usage: __stage SPEC_FD ERR_FD NODE"
                                               : foreign_fds(spec_fd, err_w);
    if (why) {
        fprintf(stderr, "%s: __stage is internal (run by the executor): %s\n", reg->program, why);
        return 2;
    }
    fcntl(spec_fd, F_SETFD, FD_CLOEXEC); /* not for grandchildren a stage may start */
    fcntl(err_w, F_SETFD, FD_CLOEXEC);
    fl_err e = {{0}};
    int rc = -1;
    char *text = read_spec(spec_fd, &e);
    close(spec_fd);
    cJSON *spec = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (spec)
        rc = run_spec(spec, reg, &e);
    else if (!e.msg[0])
        fl_errf(&e, "stage process: malformed spec");
    cJSON_Delete(spec);
    if (rc != 0 && write_all(err_w, e.msg, strlen(e.msg)) != 0)
        fprintf(stderr, "%s: %s\n", reg->program, e.msg);
    close(err_w);
    return rc == 0 ? 0 : 1;
}
