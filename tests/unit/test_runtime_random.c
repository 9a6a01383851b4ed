/* Robustness: random graphs built from random ops with random (often invalid) shapes and
 * attributes. Every builder either succeeds or records an error; a graph that builds compiles,
 * runs forward and backward, and produces finite numbers or a clear error, never a crash (the
 * sanitizer build runs this too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/graph_internal.h"
#include "runtime/rng.h"
#include "tests/unit/runtime_fd_harness.h"

static int64_t rdim(fl_rng *r) { return 1 + (int64_t)fl_rng_below(r, 5); }

static fl_id random_op(fl_graph *g, fl_rng *r, const fl_id *pool, int np, int *labels) {
    fl_id a = pool[fl_rng_below(r, (uint32_t)np)], b = pool[fl_rng_below(r, (uint32_t)np)];
    int64_t sh[4] = {rdim(r), rdim(r), rdim(r), rdim(r)};
    char nm[32];
    snprintf(nm, sizeof nm, "p%u", fl_rng_below(r, 1000000));
    int k = (int)fl_rng_below(r, 4) - 1; /* -1..2 */
    switch (fl_rng_below(r, 26)) {
    case 0: return fl_relu(g, a);
    case 1: return fl_silu(g, a);
    case 2: return fl_sigmoid(g, a);
    case 3: return fl_softplus(g, a);
    case 4: return fl_add(g, a, b);
    case 5: return fl_mul(g, a, b);
    case 6: return fl_div(g, a, fl_scale(g, fl_sigmoid(g, b), 1, 0.5));
    case 7: return fl_sub(g, a, b);
    case 8: return fl_concat(g, 2, (fl_id[]){a, b}, k);
    case 9: return fl_sum(g, a, fl_rng_below(r, 32), (int)fl_rng_below(r, 2));
    case 10: return fl_mean(g, a, fl_rng_below(r, 32), (int)fl_rng_below(r, 2));
    case 11: return fl_linear_layer(g, a, nm, rdim(r), (int)fl_rng_below(r, 2));
    case 12: return fl_bn_layer(g, a, nm, 1e-3, 0.1);
    case 13: return fl_gem_layer(g, a, nm, 3, 1e-6);
    case 14: return fl_l2norm(g, a, 1e-12);
    case 15: return fl_dropout(g, a, fl_rng_uniform(r) * 1.2);
    case 16: return fl_drop_path(g, a, fl_rng_uniform(r) * 0.9);
    case 17: return fl_reshape(g, a, 2, (int64_t[]){sh[0], sh[1]});
    case 18: return fl_prelu_layer(g, a, nm, rdim(r));
    case 19: return fl_conv2d_layer(g, a, nm, rdim(r), 1 + 2 * (int)fl_rng_below(r, 2), 1 + (int)fl_rng_below(r, 2), 1,
                                    1 + (int)fl_rng_below(r, 2), (int)fl_rng_below(r, 4) - 2, (int)fl_rng_below(r, 2));
    case 20: return fl_maxpool(g, a, 1 + 2 * (int)fl_rng_below(r, 3), 1 + (int)fl_rng_below(r, 2), (int)fl_rng_below(r, 3));
    case 21: return fl_upsample_nearest(g, a, (int)fl_rng_below(r, 3));
    case 22: return fl_global_avgpool(g, a);
    case 23: return fl_slice(g, a, k, (int64_t)fl_rng_below(r, 3), rdim(r));
    case 24: {
        fl_id lab = fl_input_labels(g, "y", sh[0]);
        *labels = 1;
        return fl_softmax_ce(g, a, lab, 0.1);
    }
    default: return fl_subcenter_max(g, a, (int)fl_rng_below(r, 3));
    }
}

