#include "dag/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dag/exec.h"
#include "dag/exec_slurm.h"
#include "dag/report.h"
#include "dag/remote_hook.h"
#include "dag/runner.h"

#ifndef FLUKE_DATADIR
#define FLUKE_DATADIR "/usr/local/share/fluke"
#endif

static void usage(const fl_registry *reg, FILE *f) {
    fprintf(f,
            "usage: %s COMMAND [CONFIG] [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  run [CONFIG] [-j N] [--until S] [--force S]... [--dry-run] [--executor E] [--cpu]\n"
            "                      run the pipeline, reusing every still-valid cached stage\n"
            "                      (--force S: rerun S from scratch, its checkpoints dropped;\n"
            "                      --executor local|slurm: here, or each stage a Slurm job;\n"
            "                      --cpu: train on the CPU although the config asks for a GPU)\n"
            "  status [CONFIG]     each stage: cached / stale / missing / damaged, and why\n"
            "                      (remote: the remote cache has it; the next run downloads it)\n"
            "  run, status: --remote-cache URL  the remote cache (overrides cache.remote)\n"
            "               --remote-readonly   use it, never upload to it (CI)\n"
            "  explain S [CONFIG]  everything about one stage and why it would rerun\n"
            "  dag [CONFIG] [--dot] the stages and their inputs (Graphviz with --dot)\n"
            "  config [CONFIG] [--keys]\n"
            "                      the effective config (extends resolved); --keys: every key\n"
            "                      the config may set, with its type, range and meaning\n"
            "  report [CONFIG]     write out/<name>/report.html for the latest run in the store\n"
            "                      (every run writes it too)\n"
            "  verify [CONFIG]     re-hash the store; quarantine corrupt objects\n"
            "  gc [CONFIG] [--max-size SIZE]  remove what the latest runs do not reference\n"
            "                      (records, objects, and work dirs of keys no config started)\n",
            reg->program);
    for (const fl_command *const *c = reg->commands; c && *c; c++)
        fprintf(f, "  %s\n                      %s\n", (*c)->usage, (*c)->summary);
    fprintf(f,
            "\n"
            "CONFIG defaults to %s. Outputs land in out/<config name>/, the store in .fluke/\n"
            "(both configurable). Exit codes: 0 ok, 1 a stage failed or verify found corruption,\n"
            "2 usage or config error, 3 store error, 130 interrupted.\n",
            reg->default_config ? reg->default_config : "(none: give one)");
}

static const char *default_config(const fl_registry *reg, char *buf, size_t len) {
    if (!reg->default_config) return NULL;
    snprintf(buf, len, "configs/%s", reg->default_config);
    if (access(buf, R_OK) == 0) return buf;
    /* installed: <prefix>/bin/fluke -> <prefix>/share/fluke/configs */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int w = snprintf(buf, len, "%s/../share/fluke/configs/%s", exe, reg->default_config);
            if (w > 0 && (size_t)w < len && access(buf, R_OK) == 0) return buf;
        }
    }
    snprintf(buf, len, "%s/configs/%s", FLUKE_DATADIR, reg->default_config);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static int parse_size(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return -1;
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1ULL << 10, end++;
    else if (*end == 'M' || *end == 'm') mult = 1ULL << 20, end++;
    else if (*end == 'G' || *end == 'g') mult = 1ULL << 30, end++;
    else if (*end == 'T' || *end == 't') mult = 1ULL << 40, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    *out = (unsigned long long)(v * (double)mult);
    return 0;
}

typedef struct args {
    const char *config;
    const char *pos2; /* explain's stage */
    fl_run_opts run;
    const char *forces[64];
    int dot;
    int keys;
    unsigned long long max_size;
    const char *remote_url; /* --remote-cache */
    int remote_readonly;    /* --remote-readonly */
} args;

/* gc and verify hold the store alone; a run holds it shared for as long as it runs (hours of
 * training), so say why nothing happens instead of waiting in silence. */
static int lock_store_saying(fl_session *s, const fl_registry *reg, const char *cmd, fl_err *e) {
    int fd = fl_store_lock(s->store, "gc", 1, 0, e);
    if (fd != -2) return fd;
    fprintf(stderr, "%s %s: waiting for the runs using the store at %s to finish\n", reg->program,
            cmd, fl_store_root(s->store));
    return fl_store_lock(s->store, "gc", 1, 1, e);
}

