/* Pooling / upsampling CPU kernels against naive double-precision references written here, whose
 * backward passes are checked by central finite differences; PyTorch's tie and NaN rules for max
 * pool on hand-made cases; thread-count independence; bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/pool.h"
#include "runtime/rng.h"
#include "tests/unit/support/numcmp.h"

/* ---- naive double references ------------------------------------------------------------- */

#define XI(n, h, w, c) ((((size_t)(n) * p->H + (h)) * p->W + (w)) * p->C + (c))
#define YI(n, h, w, c) ((((size_t)(n) * OH + (h)) * OW + (w)) * p->C + (c))

static void out_dims(const fl_pool2d_params *p, int *OH, int *OW) {
    *OH = (p->H + p->pad_top + p->pad_bottom - p->dilation_h * (p->KH - 1) - 1) / p->stride_h + 1;
    *OW = (p->W + p->pad_left + p->pad_right - p->dilation_w * (p->KW - 1) - 1) / p->stride_w + 1;
}

/* Max pool: raster scan, strict > (first max wins); dx routes dy to that argmax. avg pool: sum of
 * in-bounds taps over the divisor. mode 0 = max, 1 = avg. dx may be NULL (forward only). */
static void ref_pool(int mode, const fl_pool2d_params *p, const double *x, double *y,
                     const double *dy, double *dx) {
    int OH, OW;
    out_dims(p, &OH, &OW);
    if (dx) memset(dx, 0, (size_t)p->N * p->H * p->W * p->C * sizeof(double));
    for (int n = 0; n < p->N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < p->C; c++) {
                    double best = -INFINITY, sum = 0;
                    size_t arg = SIZE_MAX;
                    int cnt = 0;
                    for (int kh = 0; kh < p->KH; kh++)
                        for (int kw = 0; kw < p->KW; kw++) {
                            int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                            int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                            if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                            size_t i = XI(n, ih, iw, c);
                            if (arg == SIZE_MAX || x[i] > best) {
                                best = x[i];
                                arg = i;
                            }
                            sum += x[i];
                            cnt++;
                        }
                    double div = p->count_include_pad ? p->KH * p->KW : cnt;
                    size_t yi = YI(n, oh, ow, c);
                    if (y) y[yi] = mode == 0 ? best : sum / div;
                    if (!dx) continue;
                    if (mode == 0) {
                        dx[arg] += dy[yi];
                    } else {
                        for (int kh = 0; kh < p->KH; kh++)
                            for (int kw = 0; kw < p->KW; kw++) {
                                int ih = oh * p->stride_h - p->pad_top + kh;
                                int iw = ow * p->stride_w - p->pad_left + kw;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                                dx[XI(n, ih, iw, c)] += dy[yi] / div;
                            }
                    }
                }
}

/* ---- helpers ------------------------------------------------------------------------------ */

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

/* The worst error over every case, as a fraction of its bound (numcmp.h, nc_sumbound: units of
 * u * sum|terms|, limit = the number of roundings an element goes through). */
static nc_worst g_worst;

static void expect_bound(const char *what, const float *ours, const double *ref, const double *mag, size_t n,
                         double limit) {
    nc_res r = nc_sumbound(NC_F32(ours), NC_F64(ref), NC_F64(mag), n);
    if (!nc_worst_add(&g_worst, what, r, limit))
        fail_msg("%s: %.3g u*sum|terms| at [%zu] (limit %g), %zu non-finite", what, r.fig, r.at, limit, r.nonfinite);
}

/* Distinct inputs at least 1/64 apart (a shuffled ramp), so a finite-difference step of 1e-3
 * never changes a window's argmax: max pool is then exactly linear around x. */
static void distinct_fill(fl_rng *r, float *f, double *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = (double)i / 64.0 - (double)n / 128.0;
    for (size_t i = n; i > 1; i--) {
        size_t j = fl_rng_below(r, (uint32_t)i);
        double t = d[i - 1];
        d[i - 1] = d[j];
        d[j] = t;
    }
    for (size_t i = 0; i < n; i++) f[i] = (float)d[i];
}

typedef void (*ref_fn)(const void *ctx, const double *x, double *y);

