/* XXH3-128 compiled for AVX2. Debian's libxxhash is built for baseline x86-64 (SSE2) and hashes
 * at a fraction of the speed of `xxhsum`, which dispatches to AVX2 at run time. This file builds
 * the same algorithm (xxhash.h in inline mode) with AVX2 enabled; hash.c calls it only when
 * the CPU has AVX2. XXH3 gives identical digests for every vector width. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/store_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__) /* clang ignores GCC's target pragma: tag every function instead */
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC target("avx2")
#endif
#define XXH_INLINE_ALL
#define XXH_VECTOR 2 /* XXH_AVX2 */
#include <xxhash.h>

int fl__have_avx2(void) {
    __builtin_cpu_init(); /* idempotent; needed if we run before libgcc's constructor */
    return __builtin_cpu_supports("avx2");
}

static void canon(XXH128_hash_t h, fl_digest *out) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out->b, c.digest, sizeof out->b);
}

void fl__xxh128_avx2(const void *data, size_t len, fl_digest *out) {
    canon(XXH3_128bits(data, len), out);
}

void *fl__xxh128_avx2_new(void) {
    XXH3_state_t *st = XXH3_createState();
    if (st) XXH3_128bits_reset(st);
    return st;
}

void fl__xxh128_avx2_update(void *st, const void *data, size_t len) {
    XXH3_128bits_update(st, data, len);
}

void fl__xxh128_avx2_digest(const void *st, fl_digest *out) {
    canon(XXH3_128bits_digest(st), out);
}

void fl__xxh128_avx2_free(void *st) { XXH3_freeState(st); }

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else /* not x86-64 GCC/Clang: the library's build is used everywhere */

int fl__have_avx2(void) { return 0; }
void fl__xxh128_avx2(const void *data, size_t len, fl_digest *out) { (void)data, (void)len, (void)out; }
void *fl__xxh128_avx2_new(void) { return NULL; }
void fl__xxh128_avx2_update(void *st, const void *data, size_t len) { (void)st, (void)data, (void)len; }
void fl__xxh128_avx2_digest(const void *st, fl_digest *out) { (void)st, (void)out; }
void fl__xxh128_avx2_free(void *st) { (void)st; }

#endif
