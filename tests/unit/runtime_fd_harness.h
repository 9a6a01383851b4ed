/* Finite-difference gradient checks for runtime ops, in double precision.
 *
 * A case builds a graph on a FL_F64 store (the ops' double-precision instantiation) and returns
 * the node to check, y. The harness fills every input (float inputs from the case's range,
 * labels below nclass), draws a fixed projection r, and compares the analytic gradient of
 * L = sum(r * y) (backward seeded with r) against central differences
 *   (L(t + h) - L(t - h)) / 2h, h = 1e-6,
 * for every element of every float input marked requires_grad and every parameter.
 * Error per tensor: ||analytic - numeric||_2 / ||numeric||_2, required < 1e-6. A parameter or
 * input marked requires_grad that gets no gradient fails the case (fd_check returns +INF). */
#ifndef FL_TEST_RUNTIME_FD_HARNESS_H
#define FL_TEST_RUNTIME_FD_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/graph_internal.h"
#include "runtime/rng.h"

typedef fl_id (*fd_build_fn)(fl_graph *g, void *ctx);

typedef struct fd_case {
    const char *name;
    fd_build_fn build;
    void *ctx;
    fl_mode mode;
    double lo, hi;  /* float inputs uniform in [lo, hi] */
    double min_abs; /* resample inputs closer than this to 0 (keeps kinks away) */
    int nclass;     /* labels uniform below this */
    double tol;     /* 0 = 1e-6 */
    int randomize_params; /* perturb parameters away from their init (ones/zeros are special) */
    int allow_zero_grad;  /* random graphs: a gradient that is ~0 by construction (a bias before
                             batch norm) is checked in absolute terms (< 1e-6) instead */
} fd_case;

static double fd_loss(fl_graph *g, fl_id y, const double *r, fl_err *e, int *ok) {
    if (fl_graph_forward(g, e) < 0) {
        *ok = 0;
        return 0;
    }
    const double *v = fl_graph_value(g, y);
    double L = 0;
    for (int64_t k = 0; k < fl_graph_numel(g, y); k++) L += r[k] * v[k];
    return L;
}

/* Returns the worst relative error over all checked tensors (or +inf on failure), printing one
 * line per tensor. */
