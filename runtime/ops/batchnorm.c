/* Batch normalization over the last axis (C) of x viewed as [M, C] (M = N*H*W in NHWC).
 *
 * Train mode: mean and biased variance of the batch normalize; running_mean / running_var move
 * towards the batch mean and the UNBIASED variance by `momentum` (PyTorch), num_batches_tracked
 * counts. Eval mode: the running statistics normalize. The per-channel mean and 1/sqrt(var+eps)
 * used are kept (aux, doubles) for the backward pass:
 *   train  dx = w*invstd * (dy - mean(dy) - xhat*mean(dy*xhat))  (as A*dy + B*(x-mean) + D)
 *   eval   dx = w*invstd * dy
 *   dw += sum(dy*xhat), db += sum(dy).
 * Column sums run over 16 fixed row chunks combined in order, so results do not depend on the
 * thread count; sums accumulate in double. Inputs: x, weight, bias, running_mean, running_var, num_batches_tracked.
 *
 * batchnorm_silu: z = silu(y), y the batch norm above, as one op: the pair makes 6 passes over
 * [M, C] forward and 8 backward and keeps two tensors for backward; the fused op makes 4 and 6
 * and keeps x only. Forward writes z straight from x after the statistics (y is never stored);
 * backward pass 1 reads dz and x, recomputes y from the kept statistics, and writes dy =
 * dz*silu'(y) into dx while summing dy and dy*(x-mean) (the same chunked double sums as
 * batchnorm); pass 2 reads dy and x and writes dx in place. Every element is computed with the
 * same expressions as batchnorm then silu (runtime/ops/silu.h), so the fused op gives the same
 * bits as the pair. Its exp-heavy loops are also built for AVX2: with one exp per element and
 * pass, the 4-wide baseline is compute bound there. Same inputs, attributes and semantics as
 * batchnorm.
 * Compiled for float and double; see activation.c. */
#ifndef FL_T
#include <math.h>
#include <string.h>

#include "runtime/cpu/clones.h"
#include "runtime/graph_internal.h"
#include "runtime/ops/silu.h"

#define NCHUNK 16

/* batchnorm_silu's element loops (exp and a division per element, in every pass) and the
 * column sums (float -> double converts and adds) are built for every vector width
 * (runtime/cpu/clones.h), picked at load time; no FMA, so the bits stay the same. */
#define FL_BN_CLONES FL_VEC_CLONES

#define FL_T float
#define FL_K(name) name##_f32
#include "runtime/ops/batchnorm.c"
#undef FL_T
#undef FL_K
#define FL_T double
#define FL_K(name) name##_f64
#include "runtime/ops/batchnorm.c"
#undef FL_T
#undef FL_K

static int bn_shape(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    if (x->dtype == FL_I32) return fl_errf(e, "input is integer labels");
    if (x->shape.ndim < 2) return fl_errf(e, "input needs at least 2 axes ([M, C]), got %d", x->shape.ndim);
    int64_t C = x->shape.d[x->shape.ndim - 1];
    static const char *what[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    for (int k = 1; k < 6; k++) {
        fl_node *p = fl_in(g, n, k);
        int64_t want = k == 5 ? 1 : C;
        if (fl_numel(p) != want || p->dtype == FL_I32)
            return fl_errf(e, "%s has %lld elements, expected %lld", what[k - 1], (long long)fl_numel(p), (long long)want);
    }
    for (int k = 3; k < 6; k++)
        if (fl_in(g, n, k)->requires_grad) return fl_errf(e, "%s must be a buffer, not trainable", what[k - 1]);
    int64_t M = fl_numel(x) / C;
    if (g->mode == FL_MODE_TRAIN && M < 2)
        return fl_errf(e, "training needs more than 1 value per channel (got %lld)", (long long)M);
    if (!(n->f[0] > 0)) return fl_errf(e, "eps must be > 0");
    if (!(n->f[1] >= 0 && n->f[1] <= 1)) return fl_errf(e, "momentum must be in [0, 1]");
    n->shape = x->shape;
    n->aux_bytes = (size_t)(2 * C) * sizeof(double);
    /* scratch: partial sums and coefficient rows (see bn_fwd / bn_bwd) */
    n->ws_fwd_bytes = sizeof(double) * (size_t)(2 * NCHUNK * C + 4 * C);
    n->ws_bwd_bytes = sizeof(double) * (size_t)(2 * NCHUNK * C + 2 * C + 4 * C);
    return 0;
}

/* 1: the op applies SiLU after the normalization (batchnorm_silu). */
static int bn_act(const fl_node *n) { return n->op == &fl_op_batchnorm_silu; }

static int bn_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.d[x->shape.ndim - 1], M = fl_numel(x) / C;
    double *stat = n->aux;
    double *part = n->ws_fwd; /* 2*NCHUNK*C partial sums, then 3*C coefficients */
    FL_DISPATCH(g, bn_fwd_k, g->mode == FL_MODE_TRAIN, bn_act(n), M, C, n->f[0], n->f[1], x->val,
                fl_in_val(g, n, 1), fl_in_val(g, n, 2), fl_in_val(g, n, 3), fl_in_val(g, n, 4),
                fl_in_val(g, n, 5), n->val, stat, stat + C, part, (void *)(part + 2 * NCHUNK * C));
    return 0;
}

