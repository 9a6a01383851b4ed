/* The competition API against the loopback server: ListDataFiles paging, Bearer and Basic
 * credentials, the whole fetch (download + extract, one re-download of a truncated zip),
 * archives with escaping entries, 403 rules, a token that expires, and a run whose whole
 * stderr is captured and searched for secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/kaggle.h"
#include "tests/kaggle/server_child.h"

static void test_list_pages_bearer_and_basic(void **state) {
    (void)state;
    const char *auths[2] = {"bearer", "basic"};
    for (int i = 0; i < 2; i++) {
        ts_fx *f = ts_fx_new("ok", auths[i], NULL);
        fl_kaggle_files l;
        fl_err e;
        int rc = fl_kaggle_list_files(f->k, TS_COMP, &l, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(l.n, 3); /* two pages of 2 + 1 */
        assert_string_equal(l.v[0].name, "train.csv");
        assert_string_equal(l.v[2].name, "blob.bin");
        assert_int_equal(l.v[2].total_bytes, 300000);
        assert_string_equal(l.v[1].creation_date, "2022-02-01T00:00:00Z");
        fl_kaggle_files_free(&l);
        assert_int_equal(ts_server_count(&f->srv, "api", 0), 2);
        if (i == 1) assert_non_null(strstr(fl_kaggle_cred_source(f->k), "KAGGLE_USERNAME"));
        ts_fx_free(f);
    }
}

static void test_wrong_credentials_401(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    fl_kaggle_free(f->k);
    setenv("KAGGLE_API_TOKEN", "tok-S3CR3T-wrong-wrong-wrong", 1);
    fl_err e;
    f->k = fl_kaggle_new(&f->o, &e);
    fl_kaggle_files l;
    assert_int_equal(fl_kaggle_list_files(f->k, TS_COMP, &l, &e), -1);
    assert_non_null(strstr(e.msg, "401 Unauthorized"));
    assert_non_null(strstr(e.msg, "KAGGLE_API_TOKEN (environment)"));
    assert_false(ts_has_secret(e.msg));
    assert_null(strstr(e.msg, "wrong-wrong"));
    ts_fx_free(f);
}

static char *data_dir(ts_fx *f) { return ts_path(f, "out/data"); }

static void test_fetch_whole_competition(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *work = ts_path(f, "work"), *data = data_dir(f);
    fl_err e;
    int rc = fl_kaggle_fetch(f->k, TS_COMP, NULL, 0, work, data, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    char *p = fl_strdupf("%s/train_images/a.jpg", data);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 30000);
    free(p);
    p = fl_strdupf("%s/sample_submission.csv", data);
    assert_int_equal(fl_kaggle_check_submission(p, &e), 0);
    free(p);
    /* Named files: a subset, each placed under data/. */
    fl_remove_tree(data, &e);
    const char *files[] = {"train.csv", "blob.bin"};
    assert_int_equal(fl_kaggle_fetch(f->k, TS_COMP, files, 2, work, data, &e), 0);
    p = fl_strdupf("%s/blob.bin", data);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 300000);
    free(p);
    const char *missing[] = {"train.csv", "not-there.csv"};
    assert_int_equal(fl_kaggle_fetch(f->k, TS_COMP, missing, 2, work, data, &e), -1);
    assert_non_null(strstr(e.msg, "no data file 'not-there.csv'"));
    const char *evil[] = {"../x"};
    assert_int_equal(fl_kaggle_fetch(f->k, TS_COMP, evil, 1, work, data, &e), -1);
    free(work);
    free(data);
    ts_fx_free(f);
}

static void test_truncated_zip_downloaded_again(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("trunczip_once", NULL, NULL);
    char *work = ts_path(f, "work"), *data = data_dir(f);
    fl_err e;
    int rc = fl_kaggle_fetch(f->k, TS_COMP, NULL, 0, work, data, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "downloading it again"));
    free(log);
    char *p = fl_strdupf("%s/test_images/c.jpg", data);
    assert_true(ts_exists(p));
    free(p);
    free(work);
    free(data);
    ts_fx_free(f);
}

static void test_truncated_zip_twice_fails(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("trunczip", NULL, NULL);
    char *work = ts_path(f, "work"), *data = data_dir(f);
    fl_err e;
    assert_int_equal(fl_kaggle_fetch(f->k, TS_COMP, NULL, 0, work, data, &e), -1);
    assert_non_null(strstr(e.msg, "still corrupt after downloading it again"));
    assert_false(ts_exists(data)); /* nothing half-extracted is left */
    char *zip = fl_strdupf("%s/%s.zip", work, TS_COMP);
    assert_false(ts_exists(zip));
    free(zip);
    free(work);
    free(data);
    ts_fx_free(f);
}

