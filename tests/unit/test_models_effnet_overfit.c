/* Learning works: a small EfficientNet (width 0.25, depth 0.25) + DOLG + neck + ArcFace overfits
 * 64 synthetic 32 px crops of 8 "individuals" to 100% training accuracy with AdamW on the CPU.
 * Accuracy is measured as inference does it: an eval-mode graph (BN running statistics, no
 * dropout) gives embeddings, and the predicted class is the nearest class centre by cosine. *
 * numeric test: rerun by tests/run.sh under another OPENBLAS_CORETYPE (the trajectory, hence
 * the epochs to 100%, moves with the BLAS kernels; 12 epochs on eight kernel sets, 60 allowed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/embed_head.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

/* Under AddressSanitizer the same training runs only SAN_EPOCHS epochs and checks that the loss
 * falls: the memory checks cover the whole path, and the sanitizer build stays quick; the normal
 * build asserts 100% accuracy. */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_SHORT 1
#else
#define SAN_SHORT 0
#endif
#define SAN_EPOCHS 6

#define NIMG 64
#define NCLS 8
#define SZ 32

/* Class c: a blob of colour col[c] (an ellipse for even c, a rectangle for odd c) on a noisy
 * background, with per-image jitter of position, size and brightness. NHWC, values in [0, 1]. */
static void render(float *img, int cls, fl_rng *r) {
    static const float col[NCLS][3] = {{1, 0.2f, 0.2f}, {0.2f, 1, 0.2f}, {0.2f, 0.2f, 1}, {1, 1, 0.2f},
                                       {1, 0.2f, 1},    {0.2f, 1, 1},    {1, 0.6f, 0.1f}, {0.6f, 0.3f, 1}};
    float cx = fl_rng_range(r, 11, 21), cy = fl_rng_range(r, 11, 21);
    float rx = fl_rng_range(r, 5, 8), ry = fl_rng_range(r, 5, 8), bright = fl_rng_range(r, 0.8f, 1.0f);
    for (int y = 0; y < SZ; y++)
        for (int x = 0; x < SZ; x++) {
            float dx = (x - cx) / rx, dy = (y - cy) / ry;
            int in = (cls & 1) ? (fabsf(dx) < 1 && fabsf(dy) < 1) : (dx * dx + dy * dy < 1);
            for (int ch = 0; ch < 3; ch++) {
                float v = in ? col[cls][ch] * bright : 0.4f;
                img[(y * SZ + x) * 3 + ch] = v + 0.05f * fl_rng_normal(r);
            }
        }
}

static void test_overfit_64_crops(void **state) {
    double t0 = fl_now();
    fl_err e = {{0}};
    fl_embed_cfg c = fl_embed_defaults(NCLS, 32);
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c.backbone, &e), 0);
    c.backbone.width = 0.25;
    c.backbone.depth = 0.25;
    c.dolg = fl_dolg_defaults(32);
    /* a short run: the BN running statistics (what eval mode uses) must keep up with the
     * weights, so every BN averages faster than the 0.1 / 0.01 defaults */
    c.backbone.bn_momentum = 0.3;
    c.dolg.att_bn_momentum = 0.3;
    c.neck_bn_momentum = 0.3;
    c.arc.s = 30;
    c.arc.m = 0.3;

    static float imgs[NIMG * SZ * SZ * 3];
    int32_t labels[NIMG];
    fl_rng r;
    fl_rng_init(&r, 42, 0);
    for (int i = 0; i < NIMG; i++) {
        labels[i] = i % NCLS;
        render(imgs + (size_t)i * SZ * SZ * 3, labels[i], &r);
    }

    const int B = 32;
    fl_pstore *s = fl_pstore_new(FL_F32, 11, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_embed_model m;
    assert_int_equal(fl_embed_build(g, &c, B, SZ, SZ, 1, &m, &e), 0);
    assert_int_equal(fl_graph_compile(g, m.loss, &e), 0);
    fl_graph *ev = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_embed_model me;
    assert_int_equal(fl_embed_build(ev, &c, NIMG, SZ, SZ, 0, &me, &e), 0);
    assert_int_equal(fl_graph_compile(ev, me.emb, &e), 0);

    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 3e-3);
    oc.weight_decay = 1e-4;
    fl_optim *o = fl_optim_create(&oc, &pl, &e);
    assert_non_null(o);

    int acc = 0, step = 0, epoch;
    float first = 0, last = 0;
    int max_epochs = SAN_SHORT ? SAN_EPOCHS : 60;
    for (epoch = 0; epoch < max_epochs && acc < NIMG; epoch++) {
        for (int b0 = 0; b0 < NIMG; b0 += B, step++) {
            /* a fixed interleaving: each batch holds every class */
            memcpy(fl_graph_value(g, m.x), imgs + (size_t)b0 * SZ * SZ * 3, (size_t)B * SZ * SZ * 3 * sizeof(float));
            memcpy(fl_graph_value(g, m.labels), labels + b0, (size_t)B * sizeof(int32_t));
            fl_graph_set_rng(g, 5, (uint64_t)step);
            fl_optim_zero_grad(o);
            assert_int_equal(fl_graph_forward(g, &e), 0);
            assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
            fl_optim_step(o);
            last = *(float *)fl_graph_value(g, m.loss);
            if (step == 0) first = last;
        }
        if (epoch % 3 != 2) continue;
        /* inference: nearest class centre by cosine on eval-mode embeddings */
        memcpy(fl_graph_value(ev, me.x), imgs, sizeof imgs);
        assert_int_equal(fl_graph_forward(ev, &e), 0);
        const float *emb = fl_graph_value(ev, me.emb);
        size_t nw = 0;
        const float *w = fl_pstore_data(s, "head.weight", &nw);
        assert_true(nw == (size_t)NCLS * 32);
        acc = 0;
        for (int i = 0; i < NIMG; i++) {
            int best = -1;
            double bc = -2;
            for (int k = 0; k < NCLS; k++) {
                double d = 0, nx = 0, nk = 0;
                for (int j = 0; j < 32; j++) {
                    d += emb[i * 32 + j] * w[k * 32 + j];
                    nx += emb[i * 32 + j] * emb[i * 32 + j];
                    nk += w[k * 32 + j] * w[k * 32 + j];
                }
                double cs = d / sqrt(nx * nk + 1e-30);
                if (cs > bc) bc = cs, best = k;
            }
            acc += best == labels[i];
        }
        printf("epoch %d (step %d): train loss %.4f, eval accuracy %d/%d, %.1f s\n", epoch + 1, step, last, acc, NIMG,
               fl_now() - t0);
    }
    printf("overfit: loss %.4f -> %.4f, accuracy %d/%d after %d epochs in %.1f s\n", first, last, acc, NIMG, epoch,
           fl_now() - t0);
    assert_true(last < first);
    if (SAN_SHORT) {
        printf("sanitizer build: short run (%d epochs), loss must fall; 100%% accuracy is checked in the normal build\n", SAN_EPOCHS);
        assert_true(last < 0.5f * first);
    } else {
        assert_int_equal(acc, NIMG);
    }
    fl_optim_free(o);
    fl_graph_free(ev);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overfit_64_crops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
