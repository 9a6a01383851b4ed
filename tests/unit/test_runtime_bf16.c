/* BF16 / F16 in the runtime: conversions, casts, the low-precision matrix ops and their stated
 * bounds, autocast gradients, and the F16 loss scaler.
 *
 * Conversions are checked against a reference that rounds by exact distance in double (no bit
 * tricks): the edge cases (ties to even, NaN, inf, overflow past max finite, subnormals), every
 * f16 value, and a few million float32 patterns; the plain and AVX2 paths must agree bitwise.
 * The ops are checked two ways: bitwise (the low-precision op is the float32 op on the rounded
 * inputs, then one rounding of the gradients / output), and normwise against the float32 op on
 * the unrounded inputs, within the bound stated in runtime/ops/lowp_mm.c:
 *   ||Y_lp - Y|| <= (2u + u^2) T ||X|| ||W|| + 2 g_k ||X|| ||W||   (+ u ||Y|| for a low-precision
 * output), u = 2^-8 (bf16) / 2^-11 (f16), T = 1 (linear) or sqrt(KH KW) (conv2d), and the same
 * for dX with (dY, W) and dW with (dY, X). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/lowp.h"
#include "runtime/graph.h"
#include "runtime/loss_scale.h"
#include "runtime/rng.h"

/* ---- reference rounding: nearest representable value by exact distance in double ----------- */

/* Value of a non-negative finite code; the first code past max finite (the inf code) counts as
 * the next power of two, which is where IEEE's unbounded-exponent rounding puts it. */
static double bf16_val(uint32_t c) {
    uint32_t e = c >> 7, m = c & 0x7f;
    return e ? ldexp(128.0 + m, (int)e - 134) : ldexp((double)m, -133);
}
static double f16_val(uint32_t c) {
    uint32_t e = c >> 10, m = c & 0x3ff;
    return e ? ldexp(1024.0 + m, (int)e - 25) : ldexp((double)m, -24);
}

static uint16_t ref_round(float f, double (*val)(uint32_t), uint32_t inf_code, uint32_t sign_bit) {
    double a = fabs((double)f);
    uint32_t s = signbit(f) ? sign_bit : 0;
    if (isinf(f)) return (uint16_t)(s | inf_code);
    uint32_t lo = 0, hi = inf_code; /* largest code with val <= a, by bisection */
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (val(mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == inf_code || val(lo) == a) return (uint16_t)(s | lo);
    double dl = a - val(lo), dh = val(lo + 1) - a;
    uint32_t c = dl < dh ? lo : dh < dl ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
    return (uint16_t)(s | c);
}
static uint16_t ref_bf16(float f) { return ref_round(f, bf16_val, 0x7f80, 0x8000); }
static uint16_t ref_f16(float f) { return ref_round(f, f16_val, 0x7c00, 0x8000); }

static float from_bits(uint32_t u) { return fl_f32_from_bits(u); }

/* A float32 pattern that stresses rounding: random, or with the bits below the target's last
 * significand bit set to exactly half / just off half, across all exponents. */
static uint32_t stress_bits(fl_rng *r, int lowbits) {
    uint32_t u = fl_rng_u32(r);
    switch (fl_rng_below(r, 4)) {
    case 0: return u;
    case 1: return (u & ~((1u << lowbits) - 1)) | (1u << (lowbits - 1));       /* a tie */
    case 2: return (u & ~((1u << lowbits) - 1)) | (1u << (lowbits - 1)) | 1u;  /* just above */
    default: return (u & ~((1u << lowbits) - 1)) | ((1u << (lowbits - 1)) - 1); /* just below */
    }
}

static void test_bf16_edges(void **state) {
    (void)state;
    static const struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000, 0x3f80}, /* 1 */
        {0x3f808000, 0x3f80}, /* 1 + 2^-8: tie, even stays */
        {0x3f818000, 0x3f82}, /* tie, odd rounds up */
        {0x3f808001, 0x3f81}, {0x3f807fff, 0x3f80},
        {0x80000000, 0x8000}, {0x00000000, 0x0000}, /* signed zeros */
        {0x00000001, 0x0000}, {0x00008000, 0x0000}, {0x00008001, 0x0001}, {0x00018000, 0x0002}, /* subnormals */
        {0x807fffff, 0x8080}, /* largest subnormal rounds up to the smallest normal */
        {0x7f7f0000, 0x7f7f}, {0x7f7f7fff, 0x7f7f}, /* max finite bf16 */
        {0x7f7f8000, 0x7f80}, {0x7f7fffff, 0x7f80}, {0xff7fffff, 0xff80}, /* overflow to inf */
        {0x7f800000, 0x7f80}, {0xff800000, 0xff80}, /* inf */
        {0x7fc00000, 0x7fc0}, {0x7f800001, 0x7fc0}, {0xffa00000, 0xffe0}, {0x7fffffff, 0x7fff}, /* NaN */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint16_t h = fl_bf16_from_f32(from_bits(cases[k].f));
        if (h != cases[k].h) printf("bf16(0x%08x) = 0x%04x, want 0x%04x\n", cases[k].f, h, cases[k].h);
        assert_int_equal(h, cases[k].h);
        if (!isnan(from_bits(cases[k].f))) assert_int_equal(ref_bf16(from_bits(cases[k].f)), cases[k].h);
        else assert_true(isnan(fl_bf16_to_f32(h)));
    }
    /* random and near-tie patterns against the reference; widening is exact */
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    for (int i = 0; i < 400000; i++) {
        float f = from_bits(stress_bits(&r, 16));
        uint16_t h = fl_bf16_from_f32(f);
        if (isnan(f)) {
            assert_true(isnan(fl_bf16_to_f32(h)));
            assert_int_equal(h >> 15, fl_f32_bits(f) >> 31);
            continue;
        }
        if (h != ref_bf16(f)) printf("bf16(%a = 0x%08x) = 0x%04x, reference 0x%04x\n", f, fl_f32_bits(f), h, ref_bf16(f));
        assert_int_equal(h, ref_bf16(f));
        assert_true(fl_f32_bits(fl_bf16_to_f32(h)) == (uint32_t)h << 16);
    }
}

