/* Augmentations: YOLOv5 HSV against OpenCV (fixture), mosaic and mosaic + random affine keep
 * boxes on their objects, re-ID augmentation determinism and crop placement, colour ops. */
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

static char *fixpath(const char *name) {
    static char path[1200];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/image/%s", root ? root : ".", name);
    return path;
}

static fl_image *load_ppm(const char *name) {
    fl_err e = {{0}};
    fl_image *img = fl_image_read_ppm(fixpath(name), &e);
    if (!img) fail_msg("%s", e.msg);
    return img;
}

static void test_hsv_matches_opencv(void **state) {
    (void)state;
    fl_err e = {{0}};
    char *txt = fl_read_file(fixpath("cases.json"), NULL, &e);
    assert_non_null(txt);
    cJSON *cases = cJSON_Parse(txt);
    free(txt);
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cases) {
        if (strcmp(cJSON_GetObjectItem(c, "op")->valuestring, "hsv")) continue;
        fl_image *img = load_ppm(cJSON_GetObjectItem(c, "src")->valuestring);
        fl_image *ref = load_ppm(cJSON_GetObjectItem(c, "ref")->valuestring);
        const cJSON *g = cJSON_GetObjectItem(c, "gains");
        fl_hsv_apply_gains(img, (float)cJSON_GetArrayItem(g, 0)->valuedouble,
                           (float)cJSON_GetArrayItem(g, 1)->valuedouble,
                           (float)cJSON_GetArrayItem(g, 2)->valuedouble);
        int md = 0, nd = 0;
        for (int y = 0; y < img->height; y++)
            for (int x = 0; x < img->width * 3; x++) {
                int d = abs((int)fl_image_px(img, 0, y)[x] - (int)fl_image_px(ref, 0, y)[x]);
                md = d > md ? d : md;
                nd += d != 0;
            }
        printf("  %s: max diff %d, %d bytes differ\n", cJSON_GetObjectItem(c, "ref")->valuestring,
               md, nd);
        assert_true(md <= 1);
        fl_image_free(img), fl_image_free(ref);
        n++;
    }
    assert_int_equal(n, 2);
    cJSON_Delete(cases);
}

static const uint8_t COLORS[4][3] = {{230, 20, 20}, {20, 220, 30}, {30, 40, 230}, {240, 230, 20}};

static int is_color(const uint8_t *p, int k) {
    for (int c = 0; c < 3; c++)
        if (abs((int)p[c] - COLORS[k][c]) > 40) return 0;
    return 1;
}

static fl_image *tile(int w, int h, fl_box b, int k) {
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(w, h, 90, &e);
    for (int y = (int)b.y1; y < (int)b.y2; y++)
        for (int x = (int)b.x1; x < (int)b.x2; x++) memcpy(fl_image_px(img, x, y), COLORS[k], 3);
    return img;
}

/* Pixels of colour k all inside box b (tol) and the box hugs them (tight); returns how many. */
static int check_box(const fl_image *img, fl_box b, int k, float tol, float tight) {
    int lo_x = 1 << 30, lo_y = 1 << 30, hi_x = -1, hi_y = -1, n = 0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            if (!is_color(fl_image_px(img, x, y), k)) continue;
            if (!(x + 0.5f >= b.x1 - tol && x + 0.5f <= b.x2 + tol && y + 0.5f >= b.y1 - tol &&
                  y + 0.5f <= b.y2 + tol))
                fail_msg("colour %d pixel (%d,%d) outside box (%.2f,%.2f,%.2f,%.2f)", k, x, y,
                         b.x1, b.y1, b.x2, b.y2);
            lo_x = x < lo_x ? x : lo_x, hi_x = x > hi_x ? x : hi_x;
            lo_y = y < lo_y ? y : lo_y, hi_y = y > hi_y ? y : hi_y;
            n++;
        }
    if (n > 0 && tight >= 0) {
        if (!(fabsf(b.x1 - lo_x) <= tight && fabsf(b.x2 - (hi_x + 1)) <= tight &&
              fabsf(b.y1 - lo_y) <= tight && fabsf(b.y2 - (hi_y + 1)) <= tight))
            fail_msg("box (%.2f,%.2f,%.2f,%.2f) not tight on colour %d pixels [%d,%d]x[%d,%d]",
                     b.x1, b.y1, b.x2, b.y2, k, lo_x, hi_x + 1, lo_y, hi_y + 1);
    }
    return n;
}

