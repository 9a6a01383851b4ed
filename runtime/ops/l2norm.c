/* L2 normalization over the last axis (F.normalize): y = x / max(||x||, eps).
 *   ||x|| > eps: dx = (dy - y (y . dy)) / ||x||      else dx = dy / eps
 * Row norms are kept (aux). Compiled for float and double; see activation.c. */
#ifndef FL_T
#include "runtime/graph_internal.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/l2norm.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/l2norm.c"
#undef FL_T
#undef FL_K

static int l2_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim < 1) return fl_errf(e, "input is a scalar");
    if (!(n->f[0] > 0)) return fl_errf(e, "eps must be > 0");
    n->shape = x->shape;
    n->aux_bytes = (size_t)(fl_numel(x) / x->shape.d[x->shape.ndim - 1]) * sizeof(double);
    return 0;
}

static int l2_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t D = n->shape.d[n->shape.ndim - 1];
    FL_DISPATCH(g, l2_fwd_k, fl_numel(n) / D, D, n->f[0], fl_in_val(g, n, 0), n->val, n->aux);
    return 0;
}

static int l2_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t D = n->shape.d[n->shape.ndim - 1];
    FL_DISPATCH(g, l2_bwd_k, fl_numel(n) / D, D, n->f[0], n->val, n->aux, n->grad, fl_in_grad(g, n, 0));
    return 0;
}

const fl_op_def fl_op_l2norm = {"l2norm", l2_shape, FL_OPF_SAVE_OUT, FL_OP_L2NORM};
const fl_op_impl fl_ref_l2norm = {l2_fwd, l2_bwd};

fl_id fl_l2norm(fl_graph *g, fl_id x, double eps) {
    return fl_graph_add_op(g, &fl_op_l2norm, 1, &x, &eps, 1, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */
#include <tgmath.h>

static void FL_K(l2_fwd_k)(int64_t rows, int64_t D, double eps, const FL_T *x, FL_T *y, double *nrm) {
#pragma omp parallel for if (rows * D > 16384)
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += (double)x[r * D + j] * x[r * D + j];
        nrm[r] = sqrt(s);
        double d = nrm[r] > eps ? nrm[r] : eps;
        for (int64_t j = 0; j < D; j++) y[r * D + j] = (FL_T)(x[r * D + j] / d);
    }
}

static void FL_K(l2_bwd_k)(int64_t rows, int64_t D, double eps, const FL_T *y, const double *nrm,
                           const FL_T *dy, FL_T *dx) {
    if (!dx) return;
#pragma omp parallel for if (rows * D > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const FL_T *yr = y + r * D, *gr = dy + r * D;
        if (nrm[r] > eps) {
            double dot = 0;
            for (int64_t j = 0; j < D; j++) dot += (double)yr[j] * gr[j];
            for (int64_t j = 0; j < D; j++) dx[r * D + j] += (FL_T)((gr[j] - yr[j] * dot) / nrm[r]);
        } else {
            for (int64_t j = 0; j < D; j++) dx[r * D + j] += (FL_T)(gr[j] / eps);
        }
    }
}
#endif
