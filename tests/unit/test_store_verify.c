/* Store maintenance: verify (flipped bytes, damaged trees, missing objects) and gc (refs as
 * roots, the most-recently-used size cap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "tests/unit/store_fixture.h"

static int setup(void **state) { return store_fx_setup(state, "verify"); }
static int teardown(void **state) { return store_fx_teardown(state); }

static void on_line(const char *line, void *arg) {
    fx *f = arg;
    if (f->nlines < 16) snprintf(f->lines[f->nlines++], sizeof f->lines[0], "%s", line);
}

static int has_line(fx *f, const char *needle) {
    for (int i = 0; i < f->nlines; i++)
        if (strstr(f->lines[i], needle)) return 1;
    return 0;
}

static fl_digest digest_of(const void *data, size_t len) {
    fl_digest d;
    fl_hasher *h = fl_hasher_new();
    fl_hasher_update(h, data, len);
    fl_hasher_digest(h, &d);
    fl_hasher_free(h);
    return d;
}

/* Ingests files named names[i] with texts[i], records it under key "key:<tag>". */
static fl_digest commit(fx *f, const char *tag, int n, const char *const *names,
                        const char *const *texts, fl_digest *key) {
    fl_err e = {0};
    char *st = fl_store_staging_dir(f->s, tag, &e);
    assert_non_null(st);
    for (int i = 0; i < n; i++) {
        char *p = fl_strdupf("%s/%s", st, names[i]);
        assert_int_equal(fl_write_file_atomic(p, texts[i], strlen(texts[i]), &e), 0);
        free(p);
    }
    fl_digest tree;
    assert_int_equal(fl_store_ingest(f->s, st, &tree, &e), 0);
    fl_remove_tree(st, &e);
    free(st);
    char *k = fl_strdupf("key:%s", tag);
    *key = digest_of(k, strlen(k));
    free(k);
    assert_int_equal(fl_store_record_put(f->s, key, &tree, "{}", &e), 0);
    return tree;
}

static char *shard(fx *f, const char *kind, const fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    return fl_strdupf("%s/%s/%.2s/%s", f->root, kind, hex, hex + 2);
}

static void flip_byte(const char *path, off_t off) {
    assert_int_equal(chmod(path, 0644), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x01;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
    assert_int_equal(chmod(path, 0444), 0);
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void test_verify_flipped_byte(void **state) {
    fx *f = *state;
    const char *na[] = {"a.txt", "shared.txt"}, *ta[] = {"alpha", "common"};
    const char *nb[] = {"b.txt", "shared.txt"}, *tb[] = {"beta", "common"};
    fl_digest ka, kb;
    fl_digest A = commit(f, "A", 2, na, ta, &ka), B = commit(f, "B", 2, nb, tb, &kb);
    fl_err e = {0};
    char *coA = fl_store_checkout(f->s, &A, &e), *coB = fl_store_checkout(f->s, &B, &e);
    assert_non_null(coA);
    assert_non_null(coB);

    fl_verify_report r;
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.objects, 3);
    assert_int_equal(r.trees, 2);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(r.records_dropped, 0);
    assert_int_equal(f->nlines, 0);

    fl_digest da = digest_of("alpha", 5), flipped = digest_of("`lpha", 5); /* 'a' ^ 1 */
    char *obj = shard(f, "objects", &da);
    flip_byte(obj, 0);
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.records_dropped, 1);
    assert_int_equal(r.checkouts_removed, 1);
    char hex[FL_DIGEST_HEX], fhex[FL_DIGEST_HEX], want[200];
    fl_digest_hex(&da, hex);
    fl_digest_hex(&flipped, fhex);
    snprintf(want, sizeof want, "corrupt object %s: content hashes to %s", hex, fhex);
    assert_true(has_line(f, want));
    char *q = fl_strdupf("%s/quarantine/%s", f->root, hex);
    assert_true(exists(q));
    assert_false(exists(obj));
    assert_false(exists(coA));
    assert_true(exists(coB));
    assert_int_equal(fl_store_record_get(f->s, &ka, NULL, NULL, &e), 0); /* recomputes */
    assert_int_equal(fl_store_record_get(f->s, &kb, NULL, NULL, &e), 1);

    /* The damage is gone: a second pass is clean, and recommitting A works again. */
    f->nlines = 0;
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(r.records_dropped, 0);
    fl_digest A2 = commit(f, "A", 2, na, ta, &ka);
    assert_true(fl_digest_eq(&A, &A2));
    char *co = fl_store_checkout(f->s, &A2, &e);
    assert_non_null(co);
    free(co);
    free(q);
    free(obj);
    free(coA);
    free(coB);
}

