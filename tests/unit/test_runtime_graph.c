/* The graph machinery: memory planner, gradient accumulation, zero_grad, train/eval graphs
 * sharing parameters, parameter groups and the fl_param view, dropout randomness, bad input. *
 * numeric test: rerun by tests/run.sh under another OPENBLAS_CORETYPE (bitwise planner and
 * thread-count checks run through BLAS-backed linear layers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/backend_internal.h"
#include "runtime/ops/fastexp.h"

/* A deep chain of linear + BN + SiLU blocks: activations of early blocks die long before the
 * end, so with reuse the arena must be much smaller than the sum of all buffers. */
static fl_id deep_chain(fl_graph *g, int depth, fl_id *xin) {
    fl_id x = fl_input(g, "x", 2, (int64_t[]){32, 64});
    *xin = x;
    for (int i = 0; i < depth; i++) {
        char pfx[32];
        snprintf(pfx, sizeof pfx, "blocks.%d.fc", i);
        fl_id h = fl_linear_layer(g, x, pfx, 64, 1);
        snprintf(pfx, sizeof pfx, "blocks.%d.bn", i);
        h = fl_silu(g, fl_bn_layer(g, h, pfx, 1e-5, 0.1));
        x = fl_add(g, x, h);
    }
    return fl_mean(g, x, 0x3, 0);
}

static void test_planner_reuses_memory(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    for (int train = 0; train < 2; train++) {
        fl_graph *g = fl_graph_new(s, train ? FL_MODE_TRAIN : FL_MODE_EVAL, &e);
        fl_id x;
        fl_id loss = deep_chain(g, 40, &x);
        /* eval: forward only (nothing is saved for a backward pass) */
        if (!train) fl_graph_mark_output(g, loss);
        assert_int_equal(fl_graph_compile(g, train ? loss : -1, &e), 0);
        size_t peak, total;
        fl_graph_mem(g, &peak, &total);
        printf("%s graph: peak %zu bytes, no-reuse total %zu bytes (%.1fx)\n", train ? "train" : "eval",
               peak, total, (double)total / (double)peak);
        assert_true(peak > 0);
        assert_true(peak < total);
        /* Training keeps what backward needs (about three activations per block), yet gradients
         * and dead values reuse; forward-only keeps a handful of buffers for 40 blocks. */
        if (train) assert_true(peak * 2 < total);
        else assert_true(peak * 20 < total);
        float *xv = fl_graph_value(g, x);
        for (int i = 0; i < 32 * 64; i++) xv[i] = (float)sin(i * 0.37);
        assert_int_equal(fl_graph_forward(g, &e), 0);
        if (train) assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        assert_true(isfinite(*(float *)fl_graph_value(g, loss)));
        fl_graph_free(g);
    }
    fl_pstore_free(s);
}

/* Planned (reused) buffers give the same numbers as a graph that keeps everything: the same
 * chain with every node marked as an output (nothing can be reused early), each on its own store
 * with the same seed. Bitwise equal: the loss, the input gradient, every parameter gradient and
 * every parameter and buffer value after the step (BN running statistics move in forward). */
typedef struct planned_run {
    fl_pstore *s;
    fl_graph *g;
    fl_id x, loss;
} planned_run;

static void planned_open(planned_run *r, int keep) {
    fl_err e = {{0}};
    r->s = fl_pstore_new(FL_F64, 2, &e);
    r->g = fl_graph_new(r->s, FL_MODE_TRAIN, &e);
    r->loss = deep_chain(r->g, 6, &r->x);
    fl_input_requires_grad(r->g, r->x);
    if (keep)
        for (int i = 0; i < fl_graph_num_nodes(r->g); i++) fl_graph_mark_output(r->g, i);
    assert_int_equal(fl_graph_compile(r->g, r->loss, &e), 0);
    double *xv = fl_graph_value(r->g, r->x);
    for (int i = 0; i < 32 * 64; i++) xv[i] = cos(i * 0.11);
    fl_pstore_zero_grad(r->s);
    assert_int_equal(fl_graph_forward(r->g, &e), 0);
    assert_int_equal(fl_graph_backward(r->g, NULL, &e), 0);
}

