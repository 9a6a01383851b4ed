/* conv2d on the CPU: parameter checks, padding helpers, and the GEMM-based paths (1x1 as one
 * GEMM, everything else im2col + GEMM per group). The depthwise direct kernels live in
 * conv_depthwise.c. See conv.h for layouts and the determinism contract. */
#include "runtime/cpu/conv.h"

#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/conv_internal.h"

/* Upper bound on the im2col buffer of one chunk of output rows. A single row may exceed it (the
 * chunk is never smaller than one row). Chosen by tests/bench/bench_conv: large enough that the
 * GEMMs are big, small enough to stay near the last-level cache. */
#define FL_CONV_COL_BYTES ((size_t)8 << 20)
/* No tensor may hold more elements than this (keeps every size_t product far from overflow). */
#define FL_CONV_MAX_NUMEL ((uint64_t)1 << 40)

int fl_conv2d_pad_symmetric(int k, int dilation) {
    if (k < 1 || dilation < 1) return 0;
    return dilation * (k - 1) / 2;
}

void fl_conv2d_pad_tf_same(int in, int k, int stride, int dilation, int *before, int *after) {
    int64_t total = 0;
    if (in > 0 && k > 0 && stride > 0 && dilation > 0) {
        int64_t out = ((int64_t)in + stride - 1) / stride;
        total = (out - 1) * stride + (int64_t)(k - 1) * dilation + 1 - in;
        if (total < 0) total = 0;
    }
    if (before) *before = (int)(total / 2);
    if (after) *after = (int)(total - total / 2);
}

int fl_conv2d_out_size(int in, int k, int stride, int dilation, int pad_before, int pad_after) {
    if (in < 1 || k < 1 || stride < 1 || dilation < 1 || pad_before < 0 || pad_after < 0) return -1;
    int64_t span = (int64_t)dilation * (k - 1) + 1;
    int64_t padded = (int64_t)in + pad_before + pad_after;
    if (span > padded) return -1;
    int64_t out = (padded - span) / stride + 1;
    return out > INT_MAX ? -1 : (int)out;
}

/* a*b*c*d without overflow past FL_CONV_MAX_NUMEL; returns 0 when too large. */
static uint64_t numel4(int64_t a, int64_t b, int64_t c, int64_t d) {
    uint64_t v = 1;
    int64_t f[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        if (f[i] < 0) return 0;
        if (f[i] != 0 && v > FL_CONV_MAX_NUMEL / (uint64_t)f[i]) return 0;
        v *= (uint64_t)f[i];
    }
    return v > FL_CONV_MAX_NUMEL ? 0 : v;
}

