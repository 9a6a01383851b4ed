/* MAP@5 on hand-computed cases, as Kaggle's map@k (ml_metrics apk with one true label):
 * each rank, absent, repeated labels, new_individual, more than 5 labels, the public/private
 * split and the per-species / known-vs-new groups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stages/labels/labels.h"

static void test_apk_each_rank(void **state) {
    (void)state;
    const char *p[5] = {"a", "b", "c", "d", "e"};
    assert_true(fl_apk5("a", p, 5) == 1.0);
    assert_true(fl_apk5("b", p, 5) == 0.5);
    assert_true(fabs(fl_apk5("c", p, 5) - 1.0 / 3) < 1e-15);
    assert_true(fl_apk5("d", p, 5) == 0.25);
    assert_true(fl_apk5("e", p, 5) == 0.2);
    assert_true(fl_apk5("z", p, 5) == 0.0); /* absent */
    assert_true(fl_apk5("a", p, 0) == 0.0); /* empty prediction */
}

static void test_apk_repeats_and_truncation(void **state) {
    (void)state;
    /* A repeated wrong label occupies ranks; the truth still counts at its first rank. */
    const char *r1[5] = {"x", "x", "a", "a", "a"};
    assert_true(fabs(fl_apk5("a", r1, 5) - 1.0 / 3) < 1e-15);
    /* A repeated correct label scores once, at its first rank (not 1 + 1/2). */
    const char *r2[5] = {"a", "a", "b", "c", "d"};
    assert_true(fl_apk5("a", r2, 5) == 1.0);
    /* Only the first 5 count: the 6th label is ignored. */
    const char *r3[6] = {"b", "c", "d", "e", "f", "a"};
    assert_true(fl_apk5("a", r3, 6) == 0.0);
    assert_true(fl_apk5("f", r3, 6) == 0.2);
}

static void test_apk_new_individual(void **state) {
    (void)state;
    const char *p[5] = {"id1", FL_NEW_INDIVIDUAL, "id2", "id3", "id4"};
    assert_true(fl_apk5(FL_NEW_INDIVIDUAL, p, 5) == 0.5);
    const char *q[5] = {FL_NEW_INDIVIDUAL, "id1", "id2", "id3", "id4"};
    assert_true(fl_apk5(FL_NEW_INDIVIDUAL, q, 5) == 1.0);
    assert_true(fl_apk5("id1", q, 5) == 0.5);
}

static char *write_tmp(const char *dir, const char *name, const char *text) {
    char *p = fl_strdupf("%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_score_splits_and_groups(void **state) {
    (void)state;
    char dir[] = "/tmp/fluke_map5_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *sol = write_tmp(dir, "solution.csv",
                          "image,individual_id,species,Usage\n"
                          "a.jpg,id1,beluga,Public\n"
                          "b.jpg,new_individual,beluga,Private\n"
                          "c.jpg,id2,kiler_whale,Private\n"
                          "d.jpg,id3,killer_whale,Public\n");
    /* a: rank 2 (0.5); b: rank 1 (1); c: rank 3 (1/3); d: absent (0). Rows in another order
     * than the solution: matching is by image name. */
    char *sub = write_tmp(dir, "sub.csv",
                          "image,predictions\n"
                          "d.jpg,id9 id8 id7 id6 new_individual\n"
                          "c.jpg,id1 new_individual id2 id4 id5\n"
                          "b.jpg,new_individual id1 id2 id3 id4\n"
                          "a.jpg,new_individual id1 id2 id3 id4\n");
    fl_err e = {{0}};
    fl_solution s;
    fl_submission u;
    fl_map5_result r;
    assert_int_equal(fl_solution_read(sol, &s, &e), 0);
    assert_int_equal(fl_submission_read(sub, &u, &e), 0);
    assert_int_equal(fl_map5_score(&s, &u, &r, &e), 0);
    assert_int_equal(r.n_all, 4);
    assert_true(fabs(r.all - (0.5 + 1 + 1.0 / 3 + 0) / 4) < 1e-12);
    assert_int_equal(r.n_pub, 2);
    assert_true(fabs(r.pub - (0.5 + 0) / 2) < 1e-12);
    assert_int_equal(r.n_priv, 2);
    assert_true(fabs(r.priv - (1 + 1.0 / 3) / 2) < 1e-12);
    assert_int_equal(r.n_fresh, 1);
    assert_true(r.fresh == 1.0);
    assert_int_equal(r.n_known, 3);
    assert_true(fabs(r.known - (0.5 + 1.0 / 3) / 3) < 1e-12);
    /* Species groups (with the kiler_whale fix applied), sorted by name. */
    assert_int_equal(r.n_species, 2);
    assert_string_equal(r.species[0].name, "beluga");
    assert_int_equal(r.species[0].n, 2);
    assert_true(fabs(r.species[0].sum - 1.5) < 1e-12);
    assert_string_equal(r.species[1].name, "killer_whale");
    assert_int_equal(r.species[1].n, 2);
    fl_map5_result_free(&r);
    fl_submission_free(&u);

    /* A submission missing a test image, or answering an unknown one, is refused. */
    char *miss = write_tmp(dir, "miss.csv", "image,predictions\na.jpg,id1\nb.jpg,id1\nc.jpg,id1\n");
    assert_int_equal(fl_submission_read(miss, &u, &e), 0);
    assert_int_equal(fl_map5_score(&s, &u, &r, &e), -1);
    assert_non_null(strstr(e.msg, "d.jpg"));
    fl_submission_free(&u);
    char *extra = write_tmp(dir, "extra.csv",
                            "image,predictions\na.jpg,x\nb.jpg,x\nc.jpg,x\nd.jpg,x\ne.jpg,x\n");
    assert_int_equal(fl_submission_read(extra, &u, &e), 0);
    assert_int_equal(fl_map5_score(&s, &u, &r, &e), -1);
    assert_non_null(strstr(e.msg, "e.jpg"));
    assert_non_null(strstr(e.msg, ":6:"));
    fl_submission_free(&u);
    fl_solution_free(&s);
    char *files[] = {sol, sub, miss, extra};
    for (int i = 0; i < 4; i++) unlink(files[i]), free(files[i]);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apk_each_rank),
        cmocka_unit_test(test_apk_repeats_and_truncation),
        cmocka_unit_test(test_apk_new_individual),
        cmocka_unit_test(test_score_splits_and_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
