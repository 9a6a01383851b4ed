/* Loss scaling (see loss_scale.h). */
#include "runtime/loss_scale.h"

#include <math.h>

fl_loss_scaler fl_loss_scaler_dynamic(float s0) {
    fl_loss_scaler ls = {s0 > 0 ? s0 : 65536.0f, 2.0f, 0.5f, 2000, 1, 0, 0};
    return ls;
}

fl_loss_scaler fl_loss_scaler_static(float s) {
    fl_loss_scaler ls = {s, 1.0f, 1.0f, 0, 0, 0, 0};
    return ls;
}

float fl_loss_scaler_seed(const fl_loss_scaler *ls) { return ls->scale; }

int fl_loss_scaler_unscale(const fl_loss_scaler *ls, const fl_param_list *pl) {
    float inv = (float)(1.0 / (double)ls->scale);
    int bad = 0;
    for (size_t k = 0; k < pl->n; k++) {
        float *gr = pl->v[k].grad;
        if (!gr) continue;
        size_t n = pl->v[k].numel;
        int b = 0;
#pragma omp parallel for reduction(| : b) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            b |= !isfinite(gr[i]);
            gr[i] *= inv;
        }
        bad |= b;
    }
    return bad;
}

int fl_loss_scaler_update(fl_loss_scaler *ls, int found_inf) {
    if (found_inf) {
        ls->skipped++;
        ls->good = 0;
        if (ls->dynamic) ls->scale *= ls->backoff;
        return 0;
    }
    if (ls->dynamic && ++ls->good >= ls->interval) {
        ls->scale *= ls->growth;
        ls->good = 0;
    }
    return 1;
}
