/* Fuzz target for the store's on-disk parsers: tree objects and cache records (the stat cache
 * file is covered by tests/unit/test_store_statcache.c, which truncates and damages it).
 *
 *   libFuzzer:  clang -std=c11 -D_GNU_SOURCE -I. -DFL_FUZZ_LIBFUZZER -fsanitize=fuzzer,address,undefined \
 *                 tests/fuzz/fuzz_store.c artifacts/[a-z]*.c -lxxhash
 *   plain:      without -DFL_FUZZ_LIBFUZZER and -fsanitize=fuzzer: a main() that runs every file
 *               named on the command line through the target (a regression corpus).
 *   unit test:  tests/unit/test_store_fuzz.c includes this file with FL_FUZZ_NO_MAIN.
 *
 * The first input byte picks the parser (even: tree, odd: record); the rest is the file.
 * Beyond "does not crash": both formats are canonical, so whatever parses must encode back to
 * exactly the same bytes, and a rejection must say what was rejected. A violated promise aborts. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/store_internal.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_store: broken invariant: %s\n", what);
        abort();
    }
}

static void fuzz_tree(const char *buf, size_t len) {
    fl_tree t;
    fl_err e = {{0}};
    if (fl__tree_parse(buf, len, &t, "fuzz-tree", &e) != 0) {
        fz_check(strstr(e.msg, "fuzz-tree") != NULL, "a rejected tree is named");
        return;
    }
    char *enc;
    size_t elen;
    fz_check(fl__tree_encode(&t, &enc, &elen, &e) == 0, "an accepted tree encodes");
    fz_check(elen == len && memcmp(enc, buf, len) == 0, "an accepted tree is canonical");
    fl_digest a, b;
    fl__tree_digest(buf, len, &a);
    fl__tree_digest(enc, elen, &b);
    fz_check(fl_digest_eq(&a, &b), "equal encodings digest equally");
    free(enc);
    fl__tree_free(&t);
}

static void fuzz_record(const char *buf, size_t len) {
    fl_digest tree;
    const char *json;
    size_t jl;
    fl_err e = {{0}};
    if (fl__record_parse(buf, len, "fuzz-record", &tree, &json, &jl, &e) != 0) {
        fz_check(strstr(e.msg, "corrupt record fuzz-record") != NULL, "a rejected record is named");
        return;
    }
    fz_check(json >= buf && json + jl == buf + len, "the JSON is the rest of the record");
    /* Accepted: the key line is "key <hex>\n" right after the 15-byte magic line. */
    fz_check(len >= 15 + 37 && memcmp(buf + 15, "key ", 4) == 0, "an accepted record has a key");
    char khex[FL_DIGEST_HEX];
    memcpy(khex, buf + 19, 32);
    khex[32] = '\0';
    fl_digest key;
    fz_check(fl_digest_from_hex(khex, &key) == 0, "an accepted record's key is hex");
    fl_digest t2;
    const char *j2;
    size_t jl2;
    fz_check(fl__record_parse_key(buf, len, "fuzz-record", &key, &t2, &j2, &jl2, NULL, &e) == 0,
             "an accepted record matches its own key");
    size_t elen = 0;
    char *enc = fl__record_encode(&key, &tree, json, jl, &elen);
    fz_check(enc && elen == len && memcmp(enc, buf, len) == 0, "an accepted record is canonical");
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    /* A private copy of exactly the payload, so reading one byte past it is caught by ASan. */
    char *buf = malloc(size - 1 ? size - 1 : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1) fuzz_record(buf, size - 1);
    else fuzz_tree(buf, size - 1);
    free(buf);
    return 0;
}

#if !defined(FL_FUZZ_LIBFUZZER) && !defined(FL_FUZZ_NO_MAIN)
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        fl_err e;
        size_t len = 0;
        char *buf = fl_read_file(argv[i], &len, &e);
        if (!buf) {
            fprintf(stderr, "fuzz_store: %s\n", e.msg);
            return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        free(buf);
    }
    return 0;
}
#endif
