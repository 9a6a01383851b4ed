/* The backend-neutral half of the seam (runtime/backend.h): choosing a graph's backend, the
 * compile-time support check, the arena through the backend's allocator, and the explicit copies
 * in and out. The backends themselves are runtime/cpu/backend_cpu.c and
 * runtime/cuda/backend_cuda.c. */
#include <string.h>

#include "runtime/backend_internal.h"

const char *fl_backend_name(const fl_backend *b) { return b ? b->name : "(none)"; }
int fl_backend_is_host(const fl_backend *b) { return b && b->host; }

int fl_backend_has_kernels(const fl_backend *b, const fl_graph *g, const fl_node *n, int need_bwd) {
    (void)g;
    const fl_op_impl *k = b->ops[n->op->id];
    return k && k->forward && (!need_bwd || k->backward);
}

/* Before compile g->bwd does not exist yet: a node that requires a gradient may need backward. */
static int needs_bwd(const fl_graph *g, int i) {
    return g->bwd ? g->bwd[i] : g->nodes[i].requires_grad;
}

int fl_backend_supports(const fl_backend *b, fl_graph *g, fl_id x) {
    if (!b || !g || x < 0 || x >= g->n) return -1;
    const fl_node *n = &g->nodes[x];
    if (n->kind != FL_NODE_OP) return 1;
    return b->supports_op(b, g, n, needs_bwd(g, x)) ? 1 : 0;
}

int fl_backend_check_graph(fl_graph *g, fl_err *e) {
    for (int i = 0; i < g->n; i++) {
        const fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->needed[i]) continue;
        if (!g->be->supports_op(g->be, g, n, g->bwd[i]))
            return fl_errf(e, "graph: the %s backend does not support op %s (node %d%s), the first "
                              "op of this graph it cannot run; build the graph for the cpu backend",
                           g->be->name, n->op->name, i, g->bwd[i] ? ", forward and backward" : "");
    }
    return 0;
}

int fl_backend_arena_init(fl_graph *g, size_t size, fl_err *e) {
    g->arena.base = NULL;
    g->arena.size = 0;
    if (size == 0) return 0;
    size = fl_arena_round(size);
    g->arena.base = g->be->buf_alloc(g->be, size, e);
    if (!g->arena.base) return fl_errprefix(e, "planner: arena of %zu bytes", size);
    g->arena.size = size;
    return 0;
}

int fl_graph_set_backend(fl_graph *g, const fl_backend *b, fl_err *e) {
    if (!b) return fl_errf(e, "graph: NULL backend");
    if (g->compiled || g->needed)
        return fl_errf(e, "graph: the backend is chosen before compile (this graph runs on %s)",
                       g->be->name);
    g->be = b;
    return 0;
}

const fl_backend *fl_graph_backend(const fl_graph *g) { return g->be; }

/* The node x's buffer (value or gradient) and its size, checked for a copy of bytes. */
static void *copy_slot(fl_graph *g, fl_id x, int grad, size_t bytes, const char *what, fl_err *e) {
    if (x < 0 || x >= g->n) {
        fl_errf(e, "%s: bad node id %d", what, x);
        return NULL;
    }
    fl_node *n = &g->nodes[x];
    const char *nm = n->name && n->name[0] ? n->name : n->kind == FL_NODE_OP ? n->op->name : "?";
    if (!g->compiled) {
        fl_errf(e, "%s: node %d (%s): graph not compiled", what, x, nm);
        return NULL;
    }
    size_t want = (size_t)fl_numel(n) * fl_dtype_size(n->dtype);
    if (bytes != want) {
        fl_errf(e, "%s: node %d (%s) holds %zu bytes, not %zu", what, x, nm, want, bytes);
        return NULL;
    }
    void *p = grad ? (n->kind == FL_NODE_PARAM || g->bwd[x] ? n->grad : NULL) : n->val;
    if (!p) fl_errf(e, "%s: node %d (%s) has no %s here (%s)", what, x, nm, grad ? "gradient" : "value",
                    grad ? "not on a path into the target" : "not needed by this graph");
    return p;
}

int fl_graph_set_input(fl_graph *g, fl_id x, const void *src, size_t bytes, fl_err *e) {
    if (x >= 0 && x < g->n && g->nodes[x].kind != FL_NODE_INPUT)
        return fl_errf(e, "set_input: node %d is not an input", x);
    void *dst = copy_slot(g, x, 0, bytes, "set_input", e);
    if (!dst || g->be->copy_in(g->be, dst, src, bytes, e) < 0) return -1;
    /* labels and targets checked against the ops that read them (host values: CPU for now) */
    return fl_graph_validate_input(g, x, e);
}

int fl_graph_read(fl_graph *g, fl_id x, void *dst, size_t bytes, fl_err *e) {
    const void *src = copy_slot(g, x, 0, bytes, "read", e);
    if (!src) return -1;
    return g->be->copy_out(g->be, dst, src, bytes, e);
}

int fl_graph_read_grad(fl_graph *g, fl_id x, void *dst, size_t bytes, fl_err *e) {
    const void *src = copy_slot(g, x, 1, bytes, "read_grad", e);
    if (!src) return -1;
    return g->be->copy_out(g->be, dst, src, bytes, e);
}

int fl_graph_record(fl_graph *g, fl_err *e) {
    if (!g->compiled) return fl_errf(e, "record: graph not compiled");
    if (g->rec) return 0;
    if (!g->be->record) return fl_errf(e, "record: the %s backend cannot record a step", g->be->name);
    return g->be->record(g, e);
}

int fl_graph_recorded(const fl_graph *g) { return g->rec != NULL; }
