/* Safe extraction: archives written here with libarchive (zip and tar) with good trees, zip-slip
 * entries, absolute paths, escaping and in-tree links, writes through a symlink, devices and
 * fifos, and truncated / corrupt archives (reported as FL_EXTRACT_CORRUPT). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/kaggle.h"
#include "tests/kaggle/server_child.h"

typedef struct ent {
    const char *name;
    mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO; 0 = hard link */
    const char *data_or_target;
} ent;

static void write_archive(const char *path, int zip, const ent *es, size_t n) {
    struct archive *a = archive_write_new();
    if (zip)
        archive_write_set_format_zip(a);
    else
        archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, es[i].name);
        archive_entry_set_mtime(e, 1600000000, 0);
        if (es[i].type == 0) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_hardlink(e, es[i].data_or_target);
            archive_entry_set_size(e, 0);
        } else if (es[i].type == AE_IFLNK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, es[i].data_or_target);
        } else {
            archive_entry_set_filetype(e, es[i].type);
            archive_entry_set_perm(e, es[i].type == AE_IFDIR ? 0755 : 0600);
            if (es[i].type == AE_IFREG) archive_entry_set_size(e, (la_int64_t)strlen(es[i].data_or_target));
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (es[i].type == AE_IFREG)
            archive_write_data(a, es[i].data_or_target, strlen(es[i].data_or_target));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

typedef struct fx {
    char *dir, *arc, *out;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->dir = ts_tmpdir("extract");
    f->arc = fl_strdupf("%s/a.bin", f->dir);
    /* Extract two levels down so an escape of one or two ".." stays inside our temp dir. */
    f->out = fl_strdupf("%s/x/y/out", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    fl_err e;
    fl_remove_tree(f->dir, &e);
    free(f->dir);
    free(f->arc);
    free(f->out);
    free(f);
    return 0;
}

static char *slurp(const char *dir, const char *rel) {
    char *p = fl_strdupf("%s/%s", dir, rel);
    fl_err e;
    char *d = fl_read_file(p, NULL, &e);
    free(p);
    return d;
}

static void test_good_zip_and_tar(void **state) {
    fx *f = *state;
    const ent es[] = {{"train.csv", AE_IFREG, "image,species\n"},
                      {"train_images/", AE_IFDIR, NULL},
                      {"train_images/a.jpg", AE_IFREG, "JPEGDATA"},
                      {"./deep/er/b.txt", AE_IFREG, "b"},
                      {"deep//er/./c.txt", AE_IFREG, "c"}};
    for (int zip = 0; zip < 2; zip++) {
        write_archive(f->arc, zip, es, 5);
        assert_int_equal(fl_is_zip(f->arc), zip);
        fl_err e;
        fl_extract_stats st;
        int rc = fl_extract(f->arc, f->out, &st, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(st.files, 4);
        assert_int_equal(st.bytes, 14 + 8 + 1 + 1);
        char *d = slurp(f->out, "train_images/a.jpg");
        assert_string_equal(d, "JPEGDATA");
        free(d);
        d = slurp(f->out, "deep/er/c.txt");
        assert_string_equal(d, "c");
        free(d);
        struct stat sb;
        char *p = fl_strdupf("%s/train.csv", f->out);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0644); /* archive said 0600: normalized */
        free(p);
        fl_remove_tree(f->out, &e);
    }
}

static void expect_refused(fx *f, int zip, const ent *es, size_t n, const char *entry,
                           const char *why) {
    write_archive(f->arc, zip, es, n);
    fl_err e;
    int rc = fl_extract(f->arc, f->out, NULL, &e);
    if (rc != -1) fprintf(stderr, "rc %d: %s\n", rc, e.msg);
    assert_int_equal(rc, -1);
    if (!strstr(e.msg, entry) || !strstr(e.msg, why)) fprintf(stderr, "message: %s\n", e.msg);
    assert_non_null(strstr(e.msg, entry));
    assert_non_null(strstr(e.msg, why));
    fl_remove_tree(f->out, &e);
}

static void test_refusals(void **state) {
    fx *f = *state;
    char *evil = fl_strdupf("%s/x/y/evil.txt", f->dir);
    const ent slip[] = {{"ok.txt", AE_IFREG, "ok"}, {"../evil.txt", AE_IFREG, "gotcha"}};
    expect_refused(f, 1, slip, 2, "'../evil.txt'", "\"..\"");
    assert_false(ts_exists(evil));
    const ent slip2[] = {{"a/b/../../../evil.txt", AE_IFREG, "gotcha"}};
    expect_refused(f, 0, slip2, 1, "a/b/../../../evil.txt", "\"..\"");
    assert_false(ts_exists(evil));
    const ent abs[] = {{"/tmp/fluke-abs-evil-test.txt", AE_IFREG, "gotcha"}};
    expect_refused(f, 0, abs, 1, "/tmp/fluke-abs-evil-test.txt", "absolute");
    assert_false(ts_exists("/tmp/fluke-abs-evil-test.txt"));
    const ent sl_up[] = {{"link", AE_IFLNK, "../../etc"}};
    expect_refused(f, 0, sl_up, 1, "'link' -> '../../etc'", "outside");
    const ent sl_abs[] = {{"link", AE_IFLNK, "/etc/passwd"}};
    expect_refused(f, 1, sl_abs, 1, "'link' -> '/etc/passwd'", "outside");
    /* A link inside the tree is fine, but nothing may be written through it. */
    const ent through[] = {{"sub/f.txt", AE_IFREG, "f"}, {"l", AE_IFLNK, "sub"},
                           {"l/g.txt", AE_IFREG, "g"}};
    expect_refused(f, 0, through, 3, "'l/g.txt'", "symlink");
    /* An in-tree link followed by a file of the same name: not written through the link. */
    const ent over[] = {{"sub/f.txt", AE_IFREG, "f"}, {"l2", AE_IFLNK, "sub/f.txt"}};
    write_archive(f->arc, 0, over, 2);
    fl_err e;
    assert_int_equal(fl_extract(f->arc, f->out, NULL, &e), 0);
    char *d = slurp(f->out, "l2");
    assert_string_equal(d, "f");
    free(d);
    fl_remove_tree(f->out, &e);
    const ent hl_out[] = {{"h", 0, "../../outside"}};
    expect_refused(f, 0, hl_out, 1, "'h' -> '../../outside'", "\"..\"");
    const ent hl_missing[] = {{"h", 0, "nothere"}};
    expect_refused(f, 0, hl_missing, 1, "'h' -> 'nothere'", "not a regular file");
    const ent hl_ok[] = {{"t.txt", AE_IFREG, "T"}, {"h", 0, "t.txt"}};
    write_archive(f->arc, 0, hl_ok, 2);
    assert_int_equal(fl_extract(f->arc, f->out, NULL, &e), 0);
    d = slurp(f->out, "h");
    assert_string_equal(d, "T");
    free(d);
    fl_remove_tree(f->out, &e);
    const ent dev[] = {{"dev/null2", AE_IFCHR, NULL}};
    expect_refused(f, 0, dev, 1, "'dev/null2'", "character device");
    const ent fifo[] = {{"pipe", AE_IFIFO, NULL}};
    expect_refused(f, 0, fifo, 1, "'pipe'", "fifo");
    free(evil);
}

static void test_corrupt_archives(void **state) {
    fx *f = *state;
    char big[20000];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + (i * 7919 % 23));
    big[sizeof big - 1] = 0;
    const ent es[] = {{"a.txt", AE_IFREG, big}, {"b.txt", AE_IFREG, big}};
    write_archive(f->arc, 1, es, 2);
    size_t len;
    fl_err e;
    char *zip = fl_read_file(f->arc, &len, &e);
    assert_non_null(zip);
    /* Truncated at several points. */
    size_t cuts[] = {len - 10, len * 2 / 3, len / 3, 30, 3};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(fl_write_file_atomic(f->arc, zip, cuts[i], &e), 0);
        int rc = fl_extract(f->arc, f->out, NULL, &e);
        if (rc != FL_EXTRACT_CORRUPT) fprintf(stderr, "cut %zu: rc %d %s\n", cuts[i], rc, e.msg);
        assert_int_equal(rc, FL_EXTRACT_CORRUPT);
        fl_remove_tree(f->out, &e);
    }
    /* A flipped byte inside the stored data (stored uncompressed by libarchive's zip writer
     * when deflate is unavailable, deflated otherwise: either way CRC or inflate fails). */
    memcpy(zip + 40 + 100, "XXXX", 4);
    assert_int_equal(fl_write_file_atomic(f->arc, zip, len, &e), 0);
    assert_int_equal(fl_extract(f->arc, f->out, NULL, &e), FL_EXTRACT_CORRUPT);
    fl_remove_tree(f->out, &e);
    /* Not an archive at all (an HTML error page saved as the zip). */
    const char *html = "<html><body>Service Unavailable</body></html>\n";
    assert_int_equal(fl_write_file_atomic(f->arc, html, strlen(html), &e), 0);
    assert_int_equal(fl_extract(f->arc, f->out, NULL, &e), FL_EXTRACT_CORRUPT);
    /* Missing archive: a plain error, not "corrupt". */
    char *missing = fl_strdupf("%s/none.zip", f->dir);
    assert_int_equal(fl_extract(missing, f->out, NULL, &e), -1);
    free(missing);
    free(zip);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_zip_and_tar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_archives, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
