/* Losses, both means over the batch, both scalars:
 *   softmax cross-entropy of logits [N,K] against labels [N] with label smoothing ls (PyTorch
 *     CrossEntropyLoss(label_smoothing=ls)): target q = (1-ls)*onehot + ls/K,
 *     L = mean_n (logsumexp(z_n) - sum_k q_k z_nk),  dz = (softmax(z) - q) / N
 *   BCE with logits of x against targets t (same shape), numerically stable form
 *     l = max(x,0) - x t + log(1 + e^-|x|),  dx = (sigmoid(x) - t) / n,  dt = -x / n
 * A label outside [0, K) is an error naming the row, raised by fl_graph_validate before the
 * step (fl_softmax_ce_validate), not by the kernels. Compiled for float and double. */
#ifndef FL_T
#include "runtime/graph_internal.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/loss.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/loss.c"
#undef FL_T
#undef FL_K

/* Run by fl_graph_validate before the step (the kernels trust their labels). */
int fl_softmax_ce_validate(fl_graph *g, fl_node *n, fl_err *e) {
    const int64_t N = fl_in(g, n, 0)->shape.d[0], K = fl_in(g, n, 0)->shape.d[1];
    const int32_t *lab = fl_in_val(g, n, 1);
    for (int64_t r = 0; r < N; r++)
        if (lab[r] < 0 || lab[r] >= K)
            return fl_errf(e, "label %d at row %lld outside [0, %lld)", (int)lab[r], (long long)r, (long long)K);
    return 0;
}

static int ce_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *z = fl_in(g, n, 0), *l = fl_in(g, n, 1);
    if (z->dtype == FL_I32) return fl_errf(e, "logits are integer labels");
    if (z->shape.ndim != 2) return fl_errf(e, "logits must be [N, K], got %d axes", z->shape.ndim);
    if (l->dtype != FL_I32 || l->shape.ndim != 1 || l->shape.d[0] != z->shape.d[0])
        return fl_errf(e, "labels must be int32 [%lld]", (long long)z->shape.d[0]);
    if (!(n->f[0] >= 0 && n->f[0] <= 1)) return fl_errf(e, "label smoothing %g outside [0, 1]", n->f[0]);
    n->shape.ndim = 0;
    n->ws_fwd_bytes = (size_t)z->shape.d[0] * sizeof(double); /* per-row losses */
    return 0;
}

static int ce_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *z = fl_in(g, n, 0);
    int64_t N = z->shape.d[0], K = z->shape.d[1];
    (void)e;
    FL_DISPATCH(g, ce_fwd_k, N, K, n->f[0], z->val, fl_in_val(g, n, 1), n->val, n->ws_fwd);
    return 0;
}

static int ce_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *z = fl_in(g, n, 0);
    FL_DISPATCH(g, ce_bwd_k, z->shape.d[0], z->shape.d[1], n->f[0], z->val, fl_in_val(g, n, 1),
                n->grad, fl_in_grad(g, n, 0));
    return 0;
}

const fl_op_def fl_op_softmax_ce = {"softmax_ce", ce_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1),
                                    FL_OP_SOFTMAX_CE};
const fl_op_impl fl_ref_softmax_ce = {ce_fwd, ce_bwd};

fl_id fl_softmax_ce(fl_graph *g, fl_id logits, fl_id labels, double ls) {
    fl_id in[2] = {logits, labels};
    return fl_graph_add_op(g, &fl_op_softmax_ce, 2, in, &ls, 1, 0, 0);
}

static int bce_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *t = fl_in(g, n, 1);
    if (x->dtype == FL_I32 || t->dtype == FL_I32) return fl_errf(e, "inputs must be float");
    if (!fl_shape_eq(&x->shape, &t->shape)) {
        char a[128], b[128];
        return fl_errf(e, "logits %s and targets %s differ", fl_shape_str(&x->shape, a, sizeof a),
                       fl_shape_str(&t->shape, b, sizeof b));
    }
    n->shape.ndim = 0;
    return 0;
}

static int bce_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, bce_fwd_k, fl_numel(fl_in(g, n, 0)), fl_in_val(g, n, 0), fl_in_val(g, n, 1), n->val);
    return 0;
}

static int bce_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, bce_bwd_k, fl_numel(fl_in(g, n, 0)), fl_in_val(g, n, 0), fl_in_val(g, n, 1),
                n->grad, fl_in_grad(g, n, 0), fl_in_grad(g, n, 1));
    return 0;
}

const fl_op_def fl_op_bce_logits = {"bce_logits", bce_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1),
                                    FL_OP_BCE_LOGITS};
const fl_op_impl fl_ref_bce_logits = {bce_fwd, bce_bwd};

fl_id fl_bce_logits(fl_graph *g, fl_id x, fl_id t) {
    fl_id in[2] = {x, t};
    return fl_graph_add_op(g, &fl_op_bce_logits, 2, in, 0, 0, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */
#include <tgmath.h>

static double FL_K(row_lse)(const FL_T *z, int64_t K) {
    double mx = z[0], s = 0;
    for (int64_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    for (int64_t k = 0; k < K; k++) s += exp((double)z[k] - mx);
    return mx + log(s);
}

/* Rows in parallel (ArcFace heads have ~15k classes), per-row losses summed in row order. */
static void FL_K(ce_fwd_k)(int64_t N, int64_t K, double ls, const FL_T *z, const int32_t *lab, FL_T *y,
                           double *row) {
#pragma omp parallel for if (N * K > 16384)
    for (int64_t r = 0; r < N; r++) {
        const FL_T *zr = z + r * K;
        double lse = FL_K(row_lse)(zr, K), sz = 0;
        for (int64_t k = 0; k < K; k++) sz += zr[k];
        row[r] = lse - (1 - ls) * zr[lab[r]] - ls / (double)K * sz;
    }
    double tot = 0;
    for (int64_t r = 0; r < N; r++) tot += row[r];
    y[0] = (FL_T)(tot / (double)N);
}

static void FL_K(ce_bwd_k)(int64_t N, int64_t K, double ls, const FL_T *z, const int32_t *lab,
                           const FL_T *dy, FL_T *dz) {
    if (!dz) return;
    double g = dy[0] / (double)N;
#pragma omp parallel for if (N * K > 16384)
    for (int64_t r = 0; r < N; r++) {
        const FL_T *zr = z + r * K;
        double lse = FL_K(row_lse)(zr, K);
        for (int64_t k = 0; k < K; k++) {
            double q = ls / (double)K + (k == lab[r] ? 1 - ls : 0);
            dz[r * K + k] += (FL_T)(g * (exp((double)zr[k] - lse) - q));
        }
    }
}

static void FL_K(bce_fwd_k)(int64_t n, const FL_T *x, const FL_T *t, FL_T *y) {
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        tot += (v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v)));
    }
    y[0] = (FL_T)(tot / (double)n);
}

static void FL_K(bce_bwd_k)(int64_t n, const FL_T *x, const FL_T *t, const FL_T *dy, FL_T *dx, FL_T *dt) {
    double g = dy[0] / (double)n;
#pragma omp parallel for if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (dx) dx[i] += (FL_T)(g * (1 / (1 + exp(-v)) - t[i]));
        if (dt) dt[i] += (FL_T)(-g * v);
    }
}
#endif
