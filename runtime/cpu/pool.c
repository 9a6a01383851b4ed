/* Pooling and nearest upsampling on the CPU (NHWC). See pool.h for the PyTorch semantics kept. */
#include "runtime/cpu/pool.h"

#include "runtime/cpu/clones.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FL_POOL_MAX_NUMEL ((uint64_t)1 << 40)

static int numel_ok(int64_t a, int64_t b, int64_t c, int64_t d) {
    uint64_t v = 1;
    int64_t f[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        if (f[i] < 1 || v > FL_POOL_MAX_NUMEL / (uint64_t)f[i]) return 0;
        v *= (uint64_t)f[i];
    }
    return 1;
}

/* One axis: output size, or -1; also rejects windows that hold no input pixel (all padding or
 * falling between dilated taps), which PyTorch forbids via pad <= kernel/2. */
static int pool_axis(int in, int k, int s, int d, int pb, int pa) {
    int64_t span = (int64_t)d * (k - 1) + 1, padded = (int64_t)in + pb + pa;
    if (span > padded) return -1;
    int64_t out = (padded - span) / s + 1;
    if (out > INT_MAX) return -1;
    for (int64_t o = 0; o < out; o++) {
        int hit = 0;
        for (int j = 0; j < k && !hit; j++) {
            int64_t i = o * s - pb + (int64_t)j * d;
            hit = i >= 0 && i < in;
        }
        if (!hit) return -2;
    }
    return (int)out;
}

int fl_pool2d_check(const fl_pool2d_params *p, int *OH, int *OW, fl_err *e) {
    if (!p) return fl_errf(e, "pool2d: NULL parameters");
    if (p->N < 1 || p->H < 1 || p->W < 1 || p->C < 1)
        return fl_errf(e, "pool2d: sizes must be positive (N=%d H=%d W=%d C=%d)", p->N, p->H, p->W,
                       p->C);
    if (p->KH < 1 || p->KW < 1)
        return fl_errf(e, "pool2d: kernel must be at least 1x1 (got %dx%d)", p->KH, p->KW);
    if (p->stride_h < 1 || p->stride_w < 1)
        return fl_errf(e, "pool2d: stride must be >= 1 (got %d,%d)", p->stride_h, p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return fl_errf(e, "pool2d: dilation must be >= 1 (got %d,%d)", p->dilation_h,
                       p->dilation_w);
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return fl_errf(e, "pool2d: padding must be >= 0 (got top=%d left=%d bottom=%d right=%d)",
                       p->pad_top, p->pad_left, p->pad_bottom, p->pad_right);
    if (!numel_ok(p->N, p->H, p->W, p->C) || (int64_t)p->N * p->H > INT_MAX)
        return fl_errf(e, "pool2d: problem too large (N=%d H=%d W=%d C=%d)", p->N, p->H, p->W,
                       p->C);
    int oh = pool_axis(p->H, p->KH, p->stride_h, p->dilation_h, p->pad_top, p->pad_bottom);
    int ow = pool_axis(p->W, p->KW, p->stride_w, p->dilation_w, p->pad_left, p->pad_right);
    if (oh == -1 || ow == -1)
        return fl_errf(e, "pool2d: kernel %dx%d (dilation %d,%d) is larger than the padded input "
                       "%dx%d", p->KH, p->KW, p->dilation_h, p->dilation_w,
                       p->H + p->pad_top + p->pad_bottom, p->W + p->pad_left + p->pad_right);
    if (oh < 0 || ow < 0)
        return fl_errf(e, "pool2d: padding (top=%d left=%d bottom=%d right=%d) leaves a window "
                       "with no input pixel (kernel %dx%d)", p->pad_top, p->pad_left,
                       p->pad_bottom, p->pad_right, p->KH, p->KW);
    if (OH) *OH = oh;
    if (OW) *OW = ow;
    return 0;
}

/* Window taps of output row oh (or column) that land inside the input: [*j0, *j1). Taps are
 * o*s - pad + j*d for j in [0, k). */
static void taps(int o, int in, int k, int s, int d, int pad, int *j0, int *j1) {
    int start = o * s - pad, a = 0, b = k;
    while (a < k && start + a * d < 0) a++;
    while (b > a && start + (b - 1) * d >= in) b--;
    *j0 = a;
    *j1 = b;
}

/* ---- max pool ------------------------------------------------------------------------------- */

/* PyTorch's CPU rule, per channel: take the tap if val > max or val is NaN, scanning kh then kw;
 * the max starts at -inf and the index at the first in-bounds tap. */
static inline int maxpool_takes(float v, float m) { return v > m || isnan(v); }

int fl_maxpool2d_forward(const fl_pool2d_params *p, const float *x, float *y, fl_err *e) {
    int OH, OW;
    if (fl_pool2d_check(p, &OH, &OW, e)) return fl_errprefix(e, "maxpool2d forward");
    if (!x || !y) return fl_errf(e, "maxpool2d forward: %s is NULL", !x ? "x" : "y");
    const int C = p->C, rows = p->N * OH;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int n = r / OH, oh = r % OH, h0, h1;
        taps(oh, p->H, p->KH, p->stride_h, p->dilation_h, p->pad_top, &h0, &h1);
        for (int ow = 0; ow < OW; ow++) {
            int w0, w1;
            taps(ow, p->W, p->KW, p->stride_w, p->dilation_w, p->pad_left, &w0, &w1);
            float *yo = y + ((size_t)r * OW + ow) * C;
            for (int c = 0; c < C; c++) yo[c] = -INFINITY;
            for (int kh = h0; kh < h1; kh++) {
                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                for (int kw = w0; kw < w1; kw++) {
                    int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                    const float *xs = x + (((size_t)n * p->H + ih) * p->W + iw) * C;
                    /* branch-free form of maxpool_takes, so the channel loop vectorises */
#pragma omp simd
                    for (int c = 0; c < C; c++) {
                        float v = xs[c], m = yo[c];
                        yo[c] = (v > m || v != v) ? v : m;
                    }
                }
            }
        }
    }
    return 0;
}

