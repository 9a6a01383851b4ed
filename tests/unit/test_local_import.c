/* The local source's import (stages/local/stages.h): a Kaggle-layout folder and zips written
 * here with libarchive (at the root, under one top folder, with a symlink, without train.csv,
 * with a listed image missing), the layout-only copy, mode normalization, and messages that
 * name the user's file rather than the staged copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stages/local/stages.h"

static const char TRAIN[] =
    "\xef\xbb\xbfimage,species,individual_id\r\n\"a.jpg\",kiler_whale,id1\r\nb.jpg,beluga,id2\r\n";
static const char SAMPLE[] = "image,predictions\nt.jpg,id1 id2 new_individual\n";

typedef struct fx {
    char dir[64];
} fx;

static char *P(const fx *f, const char *rel) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", f->dir, rel);
    return buf[k];
}

static void put(const char *path, const char *text) {
    FILE *o = fopen(path, "wb");
    assert_non_null(o);
    fputs(text, o);
    fclose(o);
}

static int setup(void **st) {
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/fluke-local-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *st = f;
    return 0;
}

static int teardown(void **st) {
    fx *f = *st;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", f->dir, f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

/* A Kaggle-layout folder under f->dir/src (plus things that are not the layout). */
static void make_folder(const fx *f) {
    assert_int_equal(mkdir(P(f, "src"), 0755), 0);
    assert_int_equal(mkdir(P(f, "src/train_images"), 0755), 0);
    assert_int_equal(mkdir(P(f, "src/test_images"), 0755), 0);
    put(P(f, "src/train.csv"), TRAIN);
    put(P(f, "src/sample_submission.csv"), SAMPLE);
    put(P(f, "src/train_images/a.jpg"), "AAAA");
    put(P(f, "src/train_images/b.jpg"), "BB");
    put(P(f, "src/test_images/t.jpg"), "T");
    chmod(P(f, "src/train_images/b.jpg"), 0755);
    put(P(f, "src/happy-whale-and-dolphin.zip"), "not the layout");
    put(P(f, "src/notes.txt"), "mine");
}

static void assert_mode(const char *path, mode_t want) {
    struct stat s;
    assert_int_equal(stat(path, &s), 0);
    assert_int_equal(s.st_mode & 07777, want);
}

