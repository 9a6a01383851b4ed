/* Training throughput of EfficientNet-B0 at 224 px (runtime/models/effnet.c) against timm's
 * efficientnet_b0 in PyTorch, same machine, same thread count, same run: one step = forward,
 * softmax cross-entropy over 1000 classes, backward, AdamW update; batch BATCH; best of REPS
 * after a warm-up step; images/s and the ratio fluke / PyTorch (> 1: fluke faster) against
 * PyTorch's faster layout (NCHW or channels_last). The peer is tests/bench/bench_effnet_torch.py
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
#define REPS 3
#define RES 224

static int run_fluke(double *ips, fl_err *e) {
    fl_effnet_cfg c;
    if (fl_effnet_preset("efficientnet_b0", &c, e) < 0) return -1;
    fl_store *s = fl_store_new(FL_F32, 1, e);
    if (!s) return -1;
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, e);
    fl_optim *o = NULL;
    int rc = -1;
    if (!g) goto out;
    fl_id x = fl_input(g, "x", 4, (int64_t[]){BATCH, RES, RES, 3});
    fl_id y = fl_input_labels(g, "y", BATCH);
    fl_id loss = fl_softmax_ce(g, fl_effnet_build(g, x, &c, "", NULL), y, 0.0);
    if (fl_graph_compile(g, loss, e) < 0) goto out;
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    float *xv = fl_graph_value(g, x);
    for (size_t i = 0; i < (size_t)BATCH * RES * RES * 3; i++) xv[i] = fl_rng_uniform(&r);
    int32_t *yv = fl_graph_value(g, y);
    for (int i = 0; i < BATCH; i++) yv[i] = i;
    fl_param_list pl;
    if (fl_store_params(s, &pl, e) < 0) goto out;
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
    o = fl_optim_create(&oc, &pl, e);
    if (!o) goto out;
    double best = 1e30;
    for (int it = 0; it <= REPS; it++) {
        double t0 = fl_now();
        fl_graph_set_rng(g, 3, (uint64_t)it);
        fl_optim_zero_grad(o);
        if (fl_graph_forward(g, e) < 0 || fl_graph_backward(g, NULL, e) < 0) goto out;
        fl_optim_step(o);
        double dt = fl_now() - t0;
        if (it > 0 && dt < best) best = dt;
    }
    *ips = BATCH / best;
    rc = 0;
out:
    fl_optim_free(o);
    fl_graph_free(g);
    fl_store_free(s);
    return rc;
}

/* 0 with both layouts' images/s; 1 when the peer is unavailable (why in skip). */
static int run_torch(int threads, double *nchw, double *cl, char *skip, size_t cap) {
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_effnet_torch.py %d %d %d 2>/dev/null",
             src ? src : ".", threads, REPS, BATCH);
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
    double f = 0;
    if (run_fluke(&f, &e) < 0) {
        fprintf(stderr, "bench_effnet: %s\n", e.msg);
        return 1;
    }
    printf("efficientnet_b0 train step, %dx%dpx, batch %d, %d threads: fluke %.2f img/s\n", RES, RES, BATCH, threads, f);
    double a = 0, b = 0;
    char skip[256] = "";
    if (run_torch(threads, &a, &b, skip, sizeof skip)) {
        printf("skipped: %s; no ratio\n", skip);
        return 0;
    }
    double best = a > b ? a : b;
    printf("timm efficientnet_b0: %.2f img/s NCHW, %.2f img/s channels_last\n", a, b);
    printf("ratio fluke / torch (best layout): %.3f\n", f / best);
    return 0;
}