static void test_planner_results_match_unplanned(void **state) {
    planned_run a, b;
    planned_open(&a, 0);
    planned_open(&b, 1);
    size_t pa, ta, pb, tb;
    fl_graph_mem(a.g, &pa, &ta);
    fl_graph_mem(b.g, &pb, &tb);
    assert_true(pa < pb); /* the first graph really reuses memory */
    assert_memory_equal(fl_graph_value(a.g, a.loss), fl_graph_value(b.g, b.loss), sizeof(double));
    assert_memory_equal(fl_graph_grad(a.g, a.x), fl_graph_grad(b.g, b.x), 32 * 64 * sizeof(double));
    assert_int_equal(a.g->n, b.g->n);
    int params = 0, buffers = 0;
    for (int i = 0; i < a.g->n; i++) {
        const fl_node *n = &a.g->nodes[i];
        if (n->kind != FL_NODE_PARAM && n->kind != FL_NODE_BUFFER) continue;
        size_t na = 0, nb = 0;
        const void *va = fl_pstore_data(a.s, n->name, &na), *vb = fl_pstore_data(b.s, n->name, &nb);
        assert_true(va && vb && na == nb && na > 0);
        assert_memory_equal(va, vb, na * sizeof(double));
        if (n->kind == FL_NODE_BUFFER) {
            buffers++;
            continue;
        }
        const void *ga = fl_pstore_grad(a.s, n->name), *gb = fl_pstore_grad(b.s, n->name);
        assert_true(ga && gb);
        assert_memory_equal(ga, gb, na * sizeof(double));
        params++;
    }
    printf("planned (peak %zu bytes) vs unplanned (peak %zu bytes): loss, input gradient, %d parameter gradients "
           "and values, %d buffers bitwise equal\n", pa, pb, params, buffers);
    assert_int_equal(params, 6 * 4); /* fc weight and bias, bn weight and bias per block */
    assert_true(buffers >= 6 * 2);
    fl_graph_free(a.g), fl_pstore_free(a.s);
    fl_graph_free(b.g), fl_pstore_free(b.s);
}

/* Two backward calls without zero_grad sum the parameter gradients (micro-batches);
 * zero_grad starts over. */
static void test_grad_accumulation(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 3, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){4, 3});
    fl_id loss = fl_mean(g, fl_silu(g, fl_linear_layer(g, x, "fc", 2, 1)), 0x3, 0);
    assert_int_equal(fl_graph_compile(g, loss, &e), 0);
    float *xv = fl_graph_value(g, x);
    for (int i = 0; i < 12; i++) xv[i] = 0.1f * (float)i - 0.5f;
    float *gw = fl_pstore_grad(s, "fc.weight");
    fl_pstore_zero_grad(s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    float one[6];
    memcpy(one, gw, sizeof one);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    for (int i = 0; i < 6; i++) assert_true(fabsf(gw[i] - 2 * one[i]) <= 1e-6f * fabsf(one[i]) + 1e-9f);
    fl_pstore_zero_grad(s);
    for (int i = 0; i < 6; i++) assert_true(gw[i] == 0.0f);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    for (int i = 0; i < 6; i++) assert_true(gw[i] == one[i]);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* Train and eval graphs share parameters and BN statistics: the train graph's forward moves
 * the running statistics, and the eval graph normalizes with them. */
static void test_train_eval_share(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 4, &e);
    fl_graph *tr = fl_graph_new(s, FL_MODE_TRAIN, &e), *ev = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id xt = fl_input(tr, "x", 2, (int64_t[]){8, 2}), xe = fl_input(ev, "x", 2, (int64_t[]){1, 2});
    fl_id yt = fl_bn_layer(tr, xt, "bn", 1e-5, 0.5);
    fl_id ye = fl_bn_layer(ev, xe, "bn", 1e-5, 0.5);
    fl_id lt = fl_mean(tr, yt, 0x3, 0);
    assert_int_equal(fl_graph_compile(tr, lt, &e), 0);
    assert_int_equal(fl_graph_compile(ev, ye, &e), 0);
    float *x = fl_graph_value(tr, xt);
    for (int i = 0; i < 8; i++) {
        x[2 * i] = (float)i;        /* mean 3.5, unbiased var 6 */
        x[2 * i + 1] = 10.0f;       /* mean 10, var 0 */
    }
    assert_int_equal(fl_graph_forward(tr, &e), 0);
    float *rm = fl_pstore_data(s, "bn.running_mean", NULL), *rv = fl_pstore_data(s, "bn.running_var", NULL);
    float *nbt = fl_pstore_data(s, "bn.num_batches_tracked", NULL);
    assert_true(fabsf(rm[0] - 1.75f) < 1e-6f && fabsf(rm[1] - 5.0f) < 1e-6f);
    assert_true(fabsf(rv[0] - 3.5f) < 1e-5f && fabsf(rv[1] - 0.5f) < 1e-6f);
    assert_true(nbt[0] == 1.0f);
    float *w = fl_pstore_data(s, "bn.weight", NULL);
    w[0] = 2.0f; /* a change through the store is seen by both graphs */
    float *xv = fl_graph_value(ev, xe);
    xv[0] = 1.75f + 1.0f;
    xv[1] = 5.0f;
    assert_int_equal(fl_graph_forward(ev, &e), 0);
    float *y = fl_graph_value(ev, ye);
    assert_true(fabsf(y[0] - 2.0f / sqrtf(3.5f + 1e-5f)) < 1e-5f);
    assert_true(fabsf(y[1]) < 1e-6f);
    assert_true(nbt[0] == 1.0f); /* eval does not count */
    fl_graph_free(tr);
    fl_graph_free(ev);
    fl_pstore_free(s);
}

