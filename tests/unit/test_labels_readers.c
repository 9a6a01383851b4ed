/* The label readers: CSV dialects (BOM, CRLF, quotes, embedded line breaks) and a bad-input
 * case for every reader, each error naming the file and the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stages/labels/labels.h"

typedef struct tmpdir {
    char path[64];
    char *files[64];
    int n;
} tmpdir;

static int setup(void **state) {
    tmpdir *t = calloc(1, sizeof *t);
    strcpy(t->path, "/tmp/fluke_labels_XXXXXX");
    if (!mkdtemp(t->path)) return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    tmpdir *t = *state;
    fl_err e;
    fl_remove_tree(t->path, &e);
    for (int i = 0; i < t->n; i++) free(t->files[i]);
    free(t);
    return 0;
}

static const char *put(tmpdir *t, const char *name, const char *text) {
    char *p = fl_strdupf("%s/%s", t->path, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    t->files[t->n++] = p;
    return p;
}

/* Expects reader failure with a message containing both needles. */
#define EXPECT_FAIL(call, needle1, needle2)                                                    \
    do {                                                                                       \
        fl_err e_ = {{0}};                                                                     \
        fl_err *e = &e_;                                                                       \
        assert_int_equal((call), -1);                                                          \
        if (!strstr(e_.msg, needle1) || !strstr(e_.msg, needle2))                              \
            fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", e_.msg, needle1, needle2);       \
    } while (0)

static void test_csv_dialects(void **state) {
    tmpdir *t = *state;
    fl_err e = {{0}};
    fl_csv c;
    /* BOM, CRLF, a quoted field with a comma, a doubled quote and a line break, a blank line. */
    const char *p = put(t, "d.csv",
                        "\xEF\xBB\xBFimage,note\r\n"
                        "a.jpg,\"x, y\"\r\n"
                        "\r\n"
                        "b.jpg,\"say \"\"hi\"\"\r\nthere\"\r\n"
                        "c.jpg,plain");
    assert_int_equal(fl_csv_read(p, &c, &e), 0);
    assert_int_equal(c.ncols, 2);
    assert_string_equal(c.header[0], "image"); /* BOM stripped */
    assert_int_equal(c.nrows, 3);
    assert_string_equal(c.rows[1].f[1], "x, y");
    assert_int_equal(c.rows[2].line, 4);
    assert_string_equal(c.rows[2].f[1], "say \"hi\"\r\nthere");
    assert_int_equal(c.rows[3].line, 6);
    assert_string_equal(c.rows[3].f[1], "plain");
    fl_csv_free(&c);

    EXPECT_FAIL(fl_csv_read(put(t, "u.csv", "a,b\n1,\"open\n2,3\n"), &c, e), "u.csv:2",
                "unterminated");
    EXPECT_FAIL(fl_csv_read(put(t, "q.csv", "a,b\n1,\"x\"y\n"), &c, e), "q.csv:2",
                "after a closing quote");
    EXPECT_FAIL(fl_csv_read(put(t, "e.csv", ""), &c, e), "e.csv", "empty");
    EXPECT_FAIL(fl_csv_read(put(t, "h.csv", "a,a\n1,2\n"), &c, e), "h.csv:1", "twice");
    EXPECT_FAIL(fl_csv_read("/nonexistent/x.csv", &c, e), "/nonexistent/x.csv", "cannot open");
}

static void test_train_reader(void **state) {
    tmpdir *t = *state;
    fl_err e = {{0}};
    fl_train_set tr;
    const char *p = put(t, "train.csv",
                        "image,species,individual_id,extra\r\n"
                        "a.jpg,globis,id1,x\r\n"
                        "b.jpg,pilot_whale,id1,x\r\n"
                        "c.jpg,kiler_whale,id2,x\r\n"
                        "d.jpg,bottlenose_dolpin,id3,x\r\n"
                        "\"e.jpg\",beluga,id4,x\r\n");
    assert_int_equal(fl_train_read(p, NULL, &tr, &e), 0);
    assert_int_equal(tr.n, 5);
    assert_string_equal(tr.species[0], "short_finned_pilot_whale");
    assert_string_equal(tr.species[1], "short_finned_pilot_whale");
    assert_string_equal(tr.species[2], "killer_whale");
    assert_string_equal(tr.species[3], "bottlenose_dolphin");
    assert_string_equal(tr.species[4], "beluga");
    assert_string_equal(tr.image[4], "e.jpg");
    assert_int_equal(tr.n_fixed, 4);
    for (int k = 0; k < FL_LABEL_NFIXES; k++) assert_int_equal(tr.fix_count[k], 1);
    fl_train_free(&tr);

    EXPECT_FAIL(fl_train_read(put(t, "t1.csv", "image,individual_id\na.jpg,x\n"), NULL, &tr, e),
                "t1.csv:1", "missing column \"species\"");
    EXPECT_FAIL(fl_train_read(put(t, "t2.csv", "image,species,individual_id\na.jpg,beluga\n"),
                              NULL, &tr, e), "t2.csv:2", "missing");
    EXPECT_FAIL(fl_train_read(put(t, "t3.csv",
                                  "image,species,individual_id\na.jpg,beluga,x,y\n"),
                              NULL, &tr, e), "t3.csv:2", "extra");
    EXPECT_FAIL(fl_train_read(put(t, "t4.csv", "image,species,individual_id\na.jpg,beluga,x\n"
                                               "b.jpg,beluga,y\na.jpg,beluga,z\n"),
                              NULL, &tr, e), "t4.csv:4", "first on line 2");
    EXPECT_FAIL(fl_train_read(put(t, "t5.csv", "image,species,individual_id\na.jpg,,x\n"), NULL,
                              &tr, e), "t5.csv:2", "empty species");
    EXPECT_FAIL(fl_train_read(put(t, "t6.csv", "image,species,individual_id\n../a.jpg,b,x\n"),
                              NULL, &tr, e), "t6.csv:2", "not a plain file name");
    /* Listed but missing from the image directory. */
    put(t, "a.jpg", "jpeg");
    EXPECT_FAIL(fl_train_read(put(t, "t7.csv", "image,species,individual_id\na.jpg,b,x\n"
                                               "zz.jpg,b,y\n"),
                              t->path, &tr, e), "t7.csv:3", "zz.jpg");
    EXPECT_FAIL(fl_train_read(put(t, "t8.csv", "image,species,individual_id\na.jpg,b,"
                                               "new_individual\n"),
                              NULL, &tr, e), "t8.csv:2", "new_individual");
}

static void test_box_reader(void **state) {
    tmpdir *t = *state;
    fl_err e = {{0}};
    fl_box_set b;
    const char *p = put(t, "bbox.csv",
                        "image,bbox,conf,width,height\n"
                        "a.jpg,[[10 20 110 220]],0.9,640,480\n"
                        "b.jpg,\"[[1.5, 2, 3, 4], [5 6 7 8]]\",0.5,640,480\n"
                        "c.jpg,[],0,640,480\n"
                        "d.jpg,[ 1 2 3 4 ],1,640,480\n");
    assert_int_equal(fl_boxes_read(p, NULL, &b, &e), 0);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.entry[0].nbox, 1);
    assert_true(b.entry[0].xyxy[0] == 10 && b.entry[0].xyxy[3] == 220);
    assert_int_equal(b.entry[1].nbox, 2);
    assert_true(b.entry[1].xyxy[0] == 1.5f && b.entry[1].xyxy[7] == 8);
    assert_int_equal(b.entry[2].nbox, 0);
    assert_int_equal(b.entry[3].nbox, 1);
    fl_boxes_free(&b);
    p = put(t, "box.csv", "image,box\na.jpg,1 2 3 4\nb.jpg,\"5, 6, 7, 8\"\n");
    assert_int_equal(fl_boxes_read(p, NULL, &b, &e), 0);
    assert_int_equal(b.n, 2);
    assert_true(b.entry[1].xyxy[2] == 7);
    fl_boxes_free(&b);

    EXPECT_FAIL(fl_boxes_read(put(t, "b1.csv", "image,conf\na.jpg,1\n"), NULL, &b, e),
                "b1.csv:1", "bbox");
    EXPECT_FAIL(fl_boxes_read(put(t, "b2.csv", "image,bbox\na.jpg,[[1 2 3]]\n"), NULL, &b, e),
                "b2.csv:2", "expected a number");
    EXPECT_FAIL(fl_boxes_read(put(t, "b3.csv", "image,bbox\na.jpg,[[5 2 3 4]]\n"), NULL, &b, e),
                "b3.csv:2", "x2 <= x1");
    EXPECT_FAIL(fl_boxes_read(put(t, "b4.csv", "image,bbox\na.jpg,[[1 2 3 4]\n"), NULL, &b, e),
                "b4.csv:2", "expected '[' or ']'");
    EXPECT_FAIL(fl_boxes_read(put(t, "b5.csv", "image,box\na.jpg,1 2 3 4 5\n"), NULL, &b, e),
                "b5.csv:2", "unexpected text");
    EXPECT_FAIL(fl_boxes_read(put(t, "b6.csv", "image,bbox\na.jpg,[[1 2 3 4]]\n"
                                               "a.jpg,[[1 2 3 4]]\n"),
                              NULL, &b, e), "b6.csv:3", "duplicate");
    EXPECT_FAIL(fl_boxes_read(put(t, "b7.csv", "image,bbox\na.jpg,[[1 2 nan 4]]\n"), NULL, &b, e),
                "b7.csv:2", "not finite");
    EXPECT_FAIL(fl_boxes_read(put(t, "b8.csv", "image,bbox\nmissing.jpg,[[1 2 3 4]]\n"),
                              t->path, &b, e), "b8.csv:2", "missing");
}

