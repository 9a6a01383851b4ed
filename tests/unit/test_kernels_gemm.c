/* runtime/cpu/gemm.h (the conv GEMM) against a double-precision reference, every path the CPU
 * runs (plain, AVX2+FMA, AVX-512F; one the CPU lacks prints "skipped: no ..."), odd sizes (M, N,
 * K not multiples of the 6x16 / 12x16 tiles or the K block, K = 1, K = 0, N below one vector),
 * lda > K, ldc > N, and each start value (zero, accumulate onto C, bias). The bound is the
 * rigorous componentwise one, |C - C_ref| <= (K + 2) * u * (|C0| + sum_k |a_k b_k|), u = 2^-24
 * (so it holds for any summation order; dropping one term or one column breaks it). Then: the
 * AVX2 and AVX-512 paths agree bitwise (the same fused sums in the same order), a split by
 * panels equals the whole call bitwise, and the conv entry points give bitwise the same results
 * on 1 and 2 threads under every FLUKE_GEMM path, and agree with OpenBLAS's within the bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/conv.h"
#include "runtime/cpu/gemm.h"
#include "runtime/rng.h"

#define U32 (1.0 / 16777216.0)

typedef struct mnk {
    int M, N, K;
} mnk;

static const mnk SHAPES[] = {
    {1, 1, 1},    {1, 1, 0},    {7, 5, 1},     {6, 16, 1},   {13, 17, 3},  {5, 3, 40},
    {12, 31, 7},  {25, 8, 64},  {97, 33, 300}, {100, 70, 513}, {193, 16, 256}, {11, 47, 257},
    {2, 129, 19}, {64, 64, 576},
};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static void fill(fl_rng *r, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(fl_rng_uniform(r) * 2.0 - 1.0);
}

/* Runs one path over every shape and start value; returns the worst error / bound seen. With
 * out != NULL (one slot per shape and start) keeps each result for the cross-path check. */
static double check_path(fl_gemm_path path, float **out) {
    fl_rng r;
    fl_rng_init(&r, 1234, 0);
    double worst = 0.0;
    int slot = 0;
    for (int si = 0; si < NSHAPES; si++) {
        const int M = SHAPES[si].M, N = SHAPES[si].N, K = SHAPES[si].K;
        const int lda = K + 3, ldc = N + 5;
        float *a = malloc(sizeof(float) * ((size_t)M * lda + 1));
        float *b = malloc(sizeof(float) * ((size_t)K * N + 1));
        float *bias = malloc(sizeof(float) * (size_t)N);
        float *c0 = malloc(sizeof(float) * (size_t)M * ldc);
        float *c = malloc(sizeof(float) * (size_t)M * ldc);
        float *bp = aligned_alloc(64, (fl_gemm_packed_numel(K, N) * sizeof(float) + 64) / 64 * 64);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(bias);
        assert_non_null(c0);
        assert_non_null(c);
        assert_non_null(bp);
        fill(&r, a, (size_t)M * lda);
        fill(&r, b, (size_t)K * N);
        fill(&r, bias, (size_t)N);
        fill(&r, c0, (size_t)M * ldc);
        /* B given transposed (as the conv's forward operand is): B[k][n] = b[n*K + k] */
        fl_gemm_pack_b(K, N, b, 1, K, bp);
        for (int init = 0; init < 3; init++, slot++) {
            memcpy(c, c0, sizeof(float) * (size_t)M * ldc);
            fl_gemm(path, M, N, K, a, lda, bp, (fl_gemm_init)init, init == 2 ? bias : NULL, c, ldc);
            for (int i = 0; i < M; i++) {
                for (int n = 0; n < N; n++) {
                    double s = init == 1 ? c0[(size_t)i * ldc + n] : init == 2 ? bias[n] : 0.0;
                    double mag = fabs(s);
                    for (int k = 0; k < K; k++) {
                        double t = (double)a[(size_t)i * lda + k] * b[(size_t)n * K + k];
                        s += t;
                        mag += fabs(t);
                    }
                    double err = fabs(c[(size_t)i * ldc + n] - s);
                    double bound = (K + 2) * U32 * mag;
                    double ratio = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0);
                    if (!(ratio <= 1.0))
                        fail_msg("%s M=%d N=%d K=%d init=%d: C[%d][%d] = %.9g, ref %.9g (%.3g of the "
                                 "bound)", fl_gemm_path_name(path), M, N, K, init, i, n,
                                 c[(size_t)i * ldc + n], s, ratio);
                    if (ratio > worst) worst = ratio;
                }
                /* the padding between rows (ldc > N) is never written */
                for (int n = N; n < ldc; n++)
                    assert_true(c[(size_t)i * ldc + n] == c0[(size_t)i * ldc + n]);
            }
            if (out) {
                out[slot] = malloc(sizeof(float) * (size_t)M * ldc);
                assert_non_null(out[slot]);
                memcpy(out[slot], c, sizeof(float) * (size_t)M * ldc);
            }
        }
        free(a);
        free(b);
        free(bias);
        free(c0);
        free(c);
        free(bp);
    }
    return worst;
}

