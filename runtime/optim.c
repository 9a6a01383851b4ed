/* SGD, Adam, AdamW and gradient clipping, in torch 1.13's single-tensor operation order
 * (torch/optim/sgd.py, adam.py, adamw.py: _single_tensor_*), so trajectories match the
 * reference to float32 rounding. */
#include "runtime/optim.h"
#include "runtime/optim_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a parameter is updated on one thread (thread start-up costs more). */

fl_optim_cfg fl_optim_defaults(fl_optim_kind kind, double lr) {
    fl_optim_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = lr;
    c.beta1 = 0.9, c.beta2 = 0.999, c.eps = 1e-8;
    c.weight_decay = kind == FL_OPTIM_ADAMW ? 1e-2 : 0.0;
    for (int g = 0; g < FL_OPTIM_MAX_GROUPS; g++) c.group_lr_mult[g] = 1.0;
    return c;
}

static int trainable(const fl_param *p) { return !p->is_buffer && p->grad != NULL; }

void fl_optim_free(fl_optim *o) {
    if (!o) return;
    for (size_t i = 0; i < o->params.n; i++) {
        if (o->m) free(o->m[i]);
        if (o->v) free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o);
}

fl_optim *fl_optim_create(const fl_optim_cfg *cfg, const fl_param_list *pl, fl_err *e) {
    if (cfg->kind == FL_OPTIM_SGD && cfg->nesterov && (cfg->momentum <= 0 || cfg->dampening != 0))
        return fl_errf(e, "optimizer: Nesterov momentum requires a momentum and zero dampening"),
               NULL;
    if (!(cfg->lr >= 0) || !(cfg->weight_decay >= 0) || !(cfg->momentum >= 0) ||
        !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
        !(cfg->eps >= 0))
        return fl_errf(e, "optimizer: invalid hyper-parameter (lr %g, weight_decay %g, momentum %g,"
                          " betas (%g, %g), eps %g)",
                       cfg->lr, cfg->weight_decay, cfg->momentum, cfg->beta1, cfg->beta2, cfg->eps),
               NULL;
    for (size_t i = 0; i < pl->n; i++)
        if (pl->v[i].group < 0 || pl->v[i].group >= FL_OPTIM_MAX_GROUPS)
            return fl_errf(e, "optimizer: parameter '%s' is in group %d (groups are 0..%d)",
                           pl->v[i].name ? pl->v[i].name : "?", pl->v[i].group,
                           FL_OPTIM_MAX_GROUPS - 1),
                   NULL;
    fl_optim *o = calloc(1, sizeof *o);
    if (!o) return fl_errf(e, "optimizer: out of memory"), NULL;
    o->cfg = *cfg;
    o->params = *pl;
    o->momentum = cfg->momentum;
    fl_optim_set_lr(o, cfg->lr);
    int need_m = cfg->kind != FL_OPTIM_SGD || cfg->momentum > 0;
    int need_v = cfg->kind != FL_OPTIM_SGD;
    o->m = calloc(pl->n ? pl->n : 1, sizeof *o->m);
    o->v = calloc(pl->n ? pl->n : 1, sizeof *o->v);
    int oom = !o->m || !o->v;
    for (size_t i = 0; i < pl->n && !oom; i++) {
        if (!trainable(&pl->v[i])) continue;
        size_t n = pl->v[i].numel ? pl->v[i].numel : 1;
        if (need_m && !(o->m[i] = calloc(n, sizeof(float)))) oom = 1;
        if (need_v && !(o->v[i] = calloc(n, sizeof(float)))) oom = 1;
    }
    if (oom) {
        fl_optim_free(o);
        return fl_errf(e, "optimizer: out of memory for the state"), NULL;
    }
    return o;
}

void fl_optim_set_lr(fl_optim *o, double lr) {
    for (int g = 0; g < FL_OPTIM_MAX_GROUPS; g++) o->lr[g] = lr * o->cfg.group_lr_mult[g];
}

void fl_optim_zero_grad(fl_optim *o) {
    for (size_t i = 0; i < o->params.n; i++)
        if (o->params.v[i].grad) memset(o->params.v[i].grad, 0, o->params.v[i].numel * sizeof(float));
}

