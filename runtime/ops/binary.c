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

static int binary_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    bgeom b;
    geom(g, n, &b);
    FL_DISPATCH(g, bin_bwd_k, (int)n->i[0], &b, fl_in_val(g, n, 0), fl_in_val(g, n, 1), n->grad,
                fl_in_grad(g, n, 0), fl_in_grad(g, n, 1));
    return 0;
}

const fl_op_def fl_op_add = {"add", binary_shape, 0, {{binary_fwd, binary_bwd}, {0, 0}}};
const fl_op_def fl_op_sub = {"sub", binary_shape, 0, {{binary_fwd, binary_bwd}, {0, 0}}};
const fl_op_def fl_op_mul = {"mul", binary_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1),
                             {{binary_fwd, binary_bwd}, {0, 0}}};
const fl_op_def fl_op_div = {"div", binary_shape, FL_OPF_SAVE_IN(0) | FL_OPF_SAVE_IN(1),
                             {{binary_fwd, binary_bwd}, {0, 0}}};

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

static inline FL_T FL_K(apply)(int op, FL_T a, FL_T b) {
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    default: return a / b;
    }
}

static void FL_K(bin_fwd_k)(int op, const bgeom *b, const FL_T *x, const FL_T *w, FL_T *y) {
    int64_t D = b->D, ia = b->sa[b->nd - 1], ib = b->sb[b->nd - 1];
#pragma omp parallel for if (b->rows * D > FL_OMP_MIN)
    for (int64_t r = 0; r < b->rows; r++) {
        int64_t oa, ob;
        row_off(b, r, &oa, &ob);
        FL_T *yr = y + r * D;
        for (int64_t j = 0; j < D; j++) yr[j] = FL_K(apply)(op, x[oa + j * ia], w[ob + j * ib]);
    }
}

/* d/da and d/db of one element: (1, 1), (1, -1), (b, a), (1/b, -a/b^2). */
static inline void FL_K(partials)(int op, FL_T a, FL_T b, FL_T *pa, FL_T *pb) {
    switch (op) {
    case OP_ADD: *pa = 1; *pb = 1; break;
    case OP_SUB: *pa = 1; *pb = -1; break;
    case OP_MUL: *pa = b; *pb = a; break;
    default: *pa = 1 / b; *pb = -a / (b * b); break;
    }
}

/* One input's gradient. When that input is not stretched along the first axis, different
 * first-axis slices write disjoint elements and run in parallel; otherwise serially. */
static void FL_K(grad_one)(int op, int which, const bgeom *b, const FL_T *x, const FL_T *w,
                           const FL_T *dy, FL_T *dz) {
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
            const FL_T *g = dy + r * D;
            for (int64_t j = 0; j < D; j++) {
                FL_T pa, pb;
                FL_K(partials)(op, x[oa + j * ia], w[ob + j * ib], &pa, &pb);
                if (which) dz[ob + j * ib] += g[j] * pb;
                else dz[oa + j * ia] += g[j] * pa;
            }
        }
}

static void FL_K(bin_bwd_k)(int op, const bgeom *b, const FL_T *x, const FL_T *w, const FL_T *dy,
                            FL_T *dx, FL_T *dw) {
    if (dx) FL_K(grad_one)(op, 0, b, x, w, dy, dx);
    if (dw) FL_K(grad_one)(op, 1, b, x, w, dy, dw);
}
#endif
