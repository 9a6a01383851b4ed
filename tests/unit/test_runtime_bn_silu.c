/* The fused batch norm + SiLU op (runtime/ops/batchnorm.c, fl_bn_silu_layer) against the pair
 * it replaces, silu(fl_bn_layer(x)), built on the same parameters and inputs:
 *   - float32 and float64 (where a change in the double sums' order shows), train and eval, with and without a second reader of x (the fused backward then
 *     adds into dx instead of writing it): output, running_mean / running_var /
 *     num_batches_tracked, dx, dweight, dbias are equal BIT FOR BIT (the fused op evaluates the
 *     same expressions: statistics, normalization, silu and silu' from runtime/ops/silu.h, the
 *     chunked double sums), over two steps (the second sees the updated running statistics),
 *     on a case big enough for the threaded loops and on a small odd-sized 2-D one;
 *   - the same graph run with 1 and 2 OpenMP threads gives the same bits (float32 and float64);
 *   - the layer makes the same stored tensors (names, shapes, inits) as fl_bn_layer;
 *   - the fused training graph plans less memory than the pair (no normalized tensor kept);
 *   - finite differences in double (tests/unit/runtime_fd_harness.h): train 4-D and 2-D, eval,
 *     and x with a second reader, every parameter gradient included;
 *   - bad inputs (wrong parameter sizes, a trainable running statistic, one value per channel
 *     in training, bad eps / momentum) are refused at build time with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <omp.h>

#include "tests/unit/runtime_fd_harness.h"

/* ---- the fused op against the pair ---- */

typedef struct side {
    fl_pstore *s;
    fl_graph *g;
    fl_id x, y;
} side;

/* fused 0: silu(bn(x)); 1: the fused layer. skip: y = act(x) + x (two readers of x). */
static int side_build(side *d, fl_dtype dt, fl_mode mode, int ndim, const int64_t *shape, int fused,
                      int skip) {
    fl_err e = {{0}};
    d->s = fl_pstore_new(dt, 5, &e);
    d->g = fl_graph_new(d->s, mode, &e);
    d->x = fl_input(d->g, "x", ndim, shape);
    fl_input_requires_grad(d->g, d->x);
    fl_id h = fused ? fl_bn_silu_layer(d->g, d->x, "bn", 1e-3, 0.03)
                    : fl_silu(d->g, fl_bn_layer(d->g, d->x, "bn", 1e-3, 0.03));
    d->y = skip ? fl_add(d->g, h, d->x) : h;
    if (d->y < 0 || fl_graph_compile(d->g, d->y, &e) < 0) {
        print_error("build/compile: %s %s\n", fl_graph_error(d->g), e.msg);
        return -1;
    }
    return 0;
}

static void side_free(side *d) {
    fl_graph_free(d->g);
    fl_pstore_free(d->s);
}

static int is_f64(const side *d) { return d->g->dtype == FL_F64; }
static size_t esize(const side *d) { return is_f64(d) ? sizeof(double) : sizeof(float); }
static void put(const side *d, void *p, size_t k, double v) {
    if (is_f64(d)) ((double *)p)[k] = v;
    else ((float *)p)[k] = (float)v;
}

/* The same pseudo-random parameters and statistics in every graph (by node order). */
static void fill_params(side *d) {
    for (int i = 0; i < d->g->n; i++) {
        fl_node *n = &d->g->nodes[i];
        if (n->kind != FL_NODE_PARAM && n->kind != FL_NODE_BUFFER) continue;
        fl_rng r;
        fl_rng_init(&r, 31 + (uint64_t)i, 0);
        void *p = fl_graph_value(d->g, i); /* bumps the store's version */
        for (int64_t k = 0; k < fl_numel(n); k++) {
            double u = fl_rng_uniform(&r);
            if (strstr(n->name, "running_var")) put(d, p, (size_t)k, 0.5 + u);
            else if (strstr(n->name, "num_batches")) put(d, p, (size_t)k, 3);
            else if (strstr(n->name, "weight")) put(d, p, (size_t)k, 0.5 + u);
            else put(d, p, (size_t)k, u - 0.5); /* bias, running_mean */
        }
    }
}

/* One step: forward, backward seeded with r, on inputs x (doubles, stored in the graph's type). */
static void side_step(side *d, const double *x, const double *r, int64_t n) {
    fl_err e = {{0}};
    void *xv = fl_graph_value(d->g, d->x), *rv = malloc(esize(d) * (size_t)n);
    assert_non_null(rv);
    for (int64_t k = 0; k < n; k++) put(d, xv, (size_t)k, x[k]), put(d, rv, (size_t)k, r[k]);
    fl_pstore_zero_grad(d->s);
    if (fl_graph_forward(d->g, &e) < 0 || fl_graph_backward(d->g, rv, &e) < 0) fail_msg("step: %s", e.msg);
    free(rv);
}

static int64_t numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= shape[k];
    return n;
}

