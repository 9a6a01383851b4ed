/* The baseline and score stages on small, hand-made Kaggle-layout folders (issue 19 items 2 and
 * 8): header-only, one-row and few-individual inputs either work (a valid submission with
 * new_individual and every individual there is) or fail with a message naming the user's file
 * and line, never an internal file, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/image/image.h"
#include "stages/api/plan.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

typedef struct runner {
    char root[64];
    fl_plan plan;
    cJSON *config;
    int devnull;
    int nodes;
} runner;

static int setup(void **state) {
    runner *r = calloc(1, sizeof *r);
    strcpy(r->root, "/tmp/fluke_inputs_XXXXXX");
    if (!mkdtemp(r->root)) return -1;
    fl_plan_init(&r->plan, r->root);
    r->config = cJSON_Parse("{\"baseline\": {\"knn\": {\"thumb\": 4}}}");
    r->devnull = open("/dev/null", O_WRONLY);
    *state = r;
    return r->config && r->devnull >= 0 ? 0 : -1;
}

static int teardown(void **state) {
    runner *r = *state;
    fl_err e;
    fl_remove_tree(r->root, &e);
    fl_plan_free(&r->plan);
    cJSON_Delete(r->config);
    close(r->devnull);
    free(r);
    return 0;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

/* A small JPEG whose pixels depend on k (so kNN has something to tell apart). */
static void put_jpeg(const char *dir, const char *name, int k) {
    fl_err e = {{0}};
    fl_image *img = fl_image_new(24, 16, &e);
    assert_non_null(img);
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            uint8_t *p = fl_image_px(img, x, y);
            p[0] = (uint8_t)(x * 10 + k * 40), p[1] = (uint8_t)(y * 15 + k * 7), p[2] = (uint8_t)(k * 60);
        }
    char *path = fl_strdupf("%s/%s", dir, name);
    if (fl_jpeg_write(img, 90, path, &e) != 0) fail_msg("%s", e.msg);
    free(path);
    fl_image_free(img);
}

/* root/<name>/{train.csv, sample_submission.csv, train_images/, test_images/}: the images are
 * the NULL-terminated lists (names may differ from what the CSVs say, to test that). */
static char *layout(runner *r, const char *name, const char *train_csv, const char *sample_csv,
                    const char *const *train_imgs, const char *const *test_imgs) {
    fl_err e = {{0}};
    char *d = fl_strdupf("%s/%s", r->root, name);
    char *tr = fl_strdupf("%s/train_images", d), *te = fl_strdupf("%s/test_images", d);
    assert_int_equal(fl_mkdirs(tr, &e), 0);
    assert_int_equal(fl_mkdirs(te, &e), 0);
    char *p = fl_strdupf("%s/train.csv", d);
    put(p, train_csv);
    free(p);
    p = fl_strdupf("%s/sample_submission.csv", d);
    put(p, sample_csv);
    free(p);
    for (int i = 0; train_imgs[i]; i++) put_jpeg(tr, train_imgs[i], i);
    for (int i = 0; test_imgs[i]; i++) put_jpeg(te, test_imgs[i], i + 1);
    free(tr);
    free(te);
    return d;
}

/* Runs a baseline ("knn" or "new_first") on root/<data>; returns its rc, e filled. The output
 * lands in root/<id>/submission.csv. */
static int run_baseline(runner *r, const char *kind, const char *data, char *id, size_t idcap,
                        fl_err *e) {
    snprintf(id, idcap, "%s_%d", kind, r->nodes++);
    int knn = strcmp(kind, "knn") == 0;
    fl_plan_node *n = fl_plan_add_as(
        &r->plan, knn ? &fl_stage_baseline_knn : &fl_stage_baseline_new_first, id, e);
    assert_non_null(n);
    assert_int_equal(fl_plan_node_input(n, "data", data, e), 0);
    if (knn) assert_int_equal(fl_plan_node_section(n, "baseline.knn", e), 0);
    assert_int_equal(fl_plan_node_output(n, "submission.csv", e), 0);
    char *out = fl_strdupf("%s/%s", r->root, id), *work = fl_strdupf("%s/%s.work", r->root, id);
    char *in = fl_strdupf("%s/%s", r->root, data);
    assert_int_equal(fl_mkdirs(out, e), 0);
    assert_int_equal(fl_mkdirs(work, e), 0);
    const char *paths[1] = {in};
    fl_stage_ctx c = {.node = n, .config = r->config, .out_dir = out, .work_dir = work,
                      .input_paths = paths, .threads = 2, .gpu = -1, .t_start = fl_now(),
                      .out_fd = r->devnull};
    int rc = n->def->run(&c, e);
    free(out);
    free(work);
    free(in);
    return rc;
}

