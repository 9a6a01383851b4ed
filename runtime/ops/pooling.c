/* Pooling and resampling ops on NHWC: max pool (k, stride, symmetric pad; YOLOv5 SPPF's
 * 5/1/2), nearest upsampling by an integer factor, global average pool (y [N,1,1,C]).
 *
 * Float32 graphs call runtime/cpu/pool.h; float64 graphs (the finite-difference reference path)
 * run the direct loops here. The kernels overwrite dx, so these ops are FL_OPF_BWD_BETA (a
 * later contribution goes through scratch and is added).
 * Attributes i[]: maxpool k, stride, pad; upsample scale. */
#include <math.h>
#include <string.h>

#include "runtime/cpu/pool.h"
#include "runtime/graph_internal.h"

enum { K_MAXPOOL, K_UPSAMPLE, K_GAP };

static void pool_params(fl_node *x, fl_node *n, fl_pool2d_params *p) {
    memset(p, 0, sizeof *p);
    p->N = (int)x->shape.d[0];
    p->H = (int)x->shape.d[1];
    p->W = (int)x->shape.d[2];
    p->C = (int)x->shape.d[3];
    p->KH = p->KW = (int)n->i[1];
    p->stride_h = p->stride_w = (int)n->i[2];
    p->dilation_h = p->dilation_w = 1;
    p->pad_top = p->pad_left = p->pad_bottom = p->pad_right = (int)n->i[3];
    p->count_include_pad = 1;
}

static int pool_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim != 4) return fl_errf(e, "input must be NHWC (4 axes), got %d", x->shape.ndim);
    for (int k = 0; k < 4; k++)
        if (x->shape.d[k] > (1 << 30)) return fl_errf(e, "sizes too large");
    n->shape = x->shape;
    switch (n->i[0]) {
    case K_MAXPOOL: {
        fl_pool2d_params p;
        pool_params(x, n, &p);
        int OH, OW;
        if (fl_pool2d_check(&p, &OH, &OW, e) < 0) return -1;
        n->shape.d[1] = OH;
        n->shape.d[2] = OW;
        break;
    }
    case K_UPSAMPLE:
        if (n->i[1] < 1 || n->i[1] > 64) return fl_errf(e, "scale %lld outside 1..64", (long long)n->i[1]);
        n->shape.d[1] *= n->i[1];
        n->shape.d[2] *= n->i[1];
        break;
    default:
        n->shape.d[1] = n->shape.d[2] = 1;
    }
    n->ws_bwd_bytes = (size_t)fl_numel(x) * fl_dtype_size(g->dtype);
    return 0;
}

/* ---- the double-precision reference ---- */

static void ref_fwd(fl_node *n, const fl_node *x, const double *xv, double *y) {
    int64_t N = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2], C = x->shape.d[3];
    int64_t OH = n->shape.d[1], OW = n->shape.d[2];
    for (int64_t b = 0; b < N; b++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t c = 0; c < C; c++) {
                    double v = 0;
                    if (n->i[0] == K_MAXPOOL) {
                        v = -INFINITY;
                        for (int64_t kh = 0; kh < n->i[1]; kh++)
                            for (int64_t kw = 0; kw < n->i[1]; kw++) {
                                int64_t ih = oh * n->i[2] - n->i[3] + kh, iw = ow * n->i[2] - n->i[3] + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                double t = xv[((b * H + ih) * W + iw) * C + c];
                                if (t > v) v = t;
                            }
                    } else if (n->i[0] == K_UPSAMPLE) {
                        v = xv[((b * H + oh / n->i[1]) * W + ow / n->i[1]) * C + c];
                    } else {
                        for (int64_t q = 0; q < H * W; q++) v += xv[(b * H * W + q) * C + c];
                        v /= (double)(H * W);
                    }
                    y[((b * OH + oh) * OW + ow) * C + c] = v;
                }
}