static int shape_of(const fl_conv2d_params *p, fl_conv2d_shape *s, fl_err *e) {
    if (!p) return fl_errf(e, "NULL parameters");
    if (p->N < 1 || p->H < 1 || p->W < 1 || p->C_in < 1 || p->C_out < 1)
        return fl_errf(e, "sizes must be positive (N=%d H=%d W=%d C_in=%d C_out=%d)",
                       p->N, p->H, p->W, p->C_in, p->C_out);
    if (p->KH < 1 || p->KW < 1)
        return fl_errf(e, "kernel must be at least 1x1 (got %dx%d)", p->KH, p->KW);
    if (p->stride_h < 1 || p->stride_w < 1)
        return fl_errf(e, "stride must be >= 1 (got %d,%d)", p->stride_h, p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return fl_errf(e, "dilation must be >= 1 (got %d,%d)", p->dilation_h,
                       p->dilation_w);
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return fl_errf(e, "padding must be >= 0 (got top=%d left=%d bottom=%d right=%d)",
                       p->pad_top, p->pad_left, p->pad_bottom, p->pad_right);
    if (p->groups < 1) return fl_errf(e, "groups must be >= 1 (got %d)", p->groups);
    if (p->C_in % p->groups || p->C_out % p->groups)
        return fl_errf(e, "groups=%d must divide C_in=%d and C_out=%d", p->groups, p->C_in,
                       p->C_out);
    int OH = fl_conv2d_out_size(p->H, p->KH, p->stride_h, p->dilation_h, p->pad_top,
                                p->pad_bottom);
    int OW = fl_conv2d_out_size(p->W, p->KW, p->stride_w, p->dilation_w, p->pad_left,
                                p->pad_right);
    if (OH < 1 || OW < 1)
        return fl_errf(e,
                       "kernel %dx%d (dilation %d,%d) is larger than the padded input "
                       "%dx%d (H=%d+%d+%d, W=%d+%d+%d)",
                       p->KH, p->KW, p->dilation_h, p->dilation_w,
                       p->H + p->pad_top + p->pad_bottom, p->W + p->pad_left + p->pad_right,
                       p->H, p->pad_top, p->pad_bottom, p->W, p->pad_left, p->pad_right);
    int Cig = p->C_in / p->groups;
    if (!numel4(p->N, p->H, p->W, p->C_in) || !numel4(p->N, OH, OW, p->C_out) ||
        !numel4(p->C_out, Cig, p->KH, p->KW) || numel4(p->N, p->H, p->W, 1) > INT_MAX ||
        numel4(p->N, OH, OW, 1) > INT_MAX || numel4(p->KH, p->KW, Cig, 1) > INT_MAX)
        return fl_errf(e, "problem too large (N=%d H=%d W=%d C_in=%d C_out=%d k=%dx%d)",
                       p->N, p->H, p->W, p->C_in, p->C_out, p->KH, p->KW);
    s->p = *p;
    s->OH = OH;
    s->OW = OW;
    s->Cig = Cig;
    s->Cog = p->C_out / p->groups;
    s->K = p->KH * p->KW * Cig;
    return 0;
}

int fl_conv2d_check(const fl_conv2d_params *p, int *OH, int *OW, fl_err *e) {
    fl_conv2d_shape s;
    if (shape_of(p, &s, e)) return fl_errprefix(e, "conv2d");
    if (OH) *OH = s.OH;
    if (OW) *OW = s.OW;
    return 0;
}

size_t fl_conv2d_x_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return shape_of(p, &s, &e) ? 0 : (size_t)p->N * p->H * p->W * p->C_in;
}

size_t fl_conv2d_y_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return shape_of(p, &s, &e) ? 0 : (size_t)p->N * s.OH * s.OW * p->C_out;
}

size_t fl_conv2d_w_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return shape_of(p, &s, &e) ? 0 : (size_t)p->C_out * s.K;
}

/* ---- path selection and weight repacking ---------------------------------------------- */

static int is_pointwise(const fl_conv2d_shape *s) {
    const fl_conv2d_params *p = &s->p;
    return p->KH == 1 && p->KW == 1 && p->stride_h == 1 && p->stride_w == 1 && p->groups == 1 &&
           !p->pad_top && !p->pad_left && !p->pad_bottom && !p->pad_right;
}

static int is_depthwise(const fl_conv2d_shape *s) {
    return s->p.groups == s->p.C_in && s->p.groups == s->p.C_out;
}

/* OIHW -> [C_out][KH][KW][Cig]: one GEMM row per output channel with the reduction index in
 * im2col order (kh, kw, ci), ci innermost as in NHWC. For depthwise (Cig = 1) this is
 * [C][KH][KW]; the depthwise kernels want [KH][KW][C], see repack_dw. */
static void repack_ohwi(const fl_conv2d_shape *s, const float *w, float *wp) {
    const fl_conv2d_params *p = &s->p;
    for (int co = 0; co < p->C_out; co++)
        for (int ci = 0; ci < s->Cig; ci++)
            for (int kh = 0; kh < p->KH; kh++)
                for (int kw = 0; kw < p->KW; kw++)
                    wp[(size_t)co * s->K + ((size_t)kh * p->KW + kw) * s->Cig + ci] =
                        w[(((size_t)co * s->Cig + ci) * p->KH + kh) * p->KW + kw];
}

static void unpack_ohwi(const fl_conv2d_shape *s, const float *wp, float *w) {
    const fl_conv2d_params *p = &s->p;
    for (int co = 0; co < p->C_out; co++)
        for (int ci = 0; ci < s->Cig; ci++)
            for (int kh = 0; kh < p->KH; kh++)
                for (int kw = 0; kw < p->KW; kw++)
                    w[(((size_t)co * s->Cig + ci) * p->KH + kh) * p->KW + kw] =
                        wp[(size_t)co * s->K + ((size_t)kh * p->KW + kw) * s->Cig + ci];
}

/* OIHW with Cig = 1 ([C][KH][KW]) <-> [KH][KW][C]. */
static void repack_dw(const fl_conv2d_shape *s, const float *w, float *wp) {
    int C = s->p.C_out, KK = s->p.KH * s->p.KW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < KK; k++) wp[(size_t)k * C + c] = w[(size_t)c * KK + k];
}

