/* Training parity: an MBConv block (+ GAP + linear head) and a small conv net train 20 AdamW
 * steps on a fixed batch (tests/fixtures/runtime/train_*.safetensors, from gen_runtime.py); the
 * trajectory of the 20 losses must match PyTorch's (float32) within 10x its own float32 noise:
 * the RMS change of our trajectory when the input and every initial parameter move by one ulp
 * (numcmp.h, nc_noise), which measures how much the 20 steps amplify rounding. Weight decay on conv/linear weights
 * only (the store's no_decay flags: BN parameters and biases), as in the PyTorch param groups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/optim.h"
#include "runtime/safetensors.h"
#include "tests/unit/runtime_blocks.h"
#include "tests/unit/support/numcmp.h"

#define NOISE_RUNS 3
#define NOISE_LIMIT 10.0

typedef fl_id (*net_fn)(fl_graph *g, fl_id x);

static fl_id net_mbconv(fl_graph *g, fl_id x) {
    fl_id h = blk_mbconv(g, x, "block.", 8, 32, 2, 3, 1e-3, 0.1);
    h = fl_reshape(g, fl_global_avgpool(g, h), 2, (int64_t[]){4, 8});
    return fl_linear_layer(g, h, "head", 5, 1);
}

static fl_id net_conv(fl_graph *g, fl_id x) {
    fl_id h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, x, "stem.conv", 8, 3, 2, 1, 1, 1, 0), "stem.bn", 1e-5, 0.1));
    h = fl_relu(g, fl_bn_layer(g, fl_conv2d_layer(g, h, "conv2.conv", 12, 3, 1, 1, 1, 1, 0), "conv2.bn", 1e-5, 0.1));
    h = fl_maxpool(g, h, 3, 1, 1);
    h = fl_reshape(g, fl_global_avgpool(g, h), 2, (int64_t[]){4, 12});
    return fl_linear_layer(g, h, "head", 5, 1);
}

/* One training run from the fixture's initial state (each float of the input and of every
 * parameter moved by one ulp when perturb >= 0): the loss of each of the 20 steps. */
static void train_run(fl_st_file *f, net_fn net, int perturb, float *losses, size_t steps) {
    fl_err e = {{0}};
    const fl_st_tensor *tx = fl_st_find(f, "in.x"), *ty = fl_st_find(f, "in.y");
    assert_non_null(tx);
    assert_non_null(ty);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", tx->ndim, tx->shape);
    fl_id y = fl_input_labels(g, "y", ty->shape[0]);
    fl_id loss = fl_softmax_ce(g, net(g, x), y, 0.0);
    if (fl_graph_compile(g, loss, &e) < 0) printf("%s\n", e.msg);
    assert_true(fl_graph_error(g)[0] == '\0');
    assert_int_equal(fl_st_to_f32(f, tx, fl_graph_value(g, x), tx->numel, &e), 0);
    if (perturb >= 0) nc_perturb_ulp(fl_graph_value(g, x), tx->numel, 99 + (uint64_t)perturb);
    assert_int_equal(fl_graph_set_input(g, y, ty->data, ty->numel * 4, &e), 0);
    int loaded = 0;
    for (size_t k = 0; k < f->n; k++) {
        if (strncmp(f->t[k].name, "param.", 6) != 0) continue;
        size_t n;
        float *dst = fl_pstore_data(s, f->t[k].name + 6, &n);
        if (!dst) printf("no parameter %s\n", f->t[k].name + 6);
        assert_non_null(dst);
        assert_int_equal(n, f->t[k].numel);
        assert_int_equal(fl_st_to_f32(f, &f->t[k], dst, n, &e), 0);
        if (perturb >= 0) nc_perturb_ulp(dst, n, 1000 * (uint64_t)perturb + k);
        loaded++;
    }
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    assert_true(loaded >= 10 && (size_t)loaded <= pl.n); /* every fixture tensor found a parameter */
    fl_optim_cfg cfg = fl_optim_defaults(FL_OPTIM_ADAMW, atof(fl_st_meta(f, "lr")));
    cfg.weight_decay = atof(fl_st_meta(f, "weight_decay"));
    fl_optim *o = fl_optim_create(&cfg, &pl, &e);
    assert_non_null(o);
    for (size_t t = 0; t < steps; t++) {
        fl_optim_zero_grad(o);
        assert_int_equal(fl_graph_forward(g, &e), 0);
        assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        assert_int_equal(fl_graph_read(g, loss, &losses[t], sizeof losses[t], &e), 0);
        fl_optim_step(o);
    }
    fl_optim_free(o);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void train_parity(const char *name, net_fn net) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/runtime/%s.safetensors", root ? root : ".", name);
    fl_err e = {{0}};
    fl_st_file *f = fl_st_open(path, &e);
    if (!f) printf("%s\n", e.msg);
    assert_non_null(f);
    float ref[20], ours[20], run[20];
    size_t steps;
    float *losses = fl_st_read_f32(f, "losses", &steps, &e);
    assert_non_null(losses);
    assert_true(steps == 20);
    memcpy(ref, losses, steps * sizeof(float));
    free(losses);
    train_run(f, net, -1, ours, steps);
    nc_spread sp;
    nc_spread_begin(&sp, ours, steps);
    for (int p = 0; p < NOISE_RUNS; p++) {
        train_run(f, net, p, run, steps);
        nc_spread_add(&sp, run);
    }
    for (size_t t = 0; t < steps; t++)
        printf("%s step %2zu: loss %.7f  torch %.7f  rel %.2e\n", name, t + 1, ours[t], ref[t],
               fabs((double)ours[t] - ref[t]) / fabs((double)ref[t]));
    nc_res r = nc_noise(NC_F32(ours), NC_F32(ref), steps, &sp);
    nc_res rel = nc_normwise(NC_F32(ours), NC_F32(ref), steps, 0);
    double allowed = nc_noise_allowed(&sp, NC_F32(ref), steps, NOISE_LIMIT) / nc_norm2(NC_F32(ref), steps);
    printf("%s: 20-step loss trajectory: noise ratio %.2f (limit %.0f), max rel %.2e, the criterion allows %.1e relative\n",
           name, r.fig, NOISE_LIMIT, rel.fig, allowed);
    assert_true(ref[steps - 1] < ref[0]); /* it does learn */
    assert_true(nc_ok(r, NOISE_LIMIT));
    assert_true(allowed < 1e-4); /* the noise is small: the comparison has teeth */
    nc_spread_free(&sp);
    fl_st_close(f);
}

static void test_mbconv_adamw_20_steps(void **state) { train_parity("train_mbconv", net_mbconv); }
static void test_convnet_adamw_20_steps(void **state) { train_parity("train_convnet", net_conv); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mbconv_adamw_20_steps),
        cmocka_unit_test(test_convnet_adamw_20_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
