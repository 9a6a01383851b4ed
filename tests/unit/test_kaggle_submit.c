/* Submissions: CSV validation (file:line errors), the upload -> create -> poll flow against the
 * loopback server (PENDING, PENDING, COMPLETE with a score), an ERROR verdict, the CLI entry
 * point with and without --dry-run, and that the upload target never sees credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kaggle/kaggle.h"
#include "tests/kaggle/server_child.h"

static char *write_tmp(ts_fx *f, const char *name, const char *text) {
    char *p = ts_path(f, name);
    fl_err e;
    assert_int_equal(fl_write_file_atomic(p, text, strlen(text), &e), 0);
    return p;
}

static void test_check_submission(void **state) {
    (void)state;
    char *dir = ts_tmpdir("subcheck");
    struct {
        const char *text, *want;
    } cases[] = {
        {"image,predictions\na.jpg,new_individual x y z w\n", NULL},
        {"\xef\xbb\xbfimage,predictions\r\na.jpg,x\r\n", NULL},
        {"", ":1: the file is empty"},
        {"image,prediction\na.jpg,x\n", ":1: header must be \"image,predictions\""},
        {"image,predictions\n", "no data rows"},
        {"image,predictions\na.jpg x y\n", ":2: expected \"image,predictions\""},
        {"image,predictions\na.jpg,x\n,y\n", ":3:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = fl_strdupf("%s/s%zu.csv", dir, i);
        fl_err e;
        assert_int_equal(fl_write_file_atomic(p, cases[i].text, strlen(cases[i].text), &e), 0);
        int rc = fl_kaggle_check_submission(p, &e);
        if (!cases[i].want) {
            if (rc) fprintf(stderr, "case %zu: %s\n", i, e.msg);
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            if (!strstr(e.msg, cases[i].want)) fprintf(stderr, "case %zu: %s\n", i, e.msg);
            assert_non_null(strstr(e.msg, cases[i].want));
            assert_non_null(strstr(e.msg, p));
        }
        free(p);
    }
    fl_err e;
    char *missing = fl_strdupf("%s/none.csv", dir);
    assert_int_equal(fl_kaggle_check_submission(missing, &e), -1);
    assert_non_null(strstr(e.msg, "No such file"));
    free(missing);
    fl_remove_tree(dir, &e);
    free(dir);
}

static void test_submit_flow_scores(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *p = write_tmp(f, "submission.csv", "image,predictions\na.jpg,new_individual id1 id2\n");
    fl_kaggle_submit_result r;
    fl_err e;
    int rc = fl_kaggle_submit(f->k, TS_COMP, p, "fluke test", 0, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(r.status, "COMPLETE");
    assert_string_equal(r.public_score, "0.84321");
    assert_string_equal(r.private_score, "0.83210");
    assert_true(atoi(r.ref) > 1000);
    assert_non_null(strstr(r.message, "Successfully submitted"));
    /* The server polled 3 times: {} (= PENDING), PENDING, COMPLETE; got the upload; no auth. */
    cJSON *st = ts_server_state(&f->srv);
    const cJSON *sub = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "submissions"), r.ref);
    assert_non_null(sub);
    assert_int_equal(cJSON_GetObjectItem(sub, "polls")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(sub, "description")->valuestring, "fluke test");
    cJSON_Delete(st);
    assert_int_equal(ts_server_count(&f->srv, "upload", 0), 1);
    /* no_wait: returns PENDING right after CreateSubmission. */
    assert_int_equal(fl_kaggle_submit(f->k, TS_COMP, p, NULL, 1, &r, &e), 0);
    assert_string_equal(r.status, "PENDING");
    free(p);
    ts_fx_free(f);
}

static void test_submit_error_status(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("submit_error", NULL, NULL);
    char *p = write_tmp(f, "submission.csv", "image,predictions\na.jpg,x\n");
    fl_kaggle_submit_result r;
    fl_err e;
    assert_int_equal(fl_kaggle_submit(f->k, TS_COMP, p, NULL, 0, &r, &e), 0);
    assert_string_equal(r.status, "ERROR");
    assert_non_null(strstr(r.message, "expected 27956"));
    /* The CLI turns it into an error. */
    char *out = ts_path(f, "out.txt");
    FILE *o = fopen(out, "w");
    assert_int_equal(fl_kaggle_submit_cli(&f->o, TS_COMP, p, NULL, 0, o, &e), -1);
    fclose(o);
    assert_non_null(strstr(e.msg, "failed on Kaggle"));
    assert_non_null(strstr(e.msg, "expected 27956"));
    free(out);
    free(p);
    ts_fx_free(f);
}

static void test_cli(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *p = write_tmp(f, "submission.csv", "image,predictions\na.jpg,new_individual\n");
    char *outp = ts_path(f, "out.txt");
    FILE *o = fopen(outp, "w");
    fl_err e;
    /* Dry run: validates, never talks to the server. */
    assert_int_equal(fl_kaggle_submit_cli(&f->o, TS_COMP, p, NULL, 1, o, &e), 0);
    assert_int_equal(ts_server_count(&f->srv, "api", 0), 0);
    char *bad = write_tmp(f, "bad.csv", "id,label\n1,2\n");
    assert_int_equal(fl_kaggle_submit_cli(&f->o, TS_COMP, bad, NULL, 1, o, &e), -1);
    assert_non_null(strstr(e.msg, "bad.csv:1: header"));
    assert_int_equal(fl_kaggle_submit_cli(&f->o, "", p, NULL, 1, o, &e), -1);
    assert_non_null(strstr(e.msg, "kaggle.competition"));
    /* Real submit prints the score. */
    assert_int_equal(fl_kaggle_submit_cli(&f->o, TS_COMP, p, "m", 0, o, &e), 0);
    fclose(o);
    char *txt = fl_read_file(outp, NULL, &e);
    assert_non_null(strstr(txt, "dry run:"));
    assert_non_null(strstr(txt, "public score: 0.84321"));
    assert_non_null(strstr(txt, "private score: 0.83210"));
    free(txt);
    /* Wrong competition: a clear 404. */
    o = fopen(outp, "w");
    assert_int_equal(fl_kaggle_submit_cli(&f->o, "other-comp", p, NULL, 0, o, &e), -1);
    fclose(o);
    assert_non_null(strstr(e.msg, "404"));
    assert_non_null(strstr(e.msg, "other-comp"));
    free(bad);
    free(outp);
    free(p);
    ts_fx_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_submission),
        cmocka_unit_test(test_submit_flow_scores),
        cmocka_unit_test(test_submit_error_status),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