static void test_f16_edges(void **state) {
    (void)state;
    static const struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000, 0x3c00}, {0x3f801000, 0x3c00}, /* 1 + 2^-11: tie, even */
        {0x3f803000, 0x3c02}, {0x3f801001, 0x3c01},
        {0x477fe000, 0x7bff}, /* 65504 = max finite */
        {0x477fefff, 0x7bff}, {0x477ff000, 0x7c00}, /* 65520 ties to inf (even) */
        {0x47800000, 0x7c00}, {0x7f7fffff, 0x7c00}, {0xc7800000, 0xfc00},
        {0x33800000, 0x0001}, /* 2^-24: smallest subnormal */
        {0x33000000, 0x0000}, {0x33000001, 0x0001}, /* 2^-25 ties to 0; just above rounds up */
        {0x33c00000, 0x0002}, /* 1.5 * 2^-24: tie, rounds to even 2 */
        {0x387fc000, 0x03ff}, /* 1023 * 2^-24: the largest subnormal, exact */
        {0x387fe000, 0x0400}, /* 1023.5 * 2^-24 ties up into the smallest normal */
        {0x38800000, 0x0400}, {0x80000000, 0x8000}, {0x00000001, 0x0000},
        {0x7f800000, 0x7c00}, {0xff800000, 0xfc00},
        {0x7fc00000, 0x7e00}, {0x7f800001, 0x7e00}, {0xffffe000, 0xffff}, /* NaN */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint16_t h = fl_f16_from_f32(from_bits(cases[k].f));
        if (h != cases[k].h) printf("f16(0x%08x) = 0x%04x, want 0x%04x\n", cases[k].f, h, cases[k].h);
        assert_int_equal(h, cases[k].h);
        if (!isnan(from_bits(cases[k].f))) assert_int_equal(ref_f16(from_bits(cases[k].f)), cases[k].h);
    }
    /* every f16 value widens exactly (NaN stays NaN, of the same sign) and rounds back to itself */
    for (uint32_t c = 0; c < 65536; c++) {
        float f = fl_f16_to_f32((uint16_t)c);
        uint32_t a = c & 0x7fff;
        if (a > 0x7c00) {
            assert_true(isnan(f));
            assert_int_equal(fl_f32_bits(f) >> 31, c >> 15);
            continue;
        }
        double v = a == 0x7c00 ? INFINITY : f16_val(a);
        assert_true((double)fabsf(f) == v);
        assert_int_equal(signbit(f) ? 1 : 0, (int)(c >> 15));
        assert_int_equal(fl_f16_from_f32(f), c);
    }
    fl_rng r;
    fl_rng_init(&r, 2, 0);
    for (int i = 0; i < 400000; i++) {
        /* half the patterns in f16's range (exponents 100..145), where rounding is interesting */
        uint32_t u = stress_bits(&r, 13);
        if (i & 1) u = (u & 0x807fffffu) | ((100u + fl_rng_below(&r, 46)) << 23);
        float f = from_bits(u);
        if (isnan(f)) continue;
        uint16_t h = fl_f16_from_f32(f);
        if (h != ref_f16(f)) printf("f16(%a = 0x%08x) = 0x%04x, reference 0x%04x\n", f, u, h, ref_f16(f));
        assert_int_equal(h, ref_f16(f));
    }
}

/* The bulk conversions: plain and AVX2 agree bitwise with each other and with the scalar
 * functions, for every f16 code, random and special float32 patterns, and the accumulate mode. */
