/* A vectorizable float exp for the element-wise kernels (SiLU, sigmoid): glibc's expf is a call
 * the compiler cannot vectorize without -ffast-math. Cody-Waite range reduction x = n ln2 + r,
 * |r| <= ln2/2, and a degree-7 Taylor polynomial (truncation < 6e-9 relative); about 2 ulp over
 * the clamped range (tests/unit/test_runtime_graph.c checks it against exp in double).
 *
 * Inputs are clamped to [-87.3, 88.37] so the result stays finite and normal; NaN stays NaN.
 * The clamps and the NaN test work on the bit pattern (integer compares), because float
 * compares may trap and GCC will not if-convert them into vector code without -fno-trapping-math.
 * For negative floats the signed bit pattern grows as the value falls, hence the reversed test. */
#ifndef FLUKE_OPS_FASTEXP_H
#define FLUKE_OPS_FASTEXP_H

#include <stdint.h>
#include <string.h>

/* a where c (0 or 1), else b: mask arithmetic, which always vectorizes */
static inline int32_t fl_sel_i32(int32_t c, int32_t a, int32_t b) {
    int32_t m = -c;
    return (m & a) | (~m & b);
}

static inline float fl_fast_expf(float x) {
    const int32_t HI = 0x42b0bd71;          /* 88.37f: n = 127 at most (2^128 overflows) */
    const int32_t LO = (int32_t)0xC2AE999Au; /* -87.3f */
    int32_t xi;
    memcpy(&xi, &x, sizeof xi);
    int32_t is_nan = (xi & 0x7fffffff) > 0x7f800000;
    int32_t ci = xi;
    ci = fl_sel_i32((xi >= 0) & (xi > HI), HI, ci); /* x > 88.37, +inf */
    ci = fl_sel_i32((xi < 0) & (xi > LO), LO, ci);  /* x < -87.3, -inf */
    float c;
    memcpy(&c, &ci, sizeof c);
    float t = c * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23 trick) */
    float r = c - n * 0.693145751953125f;       /* ln2 split: n*hi is exact */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float res = p * scale;
    int32_t ri;
    memcpy(&ri, &res, sizeof ri);
    ri = fl_sel_i32(is_nan, xi, ri);
    memcpy(&res, &ri, sizeof res);
    return res;
}

#endif
