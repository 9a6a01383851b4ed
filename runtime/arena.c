/* One aligned block addressed by offsets (see arena.h). */
#include "runtime/arena.h"

#include <stdlib.h>
#include <string.h>

size_t fl_arena_round(size_t n) {
    return (n + FL_ARENA_ALIGN - 1) / FL_ARENA_ALIGN * FL_ARENA_ALIGN;
}

int fl_arena_init(fl_arena *a, size_t size, fl_err *e) {
    a->base = NULL;
    a->size = 0;
    if (size == 0) return 0;
    size = fl_arena_round(size);
    void *p = aligned_alloc(FL_ARENA_ALIGN, size);
    if (!p) return fl_errf(e, "arena: cannot allocate %zu bytes", size);
    memset(p, 0, size);
    a->base = p;
    a->size = size;
    return 0;
}

void *fl_arena_at(const fl_arena *a, size_t off, size_t len) {
    if (!a->base || off > a->size || len > a->size - off) return NULL;
    return (char *)a->base + off;
}

void fl_arena_free(fl_arena *a) {
    free(a->base);
    a->base = NULL;
    a->size = 0;
}