/* The argmax is recomputed per (image, channel block); gradients of overlapping windows are
 * added into dx in output raster order, so each (n, channel block) is one sequential task and
 * the tasks never touch the same dx element. */
int fl_maxpool2d_backward(const fl_pool2d_params *p, const float *x, const float *dy, float *dx,
                          fl_err *e) {
    int OH, OW;
    if (fl_pool2d_check(p, &OH, &OW, e)) return fl_errprefix(e, "maxpool2d backward");
    if (!x || !dy || !dx)
        return fl_errf(e, "maxpool2d backward: %s is NULL", !x ? "x" : !dy ? "dy" : "dx");
    enum { BLK = 64 };
    const int C = p->C, nblk = (C + BLK - 1) / BLK, tasks = p->N * nblk;
    const size_t img = (size_t)p->H * p->W * C;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < p->N; n++) memset(dx + n * img, 0, img * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tasks; t++) {
        int n = t / nblk, c0 = (t % nblk) * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        const float *xn = x + n * img;
        float *dxn = dx + n * img;
        float best[BLK];
        size_t arg[BLK];
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            taps(oh, p->H, p->KH, p->stride_h, p->dilation_h, p->pad_top, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                taps(ow, p->W, p->KW, p->stride_w, p->dilation_w, p->pad_left, &w0, &w1);
                int ih0 = oh * p->stride_h - p->pad_top + h0 * p->dilation_h;
                int iw0 = ow * p->stride_w - p->pad_left + w0 * p->dilation_w;
                size_t first = ((size_t)ih0 * p->W + iw0) * C;
                for (int c = c0; c < c1; c++) {
                    best[c - c0] = -INFINITY;
                    arg[c - c0] = first + c;
                }
                for (int kh = h0; kh < h1; kh++) {
                    int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                    for (int kw = w0; kw < w1; kw++) {
                        int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                        size_t base = ((size_t)ih * p->W + iw) * C;
                        for (int c = c0; c < c1; c++)
                            if (maxpool_takes(xn[base + c], best[c - c0])) {
                                best[c - c0] = xn[base + c];
                                arg[c - c0] = base + c;
                            }
                    }
                }
                const float *g = dy + (((size_t)n * OH + oh) * OW + ow) * C;
                for (int c = c0; c < c1; c++) dxn[arg[c - c0]] += g[c];
            }
        }
    }
    return 0;
}

/* ---- average pool --------------------------------------------------------------------------- */

static int avg_check(const fl_pool2d_params *p, int *OH, int *OW, const char *what, fl_err *e) {
    if (fl_pool2d_check(p, OH, OW, e)) return fl_errprefix(e, "%s", what);
    if (p->dilation_h != 1 || p->dilation_w != 1)
        return fl_errf(e, "%s: dilation must be 1 (got %d,%d)", what, p->dilation_h,
                       p->dilation_w);
    return 0;
}

