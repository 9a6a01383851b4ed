/* Bulk bf16 / f16 <-> float32 conversions (see lowp.h): a plain loop and an AVX2 (+F16C) loop
 * that computes the same integer function of each element. The AVX2 code is compiled for its
 * own functions only (target attributes), so the rest of the build stays baseline x86-64. */
#include "runtime/cpu/lowp.h"

#if defined(__x86_64__) || defined(__i386__)
#define FL_LOWP_X86 1
#include <immintrin.h>
#else
#define FL_LOWP_X86 0
#endif

int fl_lowp_avx2_available(fl_dtype t) {
#if FL_LOWP_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return 0;
    return t == FL_F16 ? __builtin_cpu_supports("f16c") != 0 : t == FL_BF16;
#else
    (void)t;
    return 0;
#endif
}

/* ---- plain ---------------------------------------------------------------------------------- */

static void to_f32_plain(float *dst, const uint16_t *src, fl_dtype t, int64_t n) {
    if (t == FL_BF16) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = fl_bf16_to_f32(src[i]);
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = fl_f16_to_f32(src[i]);
    }
}

/* An accumulated sum that is NaN becomes the positive default NaN: which operand's payload a
 * NaN + NaN keeps depends on instruction operand order, which the compiler may swap. */
static inline float canon(float v) { return v != v ? fl_f32_from_bits(0x7fc00000u) : v; }

static void from_f32_plain(uint16_t *dst, fl_dtype t, const float *src, int64_t n, int acc) {
    if (t == FL_BF16) {
        if (acc) {
#pragma omp simd
            for (int64_t i = 0; i < n; i++) dst[i] = fl_bf16_from_f32(canon(fl_bf16_to_f32(dst[i]) + src[i]));
        } else {
#pragma omp simd
            for (int64_t i = 0; i < n; i++) dst[i] = fl_bf16_from_f32(src[i]);
        }
    } else {
        if (acc)
            for (int64_t i = 0; i < n; i++) dst[i] = fl_f16_from_f32(canon(fl_f16_to_f32(dst[i]) + src[i]));
        else
            for (int64_t i = 0; i < n; i++) dst[i] = fl_f16_from_f32(src[i]);
    }
}

/* ---- AVX2 ----------------------------------------------------------------------------------- */

#if FL_LOWP_X86
#define AVX2 __attribute__((target("avx2,f16c")))

AVX2 static inline __m256 bf16x8_to_f32(const uint16_t *p) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

/* fl_bf16_from_f32 in 8 lanes; the 16-bit results sit in the low halves of the 32-bit lanes. */
AVX2 static inline __m256i f32x8_to_bf16_lanes(__m256 f) {
    __m256i x = _mm256_castps_si256(f);
    __m256i hi = _mm256_srli_epi32(x, 16);
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)),
                                 _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    r = _mm256_srli_epi32(r, 16);
    __m256i a = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

AVX2 static inline void store_bf16x8(uint16_t *p, __m256i lanes) {
    __m256i packed = _mm256_packus_epi32(lanes, lanes); /* values <= 0xffff: no saturation */
    packed = _mm256_permute4x64_epi64(packed, 0x08);    /* lanes 0 and 2 -> the low 128 bits */
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(packed));
}

AVX2 static void to_f32_avx2(float *dst, const uint16_t *src, fl_dtype t, int64_t n) {
    int64_t i = 0;
    if (t == FL_BF16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_to_f32(src + i));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    to_f32_plain(dst + i, src + i, t, n - i);
}

AVX2 static void from_f32_avx2(uint16_t *dst, fl_dtype t, const float *src, int64_t n, int acc) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        if (acc) {
            __m256 d = t == FL_BF16 ? bf16x8_to_f32(dst + i) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dst + i)));
            v = _mm256_add_ps(d, v);
            v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        if (t == FL_BF16) {
            store_bf16x8(dst + i, f32x8_to_bf16_lanes(v));
        } else {
            _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
    }
    from_f32_plain(dst + i, t, src + i, n - i, acc);
}
#undef AVX2
#endif

/* ---- entry points: blocks of BLK elements, in parallel for large arrays --------------------- */

#define BLK 8192

static int use_avx2(fl_dtype t, fl_lowp_path path) {
    return path != FL_LOWP_PLAIN && fl_lowp_avx2_available(t);
}

void fl_lowp_to_f32(float *dst, const void *src, fl_dtype t, int64_t n, fl_lowp_path path) {
    if (!fl_dtype_is_lowp(t)) {
        if (n > 0) memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int avx = use_avx2(t, path);
    int64_t nb = (n + BLK - 1) / BLK;
#pragma omp parallel for if (n > 4 * BLK)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * BLK, len = n - i0 < BLK ? n - i0 : BLK;
        const uint16_t *s = (const uint16_t *)src + i0;
#if FL_LOWP_X86
        if (avx) {
            to_f32_avx2(dst + i0, s, t, len);
            continue;
        }
#endif
        to_f32_plain(dst + i0, s, t, len);
    }
    (void)avx;
}

void fl_lowp_from_f32(void *dst, fl_dtype t, const float *src, int64_t n, int accumulate,
                      fl_lowp_path path) {
    if (!fl_dtype_is_lowp(t)) {
        float *d = dst;
        if (!accumulate) {
            if (n > 0) memcpy(d, src, (size_t)n * sizeof(float));
        } else {
            for (int64_t i = 0; i < n; i++) d[i] += src[i];
        }
        return;
    }
    int avx = use_avx2(t, path);
    int64_t nb = (n + BLK - 1) / BLK;
#pragma omp parallel for if (n > 4 * BLK)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * BLK, len = n - i0 < BLK ? n - i0 : BLK;
        uint16_t *d = (uint16_t *)dst + i0;
#if FL_LOWP_X86
        if (avx) {
            from_f32_avx2(d, t, src + i0, len, accumulate);
            continue;
        }
#endif
        from_f32_plain(d, t, src + i0, len, accumulate);
    }
    (void)avx;
}
