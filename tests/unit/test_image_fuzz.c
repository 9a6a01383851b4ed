/* Runs the JPEG fuzz target (tests/fuzz/fuzz_jpeg_decode.c, with its invariant checks) over the
 * fixture JPEGs, every prefix length of one of them, and seeded random mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define FL_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz_jpeg_decode.c"

static const char *const FIXTURES[] = {"photo.jpg", "gray.jpg", "cmyk.jpg", "orient_3.jpg",
                                       "orient_6.jpg", "orient_8.jpg", "png_bytes.jpg"};

static uint8_t *read_fix(const char *name, size_t *len) {
    char path[1200];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/image/%s", root ? root : ".", name);
    fl_err e = {{0}};
    uint8_t *b = (uint8_t *)fl_read_file(path, len, &e);
    if (!b) fail_msg("%s", e.msg);
    return b;
}

static void test_fixtures_and_prefixes(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof FIXTURES / sizeof *FIXTURES; i++) {
        size_t len;
        uint8_t *b = read_fix(FIXTURES[i], &len);
        LLVMFuzzerTestOneInput(b, len);
        if (i == 4) /* orient_6: every 5th prefix, including inside the EXIF block */
            for (size_t n = 0; n < len; n += 5) LLVMFuzzerTestOneInput(b, n);
        free(b);
    }
}

static void test_random_mutations(void **state) {
    (void)state;
    fl_rng rng;
    fl_rng_init(&rng, 2026, 5);
    for (size_t f = 0; f < 3; f++) {
        size_t len;
        uint8_t *b = read_fix(FIXTURES[f], &len), *m = malloc(len);
        for (int it = 0; it < 150; it++) {
            memcpy(m, b, len);
            int k = 1 + (int)fl_rng_below(&rng, 6);
            for (int j = 0; j < k; j++) {
                /* Headers are where parsers break: bias half the edits to the first 700 bytes. */
                uint32_t span = j % 2 && len > 700 ? 700 : (uint32_t)len;
                m[fl_rng_below(&rng, span)] = (uint8_t)fl_rng_u32(&rng);
            }
            LLVMFuzzerTestOneInput(m, len);
        }
        free(m), free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_and_prefixes),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
