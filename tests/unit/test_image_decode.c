/* JPEG decode against PIL references (colour, grayscale, CMYK, 1/4 draft), EXIF orientation,
 * scale choice, encode round trip, and every bad-input case: empty, not a JPEG, truncated,
 * corrupt, absurd dimensions, malformed EXIF, random mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/image/image.h"

static const char *fixdir(void) {
    static char buf[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/image", root ? root : ".");
    return buf;
}

static char *fixpath(const char *name) {
    static char path[1200];
    snprintf(path, sizeof path, "%s/%s", fixdir(), name);
    return path;
}

static uint8_t *read_fix(const char *name, size_t *len) {
    fl_err e = {{0}};
    uint8_t *b = (uint8_t *)fl_read_file(fixpath(name), len, &e);
    if (!b) fail_msg("%s", e.msg);
    return b;
}

static int max_diff(const fl_image *a, const fl_image *b, double *mean) {
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    int m = 0;
    double s = 0;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width * 3; x++) {
            int d = abs((int)fl_image_px(a, 0, y)[x] - (int)fl_image_px(b, 0, y)[x]);
            m = d > m ? d : m;
            s += d;
        }
    if (mean) *mean = s / (a->width * a->height * 3.0);
    return m;
}

static void test_decode_matches_pil(void **state) {
    (void)state;
    size_t len;
    char *txt = (char *)read_fix("cases.json", &len);
    cJSON *cases = cJSON_Parse(txt);
    free(txt);
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *op = cJSON_GetObjectItem(c, "op")->valuestring;
        if (strcmp(op, "decode") && strcmp(op, "orient")) continue;
        const char *jpeg = cJSON_GetObjectItem(c, "jpeg")->valuestring;
        fl_err e = {{0}};
        fl_decode_opts o = {0};
        const cJSON *tw = cJSON_GetObjectItem(c, "target_w"), *th = cJSON_GetObjectItem(c, "target_h");
        if (tw) o.target_w = tw->valueint, o.target_h = th->valueint;
        fl_decode_info info;
        fl_image *img = fl_jpeg_read(fixpath(jpeg), &o, &info, &e);
        if (!img) fail_msg("%s", e.msg);
        fl_image *ref = fl_image_read_ppm(fixpath(cJSON_GetObjectItem(c, "ref")->valuestring), &e);
        assert_non_null(ref);
        double mean;
        int md = max_diff(img, ref, &mean);
        printf("  %-16s %dx%d (1/%d, orientation %d, %d comp): max diff %d, mean %.3f\n", jpeg,
               img->width, img->height, info.scale_denom, info.orientation, info.components, md,
               mean);
        if (!strcmp(op, "decode")) {
            assert_int_equal(info.scale_denom, cJSON_GetObjectItem(c, "scale_denom")->valueint);
            assert_true(md <= 1); /* same libjpeg-turbo as PIL; CMYK through PIL's formula */
        } else {
            /* Upright: quadrant colours where they belong (JPEG noise only at the edges). */
            assert_int_equal(info.orientation, cJSON_GetObjectItem(c, "orientation")->valueint);
            assert_true(mean < 3.0);
            const uint8_t *tl = fl_image_px(img, 5, 5), *tr = fl_image_px(img, 36, 8);
            assert_true(tl[0] > 230 && tl[1] > 230 && tl[2] > 230); /* the white mark */
            assert_true(tr[1] > 150 && tr[0] < 90);                  /* green top right */
        }
        fl_image_free(img), fl_image_free(ref);
        n++;
    }
    assert_int_equal(n, 13);
    cJSON_Delete(cases);
}

static void test_scale_choice(void **state) {
    (void)state;
    size_t len;
    uint8_t *jpg = read_fix("photo.jpg", &len); /* 128 x 96 */
    struct { int tw, th, denom, w, h; } cases[] = {
        {0, 0, 1, 128, 96},  {16, 12, 8, 16, 12}, {17, 12, 4, 32, 24}, {30, 20, 4, 32, 24},
        {33, 20, 2, 64, 48}, {64, 49, 1, 128, 96}, {500, 500, 1, 128, 96},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fl_err e = {{0}};
        fl_decode_opts o = {.target_w = cases[i].tw, .target_h = cases[i].th};
        fl_decode_info info;
        fl_image *img = fl_jpeg_decode(jpg, len, "photo.jpg", &o, &info, &e);
        assert_non_null(img);
        assert_int_equal(info.scale_denom, cases[i].denom);
        assert_int_equal(img->width, cases[i].w);
        assert_int_equal(img->height, cases[i].h);
        assert_int_equal(info.src_width, 128);
        fl_image_free(img);
    }
    free(jpg);
    /* Orientation 6 (stored 32x48, upright 48x32): the target applies to the upright image. */
    jpg = read_fix("orient_6.jpg", &len);
    fl_err e = {{0}};
    fl_decode_opts o = {.target_w = 24, .target_h = 16};
    fl_decode_info info;
    fl_image *img = fl_jpeg_decode(jpg, len, "orient_6.jpg", &o, &info, &e);
    assert_non_null(img);
    assert_int_equal(info.scale_denom, 2);
    assert_int_equal(img->width, 24);
    assert_int_equal(img->height, 16);
    assert_int_equal(info.src_width, 48);
    fl_image_free(img);
    o.ignore_exif = 1; /* stored orientation kept: 24x16 is not covered by 16x24 (1/2) */
    img = fl_jpeg_decode(jpg, len, "orient_6.jpg", &o, &info, &e);
    assert_non_null(img);
    assert_int_equal(img->width, 32);
    assert_int_equal(img->height, 48);
    fl_image_free(img);
    free(jpg);
}

