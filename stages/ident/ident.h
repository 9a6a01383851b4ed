/* Identification from neighbours: a query's top-k gallery neighbours -> per individual the max
 * similarity (its confidence) -> the ranked candidates; new_individual inserted first when the
 * top confidence is below a threshold, else second; MAP@5 and the threshold chosen on a grid
 * (globally, and per species with a fallback to the global one), as the reproduced solution
 * calibrates new_individual out of fold. Labels here are individual indices; FL_IDENT_NEW
 * stands for new_individual. */
#ifndef FLUKE_IDENT_H
#define FLUKE_IDENT_H

#include <stdint.h>

#include "artifacts/util.h"
#include "stages/labels/labels.h"

#define FL_IDENT_NEW (-1)

typedef struct fl_ident_oof {
    double map5, map5_known, map5_new, threshold; /* at the best grid threshold */
    int64_t n_query, n_known, n_new;
} fl_ident_oof;

/* emb: n train rows (normalized, d wide), ind[r] >= 0 individual index. Every row with
 * query[r] != 0 is ranked against every OTHER row (itself excluded); its truth is its
 * individual when another row has it, else new_individual. Top-k neighbours, per individual
 * the max similarity, new_individual first when top-1 sim < t else second; t on the grid
 * 0, step, ..., 1 maximizing MAP@5 (ties -> the smallest t). */
int fl_ident_oof_eval(const float *emb, int64_t n, int64_t d, const int32_t *ind,
                      const uint8_t *query, int k, double grid_step, fl_ident_oof *out, fl_err *e);

/* A query's best distinct individuals, best first. */
typedef struct fl_ident_cand {
    int n; /* 0..FL_MAP_K */
    int32_t ind[FL_MAP_K];
    float conf[FL_MAP_K]; /* the individual's max similarity among the neighbours */
    int32_t top1;         /* gallery row of the nearest neighbour, -1 when there is none */
} fl_ident_cand;

/* From fl_knn_topk's output (nq x k, best first, -1 padding) and gallery labels gind. */
void fl_ident_candidates(const int32_t *idx, const float *sim, int64_t nq, int k,
                         const int32_t *gind, fl_ident_cand *out);

/* The answer at threshold t: new_individual first when there is no candidate or conf[0] < t,
 * else second; the candidates; then fill[] (most frequent individuals) for labels still
 * missing, skipping repeats. Returns how many labels (<= 5) out holds. */
int fl_ident_answer(const fl_ident_cand *c, double t, const int32_t *fill, int nfill,
                    int32_t out[FL_MAP_K]);

/* 1 / rank of truth among the n labels (distinct), 0 when absent: Kaggle's AP@5 for one image
 * (fl_apk5 on indices instead of strings). */
double fl_ident_ap(int32_t truth, const int32_t *lab, int n);

/* What the threshold search needs of one query. */
typedef struct fl_ident_q {
    double ap_first, ap_second; /* AP with new_individual first / second */
    float top1;                 /* top confidence (-inf without candidates) */
    int8_t is_new;              /* truth is new_individual */
} fl_ident_q;

void fl_ident_query(const fl_ident_cand *c, int32_t truth, const int32_t *fill, int nfill,
                    fl_ident_q *q);
/* AP of the query at threshold t. Similarities are float32: t is compared as a float, so a
 * grid point 0.9 and a similarity 0.9f are equal (not below). */
static inline double fl_ident_q_ap(const fl_ident_q *q, double t) {
    return q->top1 < (float)t ? q->ap_first : q->ap_second;
}

/* Number of grid points 0, step, ..., 1 (1 included when step divides it up to rounding). */
int fl_ident_grid_n(double step);
/* The grid threshold maximizing the mean AP over the queries with sel[i] (NULL: all), ties to
 * the smallest; *best_map (may be NULL) gets that mean. No query selected: 0 with mean 0. */
double fl_ident_grid_search(const fl_ident_q *q, const uint8_t *sel, int64_t n, double step,
                            double *best_map);

/* Per-species thresholds: sp[i] in 0..nsp-1 (or < 0: no species) is query i's species. A species
 * with at least min_n queries gets its own grid threshold (own[s] = 1), the others the global
 * one (own[s] = 0). thr and own have nsp entries. */
int fl_ident_species_thresholds(const fl_ident_q *q, const int32_t *sp, int64_t n, int nsp,
                                int min_n, double step, double global, double *thr, uint8_t *own,
                                fl_err *e);

/* MAP@5 summary of queries at their thresholds: thr_of[i] is query i's threshold. */
typedef struct fl_ident_map {
    double map5, map5_known, map5_new;
    int64_t n, n_known, n_new;
} fl_ident_map;
void fl_ident_score(const fl_ident_q *q, const double *thr_of, int64_t n, fl_ident_map *m);

#endif