static void test_submission_reader_validator_writer(void **state) {
    tmpdir *t = *state;
    fl_err e = {{0}};
    fl_submission s;
    const char *p = put(t, "s.csv", "image,predictions\r\n"
                                    "a.jpg,id1 id2  id3 new_individual id4\r\n"
                                    "b.jpg,\"id2 id1 id3 id4 new_individual id5\"\r\n");
    assert_int_equal(fl_submission_read(p, &s, &e), 0);
    assert_int_equal(s.npred[0], 5);
    assert_string_equal(s.pred[0][2], "id3");
    assert_int_equal(s.npred[1], 6);
    const char *tests[] = {"a.jpg", "b.jpg"};
    fl_strmap known;
    assert_int_equal(fl_strmap_init(&known, 8, &e), 0);
    const char *ids[] = {"id1", "id2", "id3", "id4", "id5"};
    for (int i = 0; i < 5; i++) fl_strmap_put(&known, ids[i], i);
    /* b has 6 labels: invalid as our output although Kaggle would score it. */
    EXPECT_FAIL(fl_submission_validate(&s, tests, 2, &known, e), "s.csv:3", "6 labels");
    fl_submission_free(&s);

    const char *v = put(t, "v.csv", "image,predictions\nb.jpg,id2 id1 id3 id4 new_individual\n"
                                    "a.jpg,id1 id2 id3 id4 id5\n");
    assert_int_equal(fl_submission_read(v, &s, &e), 0);
    assert_int_equal(fl_submission_validate(&s, tests, 2, &known, &e), 0);
    const char *more[] = {"a.jpg", "b.jpg", "c.jpg"};
    EXPECT_FAIL(fl_submission_validate(&s, more, 3, &known, e), "c.jpg", "no prediction");
    EXPECT_FAIL(fl_submission_validate(&s, tests, 1, &known, e), "v.csv:2", "not a test image");
    fl_submission_free(&s);

    const char *r = put(t, "r.csv", "image,predictions\na.jpg,id1 id1 id3 id4 id5\n");
    assert_int_equal(fl_submission_read(r, &s, &e), 0);
    EXPECT_FAIL(fl_submission_validate(&s, tests, 1, &known, e), "r.csv:2", "repeated");
    fl_submission_free(&s);
    const char *u = put(t, "w.csv", "image,predictions\na.jpg,id1 id2 id3 id4 stranger\n");
    assert_int_equal(fl_submission_read(u, &s, &e), 0);
    EXPECT_FAIL(fl_submission_validate(&s, tests, 1, &known, e), "w.csv:2", "stranger");
    fl_submission_free(&s);
    EXPECT_FAIL(fl_submission_read(put(t, "x.csv", "image,prediction\na.jpg,id1\n"), &s, e),
                "x.csv:1", "predictions");
    EXPECT_FAIL(fl_submission_read(put(t, "y.csv", "image,predictions\na.jpg,id1\na.jpg,id2\n"),
                                   &s, e), "y.csv:3", "duplicate");

    /* Writer: round trip, and refusal of a malformed row. */
    const char *rows[2][FL_MAP_K] = {{"new_individual", "id1", "id2", "id3", "id4"},
                                     {"id5", "id4", "id3", "id2", "id1"}};
    char *out = fl_strdupf("%s/out.csv", t->path);
    assert_int_equal(fl_submission_write(out, 2, tests, (const char *const(*)[FL_MAP_K])rows, &e),
                     0);
    assert_int_equal(fl_submission_read(out, &s, &e), 0);
    assert_int_equal(fl_submission_validate(&s, tests, 2, &known, &e), 0);
    assert_string_equal(s.pred[1][0], "id5");
    fl_submission_free(&s);
    const char *bad[1][FL_MAP_K] = {{"id1", "id2", "id2", "id3", "id4"}};
    EXPECT_FAIL(fl_submission_write(out, 1, tests, (const char *const(*)[FL_MAP_K])bad, e),
                "a.jpg", "repeated");
    const char *sep[1][FL_MAP_K] = {{"id1", "id 2", "id3", "id4", "id5"}};
    EXPECT_FAIL(fl_submission_write(out, 1, tests, (const char *const(*)[FL_MAP_K])sep, e),
                "a.jpg", "separator");
    free(out);
    fl_strmap_free(&known);
}