static void test_param_view_and_groups(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 5, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){2, 3, 3, 4});
    fl_id y = fl_bn_layer(g, fl_linear_layer(g, x, "head.fc", 6, 1), "head.bn", 1e-3, 0.03);
    fl_id p = fl_gem_layer(g, y, "pool", 3.0, 1e-6);
    assert_int_equal(fl_graph_compile(g, p, &e), 0);
    assert_int_equal(fl_pstore_set_group(s, "head.", 1), 7);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    static const struct { const char *name; int ndim; int64_t d0, d1; int buf, nd, grp; } want[] = {
        {"head.fc.weight", 2, 6, 4, 0, 0, 1},        {"head.fc.bias", 1, 6, 0, 0, 1, 1},
        {"head.bn.weight", 1, 6, 0, 0, 1, 1},        {"head.bn.bias", 1, 6, 0, 0, 1, 1},
        {"head.bn.running_mean", 1, 6, 0, 1, 0, 1},  {"head.bn.running_var", 1, 6, 0, 1, 0, 1},
        {"head.bn.num_batches_tracked", 0, 0, 0, 1, 0, 1}, {"pool.p", 1, 1, 0, 0, 1, 0},
    };
    assert_int_equal(pl.n, 8);
    for (size_t i = 0; i < pl.n; i++) {
        assert_string_equal(pl.v[i].name, want[i].name);
        assert_int_equal(pl.v[i].ndim, want[i].ndim);
        if (want[i].ndim > 0) assert_int_equal(pl.v[i].shape[0], want[i].d0);
        if (want[i].ndim > 1) assert_int_equal(pl.v[i].shape[1], want[i].d1);
        assert_int_equal(pl.v[i].is_buffer, want[i].buf);
        assert_int_equal(pl.v[i].no_decay, want[i].nd);
        assert_int_equal(pl.v[i].group, want[i].grp);
        assert_true((pl.v[i].grad == NULL) == (want[i].buf == 1));
    }
    assert_true(((float *)pl.v[7].data)[0] == 3.0f);
    fl_graph_free(g);
    /* F64 stores have no float view */
    fl_pstore *d = fl_pstore_new(FL_F64, 5, &e);
    assert_int_equal(fl_pstore_params(d, &pl, &e), -1);
    assert_non_null(strstr(e.msg, "float32"));
    fl_pstore_free(d);
    fl_pstore_free(s);
}

