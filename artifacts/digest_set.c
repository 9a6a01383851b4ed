/* A digest -> int map with open addressing (linear probing). Digests are already uniformly
 * distributed, so their first 8 bytes are the hash. Used by verify and gc to mark what is
 * reachable or corrupt across hundreds of thousands of objects. */
#include <stdlib.h>
#include <string.h>

#include "artifacts/store_internal.h"

void fl__dset_free(fl_dset *s) {
    free(s->keys);
    free(s->vals);
    free(s->used);
    memset(s, 0, sizeof *s);
}

static size_t slot_of(const fl_digest *d, size_t cap) {
    uint64_t h;
    memcpy(&h, d->b, sizeof h);
    return (size_t)(h & (cap - 1));
}

static int grow(fl_dset *s) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    fl_digest *k = calloc(ncap, sizeof *k);
    int *v = calloc(ncap, sizeof *v);
    uint8_t *u = calloc(ncap, 1);
    if (!k || !v || !u) {
        free(k);
        free(v);
        free(u);
        return -1;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->used[i]) continue;
        size_t j = slot_of(&s->keys[i], ncap);
        while (u[j]) j = (j + 1) & (ncap - 1);
        u[j] = 1;
        k[j] = s->keys[i];
        v[j] = s->vals[i];
    }
    free(s->keys);
    free(s->vals);
    free(s->used);
    s->keys = k;
    s->vals = v;
    s->used = u;
    s->cap = ncap;
    return 0;
}

int *fl__dset_get(fl_dset *s, const fl_digest *d, int create) {
    if (s->cap) {
        size_t j = slot_of(d, s->cap);
        while (s->used[j]) {
            if (fl_digest_eq(&s->keys[j], d)) return &s->vals[j];
            j = (j + 1) & (s->cap - 1);
        }
    }
    if (!create) return NULL;
    if ((s->n + 1) * 2 > s->cap && grow(s) != 0) return NULL;
    size_t j = slot_of(d, s->cap);
    while (s->used[j]) j = (j + 1) & (s->cap - 1);
    s->used[j] = 1;
    s->keys[j] = *d;
    s->vals[j] = 0;
    s->n++;
    return &s->vals[j];
}