/* Divisor of one window: the full kernel area, or the taps that land in the input. */
static float avg_divisor(const fl_pool2d_params *p, int h0, int h1, int w0, int w1) {
    return p->count_include_pad ? (float)(p->KH * p->KW) : (float)((h1 - h0) * (w1 - w0));
}

int fl_avgpool2d_forward(const fl_pool2d_params *p, const float *x, float *y, fl_err *e) {
    int OH, OW;
    if (avg_check(p, &OH, &OW, "avgpool2d forward", e)) return -1;
    if (!x || !y) return fl_errf(e, "avgpool2d forward: %s is NULL", !x ? "x" : "y");
    const int C = p->C, rows = p->N * OH;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int n = r / OH, oh = r % OH, h0, h1;
        taps(oh, p->H, p->KH, p->stride_h, 1, p->pad_top, &h0, &h1);
        for (int ow = 0; ow < OW; ow++) {
            int w0, w1;
            taps(ow, p->W, p->KW, p->stride_w, 1, p->pad_left, &w0, &w1);
            float *yo = y + ((size_t)r * OW + ow) * C;
            memset(yo, 0, (size_t)C * sizeof(float));
            for (int kh = h0; kh < h1; kh++)
                for (int kw = w0; kw < w1; kw++) {
                    int ih = oh * p->stride_h - p->pad_top + kh;
                    int iw = ow * p->stride_w - p->pad_left + kw;
                    const float *xs = x + (((size_t)n * p->H + ih) * p->W + iw) * C;
#pragma omp simd
                    for (int c = 0; c < C; c++) yo[c] += xs[c];
                }
            float inv = 1.0f / avg_divisor(p, h0, h1, w0, w1);
            for (int c = 0; c < C; c++) yo[c] *= inv;
        }
    }
    return 0;
}

/* Scatter in output raster order, one image per task (overlapping windows share dx pixels). */
int fl_avgpool2d_backward(const fl_pool2d_params *p, const float *dy, float *dx, fl_err *e) {
    int OH, OW;
    if (avg_check(p, &OH, &OW, "avgpool2d backward", e)) return -1;
    if (!dy || !dx) return fl_errf(e, "avgpool2d backward: %s is NULL", !dy ? "dy" : "dx");
    const int C = p->C;
    const size_t img = (size_t)p->H * p->W * C;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < p->N; n++) {
        float *dxn = dx + n * img;
        memset(dxn, 0, img * sizeof(float));
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            taps(oh, p->H, p->KH, p->stride_h, 1, p->pad_top, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                taps(ow, p->W, p->KW, p->stride_w, 1, p->pad_left, &w0, &w1);
                float inv = 1.0f / avg_divisor(p, h0, h1, w0, w1);
                const float *g = dy + (((size_t)n * OH + oh) * OW + ow) * C;
                for (int kh = h0; kh < h1; kh++)
                    for (int kw = w0; kw < w1; kw++) {
                        int ih = oh * p->stride_h - p->pad_top + kh;
                        int iw = ow * p->stride_w - p->pad_left + kw;
                        float *d = dxn + ((size_t)ih * p->W + iw) * C;
#pragma omp simd
                        for (int c = 0; c < C; c++) d[c] += g[c] * inv;
                    }
            }
        }
    }
    return 0;
}

/* ---- global average pool -------------------------------------------------------------------- */

static int nhwc_check(const char *what, int N, int H, int W, int C, fl_err *e) {
    if (N < 1 || H < 1 || W < 1 || C < 1)
        return fl_errf(e, "%s: sizes must be positive (N=%d H=%d W=%d C=%d)", what, N, H, W, C);
    if (!numel_ok(N, H, W, C)) return fl_errf(e, "%s: problem too large", what);
    return 0;
}

/* One image's channels [c0, c1) summed over its hw pixels in pixel order, in double. Built for
 * every vector width (clones.h): the sums run across channels, each channel's order unchanged. */
FL_VEC_CLONES static void gap_block(const float *xn, size_t hw, int C, int c0, int c1, float *yn) {
    double acc[64] = {0};
    const int w = c1 - c0;
    for (size_t i = 0; i < hw; i++) {
        const float *row = xn + i * C + c0;
#pragma omp simd
        for (int c = 0; c < w; c++) acc[c] += row[c];
    }
    for (int c = 0; c < w; c++) yn[c0 + c] = (float)(acc[c] / (double)hw);
}

