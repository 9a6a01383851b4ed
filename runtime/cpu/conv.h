/* 2-D convolution on the CPU: the reference kernels (plain C + OpenBLAS sgemm + OpenMP) that the
 * graph wraps as an op and the CUDA backend is checked against.
 *
 * Layouts
 *   activations  NHWC float32: x[((n*H + h)*W + w)*C + c]
 *   weights      PyTorch OIHW: w[((co*(C_in/groups) + ci)*KH + kh)*KW + kw], so timm / ultralytics
 *                state dicts load unchanged (repacked where a kernel wants it: per call, or
 *                once by the caller for the planned entry points)
 *   bias         [C_out]
 * Output size per axis: out = (in + pad_before + pad_after - dilation*(k-1) - 1) / stride + 1.
 *
 * Paths: a 1x1, stride-1, unpadded, ungrouped conv is a GEMM straight on x; depthwise
 * (groups == C_in == C_out) is a direct loop kernel; everything else is im2col + GEMM per group.
 * Forward and backward-data GEMMs run runtime/cpu/gemm.h (register-blocked AVX2/AVX-512 kernels
 * on weights packed once; FLUKE_GEMM=blas|plain|avx2|avx512 forces a path); the weight gradient
 * runs OpenBLAS sgemm.
 * The GEMM paths work on tiles of output rows (about 1 MB of im2col each): OpenMP threads take
 * whole tiles, each with a single-threaded sgemm. OpenBLAS's global thread count is therefore set
 * to 1 during a call and restored on return (do not run BLAS in another thread concurrently and
 * expect it to be multi-threaded meanwhile).
 *
 * Determinism: tiles, slabs and every reduction order written here depend on the problem shape
 * only, never on the thread count, and each sgemm runs single-threaded, so results are bitwise
 * identical for any OMP_NUM_THREADS (tested); they may still differ from another BLAS build or
 * CPU through float reassociation inside sgemm. The gemm.h paths sum each output in increasing
 * k whatever the blocking, so the AVX2 and AVX-512 paths agree bitwise; the plain path (no FMA)
 * and OpenBLAS agree within rounding.
 *
 * Scratch memory: the plain entry points allocate their own per call (one ~1 MB im2col tile per
 * thread, packed weights, up to 64 MB of weight-gradient partial sums) and free it before
 * returning. The *_planned entry points (what the graph op calls) allocate nothing: the caller
 * packs the weights once with fl_conv2d_pack and passes scratch sized by the *_ws_bytes queries.
 * Both run the same kernels in the same order, so their results are bitwise identical.
 *
 * All entry points validate the parameters first and return -1 with a message in *e on bad input
 * (or when scratch memory cannot be allocated); they never crash or print. */
#ifndef FLUKE_CPU_CONV_H
#define FLUKE_CPU_CONV_H

#include <stddef.h>

#include "artifacts/util.h"

typedef struct fl_conv2d_params {
    int N, H, W;          /* batch and input spatial size */
    int C_in, C_out;      /* channels; both divisible by groups */
    int KH, KW;           /* kernel size */
    int stride_h, stride_w;
    int dilation_h, dilation_w;
    int groups;           /* 1 = dense; C_in == C_out == groups = depthwise */
    int pad_top, pad_left, pad_bottom, pad_right; /* explicit zero padding per side, >= 0 */
} fl_conv2d_params;

/* Symmetric "k//2"-style padding (timm native, ultralytics autopad): dilation*(k-1)/2 per side. */
int fl_conv2d_pad_symmetric(int k, int dilation);

/* TensorFlow "SAME" padding for one axis (timm tf_ models, SPECS.md section 3):
 * total = max((ceil(in/stride) - 1)*stride + (k-1)*dilation + 1 - in, 0), *before = total/2,
 * *after = total - *before (the extra pixel goes right/bottom). Output size is then ceil(in/s). */
void fl_conv2d_pad_tf_same(int in, int k, int stride, int dilation, int *before, int *after);

/* Output size of one axis, or -1 when the (dilated) kernel does not fit the padded input or an
 * argument is out of range. */
int fl_conv2d_out_size(int in, int k, int stride, int dilation, int pad_before, int pad_after);

/* Validates p (positive sizes, divisibility by groups, kernel fits the padded input, sizes that
 * fit in memory indexing); fills *OH, *OW (either may be NULL). 0 or -1 with a message. */
int fl_conv2d_check(const fl_conv2d_params *p, int *OH, int *OW, fl_err *e);

/* Element counts of the tensors of a valid p (0 for an invalid one). */
size_t fl_conv2d_x_numel(const fl_conv2d_params *p);      /* N*H*W*C_in */
size_t fl_conv2d_y_numel(const fl_conv2d_params *p);      /* N*OH*OW*C_out */
size_t fl_conv2d_w_numel(const fl_conv2d_params *p);      /* C_out*(C_in/groups)*KH*KW */

/* y = conv(x, w) + bias. bias may be NULL. y is overwritten. */
int fl_conv2d_forward(const fl_conv2d_params *p, const float *x, const float *w,
                      const float *bias, float *y, fl_err *e);

/* dx = dL/dx given dy = dL/dy. dx is overwritten (the caller accumulates if it needs to). */
int fl_conv2d_backward_data(const fl_conv2d_params *p, const float *dy, const float *w,
                            float *dx, fl_err *e);

/* dw = dL/dw and (if dbias != NULL) dbias = dL/dbias, given the forward input x and dy.
 * Both are overwritten. */
int fl_conv2d_backward_weight(const fl_conv2d_params *p, const float *x, const float *dy,
                              float *dw, float *dbias, fl_err *e);

/* ---- planned memory: no allocation, weights packed once by the caller ---- */

/* Floats of the weights in the kernels' layout (depthwise [KH][KW][C]; else [C_out][KH][KW][Cig]
 * followed by the GEMM panels of the forward and backward-data operands, see conv.c). */
size_t fl_conv2d_pack_numel(const fl_conv2d_params *p);
/* wp = w packed (fl_conv2d_pack_numel(p) floats); nothing when that is 0 or p is invalid. */
void fl_conv2d_pack(const fl_conv2d_params *p, const float *w, float *wp);
/* Scratch bytes of one call on up to omp_get_max_threads() threads (as of the query; a call
 * with less scratch runs on fewer threads, same results). 0 for an invalid p or no scratch. */
size_t fl_conv2d_forward_ws_bytes(const fl_conv2d_params *p);
size_t fl_conv2d_backward_data_ws_bytes(const fl_conv2d_params *p);
size_t fl_conv2d_backward_weight_ws_bytes(const fl_conv2d_params *p);
/* As the plain entry points, on packed weights wp and ws (64-byte aligned, ws_bytes long);
 * -1 with a message when ws is smaller than one thread needs. */
int fl_conv2d_forward_planned(const fl_conv2d_params *p, const float *x, const float *wp,
                              const float *bias, float *y, void *ws, size_t ws_bytes, fl_err *e);
int fl_conv2d_backward_data_planned(const fl_conv2d_params *p, const float *dy, const float *wp,
                                    float *dx, void *ws, size_t ws_bytes, fl_err *e);
int fl_conv2d_backward_weight_planned(const fl_conv2d_params *p, const float *x, const float *dy,
                                      float *dw, float *dbias, void *ws, size_t ws_bytes, fl_err *e);

#endif
