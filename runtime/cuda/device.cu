// The CUDA side of runtime/device.h: device discovery and the first kernel pair (SiLU), each a
// plain translation of the CPU reference in runtime/ops/activation.c.
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int fl_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

extern "C" void fl_cuda_describe(int i, char *buf, size_t len) {
    cudaDeviceProp p;
    cudaError_t rc = cudaGetDeviceProperties(&p, i);
    if (rc != cudaSuccess) {
        snprintf(buf, len, "device %d: %s", i, cudaGetErrorString(rc));
        return;
    }
    snprintf(buf, len, "%s, %.0f GiB, sm_%d%d", p.name, (double)p.totalGlobalMem / (1 << 30),
             p.major, p.minor);
}

__global__ void silu_fwd(const float *x, float *y, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] / (1.0f + expf(-x[i]));
}

// d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))
__global__ void silu_bwd(const float *x, const float *dy, float *dx, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static int fail(cudaError_t rc, const char *what, char *err, size_t errlen) {
    snprintf(err, errlen, "CUDA %s: %s", what, cudaGetErrorString(rc));
    return -1;
}

// Copies ins to the device, runs the kernel, copies the result back.
static int run(int backward, const float *a, const float *b, float *out, size_t n, char *err,
               size_t errlen) {
    if (fl_cuda_device_count() == 0) {
        snprintf(err, errlen, "no CUDA device");
        return -1;
    }
    float *da = 0, *db = 0, *dout = 0;
    size_t bytes = n * sizeof(float);
    cudaError_t rc;
    int ret = 0;
    if ((rc = cudaMalloc(&da, bytes)) || (rc = cudaMalloc(&dout, bytes)) ||
        (backward && (rc = cudaMalloc(&db, bytes)))) {
        ret = fail(rc, "malloc", err, errlen);
        goto done;
    }
    if ((rc = cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice)) ||
        (backward && (rc = cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice)))) {
        ret = fail(rc, "copy in", err, errlen);
        goto done;
    }
    {
        unsigned threads = 256, blocks = (unsigned)((n + threads - 1) / threads);
        if (n) {
            if (backward)
                silu_bwd<<<blocks, threads>>>(da, db, dout, n);
            else
                silu_fwd<<<blocks, threads>>>(da, dout, n);
        }
    }
    if ((rc = cudaGetLastError()) || (rc = cudaDeviceSynchronize())) {
        ret = fail(rc, "kernel", err, errlen);
        goto done;
    }
    if ((rc = cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost))) ret = fail(rc, "copy out", err, errlen);
done:
    cudaFree(da);
    cudaFree(db);
    cudaFree(dout);
    return ret;
}

extern "C" int fl_cuda_silu(const float *x, float *y, size_t n, char *err, size_t errlen) {
    return run(0, x, 0, y, n, err, errlen);
}

extern "C" int fl_cuda_silu_backward(const float *x, const float *dy, float *dx, size_t n,
                                     char *err, size_t errlen) {
    return run(1, x, dy, dx, n, err, errlen);
}

// Buffers of the CUDA backend (runtime/cuda/backend_cuda.c): zero-filled like the CPU's.
extern "C" void *fl_cuda_buf_alloc(size_t bytes, char *err, size_t errlen) {
    void *p = 0;
    cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 1);
    if (rc == cudaSuccess) rc = cudaMemset(p, 0, bytes ? bytes : 1);
    if (rc != cudaSuccess) {
        cudaFree(p);
        snprintf(err, errlen, "cuda backend: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(rc));
        return 0;
    }
    return p;
}

extern "C" void fl_cuda_buf_free(void *p) {
    if (p) cudaFree(p);
}

extern "C" int fl_cuda_copy(void *dst, const void *src, size_t bytes, int to_device, char *err,
                            size_t errlen) {
    cudaError_t rc = cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost);
    if (rc != cudaSuccess) return fail(rc, to_device ? "copy in" : "copy out", err, errlen);
    return 0;
}