static void test_mosaic_and_affine_keep_boxes_on_objects(void **state) {
    (void)state;
    const int s = 64;
    fl_yolo_aug a = fl_yolo_aug_defaults();
    int checked = 0;
    for (int seed = 0; seed < 30; seed++) {
        fl_image *imgs[4];
        fl_box bx[4][1];
        fl_box *bp[4];
        int nb[4] = {1, 1, 1, 1};
        for (int k = 0; k < 4; k++) {
            int w = 40 + 6 * k + seed % 5, h = s - 4 * k;
            bx[k][0] = (fl_box){(float)(4 + k), (float)(6 + 2 * k), (float)(w - 5), (float)(h - 7), k};
            imgs[k] = tile(w, h, bx[k][0], k);
            bp[k] = bx[k];
        }
        fl_rng rng;
        fl_rng_init(&rng, (uint64_t)seed, 11);
        fl_box out[8];
        int n = 0;
        fl_err e = {{0}};
        fl_image *m = fl_mosaic4(imgs, bp, nb, s, out, 8, &n, &rng, &e);
        assert_non_null(m);
        assert_int_equal(m->width, 2 * s);
        assert_int_equal(n, 4);
        for (int i = 0; i < n; i++) /* integer placement: exact */
            if (out[i].x2 > out[i].x1 && out[i].y2 > out[i].y1)
                assert_true(check_box(m, out[i], out[i].cls, 0, 0) > 0);
        fl_image *w = fl_random_perspective(m, out, &n, s, s, &a, &rng, &e);
        assert_non_null(w);
        assert_int_equal(w->width, s);
        /* A kept box must still hold pixels of its object (check_box checks the fit only where
         * it finds some: a box left over an empty region would otherwise pass). */
        for (int i = 0; i < n; i++) {
            if (check_box(w, out[i], out[i].cls, 1.0f, 2.5f) == 0)
                fail_msg("seed %d: box %d (class %d) kept without its object", seed, i, out[i].cls);
            checked++;
        }
        fl_image_flip_lr(w, out, n);
        for (int i = 0; i < n; i++)
            if (check_box(w, out[i], out[i].cls, 1.0f, 2.5f) == 0)
                fail_msg("seed %d: flipped box %d kept without its object", seed, i);
        for (int k = 0; k < 4; k++) fl_image_free(imgs[k]);
        fl_image_free(m), fl_image_free(w);
    }
    assert_true(checked > 30);
}

static fl_image *red_card(int w, int h, fl_box b) { return tile(w, h, b, 0); }

/* Red everywhere but the outermost ring, where the box edge may blend with the background
 * (the box edges need not fall on the pre-shrink grid). */
static void interior_red(const fl_image *o) {
    for (int y = 1; y < o->height - 1; y++)
        for (int x = 1; x < o->width - 1; x++)
            if (!is_color(fl_image_px(o, x, y), 0)) fail_msg("pixel (%d,%d) not red", x, y);
}

static void test_reid_augment(void **state) {
    (void)state;
    fl_box box = {20, 15, 80, 55, 0};
    fl_image *img = red_card(110, 70, box);
    fl_reid_aug a = fl_reid_aug_defaults();
    fl_err e = {{0}};
    fl_rng r1, r2, r3;
    fl_rng_init(&r1, 5, 1), fl_rng_init(&r2, 5, 1), fl_rng_init(&r3, 5, 2);
    fl_image *o1 = fl_reid_augment(img, box, &a, 48, 32, &r1, &e);
    fl_image *o2 = fl_reid_augment(img, box, &a, 48, 32, &r2, &e);
    fl_image *o3 = fl_reid_augment(img, box, &a, 48, 32, &r3, &e);
    assert_non_null(o1);
    assert_int_equal(o1->width, 48);
    assert_int_equal(o1->height, 32);
    assert_memory_equal(o1->data, o2->data, 48 * 32 * 3);
    assert_memory_not_equal(o1->data, o3->data, 48 * 32 * 3);
    fl_image_free(o1), fl_image_free(o2), fl_image_free(o3);
    /* Geometry only (no colour changes): the crop stays inside the box: mostly red. */
    a.jitter_p = a.gray_p = a.blur_p = a.cutout_p = 0;
    a.margin = 0;
    for (int s = 0; s < 20; s++) {
        fl_rng r;
        fl_rng_init(&r, (uint64_t)s, 9);
        fl_image *o = fl_reid_augment(img, box, &a, 48, 32, &r, &e);
        assert_non_null(o);
        int red = 0;
        for (int i = 0; i < 48 * 32; i++) red += is_color(o->data + 3 * i, 0);
        assert_true(red > 48 * 32 * 7 / 10); /* rotation corners may show the fill */
        fl_image_free(o);
    }
    /* Disabled: exactly the box resized; the border of the box is red too. */
    a.enabled = 0;
    fl_rng r;
    fl_rng_init(&r, 0, 0);
    fl_image *o = fl_reid_augment(img, box, &a, 30, 20, &r, &e);
    interior_red(o);
    fl_image_free(o);
    /* Big downscale goes through the area pre-shrink and still lands on the box. */
    fl_image *big = red_card(900, 600, (fl_box){200, 100, 700, 500, 0});
    o = fl_reid_augment(big, (fl_box){200, 100, 700, 500, 0}, &a, 40, 32, &r, &e);
    assert_non_null(o);
    interior_red(o);
    fl_image_free(o), fl_image_free(big);
    assert_null(fl_reid_augment(img, (fl_box){200, 200, 300, 300, 0}, &a, 30, 20, &r, &e));
    assert_non_null(strstr(e.msg, "outside"));
    fl_image_free(img);
}

