/* A small open-addressing hash map from borrowed strings to ints (FNV-1a, linear probing). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int fl_strmap_init(fl_strmap *m, size_t expected, fl_err *e) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2 + 16) cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        fl_strmap_free(m);
        return fl_errf(e, "out of memory for a %zu-entry index", expected);
    }
    m->cap = cap;
    return 0;
}

void fl_strmap_free(fl_strmap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int grow(fl_strmap *m) {
    fl_strmap big;
    if (fl_strmap_init(&big, m->cap, NULL) != 0) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) fl_strmap_put(&big, m->keys[i], m->vals[i]);
    fl_strmap_free(m);
    *m = big;
    return 0;
}

int fl_strmap_put(fl_strmap *m, const char *key, int val) {
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0) return -2;
    size_t mask = m->cap - 1, i = (size_t)fnv1a(key) & mask;
    for (; m->keys[i]; i = (i + 1) & mask)
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return -1;
}

int fl_strmap_get(const fl_strmap *m, const char *key) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = (size_t)fnv1a(key) & mask;
    for (; m->keys[i]; i = (i + 1) & mask)
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    return -1;
}
