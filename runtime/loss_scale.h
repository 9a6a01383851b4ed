/* Loss scaling for F16 autocast (torch.cuda.amp.GradScaler's rule, on the host).
 *
 * F16 gradients underflow below 2^-24 (and lose precision below 2^-14): multiplying the loss,
 * hence every gradient, by a scale S keeps them representable; the float32 master gradients
 * are divided by S before the optimizer step. A scale too large overflows some F16 gradient to
 * inf (or makes a NaN); that step is then skipped and S shrinks.
 *
 * A step:
 *   float seed = fl_loss_scaler_seed(&ls);               the scalar loss's gradient seed
 *   fl_graph_backward(g, &seed, &e);
 *   int inf = fl_loss_scaler_unscale(&ls, &params);      grads /= S, any inf / NaN?
 *   if (fl_loss_scaler_update(&ls, inf)) fl_optim_step(o);
 *
 * Dynamic rule (GradScaler defaults: S0 = 2^16, growth 2, backoff 0.5, interval 2000): a step
 * with an inf / NaN gradient multiplies S by backoff and resets the count of good steps; after
 * `interval` good steps in a row S is multiplied by growth. A static scaler keeps S; it still
 * reports and skips steps with non-finite gradients. S is kept as a float32, as torch does. BF16
 * has float32's exponent range and needs no scaling. */
#ifndef FLUKE_LOSS_SCALE_H
#define FLUKE_LOSS_SCALE_H

#include <stdint.h>

#include "runtime/param.h"

typedef struct fl_loss_scaler {
    float scale;
    float growth, backoff;
    int interval;
    int dynamic;
    int good;        /* finite steps since the last change of the scale */
    int64_t skipped; /* steps skipped for non-finite gradients */
} fl_loss_scaler;

/* GradScaler's defaults with initial scale s0 (2^16 when s0 <= 0). */
fl_loss_scaler fl_loss_scaler_dynamic(float s0);
fl_loss_scaler fl_loss_scaler_static(float s);
/* The seed for fl_graph_backward of a scalar loss: the scale. */
float fl_loss_scaler_seed(const fl_loss_scaler *ls);
/* Multiplies every parameter gradient (buffers have none) by 1/scale (computed in double, then
 * rounded to float32, as torch does); returns 1 when any gradient is inf or NaN, else 0. */
int fl_loss_scaler_unscale(const fl_loss_scaler *ls, const fl_param_list *pl);
/* Applies the rule after a step whose gradients were (found_inf) non-finite; returns 1 when the
 * caller should run the optimizer step, 0 when the step is skipped. */
int fl_loss_scaler_update(fl_loss_scaler *ls, int found_inf);

#endif
