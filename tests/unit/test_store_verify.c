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

static void replace_with(const char *path, int how, const char *arg) {
    chmod(path, 0644);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fl_err e = {0};
        fl_remove_tree(path, &e);
    }
    unlink(path);
    if (how == 'd') assert_int_equal(mkdir(path, 0755), 0);
    if (how == 'l') assert_int_equal(symlink(arg, path), 0);
    if (how == 'p') assert_int_equal(mkfifo(path, 0644), 0);
    if (how == 'f') {
        fl_err e = {0};
        assert_int_equal(fl_write_file_atomic(path, arg, strlen(arg), &e), 0);
    }
}

/* Damage the campaign found verify blind to (a record naming another stage's tree, a directory
 * at a record path, truncated or garbage records), and entries that are not regular files where
 * objects and trees belong. Each is counted as corrupt, set aside, and its stage's record goes,
 * so the next run recomputes it; a second verify is clean. */
static void test_verify_damaged_records_and_entries(void **state) {
    fx *f = *state;
    enum { N = 9 };
    fl_digest k[N], T[N];
    for (int i = 0; i < N; i++) {
        char name[24], text[32], tag[16];
        snprintf(name, sizeof name, "f%d.txt", i);
        snprintf(text, sizeof text, "content of %d", i);
        snprintf(tag, sizeof tag, "s%d", i);
        const char *n[] = {name}, *t[] = {text};
        T[i] = commit(f, tag, 1, n, t, &k[i]);
    }
    char *r0 = shard(f, "records", &k[0]), *r1 = shard(f, "records", &k[1]);
    char *r2 = shard(f, "records", &k[2]), *r3 = shard(f, "records", &k[3]);
    char *r4 = shard(f, "records", &k[4]);
    /* 0: tree line swapped for stage 8's tree (same length, valid hex) */
    {
        fl_err e = {0};
        size_t len;
        char *b = fl_read_file(r0, &len, &e);
        char h0[FL_DIGEST_HEX], h8[FL_DIGEST_HEX];
        fl_digest_hex(&T[0], h0);
        fl_digest_hex(&T[8], h8);
        char *at = strstr(b, h0);
        assert_non_null(at);
        memcpy(at, h8, 32);
        chmod(r0, 0644);
        assert_int_equal(fl_write_file_atomic(r0, b, len, &e), 0);
        free(b);
    }
    replace_with(r1, 'd', NULL);        /* 1: a directory at the record path */
    truncate(r2, 20);                   /* 2: truncated */
    replace_with(r3, 'f', "garbage\n"); /* 3: garbage */
    replace_with(r4, 'l', "/dev/zero"); /* 4: a symbolic link to /dev/zero */
    fl_digest o5 = digest_of("content of 5", 12), o6 = digest_of("content of 6", 12);
    char *p5 = shard(f, "objects", &o5), *p6 = shard(f, "objects", &o6),
         *t7 = shard(f, "trees", &T[7]);
    char *elsewhere = fl_strdupf("%s/copy", f->dir);
    {
        fl_err e = {0};
        assert_int_equal(fl_copy_file(p5, elsewhere, &e), 0);
    }
    replace_with(p5, 'l', elsewhere); /* 5: an object replaced by a link to identical content */
    replace_with(p6, 'd', NULL);      /* 6: an object replaced by a directory */
    replace_with(t7, 'p', NULL);      /* 7: a tree replaced by a FIFO (must not hang) */
    f->nlines = 0;
    fl_verify_report r;
    fl_err e = {0};
    double t0 = fl_now();
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_true(fl_now() - t0 < 10.0);
    for (int i = 0; i < f->nlines; i++)
        printf("  verify: %s\n", f->lines[i]);
    assert_int_equal(r.corrupt, 8);         /* 5 records, 2 objects, 1 tree */
    assert_int_equal(r.records_dropped, 8); /* those 5, and stages 5, 6, 7 */
    assert_true(has_line(f, "checksum mismatch"));
    assert_true(has_line(f, "a directory"));
    assert_true(has_line(f, "a symbolic link"));
    assert_true(has_line(f, "a FIFO"));
    for (int i = 0; i < 8; i++)
        assert_int_equal(fl_store_record_get(f->s, &k[i], NULL, NULL, &e), FL_RECORD_ABSENT);
    assert_int_equal(fl_store_record_get(f->s, &k[8], NULL, NULL, &e), FL_RECORD_FOUND);
    fl_verify_report rv;
    assert_int_equal(fl_store_verify(f->s, &rv, NULL, NULL, &e), 0);
    assert_int_equal(rv.corrupt, 0);
    assert_int_equal(rv.records_dropped, 0);
    /* The stages recommit. */
    for (int i = 0; i < 8; i++) {
        char name[24], text[32], tag[16];
        snprintf(name, sizeof name, "f%d.txt", i);
        snprintf(text, sizeof text, "content of %d", i);
        snprintf(tag, sizeof tag, "s%d", i);
        const char *n[] = {name}, *t[] = {text};
        fl_digest kk;
        commit(f, tag, 1, n, t, &kk);
        char *co = fl_store_checkout(f->s, &T[i], &e);
        if (!co) fail_msg("checkout %d: %s", i, e.msg);
        free(co);
    }
    assert_int_equal(fl_store_verify(f->s, &rv, NULL, NULL, &e), 0);
    assert_int_equal(rv.corrupt, 0);
    char *frees[] = {r0, r1, r2, r3, r4, p5, p6, t7, elsewhere};
    for (size_t i = 0; i < sizeof frees / sizeof *frees; i++)
        free(frees[i]);
}

