/* Linear and conv2d with BF16 / F16 x and w: products exact, accumulation in float32.
 *
 * Method: x and w are widened to float32 in planned scratch (exact: every bf16 / f16 value is a
 * float32), then the unchanged float32 kernels run (cblas_sgemm for linear, runtime/cpu/conv.h
 * for conv2d). A product of two bf16 (8-bit significands) or f16 (11-bit) values has at most 22
 * significant bits, so it is exact in float32 and the only roundings are float32 accumulation
 * plus the rounding of the inputs (and of the output when a low-precision output is asked for).
 * The result is therefore bitwise the float32 kernel applied to the rounded inputs, whatever
 * conversion path (plain / AVX2) ran, and as deterministic as the float32 op (same BLAS calls,
 * same tiling). The bias stays float32 and is added in float32 before any output rounding.
 *
 * Bounds (u = 2^-8 for bf16, 2^-11 for f16; u32 = 2^-24; k = the reduction length; Frobenius
 * norms; X and W the float32 values before rounding), against the float32 op on X, W:
 *   linear   ||Y_lp - Y||  <= (2u + u^2) ||X|| ||W|| + 2 g_k ||X|| ||W||,  g_k = k u32 / (1 - k u32)
 *   conv2d   the same with ||X|| replaced by sqrt(KH KW) ||X|| (im2col repeats each input at most
 *            KH KW times; groups / depthwise only tighten it, by Cauchy-Schwarz over the groups)
 *   low-precision output: + u ||Y||.
 * Backward (dY float32): dX and dW are the float32 backward kernels on the widened inputs, then
 * rounded once into the BF16 / F16 gradient buffers of x and w (a gradient has its node's type,
 * as in PyTorch autocast); the same bounds hold with (dY, W) and (dY, X) in place of (X, W).
 * tests/unit/test_runtime_bf16.c checks these bounds and the bitwise identity per op.
 *
 * Scratch (n->ws_fwd / ws_bwd, planned with the activations; nothing is allocated in a step):
 *   forward   x32 | w32 | y32 (low-precision output only)
 *   backward  dy32 (low-precision output only) | x32 | w32 | dx32 | dw32 | db32 (conv) */
#include <cblas.h>
#include <string.h>

#include "runtime/cpu/lowp.h"
#include "runtime/ops/lowp_mm.h"

int fl_lowp_mm_shape(fl_graph *g, fl_node *n, fl_dtype out, const fl_conv2d_params *conv, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    int lx = fl_dtype_is_lowp(x->dtype), lw = fl_dtype_is_lowp(w->dtype);
    if (!lx && !lw) {
        if (out != g->dtype)
            return fl_errf(e, "a %s output needs BF16 / F16 x and w (these are %s)", fl_dtype_name(out),
                           fl_dtype_name(x->dtype));
        return 0;
    }
    if (x->dtype != w->dtype)
        return fl_errf(e, "x is %s and w is %s: both must have the same low-precision type (fl_cast them, "
                       "or fl_graph_set_autocast)", fl_dtype_name(x->dtype), fl_dtype_name(w->dtype));
    if (g->dtype != FL_F32) return fl_errf(e, "low-precision inputs need an F32 graph (this one is %s)", fl_dtype_name(g->dtype));
    if (n->nin == 3 && fl_in(g, n, 2)->dtype != FL_F32)
        return fl_errf(e, "the bias must be F32 (it is added in float32), got %s", fl_dtype_name(fl_in(g, n, 2)->dtype));
    if (out != FL_F32 && !fl_dtype_is_lowp(out))
        return fl_errf(e, "output type %s: F32, BF16 or F16 only", fl_dtype_name(out));
    n->dtype = out;
    size_t nx = (size_t)fl_numel(x), nw = (size_t)fl_numel(w), ny = (size_t)fl_numel(n);
    size_t lo = fl_dtype_is_lowp(out) ? ny : 0, nb = conv ? (size_t)conv->C_out : 0;
    n->ws_fwd_bytes = (nx + nw + lo) * sizeof(float);
    n->ws_bwd_bytes = (lo + 2 * nx + 2 * nw + nb) * sizeof(float);
    return 0;
}

/* ---- linear: y = x W^T + b ------------------------------------------------------------------ */

static void lin_dims(fl_graph *g, fl_node *n, int *M, int *in, int *out) {
    fl_node *w = fl_in(g, n, 1);
    *out = (int)w->shape.d[0];
    *in = (int)w->shape.d[1];
    *M = (int)(fl_numel(n) / *out);
}

int fl_lowp_linear_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    int M, in, out;
    lin_dims(g, n, &M, &in, &out);
    float *xf = n->ws_fwd, *wf = xf + (size_t)M * in, *yf = wf + (size_t)out * in;
    fl_lowp_to_f32(xf, x->val, x->dtype, (int64_t)M * in, FL_LOWP_AUTO);
    fl_lowp_to_f32(wf, w->val, w->dtype, (int64_t)out * in, FL_LOWP_AUTO);
    int lo = fl_dtype_is_lowp(n->dtype);
    float *y = lo ? yf : n->val;
    /* the float32 kernel of ops/linear.c, call for call */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1, xf, in, wf, in, 0, y, out);
    if (n->nin == 3) {
        const float *b = fl_in_val(g, n, 2);
#pragma omp parallel for if ((int64_t)M * out > 16384)
        for (int r = 0; r < M; r++)
            for (int o = 0; o < out; o++) y[(int64_t)r * out + o] += b[o];
    }
    if (lo) fl_lowp_from_f32(n->val, n->dtype, yf, (int64_t)M * out, 0, FL_LOWP_AUTO);
    return 0;
}