static void test_random_graphs(void **state) {
    int built = 0, failed_build = 0, failed_compile = 0, ran = 0, run_err = 0;
    for (int it = 0; it < 1500; it++) {
        fl_rng r;
        fl_rng_init(&r, 2024, (uint64_t)it);
        fl_err e = {{0}};
        fl_pstore *s = fl_pstore_new(FL_F32, (uint64_t)it, &e);
        fl_graph *g = fl_graph_new(s, fl_rng_below(&r, 2) ? FL_MODE_TRAIN : FL_MODE_EVAL, &e);
        fl_id pool[32];
        int np = 0, labels = 0;
        int nd = 1 + (int)fl_rng_below(&r, 4);
        int64_t sh[4] = {2, rdim(&r), rdim(&r), rdim(&r)};
        pool[np++] = fl_input(g, "x", nd, sh);
        fl_input_requires_grad(g, pool[0]);
        fl_id last = pool[0];
        int nops = 1 + (int)fl_rng_below(&r, 3);
        for (int k = 0; k < nops; k++) {
            fl_id v = random_op(g, &r, pool, np, &labels);
            if (v < 0) break;
            pool[np++] = v;
            last = v;
        }
        if (fl_graph_error(g)[0]) {
            failed_build++;
            assert_int_equal(fl_graph_compile(g, last, &e), -1);
            assert_true(strlen(e.msg) > 0);
        } else if (fl_graph_compile(g, last, &e) == 0) {
            built++;
            /* poison (NaN bytes): a kernel reading what nobody wrote shows up as a NaN */
            if (g->arena.base) memset(g->arena.base, 0xff, g->arena.size);
            if (g->nodes[pool[0]].own_grad) memset(g->nodes[pool[0]].own_grad, 0xff, (size_t)fl_graph_numel(g, pool[0]) * 4);
            float *x = fl_graph_value(g, pool[0]);
            for (int64_t i = 0; i < fl_graph_numel(g, pool[0]); i++) x[i] = fl_rng_normal(&r);
            int64_t ny = fl_graph_numel(g, last);
            float seed[4096];
            for (int64_t i = 0; i < ny && i < 4096; i++) seed[i] = 1.0f;
            if (ny <= 4096 && fl_graph_forward(g, &e) == 0 && fl_graph_backward(g, seed, &e) == 0) {
                ran++;
                float *y = fl_graph_value(g, last);
                for (int64_t i = 0; i < ny; i++) assert_true(isfinite(y[i]));
                const float *gx = fl_graph_grad(g, pool[0]);
                for (int64_t i = 0; gx && i < fl_graph_numel(g, pool[0]); i++) assert_true(isfinite(gx[i]));
            } else {
                run_err++; /* labels left at 0 are valid; say why anything else failed */
                assert_true(ny > 4096 || strlen(e.msg) > 0);
            }
        } else {
            /* builders accepted the graph, compile refused it: it must say why */
            failed_compile++;
            if (!e.msg[0]) printf("random graph %d: compile failed without an error message\n", it);
            assert_true(strlen(e.msg) > 0);
        }
        fl_graph_free(g);
        fl_pstore_free(s);
    }
    printf("random graphs: %d compiled, %d ran forward+backward, %d ran with an error, %d rejected at build, %d at compile\n",
           built, ran, run_err, failed_build, failed_compile);
    assert_true(ran > 200);
    assert_true(failed_build > 200);
}

/* Random compositions of differentiable ops in double precision, each checked against central
 * differences like the single-op tests: catches gradient bugs that only show when ops meet
 * (shared inputs, broadcasting chains, first-writer gradients). */
static uint64_t fd_graph_id;
static fl_id fd_random_build(fl_graph *g, void *ctx) {
    fl_rng r;
    fl_rng_init(&r, 4242, fd_graph_id);
    int nd = 1 + (int)fl_rng_below(&r, 4);
    int64_t sh[4] = {2, rdim(&r) % 4 + 1, rdim(&r) % 4 + 1, rdim(&r) % 4 + 1};
    fl_id pool[8];
    int np = 0;
    pool[np++] = fd_in(g, "x", nd, sh);
    int nops = 1 + (int)fl_rng_below(&r, 4);
    for (int k = 0; k < nops; k++) {
        fl_id a = pool[fl_rng_below(&r, (uint32_t)np)], b = pool[fl_rng_below(&r, (uint32_t)np)];
        char nm[32];
        snprintf(nm, sizeof nm, "p%d", k);
        fl_id v;
        switch (fl_rng_below(&r, 16)) {
        case 0: v = fl_silu(g, a); break;
        case 1: v = fl_sigmoid(g, a); break;
        case 2: v = fl_add(g, a, b); break;
        case 3: v = fl_mul(g, a, b); break;
        case 4: v = fl_div(g, a, fl_scale(g, fl_sigmoid(g, b), 1, 0.5)); break;
        case 5: v = fl_sub(g, a, b); break;
        case 6: v = fl_concat(g, 2, (fl_id[]){a, b}, -1); break;
        case 7: v = fl_sum(g, a, fl_rng_below(&r, 16), (int)fl_rng_below(&r, 2)); break;
        case 8: v = fl_mean(g, a, fl_rng_below(&r, 16), (int)fl_rng_below(&r, 2)); break;
        case 9: v = fl_linear_layer(g, a, nm, rdim(&r) % 4 + 1, 1); break;
        case 10: v = fl_bn_layer(g, a, nm, 1e-3, 0.1); break;
        case 11: v = fl_l2norm(g, a, 1e-12); break;
        case 12: v = fl_softplus(g, a); break;
        case 13: v = fl_conv2d_layer(g, a, nm, rdim(&r) % 4 + 1, 3, 1, 1, 1, FL_PAD_AUTO, 1); break;
        case 14: v = fl_global_avgpool(g, a); break;
        default: v = fl_dropout(g, a, 0.3); break;
        }
        if (v < 0) return -1;
        pool[np++] = v;
    }
    return pool[np - 1];
}

static void test_random_graphs_fd(void **state) {
    int checked = 0;
    for (fd_graph_id = 0; fd_graph_id < 400; fd_graph_id++) {
        fl_err e = {{0}};
        fl_pstore *s = fl_pstore_new(FL_F64, 1, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        int valid = fd_random_build(g, NULL) >= 0 && !fl_graph_error(g)[0];
        fl_graph_free(g);
        fl_pstore_free(s);
        if (!valid) continue; /* shapes that do not fit: covered by test_random_graphs */
        fd_case c = fd_default("random", fd_random_build, NULL);
        c.randomize_params = 1;
        c.allow_zero_grad = 1;
        double w = fd_check(&c);
        if (!(w < 1e-6)) printf("random graph %llu: worst %.3e\n", (unsigned long long)fd_graph_id, w);
        assert_true(w < 1e-6);
        checked++;
    }
    printf("random graphs checked by finite differences: %d\n", checked);
    assert_true(checked > 150);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_graphs),
        cmocka_unit_test(test_random_graphs_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