/* Copying a parameter list (EMA weights, say) into another store by name. */
static void test_store_copy_from(void **state) {
    fl_err e = {{0}};
    fl_pstore *a = fl_pstore_new(FL_F32, 1, &e), *b = fl_pstore_new(FL_F32, 2, &e);
    fl_graph *ga = fl_graph_new(a, FL_MODE_TRAIN, &e), *gb = fl_graph_new(b, FL_MODE_EVAL, &e);
    fl_bn_layer(ga, fl_linear_layer(ga, fl_input(ga, "x", 2, (int64_t[]){2, 3}), "fc", 4, 1), "bn", 1e-5, 0.1);
    fl_bn_layer(gb, fl_linear_layer(gb, fl_input(gb, "x", 2, (int64_t[]){5, 3}), "fc", 4, 1), "bn", 1e-5, 0.1);
    fl_param_list la, lb;
    assert_int_equal(fl_pstore_params(a, &la, &e), 0);
    assert_int_equal(fl_pstore_params(b, &lb, &e), 0);
    ((float *)la.v[0].data)[3] = 42.0f;
    assert_int_equal(fl_pstore_copy_from(b, &la, &e), 0);
    for (size_t i = 0; i < la.n; i++) assert_memory_equal(la.v[i].data, lb.v[i].data, la.v[i].numel * 4);
    /* a mismatch copies nothing */
    fl_graph_free(ga);
    ga = fl_graph_new(a, FL_MODE_TRAIN, &e);
    fl_parameter(ga, "extra", 1, (int64_t[]){2}, (fl_init){FL_INIT_ONES, 0, 0}, 0);
    assert_int_equal(fl_pstore_params(a, &la, &e), 0);
    ((float *)la.v[0].data)[3] = 7.0f;
    assert_int_equal(fl_pstore_copy_from(b, &la, &e), -1);
    assert_non_null(strstr(e.msg, "no parameter named extra"));
    assert_true(((float *)lb.v[0].data)[3] == 42.0f);
    fl_graph_free(ga);
    fl_graph_free(gb);
    fl_pstore_free(a);
    fl_pstore_free(b);
}

/* Parameter init depends on (seed, name), not on creation order. */
static void test_init_by_name(void **state) {
    fl_err e = {{0}};
    float a[2][4];
    for (int order = 0; order < 2; order++) {
        fl_pstore *s = fl_pstore_new(FL_F32, 9, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        fl_init u = {FL_INIT_UNIFORM, -1, 1};
        int64_t four = 4;
        if (order) fl_parameter(g, "other", 1, &four, u, 0);
        fl_id w = fl_parameter(g, "w", 1, &four, u, 0);
        memcpy(a[order], fl_graph_value(g, w), sizeof a[order]);
        fl_graph_free(g);
        fl_pstore_free(s);
    }
    assert_memory_equal(a[0], a[1], sizeof a[0]);
}

static double keep_fraction(uint64_t seed, uint64_t step, float *first) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_graph_set_rng(g, seed, step);
    fl_id x = fl_input(g, "x", 1, (int64_t[]){20000});
    fl_id y = fl_dropout(g, x, 0.25);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    float *xv = fl_graph_value(g, x);
    for (int i = 0; i < 20000; i++) xv[i] = 1.0f;
    assert_int_equal(fl_graph_forward(g, &e), 0);
    float *yv = fl_graph_value(g, y);
    int kept = 0;
    for (int i = 0; i < 20000; i++) {
        assert_true(yv[i] == 0.0f || fabsf(yv[i] - 1.0f / 0.75f) < 1e-6f);
        kept += yv[i] != 0.0f;
    }
    memcpy(first, yv, 64 * sizeof(float));
    fl_graph_free(g);
    fl_pstore_free(s);
    return kept / 20000.0;
}

static void test_dropout_randomness(void **state) {
    float a[64], b[64], c[64];
    double f = keep_fraction(7, 1, a);
    assert_true(fabs(f - 0.75) < 0.015);
    keep_fraction(7, 1, b);
    keep_fraction(7, 2, c);
    assert_memory_equal(a, b, sizeof a);                /* same (seed, step): same mask */
    assert_true(memcmp(a, c, sizeof a) != 0);          /* next step: a new mask */
}

