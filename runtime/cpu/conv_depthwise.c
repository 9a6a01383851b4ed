/* Depthwise conv2d (groups == C_in == C_out) as direct loops: with one input channel per group an
 * im2col GEMM would have an inner dimension of KH*KW, so a plain NHWC loop over contiguous
 * channels (vectorised with omp simd) is both simpler and faster. Weights arrive repacked to
 * [KH][KW][C]. Every sum runs in an order fixed by the shape, not by the thread count. */
#include <string.h>

#include "runtime/cpu/conv_internal.h"

/* Rows of dy are split into at most this many fixed blocks for the weight gradient; each block
 * sums into its own partial buffer and the partials are added in block order. */
#define FL_DW_WGRAD_BLOCKS 32

#if defined(__x86_64__)
#define FL_DW_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FL_DW_CLONES
#endif

/* One output row r = n*OH + oh. Built for AVX2 as well as the baseline (picked at load time):
 * the channel loops are the whole cost and the default x86-64 target only has 4-wide vectors. */
FL_DW_CLONES static void dw_forward_row(const fl_conv2d_shape *s, const float *x, const float *wp,
                                        const float *bias, float *y, int r) {
    const fl_conv2d_params *p = &s->p;
    const int C = p->C_in, n = r / s->OH, oh = r % s->OH;
    for (int ow = 0; ow < s->OW; ow++) {
        float *yo = y + ((size_t)r * s->OW + ow) * C;
        if (bias)
            memcpy(yo, bias, (size_t)C * sizeof(float));
        else
            memset(yo, 0, (size_t)C * sizeof(float));
        for (int kh = 0; kh < p->KH; kh++) {
            int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
            if (ih < 0 || ih >= p->H) continue;
            for (int kw = 0; kw < p->KW; kw++) {
                int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                if (iw < 0 || iw >= p->W) continue;
                const float *xs = x + (((size_t)n * p->H + ih) * p->W + iw) * C;
                const float *ws = wp + ((size_t)kh * p->KW + kw) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) yo[c] += xs[c] * ws[c];
            }
        }
    }
}

void fl_conv2d_dw_forward(const fl_conv2d_shape *s, const float *x, const float *wp,
                          const float *bias, float *y) {
    const int rows = s->p.N * s->OH;
#pragma omp parallel for schedule(dynamic, 2)
    for (int r = 0; r < rows; r++) dw_forward_row(s, x, wp, bias, y, r);
}

/* Gather form: each input pixel sums the output pixels whose windows cover it, so input rows are
 * independent and run in parallel. Output position for tap kh: oh = (ih + pad - kh*d) / stride
 * when that division is exact and in range. */
FL_DW_CLONES static void dw_backward_data_row(const fl_conv2d_shape *s, const float *dy,
                                              const float *wp, float *dx, int r) {
    const fl_conv2d_params *p = &s->p;
    const int C = p->C_in, n = r / p->H, ih = r % p->H;
    for (int iw = 0; iw < p->W; iw++) {
        float *d = dx + ((size_t)r * p->W + iw) * C;
        memset(d, 0, (size_t)C * sizeof(float));
        for (int kh = 0; kh < p->KH; kh++) {
            int th = ih + p->pad_top - kh * p->dilation_h;
            if (th < 0 || th % p->stride_h) continue;
            int oh = th / p->stride_h;
            if (oh >= s->OH) continue;
            for (int kw = 0; kw < p->KW; kw++) {
                int tw = iw + p->pad_left - kw * p->dilation_w;
                if (tw < 0 || tw % p->stride_w) continue;
                int ow = tw / p->stride_w;
                if (ow >= s->OW) continue;
                const float *g = dy + (((size_t)n * s->OH + oh) * s->OW + ow) * C;
                const float *ws = wp + ((size_t)kh * p->KW + kw) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) d[c] += g[c] * ws[c];
            }
        }
    }
}

void fl_conv2d_dw_backward_data(const fl_conv2d_shape *s, const float *dy, const float *wp,
                                float *dx) {
    const int rows = s->p.N * s->p.H;
#pragma omp parallel for schedule(dynamic, 2)
    for (int r = 0; r < rows; r++) dw_backward_data_row(s, dy, wp, dx, r);
}

/* acc[KH][KW][C] += the weight-gradient terms of output rows [ra, rb). */
FL_DW_CLONES static void dw_backward_weight_rows(const fl_conv2d_shape *s, const float *x,
                                                 const float *dy, float *acc, int ra, int rb) {
    const fl_conv2d_params *p = &s->p;
    const int C = p->C_in;
    for (int r = ra; r < rb; r++) {
        int n = r / s->OH, oh = r % s->OH;
        for (int ow = 0; ow < s->OW; ow++) {
            const float *g = dy + ((size_t)r * s->OW + ow) * C;
            for (int kh = 0; kh < p->KH; kh++) {
                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                if (ih < 0 || ih >= p->H) continue;
                for (int kw = 0; kw < p->KW; kw++) {
                    int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                    if (iw < 0 || iw >= p->W) continue;
                    const float *xs = x + (((size_t)n * p->H + ih) * p->W + iw) * C;
                    float *a = acc + ((size_t)kh * p->KW + kw) * C;
#pragma omp simd
                    for (int c = 0; c < C; c++) a[c] += g[c] * xs[c];
                }
            }
        }
    }
}

static int wgrad_blocks(const fl_conv2d_shape *s) {
    const int rows = s->p.N * s->OH;
    return rows < FL_DW_WGRAD_BLOCKS ? rows : FL_DW_WGRAD_BLOCKS;
}

size_t fl_conv2d_dw_wgrad_part_floats(const fl_conv2d_shape *s) {
    return (size_t)wgrad_blocks(s) * s->p.KH * s->p.KW * s->p.C_in;
}

void fl_conv2d_dw_backward_weight(const fl_conv2d_shape *s, const float *x, const float *dy,
                                  float *dwp, float *part) {
    const fl_conv2d_params *p = &s->p;
    const int rows = p->N * s->OH;
    const size_t per = (size_t)p->KH * p->KW * p->C_in;
    const int nblk = wgrad_blocks(s);
    memset(part, 0, (size_t)nblk * per * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < nblk; b++) /* block b owns rows [rows*b/nblk, rows*(b+1)/nblk) */
        dw_backward_weight_rows(s, x, dy, part + (size_t)b * per, (int)((long long)rows * b / nblk),
                                (int)((long long)rows * (b + 1) / nblk));
    memcpy(dwp, part, per * sizeof(float));
    for (int b = 1; b < nblk; b++) {
        const float *src = part + (size_t)b * per;
        for (size_t i = 0; i < per; i++) dwp[i] += src[i];
    }
}
