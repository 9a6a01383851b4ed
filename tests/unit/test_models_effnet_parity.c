/* Forward parity with timm: full-size efficientnet_b0 and tf_efficientnet_b3 (batch 2, 64 px,
 * eval mode) with the deterministic weights of models_effnet_weights.h; the fixture holds timm's
 * forward_features and logits (tests/fixtures/gen_models_effnet.py, float64 reference). The max
 * relative error (max |ours - torch| / max |torch|) must stay under 1e-4 (see compare). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/effnet.h"
#include "tests/unit/models_effnet_weights.h"
#include "tests/unit/support/numcmp.h"

static fl_st_file *open_fixture(const char *name) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/models_effnet/%s", root ? root : ".", name);
    fl_err e = {{0}};
    fl_st_file *f = fl_st_open(path, &e);
    if (!f) printf("%s\n", e.msg);
    assert_non_null(f);
    return f;
}

/* Normwise (numcmp.h): max |ours - timm| / max |timm| per tensor; NaN anywhere fails. A
 * forward pass's float32 error is absolute at the scale of the output it builds (no reduction
 * here cancels against that scale), so this figure is stable across BLAS kernels: 3.4e-7 to
 * 8.8e-7 on OpenBLAS's Zen, Haswell, Sandybridge, Nehalem, Prescott, Core2, Atom and Barcelona
 * kernels, against a limit of 1e-4. */
#define LIMIT 1e-4

static int compare(fl_st_file *f, const char *what, const char *key, const float *ours, size_t n, nc_worst *w) {
    fl_err e = {{0}};
    size_t m = 0;
    float *ref = fl_st_read_f32(f, key, &m, &e);
    assert_non_null(ref);
    assert_int_equal(m, n);
    nc_res r = nc_normwise(NC_F32(ours), NC_F32(ref), n, 0);
    int ok = nc_report(what, r, LIMIT);
    nc_worst_add(w, what, r, LIMIT);
    free(ref);
    return ok;
}

static void timm_parity(const char *preset, const char *fixture) {
    fl_err e = {{0}};
    fl_effnet_cfg c;
    assert_int_equal(fl_effnet_preset(preset, &c, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){2, 64, 64, 3});
    fl_effnet_out o;
    fl_id y = fl_effnet_build(g, x, &c, "", &o);
    assert_true(y >= 0);
    fl_graph_mark_output(g, o.features);
    if (fl_graph_compile(g, y, &e) < 0) printf("%s\n", e.msg);
    assert_string_equal(fl_graph_error(g), "");
    assert_int_equal(mew_fill_store(s), 0);
    mew_values("input.x", 2 * 64 * 64 * 3, -1.0, 1.0, fl_graph_value(g, x));
    assert_int_equal(fl_graph_forward(g, &e), 0);
    fl_st_file *f = open_fixture(fixture);
    nc_worst w;
    nc_worst_init(&w);
    printf("%s vs timm (max rel error):\n", preset);
    int ok = compare(f, "features", "features", fl_graph_value(g, o.features), (size_t)fl_graph_numel(g, o.features), &w);
    ok &= compare(f, "logits", "logits", fl_graph_value(g, o.logits), (size_t)fl_graph_numel(g, o.logits), &w);
    nc_worst_print(&w, preset);
    assert_true(ok);
    fl_st_close(f);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_efficientnet_b0_matches_timm(void **state) {
    timm_parity("efficientnet_b0", "timm_efficientnet_b0.safetensors");
}

static void test_tf_efficientnet_b3_matches_timm(void **state) {
    timm_parity("tf_efficientnet_b3", "timm_tf_efficientnet_b3.safetensors");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_efficientnet_b0_matches_timm),
        cmocka_unit_test(test_tf_efficientnet_b3_matches_timm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
