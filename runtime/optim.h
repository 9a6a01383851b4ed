/* Optimizers, learning-rate schedules, gradient clipping and model EMA on the shared parameter
 * view (runtime/param.h), each following PyTorch 1.13 / YOLOv5 semantics exactly so the
 * trajectories match the reference (tests/fixtures/gen_optim.py):
 *
 *  - SGD: torch.optim.SGD (momentum buffer = d_p on the first step, dampening, Nesterov),
 *    L2 weight decay added to the gradient.
 *  - Adam: torch.optim.Adam (L2 decay added to the gradient), AdamW: torch.optim.AdamW
 *    (decoupled decay param *= 1 - lr*wd); bias correction, eps added outside the square root.
 *  - Weight decay is skipped for params with no_decay (BN weights/biases, all biases); buffers
 *    (is_buffer or grad == NULL) are never touched by the optimizer.
 *  - Per-group learning rates: o->lr[p->group]; fl_optim_set_lr gives every group
 *    base * cfg.group_lr_mult[group].
 *
 * Arithmetic is float32 element-wise in PyTorch's operation order; the scalar coefficients
 * (bias corrections, step sizes) are computed in double as Python does, then used as float. */
#ifndef FLUKE_OPTIM_H
#define FLUKE_OPTIM_H

#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/param.h"

#define FL_OPTIM_MAX_GROUPS 8

typedef enum fl_optim_kind { FL_OPTIM_SGD, FL_OPTIM_ADAM, FL_OPTIM_ADAMW } fl_optim_kind;

typedef struct fl_optim_cfg {
    fl_optim_kind kind;
    double lr;            /* base learning rate */
    double weight_decay;  /* SGD/Adam: L2 into the gradient; AdamW: decoupled */
    double momentum;      /* SGD (0: plain SGD) */
    double dampening;     /* SGD */
    int nesterov;         /* SGD; needs momentum > 0 and dampening == 0 (as PyTorch) */
    double beta1, beta2;  /* Adam/AdamW */
    double eps;           /* Adam/AdamW */
    double group_lr_mult[FL_OPTIM_MAX_GROUPS];
} fl_optim_cfg;

/* PyTorch's defaults for kind (lr 1e-3 for Adam, 1e-2 for AdamW's decay, ...), all multipliers 1. */
fl_optim_cfg fl_optim_defaults(fl_optim_kind kind, double lr);

typedef struct fl_optim {
    fl_optim_cfg cfg;
    fl_param_list params;        /* borrowed: the graph owns the memory */
    float **m;                   /* per param: SGD momentum_buffer / Adam exp_avg (NULL if unused) */
    float **v;                   /* per param: Adam exp_avg_sq (NULL if unused) */
    int64_t step;                /* steps taken (Adam's bias-correction step; SGD: buffers live
                                    once step > 0) */
    double lr[FL_OPTIM_MAX_GROUPS]; /* current learning rate per group */
    double momentum;             /* current SGD momentum (YOLOv5's warmup ramps it) */
} fl_optim;

/* Allocates the state (zeroed). Every param's group must be < FL_OPTIM_MAX_GROUPS. */
fl_optim *fl_optim_create(const fl_optim_cfg *cfg, const fl_param_list *pl, fl_err *e);
void fl_optim_free(fl_optim *o);
/* lr[g] = lr * cfg.group_lr_mult[g] for every group. */
void fl_optim_set_lr(fl_optim *o, double lr);
/* One update of every trainable parameter from its grad. */
void fl_optim_step(fl_optim *o);
/* Zeroes every gradient. */
void fl_optim_zero_grad(fl_optim *o);

/* Names of the state arrays as checkpoints store them ("exp_avg", "exp_avg_sq",
 * "momentum_buffer"); NULL when that slot is unused for this optimizer kind. */
const char *fl_optim_state_name(const fl_optim *o, int slot);

/* torch.nn.utils.clip_grad_norm_ (L2): total = ||all grads||, coef = max_norm / (total + 1e-6),
 * grads *= min(coef, 1) (always applied, as PyTorch does). Returns total as float. */
