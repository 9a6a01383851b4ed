/* Finite-difference checks (double precision, relative error < 1e-6) of the conv and pooling
 * ops, and agreement of the float32 kernels (runtime/cpu) with the double reference path within
 * float32 rounding (test_float_kernels_match_reference). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/runtime_fd_harness.h"
#include "tests/unit/support/numcmp.h"

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

/* The float32 kernels agree with the double reference on the same data, forward and every
 * gradient, element by element within the rounding a float32 sum may do (numcmp.h,
 * nc_sumbound): |ours - ref| <= (L + 3) * u * sum|terms|, L the reduction length (sum|terms| is
 * the double path run on absolute values: the op is linear in each argument), +3 for the bias
 * and for rounding x, w and the seed to float32. absolute = 1 runs on |x|, |w|, |seed|. */
static void run_conv(fl_dtype t, const conv_ctx *c, int absolute, double *out, double *gx, double *gw, int64_t *oh_ow) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(t, 3, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fd_in(g, "x", 4, (int64_t[]){2, c->h, c->w, c->cin});
    fl_id y = fl_conv2d_layer(g, x, "conv", c->cout, c->k, c->stride, c->dil, c->groups, c->pad, c->bias);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    int64_t nx = fl_graph_numel(g, x), ny = fl_graph_numel(g, y), sh[FL_MAX_DIMS];
    fl_graph_shape(g, y, sh);
    oh_ow[0] = sh[1], oh_ow[1] = sh[2];
    void *xv = fl_graph_value(g, x);
    void *seed = malloc((size_t)ny * 8);
    for (int64_t i = 0; i < nx; i++) {
        double v = sin(0.7 * (double)i + 0.3);
        if (absolute) v = fabs(v);
        if (t == FL_F64) ((double *)xv)[i] = v;
        else ((float *)xv)[i] = (float)v;
    }
    for (int64_t i = 0; i < ny; i++) {
        double v = cos(0.3 * (double)i);
        if (absolute) v = fabs(v);
        if (t == FL_F64) ((double *)seed)[i] = v;
        else ((float *)seed)[i] = (float)v;
    }
    size_t nw, nb = 0;
    void *wv = fl_pstore_data(s, "conv.weight", &nw), *bv = c->bias ? fl_pstore_data(s, "conv.bias", &nb) : NULL;
    for (size_t i = 0; absolute && i < nw; i++)
        if (t == FL_F64) ((double *)wv)[i] = fabs(((double *)wv)[i]);
        else ((float *)wv)[i] = fabsf(((float *)wv)[i]);
    for (size_t i = 0; absolute && i < nb; i++)
        if (t == FL_F64) ((double *)bv)[i] = fabs(((double *)bv)[i]);
        else ((float *)bv)[i] = fabsf(((float *)bv)[i]);
    fl_pstore_zero_grad(s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, seed, &e), 0);
    void *wg = fl_pstore_grad(s, "conv.weight");
    void *yv = fl_graph_value(g, y), *xg = fl_graph_grad(g, x);
    for (int64_t i = 0; i < ny; i++) out[i] = t == FL_F64 ? ((double *)yv)[i] : ((float *)yv)[i];
    for (int64_t i = 0; i < nx; i++) gx[i] = t == FL_F64 ? ((double *)xg)[i] : ((float *)xg)[i];
    for (size_t i = 0; i < nw; i++) gw[i] = t == FL_F64 ? ((double *)wg)[i] : ((float *)wg)[i];
    free(seed);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_float_kernels_match_reference(void **state) {
    enum { BIG = 4096 };
    static double o32[BIG], o64[BIG], x32[BIG], x64[BIG], w32[BIG], w64[BIG], om[BIG], xm[BIG], wm[BIG];
    nc_worst w;
    nc_worst_init(&w);
    for (size_t k = 0; k < sizeof convs / sizeof *convs; k++) {
        const conv_ctx *c = &convs[k];
        int64_t d[2];
        run_conv(FL_F32, c, 0, o32, x32, w32, d);
        run_conv(FL_F64, c, 0, o64, x64, w64, d);
        run_conv(FL_F64, c, 1, om, xm, wm, d);
        size_t nx = (size_t)(2 * c->h * c->w * c->cin), nw = (size_t)(c->cout * (c->cin / c->groups) * c->k * c->k);
        size_t ny = (size_t)(2 * d[0] * d[1] * c->cout);
        assert_true(nx <= BIG && nw <= BIG && ny <= BIG);
        double taps = (double)c->k * c->k;
        nc_res ry = nc_sumbound(NC_F64(o32), NC_F64(o64), NC_F64(om), ny);
        nc_res rx = nc_sumbound(NC_F64(x32), NC_F64(x64), NC_F64(xm), nx);
        nc_res rw = nc_sumbound(NC_F64(w32), NC_F64(w64), NC_F64(wm), nw);
        double ly = (double)c->cin / c->groups * taps + 3, lx = (double)c->cout / c->groups * taps + 3;
        double lw = 2.0 * d[0] * d[1] + 3;
        printf("conv#%zu: float kernels vs double reference, in u*sum|terms|: y %.2f (limit %g), dx %.2f (%g), dw %.2f (%g)\n",
               k, ry.fig, ly, rx.fig, lx, rw.fig, lw);
        nc_worst_add(&w, "y", ry, ly);
        nc_worst_add(&w, "dx", rx, lx);
        nc_worst_add(&w, "dw", rw, lw);
    }
    nc_worst_print(&w, "float kernels vs double reference");
    assert_int_equal(w.failed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_fd),
        cmocka_unit_test(test_pool_fd),
        cmocka_unit_test(test_float_kernels_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
