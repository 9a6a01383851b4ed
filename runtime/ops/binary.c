/* Binary element-wise ops with NumPy broadcasting: add, sub, mul, div. Squeeze-excite gating is
 * mul([N,1,1,C], [N,H,W,C]); a bias is add([N,H,W,C], [C]).
 *
 * The output is walked as rows of its last axis; each input is read through strides in output
 * coordinates (0 on a stretched axis). The gradient of a stretched input is the sum over the
 * stretched axes, accumulated in a fixed order (deterministic for any thread count).
 * Compiled for float and double (see activation.c for the self-include scheme). */
#ifndef FL_T
#include <string.h>

#include "runtime/graph_internal.h"

#define FL_OMP_MIN 16384

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

/* Strides of a and b in the coordinates of out, plus the geometry the kernels need. */
typedef struct bgeom {
    int nd;
    int64_t d[FL_MAX_DIMS];
    int64_t sa[FL_MAX_DIMS], sb[FL_MAX_DIMS];
    int64_t rows, D; /* out = rows x D (D = last axis) */
} bgeom;

static void geom(fl_graph *g, fl_node *n, bgeom *b) {
    fl_shape os = n->shape;
    if (os.ndim == 0) { /* scalar: one row of one */
        os.ndim = 1;
        os.d[0] = 1;
    }
    fl_shape as = fl_in(g, n, 0)->shape, bs = fl_in(g, n, 1)->shape;
    b->nd = os.ndim;
    memcpy(b->d, os.d, sizeof b->d);
    fl_shape_bcast_strides(&as, &os, b->sa);
    fl_shape_bcast_strides(&bs, &os, b->sb);
    b->D = os.d[os.ndim - 1];
    b->rows = fl_shape_numel(&os) / b->D;
}

/* Offsets of row r (all axes but the last) in a and b. */
static inline void row_off(const bgeom *b, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t a = 0, c = 0;
    for (int k = b->nd - 2; k >= 0; k--) {
        int64_t q = r % b->d[k];
        r /= b->d[k];
        a += q * b->sa[k];
        c += q * b->sb[k];
    }
    *oa = a;
    *ob = c;
}

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/binary.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/binary.c"
#undef FL_T
#undef FL_K

static int binary_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *a = fl_in(g, n, 0), *b = fl_in(g, n, 1);
    if (a->dtype == FL_I32 || b->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    return fl_shape_broadcast(&a->shape, &b->shape, &n->shape, e);
}

static int binary_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    bgeom b;
    geom(g, n, &b);
    FL_DISPATCH(g, bin_fwd_k, (int)n->i[0], &b, fl_in_val(g, n, 0), fl_in_val(g, n, 1), n->val);
    return 0;
}

/* FL_OPF_BWD_BETA: an input of the output's shape is overwritten by its first writer; a
 * stretched input sums several rows into each element, so it is zeroed first instead. */
static int binary_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    bgeom b;
    geom(g, n, &b);
    int beta[2];
    for (int k = 0; k < 2; k++) {
        fl_node *x = fl_in(g, n, k);
        void *dz = fl_in_grad(g, n, k);
        beta[k] = g->beta[k];
        if (dz && !beta[k] && fl_numel(x) != fl_numel(n)) {
            memset(dz, 0, (size_t)fl_numel(x) * fl_dtype_size(g->dtype));
            beta[k] = 1;
        }
    }
    FL_DISPATCH(g, bin_bwd_k, (int)n->i[0], &b, fl_in_val(g, n, 0), fl_in_val(g, n, 1), n->grad,
                fl_in_grad(g, n, 0), beta[0], fl_in_grad(g, n, 1), beta[1]);
    return 0;
}

const fl_op_def fl_op_add = {"add", binary_shape, FL_OPF_BWD_BETA, FL_OP_ADD};
const fl_op_impl fl_ref_add = {binary_fwd, binary_bwd};
const fl_op_def fl_op_sub = {"sub", binary_shape, FL_OPF_BWD_BETA, FL_OP_SUB};
const fl_op_impl fl_ref_sub = {binary_fwd, binary_bwd};
const fl_op_def fl_op_mul = {"mul", binary_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1) | FL_OPF_BWD_BETA,
                             FL_OP_MUL};