static void unpack_dw(const fl_conv2d_shape *s, const float *wp, float *w) {
    int C = s->p.C_out, KK = s->p.KH * s->p.KW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < KK; k++) w[(size_t)c * KK + k] = wp[(size_t)k * C + c];
}

/* ---- im2col / col2im over a chunk of output rows ----------------------------------------
 * A "row" is one output image row r = n*OH + oh; rows [r0, r1) of the batch form one chunk, and
 * their output pixels are contiguous in NHWC, so the chunk's GEMM writes y directly. col holds
 * one line per output pixel: col[(r - r0)*OW + ow][(kh*KW + kw)*Cig + ci], zero where the tap
 * falls into padding. */

static void im2col(const fl_conv2d_shape *s, const float *x, int g, int r0, int r1, float *col) {
    const fl_conv2d_params *p = &s->p;
    const int Cig = s->Cig, K = s->K;
    const size_t tap = (size_t)Cig * sizeof(float);
#pragma omp parallel for schedule(static)
    for (int r = r0; r < r1; r++) {
        int n = r / s->OH, oh = r % s->OH;
        for (int ow = 0; ow < s->OW; ow++) {
            float *dst = col + ((size_t)(r - r0) * s->OW + ow) * K;
            for (int kh = 0; kh < p->KH; kh++) {
                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                if (ih < 0 || ih >= p->H) {
                    memset(dst + (size_t)kh * p->KW * Cig, 0, tap * p->KW);
                    continue;
                }
                const float *xrow = x + ((size_t)n * p->H + ih) * p->W * p->C_in + (size_t)g * Cig;
                for (int kw = 0; kw < p->KW; kw++) {
                    int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                    float *d = dst + ((size_t)kh * p->KW + kw) * Cig;
                    if (iw < 0 || iw >= p->W)
                        memset(d, 0, tap);
                    else
                        memcpy(d, xrow + (size_t)iw * p->C_in, tap);
                }
            }
        }
    }
}

/* dx += col scattered back to the input pixels. Two output rows can feed the same input row only
 * through different kh, so the loop runs kh in phases: within one phase every input row receives
 * from at most one output row, rows run in parallel without races, and each dx element gets its
 * additions in a fixed order (chunk, group, kh, then ow and kw within the row) whatever the
 * thread count. */
static void col2im_add(const fl_conv2d_shape *s, const float *col, int g, int r0, int r1,
                       float *dx) {
    const fl_conv2d_params *p = &s->p;
    const int Cig = s->Cig, K = s->K;
#pragma omp parallel
    for (int kh = 0; kh < p->KH; kh++) {
#pragma omp for schedule(static)
        for (int r = r0; r < r1; r++) {
            int n = r / s->OH, oh = r % s->OH;
            int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
            if (ih < 0 || ih >= p->H) continue;
            float *dxrow = dx + ((size_t)n * p->H + ih) * p->W * p->C_in + (size_t)g * Cig;
            for (int ow = 0; ow < s->OW; ow++) {
                const float *src = col + ((size_t)(r - r0) * s->OW + ow) * K + (size_t)kh * p->KW * Cig;
                for (int kw = 0; kw < p->KW; kw++) {
                    int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                    if (iw < 0 || iw >= p->W) continue;
                    float *d = dxrow + (size_t)iw * p->C_in;
                    const float *c = src + (size_t)kw * Cig;
#pragma omp simd
                    for (int ci = 0; ci < Cig; ci++) d[ci] += c[ci];
                }
            }
        }
    }
}

/* Rows per chunk so that the im2col buffer stays under FL_CONV_COL_BYTES (at least one). */
static int chunk_rows(const fl_conv2d_shape *s, size_t col_bytes) {
    size_t row_bytes = (size_t)s->OW * s->K * sizeof(float);
    size_t rows = col_bytes / (row_bytes ? row_bytes : 1);
    size_t total = (size_t)s->p.N * s->OH;
    if (rows < 1) rows = 1;
    if (rows > total) rows = total;
    return (int)rows;
}