static int bn_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.d[x->shape.ndim - 1], M = fl_numel(x) / C;
    double *stat = n->aux;
    /* partial sums, then sum(dy) and sum(dy*(x-mean)), then 4 coefficient rows */
    double *part = n->ws_bwd;
    FL_DISPATCH(g, bn_bwd_k, g->mode == FL_MODE_TRAIN, bn_act(n), M, C, x->val, fl_in_val(g, n, 1),
                fl_in_val(g, n, 2), n->grad, stat, stat + C, fl_in_grad(g, n, 0), fl_in_grad(g, n, 1),
                fl_in_grad(g, n, 2), part,
                (void *)(part + 2 * NCHUNK * C + 2 * C), g->beta);
    return 0;
}

const fl_op_def fl_op_batchnorm = {"batchnorm", bn_shape, FL_OPF_SAVE_IN(0) | FL_OPF_BWD_BETA,
                                   FL_OP_BATCHNORM};
const fl_op_impl fl_ref_batchnorm = {bn_fwd, bn_bwd};

fl_id fl_batchnorm(fl_graph *g, fl_id x, fl_id w, fl_id b, fl_id rm, fl_id rv, fl_id nbt,
                   double eps, double momentum) {
    fl_id in[6] = {x, w, b, rm, rv, nbt};
    double f[2] = {eps, momentum};
    return fl_graph_add_op(g, &fl_op_batchnorm, 6, in, f, 2, 0, 0);
}

/* x is saved (backward recomputes the normalized value from it); the output is not. */
const fl_op_def fl_op_batchnorm_silu = {"batchnorm_silu", bn_shape, FL_OPF_SAVE_IN(0) | FL_OPF_BWD_BETA,
                                        FL_OP_BATCHNORM_SILU};
const fl_op_impl fl_ref_batchnorm_silu = {bn_fwd, bn_bwd};

fl_id fl_batchnorm_silu(fl_graph *g, fl_id x, fl_id w, fl_id b, fl_id rm, fl_id rv, fl_id nbt,
                        double eps, double momentum) {
    fl_id in[6] = {x, w, b, rm, rv, nbt};
    double f[2] = {eps, momentum};
    return fl_graph_add_op(g, &fl_op_batchnorm_silu, 6, in, f, 2, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */

/* s1[c], s2[c] (each when not NULL) = the NCHUNK partial sums in part, added in chunk order. */
static void FL_K(colsum_combine)(int64_t C, const double *part, double *s1, double *s2) {
    const double *p1 = part, *p2 = part + NCHUNK * C;
    for (int64_t c = 0; c < C; c++) {
        double t1 = 0, t2 = 0;
        for (int k = 0; k < NCHUNK; k++) {
            t1 += p1[(int64_t)k * C + c];
            t2 += p2[(int64_t)k * C + c];
        }
        if (s1) s1[c] = t1;
        if (s2) s2[c] = t2;
    }
}

/* Column sums over rows via NCHUNK fixed row chunks (parallel) added in order:
 *   s1[c] = sum a[r,c] - mu[c]          (mu NULL: 0)
 *   s2[c] = sum (a - mu) * (b - mu2)     (when s2 != NULL; b = a and mu2 = mu when b is NULL)
 * One loop per case, so the compiler vectorizes the channel loop. */
/* Rows [r0, r1) of one chunk of colsum2 into q1 / q2 (the channel loops are the cost). */
FL_BN_CLONES static void FL_K(colsum2_rows)(int64_t r0, int64_t r1, int64_t C, const FL_T *a,
                                            const double *mu, const FL_T *b, const double *mu2,
                                            int two, double *q1, double *q2) {
    for (int64_t r = r0; r < r1; r++) {
        const FL_T *ar = a + r * C;
        if (!two) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) q1[c] += (double)ar[c];
        } else if (!b) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                double d = (double)ar[c] - mu[c];
                q2[c] += d * d;
            }
        } else {
            const FL_T *br = b + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                q1[c] += (double)ar[c];
                q2[c] += (double)ar[c] * ((double)br[c] - mu2[c]);
            }
        }
    }
}
static void FL_K(colsum2)(int64_t M, int64_t C, const FL_T *a, const double *mu, const FL_T *b,
                          const double *mu2, double *part, double *s1, double *s2) {
    double *p1 = part, *p2 = part + NCHUNK * C;
    memset(part, 0, sizeof(double) * (size_t)(2 * NCHUNK * C));
#pragma omp parallel for if (M * C > 16384)
    for (int k = 0; k < NCHUNK; k++)
        FL_K(colsum2_rows)(M * k / NCHUNK, M * (k + 1) / NCHUNK, C, a, mu, b, mu2, s2 != NULL,
                           p1 + (int64_t)k * C, p2 + (int64_t)k * C);
    FL_K(colsum_combine)(C, part, s1, s2);
}

