/* Store: records, refs, locks (with a killed holder) and injected disk-full failures. */
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
#include <time.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "tests/unit/store_fixture.h"

static int setup(void **state) { return store_fx_setup(state, "records"); }
static int teardown(void **state) { return store_fx_teardown(state); }

static void put(const char *dir, const char *rel, const char *text) {
    char *p = fl_strdupf("%s/%s", dir, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    fl_err e = {0};
    assert_int_equal(fl_mkdirs(p, &e), 0);
    *slash = '/';
    assert_int_equal(fl_write_file_atomic(p, text, strlen(text), &e), 0);
    free(p);
}

static fl_digest key_of(const char *s) {
    fl_digest d;
    fl_hasher *h = fl_hasher_new();
    fl_hasher_update(h, s, strlen(s));
    fl_hasher_digest(h, &d);
    fl_hasher_free(h);
    return d;
}

/* An output tree with the given files, ingested into s. */
static int ingest_files(fl_store *s, int n, fl_digest *tree, fl_err *e) {
    char *st = fl_store_staging_dir(s, "out", e);
    assert_non_null(st);
    for (int i = 0; i < n; i++) {
        char rel[32], text[32];
        snprintf(rel, sizeof rel, "f%d.txt", i);
        snprintf(text, sizeof text, "content %d", i);
        put(st, rel, text);
    }
    int rc = fl_store_ingest(s, st, tree, e);
    fl_err ignored;
    fl_remove_tree(st, &ignored);
    free(st);
    return rc;
}

/* Files under root/kind, checking each is a finished digest-named file (no temporaries). */
static int count_digest_files(const char *root, const char *kind, int check_content) {
    char *top = fl_strdupf("%s/%s", root, kind);
    DIR *d = opendir(top);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        assert_int_equal(strlen(de->d_name), 2);
        char *sub = fl_strdupf("%s/%s", top, de->d_name);
        DIR *sd = opendir(sub);
        assert_non_null(sd);
        struct dirent *fe;
        while ((fe = readdir(sd))) {
            if (fe->d_name[0] == '.') continue;
            assert_int_equal(strlen(fe->d_name), 30); /* no "*.tmp.*" leftovers */
            if (check_content) {
                char hex[600], *p = fl_strdupf("%s/%s", sub, fe->d_name);
                snprintf(hex, sizeof hex, "%s%s", de->d_name, fe->d_name);
                fl_digest want, got;
                fl_err e = {0};
                assert_int_equal(fl_digest_from_hex(hex, &want), 0);
                assert_int_equal(fl_hash_file(p, &got, &e), 0);
                assert_true(fl_digest_eq(&want, &got)); /* complete, never half-written */
                free(p);
            }
            n++;
        }
        closedir(sd);
        free(sub);
    }
    closedir(d);
    free(top);
    return n;
}

static int count_entries(const char *root, const char *kind) {
    char *top = fl_strdupf("%s/%s", root, kind);
    DIR *d = opendir(top);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    free(top);
    return n;
}

static void test_records(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest tree, got, key = key_of("stage key 1");
    assert_int_equal(ingest_files(f->s, 2, &tree, &e), 0);
    char *json = NULL;
    assert_int_equal(fl_store_record_get(f->s, &key, &got, &json, &e), 0);
    assert_null(json);
    const char *meta = "{\"stage\":\"crop\",\"outputs\":[\"a\\nb\"],\"n\":3}";
    assert_int_equal(fl_store_record_put(f->s, &key, &tree, meta, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &key, &got, &json, &e), 1);
    assert_true(fl_digest_eq(&got, &tree));
    assert_string_equal(json, meta);
    free(json);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), 1);
    /* Overwrite, then drop (twice: a missing record is fine). */
    assert_int_equal(fl_store_record_put(f->s, &key, &tree, NULL, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, &json, &e), 1);
    assert_string_equal(json, "");
    free(json);
    assert_int_equal(fl_store_record_drop(f->s, &key, &e), 0);
    assert_int_equal(fl_store_record_get(f->s, &key, &got, NULL, &e), 0);
    assert_int_equal(fl_store_record_drop(f->s, &key, &e), 0);
    /* A record may only point at a stored tree. */
    fl_digest bogus = key_of("no such tree");
    assert_int_equal(fl_store_record_put(f->s, &key, &bogus, "{}", &e), -1);
    assert_non_null(strstr(e.msg, "not in the store"));
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), 0);
}

