/* Crop geometry (stages/crop/crop.h): decode scales, detector boxes mapped back to full-size
 * pixels at every JPEG decode scale (found again in the real decoded and letterboxed pixels of
 * non-square images), margin and clamp, and the square output stretched or padded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/crop/crop.h"

static void test_denoms(void **state) {
    (void)state;
    /* 3600 px long side, detector 640: 1/4 gives 900 >= 640, 1/8 gives 450 < 640. */
    assert_int_equal(fl_crop_denom_long(3600, 2400, 640), 4);
    assert_int_equal(fl_crop_denom_long(2400, 3600, 640), 4);
    assert_int_equal(fl_crop_denom_long(384, 256, 160), 2);
    assert_int_equal(fl_crop_denom_long(384, 256, 128), 2);
    assert_int_equal(fl_crop_denom_long(100, 50, 128), 1);
    assert_int_equal(fl_crop_denom_long(1279, 10, 160), 8); /* ceil(1279/8) = 160 */
    assert_int_equal(fl_crop_denom_long(1272, 10, 160), 4); /* 159 */
    /* a 1000 x 600 region for 256 px crops: 1/2 keeps 300 on the short side, 1/4 only 150 */
    assert_int_equal(fl_crop_denom_region(1000, 600, 256, 0), 2);
    assert_int_equal(fl_crop_denom_region(1000, 600, 256, 1), 2); /* long side: 1000/4 = 250 */
    assert_int_equal(fl_crop_denom_region(1100, 600, 256, 1), 4);
    assert_int_equal(fl_crop_denom_region(200, 200, 256, 0), 1);
}

static fl_image *scene(int w, int h, fl_box r) {
    fl_err e;
    fl_image *img = fl_image_new_filled(w, h, 30, &e);
    for (int y = (int)r.y1; y < (int)r.y2; y++)
        for (int x = (int)r.x1; x < (int)r.x2; x++) memset(fl_image_px(img, x, y), 230, 3);
    return img;
}

/* The bright rectangle's extent in img (continuous pixels). */
static fl_box find_bright(const fl_image *img) {
    fl_box b = {1e9f, 1e9f, -1, -1, -1};
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            if (fl_image_px(img, x, y)[0] > 130) {
                b.x1 = fminf(b.x1, (float)x), b.y1 = fminf(b.y1, (float)y);
                b.x2 = fmaxf(b.x2, (float)x + 1), b.y2 = fmaxf(b.y2, (float)y + 1);
            }
    return b;
}

static void check_scene(int W, int H, fl_box truth, int imgsz) {
    fl_err e = {{0}};
    fl_image *img = scene(W, H, truth);
    uint8_t *jpg;
    size_t len;
    assert_int_equal(fl_jpeg_encode(img, 98, &jpg, &len, &e), 0);
    static const int ds[] = {1, 2, 4, 8};
    for (int k = 0; k < 4; k++) {
        int d = ds[k];
        fl_decode_opts o = {.target_w = (W + d - 1) / d};
        fl_decode_info info;
        fl_image *dec = fl_jpeg_decode(jpg, len, "scene", &o, &info, &e);
        assert_non_null(dec);
        assert_int_equal(info.scale_denom, d);
        assert_int_equal(info.src_width, W);
        fl_letterbox lb;
        fl_image *l = fl_letterbox_apply(dec, imgsz, imgsz, 1, FL_CROP_FILL, NULL, 0, &lb, &e);
        assert_non_null(l);
        fl_box found = fl_crop_unletterbox(find_bright(l), &lb, W, H);
        /* within two detector pixels (plus a decoded pixel) of the truth */
        float tol = 2.0f * (float)W / (float)lb.new_w + (float)d;
        if (fabsf(found.x1 - truth.x1) > tol || fabsf(found.x2 - truth.x2) > tol ||
            fabsf(found.y1 - truth.y1) > tol || fabsf(found.y2 - truth.y2) > tol)
            fail_msg("%dx%d at 1/%d, detector %d: found (%.1f %.1f %.1f %.1f), truth (%.1f %.1f "
                     "%.1f %.1f), tolerance %.1f", W, H, d, imgsz, found.x1, found.y1, found.x2,
                     found.y2, truth.x1, truth.y1, truth.x2, truth.y2, tol);
        /* the exact inverse of letterbox's own forward box map: the truth in decoded pixels,
         * mapped by letterbox, comes back to the truth in full-size pixels */
        fl_box t2 = {truth.x1 * dec->width / W, truth.y1 * dec->height / H, truth.x2 * dec->width / W,
                     truth.y2 * dec->height / H, -1};
        fl_image *l2 = fl_letterbox_apply(dec, imgsz, imgsz, 1, FL_CROP_FILL, &t2, 1, NULL, &e);
        fl_box back = fl_crop_unletterbox(t2, &lb, W, H);
        assert_true(fabsf(back.x1 - truth.x1) < 0.01f && fabsf(back.y1 - truth.y1) < 0.01f &&
                    fabsf(back.x2 - truth.x2) < 0.01f && fabsf(back.y2 - truth.y2) < 0.01f);
        fl_image_free(l2);
        fl_image_free(l);
        fl_image_free(dec);
    }
    free(jpg);
    fl_image_free(img);
}