const fl_op_impl fl_ref_mul = {binary_fwd, binary_bwd};
const fl_op_def fl_op_div = {"div", binary_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1) | FL_OPF_BWD_BETA,
                             FL_OP_DIV};
const fl_op_impl fl_ref_div = {binary_fwd, binary_bwd};

static fl_id binary(fl_graph *g, const fl_op_def *op, int code, fl_id a, fl_id b) {
    fl_id in[2] = {a, b};
    int64_t c = code;
    return fl_graph_add_op(g, op, 2, in, 0, 0, &c, 1);
}
fl_id fl_add(fl_graph *g, fl_id a, fl_id b) { return binary(g, &fl_op_add, OP_ADD, a, b); }
fl_id fl_sub(fl_graph *g, fl_id a, fl_id b) { return binary(g, &fl_op_sub, OP_SUB, a, b); }
fl_id fl_mul(fl_graph *g, fl_id a, fl_id b) { return binary(g, &fl_op_mul, OP_MUL, a, b); }
fl_id fl_div(fl_graph *g, fl_id a, fl_id b) { return binary(g, &fl_op_div, OP_DIV, a, b); }

#else /* ---- kernels for one element type FL_T ---- */

/* One row of D elements: u from a (stride ia, 0 or 1), v from b (stride ib). One loop per
 * stride pattern, so the common cases (same shape, per-channel operand, per-row scalar) are
 * plain unit-stride loops the compiler vectorizes. */
#ifndef FL_BIN_LOOP
#define FL_BIN_LOOP(BODY)                                                                      \
    do {                                                                                       \
        if (ia && ib) {                                                                        \
            for (int64_t j = 0; j < D; j++) {                                                  \
                FL_T u = a[j], v = b[j];                                                       \
                (void)u, (void)v;                                                              \
                BODY;                                                                          \
            }                                                                                  \
        } else if (ia) {                                                                       \
            FL_T v = b[0];                                                                     \
            for (int64_t j = 0; j < D; j++) {                                                  \
                FL_T u = a[j];                                                                 \
                (void)u, (void)v;                                                              \
                BODY;                                                                          \
            }                                                                                  \
        } else {                                                                               \
            FL_T u = a[0];                                                                     \
            for (int64_t j = 0; j < D; j++) {                                                  \
                FL_T v = ib ? b[j] : b[0];                                                     \
                (void)u, (void)v;                                                              \
                BODY;                                                                          \
            }                                                                                  \
        }                                                                                      \
    } while (0)
#endif

static inline void FL_K(fwd_row)(int op, int64_t D, const FL_T *a, int64_t ia, const FL_T *b,
                                 int64_t ib, FL_T *y) {
    switch (op) {
    case OP_ADD: FL_BIN_LOOP(y[j] = u + v); break;
    case OP_SUB: FL_BIN_LOOP(y[j] = u - v); break;
    case OP_MUL: FL_BIN_LOOP(y[j] = u * v); break;
    default: FL_BIN_LOOP(y[j] = u / v); break;
    }
}

static void FL_K(bin_fwd_k)(int op, const bgeom *b, const FL_T *x, const FL_T *w, FL_T *y) {
    int64_t D = b->D, ia = b->sa[b->nd - 1], ib = b->sb[b->nd - 1];
#pragma omp parallel for if (b->rows * D > FL_OMP_MIN)
    for (int64_t r = 0; r < b->rows; r++) {
        int64_t oa, ob;
        row_off(b, r, &oa, &ob);
        FL_K(fwd_row)(op, D, x + oa, ia, w + ob, ib, y + r * D);
    }
}

/* Adds one row's contribution g * d(a op b)/d(input `which`) into z (z's stride is ia or ib:
 * 1 = element-wise, 0 = one element that sums the row, in double). Partials: add (1, 1),
 * sub (1, -1), mul (v, u), div (1/v, -u/v^2). */