static void test_record_damage_and_recency(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest tree, key = key_of("k");
    assert_int_equal(ingest_files(f->s, 1, &tree, &e), 0);
    assert_int_equal(fl_store_record_put(f->s, &key, &tree, "{\"a\":1}", &e), 0);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&key, hex);
    char *rp = fl_strdupf("%s/records/%.2s/%s", f->root, hex, hex + 2);
    /* Reading touches the mtime (gc's recency). */
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, rp, old, 0), 0);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), 1);
    struct stat sb;
    assert_int_equal(stat(rp, &sb), 0);
    assert_true(sb.st_mtim.tv_sec > 1000000000);
    /* A flipped byte in the JSON is detected. */
    chmod(rp, 0644);
    int fd = open(rp, O_RDWR);
    off_t end = lseek(fd, -2, SEEK_END);
    assert_int_equal(pwrite(fd, "2", 1, end), 1);
    close(fd);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), FL_RECORD_DAMAGED);
    assert_non_null(strstr(e.msg, "corrupt record"));
    assert_non_null(strstr(e.msg, rp));
    assert_int_equal(stat(rp, &sb), -1);
    char *q = fl_strdupf("%s/quarantine/record-%s", f->root, hex);
    assert_int_equal(stat(q, &sb), 0);
    free(q);
    /* A record truncated to nothing is damaged the same way. */
    assert_int_equal(fl_store_record_put(f->s, &key, &tree, "{}", &e), 0);
    assert_int_equal(truncate(rp, 0), 0);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), FL_RECORD_DAMAGED);
    assert_non_null(strstr(e.msg, "empty"));
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), FL_RECORD_ABSENT);
    q = fl_strdupf("%s/quarantine/record-%s.1", f->root, hex);
    assert_int_equal(stat(q, &sb), 0);
    free(q);
    free(rp);
}

