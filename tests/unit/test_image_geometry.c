/* Geometry against OpenCV references (tests/fixtures/gen_image.py): resize (linear, area), warps
 * (YOLOv5 random_perspective matrices), letterbox; crop/flip/box transforms on synthetic
 * rectangles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/image/image.h"

static const char *fixdir(void) {
    static char buf[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/image", root ? root : ".");
    return buf;
}

static fl_image *load_ppm(const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", fixdir(), name);
    fl_err e = {{0}};
    fl_image *img = fl_image_read_ppm(path, &e);
    if (!img) fail_msg("%s", e.msg);
    return img;
}

static cJSON *load_cases(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/cases.json", fixdir());
    fl_err e = {{0}};
    char *txt = fl_read_file(path, NULL, &e);
    if (!txt) fail_msg("%s", e.msg);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    return j;
}

/* Max abs difference; counts differing bytes in *ndiff. */
static int max_diff(const fl_image *a, const fl_image *b, int *ndiff) {
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    int m = 0, n = 0;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width * 3; x++) {
            int d = abs((int)fl_image_px(a, 0, y)[x] - (int)fl_image_px(b, 0, y)[x]);
            m = d > m ? d : m;
            n += d != 0;
        }
    if (ndiff) *ndiff = n;
    return m;
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_non_null(v);
    return v->valuedouble;
}
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static void test_resize_warp_letterbox_match_opencv(void **state) {
    (void)state;
    cJSON *cases = load_cases();
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *op = jstr(c, "op");
        if (strcmp(op, "resize") && strcmp(op, "warp") && strcmp(op, "letterbox")) continue;
        fl_err e = {{0}};
        fl_image *src = load_ppm(jstr(c, "src")), *ref = load_ppm(jstr(c, "ref")), *out = NULL;
        int w = (int)jnum(c, "w"), h = (int)jnum(c, "h");
        if (!strcmp(op, "resize")) {
            fl_interp it = strcmp(jstr(c, "interp"), "area") ? FL_INTERP_LINEAR : FL_INTERP_AREA;
            out = fl_image_resize(src, w, h, it, &e);
        } else if (!strcmp(op, "letterbox")) {
            fl_letterbox lb;
            out = fl_letterbox_apply(src, w, h, 1, 114, NULL, 0, &lb, &e);
        } else {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "params");
            fl_perspective_params pp = {(float)jnum(p, "px"), (float)jnum(p, "py"),
                                        (float)jnum(p, "angle"), (float)jnum(p, "scale"),
                                        (float)jnum(p, "shear_x"), (float)jnum(p, "shear_y"),
                                        (float)jnum(p, "tx"), (float)jnum(p, "ty")};
            fl_mat3 M = fl_perspective_matrix(&pp, src->width, src->height, w, h);
            const cJSON *mj = cJSON_GetObjectItemCaseSensitive(c, "matrix");
            for (int i = 0; i < 9; i++) {
                double ref_m = cJSON_GetArrayItem(mj, i)->valuedouble;
                /* params are floats here, doubles in Python: agree to float precision */
                assert_true(fabs(M.m[i] - ref_m) <= 1e-5 * fmax(1, fabs(ref_m)));
                M.m[i] = ref_m; /* warp with the reference matrix: tests the warp alone */
            }
            int affine = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "affine"));
            out = fl_image_warp(src, M, w, h, affine, 114, &e);
        }
        if (!out) fail_msg("%s: %s", jstr(c, "ref"), e.msg);
        int nd = 0, md = max_diff(out, ref, &nd);
        printf("  %-40s max diff %d, %d of %d bytes differ\n", jstr(c, "ref"), md, nd,
               out->width * out->height * 3);
        assert_true(md <= 1);
        fl_image_free(src), fl_image_free(ref), fl_image_free(out);
        n++;
    }
    assert_int_equal(n, 14);
    cJSON_Delete(cases);
}

static fl_image *card_with_rect(int w, int h, fl_box r) {
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(w, h, 40, &e);
    assert_non_null(img);
    for (int y = (int)r.y1; y < (int)r.y2; y++)
        for (int x = (int)r.x1; x < (int)r.x2; x++) {
            uint8_t *p = fl_image_px(img, x, y);
            p[0] = 230, p[1] = 20, p[2] = 20;
        }
    return img;
}

static int is_red(const uint8_t *p) { return p[0] > 180 && p[1] < 70 && p[2] < 70; }

/* Every red pixel lies inside the box (tol px) and the box hugs them (within tight px). */
static void assert_box_on_rect(const fl_image *img, fl_box b, float tol, float tight) {
    int lo_x = 1 << 30, lo_y = 1 << 30, hi_x = -1, hi_y = -1;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            if (!is_red(fl_image_px(img, x, y))) continue;
            if (!(x + 0.5f >= b.x1 - tol && x + 0.5f <= b.x2 + tol && y + 0.5f >= b.y1 - tol &&
                  y + 0.5f <= b.y2 + tol))
                fail_msg("red pixel (%d,%d) outside box (%.1f,%.1f,%.1f,%.1f)", x, y, b.x1, b.y1,
                         b.x2, b.y2);
            lo_x = x < lo_x ? x : lo_x, hi_x = x > hi_x ? x : hi_x;
            lo_y = y < lo_y ? y : lo_y, hi_y = y > hi_y ? y : hi_y;
        }
    assert_true(hi_x >= 0);
    assert_true(fabsf(b.x1 - lo_x) <= tight && fabsf(b.x2 - (hi_x + 1)) <= tight);
    assert_true(fabsf(b.y1 - lo_y) <= tight && fabsf(b.y2 - (hi_y + 1)) <= tight);
}

