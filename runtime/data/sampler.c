/* Epoch orders: sequential, a per-epoch permutation, or draws balanced by individual. Each is a
 * pure function of (seed, epoch), from its own RNG stream. */
#include "runtime/data/loader.h"

#include <math.h>
#include <stdlib.h>

/* Key for the sampler streams: the seed, mixed so it never equals an augmentation key. */
static uint64_t sampler_key(uint64_t seed) { return seed ^ UINT64_C(0x5A3C0FFEE1234567); }

int fl_sampler_epoch(fl_sampler_kind kind, const fl_loader_item *items, size_t n, float power,
                     uint64_t seed, int64_t epoch, int64_t *out, fl_err *e) {
    if (n > UINT32_MAX) return fl_errf(e, "sampler: %zu items is more than 2^32", n);
    fl_rng r;
    fl_rng_init(&r, sampler_key(seed), (uint64_t)epoch);
    if (kind == FL_SAMPLER_SEQUENTIAL || kind == FL_SAMPLER_SHUFFLE) {
        for (size_t i = 0; i < n; i++) out[i] = (int64_t)i;
        if (kind == FL_SAMPLER_SHUFFLE)
            for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
                size_t j = fl_rng_below(&r, (uint32_t)i);
                int64_t t = out[i - 1];
                out[i - 1] = out[j], out[j] = t;
            }
        return 0;
    }
    if (kind != FL_SAMPLER_BALANCED) return fl_errf(e, "sampler: unknown kind %d", (int)kind);
    int32_t maxl = -1;
    for (size_t i = 0; i < n; i++) maxl = items[i].label > maxl ? items[i].label : maxl;
    uint32_t *count = calloc((size_t)maxl + 2, sizeof *count);
    double *cum = malloc(sizeof *cum * (n ? n : 1));
    if (!count || !cum) {
        free(count), free(cum);
        return fl_errf(e, "sampler: out of memory for %zu items", n);
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].label >= 0) count[items[i].label]++;
    double acc = 0;
    for (size_t i = 0; i < n; i++) { /* unlabelled items count as their own individual */
        uint32_t c = items[i].label >= 0 ? count[items[i].label] : 1;
        acc += pow((double)c, -(double)power);
        cum[i] = acc;
    }
    for (size_t k = 0; k < n; k++) {
        double u = (double)fl_rng_u64(&r) * 0x1p-64 * acc;
        size_t lo = 0, hi = n - 1;
        while (lo < hi) { /* first i with cum[i] > u */
            size_t mid = lo + (hi - lo) / 2;
            if (cum[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        out[k] = (int64_t)lo;
    }
    free(count), free(cum);
    return 0;
}
