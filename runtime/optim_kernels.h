/* The element loops of the optimizer updates, shared by the host optimizer (runtime/optim.c) and
 * the in-graph update ops (runtime/ops/update.c), so both paths are one arithmetic: PyTorch 1.13's
 * operation order, in float32 with fmaf (exact wherever it runs). Element-wise and independent:
 * any thread count gives the same bits. Not for model code. */
#ifndef FLUKE_OPTIM_KERNELS_H
#define FLUKE_OPTIM_KERNELS_H

#include <stdint.h>

/* Below this many elements one thread. */
#define FL_OPTIM_PAR_MIN 65536

/* SGD: d = g (+ wd*w); with a momentum buffer buf: buf = d on the first step, else
 * buf = damp1*d + mom*buf, and d = nesterov ? d + mom*buf : buf; then w += neg_lr*d. */
void fl_sgd_elems(int64_t cnt, float wd, float mom, float damp1, float neg_lr, int nesterov,
                  int first, float *w, const float *g, float *buf);
/* Adam / AdamW: decoupled decay w *= decay_mul (adamw) or L2 g += l2*w; m = fb1*m + c1*g,
 * v = fb2*v + c2*g*g; w += neg_step * m / (sqrt(v)/bc2_sqrt + eps). */
void fl_adam_elems(int64_t cnt, int adamw, float decay_mul, float l2, float fb1, float fb2, float c1,
                   float c2, float neg_step, float bc2_sqrt, float eps, float *w, const float *g,
                   float *m, float *v);

#endif
