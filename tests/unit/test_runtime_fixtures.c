/* Forward and backward of every runtime op against PyTorch (tests/fixtures/runtime/, written by
 * tests/fixtures/gen_runtime.py): float32, per tensor within 10x its own float32 noise
 * (runtime_fixture_harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/cpu/conv.h"
#include "tests/unit/runtime_blocks.h"
#include "tests/unit/runtime_fixture_harness.h"
#include "tests/unit/support/numcmp.h"

static fl_id c_relu(fx *x) { return fl_relu(x->g, fx_in(x, "x")); }
static fl_id c_silu(fx *x) { return fl_silu(x->g, fx_in(x, "x")); }
static fl_id c_sigmoid(fx *x) { return fl_sigmoid(x->g, fx_in(x, "x")); }
static fl_id c_softplus(fx *x) { return fl_softplus(x->g, fx_in(x, "x")); }
static fl_id c_prelu(fx *x) { return fl_prelu(x->g, fx_in(x, "x"), fx_param(x, "act.weight", 0)); }
static fl_id c_scale(fx *x) { return fl_scale(x->g, fx_in(x, "x"), -1.5, 0.25); }
static fl_id c_mul(fx *x) { return fl_mul(x->g, fx_in(x, "a"), fx_in(x, "b")); }
static fl_id c_add(fx *x) { return fl_add(x->g, fx_in(x, "a"), fx_in(x, "b")); }
static fl_id c_sub(fx *x) { return fl_sub(x->g, fx_in(x, "a"), fx_in(x, "b")); }
static fl_id c_div(fx *x) { return fl_div(x->g, fx_in(x, "a"), fx_in(x, "b")); }
static fl_id c_sum_hw(fx *x) { return fl_sum(x->g, fx_in(x, "x"), 0x6, 1); }
static fl_id c_mean_all(fx *x) { return fl_mean(x->g, fx_in(x, "x"), 0xf, 0); }
static fl_id c_concat(fx *x) {
    fl_id v[3] = {fx_in(x, "a"), fx_in(x, "b"), fx_in(x, "c")};
    return fl_concat(x->g, 3, v, -1);
}
static fl_id c_reshape(fx *x) { return fl_reshape(x->g, fx_in(x, "x"), 2, (int64_t[]){8, 18}); }
static fl_id c_slice(fx *x) {
    fl_graph *g = x->g;
    fl_id v = fx_in(x, "x");
    fl_id a = fl_scale(g, fl_slice(g, v, 1, 1, 2), 2, 0);
    fl_id b = fl_slice(g, fl_sum(g, fl_slice(g, v, -1, 2, 3), 0x8, 1), 1, 1, 2);
    return fl_add(g, a, b);
}
static fl_id c_linear(fx *x) {
    return fl_linear(x->g, fx_in(x, "x"), fx_param(x, "fc.weight", 0), fx_param(x, "fc.bias", 0));
}
/* The fixture has no num_batches_tracked; the layer creates it (a buffer the test ignores). */
static fl_id c_bn(fx *x) {
    fx_param(x, "bn.weight", 0);
    return fl_bn_layer(x->g, fx_in(x, "x"), "bn", 1e-3, 0.03);
}
static fl_id c_gem(fx *x) { return fl_gem(x->g, fx_in(x, "x"), fx_param(x, "pool.p", 0), 1e-6); }
static fl_id c_l2norm(fx *x) { return fl_l2norm(x->g, fx_in(x, "x"), 1e-12); }
static fl_id c_ce(fx *x) { return fl_softmax_ce(x->g, fx_in(x, "z"), fx_in(x, "y"), 0.1); }
static fl_id c_bce(fx *x) { return fl_bce_logits(x->g, fx_in(x, "x"), fx_in(x, "t")); }
static fl_id c_arc(fx *x) { return fl_arc_margin(x->g, fx_in(x, "cos"), fx_in(x, "y"), -1, 0.3, 30.0); }
static fl_id c_arc_dyn(fx *x) {
    return fl_arc_margin(x->g, fx_in(x, "cos"), fx_in(x, "y"), fx_param(x, "margins", 1), 0, 20.96);
}
static fl_id c_subcenter(fx *x) { return fl_subcenter_max(x->g, fx_in(x, "cos"), 3); }
static fl_id c_head(fx *x) {
    fl_graph *g = x->g;
    fl_id lab = fx_in(x, "y");
    fl_id cos = fl_linear(g, fl_l2norm(g, fx_in(x, "x"), 1e-12), fl_l2norm(g, fx_param(x, "head.weight", 0), 1e-12), -1);
    return fl_softmax_ce(g, fl_arc_margin(g, fl_subcenter_max(g, cos, 3), lab, -1, 0.3, 30.0), lab, 0);
}

