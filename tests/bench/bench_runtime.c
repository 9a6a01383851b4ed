/* Benchmark of the runtime's graph (op table + planner + autodiff + CPU ops) against PyTorch on
 * the same machine, with the same thread count, in the same run:
 *   conv    a 3x3 64->64 conv at 56x56, batch 8: forward + backward (input and weight grads)
 *   mbconv  one training step of an EfficientNet MBConv block with SE (40 -> 240 -> 40, 5x5
 *           depthwise, SE 10; 28x28, batch 8): forward, mean loss, backward, AdamW step
 * in images/s, best of REPS, and the ratio fluke / PyTorch (> 1: fluke faster) against
 * PyTorch's faster layout (NCHW or channels_last). The peer is tests/bench/bench_runtime_torch.py
 * run with /usr/bin/python3; without an importable torch: "skipped: PyTorch not found".
 * Threads: OMP_NUM_THREADS (default: all cores) for OpenMP, OpenBLAS and PyTorch alike. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/graph.h"
#include "runtime/optim.h"
#include "runtime/rng.h"
#include "tests/unit/runtime_blocks.h"

#define REPS 5

static void fill(float *p, int64_t n, uint64_t stream, float scale) {
    fl_rng r;
    fl_rng_init(&r, 7, stream);
    for (int64_t i = 0; i < n; i++) p[i] = scale * fl_rng_normal(&r);
}

/* Best time of REPS runs of one iteration (after two warm-ups); -1 on error. */
static double time_graph(fl_graph *g, fl_optim *o, fl_err *e) {
    double best = 1e30;
    for (int r = 0; r < REPS + 2; r++) {
        double t0 = fl_now();
        if (o) fl_optim_zero_grad(o);
        if (fl_graph_forward(g, e) < 0 || fl_graph_backward(g, NULL, e) < 0) return -1;
        if (o) fl_optim_step(o);
        double dt = fl_now() - t0;
        if (r >= 2 && dt < best) best = dt;
    }
    return best;
}

static double bench_conv(fl_err *e) {
    fl_pstore *s = fl_pstore_new(FL_F32, 1, e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){8, 56, 56, 64});
    fl_input_requires_grad(g, x);
    fl_id y = fl_conv2d_layer(g, x, "conv", 64, 3, 1, 1, 1, FL_PAD_AUTO, 0);
    fl_id loss = fl_sum(g, y, 0xf, 0);
    double ips = -1;
    if (fl_graph_compile(g, loss, e) == 0) {
        fill(fl_graph_value(g, x), fl_graph_numel(g, x), 1, 1.0f);
        double t = time_graph(g, NULL, e);
        if (t > 0) ips = 8 / t;
    }
    fl_graph_free(g);
    fl_pstore_free(s);
    return ips;
}

static double bench_mbconv(fl_err *e) {
    fl_pstore *s = fl_pstore_new(FL_F32, 1, e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){8, 28, 28, 40});
    fl_id loss = fl_mean(g, blk_mbconv(g, x, "", 40, 240, 10, 5, 1e-3, 0.1), 0xf, 0);
    double ips = -1;
    fl_param_list pl;
    fl_optim *o = NULL;
    if (fl_graph_compile(g, loss, e) == 0 && fl_pstore_params(s, &pl, e) == 0) {
        fill(fl_graph_value(g, x), fl_graph_numel(g, x), 2, 1.0f);
        fl_optim_cfg cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
        o = fl_optim_create(&cfg, &pl, e);
        size_t peak, total;
        fl_graph_mem(g, &peak, &total);
        printf("  mbconv graph: %d nodes, planned arena %.1f MB (no reuse: %.1f MB)\n",
               fl_graph_num_nodes(g), peak / 1e6, total / 1e6);
        double t = o ? time_graph(g, o, e) : -1;
        if (t > 0) ips = 8 / t;
    }
    fl_optim_free(o);
    fl_graph_free(g);
    fl_pstore_free(s);
    return ips;
}

/* 0 with peer[0..3] filled (conv nchw, conv cl, mbconv nchw, mbconv cl); 1 when torch is absent. */
static int run_torch(int threads, double *peer) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return 1;
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_runtime_torch.py %d %d", src ? src : ".", threads, REPS);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512], name[64];
    int got = 0;
    double a, b;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %lf %lf", name, &a, &b) == 3) {
            int k = strcmp(name, "conv") == 0 ? 0 : strcmp(name, "mbconv") == 0 ? 2 : -1;
            if (k < 0) continue;
            peer[k] = a;
            peer[k + 1] = b;
            got++;
        }
    int rc = pclose(f);
    return (rc == 0 && got == 2) ? 0 : -1;
}

int main(void) {
    int threads = omp_get_max_threads();
    openblas_set_num_threads(threads);
    printf("runtime graph CPU benchmark: batch 8, %d thread(s), best of %d\n", threads, REPS);
    fl_err e = {{0}};
    double conv = bench_conv(&e);
    double mb = conv > 0 ? bench_mbconv(&e) : -1;
    if (conv < 0 || mb < 0) {
        fprintf(stderr, "bench_runtime: %s\n", e.msg);
        return 1;
    }
    printf("  fluke  conv3x3 64->64 56px fwd+bwd   %9.2f img/s\n", conv);
    printf("  fluke  mbconv+SE train step (AdamW)  %9.2f img/s\n", mb);
    double peer[4];
    int rc = run_torch(threads, peer);
    if (rc == 1) {
        printf("skipped: PyTorch not found (/usr/bin/python3 cannot import torch); no ratios\n");
        return 0;
    }
    if (rc < 0) {
        printf("skipped: the PyTorch peer failed to run; no ratios\n");
        return 0;
    }
    double bc = peer[0] > peer[1] ? peer[0] : peer[1], bm = peer[2] > peer[3] ? peer[2] : peer[3];
    printf("  torch  conv fwd+bwd                  %9.2f img/s NCHW, %9.2f channels_last\n", peer[0], peer[1]);
    printf("  torch  mbconv train step             %9.2f img/s NCHW, %9.2f channels_last\n", peer[2], peer[3]);
    printf("  ratio fluke/torch (best layout): conv %.2f, mbconv train step %.2f\n", conv / bc, mb / bm);
    return 0;
}