static const char *const KINDS[2] = {"knn", "new_first"};

/* Both baselines fail on data with a message holding both needles and no internal path. */
static void expect_both_fail(runner *r, const char *data, const char *needle1,
                             const char *needle2) {
    for (int k = 0; k < 2; k++) {
        fl_err e = {{0}};
        char id[64];
        assert_int_equal(run_baseline(r, KINDS[k], data, id, sizeof id, &e), -1);
        if (!strstr(e.msg, needle1) || !strstr(e.msg, needle2) || strstr(e.msg, "/submission.csv") ||
            strstr(e.msg, "internal"))
            fail_msg("%s on %s: message \"%s\" lacks \"%s\" or \"%s\" (or names an internal "
                     "file)", KINDS[k], data, e.msg, needle1, needle2);
    }
}

static const char *const TEST2[] = {"t1.jpg", "t2.jpg", NULL};
static const char *const SAMPLE2 = "image,predictions\nt1.jpg,new_individual\nt2.jpg,new_individual\n";

static void test_header_only_and_empty_inputs(void **state) {
    runner *r = *state;
    const char *const none[] = {NULL};
    /* The crash of issue 19 item 2: train.csv with a header and no rows. */
    free(layout(r, "hdr_train", "image,species,individual_id\n", SAMPLE2, none, TEST2));
    expect_both_fail(r, "hdr_train", "hdr_train/train.csv:1", "no data rows");
    /* An empty (0-byte) train.csv. */
    free(layout(r, "empty_train", "", SAMPLE2, none, TEST2));
    expect_both_fail(r, "empty_train", "empty_train/train.csv", "empty file");
    /* A header-only sample_submission.csv used to publish an empty submission with rc 0. */
    const char *const one[] = {"a.jpg", NULL};
    free(layout(r, "hdr_sample", "image,species,individual_id\na.jpg,beluga,id1\n",
                "image,predictions\n", one, none));
    expect_both_fail(r, "hdr_sample", "hdr_sample/sample_submission.csv:1", "no data rows");
}

/* Reads root/<id>/submission.csv and checks every row's labels: new_individual plus the
 * individuals given, and nothing empty. */
static void expect_submission(runner *r, const char *id, int n_rows, int n_labels,
                              const char *const *must) {
    fl_err e = {{0}};
    char *p = fl_strdupf("%s/%s/submission.csv", r->root, id);
    fl_submission s;
    if (fl_submission_read(p, &s, &e) != 0) fail_msg("%s", e.msg);
    assert_int_equal(s.n, n_rows);
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(s.npred[i], n_labels);
        for (int m = 0; must[m]; m++) {
            int found = 0;
            for (int k = 0; k < s.npred[i]; k++) found |= strcmp(s.pred[i][k], must[m]) == 0;
            if (!found) fail_msg("%s row %d lacks %s", id, i + 1, must[m]);
        }
    }
    fl_submission_free(&s);
    free(p);
}

static void test_one_row_and_few_individuals(void **state) {
    runner *r = *state;
    const char *const one[] = {"a.jpg", NULL};
    /* One train row: the answer is new_individual and that individual. */
    free(layout(r, "one_row", "image,species,individual_id\na.jpg,beluga,id1\n", SAMPLE2, one,
                TEST2));
    const char *const must1[] = {FL_NEW_INDIVIDUAL, "id1", NULL};
    for (int k = 0; k < 2; k++) {
        fl_err e = {{0}};
        char id[64];
        if (run_baseline(r, KINDS[k], "one_row", id, sizeof id, &e) != 0)
            fail_msg("%s on one row: %s", KINDS[k], e.msg);
        expect_submission(r, id, 2, 2, must1);
    }
    /* Three individuals (fewer than the 4 a full answer needs): 4 labels, all of them. This
     * failed on the internal submission.csv ("label 3 is empty" for knn). */
    const char *const four[] = {"a.jpg", "b.jpg", "c.jpg", "d.jpg", NULL};
    free(layout(r, "three_ids", "image,species,individual_id\na.jpg,beluga,id1\n"
                "b.jpg,beluga,id2\nc.jpg,beluga,id1\nd.jpg,beluga,id3\n", SAMPLE2, four, TEST2));
    const char *const must3[] = {FL_NEW_INDIVIDUAL, "id1", "id2", "id3", NULL};
    for (int k = 0; k < 2; k++) {
        fl_err e = {{0}};
        char id[64];
        if (run_baseline(r, KINDS[k], "three_ids", id, sizeof id, &e) != 0)
            fail_msg("%s on three individuals: %s", KINDS[k], e.msg);
        expect_submission(r, id, 2, 4, must3);
    }
}

