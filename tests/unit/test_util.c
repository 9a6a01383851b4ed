#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/util.h"

static void test_atomic_write_and_read(void **state) {
    (void)state;
    char dir[] = "/tmp/fluke-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *p = fl_strdupf("%s/a/b/c.txt", dir);
    char *sub = fl_strdupf("%s/a/b", dir);
    fl_err e = {0};
    assert_int_equal(fl_mkdirs(sub, &e), 0);
    assert_int_equal(fl_write_file_atomic(p, "hello", 5, &e), 0);
    size_t n = 0;
    char *s = fl_read_file(p, &n, &e);
    assert_non_null(s);
    assert_int_equal(n, 5);
    assert_string_equal(s, "hello");
    free(s);
    assert_null(fl_read_file("/nonexistent/x", NULL, &e));
    assert_non_null(strstr(e.msg, "/nonexistent/x"));
    assert_int_equal(fl_remove_tree(dir, &e), 0);
    assert_int_not_equal(access(dir, F_OK), 0);
    free(p);
    free(sub);
}

static void test_mkdirs_through_file_fails(void **state) {
    (void)state;
    fl_err e = {0};
    assert_int_equal(fl_mkdirs("/dev/null/x", &e), -1);
    assert_non_null(strstr(e.msg, "/dev/null"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_mkdirs_through_file_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