static void test_paths_bitwise(void **state) {
    (void)state;
    const int64_t n = 1 << 20;
    float *src = malloc(sizeof(float) * n), *w1 = malloc(sizeof(float) * n), *w2 = malloc(sizeof(float) * n);
    uint16_t *a = malloc(2 * n), *b = malloc(2 * n), *acc0 = malloc(2 * n);
    assert_true(src && w1 && w2 && a && b && acc0);
    fl_rng r;
    fl_rng_init(&r, 3, 0);
    const fl_dtype ts[2] = {FL_BF16, FL_F16};
    for (int ti = 0; ti < 2; ti++) {
        fl_dtype t = ts[ti];
        if (!fl_lowp_avx2_available(t)) {
            printf("skipped: no AVX2%s on this CPU for %s; plain path only\n", t == FL_F16 ? "/F16C" : "", fl_dtype_name(t));
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = stress_bits(&r, t == FL_BF16 ? 16 : 13);
            if (i % 3 == 1) u = (u & 0x807fffffu) | ((100u + fl_rng_below(&r, 46)) << 23);
            if (i % 97 == 0) u = (i & 128 ? 0x7f800000u : 0xff800000u) | (uint32_t)(i & 0x7fffff); /* inf / NaN */
            src[i] = from_bits(u);
            acc0[i] = (uint16_t)(i < 65536 ? i : fl_rng_u32(&r)); /* every code as an accumulator */
        }
        /* odd lengths and offsets exercise the scalar tails */
        fl_lowp_from_f32(a, t, src, n - 5, 0, FL_LOWP_PLAIN);
        fl_lowp_from_f32(b, t, src, n - 5, 0, FL_LOWP_AVX2);
        assert_memory_equal(a, b, 2 * (size_t)(n - 5));
        for (int64_t i = 0; i < n - 5; i += 1009)
            assert_int_equal(a[i], t == FL_BF16 ? fl_bf16_from_f32(src[i]) : fl_f16_from_f32(src[i]));
        for (int64_t i = 0; i < n; i++) a[i] = b[i] = (uint16_t)(i & 0xffff); /* every code */
        fl_lowp_to_f32(w1, a + 3, t, n - 3, FL_LOWP_PLAIN);
        fl_lowp_to_f32(w2, b + 3, t, n - 3, FL_LOWP_AVX2);
        assert_memory_equal(w1, w2, sizeof(float) * (size_t)(n - 3));
        for (int64_t i = 0; i < 65536; i++) {
            float s = t == FL_BF16 ? fl_bf16_to_f32(a[i + 3]) : fl_f16_to_f32(a[i + 3]);
            assert_true(fl_f32_bits(s) == fl_f32_bits(w1[i]));
        }
        memcpy(a, acc0, 2 * n);
        memcpy(b, acc0, 2 * n);
        fl_lowp_from_f32(a, t, src, n, 1, FL_LOWP_PLAIN);
        fl_lowp_from_f32(b, t, src, n, 1, FL_LOWP_AVX2);
        assert_memory_equal(a, b, 2 * (size_t)n);
        printf("%s: plain == AVX2 bitwise on %lld values (round, widen, accumulate)\n", fl_dtype_name(t), (long long)n);
    }
    free(src), free(w1), free(w2), free(a), free(b), free(acc0);
}

/* ---- casts in a graph ----------------------------------------------------------------------- */

static void test_cast_forward_backward(void **state) {
    (void)state;
    fl_err e = {{0}};
    const fl_dtype ts[2] = {FL_BF16, FL_F16};
    for (int ti = 0; ti < 2; ti++) {
        fl_dtype t = ts[ti];
        fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        const int n = 257;
        fl_id x = fl_input(g, "x", 1, (int64_t[]){n});
        fl_id c = fl_input(g, "c", 1, (int64_t[]){n});
        fl_input_requires_grad(g, x);
        fl_id lp = fl_cast(g, x, t);
        assert_int_equal(fl_cast(g, x, t), lp); /* one cast per (node, type) */
        assert_int_equal(fl_cast(g, lp, t), lp);
        fl_id back = fl_cast(g, lp, FL_F32);
        fl_id loss = fl_sum(g, fl_mul(g, back, c), 1, 0);
        fl_graph_mark_output(g, lp);
        assert_int_equal(fl_graph_compile(g, loss, &e), 0);
        float *xv = fl_graph_value(g, x), *cv = fl_graph_value(g, c);
        fl_rng r;
        fl_rng_init(&r, 4, (uint64_t)ti);
        for (int i = 0; i < n; i++) {
            xv[i] = 1000 * fl_rng_normal(&r);
            cv[i] = fl_rng_normal(&r) * (i % 7 == 0 ? 1e-6f : 1.0f);
        }
        xv[0] = 1e30f, xv[1] = NAN, xv[2] = -0.0f, xv[3] = 3e-39f;
        assert_int_equal(fl_graph_forward(g, &e), 0);
        assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        const uint16_t *h = fl_graph_value(g, lp);
        const float *dx = fl_graph_grad(g, x);
        for (int i = 0; i < n; i++) {
            uint16_t want = t == FL_BF16 ? fl_bf16_from_f32(xv[i]) : fl_f16_from_f32(xv[i]);
            assert_int_equal(h[i], want);
            /* d loss / d x: c rounded once to the cast's type (its gradient), widened exactly */
            float gw = t == FL_BF16 ? fl_bf16_to_f32(fl_bf16_from_f32(cv[i])) : fl_f16_to_f32(fl_f16_from_f32(cv[i]));
            assert_true(fl_f32_bits(dx[i]) == fl_f32_bits(gw));
        }
        fl_graph_free(g);
        fl_pstore_free(s);
    }
}