/* An object shared by two outputs takes both records with it. */
static void test_verify_shared_object(void **state) {
    fx *f = *state;
    const char *na[] = {"a.txt", "shared.txt"}, *ta[] = {"alpha", "common"};
    const char *nb[] = {"sub_b.txt", "shared.txt"}, *tb[] = {"beta", "common"};
    fl_digest ka, kb;
    commit(f, "A", 2, na, ta, &ka);
    commit(f, "B", 2, nb, tb, &kb);
    fl_digest ds = digest_of("common", 6);
    char *obj = shard(f, "objects", &ds);
    flip_byte(obj, 3);
    fl_verify_report r;
    fl_err e = {0};
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.records_dropped, 2);
    free(obj);
}

static void test_verify_tree_and_missing(void **state) {
    fx *f = *state;
    const char *n1[] = {"x.txt"}, *t1[] = {"x"};
    const char *n2[] = {"y.txt"}, *t2[] = {"y"};
    fl_digest k1, k2;
    fl_digest T1 = commit(f, "one", 1, n1, t1, &k1);
    commit(f, "two", 1, n2, t2, &k2);
    char *tp = shard(f, "trees", &T1);
    flip_byte(tp, 20);
    fl_digest dy = digest_of("y", 1);
    char *oy = shard(f, "objects", &dy);
    assert_int_equal(unlink(oy), 0);
    fl_verify_report r;
    fl_err e = {0};
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.records_dropped, 2);
    char hex[FL_DIGEST_HEX], want[100];
    fl_digest_hex(&T1, hex);
    snprintf(want, sizeof want, "corrupt tree %s", hex);
    assert_true(has_line(f, want));
    fl_digest_hex(&dy, hex);
    snprintf(want, sizeof want, "missing object %s", hex);
    assert_true(has_line(f, want));
    assert_int_equal(fl_store_record_get(f->s, &k1, NULL, NULL, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &k2, NULL, NULL, &e), 0);
    free(tp);
    free(oy);
}

/* A checkout tampered with through its path (root ignores 0444/0555) is rebuilt, not reused. */
static void test_verify_damaged_checkout(void **state) {
    fx *f = *state;
    const char *n[] = {"a.txt", "b.txt"}, *t[] = {"alpha", "beta"};
    fl_digest k;
    fl_digest T = commit(f, "A", 2, n, t, &k);
    fl_err e = {0};
    for (int i = 0; i < 3; i++) { /* 0: a file deleted, 1: a file added, 2: a file replaced */
        char *co = fl_store_checkout(f->s, &T, &e);
        assert_non_null(co);
        chmod(co, 0755);
        char *p = fl_strdupf("%s/%s", co, i == 1 ? "extra.txt" : "b.txt");
        if (i == 0) assert_int_equal(unlink(p), 0);
        else {
            unlink(p);
            assert_int_equal(fl_write_file_atomic(p, "new!", 4, &e), 0);
        }
        f->nlines = 0;
        fl_verify_report r;
        assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
        assert_int_equal(r.corrupt, 0);
        assert_int_equal(r.checkouts_removed, 1);
        assert_int_equal(r.records_dropped, 0); /* the store itself is fine */
        assert_true(has_line(f, "damaged checkout"));
        assert_false(exists(co));
        free(p);
        free(co);
    }
    /* Rebuilt on demand, intact. */
    char *co = fl_store_checkout(f->s, &T, &e);
    fl_verify_report r;
    assert_int_equal(fl_store_verify(f->s, &r, NULL, NULL, &e), 0);
    assert_int_equal(r.checkouts_removed, 0);
    free(co);
}

