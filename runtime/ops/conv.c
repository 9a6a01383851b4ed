/* 2-D convolution as a graph op: NHWC x, OIHW weight [C_out, C_in/groups, KH, KW], optional
 * bias [C_out], square stride and dilation, groups (depthwise when groups == C_in == C_out),
 * explicit zero padding per side (symmetric k//2 or TensorFlow "same", see fl_conv2d_layer).
 *
 * Float32 graphs call the CPU kernels in runtime/cpu/conv.h. Float64 graphs (the finite-
 * difference reference path) run the direct loops below: slow, obviously correct, double.
 * The kernels overwrite their outputs, so the op is FL_OPF_BWD_BETA: a gradient written first
 * goes straight into its buffer, a later one (and every parameter gradient, which accumulates
 * across micro-batches) goes through backward scratch and is added.
 * Float32 convs run allocation-free: the weights packed into the node's kept buffer (remade only
 * when the store's parameter version moved, so an eval graph packs once and backward reuses
 * forward's pack) and the kernels' scratch planned as ws_fwd / the tail of ws_bwd.
 * BF16 / F16 x and w run ops/lowp_mm.c (widened to float32 scratch, the same float32 kernels).
 * Attributes i[]: stride, dilation, groups, pad top, left, bottom, right, output type. */
#include <string.h>

#include "runtime/cpu/conv.h"
#include "runtime/graph_internal.h"
#include "runtime/ops/lowp_mm.h"

static void params_of(fl_graph *g, fl_node *n, fl_conv2d_params *p) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    memset(p, 0, sizeof *p);
    p->N = (int)x->shape.d[0];
    p->H = (int)x->shape.d[1];
    p->W = (int)x->shape.d[2];
    p->C_in = (int)x->shape.d[3];
    p->C_out = (int)w->shape.d[0];
    p->KH = (int)w->shape.d[2];
    p->KW = (int)w->shape.d[3];
    p->stride_h = p->stride_w = (int)n->i[0];
    p->dilation_h = p->dilation_w = (int)n->i[1];
    p->groups = (int)n->i[2];
    p->pad_top = (int)n->i[3];
    p->pad_left = (int)n->i[4];
    p->pad_bottom = (int)n->i[5];
    p->pad_right = (int)n->i[6];
}

static int conv_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    if (x->dtype == FL_I32 || w->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim != 4) return fl_errf(e, "input must be NHWC (4 axes), got %d", x->shape.ndim);
    if (w->shape.ndim != 4) return fl_errf(e, "weight must be OIHW (4 axes), got %d", w->shape.ndim);
    for (int k = 0; k < 4; k++)
        if (x->shape.d[k] > (1 << 30) || w->shape.d[k] > (1 << 30)) return fl_errf(e, "sizes too large");
    if (n->i[2] < 1 || x->shape.d[3] % n->i[2] != 0 || w->shape.d[1] * n->i[2] != x->shape.d[3])
        return fl_errf(e, "weight [%lld,%lld,%lld,%lld] does not fit %lld input channels in %lld groups",
                       (long long)w->shape.d[0], (long long)w->shape.d[1], (long long)w->shape.d[2],
                       (long long)w->shape.d[3], (long long)x->shape.d[3], (long long)n->i[2]);
    if (n->nin == 3) {
        fl_node *b = fl_in(g, n, 2);
        if (b->shape.ndim != 1 || b->shape.d[0] != w->shape.d[0])
            return fl_errf(e, "bias must be [%lld]", (long long)w->shape.d[0]);
    }
    fl_conv2d_params p;
    params_of(g, n, &p);
    int OH, OW;
    if (fl_conv2d_check(&p, &OH, &OW, e) < 0) return -1;
    n->shape = x->shape;
    n->shape.d[1] = OH;
    n->shape.d[2] = OW;
    n->shape.d[3] = p.C_out;
    size_t es = fl_dtype_size(g->dtype);
    size_t stage = (size_t)(fl_numel(x) + fl_numel(w) + p.C_out) * es;
    n->ws_bwd_bytes = stage;
    if (!fl_is_f64(g)) { /* float32 kernels: packed weights and their scratch */
        n->keep_bytes = fl_conv2d_pack_numel(&p) * sizeof(float);
        n->ws_fwd_bytes = fl_conv2d_forward_ws_bytes(&p);
        size_t bd = fl_conv2d_backward_data_ws_bytes(&p), bw = fl_conv2d_backward_weight_ws_bytes(&p);
        size_t k = bd > bw ? bd : bw;
        if (k) n->ws_bwd_bytes = fl_arena_round(stage) + k; /* after the staging area */
    }
    if (fl_lowp_mm_shape(g, n, (fl_dtype)n->i[7], &p, e)) return -1;
    if (fl_lowp_mm_node(g, n)) n->keep_bytes = 0; /* the low-precision path widens w itself */
    return 0;
}