/* Ops other than cast / linear / conv2d refuse low-precision inputs; mixed x / w types, a
 * low-precision compile target, autocast on an F64 graph and bad cast types are errors. */
static void test_builder_errors(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){2, 4});
    fl_id xb = fl_cast(g, x, FL_BF16);
    assert_true(fl_relu(g, xb) < 0);
    printf("relu(bf16): %s\n", fl_graph_error(g));
    assert_non_null(strstr(fl_graph_error(g), "BF16"));
    fl_graph_free(g);

    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    x = fl_input(g, "x", 2, (int64_t[]){2, 4});
    fl_id w = fl_parameter(g, "w", 2, (int64_t[]){3, 4}, (fl_init){FL_INIT_ONES, 0, 0}, 0);
    assert_true(fl_linear(g, fl_cast(g, x, FL_BF16), w, -1) < 0);
    printf("linear(bf16, f32): %s\n", fl_graph_error(g));
    assert_non_null(strstr(fl_graph_error(g), "same low-precision type"));
    fl_graph_free(g);

    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    x = fl_input(g, "x", 2, (int64_t[]){2, 4});
    assert_true(fl_linear_dt(g, x, fl_parameter(g, "w", 2, (int64_t[]){3, 4}, (fl_init){FL_INIT_ONES, 0, 0}, 0), -1, FL_BF16) < 0);
    printf("linear_dt(f32, f32 -> bf16): %s\n", fl_graph_error(g));
    fl_graph_free(g);

    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    x = fl_input(g, "x", 2, (int64_t[]){2, 4});
    fl_id y = fl_linear_dt(g, fl_cast(g, x, FL_BF16), fl_cast(g, fl_parameter(g, "w", 2, (int64_t[]){3, 4}, (fl_init){FL_INIT_ONES, 0, 0}, 0), FL_BF16), -1, FL_BF16);
    assert_true(y >= 0);
    assert_true(fl_graph_compile(g, y, &e) < 0);
    printf("compile(bf16 target): %s\n", e.msg);
    assert_non_null(strstr(e.msg, "BF16"));
    fl_graph_free(g);

    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    x = fl_input_labels(g, "l", 4);
    assert_true(fl_cast(g, x, FL_BF16) < 0);
    printf("cast(labels): %s\n", fl_graph_error(g));
    fl_graph_free(g);
    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    assert_true(fl_graph_set_autocast(g, FL_I32) < 0);
    fl_graph_free(g);
    fl_pstore_free(s);

    fl_pstore *s64 = fl_pstore_new(FL_F64, 1, &e);
    g = fl_graph_new(s64, FL_MODE_TRAIN, &e);
    assert_true(fl_graph_set_autocast(g, FL_BF16) < 0);
    printf("autocast(F64 graph): %s\n", fl_graph_error(g));
    fl_graph_free(g);
    g = fl_graph_new(s64, FL_MODE_TRAIN, &e);
    x = fl_input(g, "x", 1, (int64_t[]){4});
    assert_true(fl_cast(g, x, FL_BF16) < 0);
    fl_graph_free(g);
    fl_pstore_free(s64);
}

/* ---- per-op bounds ---------------------------------------------------------------------------- */

static double nrm(const float *a, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return sqrt(s);
}
static double dnrm(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s);
}
static float rt(float v, fl_dtype t) { return t == FL_BF16 ? fl_bf16_to_f32(fl_bf16_from_f32(v)) : fl_f16_to_f32(fl_f16_from_f32(v)); }
static double unit_roundoff(fl_dtype t) { return t == FL_BF16 ? ldexp(1, -8) : ldexp(1, -11); }

typedef struct opcase {
    const char *name;
    int conv;                 /* 0 linear */
    int64_t N, H, W, C, O;    /* linear: x [N, C], w [O, C] */
    int k, stride, dil, groups;
    fl_dtype out;             /* output type of the low-precision op */
} opcase;

/* One op in three graphs: A low precision (casts of float32 inputs / parameters), B float32 on
 * the same values, C float32 on the pre-rounded values. Forward, then backward from a seed dY. */
typedef struct oprun {
    int64_t nx, nw, ny, nb;
    float *y, *dx, *dw, *db; /* float32 views of the results */
} oprun;

