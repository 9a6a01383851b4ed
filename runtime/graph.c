/* Graph construction, compilation and the forward pass (see graph.h). Autodiff lives in
 * autodiff.c, the memory planner in planner.c, the ops in runtime/ops/. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend_internal.h"

fl_graph *fl_graph_new(fl_pstore *s, fl_mode mode, fl_err *e) {
    if (!s) {
        fl_errf(e, "graph: NULL parameter store");
        return NULL;
    }
    if (mode != FL_MODE_EVAL && mode != FL_MODE_TRAIN) {
        fl_errf(e, "graph: unknown mode %d", (int)mode);
        return NULL;
    }
    fl_graph *g = calloc(1, sizeof *g);
    if (!g) {
        fl_errf(e, "graph: out of memory");
        return NULL;
    }
    g->store = s;
    g->mode = mode;
    g->dtype = fl_pstore_dtype(s);
    g->be = fl_backend_cpu();
    g->target = -1;
    return g;
}

void fl_graph_free(fl_graph *g) {
    if (!g) return;
    if (g->rec) g->be->release(g);
    for (int i = 0; i < g->n; i++) {
        free(g->nodes[i].name);
        g->be->buf_free(g->be, g->nodes[i].own_val);
        g->be->buf_free(g->be, g->nodes[i].own_grad);
    }
    free(g->nodes);
    free(g->needed);
    free(g->bwd);
    free(g->ready);
    g->be->buf_free(g->be, g->arena.base);
    fl_update_free(g->upd);
    free(g);
}

const char *fl_graph_error(const fl_graph *g) { return g->err; }

void fl_graph_set_rng(fl_graph *g, uint64_t seed, uint64_t step) {
    g->rng_seed = seed;
    g->rng_step = step;
}

int fl_graph_fail(fl_graph *g, const char *fmt, ...) {
    if (g->err[0]) return -1; /* keep the first: later errors are usually its consequences */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return -1;
}

static fl_node *new_node(fl_graph *g) {
    if (g->compiled) {
        fl_graph_fail(g, "graph: cannot add nodes after compile");
        return NULL;
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        fl_node *v = realloc(g->nodes, (size_t)cap * sizeof *v);
        if (!v) {
            fl_graph_fail(g, "graph: out of memory");
            return NULL;
        }
        g->nodes = v;
        g->cap = cap;
    }
    fl_node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->store_index = -1;
    return n;
}

static fl_id leaf(fl_graph *g, fl_node_kind kind, const char *name, int ndim,
                  const int64_t *shape, fl_dtype dtype) {
    fl_err e;
    fl_shape s;
    if (fl_shape_make(&s, ndim, shape, &e) < 0)
        return fl_graph_fail(g, "%s: %s", name ? name : "input", e.msg);
    fl_node *n = new_node(g);
    if (!n) return -1;
    n->kind = kind;
    n->shape = s;
    n->dtype = dtype;
    n->name = strdup(name ? name : "");
    if (!n->name) return fl_graph_fail(g, "graph: out of memory");
    return g->n++;
}

fl_id fl_input(fl_graph *g, const char *name, int ndim, const int64_t *shape) {
    return leaf(g, FL_NODE_INPUT, name, ndim, shape, g->dtype);
}

fl_id fl_input_labels(fl_graph *g, const char *name, int64_t n) {
    return leaf(g, FL_NODE_INPUT, name, 1, &n, FL_I32);
}

void fl_input_requires_grad(fl_graph *g, fl_id x) {
    if (x < 0 || x >= g->n) {
        fl_graph_fail(g, "requires_grad: bad node id %d", x);
        return;
    }
    if (g->nodes[x].kind != FL_NODE_INPUT || g->nodes[x].dtype == FL_I32) {
        fl_graph_fail(g, "requires_grad: node %d is not a float input", x);
        return;
    }
    g->nodes[x].requires_grad = 1;
}

