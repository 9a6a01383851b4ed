/* Deterministic weights shared with tests/fixtures/gen_models_effnet.py: every parameter and
 * buffer is a pure function of its name (FNV-1a-32 of the name, murmur3's fmix32 of
 * h ^ (i * 0x9E3779B1), mapped to a range chosen by the name), so full-size timm models are
 * compared without storing their weights. Keep in step with det_values / det_range there. */
#ifndef FL_TEST_MODELS_EFFNET_WEIGHTS_H
#define FL_TEST_MODELS_EFFNET_WEIGHTS_H

#include <math.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/safetensors.h"

static inline uint32_t mew_fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static inline void mew_values(const char *name, size_t n, double lo, double hi, float *out) {
    uint32_t h = mew_fnv1a(name);
    for (size_t i = 0; i < n; i++) {
        uint32_t x = h ^ (uint32_t)((uint32_t)i * 0x9E3779B1u);
        x ^= x >> 16;
        x *= 0x85EBCA6Bu;
        x ^= x >> 13;
        x *= 0xC2B2AE35u;
        x ^= x >> 16;
        double u = (double)x / 4294967296.0;
        out[i] = (float)(lo + (hi - lo) * u);
    }
}

static inline int mew_ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* The range of a parameter by name and shape (det_range in the script). */
static inline void mew_range(const fl_param *p, double *lo, double *hi) {
    const char *last = strrchr(p->name, '.');
    last = last ? last + 1 : p->name;
    if (strcmp(last, "running_var") == 0) { *lo = 0.5; *hi = 1.5; return; }
    if (strcmp(last, "running_mean") == 0) { *lo = -0.1; *hi = 0.1; return; }
    if (p->ndim == 1) {
        /* owner = the path component before the last one */
        char owner[256] = "";
        if (last == p->name) { *lo = -0.1; *hi = 0.1; return; }
        const char *end = last - 1, *beg = end;
        while (beg > p->name && beg[-1] != '.') beg--;
        if (end > beg && (size_t)(end - beg) < sizeof owner) memcpy(owner, beg, (size_t)(end - beg)), owner[end - beg] = 0;
        if (strcmp(last, "weight") == 0 && (strstr(owner, "bn") || strncmp(owner, "norm", 4) == 0)) { *lo = 0.5; *hi = 1.5; return; }
        *lo = -0.1; *hi = 0.1;
        return;
    }
    double fan_in = (double)p->numel / (double)p->shape[0];
    double b = sqrt(3.0 / fan_in);
    *lo = -b;
    *hi = b;
}

/* Fills every parameter and buffer of the store (num_batches_tracked and GeM p keep their init). */
static inline int mew_fill_store(fl_pstore *s) {
    fl_err e = {{0}};
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, &e) < 0) return -1;
    for (size_t i = 0; i < pl.n; i++) {
        const fl_param *p = &pl.v[i];
        if (mew_ends(p->name, "num_batches_tracked") || mew_ends(p->name, "gem.p")) continue;
        double lo, hi;
        mew_range(p, &lo, &hi);
        mew_values(p->name, p->numel, lo, hi, p->data);
    }
    return 0;
}

#endif
