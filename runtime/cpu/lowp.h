/* Low-precision storage formats: bfloat16 and IEEE binary16 <-> float32.
 *
 * Rounding: float32 -> bf16 / f16 rounds to nearest, ties to even, on the bit pattern (no
 * dependence on the FPU's rounding mode or on FTZ/DAZ). A NaN stays a NaN of the same sign,
 * quieted, its payload truncated (what the F16C instruction does). Overflow follows IEEE 754
 * round-to-nearest: a value at or past max_finite + ulp/2 becomes inf (bf16: max 0x7f7f =
 * 3.3895e38; f16: max 0x7bff = 65504, 65520 and up -> inf). Subnormals round like any other
 * value (bf16 keeps float32's exponent range, so its subnormals are float32's, truncated; f16's
 * smallest subnormal is 2^-24, and 2^-25 ties to 0). bf16 / f16 -> float32 is exact.
 *
 * Bulk conversions come in two paths, chosen per call: a plain C loop that runs anywhere, and an
 * x86 AVX2 (+F16C for f16) path picked at run time when the CPU has it. Both compute the same
 * integer function of each element (the AVX2 code is the plain code in 8 lanes), so their
 * results are bitwise identical; tests/unit/test_runtime_bf16.c checks that over every f16
 * value and millions of float32 patterns. Elements are independent, so threads never change a
 * result either. */
#ifndef FLUKE_CPU_LOWP_H
#define FLUKE_CPU_LOWP_H

#include <stdint.h>
#include <string.h>

#include "runtime/tensor.h"

typedef enum fl_lowp_path {
    FL_LOWP_AUTO = 0, /* AVX2 when the CPU has it (and F16C for f16), else plain */
    FL_LOWP_PLAIN = 1,
    FL_LOWP_AVX2 = 2, /* falls back to plain where the CPU lacks it */
} fl_lowp_path;

/* 1 when this CPU runs the AVX2 path for dtype t (FL_BF16 needs AVX2, FL_F16 AVX2 + F16C). */
int fl_lowp_avx2_available(fl_dtype t);

static inline uint32_t fl_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float fl_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t fl_bf16_from_f32(float f) {
    uint32_t x = fl_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
static inline float fl_bf16_to_f32(uint16_t h) { return fl_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t fl_f16_from_f32(float f) {
    uint32_t x = fl_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 2^16: inf */
    if (a >= 0x38800000u) {                                 /* >= 2^-14: normal (may round to inf) */
        a += 0xc8000fffu + ((a >> 13) & 1u);                 /* rebias exponent (-112 << 23) + RNE */
        return (uint16_t)(sign | (a >> 13));
    }
    uint32_t e = a >> 23;
    if (e < 102) return (uint16_t)sign; /* below 2^-25: rounds to zero */
    uint32_t m = (a & 0x7fffffu) | 0x800000u, s = 126 - e; /* value = m 2^(e-150) = (m >> s) 2^-24 */
    uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    q += rem > half || (rem == half && (q & 1u));
    return (uint16_t)(sign | q);
}
static inline float fl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 31) return fl_f32_from_bits(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
    if (e == 0) {
        if (!m) return fl_f32_from_bits(sign);
        int sh = 0;
        while (!(m & 0x400u)) m <<= 1, sh++;
        return fl_f32_from_bits(sign | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13));
    }
    return fl_f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

/* One element of dtype t (F32, BF16, F16) at p[i] as float32, and a float32 stored into it. */
static inline float fl_lowp_get(const void *p, fl_dtype t, int64_t i) {
    if (t == FL_BF16) return fl_bf16_to_f32(((const uint16_t *)p)[i]);
    if (t == FL_F16) return fl_f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* dst[0..n) = float32 of src (dtype t: BF16, F16 or F32 = a copy). */
void fl_lowp_to_f32(float *dst, const void *src, fl_dtype t, int64_t n, fl_lowp_path path);
/* dst (dtype t) = round(src), or with accumulate dst = round(float32(dst) + src): one rounding
 * per element, the sum formed in float32 (a NaN sum is stored as the positive default NaN, so
 * the paths agree even on NaN payloads). t = F32 copies / adds. */
void fl_lowp_from_f32(void *dst, fl_dtype t, const float *src, int64_t n, int accumulate,
                      fl_lowp_path path);

#endif
