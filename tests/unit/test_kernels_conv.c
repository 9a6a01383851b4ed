/* conv2d CPU kernels against a naive double-precision reference written here, whose own backward
 * is checked by central finite differences. A grid covers kernel 1/3/5, stride 1/2, dilation
 * 1/2/3, groups 1/2/depthwise, symmetric and TF-same padding, odd and even sizes, batch 2; plus
 * one-row im2col tiles, thread-count independence, the padding helpers and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/conv.h"
#include "runtime/cpu/conv_internal.h"
#include "runtime/rng.h"
#include "tests/unit/support/numcmp.h"

/* The worst error of the float kernels over every case, as a fraction of its rigorous bound. */
static nc_worst g_worst;

/* ---- naive double reference ----------------------------------------------------------------- */

typedef struct ref_dims {
    int OH, OW, Cig, Cog;
} ref_dims;

static ref_dims dims_of(const fl_conv2d_params *p) {
    ref_dims d;
    d.OH = (p->H + p->pad_top + p->pad_bottom - p->dilation_h * (p->KH - 1) - 1) / p->stride_h + 1;
    d.OW = (p->W + p->pad_left + p->pad_right - p->dilation_w * (p->KW - 1) - 1) / p->stride_w + 1;
    d.Cig = p->C_in / p->groups;
    d.Cog = p->C_out / p->groups;
    return d;
}

#define XI(n, h, w, c) ((((size_t)(n) * p->H + (h)) * p->W + (w)) * p->C_in + (c))
#define YI(n, h, w, c) ((((size_t)(n) * d.OH + (h)) * d.OW + (w)) * p->C_out + (c))
#define WI(co, ci, kh, kw) ((((size_t)(co) * d.Cig + (ci)) * p->KH + (kh)) * p->KW + (kw))

/* Visits every (output, input, weight) index triple of the convolution: the definition itself. */
#define FOR_EACH_TAP(body)                                                                     \
    for (int n = 0; n < p->N; n++)                                                             \
        for (int oh = 0; oh < d.OH; oh++)                                                      \
            for (int ow = 0; ow < d.OW; ow++)                                                  \
                for (int co = 0; co < p->C_out; co++) {                                        \
                    int g = co / d.Cog;                                                        \
                    for (int ci = 0; ci < d.Cig; ci++)                                         \
                        for (int kh = 0; kh < p->KH; kh++)                                     \
                            for (int kw = 0; kw < p->KW; kw++) {                               \
                                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;   \
                                int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;  \
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;    \
                                size_t xi = XI(n, ih, iw, g * d.Cig + ci);                     \
                                size_t yi = YI(n, oh, ow, co);                                 \
                                size_t wi = WI(co, ci, kh, kw);                                \
                                body;                                                          \
                            }                                                                  \
                }

static void ref_forward(const fl_conv2d_params *p, const double *x, const double *w,
                        const double *b, double *y) {
    ref_dims d = dims_of(p);
    size_t ny = (size_t)p->N * d.OH * d.OW * p->C_out;
    for (size_t i = 0; i < ny; i++) y[i] = b ? b[i % p->C_out] : 0.0;
    FOR_EACH_TAP(y[yi] += x[xi] * w[wi]);
}

