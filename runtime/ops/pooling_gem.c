/* GeM pooling (generalized mean) over H and W of NHWC x with a trainable exponent p [1]:
 *   m[n,c] = mean_hw clamp(x, eps)^p,   y[n,c] = m^(1/p)          (output [N,1,1,C])
 *   dy/dx  = m^(1/p - 1) * x^(p-1) / HW   where x >= eps, else 0
 *   dy/dp  = y * (mean_hw(x^p log x) / (p m) - log(m) / p^2)
 * m is kept (aux) for the backward pass. Compiled for float and double; see activation.c. */
#ifndef FL_T
#include "runtime/graph_internal.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/pooling_gem.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/pooling_gem.c"
#undef FL_T
#undef FL_K

static int gem_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *p = fl_in(g, n, 1);
    if (x->dtype == FL_I32 || p->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim != 4) return fl_errf(e, "input must be NHWC (4 axes), got %d", x->shape.ndim);
    if (fl_numel(p) != 1) return fl_errf(e, "p must have one element, got %lld", (long long)fl_numel(p));
    if (!(n->f[0] > 0)) return fl_errf(e, "eps must be > 0");
    n->shape = x->shape;
    n->shape.d[1] = n->shape.d[2] = 1;
    n->aux_bytes = (size_t)fl_numel(n) * sizeof(double);
    return 0;
}

static int gem_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    FL_DISPATCH(g, gem_fwd_k, x->shape.d[0], x->shape.d[1] * x->shape.d[2], x->shape.d[3],
                n->f[0], x->val, fl_in_val(g, n, 1), n->val, n->aux);
    return 0;
}

static int gem_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    FL_DISPATCH(g, gem_bwd_k, x->shape.d[0], x->shape.d[1] * x->shape.d[2], x->shape.d[3],
                n->f[0], x->val, fl_in_val(g, n, 1), n->val, n->aux, n->grad,
                fl_in_grad(g, n, 0), fl_in_grad(g, n, 1));
    return 0;
}

const fl_op_def fl_op_gem = {"gem", gem_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_OUT, FL_OP_GEM};
const fl_op_impl fl_ref_gem = {gem_fwd, gem_bwd};

fl_id fl_gem(fl_graph *g, fl_id x, fl_id p, double eps) {
    fl_id in[2] = {x, p};
    return fl_graph_add_op(g, &fl_op_gem, 2, in, &eps, 1, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */
#include <tgmath.h>

static void FL_K(gem_fwd_k)(int64_t N, int64_t HW, int64_t C, double eps, const FL_T *x,
                            const FL_T *pp, FL_T *y, double *m) {
    double p = pp[0];
#pragma omp parallel for collapse(2) if (N * HW * C > 16384)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t k = 0; k < HW; k++) {
                double v = x[(n * HW + k) * C + c];
                s += pow(v < eps ? eps : v, p);
            }
            m[n * C + c] = s / (double)HW;
            y[n * C + c] = (FL_T)pow(m[n * C + c], 1 / p);
        }
}

static void FL_K(gem_bwd_k)(int64_t N, int64_t HW, int64_t C, double eps, const FL_T *x,
                            const FL_T *pp, const FL_T *y, const double *m, const FL_T *dy,
                            FL_T *dx, FL_T *dp) {
    double p = pp[0], gp = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            int64_t o = n * C + c;
            double mo = m[o], g = dy[o];
            if (dx) {
                double k = pow(mo, 1 / p - 1) / (double)HW * g;
                for (int64_t q = 0; q < HW; q++) {
                    double v = x[(n * HW + q) * C + c];
                    if (v >= eps) dx[(n * HW + q) * C + c] += (FL_T)(k * pow(v, p - 1));
                }
            }
            if (dp) {
                double sl = 0;
                for (int64_t q = 0; q < HW; q++) {
                    double v = x[(n * HW + q) * C + c];
                    if (v < eps) v = eps;
                    sl += pow(v, p) * log(v);
                }
                sl /= (double)HW;
                double yo = pow(mo, 1 / p);
                gp += g * yo * (sl / (p * mo) - log(mo) / (p * p));
            }
        }
    if (dp) dp[0] += (FL_T)gp;
}
#endif