/* dx overwritten; the max pool gradient goes to the first maximum in raster order. */
static void ref_bwd(fl_node *n, const fl_node *x, const double *xv, const double *dy, double *dx) {
    int64_t N = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2], C = x->shape.d[3];
    int64_t OH = n->shape.d[1], OW = n->shape.d[2];
    memset(dx, 0, sizeof(double) * (size_t)(N * H * W * C));
    for (int64_t b = 0; b < N; b++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t c = 0; c < C; c++) {
                    double gy = dy[((b * OH + oh) * OW + ow) * C + c];
                    if (n->i[0] == K_MAXPOOL) {
                        double v = -INFINITY;
                        int64_t best = -1;
                        for (int64_t kh = 0; kh < n->i[1]; kh++)
                            for (int64_t kw = 0; kw < n->i[1]; kw++) {
                                int64_t ih = oh * n->i[2] - n->i[3] + kh, iw = ow * n->i[2] - n->i[3] + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                int64_t xi = ((b * H + ih) * W + iw) * C + c;
                                if (xv[xi] > v) v = xv[xi], best = xi;
                            }
                        if (best >= 0) dx[best] += gy;
                    } else if (n->i[0] == K_UPSAMPLE) {
                        dx[((b * H + oh / n->i[1]) * W + ow / n->i[1]) * C + c] += gy;
                    } else {
                        for (int64_t q = 0; q < H * W; q++) dx[(b * H * W + q) * C + c] += gy / (double)(H * W);
                    }
                }
}

static int pool_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (fl_is_f64(g)) {
        ref_fwd(n, x, x->val, n->val);
        return 0;
    }
    int N = (int)x->shape.d[0], H = (int)x->shape.d[1], W = (int)x->shape.d[2], C = (int)x->shape.d[3];
    fl_pool2d_params p;
    switch (n->i[0]) {
    case K_MAXPOOL: pool_params(x, n, &p); return fl_maxpool2d_forward(&p, x->val, n->val, e);
    case K_UPSAMPLE: return fl_upsample_nearest2d_forward(N, H, W, C, (int)n->i[1], x->val, n->val, e);
    default: return fl_global_avgpool_forward(N, H, W, C, x->val, n->val, e);
    }
}

static int pool_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    void *dx = fl_in_grad(g, n, 0);
    if (!dx) return 0;
    void *dst = g->beta[0] ? n->ws_bwd : dx;
    int N = (int)x->shape.d[0], H = (int)x->shape.d[1], W = (int)x->shape.d[2], C = (int)x->shape.d[3];
    int rc = 0;
    fl_pool2d_params p;
    if (fl_is_f64(g)) ref_bwd(n, x, x->val, n->grad, dst);
    else if (n->i[0] == K_MAXPOOL) {
        pool_params(x, n, &p);
        rc = fl_maxpool2d_backward(&p, x->val, n->grad, dst, e);
    } else if (n->i[0] == K_UPSAMPLE) rc = fl_upsample_nearest2d_backward(N, H, W, C, (int)n->i[1], n->grad, dst, e);
    else rc = fl_global_avgpool_backward(N, H, W, C, n->grad, dst, e);
    if (rc < 0) return -1;
    if (g->beta[0]) {
        int64_t cnt = fl_numel(x);
        if (fl_is_f64(g))
            for (int64_t i = 0; i < cnt; i++) ((double *)dx)[i] += ((const double *)dst)[i];
        else
            for (int64_t i = 0; i < cnt; i++) ((float *)dx)[i] += ((const float *)dst)[i];
    }
    return 0;
}

const fl_op_def fl_op_maxpool = {"maxpool", pool_shape, FL_OPF_SAVE_IN(0) | FL_OPF_BWD_BETA, FL_OP_MAXPOOL};
const fl_op_impl fl_ref_maxpool = {pool_fwd, pool_bwd};
const fl_op_def fl_op_upsample = {"upsample_nearest", pool_shape, FL_OPF_BWD_BETA, FL_OP_UPSAMPLE};
const fl_op_impl fl_ref_upsample = {pool_fwd, pool_bwd};
const fl_op_def fl_op_global_avgpool = {"global_avgpool", pool_shape, FL_OPF_BWD_BETA, FL_OP_GLOBAL_AVGPOOL};
const fl_op_impl fl_ref_global_avgpool = {pool_fwd, pool_bwd};

fl_id fl_maxpool(fl_graph *g, fl_id x, int k, int stride, int pad) {
    int64_t a[4] = {K_MAXPOOL, k, stride, pad};
    return fl_graph_add_op(g, &fl_op_maxpool, 1, &x, 0, 0, a, 4);
}

fl_id fl_upsample_nearest(fl_graph *g, fl_id x, int scale) {
    int64_t a[2] = {K_UPSAMPLE, scale};
    return fl_graph_add_op(g, &fl_op_upsample, 1, &x, 0, 0, a, 2);
}

fl_id fl_global_avgpool(fl_graph *g, fl_id x) {
    int64_t a[1] = {K_GAP};
    return fl_graph_add_op(g, &fl_op_global_avgpool, 1, &x, 0, 0, a, 1);
}