/* A checkout directory replaced by a file or by a symbolic link to another directory: verify
 * removes it, and a checkout rebuilds it instead of failing or following the link. */
static void test_checkout_replaced(void **state) {
    fx *f = *state;
    const char *n[] = {"a.txt"}, *t[] = {"alpha"};
    fl_digest k;
    fl_digest T = commit(f, "A", 1, n, t, &k);
    fl_err e = {0};
    char *co = fl_store_checkout(f->s, &T, &e);
    assert_non_null(co);
    char *other = fl_strdupf("%s/other", f->dir);
    assert_int_equal(mkdir(other, 0755), 0);
    char *oa = fl_strdupf("%s/a.txt", other);
    assert_int_equal(fl_write_file_atomic(oa, "alpha", 5, &e), 0);
    for (int i = 0; i < 2; i++) {
        chmod(co, 0755);
        fl_remove_tree(co, &e);
        if (i == 0)
            assert_int_equal(fl_write_file_atomic(co, "x", 1, &e), 0);
        else
            assert_int_equal(symlink(other, co), 0);
        f->nlines = 0;
        fl_verify_report r;
        assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
        assert_int_equal(r.checkouts_removed, 1);
        assert_true(has_line(f, "not a directory"));
        assert_false(exists(co));
        /* Damage again; this time the run's checkout repairs it itself. */
        if (i == 0)
            assert_int_equal(fl_write_file_atomic(co, "x", 1, &e), 0);
        else
            assert_int_equal(symlink(other, co), 0);
        char *again = fl_store_checkout(f->s, &T, &e);
        if (!again) fail_msg("checkout %d: %s", i, e.msg);
        struct stat st;
        assert_int_equal(lstat(again, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        free(again);
    }
    assert_true(exists(oa)); /* the link's target was left alone */
    free(oa);
    free(other);
    free(co);
}

/* A chain of trees nested deeper than any real directory can be: reported, not a stack overflow. */
static void test_verify_deep_tree_chain(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest d;
    assert_int_equal(store_fx_tree_chain(f, 20000, NULL, &d), 0);
    fl_digest key = digest_of("deep", 4);
    assert_int_equal(fl_store_record_put(f->s, &key, &d, "{}", &e), 0);
    f->nlines = 0;
    fl_verify_report r;
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_true(has_line(f, "levels deep"));
    assert_int_equal(r.records_dropped, 1);
}

/* A record of the previous format (no key line): dropped and reported, not counted as damage. */
static void test_verify_old_format_record(void **state) {
    fx *f = *state;
    const char *n[] = {"a.txt"}, *t[] = {"alpha"};
    fl_digest k;
    fl_digest T = commit(f, "A", 1, n, t, &k);
    char th[FL_DIGEST_HEX];
    fl_digest_hex(&T, th);
    fl_digest sum = digest_of("{}", 2);
    char sh[FL_DIGEST_HEX];
    fl_digest_hex(&sum, sh);
    char *old = fl_strdupf("fluke-record 1\ntree %s\njson 2 %s\n{}", th, sh);
    char *rp = shard(f, "records", &k);
    fl_err e = {0};
    chmod(rp, 0644);
    assert_int_equal(fl_write_file_atomic(rp, old, strlen(old), &e), 0);
    assert_int_equal(fl_store_record_peek(f->s, &k, NULL, NULL, &e), FL_RECORD_DAMAGED);
    assert_non_null(strstr(e.msg, "format 1"));
    f->nlines = 0;
    fl_verify_report r;
    assert_int_equal(fl_store_verify(f->s, &r, on_line, f, &e), 0);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(r.records_dropped, 1);
    assert_true(has_line(f, "older fluke"));
    assert_false(exists(rp));
    free(old);
    free(rp);
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
        cmocka_unit_test_setup_teardown(test_verify_damaged_records_and_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkout_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_deep_tree_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_old_format_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_size_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
