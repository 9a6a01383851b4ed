/* Blocked SGEMM + per-row heap selection (see knn.h). */
#include "runtime/knn.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* a is worse than b: lower similarity, or equal similarity and a higher gallery index. */
static inline int worse(float sa, int32_t ia, float sb, int32_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

/* Restores the min-heap (worst entry at 0) after the root was replaced. */
static void sift_down(float *hs, int32_t *hi, int n, int p) {
    float s = hs[p];
    int32_t i = hi[p];
    for (;;) {
        int c = 2 * p + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(hs[c + 1], hi[c + 1], hs[c], hi[c])) c++;
        if (!worse(hs[c], hi[c], s, i)) break;
        hs[p] = hs[c], hi[p] = hi[c];
        p = c;
    }
    hs[p] = s, hi[p] = i;
}

/* Scans one row of similarities (gallery rows g0 .. g0+n-1) into the heap. Columns are visited
 * in increasing gallery order, so a value equal to the heap's worst comes from a higher index
 * and loses: only strictly greater values enter. Chunks of 16 are first tested as a whole (an
 * integer or-reduction of the comparisons, which the compiler vectorizes): nearly every chunk
 * of a long row is rejected without a branch per value. */
static void scan_row(const float *s, int64_t n, int64_t g0, int64_t skip, float *hs, int32_t *hi,
                     int k) {
    float thr = hs[0];
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        int any = 0;
        for (int t = 0; t < 16; t++)
            any |= s[j + t] > thr;
        if (!any) continue;
        for (int t = 0; t < 16; t++)
            if (s[j + t] > thr && g0 + j + t != skip) {
                hs[0] = s[j + t], hi[0] = (int32_t)(g0 + j + t);
                sift_down(hs, hi, k, 0);
                thr = hs[0];
            }
    }
    for (; j < n; j++)
        if (s[j] > thr && g0 + j != skip) {
            hs[0] = s[j], hi[0] = (int32_t)(g0 + j);
            sift_down(hs, hi, k, 0);
            thr = hs[0];
        }
}

/* Heap sort in place: the worst goes to the end each time, leaving best first. */
static void heap_to_sorted(float *hs, int32_t *hi, int k) {
    for (int n = k - 1; n > 0; n--) {
        float s = hs[0];
        int32_t i = hi[0];
        hs[0] = hs[n], hi[0] = hi[n];
        hs[n] = s, hi[n] = i;
        sift_down(hs, hi, n, 0);
    }
}

int fl_knn_topk_multi(const float *const *Q, const float *const *G, int npairs, int64_t nq,
                      int64_t ng, int64_t d, const fl_knn_args *a, int32_t *idx, float *sim,
                      fl_err *e) {
    int k = a->k;
    if (k < 1) return fl_errf(e, "kNN: k = %d, must be at least 1", k);
    if (npairs < 1) return fl_errf(e, "kNN: %d matrix pairs, need at least 1", npairs);
    if (nq < 0 || ng < 0 || d < 1)
        return fl_errf(e, "kNN: bad shape (%lld queries, %lld gallery rows, %lld wide)",
                       (long long)nq, (long long)ng, (long long)d);
    if (ng > INT32_MAX || d > INT32_MAX)
        return fl_errf(e, "kNN: %lld gallery rows of width %lld exceed the 32-bit index",
                       (long long)ng, (long long)d);
    for (int64_t i = 0; i < nq * k; i++)
        sim[i] = -INFINITY, idx[i] = -1;
    if (nq == 0 || ng == 0) return 0;
    int64_t bq = a->block_q > 0 ? a->block_q : FL_KNN_BLOCK_Q;
    int64_t bg = a->block_g > 0 ? a->block_g : FL_KNN_BLOCK_G;
    if (bq > nq) bq = nq;
    if (bg > ng) bg = ng;
    float *S = malloc((size_t)bq * (size_t)bg * sizeof *S);
    if (!S)
        return fl_errf(e, "kNN: out of memory for a %lld x %lld similarity block", (long long)bq,
                       (long long)bg);
    int threads = a->threads > 0 ? a->threads : omp_get_max_threads();
    int keep_blas = openblas_get_num_threads();
    if (a->threads > 0) openblas_set_num_threads(a->threads);
    float alpha = 1.0f / (float)npairs;
    for (int64_t q0 = 0; q0 < nq; q0 += bq) {
        int64_t m = nq - q0 < bq ? nq - q0 : bq;
        for (int64_t g0 = 0; g0 < ng; g0 += bg) {
            int64_t n = ng - g0 < bg ? ng - g0 : bg;
            for (int p = 0; p < npairs; p++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)d,
                            npairs == 1 ? 1.0f : alpha, Q[p] + (size_t)q0 * (size_t)d, (int)d,
                            G[p] + (size_t)g0 * (size_t)d, (int)d, p == 0 ? 0.0f : 1.0f, S, (int)n);
#pragma omp parallel for schedule(static) num_threads(threads)
            for (int64_t r = 0; r < m; r++) {
                int64_t q = q0 + r;
                scan_row(S + (size_t)r * (size_t)n, n, g0, a->exclude ? a->exclude[q] : -1,
                         sim + (size_t)q * k, idx + (size_t)q * k, k);
            }
        }
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t q = 0; q < nq; q++)
        heap_to_sorted(sim + (size_t)q * k, idx + (size_t)q * k, k);
    if (a->threads > 0) openblas_set_num_threads(keep_blas);
    free(S);
    return 0;
}

int fl_knn_topk(const float *Q, int64_t nq, const float *G, int64_t ng, int64_t d,
                const fl_knn_args *a, int32_t *idx, float *sim, fl_err *e) {
    return fl_knn_topk_multi(&Q, &G, 1, nq, ng, d, a, idx, sim, e);
}

int64_t fl_knn_normalize_rows(float *x, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; i++) {
        float *r = x + (size_t)i * (size_t)d;
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)r[j] * r[j];
        if (!(s > 0) || !isfinite(s)) return i;
        double inv = 1.0 / sqrt(s);
        for (int64_t j = 0; j < d; j++)
            r[j] = (float)(r[j] * inv);
    }
    return -1;
}
