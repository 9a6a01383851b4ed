/* The update phase of a train graph (runtime/step.h): binds one update node per store entry
 * and phase at attach, owns the optimizer / EMA state in one block, and runs the phases after
 * backward through the backend's kernels (runtime/ops/update.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/step.h"
#include "runtime/backend_internal.h"
#include "runtime/update_internal.h"

static int trainable(const fl_param *p) { return !p->is_buffer && p->grad != NULL; }

void fl_update_free(struct fl_update *u) {
    if (!u) return;
    free(u->opt);
    free(u->ema);
    free(u->opt_entry);
    free(u->block);
    for (int k = 0; k < 3; k++) free(u->views[k]);
    free(u->norms);
    free(u);
}

static void bind(fl_node *n, const fl_op_def *op, const fl_param *p) {
    memset(n, 0, sizeof *n);
    n->kind = FL_NODE_OP;
    n->op = op;
    n->shape.ndim = 1;
    n->shape.d[0] = (int64_t)p->numel;
    n->dtype = FL_F32;
    n->store_index = -1;
    n->val = p->data;
    n->grad = p->grad;
    n->i[0] = p->group;
    n->i[1] = p->no_decay;
}

int fl_graph_attach_update(fl_graph *g, const fl_update_cfg *c, fl_err *e) {
    if (!g->compiled) return fl_errf(e, "update: attach before compile");
    if (g->upd) return fl_errf(e, "update: already attached");
    if (g->mode != FL_MODE_TRAIN || g->target < 0)
        return fl_errf(e, "update: needs a train graph compiled with a target");
    if (g->dtype != FL_F32) return fl_errf(e, "update: float32 stores only");
    if (!(c->clip >= 0)) return fl_errf(e, "update: clip %g must be >= 0 (0: off)", c->clip);
    if (c->skip_nonfinite && c->clip == 0)
        return fl_errf(e, "update: skip_nonfinite needs the gradient norm (set clip, INFINITY to only measure)");
    if (c->ema && (!(c->ema_decay >= 0 && c->ema_decay <= 1) || !(c->ema_tau > 0)))
        return fl_errf(e, "update: EMA decay %g must be in [0, 1] and tau %g positive", c->ema_decay, c->ema_tau);
    fl_param_list pl;
    if (fl_pstore_params(g->store, &pl, e) < 0) return -1;
    /* fl_optim_create's checks (hyper-parameters, groups) on a throw-away state */
    fl_optim *probe = fl_optim_create(&c->optim, &(fl_param_list){pl.v, 0}, e);
    if (!probe) return fl_errprefix(e, "update");
    fl_optim_free(probe);
    for (size_t i = 0; i < pl.n; i++)
        if (pl.v[i].group < 0 || pl.v[i].group >= FL_OPTIM_MAX_GROUPS)
            return fl_errf(e, "update: parameter '%s' is in group %d (groups are 0..%d)", pl.v[i].name,
                           pl.v[i].group, FL_OPTIM_MAX_GROUPS - 1);
    struct fl_update *u = calloc(1, sizeof *u);
    if (!u) return fl_errf(e, "update: out of memory");
    u->cfg = *c;
    u->n = pl.n;
    const int need_m = c->optim.kind != FL_OPTIM_SGD || c->optim.momentum > 0;
    const int need_v = c->optim.kind != FL_OPTIM_SGD;
    size_t words = 0;
    for (size_t i = 0; i < pl.n; i++) {
        if (trainable(&pl.v[i])) u->nt++, words += pl.v[i].numel * (size_t)(need_m + need_v);
        if (c->ema) words += pl.v[i].numel;
    }
    u->opt = calloc((size_t)u->nt + 1, sizeof *u->opt);
    u->opt_entry = calloc((size_t)u->nt + 1, sizeof *u->opt_entry);
    u->norms = calloc((size_t)u->nt + 1, sizeof *u->norms);
    u->block = calloc(words + 1, sizeof(float));
    u->ema = c->ema ? calloc(pl.n + 1, sizeof *u->ema) : NULL;
    int oom = !u->opt || !u->opt_entry || !u->norms || !u->block || (c->ema && !u->ema);
    for (int k = 0; k < 3 && !oom; k++) oom = !(u->views[k] = calloc(pl.n + 1, sizeof(fl_param)));
    if (oom) {
        fl_update_free(u);
        return fl_errf(e, "update: out of memory for the optimizer state");
    }
    float *at = u->block;
    int t = 0;
    for (size_t i = 0; i < pl.n; i++) {
        const fl_param *p = &pl.v[i];
        for (int k = 0; k < 3; k++) {
            u->views[k][i] = *p;
            u->views[k][i].data = NULL;
            u->views[k][i].grad = NULL;
        }
        if (trainable(p)) {
            fl_node *n = &u->opt[t];
            bind(n, c->optim.kind == FL_OPTIM_SGD ? &fl_op_sgd_update : &fl_op_adam_update, p);
            n->i[2] = t;
            if (need_m) u->views[FL_UPD_M][i].data = n->aux = at, at += p->numel;
            if (need_v) u->views[FL_UPD_V][i].data = n->ws_fwd = at, at += p->numel;
            u->opt_entry[t++] = i;
        }
        if (c->ema) {
            fl_node *n = &u->ema[i];
            bind(n, &fl_op_ema_update, p);
            n->grad = NULL;
            n->aux = p->data; /* the model entry being averaged */
            n->val = u->views[FL_UPD_EMA][i].data = at;
            if (p->numel) memcpy(at, p->data, p->numel * sizeof(float)); /* ModelEMA's deepcopy */
            at += p->numel;
        }
    }
    memset(&u->coef, 0, sizeof u->coef);
    u->coef.kind = FL_NODE_OP;
    u->coef.op = &fl_op_clip_coef;
    u->coef.store_index = -1;
    g->upd = u;
    return 0;
}

