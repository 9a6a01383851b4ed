/* Finite-difference checks (double precision, relative error < 1e-6) of the element-wise,
 * broadcasting and reduction ops' backward passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/runtime_fd_harness.h"

static const int64_t S4[4] = {2, 3, 2, 4};

static fl_id b_relu(fl_graph *g, void *c) { return fl_relu(g, fd_in(g, "x", 4, S4)); }
static fl_id b_silu(fl_graph *g, void *c) { return fl_silu(g, fd_in(g, "x", 4, S4)); }
static fl_id b_sigmoid(fl_graph *g, void *c) { return fl_sigmoid(g, fd_in(g, "x", 4, S4)); }
static fl_id b_softplus(fl_graph *g, void *c) { return fl_softplus(g, fd_in(g, "x", 4, S4)); }
static fl_id b_scale(fl_graph *g, void *c) { return fl_scale(g, fd_in(g, "x", 4, S4), -1.5, 0.25); }
static fl_id b_prelu(fl_graph *g, void *c) {
    return fl_prelu_layer(g, fd_in(g, "x", 4, S4), "act", 4);
}
static fl_id b_prelu_shared(fl_graph *g, void *c) {
    int64_t one = 1;
    fl_id w = fl_parameter(g, "act.weight", 1, &one, (fl_init){FL_INIT_CONST, 0.25, 0}, 0);
    return fl_prelu(g, fd_in(g, "x", 4, S4), w);
}

static void test_unary(void **state) {
    fd_case c = fd_default("relu", b_relu, NULL);
    c.min_abs = 0.05;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("silu", b_silu, NULL);
    c.lo = -4, c.hi = 4;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("sigmoid", b_sigmoid, NULL);
    c.lo = -4, c.hi = 4;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("softplus", b_softplus, NULL);
    c.lo = -5, c.hi = 5;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("scale", b_scale, NULL);
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("prelu", b_prelu, NULL);
    c.min_abs = 0.05;
    c.randomize_params = 1;
    assert_true(fd_check(&c) < 1e-6);
    c = fd_default("prelu_shared", b_prelu_shared, NULL);
    c.min_abs = 0.05;
    assert_true(fd_check(&c) < 1e-6);
}

/* softplus above its threshold (x > 20) is the identity, as in PyTorch. */
static fl_id b_softplus_big(fl_graph *g, void *c) { return fl_softplus(g, fd_in(g, "x", 1, (int64_t[]){6})); }
static void test_softplus_threshold(void **state) {
    fd_case c = fd_default("softplus_big", b_softplus_big, NULL);
    c.lo = 21, c.hi = 30;
    assert_true(fd_check(&c) < 1e-6);
}

typedef struct bin_ctx {
    int op;
    int ndim_a, ndim_b;
    int64_t a[4], b[4];
} bin_ctx;

static fl_id b_binary(fl_graph *g, void *cv) {
    bin_ctx *c = cv;
    fl_id a = fd_in(g, "a", c->ndim_a, c->a), b = fd_in(g, "b", c->ndim_b, c->b);
    switch (c->op) {
    case 0: return fl_add(g, a, b);
    case 1: return fl_sub(g, a, b);
    case 2: return fl_mul(g, a, b);
    default: return fl_div(g, a, b);
    }
}

static void test_binary_broadcast(void **state) {
    static const char *names[4] = {"add", "sub", "mul", "div"};
    bin_ctx shapes[] = {
        {0, 4, 4, {2, 3, 2, 4}, {2, 3, 2, 4}}, /* same shape */
        {0, 4, 4, {2, 1, 1, 4}, {2, 3, 2, 4}}, /* SE gating */
        {0, 4, 1, {2, 3, 2, 4}, {4}},          /* per-channel bias */
        {0, 4, 4, {1, 3, 1, 4}, {2, 1, 2, 1}}, /* both stretched */
        {0, 2, 3, {3, 1}, {2, 1, 4}},          /* different ranks */
        {0, 3, 3, {2, 3, 1}, {2, 3, 1}},       /* last axis of size 1 (stride 0, not stretched) */
        {0, 4, 4, {2, 3, 3, 1}, {2, 1, 1, 1}}, /* DOLG's dot / ||f_g||^2 */
    };
    for (int op = 0; op < 4; op++)
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            bin_ctx c = shapes[k];
            c.op = op;
            char name[64];
            snprintf(name, sizeof name, "%s#%zu", names[op], k);
            fd_case fc = fd_default(name, b_binary, &c);
            if (op == 3) fc.min_abs = 0.3; /* keep divisors away from 0 */
            assert_true(fd_check(&fc) < 1e-6);
        }
}

/* x used twice by one op and by two ops: gradients accumulate across uses. */
static fl_id b_reuse(fl_graph *g, void *c) {
    fl_id x = fd_in(g, "x", 4, S4);
    fl_id sq = fl_mul(g, x, x);
    return fl_add(g, fl_silu(g, sq), fl_mul(g, fl_sigmoid(g, x), x));
}
static void test_reuse_accumulates(void **state) {
    fd_case c = fd_default("reuse", b_reuse, NULL);
    assert_true(fd_check(&c) < 1e-6);
}

typedef struct red_ctx {
    int mean;
    unsigned mask;
    int keep;
} red_ctx;
static fl_id b_reduce(fl_graph *g, void *cv) {
    red_ctx *c = cv;
    fl_id x = fd_in(g, "x", 4, S4);
    return c->mean ? fl_mean(g, x, c->mask, c->keep) : fl_sum(g, x, c->mask, c->keep);
}
static void test_reductions(void **state) {
    unsigned masks[] = {0x1, 0x6, 0x8, 0xf, 0x9, 0x2};
    for (int mean = 0; mean < 2; mean++)
        for (size_t k = 0; k < sizeof masks / sizeof *masks; k++)
            for (int keep = 0; keep < 2; keep++) {
                red_ctx c = {mean, masks[k], keep};
                char name[64];
                snprintf(name, sizeof name, "%s(0x%x,%d)", mean ? "mean" : "sum", masks[k], keep);
                fd_case fc = fd_default(name, b_reduce, &c);
                assert_true(fd_check(&fc) < 1e-6);
            }
}

/* A parameter (or an input that wants its gradient) that never reaches the checked node fails
 * the harness instead of being skipped. */
static fl_id b_unreached_param(fl_graph *g, void *c) {
    fl_parameter(g, "unused.weight", 1, (int64_t[]){3}, (fl_init){FL_INIT_ONES, 0, 0}, 0);
    return fl_silu(g, fd_in(g, "x", 4, S4));
}
static fl_id b_unreached_input(fl_graph *g, void *c) {
    fd_in(g, "unused", 1, (int64_t[]){3});
    return fl_silu(g, fd_in(g, "x", 4, S4));
}
static void test_unreached_fails(void **state) {
    fd_case c = fd_default("unreached_param", b_unreached_param, NULL);
    assert_true(isinf(fd_check(&c)));
    c = fd_default("unreached_input", b_unreached_input, NULL);
    assert_true(isinf(fd_check(&c)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_softplus_threshold),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_reuse_accumulates),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_unreached_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
