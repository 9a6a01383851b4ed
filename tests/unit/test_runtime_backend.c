/* The backend seam (runtime/backend.h): op table coverage, supports_op, the CUDA backend refusing
 * a graph it has no kernels for, the explicit copies in and out, and record/replay: a replayed
 * training step of a small EfficientNet + DOLG + ArcFace model is bitwise the eager one (loss,
 * embedding, every parameter gradient, BN running statistics), over several steps with different
 * inputs and AdamW updates in between. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend_internal.h"
#include "runtime/device.h"
#include "runtime/models/embed_head.h"
#include "runtime/optim.h"
#include "runtime/rng.h"

static void fill(float *p, size_t n, uint64_t stream) {
    fl_rng r;
    fl_rng_init(&r, 3, stream);
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_normal(&r);
}

/* Every op has an id equal to its place in fl_op_table(), a unique name, and CPU forward and
 * backward kernels; the CUDA table is honestly empty. */
static void test_op_table_coverage(void **state) {
    const fl_op_def *const *t = fl_op_table();
    const fl_backend *cpu = fl_backend_cpu(), *cuda = fl_backend_cuda();
    int n = 0;
    for (; t[n]; n++) {
        assert_int_equal(t[n]->id, n);
        for (int k = 0; k < n; k++) assert_true(strcmp(t[k]->name, t[n]->name) != 0);
        const fl_op_impl *k = cpu->ops[t[n]->id];
        if (!k || !k->forward || !k->backward) fail_msg("op %s has no CPU forward/backward", t[n]->name);
        assert_null(cuda->ops[t[n]->id]);
    }
    assert_int_equal(n, FL_OP_COUNT);
    assert_string_equal(fl_backend_name(cpu), "cpu");
    assert_string_equal(fl_backend_name(cuda), "cuda");
    assert_true(fl_backend_is_host(cpu));
    assert_false(fl_backend_is_host(cuda));
}

static void test_supports_op(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){2, 3});
    fl_id h = fl_relu(g, fl_linear_layer(g, x, "fc", 4, 1));
    fl_id w = 1; /* fc.weight: the first node after x */
    assert_int_equal(fl_backend_supports(fl_backend_cpu(), g, h), 1);
    assert_int_equal(fl_backend_supports(fl_backend_cuda(), g, h), 0);
    assert_int_equal(fl_backend_supports(fl_backend_cuda(), g, x), 1); /* leaves need no kernel */
    assert_int_equal(fl_backend_supports(fl_backend_cuda(), g, w), 1);
    assert_int_equal(fl_backend_supports(fl_backend_cpu(), g, 99), -1);
    assert_int_equal(fl_backend_supports(fl_backend_cpu(), g, -1), -1);
    assert_ptr_equal(fl_graph_backend(g), fl_backend_cpu());
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* A graph built for the CUDA backend fails at compile naming its first op; nothing leaks. */
static void test_cuda_refuses(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){2, 3});
    fl_id y = fl_mean(g, fl_silu(g, fl_linear_layer(g, x, "fc", 4, 1)), 3, 0);
    assert_int_equal(fl_graph_set_backend(g, fl_backend_cuda(), &e), 0);
    assert_int_equal(fl_graph_compile(g, y, &e), -1);
    printf("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "cuda backend does not support op linear"));
    fl_graph_free(g);
    /* and the backend is fixed once compiled */
    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    x = fl_input(g, "x", 2, (int64_t[]){2, 3});
    y = fl_mean(g, fl_silu(g, x), 3, 0);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    assert_int_equal(fl_graph_set_backend(g, fl_backend_cuda(), &e), -1);
    assert_non_null(strstr(e.msg, "before compile"));
    assert_int_equal(fl_graph_set_backend(g, NULL, &e), -1);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* The CUDA backend's buffers: a graph with no op node (an input as target) compiles there, and
 * copies round-trip through device memory; without a device the allocation fails saying why. */
static void test_cuda_buffers(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 1, (int64_t[]){5});
    assert_int_equal(fl_graph_set_backend(g, fl_backend_cuda(), &e), 0);
    int rc = fl_graph_compile(g, x, &e);
    if (fl_device_count() == 0) {
        char why[256];
        fl_device_describe(0, why, sizeof why);
        assert_int_equal(rc, -1);
        printf("no device, compile says: %s\n", e.msg);
        assert_non_null(strstr(e.msg, "cuda backend"));
        fl_graph_free(g);
        fl_pstore_free(s);
        printf("skipped: no CUDA device for the round trip (%s)\n", why);
        skip();
    }
    assert_int_equal(rc, 0);
    float v[5] = {1, -2, 3.5f, 0, 9}, back[5] = {0};
    assert_null(fl_graph_value(g, x)); /* device memory is not handed out */
    assert_int_equal(fl_graph_set_input(g, x, v, sizeof v, &e), 0);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_read(g, x, back, sizeof back, &e), 0);
    assert_memory_equal(v, back, sizeof v);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* Copies in and out: the values they move, the size and kind checks, reading gradients. */