static void test_is_zip_and_rename(void **st) {
    (void)st;
    assert_true(fl_local_is_zip("data/happy-whale-and-dolphin.zip"));
    assert_true(fl_local_is_zip("HW.ZIP"));
    assert_false(fl_local_is_zip(".zip"));
    assert_false(fl_local_is_zip("data/hw"));
    assert_false(fl_local_is_zip("hw.zipx"));
    assert_false(fl_local_is_zip(NULL));
    fl_err e;
    snprintf(e.msg, sizeof e.msg,
             "/s/data/train.csv:3: image \"x\" is listed but missing from /s/data/train_images");
    fl_local_rename_msg(&e, "/s/data", "/home/me/hw.zip");
    assert_string_equal(e.msg,
                        "/home/me/hw.zip/train.csv:3: image \"x\" is listed but missing from "
                        "/home/me/hw.zip/train_images");
    /* A long replacement is truncated, never overflowing. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(e.msg, sizeof e.msg, "A A A");
    fl_local_rename_msg(&e, "A", big);
    assert_int_equal(strlen(e.msg), FL_ERRLEN - 1);
}

static void test_folder(void **st) {
    fx *f = *st;
    make_folder(f);
    fl_local_stats s = {0};
    fl_err e = {{0}};
    struct stat before, after;
    assert_int_equal(stat(P(f, "src"), &before), 0);
    int rc = fl_local_import_dir(P(f, "src"), P(f, "out/data"), &s, &e);
    if (rc) print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(s.files, 5);
    assert_int_equal(s.bytes, strlen(TRAIN) + strlen(SAMPLE) + 4 + 2 + 1);
    assert_int_equal(s.train_rows, 2);
    assert_int_equal(s.test_rows, 1);
    assert_int_equal(s.species_fixed, 1);
    /* The source is only read: nothing added to or removed from its folder. */
    assert_int_equal(stat(P(f, "src"), &after), 0);
    assert_int_equal(after.st_nlink, before.st_nlink);
    assert_true(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
                after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    /* Only the layout, files 0644 whatever the source's bits; CSV bytes kept as they are. */
    assert_int_equal(access(P(f, "out/data/notes.txt"), F_OK), -1);
    assert_int_equal(access(P(f, "out/data/happy-whale-and-dolphin.zip"), F_OK), -1);
    assert_mode(P(f, "out/data/train_images/b.jpg"), 0644);
    assert_mode(P(f, "out/data/train_images"), 0755);
    size_t n;
    char *txt = fl_read_file(P(f, "out/data/train.csv"), &n, &e);
    assert_non_null(txt);
    assert_int_equal(n, strlen(TRAIN));
    assert_memory_equal(txt, TRAIN, n);
    free(txt);
}

static void test_folder_errors(void **st) {
    fx *f = *st;
    make_folder(f);
    fl_local_stats s = {0};
    fl_err e;
    /* A listed image missing: the message names the user's file and line, not the copy. */
    unlink(P(f, "src/train_images/b.jpg"));
    assert_int_equal(fl_local_import_dir(P(f, "src"), P(f, "o1/data"), &s, &e), -1);
    char want[512];
    snprintf(want, sizeof want, "%s:3: image \"b.jpg\" is listed but missing from %s",
             P(f, "src/train.csv"), P(f, "src/train_images"));
    assert_string_equal(e.msg, want);
    /* A missing entry. */
    put(P(f, "src/train_images/b.jpg"), "BB");
    unlink(P(f, "src/sample_submission.csv"));
    assert_int_equal(fl_local_import_dir(P(f, "src"), P(f, "o2/data"), &s, &e), -1);
    assert_non_null(strstr(e.msg, P(f, "src/sample_submission.csv")));
    assert_non_null(strstr(e.msg, "missing"));
    /* An entry of the wrong kind. */
    assert_int_equal(mkdir(P(f, "src/sample_submission.csv"), 0755), 0);
    assert_int_equal(fl_local_import_dir(P(f, "src"), P(f, "o3/data"), &s, &e), -1);
    assert_non_null(strstr(e.msg, "is a directory, not a file"));
}

typedef struct ent {
    const char *name;
    mode_t type;
    const char *data;
} ent;

static void write_zip(const char *path, const ent *es, size_t n) {
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *x = archive_entry_new();
        archive_entry_set_pathname(x, es[i].name);
        archive_entry_set_mtime(x, 1600000000, 0);
        archive_entry_set_filetype(x, es[i].type);
        if (es[i].type == AE_IFLNK) {
            archive_entry_set_perm(x, 0777);
            archive_entry_set_symlink(x, es[i].data);
        } else {
            archive_entry_set_perm(x, es[i].type == AE_IFDIR ? 0700 : 0600);
            if (es[i].type == AE_IFREG) archive_entry_set_size(x, (la_int64_t)strlen(es[i].data));
        }
        assert_int_equal(archive_write_header(a, x), ARCHIVE_OK);
        if (es[i].type == AE_IFREG) archive_write_data(a, es[i].data, strlen(es[i].data));
        archive_entry_free(x);
    }
    archive_write_close(a);
    archive_write_free(a);
}

#define LAYOUT(pre)                                                                                \
    {pre "train.csv", AE_IFREG, TRAIN}, {pre "sample_submission.csv", AE_IFREG, SAMPLE},           \
        {pre "train_images/a.jpg", AE_IFREG, "AAAA"}, {pre "train_images/b.jpg", AE_IFREG, "BB"},  \
    {                                                                                              \
        pre "test_images/t.jpg", AE_IFREG, "T"                                                     \
    }

static void test_zip(void **st) {
    fx *f = *st;
    const ent root[] = {LAYOUT(""), {"extra.txt", AE_IFREG, "x"}};
    const ent wrapped[] = {
        {"hw/", AE_IFDIR, NULL}, LAYOUT("hw/"), {"__MACOSX/hw/._train.csv", AE_IFREG, "fork"}};
    write_zip(P(f, "root.zip"), root, sizeof root / sizeof *root);
    write_zip(P(f, "wrapped.zip"), wrapped, sizeof wrapped / sizeof *wrapped);
    fl_local_stats s = {0};
    fl_err e = {{0}};
    int rc = fl_local_import_zip(P(f, "root.zip"), P(f, "scratch"), P(f, "z1/data"), &s, &e);
    if (rc) print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(s.files, 5); /* extra.txt is not stored */
    assert_int_equal(s.train_rows, 2);
    assert_int_equal(access(P(f, "z1/data/extra.txt"), F_OK), -1);
    assert_int_equal(access(P(f, "scratch"), F_OK), -1); /* the scratch is gone */
    assert_mode(P(f, "z1/data/train_images/a.jpg"), 0644);
    assert_mode(P(f, "z1/data/train_images"), 0755);
    rc = fl_local_import_zip(P(f, "wrapped.zip"), P(f, "scratch"), P(f, "z2/data"), &s, &e);
    if (rc) print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(access(P(f, "z2/data/test_images/t.jpg"), F_OK), 0);
}

