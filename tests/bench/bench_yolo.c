/* YOLOv5n training throughput at 320 px against PyTorch on the same machine, same thread count,
 * same run: one step = forward of the runtime graph, fl_yolo_loss (ComputeLoss and its head
 * gradient) on fixed synthetic targets, backward, SGD (nesterov, momentum 0.937, weight decay
 * 5e-4). Images/s, best of REPS after two warm-ups (ROUNDS alternating rounds), and the ratio fluke / PyTorch (> 1: fluke
 * faster) against PyTorch's faster layout. The peer is tests/bench/bench_yolo_torch.py (the port in
 * tests/fixtures/gen_models_yolo.py) run with /usr/bin/python3; without torch: "skipped: ...".
 * YOLOv5n at 320 runs twice: fp32, then bf16 autocast against torch.autocast("cpu", bfloat16).
 * Threads: OMP_NUM_THREADS (default: all cores). On a loaded machine OMP_WAIT_POLICY=passive
 * changes both sides a lot (spinning barriers); it reaches the peer through the environment. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/models/yolo.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

#define REPS 3

/* The cases: yolov5n at 320 px (80 classes), and the smoke detector (configs/base.json's
 * detector section: width 0.125, one class, 128 px, batch 8). */
typedef struct bcase {
    const char *name;
    int img, batch, nc;
    double width;
} bcase;
static const bcase CASES[] = {
    {"yolov5n 320 px    ", 320, 4, 80, 0.25},
    {"smoke det 128 px  ", 128, 8, 1, 0.125},
};

/* 4 boxes per image: the formula of bench_yolo_torch.py */
static size_t make_targets(fl_yolo_target *t, const bcase *bc) {
    size_t n = 0;
    for (int b = 0; b < bc->batch; b++)
        for (int k = 0; k < 4; k++)
            t[n++] = (fl_yolo_target){b, (b * 7 + k * 13) % bc->nc, 0.2f + 0.2f * k, 0.3f + 0.1f * ((b + k) % 4),
                                      0.05f + 0.07f * k, 0.08f + 0.05f * ((b + 2 * k) % 5)};
    return n;
}

/* dt: FL_F32, or FL_BF16 for autocast (bf16 convs, fp32 master weights and loss). */
static double bench_fluke(const bcase *bc, fl_dtype dt, fl_err *e) {
    double best = -1;
    fl_yolo_cfg c;
    if (fl_yolo_cfg_make(&c, 0.33, bc->width, bc->nc, e) < 0) return -1;
    fl_pstore *s = fl_pstore_new(FL_F32, 1, e);
    fl_graph *g = s ? fl_graph_new(s, FL_MODE_TRAIN, e) : NULL;
    fl_optim *o = NULL;
    float *grad = NULL;
    if (!g) goto out;
    if (dt != FL_F32 && fl_graph_set_autocast(g, dt) < 0) {
        fl_errf(e, "%s", fl_graph_error(g));
        goto out;
    }
    fl_id x = fl_input(g, "x", 4, (int64_t[]){bc->batch, bc->img, bc->img, 3});
    fl_yolo_heads h;
    if (fl_yolo_build(g, s, x, &c, &h, e) < 0) goto out;
    fl_id flat = fl_yolo_flat_heads(g, &h);
    if (fl_graph_compile(g, flat, e) < 0) goto out;
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, e) < 0) goto out;
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_SGD, 0.01);
    oc.momentum = 0.937;
    oc.nesterov = 1;
    oc.weight_decay = 5e-4;
    if (!(o = fl_optim_create(&oc, &pl, e))) goto out;
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    float *xin = fl_graph_value(g, x);
    for (int64_t i = 0; i < fl_graph_numel(g, x); i++) xin[i] = fl_rng_uniform(&r);
    fl_yolo_target t[64];
    size_t nt = make_targets(t, bc);
    fl_yolo_hyp hyp = fl_yolo_hyp_default(bc->img);
    grad = malloc(fl_yolo_total_numel(&h) * sizeof *grad);
    if (!grad) goto out;
    best = 1e30;
    for (int rep = 0; rep < REPS + 2; rep++) {
        double t0 = fl_now();
        fl_optim_zero_grad(o);
        fl_yolo_loss_out lo;
        if (fl_graph_forward(g, e) < 0 ||
            fl_yolo_loss(&c, &hyp, &h, fl_graph_value(g, flat), t, nt, grad, &lo, e) < 0 ||
            fl_graph_backward(g, grad, e) < 0) {
            best = -1;
            goto out;
        }
        fl_optim_step(o);
        double dt = fl_now() - t0;
        if (rep >= 2 && dt < best) best = dt;
    }
    best = bc->batch / best;