static int check_ptrs(const char *what, const void *a, const char *an, const void *b,
                      const char *bn, const void *c, const char *cn, fl_err *e) {
    if (!a) return fl_errf(e, "conv2d %s: %s is NULL", what, an);
    if (!b) return fl_errf(e, "conv2d %s: %s is NULL", what, bn);
    if (!c) return fl_errf(e, "conv2d %s: %s is NULL", what, cn);
    return 0;
}

/* ---- entry points -------------------------------------------------------------------------- */

int fl_conv2d_forward_ex(const fl_conv2d_params *p, const float *x, const float *w,
                      const float *bias, float *y, size_t col_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (shape_of(p, &s, e)) return fl_errprefix(e, "conv2d forward");
    if (check_ptrs("forward", x, "x", w, "w", y, "y", e)) return -1;
    const int Co = p->C_out;
    const size_t npix = (size_t)p->N * s.OH * s.OW;
    float beta = 0.0f;
    if (bias) {
        /* The GEMMs then accumulate onto the bias (beta = 1). */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < npix; i++) memcpy(y + i * Co, bias, (size_t)Co * sizeof(float));
        beta = 1.0f;
    }
    if (is_pointwise(&s)) {
        /* y[npix x Co] = x[npix x Ci] * w^T, w being [Co][Ci]. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)npix, Co, p->C_in, 1.0f, x,
                    p->C_in, w, p->C_in, beta, y, Co);
        return 0;
    }
    if (is_depthwise(&s)) {
        float *wp = malloc((size_t)Co * s.K * sizeof(float));
        if (!wp) return fl_errf(e, "conv2d forward: out of memory for the repacked weights");
        repack_dw(&s, w, wp);
        fl_conv2d_dw_forward(&s, x, wp, bias, y);
        free(wp);
        return 0;
    }
    const int R = chunk_rows(&s, col_bytes), rows = p->N * s.OH;
    float *wp = malloc((size_t)Co * s.K * sizeof(float));
    float *col = malloc((size_t)R * s.OW * s.K * sizeof(float));
    if (!wp || !col) {
        free(wp);
        free(col);
        return fl_errf(e, "conv2d forward: out of memory for the im2col buffer (%zu bytes)",
                       (size_t)R * s.OW * s.K * sizeof(float));
    }
    repack_ohwi(&s, w, wp);
    for (int r0 = 0; r0 < rows; r0 += R) {
        int r1 = r0 + R < rows ? r0 + R : rows, P = (r1 - r0) * s.OW;
        for (int g = 0; g < p->groups; g++) {
            im2col(&s, x, g, r0, r1, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, s.Cog, s.K, 1.0f, col, s.K,
                        wp + (size_t)g * s.Cog * s.K, s.K, beta,
                        y + (size_t)r0 * s.OW * Co + (size_t)g * s.Cog, Co);
        }
    }
    free(wp);
    free(col);
    return 0;
}

int fl_conv2d_backward_data_ex(const fl_conv2d_params *p, const float *dy, const float *w,
                            float *dx, size_t col_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_data");
    if (check_ptrs("backward_data", dy, "dy", w, "w", dx, "dx", e)) return -1;
    const int Co = p->C_out, Ci = p->C_in;
    if (is_pointwise(&s)) {
        /* dx[npix x Ci] = dy[npix x Co] * w[Co x Ci]. */
        int npix = p->N * p->H * p->W;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, npix, Ci, Co, 1.0f, dy, Co, w, Ci,
                    0.0f, dx, Ci);
        return 0;
    }
    if (is_depthwise(&s)) {
        float *wp = malloc((size_t)Co * s.K * sizeof(float));
        if (!wp) return fl_errf(e, "conv2d backward_data: out of memory for the repacked weights");
        repack_dw(&s, w, wp);
        fl_conv2d_dw_backward_data(&s, dy, wp, dx);
        free(wp);
        return 0;
    }
    const int R = chunk_rows(&s, col_bytes), rows = p->N * s.OH;
    float *wp = malloc((size_t)Co * s.K * sizeof(float));
    float *col = malloc((size_t)R * s.OW * s.K * sizeof(float));
    if (!wp || !col) {
        free(wp);
        free(col);
        return fl_errf(e, "conv2d backward_data: out of memory for the col buffer (%zu bytes)",
                       (size_t)R * s.OW * s.K * sizeof(float));
    }
    repack_ohwi(&s, w, wp);
    const size_t nx = (size_t)p->N * p->H * p->W * Ci;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nx; i++) dx[i] = 0.0f;
    for (int r0 = 0; r0 < rows; r0 += R) {
        int r1 = r0 + R < rows ? r0 + R : rows, P = (r1 - r0) * s.OW;
        for (int g = 0; g < p->groups; g++) {
            /* col[P x K] = dy_g[P x Cog] * wp_g[Cog x K] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, s.K, s.Cog, 1.0f,
                        dy + (size_t)r0 * s.OW * Co + (size_t)g * s.Cog, Co,
                        wp + (size_t)g * s.Cog * s.K, s.K, 0.0f, col, s.K);
            col2im_add(&s, col, g, r0, r1, dx);
        }
    }
    free(wp);
    free(col);
    return 0;
}

void fl_conv2d_bias_grad(const fl_conv2d_shape *s, const float *dy, float *dbias) {
    const int C = s->p.C_out, BLK = 16;
    const size_t npix = (size_t)s->p.N * s->OH * s->OW;
    const int nblk = (C + BLK - 1) / BLK;
    /* Channel blocks in parallel; each sums its channels over all pixels in pixel order. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int c0 = b * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        double acc[16] = {0};
        for (size_t i = 0; i < npix; i++) {
            const float *row = dy + i * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] = (float)acc[c - c0];
    }
}

int fl_conv2d_backward_weight_ex(const fl_conv2d_params *p, const float *x, const float *dy,
                              float *dw, float *dbias, size_t col_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_weight");
    if (check_ptrs("backward_weight", x, "x", dy, "dy", dw, "dw", e)) return -1;
    const int Co = p->C_out, Ci = p->C_in;
    if (dbias) fl_conv2d_bias_grad(&s, dy, dbias);
    if (is_pointwise(&s)) {
        /* dw[Co x Ci] = dy^T[Co x npix] * x[npix x Ci]. */
        int npix = p->N * p->H * p->W;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Co, Ci, npix, 1.0f, dy, Co, x, Ci,
                    0.0f, dw, Ci);
        return 0;
    }
    float *wp = malloc((size_t)Co * s.K * sizeof(float));
    if (!wp) return fl_errf(e, "conv2d backward_weight: out of memory for the weight gradient");
    if (is_depthwise(&s)) {
        if (fl_conv2d_dw_backward_weight(&s, x, dy, wp, e)) {
            free(wp);
            return fl_errprefix(e, "conv2d backward_weight");
        }
        unpack_dw(&s, wp, dw);
        free(wp);
        return 0;
    }
    const int R = chunk_rows(&s, col_bytes), rows = p->N * s.OH;
    float *col = malloc((size_t)R * s.OW * s.K * sizeof(float));
    if (!col) {
        free(wp);
        return fl_errf(e, "conv2d backward_weight: out of memory for the im2col buffer (%zu bytes)",
                       (size_t)R * s.OW * s.K * sizeof(float));
    }
    for (int r0 = 0; r0 < rows; r0 += R) {
        int r1 = r0 + R < rows ? r0 + R : rows, P = (r1 - r0) * s.OW;
        float beta = r0 == 0 ? 0.0f : 1.0f;
        for (int g = 0; g < p->groups; g++) {
            im2col(&s, x, g, r0, r1, col);
            /* dwp_g[Cog x K] (+)= dy_g^T[Cog x P] * col[P x K] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.Cog, s.K, P, 1.0f,
                        dy + (size_t)r0 * s.OW * Co + (size_t)g * s.Cog, Co, col, s.K, beta,
                        wp + (size_t)g * s.Cog * s.K, s.K);
        }
    }
    unpack_ohwi(&s, wp, dw);
    free(wp);
    free(col);
    return 0;
}

int fl_conv2d_forward(const fl_conv2d_params *p, const float *x, const float *w,
                      const float *bias, float *y, fl_err *e) {
    return fl_conv2d_forward_ex(p, x, w, bias, y, FL_CONV_COL_BYTES, e);
}

int fl_conv2d_backward_data(const fl_conv2d_params *p, const float *dy, const float *w,
                            float *dx, fl_err *e) {
    return fl_conv2d_backward_data_ex(p, dy, w, dx, FL_CONV_COL_BYTES, e);
}

int fl_conv2d_backward_weight(const fl_conv2d_params *p, const float *x, const float *dy,
                              float *dw, float *dbias, fl_err *e) {
    return fl_conv2d_backward_weight_ex(p, x, dy, dw, dbias, FL_CONV_COL_BYTES, e);
}
