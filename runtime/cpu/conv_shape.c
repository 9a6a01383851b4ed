/* conv2d parameter checks and the padding helpers (see conv.h): the validated shape every
 * kernel file starts from. */
#include <limits.h>
#include <stdint.h>

#include "runtime/cpu/conv.h"
#include "runtime/cpu/conv_internal.h"

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

int fl_conv2d_shape_of(const fl_conv2d_params *p, fl_conv2d_shape *s, fl_err *e) {
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
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d");
    if (OH) *OH = s.OH;
    if (OW) *OW = s.OW;
    return 0;
}

size_t fl_conv2d_x_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return fl_conv2d_shape_of(p, &s, &e) ? 0 : (size_t)p->N * p->H * p->W * p->C_in;
}

size_t fl_conv2d_y_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return fl_conv2d_shape_of(p, &s, &e) ? 0 : (size_t)p->N * s.OH * s.OW * p->C_out;
}

size_t fl_conv2d_w_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return fl_conv2d_shape_of(p, &s, &e) ? 0 : (size_t)p->C_out * s.K;
}