out:
    free(grad);
    fl_optim_free(o);
    fl_graph_free(g);
    fl_pstore_free(s);
    return best;
}

/* 0 with peer[0..1] (NCHW, channels_last); 1 when torch is absent; -1 when the peer failed. */
static int run_torch(int threads, const bcase *bc, int bf16, double *peer) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return 1;
    const char *src = getenv("FLUKE_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_yolo_torch.py %d %d %d %d %g %d %s",
             src ? src : ".", threads, REPS, bc->batch, bc->img, bc->width, bc->nc, bf16 ? "bf16" : "fp32");
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "yolo %lf %lf", &peer[0], &peer[1]) == 2) got = 1;
    int rc = pclose(f);
    return (rc == 0 && got) ? 0 : -1;
}

/* Rounds alternate fluke and PyTorch and each side keeps its best: the machine is shared, so a
 * burst of someone else's load should not land on one side only. */
#define ROUNDS 2

static int run_case(const bcase *bc, int bf16, int threads) {
    const char *p_ = bf16 ? "bf16" : "fp32";
    printf("YOLOv5 (depth 0.33, width %g, %d classes) training step %s at %d px, batch %d, %d thread(s), "
           "best of %d x %d rounds\n", bc->width, bc->nc, p_, bc->img, bc->batch, threads, REPS, ROUNDS);
    fl_err e = {{0}};
    double fl = -1, peer[2] = {0, 0};
    int rc = 0;
    for (int round = 0; round < ROUNDS; round++) {
        double f = bench_fluke(bc, bf16 ? FL_BF16 : FL_F32, &e);
        if (f < 0) {
            fprintf(stderr, "bench_yolo: %s\n", e.msg);
            return 1;
        }
        if (f > fl) fl = f;
        double p[2];
        if (rc == 0) rc = run_torch(threads, bc, bf16, p);
        if (rc == 0)
            for (int k = 0; k < 2; k++)
                if (p[k] > peer[k]) peer[k] = p[k];
    }
    printf("  fluke  %s train step %s (SGD)  %8.3f img/s\n", bc->name, p_, fl);
    if (rc == 1) {
        printf("skipped: PyTorch not found (/usr/bin/python3 cannot import torch); no ratio\n");
        return 0;
    }
    if (rc < 0) {
        printf("skipped: the PyTorch peer failed to run; no ratio\n");
        return 0;
    }
    double bp = peer[0] > peer[1] ? peer[0] : peer[1];
    printf("  torch  %s train step %s (SGD)  %8.3f img/s NCHW, %8.3f channels_last\n", bc->name, p_, peer[0], peer[1]);
    printf("  ratio fluke/torch (best layout): %s train step %s %.2f\n", bc->name, p_, fl / bp);
    return 0;
}

int main(void) {
    int threads = omp_get_max_threads();
    openblas_set_num_threads(threads);
    int rc = 0;
    /* fp32 for every case, then YOLOv5n at 320 with bf16 autocast (issue 14's measure) */
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) rc |= run_case(&CASES[i], 0, threads);
    rc |= run_case(&CASES[0], 1, threads);
    return rc;
}