static void test_escaping_archives_refused(void **state) {
    (void)state;
    const char *modes[] = {"zipslip", "abspath", "symlink"};
    const char *want[] = {"'../evil.txt'", "'/tmp/fluke-abs-evil.txt'", "'link' -> '../../etc'"};
    for (int i = 0; i < 3; i++) {
        ts_fx *f = ts_fx_new(modes[i], NULL, NULL);
        char *work = ts_path(f, "work"), *data = data_dir(f);
        fl_err e;
        assert_int_equal(fl_kaggle_fetch(f->k, TS_COMP, NULL, 0, work, data, &e), -1);
        if (!strstr(e.msg, want[i])) fprintf(stderr, "%s\n", e.msg);
        assert_non_null(strstr(e.msg, want[i]));
        assert_non_null(strstr(e.msg, "refusing"));
        char *evil = ts_path(f, "out/evil.txt");
        assert_false(ts_exists(evil));
        assert_false(ts_exists("/tmp/fluke-abs-evil.txt"));
        free(evil);
        free(work);
        free(data);
        ts_fx_free(f);
    }
}

static void test_rules_not_accepted(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("rules", NULL, NULL);
    char *dest = ts_path(f, "x.zip");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "accept this competition's rules"));
    assert_non_null(strstr(e.msg, "https://www.kaggle.com/competitions/" TS_COMP "/rules"));
    assert_int_equal(r.retries, 0);
    assert_false(ts_exists(dest));
    free(dest);
    ts_fx_free(f);
}

static void test_token_expires(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("expire", NULL, NULL);
    char *dest = ts_path(f, "train.csv");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_file(f->k, TS_COMP, "train.csv", dest, &r, &e), 0);
    assert_int_equal(fl_kaggle_download_file(f->k, TS_COMP, "blob.bin", dest, &r, &e), 0);
    assert_int_equal(fl_kaggle_download_file(f->k, TS_COMP, "train.csv", dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "401 Unauthorized"));
    assert_non_null(strstr(e.msg, "KAGGLE_API_TOKEN"));
    assert_false(ts_has_secret(e.msg));
    assert_int_equal(r.retries, 0); /* a 401 is not retried */
    free(dest);
    ts_fx_free(f);
}

/* Everything the client writes (log = stderr) plus the error messages a CLI would print. */
static void test_stderr_has_no_secrets(void **state) {
    (void)state;
    const char *modes[] = {"drop", "expire", "rules", "err500"};
    char *cap = NULL;
    for (int i = 0; i < 4; i++) {
        ts_fx *f = ts_fx_new(modes[i], i == 3 ? "basic" : NULL, NULL);
        fl_kaggle_free(f->k);
        cap = ts_path(f, "stderr.txt");
        fflush(stderr);
        int saved = dup(2);
        int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        close(fd);
        f->o.log = NULL; /* the client's default: stderr */
        fl_err e;
        f->k = fl_kaggle_new(&f->o, &e);
        char *work = ts_path(f, "work"), *data = data_dir(f);
        for (int j = 0; j < 3; j++)
            if (fl_kaggle_fetch(f->k, TS_COMP, NULL, 0, work, data, &e) < 0)
                fprintf(stderr, "fluke: %s\n", e.msg);
        fl_kaggle_submit_result sr;
        char *sub = ts_path(f, "sub.csv");
        fl_write_file_atomic(sub, "image,predictions\na.jpg,x\n", 26, &e);
        if (fl_kaggle_submit(f->k, TS_COMP, sub, "d", 0, &sr, &e) < 0) fprintf(stderr, "fluke: %s\n", e.msg);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        char *out = fl_read_file(cap, NULL, &e);
        assert_non_null(out);
        assert_true(strlen(out) > 20); /* it did print progress / errors */
        if (ts_has_secret(out)) fprintf(stderr, "LEAK in mode %s:\n%s\n", modes[i], out);
        assert_false(ts_has_secret(out));
        free(out);
        free(sub);
        free(work);
        free(data);
        free(cap);
        ts_fx_free(f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_pages_bearer_and_basic),
        cmocka_unit_test(test_wrong_credentials_401),
        cmocka_unit_test(test_fetch_whole_competition),
        cmocka_unit_test(test_truncated_zip_downloaded_again),
        cmocka_unit_test(test_truncated_zip_twice_fails),
        cmocka_unit_test(test_escaping_archives_refused),
        cmocka_unit_test(test_rules_not_accepted),
        cmocka_unit_test(test_token_expires),
        cmocka_unit_test(test_stderr_has_no_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
