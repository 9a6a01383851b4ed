/* Loading timm-named state dicts into an EfficientNet: a file written from one model loads into
 * another by name (values equal); a checkpoint with a missing key, an unexpected key or a wrong
 * shape fails and the error lists every one of them, and nothing is written on failure.
 * Both the model loader (fl_effnet_load, which can skip the classifier/head of a timm file) and
 * the runtime's strict fl_st_load_params are exercised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/models/effnet.h"
#include "tests/unit/support/numcmp.h"

typedef struct net {
    fl_pstore *s;
    fl_graph *g;
    fl_param_list pl;
} net;

static void make_net(net *n, uint64_t seed, int classes, int head, const char *prefix) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("tf_efficientnet_b0", &c, &e), 0);
    c.width = 0.25;
    c.depth = 0.25;
    c.num_classes = classes;
    c.with_head = head;
    n->s = fl_pstore_new(FL_F32, seed, &e);
    n->g = fl_graph_new(n->s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(n->g, "x", 4, (int64_t[]){1, 32, 32, 3});
    assert_true(fl_effnet_build(n->g, x, &c, prefix, NULL) >= 0);
    assert_int_equal(fl_pstore_params(n->s, &n->pl, &e), 0);
}

static void free_net(net *n) {
    fl_graph_free(n->g);
    fl_pstore_free(n->s);
}

static char *tmp_path(const char *leaf) {
    return fl_strdupf("/tmp/fl_effnet_load_%d_%s.safetensors", (int)getpid(), leaf);
}

/* Writes the list minus entry `drop` (-1: none), with entry `reshape` given a wrong shape, plus an
 * extra tensor named `extra` (NULL: none). */
static void write_variant(const char *path, const fl_param_list *pl, const char *drop, const char *reshape,
                          const char *extra) {
    fl_err e = {{0}};
    fl_st_entry *v = calloc(pl->n + 1, sizeof *v);
    int64_t bad[1] = {3};
    float three[3] = {1, 2, 3};
    size_t k = 0;
    for (size_t i = 0; i < pl->n; i++) {
        if (drop && strcmp(pl->v[i].name, drop) == 0) continue;
        v[k].name = pl->v[i].name;
        v[k].dtype = FL_ST_F32;
        v[k].ndim = pl->v[i].ndim;
        v[k].shape = pl->v[i].shape;
        v[k].data = pl->v[i].data;
        if (reshape && strcmp(pl->v[i].name, reshape) == 0) {
            v[k].ndim = 1;
            v[k].shape = bad;
            v[k].data = three;
        }
        k++;
    }
    if (extra) v[k++] = (fl_st_entry){extra, FL_ST_F32, 1, bad, three};
    assert_int_equal(fl_st_write(path, v, k, NULL, 0, &e), 0);
    free(v);
}

static void test_roundtrip_by_name(void **state) {
    net a, b;
    make_net(&a, 1, 10, 1, "");
    make_net(&b, 2, 10, 1, "backbone.");
    char *p = tmp_path("rt");
    fl_err e = {{0}};
    assert_int_equal(fl_st_write_params(p, &a.pl, NULL, 0, &e), 0);
    fl_st_set *set = fl_st_open_set(p, &e);
    assert_non_null(set);
    assert_int_equal(fl_effnet_load(b.s, set, "backbone.", NULL, &e), 0);
    /* every parameter and buffer arrived under its prefixed name, bit for bit */
    assert_int_equal(fl_pstore_params(a.s, &a.pl, &e), 0);
    size_t compared = 0;
    for (size_t i = 0; i < a.pl.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "backbone.%s", a.pl.v[i].name);
        size_t n2 = 0;
        const float *w2 = fl_pstore_data(b.s, name, &n2);
        if (!w2) printf("%s missing after load\n", name);
        assert_true(w2 && n2 == a.pl.v[i].numel);
        assert_memory_equal(a.pl.v[i].data, w2, n2 * sizeof(float));
        compared++;
    }
    printf("round trip by name: %zu tensors equal\n", compared);
    assert_true(compared > 50);
    size_t n1 = 0;
    assert_non_null(fl_pstore_data(a.s, "blocks.5.0.conv_pwl.weight", &n1));
    assert_true(n1 > 0);
    fl_st_close_set(set);
    unlink(p);
    free(p);
    free_net(&a);
    free_net(&b);
}