static void test_copy_in_out(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){2, 3});
    fl_id w = fl_parameter(g, "w", 1, (int64_t[]){3}, (fl_init){FL_INIT_CONST, 0.5, 0}, 0);
    fl_id y = fl_scale(g, fl_mul(g, x, w), 2.0, 1.0);
    fl_id loss = fl_sum(g, y, 3, 0);
    fl_graph_mark_output(g, y);
    float src[6] = {1, 2, 3, 4, 5, 6}, out[6], gw[3];
    assert_int_equal(fl_graph_set_input(g, x, src, sizeof src, &e), -1); /* before compile */
    assert_non_null(strstr(e.msg, "not compiled"));
    assert_int_equal(fl_graph_compile(g, loss, &e), 0);
    assert_int_equal(fl_graph_set_input(g, x, src, sizeof src - 4, &e), -1);
    assert_non_null(strstr(e.msg, "holds 24 bytes, not 20"));
    assert_int_equal(fl_graph_set_input(g, y, src, sizeof src, &e), -1);
    assert_non_null(strstr(e.msg, "not an input"));
    assert_int_equal(fl_graph_set_input(g, 77, src, sizeof src, &e), -1);
    assert_int_equal(fl_graph_set_input(g, x, src, sizeof src, &e), 0);
    assert_memory_equal(fl_graph_value(g, x), src, sizeof src); /* the host accessor sees it */
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_read(g, y, out, sizeof out, &e), 0);
    for (int i = 0; i < 6; i++) assert_true(out[i] == 2.0f * (src[i] * 0.5f) + 1.0f);
    assert_int_equal(fl_graph_read(g, y, out, 4, &e), -1);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    assert_int_equal(fl_graph_read_grad(g, w, gw, sizeof gw, &e), 0);
    for (int j = 0; j < 3; j++) assert_true(gw[j] == 2.0f * (src[j] + src[3 + j]));
    assert_memory_equal(gw, fl_graph_grad(g, w), sizeof gw);
    assert_int_equal(fl_graph_read_grad(g, x, out, sizeof out, &e), -1); /* no gradient asked */
    assert_non_null(strstr(e.msg, "no gradient"));
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* ---- replay == eager ------------------------------------------------------------------------ */

#define N 4
#define SZ 32
#define NCLS 5
#define STEPS 4

typedef struct side {
    fl_pstore *s;
    fl_graph *g;
    fl_embed_model m;
    fl_param_list pl;
    fl_optim *o;
} side;