static void test_bad_input(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id a = fl_input(g, "a", 2, (int64_t[]){2, 3});
    fl_id b = fl_input(g, "b", 2, (int64_t[]){4, 3});
    assert_int_equal(fl_add(g, a, b), -1);
    assert_non_null(strstr(fl_graph_error(g), "do not broadcast"));
    assert_int_equal(fl_silu(g, -1), -1); /* chained failure: no new message */
    assert_int_equal(fl_graph_compile(g, a, &e), -1);
    assert_non_null(strstr(e.msg, "add"));
    fl_graph_free(g);

    static const char *expect[] = {
        "weight must be [out, 3]", "bias must be", "must be [1] or [3]", "does not match",
        "cannot reshape", "labels must be int32", "integer labels", "axes mask", "must be NHWC",
        "drop probability", "more than 1 value", "shape [4,3] requested", "axis 5 out of range",
        "not a node", "has size 0", "margin", "k must be >= 1",
        "does not fit 4 input channels in 3 groups", "larger than the padded input", "must be NHWC",
        "stride must be >= 1", "scale 0 outside", "bad conv arguments", "must be OIHW",
    };
    for (int k = 0; k < (int)(sizeof expect / sizeof *expect); k++) {
        g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        fl_id x = fl_input(g, "x", 2, (int64_t[]){1, 3});
        fl_id lab = fl_input_labels(g, "y", 1);
        int64_t sh[2] = {4, 4};
        fl_id r = 0;
        switch (k) {
        case 0: r = fl_linear(g, x, fl_parameter(g, "w", 2, sh, (fl_init){FL_INIT_ZEROS, 0, 0}, 0), -1); break;
        case 1: r = fl_linear(g, x, fl_parameter(g, "w2", 2, (int64_t[]){2, 3}, (fl_init){0, 0, 0}, 0), x); break;
        case 2: r = fl_prelu(g, x, fl_parameter(g, "pw", 1, (int64_t[]){2}, (fl_init){0, 0, 0}, 0)); break;
        case 3: r = fl_concat(g, 2, (fl_id[]){x, fl_input(g, "z", 2, (int64_t[]){2, 3})}, -1); break;
        case 4: r = fl_reshape(g, x, 1, (int64_t[]){4}); break;
        case 5: r = fl_softmax_ce(g, x, x, 0); break;
        case 6: r = fl_silu(g, lab); break;
        case 7: r = fl_sum(g, x, 0x4, 0); break;
        case 8: r = fl_gem_layer(g, x, "gp", 3, 1e-6); break;
        case 9: r = fl_dropout(g, x, 1.0); break;
        case 10: r = fl_bn_layer(g, x, "bnx", 1e-5, 0.1); break;
        case 11: r = fl_parameter(g, "w", 2, (int64_t[]){4, 3}, (fl_init){0, 0, 0}, 0); break; /* store has [4,4] */
        case 12: r = fl_concat(g, 1, &x, 5); break;
        case 13: r = fl_relu(g, 99); break;
        case 14: r = fl_input(g, "bad", 2, (int64_t[]){0, 3}); break;
        case 15: r = fl_arc_margin(g, x, lab, -1, 2.0, 30); break;
        case 16: r = fl_subcenter_max(g, x, 0); break;
        case 17: r = fl_conv2d(g, fl_input(g, "i", 4, (int64_t[]){1, 5, 5, 4}),
                               fl_parameter(g, "cw", 4, (int64_t[]){6, 2, 3, 3}, (fl_init){0, 0, 0}, 0), -1, 1, 1, 3,
                               (int[]){1, 1, 1, 1});
            break;
        case 18: r = fl_conv2d_layer(g, fl_input(g, "i", 4, (int64_t[]){1, 2, 2, 4}), "cv", 4, 5, 1, 1, 1, 0, 0); break;
        case 19: r = fl_maxpool(g, x, 3, 1, 1); break;
        case 20: r = fl_maxpool(g, fl_input(g, "i", 4, (int64_t[]){1, 5, 5, 4}), 3, 0, 1); break;
        case 21: r = fl_upsample_nearest(g, fl_input(g, "i", 4, (int64_t[]){1, 5, 5, 4}), 0); break;
        case 22: r = fl_conv2d_layer(g, fl_input(g, "i", 4, (int64_t[]){1, 5, 5, 4}), "cv", 4, 3, 1, 1, 3, FL_PAD_AUTO, 0); break;
        case 23: r = fl_conv2d(g, fl_input(g, "i", 4, (int64_t[]){1, 5, 5, 4}), x, -1, 1, 1, 1, (int[]){0, 0, 0, 0}); break;
        }
        assert_int_equal(r, -1);
        if (!strstr(fl_graph_error(g), expect[k])) printf("case %d: got '%s'\n", k, fl_graph_error(g));
        assert_non_null(strstr(fl_graph_error(g), expect[k]));
        fl_graph_free(g);
    }
    fl_pstore_free(s);
}

