/* Cast between F32, BF16 and F16, and autocast (mixed precision as PyTorch's autocast does it).
 *
 * Dtype per node: every node has its own element type (n->dtype). Leaves, parameters and almost
 * every op are the graph's type (F32 or F64); BF16 / F16 values come only out of a cast or out
 * of a linear / conv2d asked for a low-precision output, and only casts, linear and conv2d
 * accept them (FL_OPF_LOWP; any other op refuses them at build time, naming the node). A
 * gradient has its node's type, so BF16 activations get BF16 gradients, as in PyTorch.
 *
 * cast  forward  y = round(x) to nearest even (runtime/cpu/lowp.h), or exact widening;
 *       backward dx (+)= dy converted back to x's type (one rounding when x is low precision).
 *
 * Autocast (fl_graph_set_autocast(g, FL_BF16)): fl_linear and fl_conv2d (hence the layers
 * and every model built from them) cast their float32 x and weight to BF16 and run with float32
 * accumulation and a float32 output. The parameter in the store stays float32: it is the master
 * weight, the cast node holds the BF16 working copy (one per parameter per graph, shared by its
 * uses), and the float32 gradient comes back through the cast's backward into the store, where
 * the optimizer updates the master weight. Biases, batch norm, activations and losses stay
 * float32. Attribute i[0]: the target type. */
#include "runtime/cpu/lowp.h"
#include "runtime/ops/lowp_mm.h"

static int castable(fl_dtype t) { return t == FL_F32 || fl_dtype_is_lowp(t); }

static int cast_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    fl_dtype to = (fl_dtype)n->i[0];
    if (g->dtype != FL_F32)
        return fl_errf(e, "low-precision casts need an F32 graph (this one is %s)", fl_dtype_name(g->dtype));
    if (!castable(x->dtype) || !castable(to))
        return fl_errf(e, "cannot cast %s to %s (F32, BF16 and F16 only)", fl_dtype_name(x->dtype), fl_dtype_name(to));
    n->shape = x->shape;
    n->dtype = to;
    return 0;
}

static int cast_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t cnt = fl_numel(n);
    if (x->dtype == FL_F32) {
        fl_lowp_from_f32(n->val, n->dtype, x->val, cnt, 0, FL_LOWP_AUTO);
    } else if (n->dtype == FL_F32) {
        fl_lowp_to_f32(n->val, x->val, x->dtype, cnt, FL_LOWP_AUTO);
    } else { /* BF16 <-> F16 through float32 (exact widening, one rounding) */
        uint16_t *y = n->val;
        for (int64_t i = 0; i < cnt; i++) {
            float v = fl_lowp_get(x->val, x->dtype, i);
            y[i] = n->dtype == FL_BF16 ? fl_bf16_from_f32(v) : fl_f16_from_f32(v);
        }
    }
    return 0;
}

static int cast_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    void *dx = fl_in_grad(g, n, 0);
    if (!dx) return 0;
    int64_t cnt = fl_numel(n);
    int beta = g->beta[0];
    if (n->dtype == FL_F32) { /* x low precision: round the float32 gradient into its type */
        fl_lowp_from_f32(dx, x->dtype, n->grad, cnt, beta, FL_LOWP_AUTO);
    } else if (x->dtype == FL_F32) { /* widen the low-precision gradient (exact), add */
        float *d = dx;
        if (!beta) {
            fl_lowp_to_f32(d, n->grad, n->dtype, cnt, FL_LOWP_AUTO);
        } else if (n->dtype == FL_BF16) {
            const uint16_t *s = n->grad;
#pragma omp parallel for simd if (cnt > 65536)
            for (int64_t i = 0; i < cnt; i++) d[i] += fl_bf16_to_f32(s[i]);
        } else {
            const uint16_t *s = n->grad;
#pragma omp parallel for if (cnt > 65536)
            for (int64_t i = 0; i < cnt; i++) d[i] += fl_f16_to_f32(s[i]);
        }
    } else {
        uint16_t *d = dx;
        for (int64_t i = 0; i < cnt; i++) {
            float v = fl_lowp_get(n->grad, n->dtype, i) + (beta ? fl_lowp_get(d, x->dtype, i) : 0.0f);
            d[i] = x->dtype == FL_BF16 ? fl_bf16_from_f32(v) : fl_f16_from_f32(v);
        }
    }
    return 0;
}

const fl_op_def fl_op_cast = {"cast", cast_shape, FL_OPF_BWD_BETA | FL_OPF_LOWP, FL_OP_CAST};
const fl_op_impl fl_ref_cast = {cast_fwd, cast_bwd};

fl_id fl_cast(fl_graph *g, fl_id x, fl_dtype to) {
    if (x < 0) return -1;
    if (x >= g->n) return fl_graph_fail(g, "cast: input is not a node (id %d)", x);
    if (g->nodes[x].dtype == to) return x;
    /* one cast per (node, type): a weight used twice has one working copy */
    for (int i = x + 1; i < g->n; i++)
        if (g->nodes[i].op == &fl_op_cast && g->nodes[i].in[0] == x && g->nodes[i].i[0] == (int64_t)to) return i;
    int64_t a = to;
    return fl_graph_add_op(g, &fl_op_cast, 1, &x, 0, 0, &a, 1);
}

int fl_graph_set_autocast(fl_graph *g, fl_dtype t) {
    if (t == FL_F32 || t == g->dtype) {
        g->autocast = FL_F32; /* off */
        return 0;
    }
    if (!fl_dtype_is_lowp(t)) return fl_graph_fail(g, "autocast: %s is not BF16 or F16", fl_dtype_name(t));
    if (g->dtype != FL_F32) return fl_graph_fail(g, "autocast: needs an F32 graph (this one is %s)", fl_dtype_name(g->dtype));
    g->autocast = t;
    return 0;
}

fl_dtype fl_graph_autocast(const fl_graph *g) { return fl_dtype_is_lowp(g->autocast) ? g->autocast : g->dtype; }

void fl_autocast_operands(fl_graph *g, fl_id *x, fl_id *w) {
    if (!fl_dtype_is_lowp(g->autocast)) return;
    fl_id *v[2] = {x, w};
    for (int k = 0; k < 2; k++) {
        fl_id id = *v[k];
        if (id < 0 || id >= g->n) continue; /* the op builder reports it */
        fl_dtype t = g->nodes[id].dtype;
        if (t == FL_F32 || (fl_dtype_is_lowp(t) && t != g->autocast)) *v[k] = fl_cast(g, id, g->autocast);
    }
}
