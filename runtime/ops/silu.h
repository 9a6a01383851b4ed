/* SiLU and its derivative for one element, float and double, written once for the silu op
 * (activation.c) and the fused batch norm + SiLU (batchnorm.c): both must compute the same
 * bits, so the fused op equals the two ops it replaces. Float uses the vectorizable exp
 * (fastexp.h, about 2 ulp), double libm's exp (the finite-difference reference).
 * Kernels reach them as FL_K(fl_silu1) / FL_K(fl_dsilu). */
#ifndef FLUKE_OPS_SILU_H
#define FLUKE_OPS_SILU_H

#include <math.h>

#include "runtime/ops/fastexp.h"

static inline float fl_silu1_f32(float x) { return x / (1 + fl_fast_expf(-x)); }
static inline double fl_silu1_f64(double x) { return x / (1 + exp(-x)); }

/* g * d/dx x*s(x) = g * s(x) * (1 + x*(1 - s(x))) */
static inline float fl_dsilu_f32(float x, float g) {
    float s = 1 / (1 + fl_fast_expf(-x));
    return g * s * (1 + x * (1 - s));
}
static inline double fl_dsilu_f64(double x, double g) {
    double s = 1 / (1 + exp(-x));
    return g * s * (1 + x * (1 - s));
}

#endif
