/* Training throughput of EfficientNet-B0 at 224 px (runtime/models/effnet.c) against timm's
 * efficientnet_b0 in PyTorch, same machine, same thread count, same run: one step = forward,
 * softmax cross-entropy over 1000 classes, backward, AdamW update; batch BATCH; best of REPS
 * after a warm-up step; images/s and the ratio fluke / PyTorch (> 1: fluke faster) against
 * PyTorch's faster layout (NCHW or channels_last). The two sides alternate for ROUNDS rounds
 * (fluke, torch, fluke, torch) and each keeps its best, so a burst of load from other processes
 * on a shared machine does not land on one side only. The peer is tests/bench/bench_effnet_torch.py
 * (needs torch and timm under /usr/bin/python3); without them it prints "skipped: ...".
 * Threads: OMP_NUM_THREADS (default: all cores), applied to OpenMP, OpenBLAS and PyTorch alike. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/models/effnet.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

#define BATCH 4
#define REPS 2
#define ROUNDS 2
#define RES 224

typedef struct fluke_side {
    fl_pstore *s;
    fl_graph *g;
    fl_optim *o;
    uint64_t step;
} fluke_side;

static void fluke_free(fluke_side *f) {
    fl_optim_free(f->o);
    fl_graph_free(f->g);
    fl_pstore_free(f->s);
}

/* dt: FL_F32, or FL_BF16 for autocast (bf16 convs and linears, fp32 master weights). */
static int fluke_setup(fluke_side *f, fl_dtype dt, fl_err *e) {
    memset(f, 0, sizeof *f);
    fl_effnet_cfg c;
    if (fl_effnet_preset("efficientnet_b0", &c, e) < 0) return -1;
    fl_pstore *s = f->s = fl_pstore_new(FL_F32, 1, e);
    if (!s) return -1;
    fl_graph *g = f->g = fl_graph_new(s, FL_MODE_TRAIN, e);
    if (!g) return -1;
    if (dt != FL_F32 && fl_graph_set_autocast(g, dt) < 0) return fl_errf(e, "%s", fl_graph_error(g));
    fl_id x = fl_input(g, "x", 4, (int64_t[]){BATCH, RES, RES, 3});
    fl_id y = fl_input_labels(g, "y", BATCH);
    fl_id loss = fl_softmax_ce(g, fl_effnet_build(g, x, &c, "", NULL), y, 0.0);
    if (fl_graph_compile(g, loss, e) < 0) return -1;
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    float *xv = fl_graph_value(g, x);
    for (size_t i = 0; i < (size_t)BATCH * RES * RES * 3; i++) xv[i] = fl_rng_uniform(&r);
    int32_t *yv = fl_graph_value(g, y);
    for (int i = 0; i < BATCH; i++) yv[i] = i;
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, e) < 0) return -1;
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
    f->o = fl_optim_create(&oc, &pl, e);
    return f->o ? 0 : -1;
}

/* One warm-up step, then the best of REPS steps: images/s into *ips if better. */
static int fluke_round(fluke_side *f, double *ips, fl_err *e) {
    double best = 1e30;
    for (int it = 0; it <= REPS; it++) {
        double t0 = fl_now();
        fl_graph_set_rng(f->g, 3, f->step++);
        fl_optim_zero_grad(f->o);
        if (fl_graph_forward(f->g, e) < 0 || fl_graph_backward(f->g, NULL, e) < 0) return -1;
        fl_optim_step(f->o);
        double dt = fl_now() - t0;
        if (it > 0 && dt < best) best = dt;
    }
    if (BATCH / best > *ips) *ips = BATCH / best;
    return 0;
}

/* 0 with both layouts' images/s; 1 when the peer is unavailable (why in skip). */
static int run_torch(int threads, int bf16, double *nchw, double *cl, char *skip, size_t cap) {
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_effnet_torch.py %d %d %d %s 2>/dev/null",
             src ? src : ".", threads, REPS, BATCH, bf16 ? "bf16" : "fp32");
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(skip, cap, "cannot start /usr/bin/python3");
        return 1;
    }
    char line[512] = "";
    int ok = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "effnet %lf %lf", nchw, cl) == 2) ok = 1;
        else if (strncmp(line, "skipped: ", 9) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(skip, cap, "%.200s", line + 9);
        }
    }
    int st = pclose(f);
    if (!ok) {
        if (!skip[0]) snprintf(skip, cap, "PyTorch/timm peer failed (exit %d)", st);
        return 1;
    }
    return 0;
}

int main(void) {
    int threads = omp_get_max_threads();
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) threads = atoi(env);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    fl_err e = {{0}};
    /* fp32, then bf16 autocast (PyTorch: torch.autocast("cpu", torch.bfloat16)), same run */
    for (int bf = 0; bf < 2; bf++) {
        fluke_side fs;
        if (fluke_setup(&fs, bf ? FL_BF16 : FL_F32, &e) < 0) {
            fprintf(stderr, "bench_effnet: %s\n", e.msg);
            fluke_free(&fs);
            return 1;
        }
        double f = 0, a = 0, b = 0;
        char skip[256] = "";
        int peer = 1;
        for (int r = 0; r < ROUNDS; r++) {
            if (fluke_round(&fs, &f, &e) < 0) {
                fprintf(stderr, "bench_effnet: %s\n", e.msg);
                fluke_free(&fs);
                return 1;
            }
            if (peer) {
                double ra = 0, rb = 0;
                if (run_torch(threads, bf, &ra, &rb, skip, sizeof skip)) peer = 0;
                a = ra > a ? ra : a;
                b = rb > b ? rb : b;
            }
        }
        fluke_free(&fs);
        const char *p = bf ? "bf16" : "fp32";
        printf("efficientnet_b0 train step %s, %dx%dpx, batch %d, %d threads: fluke %.2f img/s\n", p, RES, RES,
               BATCH, threads, f);
        if (!peer) {
            printf("skipped: %s; no %s ratio\n", skip, p);
            continue;
        }
        double best = a > b ? a : b;
        printf("timm efficientnet_b0 %s: %.2f img/s NCHW, %.2f img/s channels_last\n", p, a, b);
        printf("ratio fluke / torch %s (best layout): %.3f\n", p, f / best);
    }
    return 0;
}