/* Central differences of L = sum(f(x) * r) against the analytic gradient g, on up to 12 entries. */
static void fd_check(const char *what, ref_fn f, const void *ctx, double *x, size_t nx,
                     const double *r, size_t ny, const double *g, fl_rng *rng) {
    const double h = 1e-3;
    double *y = malloc(ny * sizeof(double)), scale = maxabs(g, nx);
    size_t probes = nx < 12 ? nx : 12;
    for (size_t k = 0; k < probes; k++) {
        size_t i = nx <= 12 ? k : fl_rng_below(rng, (uint32_t)nx);
        double keep = x[i], lp = 0, lm = 0;
        x[i] = keep + h;
        f(ctx, x, y);
        for (size_t j = 0; j < ny; j++) lp += y[j] * r[j];
        x[i] = keep - h;
        f(ctx, x, y);
        for (size_t j = 0; j < ny; j++) lm += y[j] * r[j];
        x[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double err = fabs(fd - g[i]) / fmax(fabs(g[i]), fmax(1e-3 * scale, 1e-12));
        if (!(err <= 1e-6)) fail_msg("%s: finite difference %.12g vs analytic %.12g at %zu", what, fd, g[i], i);
    }
    free(y);
}

static void ref_max_fwd(const void *ctx, const double *x, double *y) { ref_pool(0, ctx, x, y, NULL, NULL); }
static void ref_avg_fwd(const void *ctx, const double *x, double *y) { ref_pool(1, ctx, x, y, NULL, NULL); }

static void run_pool_case(int mode, const fl_pool2d_params *p, uint64_t seed) {
    fl_err e;
    int OH, OW, rOH, rOW;
    if (fl_pool2d_check(p, &OH, &OW, &e)) fail_msg("unexpected: %s", e.msg);
    out_dims(p, &rOH, &rOW);
    assert_int_equal(OH, rOH);
    assert_int_equal(OW, rOW);
    size_t nx = (size_t)p->N * p->H * p->W * p->C, ny = (size_t)p->N * OH * OW * p->C;
    fl_rng r;
    fl_rng_init(&r, seed, 5);
    float *xf = malloc(nx * 4), *dyf = malloc(ny * 4), *yf = malloc(ny * 4), *dxf = malloc(nx * 4);
    double *x = malloc(nx * 8), *dy = malloc(ny * 8), *y = malloc(ny * 8), *dx = malloc(nx * 8);
    distinct_fill(&r, xf, x, nx);
    for (size_t i = 0; i < ny; i++) dy[i] = dyf[i] = fl_rng_normal(&r);
    ref_pool(mode, p, x, y, dy, dx);
    fd_check(mode ? "avgpool dx" : "maxpool dx", mode ? ref_avg_fwd : ref_max_fwd, p, x, nx, dy,
             ny, dx, &r);
    memset(yf, 0xff, ny * 4);
    memset(dxf, 0xff, nx * 4);
    if (mode == 0) {
        assert_int_equal(fl_maxpool2d_forward(p, xf, yf, &e), 0);
        assert_int_equal(fl_maxpool2d_backward(p, xf, dyf, dxf, &e), 0);
    } else {
        assert_int_equal(fl_avgpool2d_forward(p, xf, yf, &e), 0);
        assert_int_equal(fl_avgpool2d_backward(p, dyf, dxf, &e), 0);
    }
    /* sum |terms|: the reference on |x| (avg) and |dy| (both; max routes dy to the same argmax,
     * the inputs being distinct). Max pool's forward is a selection: exact (limit 0). Avg: a
     * sum of K*K taps and a division (two roundings when it multiplies by a rounded reciprocal);
     * a dx element gathers at most K*K window contributions, each dy / div. */
    double *ax = abs_copy(x, nx), *ady = abs_copy(dy, ny), *my = malloc(ny * 8), *mdx = malloc(nx * 8);
    ref_pool(mode, p, mode ? ax : x, my, ady, mdx);
    if (mode == 0)
        for (size_t i = 0; i < ny; i++) my[i] = fabs(y[i]);
    char what[160];
    snprintf(what, sizeof what, "%s N=%d H=%d W=%d C=%d k=%dx%d s=%d d=%d pad=%d,%d,%d,%d cip=%d",
             mode ? "avg" : "max", p->N, p->H, p->W, p->C, p->KH, p->KW, p->stride_h, p->dilation_h,
             p->pad_top, p->pad_left, p->pad_bottom, p->pad_right, p->count_include_pad);
    double taps = (double)p->KH * p->KW;
    char wy[200], wx[200];
    snprintf(wy, sizeof wy, "%s: y", what);
    snprintf(wx, sizeof wx, "%s: dx", what);
    expect_bound(wy, yf, y, my, ny, mode ? taps + 2 : 0);
    expect_bound(wx, dxf, dx, mdx, nx, mode ? 2 * taps + 1 : taps);
    free(ax); free(ady); free(my); free(mdx);
    free(xf); free(dyf); free(yf); free(dxf); free(x); free(dy); free(y); free(dx);
}

static fl_pool2d_params pool(int N, int H, int W, int C, int k, int s, int pad, int dil) {
    fl_pool2d_params p = {.N = N, .H = H, .W = W, .C = C, .KH = k, .KW = k, .stride_h = s,
                          .stride_w = s, .dilation_h = dil, .dilation_w = dil, .pad_top = pad,
                          .pad_left = pad, .pad_bottom = pad, .pad_right = pad,
                          .count_include_pad = 1};
    return p;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_maxpool_grid(void **state) {
    (void)state;
    const int ks[] = {2, 3, 5};
    int cases = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int s = 1; s <= 2; s++)
            for (int padded = 0; padded <= 1; padded++)
                for (int dil = 1; dil <= 2; dil++) {
                    int k = ks[ki], H = cases % 2 ? 9 : 10, W = cases % 3 ? 11 : 10;
                    int C = cases % 4 == 0 ? 70 : 3; /* 70 spans two channel blocks */
                    fl_pool2d_params p = pool(2, H, W, C, k, s, padded ? k / 2 : 0, dil);
                    run_pool_case(0, &p, 10 + (uint64_t)cases++);
                }
    /* YOLOv5 SPPF: 5/1/2, three times chained in the model; here once on an odd size. */
    fl_pool2d_params p = pool(2, 7, 6, 9, 5, 1, 2, 1);
    run_pool_case(0, &p, 1);
    /* Asymmetric padding (TF-same style). */
    p = pool(1, 6, 5, 4, 3, 2, 0, 1);
    p.pad_bottom = 1; p.pad_right = 1;
    run_pool_case(0, &p, 2);
}

static void test_avgpool_grid(void **state) {
    (void)state;
    int cases = 0;
    for (int k = 2; k <= 3; k++)
        for (int s = 1; s <= 2; s++)
            for (int cip = 0; cip <= 1; cip++)
                for (int padded = 0; padded <= 1; padded++) {
                    fl_pool2d_params p = pool(2, cases % 2 ? 7 : 8, 6, 5, k, s, padded ? k / 2 : 0, 1);
                    p.count_include_pad = cip;
                    run_pool_case(1, &p, 50 + (uint64_t)cases++);
                }
}

/* PyTorch's max_pool2d tie rule: the first maximum in window raster order takes the gradient. */
static void test_maxpool_ties_nan_inf(void **state) {
    (void)state;
    fl_err e;
    /* 1x4 row, kernel 1x3, stride 1, pad 1: windows [pad,1,3] [1,3,3] [3,3,2] [3,2,pad]. */
    fl_pool2d_params p = pool(1, 1, 4, 1, 1, 1, 0, 1);
    p.KW = 3; p.pad_left = p.pad_right = 1;
    float x[4] = {1, 3, 3, 2}, y[4], dy[4] = {1, 10, 100, 1000}, dx[4];
    assert_int_equal(fl_maxpool2d_forward(&p, x, y, &e), 0);
    float ey[4] = {3, 3, 3, 3};
    assert_memory_equal(y, ey, sizeof y);
    assert_int_equal(fl_maxpool2d_backward(&p, x, dy, dx, &e), 0);
    float edx[4] = {0, 111, 1000, 0};
    assert_memory_equal(dx, edx, sizeof dx);

    /* A 2x2 plateau under a 2x2 window: the top-left pixel (first in raster order) wins. */
    fl_pool2d_params q = pool(1, 2, 2, 2, 2, 1, 0, 1);
    float xq[8] = {5, 1, 5, 2, 5, 3, 5, 3}, yq[2], dyq[2] = {7, 9}, dxq[8];
    assert_int_equal(fl_maxpool2d_forward(&q, xq, yq, &e), 0);
    assert_true(yq[0] == 5 && yq[1] == 3);
    assert_int_equal(fl_maxpool2d_backward(&q, xq, dyq, dxq, &e), 0);
    float edxq[8] = {7, 0, 0, 0, 0, 9, 0, 0};
    assert_memory_equal(dxq, edxq, sizeof dxq);

    /* NaN wins the window (PyTorch propagates it), the gradient goes to the NaN. */
    float xn[4] = {1, NAN, 2, 0}, yn[4], dxn[4];
    assert_int_equal(fl_maxpool2d_forward(&p, xn, yn, &e), 0);
    assert_true(isnan(yn[0]) && isnan(yn[1]) && isnan(yn[2]) && yn[3] == 2);
    assert_int_equal(fl_maxpool2d_backward(&p, xn, dy, dxn, &e), 0);
    float edxn[4] = {0, 111, 1000, 0};
    assert_memory_equal(dxn, edxn, sizeof dxn);

    /* All -inf: the output is -inf and the gradient goes to the first in-bounds tap. */
    float xi[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, yi[4], dxi[4];
    assert_int_equal(fl_maxpool2d_forward(&p, xi, yi, &e), 0);
    for (int i = 0; i < 4; i++) assert_true(isinf(yi[i]) && yi[i] < 0);
    assert_int_equal(fl_maxpool2d_backward(&p, xi, dy, dxi, &e), 0);
    float edxi[4] = {11, 100, 1000, 0};
    assert_memory_equal(dxi, edxi, sizeof dxi);
}

static void ref_gap(const void *ctx, const double *x, double *y) {
    const int *d = ctx; /* N, H, W, C */
    for (int n = 0; n < d[0]; n++)
        for (int c = 0; c < d[3]; c++) {
            double s = 0;
            for (int i = 0; i < d[1] * d[2]; i++) s += x[((size_t)n * d[1] * d[2] + i) * d[3] + c];
            y[n * d[3] + c] = s / (d[1] * d[2]);
        }
}

static void ref_up(const void *ctx, const double *x, double *y) {
    const int *d = ctx; /* N, H, W, C, scale */
    int OH = d[1] * d[4], OW = d[2] * d[4];
    for (int n = 0; n < d[0]; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < d[3]; c++)
                    y[(((size_t)n * OH + oh) * OW + ow) * d[3] + c] =
                        x[(((size_t)n * d[1] + oh / d[4]) * d[2] + ow / d[4]) * d[3] + c];
}

/* Adjoint of a linear reference: g = J^T r, built column by column from unit inputs. */
static void ref_adjoint(ref_fn f, const void *ctx, size_t nx, size_t ny, const double *r, double *g) {
    double *u = calloc(nx, sizeof(double)), *y = malloc(ny * sizeof(double));
    for (size_t i = 0; i < nx; i++) {
        u[i] = 1;
        f(ctx, u, y);
        double s = 0;
        for (size_t j = 0; j < ny; j++) s += y[j] * r[j];
        g[i] = s;
        u[i] = 0;
    }
    free(u);
    free(y);
}

static void test_global_avgpool_and_upsample(void **state) {
    (void)state;
    fl_err e;
    fl_rng r;
    fl_rng_init(&r, 77, 0);
    int shapes[3][5] = {{2, 5, 4, 3, 2}, {1, 3, 7, 70, 2}, {2, 2, 3, 4, 3}};
    for (int t = 0; t < 3; t++) {
        int *d = shapes[t], N = d[0], H = d[1], W = d[2], C = d[3], s = d[4];
        for (int op = 0; op < 2; op++) {
            size_t nx = (size_t)N * H * W * C;
            size_t ny = op == 0 ? (size_t)N * C : (size_t)N * H * s * W * s * C;
            ref_fn f = op == 0 ? ref_gap : ref_up;
            float *xf = malloc(nx * 4), *yf = malloc(ny * 4), *dyf = malloc(ny * 4), *dxf = malloc(nx * 4);
            double *x = malloc(nx * 8), *y = malloc(ny * 8), *dy = malloc(ny * 8), *g = malloc(nx * 8);
            for (size_t i = 0; i < nx; i++) x[i] = xf[i] = fl_rng_normal(&r);
            for (size_t i = 0; i < ny; i++) dy[i] = dyf[i] = fl_rng_normal(&r);
            f(d, x, y);
            ref_adjoint(f, d, nx, ny, dy, g);
            fd_check(op ? "upsample dx" : "gap dx", f, d, x, nx, dy, ny, g, &r);
            if (op == 0) {
                assert_int_equal(fl_global_avgpool_forward(N, H, W, C, xf, yf, &e), 0);
                assert_int_equal(fl_global_avgpool_backward(N, H, W, C, dyf, dxf, &e), 0);
            } else {
                assert_int_equal(fl_upsample_nearest2d_forward(N, H, W, C, s, xf, yf, &e), 0);
                assert_int_equal(fl_upsample_nearest2d_backward(N, H, W, C, s, dyf, dxf, &e), 0);
            }
            /* GAP: a sum of H*W taps and a division (dx: the division, two roundings through
             * a reciprocal); upsample: a copy (exact) and dx a sum of s*s values */
            double *ax = abs_copy(x, nx), *ady = abs_copy(dy, ny), *my = malloc(ny * 8), *mg = malloc(nx * 8);
            f(d, ax, my);
            ref_adjoint(f, d, nx, ny, ady, mg);
            expect_bound(op ? "upsample y" : "gap y", yf, y, my, ny, op ? 0 : H * W + 2);
            expect_bound(op ? "upsample dx" : "gap dx", dxf, g, mg, nx, op ? s * s : 2);
            free(ax); free(ady); free(my); free(mg);
            free(xf); free(yf); free(dyf); free(dxf); free(x); free(y); free(dy); free(g);
        }
    }
}

static void test_thread_count_independent(void **state) {
    (void)state;
    fl_pool2d_params p = pool(3, 11, 9, 70, 5, 1, 2, 1);
    size_t n = (size_t)3 * 11 * 9 * 70;
    float *x = malloc(n * 4), *dy = malloc(n * 4), *out[2];
    fl_rng r;
    fl_rng_init(&r, 3, 3);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)fl_rng_below(&r, 5); /* many ties */
        dy[i] = fl_rng_normal(&r);
    }
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : 3);
        float *o = out[t] = malloc(n * 4 * 6);
        fl_err e;
        assert_int_equal(fl_maxpool2d_forward(&p, x, o, &e), 0);
        assert_int_equal(fl_maxpool2d_backward(&p, x, dy, o + n, &e), 0);
        assert_int_equal(fl_avgpool2d_forward(&p, x, o + 2 * n, &e), 0);
        assert_int_equal(fl_avgpool2d_backward(&p, dy, o + 3 * n, &e), 0);
        assert_int_equal(fl_global_avgpool_forward(3, 11, 9, 70, x, o + 4 * n, &e), 0);
        assert_int_equal(fl_upsample_nearest2d_backward(3, 11, 9, 70, 1, dy, o + 5 * n, &e), 0);
    }
    assert_memory_equal(out[0], out[1], n * 4 * 4 + 3 * 70 * 4);
    assert_memory_equal(out[0] + 5 * n, out[1] + 5 * n, n * 4);
    omp_set_num_threads(saved);
    free(out[0]); free(out[1]); free(x); free(dy);
}

