/* Arena: one aligned block that the memory planner carves into activation, gradient and scratch
 * buffers by offset. Freed as a whole. */
#ifndef FLUKE_ARENA_H
#define FLUKE_ARENA_H

#include <stddef.h>

#include "artifacts/util.h"

#define FL_ARENA_ALIGN 64 /* cache line; also what AVX-512 loads like */

typedef struct fl_arena {
    void *base;
    size_t size;
} fl_arena;

/* Rounds n up to FL_ARENA_ALIGN. */
size_t fl_arena_round(size_t n);
/* Allocates size bytes (64-byte aligned, zero-filled); size 0 gives an empty arena. */
int fl_arena_init(fl_arena *a, size_t size, fl_err *e);
/* Pointer at a byte offset; NULL when the range [off, off+len) does not fit. */
void *fl_arena_at(const fl_arena *a, size_t off, size_t len);
void fl_arena_free(fl_arena *a);

#endif
