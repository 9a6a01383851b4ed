/* What a running stage sees: its inputs, output and work directories, its config (only the
 * declared sections) and progress/log output. */
#include "stages/api/plan.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

const char *fl_stage_name(const fl_stage_ctx *c) { return c->node->id; }
int fl_stage_instance(const fl_stage_ctx *c) { return c->node->instance; }
const char *fl_stage_out_dir(const fl_stage_ctx *c) { return c->out_dir; }
const char *fl_stage_work_dir(const fl_stage_ctx *c) { return c->work_dir; }
int fl_stage_threads(const fl_stage_ctx *c) { return c->threads; }
int fl_stage_gpu(const fl_stage_ctx *c) { return c->gpu; }
int fl_stage_gpus(const fl_stage_ctx *c) { return c->gpu < 0 ? 0 : c->ngpus > 0 ? c->ngpus : 1; }

const char *fl_stage_input(fl_stage_ctx *c, const char *name, fl_err *e) {
    for (size_t i = 0; i < c->node->ninputs; i++)
        if (!strcmp(c->node->inputs[i].name, name)) return c->input_paths[i];
    fl_errf(e, "stage '%s' reads input '%s' which it did not declare", c->node->id, name);
    return NULL;
}

int fl_stage_has_input(const fl_stage_ctx *c, const char *name) {
    for (size_t i = 0; i < c->node->ninputs; i++)
        if (!strcmp(c->node->inputs[i].name, name)) return 1;
    return 0;
}

/* Walks a dotted path ("a.b.c") through nested objects. */
static const cJSON *lookup(const cJSON *root, const char *path) {
    char seg[256];
    const cJSON *cur = root;
    const char *p = path;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l >= sizeof seg) return NULL;
        memcpy(seg, p, l);
        seg[l] = '\0';
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, seg) : NULL;
        p += l + (dot ? 1 : 0);
    }
    return cur;
}

const cJSON *fl_stage_cfg(fl_stage_ctx *c, const char *path, fl_err *e) {
    if (!fl_plan_node_reads(c->node, path)) {
        fl_errf(e,
                "programming error: stage '%s' reads config key '%s' outside its declared "
                "sections",
                c->node->id, path);
        return NULL;
    }
    const cJSON *v = lookup(c->config, path);
    if (!v) fl_errf(e, "stage '%s': config key '%s' is missing", c->node->id, path);
    return v;
}

int fl_stage_cfg_int(fl_stage_ctx *c, const char *path, long *out, fl_err *e) {
    const cJSON *v = fl_stage_cfg(c, path, e);
    if (!v) return -1;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fl_errf(e, "config key '%s' must be an integer", path);
    /* The loader range-checks declared fields; this guards keys read through FL_CFG_ANY, where
     * a cast of 1e300 to long would be undefined and anything past 2^53 is already inexact. */
    if (fabs(v->valuedouble) > FL_CFG_INT_MAX)
        return fl_errf(e, "config key '%s' is %.0f, outside [-%.0f, %.0f]", path, v->valuedouble,
                       FL_CFG_INT_MAX, FL_CFG_INT_MAX);
    *out = (long)v->valuedouble;
    return 0;
}

int fl_stage_cfg_num(fl_stage_ctx *c, const char *path, double *out, fl_err *e) {
    const cJSON *v = fl_stage_cfg(c, path, e);
    if (!v) return -1;
    if (!cJSON_IsNumber(v)) return fl_errf(e, "config key '%s' must be a number", path);
    *out = v->valuedouble;
    return 0;
}

int fl_stage_cfg_str(fl_stage_ctx *c, const char *path, const char **out, fl_err *e) {
    const cJSON *v = fl_stage_cfg(c, path, e);
    if (!v) return -1;
    if (!cJSON_IsString(v)) return fl_errf(e, "config key '%s' must be a string", path);
    *out = v->valuestring;
    return 0;
}

int fl_stage_cfg_bool(fl_stage_ctx *c, const char *path, int *out, fl_err *e) {
    const cJSON *v = fl_stage_cfg(c, path, e);
    if (!v) return -1;
    if (!cJSON_IsBool(v)) return fl_errf(e, "config key '%s' must be true or false", path);
    *out = cJSON_IsTrue(v);
    return 0;
}

static void emit(fl_stage_ctx *c, const char *line) {
    /* One write per line so concurrent stages never interleave within a line. */
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "[%s] %s\n", c->node->id, line);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) {
        n = sizeof buf - 1;
        buf[n - 1] = '\n';
    }
    ssize_t w = write(c->out_fd >= 0 ? c->out_fd : 1, buf, (size_t)n);
    (void)w;
}

void fl_stage_log(fl_stage_ctx *c, const char *fmt, ...) {
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(c, msg);
}

void fl_stage_progress(fl_stage_ctx *c, uint64_t step, uint64_t total, const char *unit,
                       const char *fmt, ...) {
    double now = fl_now();
    /* At most one line a second, plus the first and the last. */
    if (step != 1 && step != total && now - c->t_last_progress < 1.0) return;
    c->t_last_progress = now;
    char msg[1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    double el = now - c->t_start, rate = el > 0 ? (double)step / el : 0;
    char eta[32] = "?";
    if (rate > 0 && total >= step) {
        long s = (long)((double)(total - step) / rate + 0.5);
        snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    }
    char line[1800];
    snprintf(line, sizeof line, "%llu/%llu %s (%.1f%%) %.1f %s/s ETA %s%s%s",
             (unsigned long long)step, (unsigned long long)total, unit,
             total ? 100.0 * (double)step / (double)total : 0.0, rate, unit, eta, *msg ? " " : "",
             msg);
    emit(c, line);
}

int fl_json_write_file(const char *path, const cJSON *j, const char *who, fl_err *e) {
    char *text = cJSON_Print(j);
    if (!text) return fl_errf(e, "%s: out of memory", who);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON leaves room for the NUL only: rewrite it as a newline */
    int rc = fl_write_file_atomic(path, text, len + 1, e);
    cJSON_free(text);
    return rc;
}
