/* Single-precision GEMM for the conv kernels: C[M x N] = A[M x K] * B[K x N] (+ C or + bias),
 * with B prepacked once (per weight version) into column panels, A read in place (an im2col
 * block or NHWC rows, row-major with stride lda), C written directly (no zeroing pass).
 *
 * Packed B: ceil(N / FL_GEMM_NR) panels, panel j = columns [j*NR, j*NR + NR) stored k-major,
 * Bp[(j*K + k)*NR + c] = B[k][j*NR + c], zero past column N. The layout is the same for every
 * path, so one pack serves plain, AVX2 and AVX-512.
 *
 * Determinism: every path computes each C element as one running sum in increasing k, started
 * from 0, C or bias[n]; blocking over M, N or K never reorders it. Results therefore do not
 * depend on how a caller splits M or N over threads. The AVX2 and AVX-512 paths use fused
 * multiply-adds on that sum and agree bitwise with each other; the plain path rounds the product
 * separately (no FMA in the baseline x86-64 ISA) and agrees within the normwise error bound. */
#ifndef FLUKE_CPU_GEMM_H
#define FLUKE_CPU_GEMM_H

#include <stddef.h>

#define FL_GEMM_NR 16

typedef enum fl_gemm_path { FL_GEMM_PLAIN = 0, FL_GEMM_AVX2 = 1, FL_GEMM_AVX512 = 2 } fl_gemm_path;

/* What C starts from before the products are added. */
typedef enum fl_gemm_init { FL_GEMM_ZERO = 0, FL_GEMM_ACCUM = 1, FL_GEMM_BIAS = 2 } fl_gemm_init;

/* The best path this CPU runs (AVX-512F, else AVX2+FMA, else plain). */
fl_gemm_path fl_gemm_best(void);
/* The path named by s ("plain", "avx2", "avx512"; NULL or "" = fl_gemm_best()), capped at what
 * the CPU supports (asking for avx512 on an AVX2 machine gives avx2). Callers pass
 * getenv("FLUKE_GEMM") so tests and benchmarks can force a path. */
fl_gemm_path fl_gemm_path_named(const char *s);
/* Does this CPU run path p? */
int fl_gemm_supported(fl_gemm_path p);
const char *fl_gemm_path_name(fl_gemm_path p);

/* Floats of B[K x N] packed. */
size_t fl_gemm_packed_numel(int K, int N);
/* Packs B given by element strides: B[k][n] = b[k*sk + n*sn]. */
void fl_gemm_pack_b(int K, int N, const float *b, ptrdiff_t sk, ptrdiff_t sn, float *bp);

/* C[i][n] (i < M, n < N, stride ldc) = init + sum_k A[i*lda + k] * B[k][n]; init is 0, the old
 * C, or bias[n] (bias must be non-NULL then). M, N >= 1, K >= 0, lda >= K, ldc >= N.
 * Single-threaded; callers split M (and whole panels of N) over threads. */
void fl_gemm(fl_gemm_path path, int M, int N, int K, const float *a, int lda, const float *bp,
             fl_gemm_init init, const float *bias, float *c, int ldc);
/* As fl_gemm on the columns of panels [j0, j1) only (j in panels of FL_GEMM_NR; bp is the whole
 * pack, N the whole width): lets threads split N by panel. */
void fl_gemm_panels(fl_gemm_path path, int M, int N, int K, const float *a, int lda,
                    const float *bp, int j0, int j1, fl_gemm_init init, const float *bias,
                    float *c, int ldc);

/* The per-path kernels (gemm_plain in gemm.c, the others in gemm_avx2.c / gemm_avx512.c, each
 * compiled for its ISA by function attributes; only call one the CPU supports). */
void fl_gemm_plain_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                          int j1, fl_gemm_init init, const float *bias, float *c, int ldc);
void fl_gemm_avx2_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                         int j1, fl_gemm_init init, const float *bias, float *c, int ldc);
void fl_gemm_avx512_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                           int j1, fl_gemm_init init, const float *bias, float *c, int ldc);

#endif