static fl_id build_op(fl_graph *g, const opcase *c, fl_dtype lp, fl_id *x) {
    int64_t cin = c->conv ? c->C / c->groups : c->C;
    *x = c->conv ? fl_input(g, "x", 4, (int64_t[]){c->N, c->H, c->W, c->C}) : fl_input(g, "x", 2, (int64_t[]){c->N, c->C});
    fl_input_requires_grad(g, *x);
    fl_id w = c->conv ? fl_parameter(g, "w", 4, (int64_t[]){c->O, cin, c->k, c->k}, (fl_init){FL_INIT_NORMAL, 0, 1}, 0)
                      : fl_parameter(g, "w", 2, (int64_t[]){c->O, c->C}, (fl_init){FL_INIT_NORMAL, 0, 1}, 0);
    fl_id b = fl_parameter(g, "b", 1, &c->O, (fl_init){FL_INIT_NORMAL, 0, 1}, 0);
    fl_id xi = *x;
    fl_dtype out = FL_F32;
    if (lp != FL_F32) {
        xi = fl_cast(g, xi, lp);
        w = fl_cast(g, w, lp);
        out = c->out;
    }
    int d = c->dil * (c->k - 1) / 2, pad[4] = {d, d, d, d};
    fl_id y = c->conv ? fl_conv2d_dt(g, xi, w, b, c->stride, c->dil, c->groups, pad, out) : fl_linear_dt(g, xi, w, b, out);
    return out == FL_F32 ? y : fl_cast(g, y, FL_F32);
}

/* mode 0: low precision lp; 1: float32; 2: float32 on inputs pre-rounded to lp */
static void run_op(const opcase *c, fl_dtype lp, int mode, const float *x0, const float *w0, const float *b0,
                   const float *dy, oprun *o) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x;
    fl_id y = build_op(g, c, mode == 0 ? lp : FL_F32, &x);
    if (fl_graph_compile(g, y, &e) < 0) printf("%s: %s\n", c->name, e.msg);
    assert_true(fl_graph_error(g)[0] == '\0');
    o->nx = fl_graph_numel(g, x);
    o->ny = fl_graph_numel(g, y);
    size_t nw = 0, nb = 0;
    float *w = fl_pstore_data(s, "w", &nw), *b = fl_pstore_data(s, "b", &nb);
    o->nw = (int64_t)nw, o->nb = (int64_t)nb;
    float *xv = fl_graph_value(g, x);
    for (int64_t i = 0; i < o->nx; i++) xv[i] = mode == 2 ? rt(x0[i], lp) : x0[i];
    for (int64_t i = 0; i < o->nw; i++) w[i] = mode == 2 ? rt(w0[i], lp) : w0[i];
    memcpy(b, b0, sizeof(float) * nb);
    fl_pstore_zero_grad(s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, dy, &e), 0);
    o->y = malloc(sizeof(float) * o->ny), o->dx = malloc(sizeof(float) * o->nx);
    o->dw = malloc(sizeof(float) * nw), o->db = malloc(sizeof(float) * nb);
    memcpy(o->y, fl_graph_value(g, y), sizeof(float) * o->ny);
    memcpy(o->dx, fl_graph_grad(g, x), sizeof(float) * o->nx);
    memcpy(o->dw, fl_pstore_grad(s, "w"), sizeof(float) * nw);
    memcpy(o->db, fl_pstore_grad(s, "b"), sizeof(float) * nb);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void free_run(oprun *o) { free(o->y), free(o->dx), free(o->dw), free(o->db); }

