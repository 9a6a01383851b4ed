/* GPU kernels against the CPU reference. Runs wherever a GPU is found; elsewhere each test
 * reports itself skipped (cmocka's skip), so the suite states what it did not check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/device.h"
#include "runtime/rng.h"

static double silu_ref(double x) { return x / (1.0 + exp(-x)); }
static double silu_grad_ref(double x) {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

static void test_silu_matches_cpu(void **state) {
    (void)state;
    if (fl_device_count() == 0) {
        char why[256];
        fl_device_describe(0, why, sizeof why);
        printf("skipped: no CUDA device (%s)\n", why);
        skip();
    }
    size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy),
          *dx = malloc(n * sizeof *dx);
    fl_rng r;
    fl_rng_init(&r, 7, 0);
    for (size_t i = 0; i < n; i++) {
        x[i] = 8.0f * fl_rng_normal(&r);
        dy[i] = fl_rng_normal(&r);
    }
    fl_err e = {{0}};
    assert_int_equal(fl_device_silu(x, y, n, &e), 0);
    assert_int_equal(fl_device_silu_backward(x, dy, dx, n, &e), 0);
    double worst = 0, worst_g = 0;
    for (size_t i = 0; i < n; i++) {
        double ry = silu_ref(x[i]), rg = dy[i] * silu_grad_ref(x[i]);
        worst = fmax(worst, fabs(y[i] - ry) / fmax(1.0, fabs(ry)));
        worst_g = fmax(worst_g, fabs(dx[i] - rg) / fmax(1.0, fabs(rg)));
    }
    printf("silu on GPU vs CPU reference: max rel error fwd %.2e bwd %.2e\n", worst, worst_g);
    assert_true(worst < 1e-5);
    assert_true(worst_g < 1e-5);
    free(x), free(y), free(dy), free(dx);
}

static void test_no_device_is_a_clear_error(void **state) {
    (void)state;
    if (fl_device_count() > 0) skip();
    float x = 1, y = 0;
    fl_err e = {{0}};
    assert_int_equal(fl_device_silu(&x, &y, 1, &e), -1);
    assert_true(e.msg[0] != '\0');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silu_matches_cpu),
        cmocka_unit_test(test_no_device_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
