/* Learning-rate schedules as pure functions of the step (a checkpoint then only needs the step),
 * and YOLOv5's per-iteration warmup of lr and momentum (train.py). */
#include "runtime/optim.h"

#include <math.h>

int fl_sched_check(const fl_sched *s, fl_err *e) {
    if (!(s->base_lr >= 0)) return fl_errf(e, "schedule: base lr %g is negative", s->base_lr);
    if (s->warmup_steps < 0 || (s->warmup_steps > 0 && !(s->warmup_start_factor >= 0 &&
                                                          s->warmup_start_factor <= 1)))
        return fl_errf(e, "schedule: warmup of %lld steps from factor %g (need >= 0 steps and a "
                          "factor in [0, 1])",
                       (long long)s->warmup_steps, s->warmup_start_factor);
    switch (s->kind) {
    case FL_SCHED_CONSTANT: return 0;
    case FL_SCHED_COSINE:
        if (s->t_max <= 0) return fl_errf(e, "schedule: cosine needs T_max > 0 (got %lld)",
                                          (long long)s->t_max);
        return 0;
    case FL_SCHED_COSINE_RESTARTS:
        if (s->t_0 <= 0 || s->t_mult < 1)
            return fl_errf(e, "schedule: cosine restarts needs T_0 > 0 and T_mult >= 1 (got %lld, "
                              "%lld)",
                           (long long)s->t_0, (long long)s->t_mult);
        return 0;
    case FL_SCHED_YOLO_LINEAR:
        if (s->epochs <= 0) return fl_errf(e, "schedule: YOLOv5 linear needs epochs > 0");
        return 0;
    }
    return fl_errf(e, "schedule: unknown kind %d", (int)s->kind);
}

static double cosine(double base, double eta_min, double t, double period) {
    return eta_min + (base - eta_min) * (1.0 + cos(M_PI * t / period)) / 2.0;
}

double fl_sched_lr(const fl_sched *s, int64_t t) {
    if (t < 0) t = 0;
    if (t < s->warmup_steps) {
        double f = s->warmup_start_factor +
                   (1.0 - s->warmup_start_factor) * (double)t / (double)s->warmup_steps;
        return s->base_lr * f;
    }
    t -= s->warmup_steps;
    switch (s->kind) {
    case FL_SCHED_COSINE: return cosine(s->base_lr, s->eta_min, (double)t, (double)s->t_max);
    case FL_SCHED_COSINE_RESTARTS: {
        /* walk the periods: T_i = T_0 * T_mult^k; integer arithmetic, no log() rounding */
        int64_t ti = s->t_0, tc = t;
        while (tc >= ti) {
            tc -= ti;
            if (ti > INT64_MAX / (s->t_mult > 1 ? s->t_mult : 1)) break;
            ti *= s->t_mult;
        }
        return cosine(s->base_lr, s->eta_min, (double)tc, (double)ti);
    }
    case FL_SCHED_YOLO_LINEAR:
        return s->base_lr *
               ((1.0 - (double)t / (double)s->epochs) * (1.0 - s->lrf) + s->lrf);
    case FL_SCHED_CONSTANT:
    default: return s->base_lr;
    }
}

/* numpy.interp on two points for x in [x0, x1]: slope*(x - x0) + y0, exactly y1 at x1. */
static double interp2(double x, double x0, double x1, double y0, double y1) {
    if (x >= x1) return y1;
    if (x <= x0) return y0;
    double slope = (y1 - y0) / (x1 - x0);
    return slope * (x - x0) + y0;
}

int64_t fl_yolo_warmup_iters(double warmup_epochs, int64_t nb) {
    double r = nearbyint(warmup_epochs * (double)nb); /* default rounding: half to even */
    int64_t n = (int64_t)r;
    return n > 100 ? n : 100;
}

int fl_yolo_warmup_apply(fl_optim *o, const fl_yolo_warmup *w, int64_t ni, double lr_epoch) {
    if (ni > w->nw) return 0;
    for (int g = 0; g < FL_OPTIM_MAX_GROUPS; g++) {
        double start = g == w->bias_group ? w->warmup_bias_lr : 0.0;
        o->lr[g] = interp2((double)ni, 0, (double)w->nw, start, lr_epoch * o->cfg.group_lr_mult[g]);
    }
    if (o->cfg.kind == FL_OPTIM_SGD)
        o->momentum = interp2((double)ni, 0, (double)w->nw, w->warmup_momentum, w->momentum);
    return 1;
}

int fl_yolo_accumulate(int64_t ni, int64_t nw, int nbs, int batch) {
    double a = nearbyint(interp2((double)ni, 0, (double)nw, 1.0, (double)nbs / batch));
    return a > 1 ? (int)a : 1;
}
