/* The AVX2+FMA path of gemm.h: a 6x16 register tile (12 accumulators; per k two loads of the
 * packed B panel and six broadcasts of A), K blocked by KC so a panel block stays in L1 while
 * MC rows of A stream from L2. Compiled for the ISA by function attributes, so the rest of the
 * program keeps the baseline ISA; fl_gemm_panels only calls it when the CPU has AVX2 and FMA. */
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_blocked.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define MR 6
#define KC 256
#define MC 96

static inline TGT __attribute__((always_inline)) void ukr(const int mr, int kc, const float *a,
                                                          int lda, const float *b, int init,
                                                          const float *bias, float *c, int ldc,
                                                          int nr) {
    __m256 c0[MR], c1[MR];
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), idx);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), idx);
    const int full = nr == FL_GEMM_NR;
    if (init == FL_GEMM_BIAS) {
        __m256 b0 = full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, m0);
        __m256 b1 = full ? _mm256_loadu_ps(bias + 8) : _mm256_maskload_ps(bias + 8, m1);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) c0[r] = b0, c1[r] = b1;
    } else if (init == FL_GEMM_ACCUM) {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const float *cr = c + (size_t)r * ldc;
            c0[r] = full ? _mm256_loadu_ps(cr) : _mm256_maskload_ps(cr, m0);
            c1[r] = full ? _mm256_loadu_ps(cr + 8) : _mm256_maskload_ps(cr + 8, m1);
        }
    } else {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b + (size_t)k * FL_GEMM_NR);
        const __m256 b1 = _mm256_loadu_ps(b + (size_t)k * FL_GEMM_NR + 8);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(a + (size_t)r * lda + k);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        float *cr = c + (size_t)r * ldc;
        if (full) {
            _mm256_storeu_ps(cr, c0[r]);
            _mm256_storeu_ps(cr + 8, c1[r]);
        } else {
            _mm256_maskstore_ps(cr, m0, c0[r]);
            _mm256_maskstore_ps(cr + 8, m1, c1[r]);
        }
    }
}

/* One tile of `rows` rows (1..MR): the micro-kernel instantiated per row count. */
static inline TGT __attribute__((always_inline)) void tile(int rows, int kc, const float *ai, int lda,
                                                           const float *b, int in, const float *bj,
                                                           float *ci, int ldc, int nr) {
    switch (rows) {
    case 6: ukr(6, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    case 5: ukr(5, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    case 4: ukr(4, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    case 3: ukr(3, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    case 2: ukr(2, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    default: ukr(1, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    }
}

TGT void fl_gemm_avx2_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                             int j1, fl_gemm_init init, const float *bias, float *c, int ldc) {
#define TILE(rows) tile(rows, kc, ai, lda, b, in, bj, ci, ldc, nr)
    FL_GEMM_BLOCKED(MR, MC, KC, TILE);
#undef TILE
}

#else /* not x86: never dispatched here (fl_gemm_best says plain) */
void fl_gemm_avx2_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                         int j1, fl_gemm_init init, const float *bias, float *c, int ldc) {
    fl_gemm_plain_panels(M, N, K, a, lda, bp, j0, j1, init, bias, c, ldc);
}
#endif
