/* Cosine top-k neighbours by BLAS SGEMM: for every query row, the k gallery rows of highest
 * similarity (rows assumed L2-normalized, so the dot product is the cosine).
 *
 * The similarity matrix is never held whole: queries and gallery are cut into blocks so that one
 * block of similarities (block_q x block_g floats) bounds the extra memory; each block is one
 * SGEMM, then every query row of it is scanned against a k-entry min-heap (OpenMP over query
 * rows), so no row is ever sorted. Order of the result: higher similarity first, equal
 * similarities by lower gallery index; the same inputs and thread count give the same bytes.
 *
 * With npairs > 1 the similarity is the mean over pairs p of Q_p G_p^T (the "average the
 * similarities" fold ensemble): each pair p has its own query and gallery matrices of the same
 * shapes (the row order must agree across pairs). Pure numerics: no idea of what rows mean. */
#ifndef FLUKE_KNN_H
#define FLUKE_KNN_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"

#define FL_KNN_DEFAULT_K 100
#define FL_KNN_BLOCK_Q 1024 /* query rows per block (default) */
#define FL_KNN_BLOCK_G 8192 /* gallery rows per block (default): 32 MiB of similarities */

typedef struct fl_knn_args {
    int k;                  /* neighbours per query (>= 1) */
    int threads;            /* OpenMP and OpenBLAS threads; <= 0: leave both as they are */
    int64_t block_q;        /* query rows per block; 0: FL_KNN_BLOCK_Q */
    int64_t block_g;        /* gallery rows per block; 0: FL_KNN_BLOCK_G */
    const int64_t *exclude; /* per query a gallery row to skip (< 0: none); NULL: none */
} fl_knn_args;

/* Q[p]: nq x d, G[p]: ng x d, row-major float32, p < npairs. Writes idx[nq * k] (gallery row,
 * best first; -1 after the last when fewer than k rows are eligible) and sim[nq * k] (the
 * similarity; -INFINITY in the padding). 0 ok, -1 with e set (bad arguments, out of memory). */
int fl_knn_topk_multi(const float *const *Q, const float *const *G, int npairs, int64_t nq,
                      int64_t ng, int64_t d, const fl_knn_args *a, int32_t *idx, float *sim,
                      fl_err *e);
/* The single-pair case. */
int fl_knn_topk(const float *Q, int64_t nq, const float *G, int64_t ng, int64_t d,
                const fl_knn_args *a, int32_t *idx, float *sim, fl_err *e);

/* L2-normalizes each of the n rows of x (d wide) in place, in double precision; returns the
 * index of the first row whose norm is zero or not finite (left unchanged), or -1. */
int64_t fl_knn_normalize_rows(float *x, int64_t n, int64_t d);

#endif
