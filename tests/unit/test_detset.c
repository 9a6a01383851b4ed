/* The detector's training set (stages/detector/dataset.c) on small generated data: the hold-out
 * by individual (disjoint, seeded, independent of the box file's order), both box formats,
 * species classes, clipping, skipped unreadable JPEGs, EXIF-rotated and far-in SOF headers, the
 * letterboxed ground truth against the loader's own boxes, and every bad-input error with its
 * file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stages/detector/dataset.h"

#define NIMG 16 /* train images t00..t15; individual i(k/2), species by k % 3 */

typedef struct fx {
    char dir[64];
    char *train_csv, *train_dir, *test_csv, *test_dir;
} fx;

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static char *pathf(const fx *t, const char *name) {
    return fl_strdupf("%s/%s", t->dir, name);
}

static void write_jpeg(const char *path, int w, int h) {
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(w, h, 90, &e);
    assert_non_null(img);
    if (fl_jpeg_write(img, 90, path, &e) != 0) fail_msg("%s", e.msg);
    fl_image_free(img);
}

static const char *SPECIES[3] = {"beluga", "kiler_whale", "bottlenose_dolphin"};

static int setup(void **state) {
    fx *t = calloc(1, sizeof *t);
    strcpy(t->dir, "/tmp/fluke_detset_XXXXXX");
    if (!mkdtemp(t->dir)) return -1;
    t->train_csv = pathf(t, "train.csv");
    t->train_dir = pathf(t, "train_images");
    t->test_csv = pathf(t, "sample_submission.csv");
    t->test_dir = pathf(t, "test_images");
    mkdir(t->train_dir, 0755);
    mkdir(t->test_dir, 0755);
    char csv[4096] = "image,species,individual_id\n";
    for (int k = 0; k < NIMG; k++) {
        char *p = fl_strdupf("%s/t%02d.jpg", t->train_dir, k);
        write_jpeg(p, 40 + 4 * k, 30 + 2 * (k % 5)); /* varied, landscape */
        free(p);
        size_t l = strlen(csv);
        snprintf(csv + l, sizeof csv - l, "t%02d.jpg,%s,ind%d\n", k, SPECIES[k % 3], k / 2);
    }
    put(t->train_csv, csv);
    put(t->test_csv, "image,predictions\nq0.jpg,a b c d new_individual\nq1.jpg,a b c d e\n");
    for (int k = 0; k < 2; k++) {
        char *p = fl_strdupf("%s/q%d.jpg", t->test_dir, k);
        write_jpeg(p, 50, 40);
        free(p);
    }
    *state = t;
    return 0;
}

static int teardown(void **state) {
    fx *t = *state;
    fl_err e;
    fl_remove_tree(t->dir, &e);
    free(t->train_csv), free(t->train_dir), free(t->test_csv), free(t->test_dir);
    free(t);
    return 0;
}

/* A bbox box file for images [from, to) with one box each, one test row and one "[]" row;
 * reversed row order when rev. Returns its path (malloc'd). */
static char *bbox_file(const fx *t, const char *name, int from, int to, int rev) {
    char text[8192] = "image,bbox,conf,width,height\nq0.jpg,[[1 2 10 12]],0.9,50,40\n";
    for (int j = from; j < to; j++) {
        int k = rev ? to - 1 - (j - from) : j;
        size_t l = strlen(text);
        snprintf(text + l, sizeof text - l, "t%02d.jpg,\"[[%d %d %d %d]]\",1.0,0,0\n", k, 2 + k, 3,
                 20 + k, 25);
    }
    size_t l = strlen(text);
    snprintf(text + l, sizeof text - l, "t%02d.jpg,[],0,0,0\n", to);
    char *p = pathf(t, name);
    put(p, text);
    return p;
}

static fl_detset_opts opts(const fx *t, const char *boxes, uint64_t seed) {
    return (fl_detset_opts){.train_csv = t->train_csv,
                            .train_dir = t->train_dir,
                            .test = t->test_csv,
                            .boxes = boxes,
                            .classes = FL_DETSET_ONE_CLASS,
                            .val_share = 0.25,
                            .seed = seed};
}

static void build_ok(const fl_detset_opts *o, fl_detset *d) {
    fl_err e = {{0}};
    if (fl_detset_build(o, d, &e) != 0) fail_msg("build: %s", e.msg);
}

