/* The backend interface (see the note in runtime/backend.h): what a backend implements. Not for
 * model code. */
#ifndef FLUKE_BACKEND_INTERNAL_H
#define FLUKE_BACKEND_INTERNAL_H

#include "runtime/graph_internal.h"

struct fl_backend {
    const char *name;
    int host; /* buffers are host memory (fl_graph_value hands them out) */
    /* [FL_OP_COUNT], by op id; NULL (or a NULL kernel) where the backend has none */
    const fl_op_impl *const *ops;
    /* 1 when the backend runs node n of g: forward, and backward when need_bwd */
    int (*supports_op)(const fl_backend *b, const fl_graph *g, const fl_node *n, int need_bwd);
    /* The whole graph, one pass: every needed op node forward; backward from the target with
     * seed (NULL = 1). Called by fl_graph_forward / fl_graph_backward after their checks. */
    int (*forward)(fl_graph *g, fl_err *e);
    int (*backward)(fl_graph *g, const void *seed, fl_err *e);
    /* Optional (NULL: cannot record): record the compiled step into g->rec, so that forward and
     * backward replay it; release frees g->rec. */
    int (*record)(fl_graph *g, fl_err *e);
    void (*release)(fl_graph *g);
    /* Buffers: bytes zero-filled, FL_ARENA_ALIGN aligned (NULL with e set on failure); free
     * takes NULL. Copies between host memory and the backend's buffers. */
    void *(*buf_alloc)(const fl_backend *b, size_t bytes, fl_err *e);
    void (*buf_free)(const fl_backend *b, void *p);
    int (*copy_in)(const fl_backend *b, void *dst, const void *host_src, size_t bytes, fl_err *e);
    int (*copy_out)(const fl_backend *b, void *host_dst, const void *src, size_t bytes, fl_err *e);
};

/* Node n's kernel pair on g's backend (NULL when it has none). */
static inline const fl_op_impl *fl_node_impl(const fl_graph *g, const fl_node *n) {
    return g->be->ops[n->op->id];
}

/* The default supports_op: the op has a forward kernel (and a backward one when needed). */
int fl_backend_has_kernels(const fl_backend *b, const fl_graph *g, const fl_node *n, int need_bwd);
/* Fails naming the first op node of the compiled step g's backend cannot run (backend.c). */
int fl_backend_check_graph(fl_graph *g, fl_err *e);
/* The planner's arena, allocated by g's backend (backend.c). */
int fl_backend_arena_init(fl_graph *g, size_t size, fl_err *e);

/* The eager schedules every backend may use for its compute entry: forward in creation order
 * (graph.c), backward in reverse with gradient zeroing (autodiff.c); kernels from the backend's
 * table. */
int fl_graph_forward_eager(fl_graph *g, fl_err *e);

#endif
