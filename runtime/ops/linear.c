/* Linear: y = x W^T + b over the last axis, W in PyTorch's [out, in] layout, as GEMMs:
 *   forward  Y[M,out]  = X[M,in] W^T
 *   backward dX[M,in] (+)= dY W,   dW[out,in] += dY^T X,   db[out] += column sums of dY.
 * dX is overwritten on its first write (FL_OPF_BWD_BETA: GEMM's beta = 0), so no memset.
 * Compiled for float (cblas_sgemm) and double (cblas_dgemm); see activation.c. */
#ifndef FL_T
#include <cblas.h>

#include "runtime/graph_internal.h"
#include "runtime/ops/lowp_mm.h" /* BF16 / F16 x and w (attribute i[0]: output type) */

#define FL_T float
#define FL_K(name) name##_f32
#define FL_GEMM cblas_sgemm
#include "runtime/ops/linear.c"
#undef FL_T
#undef FL_K
#undef FL_GEMM
#define FL_T double
#define FL_K(name) name##_f64
#define FL_GEMM cblas_dgemm
#include "runtime/ops/linear.c"
#undef FL_T
#undef FL_K
#undef FL_GEMM

static int linear_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    if (x->dtype == FL_I32 || w->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim < 1) return fl_errf(e, "input is a scalar; needs [..., in]");
    int64_t in = x->shape.d[x->shape.ndim - 1];
    if (w->shape.ndim != 2 || w->shape.d[1] != in)
        return fl_errf(e, "weight must be [out, %lld] for an input with %lld features, got %d axes [%lld, %lld]",
                       (long long)in, (long long)in, w->shape.ndim, (long long)w->shape.d[0],
                       (long long)(w->shape.ndim > 1 ? w->shape.d[1] : 0));
    if (n->nin == 3) {
        fl_node *b = fl_in(g, n, 2);
        if (b->shape.ndim != 1 || b->shape.d[0] != w->shape.d[0])
            return fl_errf(e, "bias must be [%lld]", (long long)w->shape.d[0]);
    }
    n->shape = x->shape;
    n->shape.d[n->shape.ndim - 1] = w->shape.d[0];
    return fl_lowp_mm_shape(g, n, (fl_dtype)n->i[0], NULL, e);
}

static void dims(fl_graph *g, fl_node *n, int *M, int *in, int *out) {
    fl_node *w = fl_in(g, n, 1);
    *out = (int)w->shape.d[0];
    *in = (int)w->shape.d[1];
    *M = (int)(fl_numel(n) / *out);
}

static int linear_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    if (fl_lowp_mm_node(g, n)) return fl_lowp_linear_fwd(g, n, e);
    int M, in, out;
    dims(g, n, &M, &in, &out);
    FL_DISPATCH(g, linear_fwd_k, M, in, out, fl_in_val(g, n, 0), fl_in_val(g, n, 1),
                n->nin == 3 ? fl_in_val(g, n, 2) : NULL, n->val);
    return 0;
}

static int linear_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    if (fl_lowp_mm_node(g, n)) return fl_lowp_linear_bwd(g, n, e);
    int M, in, out;
    dims(g, n, &M, &in, &out);
    FL_DISPATCH(g, linear_bwd_k, M, in, out, fl_in_val(g, n, 0), fl_in_val(g, n, 1), n->grad,
                fl_in_grad(g, n, 0), g->beta[0], fl_in_grad(g, n, 1), g->beta[1],
                n->nin == 3 ? fl_in_grad(g, n, 2) : NULL, g->beta[2]);
    return 0;
}

const fl_op_def fl_op_linear = {"linear", linear_shape,
                                FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1) | FL_OPF_BWD_BETA | FL_OPF_LOWP,
                                FL_OP_LINEAR};
const fl_op_impl fl_ref_linear = {linear_fwd, linear_bwd};

fl_id fl_linear_dt(fl_graph *g, fl_id x, fl_id w, fl_id b, fl_dtype out) {
    fl_autocast_operands(g, &x, &w);
    fl_id in[3] = {x, w, b};
    int64_t a = out;
    return fl_graph_add_op(g, &fl_op_linear, b >= 0 ? 3 : 2, in, 0, 0, &a, 1);
}

fl_id fl_linear(fl_graph *g, fl_id x, fl_id w, fl_id b) { return fl_linear_dt(g, x, w, b, g->dtype); }

#else /* ---- kernels for one element type FL_T ---- */

static void FL_K(linear_fwd_k)(int M, int in, int out, const FL_T *x, const FL_T *w,
                               const FL_T *b, FL_T *y) {
    FL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1, x, in, w, in, 0, y, out);
    if (!b) return;
#pragma omp parallel for if ((int64_t)M * out > 16384)
    for (int r = 0; r < M; r++)
        for (int o = 0; o < out; o++) y[(int64_t)r * out + o] += b[o];
}

static void FL_K(linear_bwd_k)(int M, int in, int out, const FL_T *x, const FL_T *w,
                               const FL_T *dy, FL_T *dx, int bx, FL_T *dw, int bw, FL_T *db,
                               int bb) {
    /* The same node as x and w (x W^T with W = x) would alias dx and dw; both GEMMs then add. */
    if (dx)
        FL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, in, out, 1, dy, out, w, in,
                bx ? 1 : 0, dx, in);
    if (dw)
        FL_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, M, 1, dy, out, x, in,
                bw ? 1 : 0, dw, in);
    if (db) {
#pragma omp parallel for if ((int64_t)M * out > 16384)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int r = 0; r < M; r++) s += dy[(int64_t)r * out + o];
            db[o] = bb ? db[o] + (FL_T)s : (FL_T)s;
        }
    }
}
#endif