/* Writes text to path (replacing a read-only file). */
static void overwrite(const char *path, const void *data, size_t len) {
    chmod(path, 0644);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *slurp(const char *path, size_t *len) {
    fl_err e = {0};
    char *b = fl_read_file(path, len, &e);
    assert_non_null(b);
    return b;
}

/* Every way the campaign (and this test) damaged a record: get says FL_RECORD_DAMAGED with the
 * reason, sets the damage aside (quick: nothing blocks or reads without bound), and the next put
 * and get work again. peek reports the same without changing anything. */
static void test_record_damage_kinds(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest ta, tb, ka = key_of("stage a"), kb = key_of("stage b");
    assert_int_equal(ingest_files(f->s, 1, &ta, &e), 0);
    assert_int_equal(ingest_files(f->s, 3, &tb, &e), 0);
    assert_int_equal(fl_store_record_put(f->s, &kb, &tb, "{\"node\":\"b\"}", &e), 0);
    char ahex[FL_DIGEST_HEX], bhex[FL_DIGEST_HEX], tbhex[FL_DIGEST_HEX], tahex[FL_DIGEST_HEX];
    fl_digest_hex(&ka, ahex);
    fl_digest_hex(&kb, bhex);
    fl_digest_hex(&ta, tahex);
    fl_digest_hex(&tb, tbhex);
    char *ra = fl_strdupf("%s/records/%.2s/%s", f->root, ahex, ahex + 2);
    char *rb = fl_strdupf("%s/records/%.2s/%s", f->root, bhex, bhex + 2);
    size_t blen;
    char *brec = slurp(rb, &blen);
    enum { N = 11 };
    for (int k = 0; k < N; k++) {
        assert_int_equal(fl_store_record_put(f->s, &ka, &ta, "{\"node\":\"a\"}", &e), 0);
        size_t len;
        char *rec = slurp(ra, &len), *sub = NULL;
        const char *why = NULL;
        switch (k) {
        case 0: /* truncated in the middle of the JSON */
            overwrite(ra, rec, len - 3);
            why = "header says";
            break;
        case 1: /* garbage */
            overwrite(ra, "\x01\x02 not a record at all", 22);
            why = "bad header";
            break;
        case 2: { /* the tree line names another stage's tree */
            char *t = strstr(rec, tahex);
            assert_non_null(t);
            memcpy(t, tbhex, 32);
            overwrite(ra, rec, len);
            why = "checksum mismatch";
            break;
        }
        case 3: /* another key's record copied to this key's path */
            overwrite(ra, brec, blen);
            why = "misplaced";
            break;
        case 4: { /* a NUL and junk after the checksum on the json line */
            char *nl = memchr(rec + 15 + 37 + 38, '\n', len - 90);
            size_t at = (size_t)(nl - rec);
            char *j = malloc(len + 5);
            memcpy(j, rec, at);
            memcpy(j + at, "\0junk", 5);
            memcpy(j + at + 5, rec + at, len - at);
            overwrite(ra, j, len + 5);
            free(j);
            why = "bad json line";
            break;
        }
        case 5: /* a directory at the record's path */
            chmod(ra, 0644);
            unlink(ra);
            assert_int_equal(mkdir(ra, 0755), 0);
            sub = fl_strdupf("%s/x", ra);
            overwrite(sub, "x", 1);
            why = "a directory";
            break;
        case 6: /* a symbolic link to /dev/zero: must not be followed (it hung `run`) */
            chmod(ra, 0644);
            unlink(ra);
            assert_int_equal(symlink("/dev/zero", ra), 0);
            why = "a symbolic link";
            break;
        case 7: /* a symbolic link to a valid record elsewhere is still not followed */
            chmod(ra, 0644);
            sub = fl_strdupf("%s/elsewhere", f->dir);
            overwrite(sub, rec, len);
            unlink(ra);
            assert_int_equal(symlink(sub, ra), 0);
            why = "a symbolic link";
            break;
        case 8: /* a FIFO: opening it must not wait for a writer */
            chmod(ra, 0644);
            unlink(ra);
            assert_int_equal(mkfifo(ra, 0644), 0);
            why = "a FIFO";
            break;
        case 9: /* a huge (sparse) file: refused by size, not read */
            overwrite(ra, rec, len);
            assert_int_equal(truncate(ra, (off_t)1 << 40), 0);
            why = "limit";
            break;
        case 10: { /* the shard directory records/<xx> is a file */
            char *dir = fl_strdupf("%s/records/%.2s", f->root, ahex);
            fl_remove_tree(dir, &e);
            overwrite(dir, "junk", 4);
            free(dir);
            why = "not a directory";
            break;
        }
        }
        free(rec);
        double t0 = fl_now();
        e.msg[0] = '\0';
        fl_digest got;
        assert_int_equal(fl_store_record_peek(f->s, &ka, &got, NULL, &e), FL_RECORD_DAMAGED);
        if (!strstr(e.msg, why)) fail_msg("case %d: peek said '%s', wanted '%s'", k, e.msg, why);
        assert_int_equal(fl_store_record_peek(f->s, &ka, &got, NULL, &e), FL_RECORD_DAMAGED);
        e.msg[0] = '\0';
        assert_int_equal(fl_store_record_get(f->s, &ka, &got, NULL, &e), FL_RECORD_DAMAGED);
        if (!strstr(e.msg, why) || !strstr(e.msg, "quarantine"))
            fail_msg("case %d: get said '%s', wanted '%s'", k, e.msg, why);
        assert_true(fl_now() - t0 < 5.0);
        assert_int_equal(fl_store_record_get(f->s, &ka, &got, NULL, &e), FL_RECORD_ABSENT);
        if (sub) {
            unlink(sub);
            free(sub);
        }
        /* The stage reruns and commits again; the other stage's record is untouched. */
        assert_int_equal(fl_store_record_put(f->s, &ka, &ta, "{\"node\":\"a\"}", &e), 0);
        assert_int_equal(fl_store_record_get(f->s, &ka, &got, NULL, &e), FL_RECORD_FOUND);
        assert_true(fl_digest_eq(&got, &ta));
        if (k != 10) {
            assert_int_equal(fl_store_record_get(f->s, &kb, &got, NULL, &e), FL_RECORD_FOUND);
            assert_true(fl_digest_eq(&got, &tb));
        }
    }
    free(brec);
    free(ra);
    free(rb);
}

/* A damaged ref or lock file is set aside or named, never followed or waited on. */
static void test_ref_and_lock_damage(void **state) {
    fx *f = *state;
    fl_err e = {0};
    char *ref = fl_strdupf("%s/refs/runs/x", f->root);
    assert_int_equal(fl_store_ref_set(f->s, "runs/x", "abc\n", &e), 0);
    unlink(ref);
    assert_int_equal(mkfifo(ref, 0644), 0);
    assert_null(fl_store_ref_get(f->s, "runs/x", &e));
    assert_non_null(strstr(e.msg, "FIFO"));
    unlink(ref);
    assert_int_equal(symlink("/dev/zero", ref), 0);
    assert_null(fl_store_ref_get(f->s, "runs/x", &e));
    assert_non_null(strstr(e.msg, "damaged ref"));
    unlink(ref);
    assert_int_equal(mkdir(ref, 0755), 0); /* a directory blocks the rename: set aside */
    assert_int_equal(fl_store_ref_set(f->s, "runs/x", "new\n", &e), 0);
    char *t = fl_store_ref_get(f->s, "runs/x", &e);
    assert_string_equal(t, "new\n");
    free(t);
    free(ref);
    /* Locks: a symbolic link (even a dangling one, which O_CREAT would follow), a FIFO, a
     * directory. Each is set aside and a fresh lock file used. */
    char *lk = fl_strdupf("%s/locks/gc", f->root), *target = fl_strdupf("%s/outside", f->dir);
    for (int k = 0; k < 3; k++) {
        unlink(lk);
        rmdir(lk);
        if (k == 0) assert_int_equal(symlink(target, lk), 0);
        if (k == 1) assert_int_equal(mkfifo(lk, 0644), 0);
        if (k == 2) assert_int_equal(mkdir(lk, 0755), 0);
        int fd = fl_store_lock(f->s, "gc", 1, 0, &e);
        if (fd < 0) fail_msg("lock case %d: %s", k, e.msg);
        struct stat st;
        assert_int_equal(lstat(lk, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(fl_store_lock(f->s, "gc", 1, 0, &e), -2); /* still a real lock */
        fl_store_unlock(fd);
    }
    struct stat st;
    assert_int_equal(lstat(target, &st), -1); /* nothing was created through the link */
    free(lk);
    free(target);
}

/* work/<key> replaced by a file or by a symbolic link (which would send a stage's checkpoints
 * outside the store): the link itself is removed, never its target, and a real directory made. */
static void test_work_dir_damage(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest key = key_of("long stage");
    char *w = fl_store_work_dir(f->s, &key, &e);
    assert_non_null(w);
    char *outside = fl_strdupf("%s/outside", f->dir), *keep = fl_strdupf("%s/outside/keep", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    put(f->dir, "outside/keep", "precious");
    for (int k = 0; k < 2; k++) {
        fl_remove_tree(w, &e);
        if (k == 0)
            assert_int_equal(fl_write_file_atomic(w, "x", 1, &e), 0);
        else
            assert_int_equal(symlink(outside, w), 0);
        char *again = fl_store_work_dir(f->s, &key, &e);
        if (!again) fail_msg("case %d: %s", k, e.msg);
        struct stat st;
        assert_int_equal(lstat(again, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        free(again);
    }
    struct stat st;
    assert_int_equal(stat(keep, &st), 0);
    free(keep);
    free(outside);
    free(w);
}

static void test_refs(void **state) {
    fx *f = *state;
    fl_err e = {0};
    strcpy(e.msg, "stale");
    assert_null(fl_store_ref_get(f->s, "configs/smoke", &e));
    assert_string_equal(e.msg, ""); /* absent, not an error */
    assert_int_equal(fl_store_ref_set(f->s, "configs/smoke", "abc\ndef\n", &e), 0);
    char *t = fl_store_ref_get(f->s, "configs/smoke", &e);
    assert_string_equal(t, "abc\ndef\n");
    free(t);
    assert_int_equal(fl_store_ref_set(f->s, "configs/smoke", "new", &e), 0);
    t = fl_store_ref_get(f->s, "configs/smoke", &e);
    assert_string_equal(t, "new");
    free(t);
    assert_int_equal(fl_store_ref_set(f->s, "happywhale.json-v2_x", "", &e), 0);
    t = fl_store_ref_get(f->s, "happywhale.json-v2_x", &e);
    assert_string_equal(t, "");
    free(t);
    const char *bad[] = {"", "../escape", "a//b", "/abs", "a/./b", "a b", "a/", "semi;colon", ".."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.msg[0] = '\0';
        assert_int_equal(fl_store_ref_set(f->s, bad[i], "x", &e), -1);
        assert_non_null(strstr(e.msg, "invalid ref name"));
        assert_null(fl_store_ref_get(f->s, bad[i], &e));
        assert_true(e.msg[0] != '\0');
    }
}

static void test_locks_shared_exclusive(void **state) {
    fx *f = *state;
    fl_err e = {0};
    int a = fl_store_lock(f->s, "gc", 0, 0, &e);
    int b = fl_store_lock(f->s, "gc", 0, 0, &e);
    assert_true(a >= 0 && b >= 0); /* shared + shared */
    assert_int_equal(fl_store_lock(f->s, "gc", 1, 0, &e), -2);
    fl_store_unlock(a);
    assert_int_equal(fl_store_lock(f->s, "gc", 1, 0, &e), -2);
    fl_store_unlock(b);
    int x = fl_store_lock(f->s, "gc", 1, 0, &e);
    assert_true(x >= 0);
    assert_int_equal(fl_store_lock(f->s, "gc", 0, 0, &e), -2);
    int other = fl_store_lock(f->s, "stage/embed_train-3", 1, 0, &e); /* names are independent */
    assert_true(other >= 0);
    fl_store_unlock(other);
    fl_store_unlock(x);
    assert_int_equal(fl_store_lock(f->s, "../x", 1, 0, &e), -1);
    assert_non_null(strstr(e.msg, "invalid lock name"));
}

static void test_lock_released_when_holder_killed(void **state) {
    fx *f = *state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        fl_err ce = {0};
        int fd = fl_store_lock(f->s, "run", 1, 1, &ce);
        char c = fd >= 0 ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1) _exit(2);
        for (;;) pause();
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    fl_err e = {0};
    assert_int_equal(fl_store_lock(f->s, "run", 1, 0, &e), -2);
    assert_int_equal(fl_store_lock(f->s, "run", 0, 0, &e), -2);
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    int fd = fl_store_lock(f->s, "run", 1, 0, &e);
    assert_true(fd >= 0);
    fl_store_unlock(fd);
    close(ready[0]);
    close(ready[1]);
}

/* wait=1 blocks until the holder lets go: the holder's last act before releasing (by exiting)
 * is writing 'z', which must therefore be readable once the waiter holds the lock. */
static void test_lock_wait(void **state) {
    fx *f = *state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        fl_err ce = {0};
        int fd = fl_store_lock(f->s, "run", 1, 1, &ce);
        if (write(ready[1], "y", 1) != 1 || fd < 0) _exit(2);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (write(ready[1], "z", 1) != 1) _exit(2);
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    fl_err e = {0};
    int fd = fl_store_lock(f->s, "run", 1, 1, &e);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(ready[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'z');
    assert_int_equal(waitpid(child, NULL, 0), child);
    fl_store_unlock(fd);
    close(ready[0]);
    close(ready[1]);
}

static void expect_enospc(const fl_err *e) {
    assert_non_null(strstr(e->msg, "No space left on device"));
}

static void test_fault_during_ingest(void **state) {
    fx *f = *state;
    for (long n = 1; n <= 3; n++) { /* 1: first object, 2: second object, 3: the tree */
        char *root = fl_strdupf("%s/faulty%ld", f->dir, n);
        fl_store_opts o = {.fault_write_after = n};
        fl_err e = {0};
        fl_store *s = fl_store_open(root, &o, &e);
        assert_non_null(s);
        fl_digest tree;
        assert_int_equal(ingest_files(s, 2, &tree, &e), -1);
        expect_enospc(&e);
        assert_int_equal(count_digest_files(root, "objects", 1), (int)n - 1);
        assert_int_equal(count_digest_files(root, "trees", 0), 0);
        assert_int_equal(count_entries(root, "records"), 0);
        assert_int_equal(count_entries(root, "tmp"), 0);
        fl_store_close(s);
        /* The disk "frees up": the same commit now succeeds. */
        s = fl_store_open(root, NULL, &e);
        assert_int_equal(ingest_files(s, 2, &tree, &e), 0);
        assert_int_equal(count_digest_files(root, "objects", 1), 2);
        fl_store_close(s);
        free(root);
    }
}

/* Many files (the batched path): a failure at any write leaves no object, tree or temporary. */
static void test_fault_during_batch_ingest(void **state) {
    fx *f = *state;
    long at[] = {1, 20, 41}; /* first object, a middle one, the tree after all 40 objects */
    for (size_t k = 0; k < 3; k++) {
        char *root = fl_strdupf("%s/faulty%zu", f->dir, k);
        fl_store_opts o = {.fault_write_after = at[k]};
        fl_err e = {0};
        fl_store *s = fl_store_open(root, &o, &e);
        assert_non_null(s);
        fl_digest tree;
        assert_int_equal(ingest_files(s, 40, &tree, &e), -1);
        expect_enospc(&e);
        assert_int_equal(count_digest_files(root, "objects", 1), 0);
        assert_int_equal(count_digest_files(root, "trees", 0), 0);
        assert_int_equal(count_entries(root, "tmp"), 0);
        fl_store_close(s);
        s = fl_store_open(root, NULL, &e);
        assert_int_equal(ingest_files(s, 40, &tree, &e), 0);
        assert_int_equal(count_digest_files(root, "objects", 1), 40);
        assert_int_equal(count_digest_files(root, "trees", 0), 1);
        fl_store_close(s);
        free(root);
    }
}

static void test_fault_during_record_put(void **state) {
    fx *f = *state;
    char *root = fl_strdupf("%s/faulty", f->dir);
    fl_store_opts o = {.fault_write_after = 3}; /* object, tree, then the record */
    fl_err e = {0};
    fl_store *s = fl_store_open(root, &o, &e);
    fl_digest tree, key = key_of("k");
    assert_int_equal(ingest_files(s, 1, &tree, &e), 0);
    assert_int_equal(fl_store_record_put(s, &key, &tree, "{}", &e), -1);
    expect_enospc(&e);
    assert_int_equal(fl_store_record_get(s, &key, NULL, NULL, &e), 0);
    assert_int_equal(count_entries(root, "records"), 0);
    assert_int_equal(count_entries(root, "tmp"), 0);
    /* Refs fail the same way and keep their old text. */
    fl_store_close(s);
    s = fl_store_open(root, NULL, &e);
    assert_int_equal(fl_store_ref_set(s, "latest", "old", &e), 0);
    fl_store_close(s);
    o.fault_write_after = 1;
    s = fl_store_open(root, &o, &e);
    assert_int_equal(fl_store_ref_set(s, "latest", "new", &e), -1);
    expect_enospc(&e);
    char *t = fl_store_ref_get(s, "latest", &e);
    assert_string_equal(t, "old");
    free(t);
    fl_store_close(s);
    free(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_damage_and_recency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_damage_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ref_and_lock_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_dir_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_shared_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_released_when_holder_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_during_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_during_batch_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_during_record_put, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
