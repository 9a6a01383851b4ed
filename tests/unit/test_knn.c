/* runtime/knn: blocked SGEMM top-k against a brute-force float64 reference on random normalized
 * rows (same top sets, similarities within float32 rounding of the float64 value, whatever
 * kernel OpenBLAS picks), block boundaries, self exclusion, ties, short galleries and the
 * averaged-similarity mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/knn.h"
#include "runtime/rng.h"

static float *random_rows(int64_t n, int64_t d, uint64_t seed) {
    float *x = malloc((size_t)(n * d) * sizeof *x);
    assert_non_null(x);
    fl_rng r;
    fl_rng_init(&r, seed, 0);
    for (int64_t i = 0; i < n * d; i++)
        x[i] = fl_rng_normal(&r);
    assert_int_equal(fl_knn_normalize_rows(x, n, d), -1);
    return x;
}

/* Reference: all similarities in float64 (of the float32 inputs), pairs sorted by (sim desc,
 * index asc). ref[q * ng + r] is the r-th best gallery index of query q; val its similarity. */
typedef struct ref_pair {
    double s;
    int32_t i;
} ref_pair;

static int cmp_pair(const void *a, const void *b) {
    const ref_pair *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static ref_pair *reference(const float *const *Q, const float *const *G, int np, int64_t nq,
                           int64_t ng, int64_t d, const int64_t *excl, int64_t *nelig) {
    ref_pair *ref = malloc((size_t)(nq * ng) * sizeof *ref);
    assert_non_null(ref);
    for (int64_t q = 0; q < nq; q++) {
        int64_t c = 0;
        for (int64_t g = 0; g < ng; g++) {
            if (excl && excl[q] == g) continue;
            double s = 0;
            for (int p = 0; p < np; p++)
                for (int64_t j = 0; j < d; j++)
                    s += (double)Q[p][q * d + j] * G[p][g * d + j] / np;
            ref[q * ng + c].s = s, ref[q * ng + c].i = (int32_t)g;
            c++;
        }
        qsort(ref + q * ng, (size_t)c, sizeof *ref, cmp_pair);
        nelig[q] = c;
    }
    return ref;
}

/* Every returned neighbour's similarity is within tol of its float64 value, the list is in
 * (sim desc, index asc) order, and it is the reference's top-k set except where the reference's
 * k-th and (k+1)-th values are closer than twice the float32 error seen on that query (a tie
 * within rounding may fall either way);
 * returns how many queries had such a near tie. */
static int check(const float *const *Q, const float *const *G, int np, int64_t nq, int64_t ng,
                 int64_t d, int k, const int64_t *excl, const int32_t *idx, const float *sim) {
    int64_t *nelig = malloc((size_t)nq * sizeof *nelig);
    ref_pair *ref = reference(Q, G, np, nq, ng, d, excl, nelig);
    /* |float32 dot - exact| <= d * eps * sum|q_j g_j| <= d * eps for unit rows (plus the
     * averaging's own rounding): a bound that holds for any summation order or FMA use. */
    double tol = (double)(d + 4) * FLT_EPSILON;
    int near = 0;
    for (int64_t q = 0; q < nq; q++) {
        const ref_pair *r = ref + q * ng;
        int64_t want = nelig[q] < k ? nelig[q] : k;
        double maxerr = 0; /* the float32 noise actually seen on this query */
        for (int j = 0; j < k; j++) {
            int32_t g = idx[q * k + j];
            if (j >= want) {
                assert_int_equal(g, -1);
                assert_true(isinf(sim[q * k + j]) && sim[q * k + j] < 0);
                continue;
            }
            assert_true(g >= 0 && g < ng);
            if (excl) assert_true(g != excl[q]);
            double exact = 0;
            for (int p = 0; p < np; p++)
                for (int64_t t = 0; t < d; t++)
                    exact += (double)Q[p][q * d + t] * G[p][g * d + t] / np;
            assert_true(fabs(sim[q * k + j] - exact) <= tol);
            if (fabs(sim[q * k + j] - exact) > maxerr) maxerr = fabs(sim[q * k + j] - exact);
            if (j > 0) {
                float ps = sim[q * k + j - 1];
                assert_true(ps > sim[q * k + j] ||
                            (ps == sim[q * k + j] && idx[q * k + j - 1] < g));
            }
        }
        int tie = want < nelig[q] && r[want - 1].s - r[want].s <= 2 * maxerr;
        near += tie;
        if (tie) continue;
        for (int j = 0; j < want; j++) { /* same set: every reference top-k index is returned */
            int found = 0;
            for (int t = 0; t < want; t++)
                found |= idx[q * k + t] == r[j].i;
            assert_true(found);
        }
    }
    free(ref);
    free(nelig);
    return near;
}

static void test_matches_reference(void **state) {
    (void)state;
    fl_err e = {{0}};
    /* block sizes that do not divide n (and one larger than n), k below, at and above ng */
    const struct {
        int64_t nq, ng, d, bq, bg;
        int k;
    } cs[] = {
        {37, 211, 64, 8, 50, 5},  {37, 211, 64, 0, 0, 100}, {64, 64, 33, 64, 64, 5},
        {5, 300, 128, 2, 17, 20}, {9, 7, 16, 4, 3, 10},     {200, 513, 512, 64, 128, 100},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *q = random_rows(cs[c].nq, cs[c].d, 10 + c),
              *g = random_rows(cs[c].ng, cs[c].d, 50 + c);
        int k = cs[c].k;
        int32_t *idx = malloc((size_t)(cs[c].nq * k) * sizeof *idx);
        float *sim = malloc((size_t)(cs[c].nq * k) * sizeof *sim);
        fl_knn_args a = {.k = k, .threads = 2, .block_q = cs[c].bq, .block_g = cs[c].bg};
        if (fl_knn_topk(q, cs[c].nq, g, cs[c].ng, cs[c].d, &a, idx, sim, &e)) fail_msg("%s", e.msg);
        const float *Q[1] = {q}, *G[1] = {g};
        int near = check(Q, G, 1, cs[c].nq, cs[c].ng, cs[c].d, k, NULL, idx, sim);
        assert_true(near <= cs[c].nq / 10);
        /* top-5 sets exactly as the reference, query by query (random data: no near ties) */
        if (k >= 5) {
            int32_t *i5 = malloc((size_t)(cs[c].nq * 5) * sizeof *i5);
            float *s5 = malloc((size_t)(cs[c].nq * 5) * sizeof *s5);
            a.k = 5;
            assert_int_equal(fl_knn_topk(q, cs[c].nq, g, cs[c].ng, cs[c].d, &a, i5, s5, &e), 0);
            assert_int_equal(check(Q, G, 1, cs[c].nq, cs[c].ng, cs[c].d, 5, NULL, i5, s5), 0);
            /* and the first 5 of the top-k list are the top-5 (same blocks or not) */
            for (int64_t i = 0; i < cs[c].nq; i++)
                for (int j = 0; j < 5 && j < cs[c].ng; j++)
                    assert_int_equal(i5[i * 5 + j], idx[i * k + j]);
            free(i5), free(s5);
        }
        free(q), free(g), free(idx), free(sim);
    }
}

/* Query i excludes gallery row i (itself): the best neighbour is never itself, and the result
 * is the reference without that row. */
static void test_exclude_self(void **state) {
    (void)state;
    fl_err e = {{0}};
    int64_t n = 150, d = 48;
    int k = 7;
    float *x = random_rows(n, d, 3);
    int64_t *ex = malloc((size_t)n * sizeof *ex);
    for (int64_t i = 0; i < n; i++)
        ex[i] = i % 10 == 9 ? -1 : i;
    int32_t *idx = malloc((size_t)(n * k) * sizeof *idx);
    float *sim = malloc((size_t)(n * k) * sizeof *sim);
    fl_knn_args a = {.k = k, .threads = 2, .block_q = 16, .block_g = 41, .exclude = ex};
    assert_int_equal(fl_knn_topk(x, n, x, n, d, &a, idx, sim, &e), 0);
    const float *Q[1] = {x};
    assert_true(check(Q, Q, 1, n, n, d, k, ex, idx, sim) <= 2);
    for (int64_t i = 0; i < n; i++) {
        if (ex[i] < 0)
            assert_int_equal(idx[i * k], i); /* not excluded: itself, sim 1 */
        else
            assert_true(idx[i * k] != i);
    }
    free(x), free(ex), free(idx), free(sim);
}

/* Identical gallery rows: equal similarities, lower index first, across block edges; with a
 * gallery of 3 rows and one excluded, k = 4 pads with -1. */
static void test_ties_and_padding(void **state) {
    (void)state;
    fl_err e = {{0}};
    int64_t ng = 23, d = 4;
    float *g = calloc((size_t)(ng * d), sizeof *g);
    for (int64_t i = 0; i < ng; i++)
        g[i * d + (i % 3 == 0 ? 0 : 1)] = 1.0f; /* 0,3,6,..: e0 */
    float q[4] = {1, 0, 0, 0};
    int32_t idx[5];
    float sim[5];
    for (int64_t bg = 1; bg <= ng; bg += 5) {
        fl_knn_args a = {.k = 5, .threads = 2, .block_g = bg};
        assert_int_equal(fl_knn_topk(q, 1, g, ng, d, &a, idx, sim, &e), 0);
        for (int j = 0; j < 5; j++) {
            assert_int_equal(idx[j], 3 * j);
            assert_true(sim[j] == 1.0f);
        }
    }
    int64_t ex = 1;
    fl_knn_args a = {.k = 4, .threads = 1, .exclude = &ex};
    float g3[12] = {0, 1, 0, 0, 1, 0, 0, 0, 0.6f, 0.8f, 0, 0};
    assert_int_equal(fl_knn_topk(q, 1, g3, 3, 4, &a, idx, sim, &e), 0);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 0);
    assert_int_equal(idx[2], -1);
    assert_int_equal(idx[3], -1);
    assert_true(sim[1] == 0.0f && isinf(sim[2]));
    /* bad arguments */
    a.k = 0;
    assert_int_equal(fl_knn_topk(q, 1, g3, 3, 4, &a, idx, sim, &e), -1);
    assert_non_null(strstr(e.msg, "k = 0"));
    free(g);
}

/* Two pairs: the mean of the two similarity matrices, against the float64 reference. */
static void test_mean_of_pairs(void **state) {
    (void)state;
    fl_err e = {{0}};
    int64_t nq = 40, ng = 130, d = 32;
    int k = 9;
    float *q0 = random_rows(nq, d, 1), *q1 = random_rows(nq, d, 2);
    float *g0 = random_rows(ng, d, 3), *g1 = random_rows(ng, d, 4);
    const float *Q[2] = {q0, q1}, *G[2] = {g0, g1};
    int32_t *idx = malloc((size_t)(nq * k) * sizeof *idx);
    float *sim = malloc((size_t)(nq * k) * sizeof *sim);
    fl_knn_args a = {.k = k, .threads = 2, .block_q = 7, .block_g = 60};
    assert_int_equal(fl_knn_topk_multi(Q, G, 2, nq, ng, d, &a, idx, sim, &e), 0);
    assert_true(check(Q, G, 2, nq, ng, d, k, NULL, idx, sim) <= 2);
    free(q0), free(q1), free(g0), free(g1), free(idx), free(sim);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_exclude_self),
        cmocka_unit_test(test_ties_and_padding),
        cmocka_unit_test(test_mean_of_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
