/* The AVX-512F path of gemm.h: a 12x16 register tile (12 zmm accumulators; per k one load of the
 * packed B panel and twelve broadcasts of A), masked stores for a partial panel, K blocked by KC
 * as in the AVX2 path. Compiled for the ISA by function attributes (so it builds on any x86-64
 * compiler host); fl_gemm_panels only calls it when the CPU has AVX-512F. */
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_blocked.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f")))
#define MR 12
#define KC 256
#define MC 96

static inline TGT __attribute__((always_inline)) void ukr(const int mr, int kc, const float *a,
                                                          int lda, const float *b, int init,
                                                          const float *bias, float *c, int ldc,
                                                          int nr) {
    __m512 acc[MR];
    const __mmask16 m = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    if (init == FL_GEMM_BIAS) {
        const __m512 bv = _mm512_maskz_loadu_ps(m, bias);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) acc[r] = bv;
    } else if (init == FL_GEMM_ACCUM) {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) acc[r] = _mm512_maskz_loadu_ps(m, c + (size_t)r * ldc);
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) acc[r] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        const __m512 bv = _mm512_loadu_ps(b + (size_t)k * FL_GEMM_NR);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)r * lda + k]), bv, acc[r]);
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) _mm512_mask_storeu_ps(c + (size_t)r * ldc, m, acc[r]);
}

#define UKR(n) \
    case n: ukr(n, kc, ai, lda, b, in, bj, ci, ldc, nr); break

/* One tile of `rows` rows (1..MR): the micro-kernel instantiated per row count. */
static inline TGT __attribute__((always_inline)) void tile(int rows, int kc, const float *ai, int lda,
                                                           const float *b, int in, const float *bj,
                                                           float *ci, int ldc, int nr) {
    switch (rows) {
    UKR(12); UKR(11); UKR(10); UKR(9); UKR(8); UKR(7);
    UKR(6); UKR(5); UKR(4); UKR(3); UKR(2);
    default: ukr(1, kc, ai, lda, b, in, bj, ci, ldc, nr); break;
    }
}

TGT void fl_gemm_avx512_panels(int M, int N, int K, const float *a, int lda, const float *bp,
                               int j0, int j1, fl_gemm_init init, const float *bias, float *c,
                               int ldc) {
#define TILE(rows) tile(rows, kc, ai, lda, b, in, bj, ci, ldc, nr)
    FL_GEMM_BLOCKED(MR, MC, KC, TILE);
#undef TILE
}

#else /* not x86: never dispatched here (fl_gemm_best says plain) */
void fl_gemm_avx512_panels(int M, int N, int K, const float *a, int lda, const float *bp, int j0,
                           int j1, fl_gemm_init init, const float *bias, float *c, int ldc) {
    fl_gemm_plain_panels(M, N, K, a, lda, bp, j0, j1, init, bias, c, ldc);
}
#endif