float fl_clip_grad_norm(const fl_param_list *pl, double max_norm);

/* ---- learning-rate schedules: pure functions of the step, so a checkpoint only needs the step */

typedef enum fl_sched_kind {
    FL_SCHED_CONSTANT,
    FL_SCHED_COSINE,          /* CosineAnnealingLR closed form: eta_min + (base-eta_min)(1+cos(pi t/T_max))/2 */
    FL_SCHED_COSINE_RESTARTS, /* CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) */
    FL_SCHED_YOLO_LINEAR,     /* YOLOv5: base * ((1 - t/epochs)(1 - lrf) + lrf), t in epochs */
} fl_sched_kind;

typedef struct fl_sched {
    fl_sched_kind kind;
    double base_lr;
    /* Linear warmup first (torch LinearLR(start_factor, total_iters=warmup_steps) for
     * t < warmup_steps); the main schedule then runs on t - warmup_steps. 0: no warmup. */
    int64_t warmup_steps;
    double warmup_start_factor;
    int64_t t_max;            /* COSINE */
    double eta_min;           /* COSINE, COSINE_RESTARTS (absolute lr) */
    int64_t t_0, t_mult;      /* COSINE_RESTARTS: first period, period multiplier (>= 1) */
    int64_t epochs;           /* YOLO_LINEAR */
    double lrf;               /* YOLO_LINEAR: final lr factor (0.01) */
} fl_sched;

/* Validates the fields for the kind (positive periods etc.). */
int fl_sched_check(const fl_sched *s, fl_err *e);
/* The learning rate at step (or epoch) t >= 0. */
double fl_sched_lr(const fl_sched *s, int64_t t);

/* YOLOv5 train.py's warmup, per iteration ni = i + nb*epoch while ni <= nw: every group's lr
 * goes linearly (np.interp over [0, nw]) from 0 to lr_epoch * mult[g] (lr_epoch = lr0 * lf(epoch),
 * i.e. fl_sched_lr of the YOLO_LINEAR schedule at the epoch), except the bias group which falls
 * from warmup_bias_lr; the SGD momentum rises from warmup_momentum to momentum. */
typedef struct fl_yolo_warmup {
    int64_t nw;               /* fl_yolo_warmup_iters */
    double warmup_bias_lr;    /* 0.1 */
    double warmup_momentum;   /* 0.8 */
    double momentum;          /* 0.937 */
    int bias_group;           /* the optimizer group that holds the biases */
} fl_yolo_warmup;

/* max(round(warmup_epochs * nb), 100), Python's round (half to even). */
int64_t fl_yolo_warmup_iters(double warmup_epochs, int64_t nb);
/* Applies the warmup at iteration ni; returns 1 when ni <= nw (applied), else 0 (untouched). */
int fl_yolo_warmup_apply(fl_optim *o, const fl_yolo_warmup *w, int64_t ni, double lr_epoch);
/* Gradient accumulation during warmup: max(1, round(interp(ni, [0, nw], [1, nbs/batch]))). */
int fl_yolo_accumulate(int64_t ni, int64_t nw, int nbs, int batch);

/* ---- model EMA (YOLOv5 ModelEMA) ---- */

/* shadow = d*shadow + (1-d)*model for every float entry, parameters and buffers (BN running
 * stats) alike, with d = decay * (1 - exp(-updates / tau)) after updates += 1. */
typedef struct fl_ema {
    fl_param_list src;        /* borrowed: the model being averaged */
    fl_param_list view;       /* same names/shapes, data = the averages, grad = NULL */
    double decay, tau;
    int64_t updates;
} fl_ema;

/* Starts from a copy of the model (deepcopy). YOLOv5 uses decay 0.9999, tau 2000, updates 0. */
fl_ema *fl_ema_create(const fl_param_list *model, double decay, double tau, fl_err *e);
void fl_ema_free(fl_ema *m);
/* d for a given update count. */
double fl_ema_decay(const fl_ema *m, int64_t updates);
void fl_ema_update(fl_ema *m);

#endif
