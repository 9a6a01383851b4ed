/* The remote cache's /ac/ entry format and URLs: encode/parse round trips, every rejection an
 * untrusted server's bytes can trigger (each named), the key check, and the fuzz target's
 * invariants over prefixes and seeded mutations of a valid entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define FL_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz_remote_ac.c"

#include <ctype.h>

#include "runtime/rng.h"

static fl_digest dg(int seed) {
    fl_digest d;
    for (int i = 0; i < 16; i++) d.b[i] = (uint8_t)(seed * 31 + i * 7);
    return d;
}

/* A valid entry: key 1, root tree 2 (+ tree 3), files 4 and 5. */
static char *sample(size_t *len) {
    fl_remote_item trees[2] = {{dg(2), 120}, {dg(3), 64}};
    fl_remote_item files[2] = {{dg(4), 0}, {dg(5), 9437194}};
    fl_remote_ac ac = {.key = dg(1), .tree = dg(2), .json = "{\"output\":\"x\"}",
                       .trees = trees, .ntrees = 2, .files = files, .nfiles = 2};
    fl_err e;
    char *buf = fl_remote_ac_encode(&ac, len, &e);
    assert_non_null(buf);
    return buf;
}

static void test_round_trip(void **st) {
    (void)st;
    size_t len;
    char *buf = sample(&len);
    fl_remote_ac ac;
    fl_err e = {{0}};
    fl_digest key = dg(1);
    assert_int_equal(fl_remote_ac_parse(buf, len, &key, "t", &ac, &e), 0);
    fl_digest root = dg(2);
    assert_true(fl_digest_eq(&ac.tree, &root));
    assert_int_equal(ac.ntrees, 2);
    assert_int_equal(ac.nfiles, 2);
    assert_true(ac.files[1].size == 9437194);
    assert_string_equal(ac.json, "{\"output\":\"x\"}");
    size_t l2;
    char *again = fl_remote_ac_encode(&ac, &l2, &e);
    assert_int_equal(l2, len);
    assert_memory_equal(again, buf, len);
    free(again);
    fl_remote_ac_free(&ac);
    free(buf);
}

/* Replaces the first occurrence of from by to in the entry and expects a named rejection. */
static void expect_reject(const char *from, const char *to, const char *why) {
    size_t len;
    char *buf = sample(&len);
    char *at = memmem(buf, len, from, strlen(from));
    assert_non_null(at);
    size_t fl = strlen(from), tl = strlen(to);
    char *m = malloc(len - fl + tl + 1);
    size_t off = (size_t)(at - buf);
    memcpy(m, buf, off);
    memcpy(m + off, to, tl);
    memcpy(m + off + tl, at + fl, len - off - fl);
    fl_remote_ac ac;
    fl_err e = {{0}};
    int rc = fl_remote_ac_parse(m, len - fl + tl, NULL, "srv", &ac, &e);
    if (rc == 0) fail_msg("accepted an entry with '%s' -> '%s'", from, to);
    if (!strstr(e.msg, "bad /ac/ entry srv") || !strstr(e.msg, why))
        fail_msg("'%s' -> '%s': message \"%s\" lacks \"%s\"", from, to, e.msg, why);
    free(m);
    free(buf);
}

static void test_rejections(void **st) {
    (void)st;
    expect_reject("fluke-ac 1\n", "fluke-ac 2\n", "bad header");
    expect_reject("record ", "recorb ", "bad record line");
    expect_reject("ac 1\nrecord ", "ac 1\nrecord 0", "bad record length");
    expect_reject("ac 1\nrecord ", "ac 1\nrecord 9", "bad record length"); /* longer than the entry */
    expect_reject("\"output\"", "\"outpux\"", "checksum mismatch"); /* record damaged */
    expect_reject("end\n", "", "expected a tree, file or end line");
    expect_reject("end\n", "end\nx", "expected a tree, file or end line");
    expect_reject(" 9437194\n", " 09437194\n", "bad size");
    expect_reject(" 120\n", " 120 \n", "bad size");
    expect_reject("end\n", "tree 0123456789abcdef0123456789abcdef 1\nend\n", "tree line after the file lines");
    expect_reject(" 120\ntree ", " 120\ntrex ", "expected a tree, file or end line");
    /* An uppercase digest is not canonical. */
    char hex[FL_DIGEST_HEX], up[FL_DIGEST_HEX];
    fl_digest d4 = dg(4);
    fl_digest_hex(&d4, hex);
    for (int i = 0; i < 33; i++) up[i] = (char)toupper((unsigned char)hex[i]);
    expect_reject(hex, up, "bad digest");
}

