/* Credential discovery order (with a temporary HOME and environment), token files, kaggle.json
 * parsing errors, the group/other-readable warning, and that no secret reaches a message. */
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

typedef struct fixture {
    char *home;
    FILE *warn;
    char *warn_path;
} fixture;

static void put(const char *path, const char *text, mode_t mode) {
    fl_err e;
    char *dir = strdup(path);
    *strrchr(dir, '/') = 0;
    assert_int_equal(fl_mkdirs(dir, &e), 0);
    free(dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->home = ts_tmpdir("creds");
    f->warn_path = fl_strdupf("%s/warnings.txt", f->home);
    f->warn = fopen(f->warn_path, "w+");
    ts_clear_cred_env();
    setenv("HOME", f->home, 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    fl_err e;
    fclose(f->warn);
    fl_remove_tree(f->home, &e);
    free(f->home);
    free(f->warn_path);
    free(f);
    return 0;
}

static char *warnings(fixture *f) {
    fflush(f->warn);
    fl_err e;
    return fl_read_file(f->warn_path, NULL, &e);
}

static void test_nothing_found_lists_places(void **state) {
    fixture *f = *state;
    fl_kaggle_creds c;
    fl_err e;
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), -1);
    assert_non_null(strstr(e.msg, "KAGGLE_API_TOKEN"));
    assert_non_null(strstr(e.msg, "kaggle.json"));
    assert_int_equal(c.kind, FL_KAGGLE_AUTH_NONE);
}

static void test_order(void **state) {
    fixture *f = *state;
    fl_kaggle_creds c;
    fl_err e;
    char *p;
    /* 4. kaggle.json under XDG (no ~/.kaggle directory). */
    char *xdg = fl_strdupf("%s/xdg", f->home);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    p = fl_strdupf("%s/kaggle/kaggle.json", xdg);
    put(p, "{\"username\":\"xdguser\",\"key\":\"xdgkey-0001\"}", 0600);
    free(p);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_int_equal(c.kind, FL_KAGGLE_AUTH_BASIC);
    assert_string_equal(c.username, "xdguser");
    assert_non_null(strstr(c.source, "/xdg/kaggle/kaggle.json"));
    /* "Basic base64(xdguser:xdgkey-0001)" */
    char *b = fl_base64_encode("xdguser:xdgkey-0001", 19);
    char *want = fl_strdupf("Authorization: Basic %s", b);
    assert_string_equal(c.authorization, want);
    free(b);
    free(want);
    fl_kaggle_creds_free(&c);

    /* 4'. ~/.kaggle exists: it wins over XDG, like the official client. */
    p = fl_strdupf("%s/.kaggle/kaggle.json", f->home);
    put(p, "{\"username\":\"homeuser\",\"key\":\"homekey-0002\"}", 0600);
    free(p);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.username, "homeuser");
    fl_kaggle_creds_free(&c);

    /* 4''. KAGGLE_CONFIG_DIR wins over both. */
    char *cfg = fl_strdupf("%s/cfgdir", f->home);
    p = fl_strdupf("%s/kaggle.json", cfg);
    put(p, "{\"username\":\"cfguser\",\"key\":\"cfgkey-0003\"}", 0600);
    free(p);
    setenv("KAGGLE_CONFIG_DIR", cfg, 1);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.username, "cfguser");
    fl_kaggle_creds_free(&c);

    /* 3. KAGGLE_USERNAME/KAGGLE_KEY beat any kaggle.json. */
    setenv("KAGGLE_USERNAME", "envuser", 1);
    setenv("KAGGLE_KEY", "envkey-0004", 1);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.username, "envuser");
    assert_non_null(strstr(c.source, "KAGGLE_USERNAME"));
    fl_kaggle_creds_free(&c);

    /* 2. ~/.kaggle/access_token beats the key. */
    p = fl_strdupf("%s/.kaggle/access_token", f->home);
    put(p, "  filetoken-0005\n", 0600);
    free(p);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_int_equal(c.kind, FL_KAGGLE_AUTH_BEARER);
    assert_string_equal(c.authorization, "Authorization: Bearer filetoken-0005");
    fl_kaggle_creds_free(&c);

    /* 1. KAGGLE_API_TOKEN as a path to a file... */
    char *tf = fl_strdupf("%s/tok.txt", f->home);
    put(tf, "pathtoken-0006\n", 0600);
    setenv("KAGGLE_API_TOKEN", tf, 1);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.authorization, "Authorization: Bearer pathtoken-0006");
    assert_non_null(strstr(c.source, "token file"));
    fl_kaggle_creds_free(&c);
    /* ...or the token itself. */
    setenv("KAGGLE_API_TOKEN", "envtoken-0007", 1);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.authorization, "Authorization: Bearer envtoken-0007");
    assert_string_equal(c.source, "KAGGLE_API_TOKEN (environment)");
    fl_kaggle_creds_free(&c);

    /* Only one of USERNAME/KEY: falls through to kaggle.json. */
    ts_clear_cred_env();
    setenv("KAGGLE_USERNAME", "lonely", 1);
    p = fl_strdupf("%s/.kaggle/access_token", f->home);
    unlink(p);
    free(p);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    assert_string_equal(c.username, "homeuser");
    fl_kaggle_creds_free(&c);
    free(tf);
    free(cfg);
    free(xdg);
}

static void test_readable_json_warns(void **state) {
    fixture *f = *state;
    char *p = fl_strdupf("%s/.kaggle/kaggle.json", f->home);
    put(p, "{\"username\":\"u\",\"key\":\"secretkey-0008\"}", 0644);
    fl_kaggle_creds c;
    fl_err e;
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    char *w = warnings(f);
    assert_non_null(strstr(w, "readable by other users"));
    assert_non_null(strstr(w, "chmod 600"));
    assert_null(strstr(w, "secretkey-0008"));
    free(w);
    fl_kaggle_creds_free(&c);
    /* 0600: no warning. */
    chmod(p, 0600);
    assert_int_equal(ftruncate(fileno(f->warn), 0), 0);
    rewind(f->warn);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), 0);
    w = warnings(f);
    assert_string_equal(w, "");
    free(w);
    fl_kaggle_creds_free(&c);
    free(p);
}

static void test_bad_json_never_quotes_secret(void **state) {
    fixture *f = *state;
    char *p = fl_strdupf("%s/.kaggle/kaggle.json", f->home);
    fl_kaggle_creds c;
    fl_err e;
    put(p, "{\"username\":\"u\",\"key\":\"leakykey-0009\"", 0600); /* truncated JSON */
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), -1);
    assert_non_null(strstr(e.msg, "not a JSON object"));
    assert_null(strstr(e.msg, "leakykey"));
    put(p, "{\"username\":\"u\",\"key\":42}", 0600);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), -1);
    assert_non_null(strstr(e.msg, "\"key\""));
    put(p, "{\"username\":\"u\",\"key\":\"bad\\nkey\"}", 0600);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), -1);
    assert_non_null(strstr(e.msg, "malformed"));
    assert_null(strstr(e.msg, "bad"));
    free(p);
    /* A token file that is empty. */
    char *tf = fl_strdupf("%s/empty", f->home);
    put(tf, "\n", 0600);
    setenv("KAGGLE_API_TOKEN", tf, 1);
    assert_int_equal(fl_kaggle_creds_find(&c, f->warn, &e), -1);
    assert_non_null(strstr(e.msg, "without a token"));
    free(tf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_found_lists_places, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_json_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_json_never_quotes_secret, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