static void test_colour_ops(void **state) {
    (void)state;
    fl_image *img = load_ppm("src_67x53.ppm");
    fl_err e = {{0}};
    fl_image *c = fl_image_clone(img, &e);
    fl_image_adjust_brightness(c, 1.0f);
    fl_image_adjust_saturation(c, 1.0f);
    fl_image_adjust_contrast(c, 1.0f);
    assert_memory_equal(c->data, img->data, c->stride * c->height);
    fl_image_adjust_hue(c, 0.0f); /* float HSV round trip: within 1 */
    for (size_t i = 0; i < c->stride * c->height; i++) assert_true(abs(c->data[i] - img->data[i]) <= 1);
    fl_image_adjust_saturation(c, 0.0f); /* grey */
    for (int i = 0; i < c->width * c->height; i++) {
        const uint8_t *p = c->data + 3 * i;
        assert_true(abs(p[0] - p[1]) <= 1 && abs(p[1] - p[2]) <= 1);
    }
    fl_image_adjust_contrast(c, 0.0f); /* constant */
    for (int i = 1; i < c->width * c->height; i++) assert_true(abs(c->data[3 * i] - c->data[0]) <= 1);
    fl_image_free(c);
    c = fl_image_clone(img, &e);
    fl_image_grayscale(c);
    for (int i = 0; i < c->width * c->height; i++)
        assert_true(c->data[3 * i] == c->data[3 * i + 1] && c->data[3 * i + 1] == c->data[3 * i + 2]);
    fl_image_free(c);
    /* Blur: keeps a constant image, smooths pixel noise. */
    fl_image *flat = fl_image_new_filled(20, 10, 77, &e);
    assert_int_equal(fl_image_gaussian_blur(flat, 1.5f, &e), 0);
    for (int i = 0; i < 20 * 10 * 3; i++) assert_int_equal(flat->data[i], 77);
    fl_image_free(flat);
    fl_image_free(img);
    img = fl_image_new(40, 30, &e);
    fl_rng nr;
    fl_rng_init(&nr, 1, 1);
    for (size_t i = 0; i < img->stride * img->height; i++) img->data[i] = (uint8_t)fl_rng_u32(&nr);
    c = fl_image_clone(img, &e);
    assert_int_equal(fl_image_gaussian_blur(c, 1.0f, &e), 0);
    double d0 = 0, d1 = 0;
    for (int y = 0; y < c->height; y++)
        for (int x = 1; x < c->width; x++) {
            d0 += abs(fl_image_px(img, x, y)[0] - fl_image_px(img, x - 1, y)[0]);
            d1 += abs(fl_image_px(c, x, y)[0] - fl_image_px(c, x - 1, y)[0]);
        }
    printf("  neighbour differences: %.0f before blur, %.0f after\n", d0, d1);
    assert_true(d1 < 0.3 * d0);
    fl_image_free(c);
    /* augment_hsv with zero gains draws nothing and changes nothing. */
    fl_yolo_aug a = fl_yolo_aug_defaults();
    a.hsv_h = a.hsv_s = a.hsv_v = 0;
    fl_rng r, r0;
    fl_rng_init(&r, 3, 3);
    r0 = r;
    c = fl_image_clone(img, &e);
    fl_augment_hsv(c, &a, &r);
    assert_memory_equal(&r, &r0, sizeof r);
    assert_memory_equal(c->data, img->data, c->stride * c->height);
    fl_image_free(c);
    fl_image_free(img);
}

static void test_perspective_draw_ranges(void **state) {
    (void)state;
    fl_yolo_aug a = fl_yolo_aug_defaults();
    fl_rng r;
    fl_rng_init(&r, 77, 0);
    for (int i = 0; i < 1000; i++) {
        fl_perspective_params p = fl_perspective_draw(&a, &r);
        assert_true(p.px == 0 && p.py == 0 && p.angle == 0 && p.shear_x == 0 && p.shear_y == 0);
        assert_true(p.scale >= 0.5f && p.scale <= 1.5f);
        assert_true(p.tx >= 0.4f && p.tx <= 0.6f && p.ty >= 0.4f && p.ty <= 0.6f);
    }
    /* Identity params on a same-size canvas: the matrix is the identity. */
    fl_perspective_params id = {0, 0, 0, 1, 0, 0, 0.5f, 0.5f};
    fl_mat3 M = fl_perspective_matrix(&id, 64, 48, 64, 48);
    fl_mat3 I = fl_mat3_identity();
    for (int i = 0; i < 9; i++) assert_true(fabs(M.m[i] - I.m[i]) < 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hsv_matches_opencv),
        cmocka_unit_test(test_mosaic_and_affine_keep_boxes_on_objects),
        cmocka_unit_test(test_reid_augment),
        cmocka_unit_test(test_colour_ops),
        cmocka_unit_test(test_perspective_draw_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