static void run_path(fl_gemm_path path, const char *cpu_lacks) {
    if (!fl_gemm_supported(path)) {
        print_message("skipped: %s\n", cpu_lacks);
        skip();
    }
    double w = check_path(path, NULL);
    print_message("gemm %s vs double reference: worst error %.3g of the bound\n",
                  fl_gemm_path_name(path), w);
}

static void test_plain(void **state) {
    (void)state;
    run_path(FL_GEMM_PLAIN, "no plain path");
}

static void test_avx2(void **state) {
    (void)state;
    run_path(FL_GEMM_AVX2, "no AVX2+FMA");
}

static void test_avx512(void **state) {
    (void)state;
    run_path(FL_GEMM_AVX512, "no AVX-512");
}

/* The vector paths compute the same fused sums in the same order: bitwise equal. */
static void test_vector_paths_agree(void **state) {
    (void)state;
    if (!fl_gemm_supported(FL_GEMM_AVX512)) {
        print_message("skipped: no AVX-512 (nothing to compare AVX2 with)\n");
        skip();
    }
    enum { NSLOT = NSHAPES * 3 };
    float *r2[NSLOT], *r5[NSLOT];
    check_path(FL_GEMM_AVX2, r2);
    check_path(FL_GEMM_AVX512, r5);
    int slot = 0;
    for (int si = 0; si < NSHAPES; si++)
        for (int init = 0; init < 3; init++, slot++) {
            size_t n = (size_t)SHAPES[si].M * (SHAPES[si].N + 5);
            assert_memory_equal(r2[slot], r5[slot], n * sizeof(float));
            free(r2[slot]);
            free(r5[slot]);
        }
}

/* fl_gemm_panels over [0, j) then [j, np) gives the whole call's C bitwise. */
static void test_panel_split(void **state) {
    (void)state;
    fl_rng r;
    fl_rng_init(&r, 99, 0);
    const int M = 29, N = 70, K = 300, np = (N + FL_GEMM_NR - 1) / FL_GEMM_NR;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *bias = malloc(sizeof(float) * N), *c1 = malloc(sizeof(float) * M * N);
    float *c2 = malloc(sizeof(float) * M * N), *bp = malloc(sizeof(float) * fl_gemm_packed_numel(K, N));
    assert_true(a && b && bias && c1 && c2 && bp);
    fill(&r, a, (size_t)M * K);
    fill(&r, b, (size_t)K * N);
    fill(&r, bias, N);
    fl_gemm_pack_b(K, N, b, N, 1, bp);
    for (int p = FL_GEMM_PLAIN; p <= FL_GEMM_AVX512; p++) {
        if (!fl_gemm_supported((fl_gemm_path)p)) continue;
        fl_gemm((fl_gemm_path)p, M, N, K, a, K, bp, FL_GEMM_BIAS, bias, c1, N);
        for (int j = 1; j < np; j++) {
            memset(c2, 0xff, sizeof(float) * M * N);
            fl_gemm_panels((fl_gemm_path)p, M, N, K, a, K, bp, 0, j, FL_GEMM_BIAS, bias, c2, N);
            fl_gemm_panels((fl_gemm_path)p, M, N, K, a, K, bp, j, np, FL_GEMM_BIAS, bias, c2, N);
            assert_memory_equal(c1, c2, sizeof(float) * M * N);
        }
    }
    free(a);
    free(b);
    free(bias);
    free(c1);
    free(c2);
    free(bp);
}