static inline void FL_K(bwd_row)(int op, int which, int64_t D, const FL_T *a, int64_t ia,
                                 const FL_T *b, int64_t ib, const FL_T *g, FL_T *z, int beta) {
    if ((which ? ib : ia) && !beta) { /* first writer of a same-shape input: assign */
        switch (op * 2 + which) {
        case OP_SUB * 2 + 1: FL_BIN_LOOP(z[j] = -g[j]); break;
        case OP_MUL * 2 + 0: FL_BIN_LOOP(z[j] = g[j] * v); break;
        case OP_MUL * 2 + 1: FL_BIN_LOOP(z[j] = g[j] * u); break;
        case OP_DIV * 2 + 0: FL_BIN_LOOP(z[j] = g[j] / v); break;
        case OP_DIV * 2 + 1: FL_BIN_LOOP(z[j] = -g[j] * u / (v * v)); break;
        default: FL_BIN_LOOP(z[j] = g[j]); break;
        }
    } else if (which ? ib : ia) {
        switch (op * 2 + which) {
        case OP_SUB * 2 + 1: FL_BIN_LOOP(z[j] -= g[j]); break;
        case OP_MUL * 2 + 0: FL_BIN_LOOP(z[j] += g[j] * v); break;
        case OP_MUL * 2 + 1: FL_BIN_LOOP(z[j] += g[j] * u); break;
        case OP_DIV * 2 + 0: FL_BIN_LOOP(z[j] += g[j] / v); break;
        case OP_DIV * 2 + 1: FL_BIN_LOOP(z[j] -= g[j] * u / (v * v)); break;
        default: FL_BIN_LOOP(z[j] += g[j]); break; /* add, and sub's first input */
        }
    } else {
        double acc = 0;
        switch (op * 2 + which) {
        case OP_SUB * 2 + 1: FL_BIN_LOOP(acc -= g[j]); break;
        case OP_MUL * 2 + 0: FL_BIN_LOOP(acc += g[j] * v); break;
        case OP_MUL * 2 + 1: FL_BIN_LOOP(acc += g[j] * u); break;
        case OP_DIV * 2 + 0: FL_BIN_LOOP(acc += g[j] / v); break;
        case OP_DIV * 2 + 1: FL_BIN_LOOP(acc -= g[j] * u / (v * v)); break;
        default: FL_BIN_LOOP(acc += g[j]); break;
        }
        /* beta 0 with stride 0: a same-shape input whose last axis has size 1 */
        z[0] = beta ? z[0] + (FL_T)acc : (FL_T)acc;
    }
}

/* One input's gradient. When that input is not stretched along the first axis, different
 * first-axis slices write disjoint elements and run in parallel; otherwise serially. */
static void FL_K(grad_one)(int op, int which, const bgeom *b, const FL_T *x, const FL_T *w,
                           const FL_T *dy, FL_T *dz, int beta) {
    int64_t D = b->D, ia = b->sa[b->nd - 1], ib = b->sb[b->nd - 1];
    const int64_t *st = which ? b->sb : b->sa;
    int64_t per = b->nd >= 2 ? b->rows / b->d[0] : b->rows; /* rows per first-axis slice */
    int64_t slices = b->nd >= 2 ? b->d[0] : 1;
    int par = b->nd >= 2 && st[0] != 0 && slices > 1 && b->rows * D > FL_OMP_MIN;
#pragma omp parallel for if (par)
    for (int64_t s = 0; s < slices; s++)
        for (int64_t r = s * per; r < (s + 1) * per; r++) {
            int64_t oa, ob;
            row_off(b, r, &oa, &ob);
            FL_K(bwd_row)(op, which, D, x + oa, ia, w + ob, ib, dy + r * D, dz + (which ? ob : oa), beta);
        }
}

/* beta 0 only reaches here for an input of the output's shape (see binary_bwd). */
static void FL_K(bin_bwd_k)(int op, const bgeom *b, const FL_T *x, const FL_T *w, const FL_T *dy,
                            FL_T *dx, int bx, FL_T *dw, int bw) {
    if (dx) FL_K(grad_one)(op, 0, b, x, w, dy, dx, bx);
    if (dw) FL_K(grad_one)(op, 1, b, x, w, dy, dw, bw);
}
#endif