static void test_encode_round_trip(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_image *src = fl_image_read_ppm(fixpath("src_67x53.ppm"), &e);
    assert_non_null(src);
    char path[] = "/tmp/fl_test_enc_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fl_jpeg_write(src, 95, path, &e), 0);
    fl_image *back = fl_jpeg_read(path, NULL, NULL, &e);
    assert_non_null(back);
    double mean;
    max_diff(src, back, &mean);
    assert_true(mean < 6.0);
    uint8_t *buf;
    size_t n;
    assert_int_equal(fl_jpeg_encode(src, 0, &buf, &n, &e), -1);
    assert_non_null(strstr(e.msg, "quality"));
    unlink(path);
    fl_image_free(src), fl_image_free(back);
}

/* Decodes bytes that must fail; the message names the file and contains `what`. */
static void expect_fail(const uint8_t *d, size_t n, const fl_decode_opts *o, const char *what) {
    fl_err e = {{0}};
    fl_image *img = fl_jpeg_decode(d, n, "bad/sample.jpg", o, NULL, &e);
    if (img) fail_msg("decode succeeded, expected '%s'", what);
    if (!strstr(e.msg, "bad/sample.jpg") || !strstr(e.msg, what))
        fail_msg("message '%s' lacks the file name or '%s'", e.msg, what);
}

/* Offset of the SOF0 marker's height field. */
static size_t sof_dims(const uint8_t *d, size_t n) {
    for (size_t i = 2; i + 9 < n; i++)
        if (d[i] == 0xFF && (d[i + 1] == 0xC0 || d[i + 1] == 0xC2)) return i + 5;
    fail_msg("no SOF");
    return 0;
}

static void test_bad_inputs(void **state) {
    (void)state;
    size_t len;
    uint8_t *jpg = read_fix("photo.jpg", &len);
    expect_fail(jpg, 0, NULL, "empty file");
    expect_fail((const uint8_t *)"\x89PNG\r\n", 6, NULL, "not a JPEG");
    expect_fail(jpg, 1, NULL, "not a JPEG");
    expect_fail(jpg, len * 6 / 10, NULL, "truncated");
    expect_fail(jpg, 200, NULL, "corrupt JPEG header"); /* cut inside the headers */
    /* A PNG file under a .jpg name, through the file API: the error names the path. */
    fl_err e = {{0}};
    assert_null(fl_jpeg_read(fixpath("png_bytes.jpg"), NULL, NULL, &e));
    assert_non_null(strstr(e.msg, "png_bytes.jpg"));
    assert_non_null(strstr(e.msg, "not a JPEG"));
    assert_null(fl_jpeg_read("/nonexistent/dir/x.jpg", NULL, NULL, &e));
    assert_non_null(strstr(e.msg, "/nonexistent/dir/x.jpg"));
    /* Zero-byte file on disk. */
    char path[] = "/tmp/fl_test_zero_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_null(fl_jpeg_read(path, NULL, NULL, &e));
    assert_non_null(strstr(e.msg, "empty"));
    assert_non_null(strstr(e.msg, path));
    unlink(path);

    uint8_t *bad = malloc(len);
    /* Absurd dimensions: 65535 x 65535 in the SOF (libjpeg's own limit is 65500). */
    memcpy(bad, jpg, len);
    size_t s = sof_dims(bad, len);
    bad[s] = bad[s + 1] = bad[s + 2] = bad[s + 3] = 0xFF;
    expect_fail(bad, len, NULL, "65500");
    /* 60000 x 60000: a valid header, refused by the pixel cap before any pixel allocation. */
    bad[s] = bad[s + 2] = 0xEA, bad[s + 1] = bad[s + 3] = 0x60;
    expect_fail(bad, len, NULL, "above the limit");
    /* A configurable cap: the 128x96 photo against a 10,000-pixel limit. */
    fl_decode_opts small = {.max_pixels = 10000};
    expect_fail(jpg, len, &small, "above the limit");
    /* Zero height in the SOF. */
    memcpy(bad, jpg, len);
    bad[s] = bad[s + 1] = 0;
    expect_fail(bad, len, NULL, "");
    /* Broken SOF marker type (an unsupported / bogus frame). */
    memcpy(bad, jpg, len);
    bad[s - 4] = 0xCF; /* SOF15: lossless arithmetic, unsupported */
    expect_fail(bad, len, NULL, "");
    free(bad);
    free(jpg);
}