/* worst measured error / bound over every case, per quantity (printed; all must be <= 1) */
static void check_op(const opcase *c, fl_dtype lp, double *worst) {
    int64_t cin = c->conv ? c->C / c->groups : c->C;
    int64_t nx = c->conv ? c->N * c->H * c->W * c->C : c->N * c->C;
    int64_t nw = c->conv ? c->O * cin * c->k * c->k : c->O * c->C;
    int64_t ny_max = c->conv ? c->N * c->H * c->W * c->O : c->N * c->O;
    float *x0 = malloc(sizeof(float) * nx), *w0 = malloc(sizeof(float) * nw), *b0 = malloc(sizeof(float) * c->O),
          *dy = malloc(sizeof(float) * ny_max);
    fl_rng r;
    fl_rng_init(&r, 7, (uint64_t)c->k * 131 + (uint64_t)c->O);
    for (int64_t i = 0; i < nx; i++) x0[i] = fl_rng_normal(&r);
    for (int64_t i = 0; i < nw; i++) w0[i] = fl_rng_normal(&r) * 0.3f;
    for (int64_t i = 0; i < c->O; i++) b0[i] = fl_rng_normal(&r);
    for (int64_t i = 0; i < ny_max; i++) dy[i] = fl_rng_normal(&r);
    oprun A, B, C;
    int lpout = c->out != FL_F32;
    /* with a low-precision output, A's backward sees dY rounded to it (the cast's gradient) */
    float *dyc = malloc(sizeof(float) * ny_max);
    for (int64_t i = 0; i < ny_max; i++) dyc[i] = lpout ? rt(dy[i], c->out) : dy[i];
    run_op(c, lp, 0, x0, w0, b0, dy, &A);
    run_op(c, lp, 1, x0, w0, b0, dy, &B);
    run_op(c, lp, 2, x0, w0, b0, dyc, &C);
    /* bitwise: A is the float32 op on the rounded inputs, gradients of x and w rounded once */
    for (int64_t i = 0; i < A.ny; i++) assert_true(fl_f32_bits(A.y[i]) == fl_f32_bits(lpout ? rt(C.y[i], c->out) : C.y[i]));
    for (int64_t i = 0; i < A.nx; i++) assert_true(fl_f32_bits(A.dx[i]) == fl_f32_bits(rt(C.dx[i], lp)));
    for (int64_t i = 0; i < A.nw; i++) assert_true(fl_f32_bits(A.dw[i]) == fl_f32_bits(rt(C.dw[i], lp)));
    assert_memory_equal(A.db, C.db, sizeof(float) * A.nb);
    /* normwise against the float32 op on the unrounded inputs */
    double u = unit_roundoff(lp), uo = lpout ? unit_roundoff(c->out) : 0;
    double T = c->conv ? c->k : 1; /* sqrt(KH KW) */
    /* float32 accumulation: g_k per GEMM (k = the reduction length), plus the bias add */
#define GAMMA(k) ((double)(k) * ldexp(1, -24) / (1 - (double)(k) * ldexp(1, -24)))
    double gy = GAMMA(c->conv ? cin * c->k * c->k : c->C);
    double gx = GAMMA(c->conv ? c->O / c->groups * c->k * c->k : c->O);
    double gw = GAMMA(c->conv ? A.ny / c->O : c->N);
#undef GAMMA
    double u32 = ldexp(1, -24);
    /* dY seen by the backward: the cast of y rounds it when the output is low precision */
    double n0 = nrm(dy, A.ny), ndy = n0 * (1 + uo);
    double nX = nrm(x0, nx), nW = nrm(w0, nw), nY = nrm(B.y, B.ny);
    double ey = (2 * u + u * u) * T * nX * nW + 2 * gy * T * nX * nW + 2 * u32 * nY;
    double by = ey + uo * (nY + ey);
    double bx = (2 * u + u * u) * T * ndy * nW + 2 * gx * T * ndy * nW + uo * T * n0 * nW;
    double bw = (2 * u + u * u) * T * ndy * nX + 2 * gw * T * ndy * nX + uo * T * n0 * nX;
    double ry = dnrm(A.y, B.y, A.ny) / by, rx = dnrm(A.dx, B.dx, A.nx) / bx, rw = dnrm(A.dw, B.dw, A.nw) / bw;
    printf("  %-22s %s%s: ||dY||/bound %.3f  ||ddX||/bound %.3f  ||ddW||/bound %.3f  (rel. err Y %.2e = %.2f u)\n", c->name,
           fl_dtype_name(lp), lpout ? "->lp" : "", ry, rx, rw, dnrm(A.y, B.y, A.ny) / nY, dnrm(A.y, B.y, A.ny) / nY / u);
    if (ry > worst[0]) worst[0] = ry;
    if (rx > worst[1]) worst[1] = rx;
    if (rw > worst[2]) worst[2] = rw;
    assert_true(ry <= 1 && rx <= 1 && rw <= 1);
    free_run(&A), free_run(&B), free_run(&C);
    free(x0), free(w0), free(b0), free(dy), free(dyc);
}

static void test_op_bounds(void **state) {
    (void)state;
    const opcase cases[] = {
        {"linear 64x96->40", 0, 64, 0, 0, 96, 40, 1, 1, 1, 1, FL_F32},
        {"linear, lp output", 0, 64, 0, 0, 96, 40, 1, 1, 1, 1, FL_BF16},
        {"conv 3x3", 1, 2, 9, 9, 16, 24, 3, 1, 1, 1, FL_F32},
        {"conv 1x1", 1, 2, 8, 8, 32, 16, 1, 1, 1, 1, FL_F32},
        {"conv 3x3 depthwise", 1, 2, 9, 9, 24, 24, 3, 1, 1, 24, FL_F32},
        {"conv 5x5 depthwise s2", 1, 2, 11, 11, 16, 16, 5, 2, 1, 16, FL_F32},
        {"conv 3x3 dilation 2", 1, 2, 11, 11, 16, 12, 3, 1, 2, 1, FL_F32},
        {"conv 3x3 stride 2", 1, 2, 10, 10, 16, 20, 3, 2, 1, 1, FL_F32},
        {"conv 3x3 groups 4", 1, 2, 9, 9, 16, 16, 3, 1, 1, 4, FL_F32},
        {"conv 3x3, lp output", 1, 2, 9, 9, 16, 24, 3, 1, 1, 1, FL_BF16},
    };
    const fl_dtype ts[2] = {FL_BF16, FL_F16};
    for (int ti = 0; ti < 2; ti++) {
        double worst[3] = {0, 0, 0};
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            opcase c = cases[k];
            if (c.out != FL_F32) c.out = ts[ti];
            check_op(&c, ts[ti], worst);
        }
        printf("%s: worst measured / stated bound: Y %.3f, dX %.3f, dW %.3f\n", fl_dtype_name(ts[ti]), worst[0], worst[1], worst[2]);
    }
}

/* ---- autocast ------------------------------------------------------------------------------- */

