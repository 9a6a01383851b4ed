/* Element-wise activations: ReLU, SiLU, sigmoid, softplus, PReLU, and y = a*x + b.
 *
 * This file is written once and compiled for two element types: the first pass (FL_T not yet
 * defined) includes itself twice, with FL_T = float and FL_T = double, to instantiate the
 * kernels (the `#else` half) as name_f32 / name_f64; FL_DISPATCH picks one by the graph's type.
 * Backward kernels are FL_OPF_BWD_BETA: they overwrite the input gradient when they are its first
 * writer (beta 0) and add to it otherwise, which spares the executor a memset. */
#ifndef FL_T
#include <math.h>
#include <string.h>

#include "runtime/graph_internal.h"
#include "runtime/cpu/clones.h"
#include "runtime/ops/fastexp.h"
#include "runtime/ops/silu.h"

#define FL_OMP_MIN 16384 /* below this, threads cost more than they save */

/* FL_EXP: the vectorizable exp for float (about 2 ulp), libm's for the double reference. */
#define FL_T float
#define FL_K(name) name##_f32
#define FL_EXP fl_fast_expf
#include "runtime/ops/activation.c"
#undef FL_T
#undef FL_K
#undef FL_EXP
#define FL_T double
#define FL_K(name) name##_f64
#define FL_EXP exp
#include "runtime/ops/activation.c"
#undef FL_T
#undef FL_K
#undef FL_EXP

static int same_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    n->shape = x->shape;
    return 0;
}

#define UNARY_OP(nm, id, flags_)                                                               \
    static int nm##_fwd(fl_graph *g, fl_node *n, fl_err *e) {                                  \
        FL_DISPATCH(g, nm##_fwd_k, fl_numel(n), fl_in_val(g, n, 0), n->val);                  \
        return 0;                                                                              \
    }                                                                                          \
    static int nm##_bwd(fl_graph *g, fl_node *n, fl_err *e) {                                  \
        FL_DISPATCH(g, nm##_bwd_k, fl_numel(n), fl_in_val(g, n, 0), n->val, n->grad,          \
                    fl_in_grad(g, n, 0), g->beta[0]);                                          \
        return 0;                                                                              \
    }                                                                                          \
    const fl_op_def fl_op_##nm = {#nm, same_shape, flags_, FL_OP_##id};                         \
    const fl_op_impl fl_ref_##nm = {nm##_fwd, nm##_bwd};                                       \
    fl_id fl_##nm(fl_graph *g, fl_id x) { return fl_graph_add_op(g, &fl_op_##nm, 1, &x, 0, 0, 0, 0); }

UNARY_OP(relu, RELU, FL_OPF_SAVE_OUT | FL_OPF_BWD_BETA)
UNARY_OP(silu, SILU, FL_OPF_SAVE_IN(0) | FL_OPF_BWD_BETA)
UNARY_OP(sigmoid, SIGMOID, FL_OPF_SAVE_OUT | FL_OPF_BWD_BETA)
UNARY_OP(softplus, SOFTPLUS, FL_OPF_SAVE_IN(0) | FL_OPF_BWD_BETA)

/* ---- scale: y = alpha*x + beta ---- */
static int scale_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, scale_fwd_k, fl_numel(n), n->f[0], n->f[1], fl_in_val(g, n, 0), n->val);
    return 0;
}
static int scale_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    FL_DISPATCH(g, scale_bwd_k, fl_numel(n), n->f[0], n->grad, fl_in_grad(g, n, 0), g->beta[0]);
    return 0;
}
const fl_op_def fl_op_scale = {"scale", same_shape, FL_OPF_BWD_BETA, FL_OP_SCALE};
const fl_op_impl fl_ref_scale = {scale_fwd, scale_bwd};
fl_id fl_scale(fl_graph *g, fl_id x, double alpha, double beta) {
    double f[2] = {alpha, beta};
    return fl_graph_add_op(g, &fl_op_scale, 1, &x, f, 2, 0, 0);
}