static void expect_pool_error(fl_pool2d_params p, const char *needle) {
    fl_err e = {{0}};
    float buf[16] = {0};
    assert_int_equal(fl_pool2d_check(&p, NULL, NULL, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
    assert_int_equal(fl_maxpool2d_forward(&p, buf, buf, &e), -1);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "maxpool2d forward")) fail_msg("'%s'", e.msg);
    assert_int_equal(fl_maxpool2d_backward(&p, buf, buf, buf, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("'%s'", e.msg);
    assert_int_equal(fl_avgpool2d_forward(&p, buf, buf, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("'%s'", e.msg);
    assert_int_equal(fl_avgpool2d_backward(&p, buf, buf, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("'%s'", e.msg);
}

static void test_bad_input(void **state) {
    (void)state;
    fl_pool2d_params ok = pool(1, 4, 4, 2, 3, 1, 1, 1), p;
    p = ok; p.KH = 7; expect_pool_error(p, "larger than the padded input");
    p = ok; p.N = 0; expect_pool_error(p, "sizes must be positive");
    p = ok; p.C = -1; expect_pool_error(p, "sizes must be positive");
    p = ok; p.KW = 0; expect_pool_error(p, "kernel must be at least 1x1");
    p = ok; p.stride_w = 0; expect_pool_error(p, "stride must be >= 1");
    p = ok; p.dilation_h = 0; expect_pool_error(p, "dilation must be >= 1");
    p = ok; p.pad_top = -1; expect_pool_error(p, "padding must be >= 0");
    p = ok; p.pad_top = 3; expect_pool_error(p, "no input pixel");
    p = ok; p.N = 1 << 30; p.H = p.W = 1 << 10; expect_pool_error(p, "too large");
    fl_err e;
    float buf[64] = {0};
    p = ok; p.dilation_h = 2;
    assert_int_equal(fl_avgpool2d_forward(&p, buf, buf, &e), -1);
    assert_non_null(strstr(e.msg, "dilation must be 1"));
    assert_int_equal(fl_maxpool2d_forward(&ok, NULL, buf, &e), -1);
    assert_non_null(strstr(e.msg, "x is NULL"));
    assert_int_equal(fl_maxpool2d_backward(&ok, buf, NULL, buf, &e), -1);
    assert_non_null(strstr(e.msg, "dy is NULL"));
    assert_int_equal(fl_global_avgpool_forward(1, 0, 2, 2, buf, buf, &e), -1);
    assert_non_null(strstr(e.msg, "sizes must be positive"));
    assert_int_equal(fl_global_avgpool_backward(1, 2, 2, 2, NULL, buf, &e), -1);
    assert_non_null(strstr(e.msg, "dy is NULL"));
    assert_int_equal(fl_upsample_nearest2d_forward(1, 2, 2, 2, 0, buf, buf, &e), -1);
    assert_non_null(strstr(e.msg, "scale must be >= 1"));
    assert_int_equal(fl_upsample_nearest2d_backward(1, 1 << 30, 2, 2, 4, buf, buf, &e), -1);
    assert_non_null(strstr(e.msg, "too large"));
    assert_int_equal(fl_upsample_nearest2d_forward(1, 2, 2, 2, 2, buf, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "y is NULL"));
}

static void test_worst(void **state) {
    (void)state;
    nc_worst_print(&g_worst, "pool kernels vs double reference (units of u*sum|terms|)");
    assert_int_equal(g_worst.failed, 0);
    assert_true(g_worst.checked > 50);
}

/* The global average pool runs on vector clones (runtime/cpu/clones.h): whichever this CPU
 * picks gives bit for bit the scalar double-accumulated mean, and dx = dy / (H*W) in float. */
static void test_global_avgpool_clone_bitwise(void **state) {
    (void)state;
    const int N = 3, H = 9, W = 7, C = 150; /* two full 64-channel blocks and a remainder */
    size_t nx = (size_t)N * H * W * C;
    float *x = malloc(nx * 4), *y = malloc((size_t)N * C * 4), *dx = malloc(nx * 4);
    fl_rng r;
    fl_rng_init(&r, 5, 1);
    for (size_t i = 0; i < nx; i++) x[i] = fl_rng_normal(&r);
    fl_err e;
    assert_int_equal(fl_global_avgpool_forward(N, H, W, C, x, y, &e), 0);
    assert_int_equal(fl_global_avgpool_backward(N, H, W, C, y, dx, &e), 0);
    const float inv = (float)(1.0 / (H * W));
    size_t bad = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double acc = 0;
            for (int i = 0; i < H * W; i++) acc += x[((size_t)n * H * W + i) * C + c];
            float want = (float)(acc / (H * W)), g = y[(size_t)n * C + c] * inv;
            bad += want != y[(size_t)n * C + c];
            for (int i = 0; i < H * W; i++) bad += dx[((size_t)n * H * W + i) * C + c] != g;
        }
    assert_int_equal(bad, 0);
    free(x);
    free(y);
    free(dx);
}

int main(void) {
    nc_worst_init(&g_worst);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_grid),
        cmocka_unit_test(test_avgpool_grid),
        cmocka_unit_test(test_maxpool_ties_nan_inf),
        cmocka_unit_test(test_global_avgpool_and_upsample),
        cmocka_unit_test(test_global_avgpool_clone_bitwise),
        cmocka_unit_test(test_worst),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
