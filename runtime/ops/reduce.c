/* Sum and mean over a set of axes (bit i of i[0] = axis i), keeping them as size 1 (i[1] = 1)
 * or removing them. Sums accumulate in double in a fixed order (deterministic for any thread
 * count); the backward pass broadcasts the output gradient back.
 * Compiled for float and double (see activation.c for the self-include scheme). */
#ifndef FL_T
#include <string.h>

#include "runtime/graph_internal.h"

#define FL_OMP_MIN 16384

/* The input walked as rows of its last axis; the output read/written through strides in input
 * coordinates (0 on reduced axes). */
typedef struct rgeom {
    int nd;
    int64_t d[FL_MAX_DIMS];
    int64_t so[FL_MAX_DIMS];
    int64_t rows, D, count; /* count = elements summed into each output */
} rgeom;

static void geom(fl_graph *g, fl_node *n, rgeom *r) {
    fl_node *x = fl_in(g, n, 0);
    fl_shape in = x->shape, keep = x->shape;
    if (in.ndim == 0) {
        in.ndim = keep.ndim = 1;
        in.d[0] = keep.d[0] = 1;
    }
    r->count = 1;
    for (int k = 0; k < x->shape.ndim; k++)
        if (n->i[0] & (1u << k)) {
            r->count *= keep.d[k];
            keep.d[k] = 1;
        }
    r->nd = in.ndim;
    memcpy(r->d, in.d, sizeof r->d);
    fl_shape_bcast_strides(&keep, &in, r->so);
    r->D = in.d[in.ndim - 1];
    r->rows = fl_shape_numel(&in) / r->D;
}

static inline int64_t out_off(const rgeom *g, int64_t r) {
    int64_t o = 0;
    for (int k = g->nd - 2; k >= 0; k--) {
        o += (r % g->d[k]) * g->so[k];
        r /= g->d[k];
    }
    return o;
}

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/reduce.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/reduce.c"
#undef FL_T
#undef FL_K

static int reduce_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    unsigned mask = (unsigned)n->i[0];
    if (mask == 0) return fl_errf(e, "no axes to reduce");
    if (mask >> x->shape.ndim)
        return fl_errf(e, "axes mask 0x%x names an axis beyond the input's %d", mask, x->shape.ndim);
    fl_shape s;
    memset(&s, 0, sizeof s);
    for (int k = 0; k < x->shape.ndim; k++) {
        if (!(mask & (1u << k))) s.d[s.ndim++] = x->shape.d[k];
        else if (n->i[1]) s.d[s.ndim++] = 1;
    }
    n->shape = s;
    n->ws_fwd_bytes = (size_t)fl_shape_numel(&s) * sizeof(double);
    return 0;
}

static int reduce_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    rgeom r;
    geom(g, n, &r);
    double scale = n->op == &fl_op_mean ? 1.0 / (double)r.count : 1.0;
    FL_DISPATCH(g, reduce_fwd_k, &r, scale, fl_numel(n), fl_in_val(g, n, 0), n->val, n->ws_fwd);
    return 0;
}

static int reduce_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    rgeom r;
    geom(g, n, &r);
    double scale = n->op == &fl_op_mean ? 1.0 / (double)r.count : 1.0;
    FL_DISPATCH(g, reduce_bwd_k, &r, scale, n->grad, fl_in_grad(g, n, 0));
    return 0;
}

const fl_op_def fl_op_sum = {"sum", reduce_shape, 0, FL_OP_SUM};
const fl_op_impl fl_ref_sum = {reduce_fwd, reduce_bwd};
const fl_op_def fl_op_mean = {"mean", reduce_shape, 0, FL_OP_MEAN};
const fl_op_impl fl_ref_mean = {reduce_fwd, reduce_bwd};

static fl_id reduce(fl_graph *g, const fl_op_def *op, fl_id x, unsigned mask, int keepdim) {
    int64_t a[2] = {(int64_t)mask, keepdim ? 1 : 0};
    return fl_graph_add_op(g, op, 1, &x, 0, 0, a, 2);
}
fl_id fl_sum(fl_graph *g, fl_id x, unsigned mask, int keepdim) { return reduce(g, &fl_op_sum, x, mask, keepdim); }
fl_id fl_mean(fl_graph *g, fl_id x, unsigned mask, int keepdim) { return reduce(g, &fl_op_mean, x, mask, keepdim); }

#else /* ---- kernels for one element type FL_T ---- */

/* When axis 0 is kept, its slices sum into disjoint outputs and run in parallel. */
static void FL_K(reduce_fwd_k)(const rgeom *r, double scale, int64_t nout, const FL_T *x, FL_T *y,
                               double *acc) {
    memset(acc, 0, (size_t)nout * sizeof *acc);
    int64_t D = r->D, io = r->so[r->nd - 1];
    int64_t slices = r->nd >= 2 ? r->d[0] : 1, per = r->rows / slices;
    int par = r->nd >= 2 && r->so[0] != 0 && slices > 1 && r->rows * D > FL_OMP_MIN;
#pragma omp parallel for if (par)
    for (int64_t s = 0; s < slices; s++)
        for (int64_t q = s * per; q < (s + 1) * per; q++) {
            int64_t o = out_off(r, q);
            const FL_T *xr = x + q * D;
            if (io == 0) {
                double t = 0;
                for (int64_t j = 0; j < D; j++) t += xr[j];
                acc[o] += t;
            } else {
                for (int64_t j = 0; j < D; j++) acc[o + j * io] += xr[j];
            }
        }
    for (int64_t k = 0; k < nout; k++) y[k] = (FL_T)(acc[k] * scale);
}

static void FL_K(reduce_bwd_k)(const rgeom *r, double scale, const FL_T *dy, FL_T *dx) {
    if (!dx) return;
    int64_t D = r->D, io = r->so[r->nd - 1];
#pragma omp parallel for if (r->rows * D > FL_OMP_MIN)
    for (int64_t q = 0; q < r->rows; q++) {
        int64_t o = out_off(r, q);
        FL_T *dr = dx + q * D;
        for (int64_t j = 0; j < D; j++) dr[j] += (FL_T)(dy[o + j * io] * scale);
    }
}
#endif
