/* Full-size YOLOv5s (depth 0.33, width 0.50, 80 classes, 7,235,389 parameters) raw head parity
 * with the PyTorch port of tests/fixtures/gen_models_yolo.py (gen_full) without stored weights:
 * every parameter and buffer comes from its name through models_effnet_weights.h's generator
 * (conv weights scaled by YOLO_FULL_GAIN, as yolo_range there), and the fixture
 * tests/fixtures/models_yolo/full_io.safetensors holds only the input (1 x 64 x 64, NHWC) and the
 * three heads [1, ny, nx, 255] of the float64 reference in eval mode. Each head must reach
 * max |ours - ref| / max |ref| < 1e-4 (numcmp.h, nc_normwise; NaN fails): a forward pass's
 * error is absolute at the output's scale, 2.2e-6..3.5e-6 on eight OpenBLAS kernel sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/yolo.h"
#include "tests/unit/models_effnet_weights.h"
#include "tests/unit/support/numcmp.h"

/* FULL_GAIN of gen_models_yolo.py: effnet's U(+-sqrt(3 / fan_in)) lets the BN offsets swamp the
 * signal in YOLOv5s, so the heads would barely depend on the input; 1.45 keeps them input-driven
 * (|p| <= 15) without the growth that starts at 1.5. */
#define YOLO_FULL_GAIN 1.45
#define YOLO_FULL_SIZE 64

/* yolo_range of the script: det_range, with >= 2-d weights scaled by the gain. */
static void yolo_range(const fl_param *p, double *lo, double *hi) {
    mew_range(p, lo, hi);
    if (p->ndim >= 2) {
        *lo *= YOLO_FULL_GAIN;
        *hi *= YOLO_FULL_GAIN;
    }
}

/* Fills every parameter and buffer but the anchors (config-derived) and num_batches_tracked, the
 * ones gen_full skips; returns how many tensors were filled. */
static size_t yolo_fill_store(fl_pstore *s) {
    fl_err e = {{0}};
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    size_t filled = 0;
    for (size_t i = 0; i < pl.n; i++) {
        const fl_param *p = &pl.v[i];
        if (mew_ends(p->name, "num_batches_tracked") || mew_ends(p->name, ".anchors")) continue;
        double lo, hi;
        yolo_range(p, &lo, &hi);
        mew_values(p->name, p->numel, lo, hi, p->data);
        filled++;
    }
    return filled;
}

static fl_st_file *open_fixture(void) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/models_yolo/full_io.safetensors", root ? root : ".");
    fl_err e = {{0}};
    fl_st_file *f = fl_st_open(path, &e);
    if (!f) printf("%s\n", e.msg);
    assert_non_null(f);
    return f;
}

static float *read_ref(fl_st_file *f, int i, size_t want) {
    fl_err e = {{0}};
    char key[32];
    snprintf(key, sizeof key, "out.p%d", i);
    size_t n = 0;
    float *ref = fl_st_read_f32(f, key, &n, &e);
    if (!ref) printf("%s\n", e.msg);
    assert_non_null(ref);
    assert_int_equal(n, want);
    return ref;
}

static void test_yolov5s_full_heads_match_pytorch(void **state) {
    fl_err e = {{0}};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_size(&c, 's', 80, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, YOLO_FULL_SIZE, YOLO_FULL_SIZE, 3});
    fl_yolo_heads h;
    if (fl_yolo_build(g, s, x, &c, &h, &e) < 0) printf("%s\n", e.msg);
    for (int i = 0; i < FL_YOLO_NL; i++) fl_graph_mark_output(g, h.p[i]);
    if (fl_graph_compile(g, -1, &e) < 0) printf("%s\n", e.msg);
    assert_string_equal(fl_graph_error(g), "");
    assert_int_equal(fl_yolo_param_count(s, &e), 7235389);
    /* 57 convs x 5 (weight, BN gamma, beta, mean, var) + 3 Detect convs x 2: gen_full fills 291 */
    assert_int_equal(yolo_fill_store(s), 291);

    fl_st_file *f = open_fixture();
    assert_string_equal(fl_st_meta(f, "params"), "7235389");
    /* the stored input is the generator's "input.x": checks the C and Python hashes agree bit
     * for bit (the weights, which are not stored, come from the same function) */
    size_t n = 0;
    float *xin = fl_st_read_f32(f, "in.x", &n, &e);
    assert_non_null(xin);
    assert_int_equal(n, (size_t)fl_graph_numel(g, x));
    float *xv = fl_graph_value(g, x);
    mew_values("input.x", n, -1.0, 1.0, xv);
    assert_memory_equal(xv, xin, n * sizeof(float));
    free(xin);

    assert_int_equal(fl_graph_forward(g, &e), 0);
    float *ref[FL_YOLO_NL];
    nc_worst w;
    nc_worst_init(&w);
    for (int i = 0; i < FL_YOLO_NL; i++) {
        size_t m = fl_yolo_level_numel(&h, i);
        ref[i] = read_ref(f, i, m);
        nc_res r = nc_normwise(NC_F32(fl_graph_value(g, h.p[i])), NC_F32(ref[i]), m, 0);
        double mx = nc_max_abs(NC_F32(ref[i]), m);
        char what[96];
        snprintf(what, sizeof what, "yolov5s full P%d [1, %lld, %lld, %d], max|ref| %.3f", i + 3, (long long)h.ny[i],
                 (long long)h.nx[i], FL_YOLO_NA * h.no, mx);
        assert_true(mx > 1.0); /* the reference is not the near-constant output of a dead net */
        assert_true(nc_report(what, r, 1e-4));
        nc_worst_add(&w, what, r, 1e-4);
    }

    nc_worst_print(&w, "yolov5s full heads vs PyTorch, max rel error");

    /* The comparison has teeth: another input moves every head far past the tolerance. */
    mew_values("input.y", n, -1.0, 1.0, xv);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    for (int i = 0; i < FL_YOLO_NL; i++) {
        nc_res r = nc_normwise(NC_F32(fl_graph_value(g, h.p[i])), NC_F32(ref[i]), fl_yolo_level_numel(&h, i), 0);
        printf("  other input, P%d: relative difference %.3g\n", i + 3, r.fig);
        assert_true(r.fig > 1e-2 && isfinite(r.fig));
        free(ref[i]);
    }
    fl_st_close(f);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* A missing head in the fixture is a clear error, not a crash. */
static void test_fixture_missing_key_is_an_error(void **state) {
    fl_err e = {{0}};
    fl_st_file *f = open_fixture();
    size_t n = 0;
    assert_null(fl_st_read_f32(f, "out.p3", &n, &e));
    assert_true(strlen(e.msg) > 0);
    printf("missing key: %s\n", e.msg);
    fl_st_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yolov5s_full_heads_match_pytorch),
        cmocka_unit_test(test_fixture_missing_key_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