static const char *type_name(fl_cfg_type t) {
    static const char *names[] = {"int", "number", "string", "bool", "object", "map", "array", "any"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* `fluke config --keys`: the registry's schema as documentation, one key per line. */
static void print_keys(const fl_registry *reg) {
    const fl_cfg_field *const *lists[] = {(const fl_cfg_field *const[]){fl_config_builtin_schema, NULL},
                                          reg->schemas};
    for (int l = 0; l < 2; l++)
        for (int s = 0; lists[l] && lists[l][s]; s++)
            for (const fl_cfg_field *f = lists[l][s]; f->path; f++) {
                char range[64] = "";
                if ((f->type == FL_CFG_INT || f->type == FL_CFG_NUM) && (f->min != 0 || f->max != 0))
                    snprintf(range, sizeof range, " [%g, %g]", f->min, f->max);
                printf("%-32s %s%s%s  %s\n", f->path, type_name(f->type), range,
                       f->required ? " required" : "", f->help ? f->help : "");
            }
}

static int parse(int argc, char **argv, int first, int want_stage, args *a, fl_err *e) {
    memset(a, 0, sizeof *a);
    a->run.jobs = 0; /* not given: 1 locally, executor.slurm.max_jobs with Slurm */
    a->run.force = a->forces;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        const char *val = NULL;
#define NEEDVAL()                                                                                  \
    do {                                                                                           \
        if (i + 1 >= argc) return fl_errf(e, "option %s needs a value", s);                        \
        val = argv[++i];                                                                           \
    } while (0)
        if (!strcmp(s, "-j") || !strcmp(s, "--jobs")) {
            NEEDVAL();
            char *end;
            long j = strtol(val, &end, 10);
            if (*end || j < 1 || j > 1024) return fl_errf(e, "-j %s: expected a number 1..1024", val);
            a->run.jobs = (int)j;
        } else if (!strncmp(s, "-j", 2) && s[2]) {
            char *end;
            long j = strtol(s + 2, &end, 10);
            if (*end || j < 1 || j > 1024) return fl_errf(e, "%s: expected -jN with N in 1..1024", s);
            a->run.jobs = (int)j;
        } else if (!strcmp(s, "--until")) {
            NEEDVAL();
            a->run.until = val;
        } else if (!strcmp(s, "--force")) {
            NEEDVAL();
            if (a->run.nforce >= 64) return fl_errf(e, "too many --force options");
            a->forces[a->run.nforce++] = val;
        } else if (!strcmp(s, "--executor")) {
            NEEDVAL();
            if (strcmp(val, "local") && strcmp(val, "slurm"))
                return fl_errf(e, "--executor %s: expected local or slurm", val);
            a->run.executor = val;
        } else if (!strcmp(s, "--cpu")) {
            a->run.force_cpu = 1;
        } else if (!strcmp(s, "--dry-run") || !strcmp(s, "-n")) {
            a->run.dry_run = 1;
        } else if (!strcmp(s, "--remote-cache")) {
            NEEDVAL();
            a->remote_url = val;
        } else if (!strcmp(s, "--remote-readonly")) {
            a->remote_readonly = 1;
        } else if (!strcmp(s, "--dot")) {
            a->dot = 1;
        } else if (!strcmp(s, "--keys")) {
            a->keys = 1;
        } else if (!strcmp(s, "--max-size")) {
            NEEDVAL();
            if (parse_size(val, &a->max_size)) return fl_errf(e, "--max-size %s: expected e.g. 50G", val);
        } else if (s[0] == '-') {
            return fl_errf(e, "unknown option %s", s);
        } else if (want_stage && !a->pos2) {
            a->pos2 = s;
        } else if (!a->config) {
            a->config = s;
        } else {
            return fl_errf(e, "unexpected argument %s", s);
        }
#undef NEEDVAL
    }
    return 0;
}

static void on_corrupt(const char *line, void *arg) {
    (void)arg;
    printf("%s\n", line);
}

static int fault_opts(fl_store_opts *o, fl_err *e) {
    const char *f = getenv("FLUKE_FAULT");
    if (!f || !*f) return 0;
    if (!strncmp(f, "commit_write:", 13)) {
        o->fault_write_after = strtol(f + 13, NULL, 10);
        return 0;
    }
    return fl_errf(e, "FLUKE_FAULT=%s: unknown fault (known: commit_write:N)", f);
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Keeps what the run did and writes out/<name>/report.html; a report that cannot be written is
 * said, and does not change the run's exit code. */
static void report_after_run(fl_session *s, const fl_registry *reg, const fl_run_result *res,
                             double t_start, int rc, const char *msg) {
    fl_err re = {{0}};
    char *path = NULL;
    if (fl_report_note_run(s, res->nodes, t_start, wall_now(), rc, msg, &re) ||
        fl_report_write(s, 0, &path, &re))
        fprintf(stderr, "%s run: report not written: %s\n", reg->program, re.msg);
    else
        printf("[%s] report %s\n", reg->program, path);
    free(path);
}

int fl_cli_main(int argc, char **argv, const fl_registry *reg) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The executor re-executes this binary for each stage (hidden from --help). */
    if (argc >= 2 && !strcmp(argv[1], "__stage")) return fl_runner_child_main(argc, argv, reg);
    if (argc >= 2 && !strcmp(argv[1], "__slurm_job")) return fl_slurm_job_main(argc, argv, reg);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(reg, argc < 2 ? stderr : stdout);
        return argc < 2 ? FL_EXIT_USAGE : FL_EXIT_OK;
    }
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(reg, stdout);
            return FL_EXIT_OK;
        }
    fl_err e = {{0}};
    char defbuf[PATH_MAX];
    for (const fl_command *const *cp = reg->commands; cp && *cp; cp++)
        if (!strcmp(cmd, (*cp)->name)) {
            const fl_command *c = *cp;
            int rc;
            if (c->main_config) {
                const char *cfg = NULL;
                char **rest = calloc((size_t)argc + 1, sizeof *rest);
                int nrest = 0;
                for (int i = 2; i < argc; i++) {
                    size_t l = strlen(argv[i]);
                    if (!cfg && argv[i][0] != '-' && l > 5 && !strcmp(argv[i] + l - 5, ".json"))
                        cfg = argv[i];
                    else
                        rest[nrest++] = argv[i];
                }
                if (!cfg) cfg = default_config(reg, defbuf, sizeof defbuf);
                fl_session s;
                if (!cfg) { /* the command decides whether it needs one */
                    rc = c->main_config(nrest, rest, NULL, NULL, &e);
                } else if (fl_session_open(&s, reg, cfg, &e)) {
                    rc = FL_EXIT_USAGE;
                    fl_session_close(&s);
                } else {
                    rc = c->main_config(nrest, rest, s.cfg.root, s.out_dir, &e);
                    fl_session_close(&s);
                }
                free(rest);
            } else {
                rc = c->main(argc - 2, argv + 2, default_config(reg, defbuf, sizeof defbuf), &e);
            }
            if (rc != 0) fprintf(stderr, "%s %s: error: %s\n", reg->program, cmd, e.msg);
            return rc;
        }
    static const char *known[] = {"run",    "status", "explain", "dag", "config",
                                  "report", "verify", "gc",      NULL};
    int ok = 0;
    for (int i = 0; known[i]; i++) ok |= !strcmp(cmd, known[i]);
    if (!ok) {
        fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", reg->program, cmd, reg->program);
        return FL_EXIT_USAGE;
    }
    args a;
    if (parse(argc, argv, 2, !strcmp(cmd, "explain"), &a, &e)) {
        fprintf(stderr, "%s %s: %s\n", reg->program, cmd, e.msg);
        return FL_EXIT_USAGE;
    }
    if (!strcmp(cmd, "explain") && !a.pos2) {
        fprintf(stderr, "%s explain: which stage? (usage: %s explain STAGE [CONFIG])\n", reg->program,
                reg->program);
        return FL_EXIT_USAGE;
    }
    const char *config = a.config ? a.config : default_config(reg, defbuf, sizeof defbuf);
    if (!config) {
        fprintf(stderr, "%s %s: no config given (and no configs/%s here or installed)\n",
                reg->program, cmd, reg->default_config ? reg->default_config : "");
        return FL_EXIT_USAGE;
    }
    fl_session s;
    if (fl_session_open(&s, reg, config, &e)) {
        fprintf(stderr, "%s %s: error: %s\n", reg->program, cmd, e.msg);
        fl_session_close(&s);
        return FL_EXIT_USAGE;
    }
    int rc = FL_EXIT_OK;
    if (fault_opts(&s.store_opts, &e)) {
        fprintf(stderr, "%s: error: %s\n", reg->program, e.msg);
        fl_session_close(&s);
        return FL_EXIT_USAGE;
    }
    s.remote_url_cli = a.remote_url;
    s.remote_readonly_cli = a.remote_readonly;
    if (!strcmp(cmd, "config") && a.keys) {
        print_keys(reg);
    } else if (!strcmp(cmd, "config")) {
        char *txt = cJSON_Print(s.cfg.root);
        printf("%s\n", txt);
        free(txt);
    } else if (!strcmp(cmd, "dag")) {
        fl_exec_print_dag(&s, a.dot);
    } else if (fl_session_store(&s, &e)) {
        fprintf(stderr, "%s %s: error: %s\n", reg->program, cmd, e.msg);
        rc = FL_EXIT_STORE;
    } else if ((!strcmp(cmd, "run") || !strcmp(cmd, "status") || !strcmp(cmd, "explain")) &&
               fl_remote_hook_open(&s, &e)) {
        fprintf(stderr, "%s %s: error: %s\n", reg->program, cmd, e.msg);
        rc = FL_EXIT_USAGE;
    } else if (!strcmp(cmd, "run")) {
        fl_run_result res = {0};
        int intr = 0;
        double t_start = wall_now();
        res.nodes = a.run.dry_run ? NULL : calloc(s.plan.n + 1, sizeof *res.nodes);
        if (fl_exec_run(&s, &a.run, &res, &intr, &e)) {
            fprintf(stderr, "%s run: error: %s\n", reg->program, e.msg);
            rc = intr                                 ? FL_EXIT_INTR
                 : res.error_kind == FL_RUN_ERR_STORE ? FL_EXIT_STORE
                 : res.error_kind == FL_RUN_ERR_USAGE ? FL_EXIT_USAGE
                                                      : FL_EXIT_FAILED;
        } else if (!a.run.dry_run && s.plan.n) {
            printf("%s: outputs in %s/\n", reg->program, s.out_dir);
        }
        /* The report, after a run that ran (not after a usage or store error). */
        if (!a.run.dry_run && s.plan.n && (rc == FL_EXIT_OK || rc == FL_EXIT_FAILED || intr))
            report_after_run(&s, reg, &res, t_start, rc, rc ? e.msg : NULL);
        free(res.nodes);
    } else if (!strcmp(cmd, "report")) {
        char *path = NULL;
        /* shared, as a run holds it: a gc or verify does not remove checkouts under the report */
        int fd = fl_store_lock(s.store, "gc", 0, 1, &e);
        if (fd < 0 || fl_report_write(&s, 1, &path, &e)) {
            fprintf(stderr, "%s report: error: %s\n", reg->program, e.msg);
            rc = FL_EXIT_FAILED;
        } else {
            printf("%s\n", path);
        }
        if (fd >= 0) fl_store_unlock(fd);
        free(path);
    } else if (!strcmp(cmd, "status") || !strcmp(cmd, "explain")) {
        if (fl_exec_status(&s, a.pos2, &e) < 0) {
            fprintf(stderr, "%s %s: error: %s\n", reg->program, cmd, e.msg);
            rc = FL_EXIT_USAGE;
        }
    } else if (!strcmp(cmd, "verify")) {
        fl_verify_report r = {0};
        int fd = lock_store_saying(&s, reg, "verify", &e);
        if (fd < 0 || fl_store_verify(s.store, &r, on_corrupt, NULL, &e)) {
            fprintf(stderr, "%s verify: error: %s\n", reg->program, e.msg);
            rc = FL_EXIT_STORE;
        } else {
            printf("verified %llu objects, %llu trees (%.1f MB): %llu corrupt, %llu records dropped, "
                   "%llu checkouts removed\n",
                   (unsigned long long)r.objects, (unsigned long long)r.trees, (double)r.bytes / 1e6,
                   (unsigned long long)r.corrupt, (unsigned long long)r.records_dropped,
                   (unsigned long long)r.checkouts_removed);
            if (r.corrupt) rc = FL_EXIT_FAILED;
        }
        if (fd >= 0) fl_store_unlock(fd);
    } else if (!strcmp(cmd, "gc")) {
        fl_gc_report r = {0};
        int fd = lock_store_saying(&s, reg, "gc", &e);
        if (fd < 0 || fl_store_gc(s.store, a.max_size, &r, &e)) {
            fprintf(stderr, "%s gc: error: %s\n", reg->program, e.msg);
            rc = FL_EXIT_STORE;
        } else {
            printf("gc: kept %llu records, %llu objects (%.1f MB); removed %llu records, %llu objects "
                   "(%.1f MB freed), %llu work dirs\n",
                   (unsigned long long)r.records_kept, (unsigned long long)r.objects_kept,
                   (double)r.bytes_kept / 1e6, (unsigned long long)r.records_removed,
                   (unsigned long long)r.objects_removed, (double)r.bytes_freed / 1e6,
                   (unsigned long long)r.work_removed);
        }
        if (fd >= 0) fl_store_unlock(fd);
    }
    fl_session_close(&s);
    return rc;
}