/* The set of validation image names as a bit mask over t00..t15. */
static unsigned val_mask(const fl_detset *d) {
    unsigned m = 0;
    for (int i = 0; i < d->nval; i++)
        m |= 1u << atoi(d->val_info[i].image + 1);
    return m;
}

static void test_split_by_individual(void **state) {
    fx *t = *state;
    char *bp = bbox_file(t, "boxes.csv", 0, 14, 0);
    fl_detset_opts o = opts(t, bp, 7);
    fl_detset d;
    build_ok(&o, &d);
    assert_int_equal(d.n.rows, 16);
    assert_int_equal(d.n.rows_test, 1);
    assert_int_equal(d.n.rows_empty, 1);
    assert_int_equal(d.n.rows_used, 14);
    assert_int_equal(d.n.boxed, 14);
    assert_int_equal(d.n.boxes, 14);
    assert_int_equal(d.n.individuals, 7);
    assert_int_equal(d.n.val_individuals, 2); /* round(0.25 * 7) */
    assert_int_equal(d.ntrain + d.nval, 14);
    assert_int_equal(d.nval, 4); /* two images per individual */
    assert_int_equal(d.nclasses, 1);
    assert_string_equal(d.classes[0], "animal");
    for (int i = 0; i < d.ntrain; i++)
        for (int j = 0; j < d.nval; j++)
            assert_string_not_equal(d.train_info[i].individual, d.val_info[j].individual);
    /* train.csv order, sizes from the headers, boxes and paths as given */
    for (int i = 1; i < d.ntrain; i++)
        assert_true(strcmp(d.train_info[i - 1].image, d.train_info[i].image) < 0);
    for (int i = 0; i < d.ntrain; i++) {
        int k = atoi(d.train_info[i].image + 1);
        assert_int_equal(d.train_info[i].width, 40 + 4 * k);
        assert_int_equal(d.train_info[i].height, 30 + 2 * (k % 5));
        assert_int_equal(d.train[i].nboxes, 1);
        assert_int_equal(d.train[i].label, -1);
        assert_true(d.train[i].boxes[0].x1 == 2 + k && d.train[i].boxes[0].x2 == 20 + k);
        assert_int_equal(d.train[i].boxes[0].cls, 0);
        assert_non_null(strstr(d.train[i].path, d.train_info[i].image));
        assert_int_equal(d.train_info[i].line, k + 3);
    }
    assert_string_equal(d.clip_warning, "");
    assert_string_equal(d.bad_warning, "");
    unsigned m7 = val_mask(&d);
    fl_detset_free(&d);

    /* The same seed, rows reversed: the same split. Another seed: a different one (some seed of
     * a few must differ). */
    char *rp = bbox_file(t, "boxes_rev.csv", 0, 14, 1);
    o.boxes = rp;
    build_ok(&o, &d);
    assert_int_equal(val_mask(&d), m7);
    for (int i = 1; i < d.ntrain; i++) /* still in train.csv order */
        assert_true(strcmp(d.train_info[i - 1].image, d.train_info[i].image) < 0);
    fl_detset_free(&d);
    build_ok(&o, &d);
    assert_int_equal(val_mask(&d), m7);
    fl_detset_free(&d);
    int differs = 0;
    for (uint64_t s = 8; s < 12; s++) {
        o.seed = s;
        build_ok(&o, &d);
        differs += val_mask(&d) != m7;
        fl_detset_free(&d);
    }
    assert_true(differs >= 1);
    /* Shares: at least one individual on each side. */
    o.val_share = 0.01;
    build_ok(&o, &d);
    assert_int_equal(d.n.val_individuals, 1);
    fl_detset_free(&d);
    o.val_share = 0.99;
    build_ok(&o, &d);
    assert_int_equal(d.n.val_individuals, 6);
    fl_detset_free(&d);
    free(bp), free(rp);
}