static void test_key_and_root(void **st) {
    (void)st;
    size_t len;
    char *buf = sample(&len);
    fl_remote_ac ac;
    fl_err e = {{0}};
    fl_digest other = dg(9);
    assert_int_not_equal(fl_remote_ac_parse(buf, len, &other, "k", &ac, &e), 0);
    assert_non_null(strstr(e.msg, "it is the entry of key"));
    free(buf);
    /* The first tree must be the record's output tree. */
    fl_remote_item trees[1] = {{dg(3), 64}};
    fl_remote_ac bad = {.key = dg(1), .tree = dg(2), .json = "{}", .trees = trees, .ntrees = 1};
    buf = fl_remote_ac_encode(&bad, &len, &e);
    assert_int_not_equal(fl_remote_ac_parse(buf, len, NULL, "r", &ac, &e), 0);
    assert_non_null(strstr(e.msg, "first tree is not the record's output tree"));
    free(buf);
    fl_remote_ac none = {.key = dg(1), .tree = dg(2), .json = "{}"};
    buf = fl_remote_ac_encode(&none, &len, &e);
    assert_int_not_equal(fl_remote_ac_parse(buf, len, NULL, "r", &ac, &e), 0);
    free(buf);
}

static void test_urls(void **st) {
    (void)st;
    fl_digest d = dg(4);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&d, hex);
    const char *bases[] = {"http://h:8080/c", "http://h:8080/c/", "http://h:8080/c///"};
    for (int i = 0; i < 3; i++) {
        char *u = fl_remote_url_for(bases[i], "cas", &d);
        char want[128];
        snprintf(want, sizeof want, "http://h:8080/c/cas/%s", hex);
        assert_string_equal(u, want);
        free(u);
    }
    char *u = fl_remote_url_for("https://cache.example", "ac", &d);
    assert_int_equal(strncmp(u, "https://cache.example/ac/", 25), 0);
    assert_int_equal(strlen(u), 25 + 32);
    free(u);
}

static void test_open_checks_url(void **st) {
    (void)st;
    const char *bad[] = {"ftp://h/x", "h:8080", "http://", "http:///x", "http://h/x?y=1", "http://h/x#f",
                         "http://h/a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl_err e = {{0}};
        fl_remote_opts o = {.url = bad[i]};
        fl_remote *r = fl_remote_open(&o, &e);
        if (r) fail_msg("accepted URL %s", bad[i]);
        assert_non_null(strstr(e.msg, "cache.remote"));
    }
    fl_err e = {{0}};
    fl_remote_opts o = {.url = "http://me:pw@127.0.0.1:1/base/", .token = "tok-secret"};
    fl_remote *r = fl_remote_open(&o, &e);
    assert_non_null(r);
    assert_string_equal(fl_remote_display_url(r), "http://***@127.0.0.1:1/base");
    fl_remote_close(r);
}

/* The fuzz target's invariants over every prefix and seeded mutations of a valid entry. */
static void test_fuzz_invariants(void **st) {
    (void)st;
    size_t len;
    char *buf = sample(&len);
    for (size_t k = 0; k <= len; k++) LLVMFuzzerTestOneInput((const uint8_t *)buf, k);
    fl_rng r;
    fl_rng_init(&r, 17, 0);
    char *m = malloc(len + 8);
    for (int it = 0; it < 4000; it++) {
        memcpy(m, buf, len);
        size_t at = fl_rng_below(&r, (uint32_t)len);
        m[at] = (char)"\0 \n0a9fxtend"[fl_rng_below(&r, 12)];
        LLVMFuzzerTestOneInput((const uint8_t *)m, len);
    }
    free(m);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_key_and_root),    cmocka_unit_test(test_urls),
        cmocka_unit_test(test_open_checks_url), cmocka_unit_test(test_fuzz_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
