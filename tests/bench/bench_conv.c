/* Benchmark of the CPU conv2d kernels (runtime/cpu/conv.c) against PyTorch on the same machine,
 * with the same thread count, in the same run. Representative shapes: a 3x3 64->64 conv at 56x56
 * (im2col + GEMM), a 1x1 64->256 conv (one GEMM), and EfficientNet's 5x5 stride-2 depthwise conv
 * on 144 channels (direct kernel); batch 8, no bias. Forward and backward (input and weight
 * gradients) in images/s, and the ratio fluke / PyTorch (> 1: fluke faster) against PyTorch's
 * faster layout of NCHW and channels_last. Each side is timed best of REPS in each of ROUNDS
 * alternating rounds (fluke, torch, fluke, torch, ...) and keeps its best, so a burst of load
 * from other processes on a shared machine does not land on one side only. The peer is tests/bench/bench_conv_torch.py,
 * run with /usr/bin/python3; without an importable torch it prints "skipped: PyTorch not found".
 * Threads: OMP_NUM_THREADS (default: all cores), applied to OpenMP, OpenBLAS and PyTorch alike. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/cpu/conv.h"
#include "runtime/rng.h"

#define REPS 4
#define ROUNDS 3

typedef struct bench_case {
    const char *name;
    int N, H, W, Ci, Co, k, stride, pad, groups;
} bench_case;

static const bench_case CASES[] = {
    {"conv3x3_64to64_56px", 8, 56, 56, 64, 64, 3, 1, 1, 1},
    {"conv1x1_64to256_56px", 8, 56, 56, 64, 256, 1, 1, 0, 1},
    {"dw5x5_s2_144ch_56px", 8, 56, 56, 144, 144, 5, 2, 2, 144},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

typedef struct timing {
    double fwd, bwd; /* images/s */
} timing;

static fl_conv2d_params params_of(const bench_case *c) {
    fl_conv2d_params p = {.N = c->N, .H = c->H, .W = c->W, .C_in = c->Ci, .C_out = c->Co,
                          .KH = c->k, .KW = c->k, .stride_h = c->stride, .stride_w = c->stride,
                          .dilation_h = 1, .dilation_w = 1, .groups = c->groups,
                          .pad_top = c->pad, .pad_left = c->pad, .pad_bottom = c->pad,
                          .pad_right = c->pad};
    return p;
}

static int run_fluke(const bench_case *c, timing *t, fl_err *e) {
    fl_conv2d_params p = params_of(c);
    if (fl_conv2d_check(&p, NULL, NULL, e)) return -1;
    size_t nx = fl_conv2d_x_numel(&p), ny = fl_conv2d_y_numel(&p), nw = fl_conv2d_w_numel(&p);
    float *x = malloc(nx * 4), *dx = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4);
    float *w = malloc(nw * 4), *dw = malloc(nw * 4);
    int rc = -1;
    if (!x || !dx || !y || !dy || !w || !dw) {
        fl_errf(e, "out of memory");
        goto out;
    }
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    for (size_t i = 0; i < nx; i++) x[i] = fl_rng_normal(&r);
    for (size_t i = 0; i < ny; i++) dy[i] = fl_rng_normal(&r);
    for (size_t i = 0; i < nw; i++) w[i] = fl_rng_normal(&r);
    double bf = 1e30, bb = 1e30;
    for (int it = 0; it <= REPS; it++) { /* iteration 0 is the warm-up */
        double t0 = fl_now();
        if (fl_conv2d_forward(&p, x, w, NULL, y, e)) goto out;
        double t1 = fl_now();
        if (fl_conv2d_backward_data(&p, dy, w, dx, e) ||
            fl_conv2d_backward_weight(&p, x, dy, dw, NULL, e))
            goto out;
        double t2 = fl_now();
        if (it > 0) {
            bf = t1 - t0 < bf ? t1 - t0 : bf;
            bb = t2 - t1 < bb ? t2 - t1 : bb;
        }
    }
    if (c->N / bf > t->fwd) t->fwd = c->N / bf;
    if (c->N / bb > t->bwd) t->bwd = c->N / bb;
    rc = 0;
