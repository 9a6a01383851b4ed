/* The GEMM of gemm.h: packing, the run-time path choice, and the plain C path (the reference the
 * vector paths are tested against, and the fallback for CPUs without AVX2+FMA). */
#include "runtime/cpu/gemm.h"

#include <string.h>

fl_gemm_path fl_gemm_best(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return FL_GEMM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FL_GEMM_AVX2;
#endif
    return FL_GEMM_PLAIN;
}

int fl_gemm_supported(fl_gemm_path p) {
    return p == FL_GEMM_PLAIN || (p <= fl_gemm_best() && p >= FL_GEMM_PLAIN);
}

fl_gemm_path fl_gemm_path_named(const char *s) {
    fl_gemm_path best = fl_gemm_best(), want = best;
    if (s && !strcmp(s, "plain")) want = FL_GEMM_PLAIN;
    else if (s && !strcmp(s, "avx2")) want = FL_GEMM_AVX2;
    else if (s && !strcmp(s, "avx512")) want = FL_GEMM_AVX512;
    return want < best ? want : best;
}

const char *fl_gemm_path_name(fl_gemm_path p) {
    return p == FL_GEMM_AVX512 ? "avx512" : p == FL_GEMM_AVX2 ? "avx2" : "plain";
}

size_t fl_gemm_packed_numel(int K, int N) {
    return (size_t)K * (size_t)((N + FL_GEMM_NR - 1) / FL_GEMM_NR) * FL_GEMM_NR;
}

void fl_gemm_pack_b(int K, int N, const float *b, ptrdiff_t sk, ptrdiff_t sn, float *bp) {
    const int NR = FL_GEMM_NR, np = (N + NR - 1) / NR;
    for (int j = 0; j < np; j++)
        for (int k = 0; k < K; k++) {
            float *d = bp + ((size_t)j * K + k) * NR;
            for (int c = 0; c < NR; c++) {
                int n = j * NR + c;
                d[c] = n < N ? b[k * sk + n * sn] : 0.0f;
            }
        }
}

void fl_gemm_plain_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                          int j1, fl_gemm_init init, const float *bias, float *c, int ldc) {
    const int NR = FL_GEMM_NR;
    for (int j = j0; j < j1; j++) {
        const float *b = bp + (size_t)j * K * NR;
        const int n0 = j * NR, nr = N - n0 < NR ? N - n0 : NR;
        for (int i = 0; i < M; i++) {
            const float *ar = a + (size_t)i * lda;
            float *cr = c + (size_t)i * ldc + n0;
            float acc[FL_GEMM_NR];
            for (int q = 0; q < NR; q++)
                acc[q] = q >= nr ? 0.0f
                         : init == FL_GEMM_ACCUM ? cr[q]
                         : init == FL_GEMM_BIAS  ? bias[n0 + q]
                                                 : 0.0f;
            for (int k = 0; k < K; k++) {
                const float av = ar[k];
                const float *bk = b + (size_t)k * NR;
                for (int q = 0; q < NR; q++) acc[q] += av * bk[q];
            }
            for (int q = 0; q < nr; q++) cr[q] = acc[q];
        }
    }
}

void fl_gemm_panels(fl_gemm_path path, int M, int N, int K, const float *a, int lda,
                    const float *bp, int j0, int j1, fl_gemm_init init, const float *bias,
                    float *c, int ldc) {
    if (M < 1 || N < 1 || j1 <= j0) return;
    switch (path) {
    case FL_GEMM_AVX512:
        fl_gemm_avx512_panels(M, N, K, a, lda, bp, j0, j1, init, bias, c, ldc);
        break;
    case FL_GEMM_AVX2:
        fl_gemm_avx2_panels(M, N, K, a, lda, bp, j0, j1, init, bias, c, ldc);
        break;
    default:
        fl_gemm_plain_panels(M, N, K, a, lda, bp, j0, j1, init, bias, c, ldc);
    }
}

void fl_gemm(fl_gemm_path path, int M, int N, int K, const float *a, int lda, const float *bp,
             fl_gemm_init init, const float *bias, float *c, int ldc) {
    fl_gemm_panels(path, M, N, K, a, lda, bp, 0, (N + FL_GEMM_NR - 1) / FL_GEMM_NR, init, bias, c,
                   ldc);
}
