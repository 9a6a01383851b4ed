/* Finite-difference checks (double precision, relative error < 1e-6) of the conv and pooling
 * ops, and agreement of the float32 kernels (runtime/cpu) with the double reference path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/runtime_fd_harness.h"

typedef struct conv_ctx {
    int cin, cout, k, stride, dil, groups, pad, bias, h, w;
} conv_ctx;

static fl_id b_conv(fl_graph *g, void *cv) {
    conv_ctx *c = cv;
    fl_id x = fd_in(g, "x", 4, (int64_t[]){2, c->h, c->w, c->cin});
    return fl_conv2d_layer(g, x, "conv", c->cout, c->k, c->stride, c->dil, c->groups, c->pad, c->bias);
}

static const conv_ctx convs[] = {
    {3, 4, 3, 1, 1, 1, FL_PAD_AUTO, 1, 5, 4},  /* dense 3x3 */
    {3, 4, 3, 2, 1, 1, FL_PAD_SAME, 0, 5, 6},  /* stride 2, TF same (asymmetric) */
    {2, 3, 3, 1, 2, 1, FL_PAD_AUTO, 0, 6, 5},  /* dilation 2 */
    {4, 6, 3, 1, 1, 2, 1, 1, 4, 4},            /* 2 groups */
    {4, 4, 5, 2, 1, 4, FL_PAD_SAME, 0, 7, 6},  /* depthwise 5x5 s2 same */
    {5, 3, 1, 1, 1, 1, 0, 1, 3, 4},            /* 1x1 with bias */
    {3, 4, 6, 2, 1, 1, 2, 0, 8, 8},            /* YOLOv5 stem: 6x6 s2 p2 */
};

static void test_conv_fd(void **state) {
    for (size_t k = 0; k < sizeof convs / sizeof *convs; k++) {
        char name[32];
        snprintf(name, sizeof name, "conv#%zu", k);
        fd_case c = fd_default(name, b_conv, (void *)&convs[k]);
        assert_true(fd_check(&c) < 1e-6);
    }
}

static fl_id b_maxpool(fl_graph *g, void *c) { return fl_maxpool(g, fd_in(g, "x", 4, (int64_t[]){2, 6, 5, 3}), 5, 1, 2); }
static fl_id b_maxpool_s2(fl_graph *g, void *c) { return fl_maxpool(g, fd_in(g, "x", 4, (int64_t[]){1, 6, 6, 2}), 3, 2, 1); }
static fl_id b_upsample(fl_graph *g, void *c) { return fl_upsample_nearest(g, fd_in(g, "x", 4, (int64_t[]){2, 3, 2, 3}), 2); }
static fl_id b_gap(fl_graph *g, void *c) { return fl_global_avgpool(g, fd_in(g, "x", 4, (int64_t[]){2, 3, 4, 5})); }
/* SPPF's chain: the same map pooled three times and everything concatenated. */
static fl_id b_sppf(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, (int64_t[]){1, 5, 5, 2});
    fl_id y1 = fl_maxpool(g, x, 5, 1, 2), y2 = fl_maxpool(g, y1, 5, 1, 2), y3 = fl_maxpool(g, y2, 5, 1, 2);
    return fl_concat(g, 4, (fl_id[]){x, y1, y2, y3}, -1);
}

static void test_pool_fd(void **state) {
    fd_case c = fd_default("maxpool5", b_maxpool, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("maxpool3s2", b_maxpool_s2, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("upsample2", b_upsample, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("global_avgpool", b_gap, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("sppf_chain", b_sppf, NULL);
    assert_true(fd_check(&c) < 1e-6);
}

/* The float32 kernels agree with the double reference on the same data (forward and every
 * gradient, relative to the largest magnitude, < 1e-5). */
static void run_conv(fl_dtype t, const conv_ctx *c, double *out, double *gx, double *gw) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(t, 3, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fd_in(g, "x", 4, (int64_t[]){2, c->h, c->w, c->cin});
    fl_id y = fl_conv2d_layer(g, x, "conv", c->cout, c->k, c->stride, c->dil, c->groups, c->pad, c->bias);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    int64_t nx = fl_graph_numel(g, x), ny = fl_graph_numel(g, y);
    void *xv = fl_graph_value(g, x);
    void *seed = malloc((size_t)ny * 8);
    for (int64_t i = 0; i < nx; i++) {
        double v = sin(0.7 * (double)i + 0.3);
        if (t == FL_F64) ((double *)xv)[i] = v;
        else ((float *)xv)[i] = (float)v;
    }
    for (int64_t i = 0; i < ny; i++) {
        double v = cos(0.3 * (double)i);
        if (t == FL_F64) ((double *)seed)[i] = v;
        else ((float *)seed)[i] = (float)v;
    }
    fl_pstore_zero_grad(s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, seed, &e), 0);
    size_t nw;
    void *wg = fl_pstore_grad(s, "conv.weight");
    fl_pstore_data(s, "conv.weight", &nw);
    void *yv = fl_graph_value(g, y), *xg = fl_graph_grad(g, x);
    for (int64_t i = 0; i < ny; i++) out[i] = t == FL_F64 ? ((double *)yv)[i] : ((float *)yv)[i];
    for (int64_t i = 0; i < nx; i++) gx[i] = t == FL_F64 ? ((double *)xg)[i] : ((float *)xg)[i];
    for (size_t i = 0; i < nw; i++) gw[i] = t == FL_F64 ? ((double *)wg)[i] : ((float *)wg)[i];
    free(seed);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static double maxrel(const double *a, const double *b, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        mr = fmax(mr, fabs(b[i]));
    }
    return md / fmax(mr, 1e-12);
}

static void test_float_kernels_match_reference(void **state) {
    enum { BIG = 4096 };
    static double o32[BIG], o64[BIG], x32[BIG], x64[BIG], w32[BIG], w64[BIG];
    for (size_t k = 0; k < sizeof convs / sizeof *convs; k++) {
        run_conv(FL_F32, &convs[k], o32, x32, w32);
        run_conv(FL_F64, &convs[k], o64, x64, w64);
        const conv_ctx *c = &convs[k];
        size_t nx = (size_t)(2 * c->h * c->w * c->cin), nw = (size_t)(c->cout * (c->cin / c->groups) * c->k * c->k);
        double r = fmax(maxrel(x32, x64, nx), maxrel(w32, w64, nw));
        printf("conv#%zu: float kernels vs double reference: grads rel %.2e\n", k, r);
        assert_true(r < 1e-5);
        assert_true(maxrel(o32, o64, 16) < 1e-5);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_fd),
        cmocka_unit_test(test_pool_fd),
        cmocka_unit_test(test_float_kernels_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