static void side_make(side *d, int record) {
    fl_err e = {{0}};
    fl_embed_cfg c = fl_embed_defaults(NCLS, 16);
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c.backbone, &e), 0);
    c.backbone.width = 0.25;
    c.backbone.depth = 0.25;
    c.backbone.drop_path_rate = 0.2; /* the step's RNG too (drop path; the neck has dropout) */
    c.dolg = fl_dolg_defaults(16);
    c.arc.subcenters = 2;
    d->s = fl_pstore_new(FL_F32, 11, &e);
    d->g = fl_graph_new(d->s, FL_MODE_TRAIN, &e);
    if (fl_embed_build(d->g, &c, N, SZ, SZ, 1, &d->m, &e) < 0) fail_msg("%s", e.msg);
    fl_graph_mark_output(d->g, d->m.emb);
    if (fl_graph_compile(d->g, d->m.loss, &e) < 0) fail_msg("%s", e.msg);
    if (record) assert_int_equal(fl_graph_record(d->g, &e), 0);
    assert_int_equal(fl_graph_recorded(d->g), record);
    assert_int_equal(fl_pstore_params(d->s, &d->pl, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
    d->o = fl_optim_create(&oc, &d->pl, &e);
    assert_non_null(d->o);
}

static void side_free(side *d) {
    fl_optim_free(d->o);
    fl_graph_free(d->g);
    fl_pstore_free(d->s);
}

static void test_replay_bitwise(void **state) {
    side a, b; /* a eager, b replays */
    side_make(&a, 0);
    side_make(&b, 1);
    assert_int_equal(a.pl.n, b.pl.n);
    fl_err e = {{0}};
    size_t nx = (size_t)N * SZ * SZ * 3;
    float *x = malloc(nx * sizeof *x), loss[2], emb[2][N * 16];
    assert_non_null(x);
    for (int step = 0; step < STEPS; step++) {
        fill(x, nx, (uint64_t)step);
        int32_t lab[N];
        for (int i = 0; i < N; i++) lab[i] = (step + 3 * i) % NCLS;
        /* a through the host accessor, b through the copies: the same bytes either way */
        memcpy(fl_graph_value(a.g, a.m.x), x, nx * sizeof *x);
        memcpy(fl_graph_value(a.g, a.m.labels), lab, sizeof lab);
        assert_int_equal(fl_graph_set_input(b.g, b.m.x, x, nx * sizeof *x, &e), 0);
        assert_int_equal(fl_graph_set_input(b.g, b.m.labels, lab, sizeof lab, &e), 0);
        side *sd[2] = {&a, &b};
        for (int k = 0; k < 2; k++) {
            fl_graph_set_rng(sd[k]->g, 9, (uint64_t)step);
            fl_optim_zero_grad(sd[k]->o);
            if (fl_graph_forward(sd[k]->g, &e) < 0 || fl_graph_backward(sd[k]->g, NULL, &e) < 0)
                fail_msg("%s", e.msg);
            assert_int_equal(fl_graph_read(sd[k]->g, sd[k]->m.loss, &loss[k], sizeof loss[k], &e), 0);
            assert_int_equal(fl_graph_read(sd[k]->g, sd[k]->m.emb, emb[k], sizeof emb[k], &e), 0);
        }
        printf("step %d: loss eager %.9g, replay %.9g\n", step, loss[0], loss[1]);
        assert_memory_equal(&loss[0], &loss[1], sizeof loss[0]);
        assert_memory_equal(emb[0], emb[1], sizeof emb[0]);
        int ngrad = 0;
        for (size_t p = 0; p < a.pl.n; p++) {
            assert_string_equal(a.pl.v[p].name, b.pl.v[p].name);
            if (a.pl.v[p].grad) {
                if (memcmp(a.pl.v[p].grad, b.pl.v[p].grad, a.pl.v[p].numel * sizeof(float)))
                    fail_msg("step %d: gradient of %s differs", step, a.pl.v[p].name);
                ngrad++;
            } else if (memcmp(a.pl.v[p].data, b.pl.v[p].data, a.pl.v[p].numel * sizeof(float))) {
                fail_msg("step %d: buffer %s differs", step, a.pl.v[p].name);
            }
        }
        if (step == 0) printf("%d parameter gradients and %zu buffers compared per step\n", ngrad, a.pl.n - ngrad);
        fl_optim_step(a.o);
        fl_optim_step(b.o);
    }
    free(x);
    side_free(&a);
    side_free(&b);
}

/* A non-scalar target with a seed and an input gradient: the recorded zeroing of a gradient
 * nobody wrote yet, and repeated backward calls (parameter gradients accumulate). */
static void test_replay_seeded(void **state) {
    fl_err e = {{0}};
    float grads[2][2][12], vals[2][24];
    for (int rec = 0; rec < 2; rec++) {
        fl_pstore *s = fl_pstore_new(FL_F32, 5, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        fl_id x = fl_input(g, "x", 2, (int64_t[]){2, 6});
        fl_input_requires_grad(g, x);
        fl_id h = fl_linear_layer(g, x, "fc", 4, 1);
        fl_id y = fl_l2norm(g, fl_concat(g, 2, (fl_id[]){fl_silu(g, h), h}, -1), 1e-12);
        assert_int_equal(fl_graph_compile(g, y, &e), 0);
        if (rec) assert_int_equal(fl_graph_record(g, &e), 0);
        float xv[12], seed[16];
        fill(xv, 12, 40);
        fill(seed, 16, 41);
        assert_int_equal(fl_graph_set_input(g, x, xv, sizeof xv, &e), 0);
        for (int it = 0; it < 2; it++) {
            assert_int_equal(fl_graph_forward(g, &e), 0);
            assert_int_equal(fl_graph_backward(g, seed, &e), 0);
            assert_int_equal(fl_graph_read_grad(g, x, grads[rec][it], sizeof grads[rec][it], &e), 0);
        }
        assert_int_equal(fl_graph_read(g, y, vals[rec], 0, &e), -1);
        memcpy(vals[rec], fl_pstore_grad(s, "fc.weight"), sizeof vals[rec]);
        fl_graph_free(g);
        fl_pstore_free(s);
    }
    assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
    assert_memory_equal(grads[0][0], grads[0][1], sizeof grads[0][0]); /* inputs do not accumulate */
    assert_memory_equal(vals[0], vals[1], sizeof vals[0]);
}

static void test_record_errors(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 1, (int64_t[]){3});
    fl_id y = fl_relu(g, x);
    assert_int_equal(fl_graph_record(g, &e), -1);
    assert_non_null(strstr(e.msg, "not compiled"));
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    assert_int_equal(fl_graph_record(g, &e), 0);
    assert_int_equal(fl_graph_record(g, &e), 0); /* once is enough; again is a no-op */
    float v[3] = {-1, 0, 2}, o[3];
    assert_int_equal(fl_graph_set_input(g, x, v, sizeof v, &e), 0);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_read(g, y, o, sizeof o, &e), 0);
    assert_true(o[0] == 0 && o[1] == 0 && o[2] == 2);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_table_coverage), cmocka_unit_test(test_supports_op),
        cmocka_unit_test(test_cuda_refuses),      cmocka_unit_test(test_cuda_buffers),
        cmocka_unit_test(test_copy_in_out),
        cmocka_unit_test(test_replay_bitwise),    cmocka_unit_test(test_replay_seeded),
        cmocka_unit_test(test_record_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
