/* Finite-difference checks (double precision, relative error < 1e-6) of the layer, loss and
 * ArcFace ops' backward passes, including every parameter gradient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/runtime_fd_harness.h"

static const int64_t S4[4] = {2, 3, 2, 5};

static fl_id b_linear(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 3, (int64_t[]){2, 3, 6});
    return fl_linear_layer(g, x, "fc", 4, c != NULL);
}
static fl_id b_bn(fl_graph *g, void *c) { return fl_bn_layer(g, fd_in(g, "x", 4, S4), "bn", 1e-3, 0.1); }
static fl_id b_bn2d(fl_graph *g, void *c) { return fl_bn_layer(g, fd_in(g, "x", 2, (int64_t[]){6, 3}), "bn", 1e-5, 0.1); }
static fl_id b_gem(fl_graph *g, void *c) { return fl_gem_layer(g, fd_in(g, "x", 4, S4), "pool", 3.0, 1e-6); }
static fl_id b_l2(fl_graph *g, void *c) { return fl_l2norm(g, fd_in(g, "x", 3, (int64_t[]){2, 3, 5}), 1e-12); }
static fl_id b_dropout(fl_graph *g, void *c) { return fl_dropout(g, fd_in(g, "x", 4, S4), 0.3); }
static fl_id b_droppath(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, (int64_t[]){6, 2, 2, 3});
    return fl_drop_path(g, x, 0.4);
}
static fl_id b_concat(fl_graph *g, void *c) {
    fl_id xs[3] = {fd_in(g, "a", 4, (int64_t[]){2, 3, 2, 2}), fd_in(g, "b", 4, (int64_t[]){2, 3, 2, 5}),
                   fd_in(g, "c", 4, (int64_t[]){2, 3, 2, 1})};
    return fl_concat(g, 3, xs, -1);
}
static fl_id b_concat_axis1(fl_graph *g, void *c) {
    fl_id xs[2] = {fd_in(g, "a", 3, (int64_t[]){2, 1, 3}), fd_in(g, "b", 3, (int64_t[]){2, 4, 3})};
    return fl_concat(g, 2, xs, 1);
}
static fl_id b_slice(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, S4);
    /* two overlapping slices of one input: their gradients add */
    fl_id a = fl_slice(g, x, -1, 1, 3), b = fl_slice(g, x, 3, 0, 2);
    fl_id y = fl_mul(g, fl_concat(g, 2, (fl_id[]){a, fl_silu(g, b)}, -1), x);
    return fl_concat(g, 2, (fl_id[]){y, fl_slice(g, x, 1, 1, 2)}, 1); /* and one on axis 1 */
}
static fl_id b_reshape(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, S4);
    return fl_silu(g, fl_reshape(g, x, 2, (int64_t[]){6, 10}));
}

