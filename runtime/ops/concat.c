/* Concatenation along one axis (NHWC channel concat for C3, SPPF, DOLG), its inverse slice
 * (e.g. the xy / wh / objectness / class parts of a detection head), and reshape.
 * The tensor is viewed as [outer, axis, inner]; input k fills axis range [off_k, off_k + len_k).
 * Backward splits the gradient the same way (a slice's backward adds into its range). Reshape is a copy (buffers are planned per node,
 * never aliased). Compiled for float and double; see activation.c. */
#ifndef FL_T
#include <string.h>

#include "runtime/graph_internal.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/concat.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/concat.c"
#undef FL_T
#undef FL_K

static int concat_shape(fl_graph *g, fl_node *n, fl_err *e) {
    if (n->nin < 1) return fl_errf(e, "needs at least one input");
    fl_node *x0 = fl_in(g, n, 0);
    int nd = x0->shape.ndim;
    int64_t ax = n->i[0] < 0 ? n->i[0] + nd : n->i[0];
    if (ax < 0 || ax >= nd) return fl_errf(e, "axis %lld out of range for %d axes", (long long)n->i[0], nd);
    n->i[0] = ax;
    n->shape = x0->shape;
    n->shape.d[ax] = 0;
    for (int k = 0; k < n->nin; k++) {
        fl_node *x = fl_in(g, n, k);
        if (x->dtype == FL_I32) return fl_errf(e, "input %d is integer labels", k);
        if (x->shape.ndim != nd) return fl_errf(e, "input %d has %d axes, input 0 has %d", k, x->shape.ndim, nd);
        for (int a = 0; a < nd; a++)
            if (a != ax && x->shape.d[a] != x0->shape.d[a]) {
                char s0[128], s1[128];
                return fl_errf(e, "input %d shape %s does not match input 0 shape %s outside axis %lld", k,
                               fl_shape_str(&x->shape, s1, sizeof s1), fl_shape_str(&x0->shape, s0, sizeof s0), (long long)ax);
            }
        n->shape.d[ax] += x->shape.d[ax];
    }
    return 0;
}

static void geom(fl_node *n, int64_t *outer, int64_t *inner) {
    int64_t ax = n->i[0];
    *outer = 1;
    *inner = 1;
    for (int a = 0; a < ax; a++) *outer *= n->shape.d[a];
    for (int a = (int)ax + 1; a < n->shape.ndim; a++) *inner *= n->shape.d[a];
}

static int concat_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t outer, inner, off = 0, tot = n->shape.d[n->i[0]];
    geom(n, &outer, &inner);
    size_t es = fl_dtype_size(g->dtype);
    for (int k = 0; k < n->nin; k++) {
        fl_node *x = fl_in(g, n, k);
        int64_t len = x->shape.d[n->i[0]];
        size_t row = (size_t)(len * inner) * es;
        const char *src = x->val;
        char *dst = n->val;
#pragma omp parallel for if (outer * len * inner > 16384)
        for (int64_t o = 0; o < outer; o++)
            memcpy(dst + (size_t)((o * tot + off) * inner) * es, src + (size_t)o * row, row);
        off += len;
    }
    return 0;
}

static int concat_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t outer, inner, off = 0, tot = n->shape.d[n->i[0]];
    geom(n, &outer, &inner);
    for (int k = 0; k < n->nin; k++) {
        int64_t len = fl_in(g, n, k)->shape.d[n->i[0]];
        void *dx = fl_in_grad(g, n, k);
        if (dx) FL_DISPATCH(g, split_add_k, outer, len * inner, tot * inner, off * inner, n->grad, dx);
        off += len;
    }
    return 0;
}

const fl_op_def fl_op_concat = {"concat", concat_shape, 0, FL_OP_CONCAT};
const fl_op_impl fl_ref_concat = {concat_fwd, concat_bwd};

fl_id fl_concat(fl_graph *g, int n, const fl_id *xs, int axis) {
    int64_t a = axis;
    if (n < 1 || n > FL_MAX_IN) return fl_graph_fail(g, "concat: %d inputs (allowed 1..%d)", n, FL_MAX_IN);
    return fl_graph_add_op(g, &fl_op_concat, n, xs, 0, 0, &a, 1);
}