static void test_zip_errors(void **st) {
    fx *f = *st;
    fl_local_stats s = {0};
    fl_err e;
    char want[512];
    /* No train.csv: not the competition's data, with what it does hold. */
    const ent other[] = {{"images/a.jpg", AE_IFREG, "A"}, {"readme.md", AE_IFREG, "r"}};
    write_zip(P(f, "other.zip"), other, 2);
    assert_int_equal(fl_local_import_zip(P(f, "other.zip"), P(f, "sc"), P(f, "e1/data"), &s, &e),
                     -1);
    assert_non_null(
        strstr(e.msg, "other.zip is not the competition's data: no train.csv inside (it holds: "));
    assert_non_null(strstr(e.msg, "readme.md"));
    assert_int_equal(access(P(f, "sc"), F_OK), -1);
    /* A listed image missing: ZIP/entry:line. */
    const ent gone[] = {{"hw/train.csv", AE_IFREG, TRAIN},
                        {"hw/sample_submission.csv", AE_IFREG, SAMPLE},
                        {"hw/train_images/a.jpg", AE_IFREG, "A"},
                        {"hw/test_images/t.jpg", AE_IFREG, "T"}};
    write_zip(P(f, "gone.zip"), gone, 4);
    assert_int_equal(fl_local_import_zip(P(f, "gone.zip"), P(f, "sc"), P(f, "e2/data"), &s, &e),
                     -1);
    snprintf(want, sizeof want,
             "%s/hw/train.csv:3: image \"b.jpg\" is listed but missing from %s/hw/train_images",
             P(f, "gone.zip"), P(f, "gone.zip"));
    assert_string_equal(e.msg, want);
    /* A symbolic link inside the layout is refused by name. */
    const ent link[] = {LAYOUT(""), {"test_images/l.jpg", AE_IFLNK, "t.jpg"}};
    write_zip(P(f, "link.zip"), link, sizeof link / sizeof *link);
    assert_int_equal(fl_local_import_zip(P(f, "link.zip"), P(f, "sc"), P(f, "e3/data"), &s, &e),
                     -1);
    snprintf(want, sizeof want, "%s/test_images/l.jpg is a symbolic link: refused",
             P(f, "link.zip"));
    assert_non_null(strstr(e.msg, want));
    /* No test_images/ folder. */
    const ent notest[] = {{"train.csv", AE_IFREG, TRAIN},
                          {"sample_submission.csv", AE_IFREG, SAMPLE},
                          {"train_images/a.jpg", AE_IFREG, "A"}};
    write_zip(P(f, "notest.zip"), notest, 3);
    assert_int_equal(fl_local_import_zip(P(f, "notest.zip"), P(f, "sc"), P(f, "e4/data"), &s, &e),
                     -1);
    snprintf(want, sizeof want, "%s has no test_images folder", P(f, "notest.zip"));
    assert_non_null(strstr(e.msg, want));
    /* Not a zip at all, and a truncated one (left as it is). */
    put(P(f, "text.zip"), "hello");
    assert_int_equal(fl_local_import_zip(P(f, "text.zip"), P(f, "sc"), P(f, "e5/data"), &s, &e),
                     -1);
    assert_non_null(strstr(e.msg, "is not a zip file"));
    const ent root[] = {LAYOUT("")};
    write_zip(P(f, "root.zip"), root, sizeof root / sizeof *root);
    size_t n;
    char *z = fl_read_file(P(f, "root.zip"), &n, &e);
    assert_non_null(z);
    FILE *o = fopen(P(f, "cut.zip"), "wb");
    fwrite(z, 1, n / 2, o);
    fclose(o);
    free(z);
    assert_int_equal(fl_local_import_zip(P(f, "cut.zip"), P(f, "sc"), P(f, "e6/data"), &s, &e), -1);
    assert_non_null(strstr(e.msg, "cut.zip is corrupt or truncated (left as it is"));
    struct stat cs;
    assert_int_equal(stat(P(f, "cut.zip"), &cs), 0);
    assert_int_equal((size_t)cs.st_size, n / 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_zip_and_rename),
        cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