static void test_box_format_and_test_dir(void **state) {
    fx *t = *state;
    char *bp = bbox_file(t, "boxes.csv", 0, 6, 0);
    char *pp = pathf(t, "plain.csv");
    put(pp, "image,box\nt00.jpg,2 3 20 25\nt01.jpg,3 3 21 25\nq1.jpg,1 1 5 5\nt02.jpg,4 3 22 25\n"
            "t03.jpg,5 3 23 25\nt04.jpg,6 3 24 25\nt05.jpg,7 3 25 25\n");
    fl_detset a, b;
    fl_detset_opts o = opts(t, bp, 3);
    build_ok(&o, &a);
    o.boxes = pp;
    o.test = t->test_dir; /* the folder instead of the CSV */
    build_ok(&o, &b);
    assert_int_equal(b.n.rows_test, 1);
    assert_int_equal(a.ntrain, b.ntrain);
    assert_int_equal(a.nval, b.nval);
    for (int i = 0; i < a.ntrain; i++) {
        assert_string_equal(a.train_info[i].image, b.train_info[i].image);
        assert_memory_equal(a.train[i].boxes, b.train[i].boxes, sizeof(fl_box));
    }
    fl_detset_free(&a), fl_detset_free(&b);
    free(bp), free(pp);
}

static void test_species_classes(void **state) {
    fx *t = *state;
    /* t00..t03: beluga, killer_whale (fixed from kiler_whale), bottlenose_dolphin, beluga;
     * t04 (kiler_whale) also has a second box. */
    char *bp = pathf(t, "sp.csv");
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[1 1 5 5]]\nt02.jpg,[[1 1 5 5]]\n"
            "t03.jpg,[[1 1 5 5]]\nt04.jpg,\"[[1 1 5 5], [6 6 9 9]]\"\n");
    fl_detset_opts o = opts(t, bp, 1);
    o.classes = FL_DETSET_SPECIES;
    fl_detset d;
    build_ok(&o, &d);
    assert_int_equal(d.nclasses, 3);
    assert_string_equal(d.classes[0], "beluga");
    assert_string_equal(d.classes[1], "bottlenose_dolphin");
    assert_string_equal(d.classes[2], "killer_whale");
    assert_int_equal(d.n.boxes, 6);
    static const int want[5] = {0, 2, 1, 0, 2};
    int seen = 0;
    for (int side = 0; side < 2; side++) {
        const fl_loader_item *it = side ? d.val : d.train;
        const fl_detset_image *inf = side ? d.val_info : d.train_info;
        for (int i = 0; i < (side ? d.nval : d.ntrain); i++, seen++) {
            int k = atoi(inf[i].image + 1);
            for (int j = 0; j < it[i].nboxes; j++)
                assert_int_equal(it[i].boxes[j].cls, want[k]);
            assert_int_equal(it[i].nboxes, k == 4 ? 2 : 1);
        }
    }
    assert_int_equal(seen, 5);
    fl_detset_free(&d);
    /* Species present only among unboxed images are not classes. */
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt03.jpg,[[1 1 5 5]]\nt06.jpg,[[1 1 5 5]]\n"
            "t01.jpg,[]\n");
    build_ok(&o, &d);
    assert_int_equal(d.nclasses, 1);
    assert_string_equal(d.classes[0], "beluga");
    fl_detset_free(&d);
    free(bp);
}

static void test_clipping(void **state) {
    fx *t = *state;
    /* t00 is 40x30, t01 44x32: three boxes reach past an edge on two lines. */
    char *bp = pathf(t, "clip.csv");
    put(bp, "image,bbox\nt00.jpg,\"[[-3 2 10 12], [30 20 45 31]]\"\nt01.jpg,[[1 1 5 5]]\n"
            "t02.jpg,[[0 0 48 30]]\nt03.jpg,[[1 -1 60 5]]\n");
    fl_detset_opts o = opts(t, bp, 1);
    fl_detset d;
    build_ok(&o, &d);
    assert_int_equal(d.n.boxes_clipped, 3);
    assert_non_null(strstr(d.clip_warning, "clip.csv"));
    assert_non_null(strstr(d.clip_warning, "3 boxes"));
    assert_non_null(strstr(d.clip_warning, "lines 2, 5"));
    for (int side = 0; side < 2; side++) {
        const fl_loader_item *it = side ? d.val : d.train;
        const fl_detset_image *inf = side ? d.val_info : d.train_info;
        for (int i = 0; i < (side ? d.nval : d.ntrain); i++)
            for (int j = 0; j < it[i].nboxes; j++) {
                fl_box b = it[i].boxes[j];
                assert_true(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= inf[i].width &&
                            b.y2 <= inf[i].height);
                if (!strcmp(inf[i].image, "t00.jpg") && j == 0)
                    assert_true(b.x1 == 0 && b.x2 == 10);
                if (!strcmp(inf[i].image, "t00.jpg") && j == 1)
                    assert_true(b.x2 == 40 && b.y2 == 30);
                if (!strcmp(inf[i].image, "t03.jpg")) assert_true(b.y1 == 0 && b.x2 == 52);
            }
    }
    fl_detset_free(&d);
    free(bp);
}