/* Runs op's kernel on every optimizer node (rebinding the op: the nodes share their buffers). */
static int run_all(fl_graph *g, const fl_op_def *op, fl_err *e) {
    struct fl_update *u = g->upd;
    const fl_op_impl *im = g->be->ops[op->id];
    fl_kernel_fn f = im ? im->forward : NULL;
    if (!f) return fl_errf(e, "update: no %s kernel on the %s backend", op->name, g->be->name);
    for (int t = 0; t < u->nt; t++) {
        fl_node n = u->opt[t];
        n.op = op;
        if (f(g, &n, e) < 0) return fl_errprefix(e, "%s (parameter '%s')", op->name, u->views[0][u->opt_entry[t]].name);
    }
    return 0;
}

static int run_one(fl_graph *g, fl_node *n, fl_err *e) {
    const fl_op_impl *im = fl_node_impl(g, n);
    fl_kernel_fn f = im ? im->forward : NULL;
    if (!f) return fl_errf(e, "update: no %s kernel on the %s backend", n->op->name, g->be->name);
    return f(g, n, e) < 0 ? fl_errprefix(e, "%s", n->op->name) : 0;
}

int fl_graph_update(fl_graph *g, const fl_update_scalars *s, fl_step_out *out, fl_err *e) {
    struct fl_update *u = g->upd;
    if (!u) return fl_errf(e, "update: no update attached (fl_graph_attach_update)");
    for (int k = 0; k < FL_OPTIM_MAX_GROUPS; k++) u->lr[k] = s->lr[k];
    u->momentum = s->momentum;
    u->skip = 0;
    u->total = NAN;
    if (u->cfg.clip != 0) {
        if (run_all(g, &fl_op_grad_norm, e) < 0 || run_one(g, &u->coef, e) < 0) return -1;
        if (run_all(g, &fl_op_grad_scale, e) < 0) return -1;
    }
    if (out) out->grad_norm = u->total;
    if (u->skip) {
        if (out) out->step = u->step;
        return fl_errf(e, "update: the gradient norm is %s; the update was skipped", isnan(u->total) ? "NaN" : "infinite");
    }
    u->step++;
    if (run_all(g, u->cfg.optim.kind == FL_OPTIM_SGD ? &fl_op_sgd_update : &fl_op_adam_update, e) < 0) return -1;
    fl_pstore_touch(g->store); /* the parameters changed: packed conv weights are stale */
    if (u->cfg.ema) {
        u->ema_updates++;
        for (size_t i = 0; i < u->n; i++)
            if (run_one(g, &u->ema[i], e) < 0) return -1;
    }
    if (out) out->step = u->step;
    return 0;
}

