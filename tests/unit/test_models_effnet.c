/* EfficientNet structure: parameter counts of B0-B7 equal timm's (SPECS.md section 3) as exact
 * integers, the B7 layout (stem, stage widths and repeats, head, taps), preset parsing and bad
 * configurations. Graphs are built but never compiled: counting needs the parameter store only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/graph_internal.h"
#include "runtime/models/effnet.h"

/* Trainable parameters (buffers excluded, as timm's sum(p.numel() for p in parameters())). */
static int64_t count_params(const char *preset, int num_classes, int64_t *buffers) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset(preset, &c, &e), 0);
    c.num_classes = num_classes;
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    assert_non_null(s);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3});
    fl_effnet_out o;
    fl_id y = fl_effnet_build(g, x, &c, "", &o);
    if (y < 0) printf("%s\n", fl_graph_error(g));
    assert_true(y >= 0);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    int64_t n = 0, nb = 0;
    for (size_t i = 0; i < pl.n; i++) {
        if (pl.v[i].is_buffer) nb += (int64_t)pl.v[i].numel;
        else n += (int64_t)pl.v[i].numel;
    }
    if (buffers) *buffers = nb;
    fl_graph_free(g);
    fl_pstore_free(s);
    return n;
}

static void test_param_counts_b0_b7(void **state) {
    static const int64_t want[8] = {5288548, 7794184, 9109994, 12233232, 19341616, 30389784, 43040704, 66347960};
    for (int b = 0; b < 8; b++) {
        char name[64];
        snprintf(name, sizeof name, "efficientnet_b%d", b);
        int64_t n = count_params(name, 1000, NULL);
        printf("%s: %lld parameters (SPECS %lld)\n", name, (long long)n, (long long)want[b]);
        assert_true(n == want[b]);
        if (b == 3) { /* padding and eps change no shapes; one tf_ preset shows it (B7 is slow to init) */
            snprintf(name, sizeof name, "tf_efficientnet_b%d.ns_jft_in1k", b);
            assert_true(count_params(name, 1000, NULL) == want[b]);
        }
    }
    int64_t n = count_params("efficientnet_b0", 0, NULL);
    printf("efficientnet_b0 without classifier: %lld\n", (long long)n);
    assert_true(n == 4007548);
}

static void test_b7_layout(void **state) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("tf_efficientnet_b7", &c, &e), 0);
    assert_int_equal(c.tf, 1);
    assert_int_equal(c.resolution, 600);
    fl_effnet_arch a;
    assert_int_equal(fl_effnet_arch_of(&c, &a, &e), 0);
    static const int64_t ch[7] = {32, 48, 80, 160, 224, 384, 640};
    static const int rep[7] = {4, 7, 7, 10, 10, 13, 4};
    assert_int_equal(a.stem, 64);
    for (int s = 0; s < 7; s++) {
        assert_int_equal(a.out[s], ch[s]);
        assert_int_equal(a.repeats[s], rep[s]);
    }
    assert_int_equal(a.num_blocks, 55);
    assert_int_equal(a.num_features, 2560);

    /* taps at strides 2,4,8,16,32 with the stage widths; a 64 px input keeps it light */
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3});
    c.num_classes = 0;
    c.with_head = 0;
    fl_effnet_out o;
    assert_true(fl_effnet_build(g, x, &c, "backbone.", &o) >= 0);
    static const int64_t tch[5] = {32, 48, 80, 224, 640}, tsz[5] = {32, 16, 8, 4, 2};
    for (int t = 0; t < 5; t++) {
        int64_t sh[FL_MAX_DIMS];
        assert_int_equal(fl_graph_shape(g, o.tap[t], sh), 4);
        assert_int_equal(sh[1], tsz[t]);
        assert_int_equal(sh[2], tsz[t]);
        assert_int_equal(sh[3], tch[t]);
        assert_int_equal(o.tap_channels[t], tch[t]);
    }
    assert_int_equal(o.logits, -1);
    assert_non_null(fl_pstore_data(s, "backbone.blocks.6.3.conv_pwl.weight", NULL));
    assert_null(fl_pstore_data(s, "backbone.conv_head.weight", NULL));
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_rounding_and_small_models(void **state) {
    /* timm make_divisible: never below 90% of the scaled value, at least 8 */
    assert_int_equal(fl_effnet_round_channels(32, 1.1), 32);
    assert_int_equal(fl_effnet_round_channels(16, 1.1), 16);
    assert_int_equal(fl_effnet_round_channels(24, 1.2), 32);
    assert_int_equal(fl_effnet_round_channels(40, 1.4), 56);
    assert_int_equal(fl_effnet_round_channels(112, 1.8), 200);
    assert_int_equal(fl_effnet_round_channels(16, 0.25), 8);
    assert_int_equal(fl_effnet_round_channels(1280, 0), 1280);
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c, &e), 0);
    c.width = 0.25;
    c.depth = 0.25;
    fl_effnet_arch a;
    assert_int_equal(fl_effnet_arch_of(&c, &a, &e), 0);
    assert_int_equal(a.num_blocks, 7); /* ceil(r * 0.25) = 1 per stage */
    assert_int_equal(a.stem, 8);
    assert_int_equal(a.num_features, 320);
}