static fl_id stored(fl_graph *g, const char *name, int ndim, const int64_t *shape, fl_init init,
                    int is_buffer, int flags) {
    fl_err e;
    fl_shape s;
    if (!name) return fl_graph_fail(g, "parameter without a name");
    if (fl_shape_make(&s, ndim, shape, &e) < 0) return fl_graph_fail(g, "%s: %s", name, e.msg);
    int idx = fl_pstore_get_or_create(g->store, name, &s, init, is_buffer, flags & FL_P_NO_DECAY, &e);
    if (idx < 0) return fl_graph_fail(g, "%s", e.msg);
    /* One node per stored tensor per graph: a parameter used twice is one node used twice. */
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].store_index == idx) return i;
    fl_node *n = new_node(g);
    if (!n) return -1;
    n->kind = is_buffer ? FL_NODE_BUFFER : FL_NODE_PARAM;
    n->shape = s;
    n->dtype = g->dtype;
    n->store_index = idx;
    n->requires_grad = !is_buffer;
    n->name = strdup(name);
    if (!n->name) return fl_graph_fail(g, "graph: out of memory");
    fl_pstore_entry *p = fl_pstore_entry_at(g->store, idx);
    n->val = p->data;
    n->grad = p->grad;
    return g->n++;
}

fl_id fl_parameter(fl_graph *g, const char *name, int ndim, const int64_t *shape, fl_init init,
               int flags) {
    return stored(g, name, ndim, shape, init, 0, flags);
}

fl_id fl_buffer(fl_graph *g, const char *name, int ndim, const int64_t *shape, fl_init init) {
    return stored(g, name, ndim, shape, init, 1, 0);
}

void fl_graph_mark_output(fl_graph *g, fl_id x) {
    if (x < 0 || x >= g->n) {
        fl_graph_fail(g, "mark_output: bad node id %d", x);
        return;
    }
    g->nodes[x].is_output = 1;
}

fl_id fl_graph_add_op(fl_graph *g, const fl_op_def *op, int nin, const fl_id *in,
                      const double *f, int nf, const int64_t *iattr, int ni) {
    if (nin < 0 || nin > FL_MAX_IN) return fl_graph_fail(g, "%s: %d inputs (max %d)", op->name, nin, FL_MAX_IN);
    for (int k = 0; k < nin; k++) {
        if (in[k] < 0) return -1; /* an earlier builder failed and recorded why */
        if (in[k] >= g->n) return fl_graph_fail(g, "%s: input %d is not a node (id %d)", op->name, k, in[k]);
        if (fl_dtype_is_lowp(g->nodes[in[k]].dtype) && !(op->flags & FL_OPF_LOWP))
            return fl_graph_fail(g, "%s: input %d (node %d) is %s; this op takes %s only (fl_cast it first)",
                                 op->name, k, in[k], fl_dtype_name(g->nodes[in[k]].dtype), fl_dtype_name(g->dtype));
    }
    fl_node *n = new_node(g);
    if (!n) return -1;
    n->kind = FL_NODE_OP;
    n->op = op;
    n->nin = nin;
    for (int k = 0; k < nin; k++) {
        n->in[k] = in[k];
        if (g->nodes[in[k]].requires_grad) n->requires_grad = 1;
    }
    for (int k = 0; k < nf && k < 4; k++) n->f[k] = f[k];
    for (int k = 0; k < ni && k < 12; k++) n->i[k] = iattr[k];
    n->dtype = g->dtype;
    fl_err e;
    e.msg[0] = '\0';
    if (op->shape(g, n, &e) < 0) return fl_graph_fail(g, "%s (node %d): %s", op->name, g->n, e.msg);
    if (n->dtype == FL_I32) n->requires_grad = 0;
    return g->n++;
}

