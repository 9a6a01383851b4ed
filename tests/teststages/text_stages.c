/* Test-only stages for the executor tests: small text transforms whose graph comes from the
 * config ("text": {"<id>": {"op": ..., "from": ...}}), with delays, failures and crashes on
 * demand. Built into build/fluke-teststages, never into the shipped fluke. */
#include <cblas.h>
#include <ctype.h>
#include <dirent.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codeid/text_stages.h"
#include "dag/cli.h"
#include "stages/api/stage.h"

static int run_text(fl_stage_ctx *c, fl_err *e);

static const fl_stage_def text_stage = {
    .name = "text",
    .code_id = FL_CODE_ID,
    .summary = "test-only text transform",
    .run = run_text,
};

static const fl_cfg_field text_schema[] = {
    {"text", FL_CFG_MAP, 1, "the test graph: node id -> node", 0, 0},
    {"text.*", FL_CFG_OBJ, 0, NULL, 0, 0},
    {"text.*.op", FL_CFG_STR, 1, "upper | reverse | concat | length | count | fail | crash | peek | noout | symlink | "
                                          "budget | gpus", 0, 0},
    {"text.*.from", FL_CFG_ANY, 0, "node id, file:PATH, dir:PATH, or an array of them", 0, 0},
    {"text.*.suffix", FL_CFG_STR, 0, "appended to the output", 0, 0},
    {"text.*.delay_ms", FL_CFG_INT, 0, "sleep while writing the output", 0, 3600000},
    {"text.*.steps", FL_CFG_INT, 0, "op steps: how many checkpointed steps", 0, 1000000},
    {"text.*.publish", FL_CFG_BOOL, 0, "copy the output to out/<name>/", 0, 0},
    {"text.*.threads", FL_CFG_INT, 0, NULL, 1, 4096},
    {"text.*.gpus", FL_CFG_INT, 0, NULL, 0, 1024},
    {"text.*.reads", FL_CFG_ARR, 0, "extra config sections the node declares", 0, 0},
    {"text.*.reads[]", FL_CFG_STR, 0, NULL, 0, 0},
    {"globals", FL_CFG_MAP, 0, "shared values nodes may declare through reads", 0, 0},
    {"globals.*", FL_CFG_ANY, 0, NULL, 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

static int add_from(fl_plan_node *n, const char *src, int k, fl_err *e) {
    char name[32];
    snprintf(name, sizeof name, "in%d", k);
    if (!strncmp(src, "file:", 5) || !strncmp(src, "dir:", 4))
        return fl_plan_node_input_path(n, name, strchr(src, ':') + 1, e);
    return fl_plan_node_input(n, name, src, e);
}

static int plan_text(const cJSON *config, const char *config_dir, fl_plan *p, fl_err *e) {
    (void)config_dir;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(config, "text");
    for (const cJSON *it = text ? text->child : NULL; it; it = it->next) {
        fl_plan_node *n = fl_plan_add_as(p, &text_stage, it->string, e);
        if (!n) return -1;
        char sec[300], out[300];
        snprintf(sec, sizeof sec, "text.%s", it->string);
        snprintf(out, sizeof out, "%s.txt", it->string);
        if (fl_plan_node_section(n, sec, e) || fl_plan_node_output(n, out, e)) return -1;
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(it, "from");
        int k = 0;
        if (cJSON_IsString(from)) {
            if (add_from(n, from->valuestring, k++, e)) return -1;
        } else if (cJSON_IsArray(from)) {
            for (const cJSON *f = from->child; f; f = f->next)
                if (!cJSON_IsString(f) || add_from(n, f->valuestring, k++, e))
                    return e->msg[0] ? -1 : fl_errf(e, "text.%s.from: strings only", it->string);
        }
        const cJSON *reads = cJSON_GetObjectItemCaseSensitive(it, "reads");
        for (const cJSON *r = reads ? reads->child : NULL; r; r = r->next)
            if (fl_plan_node_section(n, r->valuestring, e)) return -1;
        const cJSON *pub = cJSON_GetObjectItemCaseSensitive(it, "publish");
        if (cJSON_IsTrue(pub) && fl_plan_node_publish(n, out, e)) return -1;
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(it, "threads");
        const cJSON *gp = cJSON_GetObjectItemCaseSensitive(it, "gpus");
        fl_plan_node_resources(n, th ? (int)th->valuedouble : 1, gp ? (int)gp->valuedouble : 0);
    }
    return 0;
}

/* Reads input k: an upstream node's "<id>.txt", an external file, or for a directory a listing
 * summary (entries and total size). */
static char *read_input(fl_stage_ctx *c, int k, const char *from, fl_err *e) {
    char name[32];
    snprintf(name, sizeof name, "in%d", k);
    const char *path = fl_stage_input(c, name, e);
    if (!path) return NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        fl_errf(e, "cannot stat %s", path);
        return NULL;
    }
    if (!strncmp(from, "dir:", 4)) {
        DIR *d = opendir(path);
        if (!d) {
            fl_errf(e, "cannot open %s", path);
            return NULL;
        }
        long files = 0;
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.') files++;
        closedir(d);
        return fl_strdupf("%ld entries", files);
    }
    if (!strncmp(from, "file:", 5)) return fl_read_file(path, NULL, e);
    char *p = fl_strdupf("%s/%s.txt", path, from);
    char *s = fl_read_file(p, NULL, e);
    free(p);
    return s;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A long stage: one step per delay_ms, checkpointed in the work directory after every step, so a
 * killed run resumes where it stopped when rerun with the same key. */
static int run_steps(fl_stage_ctx *c, const cJSON *node, fl_err *e) {
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(node, "steps");
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(node, "delay_ms");
    long n = steps ? (long)steps->valuedouble : 10, ms = delay ? (long)delay->valuedouble : 0;
    char *ck = fl_strdupf("%s/ckpt", fl_stage_work_dir(c));
    long start = 0;
    char *text = fl_read_file(ck, NULL, NULL);
    if (text) {
        start = strtol(text, NULL, 10);
        free(text);
        fl_stage_log(c, "resuming at step %ld", start);
    }
    /* FLUKE_TS_IGNORE_TERM=1: a stage deaf to SIGTERM (the executor must escalate). */
    if (getenv("FLUKE_TS_IGNORE_TERM")) signal(SIGTERM, SIG_IGN);
    /* FLUKE_TS_FAIL_AT=K: fail once step K is checkpointed (a crash the key does not see). */
    const char *fa = getenv("FLUKE_TS_FAIL_AT");
    long fail_at = fa ? strtol(fa, NULL, 10) : -1;
    for (long i = start; i < n; i++) {
        if (i == fail_at) {
            free(ck);
            return fl_errf(e, "deliberate failure at step %ld (FLUKE_TS_FAIL_AT)", i);
        }
        sleep_ms(ms);
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%ld", i + 1);
        if (fl_write_file_atomic(ck, buf, (size_t)len, e)) {
            free(ck);
            return -1;
        }
        fl_stage_progress(c, (uint64_t)i + 1, (uint64_t)n, "step", "loss %.3f", 1.0 / (double)(i + 2));
    }
    free(ck);
    char *path = fl_strdupf("%s/%s.txt", fl_stage_out_dir(c), fl_stage_name(c));
    char *out = fl_strdupf("%ld steps done\n", n);
    int rc = fl_write_file_atomic(path, out, strlen(out), e);
    free(path);
    free(out);
    return rc;
}

/* FLUKE_TS_RENDEZVOUS=N:DIR: the stage marks DIR/<id> and waits until N stages have, so a test
 * knows they ran at the same time (a 60 s guard only turns a hang into a failure). */
static int rendezvous(fl_stage_ctx *c, fl_err *e) {
    const char *rv = getenv("FLUKE_TS_RENDEZVOUS");
    if (!rv) return 0;
    char *end;
    long want = strtol(rv, &end, 10);
    if (*end != ':') return fl_errf(e, "FLUKE_TS_RENDEZVOUS=%s: expected N:DIR", rv);
    char *mark = fl_strdupf("%s/%s", end + 1, fl_stage_name(c));
    FILE *f = mark ? fopen(mark, "w") : NULL;
    free(mark);
    if (!f) return fl_errf(e, "rendezvous: cannot mark %s", end + 1);
    fclose(f);
    for (int t = 0; t < 6000; t++) {
        DIR *d = opendir(end + 1);
        long n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (de->d_name[0] != '.') n++;
        if (d) closedir(d);
        if (n >= want) return 0;
        sleep_ms(10);
    }
    return fl_errf(e, "rendezvous: the other stages never came");
}

/* What the stage process sees of its budget: op budget writes the thread counts OpenMP and
 * OpenBLAS report ("omp 1 openblas 1 budget 1"), op gpus the devices it was given
 * ("gpus 2 first 0 visible 3,5"). */
static int run_report(fl_stage_ctx *c, const char *op, fl_err *e) {
    char *text;
    if (!strcmp(op, "budget")) {
        text = fl_strdupf("omp %d openblas %d budget %d\n", omp_get_max_threads(),
                          openblas_get_num_threads(), fl_stage_threads(c));
    } else {
        if (rendezvous(c, e)) return -1;
        const char *v = getenv("CUDA_VISIBLE_DEVICES");
        text = fl_strdupf("gpus %d first %d visible %s\n", fl_stage_gpus(c), fl_stage_gpu(c),
                          v ? v : "(unset)");
    }
    char *path = fl_strdupf("%s/%s.txt", fl_stage_out_dir(c), fl_stage_name(c));
    int rc = text && path ? fl_write_file_atomic(path, text, strlen(text), e) : fl_errf(e, "out of memory");
    free(text);
    free(path);
    return rc;
}

static int run_text(fl_stage_ctx *c, fl_err *e) {
    char sec[300];
    snprintf(sec, sizeof sec, "text.%s", fl_stage_name(c));
    char key[340];
    const char *op;
    snprintf(key, sizeof key, "%s.op", sec);
    if (fl_stage_cfg_str(c, key, &op, e)) return -1;
    const cJSON *node = fl_stage_cfg(c, sec, e);
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(node, "from");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(node, "suffix");
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(node, "delay_ms");

    if (!strcmp(op, "fail")) return fl_errf(e, "deliberate failure (op fail)");
    if (!strcmp(op, "crash")) raise(SIGSEGV);
    if (!strcmp(op, "steps")) return run_steps(c, node, e);
    if (!strcmp(op, "budget") || !strcmp(op, "gpus")) return run_report(c, op, e);
    if (!strcmp(op, "peek")) {
        long v;
        return fl_stage_cfg_int(c, "globals.secret", &v, e);
    }

    /* gather inputs in declaration order */
    char *acc = strdup("");
    int k = 0;
    const cJSON *list = cJSON_IsArray(from) ? from->child : from;
    for (const cJSON *f = list; f; f = cJSON_IsArray(from) ? f->next : NULL, k++) {
        char *s = read_input(c, k, f->valuestring, e);
        if (!s) {
            free(acc);
            return -1;
        }
        char *n = fl_strdupf("%s%s", acc, s);
        free(acc);
        free(s);
        acc = n;
    }
    char *out = NULL;
    if (!strcmp(op, "upper")) {
        for (char *p = acc; *p; p++) *p = (char)toupper((unsigned char)*p);
        out = acc;
    } else if (!strcmp(op, "reverse")) {
        size_t n = strlen(acc);
        for (size_t i = 0; i < n / 2; i++) {
            char t = acc[i];
            acc[i] = acc[n - 1 - i];
            acc[n - 1 - i] = t;
        }
        out = acc;
    } else if (!strcmp(op, "concat") || !strcmp(op, "count") || !strcmp(op, "noout") ||
               !strcmp(op, "symlink")) {
        out = acc;
    } else if (!strcmp(op, "length")) {
        out = fl_strdupf("%zu", strlen(acc));
        free(acc);
    } else {
        free(acc);
        return fl_errf(e, "text.%s.op: unknown op '%s'", fl_stage_name(c), op);
    }
    if (suffix) {
        char *n = fl_strdupf("%s%s", out, suffix->valuestring);
        free(out);
        out = n;
    }
    if (!strcmp(op, "noout")) {
        free(out);
        return 0;
    }
    char *path = fl_strdupf("%s/%s.txt", fl_stage_out_dir(c), fl_stage_name(c));
    if (!strcmp(op, "symlink")) {
        char *lp = fl_strdupf("%s/link", fl_stage_out_dir(c));
        int rc = symlink("/etc/passwd", lp);
        free(lp);
        if (rc) {
            free(out);
            free(path);
            return fl_errf(e, "symlink failed");
        }
    }
    /* Write in two halves with the delay between, so a kill lands mid-output. */
    FILE *f = fopen(path, "w");
    if (!f) {
        fl_errf(e, "cannot write %s", path);
        free(out);
        free(path);
        return -1;
    }
    size_t n = strlen(out), half = n / 2;
    fwrite(out, 1, half, f);
    fflush(f);
    long ms = delay ? (long)delay->valuedouble : 0;
    for (long t = 0; t < ms; t += 10) {
        sleep_ms(10);
        if (t % 500 == 0) fl_stage_progress(c, (uint64_t)t + 10, (uint64_t)ms, "ms", "writing");
    }
    fwrite(out + half, 1, n - half, f);
    int bad = fclose(f) != 0;
    free(out);
    free(path);
    return bad ? fl_errf(e, "write failed") : 0;
}

static const fl_cfg_field *const test_schemas[] = {text_schema, NULL};

static const fl_registry test_registry = {
    .program = "fluke-teststages",
    .default_config = NULL,
    .schemas = test_schemas,
    .plan = plan_text,
    .commands = NULL,
};

int main(int argc, char **argv) { return fl_cli_main(argc, argv, &test_registry); }
