/* fl_store_tree_intact, the cheap presence check `fluke status` makes of a cached record's
 * outputs: every tree down a nested output loads, every object it names is a regular file;
 * whatever is missing or of the wrong kind is named, and nothing in the store changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "tests/unit/store_fixture.h"

static int setup(void **state) { return store_fx_setup(state, "intact"); }
static int teardown(void **state) { return store_fx_teardown(state); }

static char *shard(fx *f, const char *kind, const fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    return fl_strdupf("%s/%s/%.2s/%s", f->root, kind, hex, hex + 2);
}

static fl_digest digest_of(const char *text) {
    fl_digest d;
    fl_hasher *h = fl_hasher_new();
    fl_hasher_update(h, text, strlen(text));
    fl_hasher_digest(h, &d);
    fl_hasher_free(h);
    return d;
}

/* Ingests top.txt and sub/deep/leaf.txt; returns the root tree. */
static fl_digest ingest_nested(fx *f) {
    fl_err e = {0};
    char *st = fl_store_staging_dir(f->s, "nested", &e);
    assert_non_null(st);
    char *deep = fl_strdupf("%s/sub/deep", st);
    assert_int_equal(fl_mkdirs(deep, &e), 0);
    char *p1 = fl_strdupf("%s/top.txt", st), *p2 = fl_strdupf("%s/leaf.txt", deep);
    assert_int_equal(fl_write_file_atomic(p1, "top\n", 4, &e), 0);
    assert_int_equal(fl_write_file_atomic(p2, "leaf\n", 5, &e), 0);
    fl_digest tree;
    assert_int_equal(fl_store_ingest(f->s, st, &tree, &e), 0);
    fl_remove_tree(st, &e);
    free(p1);
    free(p2);
    free(deep);
    free(st);
    return tree;
}

static void writable(const char *p) { assert_int_equal(chmod(p, 0644), 0); }

static void test_intact_and_each_damage(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest root = ingest_nested(f);
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 1);

    /* The leaf object two directories down: missing, then a FIFO. */
    fl_digest leaf = digest_of("leaf\n");
    char *op = shard(f, "objects", &leaf);
    char *saved = fl_strdupf("%s/saved-leaf", f->dir);
    assert_int_equal(rename(op, saved), 0);
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 0);
    assert_non_null(strstr(e.msg, "missing object"));
    assert_non_null(strstr(e.msg, "leaf.txt"));
    assert_int_equal(mkfifo(op, 0644), 0);
    e.msg[0] = '\0';
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 0);
    assert_non_null(strstr(e.msg, "leaf.txt"));
    assert_non_null(strstr(e.msg, "not a regular file"));
    struct stat st;
    assert_int_equal(lstat(op, &st), 0); /* left where it was: status changes nothing */
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(unlink(op), 0);
    assert_int_equal(rename(saved, op), 0);
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 1);

    /* A subtree damaged, a byte appended, then missing: sub/deep's tree, the only tree that
     * names leaf.txt's digest. */
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&leaf, hex);
    char *cmd = fl_strdupf("grep -rl %s %s/trees", hex, f->root);
    FILE *pp = popen(cmd, "r");
    char tpath[512] = "";
    assert_non_null(pp);
    assert_non_null(fgets(tpath, sizeof tpath, pp));
    pclose(pp);
    tpath[strcspn(tpath, "\n")] = '\0';
    writable(tpath);
    FILE *fp = fopen(tpath, "ab");
    assert_non_null(fp);
    fputs("junk", fp);
    fclose(fp);
    e.msg[0] = '\0';
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 0);
    assert_non_null(strstr(e.msg, "corrupt tree"));
    assert_int_equal(unlink(tpath), 0);
    e.msg[0] = '\0';
    assert_int_equal(fl_store_tree_intact(f->s, &root, &e), 0);
    assert_non_null(strstr(e.msg, "missing tree"));
    free(cmd);
    free(saved);
    free(op);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_intact_and_each_damage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