static void ref_backward(const fl_conv2d_params *p, const double *x, const double *w,
                         const double *dy, double *dx, double *dw, double *db) {
    ref_dims d = dims_of(p);
    memset(dx, 0, (size_t)p->N * p->H * p->W * p->C_in * sizeof(double));
    memset(dw, 0, (size_t)p->C_out * d.Cig * p->KH * p->KW * sizeof(double));
    memset(db, 0, (size_t)p->C_out * sizeof(double));
    FOR_EACH_TAP(dx[xi] += dy[yi] * w[wi]; dw[wi] += dy[yi] * x[xi]);
    size_t ny = (size_t)p->N * d.OH * d.OW * p->C_out;
    for (size_t i = 0; i < ny; i++) db[i % p->C_out] += dy[i];
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void fill(fl_rng *r, float *f, double *dd, size_t n) {
    for (size_t i = 0; i < n; i++) {
        f[i] = fl_rng_normal(r);
        dd[i] = f[i];
    }
}

static double maxabs(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double *abs_copy(const double *a, size_t n) {
    double *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = fabs(a[i]);
    return r;
}

/* L = sum(y * r): dL/d(input) is the reference backward applied to dy = r. */
static double loss(const fl_conv2d_params *p, const double *x, const double *w, const double *b,
                   const double *r, double *ybuf, size_t ny) {
    ref_forward(p, x, w, b, ybuf);
    double s = 0;
    for (size_t i = 0; i < ny; i++) s += ybuf[i] * r[i];
    return s;
}

/* Central differences on up to `probes` entries of t (all when t is small). The loss is linear
 * in each argument, so a large step is exact up to rounding. */
static void fd_check(const char *what, const fl_conv2d_params *p, double *x, double *w,
                     double *b, const double *r, double *t, size_t nt, const double *grad,
                     double *ybuf, size_t ny, fl_rng *rng) {
    const double h = 0.5;
    double scale = maxabs(grad, nt);
    size_t probes = nt < 10 ? nt : 10;
    for (size_t k = 0; k < probes; k++) {
        size_t i = nt <= 10 ? k : fl_rng_below(rng, (uint32_t)nt);
        double keep = t[i];
        t[i] = keep + h;
        double lp = loss(p, x, w, b, r, ybuf, ny);
        t[i] = keep - h;
        double lm = loss(p, x, w, b, r, ybuf, ny);
        t[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double err = fabs(fd - grad[i]) / fmax(fabs(grad[i]), fmax(1e-3 * scale, 1e-12));
        if (!(err <= 1e-6)) fail_msg("%s: finite difference %.12g vs analytic %.12g at %zu", what, fd, grad[i], i);
    }
}

/* Runs one case: reference FD check, then the float kernels (default and one-row tiles)
 * against the reference. Returns nothing; fails the test on a mismatch. */
static void run_case(const fl_conv2d_params *p, int with_bias, uint64_t seed) {
    fl_err e;
    int OH, OW;
    if (fl_conv2d_check(p, &OH, &OW, &e)) fail_msg("unexpected: %s", e.msg);
    ref_dims d = dims_of(p);
    assert_int_equal(OH, d.OH);
    assert_int_equal(OW, d.OW);
    size_t nx = fl_conv2d_x_numel(p), ny = fl_conv2d_y_numel(p), nw = fl_conv2d_w_numel(p);
    size_t nb = (size_t)p->C_out;
    assert_int_equal(ny, (size_t)p->N * d.OH * d.OW * p->C_out);
    fl_rng rng;
    fl_rng_init(&rng, seed, 3);
    float *xf = malloc(nx * 4), *wf = malloc(nw * 4), *bf = malloc(nb * 4), *dyf = malloc(ny * 4);
    float *yf = malloc(ny * 4), *dxf = malloc(nx * 4), *dwf = malloc(nw * 4), *dbf = malloc(nb * 4);
    double *x = malloc(nx * 8), *w = malloc(nw * 8), *b = malloc(nb * 8), *dy = malloc(ny * 8);
    double *y = malloc(ny * 8), *dx = malloc(nx * 8), *dw = malloc(nw * 8), *db = malloc(nb * 8);
    double *ybuf = malloc(ny * 8);
    fill(&rng, xf, x, nx);
    fill(&rng, wf, w, nw);
    fill(&rng, bf, b, nb);
    fill(&rng, dyf, dy, ny);
    const double *bias = with_bias ? b : NULL;

    ref_forward(p, x, w, bias, y);
    ref_backward(p, x, w, dy, dx, dw, db);
    fd_check("dx", p, x, w, (double *)bias, dy, x, nx, dx, ybuf, ny, &rng);
    fd_check("dw", p, x, w, (double *)bias, dy, w, nw, dw, ybuf, ny, &rng);
    if (with_bias) fd_check("db", p, x, w, b, dy, b, nb, db, ybuf, ny, &rng);

    /* sum |terms| of every output element: the reference on absolute values (the ops are
     * linear in each argument, so this is exactly sum |x| |w| per output, etc.) */
    double *ax = abs_copy(x, nx), *aw = abs_copy(w, nw), *ab = abs_copy(b, nb), *ady = abs_copy(dy, ny);
    double *my = malloc(ny * 8), *mdx = malloc(nx * 8), *mdw = malloc(nw * 8), *mdb = malloc(nb * 8);
    ref_forward(p, ax, aw, with_bias ? ab : NULL, my);
    ref_backward(p, ax, aw, ady, mdx, mdw, mdb);
    /* Limits: a float32 sum of L rounded products is within gamma_L ~ L*u times sum|terms| of
     * the exact value whatever the summation order, so these bounds hold on every BLAS kernel
     * and blocking; +1 allows one more rounding (the bias, a final store). */
    double ly = (double)d.Cig * p->KH * p->KW + 2, lx = (double)d.Cog * p->KH * p->KW + 1;
    double lw = (double)p->N * d.OH * d.OW + 1, lb = lw;
    size_t budgets[2] = {(size_t)1 << 20, 1}; /* default tiles, and one-row tiles */
    for (int bi = 0; bi < 2; bi++) {
        memset(yf, 0xff, ny * 4); /* NaN: every output must be written */
        memset(dxf, 0xff, nx * 4);
        memset(dwf, 0xff, nw * 4);
        memset(dbf, 0xff, nb * 4);
        assert_int_equal(fl_conv2d_forward_ex(p, xf, wf, with_bias ? bf : NULL, yf, budgets[bi], &e), 0);
        assert_int_equal(fl_conv2d_backward_data_ex(p, dyf, wf, dxf, budgets[bi], &e), 0);
        assert_int_equal(fl_conv2d_backward_weight_ex(p, xf, dyf, dwf, with_bias ? dbf : NULL, budgets[bi], &e), 0);
        nc_res ry = nc_sumbound(NC_F32(yf), NC_F64(y), NC_F64(my), ny);
        nc_res rx = nc_sumbound(NC_F32(dxf), NC_F64(dx), NC_F64(mdx), nx);
        nc_res rw = nc_sumbound(NC_F32(dwf), NC_F64(dw), NC_F64(mdw), nw);
        nc_res rb = with_bias ? nc_sumbound(NC_F32(dbf), NC_F64(db), NC_F64(mdb), nb) : (nc_res){0};
        int ok = nc_worst_add(&g_worst, "y", ry, ly) & nc_worst_add(&g_worst, "dx", rx, lx) &
                 nc_worst_add(&g_worst, "dw", rw, lw) & (!with_bias || nc_worst_add(&g_worst, "db", rb, lb));
        if (!ok)
            fail_msg("N=%d H=%d W=%d Ci=%d Co=%d k=%dx%d s=%d d=%d g=%d pad=%d,%d,%d,%d budget=%zu: "
                     "error in units of u*sum|terms| y %.3g (limit %g) dx %.3g (%g) dw %.3g (%g) db %.3g (%g); "
                     "non-finite %zu %zu %zu %zu",
                     p->N, p->H, p->W, p->C_in, p->C_out, p->KH, p->KW, p->stride_h,
                     p->dilation_h, p->groups, p->pad_top, p->pad_left, p->pad_bottom,
                     p->pad_right, budgets[bi], ry.fig, ly, rx.fig, lx, rw.fig, lw, rb.fig, lb,
                     ry.nonfinite, rx.nonfinite, rw.nonfinite, rb.nonfinite);
    }
    free(ax); free(aw); free(ab); free(ady); free(my); free(mdx); free(mdw); free(mdb);
    free(xf); free(wf); free(bf); free(dyf); free(yf); free(dxf); free(dwf); free(dbf);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db); free(ybuf);
}

static fl_conv2d_params make(int N, int H, int W, int Ci, int Co, int k, int s, int dil, int g,
                             int tf_same) {
    fl_conv2d_params p = {.N = N, .H = H, .W = W, .C_in = Ci, .C_out = Co, .KH = k, .KW = k,
                          .stride_h = s, .stride_w = s, .dilation_h = dil, .dilation_w = dil,
                          .groups = g};
    if (tf_same) {
        fl_conv2d_pad_tf_same(H, k, s, dil, &p.pad_top, &p.pad_bottom);
        fl_conv2d_pad_tf_same(W, k, s, dil, &p.pad_left, &p.pad_right);
    } else {
        p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = fl_conv2d_pad_symmetric(k, dil);
    }
    return p;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_grid(void **state) {
    (void)state;
    const int ks[] = {1, 3, 5}, ss[] = {1, 2}, ds[] = {1, 2, 3};
    int cases = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int si = 0; si < 2; si++)
            for (int di = 0; di < 3; di++)
                for (int gi = 0; gi < 3; gi++)
                    for (int tf = 0; tf < 2; tf++) {
                        int k = ks[ki], s = ss[si], dil = ds[di];
                        if (k == 1 && dil > 1) continue; /* dilation is meaningless for 1x1 */
                        /* odd and even sizes alternate through the grid */
                        int H = (cases % 2) ? 7 : 8, W = (cases % 3) ? 6 : 9;
                        int Ci = 4, Co = 6, g = 1;
                        if (gi == 1) g = 2;
                        if (gi == 2) Ci = Co = g = 5; /* depthwise, odd channel count */
                        fl_conv2d_params p = make(2, H, W, Ci, Co, k, s, dil, g, tf);
                        run_case(&p, cases % 2 == 0, 100 + (uint64_t)cases);
                        cases++;
                    }
    assert_true(cases >= 80);
    nc_worst_print(&g_worst, "float kernels vs double reference (units of u*sum|terms|, limit: reduction length + 1)");
}

static void test_special_shapes(void **state) {
    (void)state;
    /* Asymmetric explicit padding (YOLOv5 layer 0 is 6x6 s2 p2; here with unequal sides). */
    fl_conv2d_params p = make(2, 10, 9, 3, 4, 6, 2, 1, 1, 0);
    p.pad_top = 2; p.pad_bottom = 1; p.pad_left = 0; p.pad_right = 3;
    run_case(&p, 1, 1);
    /* Rectangular kernel, different strides and dilations per axis. */
    p = make(2, 9, 11, 4, 4, 3, 1, 1, 1, 0);
    p.KW = 2; p.stride_w = 2; p.dilation_h = 2; p.pad_top = 2; p.pad_bottom = 2;
    run_case(&p, 0, 2);
    /* Depthwise with a wide channel count (vector body plus remainder) and 5x5 stride 2. */
    p = make(3, 9, 8, 37, 37, 5, 2, 1, 37, 1);
    run_case(&p, 1, 3);
    /* Channel multiplier 2 (groups == C_in, C_out = 2*C_in): general grouped path. */
    p = make(2, 6, 7, 3, 6, 3, 1, 1, 3, 0);
    run_case(&p, 1, 4);
    /* 1x1 stride 2 (general path with K = C_in) and a 1x1 GEMM with many channels. */
    p = make(2, 7, 8, 16, 12, 1, 2, 1, 1, 0);
    run_case(&p, 1, 5);
    p = make(3, 5, 4, 33, 17, 1, 1, 1, 1, 0);
    run_case(&p, 1, 6);
    /* Weight gradients split over output-channel blocks: a 3x3 conv with one slab (< 1024
     * output pixels), and a pointwise GEMM over pixel slabs AND channel blocks. */
    p = make(2, 12, 12, 4, 40, 3, 1, 1, 1, 0);
    run_case(&p, 1, 8);
    p = make(3, 20, 20, 8, 36, 1, 1, 1, 1, 0);
    run_case(&p, 0, 9);
    /* Kernel exactly as large as the padded input: a 1x1 output. */
    p = make(1, 4, 4, 2, 3, 5, 1, 1, 1, 0);
    p.pad_top = p.pad_left = 1; p.pad_bottom = p.pad_right = 0;
    run_case(&p, 1, 7);
    nc_worst_print(&g_worst, "float kernels vs double reference, with the special shapes");
}

static void test_padding_helpers(void **state) {
    (void)state;
    assert_int_equal(fl_conv2d_pad_symmetric(3, 1), 1);
    assert_int_equal(fl_conv2d_pad_symmetric(5, 1), 2);
    assert_int_equal(fl_conv2d_pad_symmetric(3, 3), 3);
    assert_int_equal(fl_conv2d_pad_symmetric(1, 1), 0);
    int a, b;
    /* 224, k3 s2: out 112, total = 111*2 + 3 - 224 = 1 -> (0, 1), extra pixel after. */
    fl_conv2d_pad_tf_same(224, 3, 2, 1, &a, &b);
    assert_int_equal(a, 0); assert_int_equal(b, 1);
    /* 7, k3 s1: total 2 -> (1, 1). */
    fl_conv2d_pad_tf_same(7, 3, 1, 1, &a, &b);
    assert_int_equal(a, 1); assert_int_equal(b, 1);
    /* 8, k5 s2: out 4, total = 6 + 5 - 8 = 3 -> (1, 2). */
    fl_conv2d_pad_tf_same(8, 5, 2, 1, &a, &b);
    assert_int_equal(a, 1); assert_int_equal(b, 2);
    /* 9, k1 s2: total = 8 + 1 - 9 = 0. */
    fl_conv2d_pad_tf_same(9, 1, 2, 1, &a, &b);
    assert_int_equal(a, 0); assert_int_equal(b, 0);
    /* dilation 3, k3 s1 on 10: total = 9 + 7 - 10 = 6 -> (3, 3). */
    fl_conv2d_pad_tf_same(10, 3, 1, 3, &a, &b);
    assert_int_equal(a, 3); assert_int_equal(b, 3);
    /* TF-same output size is ceil(in / stride). */
    for (int in = 1; in < 20; in++)
        for (int s = 1; s <= 3; s++) {
            fl_conv2d_pad_tf_same(in, 5, s, 2, &a, &b);
            assert_int_equal(fl_conv2d_out_size(in, 5, s, 2, a, b), (in + s - 1) / s);
        }
    assert_int_equal(fl_conv2d_out_size(56, 3, 1, 1, 1, 1), 56);
    assert_int_equal(fl_conv2d_out_size(56, 3, 2, 1, 1, 1), 28);
    assert_int_equal(fl_conv2d_out_size(640, 6, 2, 1, 2, 2), 320);
    assert_int_equal(fl_conv2d_out_size(4, 5, 1, 1, 0, 0), -1);
    assert_int_equal(fl_conv2d_out_size(0, 1, 1, 1, 0, 0), -1);
}

/* Same bits whatever the OpenMP thread count (OpenBLAS keeps its own thread count). */
static void test_thread_count_independent(void **state) {
    (void)state;
    fl_conv2d_params cases[5] = {make(2, 13, 12, 6, 8, 3, 1, 2, 2, 0),
                                 make(2, 13, 12, 24, 24, 5, 2, 1, 24, 1),
                                 make(2, 13, 12, 16, 8, 1, 1, 1, 1, 0),
                                 make(2, 12, 12, 4, 40, 3, 1, 1, 1, 0),  /* channel blocks */
                                 make(3, 20, 20, 8, 36, 1, 1, 1, 1, 0)}; /* slabs x blocks, 1x1 */
    int saved = omp_get_max_threads();
    for (int c = 0; c < 5; c++) {
        fl_conv2d_params *p = &cases[c];
        size_t nx = fl_conv2d_x_numel(p), ny = fl_conv2d_y_numel(p), nw = fl_conv2d_w_numel(p);
        float *in = malloc((nx + ny + nw) * 4), *out[2];
        fl_rng r;
        fl_rng_init(&r, 9, (uint64_t)c);
        for (size_t i = 0; i < nx + ny + nw; i++) in[i] = fl_rng_normal(&r);
        const float *x = in, *dy = in + nx, *w = in + nx + ny;
        size_t nout = ny + nx + nw + (size_t)p->C_out;
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(t == 0 ? 1 : 3);
            float *o = out[t] = malloc(nout * 4);
            fl_err e;
            /* Tiles of a few rows: several tiles per thread, so the tile order matters too. */
            assert_int_equal(fl_conv2d_forward_ex(p, x, w, w, o, 4096, &e), 0);
            assert_int_equal(fl_conv2d_backward_data_ex(p, dy, w, o + ny, 4096, &e), 0);
            assert_int_equal(fl_conv2d_backward_weight_ex(p, x, dy, o + ny + nx, o + ny + nx + nw, 4096, &e), 0);
        }
        assert_memory_equal(out[0], out[1], nout * 4);
        free(out[0]);
        free(out[1]);
        free(in);
    }
    omp_set_num_threads(saved);
}

/* The GEMM paths hold OpenBLAS at one thread during a call; the caller's setting comes back.
 * Needs a threaded OpenBLAS (pthreads or OpenMP build; Debian's default is openblas-pthread): a
 * serial build reports 1 thread whatever is set, so there is nothing to restore. */
static void test_blas_threads_restored(void **state) {
    (void)state;
    if (openblas_get_parallel() == 0) {
        printf("skipped: OpenBLAS is a serial build (openblas_get_parallel() == 0)\n");
        skip();
    }
    int before = openblas_get_num_threads();
    openblas_set_num_threads(2);
    fl_conv2d_params p = make(1, 6, 6, 4, 4, 3, 1, 1, 1, 0);
    float x[144] = {0}, w[144] = {0}, y[144], dx[144], dw[144];
    fl_err e;
    assert_int_equal(fl_conv2d_forward(&p, x, w, NULL, y, &e), 0);
    assert_int_equal(openblas_get_num_threads(), 2);
    assert_int_equal(fl_conv2d_backward_data(&p, y, w, dx, &e), 0);
    assert_int_equal(fl_conv2d_backward_weight(&p, x, y, dw, NULL, &e), 0);
    assert_int_equal(openblas_get_num_threads(), 2);
    openblas_set_num_threads(before);
}

static void expect_error(fl_conv2d_params p, const char *needle) {
    fl_err e = {{0}};
    float buf[64] = {0};
    assert_int_equal(fl_conv2d_check(&p, NULL, NULL, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
    e.msg[0] = 0;
    assert_int_equal(fl_conv2d_forward(&p, buf, buf, NULL, buf, &e), -1);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "conv2d forward")) fail_msg("forward message '%s'", e.msg);
    assert_int_equal(fl_conv2d_backward_data(&p, buf, buf, buf, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("backward_data message '%s'", e.msg);
    assert_int_equal(fl_conv2d_backward_weight(&p, buf, buf, buf, buf, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("backward_weight message '%s'", e.msg);
    assert_int_equal(fl_conv2d_x_numel(&p), 0);
    assert_int_equal(fl_conv2d_y_numel(&p), 0);
    assert_int_equal(fl_conv2d_w_numel(&p), 0);
}

static void test_bad_input(void **state) {
    (void)state;
    fl_conv2d_params ok = make(1, 4, 4, 4, 4, 3, 1, 1, 1, 0), p;
    p = ok; p.groups = 3; expect_error(p, "groups=3 must divide");
    p = ok; p.C_out = 6; p.groups = 4; expect_error(p, "must divide");
    p = ok; p.groups = 0; expect_error(p, "groups must be >= 1");
    p = ok; p.KH = 7; p.pad_top = p.pad_bottom = 1; expect_error(p, "larger than the padded input");
    p = ok; p.dilation_w = 3; p.pad_left = p.pad_right = 0; expect_error(p, "larger than the padded input");
    p = ok; p.N = 0; expect_error(p, "sizes must be positive");
    p = ok; p.H = 0; expect_error(p, "sizes must be positive");
    p = ok; p.C_in = 0; expect_error(p, "sizes must be positive");
    p = ok; p.C_out = -2; expect_error(p, "sizes must be positive");
    p = ok; p.KW = 0; expect_error(p, "kernel must be at least 1x1");
    p = ok; p.stride_h = 0; expect_error(p, "stride must be >= 1");
    p = ok; p.dilation_h = 0; expect_error(p, "dilation must be >= 1");
    p = ok; p.pad_right = -1; expect_error(p, "padding must be >= 0");
    p = ok; p.N = 1 << 20; p.H = p.W = 1 << 12; expect_error(p, "too large");
    fl_err e;
    assert_int_equal(fl_conv2d_check(NULL, NULL, NULL, &e), -1);
    float buf[256] = {0};
    assert_int_equal(fl_conv2d_forward(&ok, NULL, buf, NULL, buf, &e), -1);
    assert_non_null(strstr(e.msg, "x is NULL"));
    assert_int_equal(fl_conv2d_backward_data(&ok, buf, NULL, buf, &e), -1);
    assert_non_null(strstr(e.msg, "w is NULL"));
    assert_int_equal(fl_conv2d_backward_weight(&ok, buf, buf, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "dw is NULL"));
    /* dbias NULL is allowed */
    assert_int_equal(fl_conv2d_backward_weight(&ok, buf, buf, buf, NULL, &e), 0);
}

int main(void) {
    nc_worst_init(&g_worst);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padding_helpers),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_special_shapes),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_blas_threads_restored),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