static fl_id conv_of(fx *x, int stride, int dil, int groups, const int pad[4], int bias) {
    return fl_conv2d(x->g, fx_in(x, "x"), fx_param(x, "conv.weight", 0), bias ? fx_param(x, "conv.bias", 0) : -1,
                     stride, dil, groups, pad);
}
static fl_id c_conv3(fx *x) { return conv_of(x, 1, 1, 1, (int[]){1, 1, 1, 1}, 1); }
/* TF same for 7x6 input, k3 s2: H pads (0,1)... computed by the layer helper in real models;
 * here from the same formula as the fixture script. */
static fl_id c_conv_same(fx *x) {
    int p[4];
    fl_conv2d_pad_tf_same(7, 3, 2, 1, &p[0], &p[2]);
    fl_conv2d_pad_tf_same(6, 3, 2, 1, &p[1], &p[3]);
    return conv_of(x, 2, 1, 1, p, 0);
}
static fl_id c_conv_dil(fx *x) { return conv_of(x, 1, 2, 1, (int[]){2, 2, 2, 2}, 0); }
static fl_id c_conv_g2(fx *x) { return conv_of(x, 1, 1, 2, (int[]){1, 1, 1, 1}, 0); }
static fl_id c_conv_dw(fx *x) {
    int p[4];
    fl_conv2d_pad_tf_same(7, 5, 2, 1, &p[0], &p[2]);
    fl_conv2d_pad_tf_same(6, 5, 2, 1, &p[1], &p[3]);
    return conv_of(x, 2, 1, 4, p, 0);
}
static fl_id c_conv1(fx *x) { return conv_of(x, 1, 1, 1, (int[]){0, 0, 0, 0}, 1); }
static fl_id c_maxpool(fx *x) { return fl_maxpool(x->g, fx_in(x, "x"), 5, 1, 2); }
static fl_id c_upsample(fx *x) { return fl_upsample_nearest(x->g, fx_in(x, "x"), 2); }
static fl_id c_gap(fx *x) { return fl_global_avgpool(x->g, fx_in(x, "x")); }
static fl_id c_mbconv(fx *x) { return blk_mbconv(x->g, fx_in(x, "x"), "", 8, 32, 2, 3, 1e-3, 0.1); }
static fl_id c_c3(fx *x) { return blk_c3(x->g, fx_in(x, "x"), 8, 1, 1); }

typedef struct fcase {
    const char *name;
    fl_mode mode;
    fx_build_fn build;
} fcase;