/* A label outside [0, K) is a forward error naming the row, never a crash. */
static void test_bad_labels(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id z = fl_input(g, "z", 2, (int64_t[]){3, 4});
    fl_input_requires_grad(g, z);
    fl_id lab = fl_input_labels(g, "y", 3);
    fl_id l = fl_softmax_ce(g, fl_arc_margin(g, z, lab, -1, 0.3, 30), lab, 0);
    assert_int_equal(fl_graph_compile(g, l, &e), 0);
    int32_t *y = fl_graph_value(g, lab);
    y[0] = 1, y[1] = 4, y[2] = 0;
    assert_int_equal(fl_graph_forward(g, &e), -1);
    assert_non_null(strstr(e.msg, "label 4 at row 1"));
    assert_int_equal(fl_graph_backward(g, NULL, &e), -1); /* no successful forward yet */
    y[1] = -2;
    assert_int_equal(fl_graph_forward(g, &e), -1);
    assert_non_null(strstr(e.msg, "label -2 at row 1"));
    y[1] = 3;
    assert_int_equal(fl_graph_forward(g, &e), 0);
    y[2] = 9; /* changed between forward and backward */
    assert_int_equal(fl_graph_backward(g, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "label 9 at row 2"));
    y[2] = 77;
    assert_int_equal(fl_graph_forward(g, &e), -1);
    assert_int_equal(fl_graph_backward(g, NULL, &e), -1); /* the failed forward counts */
    assert_non_null(strstr(e.msg, "backward before forward"));
    fl_graph_free(g);
    /* misuse of the run API */
    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 1, (int64_t[]){3});
    fl_id v = fl_silu(g, x);
    assert_int_equal(fl_graph_forward(g, &e), -1);
    assert_non_null(strstr(e.msg, "before compile"));
    assert_int_equal(fl_graph_compile(g, 7, &e), -1);
    assert_int_equal(fl_graph_compile(g, v, &e), 0);
    assert_int_equal(fl_graph_compile(g, v, &e), -1);
    assert_int_equal(fl_silu(g, v), -1); /* no nodes after compile */
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* The runtime's own kernels (everything but the BLAS calls) give bitwise the same results
 * whatever the thread count: reductions run in orders fixed by the shapes. */
static void run_threads(int threads, float *out, float *gx, float *gw) {
    omp_set_num_threads(threads);
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 8, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_graph_set_rng(g, 1, 2);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){8, 16, 16, 32});
    fl_input_requires_grad(g, x);
    fl_id h = fl_silu(g, fl_bn_layer(g, x, "bn", 1e-3, 0.1));
    fl_id se = fl_sigmoid(g, fl_mean(g, h, 0x6, 1));
    h = fl_dropout(g, fl_mul(g, h, se), 0.1);
    h = fl_prelu_layer(g, fl_softplus(g, h), "act", 32);
    fl_id p = fl_reshape(g, fl_gem_layer(g, fl_relu(g, h), "pool", 3, 1e-6), 2, (int64_t[]){8, 32});
    fl_id lab = fl_input_labels(g, "y", 8);
    fl_id loss = fl_softmax_ce(g, fl_l2norm(g, p, 1e-12), lab, 0.1);
    fl_graph_mark_output(g, p);
    assert_int_equal(fl_graph_compile(g, loss, &e), 0);
    float *xv = fl_graph_value(g, x);
    for (int i = 0; i < 8 * 16 * 16 * 32; i++) xv[i] = (float)sin(0.001 * i * i);
    int32_t *yv = fl_graph_value(g, lab);
    for (int i = 0; i < 8; i++) yv[i] = i % 32;
    fl_pstore_zero_grad(s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    memcpy(out, fl_graph_value(g, p), 8 * 32 * sizeof(float));
    memcpy(gx, fl_graph_grad(g, x), 8 * 16 * 16 * 32 * sizeof(float));
    memcpy(gw, fl_pstore_grad(s, "bn.weight"), 32 * sizeof(float));
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_thread_count_independent(void **state) {
    int keep = omp_get_max_threads();
    size_t nx = 8 * 16 * 16 * 32;
    float *o1 = malloc(256 * 4), *o4 = malloc(256 * 4), *x1 = malloc(nx * 4), *x4 = malloc(nx * 4), w1[32], w4[32];
    run_threads(1, o1, x1, w1);
    run_threads(4, o4, x4, w4);
    omp_set_num_threads(keep);
    assert_memory_equal(o1, o4, 256 * 4);
    assert_memory_equal(x1, x4, nx * 4);
    assert_memory_equal(w1, w4, sizeof w1);
    free(o1), free(o4), free(x1), free(x4);
}

/* Every op in the table has a name (unique), a shape rule and CPU forward and backward kernels
 * (the CPU backend's table, by op id; tests/unit/test_runtime_backend.c checks the rest). */
static void test_op_table(void **state) {
    const fl_op_def *const *t = fl_op_table();
    int n = 0;
    for (; t[n]; n++) {
        assert_non_null(t[n]->name);
        assert_non_null(t[n]->shape);
        assert_non_null(fl_backend_cpu()->ops[t[n]->id]->forward);
        assert_non_null(fl_backend_cpu()->ops[t[n]->id]->backward);
        for (int k = 0; k < n; k++) assert_true(strcmp(t[k]->name, t[n]->name) != 0);
    }
    printf("%d ops in the table\n", n);
    assert_int_equal(n, 40); /* 30 model ops (batchnorm_silu fused) + cast (bf16) + the train step's 8 update / seed ops + yolo_loss */
}

/* The float kernels' exp: within 3e-7 relative of exp in double over its range, NaN stays NaN,
 * and out-of-range inputs clamp to finite, positive values. */
static void test_fast_exp(void **state) {
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.000731f) {
        double ref = exp((double)x), rel = fabs(fl_fast_expf(x) - ref) / ref;
        if (rel > worst) worst = rel;
    }
    printf("fast exp: worst relative error %.3e\n", worst);
    assert_true(worst < 3e-7);
    assert_true(isnan(fl_fast_expf(NAN)) && isnan(fl_fast_expf(-NAN)));
    assert_true(isfinite(fl_fast_expf(INFINITY)) && fl_fast_expf(INFINITY) > 1e38f);
    assert_true(fl_fast_expf(-INFINITY) > 0 && fl_fast_expf(-INFINITY) < 1e-37f);
    assert_true(fl_fast_expf(0.0f) == 1.0f);
}