/* The weights in the kernels' layouts (runtime/cpu/conv.c: the GEMM panels for forward and
 * backward data, for 1x1 kernels too), packed into n->keep once per parameter version (every
 * call when w is computed by the graph rather than stored); w itself when no pack is needed. */
static const float *packed_weights(fl_graph *g, fl_node *n, const fl_conv2d_params *p) {
    fl_node *w = fl_in(g, n, 1);
    if (!n->keep_bytes) return w->val;
    int stored = w->kind == FL_NODE_PARAM || w->kind == FL_NODE_BUFFER;
    uint64_t v = fl_pstore_version(g->store);
    if (!stored || n->keep_version != v) {
        fl_conv2d_pack(p, w->val, n->keep);
        n->keep_version = stored ? v : 0;
        g->repacks++;
    }
    return n->keep;
}

/* ---- the double-precision reference (direct loops) ---- */

/* Visits every (output, weight tap, input) triple: mode 0 forward, 1 grad input, 2 grad weight. */
static void conv_ref(const fl_conv2d_params *p, int OH, int OW, int mode, const double *x,
                     const double *w, const double *dy, double *out) {
    int cig = p->C_in / p->groups, cog = p->C_out / p->groups;
    for (int n = 0; n < p->N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int co = 0; co < p->C_out; co++) {
                    int64_t yi = (((int64_t)n * OH + oh) * OW + ow) * p->C_out + co;
                    int gr = co / cog;
                    double acc = 0;
                    for (int ci = 0; ci < cig; ci++)
                        for (int kh = 0; kh < p->KH; kh++)
                            for (int kw = 0; kw < p->KW; kw++) {
                                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                                int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                                int64_t xi = (((int64_t)n * p->H + ih) * p->W + iw) * p->C_in + gr * cig + ci;
                                int64_t wi = (((int64_t)co * cig + ci) * p->KH + kh) * p->KW + kw;
                                if (mode == 0) acc += x[xi] * w[wi];
                                else if (mode == 1) out[xi] += dy[yi] * w[wi];
                                else out[wi] += dy[yi] * x[xi];
                            }
                    if (mode == 0) out[yi] = acc;
                }
}

static int conv_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_conv2d_params p;
    params_of(g, n, &p);
    if (fl_lowp_mm_node(g, n)) return fl_lowp_conv_fwd(g, n, &p, e);
    const void *b = n->nin == 3 ? fl_in_val(g, n, 2) : NULL;
    if (!fl_is_f64(g))
        return fl_conv2d_forward_planned(&p, fl_in_val(g, n, 0), packed_weights(g, n, &p), b, n->val,
                                         n->ws_fwd, n->ws_fwd_bytes, e);
    int OH = (int)n->shape.d[1], OW = (int)n->shape.d[2];
    double *y = n->val;
    conv_ref(&p, OH, OW, 0, fl_in_val(g, n, 0), fl_in_val(g, n, 1), NULL, y);
    if (b)
        for (int64_t i = 0; i < fl_numel(n); i++) y[i] += ((const double *)b)[i % p.C_out];
    return 0;
}

