/* The crop metrics of the score stage (fl_crops_score_files) on hand-written crops.csv and true
 * box files, and the true test boxes synth writes for it (truth/test_boxes.csv, never data/). */
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

#include "stages/crop/crop.h"
#include "stages/labels/labels.h"
#include "stages/synth/synth.h"

static char root[64];

static char *put(const char *name, const char *text) {
    fl_err e = {{0}};
    char *p = fl_strdupf("%s/%s", root, name);
    assert_int_equal(fl_write_file_atomic(p, text, strlen(text), &e), 0);
    return p;
}

static void test_recall_and_fallback(void **state) {
    (void)state;
    fl_err e = {{0}};
    /* a: IoU 0.6 hit; b: whole-image fallback, IoU 0.25 miss; c: per-class rows, the second
     * hits; d: skipped (no row); e: a test image without a true box (not scored). */
    char *crops = put("crops.csv",
                      FL_CROPS_CSV_HEADER
                      "a.jpg,test,0,0,100,60,0.9,0,fin,crops/test/a.jpg\n"
                      "b.jpg,test,0,0,200,200,0,1,,crops/test/b.jpg\n"
                      "c.jpg,test,0,0,10,10,0.8,0,fin,crops/test/c_fin.jpg\n"
                      "c.jpg,test,50,50,150,150,0.7,0,body,crops/test/c_body.jpg\n"
                      "e.jpg,test,0,0,10,10,0.5,0,fin,crops/test/e.jpg\n"
                      "t1.jpg,train,0,0,64,64,0,1,,crops/train/t1.jpg\n"
                      "t2.jpg,train,1,1,30,30,0.9,0,fin,crops/train/t2.jpg\n");
    char *truth = put("test_boxes.csv", "image,bbox,conf,width,height\n"
                                        "a.jpg,[[0 0 100 100]],1.0,200,200\n"
                                        "b.jpg,[[0 0 100 100]],1.0,200,200\n"
                                        "c.jpg,[[60 60 150 150]],1.0,200,200\n"
                                        "d.jpg,[[0 0 10 10]],1.0,200,200\n");
    fl_crops_score r;
    if (fl_crops_score_files(crops, truth, &r, &e)) fail_msg("%s", e.msg);
    assert_int_equal(r.n_test, 4);
    assert_int_equal(r.n_test_hit, 2);
    assert_int_equal(r.n_test_absent, 1);
    assert_true(fabs(r.test_iou50_recall - 0.5) < 1e-12);
    assert_int_equal(r.n_images, 6);
    assert_int_equal(r.n_fallback, 2);
    assert_true(fabs(r.fallback_share - 2.0 / 6.0) < 1e-12);

    /* the other public format ("box" column), and a box just under IoU 0.5 */
    char *truth2 = put("test_boxes2.csv", "image,box\na.jpg,0 0 100 120\n");
    assert_int_equal(fl_crops_score_files(crops, truth2, &r, &e), 0);
    assert_int_equal(r.n_test, 1);
    assert_int_equal(r.n_test_hit, 1); /* 6000 / 12000 = 0.5 exactly: a hit */
    char *truth3 = put("test_boxes3.csv", "image,box\na.jpg,0 0 100 121\n");
    assert_int_equal(fl_crops_score_files(crops, truth3, &r, &e), 0);
    assert_int_equal(r.n_test_hit, 0);

    /* bad input names the file and line */
    char *bad = put("bad.csv", FL_CROPS_CSV_HEADER "a.jpg,test,0,0,x,60,0.9,0,fin,c\n");
    assert_int_equal(fl_crops_score_files(bad, truth, &r, &e), -1);
    assert_non_null(strstr(e.msg, "bad.csv:2"));
    char *bad2 = put("bad2.csv", FL_CROPS_CSV_HEADER "a.jpg,test,0,0,9,60,0.9,yes,fin,c\n");
    assert_int_equal(fl_crops_score_files(bad2, truth, &r, &e), -1);
    assert_non_null(strstr(e.msg, "fallback"));
    char *missing = fl_strdupf("%s/none.csv", root);
    assert_int_equal(fl_crops_score_files(crops, missing, &r, &e), -1);
    assert_non_null(strstr(e.msg, "none.csv"));
    free(crops), free(truth), free(truth2), free(truth3), free(bad), free(bad2), free(missing);
}

/* synth: every test image's true box in truth/test_boxes.csv (inside the image, its size in
 * width/height), none of it in data/. */
static void test_synth_writes_test_boxes(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_synth_params p;
    fl_synth_plan plan;
    assert_int_equal(fl_synth_preset("tiny", &p, &e), 0);
    assert_int_equal(fl_synth_plan_make(&p, &plan, &e), 0);
    char *data = fl_strdupf("%s/data", root), *truth = fl_strdupf("%s/truth", root);
    if (fl_synth_write(&plan, data, truth, 1, NULL, NULL, &e)) fail_msg("%s", e.msg);
    char *tb = fl_strdupf("%s/test_boxes.csv", truth), *leak = fl_strdupf("%s/test_boxes.csv", data);
    char *test_dir = fl_strdupf("%s/test_images", data);
    struct stat st;
    assert_int_not_equal(stat(leak, &st), 0);
    fl_box_set bs;
    if (fl_boxes_read(tb, test_dir, &bs, &e)) fail_msg("%s", e.msg);
    assert_int_equal(bs.n, p.n_test);
    fl_csv raw;
    assert_int_equal(fl_csv_read(tb, &raw, &e), 0);
    int wc = fl_csv_col(&raw, "width"), hc = fl_csv_col(&raw, "height");
    assert_true(wc >= 0 && hc >= 0);
    for (int i = 0; i < bs.n; i++) {
        assert_int_equal(bs.entry[i].nbox, 1);
        char *ip = fl_strdupf("%s/%s", test_dir, bs.entry[i].image);
        fl_image *img = fl_jpeg_read(ip, NULL, NULL, &e);
        assert_non_null(img);
        const float *q = bs.entry[i].xyxy;
        assert_true(q[0] >= 0 && q[1] >= 0 && q[2] > q[0] && q[3] > q[1]);
        assert_true(q[2] <= img->width && q[3] <= img->height);
        assert_int_equal(atoi(raw.rows[i + 1].f[wc]), img->width);
        assert_int_equal(atoi(raw.rows[i + 1].f[hc]), img->height);
        fl_image_free(img);
        free(ip);
    }
    fl_csv_free(&raw);
    fl_boxes_free(&bs);
    fl_synth_plan_free(&plan);
    free(data), free(truth), free(tb), free(leak), free(test_dir);
}

static int setup(void **state) {
    (void)state;
    strcpy(root, "/tmp/fluke_score_XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fl_err e;
    fl_remove_tree(root, &e);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recall_and_fallback),
        cmocka_unit_test(test_synth_writes_test_boxes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