/* SiLU and sigmoid run on clones built for AVX-512, AVX2 or the baseline (runtime/cpu/clones.h),
 * picked by the CPU: whichever this machine picks gives bit for bit what a scalar loop gives,
 * forward and (SiLU) backward, over several parallel chunks and a remainder. */
static void test_activation_clones_bitwise(void **state) {
    const int64_t n = 3 * 16384 + 1237;
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 8, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 1, &n), w = fl_input(g, "w", 1, &n);
    fl_input_requires_grad(g, x);
    fl_id y = fl_silu(g, x), z = fl_sigmoid(g, x);
    /* d loss / d y = w exactly (sum's gradient is 1), so silu's backward sees dy = w */
    fl_id loss = fl_sum(g, fl_add(g, fl_mul(g, y, w), fl_scale(g, z, 0, 0)), 0x1, 0);
    fl_graph_mark_output(g, y);
    fl_graph_mark_output(g, z);
    assert_int_equal(fl_graph_compile(g, loss, &e), 0);
    float *xv = fl_graph_value(g, x), *wv = fl_graph_value(g, w);
    for (int64_t i = 0; i < n; i++) {
        xv[i] = (float)(12 * sin(0.37 * (double)i)) * (i % 97 == 0 ? 9.0f : 1.0f);
        wv[i] = (float)cos(0.11 * (double)i);
    }
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    const float *yv = fl_graph_value(g, y), *zv = fl_graph_value(g, z), *gx = fl_graph_grad(g, x);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        volatile float xi = xv[i]; /* scalar, one element at a time */
        float sg = 1 / (1 + fl_fast_expf(-xi));
        float ry = xi / (1 + fl_fast_expf(-xi));
        float rgx = wv[i] * sg * (1 + xi * (1 - sg));
        /* the graph sums silu's and the zeroed sigmoid branch's contributions: + w*0*... = +0 */
        if (memcmp(&ry, &yv[i], 4) || memcmp(&sg, &zv[i], 4)) bad++;
        float gsig = 0 * zv[i] * (1 - zv[i]);
        float want = rgx + gsig;
        if (memcmp(&want, &gx[i], 4) && !(want == gx[i])) bad++;
    }
    assert_int_equal(bad, 0);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planner_reuses_memory),
        cmocka_unit_test(test_planner_results_match_unplanned),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_train_eval_share),
        cmocka_unit_test(test_param_view_and_groups),
        cmocka_unit_test(test_init_by_name),
        cmocka_unit_test(test_store_copy_from),
        cmocka_unit_test(test_dropout_randomness),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bad_labels),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_op_table),
        cmocka_unit_test(test_fast_exp),
        cmocka_unit_test(test_activation_clones_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