static double fd_check(const fd_case *c) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F64, 1234, &e);
    fl_graph *g = fl_graph_new(s, c->mode, &e);
    fl_graph_set_rng(g, 77, 3);
    fl_id y = c->build(g, c->ctx);
    double worst = INFINITY;
    if (y < 0 || fl_graph_compile(g, y, &e) < 0) {
        printf("%s: build/compile failed: %s %s\n", c->name, fl_graph_error(g), e.msg);
        goto out;
    }
    /* Poison every planned buffer and input gradient (0xff bytes are NaNs): a kernel that
     * reads memory it did not write, or adds into a gradient nobody initialized, shows up. */
    if (g->arena.base) memset(g->arena.base, 0xff, g->arena.size);
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].own_grad)
            memset(g->nodes[i].own_grad, 0xff, (size_t)fl_numel(&g->nodes[i]) * sizeof(double));
    fl_rng rng;
    fl_rng_init(&rng, 99, 0);
    for (int i = 0; i < g->n; i++) {
        fl_node *n = &g->nodes[i];
        int64_t cnt = fl_numel(n);
        if (n->kind == FL_NODE_INPUT && n->dtype == FL_I32) {
            int32_t *p = n->val;
            for (int64_t k = 0; k < cnt; k++) p[k] = (int32_t)fl_rng_below(&rng, (uint32_t)(c->nclass > 0 ? c->nclass : 1));
        } else if (n->kind == FL_NODE_INPUT) {
            double *p = n->val;
            for (int64_t k = 0; k < cnt; k++) {
                double v;
                do v = c->lo + (c->hi - c->lo) * fl_rng_uniform(&rng);
                while (fabs(v) < c->min_abs);
                p[k] = v;
            }
        } else if (n->kind == FL_NODE_PARAM && c->randomize_params) {
            double *p = n->val;
            for (int64_t k = 0; k < cnt; k++) p[k] += 0.3 * (fl_rng_uniform(&rng) - 0.5);
        }
    }
    int64_t ny = fl_graph_numel(g, y);
    double *r = malloc(sizeof(double) * (size_t)ny);
    for (int64_t k = 0; k < ny; k++) r[k] = fl_rng_uniform(&rng) * 2 - 1;
    int ok = 1;
    fl_pstore_zero_grad(s);
    fd_loss(g, y, r, &e, &ok);
    if (!ok || fl_graph_backward(g, r, &e) < 0) {
        printf("%s: forward/backward failed: %s\n", c->name, e.msg);
        free(r);
        goto out;
    }
    worst = 0;
    const double h = 1e-6, tol = c->tol > 0 ? c->tol : 1e-6;
    int checked = 0;
    for (int i = 0; i < g->n && ok; i++) {
        fl_node *n = &g->nodes[i];
        int is_in = n->kind == FL_NODE_INPUT && n->requires_grad;
        if (!is_in && n->kind != FL_NODE_PARAM) continue;
        int64_t cnt = fl_numel(n);
        if (!fl_graph_grad(g, i)) {
            /* a parameter or input that wants a gradient but gets none: either the case is
             * built wrong or backward lost a path; neither may pass unnoticed */
            printf("%s: %s does not reach the checked node: no gradient to check; FAILED\n", c->name, n->name);
            worst = INFINITY;
            continue;
        }
        double *ana = malloc(sizeof(double) * (size_t)cnt);
        memcpy(ana, fl_graph_grad(g, i), sizeof(double) * (size_t)cnt);
        double *p = n->val, num2 = 0, diff2 = 0;
        for (int64_t k = 0; k < cnt && ok; k++) {
            double keep = p[k];
            p[k] = keep + h;
            double lp = fd_loss(g, y, r, &e, &ok);
            p[k] = keep - h;
            double lm = fd_loss(g, y, r, &e, &ok);
            p[k] = keep;
            double num = (lp - lm) / (2 * h);
            num2 += num * num;
            diff2 += (num - ana[k]) * (num - ana[k]);
        }
        double nrm = sqrt(num2), rel = sqrt(diff2) / (nrm > 1e-12 ? nrm : 1e-12);
        int expect_zero = c->allow_zero_grad && nrm < 1e-6;
        if (expect_zero) rel = sqrt(diff2) < 1e-6 ? 0 : INFINITY; /* absolute check */
        printf("%-28s d/d%-28s rel err %.3e  (|grad| %.3e, %lld elements%s)\n", c->name, n->name,
               rel, nrm, (long long)cnt, expect_zero ? ", expected ~0" : "");
        if (isnan(rel)) rel = INFINITY;
        if (rel > worst) worst = rel;
        if (!expect_zero && !(nrm > 1e-9)) {
            printf("%s: gradient of %s is ~0; the check would be vacuous\n", c->name, n->name);
            worst = INFINITY;
        }
        checked++;
        free(ana);
    }
    if (!ok) {
        printf("%s: forward failed during differencing: %s\n", c->name, e.msg);
        worst = INFINITY;
    }
    if (checked == 0) {
        printf("%s: nothing to check\n", c->name);
        worst = INFINITY;
    }
    if (worst >= tol) printf("%s: FAILED (worst %.3e >= %.1e)\n", c->name, worst, tol);
    free(r);
out:
    fl_graph_free(g);
    fl_pstore_free(s);
    return worst;
}

static fd_case fd_default(const char *name, fd_build_fn b, void *ctx) {
    fd_case c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.build = b;
    c.ctx = ctx;
    c.mode = FL_MODE_TRAIN;
    c.lo = -1;
    c.hi = 1;
    return c;
}

/* An input of the given shape that wants its gradient. */
static fl_id fd_in(fl_graph *g, const char *name, int ndim, const int64_t *shape) {
    fl_id x = fl_input(g, name, ndim, shape);
    fl_input_requires_grad(g, x);
    return x;
}

#endif