/* Rows r0..r1-1 of batchnorm_silu's backward pass 1, added into q1, q2 as colsum2(dy, x, mean)
 * adds, with dy computed on the fly: y = (x - mu)*sc + b (the forward's bits), dy = dz*silu'(y);
 * dy is also stored in dyo when not NULL. */
FL_BN_CLONES static void FL_K(dsilu_sums)(int64_t r0, int64_t r1, int64_t C, const FL_T *dz,
                                          const FL_T *x, const FL_T *mu, const FL_T *sc,
                                          const FL_T *b, const double *mean, double *q1, double *q2,
                                          FL_T *dyo) {
    for (int64_t r = r0; r < r1; r++) {
        const FL_T *xr = x + r * C, *zr = dz + r * C;
        if (dyo) {
            FL_T *yo = dyo + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                FL_T dy = FL_K(fl_dsilu)((xr[c] - mu[c]) * sc[c] + b[c], zr[c]);
                yo[c] = dy;
                q1[c] += (double)dy;
                q2[c] += (double)dy * ((double)xr[c] - mean[c]);
            }
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                FL_T dy = FL_K(fl_dsilu)((xr[c] - mu[c]) * sc[c] + b[c], zr[c]);
                q1[c] += (double)dy;
                q2[c] += (double)dy * ((double)xr[c] - mean[c]);
            }
        }
    }
}

/* The pass-1 sums over NCHUNK fixed row chunks, as colsum2 (dyo: see dsilu_sums). */
static void FL_K(colsum_dsilu)(int64_t M, int64_t C, const FL_T *dz, const FL_T *x, const FL_T *mu,
                               const FL_T *sc, const FL_T *b, const double *mean, double *part,
                               double *s1, double *s2, FL_T *dyo) {
    double *p1 = part, *p2 = part + NCHUNK * C;
    memset(part, 0, sizeof(double) * (size_t)(2 * NCHUNK * C));
#pragma omp parallel for if (M * C > 16384)
    for (int k = 0; k < NCHUNK; k++)
        FL_K(dsilu_sums)(M * k / NCHUNK, M * (k + 1) / NCHUNK, C, dz, x, mu, sc, b, mean,
                         p1 + (int64_t)k * C, p2 + (int64_t)k * C, dyo);
    FL_K(colsum_combine)(C, part, s1, s2);
}

/* One row of batchnorm_silu's forward: z = silu((x - mu)*sc + b). */
FL_BN_CLONES static void FL_K(silu_row)(int64_t C, const FL_T *xr, const FL_T *mu, const FL_T *sc,
                                        const FL_T *b, FL_T *zr) {
#pragma omp simd
    for (int64_t c = 0; c < C; c++) zr[c] = FL_K(fl_silu1)((xr[c] - mu[c]) * sc[c] + b[c]);
}

/* One row of batchnorm_silu's dx: A*dy + B*(x - mu) + D with dy = dz*silu'((x - mu)*A + b),
 * written (acc 0) or added. */
FL_BN_CLONES static void FL_K(dsilu_dx_row)(int64_t C, int acc, const FL_T *xr, const FL_T *gr,
                                            const FL_T *mu, const FL_T *A, const FL_T *B,
                                            const FL_T *D, const FL_T *b, FL_T *dr) {
    if (acc) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            FL_T dy = FL_K(fl_dsilu)((xr[c] - mu[c]) * A[c] + b[c], gr[c]);
            dr[c] += A[c] * dy + B[c] * (xr[c] - mu[c]) + D[c];
        }
    } else {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            FL_T dy = FL_K(fl_dsilu)((xr[c] - mu[c]) * A[c] + b[c], gr[c]);
            dr[c] = A[c] * dy + B[c] * (xr[c] - mu[c]) + D[c];
        }
    }
}