/* Inserts nseg 64 KiB APP15 segments after SOI, so the SOF lies past the first read(s). */
static void write_far_sof(const char *path, int w, int h, int nseg) {
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(w, h, 60, &e);
    uint8_t *jpg;
    size_t len;
    assert_int_equal(fl_jpeg_encode(img, 90, &jpg, &len, &e), 0);
    fl_image_free(img);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(jpg, 1, 2, f);
    for (int s = 0; s < nseg; s++) {
        uint8_t hdr[4] = {0xFF, 0xEF, 0xFF, 0xFF};
        fwrite(hdr, 1, 4, f);
        for (int k = 0; k < 0xFFFF - 2; k++)
            fputc(0x5A, f);
    }
    fwrite(jpg + 2, 1, len - 2, f);
    fclose(f);
    free(jpg);
}

static void test_headers_exif_far_sof_and_bad_jpegs(void **state) {
    fx *t = *state;
    const char *src = getenv("FLUKE_SRC");
    char *fix = fl_strdupf("%s/tests/fixtures/image/orient_6.jpg", src ? src : ".");
    char *p0 = fl_strdupf("%s/t00.jpg", t->train_dir), *p1 = fl_strdupf("%s/t01.jpg", t->train_dir);
    char *p2 = fl_strdupf("%s/t02.jpg", t->train_dir), *p5 = fl_strdupf("%s/t05.jpg", t->train_dir);
    char *p3 = fl_strdupf("%s/t03.jpg", t->train_dir);
    fl_err e = {{0}};
    if (fl_copy_file(fix, p0, &e) != 0) fail_msg("%s", e.msg);
    size_t len;
    uint8_t *raw = (uint8_t *)fl_read_file(fix, &len, &e);
    fl_decode_info want;
    assert_int_equal(fl_jpeg_probe(raw, len, "f", &want, &e), 0);
    assert_int_equal(want.orientation, 6);
    free(raw);
    write_far_sof(p1, 77, 41, 2);  /* SOF past 64 KiB: the 1 MiB read */
    write_far_sof(p3, 65, 43, 17); /* past 1 MiB: the whole file */
    put(p2, "not a jpeg at all");
    put(p5, "\xFF\xD8\xFF\xE0 truncated");
    char *bp = pathf(t, "hdr.csv");
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[1 1 70 40]]\nt02.jpg,[[1 1 5 5]]\n"
            "t03.jpg,[[1 1 5 5]]\nt04.jpg,[[1 1 5 5]]\nt05.jpg,[[1 1 5 5]]\n");
    fl_detset_opts o = opts(t, bp, 1);
    fl_detset d;
    build_ok(&o, &d);
    assert_int_equal(d.n.bad_images, 2);
    assert_int_equal(d.n.boxed, 6);
    assert_int_equal(d.n.rows_used, 4);
    assert_int_equal(d.nbad_names, 2);
    assert_string_equal(d.bad_names[0], "t02.jpg");
    assert_string_equal(d.bad_names[1], "t05.jpg");
    assert_non_null(strstr(d.bad_warning, "2 of 6"));
    assert_non_null(strstr(d.bad_warning, "t02.jpg, t05.jpg"));
    int found = 0;
    for (int side = 0; side < 2; side++) {
        const fl_detset_image *inf = side ? d.val_info : d.train_info;
        for (int i = 0; i < (side ? d.nval : d.ntrain); i++) {
            if (!strcmp(inf[i].image, "t00.jpg")) {
                found++;
                assert_int_equal(inf[i].width, want.src_width); /* upright */
                assert_int_equal(inf[i].height, want.src_height);
                assert_true(want.src_width != want.src_height);
            }
            if (!strcmp(inf[i].image, "t01.jpg")) {
                found++;
                assert_int_equal(inf[i].width, 77);
                assert_int_equal(inf[i].height, 41);
            }
            if (!strcmp(inf[i].image, "t03.jpg")) {
                found++;
                assert_int_equal(inf[i].width, 65);
                assert_int_equal(inf[i].height, 43);
            }
        }
    }
    assert_int_equal(found, 3);
    /* The thread count changes nothing. */
    unsigned mask = val_mask(&d);
    char warn[FL_ERRLEN];
    snprintf(warn, sizeof warn, "%s", d.bad_warning);
    fl_detset_free(&d);
    for (int th = 1; th <= 4; th += 3) {
        o.threads = th;
        build_ok(&o, &d);
        assert_int_equal(val_mask(&d), mask);
        assert_string_equal(d.bad_warning, warn);
        assert_int_equal(d.ntrain + d.nval, 4);
        fl_detset_free(&d);
    }
    /* restore the fixture images for the other tests (cmocka runs them in one process) */
    write_jpeg(p0, 40, 30), write_jpeg(p1, 44, 32), write_jpeg(p2, 48, 34), write_jpeg(p5, 60, 30);
    write_jpeg(p3, 52, 36);
    free(fix), free(p0), free(p1), free(p2), free(p3), free(p5), free(bp);
}