int fl_global_avgpool_forward(int N, int H, int W, int C, const float *x, float *y, fl_err *e) {
    if (nhwc_check("global_avgpool forward", N, H, W, C, e)) return -1;
    if (!x || !y) return fl_errf(e, "global_avgpool forward: %s is NULL", !x ? "x" : "y");
    enum { BLK = 64 };
    const int nblk = (C + BLK - 1) / BLK;
    const size_t hw = (size_t)H * W;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N * nblk; t++) {
        int n = t / nblk, c0 = (t % nblk) * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        gap_block(x + (size_t)n * hw * C, hw, C, c0, c1, y + (size_t)n * C);
    }
    return 0;
}

FL_VEC_CLONES static void gap_bwd_image(const float *g, size_t hw, int C, float inv, float *dxn) {
    for (size_t i = 0; i < hw; i++) {
        float *d = dxn + i * C;
#pragma omp simd
        for (int c = 0; c < C; c++) d[c] = g[c] * inv;
    }
}

int fl_global_avgpool_backward(int N, int H, int W, int C, const float *dy, float *dx,
                               fl_err *e) {
    if (nhwc_check("global_avgpool backward", N, H, W, C, e)) return -1;
    if (!dy || !dx) return fl_errf(e, "global_avgpool backward: %s is NULL", !dy ? "dy" : "dx");
    const size_t hw = (size_t)H * W;
    const float inv = (float)(1.0 / (double)hw);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) gap_bwd_image(dy + (size_t)n * C, hw, C, inv, dx + (size_t)n * hw * C);
    return 0;
}

/* ---- nearest upsampling --------------------------------------------------------------------- */

static int up_check(const char *what, int N, int H, int W, int C, int scale, fl_err *e) {
    if (scale < 1) return fl_errf(e, "%s: scale must be >= 1 (got %d)", what, scale);
    if (nhwc_check(what, N, H, W, C, e)) return -1;
    if ((int64_t)H * scale > INT_MAX || (int64_t)W * scale > INT_MAX ||
        !numel_ok(N, (int64_t)H * scale, (int64_t)W * scale, C) ||
        (int64_t)N * H * scale > INT_MAX)
        return fl_errf(e, "%s: output too large (H=%d W=%d scale=%d)", what, H, W, scale);
    return 0;
}

int fl_upsample_nearest2d_forward(int N, int H, int W, int C, int scale, const float *x,
                                  float *y, fl_err *e) {
    if (up_check("upsample_nearest2d forward", N, H, W, C, scale, e)) return -1;
    if (!x || !y) return fl_errf(e, "upsample_nearest2d forward: %s is NULL", !x ? "x" : "y");
    const int OH = H * scale, OW = W * scale, rows = N * OH;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int n = r / OH, ih = (r % OH) / scale;
        const float *xrow = x + ((size_t)n * H + ih) * W * C;
        float *yrow = y + (size_t)r * OW * C;
        for (int ow = 0; ow < OW; ow++)
            memcpy(yrow + (size_t)ow * C, xrow + (size_t)(ow / scale) * C, (size_t)C * sizeof(float));
    }
    return 0;
}

int fl_upsample_nearest2d_backward(int N, int H, int W, int C, int scale, const float *dy,
                                   float *dx, fl_err *e) {
    if (up_check("upsample_nearest2d backward", N, H, W, C, scale, e)) return -1;
    if (!dy || !dx) return fl_errf(e, "upsample_nearest2d backward: %s is NULL", !dy ? "dy" : "dx");
    const int OW = W * scale, rows = N * H;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *d = dx + (size_t)r * W * C;
        memset(d, 0, (size_t)W * C * sizeof(float));
        /* Input row r = (n, ih) gathers output rows n*OH + ih*scale + a, a in [0, scale). */
        for (int a = 0; a < scale; a++) {
            const float *g = dy + ((size_t)r * scale + a) * OW * C;
            for (int iw = 0; iw < W; iw++)
                for (int b = 0; b < scale; b++) {
                    const float *gs = g + ((size_t)iw * scale + b) * C;
                    float *ds = d + (size_t)iw * C;
#pragma omp simd
                    for (int c = 0; c < C; c++) ds[c] += gs[c];
                }
        }
    }
    return 0;
}