/* coef: 3*C FL_T scratch for the per-channel coefficients of the element loops. */
static void FL_K(bn_fwd_k)(int train, int act, int64_t M, int64_t C, double eps, double mom,
                           const FL_T *x, const FL_T *w, const FL_T *b, FL_T *rm, FL_T *rv,
                           FL_T *nbt, FL_T *y, double *mean, double *invstd, double *part,
                           FL_T *coef) {
    if (train) {
        double *var = invstd;
        FL_K(colsum2)(M, C, x, NULL, NULL, NULL, part, mean, NULL);
        for (int64_t c = 0; c < C; c++) mean[c] /= (double)M;
        FL_K(colsum2)(M, C, x, mean, NULL, NULL, part, NULL, var); /* two-pass: accurate */
        for (int64_t c = 0; c < C; c++) {
            double v = var[c] / (double)M;
            rm[c] = (FL_T)((1 - mom) * rm[c] + mom * mean[c]);
            rv[c] = (FL_T)((1 - mom) * rv[c] + mom * v * (double)M / (double)(M - 1));
            invstd[c] = 1 / sqrt(v + eps);
        }
        nbt[0] += 1;
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = rm[c];
            invstd[c] = 1 / sqrt((double)rv[c] + eps);
        }
    }
    FL_T *mu = coef, *sc = coef + C;
    for (int64_t c = 0; c < C; c++) {
        mu[c] = (FL_T)mean[c];
        sc[c] = (FL_T)(w[c] * invstd[c]);
    }
#pragma omp parallel for if (M * C > 16384)
    for (int64_t r = 0; r < M; r++) {
        const FL_T *xr = x + r * C;
        FL_T *yr = y + r * C;
        if (act) {
            FL_K(silu_row)(C, xr, mu, sc, b, yr);
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu[c]) * sc[c] + b[c];
        }
    }
}

/* dx = A*dy + B*(x - mean) + D per channel, with A = w*invstd and, in train mode,
 * B = -A*invstd^2*sum(dy*(x-mean))/M, D = -A*sum(dy)/M (eval: B = D = 0).
 * act (batchnorm_silu): g is dz, the gradient of silu(y); dy = dz*silu'(y) is computed from x
 * (y = (x - mu)*A + b: A is the forward's scale, the same bits). When this op is dx's first
 * writer, pass 1 leaves dy in dx and pass 2 turns it into dx in place (one exp per element);
 * when dx accumulates, pass 2 computes dy again. */
static void FL_K(bn_bwd_k)(int train, int act, int64_t M, int64_t C, const FL_T *x, const FL_T *w,
                           const FL_T *b, const FL_T *g, const double *mean, const double *invstd,
                           FL_T *dx, FL_T *dw, FL_T *db, double *part, FL_T *coef, const int *beta) {
    double *sdy = part + 2 * NCHUNK * C, *sdyx = sdy + C;
    FL_T *A = coef, *B = coef + C, *D = coef + 2 * C, *mu = coef + 3 * C;
    for (int64_t c = 0; c < C; c++) {
        A[c] = (FL_T)(w[c] * invstd[c]);
        mu[c] = (FL_T)mean[c];
    }
    int keep = act && dx && !beta[0]; /* dy kept in dx between the passes */
    if (!keep && !train && !dw && !db) {
        /* eval, input gradient only: the sums are not needed */
    } else if (act) {
        FL_K(colsum_dsilu)(M, C, g, x, mu, A, b, mean, part, sdy, sdyx, keep ? dx : NULL);
    } else {
        FL_K(colsum2)(M, C, g, NULL, x, mean, part, sdy, sdyx); /* sum dy, sum dy*(x - mean) */
    }
    if (dw)
        for (int64_t c = 0; c < C; c++) dw[c] = (beta[1] ? dw[c] : 0) + (FL_T)(sdyx[c] * invstd[c]);
    if (db)
        for (int64_t c = 0; c < C; c++) db[c] = (beta[2] ? db[c] : 0) + (FL_T)sdy[c];
    if (!dx) return;
    for (int64_t c = 0; c < C; c++) {
        double k = w[c] * invstd[c];
        B[c] = train ? (FL_T)(-k * invstd[c] * invstd[c] * sdyx[c] / (double)M) : 0;
        D[c] = train ? (FL_T)(-k * sdy[c] / (double)M) : 0;
    }
    int acc = beta[0]; /* 0: first writer of dx, which is overwritten (FL_OPF_BWD_BETA) */
    const FL_T *gy = keep ? dx : g; /* dy: kept in dx (read, then overwritten, element-wise) */
#pragma omp parallel for if (M * C > 16384)
    for (int64_t r = 0; r < M; r++) {
        const FL_T *xr = x + r * C, *gr = gy + r * C;
        FL_T *dr = dx + r * C;
        if (act && !keep) {
            FL_K(dsilu_dx_row)(C, acc, xr, gr, mu, A, B, D, b, dr);
        } else if (acc) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dr[c] += A[c] * gr[c] + B[c] * (xr[c] - mu[c]) + D[c];
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dr[c] = A[c] * gr[c] + B[c] * (xr[c] - mu[c]) + D[c];
        }
    }
}
#endif
