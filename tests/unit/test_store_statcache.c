/* Stat cache for external inputs: 20,000 files hashed once, none on the rerun, exactly the
 * touched one after an edit, and racily clean entries re-hashed.
 *
 * File timestamps are set explicitly (utimensat) to well in the past, so no entry is racy by
 * accident of timing: the racy cases are constructed on purpose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/store.h"

typedef struct fx {
    char dir[64];
    char *root, *data;
    fl_store *s;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    /* 20,000 files: on tmpfs when there is one, because creating and removing them on a busy
     * shared disk can take a minute while the code under test needs well under a second. */
    strcpy(f->dir, "/dev/shm/fluke-statcache-XXXXXX");
    if (!mkdtemp(f->dir)) {
        strcpy(f->dir, "/tmp/fluke-statcache-XXXXXX");
        if (!mkdtemp(f->dir)) return -1;
    }
    f->root = fl_strdupf("%s/store", f->dir);
    f->data = fl_strdupf("%s/data", f->dir);
    fl_err e = {0};
    f->s = fl_store_open(f->root, NULL, &e);
    if (!f->s || fl_mkdirs(f->data, &e) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    fl_store_close(f->s);
    fl_err e;
    fl_remove_tree(f->dir, &e);
    free(f->root);
    free(f->data);
    free(f);
    return 0;
}

/* Writes path with text and sets its mtime to now - age_s (seconds; negative = future). */
static void write_aged(const char *path, const char *text, long age_s) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    struct timespec now, ts[2];
    clock_gettime(CLOCK_REALTIME, &now);
    ts[0] = ts[1] = (struct timespec){now.tv_sec - age_s, 123456789};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static void reopen(fx *f) {
    fl_err e = {0};
    assert_int_equal(fl_store_statcache_save(f->s, &e), 0);
    fl_store_close(f->s);
    f->s = fl_store_open(f->root, NULL, &e);
    assert_non_null(f->s);
}

static fl_hash_stats hash_data(fx *f, fl_digest *d) {
    fl_hash_stats st = {0};
    fl_err e = {0};
    int rc = fl_store_hash_external(f->s, f->data, d, &st, &e);
    if (rc != 0) fprintf(stderr, "hash_external: %s\n", e.msg);
    assert_int_equal(rc, 0);
    return st;
}

#define NDIRS 100
#define PER_DIR 200

static void test_twenty_thousand_files(void **state) {
    fx *f = *state;
    char path[512];
    for (int i = 0; i < NDIRS; i++) {
        snprintf(path, sizeof path, "%s/d%03d", f->data, i);
        assert_int_equal(mkdir(path, 0755), 0);
        for (int j = 0; j < PER_DIR; j++) {
            char text[64];
            snprintf(path, sizeof path, "%s/d%03d/img_%05d.jpg", f->data, i, j);
            snprintf(text, sizeof text, "image %d/%d\n", i, j);
            write_aged(path, text, 1000);
        }
    }
    fl_digest d1, d2, d3, d4;
    fl_hash_stats st = hash_data(f, &d1);
    assert_int_equal(st.files_seen, NDIRS * PER_DIR);
    assert_int_equal(st.files_hashed, NDIRS * PER_DIR);
    assert_true(st.bytes_hashed > 0);

    reopen(f);
    st = hash_data(f, &d2);
    assert_int_equal(st.files_seen, NDIRS * PER_DIR);
    assert_int_equal(st.files_hashed, 0);
    assert_int_equal(st.bytes_hashed, 0);
    assert_true(fl_digest_eq(&d1, &d2));

    /* Touch one file: new content (same length) and a different (still old) mtime. */
    snprintf(path, sizeof path, "%s/d042/img_00017.jpg", f->data);
    write_aged(path, "IMAGE 42/17\n", 900);
    st = hash_data(f, &d3);
    assert_int_equal(st.files_hashed, 1);
    assert_false(fl_digest_eq(&d1, &d3));

    reopen(f);
    st = hash_data(f, &d4);
    assert_int_equal(st.files_hashed, 0);
    assert_true(fl_digest_eq(&d3, &d4));

    /* Unsaved cache: a fresh store handle without save re-hashes the edited file again. */
    snprintf(path, sizeof path, "%s/d000/img_00000.jpg", f->data);
    write_aged(path, "changed\n", 800);
    st = hash_data(f, &d4);
    assert_int_equal(st.files_hashed, 1);
    fl_store_close(f->s);
    fl_err e = {0};
    f->s = fl_store_open(f->root, NULL, &e);
    st = hash_data(f, &d4);
    assert_int_equal(st.files_hashed, 1);
}

/* An mtime not strictly older than the cache write cannot prove the file unchanged. */
static void test_racy_clean_rehashed(void **state) {
    fx *f = *state;
    char *p = fl_strdupf("%s/future.txt", f->data);
    write_aged(p, "from the future", -3600);
    char *q = fl_strdupf("%s/old.txt", f->data);
    write_aged(q, "old", 1000);
    fl_digest d;
    fl_hash_stats st = hash_data(f, &d);
    assert_int_equal(st.files_hashed, 2);
    reopen(f);
    st = hash_data(f, &d);
    assert_int_equal(st.files_hashed, 1); /* the future one, every time */
    reopen(f);
    st = hash_data(f, &d);
    assert_int_equal(st.files_hashed, 1);
    free(p);
    free(q);
}