/* The drop-path nodes of a B0 graph, in creation order: their rates (up to max) and count. Each
 * must feed the residual add of its block, whose other input is the block's input. */
static int drop_path_nodes(double rate, fl_mode mode, double *rates, int max) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c, &e), 0);
    c.drop_path_rate = rate;
    c.drop_rate = 0;
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, mode, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){2, 64, 64, 3});
    fl_id y = fl_effnet_build(g, x, &c, "", NULL);
    if (y < 0) printf("%s\n", fl_graph_error(g));
    assert_true(y >= 0);
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        const fl_node *d = &g->nodes[i];
        if (d->kind != FL_NODE_OP || d->op != &fl_op_drop_path) continue;
        assert_true(d->i[0] == 1); /* per-sample mask (drop path), not element dropout */
        if (n < max) rates[n] = d->f[0];
        n++;
        int adds = 0;
        for (int j = i + 1; j < g->n; j++) {
            const fl_node *a = &g->nodes[j];
            if (a->kind != FL_NODE_OP) continue;
            for (int k = 0; k < a->nin; k++)
                if (a->in[k] == i) {
                    assert_true(a->op == &fl_op_add);
                    /* the other summand has the same shape: the block's identity branch */
                    const fl_node *skip = &g->nodes[a->in[1 - k]];
                    assert_memory_equal(skip->shape.d, d->shape.d, sizeof d->shape.d);
                    adds++;
                }
        }
        assert_int_equal(adds, 1);
    }
    fl_graph_free(g);
    fl_pstore_free(s);
    return n;
}

/* Stochastic depth sits on the residual branch of every block with a skip, at rate
 * rate * i / 16 for global block i: B0's skip blocks are the repeats after the first in stages
 * 2-6, blocks 2, 4, 6, 7, 9, 10, 12, 13, 14 (stage 1 maps 32 -> 16 channels, stage 7 has one
 * block). Rate 0 adds none. */
static void test_drop_path_on_skip_blocks(void **state) {
    static const int skip_blocks[9] = {2, 4, 6, 7, 9, 10, 12, 13, 14};
    double rates[16];
    assert_int_equal(drop_path_nodes(0.2, FL_MODE_TRAIN, rates, 16), 9);
    for (int k = 0; k < 9; k++) {
        printf("drop path %d: block %d, rate %.4f\n", k, skip_blocks[k], rates[k]);
        assert_true(fabs(rates[k] - 0.2 * skip_blocks[k] / 16) < 1e-12);
    }
    assert_int_equal(drop_path_nodes(0.0, FL_MODE_TRAIN, rates, 16), 0);
}

static void test_bad_configs(void **state) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("efficientnet_b8", &c, &e), -1);
    assert_non_null(strstr(e.msg, "efficientnet_b8"));
    assert_int_equal(fl_effnet_preset("resnet50", &c, &e), -1);
    assert_int_equal(fl_effnet_preset("efficientnet_b01", &c, &e), -1);
    assert_int_equal(fl_effnet_preset(NULL, &c, &e), -1);
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c, &e), 0);
    fl_effnet_arch a;
    fl_effnet_cfg bad = c;
    bad.width = 0;
    assert_int_equal(fl_effnet_arch_of(&bad, &a, &e), -1);
    assert_non_null(strstr(e.msg, "width"));
    bad = c;
    bad.drop_path_rate = 1.5;
    assert_int_equal(fl_effnet_arch_of(&bad, &a, &e), -1);
    bad = c;
    bad.num_classes = -3;
    assert_int_equal(fl_effnet_arch_of(&bad, &a, &e), -1);

    /* a bad input shape is a builder error, not a crash */
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 32, 32, 4});
    assert_int_equal(fl_effnet_build(g, x, &c, "", NULL), -1);
    assert_non_null(strstr(fl_graph_error(g), "3 channels"));
    assert_int_equal(fl_graph_compile(g, -1, &e), -1);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts_b0_b7),
        cmocka_unit_test(test_b7_layout),
        cmocka_unit_test(test_rounding_and_small_models),
        cmocka_unit_test(test_drop_path_on_skip_blocks),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