/* The letterboxed ground truth equals the boxes the loader's eval transform produces. */
static void test_val_gt_matches_loader(void **state) {
    fx *t = *state;
    char *bp = bbox_file(t, "boxes.csv", 0, 14, 0);
    fl_detset_opts o = opts(t, bp, 5);
    o.val_share = 0.5;
    fl_detset d;
    build_ok(&o, &d);
    fl_err e = {{0}};
    fl_loader_config c = fl_loader_config_defaults();
    c.items = d.val;
    c.n_items = (size_t)d.nval;
    c.task = FL_TASK_DETECT;
    c.augment = 0;
    c.batch_size = 1;
    c.sampler = FL_SAMPLER_SEQUENTIAL;
    for (int s = 64; s <= 96; s += 32) {
        c.out_w = c.out_h = s;
        fl_yolo_gt *gt;
        size_t ngt;
        assert_int_equal(fl_detset_val_gt(&d, s, &gt, &ngt, &e), 0);
        assert_int_equal(ngt, (size_t)d.nval);
        float *img = malloc(sizeof *img * (size_t)s * s * 3);
        for (int i = 0; i < d.nval; i++) {
            fl_box bx[8];
            int32_t nb = 0, label;
            int64_t used;
            if (fl_loader_make_sample(&c, 0, i, i, img, NULL, &label, bx, &nb, &used, NULL, &e))
                fail_msg("%s", e.msg);
            assert_int_equal(nb, 1);
            assert_int_equal(gt[i].img, i);
            assert_true(gt[i].x1 == bx[0].x1 && gt[i].y1 == bx[0].y1);
            assert_true(gt[i].x2 == bx[0].x2 && gt[i].y2 == bx[0].y2);
            assert_true(gt[i].y1 > 0); /* landscape: padded above */
        }
        free(img), free(gt);
    }
    /* Hand-checked: 100x50 at s = 64 -> 64x32, top padding 16; 32x64 -> left padding 16;
     * 200x100 at 64 -> 64x32 (downscaled), 20x10 at 64 -> scaled up by load_image to 64x32. */
    static const struct {
        int w, h;
        fl_box in, out;
    } hc[] = {
        {100, 50, {10, 10, 50, 40, 0}, {6.4f, 22.4f, 32, 41.6f, 0}},
        {32, 64, {0, 0, 32, 64, 0}, {16, 0, 48, 64, 0}},
        {200, 100, {0, 0, 200, 100, 0}, {0, 16, 64, 48, 0}},
        {20, 10, {0, 0, 10, 10, 0}, {0, 16, 32, 48, 0}},
    };
    for (size_t k = 0; k < sizeof hc / sizeof *hc; k++) {
        fl_box b = fl_detset_letterbox_box(hc[k].w, hc[k].h, 64, hc[k].in);
        if (fabsf(b.x1 - hc[k].out.x1) > 1e-4f || fabsf(b.y1 - hc[k].out.y1) > 1e-4f ||
            fabsf(b.x2 - hc[k].out.x2) > 1e-4f || fabsf(b.y2 - hc[k].out.y2) > 1e-4f)
            fail_msg("case %zu: got %g %g %g %g", k, b.x1, b.y1, b.x2, b.y2);
    }
    fl_detset_free(&d);
    free(bp);
}