/* ---- slice: i[0] axis, i[1] start, i[2] length ---- */
static int slice_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    int nd = x->shape.ndim;
    int64_t ax = n->i[0] < 0 ? n->i[0] + nd : n->i[0];
    if (ax < 0 || ax >= nd) return fl_errf(e, "axis %lld out of range for %d axes", (long long)n->i[0], nd);
    if (n->i[1] < 0 || n->i[2] < 1 || n->i[1] + n->i[2] > x->shape.d[ax])
        return fl_errf(e, "range [%lld, %lld) outside axis %lld of size %lld", (long long)n->i[1],
                       (long long)(n->i[1] + n->i[2]), (long long)ax, (long long)x->shape.d[ax]);
    n->i[0] = ax;
    n->shape = x->shape;
    n->shape.d[ax] = n->i[2];
    return 0;
}

static int slice_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t outer, inner, tot = fl_in(g, n, 0)->shape.d[n->i[0]];
    geom(n, &outer, &inner);
    size_t es = fl_dtype_size(g->dtype), row = (size_t)(n->i[2] * inner) * es;
    const char *src = fl_in_val(g, n, 0);
    char *dst = n->val;
#pragma omp parallel for if (outer * n->i[2] * inner > 16384)
    for (int64_t o = 0; o < outer; o++)
        memcpy(dst + (size_t)o * row, src + (size_t)((o * tot + n->i[1]) * inner) * es, row);
    return 0;
}

static int slice_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t outer, inner, tot = fl_in(g, n, 0)->shape.d[n->i[0]];
    geom(n, &outer, &inner);
    void *dx = fl_in_grad(g, n, 0);
    if (dx) FL_DISPATCH(g, range_add_k, outer, n->i[2] * inner, tot * inner, n->i[1] * inner, n->grad, dx);
    return 0;
}

const fl_op_def fl_op_slice = {"slice", slice_shape, 0, FL_OP_SLICE};
const fl_op_impl fl_ref_slice = {slice_fwd, slice_bwd};

fl_id fl_slice(fl_graph *g, fl_id x, int axis, int64_t start, int64_t len) {
    int64_t a[3] = {axis, start, len};
    return fl_graph_add_op(g, &fl_op_slice, 1, &x, 0, 0, a, 3);
}

/* ---- reshape: i[0..7] hold the new sizes, f[0] the number of axes ---- */
static int reshape_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (fl_shape_make(&n->shape, (int)n->f[0], n->i, e) < 0) return -1;
    if (fl_numel(n) != fl_numel(x)) {
        char a[128], b[128];
        return fl_errf(e, "cannot reshape %s (%lld elements) to %s (%lld)", fl_shape_str(&x->shape, a, sizeof a),
                       (long long)fl_numel(x), fl_shape_str(&n->shape, b, sizeof b), (long long)fl_numel(n));
    }
    return 0;
}

static int reshape_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    memcpy(n->val, fl_in_val(g, n, 0), (size_t)fl_numel(n) * fl_dtype_size(g->dtype));
    return 0;
}

static int reshape_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    void *dx = fl_in_grad(g, n, 0);
    if (dx) FL_DISPATCH(g, split_add_k, 1, fl_numel(n), fl_numel(n), 0, n->grad, dx);
    return 0;
}

const fl_op_def fl_op_reshape = {"reshape", reshape_shape, 0, FL_OP_RESHAPE};
const fl_op_impl fl_ref_reshape = {reshape_fwd, reshape_bwd};

fl_id fl_reshape(fl_graph *g, fl_id x, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > 8 || (ndim > 0 && !shape)) return fl_graph_fail(g, "reshape: %d axes (allowed 0..8)", ndim);
    int64_t s[8] = {0};
    for (int k = 0; k < ndim; k++) s[k] = shape[k];
    double nd = ndim;
    return fl_graph_add_op(g, &fl_op_reshape, 1, &x, &nd, 1, s, 8);
}

#else /* ---- kernels for one element type FL_T ---- */

/* dx[o, off:off+len] += dy[o, 0:len] for each of `outer` rows (row stride `stride` in dx). */
static void FL_K(range_add_k)(int64_t outer, int64_t len, int64_t stride, int64_t off,
                              const FL_T *dy, FL_T *dx) {
#pragma omp parallel for if (outer * len > 16384)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < len; j++) dx[o * stride + off + j] += dy[o * len + j];
}

/* dx[o, 0:len] += dy[o, off:off+len] for each of `outer` rows (row stride `stride` in dy). */
static void FL_K(split_add_k)(int64_t outer, int64_t len, int64_t stride, int64_t off,
                              const FL_T *dy, FL_T *dx) {
#pragma omp parallel for if (outer * len > 16384)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < len; j++) dx[o * len + j] += dy[o * stride + off + j];
}
#endif