/* Bitwise equality of two arrays of the graphs' type, naming the first difference. */
static void same_bits(const side *d, const char *what, const void *a, const void *b, size_t n) {
    size_t es = esize(d);
    for (size_t k = 0; k < n; k++)
        if (memcmp((const char *)a + k * es, (const char *)b + k * es, es) != 0)
            fail_msg("%s differs at [%zu] of %zu: %.17g vs %.17g", what, k, n,
                     is_f64(d) ? ((const double *)a)[k] : ((const float *)a)[k],
                     is_f64(d) ? ((const double *)b)[k] : ((const float *)b)[k]);
}

/* Every stored tensor (values, and gradients of parameters) equal between the two graphs:
 * the same names, shapes, kinds and bits. */
static void same_store(side *a, side *b) {
    int cnt = 0;
    for (int i = 0, j = 0; i < a->g->n; i++) {
        fl_node *p = &a->g->nodes[i];
        if (p->kind != FL_NODE_PARAM && p->kind != FL_NODE_BUFFER) continue;
        while (j < b->g->n && b->g->nodes[j].kind != FL_NODE_PARAM && b->g->nodes[j].kind != FL_NODE_BUFFER) j++;
        assert_true(j < b->g->n);
        fl_node *q = &b->g->nodes[j++];
        assert_string_equal(p->name, q->name);
        assert_int_equal(p->kind, q->kind);
        assert_int_equal(p->shape.ndim, q->shape.ndim);
        assert_int_equal(fl_numel(p), fl_numel(q));
        same_bits(a, p->name, p->val, q->val, (size_t)fl_numel(p));
        if (p->kind == FL_NODE_PARAM) same_bits(a, p->name, p->grad, q->grad, (size_t)fl_numel(p));
        cnt++;
    }
    assert_int_equal(cnt, 5);
}

static void inputs(int64_t n, double *x, double *r, uint64_t seed) {
    fl_rng g;
    fl_rng_init(&g, seed, 0);
    for (int64_t k = 0; k < n; k++) x[k] = 3 * fl_rng_uniform(&g) - 1; /* mean ~0.5 */
    for (int64_t k = 0; k < n; k++) r[k] = 2 * fl_rng_uniform(&g) - 1;
}

static void compare_pair(fl_dtype dt, fl_mode mode, int ndim, const int64_t *shape, int skip) {
    side a, b;
    assert_int_equal(side_build(&a, dt, mode, ndim, shape, 0, skip), 0);
    assert_int_equal(side_build(&b, dt, mode, ndim, shape, 1, skip), 0);
    fill_params(&a);
    fill_params(&b);
    int64_t n = numel_of(ndim, shape);
    double *x = malloc(sizeof(double) * (size_t)n), *r = malloc(sizeof(double) * (size_t)n);
    assert_non_null(x);
    assert_non_null(r);
    for (int step = 0; step < 2; step++) {
        inputs(n, x, r, 7 + step);
        side_step(&a, x, r, n);
        side_step(&b, x, r, n);
        same_bits(&a, "output", fl_graph_value(a.g, a.y), fl_graph_value(b.g, b.y), (size_t)n);
        same_bits(&a, "dx", fl_graph_grad(a.g, a.x), fl_graph_grad(b.g, b.x), (size_t)n);
        same_store(&a, &b);
    }
    printf("%s %s %dD [%lld elements]%s: fused == batchnorm + silu, bit for bit\n", fl_dtype_name(dt),
           mode == FL_MODE_TRAIN ? "train" : "eval", ndim, (long long)n, skip ? " + skip" : "");
    free(x);
    free(r);
    side_free(&a);
    side_free(&b);
}

static const int64_t BIG[4] = {2, 12, 12, 70}; /* 20160 elements: above the threading threshold */
static const int64_t SMALL[2] = {7, 3};

static void test_matches_pair(void **state) {
    for (int t = 0; t < 2; t++)
        for (int m = 0; m < 2; m++) {
            fl_mode mode = m ? FL_MODE_EVAL : FL_MODE_TRAIN;
            for (int skip = 0; skip < 2; skip++) {
                compare_pair(t ? FL_F64 : FL_F32, mode, 4, BIG, skip);
                compare_pair(t ? FL_F64 : FL_F32, mode, 2, SMALL, skip);
            }
        }
}

/* The same fused graph on 1 and on 2 threads: the same bits (the sums run over fixed chunks). */
static void thread_count(fl_dtype dt) {
    int keep = omp_get_max_threads();
    int64_t n = numel_of(4, BIG);
    double *x = malloc(sizeof(double) * (size_t)n), *r = malloc(sizeof(double) * (size_t)n);
    assert_non_null(x);
    assert_non_null(r);
    inputs(n, x, r, 11);
    side d[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        assert_int_equal(side_build(&d[t], dt, FL_MODE_TRAIN, 4, BIG, 1, 1), 0);
        fill_params(&d[t]);
        side_step(&d[t], x, r, n);
    }
    omp_set_num_threads(keep);
    same_bits(&d[0], "output", fl_graph_value(d[0].g, d[0].y), fl_graph_value(d[1].g, d[1].y), (size_t)n);
    same_bits(&d[0], "dx", fl_graph_grad(d[0].g, d[0].x), fl_graph_grad(d[1].g, d[1].x), (size_t)n);
    same_store(&d[0], &d[1]);
    printf("%s, 1 and 2 threads: the same bits\n", fl_dtype_name(dt));
    for (int t = 0; t < 2; t++) side_free(&d[t]);
    free(x);
    free(r);
}

