#include "runtime/device.h"

#include <stdio.h>

#ifdef FLUKE_CUDA
/* runtime/cuda/device.cu */
int fl_cuda_device_count(void);
void fl_cuda_describe(int i, char *buf, size_t len);
int fl_cuda_silu(const float *x, float *y, size_t n, char *err, size_t errlen);
int fl_cuda_silu_backward(const float *x, const float *dy, float *dx, size_t n, char *err,
                          size_t errlen);

int fl_device_cuda_built(void) { return 1; }
int fl_device_count(void) { return fl_cuda_device_count(); }
void fl_device_describe(int i, char *buf, size_t len) { fl_cuda_describe(i, buf, len); }
int fl_device_silu(const float *x, float *y, size_t n, fl_err *e) {
    return fl_cuda_silu(x, y, n, e->msg, sizeof e->msg);
}
int fl_device_silu_backward(const float *x, const float *dy, float *dx, size_t n, fl_err *e) {
    return fl_cuda_silu_backward(x, dy, dx, n, e->msg, sizeof e->msg);
}
#else
int fl_device_cuda_built(void) { return 0; }
int fl_device_count(void) { return 0; }
void fl_device_describe(int i, char *buf, size_t len) {
    snprintf(buf, len, "device %d: this fluke was built without CUDA (no nvcc, or CUDA=0)", i);
}
int fl_device_silu(const float *x, float *y, size_t n, fl_err *e) {
    (void)x, (void)y, (void)n;
    return fl_errf(e, "no CUDA device: this fluke was built without CUDA");
}
int fl_device_silu_backward(const float *x, const float *dy, float *dx, size_t n, fl_err *e) {
    (void)x, (void)dy, (void)dx, (void)n;
    return fl_errf(e, "no CUDA device: this fluke was built without CUDA");
}
#endif
