#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "runtime/rng.h"

/* Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10). */
static void test_philox_known_answers(void **state) {
    (void)state;
    uint32_t out[4];
    uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    fl_philox4x32(c0, k0, out);
    assert_int_equal(out[0], 0x6627e8d5u);
    assert_int_equal(out[1], 0xe169c58du);
    assert_int_equal(out[2], 0xbc57ac4cu);
    assert_int_equal(out[3], 0x9b00dbd8u);
    uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    uint32_t k1[2] = {0xffffffffu, 0xffffffffu};
    fl_philox4x32(c1, k1, out);
    assert_int_equal(out[0], 0x408f276du);
    assert_int_equal(out[1], 0x41c83b0eu);
    assert_int_equal(out[2], 0xa20bc7c6u);
    assert_int_equal(out[3], 0x6d5451fdu);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
    uint32_t k2[2] = {0xa4093822u, 0x299f31d0u};
    fl_philox4x32(c2, k2, out);
    assert_int_equal(out[0], 0xd16cfe09u);
    assert_int_equal(out[1], 0x94fdccebu);
    assert_int_equal(out[2], 0x5001e420u);
    assert_int_equal(out[3], 0x24126ea1u);
}

static void test_streams_reproducible_and_distinct(void **state) {
    (void)state;
    fl_rng a, b, c;
    fl_rng_init(&a, 42, 7);
    fl_rng_init(&b, 42, 7);
    fl_rng_init(&c, 42, 8);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = fl_rng_u32(&a), y = fl_rng_u32(&b), z = fl_rng_u32(&c);
        assert_int_equal(x, y);
        same_c += x == z;
    }
    assert_true(same_c < 3);
}

static void test_distributions(void **state) {
    (void)state;
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    double s = 0, s2 = 0;
    int n = 200000, counts[10] = {0};
    for (int i = 0; i < n; i++) {
        float u = fl_rng_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        counts[fl_rng_below(&r, 10)]++;
        float g = fl_rng_normal(&r);
        s += g;
        s2 += (double)g * g;
    }
    for (int k = 0; k < 10; k++) assert_true(fabs(counts[k] - n / 10.0) < 0.02 * n);
    assert_true(fabs(s / n) < 0.01);
    assert_true(fabs(s2 / n - 1.0) < 0.02);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_streams_reproducible_and_distinct),
        cmocka_unit_test(test_distributions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