/* ---- PReLU: weight [1] (shared) or [C] (per channel, the last axis) ---- */
static int prelu_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0), *w = fl_in(g, n, 1);
    if (x->dtype == FL_I32 || w->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    int64_t C = x->shape.ndim ? x->shape.d[x->shape.ndim - 1] : 1;
    int64_t wn = fl_numel(w);
    if (w->shape.ndim != 1 || (wn != 1 && wn != C))
        return fl_errf(e, "weight must be [1] or [%lld] (channels), got %lld elements in %d axes",
                       (long long)C, (long long)wn, w->shape.ndim);
    n->shape = x->shape;
    return 0;
}
static int prelu_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.ndim ? x->shape.d[x->shape.ndim - 1] : 1;
    FL_DISPATCH(g, prelu_fwd_k, fl_numel(n) / C, C, fl_numel(fl_in(g, n, 1)) == 1, x->val,
                fl_in_val(g, n, 1), n->val);
    return 0;
}
static int prelu_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.ndim ? x->shape.d[x->shape.ndim - 1] : 1;
    FL_DISPATCH(g, prelu_bwd_k, fl_numel(n) / C, C, fl_numel(fl_in(g, n, 1)) == 1, x->val,
                fl_in_val(g, n, 1), n->grad, fl_in_grad(g, n, 0), fl_in_grad(g, n, 1));
    return 0;
}
const fl_op_def fl_op_prelu = {"prelu", prelu_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1),
                               FL_OP_PRELU};
const fl_op_impl fl_ref_prelu = {prelu_fwd, prelu_bwd};
fl_id fl_prelu(fl_graph *g, fl_id x, fl_id w) {
    fl_id in[2] = {x, w};
    return fl_graph_add_op(g, &fl_op_prelu, 2, in, 0, 0, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */
#include <tgmath.h>

/* dx[i] = E (beta 0) or dx[i] += E (beta 1), as two plain loops so both vectorize. */
#ifndef FL_BWD_LOOP
#define FL_BWD_LOOP(n, beta, E)                                                                \
    do {                                                                                       \
        if (beta) {                                                                            \
            _Pragma("omp parallel for simd if (n > FL_OMP_MIN)") for (int64_t i = 0; i < n; i++) dx[i] += (E); \
        } else {                                                                               \
            _Pragma("omp parallel for simd if (n > FL_OMP_MIN)") for (int64_t i = 0; i < n; i++) dx[i] = (E); \
        }                                                                                      \
    } while (0)
#endif

static void FL_K(relu_fwd_k)(int64_t n, const FL_T *x, FL_T *y) {
#pragma omp parallel for simd if (n > FL_OMP_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}
static void FL_K(relu_bwd_k)(int64_t n, const FL_T *x, const FL_T *y, const FL_T *dy, FL_T *dx,
                             int beta) {
    if (!dx) return;
    FL_BWD_LOOP(n, beta, y[i] > 0 ? dy[i] : 0);
}

/* SiLU and sigmoid are compute-bound (an exp and a division per element): their element loops
 * are built for every vector width (FL_VEC_CLONES) and run over fixed chunks in parallel. */
#ifndef FL_EW_CHUNKS
#define FL_EW_CHUNK 16384
#define FL_EW_CHUNKS(n, CALL)                                                                  \
    do {                                                                                       \
        const int64_t nch_ = ((n) + FL_EW_CHUNK - 1) / FL_EW_CHUNK;                            \
        _Pragma("omp parallel for schedule(static) if (n > FL_OMP_MIN)")                       \
        for (int64_t c_ = 0; c_ < nch_; c_++) {                                                \
            const int64_t i0 = c_ * FL_EW_CHUNK, i1 = i0 + FL_EW_CHUNK < (n) ? i0 + FL_EW_CHUNK : (n); \
            CALL;                                                                              \
        }                                                                                      \
    } while (0)
/* dx[i] = E (beta 0) or dx[i] += E (beta 1) over [i0, i1), as two plain loops so both vectorize. */
#define FL_BWD_RANGE(beta, E)                                                                  \
    do {                                                                                       \
        if (beta) {                                                                            \
            _Pragma("omp simd") for (int64_t i = i0; i < i1; i++) dx[i] += (E);               \
        } else {                                                                               \
            _Pragma("omp simd") for (int64_t i = i0; i < i1; i++) dx[i] = (E);                \
        }                                                                                      \
    } while (0)
#endif

FL_VEC_CLONES static void FL_K(silu_fwd_r)(int64_t i0, int64_t i1, const FL_T *x, FL_T *y) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) y[i] = FL_K(fl_silu1)(x[i]); /* runtime/ops/silu.h */
}
static void FL_K(silu_fwd_k)(int64_t n, const FL_T *x, FL_T *y) {
    FL_EW_CHUNKS(n, FL_K(silu_fwd_r)(i0, i1, x, y));
}
FL_VEC_CLONES static void FL_K(silu_bwd_r)(int64_t i0, int64_t i1, const FL_T *x, const FL_T *dy,
                                           FL_T *dx, int beta) {
    FL_BWD_RANGE(beta, FL_K(fl_dsilu)(x[i], dy[i]));
}
static void FL_K(silu_bwd_k)(int64_t n, const FL_T *x, const FL_T *y, const FL_T *dy, FL_T *dx,
                             int beta) {
    if (!dx) return;
    FL_EW_CHUNKS(n, FL_K(silu_bwd_r)(i0, i1, x, dy, dx, beta));
}

FL_VEC_CLONES static void FL_K(sigmoid_fwd_r)(int64_t i0, int64_t i1, const FL_T *x, FL_T *y) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) y[i] = 1 / (1 + FL_EXP(-x[i]));
}
static void FL_K(sigmoid_fwd_k)(int64_t n, const FL_T *x, FL_T *y) {
    FL_EW_CHUNKS(n, FL_K(sigmoid_fwd_r)(i0, i1, x, y));
}
static void FL_K(sigmoid_bwd_k)(int64_t n, const FL_T *x, const FL_T *y, const FL_T *dy, FL_T *dx,
                                int beta) {
    if (!dx) return;
    FL_BWD_LOOP(n, beta, dy[i] * y[i] * (1 - y[i]));
}

