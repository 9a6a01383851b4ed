#include "runtime/rng.h"

#include <math.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void fl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void fl_rng_init(fl_rng *r, uint64_t seed, uint64_t stream) {
    memset(r, 0, sizeof *r);
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[2] = (uint32_t)stream;
    r->ctr[3] = (uint32_t)(stream >> 32);
    r->used = 4;
}

uint32_t fl_rng_u32(fl_rng *r) {
    if (r->used == 4) {
        fl_philox4x32(r->ctr, r->key, r->buf);
        if (++r->ctr[0] == 0) ++r->ctr[1];
        r->used = 0;
    }
    return r->buf[r->used++];
}

uint64_t fl_rng_u64(fl_rng *r) {
    uint64_t hi = fl_rng_u32(r);
    return (hi << 32) | fl_rng_u32(r);
}

float fl_rng_uniform(fl_rng *r) { return (float)(fl_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float fl_rng_range(fl_rng *r, float lo, float hi) { return lo + (hi - lo) * fl_rng_uniform(r); }

uint32_t fl_rng_below(fl_rng *r, uint32_t n) {
    /* Lemire's method with rejection: unbiased. */
    uint64_t m = (uint64_t)fl_rng_u32(r) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) {
            m = (uint64_t)fl_rng_u32(r) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float fl_rng_normal(fl_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    float u1 = fl_rng_uniform(r), u2 = fl_rng_uniform(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    double mag = sqrt(-2.0 * log((double)u1));
    r->spare = (float)(mag * sin(2.0 * M_PI * u2));
    r->has_spare = 1;
    return (float)(mag * cos(2.0 * M_PI * u2));
}