static void test_timm_file_into_features_only_model(void **state) {
    /* a full timm state dict (head + classifier) into a tap-only backbone: strict unless skipped */
    net full, feat;
    make_net(&full, 1, 10, 1, "");
    make_net(&feat, 2, 0, 0, "");
    char *p = tmp_path("full");
    fl_err e = {{0}};
    assert_int_equal(fl_st_write_params(p, &full.pl, NULL, 0, &e), 0);
    fl_st_set *set = fl_st_open_set(p, &e);
    assert_int_equal(fl_effnet_load(feat.s, set, "", NULL, &e), -1);
    printf("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "unexpected"));
    assert_non_null(strstr(e.msg, "classifier.weight"));
    assert_non_null(strstr(e.msg, "conv_head.weight"));
    static const char *const skip[] = {"conv_head.", "bn2.", "classifier.", NULL};
    assert_int_equal(fl_effnet_load(feat.s, set, "", skip, &e), 0);
    fl_st_close_set(set);
    unlink(p);
    free(p);
    free_net(&full);
    free_net(&feat);
}

/* Every tensor of n equals the snapshot (the same order as fl_pstore_params). */
static int unchanged(net *n, const float *snap) {
    fl_err e = {{0}};
    assert_int_equal(fl_pstore_params(n->s, &n->pl, &e), 0);
    for (size_t i = 0, o = 0; i < n->pl.n; o += n->pl.v[i].numel, i++)
        if (memcmp(snap + o, n->pl.v[i].data, n->pl.v[i].numel * 4) != 0) {
            printf("%s changed\n", n->pl.v[i].name);
            return 0;
        }
    return 1;
}

static void test_missing_unexpected_misshaped_listed(void **state) {
    net a, b;
    make_net(&a, 1, 10, 1, "");
    make_net(&b, 2, 10, 1, "");
    char *p = tmp_path("bad");
    fl_err e = {{0}};
    write_variant(p, &a.pl, "blocks.3.0.se.conv_reduce.bias", "blocks.1.0.bn2.running_var", "blocks.9.0.conv_dw.weight");
    fl_st_set *set = fl_st_open_set(p, &e);
    assert_non_null(set);
    /* a snapshot of every tensor of b: a failed load must leave all of them untouched */
    assert_int_equal(fl_pstore_params(b.s, &b.pl, &e), 0);
    size_t total = 0;
    for (size_t i = 0; i < b.pl.n; i++) total += b.pl.v[i].numel;
    float *snap = malloc(total * sizeof(float));
    assert_non_null(snap);
    for (size_t i = 0, o = 0; i < b.pl.n; o += b.pl.v[i].numel, i++) memcpy(snap + o, b.pl.v[i].data, b.pl.v[i].numel * 4);
    assert_int_equal(fl_effnet_load(b.s, set, "", NULL, &e), -1);
    printf("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "1 missing key(s): blocks.3.0.se.conv_reduce.bias"));
    assert_non_null(strstr(e.msg, "1 unexpected key(s): blocks.9.0.conv_dw.weight"));
    assert_non_null(strstr(e.msg, "1 shape mismatch(es): blocks.1.0.bn2.running_var (file [3], model [48])"));
    assert_true(unchanged(&b, snap)); /* nothing written */

    /* the runtime's strict loader agrees (a fresh view: every fl_pstore_params call, including
     * the one inside fl_effnet_load, may move the previous list) */
    assert_int_equal(fl_pstore_params(b.s, &b.pl, &e), 0);
    assert_int_equal(fl_st_load_params(set, &b.pl, FL_ST_STRICT, NULL, &e), -1);
    printf("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "blocks.3.0.se.conv_reduce.bias"));
    assert_non_null(strstr(e.msg, "blocks.1.0.bn2.running_var"));
    assert_true(unchanged(&b, snap));
    free(snap);
    fl_st_close_set(set);
    unlink(p);
    free(p);
    free_net(&a);
    free_net(&b);
}

/* timm's own state dict of tf_efficientnet_b0 (width 0.25, depth 0.25, 10 classes; I64
 * num_batches_tracked) loads strictly by name and reproduces timm's eval logits. */
static void test_real_timm_state_dict(void **state) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/models_effnet/timm_tf_b0_small_state_dict.safetensors", root ? root : ".");
    fl_err e = {{0}};
    fl_st_set *set = fl_st_open_set(path, &e);
    if (!set) printf("%s\n", e.msg);
    assert_non_null(set);
    const fl_st_tensor *tx = fl_st_set_find(set, "__input.x", NULL), *tl = fl_st_set_find(set, "__logits", NULL);
    assert_true(tx && tl && tx->ndim == 4);
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset("tf_efficientnet_b0", &c, &e), 0);
    c.width = 0.25;
    c.depth = 0.25;
    c.num_classes = 10;
    fl_pstore *s = fl_pstore_new(FL_F32, 3, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, tx->shape);
    fl_id y = fl_effnet_build(g, x, &c, "", NULL);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    static const char *const skip[] = {"__", NULL};
    if (fl_effnet_load(s, set, "", skip, &e) < 0) printf("%s\n", e.msg);
    assert_string_equal(e.msg, "");
    float *nbt = fl_pstore_data(s, "blocks.2.0.bn3.num_batches_tracked", NULL);
    assert_non_null(nbt);
    assert_true(*nbt == 7.0f);
    assert_int_equal(fl_st_to_f32(set->files[0], tx, fl_graph_value(g, x), tx->numel, &e), 0);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    float ref[64];
    assert_true(tl->numel <= 64);
    assert_int_equal(fl_st_to_f32(set->files[0], tl, ref, tl->numel, &e), 0);
    /* normwise, as the parity test (test_models_effnet_parity.c): 1.7e-7..5.5e-7 on 8 kernel sets */
    nc_res r = nc_normwise(NC_F32(fl_graph_value(g, y)), NC_F32(ref), tl->numel, 0);
    assert_true(nc_report("timm state dict: logits, max rel error", r, 1e-4));
    fl_st_close_set(set);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_by_name),
        cmocka_unit_test(test_timm_file_into_features_only_model),
        cmocka_unit_test(test_missing_unexpected_misshaped_listed),
        cmocka_unit_test(test_real_timm_state_dict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