const char *fl_optim_state_name(const fl_optim *o, int slot) {
    if (o->cfg.kind == FL_OPTIM_SGD) return slot == 0 && o->cfg.momentum > 0 ? "momentum_buffer" : NULL;
    return slot == 0 ? "exp_avg" : slot == 1 ? "exp_avg_sq" : NULL;
}

/* fmaf is exact wherever it runs; the "fma" clone makes it one instruction on CPUs that have
 * it (x86-64 baseline code would call libm for every element). */
#if defined(__x86_64__) && defined(__GNUC__)
#define FL_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FL_FMA_CLONES
#endif

FL_FMA_CLONES void fl_sgd_elems(int64_t cnt, float wd, float mom, float damp1, float neg_lr,
                                int nesterov, int first, float *w, const float *g, float *buf) {
#pragma omp parallel for schedule(static) if (cnt >= FL_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < cnt; i++) {
        float d = g[i];
        if (wd != 0.0f) d = fmaf(wd, w[i], d);
        if (buf) {
            if (first) buf[i] = d;
            else buf[i] = fmaf(damp1, d, buf[i] * mom);
            d = nesterov ? fmaf(mom, buf[i], d) : buf[i];
        }
        w[i] = fmaf(neg_lr, d, w[i]);
    }
}

FL_FMA_CLONES void fl_adam_elems(int64_t cnt, int adamw, float decay_mul, float l2, float fb1,
                                 float fb2, float c1, float c2, float neg_step, float bc2_sqrt,
                                 float eps, float *w, const float *g, float *m, float *v) {
#pragma omp parallel for schedule(static) if (cnt >= FL_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < cnt; i++) {
        float gi = g[i];
        if (adamw) w[i] = w[i] * decay_mul;
        else if (l2 != 0.0f) gi = fmaf(l2, w[i], gi);
        m[i] = fmaf(c1, gi, m[i] * fb1);
        v[i] = fmaf(c2 * gi, gi, v[i] * fb2);
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + neg_step * m[i] / denom;
    }
}

static void sgd_param(const fl_optim *o, const fl_param *p, float *buf, int first) {
    fl_sgd_elems((int64_t)p->numel, p->no_decay ? 0.0f : (float)o->cfg.weight_decay, (float)o->momentum,
                 (float)(1.0 - o->cfg.dampening), (float)-o->lr[p->group], o->cfg.nesterov, first,
                 p->data, p->grad, buf);
}

/* Bias corrections and step size in double from the step count, as Python computes them. */
static void adam_param(const fl_optim *o, const fl_param *p, float *m, float *v, double step) {
    const double lr = o->lr[p->group], b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const double wd = p->no_decay ? 0.0 : o->cfg.weight_decay;
    const double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    fl_adam_elems((int64_t)p->numel, o->cfg.kind == FL_OPTIM_ADAMW, (float)(1.0 - lr * wd), (float)wd,
                  (float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), (float)-(lr / bc1),
                  (float)sqrt(bc2), (float)o->cfg.eps, p->data, p->grad, m, v);
}

void fl_optim_step(fl_optim *o) {
    int first = o->step == 0;
    o->step++;
    for (size_t i = 0; i < o->params.n; i++) {
        const fl_param *p = &o->params.v[i];
        if (!trainable(p)) continue;
        if (o->cfg.kind == FL_OPTIM_SGD) sgd_param(o, p, o->m[i], first);
        else adam_param(o, p, o->m[i], o->v[i], (double)o->step);
    }
    fl_param_list_touch(&o->params);
}

float fl_clip_grad_norm(const fl_param_list *pl, double max_norm) {
    /* per-tensor norms in float32 (as torch.norm returns them), then the norm of the norms */
    double total2 = 0;
    for (size_t i = 0; i < pl->n; i++) {
        const fl_param *p = &pl->v[i];
        if (!trainable(p)) continue;
        double s = 0;
        for (size_t k = 0; k < p->numel; k++) s += (double)p->grad[k] * p->grad[k];
        float ni = (float)sqrt(s);
        total2 += (double)ni * ni;
    }
    float total = (float)sqrt(total2);
    float coef = (float)max_norm / (total + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    if (coef == 1.0f) return total; /* g * 1.0f == g: the pass would change no bit */
    for (size_t i = 0; i < pl->n; i++) {
        const fl_param *p = &pl->v[i];
        if (!trainable(p)) continue;
        for (size_t k = 0; k < p->numel; k++) p->grad[k] *= coef;
    }
    return total;
}
