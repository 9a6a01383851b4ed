/* Training throughput of the embedding model (runtime/models/embed_head.h: EfficientNet under
 * "backbone." -> DOLG on two taps (local_tap and 4) -> neck dropout / linear / BN -> ArcFace s 30 m 0.3 over
 * CLASSES -> softmax CE) against the same model in PyTorch + timm, same machine, same thread
 * count, same run. One step = forward, loss, backward, Adam update; best of REPS after a warm-up
 * step; images/s and the ratio fluke / PyTorch (> 1: fluke faster) against PyTorch's faster
 * layout (NCHW or channels_last). The sides alternate for ROUNDS rounds, each keeping its best,
 * as bench_effnet.c does. The peer is tests/bench/bench_embed_torch.py (torch and timm under
 * /usr/bin/python3; without them it prints "skipped: ..."). Both sides' trainable parameter
 * counts are printed; when they differ the models differ and the bench fails (exit 1).
 *
 * Settings (defaults in SETTINGS below): argument NAME=VALUE, else environment BENCH_EMBED_NAME
 * (upper case), e.g. `build/bench/bench_embed res=160 batch=16` or BENCH_EMBED_WIDTH=0.75.
 * Threads: OMP_NUM_THREADS (default: all cores), applied to OpenMP, OpenBLAS and PyTorch alike. */
#include <cblas.h>
#include <ctype.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/models/embed_head.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

/* name, default; read into bench_cfg by settings_parse. The defaults are configs/smoke.json's
 * embed section (tf_efficientnet_b0 at width / depth 0.5, 96 px, batch 32, DOLG 128 with
 * dilations 1,2,3, its local branch on tap 2 (stride 8), neck 256, dropout and drop path 0.1);
 * classes: about the individuals of a smoke fold's training part. */
#define SETTINGS(X)                                                                                \
    X(variant, "tf")                                                                               \
    X(width, "0.5")                                                                                \
    X(depth, "0.5")                                                                                \
    X(res, "96")                                                                                   \
    X(batch, "32")                                                                                 \
    X(dim, "128")                                                                                  \
    X(dilations, "1,2,3")                                                                          \
    X(local_tap, "2")                                                                              \
    X(emb, "256")                                                                                  \
    X(classes, "645")                                                                              \
    X(dropout, "0.1")                                                                              \
    X(drop_path, "0.1")                                                                            \
    X(reps, "2")                                                                                   \
    X(rounds, "2")

typedef struct bench_cfg {
    struct {
#define FIELD(n, d) const char *n;
        SETTINGS(FIELD)
#undef FIELD
    } s; /* the settings as given (passed on to the peer verbatim) */
    fl_embed_cfg model;
    int res, batch, reps, rounds;
} bench_cfg;

static const char *setting(int argc, char **argv, const char *name, const char *def) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    char env[64] = "BENCH_EMBED_";
    for (size_t i = 0, k = strlen(env); name[i] && k + 1 < sizeof env; i++, k++)
        env[k] = (char)toupper((unsigned char)name[i]);
    const char *v = getenv(env);
    return v && v[0] ? v : def;
}

static int to_int(const char *name, const char *v, int lo, int *out, fl_err *e) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > 1 << 20)
        return fl_errf(e, "setting %s=%s: needs an integer >= %d", name, v, lo);
    *out = (int)x;
    return 0;
}

static int to_double(const char *name, const char *v, double *out, fl_err *e) {
    char *end;
    *out = strtod(v, &end);
    if (end == v || *end) return fl_errf(e, "setting %s=%s: not a number", name, v);
    return 0;
}