/* dst (+)= src over cnt elements; beta 0 copies. */
static void put(fl_graph *g, void *dst, const void *src, int64_t cnt, int beta) {
    if (!beta) {
        memcpy(dst, src, (size_t)cnt * fl_dtype_size(g->dtype));
    } else if (fl_is_f64(g)) {
        for (int64_t i = 0; i < cnt; i++) ((double *)dst)[i] += ((const double *)src)[i];
    } else {
        for (int64_t i = 0; i < cnt; i++) ((float *)dst)[i] += ((const float *)src)[i];
    }
}

static int conv_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_conv2d_params p;
    params_of(g, n, &p);
    if (fl_lowp_mm_node(g, n)) return fl_lowp_conv_bwd(g, n, &p, e);
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    void *dx = fl_in_grad(g, n, 0), *dw = fl_in_grad(g, n, 1);
    void *db = n->nin == 3 ? fl_in_grad(g, n, 2) : NULL;
    int64_t nx = fl_numel(x), nw = fl_numel(w);
    size_t es = fl_dtype_size(g->dtype);
    char *ws = n->ws_bwd;
    int OH = (int)n->shape.d[1], OW = (int)n->shape.d[2];
    /* float32: the kernels' scratch follows the staging area (see conv_shape) */
    size_t koff = fl_arena_round((size_t)(nx + nw + p.C_out) * es);
    void *kws = n->ws_bwd_bytes > koff ? ws + koff : NULL;
    size_t kwsb = n->ws_bwd_bytes > koff ? n->ws_bwd_bytes - koff : 0;
    if (dx) {
        void *dst = g->beta[0] ? ws : dx;
        if (!fl_is_f64(g)) {
            if (fl_conv2d_backward_data_planned(&p, n->grad, packed_weights(g, n, &p), dst, kws, kwsb, e) < 0)
                return -1;
        } else {
            memset(dst, 0, (size_t)nx * es);
            conv_ref(&p, OH, OW, 1, NULL, w->val, n->grad, dst);
        }
        if (g->beta[0]) put(g, dx, ws, nx, 1);
    }
    if (dw || db) {
        /* weight and bias gradients land in scratch, then add (parameters accumulate) */
        char *sw = ws, *sb = ws + (size_t)nw * es;
        if (!fl_is_f64(g)) {
            if (fl_conv2d_backward_weight_planned(&p, x->val, n->grad, (float *)sw, db ? (float *)sb : NULL,
                                                  kws, kwsb, e) < 0)
                return -1;
        } else {
            memset(sw, 0, (size_t)(nw + p.C_out) * es);
            conv_ref(&p, OH, OW, 2, x->val, NULL, n->grad, (double *)sw);
            const double *gy = n->grad;
            for (int64_t i = 0; i < fl_numel(n); i++) ((double *)sb)[i % p.C_out] += gy[i];
        }
        if (dw) put(g, dw, sw, nw, g->beta[1]);
        if (db) put(g, db, sb, p.C_out, g->beta[2]);
    }
    return 0;
}

const fl_op_def fl_op_conv2d = {"conv2d", conv_shape,
                                FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1) | FL_OPF_BWD_BETA | FL_OPF_LOWP,
                                FL_OP_CONV2D};
const fl_op_impl fl_ref_conv2d = {conv_fwd, conv_bwd};

fl_id fl_conv2d_dt(fl_graph *g, fl_id x, fl_id w, fl_id b, int stride, int dilation, int groups,
                   const int pad[4], fl_dtype out) {
    if (!pad) return fl_graph_fail(g, "conv2d: NULL padding");
    fl_autocast_operands(g, &x, &w);
    fl_id in[3] = {x, w, b};
    int64_t a[8] = {stride, dilation, groups, pad[0], pad[1], pad[2], pad[3], out};
    return fl_graph_add_op(g, &fl_op_conv2d, b >= 0 ? 3 : 2, in, 0, 0, a, 8);
}

fl_id fl_conv2d(fl_graph *g, fl_id x, fl_id w, fl_id b, int stride, int dilation, int groups,
                const int pad[4]) {
    return fl_conv2d_dt(g, x, w, b, stride, dilation, groups, pad, g->dtype);
}