/* A benign warning first (junk bytes before a scan marker), then truncation: libjpeg keeps only
 * the first warning's text, so the truncation must be caught structurally. */
static void test_truncation_after_a_benign_warning(void **state) {
    (void)state;
    size_t len;
    uint8_t *jpg = read_fix("progressive.jpg", &len);
    size_t sos[2] = {0, 0};
    int k = 0;
    for (size_t i = 2; i + 1 < len && k < 2; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xDA) sos[k++] = i;
    assert_int_equal(k, 2);
    uint8_t *junk = malloc(len + 3);
    memcpy(junk, jpg, sos[1]);
    junk[sos[1]] = 1, junk[sos[1] + 1] = 2, junk[sos[1] + 2] = 3;
    memcpy(junk + sos[1] + 3, jpg + sos[1], len - sos[1]);
    fl_err e = {{0}};
    fl_image *img = fl_jpeg_decode(junk, len + 3, "junk.jpg", NULL, NULL, &e);
    if (!img) fail_msg("benign warning refused: %s", e.msg);
    fl_image_free(img);
    expect_fail(junk, len + 3 - 20, NULL, "truncated"); /* inside the last scan's data */
    /* Cut inside a later table segment: a fatal error after the warning, still refused. */
    expect_fail(junk, (len + 3) * 8 / 10, NULL, "corrupt JPEG data");
    free(junk), free(jpg);
}

static void test_malformed_exif_is_ignored(void **state) {
    (void)state;
    size_t len;
    uint8_t *jpg = read_fix("orient_6.jpg", &len);
    assert_int_equal(fl_jpeg_exif_orientation(jpg, len), 6);
    /* Find the APP1 Exif block and corrupt its IFD offset and entry count. */
    size_t p = 2;
    while (p + 4 < len && !(jpg[p + 1] == 0xE1)) p += 2 + (size_t)(jpg[p + 2] << 8 | jpg[p + 3]);
    assert_true(p + 20 < len);
    uint8_t *tiff = jpg + p + 10;
    uint8_t save[8];
    memcpy(save, tiff + 4, 4);
    tiff[4] = tiff[5] = tiff[6] = tiff[7] = 0x7F; /* IFD offset far past the end */
    assert_int_equal(fl_jpeg_exif_orientation(jpg, len), 1);
    memcpy(tiff + 4, save, 4);
    tiff[0] = 'X'; /* bad byte order */
    assert_int_equal(fl_jpeg_exif_orientation(jpg, len), 1);
    fl_err e = {{0}};
    fl_image *img = fl_jpeg_decode(jpg, len, "x.jpg", NULL, NULL, &e);
    assert_non_null(img); /* still decodes, stored orientation */
    assert_int_equal(img->width, 32);
    fl_image_free(img);
    /* Every truncation of the marker area is safe. */
    for (size_t n = 0; n < 200 && n < len; n++) (void)fl_jpeg_exif_orientation(jpg, n);
    free(jpg);
}

/* Random byte mutations: every result is an image or a clean error, never a crash (ASan). */
static void test_mutations_never_crash(void **state) {
    (void)state;
    size_t len;
    uint8_t *jpg = read_fix("photo.jpg", &len);
    uint8_t *m = malloc(len);
    fl_rng rng;
    fl_rng_init(&rng, 7, 0);
    int ok = 0, err = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(m, jpg, len);
        int k = 1 + (int)fl_rng_below(&rng, 8);
        for (int j = 0; j < k; j++) m[fl_rng_below(&rng, (uint32_t)len)] = (uint8_t)fl_rng_u32(&rng);
        size_t n = it % 3 == 0 ? fl_rng_below(&rng, (uint32_t)len) : len;
        fl_err e = {{0}};
        fl_decode_opts o = {.target_w = it % 2 ? 40 : 0, .target_h = it % 2 ? 30 : 0};
        fl_image *img = fl_jpeg_decode(m, n, "mut.jpg", &o, NULL, &e);
        if (img) ok++;
        else {
            err++;
            assert_non_null(strstr(e.msg, "mut.jpg"));
        }
        fl_image_free(img);
    }
    printf("  mutations: %d decoded, %d clean errors\n", ok, err);
    assert_true(err > 0);
    free(m), free(jpg);
}

static void test_ppm_errors(void **state) {
    (void)state;
    char path[] = "/tmp/fl_test_ppm_XXXXXX";
    int fd = mkstemp(path);
    assert_true(write(fd, "P6\n4 4\n255\nabc", 14) == 14);
    close(fd);
    fl_err e = {{0}};
    assert_null(fl_image_read_ppm(path, &e));
    assert_non_null(strstr(e.msg, "truncated"));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_pil),
        cmocka_unit_test(test_scale_choice),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_truncation_after_a_benign_warning),
        cmocka_unit_test(test_malformed_exif_is_ignored),
        cmocka_unit_test(test_mutations_never_crash),
        cmocka_unit_test(test_ppm_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
