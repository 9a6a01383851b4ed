/* Runs the store parser fuzz target (tests/fuzz/fuzz_store.c, with its canonical-form checks)
 * over valid tree objects and records, every prefix of them, and seeded random mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define FL_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz_store.c"

#include "runtime/rng.h"

/* Target byte + payload, as the fuzzer sees it. */
static void run(int which, const char *p, size_t n) {
    uint8_t *in = malloc(n + 1);
    in[0] = (uint8_t)which;
    memcpy(in + 1, p, n);
    LLVMFuzzerTestOneInput(in, n + 1);
    free(in);
}

static void prefixes_and_mutations(int which, const char *p, size_t n, uint64_t seed) {
    for (size_t k = 0; k <= n; k++) run(which, p, k);
    fl_rng r;
    fl_rng_init(&r, seed, 0);
    char *m = malloc(n + 8);
    for (int it = 0; it < 3000; it++) {
        memcpy(m, p, n);
        size_t len = n;
        int edits = 1 + (int)fl_rng_below(&r, 3);
        for (int k = 0; k < edits && len; k++) {
            size_t at = fl_rng_below(&r, (uint32_t)len);
            switch (fl_rng_below(&r, 4)) {
            case 0: m[at] ^= (char)(1u << fl_rng_below(&r, 8)); break;     /* bit flip */
            case 1: m[at] = (char)"\0/ \n.fxd0aF"[fl_rng_below(&r, 11)]; break; /* structure bytes */
            case 2: memmove(m + at, m + at + 1, len - at - 1); len--; break; /* delete */
            default: /* duplicate a byte */
                memmove(m + at + 1, m + at, len - at);
                len++;
                break;
            }
        }
        run(which, m, len);
    }
    free(m);
}

static void test_trees(void **state) {
    (void)state;
    fl_tree t = {0};
    fl_err e = {{0}};
    fl_digest d;
    memset(&d, 0x5a, sizeof d);
    assert_int_equal(fl__tree_add(&t, "train.csv", FL_MODE_FILE, &d, &e), 0);
    assert_int_equal(fl__tree_add(&t, "images", FL_MODE_DIR, &d, &e), 0);
    assert_int_equal(fl__tree_add(&t, "run.sh", FL_MODE_EXEC, &d, &e), 0);
    assert_int_equal(fl__tree_add(&t, "a b\nc", FL_MODE_FILE, &d, &e), 0);
    char *enc;
    size_t len;
    assert_int_equal(fl__tree_encode(&t, &enc, &len, &e), 0);
    run(0, enc, len); /* valid: must round-trip */
    prefixes_and_mutations(0, enc, len, 1);
    free(enc);
    fl__tree_free(&t);
    /* The empty tree, and hand-made non-canonical ones that must be rejected. */
    run(0, "fluke-tree 1\n", 13);
    const char *bad[] = {
        "fluke-tree 1\nf 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a b\0f 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a a\0",
        "fluke-tree 1\nf 5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A a\0",
        "fluke-tree 1\nf 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a ..\0",
        "fluke-tree 1\nq 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a a\0",
    };
    size_t blen[] = {13 + 36 + 2 + 36 + 2, 13 + 36 + 2, 13 + 36 + 3, 13 + 36 + 2};
    for (int i = 0; i < 4; i++) {
        fl_tree p;
        assert_int_equal(fl__tree_parse(bad[i], blen[i], &p, "hand-made", &e), -1);
        assert_non_null(strstr(e.msg, "hand-made"));
    }
}

static void test_records(void **state) {
    (void)state;
    const char *json = "{\"node\":\"crop\",\"output\":\"x\",\"seconds\":1.5}";
    fl_digest tree, key;
    memset(&tree, 0x33, sizeof tree);
    memset(&key, 0x44, sizeof key);
    size_t len;
    char *rec = fl__record_encode(&key, &tree, json, strlen(json), &len);
    fl_err e = {{0}};
    const char *j;
    size_t jl;
    fl_digest got;
    assert_int_equal(fl__record_parse(rec, len, "r", &got, &j, &jl, &e), 0); /* valid */
    assert_true(fl_digest_eq(&got, &tree));
    run(1, rec, len); /* must round-trip */
    prefixes_and_mutations(1, rec, len, 2);
    /* The campaign's finding: a NUL and junk after the checksum on the json line. */
    char *junk = malloc(len + 8);
    const char *nl = memchr(rec + 15 + 37 + 38, '\n', len - 90);
    size_t at = (size_t)(nl - rec);
    memcpy(junk, rec, at);
    memcpy(junk + at, "\0junk", 5);
    memcpy(junk + at + 5, rec + at, len - at);
    run(1, junk, len + 5);
    assert_int_equal(fl__record_parse(junk, len + 5, "r", &got, &j, &jl, &e), -1);
    free(junk);
    free(rec);
    /* A leading zero in the length is not the canonical form; a format-1 record is refused. */
    char th[FL_DIGEST_HEX], kh[FL_DIGEST_HEX];
    fl_digest_hex(&tree, th);
    fl_digest_hex(&key, kh);
    rec = fl_strdupf("fluke-record 2\nkey %s\ntree %s\njson 0%zu %s\n%s", kh, th, strlen(json), th,
                     json);
    assert_int_equal(fl__record_parse(rec, strlen(rec), "r", &tree, &j, &jl, &e), -1);
    free(rec);
    rec = fl_strdupf("fluke-record 1\ntree %s\njson %zu %s\n%s", th, strlen(json), th, json);
    int old = 0;
    assert_int_equal(fl__record_parse_key(rec, strlen(rec), "r", NULL, &tree, &j, &jl, &old, &e),
                     -1);
    assert_int_equal(old, 1);
    free(rec);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trees),
        cmocka_unit_test(test_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