static const fcase cases[] = {
    {"relu", FL_MODE_TRAIN, c_relu},         {"silu", FL_MODE_TRAIN, c_silu},
    {"sigmoid", FL_MODE_TRAIN, c_sigmoid},   {"softplus", FL_MODE_TRAIN, c_softplus},
    {"prelu", FL_MODE_TRAIN, c_prelu},       {"scale", FL_MODE_TRAIN, c_scale},
    {"mul_se", FL_MODE_TRAIN, c_mul},        {"add_bias", FL_MODE_TRAIN, c_add},
    {"sub_bcast", FL_MODE_TRAIN, c_sub},     {"div", FL_MODE_TRAIN, c_div},
    {"sum_hw", FL_MODE_TRAIN, c_sum_hw},     {"mean_all", FL_MODE_TRAIN, c_mean_all},
    {"concat", FL_MODE_TRAIN, c_concat},     {"reshape", FL_MODE_TRAIN, c_reshape},
    {"slice", FL_MODE_TRAIN, c_slice},
    {"linear", FL_MODE_TRAIN, c_linear},     {"bn_train", FL_MODE_TRAIN, c_bn},
    {"bn_eval", FL_MODE_EVAL, c_bn},         {"gem", FL_MODE_TRAIN, c_gem},
    {"l2norm", FL_MODE_TRAIN, c_l2norm},     {"softmax_ce", FL_MODE_TRAIN, c_ce},
    {"bce_logits", FL_MODE_TRAIN, c_bce},    {"arc_margin", FL_MODE_TRAIN, c_arc},
    {"arc_margin_dynamic", FL_MODE_TRAIN, c_arc_dyn},
    {"subcenter_max", FL_MODE_TRAIN, c_subcenter},
    {"arcface_head", FL_MODE_TRAIN, c_head},
    {"conv3x3_bias", FL_MODE_TRAIN, c_conv3}, {"conv_s2_same", FL_MODE_TRAIN, c_conv_same},
    {"conv_dil2", FL_MODE_TRAIN, c_conv_dil},  {"conv_groups2", FL_MODE_TRAIN, c_conv_g2},
    {"conv_dw5_s2_same", FL_MODE_TRAIN, c_conv_dw}, {"conv1x1", FL_MODE_TRAIN, c_conv1},
    {"maxpool5", FL_MODE_TRAIN, c_maxpool},    {"upsample2", FL_MODE_TRAIN, c_upsample},
    {"global_avgpool", FL_MODE_TRAIN, c_gap},
    {"mbconv_se_train", FL_MODE_TRAIN, c_mbconv}, {"mbconv_se_eval", FL_MODE_EVAL, c_mbconv},
    {"c3_train", FL_MODE_TRAIN, c_c3},
};

static void test_ops_match_pytorch(void **state) {
    int bad = 0;
    nc_worst w;
    nc_worst_init(&w);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        double r = fx_run_w(cases[k].name, cases[k].mode, cases[k].build, &w);
        if (!(r <= FX_NOISE_LIMIT)) {
            printf("FAILED: %s (worst noise ratio %.3g)\n", cases[k].name, r);
            bad++;
        }
    }
    nc_worst_print(&w, "ops vs PyTorch, noise ratio");
    assert_int_equal(bad, 0);
    assert_int_equal(w.failed, 0);
}

/* Dropout and drop path cannot share PyTorch's random masks; their contract is checked here:
 * eval mode is the identity, train mode zeroes or scales by 1/(1-p), drop path per sample. */
static void test_dropout_contract(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    for (int mode = 0; mode < 2; mode++)
        for (int path = 0; path < 2; path++) {
            fl_graph *g = fl_graph_new(s, mode ? FL_MODE_TRAIN : FL_MODE_EVAL, &e);
            fl_graph_set_rng(g, 5, 0);
            fl_id x = fl_input(g, "x", 4, (int64_t[]){16, 2, 2, 3});
            fl_input_requires_grad(g, x);
            fl_id y = path ? fl_drop_path(g, x, 0.5) : fl_dropout(g, x, 0.5);
            assert_int_equal(fl_graph_compile(g, y, &e), 0);
            float *xv = fl_graph_value(g, x), seed[192];
            for (int i = 0; i < 192; i++) xv[i] = 1.0f + (float)i, seed[i] = 0.5f;
            assert_int_equal(fl_graph_forward(g, &e), 0);
            assert_int_equal(fl_graph_backward(g, seed, &e), 0);
            float *yv = fl_graph_value(g, y), *dx = fl_graph_grad(g, x);
            int dropped = 0;
            for (int i = 0; i < 192; i++) {
                if (!mode) {
                    assert_true(yv[i] == xv[i] && dx[i] == 0.5f);
                    continue;
                }
                int keep = yv[i] != 0.0f;
                dropped += !keep;
                assert_true(keep ? yv[i] == 2.0f * xv[i] && dx[i] == 1.0f : dx[i] == 0.0f);
                if (path) assert_true(keep == (yv[(i / 12) * 12] != 0.0f)); /* whole sample */
            }
            if (mode) assert_true(dropped > 0 && dropped < 192);
            fl_graph_free(g);
        }
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_match_pytorch),
        cmocka_unit_test(test_dropout_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
