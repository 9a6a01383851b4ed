/* Batch normalization over the last axis (C) of x viewed as [M, C] (M = N*H*W in NHWC).
 *
 * Train mode: mean and biased variance of the batch normalize; running_mean / running_var move
 * towards the batch mean and the UNBIASED variance by `momentum` (PyTorch), num_batches_tracked
 * counts. Eval mode: the running statistics normalize. The per-channel mean and 1/sqrt(var+eps)
 * used are kept (aux, doubles) for the backward pass:
 *   train  dx = w*invstd * (dy - mean(dy) - xhat*mean(dy*xhat))
 *   eval   dx = w*invstd * dy
 *   dw += sum(dy*xhat), db += sum(dy).
 * Column sums run over 16 fixed row chunks combined in order, so results do not depend on the
 * thread count. Inputs: x, weight, bias, running_mean, running_var, num_batches_tracked.
 * Compiled for float and double; see activation.c. */
#ifndef FL_T
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph_internal.h"

#define NCHUNK 16

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
    return 0;
}

static int bn_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.d[x->shape.ndim - 1], M = fl_numel(x) / C;
    double *stat = n->aux;
    double *part = malloc(sizeof(double) * (size_t)(NCHUNK * C));
    if (!part) return fl_errf(e, "out of memory");
    FL_DISPATCH(g, bn_fwd_k, g->mode == FL_MODE_TRAIN, M, C, n->f[0], n->f[1], x->val,
                fl_in_val(g, n, 1), fl_in_val(g, n, 2), fl_in_val(g, n, 3), fl_in_val(g, n, 4),
                fl_in_val(g, n, 5), n->val, stat, stat + C, part);
    free(part);
    return 0;
}

static int bn_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_node *x = fl_in(g, n, 0);
    int64_t C = x->shape.d[x->shape.ndim - 1], M = fl_numel(x) / C;
    double *stat = n->aux;
    double *part = malloc(sizeof(double) * (size_t)(2 * NCHUNK * C + 2 * C));
    if (!part) return fl_errf(e, "out of memory");
    FL_DISPATCH(g, bn_bwd_k, g->mode == FL_MODE_TRAIN, M, C, x->val, fl_in_val(g, n, 1), n->grad,
                stat, stat + C, fl_in_grad(g, n, 0), fl_in_grad(g, n, 1), fl_in_grad(g, n, 2), part);
    free(part);
    return 0;
}

const fl_op_def fl_op_batchnorm = {"batchnorm", bn_shape, FL_OPF_SAVE_IN(0), {{bn_fwd, bn_bwd}, {0, 0}}};

fl_id fl_batchnorm(fl_graph *g, fl_id x, fl_id w, fl_id b, fl_id rm, fl_id rv, fl_id nbt,
                   double eps, double momentum) {
    fl_id in[6] = {x, w, b, rm, rv, nbt};
    double f[2] = {eps, momentum};
    return fl_graph_add_op(g, &fl_op_batchnorm, 6, in, f, 2, 0, 0);
}

#else /* ---- kernels for one element type FL_T ---- */

/* out[c] = sum over rows of f(row, c), via NCHUNK fixed chunks (parallel) summed in order.
 * mode 0: x; 1: (x - mu)^2; 2: dy; 3: dy * (x - mu) */
static void FL_K(colsum)(int mode, int64_t M, int64_t C, const FL_T *x, const FL_T *dy,
                         const double *mu, double *part, double *out) {
    memset(part, 0, sizeof(double) * (size_t)(NCHUNK * C));
#pragma omp parallel for if (M * C > 16384)
    for (int k = 0; k < NCHUNK; k++) {
        double *p = part + (int64_t)k * C;
        for (int64_t r = M * k / NCHUNK; r < M * (k + 1) / NCHUNK; r++) {
            const FL_T *xr = x ? x + r * C : NULL, *gr = dy ? dy + r * C : NULL;
            for (int64_t c = 0; c < C; c++) {
                double v;
                switch (mode) {
                case 0: v = xr[c]; break;
                case 1: v = (xr[c] - mu[c]) * (xr[c] - mu[c]); break;
                case 2: v = gr[c]; break;
                default: v = gr[c] * (xr[c] - mu[c]); break;
                }
                p[c] += v;
            }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int k = 0; k < NCHUNK; k++) s += part[(int64_t)k * C + c];
        out[c] = s;
    }
}

static void FL_K(bn_fwd_k)(int train, int64_t M, int64_t C, double eps, double mom,
                           const FL_T *x, const FL_T *w, const FL_T *b, FL_T *rm, FL_T *rv,
                           FL_T *nbt, FL_T *y, double *mean, double *invstd, double *part) {
    if (train) {
        double *var = invstd;
        FL_K(colsum)(0, M, C, x, NULL, NULL, part, mean);
        for (int64_t c = 0; c < C; c++) mean[c] /= (double)M;
        FL_K(colsum)(1, M, C, x, NULL, mean, part, var);
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
#pragma omp parallel for if (M * C > 16384)
    for (int64_t r = 0; r < M; r++)
        for (int64_t c = 0; c < C; c++) {
            FL_T sc = (FL_T)(w[c] * invstd[c]);
            y[r * C + c] = (FL_T)((x[r * C + c] - (FL_T)mean[c]) * sc + b[c]);
        }
}

static void FL_K(bn_bwd_k)(int train, int64_t M, int64_t C, const FL_T *x, const FL_T *w,
                           const FL_T *dy, const double *mean, const double *invstd, FL_T *dx,
                           FL_T *dw, FL_T *db, double *part) {
    double *sdy = part + 2 * NCHUNK * C, *sdyx = sdy + C;
    FL_K(colsum)(2, M, C, NULL, dy, NULL, part, sdy);
    FL_K(colsum)(3, M, C, x, dy, mean, part, sdyx); /* sum dy*(x - mean) */
    if (dw)
        for (int64_t c = 0; c < C; c++) dw[c] += (FL_T)(sdyx[c] * invstd[c]);
    if (db)
        for (int64_t c = 0; c < C; c++) db[c] += (FL_T)sdy[c];
    if (!dx) return;
#pragma omp parallel for if (M * C > 16384)
    for (int64_t r = 0; r < M; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t i = r * C + c;
            double k = w[c] * invstd[c];
            if (train) {
                double xhat = (x[i] - mean[c]) * invstd[c];
                double mdy = sdy[c] / (double)M, mdyx = sdyx[c] * invstd[c] / (double)M;
                dx[i] += (FL_T)(k * (dy[i] - mdy - xhat * mdyx));
            } else {
                dx[i] += (FL_T)(k * dy[i]);
            }
        }
}
#endif