static int settings_parse(int argc, char **argv, bench_cfg *b, fl_err *e) {
    for (int i = 1; i < argc; i++) {
        const char *known[] = {
#define NAME(n, d) #n,
            SETTINGS(NAME)
#undef NAME
        };
        size_t k = 0, n = strcspn(argv[i], "=");
        while (k < sizeof known / sizeof *known &&
               !(strlen(known[k]) == n && strncmp(known[k], argv[i], n) == 0))
            k++;
        if (k == sizeof known / sizeof *known || !argv[i][n])
            return fl_errf(e, "unknown argument '%s' (NAME=VALUE)", argv[i]);
    }
#define READ(n, d) b->s.n = setting(argc, argv, #n, d);
    SETTINGS(READ)
#undef READ
    int tf = strcmp(b->s.variant, "tf") == 0;
    if (!tf && strcmp(b->s.variant, "native") != 0)
        return fl_errf(e, "setting variant=%s: tf or native", b->s.variant);
    int dim, emb, classes, local_tap;
    if (to_int("res", b->s.res, 32, &b->res, e) < 0 ||
        to_int("batch", b->s.batch, 1, &b->batch, e) < 0 ||
        to_int("reps", b->s.reps, 1, &b->reps, e) < 0 ||
        to_int("rounds", b->s.rounds, 1, &b->rounds, e) < 0 ||
        to_int("dim", b->s.dim, 1, &dim, e) < 0 || to_int("emb", b->s.emb, 1, &emb, e) < 0 ||
        to_int("classes", b->s.classes, 1, &classes, e) < 0 ||
        to_int("local_tap", b->s.local_tap, 0, &local_tap, e) < 0)
        return -1;
    if (local_tap > 4) return fl_errf(e, "setting local_tap=%d: 0..4", local_tap);
    fl_embed_cfg *c = &b->model;
    *c = fl_embed_defaults(classes, emb);
    if (fl_effnet_preset(tf ? "tf_efficientnet_b0" : "efficientnet_b0", &c->backbone, e) < 0)
        return -1;
    if (to_double("width", b->s.width, &c->backbone.width, e) < 0 ||
        to_double("depth", b->s.depth, &c->backbone.depth, e) < 0 ||
        to_double("drop_path", b->s.drop_path, &c->backbone.drop_path_rate, e) < 0 ||
        to_double("dropout", b->s.dropout, &c->dropout, e) < 0)
        return -1;
    c->local_tap = local_tap;
    c->dolg = fl_dolg_defaults(dim);
    c->dolg.n_dil = 0;
    for (const char *p = b->s.dilations; *p;) {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p || d < 1 || d > 1000 || c->dolg.n_dil == FL_DOLG_MAX_DIL ||
            (*end && (*end != ',' || !end[1])))
            return fl_errf(e, "setting dilations=%s: 1..%d comma-separated integers >= 1",
                           b->s.dilations, FL_DOLG_MAX_DIL);
        c->dolg.dilations[c->dolg.n_dil] = (int)d;
        c->dolg.widths[c->dolg.n_dil++] = dim / 4 > 0 ? dim / 4 : 1;
        p = *end ? end + 1 : end;
    }
    fl_effnet_arch a;
    return fl_effnet_arch_of(&c->backbone, &a, e) < 0 || fl_dolg_check(&c->dolg, e) < 0 ? -1 : 0;
}

typedef struct fluke_side {
    fl_pstore *s;
    fl_graph *g;
    fl_optim *o;
    uint64_t step;
    int64_t params; /* trainable elements */
} fluke_side;

static void fluke_free(fluke_side *f) {
    fl_optim_free(f->o);
    fl_graph_free(f->g);
    fl_pstore_free(f->s);
}

static int fluke_setup(fluke_side *f, const bench_cfg *b, fl_err *e) {
    memset(f, 0, sizeof *f);
    fl_pstore *s = f->s = fl_pstore_new(FL_F32, 1, e);
    if (!s) return -1;
    fl_graph *g = f->g = fl_graph_new(s, FL_MODE_TRAIN, e);
    if (!g) return -1;
    fl_embed_model m;
    if (fl_embed_build(g, &b->model, b->batch, b->res, b->res, 1, &m, e) < 0) return -1;
    if (fl_graph_compile(g, m.loss, e) < 0) return -1;
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    float *xv = fl_graph_value(g, m.x);
    for (size_t i = 0; i < (size_t)b->batch * b->res * b->res * 3; i++)
        xv[i] = fl_rng_uniform(&r);
    int32_t *yv = fl_graph_value(g, m.labels);
    for (int i = 0; i < b->batch; i++)
        yv[i] = i % b->model.arc.num_classes;
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, e) < 0) return -1;
    for (size_t i = 0; i < pl.n; i++)
        if (!pl.v[i].is_buffer && pl.v[i].grad) f->params += (int64_t)pl.v[i].numel;
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAM, 1e-3);
    f->o = fl_optim_create(&oc, &pl, e);
    return f->o ? 0 : -1;
}

