/* Runs the torch.save fuzz target (tests/fuzz/fuzz_pt.c, included without its main) over its
 * seed corpus and over corruptions of the seeds: every truncation of a whole file and of a
 * pickle, single-byte substitutions at every position of a small pickle, and random multi-byte
 * mutations. The target aborts on a broken reader promise; the sanitizer build catches the rest.
 * The seeds that are real state dicts must be accepted (so the mutations start from inputs that
 * reach the end of the reader). */
#define FL_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz_pt.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/rng.h"

static unsigned char *seed(const char *name, size_t *len) {
    const char *src = getenv("FLUKE_SRC");
    char *p = fl_strdupf("%s/tests/fuzz/corpus/fuzz_pt/%s", src && *src ? src : ".", name);
    fl_err e;
    unsigned char *b = (unsigned char *)fl_read_file(p, len, &e);
    if (!b) fprintf(stderr, "%s\n", e.msg);
    assert_non_null(b);
    free(p);
    return b;
}

static int run_one(const unsigned char *b, size_t n) {
    unsigned char *exact = malloc(n ? n : 1); /* exact size, so ASan sees any over-read */
    memcpy(exact, b, n);
    int before = fz_pt_accepted;
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return fz_pt_accepted > before;
}

static void test_seeds(void **state) {
    (void)state;
    const char *ok[] = {"file_plain.bin", "pkl_plain.bin", "pkl_yolo_tiny.pt", "pkl_protocol4"};
    const char *bad[] = {"file_evil.pt", "file_evil_sd.bin", "file_legacy.pt", "file_deflate.pt",
                         "pkl_evil_sd.bin"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n;
        unsigned char *b = seed(ok[i], &n);
        if (!run_one(b, n)) fprintf(stderr, "%s rejected\n", ok[i]);
        assert_true(run_one(b, n));
        free(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n;
        unsigned char *b = seed(bad[i], &n);
        assert_false(run_one(b, n));
        free(b);
    }
}

static void test_truncations(void **state) {
    (void)state;
    const char *names[] = {"file_plain.bin", "pkl_plain.bin"};
    for (size_t k = 0; k < 2; k++) {
        size_t n;
        unsigned char *b = seed(names[k], &n);
        int acc = 0;
        for (size_t m = 0; m < n; m++)
            acc += run_one(b, m);
        /* a whole file cut anywhere is refused (the zip directory is at the end) */
        if (k == 0) assert_int_equal(acc, 0);
        free(b);
    }
}

static void test_substitutions_and_mutations(void **state) {
    (void)state;
    size_t n;
    unsigned char *b = seed("pkl_plain.bin", &n);
    static const unsigned char subst[] = {0x00, 0xff, '(', ')',  '.',  'R',  'b',  'Q', 'q', 'h',
                                          't',  'u',  's', 0x80, 0x8c, 0x94, 0x95, 'X', 'K', 'J'};
    unsigned char *m = malloc(n + 64);
    int acc = 0, rej = 0;
    for (size_t i = 1; i < n; i++)
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(m, b, n);
            m[i] = subst[k];
            if (run_one(m, n))
                acc++;
            else
                rej++;
        }
    assert_true(acc > 0 && rej > 0);
    fl_rng r;
    fl_rng_init(&r, 99, 0);
    for (int it = 0; it < 8000; it++) {
        size_t len = n;
        memcpy(m, b, n);
        int edits = 1 + (int)fl_rng_below(&r, 4);
        for (int k = 0; k < edits; k++) {
            size_t at = 1 + fl_rng_below(&r, (uint32_t)(len - 1));
            uint32_t kind = fl_rng_below(&r, 3);
            if (kind == 0) {
                m[at] = (unsigned char)fl_rng_below(&r, 256);
            } else if (kind == 1 && len < n + 60) {
                memmove(m + at + 1, m + at, len - at);
                m[at] = subst[fl_rng_below(&r, sizeof subst)];
                len++;
            } else if (len > 8) {
                memmove(m + at, m + at + 1, len - at - 1);
                len--;
            }
        }
        run_one(m, len);
    }
    free(m);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_substitutions_and_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