static fl_id small_net(fl_graph *g, fl_id x) {
    fl_id h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, x, "stem", 16, 3, 2, 1, 1, FL_PAD_AUTO, 0), "bn1", 1e-5, 0.1));
    h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, h, "dw", 16, 3, 1, 1, 16, FL_PAD_AUTO, 0), "bn2", 1e-5, 0.1));
    h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, h, "pw", 24, 1, 1, 1, 1, 0, 0), "bn3", 1e-5, 0.1));
    h = fl_reshape(g, fl_global_avgpool(g, h), 2, (int64_t[]){8, 24});
    return fl_linear_layer(g, h, "fc", 10, 1);
}

/* Loss and parameter gradients of a small conv net under autocast vs float32 (same store
 * contents): the parameters stay F32 master weights, one cast per weight, and the normwise
 * relative gradient error of every weight is within 4u, bf16 and f16 alike (the measured worst is
 * printed; a single op's bound is 2u sqrt(KH KW) relative to ||dY|| ||X||, and three layers of
 * rounded activations and gradients compound it). */
static void test_autocast_grads(void **state) {
    (void)state;
    fl_err e = {{0}};
    const fl_dtype ts[2] = {FL_BF16, FL_F16};
    float *ref_grad[32] = {0};
    double ref_loss = 0;
    for (int pass = 0; pass < 3; pass++) {
        fl_dtype t = pass == 0 ? FL_F32 : ts[pass - 1];
        fl_pstore *s = fl_pstore_new(FL_F32, 9, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        assert_int_equal(fl_graph_set_autocast(g, t), 0);
        assert_int_equal(fl_graph_autocast(g), t);
        fl_id x = fl_input(g, "x", 4, (int64_t[]){8, 16, 16, 3});
        fl_id lab = fl_input_labels(g, "y", 8);
        fl_id loss = fl_softmax_ce(g, small_net(g, x), lab, 0.0);
        assert_int_equal(fl_graph_compile(g, loss, &e), 0);
        fl_rng r;
        fl_rng_init(&r, 10, 0);
        float *xv = fl_graph_value(g, x);
        for (int i = 0; i < 8 * 16 * 16 * 3; i++) xv[i] = fl_rng_normal(&r);
        int32_t *lv = fl_graph_value(g, lab);
        for (int i = 0; i < 8; i++) lv[i] = i % 10;
        assert_int_equal(fl_graph_forward(g, &e), 0);
        assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        double l = *(float *)fl_graph_value(g, loss);
        fl_param_list pl;
        assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
        if (pass == 0) {
            ref_loss = l;
        } else {
            double u = unit_roundoff(t), worst = 0;
            printf("%s autocast: loss %.6f vs %.6f (rel %.2e)\n", fl_dtype_name(t), l, ref_loss, fabs(l - ref_loss) / ref_loss);
            assert_true(fabs(l - ref_loss) <= 4 * u * ref_loss);
            for (size_t k = 0; k < pl.n && k < 32; k++) {
                if (!pl.v[k].grad || strstr(pl.v[k].name, "weight") == NULL || strncmp(pl.v[k].name, "bn", 2) == 0) continue;
                double rel = dnrm(pl.v[k].grad, ref_grad[k], (int64_t)pl.v[k].numel) / nrm(ref_grad[k], (int64_t)pl.v[k].numel);
                printf("  %-12s grad rel. error %.2e = %.2f u\n", pl.v[k].name, rel, rel / u);
                if (rel > worst) worst = rel;
            }
            printf("  worst %.2f u (stated bound 4 u)\n", worst / u);
            assert_true(worst <= 4 * u);
        }
        for (size_t k = 0; k < pl.n && k < 32; k++) {
            if (!pl.v[k].grad) continue;
            if (pass == 0) {
                ref_grad[k] = malloc(sizeof(float) * pl.v[k].numel);
                memcpy(ref_grad[k], pl.v[k].grad, sizeof(float) * pl.v[k].numel);
            }
        }
        fl_graph_free(g);
        fl_pstore_free(s);
    }
    for (int k = 0; k < 32; k++) free(ref_grad[k]);
}

/* ---- loss scaling ------------------------------------------------------------------------- */

/* GradScaler's rule: growth after `interval` finite steps in a row, backoff and a skipped step
 * on a non-finite one (a static scaler only skips). */
static void test_loss_scaler_rule(void **state) {
    (void)state;
    fl_loss_scaler ls = fl_loss_scaler_dynamic(0);
    assert_true(ls.scale == 65536.0f && ls.interval == 2000 && ls.growth == 2.0f && ls.backoff == 0.5f);
    ls.interval = 3;
    const int inf[] = {0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0};
    const float want[] = {65536, 65536, 131072, 131072, 65536, 65536, 65536, 32768, 16384, 16384, 16384, 32768, 32768};
    for (size_t i = 0; i < sizeof inf / sizeof inf[0]; i++) {
        assert_int_equal(fl_loss_scaler_update(&ls, inf[i]), !inf[i]);
        assert_true(ls.scale == want[i]);
    }
    assert_int_equal(ls.skipped, 3);
    fl_loss_scaler st = fl_loss_scaler_static(1024);
    for (int i = 0; i < 5; i++) assert_int_equal(fl_loss_scaler_update(&st, i == 2), i != 2);
    assert_true(st.scale == 1024.0f && st.skipped == 1);
    /* unscale divides and detects inf / NaN */
    float g1[3] = {2048, -512, 1}, g2[2] = {1, INFINITY};
    fl_param pv[2] = {{.name = "a", .grad = g1, .numel = 3}, {.name = "b", .grad = g2, .numel = 2}};
    fl_param_list pl = {pv, 1};
    assert_int_equal(fl_loss_scaler_unscale(&st, &pl), 0);
    assert_true(g1[0] == 2.0f && g1[1] == -0.5f && g1[2] == 1.0f / 1024);
    pl.n = 2;
    assert_int_equal(fl_loss_scaler_unscale(&st, &pl), 1);
    g2[1] = NAN;
    pl.v = pv + 1, pl.n = 1;
    assert_int_equal(fl_loss_scaler_unscale(&st, &pl), 1);
}

/* F16 autocast with a tiny loss: without scaling the weight gradient underflows in F16 (most of
 * it flushes to zero); with the scaler it matches float32 within the op's bound; a scale too
 * large overflows, the step is skipped and the dynamic scaler backs off until it fits. */
static double f16_grad_err(float seed_scale, float loss_mult, fl_loss_scaler *ls, int *steps_skipped) {
    fl_err e = {{0}};
    double rel = -1;
    float *ref = NULL;
    *steps_skipped = 0;
    for (int pass = 0; pass < 2; pass++) {
        fl_pstore *s = fl_pstore_new(FL_F32, 3, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        if (pass) fl_graph_set_autocast(g, FL_F16);
        fl_id x = fl_input(g, "x", 2, (int64_t[]){32, 48});
        fl_id h = fl_linear_layer(g, x, "fc1", 64, 1);
        fl_id y = fl_linear_layer(g, fl_silu(g, h), "fc2", 8, 1);
        fl_id loss = fl_scale(g, fl_mean(g, fl_mul(g, y, y), 3, 0), loss_mult, 0);
        assert_int_equal(fl_graph_compile(g, loss, &e), 0);
        fl_rng r;
        fl_rng_init(&r, 5, 0);
        float *xv = fl_graph_value(g, x);
        for (int i = 0; i < 32 * 48; i++) xv[i] = fl_rng_normal(&r);
        fl_param_list pl;
        assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
        size_t nw = 0;
        float *gw = NULL;
        for (int tries = 0; tries < 64; tries++) {
            fl_pstore_zero_grad(s);
            assert_int_equal(fl_graph_forward(g, &e), 0);
            float seed = pass && ls ? fl_loss_scaler_seed(ls) : seed_scale;
            assert_int_equal(fl_graph_backward(g, &seed, &e), 0);
            gw = fl_pstore_grad(s, "fc1.weight");
            fl_pstore_data(s, "fc1.weight", &nw);
            if (!pass || !ls) {
                if (pass) for (size_t i = 0; i < nw; i++) gw[i] /= seed_scale;
                break;
            }
            int inf = fl_loss_scaler_unscale(ls, &pl);
            if (fl_loss_scaler_update(ls, inf)) break;
            ++*steps_skipped;
        }
        if (!pass) {
            ref = malloc(sizeof(float) * nw);
            memcpy(ref, gw, sizeof(float) * nw);
        } else {
            rel = dnrm(gw, ref, (int64_t)nw) / nrm(ref, (int64_t)nw);
        }
        fl_graph_free(g);
        fl_pstore_free(s);
    }
    free(ref);
    return rel;
}

static void test_loss_scaler_f16(void **state) {
    (void)state;
    int sk = 0;
    const float tiny = 1e-7f; /* loss * 1e-7: weight gradients around 1e-8, below f16's 6e-8 */
    double none = f16_grad_err(1, tiny, NULL, &sk);
    fl_loss_scaler st = fl_loss_scaler_static(65536.0f * 256);
    double scaled = f16_grad_err(1, tiny, &st, &sk);
    fl_loss_scaler dyn = fl_loss_scaler_dynamic(ldexpf(1, 60));
    double dynamic = f16_grad_err(1, tiny, &dyn, &sk);
    printf("F16, loss x 1e-7: fc1.weight grad rel. error unscaled %.3f, static 2^24 %.2e, dynamic %.2e "
           "(from 2^60: %d steps skipped, scale now 2^%d)\n", none, scaled, dynamic, sk, (int)log2(dyn.scale));
    assert_true(none > 0.5);
    assert_true(scaled < 8 * ldexp(1, -11));
    assert_true(dynamic < 8 * ldexp(1, -11));
    assert_true(sk > 0 && dyn.skipped == sk && dyn.scale == ldexpf(1, 60 - sk));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_edges),
        cmocka_unit_test(test_f16_edges),
        cmocka_unit_test(test_paths_bitwise),
        cmocka_unit_test(test_cast_forward_backward),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_op_bounds),
        cmocka_unit_test(test_autocast_grads),
        cmocka_unit_test(test_loss_scaler_rule),
        cmocka_unit_test(test_loss_scaler_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