static void test_unletterbox_every_scale(void **state) {
    (void)state;
    check_scene(1597, 901, (fl_box){400, 300, 1000, 700, -1}, 160);  /* landscape, pad top */
    check_scene(901, 1597, (fl_box){100, 900, 500, 1500, -1}, 128);  /* portrait, pad left */
    check_scene(1203, 1203, (fl_box){0, 0, 600, 1203, -1}, 128);     /* square, edge box */
}

static void test_widen_clamp(void **state) {
    (void)state;
    fl_box b = fl_crop_widen((fl_box){10, 20, 50, 60, 0}, 0.1f, 100, 100);
    assert_true(fabsf(b.x1 - 6) < 1e-4 && fabsf(b.y1 - 16) < 1e-4 && fabsf(b.x2 - 54) < 1e-4 &&
                fabsf(b.y2 - 64) < 1e-4);
    b = fl_crop_widen((fl_box){2, 5, 98, 99, 0}, 0.25f, 100, 100); /* clamped on every side */
    assert_true(b.x1 == 0 && b.y1 == 0 && b.x2 == 100 && b.y2 == 100);
    b = fl_crop_widen((fl_box){10, 20, 50, 60, 0}, 0, 100, 100);
    assert_true(b.x1 == 10 && b.y2 == 60);
    /* detector boxes reaching into the padding are clamped to the image */
    fl_letterbox lb = {.scale = 0.5f, .left = 0, .top = 16, .new_w = 64, .new_h = 32};
    fl_box u = fl_crop_unletterbox((fl_box){-5, 0, 70, 64, 0}, &lb, 128, 64);
    assert_true(u.x1 == 0 && u.y1 == 0 && u.x2 == 128 && u.y2 == 64);
    u = fl_crop_unletterbox((fl_box){16, 24, 32, 40, 0}, &lb, 128, 64);
    assert_true(u.x1 == 32 && u.y1 == 16 && u.x2 == 64 && u.y2 == 48);
}

static void test_square_output(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(100, 50, 0, &e);
    for (int y = 0; y < 50; y++)
        for (int x = 0; x < 100; x++) fl_image_px(img, x, y)[0] = 200;
    fl_image *pad = fl_crop_square(img, 64, 1, &e);
    assert_non_null(pad);
    assert_int_equal(pad->width, 64);
    assert_int_equal(pad->height, 64);
    for (int y = 0; y < 64; y++) {
        const uint8_t *p = fl_image_px(pad, 32, y);
        if (y < 16 || y >= 48) assert_true(p[0] == FL_CROP_FILL && p[1] == FL_CROP_FILL && p[2] == FL_CROP_FILL);
        else assert_true(p[0] == 200 && p[1] == 0);
    }
    fl_image *str = fl_crop_square(img, 64, 0, &e);
    assert_int_equal(str->height, 64);
    assert_true(fl_image_px(str, 32, 0)[0] == 200 && fl_image_px(str, 32, 63)[0] == 200);
    /* portrait: padded left and right */
    fl_image *tall = fl_image_new_filled(30, 90, 200, &e);
    fl_image *tp = fl_crop_square(tall, 60, 1, &e);
    assert_true(fl_image_px(tp, 0, 30)[0] == FL_CROP_FILL && fl_image_px(tp, 20, 30)[0] == 200 &&
                fl_image_px(tp, 59, 30)[0] == FL_CROP_FILL);
    fl_image_free(tall);
    fl_image_free(tp);
    fl_image_free(pad);
    fl_image_free(str);
    fl_image_free(img);
}

/* A region in full-size pixels cut from a half-size decode covers the same picture. */
static void test_cut_from_scaled_decode(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_box r = {300, 200, 700, 500, -1};
    fl_image *full = scene(1000, 800, r);
    fl_image *half = fl_image_resize(full, 500, 400, FL_INTERP_AREA, &e);
    fl_image *c = fl_crop_cut(half, 1000, 800, r, 64, 0, &e);
    assert_non_null(c);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) assert_true(fl_image_px(c, x, y)[0] > 200);
    fl_image *w = fl_crop_cut(half, 1000, 800, (fl_box){200, 100, 800, 600, -1}, 60, 0, &e);
    assert_true(fl_image_px(w, 2, 2)[0] < 60 && fl_image_px(w, 30, 30)[0] > 200);
    fl_image_free(w);
    fl_image_free(c);
    fl_image_free(half);
    fl_image_free(full);
}

static void test_iou(void **state) {
    (void)state;
    fl_box a = {0, 0, 10, 10, -1}, b = {5, 0, 15, 10, -1}, c = {20, 20, 30, 30, -1};
    assert_true(fabsf(fl_box_iou(a, b) - 50.0f / 150.0f) < 1e-6);
    assert_true(fl_box_iou(a, c) == 0);
    assert_true(fabsf(fl_box_iou(a, a) - 1) < 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_denoms),
        cmocka_unit_test(test_unletterbox_every_scale),
        cmocka_unit_test(test_widen_clamp),
        cmocka_unit_test(test_square_output),
        cmocka_unit_test(test_cut_from_scaled_decode),
        cmocka_unit_test(test_iou),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