static void test_solution_reader(void **state) {
    tmpdir *t = *state;
    fl_solution s;
    EXPECT_FAIL(fl_solution_read(put(t, "so1.csv", "image,individual_id,Usage\na.jpg,x,Hidden\n"),
                                 &s, e), "so1.csv:2", "Public nor Private");
    EXPECT_FAIL(fl_solution_read(put(t, "so2.csv", "image,individual_id\na.jpg,x\n"), &s, e),
                "so2.csv:1", "Usage");
    EXPECT_FAIL(fl_solution_read(put(t, "so3.csv", "image,individual_id,Usage\na.jpg,,Public\n"),
                                 &s, e), "so3.csv:2", "empty individual_id");
    fl_err e = {{0}};
    assert_int_equal(fl_solution_read(put(t, "so4.csv", "image,individual_id,Usage\n"
                                                        "a.jpg,x,Public\nb.jpg,y,Private\n"),
                                      &s, &e), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.is_public[0], 1);
    assert_null(s.species[0]);
    fl_solution_free(&s);
}

/* Issue 19 items 2 and 8: header-only files, one-row files, labels that a submission cannot
 * carry and image names it cannot write, each named at the user's file and line. */
static void test_small_and_unwritable_inputs(void **state) {
    tmpdir *t = *state;
    fl_train_set tr;
    fl_submission s;
    fl_solution so;
    fl_box_set b;
    EXPECT_FAIL(fl_train_read(put(t, "h1.csv", "image,species,individual_id\r\n"), NULL, &tr, e),
                "h1.csv:1", "no data rows");
    EXPECT_FAIL(fl_submission_read(put(t, "h2.csv", "\xEF\xBB\xBFimage,predictions\n\n"), &s, e),
                "h2.csv:1", "no data rows");
    EXPECT_FAIL(fl_solution_read(put(t, "h3.csv", "image,individual_id,Usage\n"), &so, e),
                "h3.csv:1", "no data rows");
    EXPECT_FAIL(fl_boxes_read(put(t, "h4.csv", "image,bbox\n"), NULL, &b, e), "h4.csv:1",
                "no data rows");
    fl_err e = {{0}};
    assert_int_equal(fl_train_read(put(t, "one.csv", "image,species,individual_id\na.jpg,b,x\n"),
                                   NULL, &tr, &e), 0);
    assert_int_equal(tr.n, 1);
    fl_train_free(&tr);
    EXPECT_FAIL(fl_train_read(put(t, "sp.csv", "image,species,individual_id\na.jpg,b,x\n"
                                               "b.jpg,b,ab cd\n"), NULL, &tr, e),
                "sp.csv:3", "individual_id \"ab cd\" contains a space at byte 3");
    EXPECT_FAIL(fl_train_read(put(t, "tab.csv", "image,species,individual_id\na.jpg,b,\"x\ty\"\n"),
                              NULL, &tr, e), "tab.csv:2", "tab or control");
    EXPECT_FAIL(fl_solution_read(put(t, "sq.csv", "image,individual_id,Usage\n"
                                                  "a.jpg,\"x,y\",Public\n"), &so, e),
                "sq.csv:2", "contains a comma");
    EXPECT_FAIL(fl_submission_read(put(t, "cq.csv", "image,predictions\n\"a\"\"b.jpg\",x\n"), &s, e),
                "cq.csv:2", "quote or control");
    EXPECT_FAIL(fl_boxes_read(put(t, "cb.csv", "image,box\n\"a,b.jpg\",1 2 3 4\n"), NULL, &b, e),
                "cb.csv:2", "comma");
    /* A 100 KB value is cut in the message, so what follows it (the reason) survives. */
    char *huge = malloc(100064);
    assert_non_null(huge);
    strcpy(huge, "image,species,individual_id\na.jpg,b,");
    size_t hl = strlen(huge);
    memset(huge + hl, 'x', 100000);
    strcpy(huge + hl + 100000, " y\n");
    EXPECT_FAIL(fl_train_read(put(t, "huge.csv", huge), NULL, &tr, e), "huge.csv:2",
                "xxx...\" contains a space at byte 100001");
    free(huge);
    /* A listed test image that is missing: the submission's own line. */
    assert_int_equal(fl_submission_read(put(t, "ls.csv", "image,predictions\nls.csv,x\n"
                                                          "nope.jpg,x\n"), &s, &e), 0);
    EXPECT_FAIL(fl_submission_check_images(&s, t->path, e), "ls.csv:3", "nope.jpg");
    fl_submission_free(&s);

    /* Fewer than 4 individuals: new_individual and each of them, nothing empty. */
    assert_int_equal(fl_submission_labels_expected(0), 1);
    assert_int_equal(fl_submission_labels_expected(2), 3);
    assert_int_equal(fl_submission_labels_expected(4), 5);
    assert_int_equal(fl_submission_labels_expected(900), 5);
    const char *tests[] = {"a.jpg"};
    const char *few[1][FL_MAP_K] = {{"new_individual", "id1", NULL, NULL, NULL}};
    char *out = fl_strdupf("%s/few.csv", t->path);
    assert_int_equal(fl_submission_write(out, 1, tests, (const char *const(*)[FL_MAP_K])few, &e), 0);
    char *text = fl_read_file(out, NULL, &e);
    assert_string_equal(text, "image,predictions\na.jpg,new_individual id1\n");
    free(text);
    fl_strmap one, many;
    assert_int_equal(fl_strmap_init(&one, 2, &e), 0);
    assert_int_equal(fl_strmap_init(&many, 8, &e), 0);
    fl_strmap_put(&one, "id1", 0);
    const char *ids[] = {"id1", "id2", "id3", "id4"};
    for (int i = 0; i < 4; i++) fl_strmap_put(&many, ids[i], i);
    assert_int_equal(fl_submission_read(out, &s, &e), 0);
    assert_int_equal(fl_submission_validate(&s, tests, 1, &one, &e), 0);
    EXPECT_FAIL(fl_submission_validate(&s, tests, 1, &many, e), "few.csv:2", "2 labels, expected 5");
    fl_submission_free(&s);
    const char *hole[1][FL_MAP_K] = {{"new_individual", NULL, "id1", NULL, NULL}};
    EXPECT_FAIL(fl_submission_write(out, 1, tests, (const char *const(*)[FL_MAP_K])hole, e),
                "a.jpg", "label 2 is empty");
    const char *none[1][FL_MAP_K] = {{NULL, NULL, NULL, NULL, NULL}};
    EXPECT_FAIL(fl_submission_write(out, 1, tests, (const char *const(*)[FL_MAP_K])none, e),
                "a.jpg", "label 1 is empty");
    fl_strmap_free(&one);
    fl_strmap_free(&many);
    free(out);
}

static void test_strmap(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_strmap m;
    assert_int_equal(fl_strmap_init(&m, 2, &e), 0);
    char keys[200][16];
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(fl_strmap_put(&m, keys[i], i), -1);
    }
    assert_int_equal(fl_strmap_put(&m, "k7", 99), 7);
    for (int i = 0; i < 200; i++) assert_int_equal(fl_strmap_get(&m, keys[i]), i);
    assert_int_equal(fl_strmap_get(&m, "nope"), -1);
    fl_strmap_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_csv_dialects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_train_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_box_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submission_reader_validator_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_solution_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_and_unwritable_inputs, setup, teardown),
        cmocka_unit_test(test_strmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
