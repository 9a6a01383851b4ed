/* Bounded whole-file reads (fl_read_file_max and friends, artifacts/util.c) and the store files
 * that must never be followed, waited on or read without bound: the stat cache. Each case would
 * hang, follow a link or allocate the file's claimed size without the limits; alarm() turns a
 * hang into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "artifacts/util.h"
#include "tests/unit/store_fixture.h"

static int setup(void **state) {
    alarm(60); /* a hang fails the test instead of the suite's patience */
    return store_fx_setup(state, "reads");
}
static int teardown(void **state) {
    alarm(0);
    return store_fx_teardown(state);
}

static void expect_msg(const fl_err *e, const char *a, const char *b) {
    if (!strstr(e->msg, a) || (b && !strstr(e->msg, b)))
        fail_msg("message '%s' lacks '%s'%s%s", e->msg, a, b ? " / " : "", b ? b : "");
}

static void test_limits(void **state) {
    fx *f = *state;
    fl_err e = {0};
    char *p = fl_strdupf("%s/ten", f->dir);
    assert_int_equal(fl_write_file_atomic(p, "0123456789", 10, &e), 0);
    size_t n = 0;
    char *b = fl_read_file_max(p, &n, 10, &e); /* exactly the limit */
    assert_non_null(b);
    assert_int_equal(n, 10);
    assert_string_equal(b, "0123456789");
    free(b);
    assert_null(fl_read_file_max(p, &n, 9, &e));
    expect_msg(&e, p, "9-byte limit");
    /* A sparse 1 TiB file: refused from its size, nothing allocated or read. */
    assert_int_equal(truncate(p, (off_t)1 << 40), 0);
    double t0 = fl_now();
    assert_null(fl_read_file(p, &n, &e));
    expect_msg(&e, p, "limit");
    assert_true(fl_now() - t0 < 1.0);
    free(p);
    /* A file that holds more than fstat says (procfs reports size 0): the limit still holds
     * while reading, and a large enough limit reads it all. */
    assert_null(fl_read_file_max("/proc/self/status", &n, 16, &e));
    expect_msg(&e, "/proc/self/status", "grew while being read");
    b = fl_read_file_max("/proc/self/status", &n, 1 << 20, &e);
    assert_non_null(b);
    assert_true(n > 16 && strlen(b) == n);
    free(b);
}

static void test_not_regular(void **state) {
    fx *f = *state;
    fl_err e = {0};
    char *fifo = fl_strdupf("%s/fifo", f->dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    double t0 = fl_now();
    assert_null(fl_read_file(fifo, NULL, &e)); /* blocked forever as `extends` before */
    expect_msg(&e, fifo, "a FIFO");
    assert_null(fl_read_file("/dev/zero", NULL, &e)); /* grew to 24 GB before */
    expect_msg(&e, "/dev/zero", "character device");
    assert_null(fl_read_file(f->dir, NULL, &e));
    expect_msg(&e, f->dir, "a directory");
    assert_true(fl_now() - t0 < 1.0);
    /* Symbolic links: followed by default, refused with FL_READ_NOFOLLOW (store files). */
    char *real = fl_strdupf("%s/real", f->dir), *link = fl_strdupf("%s/link", f->dir);
    assert_int_equal(fl_write_file_atomic(real, "abc", 3, &e), 0);
    assert_int_equal(symlink(real, link), 0);
    char *b = fl_read_file(link, NULL, &e);
    assert_string_equal(b, "abc");
    free(b);
    assert_null(fl_read_file_flags(link, NULL, 100, FL_READ_NOFOLLOW, &e));
    expect_msg(&e, link, "symbolic link");
    free(real);
    free(link);
    free(fifo);
}

/* The stat cache replaced by a FIFO, a link to /dev/zero, or a huge sparse file: external
 * inputs are simply re-hashed (the cache only saves work), nothing hangs, and the next save
 * replaces the damaged file. */
static void test_statcache_damage(void **state) {
    fx *f = *state;
    fl_err e = {0};
    char *in = fl_strdupf("%s/input.txt", f->dir), *sc = fl_strdupf("%s/statcache", f->root);
    assert_int_equal(fl_write_file_atomic(in, "input", 5, &e), 0);
    for (int k = 0; k < 4; k++) {
        fl_store_close(f->s);
        chmod(sc, 0644);
        unlink(sc);
        rmdir(sc);
        if (k == 0) assert_int_equal(mkfifo(sc, 0644), 0);
        if (k == 1) assert_int_equal(symlink("/dev/zero", sc), 0);
        if (k == 2) {
            assert_int_equal(fl_write_file_atomic(sc, "x", 1, &e), 0);
            assert_int_equal(truncate(sc, (off_t)1 << 40), 0);
        }
        if (k == 3) assert_int_equal(mkdir(sc, 0755), 0);
        f->s = fl_store_open(f->root, NULL, &e);
        assert_non_null(f->s);
        fl_digest d;
        fl_hash_stats st = {0};
        double t0 = fl_now();
        if (fl_store_hash_external(f->s, in, &d, &st, &e) != 0) fail_msg("case %d: %s", k, e.msg);
        assert_int_equal(st.files_hashed, 1);
        if (fl_store_statcache_save(f->s, &e) != 0) fail_msg("save %d: %s", k, e.msg);
        assert_true(fl_now() - t0 < 5.0);
        struct stat sb;
        assert_int_equal(lstat(sc, &sb), 0);
        assert_true(S_ISREG(sb.st_mode) && sb.st_size < 4096);
    }
    free(in);
    free(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_regular, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statcache_damage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