int fl_graph_compile(fl_graph *g, fl_id target, fl_err *e) {
    if (g->err[0]) return fl_errf(e, "graph: %s", g->err);
    if (g->compiled) return fl_errf(e, "graph: already compiled");
    if (g->needed) return fl_errf(e, "graph: an earlier compile failed; build a new graph");
    if (target < -1 || target >= g->n) return fl_errf(e, "graph: compile target %d is not a node", target);
    if (target >= 0 && g->nodes[target].dtype == FL_I32)
        return fl_errf(e, "graph: compile target %d holds labels, not values", target);
    if (target >= 0 && fl_dtype_is_lowp(g->nodes[target].dtype))
        return fl_errf(e, "graph: compile target %d is %s; cast it to %s (fl_cast) to seed backward", target,
                       fl_dtype_name(g->nodes[target].dtype), fl_dtype_name(g->dtype));
    g->target = target;
    g->needed = calloc((size_t)g->n + 1, 1);
    g->bwd = calloc((size_t)g->n + 1, 1);
    g->ready = calloc((size_t)g->n + 1, 1);
    if (!g->needed || !g->bwd || !g->ready) return fl_errf(e, "graph: out of memory");
    /* needed: ancestors of the target and of every output. */
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].is_output || i == target) g->needed[i] = 1;
    for (int i = g->n - 1; i >= 0; i--)
        if (g->needed[i])
            for (int k = 0; k < g->nodes[i].nin; k++) g->needed[g->nodes[i].in[k]] = 1;
    /* bwd: requires a gradient and lies on a path into the target. */
    if (target >= 0 && g->nodes[target].requires_grad) {
        unsigned char *anc = calloc((size_t)g->n, 1);
        if (!anc) return fl_errf(e, "graph: out of memory");
        anc[target] = 1;
        for (int i = target; i >= 0; i--)
            if (anc[i])
                for (int k = 0; k < g->nodes[i].nin; k++) anc[g->nodes[i].in[k]] = 1;
        for (int i = 0; i < g->n; i++) g->bwd[i] = anc[i] && g->nodes[i].requires_grad;
        free(anc);
    }
    if (fl_backend_check_graph(g, e) < 0) return -1;
    /* Inputs own their storage, allocated (zeroed) by the backend that runs the graph. */
    for (int i = 0; i < g->n; i++) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_INPUT) continue;
        size_t bytes = (size_t)fl_numel(n) * fl_dtype_size(n->dtype);
        n->own_val = g->be->buf_alloc(g->be, bytes, e);
        if (!n->own_val) return fl_errprefix(e, "graph: input %s", n->name);
        n->val = n->own_val;
        if (g->bwd[i]) {
            n->own_grad = g->be->buf_alloc(g->be, bytes, e);
            if (!n->own_grad) return fl_errprefix(e, "graph: gradient of input %s", n->name);
            n->grad = n->own_grad;
        }
    }
    if (fl_plan_memory(g, e) < 0) return -1;
    g->compiled = 1;
    return 0;
}

int fl_graph_forward_eager(fl_graph *g, fl_err *e) {
    for (int i = 0; i < g->n; i++) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->needed[i]) continue;
        fl_kernel_fn f = fl_node_impl(g, n)->forward; /* compile checked it exists */
        if (f(g, n, e) < 0) return fl_errprefix(e, "%s (node %d) forward", n->op->name, i);
    }
    return 0;
}

int fl_graph_forward(fl_graph *g, fl_err *e) {
    if (!g->compiled) return fl_errf(e, "graph: forward before compile");
    g->forwarded = 0; /* a failed forward leaves nothing for backward to use */
    if (fl_graph_validate(g, e) < 0) return -1; /* inputs are checked before any kernel runs */
    if (g->be->forward(g, e) < 0) return -1;
    g->forwarded = 1;
    return 0;
}

int fl_graph_backward(fl_graph *g, const void *seed, fl_err *e) {
    if (!g->compiled) return fl_errf(e, "graph: backward before compile");
    if (g->target < 0) return fl_errf(e, "graph: compiled forward-only (no target)");
    if (!g->forwarded) return fl_errf(e, "graph: backward before forward");
    if (fl_graph_validate(g, e) < 0) return -1; /* the caller may have rewritten them since */
    return g->be->backward(g, seed, e);
}

void *fl_graph_value(fl_graph *g, fl_id x) {
    if (x < 0 || x >= g->n || !g->be->host) return NULL;
    /* a caller may write a parameter through this pointer: the packed weights must follow */
    if (g->nodes[x].kind == FL_NODE_PARAM || g->nodes[x].kind == FL_NODE_BUFFER) fl_pstore_touch(g->store);
    return g->nodes[x].val;
}

void *fl_graph_grad(fl_graph *g, fl_id x) {
    if (x < 0 || x >= g->n || !g->be->host) return NULL;
    if (g->nodes[x].kind == FL_NODE_PARAM) return g->nodes[x].grad;
    return g->bwd && g->bwd[x] ? g->nodes[x].grad : NULL;
}

int fl_graph_shape(const fl_graph *g, fl_id x, int64_t shape[FL_MAX_DIMS]) {
    if (x < 0 || x >= g->n) return -1;
    memcpy(shape, g->nodes[x].shape.d, sizeof(int64_t) * FL_MAX_DIMS);
    return g->nodes[x].shape.ndim;
}

int64_t fl_graph_numel(const fl_graph *g, fl_id x) {
    return x >= 0 && x < g->n ? fl_numel(&g->nodes[x]) : -1;
}

void fl_graph_mem(const fl_graph *g, size_t *peak, size_t *no_reuse) {
    if (peak) *peak = g->peak_bytes;
    if (no_reuse) *no_reuse = g->noreuse_bytes;
}

int fl_graph_num_nodes(const fl_graph *g) { return g->n; }