static void test_gc_keeps_refs(void **state) {
    fx *f = *state;
    const char *n[] = {"out.bin", "common.txt"};
    const char *t1[] = {"one", "shared"}, *t2[] = {"two", "x"}, *t3[] = {"three", "shared"},
               *t4[] = {"four", "y"};
    fl_digest k1, k2, k3, k4;
    fl_digest T1 = commit(f, "1", 2, n, t1, &k1);
    commit(f, "2", 2, n, t2, &k2);
    fl_digest T3 = commit(f, "3", 2, n, t3, &k3);
    commit(f, "4", 2, n, t4, &k4);
    fl_err e = {0};
    char *co1 = fl_store_checkout(f->s, &T1, &e), *co3 = fl_store_checkout(f->s, &T3, &e);
    char h1[FL_DIGEST_HEX], h2[FL_DIGEST_HEX];
    fl_digest_hex(&k1, h1);
    fl_digest_hex(&k2, h2);
    char *text = fl_strdupf("# latest run of smoke\n%s\n  %s  \nnot a key\n", h1, h2);
    assert_int_equal(fl_store_ref_set(f->s, "configs/smoke", text, &e), 0);
    free(text);
    fl_gc_report r;
    assert_int_equal(fl_store_gc(f->s, 0, &r, &e), 0);
    assert_int_equal(r.records_kept, 2);
    assert_int_equal(r.records_removed, 2);
    assert_int_equal(r.objects_kept, 4);    /* one, shared, two, x */
    assert_int_equal(r.objects_removed, 3); /* three, four, y */
    assert_true(r.bytes_freed > 0 && r.bytes_kept > 0);
    assert_int_equal(fl_store_record_get(f->s, &k1, NULL, NULL, &e), 1);
    assert_int_equal(fl_store_record_get(f->s, &k2, NULL, NULL, &e), 1);
    assert_int_equal(fl_store_record_get(f->s, &k3, NULL, NULL, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &k4, NULL, NULL, &e), 0);
    assert_true(exists(co1));
    assert_false(exists(co3));
    fl_digest shared = digest_of("shared", 6), three = digest_of("three", 5);
    char *ps = shard(f, "objects", &shared), *p3 = shard(f, "objects", &three);
    assert_true(exists(ps));
    assert_false(exists(p3));
    /* What is kept is intact. */
    fl_verify_report vr;
    assert_int_equal(fl_store_verify(f->s, &vr, NULL, NULL, &e), 0);
    assert_int_equal(vr.corrupt + vr.records_dropped, 0);
    assert_int_equal(vr.objects, 4);
    free(ps);
    free(p3);
    free(co1);
    free(co3);
}

static void test_gc_size_cap(void **state) {
    fx *f = *state;
    static char big[4][10001];
    fl_digest k[4];
    const char *n[] = {"weights.bin"};
    for (int i = 0; i < 4; i++) {
        memset(big[i], 'a' + i, 10000);
        big[i][10000] = '\0';
        const char *t[] = {big[i]};
        char tag[16];
        snprintf(tag, sizeof tag, "r%d", i);
        commit(f, tag, 1, n, t, &k[i]);
        /* Distinct, old mtimes: r1 newest ... r3 oldest (r0 is the ref). */
        char *rp = shard(f, "records", &k[i]);
        struct timespec ts[2] = {{1000000000 - i * 100, 0}, {1000000000 - i * 100, 0}};
        assert_int_equal(utimensat(AT_FDCWD, rp, ts, 0), 0);
        free(rp);
    }
    fl_err e = {0};
    char h0[FL_DIGEST_HEX];
    fl_digest_hex(&k[0], h0);
    assert_int_equal(fl_store_ref_set(f->s, "latest", h0, &e), 0);
    /* Reading r3 makes it the most recently used. */
    assert_int_equal(fl_store_record_get(f->s, &k[3], NULL, NULL, &e), 1);
    fl_gc_report r;
    assert_int_equal(fl_store_gc(f->s, 25000, &r, &e), 0); /* room for two 10 kB outputs */
    assert_int_equal(r.records_kept, 2);
    assert_int_equal(r.records_removed, 2);
    assert_true(r.bytes_kept <= 25000);
    assert_int_equal(fl_store_record_get(f->s, &k[0], NULL, NULL, &e), 1); /* the ref */
    assert_int_equal(fl_store_record_get(f->s, &k[3], NULL, NULL, &e), 1); /* most recent */
    assert_int_equal(fl_store_record_get(f->s, &k[1], NULL, NULL, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &k[2], NULL, NULL, &e), 0);
    /* A ref'd record is kept even when it alone exceeds the cap. */
    assert_int_equal(fl_store_gc(f->s, 100, &r, &e), 0);
    assert_int_equal(r.records_kept, 1);
    assert_int_equal(fl_store_record_get(f->s, &k[0], NULL, NULL, &e), 1);
    assert_int_equal(fl_store_record_get(f->s, &k[3], NULL, NULL, &e), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_shared_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_tree_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_damaged_checkout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_size_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
