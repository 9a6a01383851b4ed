/* Fuzz target for the remote cache's /ac/ entry parser (artifacts/remote_ac.c): the bytes come
 * from an untrusted server.
 *
 *   libFuzzer:  make fuzz-libfuzzer (build-fuzz/fuzz/fuzz_remote_ac)
 *   plain:      build/fuzz/fuzz_remote_ac FILE... replays files (tests/fuzz/corpus/fuzz_remote_ac)
 *   unit test:  tests/unit/test_remote_ac.c includes this file with FL_FUZZ_NO_MAIN.
 *
 * Beyond "does not crash": the format is canonical, so an accepted entry encodes back to exactly
 * the input bytes; its first tree is its record's tree; a rejection names the source. A violated
 * promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/remote.h"
#include "tests/fuzz/fuzz_main.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_remote_ac: broken invariant: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    fl_remote_ac ac;
    fl_err e = {{0}};
    if (fl_remote_ac_parse(buf, size, NULL, "fuzz-ac", &ac, &e) != 0) {
        fz_check(strstr(e.msg, "fuzz-ac") != NULL || strstr(e.msg, "out of memory") != NULL,
                 "a rejected entry is named");
        return 0;
    }
    fz_check(ac.ntrees >= 1 && fl_digest_eq(&ac.trees[0].d, &ac.tree), "the first tree is the output");
    size_t len;
    char *enc = fl_remote_ac_encode(&ac, &len, &e);
    fz_check(enc != NULL, "an accepted entry encodes");
    fz_check(len == size && memcmp(enc, buf, size) == 0, "an accepted entry is canonical");
    /* Parsing with its own key succeeds; with another key fails. */
    fl_remote_ac again;
    fz_check(fl_remote_ac_parse(enc, len, &ac.key, "fuzz-ac", &again, &e) == 0, "its own key matches");
    fl_remote_ac_free(&again);
    fl_digest other = ac.key;
    other.b[0] ^= 1;
    fz_check(fl_remote_ac_parse(enc, len, &other, "fuzz-ac", &again, &e) != 0, "another key is refused");
    free(enc);
    fl_remote_ac_free(&ac);
    return 0;
}

