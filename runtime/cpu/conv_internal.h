/* Pieces shared between the conv2d kernel files (conv.c dispatches, conv_depthwise.c holds the
 * direct depthwise kernels, conv_shape.c the checks). Not part of the public API: include
 * runtime/cpu/conv.h instead. */
#ifndef FLUKE_CPU_CONV_INTERNAL_H
#define FLUKE_CPU_CONV_INTERNAL_H

#include "runtime/cpu/conv.h"

/* A validated problem: the parameters plus the derived sizes every kernel needs. */
typedef struct fl_conv2d_shape {
    fl_conv2d_params p;
    int OH, OW;
    int Cig, Cog;   /* channels per group, in and out */
    int K;          /* KH*KW*Cig: the reduction length of one output value */
} fl_conv2d_shape;

/* Validates p (see fl_conv2d_check) and fills *s; 0 or -1 with a message in *e. */
int fl_conv2d_shape_of(const fl_conv2d_params *p, fl_conv2d_shape *s, fl_err *e);

/* dbias[c] = sum over every output pixel of dy[.., c] (double accumulation, fixed order). */
void fl_conv2d_bias_grad(const fl_conv2d_shape *s, const float *dy, float *dbias);

/* Depthwise (groups == C_in == C_out) direct kernels; wp is the weight repacked to
 * [KH][KW][C] (channel innermost, so the inner loops run over contiguous channels). */
void fl_conv2d_dw_forward(const fl_conv2d_shape *s, const float *x, const float *wp,
                          const float *bias, float *y);
void fl_conv2d_dw_backward_data(const fl_conv2d_shape *s, const float *dy, const float *wp,
                                float *dx);
/* dwp is [KH][KW][C]; part is scratch of fl_conv2d_dw_wgrad_part_floats(s) floats (the
 * per-block partial sums, added in block order). */
size_t fl_conv2d_dw_wgrad_part_floats(const fl_conv2d_shape *s);
void fl_conv2d_dw_backward_weight(const fl_conv2d_shape *s, const float *x, const float *dy,
                                  float *dwp, float *part);

/* The public entry points with the tile size (bytes of im2col per tile) as a parameter (the public ones pass the
 * default); tests pass a tiny size to run many small tiles on small problems. */
int fl_conv2d_forward_ex(const fl_conv2d_params *p, const float *x, const float *w,
                         const float *bias, float *y, size_t tile_bytes, fl_err *e);
int fl_conv2d_backward_data_ex(const fl_conv2d_params *p, const float *dy, const float *w,
                               float *dx, size_t tile_bytes, fl_err *e);
int fl_conv2d_backward_weight_ex(const fl_conv2d_params *p, const float *x, const float *dy,
                                 float *dw, float *dbias, size_t tile_bytes, fl_err *e);

#endif
