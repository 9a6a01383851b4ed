/* Store: opening, ingest (objects + Merkle trees), checkout, dedup, rejected special files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "tests/unit/store_fixture.h"

static int setup(void **state) { return store_fx_setup(state, "ingest"); }
static int teardown(void **state) { return store_fx_teardown(state); }

static void put(const char *dir, const char *rel, const char *text, mode_t mode) {
    char *p = fl_strdupf("%s/%s", dir, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    fl_err e = {0};
    assert_int_equal(fl_mkdirs(p, &e), 0);
    *slash = '/';
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(p, mode);
    free(p);
}

static void mkdir_in(const char *dir, const char *rel) {
    char *p = fl_strdupf("%s/%s", dir, rel);
    fl_err e = {0};
    assert_int_equal(fl_mkdirs(p, &e), 0);
    free(p);
}

static void expect_text(const char *dir, const char *rel, const char *text) {
    char *p = fl_strdupf("%s/%s", dir, rel);
    fl_err e = {0};
    char *got = fl_read_file(p, NULL, &e);
    assert_non_null(got);
    assert_string_equal(got, text);
    free(got);
    free(p);
}

/* Regular files below dir (recursively). */
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0) n += S_ISDIR(st.st_mode) ? count_files(p) : 1;
        free(p);
    }
    closedir(d);
    return n;
}

static char *stage_with(fx *f, const char *label) {
    fl_err e = {0};
    char *st = fl_store_staging_dir(f->s, label, &e);
    assert_non_null(st);
    return st;
}