#define EXPECT_FAIL(o, n1, n2)                                                                     \
    do {                                                                                           \
        fl_err e_ = {{0}};                                                                         \
        fl_detset d_;                                                                              \
        assert_int_equal(fl_detset_build((o), &d_, &e_), -1);                                      \
        if (!strstr(e_.msg, n1) || !strstr(e_.msg, n2))                                            \
            fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", e_.msg, n1, n2);                     \
        assert_int_equal(d_.ntrain, 0);                                                            \
        fl_detset_free(&d_);                                                                       \
    } while (0)

static void test_bad_input(void **state) {
    fx *t = *state;
    char *bp = pathf(t, "bad.csv");
    char *line;
    fl_detset_opts o = opts(t, bp, 1);

    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[1 1 5 5]]\nzz.jpg,[[1 1 5 5]]\n");
    line = fl_strdupf("%s:4", bp);
    EXPECT_FAIL(&o, line, "neither in");
    free(line);
    /* without a test list, a test image is unknown too */
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nq0.jpg,[[1 1 5 5]]\n");
    o.test = NULL;
    line = fl_strdupf("%s:3", bp);
    EXPECT_FAIL(&o, line, "q0.jpg");
    free(line);
    o.test = t->test_csv;

    /* t01 is 44x32 */
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,\"[[1 1 5 5],[44 2 50 9]]\"\n");
    line = fl_strdupf("%s:3", bp);
    EXPECT_FAIL(&o, line, "box 2 [44 2 50 9] lies entirely outside image t01.jpg (44x32");
    free(line);
    put(bp, "image,box\nt00.jpg,1 1 5 5\nt01.jpg,-9 -9 -1 5\n");
    line = fl_strdupf("%s:3", bp);
    EXPECT_FAIL(&o, line, "entirely outside");
    free(line);

    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[1 1 5]]\n");
    line = fl_strdupf("%s:3: bbox", bp);
    EXPECT_FAIL(&o, line, "expected a number");
    free(line);
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[5 1 1 5]]\n");
    line = fl_strdupf("%s:3: bbox", bp);
    EXPECT_FAIL(&o, line, "x2 <= x1");
    free(line);
    put(bp, "image,box\nt00.jpg,1 1 5 5\nt01.jpg,1 1 5 5 6\n");
    line = fl_strdupf("%s:3: box", bp);
    EXPECT_FAIL(&o, line, "unexpected text");
    free(line);

    put(bp, "");
    EXPECT_FAIL(&o, bp, "empty file");
    put(bp, "image,bbox,conf\n");
    line = fl_strdupf("%s:1", bp);
    EXPECT_FAIL(&o, line, "no data rows");
    free(line);
    put(bp, "image,conf\nt00.jpg,1\n");
    EXPECT_FAIL(&o, bp, "missing column \"bbox\"");

    char *missing = pathf(t, "no_such_boxes.csv");
    o.boxes = missing;
    EXPECT_FAIL(&o, missing, "detector.boxes");
    o.boxes = NULL;
    EXPECT_FAIL(&o, "no box file", "detector.boxes");
    o.boxes = t->train_dir;
    EXPECT_FAIL(&o, t->train_dir, "detector.boxes");
    o.boxes = bp;
    free(missing);

    /* Too few to train: only test rows and empty ones, one image, one individual. */
    put(bp, "image,bbox\nq0.jpg,[[1 1 5 5]]\nt00.jpg,[]\nt01.jpg,[[1 1 5 5]]\n");
    EXPECT_FAIL(&o, "1 usable boxed train image (3 rows: 1 of test images, 1 without boxes",
                "at least 2");
    put(bp, "image,bbox\nt00.jpg,[[1 1 5 5]]\nt01.jpg,[[1 1 5 5]]\n"); /* both ind0 */
    EXPECT_FAIL(&o, "show 1 individual", "at least 2");
    o.val_share = 0;
    EXPECT_FAIL(&o, "validation share 0", "(0, 1)");
    free(bp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_by_individual),
        cmocka_unit_test(test_box_format_and_test_dir),
        cmocka_unit_test(test_species_classes),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_headers_exif_far_sof_and_bad_jpegs),
        cmocka_unit_test(test_val_gt_matches_loader),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
