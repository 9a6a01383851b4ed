/* Which compute devices this build and machine have. The CUDA backend sits behind this header:
 * without a CUDA build (no nvcc, or CUDA=0) or without a GPU, everything reports zero devices and
 * callers use the CPU kernels, which are the reference the CUDA kernels are checked against. */
#ifndef FLUKE_DEVICE_H
#define FLUKE_DEVICE_H

#include <stddef.h>

#include "artifacts/util.h"

/* 1 when this binary was built with the CUDA backend. */
int fl_device_cuda_built(void);
/* Number of usable CUDA devices (0 without a GPU or a CUDA build; never an error). */
int fl_device_count(void);
/* "NVIDIA H200, 139 GiB, sm_90" for device i, or a reason there is none. */
void fl_device_describe(int i, char *buf, size_t len);

/* SiLU on a device, forward and backward, on host arrays (copies in and out): the first CUDA
 * kernel pair, checked against runtime/ops on the CPU by the test suite where a GPU exists.
 * -1 with e set when there is no device. */
int fl_device_silu(const float *x, float *y, size_t n, fl_err *e);
int fl_device_silu_backward(const float *x, const float *dy, float *dx, size_t n, fl_err *e);

#endif
