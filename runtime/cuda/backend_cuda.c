/* The CUDA backend's entry: present in every build so graphs, tests and the seam can name it,
 * honest about what it has. Its op table is empty (the kernels come with the next issue, each
 * checked against the CPU reference), so supports_op says no to every op and fl_graph_compile
 * refuses a graph built for it, naming the first op. Its buffers are device memory
 * (runtime/cuda/device.cu) in a CUDA build; without one, allocation fails with the reason. */
#include <stdio.h>

#include "runtime/backend_internal.h"

#ifdef FLUKE_CUDA
/* runtime/cuda/device.cu */
void *fl_cuda_buf_alloc(size_t bytes, char *err, size_t errlen);
void fl_cuda_buf_free(void *p);
int fl_cuda_copy(void *dst, const void *src, size_t bytes, int to_device, char *err, size_t errlen);
#endif

/* No kernels yet: every slot NULL. */
static const fl_op_impl *const cuda_ops[FL_OP_COUNT];

static int cuda_forward(fl_graph *g, fl_err *e) {
    /* compile let the graph through, so it has no op node to run */
    return fl_graph_forward_eager(g, e);
}

static int cuda_backward(fl_graph *g, const void *seed, fl_err *e) {
    (void)seed;
    if (!g->bwd[g->target]) return 0;
    return fl_errf(e, "cuda backend: backward is not implemented yet");
}

static void *cuda_alloc(const fl_backend *b, size_t bytes, fl_err *e) {
    (void)b;
#ifdef FLUKE_CUDA
    return fl_cuda_buf_alloc(bytes, e->msg, sizeof e->msg);
#else
    (void)bytes;
    fl_errf(e, "cuda backend: this fluke was built without CUDA (no nvcc, or CUDA=0)");
    return NULL;
#endif
}

static void cuda_free(const fl_backend *b, void *p) {
    (void)b;
#ifdef FLUKE_CUDA
    fl_cuda_buf_free(p);
#else
    (void)p; /* nothing was ever allocated */
#endif
}

static int cuda_copy(void *dst, const void *src, size_t bytes, int to_device, fl_err *e) {
#ifdef FLUKE_CUDA
    return fl_cuda_copy(dst, src, bytes, to_device, e->msg, sizeof e->msg);
#else
    (void)dst, (void)src, (void)bytes, (void)to_device;
    return fl_errf(e, "cuda backend: this fluke was built without CUDA (no nvcc, or CUDA=0)");
#endif
}

static int cuda_copy_in(const fl_backend *b, void *dst, const void *src, size_t bytes, fl_err *e) {
    (void)b;
    return cuda_copy(dst, src, bytes, 1, e);
}

static int cuda_copy_out(const fl_backend *b, void *dst, const void *src, size_t bytes, fl_err *e) {
    (void)b;
    return cuda_copy(dst, src, bytes, 0, e);
}

static const fl_backend cuda = {
    .name = "cuda",
    .host = 0,
    .ops = cuda_ops,
    .supports_op = fl_backend_has_kernels,
    .forward = cuda_forward,
    .backward = cuda_backward,
    .record = NULL, /* CUDA graph capture, with the kernels */
    .release = NULL,
    .buf_alloc = cuda_alloc,
    .buf_free = cuda_free,
    .copy_in = cuda_copy_in,
    .copy_out = cuda_copy_out,
};

const fl_backend *fl_backend_cuda(void) { return &cuda; }