static void test_thread_count(void **state) {
    thread_count(FL_F32);
    thread_count(FL_F64);
}

/* The fused training graph keeps no normalized tensor: its planned peak is below the pair's. */
static void test_memory(void **state) {
    size_t peak[2];
    for (int f = 0; f < 2; f++) {
        side d;
        assert_int_equal(side_build(&d, FL_F32, FL_MODE_TRAIN, 4, BIG, f, 0), 0);
        fl_graph_mem(d.g, &peak[f], NULL);
        side_free(&d);
    }
    printf("planned peak: pair %zu bytes, fused %zu bytes\n", peak[0], peak[1]);
    assert_true(peak[1] + sizeof(float) * (size_t)numel_of(4, BIG) <= peak[0]);
}

/* ---- finite differences, double ---- */

static const int64_t S4[4] = {2, 3, 2, 5};
static fl_id b_fused(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, S4);
    fl_id y = fl_bn_silu_layer(g, x, "bn", 1e-3, 0.1);
    return c ? fl_add(g, y, x) : y;
}
static fl_id b_fused2d(fl_graph *g, void *c) {
    return fl_bn_silu_layer(g, fd_in(g, "x", 2, (int64_t[]){6, 3}), "bn", 1e-5, 0.1);
}

static void test_finite_differences(void **state) {
    fd_case c = fd_default("bn_silu_train", b_fused, NULL);
    c.lo = -2, c.hi = 2;
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c.name = "bn_silu_train_skip", c.ctx = (void *)1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bn_silu_train_2d", b_fused2d, NULL);
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("bn_silu_eval", b_fused, NULL);
    c.mode = FL_MODE_EVAL;
    c.lo = -2, c.hi = 2;
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
}

/* ---- bad inputs ---- */

/* Builds fl_batchnorm_silu with weight of nw elements, running_mean trainable when rm_param,
 * on x [m, 4], with eps, momentum and mode; want: a piece of the expected message, NULL when
 * it must build. */
static void bad_case(int64_t nw, int rm_param, int64_t m, double eps, double mom, fl_mode mode,
                     const char *want) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, mode, &e);
    int64_t C = 4;
    fl_init one = {FL_INIT_ONES, 0, 0}, zero = {FL_INIT_ZEROS, 0, 0};
    fl_id x = fl_input(g, "x", 2, (int64_t[]){m, C});
    fl_id w = fl_parameter(g, "bn.weight", 1, &nw, one, FL_P_NO_DECAY);
    fl_id b = fl_parameter(g, "bn.bias", 1, &C, zero, FL_P_NO_DECAY);
    fl_id rm = rm_param ? fl_parameter(g, "bn.running_mean", 1, &C, zero, 0)
                        : fl_buffer(g, "bn.running_mean", 1, &C, zero);
    fl_id rv = fl_buffer(g, "bn.running_var", 1, &C, one);
    fl_id nbt = fl_buffer(g, "bn.num_batches_tracked", 0, NULL, zero);
    fl_id y = fl_batchnorm_silu(g, x, w, b, rm, rv, nbt, eps, mom);
    printf("error: %s\n", fl_graph_error(g));
    if (want) {
        assert_int_equal(y, -1);
        assert_non_null(strstr(fl_graph_error(g), "batchnorm_silu"));
        assert_non_null(strstr(fl_graph_error(g), want));
    } else {
        assert_true(y >= 0);
    }
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_bad_inputs(void **state) {
    bad_case(4, 0, 3, 1e-5, 0.1, FL_MODE_TRAIN, NULL); /* the good case builds */
    bad_case(5, 0, 3, 1e-5, 0.1, FL_MODE_TRAIN, "weight has 5 elements, expected 4");
    bad_case(3, 0, 3, 1e-5, 0.1, FL_MODE_TRAIN, "weight has 3 elements, expected 4");
    bad_case(4, 1, 3, 1e-5, 0.1, FL_MODE_TRAIN, "running_mean must be a buffer");
    bad_case(4, 0, 1, 1e-5, 0.1, FL_MODE_TRAIN, "more than 1 value per channel");
    bad_case(4, 0, 1, 1e-5, 0.1, FL_MODE_EVAL, NULL); /* eval: one value is fine */
    bad_case(4, 0, 3, 0, 0.1, FL_MODE_TRAIN, "eps must be > 0");
    bad_case(4, 0, 3, 1e-5, 1.5, FL_MODE_TRAIN, "momentum must be in [0, 1]");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_pair),       cmocka_unit_test(test_thread_count),
        cmocka_unit_test(test_memory),             cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
