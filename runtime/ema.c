/* Model EMA as YOLOv5's ModelEMA (utils/torch_utils.py): a deep copy of the model whose every
 * floating-point state entry (parameters and BN running statistics) follows
 *   v *= d;  v += (1 - d) * model_v,   d = decay * (1 - exp(-updates / tau)),
 * the ramp keeping early averages from being dominated by the random initialisation. */
#include "runtime/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fl_ema_free(fl_ema *m) {
    if (!m) return;
    for (size_t i = 0; m->view.v && i < m->view.n; i++) free(m->view.v[i].data);
    free(m->view.v);
    free(m);
}

fl_ema *fl_ema_create(const fl_param_list *model, double decay, double tau, fl_err *e) {
    if (!(decay >= 0 && decay <= 1) || !(tau > 0))
        return fl_errf(e, "EMA: decay %g must be in [0, 1] and tau %g positive", decay, tau), NULL;
    fl_ema *m = calloc(1, sizeof *m);
    if (!m) return fl_errf(e, "EMA: out of memory"), NULL;
    m->src = *model;
    m->decay = decay, m->tau = tau;
    m->view.v = calloc(model->n ? model->n : 1, sizeof *m->view.v);
    if (!m->view.v) {
        free(m);
        return fl_errf(e, "EMA: out of memory"), NULL;
    }
    m->view.n = model->n;
    for (size_t i = 0; i < model->n; i++) {
        fl_param *p = &m->view.v[i];
        *p = model->v[i];
        p->grad = NULL;
        p->data = malloc((p->numel ? p->numel : 1) * sizeof(float));
        if (!p->data) {
            fl_ema_free(m);
            return fl_errf(e, "EMA: out of memory"), NULL;
        }
        if (p->numel) memcpy(p->data, model->v[i].data, p->numel * sizeof(float));
    }
    return m;
}

double fl_ema_decay(const fl_ema *m, int64_t updates) {
    return m->decay * (1.0 - exp(-(double)updates / m->tau));
}

void fl_ema_update(fl_ema *m) {
    m->updates++;
    double d = fl_ema_decay(m, m->updates);
    const float fd = (float)d, f1d = (float)(1.0 - d);
    for (size_t i = 0; i < m->view.n; i++) {
        float *v = m->view.v[i].data;
        const float *s = m->src.v[i].data;
        const size_t n = m->view.v[i].numel;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t k = 0; k < n; k++) {
            float t = f1d * s[k];
            v[k] = v[k] * fd + t;
        }
    }
}
