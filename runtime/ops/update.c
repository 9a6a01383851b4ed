/* The update phase's kernels (see runtime/update_internal.h for the node bindings): zero grad,
 * per-parameter gradient norm, the clip coefficient, the gradient scale, SGD (momentum,
 * dampening, Nesterov), Adam / AdamW, the model EMA, and the seed of the backward pass.
 *
 * Each is written in the operation order of the host reference (runtime/optim.c, ema.c: torch
 * 1.13's _single_tensor_* and YOLOv5's ModelEMA), element-wise and independent, so any thread
 * count gives the reference's bits. The compiler never contracts a*b+c here (-std=c11 means
 * -ffp-contract=off), and fmaf is exact wherever it runs. */
#include <math.h>
#include <string.h>

#include "runtime/optim_kernels.h"
#include "runtime/update_internal.h"

#define PAR_MIN FL_OPTIM_PAR_MIN /* below this many elements one thread (as the reference) */

static int no_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)g;
    return fl_errf(e, "%s is an update op: it has no backward", n->op->name);
}

static int zero_shape(fl_graph *g, fl_node *n, fl_err *e) {
    (void)g, (void)n, (void)e;
    return 0; /* update nodes are bound by runtime/step.c, never built by a model */
}

static int zero_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)g, (void)e;
    if (n->grad) memset(n->grad, 0, (size_t)fl_numel(n) * sizeof(float));
    return 0;
}

/* ||grad|| of one parameter: a double sum in element order, then float (torch.norm's float). */
static int norm_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    const float *gr = n->grad;
    double s = 0;
    for (int64_t k = 0; k < fl_numel(n); k++) s += (double)gr[k] * gr[k];
    g->upd->norms[n->i[2]] = (float)sqrt(s);
    return 0;
}

/* The norm of the norms in parameter order, coef = max_norm / (total + 1e-6) capped at 1. */
static int coef_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)n, (void)e;
    struct fl_update *u = g->upd;
    double total2 = 0;
    for (int k = 0; k < u->nt; k++) total2 += (double)u->norms[k] * u->norms[k];
    float total = (float)sqrt(total2);
    float coef = (float)u->cfg.clip / (total + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    u->total = total;
    u->clip_coef = coef;
    u->skip = u->cfg.skip_nonfinite && !isfinite(total);
    return 0;
}

static int scale_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    if (g->upd->skip) return 0;
    const float coef = g->upd->clip_coef;
    float *gr = n->grad;
    const int64_t cnt = fl_numel(n);
#pragma omp parallel for schedule(static) if (cnt >= PAR_MIN)
    for (int64_t k = 0; k < cnt; k++) gr[k] *= coef;
    return 0;
}


static int sgd_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    const struct fl_update *u = g->upd;
    if (u->skip) return 0;
    const fl_optim_cfg *c = &u->cfg.optim;
    const float wd = n->i[1] ? 0.0f : (float)c->weight_decay;
    fl_sgd_elems(fl_numel(n), wd, (float)u->momentum, (float)(1.0 - c->dampening), (float)-u->lr[n->i[0]],
          c->nesterov, u->step == 1, n->val, n->grad, n->aux);
    return 0;
}


/* Bias corrections and step size in double from the step count, as Python computes them. */
static int adam_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    const struct fl_update *u = g->upd;
    if (u->skip) return 0;
    const fl_optim_cfg *c = &u->cfg.optim;
    const double lr = u->lr[n->i[0]], b1 = c->beta1, b2 = c->beta2, step = (double)u->step;
    const double wd = n->i[1] ? 0.0 : c->weight_decay;
    const double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    fl_adam_elems(fl_numel(n), c->kind == FL_OPTIM_ADAMW, (float)(1.0 - lr * wd), (float)wd, (float)b1,
           (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), (float)-(lr / bc1), (float)sqrt(bc2),
           (float)c->eps, n->val, n->grad, n->aux, n->ws_fwd);
    return 0;
}

/* shadow = d*shadow + (1-d)*model, d = decay * (1 - exp(-updates / tau)). */
static int ema_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    const struct fl_update *u = g->upd;
    if (u->skip) return 0;
    const double d = u->cfg.ema_decay * (1.0 - exp(-(double)u->ema_updates / u->cfg.ema_tau));
    const float fd = (float)d, f1d = (float)(1.0 - d);
    float *v = n->val;
    const float *s = n->aux;
    const int64_t cnt = fl_numel(n);
#pragma omp parallel for schedule(static) if (cnt >= PAR_MIN)
    for (int64_t k = 0; k < cnt; k++) {
        float t = f1d * s[k];
        v[k] = v[k] * fd + t;
    }
    return 0;
}

/* The backward pass's seed: grad (i[0] elements of the graph's type) = seed, or 1 when val is
 * NULL; i[1] = 1 adds instead (a leaf target's gradient accumulates). */
static int seed_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    const int64_t cnt = n->i[0];
    const int add = (int)n->i[1];
    if (fl_is_f64(g)) {
        double *d = n->grad;
        const double *s = n->val;
        for (int64_t k = 0; k < (s ? cnt : 1); k++) d[k] = add ? d[k] + (s ? s[k] : 1) : (s ? s[k] : 1);
    } else {
        float *d = n->grad;
        const float *s = n->val;
        for (int64_t k = 0; k < (s ? cnt : 1); k++) d[k] = add ? d[k] + (s ? s[k] : 1) : (s ? s[k] : 1);
    }
    return 0;
}

const fl_op_def fl_op_zero_grad = {"zero_grad", zero_shape, 0, FL_OP_ZERO_GRAD};
const fl_op_impl fl_ref_zero_grad = {zero_fwd, no_bwd};
const fl_op_def fl_op_grad_norm = {"grad_norm", zero_shape, 0, FL_OP_GRAD_NORM};
const fl_op_impl fl_ref_grad_norm = {norm_fwd, no_bwd};
const fl_op_def fl_op_clip_coef = {"clip_coef", zero_shape, 0, FL_OP_CLIP_COEF};
const fl_op_impl fl_ref_clip_coef = {coef_fwd, no_bwd};
const fl_op_def fl_op_grad_scale = {"grad_scale", zero_shape, 0, FL_OP_GRAD_SCALE};
const fl_op_impl fl_ref_grad_scale = {scale_fwd, no_bwd};
const fl_op_def fl_op_sgd_update = {"sgd_update", zero_shape, 0, FL_OP_SGD_UPDATE};
const fl_op_impl fl_ref_sgd_update = {sgd_fwd, no_bwd};
const fl_op_def fl_op_adam_update = {"adam_update", zero_shape, 0, FL_OP_ADAM_UPDATE};
const fl_op_impl fl_ref_adam_update = {adam_fwd, no_bwd};
const fl_op_def fl_op_ema_update = {"ema_update", zero_shape, 0, FL_OP_EMA_UPDATE};
const fl_op_impl fl_ref_ema_update = {ema_fwd, no_bwd};
const fl_op_def fl_op_seed_grad = {"seed_grad", zero_shape, 0, FL_OP_SEED_GRAD};
const fl_op_impl fl_ref_seed_grad = {seed_fwd, no_bwd};