static void test_crop_margin_and_clamp(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_image *img = card_with_rect(50, 40, (fl_box){10, 10, 20, 30, 0});
    fl_box used;
    fl_image *c = fl_image_crop(img, (fl_box){10, 10, 20, 30, 0}, 0.1f, &used, &e);
    assert_non_null(c);
    assert_true(used.x1 == 9 && used.y1 == 8 && used.x2 == 21 && used.y2 == 32);
    assert_int_equal(c->width, 12);
    assert_int_equal(c->height, 24);
    assert_true(is_red(fl_image_px(c, 1, 2)) && !is_red(fl_image_px(c, 0, 0)));
    fl_image_free(c);
    c = fl_image_crop(img, (fl_box){40, 30, 60, 45, 0}, 0.5f, &used, &e); /* clamped */
    assert_non_null(c);
    assert_true(used.x2 == 50 && used.y2 == 40 && used.x1 == 30 && used.y1 == 22);
    fl_image_free(c);
    c = fl_image_crop(img, (fl_box){0, 0, 0, 0, 0}, 0, &used, &e); /* empty: whole image */
    assert_non_null(c);
    assert_int_equal(c->width, 50);
    fl_image_free(c);
    assert_null(fl_image_crop(img, (fl_box){60, 50, 70, 60, 0}, 0, NULL, &e));
    assert_non_null(strstr(e.msg, "outside"));
    fl_image_free(img);
}

static void test_flip_keeps_box_on_object(void **state) {
    (void)state;
    fl_box b = {5, 8, 17, 30, 0};
    fl_image *img = card_with_rect(41, 37, b);
    fl_image_flip_lr(img, &b, 1);
    assert_true(b.x1 == 24 && b.x2 == 36);
    assert_box_on_rect(img, b, 0, 0);
    fl_image_free(img);
}

static void test_random_affine_keeps_box_on_object(void **state) {
    (void)state;
    fl_yolo_aug a = fl_yolo_aug_defaults();
    a.degrees = 15, a.shear = 5; /* exercise rotation and shear too */
    int kept = 0;
    for (int seed = 0; seed < 40; seed++) {
        fl_box b = {20, 18, 52, 40, 0};
        fl_image *img = card_with_rect(80, 64, b);
        fl_rng rng;
        fl_rng_init(&rng, (uint64_t)seed, 3);
        int n = 1;
        fl_err e = {{0}};
        fl_image *out = fl_random_perspective(img, &b, &n, 80, 64, &a, &rng, &e);
        assert_non_null(out);
        if (n == 1) {
            assert_box_on_rect(out, b, 1.0f, 2.5f);
            kept++;
        }
        fl_image_free(img), fl_image_free(out);
    }
    assert_true(kept > 30);
}

static void test_letterbox_boxes_and_offsets(void **state) {
    (void)state;
    fl_box b = {10, 6, 30, 20, 0};
    fl_image *img = card_with_rect(60, 30, b);
    fl_letterbox lb;
    fl_err e = {{0}};
    fl_image *out = fl_letterbox_apply(img, 64, 64, 1, 114, &b, 1, &lb, &e);
    assert_non_null(out);
    assert_int_equal(lb.new_w, 64);
    assert_int_equal(lb.new_h, 32);
    assert_int_equal(lb.top, 16);
    assert_int_equal(lb.left, 0);
    assert_int_equal(fl_image_px(out, 3, 3)[0], 114);
    assert_box_on_rect(out, b, 1.0f, 1.5f);
    fl_image_free(out), fl_image_free(img);
}

static void test_bad_geometry_arguments(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_image *img = card_with_rect(10, 10, (fl_box){1, 1, 2, 2, 0});
    assert_null(fl_image_resize(img, 0, 5, FL_INTERP_LINEAR, &e));
    assert_non_null(strstr(e.msg, "out of range"));
    assert_null(fl_image_new(70000, 2, &e));
    fl_mat3 z = {{1, 2, 3, 2, 4, 6, 0, 0, 0}};
    assert_null(fl_image_warp(img, z, 5, 5, 0, 114, &e));
    assert_non_null(strstr(e.msg, "singular"));
    fl_image_free(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_warp_letterbox_match_opencv),
        cmocka_unit_test(test_crop_margin_and_clamp),
        cmocka_unit_test(test_flip_keeps_box_on_object),
        cmocka_unit_test(test_random_affine_keeps_box_on_object),
        cmocka_unit_test(test_letterbox_boxes_and_offsets),
        cmocka_unit_test(test_bad_geometry_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