/* One warm-up step, then the best of reps steps: images/s into *ips if better. */
static int fluke_round(fluke_side *f, const bench_cfg *b, double *ips, fl_err *e) {
    double best = 1e30;
    for (int it = 0; it <= b->reps; it++) {
        double t0 = fl_now();
        fl_graph_set_rng(f->g, 3, f->step++);
        fl_optim_zero_grad(f->o);
        if (fl_graph_forward(f->g, e) < 0 || fl_graph_backward(f->g, NULL, e) < 0) return -1;
        fl_optim_step(f->o);
        double dt = fl_now() - t0;
        if (it > 0 && dt < best) best = dt;
    }
    if (b->batch / best > *ips) *ips = b->batch / best;
    return 0;
}

/* 0 with both layouts' images/s and the peer's parameter count; 1 when the peer is unavailable
 * (why in skip). */
static int run_torch(const bench_cfg *b, int threads, double *nchw, double *cl, long long *params,
                     char *skip, size_t cap) {
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/bench/bench_embed_torch.py %d %d %d %d %s %s %s %s %s %s "
             "%s %s %s %s 2>/dev/null",
             src ? src : ".", threads, b->reps, b->batch, b->res, b->s.variant, b->s.width,
             b->s.depth, b->s.dim, b->s.dilations, b->s.emb, b->s.classes, b->s.dropout,
             b->s.drop_path, b->s.local_tap);
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(skip, cap, "cannot start /usr/bin/python3");
        return 1;
    }
    char line[512] = "";
    int ok = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "embed %lf %lf %lld", nchw, cl, params) == 3)
            ok = 1;
        else if (strncmp(line, "skipped: ", 9) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(skip, cap, "%.240s", line + 9);
        }
    }
    int st = pclose(f);
    if (!ok) {
        if (!skip[0]) snprintf(skip, cap, "PyTorch/timm peer failed (exit %d)", st);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads();
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) threads = atoi(env);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    fl_err e = {{0}};
    bench_cfg b;
    if (settings_parse(argc, argv, &b, &e) < 0) {
        fprintf(stderr, "bench_embed: %s\n", e.msg);
        return 2;
    }
    fluke_side fs;
    if (fluke_setup(&fs, &b, &e) < 0) {
        fprintf(stderr, "bench_embed: %s\n", e.msg);
        fluke_free(&fs);
        return 1;
    }
    double f = 0, ta = 0, tb = 0;
    long long tparams = -1;
    char skip[320] = "";
    int peer = 1;
    for (int r = 0; r < b.rounds; r++) {
        if (fluke_round(&fs, &b, &f, &e) < 0) {
            fprintf(stderr, "bench_embed: %s\n", e.msg);
            fluke_free(&fs);
            return 1;
        }
        if (peer) {
            double ra = 0, rb = 0;
            if (run_torch(&b, threads, &ra, &rb, &tparams, skip, sizeof skip)) peer = 0;
            ta = ra > ta ? ra : ta;
            tb = rb > tb ? rb : tb;
        }
    }
    long long fparams = (long long)fs.params;
    fluke_free(&fs);
    printf("embedding model train step (%s_efficientnet w%s d%s, DOLG %s dil %s, emb %s, ArcFace "
           "%s classes, "
           "dropout %s, drop path %s, Adam), %d threads\n",
           strcmp(b.s.variant, "tf") == 0 ? "tf" : "native", b.s.width, b.s.depth, b.s.dim,
           b.s.dilations, b.s.emb, b.s.classes, b.s.dropout, b.s.drop_path, threads);
    char size[32], model[96];
    snprintf(size, sizeof size, "%dpx", b.res);
    snprintf(model, sizeof model, "embed-%s-w%s-d%s", b.s.variant, b.s.width, b.s.depth);
    printf("%-20s %-6s %5s %12s %12s %7s\n", "model", "size", "batch", "fluke img/s", "torch img/s",
           "ratio");
    if (!peer) {
        printf("%-20s %-6s %5d %12.2f %12s %7s\n", model, size, b.batch, f, "-", "-");
        printf("parameters: fluke %lld\nskipped: %s; no ratio\n", fparams, skip);
        return 0;
    }
    double best = ta > tb ? ta : tb;
    printf("%-20s %-6s %5d %12.2f %12.2f %7.3f\n", model, size, b.batch, f, best, f / best);
    printf("torch layouts: %.2f img/s NCHW, %.2f img/s channels_last\n", ta, tb);
    printf("parameters: fluke %lld, torch %lld\n", fparams, tparams);
    if (fparams != tparams) {
        printf("FAIL: parameter counts differ (fluke %lld, torch %lld): the two models are not the "
               "same, "
               "the ratio means nothing\n",
               fparams, tparams);
        return 1;
    }
    return 0;
}