int fl_lowp_linear_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    int M, in, out;
    lin_dims(g, n, &M, &in, &out);
    size_t mi = (size_t)M * in, oi = (size_t)out * in, mo = (size_t)M * out;
    int lo = fl_dtype_is_lowp(n->dtype);
    float *dyf = n->ws_bwd, *xf = dyf + (lo ? mo : 0), *wf = xf + mi, *t = wf + oi;
    const float *dy = n->grad;
    if (lo) {
        fl_lowp_to_f32(dyf, n->grad, n->dtype, (int64_t)mo, FL_LOWP_AUTO);
        dy = dyf;
    }
    void *dx = fl_in_grad(g, n, 0), *dw = fl_in_grad(g, n, 1);
    float *db = n->nin == 3 ? fl_in_grad(g, n, 2) : NULL;
    if (dx) {
        fl_lowp_to_f32(wf, w->val, w->dtype, (int64_t)oi, FL_LOWP_AUTO);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, in, out, 1, dy, out, wf, in, 0, t, in);
        fl_lowp_from_f32(dx, x->dtype, t, (int64_t)mi, g->beta[0], FL_LOWP_AUTO);
    }
    if (dw) {
        fl_lowp_to_f32(xf, x->val, x->dtype, (int64_t)mi, FL_LOWP_AUTO);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, M, 1, dy, out, xf, in, 0, t, in);
        fl_lowp_from_f32(dw, w->dtype, t, (int64_t)oi, g->beta[1], FL_LOWP_AUTO);
    }
    if (db) {
        int bb = g->beta[2];
#pragma omp parallel for if ((int64_t)M * out > 16384)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int r = 0; r < M; r++) s += dy[(int64_t)r * out + o];
            db[o] = bb ? db[o] + (float)s : (float)s;
        }
    }
    return 0;
}

/* ---- conv2d ----------------------------------------------------------------------------------- */

int fl_lowp_conv_fwd(fl_graph *g, fl_node *n, const fl_conv2d_params *p, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    size_t nx = (size_t)fl_numel(x), nw = (size_t)fl_numel(w);
    float *xf = n->ws_fwd, *wf = xf + nx, *yf = wf + nw;
    fl_lowp_to_f32(xf, x->val, x->dtype, (int64_t)nx, FL_LOWP_AUTO);
    fl_lowp_to_f32(wf, w->val, w->dtype, (int64_t)nw, FL_LOWP_AUTO);
    int lo = fl_dtype_is_lowp(n->dtype);
    const float *b = n->nin == 3 ? fl_in_val(g, n, 2) : NULL;
    if (fl_conv2d_forward(p, xf, wf, b, lo ? yf : n->val, e) < 0) return -1;
    if (lo) fl_lowp_from_f32(n->val, n->dtype, yf, fl_numel(n), 0, FL_LOWP_AUTO);
    return 0;
}

int fl_lowp_conv_bwd(fl_graph *g, fl_node *n, const fl_conv2d_params *p, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    size_t nx = (size_t)fl_numel(x), nw = (size_t)fl_numel(w), ny = (size_t)fl_numel(n);
    int lo = fl_dtype_is_lowp(n->dtype);
    float *dyf = n->ws_bwd, *xf = dyf + (lo ? ny : 0), *wf = xf + nx, *tx = wf + nw, *tw = tx + nx,
          *tb = tw + nw;
    const float *dy = n->grad;
    if (lo) {
        fl_lowp_to_f32(dyf, n->grad, n->dtype, (int64_t)ny, FL_LOWP_AUTO);
        dy = dyf;
    }
    void *dx = fl_in_grad(g, n, 0), *dw = fl_in_grad(g, n, 1);
    float *db = n->nin == 3 ? fl_in_grad(g, n, 2) : NULL;
    if (dx) {
        fl_lowp_to_f32(wf, w->val, w->dtype, (int64_t)nw, FL_LOWP_AUTO);
        if (fl_conv2d_backward_data(p, dy, wf, tx, e) < 0) return -1;
        fl_lowp_from_f32(dx, x->dtype, tx, (int64_t)nx, g->beta[0], FL_LOWP_AUTO);
    }
    if (dw || db) {
        fl_lowp_to_f32(xf, x->val, x->dtype, (int64_t)nx, FL_LOWP_AUTO);
        if (fl_conv2d_backward_weight(p, xf, dy, tw, db ? tb : NULL, e) < 0) return -1;
        if (dw) fl_lowp_from_f32(dw, w->dtype, tw, (int64_t)nw, g->beta[1], FL_LOWP_AUTO);
        if (db) fl_lowp_from_f32(db, FL_F32, tb, p->C_out, g->beta[2], FL_LOWP_AUTO);
    }
    return 0;
}