static void test_errors_name_the_users_file(void **state) {
    runner *r = *state;
    const char *const two[] = {"a.jpg", "b.jpg", NULL};
    /* An individual_id with a space: named at its train.csv line, not in our output. */
    free(layout(r, "space_id", "image,species,individual_id\na.jpg,beluga,id1\n"
                "b.jpg,beluga,ab cd\n", SAMPLE2, two, TEST2));
    expect_both_fail(r, "space_id", "space_id/train.csv:3", "\"ab cd\" contains a space");
    /* A test image listed in sample_submission.csv but absent from test_images/. */
    const char *const only_t1[] = {"t1.jpg", NULL};
    free(layout(r, "missing_test", "image,species,individual_id\na.jpg,beluga,id1\n"
                "b.jpg,beluga,id2\n", SAMPLE2, two, only_t1));
    expect_both_fail(r, "missing_test", "missing_test/sample_submission.csv:3", "t2.jpg");
    /* A test image name our (unquoted) submission writer cannot write back. */
    free(layout(r, "comma_name", "image,species,individual_id\na.jpg,beluga,id1\n"
                "b.jpg,beluga,id2\n", "image,predictions\n\"t,1.jpg\",x\n", two, TEST2));
    expect_both_fail(r, "comma_name", "comma_name/sample_submission.csv:2", "comma");
}

/* baseline.knn.thumb out of int range: refused by name before the (undefined) cast. */
static void test_knn_thumb_range(void **state) {
    runner *r = *state;
    const char *const one[] = {"a.jpg", NULL};
    free(layout(r, "th", "image,species,individual_id\na.jpg,beluga,id1\n", SAMPLE2, one, TEST2));
    const char *bad[] = {"3e9", "-2147483649", "2.5", "1"};
    for (int k = 0; k < 4; k++) {
        cJSON_Delete(r->config);
        char *cfg = fl_strdupf("{\"baseline\": {\"knn\": {\"thumb\": %s}}}", bad[k]);
        r->config = cJSON_Parse(cfg);
        free(cfg);
        fl_err e = {{0}};
        char id[64];
        assert_int_equal(run_baseline(r, "knn", "th", id, sizeof id, &e), -1);
        if (!strstr(e.msg, "baseline.knn.thumb") || !strstr(e.msg, "[2, 256]"))
            fail_msg("thumb %s: \"%s\"", bad[k], e.msg);
    }
}

/* score: a header-only or one-row solution. */
static void test_score_small_solutions(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    const char *const one[] = {"a.jpg", NULL};
    free(layout(r, "sc", "image,species,individual_id\na.jpg,beluga,id1\n",
                "image,predictions\nt1.jpg,x\n", one, TEST2));
    char id[64];
    if (run_baseline(r, "new_first", "sc", id, sizeof id, &e) != 0) fail_msg("%s", e.msg);
    const char *sols[2] = {"image,individual_id,Usage\n", "image,individual_id,Usage\n"
                                                          "t1.jpg,id1,Public\n"};
    for (int k = 0; k < 2; k++) {
        char tid[32];
        snprintf(tid, sizeof tid, "truth_%d", k);
        char *td = fl_strdupf("%s/%s", r->root, tid), *sp = fl_strdupf("%s/solution.csv", td);
        assert_int_equal(fl_mkdirs(td, &e), 0);
        put(sp, sols[k]);
        char sid[32];
        snprintf(sid, sizeof sid, "score_%d", k);
        fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_score, sid, &e);
        assert_int_equal(fl_plan_node_input(n, "submission", id, &e), 0);
        assert_int_equal(fl_plan_node_input(n, "truth", tid, &e), 0);
        assert_int_equal(fl_plan_node_output(n, "metrics.json", &e), 0);
        char *out = fl_strdupf("%s/%s", r->root, sid), *sub = fl_strdupf("%s/%s", r->root, id);
        assert_int_equal(fl_mkdirs(out, &e), 0);
        const char *paths[2] = {sub, td};
        fl_stage_ctx c = {.node = n, .config = r->config, .out_dir = out, .work_dir = out,
                          .input_paths = paths, .threads = 1, .gpu = -1, .t_start = fl_now(),
                          .out_fd = r->devnull};
        int rc = n->def->run(&c, &e);
        if (k == 0) {
            assert_int_equal(rc, -1);
            if (!strstr(e.msg, "truth_0/solution.csv:1") || !strstr(e.msg, "no data rows"))
                fail_msg("header-only solution: \"%s\"", e.msg);
        } else {
            if (rc != 0) fail_msg("one-row solution: %s", e.msg);
        }
        free(td), free(sp), free(out), free(sub);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_header_only_and_empty_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_row_and_few_individuals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_the_users_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_score_small_solutions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_knn_thumb_range, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