/* PyTorch Softplus(beta=1, threshold=20): log(1 + e^x), or x itself when x > 20. */
static void FL_K(softplus_fwd_k)(int64_t n, const FL_T *x, FL_T *y) {
#pragma omp parallel for if (n > FL_OMP_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 20 ? x[i] : log1p(exp(x[i]));
}
static void FL_K(softplus_bwd_k)(int64_t n, const FL_T *x, const FL_T *y, const FL_T *dy, FL_T *dx,
                                 int beta) {
    if (!dx) return;
    FL_BWD_LOOP(n, beta, x[i] > 20 ? dy[i] : dy[i] / (1 + exp(-x[i])));
}

static void FL_K(scale_fwd_k)(int64_t n, double a, double b, const FL_T *x, FL_T *y) {
#pragma omp parallel for if (n > FL_OMP_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = (FL_T)a * x[i] + (FL_T)b;
}
static void FL_K(scale_bwd_k)(int64_t n, double a, const FL_T *dy, FL_T *dx, int beta) {
    if (!dx) return;
    FL_BWD_LOOP(n, beta, (FL_T)a * dy[i]);
}

static void FL_K(prelu_fwd_k)(int64_t rows, int64_t C, int shared, const FL_T *x, const FL_T *w,
                              FL_T *y) {
#pragma omp parallel for if (rows * C > FL_OMP_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) {
            FL_T v = x[r * C + c];
            y[r * C + c] = v > 0 ? v : w[shared ? 0 : c] * v;
        }
}
/* dw sums over rows in a fixed order per channel (deterministic whatever the thread count). */
static void FL_K(prelu_bwd_k)(int64_t rows, int64_t C, int shared, const FL_T *x, const FL_T *w,
                              const FL_T *dy, FL_T *dx, FL_T *dw) {
    if (dx) {
#pragma omp parallel for if (rows * C > FL_OMP_MIN)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < C; c++) {
                int64_t i = r * C + c;
                dx[i] += x[i] > 0 ? dy[i] : w[shared ? 0 : c] * dy[i];
            }
    }
    if (dw) {
        double tot = 0;
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++) {
                int64_t i = r * C + c;
                if (x[i] <= 0) s += (double)dy[i] * x[i];
            }
            if (shared) tot += s;
            else dw[c] += (FL_T)s;
        }
        if (shared) dw[0] += (FL_T)tot;
    }
}
#endif
