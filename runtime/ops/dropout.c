/* Dropout (one draw per element) and drop path / stochastic depth (one draw per sample, axis 0,
 * as timm's drop_path with scale_by_keep): in train mode y = x * keep / (1 - p), in eval mode
 * (or p = 0) y = x.
 *
 * The keep mask is a pure function of (graph seed, node id, step, element): Philox4x32-10 with
 * counter (element/4, node, step) gives four words, one per element, so masks do not depend on
 * the thread count and a resumed run reproduces them. The mask (one byte per draw) is kept for
 * the backward pass. Compiled for float and double; see activation.c. */
#ifndef FL_T
#include "runtime/graph_internal.h"
#include "runtime/rng.h"

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/dropout.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/dropout.c"
#undef FL_T
#undef FL_K

static int active(fl_graph *g, fl_node *n) { return g->mode == FL_MODE_TRAIN && n->f[0] > 0; }

/* i[0] = 1 for drop path. */
static int64_t draws(fl_graph *g, fl_node *n) { return n->i[0] ? n->shape.d[0] : fl_numel(n); }

static int drop_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (!(n->f[0] >= 0 && n->f[0] < 1)) return fl_errf(e, "drop probability %g outside [0, 1)", n->f[0]);
    if (n->i[0] && x->shape.ndim < 1) return fl_errf(e, "drop path needs a batch axis");
    n->shape = x->shape;
    n->aux_bytes = active(g, n) ? (size_t)draws(g, n) : 0;
    return 0;
}

static void make_mask(fl_graph *g, fl_node *n, unsigned char *mask) {
    int64_t cnt = draws(g, n);
    uint32_t key[2] = {(uint32_t)g->rng_seed, (uint32_t)(g->rng_seed >> 32)};
    uint32_t id = (uint32_t)(n - g->nodes);
    /* keep when the top 24 bits, as a fraction, reach p: P(keep) = 1 - p up to 2^-24 */
    uint32_t thr = (uint32_t)(n->f[0] * 16777216.0 + 0.5);
#pragma omp parallel for if (cnt > 16384)
    for (int64_t b = 0; b < (cnt + 3) / 4; b++) {
        uint32_t ctr[4] = {(uint32_t)b, (uint32_t)((uint64_t)b >> 32), id, (uint32_t)g->rng_step};
        uint32_t out[4];
        fl_philox4x32(ctr, key, out);
        for (int k = 0; k < 4 && 4 * b + k < cnt; k++) mask[4 * b + k] = (out[k] >> 8) >= thr;
    }
}

static int drop_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    int act = active(g, n);
    if (act) make_mask(g, n, n->aux);
    int64_t per = n->i[0] ? fl_numel(n) / n->shape.d[0] : 1;
    FL_DISPATCH(g, drop_fwd_k, fl_numel(n), per, act ? n->aux : NULL, 1 / (1 - n->f[0]),
                fl_in_val(g, n, 0), n->val);
    return 0;
}

static int drop_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    int64_t per = n->i[0] ? fl_numel(n) / n->shape.d[0] : 1;
    FL_DISPATCH(g, drop_bwd_k, fl_numel(n), per, active(g, n) ? n->aux : NULL, 1 / (1 - n->f[0]),
                n->grad, fl_in_grad(g, n, 0));
    return 0;
}

const fl_op_def fl_op_dropout = {"dropout", drop_shape, 0, FL_OP_DROPOUT};
const fl_op_impl fl_ref_dropout = {drop_fwd, drop_bwd};
const fl_op_def fl_op_drop_path = {"drop_path", drop_shape, 0, FL_OP_DROP_PATH};
const fl_op_impl fl_ref_drop_path = {drop_fwd, drop_bwd};

fl_id fl_dropout(fl_graph *g, fl_id x, double p) {
    int64_t path = 0;
    return fl_graph_add_op(g, &fl_op_dropout, 1, &x, &p, 1, &path, 1);
}

fl_id fl_drop_path(fl_graph *g, fl_id x, double p) {
    int64_t path = 1;
    return fl_graph_add_op(g, &fl_op_drop_path, 1, &x, &p, 1, &path, 1);
}

#else /* ---- kernels for one element type FL_T ---- */

/* per = elements per draw (1 for dropout, the sample size for drop path). */
static void FL_K(drop_fwd_k)(int64_t n, int64_t per, const unsigned char *mask, double scale,
                             const FL_T *x, FL_T *y) {
#pragma omp parallel for if (n > 16384)
    for (int64_t i = 0; i < n; i++) y[i] = mask ? (mask[i / per] ? x[i] * (FL_T)scale : 0) : x[i];
}

static void FL_K(drop_bwd_k)(int64_t n, int64_t per, const unsigned char *mask, double scale,
                             const FL_T *dy, FL_T *dx) {
    if (!dx) return;
#pragma omp parallel for if (n > 16384)
    for (int64_t i = 0; i < n; i++) dx[i] += mask ? (mask[i / per] ? dy[i] * (FL_T)scale : 0) : dy[i];
}
#endif
