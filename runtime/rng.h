/* The one random-number generator: Philox4x32-10, counter-based (Salmon et al., SC'11).
 *
 * A stream is (seed, stream id); its n-th block is a pure function of (seed, stream, n), so any
 * consumer can derive an independent, reproducible stream from a stable identity (sample index,
 * epoch, layer) whatever the thread or worker count. The state is plain data: checkpoints save it
 * as bytes and resume bit-exactly. */
#ifndef FLUKE_RNG_H
#define FLUKE_RNG_H

#include <stdint.h>

typedef struct fl_rng {
    uint32_t key[2];  /* from the seed */
    uint32_t ctr[4];  /* ctr[0..1]: block counter, ctr[2..3]: stream id */
    uint32_t buf[4];  /* current block */
    uint32_t used;    /* words of buf consumed (4 = empty) */
    uint32_t has_spare;
    float spare;      /* second Box-Muller normal */
} fl_rng;

/* The raw bijection: out = Philox4x32-10(ctr, key). */
void fl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

void fl_rng_init(fl_rng *r, uint64_t seed, uint64_t stream);
uint32_t fl_rng_u32(fl_rng *r);
uint64_t fl_rng_u64(fl_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float fl_rng_uniform(fl_rng *r);
/* Uniform in [lo, hi). */
float fl_rng_range(fl_rng *r, float lo, float hi);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint32_t fl_rng_below(fl_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float fl_rng_normal(fl_rng *r);

#endif