int fl_graph_zero_grad(fl_graph *g, fl_err *e) {
    if (!g->upd) return fl_errf(e, "update: no update attached (fl_graph_attach_update)");
    return run_all(g, &fl_op_zero_grad, e);
}

int fl_graph_step(fl_graph *g, const fl_update_scalars *s, fl_step_out *out, fl_err *e) {
    if (!g->upd) return fl_errf(e, "update: no update attached (fl_graph_attach_update)");
    if (run_all(g, &fl_op_zero_grad, e) < 0) return -1;
    if (fl_graph_forward(g, e) < 0 || fl_graph_backward(g, NULL, e) < 0) return -1;
    return fl_graph_update(g, s, out, e);
}

int fl_graph_update_view(fl_graph *g, int which, fl_param_list *out, fl_err *e) {
    if (!g->upd) return fl_errf(e, "update: no update attached");
    if (which < 0 || which > 2) return fl_errf(e, "update: unknown state view %d", which);
    out->v = g->upd->views[which];
    out->n = g->upd->n;
    return 0;
}

static int check_host(const struct fl_update *u, const fl_optim *o, const fl_ema *m, fl_err *e) {
    const fl_optim_cfg *a = o ? &o->cfg : NULL, *b = &u->cfg.optim;
    int same = a && a->kind == b->kind && a->lr == b->lr && a->weight_decay == b->weight_decay &&
               a->momentum == b->momentum && a->dampening == b->dampening && a->nesterov == b->nesterov &&
               a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps;
    if (o && (o->params.n != u->n || !same))
        return fl_errf(e, "update: the host optimizer has %zu entries or another config (graph: %zu)", o->params.n, u->n);
    if (m && (m->view.n != u->n || !u->cfg.ema || m->decay != u->cfg.ema_decay || m->tau != u->cfg.ema_tau))
        return fl_errf(e, "update: the host EMA does not match the attached one");
    return 0;
}

/* to_graph: host -> graph, else graph -> host. */
static int sync(struct fl_update *u, fl_optim *o, fl_ema *m, int to_graph) {
    for (size_t i = 0; o && i < u->n; i++) {
        size_t bytes = u->views[0][i].numel * sizeof(float);
        float *gs[2] = {u->views[FL_UPD_M][i].data, u->views[FL_UPD_V][i].data};
        float *hs[2] = {o->m[i], o->v[i]};
        for (int k = 0; k < 2; k++)
            if (gs[k] && hs[k]) memcpy(to_graph ? gs[k] : hs[k], to_graph ? hs[k] : gs[k], bytes);
    }
    if (o) {
        if (to_graph) u->step = o->step;
        else o->step = u->step;
    }
    for (size_t i = 0; m && i < u->n; i++) {
        float *gd = u->views[FL_UPD_EMA][i].data, *hd = m->view.v[i].data;
        memcpy(to_graph ? gd : hd, to_graph ? hd : gd, u->views[0][i].numel * sizeof(float));
    }
    if (m) {
        if (to_graph) u->ema_updates = m->updates;
        else m->updates = u->ema_updates;
    }
    return 0;
}

int fl_graph_update_load(fl_graph *g, const fl_optim *o, const fl_ema *m, fl_err *e) {
    if (!g->upd) return fl_errf(e, "update: no update attached");
    if (check_host(g->upd, o, m, e) < 0) return -1;
    return sync(g->upd, (fl_optim *)o, (fl_ema *)m, 1);
}

int fl_graph_update_store(fl_graph *g, fl_optim *o, fl_ema *m, fl_err *e) {
    if (!g->upd) return fl_errf(e, "update: no update attached");
    if (check_host(g->upd, o, m, e) < 0) return -1;
    return sync(g->upd, o, m, 0);
}