/* git's rule exactly: set the cache file's own mtime (its write time) to equal, then to just
 * after, the input's mtime. */
static void test_racy_guard_uses_cache_write_time(void **state) {
    fx *f = *state;
    char *p = fl_strdupf("%s/a.txt", f->data);
    write_aged(p, "aaa", 500);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    fl_digest d;
    hash_data(f, &d);
    fl_err e = {0};
    assert_int_equal(fl_store_statcache_save(f->s, &e), 0);
    char *cache = fl_strdupf("%s/statcache", f->root);
    struct timespec ts[2] = {sb.st_mtim, sb.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, cache, ts, 0), 0);
    fl_store_close(f->s);
    f->s = fl_store_open(f->root, NULL, &e);
    fl_hash_stats st = hash_data(f, &d);
    assert_int_equal(st.files_hashed, 1); /* mtime == write time: racy */
    fl_store_close(f->s);                 /* (not saved: the cache file keeps its mtime) */
    ts[0].tv_nsec = ts[1].tv_nsec = sb.st_mtim.tv_nsec + 1;
    assert_int_equal(utimensat(AT_FDCWD, cache, ts, 0), 0);
    f->s = fl_store_open(f->root, NULL, &e);
    st = hash_data(f, &d);
    assert_int_equal(st.files_hashed, 0); /* strictly older: clean */
    free(cache);
    free(p);
}

/* Two store handles (two concurrent runs) hashing different inputs: the later save keeps the
 * earlier one's entries instead of overwriting them. */
static void test_concurrent_savers_merge(void **state) {
    fx *f = *state;
    char *a = fl_strdupf("%s/a", f->data), *b = fl_strdupf("%s/b", f->data);
    assert_int_equal(mkdir(a, 0755), 0);
    assert_int_equal(mkdir(b, 0755), 0);
    char *pa = fl_strdupf("%s/x.txt", a), *pb = fl_strdupf("%s/y.txt", b);
    write_aged(pa, "in a", 500);
    write_aged(pb, "in b", 500);
    fl_err e = {0};
    fl_store *other = fl_store_open(f->root, NULL, &e);
    fl_digest d;
    fl_hash_stats st = {0};
    assert_int_equal(fl_store_hash_external(f->s, a, &d, &st, &e), 0);
    assert_int_equal(fl_store_hash_external(other, b, &d, &st, &e), 0);
    assert_int_equal(st.files_hashed, 2);
    assert_int_equal(fl_store_statcache_save(f->s, &e), 0);
    assert_int_equal(fl_store_statcache_save(other, &e), 0); /* merges f->s's entries */
    fl_store_close(other);
    fl_store_close(f->s);
    f->s = fl_store_open(f->root, NULL, &e);
    st = (fl_hash_stats){0};
    assert_int_equal(fl_store_hash_external(f->s, f->data, &d, &st, &e), 0);
    assert_int_equal(st.files_seen, 2);
    assert_int_equal(st.files_hashed, 0);
    free(a);
    free(b);
    free(pa);
    free(pb);
}

/* Entries of deleted files are dropped when the cache is next saved. */
static void test_deleted_files_pruned(void **state) {
    fx *f = *state;
    char *a = fl_strdupf("%s/keep.txt", f->data), *b = fl_strdupf("%s/gone.txt", f->data);
    char *c = fl_strdupf("%s/new.txt", f->data);
    write_aged(a, "a", 500);
    write_aged(b, "b", 500);
    fl_digest d;
    hash_data(f, &d);
    reopen(f);
    assert_int_equal(unlink(b), 0);
    write_aged(c, "c", 500); /* something new, so there is a save to do */
    hash_data(f, &d);
    reopen(f);
    char *cache = fl_strdupf("%s/statcache", f->root);
    size_t len;
    fl_err e = {0};
    char *text = fl_read_file(cache, &len, &e);
    assert_non_null(text);
    int has_a = 0, has_b = 0, has_c = 0;
    for (size_t i = 0; i < len; i += strlen(text + i) + 1) {
        if (strstr(text + i, a)) has_a = 1;
        if (strstr(text + i, b)) has_b = 1;
        if (strstr(text + i, c)) has_c = 1;
    }
    assert_true(has_a && has_c);
    assert_false(has_b);
    free(text);
    free(cache);
    free(a);
    free(b);
    free(c);
}

static void test_damaged_cache_ignored(void **state) {
    fx *f = *state;
    char *p = fl_strdupf("%s/a.txt", f->data);
    write_aged(p, "aaa", 500);
    fl_digest d1, d2;
    hash_data(f, &d1);
    reopen(f);
    /* Flip one byte in the middle of the saved cache. */
    char *cache = fl_strdupf("%s/statcache", f->root);
    int fd = open(cache, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, 30), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, 30), 1);
    close(fd);
    fl_store_close(f->s);
    fl_err e = {0};
    f->s = fl_store_open(f->root, NULL, &e);
    fl_hash_stats st = hash_data(f, &d2);
    assert_int_equal(st.files_hashed, 1);
    assert_true(fl_digest_eq(&d1, &d2));
    free(cache);
    free(p);
}

