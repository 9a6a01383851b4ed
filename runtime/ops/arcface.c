/* ArcFace pieces (SPECS.md section 4). The full head is composed from ops:
 *   cos = linear(l2norm(x), l2norm(W))        W [C*K, D]
 *   cos = subcenter_max(cos, K)               when K > 1: max over each class's K centres
 *   logits = arc_margin(cos, labels, m or m_c, s) -> softmax_ce
 *
 * subcenter_max: [N, C*K] -> [N, C], y[n,c] = max_k x[n, c*K + k] (PyTorch's view(-1, C, K)
 * .max(2) layout); the first maximum's index is kept and takes the whole gradient.
 *
 * arc_margin: y = s*cos except at the label, where with th = cos(pi - m), mm = m sin(pi - m):
 *   cos > th:  y = s*(cos*cos m - sin t * sin m),  sin t = sqrt(clamp(1 - cos^2, 0, 1))
 *   else:      y = s*(cos - mm)
 * (the usual ArcMarginProduct with easy_margin = False). m is a constant (f[0]) or, with a third
 * input, per class: m_c of the label's class (dynamic margins). Compiled for float and double. */
#ifndef FL_T
#include "runtime/graph_internal.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/arcface.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/arcface.c"
#undef FL_T
#undef FL_K

static int scm_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t K = n->i[0];
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (K < 1) return fl_errf(e, "k must be >= 1, got %lld", (long long)K);
    if (x->shape.ndim != 2 || x->shape.d[1] % K != 0)
        return fl_errf(e, "input must be [N, C*%lld]", (long long)K);
    n->shape = x->shape;
    n->shape.d[1] /= K;
    n->aux_bytes = (size_t)fl_numel(n) * sizeof(int32_t);
    return 0;
}

static int scm_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, scm_fwd_k, fl_numel(n), n->i[0], fl_in_val(g, n, 0), n->val, n->aux);
    return 0;
}

static int scm_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, scm_bwd_k, fl_numel(n), n->i[0], n->aux, n->grad, fl_in_grad(g, n, 0));
    return 0;
}

const fl_op_def fl_op_subcenter_max = {"subcenter_max", scm_shape, 0, FL_OP_SUBCENTER_MAX};
const fl_op_impl fl_ref_subcenter_max = {scm_fwd, scm_bwd};

fl_id fl_subcenter_max(fl_graph *g, fl_id cos, int k) {
    int64_t kk = k;
    return fl_graph_add_op(g, &fl_op_subcenter_max, 1, &cos, 0, 0, &kk, 1);
}

static int am_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *l = fl_in(g, n, 1);
    if (x->dtype == FL_I32) return fl_errf(e, "cosines are integer labels");
    if (x->shape.ndim != 2) return fl_errf(e, "cosines must be [N, C], got %d axes", x->shape.ndim);
    if (l->dtype != FL_I32 || l->shape.ndim != 1 || l->shape.d[0] != x->shape.d[0])
        return fl_errf(e, "labels must be int32 [%lld]", (long long)x->shape.d[0]);
    if (n->nin == 3) {
        fl_node *m = fl_in(g, n, 2);
        if (m->dtype == FL_I32 || m->shape.ndim != 1 || m->shape.d[0] != x->shape.d[1])
            return fl_errf(e, "per-class margins must be float [%lld]", (long long)x->shape.d[1]);
    } else if (!(n->f[0] >= 0 && n->f[0] < 1.5707963267948966)) {
        return fl_errf(e, "margin %g outside [0, pi/2)", n->f[0]);
    }
    if (!(n->f[1] > 0)) return fl_errf(e, "scale s must be > 0");
    n->shape = x->shape;
    return 0;
}

/* Run by fl_graph_validate before forward and backward (the kernels trust their labels). */
int fl_arc_margin_validate(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    const int32_t *lab = fl_in_val(g, n, 1);
    for (int64_t r = 0; r < x->shape.d[0]; r++)
        if (lab[r] < 0 || lab[r] >= x->shape.d[1])
            return fl_errf(e, "label %d at row %lld outside [0, %lld)", (int)lab[r], (long long)r, (long long)x->shape.d[1]);
    return 0;
}

static int am_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    (void)e;
    FL_DISPATCH(g, am_k, x->shape.d[0], x->shape.d[1], n->f[0], n->f[1], x->val, fl_in_val(g, n, 1),
                n->nin == 3 ? fl_in_val(g, n, 2) : NULL, n->val, NULL, NULL);
    return 0;
}

static int am_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    void *dx = fl_in_grad(g, n, 0);
    (void)e;
    if (dx)
        FL_DISPATCH(g, am_k, x->shape.d[0], x->shape.d[1], n->f[0], n->f[1], x->val, fl_in_val(g, n, 1),
                    n->nin == 3 ? fl_in_val(g, n, 2) : NULL, NULL, n->grad, dx);
    return 0;
}

const fl_op_def fl_op_arc_margin = {"arc_margin", am_shape, FL_OPF_SAVE_ALL_IN, FL_OP_ARC_MARGIN};
const fl_op_impl fl_ref_arc_margin = {am_fwd, am_bwd};

fl_id fl_arc_margin(fl_graph *g, fl_id cos, fl_id labels, fl_id margins, double m, double s) {
    fl_id in[3] = {cos, labels, margins};
    double f[2] = {m, s};
    return fl_graph_add_op(g, &fl_op_arc_margin, margins >= 0 ? 3 : 2, in, f, 2, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */
#include <tgmath.h>

static void FL_K(scm_fwd_k)(int64_t nout, int64_t K, const FL_T *x, FL_T *y, int32_t *arg) {
#pragma omp parallel for if (nout * K > 16384)
    for (int64_t o = 0; o < nout; o++) {
        const FL_T *xo = x + o * K;
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (xo[k] > xo[best]) best = k;
        y[o] = xo[best];
        arg[o] = (int32_t)best;
    }
}

static void FL_K(scm_bwd_k)(int64_t nout, int64_t K, const int32_t *arg, const FL_T *dy, FL_T *dx) {
    if (!dx) return;
#pragma omp parallel for if (nout * K > 16384)
    for (int64_t o = 0; o < nout; o++) dx[o * K + arg[o]] += dy[o];
}

/* Forward when y != NULL, else backward (dx += dy * dy/dcos). */
static void FL_K(am_k)(int64_t N, int64_t C, double m0, double s, const FL_T *x, const int32_t *lab,
                       const FL_T *mc, FL_T *y, const FL_T *dy, FL_T *dx) {
#pragma omp parallel for if (N * C > 16384)
    for (int64_t r = 0; r < N; r++) {
        int64_t t = lab[r];
        double m = mc ? (double)mc[t] : m0;
        double cm = cos(m), sm = sin(m), th = cos(M_PI - m), mm = sin(M_PI - m) * m;
        for (int64_t c = 0; c < C; c++) {
            int64_t i = r * C + c;
            double v = x[i];
            if (c != t) {
                if (y) y[i] = (FL_T)(s * v);
                else dx[i] += (FL_T)(s * dy[i]);
                continue;
            }
            double u = 1 - v * v;
            u = u < 0 ? 0 : (u > 1 ? 1 : u);
            double sn = sqrt(u);
            if (y) {
                y[i] = (FL_T)(s * (v > th ? v * cm - sn * sm : v - mm));
            } else {
                /* d sin t / d cos = -cos / sin t inside the clamp, 0 where it is clamped */
                double d = v > th ? cm + (sn > 0 ? sm * v / sn : 0) : 1;
                dx[i] += (FL_T)(s * d * dy[i]);
            }
        }
    }
}
#endif
