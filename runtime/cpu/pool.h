/* Pooling and resampling on the CPU, NHWC float32 (x[((n*H + h)*W + w)*C + c]): max pool (YOLOv5
 * SPPF's 5/1/2), average pool, global average pool, nearest upsampling by an integer factor. The
 * reference kernels the graph wraps and the CUDA backend is checked against.
 *
 * Semantics follow PyTorch (torch.nn.functional, ceil_mode=False):
 *   max pool   padding is -inf (never selected); the gradient goes to the argmax, the FIRST
 *              maximum in window raster order (kh, then kw) on ties; a NaN wins the window (the
 *              last NaN, as PyTorch's CPU kernel). Overlapping windows sum their gradients.
 *   avg pool   zero padding; divisor = KH*KW when count_include_pad, else the number of
 *              in-bounds pixels (both PyTorch modes; its default is count_include_pad=True).
 *   upsample   interpolate(mode="nearest", scale_factor=s) with integer s: y[oh][ow] = x[oh/s][ow/s].
 * Every reduction runs in a fixed order, so results do not depend on the thread count.
 * Bad parameters give -1 and a message in *e; nothing crashes or prints. */
#ifndef FLUKE_CPU_POOL_H
#define FLUKE_CPU_POOL_H

#include <stddef.h>

#include "artifacts/util.h"

typedef struct fl_pool2d_params {
    int N, H, W, C;
    int KH, KW;
    int stride_h, stride_w;
    int dilation_h, dilation_w;   /* max pool only; must be 1 for avg pool */
    int pad_top, pad_left, pad_bottom, pad_right;
    int count_include_pad;        /* avg pool only (PyTorch default: 1) */
} fl_pool2d_params;

/* Validates p (positive sizes, non-negative pads, every window holds at least one input pixel);
 * fills *OH, *OW (either may be NULL). out = (in + pads - dilation*(k-1) - 1) / stride + 1. */
int fl_pool2d_check(const fl_pool2d_params *p, int *OH, int *OW, fl_err *e);

/* y[N][OH][OW][C] = window max. */
int fl_maxpool2d_forward(const fl_pool2d_params *p, const float *x, float *y, fl_err *e);
/* dx (overwritten) from the forward input x and dy: the argmax is recomputed, so nothing has to
 * be kept between forward and backward. */
int fl_maxpool2d_backward(const fl_pool2d_params *p, const float *x, const float *dy, float *dx,
                          fl_err *e);

int fl_avgpool2d_forward(const fl_pool2d_params *p, const float *x, float *y, fl_err *e);
int fl_avgpool2d_backward(const fl_pool2d_params *p, const float *dy, float *dx, fl_err *e);

/* Global average pool: y[N][C] = mean over H*W (accumulated in double). dx is overwritten. */
int fl_global_avgpool_forward(int N, int H, int W, int C, const float *x, float *y, fl_err *e);
int fl_global_avgpool_backward(int N, int H, int W, int C, const float *dy, float *dx, fl_err *e);

/* Nearest upsampling by an integer factor: x [N][H][W][C] -> y [N][H*scale][W*scale][C].
 * N, H, W are the INPUT sizes in both directions; backward sums each scale x scale block into dx
 * (overwritten). */
int fl_upsample_nearest2d_forward(int N, int H, int W, int C, int scale, const float *x,
                                  float *y, fl_err *e);
int fl_upsample_nearest2d_backward(int N, int H, int W, int C, int scale, const float *dy,
                                   float *dx, fl_err *e);

#endif