static void test_round_trip(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "embed_train[3]");
    assert_non_null(strstr(st, "/tmp/"));
    assert_null(strchr(strrchr(st, '/'), '[')); /* label sanitized */
    put(st, "top.txt", "top\n", 0644);
    put(st, "a/b/c.txt", "deep file\n", 0644);
    put(st, "a/run.sh", "#!/bin/sh\necho hi\n", 0755);
    put(st, "a/empty.txt", "", 0644);
    mkdir_in(st, "empty");
    mkdir_in(st, "a/nested/empty2");
    fl_err e = {0};
    fl_digest tree;
    assert_int_equal(fl_store_ingest(f->s, st, &tree, &e), 0);
    assert_int_equal(count_files(st), 0); /* files moved, directories left */
    char *objs = fl_strdupf("%s/objects", f->root);
    assert_int_equal(count_files(objs), 4);
    free(objs);

    char *co = fl_store_checkout(f->s, &tree, &e);
    assert_non_null(co);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&tree, hex);
    assert_non_null(strstr(co, hex));
    expect_text(co, "top.txt", "top\n");
    expect_text(co, "a/b/c.txt", "deep file\n");
    expect_text(co, "a/run.sh", "#!/bin/sh\necho hi\n");
    expect_text(co, "a/empty.txt", "");
    struct stat sb;
    char *p = fl_strdupf("%s/empty", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    free(p);
    p = fl_strdupf("%s/a/nested/empty2", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    free(p);
    /* Plain files are read-only hard links to the object; executables keep their exec bit. */
    p = fl_strdupf("%s/top.txt", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    assert_true(sb.st_nlink >= 2);
    free(p);
    p = fl_strdupf("%s/a/run.sh", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0555);
    free(p);

    /* Checking out again returns the existing directory. */
    char *co2 = fl_store_checkout(f->s, &tree, &e);
    assert_string_equal(co, co2);
    free(co2);

    /* Hashing the checkout as an external input gives the very same tree digest. */
    fl_digest ext;
    assert_int_equal(fl_store_hash_external(f->s, co, &ext, NULL, &e), 0);
    assert_true(fl_digest_eq(&ext, &tree));
    free(co);
    free(st);
}

static void test_dedup(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "one");
    put(st, "x.txt", "same bytes", 0644);
    put(st, "sub/y.txt", "same bytes", 0644);
    put(st, "z.txt", "other bytes", 0644);
    fl_err e = {0};
    fl_digest t1, t2;
    assert_int_equal(fl_store_ingest(f->s, st, &t1, &e), 0);
    char *objs = fl_strdupf("%s/objects", f->root);
    assert_int_equal(count_files(objs), 2);
    /* A second output with the same content adds no object; its duplicates are unlinked. */
    char *st2 = stage_with(f, "two");
    put(st2, "again.txt", "same bytes", 0644);
    assert_int_equal(fl_store_ingest(f->s, st2, &t2, &e), 0);
    assert_int_equal(count_files(objs), 2);
    assert_int_equal(count_files(st2), 0);
    assert_false(fl_digest_eq(&t1, &t2));
    free(objs);
    free(st);
    free(st2);
}

/* An existing object whose size is wrong (damaged) is replaced by a fresh copy, not trusted. */
static void test_damaged_object_replaced_on_ingest(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "a");
    put(st, "x.txt", "precious", 0644);
    fl_err e = {0};
    fl_digest t1, t2;
    assert_int_equal(fl_store_ingest(f->s, st, &t1, &e), 0);
    fl_digest d;
    fl_hasher *h = fl_hasher_new();
    fl_hasher_update(h, "precious", 8);
    fl_hasher_digest(h, &d);
    fl_hasher_free(h);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&d, hex);
    char *obj = fl_strdupf("%s/objects/%.2s/%s", f->root, hex, hex + 2);
    assert_int_equal(truncate(obj, 3), 0);
    put(st, "x.txt", "precious", 0644);
    assert_int_equal(fl_store_ingest(f->s, st, &t2, &e), 0);
    assert_true(fl_digest_eq(&t1, &t2));
    char *got = fl_read_file(obj, NULL, &e);
    assert_string_equal(got, "precious");
    /* A damaged tree is replaced the same way. */
    char thex[FL_DIGEST_HEX];
    fl_digest_hex(&t1, thex);
    char *tp = fl_strdupf("%s/trees/%.2s/%s", f->root, thex, thex + 2);
    assert_int_equal(chmod(tp, 0644), 0);
    int fd = open(tp, O_WRONLY);
    assert_int_equal(pwrite(fd, "X", 1, 0), 1);
    close(fd);
    put(st, "x.txt", "precious", 0644);
    assert_int_equal(fl_store_ingest(f->s, st, &t2, &e), 0);
    char *co = fl_store_checkout(f->s, &t2, &e); /* checkout verifies the tree's digest */
    assert_non_null(co);
    free(co);
    free(tp);
    char *q = fl_strdupf("%s/quarantine/%s", f->root, hex);
    struct stat sb;
    assert_int_equal(stat(q, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    free(q);
    free(got);
    free(obj);
    free(st);
}

static fl_digest ingest_of(fx *f, const char *const *names, const char *const *texts, int n) {
    char *st = stage_with(f, "t");
    for (int i = 0; i < n; i++) put(st, names[i], texts[i], 0644);
    fl_err e = {0};
    fl_digest t;
    assert_int_equal(fl_store_ingest(f->s, st, &t, &e), 0);
    free(st);
    return t;
}

static void test_tree_digest_canonical(void **state) {
    fx *f = *state;
    const char *n1[] = {"a", "b", "d/c"}, *t1[] = {"1", "2", "3"};
    const char *n2[] = {"d/c", "b", "a"}, *t2[] = {"3", "2", "1"};
    fl_digest x = ingest_of(f, n1, t1, 3), y = ingest_of(f, n2, t2, 3);
    assert_true(fl_digest_eq(&x, &y)); /* creation order does not matter */
    const char *t3[] = {"1", "2", "4"}; /* one byte changed, deep in a subdirectory */
    fl_digest z = ingest_of(f, n1, t3, 3);
    assert_false(fl_digest_eq(&x, &z));
    const char *n4[] = {"a", "b", "d/e"}; /* same bytes, one name changed */
    fl_digest w = ingest_of(f, n4, t1, 3);
    assert_false(fl_digest_eq(&x, &w));
}

/* A file holding exactly a tree object's bytes does not share the tree's digest. */
static void test_tree_type_prefix(void **state) {
    fx *f = *state;
    const char *n[] = {"f"}, *t[] = {"x"};
    fl_digest tree = ingest_of(f, n, t, 1);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&tree, hex);
    char *tp = fl_strdupf("%s/trees/%.2s/%s", f->root, hex, hex + 2);
    fl_digest asfile;
    fl_err e = {0};
    assert_int_equal(fl_hash_file(tp, &asfile, &e), 0);
    assert_false(fl_digest_eq(&asfile, &tree));
    struct stat sb;
    assert_int_equal(stat(tp, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    free(tp);
}

static void test_special_files_rejected(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "bad");
    put(st, "ok.txt", "fine", 0644);
    char *lnk = fl_strdupf("%s/sub/link", st);
    put(st, "sub/real.txt", "real", 0644);
    assert_int_equal(symlink("real.txt", lnk), 0);
    fl_err e = {0};
    fl_digest t;
    assert_int_equal(fl_store_ingest(f->s, st, &t, &e), -1);
    assert_non_null(strstr(e.msg, lnk));
    assert_non_null(strstr(e.msg, "symbolic link"));
    assert_int_equal(count_files(st), 3); /* nothing was moved */
    unlink(lnk);
    char *fifo = fl_strdupf("%s/pipe", st);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    e.msg[0] = '\0';
    assert_int_equal(fl_store_ingest(f->s, st, &t, &e), -1);
    assert_non_null(strstr(e.msg, fifo));
    /* Not a directory at all. */
    char *file = fl_strdupf("%s/ok.txt", st);
    assert_int_equal(fl_store_ingest(f->s, file, &t, &e), -1);
    assert_non_null(strstr(e.msg, "not a directory"));
    free(file);
    free(fifo);
    free(lnk);
    free(st);
}

/* A staged file that has another hard link is copied, not moved: the other name stays
 * writable and cannot reach the object. */
static void test_hardlinked_output_copied(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "hl");
    put(st, "out.txt", "shared", 0644);
    char *orig = fl_strdupf("%s/out.txt", st), *other = fl_strdupf("%s/elsewhere.txt", f->dir);
    assert_int_equal(link(orig, other), 0);
    fl_err e = {0};
    fl_digest t;
    assert_int_equal(fl_store_ingest(f->s, st, &t, &e), 0);
    struct stat sb;
    assert_int_equal(stat(other, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(sb.st_nlink, 1);
    free(orig);
    free(other);
    free(st);
}

/* Many files take the batched path (one syncfs for all data, then the renames): same results. */
static void test_batch_round_trip(void **state) {
    fx *f = *state;
    char *st = stage_with(f, "crop");
    char rel[64], text[64];
    for (int i = 0; i < 100; i++) {
        snprintf(rel, sizeof rel, "d%d/img_%02d.jpg", i % 3, i);
        snprintf(text, sizeof text, "pixels %d", i % 50); /* 50 duplicates */
        put(st, rel, text, i == 7 ? 0755 : 0644);
    }
    mkdir_in(st, "d1/empty");
    char *orig = fl_strdupf("%s/d0/img_00.jpg", st), *other = fl_strdupf("%s/linked", f->dir);
    assert_int_equal(link(orig, other), 0);
    fl_err e = {0};
    fl_digest tree;
    assert_int_equal(fl_store_ingest(f->s, st, &tree, &e), 0);
    assert_int_equal(count_files(st), 0);
    char *objs = fl_strdupf("%s/objects", f->root), *tmp = fl_strdupf("%s/tmp", f->root);
    assert_int_equal(count_files(objs), 50);
    assert_int_equal(count_files(tmp), 0); /* no temporaries left, only the empty staging dirs */
    struct stat sb;
    assert_int_equal(stat(other, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644); /* the other link was copied, not taken */
    char *co = fl_store_checkout(f->s, &tree, &e);
    assert_non_null(co);
    for (int i = 0; i < 100; i++) {
        snprintf(rel, sizeof rel, "d%d/img_%02d.jpg", i % 3, i);
        snprintf(text, sizeof text, "pixels %d", i % 50);
        expect_text(co, rel, text);
    }
    char *p = fl_strdupf("%s/d1/img_07.jpg", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0555);
    free(p);
    p = fl_strdupf("%s/d1/empty", co);
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    free(p);
    /* Hashing the checkout as an external input (100 files: the threaded path) gives the
     * digest that ingest computed file by file. */
    fl_digest ext;
    assert_int_equal(fl_store_hash_external(f->s, co, &ext, NULL, &e), 0);
    assert_true(fl_digest_eq(&ext, &tree));
    free(co);
    free(objs);
    free(tmp);
    free(orig);
    free(other);
    free(st);
}

/* Several processes committing and checking out the same content at once (two `fluke run` on
 * one store): every ingest and checkout succeeds, all agree on the digest, the store verifies. */
static void test_concurrent_same_content(void **state) {
    fx *f = *state;
    enum { PROCS = 4, ROUNDS = 4 };
    int out[2];
    assert_int_equal(pipe(out), 0);
    for (int p = 0; p < PROCS; p++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid) continue;
        fl_err e = {0};
        fl_store *s = fl_store_open(f->root, NULL, &e);
        if (!s) _exit(1);
        for (int r = 0; r < ROUNDS; r++) {
            int nfiles = r % 2 ? 3 : 30; /* per-file and batched paths */
            char *st = fl_store_staging_dir(s, "race", &e);
            char rel[64], text[64];
            for (int i = 0; i < nfiles; i++) {
                snprintf(rel, sizeof rel, "sub%d/f%d", i % 2, i);
                snprintf(text, sizeof text, "round %d file %d", r, i);
                put(st, rel, text, 0644);
            }
            fl_digest t;
            if (!st || fl_store_ingest(s, st, &t, &e) != 0) _exit(2);
            char *co = fl_store_checkout(s, &t, &e);
            if (!co) _exit(3);
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(&t, hex);
            char line[64];
            snprintf(line, sizeof line, "%d %s\n", r, hex);
            if (write(out[1], line, strlen(line)) != (ssize_t)strlen(line)) _exit(4);
            fl_remove_tree(st, &e);
            free(st);
            free(co);
        }
        fl_store_close(s);
        _exit(0);
    }
    close(out[1]);
    for (int p = 0; p < PROCS; p++) {
        int status;
        assert_true(wait(&status) > 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char buf[4096];
    ssize_t n = 0, r;
    while ((r = read(out[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += r;
    buf[n] = '\0';
    close(out[0]);
    char first[ROUNDS][33];
    memset(first, 0, sizeof first);
    int lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        int round;
        char hex[64];
        assert_int_equal(sscanf(line, "%d %63s", &round, hex), 2);
        if (!first[round][0]) strcpy(first[round], hex);
        assert_string_equal(first[round], hex);
    }
    assert_int_equal(lines, PROCS * ROUNDS);
    fl_verify_report vr;
    fl_err e = {0};
    assert_int_equal(fl_store_verify(f->s, &vr, NULL, NULL, &e), 0);
    assert_int_equal(vr.corrupt, 0);
    assert_int_equal(vr.objects, 30 + 3 + 30 + 3);
}

static void test_checkout_missing_object(void **state) {
    fx *f = *state;
    const char *n[] = {"keep.txt", "dir/lost.txt"}, *t[] = {"kept", "will vanish"};
    fl_digest tree = ingest_of(f, n, t, 2);
    fl_digest lost;
    fl_hasher *h = fl_hasher_new();
    fl_hasher_update(h, "will vanish", 11);
    fl_hasher_digest(h, &lost);
    fl_hasher_free(h);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&lost, hex);
    char *op = fl_strdupf("%s/objects/%.2s/%s", f->root, hex, hex + 2);
    assert_int_equal(unlink(op), 0);
    fl_err e = {0};
    assert_null(fl_store_checkout(f->s, &tree, &e));
    char *want = fl_strdupf("missing object %s for dir/lost.txt", hex);
    assert_non_null(strstr(e.msg, want));
    /* Nothing half-built is left behind. */
    char *cos = fl_strdupf("%s/checkouts", f->root), *tmp = fl_strdupf("%s/tmp", f->root);
    assert_int_equal(count_files(cos), 0);
    assert_int_equal(count_files(tmp), 0);
    /* A missing tree is reported the same way. */
    fl_digest nope;
    memset(&nope, 0xab, sizeof nope);
    assert_null(fl_store_checkout(f->s, &nope, &e));
    assert_non_null(strstr(e.msg, "missing tree abab"));
    free(cos);
    free(tmp);
    free(want);
    free(op);
}

static void test_unwritable_root(void **state) {
    fx *f = *state;
    put(f->dir, "plainfile", "x", 0644);
    char *bad = fl_strdupf("%s/plainfile/store", f->dir);
    fl_err e = {0};
    assert_null(fl_store_open(bad, NULL, &e));
    assert_non_null(strstr(e.msg, bad));
    assert_non_null(strstr(e.msg, "Not a directory"));
    e.msg[0] = '\0';
    assert_null(fl_store_open("", NULL, &e));
    assert_true(e.msg[0] != '\0');
    free(bad);
}

static void test_stale_staging_removed(void **state) {
    fx *f = *state;
    pid_t child = fork();
    if (child == 0) _exit(0);
    assert_true(child > 0);
    waitpid(child, NULL, 0);
    char *dead = fl_strdupf("%s/tmp/%ld-crop-AbCdEf", f->root, (long)child);
    char *alive = fl_strdupf("%s/tmp/%ld-crop-XyZxYz", f->root, (long)getppid());
    char *other = fl_strdupf("%s/tmp/not-a-pid", f->root);
    put(dead, "partial.bin", "half", 0644);
    put(alive, "partial.bin", "half", 0644);
    mkdir_in(other, "");
    fl_err e = {0};
    fl_store *s2 = fl_store_open(f->root, NULL, &e);
    assert_non_null(s2);
    struct stat sb;
    assert_int_equal(stat(dead, &sb), -1);
    assert_int_equal(stat(alive, &sb), 0);
    assert_int_equal(stat(other, &sb), 0);
    assert_string_equal(fl_store_root(s2), fl_store_root(f->s));
    fl_store_close(s2);
    free(dead);
    free(alive);
    free(other);
}

static void test_work_dir(void **state) {
    fx *f = *state;
    fl_digest k;
    memset(&k, 7, sizeof k);
    fl_err e = {0};
    char *w = fl_store_work_dir(f->s, &k, &e);
    assert_non_null(w);
    put(w, "ckpt/step1.bin", "weights", 0644);
    char *w2 = fl_store_work_dir(f->s, &k, &e); /* survives, same path */
    assert_string_equal(w, w2);
    expect_text(w2, "ckpt/step1.bin", "weights");
    assert_int_equal(fl_store_work_dir_remove(f->s, &k, &e), 0);
    struct stat sb;
    assert_int_equal(stat(w, &sb), -1);
    assert_int_equal(fl_store_work_dir_remove(f->s, &k, &e), 0); /* missing is fine */
    free(w);
    free(w2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_object_replaced_on_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tree_digest_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tree_type_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_files_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hardlinked_output_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkout_missing_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_staging_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
