/* The cache blocking shared by the vector paths of gemm.h (gemm_avx2.c, gemm_avx512.c), expanded
 * inside each path's panels function so it compiles for that path's ISA: K in blocks of KC_
 * (later blocks add onto C), rows in blocks of MC_, then each 16-column panel j0..j1-1 and tiles
 * of MR_ rows. TILE(rows) runs the micro-kernel on one tile; it sees kc, ai, lda, b, in, bj, ci,
 * ldc and nr (the panel's valid columns). Needs the panels function's parameters in scope. */
#ifndef FLUKE_CPU_GEMM_BLOCKED_H
#define FLUKE_CPU_GEMM_BLOCKED_H

#define FL_GEMM_BLOCKED(MR_, MC_, KC_, TILE)                                                      \
    do {                                                                                          \
        const int NR = FL_GEMM_NR;                                                                \
        for (int k0 = 0; k0 < K || k0 == 0; k0 += (KC_)) {                                        \
            const int kc = K - k0 < (KC_) ? K - k0 : (KC_);                                       \
            const int in = k0 == 0 ? (int)init : FL_GEMM_ACCUM; /* later K blocks add onto C */ \
            for (int i0 = 0; i0 < M; i0 += (MC_)) {                                               \
                const int i1 = M - i0 < (MC_) ? M : i0 + (MC_);                                   \
                for (int j = j0; j < j1; j++) {                                                   \
                    const float *b = bp + ((size_t)j * K + k0) * NR;                              \
                    const int n0 = j * NR, nr = N - n0 < NR ? N - n0 : NR;                        \
                    const float *bj = bias ? bias + n0 : NULL;                                    \
                    for (int i = i0; i < i1; i += (MR_)) {                                        \
                        const float *ai = a + (size_t)i * lda + k0;                               \
                        float *ci = c + (size_t)i * ldc + n0;                                     \
                        TILE(i1 - i < (MR_) ? i1 - i : (MR_));                                    \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
            if (K == 0) break;                                                                    \
        }                                                                                         \
    } while (0)

#endif