static void test_layers(void **state) {
    fd_case c = fd_default("linear", b_linear, (void *)1);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("linear_nobias", b_linear, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bn_train", b_bn, NULL);
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bn_train_2d", b_bn2d, NULL);
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bn_eval", b_bn, NULL);
    c.mode = FL_MODE_EVAL;
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("gem", b_gem, NULL);
    c.lo = -0.5, c.hi = 2, c.min_abs = 0.05;
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("l2norm", b_l2, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("dropout", b_dropout, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("dropout_eval", b_dropout, NULL);
    c.mode = FL_MODE_EVAL;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("drop_path", b_droppath, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("concat", b_concat, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("concat_axis1", b_concat_axis1, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("slice", b_slice, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("reshape", b_reshape, NULL);
    assert_true(fd_check(&c) < 1e-6);
}

static fl_id b_ce(fl_graph *g, void *c) {
    fl_id z = fd_in(g, "z", 2, (int64_t[]){5, 7});
    return fl_softmax_ce(g, z, fl_input_labels(g, "y", 5), c ? 0.1 : 0.0);
}
static fl_id b_bce(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 3, (int64_t[]){2, 3, 4});
    fl_id t = fd_in(g, "t", 3, (int64_t[]){2, 3, 4});
    return fl_bce_logits(g, x, t);
}
static void test_losses(void **state) {
    fd_case c = fd_default("softmax_ce", b_ce, NULL);
    c.lo = -3, c.hi = 3, c.nclass = 7;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("softmax_ce_ls", b_ce, (void *)1);
    c.lo = -3, c.hi = 3, c.nclass = 7;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bce_logits", b_bce, NULL);
    c.lo = -3, c.hi = 3;
    assert_true(fd_check(&c) < 1e-6);
}

typedef struct arc_ctx {
    double m;
    int per_class;
} arc_ctx;
static fl_id b_subcenter(fl_graph *g, void *c) {
    return fl_subcenter_max(g, fd_in(g, "cos", 2, (int64_t[]){3, 12}), 3);
}
static fl_id b_margin(fl_graph *g, void *cv) {
    arc_ctx *c = cv;
    fl_id cos = fd_in(g, "cos", 2, (int64_t[]){6, 5});
    fl_id lab = fl_input_labels(g, "y", 6);
    fl_id mc = -1;
    if (c->per_class) mc = fl_buffer(g, "margins", 1, (int64_t[]){5}, (fl_init){FL_INIT_UNIFORM, 0.1, 1.2});
    return fl_arc_margin(g, cos, lab, mc, c->m, 30.0);
}
/* The whole sub-center ArcFace head into the loss. */
static fl_id b_arc_head(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 2, (int64_t[]){4, 6});
    fl_id w = fl_parameter(g, "head.weight", 2, (int64_t[]){5 * 2, 6}, (fl_init){FL_INIT_NORMAL, 0, 1}, 0);
    fl_id cos = fl_linear(g, fl_l2norm(g, x, 1e-12), fl_l2norm(g, w, 1e-12), -1);
    fl_id lg = fl_arc_margin(g, fl_subcenter_max(g, cos, 2), fl_input_labels(g, "y", 4), -1, 0.3, 20.96);
    return fl_softmax_ce(g, lg, fl_input_labels(g, "y2", 4), 0.0);
}
static void test_arcface(void **state) {
    fd_case c = fd_default("subcenter_max", b_subcenter, NULL);
    assert_true(fd_check(&c) < 1e-6);
    arc_ctx plain = {0.3, 0};
    c = fd_default("arc_margin", b_margin, &plain);
    c.lo = -0.94, c.hi = 0.99, c.nclass = 5; /* above th = cos(pi - 0.3) = -0.955 */
    assert_true(fd_check(&c) < 1e-6);
    c.name = "arc_margin_fallback";
    c.lo = -0.999, c.hi = -0.96; /* every cosine at or below th: cos t - m sin(pi - m) */
    assert_true(fd_check(&c) < 1e-6);
    arc_ctx dyn = {0, 1};
    c = fd_default("arc_margin_dynamic", b_margin, &dyn);
    c.lo = -0.99, c.hi = 0.99, c.nclass = 5;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("arcface_head", b_arc_head, NULL);
    c.nclass = 5;
    assert_true(fd_check(&c) < 1e-6);
}

/* DOLG's orthogonal fusion, composed from broadcasting ops (SPECS.md section 4):
 * f_orth = f_l - ((f_l . f_g) / ||f_g||^2) f_g, pooled over space, concatenated with f_g. */
static fl_id b_dolg_fusion(fl_graph *g, void *c) {
    fl_id fl = fd_in(g, "f_l", 4, (int64_t[]){2, 3, 3, 4});
    fl_id fg = fd_in(g, "f_g", 4, (int64_t[]){2, 1, 1, 4});
    fl_id dot = fl_sum(g, fl_mul(g, fl, fg), 0x8, 1);  /* [2,3,3,1] */
    fl_id nrm = fl_sum(g, fl_mul(g, fg, fg), 0x8, 1);  /* [2,1,1,1] */
    fl_id orth = fl_sub(g, fl, fl_mul(g, fl_div(g, dot, nrm), fg));
    fl_id pooled = fl_global_avgpool(g, orth);
    return fl_concat(g, 2, (fl_id[]){pooled, fg}, -1);
}

static void test_composites(void **state) {
    fd_case c = fd_default("dolg_orthogonal_fusion", b_dolg_fusion, NULL);
    assert_true(fd_check(&c) < 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layers),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_arcface),
        cmocka_unit_test(test_composites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