out:
    free(x); free(dx); free(y); free(dy); free(w); free(dw);
    return rc;
}

/* Runs the PyTorch peer once (all cases); raises layouts[i][*] to any better figure. Returns 1
 * when PyTorch is unavailable, -1 on another failure. */
/* layouts[i] = best img/s so far: {fwd nchw, bwd nchw, fwd channels_last, bwd channels_last}. */
static int run_torch(int threads, double layouts[][4], fl_err *e) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return 1;
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_conv_torch.py %d %d",
                     src ? src : ".", threads, REPS);
    for (int i = 0; i < NCASES; i++) {
        const bench_case *c = &CASES[i];
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s:%d:%d:%d:%d:%d:%d:%d:%d:%d", c->name,
                      c->N, c->H, c->W, c->Ci, c->Co, c->k, c->stride, c->pad, c->groups);
    }
    FILE *f = popen(cmd, "r");
    if (!f) return fl_errf(e, "cannot run the PyTorch peer");
    char line[512], name[128];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        double v[4];
        if (sscanf(line, "%127s %lf %lf %lf %lf", name, &v[0], &v[1], &v[2], &v[3]) != 5) continue;
        for (int i = 0; i < NCASES; i++)
            if (!strcmp(name, CASES[i].name)) {
                for (int j = 0; j < 4; j++)
                    if (v[j] > layouts[i][j]) layouts[i][j] = v[j];
                got++;
            }
    }
    int st = pclose(f);
    if (st != 0 || got != NCASES)
        return fl_errf(e, "PyTorch peer failed (status %d, %d of %d cases)", st, got, NCASES);
    return 0;
}

int main(void) {
    int threads = omp_get_max_threads();
    openblas_set_num_threads(threads);
    printf("conv2d CPU benchmark: batch 8, %d thread(s), best of %d x %d alternating rounds\n",
           threads, REPS, ROUNDS);
    timing ours[NCASES], peer[NCASES];
    double layouts[NCASES][4];
    memset(ours, 0, sizeof ours);
    memset(layouts, 0, sizeof layouts);
    fl_err e;
    int have_torch = 1;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < NCASES; i++)
            if (run_fluke(&CASES[i], &ours[i], &e)) {
                fprintf(stderr, "bench_conv: %s: %s\n", CASES[i].name, e.msg);
                return 1;
            }
        if (!have_torch) continue;
        int rc = run_torch(threads, layouts, &e);
        if (rc == 1) have_torch = 0;
        if (rc < 0) {
            fprintf(stderr, "bench_conv: %s\n", e.msg);
            return 1;
        }
    }
    for (int i = 0; i < NCASES; i++)
        printf("  fluke %-24s fwd %8.1f img/s  bwd %8.1f img/s\n", CASES[i].name, ours[i].fwd,
               ours[i].bwd);
    if (!have_torch) {
        printf("skipped: PyTorch not found (/usr/bin/python3 cannot import torch); no ratios\n");
        return 0;
    }
    for (int i = 0; i < NCASES; i++) {
        double *v = layouts[i];
        peer[i].fwd = v[0] > v[2] ? v[0] : v[2];
        peer[i].bwd = v[1] > v[3] ? v[1] : v[3];
        printf("  torch %-24s fwd %8.1f img/s (nchw %.1f, channels_last %.1f)  "
               "bwd %8.1f img/s (nchw %.1f, channels_last %.1f)\n",
               CASES[i].name, peer[i].fwd, v[0], v[2], peer[i].bwd, v[1], v[3]);
    }
    for (int i = 0; i < NCASES; i++)
        printf("  ratio fluke/torch %-24s fwd %.2f  bwd %.2f  fwd+bwd %.2f\n", CASES[i].name,
               ours[i].fwd / peer[i].fwd, ours[i].bwd / peer[i].bwd,
               (1 / peer[i].fwd + 1 / peer[i].bwd) / (1 / ours[i].fwd + 1 / ours[i].bwd));
    return 0;
}