/* Every truncation and every single-byte change of the cache file is detected: the file is
 * ignored as a whole (all files re-hashed, same digest), never half-trusted, never a crash. */
static void test_every_truncation_and_flip(void **state) {
    fx *f = *state;
    for (int i = 0; i < 3; i++) {
        char *p = fl_strdupf("%s/f%d.txt", f->data, i);
        write_aged(p, i == 1 ? "one" : "other", 500);
        free(p);
    }
    fl_digest want, got;
    hash_data(f, &want);
    reopen(f);
    char *cache = fl_strdupf("%s/statcache", f->root);
    size_t len;
    fl_err e = {0};
    char *orig = fl_read_file(cache, &len, &e);
    assert_non_null(orig);
    char *m = malloc(len);
    for (size_t k = 0; k < 2 * len; k++) {
        size_t n = len;
        memcpy(m, orig, len);
        if (k < len) n = k;             /* truncated to k bytes */
        else m[k - len] ^= 0x04;        /* one byte changed */
        assert_int_equal(fl_write_file_atomic(cache, m, n, &e), 0);
        fl_store_close(f->s);
        f->s = fl_store_open(f->root, NULL, &e);
        fl_hash_stats st = hash_data(f, &got);
        assert_int_equal(st.files_hashed, 3);
        assert_true(fl_digest_eq(&want, &got));
    }
    /* The intact file is used again. */
    assert_int_equal(fl_write_file_atomic(cache, orig, len, &e), 0);
    fl_store_close(f->s);
    f->s = fl_store_open(f->root, NULL, &e);
    assert_int_equal(hash_data(f, &got).files_hashed, 0);
    free(m);
    free(orig);
    free(cache);
}

static void test_single_file_and_relative_path(void **state) {
    fx *f = *state;
    char *p = fl_strdupf("%s/one.csv", f->data);
    write_aged(p, "image,species,individual_id\n", 500);
    fl_digest a, b;
    fl_err e = {0};
    fl_hash_stats st = {0};
    assert_int_equal(fl_store_hash_external(f->s, p, &a, &st, &e), 0);
    assert_int_equal(fl_hash_file(p, &b, &e), 0);
    assert_true(fl_digest_eq(&a, &b)); /* a file's digest is its content digest */
    assert_int_equal(st.files_hashed, 1);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    st = (fl_hash_stats){0};
    assert_int_equal(fl_store_hash_external(f->s, "data/one.csv", &b, &st, &e), 0);
    assert_true(fl_digest_eq(&a, &b));
    assert_int_equal(st.files_hashed, 0); /* same absolute path, same entry */
    assert_int_equal(fl_store_hash_external(f->s, "data//", &b, NULL, &e), 0);
    assert_int_equal(chdir(cwd), 0);
    free(p);
}

static void test_external_errors(void **state) {
    fx *f = *state;
    fl_digest d;
    fl_err e = {0};
    char *missing = fl_strdupf("%s/nope", f->data);
    assert_int_equal(fl_store_hash_external(f->s, missing, &d, NULL, &e), -1);
    assert_non_null(strstr(e.msg, missing));
    assert_non_null(strstr(e.msg, "does not exist"));
    /* A fifo inside an input directory is named. */
    char *fifo = fl_strdupf("%s/pipe", f->data);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(fl_store_hash_external(f->s, f->data, &d, NULL, &e), -1);
    assert_non_null(strstr(e.msg, fifo));
    unlink(fifo);
    /* Symbolic links are followed (a dataset may link its images), cycles are an error. */
    char *real = fl_strdupf("%s/real.txt", f->data), *lnk = fl_strdupf("%s/link.txt", f->data);
    write_aged(real, "r", 500);
    assert_int_equal(symlink("real.txt", lnk), 0);
    assert_int_equal(fl_store_hash_external(f->s, f->data, &d, NULL, &e), 0);
    char *loop = fl_strdupf("%s/sub/loop", f->data), *sub = fl_strdupf("%s/sub", f->data);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(symlink("..", loop), 0);
    assert_int_equal(fl_store_hash_external(f->s, f->data, &d, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "cycle"));
    unlink(loop);
    char *dangling = fl_strdupf("%s/dangling", f->data);
    assert_int_equal(symlink("gone", dangling), 0);
    assert_int_equal(fl_store_hash_external(f->s, f->data, &d, NULL, &e), -1);
    assert_non_null(strstr(e.msg, dangling));
    free(dangling);
    free(loop);
    free(sub);
    free(real);
    free(lnk);
    free(fifo);
    free(missing);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_twenty_thousand_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racy_clean_rehashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racy_guard_uses_cache_write_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_savers_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_files_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_cache_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_and_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_file_and_relative_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