/* ---- the conv entry points on each path ---- */

typedef struct conv_out {
    float *y, *dx;
} conv_out;

static conv_out conv_run(const fl_conv2d_params *p, const float *x, const float *w,
                         const float *bias, const float *dy, int threads) {
    conv_out o;
    fl_err e;
    o.y = malloc(fl_conv2d_y_numel(p) * sizeof(float));
    o.dx = malloc(fl_conv2d_x_numel(p) * sizeof(float));
    assert_true(o.y && o.dx);
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    assert_int_equal(fl_conv2d_forward(p, x, w, bias, o.y, &e), 0);
    assert_int_equal(fl_conv2d_backward_data(p, dy, w, o.dx, &e), 0);
    omp_set_num_threads(saved);
    return o;
}

static void test_conv_paths(void **state) {
    (void)state;
    /* a pointwise conv (x rows read in place), a padded 3x3, a grouped 3x3 stride 2 */
    const fl_conv2d_params P[] = {
        {.N = 2, .H = 5, .W = 7, .C_in = 19, .C_out = 37, .KH = 1, .KW = 1, .stride_h = 1,
         .stride_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1},
        {.N = 2, .H = 9, .W = 6, .C_in = 5, .C_out = 21, .KH = 3, .KW = 3, .stride_h = 1,
         .stride_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1, .pad_top = 1,
         .pad_left = 1, .pad_bottom = 1, .pad_right = 1},
        {.N = 1, .H = 11, .W = 10, .C_in = 8, .C_out = 6, .KH = 3, .KW = 3, .stride_h = 2,
         .stride_w = 2, .dilation_h = 1, .dilation_w = 1, .groups = 2, .pad_top = 1,
         .pad_left = 1, .pad_bottom = 1, .pad_right = 1},
    };
    const char *paths[] = {"blas", "plain", "avx2", "avx512"};
    fl_rng r;
    fl_rng_init(&r, 7, 0);
    for (size_t pi = 0; pi < sizeof P / sizeof P[0]; pi++) {
        const fl_conv2d_params *p = &P[pi];
        size_t nx = fl_conv2d_x_numel(p), ny = fl_conv2d_y_numel(p), nw = fl_conv2d_w_numel(p);
        assert_true(nx && ny && nw);
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4), *b = malloc(p->C_out * 4);
        assert_true(x && w && dy && b);
        fill(&r, x, nx);
        fill(&r, w, nw);
        fill(&r, dy, ny);
        fill(&r, b, p->C_out);
        conv_out ref = {NULL, NULL};
        for (int q = 0; q < 4; q++) {
            if (q == 3 && !fl_gemm_supported(FL_GEMM_AVX512)) continue;
            if (q == 2 && !fl_gemm_supported(FL_GEMM_AVX2)) continue;
            setenv("FLUKE_GEMM", paths[q], 1);
            conv_out o1 = conv_run(p, x, w, b, dy, 1), o2 = conv_run(p, x, w, b, dy, 2);
            assert_memory_equal(o1.y, o2.y, ny * 4);
            assert_memory_equal(o1.dx, o2.dx, nx * 4);
            if (!ref.y) {
                ref = o1;
            } else {
                /* against OpenBLAS: each value a sum of at most K + 1 terms of magnitude <= 1 */
                int K = p->KH * p->KW * p->C_in / p->groups, Kd = p->C_out / p->groups * p->KH * p->KW;
                for (size_t i = 0; i < ny; i++)
                    assert_true(fabs(o1.y[i] - ref.y[i]) <= 2.0 * (K + 2) * (K + 1) * U32);
                for (size_t i = 0; i < nx; i++)
                    assert_true(fabs(o1.dx[i] - ref.dx[i]) <= 2.0 * (Kd + 2) * Kd * U32);
                free(o1.y);
                free(o1.dx);
            }
            free(o2.y);
            free(o2.dx);
        }
        unsetenv("FLUKE_GEMM");
        free(ref.y);
        free(ref.dx);
        free(x);
        free(w);
        free(dy);
        free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),       cmocka_unit_test(test_vector_paths_agree),
        cmocka_unit_test(test_panel_split),  cmocka_unit_test(test_conv_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
