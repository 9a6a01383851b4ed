/* End to end through the graph: a small conv net with BN, dropout and drop path trains 10 AdamW
 * steps, checkpoints (runtime/checkpoint.h), and a fresh store + graph resumes 10 more steps;
 * every parameter, buffer and the last loss are bitwise equal to 20 straight steps. Dropout
 * masks are a function of (seed, step), and the step comes back from the checkpoint. *
 * numeric test: rerun by tests/run.sh under another OPENBLAS_CORETYPE (bitwise equality needs
 * BLAS kernels that are deterministic run to run, whichever the CPU selects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/graph.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

typedef struct run {
    fl_pstore *s;
    fl_graph *g;
    fl_id x, y, loss;
    fl_param_list pl;
    fl_optim *o;
} run;

static void run_open(run *r) {
    fl_err e = {{0}};
    r->s = fl_pstore_new(FL_F32, 42, &e);
    r->g = fl_graph_new(r->s, FL_MODE_TRAIN, &e);
    fl_graph *g = r->g;
    r->x = fl_input(g, "x", 4, (int64_t[]){4, 8, 8, 3});
    r->y = fl_input_labels(g, "y", 4);
    fl_id h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, r->x, "stem.conv", 8, 3, 2, 1, 1, FL_PAD_SAME, 0), "stem.bn", 1e-3, 0.1));
    h = fl_add(g, h, fl_drop_path(g, fl_silu(g, fl_conv2d_layer(g, h, "block.conv", 8, 3, 1, 1, 1, FL_PAD_AUTO, 1)), 0.3));
    h = fl_reshape(g, fl_gem_layer(g, h, "pool", 3.0, 1e-6), 2, (int64_t[]){4, 8});
    h = fl_dropout(g, h, 0.2);
    r->loss = fl_softmax_ce(g, fl_linear_layer(g, h, "head", 5, 1), r->y, 0.1);
    assert_int_equal(fl_graph_compile(g, r->loss, &e), 0);
    fl_rng rng;
    fl_rng_init(&rng, 3, 0);
    float *xv = fl_graph_value(g, r->x);
    for (int i = 0; i < 4 * 8 * 8 * 3; i++) xv[i] = fl_rng_normal(&rng);
    int32_t *yv = fl_graph_value(g, r->y);
    for (int i = 0; i < 4; i++) yv[i] = i % 5;
    assert_int_equal(fl_pstore_params(r->s, &r->pl, &e), 0);
    fl_optim_cfg cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 3e-3);
    r->o = fl_optim_create(&cfg, &r->pl, &e);
    assert_non_null(r->o);
}

static void run_close(run *r) {
    fl_optim_free(r->o);
    fl_graph_free(r->g);
    fl_pstore_free(r->s);
}

static float train(run *r, int64_t from, int64_t to) {
    fl_err e = {{0}};
    float l = 0;
    for (int64_t t = from; t < to; t++) {
        fl_graph_set_rng(r->g, 1234, (uint64_t)t);
        fl_optim_zero_grad(r->o);
        assert_int_equal(fl_graph_forward(r->g, &e), 0);
        assert_int_equal(fl_graph_backward(r->g, NULL, &e), 0);
        fl_optim_step(r->o);
        assert_int_equal(fl_graph_read(r->g, r->loss, &l, sizeof l, &e), 0);
    }
    return l;
}

static void test_resume_bitwise(void **state) {
    char path[] = "/tmp/fluke_resume_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    fl_err e = {{0}};
    run a, b;
    run_open(&a);
    float la = train(&a, 0, 20);

    run_open(&b);
    train(&b, 0, 10);
    fl_ckpt c = {.params = &b.pl, .optim = b.o, .step = 10};
    if (fl_ckpt_save(path, &c, &e) < 0) printf("%s\n", e.msg);
    run_close(&b);
    run_open(&b); /* a fresh process's worth of state: new store, graph, optimizer */
    fl_ckpt c2 = {.params = &b.pl, .optim = b.o};
    if (fl_ckpt_load(path, &c2, NULL, &e) < 0) printf("%s\n", e.msg);
    assert_int_equal(c2.step, 10);
    float lb = train(&b, c2.step, 20);
    unlink(path);

    assert_memory_equal(&la, &lb, sizeof la);
    assert_int_equal(a.pl.n, b.pl.n);
    for (size_t i = 0; i < a.pl.n; i++) {
        assert_string_equal(a.pl.v[i].name, b.pl.v[i].name);
        assert_memory_equal(a.pl.v[i].data, b.pl.v[i].data, a.pl.v[i].numel * sizeof(float));
    }
    run_close(&a);
    run_close(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
