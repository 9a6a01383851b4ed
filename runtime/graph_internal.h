/* Internals shared by the graph, the planner, autodiff and the op implementations. Not for
 * model code (that uses graph.h). */
#ifndef FLUKE_GRAPH_INTERNAL_H
#define FLUKE_GRAPH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/arena.h"
#include "runtime/graph.h"

#define FL_MAX_IN 8

/* Op ids: the index of an op in every backend's op table (runtime/ops/oplist.h). */
typedef enum fl_op_id {
#define FL_OP(ID, nm) FL_OP_##ID,
#include "runtime/ops/oplist.h"
#undef FL_OP
    FL_OP_COUNT
} fl_op_id;

typedef enum fl_node_kind { FL_NODE_INPUT, FL_NODE_PARAM, FL_NODE_BUFFER, FL_NODE_OP } fl_node_kind;

typedef struct fl_node fl_node;

/* Kernels get the graph and the node; inputs / outputs through the accessors below. Backward
 * kernels ADD into input gradients (the executor zeroes a gradient before its first writer),
 * except ops flagged FL_OPF_BWD_BETA, which read g->beta[i] (0 = overwrite, 1 = add). */
typedef int (*fl_kernel_fn)(fl_graph *g, fl_node *n, fl_err *e);

typedef struct fl_op_impl {
    fl_kernel_fn forward;
    fl_kernel_fn backward;
} fl_op_impl;

/* Backward needs the values of these inputs (bit i) / of the output: the planner keeps them
 * alive until the node's backward ran. */
#define FL_OPF_SAVE_IN(i) (1u << (i))
#define FL_OPF_SAVE_ALL_IN 0xffu
#define FL_OPF_SAVE_OUT (1u << 8)
#define FL_OPF_BWD_BETA (1u << 9)
/* The op takes BF16 / F16 inputs (cast, linear, conv2d); fl_graph_add_op refuses them for every
 * other op. Such ops are FL_OPF_BWD_BETA too, so autodiff never memsets a low-precision grad. */
#define FL_OPF_LOWP (1u << 10)

/* What an op is, on every backend: its kernels are not here but in each backend's op table,
 * indexed by id (runtime/backend_internal.h); the reference pair is fl_ref_<name>. */
typedef struct fl_op_def {
    const char *name;
    /* Checks inputs and attributes, sets n->shape, n->dtype, n->aux_bytes, n->ws_*_bytes. */
    int (*shape)(fl_graph *g, fl_node *n, fl_err *e);
    unsigned flags;
    fl_op_id id;
} fl_op_def;

struct fl_node {
    fl_node_kind kind;
    const fl_op_def *op; /* FL_NODE_OP only */
    char *name;          /* inputs, params, buffers */
    int nin;
    int in[FL_MAX_IN];
    fl_shape shape;
    fl_dtype dtype;
    int requires_grad;
    int is_output;
    int store_index; /* params and buffers: index in the store */
    /* attributes, op-specific (documented beside each op) */
    double f[4];
    int64_t i[12];
    /* memory */
    size_t aux_bytes;    /* kept from forward to backward (masks, statistics) */
    size_t ws_fwd_bytes; /* scratch during forward only */
    size_t ws_bwd_bytes; /* scratch during backward only */
    void *val, *grad, *aux, *ws_fwd, *ws_bwd;
    /* kept for the graph's whole life (a conv's packed weights), planned like the rest; the op
     * refreshes it when keep_version (0: never made) differs from fl_pstore_version */
    size_t keep_bytes;
    void *keep;
    uint64_t keep_version;
    void *own_val; /* inputs own their storage */
    void *own_grad;
};

struct fl_graph {
    fl_pstore *store;
    fl_mode mode;
    fl_dtype dtype;
    const fl_backend *be; /* runs the graph and owns its buffers (CPU unless set before compile) */
    void *rec;            /* the backend's recorded step (fl_graph_record), or NULL */
    fl_node *nodes;
    int n, cap;
    char err[FL_ERRLEN];
    int compiled;
    int target;
    uint64_t rng_seed, rng_step;
    fl_dtype autocast; /* FL_BF16 / FL_F16: linear and conv2d cast x and w to it (ops/cast.c) */
    /* execution */
    unsigned char *needed;   /* ancestor of an output/target */
    unsigned char *bwd;      /* gets a gradient in backward */
    unsigned char *ready;    /* gradient written during the current backward */
    int beta[FL_MAX_IN];     /* see FL_OPF_BWD_BETA */
    int forwarded;
    fl_arena arena;
    size_t peak_bytes, noreuse_bytes;
    uint64_t repacks; /* kept data (packed weights) remade, over the graph's life (tests) */
    struct fl_update *upd; /* the update phase (runtime/step.c), or NULL */
};

/* Appends an op node (inputs checked, shape rule run); -1 on error (recorded). */
fl_id fl_graph_add_op(fl_graph *g, const fl_op_def *op, int nin, const fl_id *in,
                      const double *f, int nf, const int64_t *iattr, int ni);

static inline fl_node *fl_in(fl_graph *g, fl_node *n, int i) { return &g->nodes[n->in[i]]; }
static inline void *fl_in_val(fl_graph *g, fl_node *n, int i) { return g->nodes[n->in[i]].val; }
/* The gradient buffer of input i, or NULL when it needs none. */
static inline void *fl_in_grad(fl_graph *g, fl_node *n, int i) {
    return g->bwd[n->in[i]] ? g->nodes[n->in[i]].grad : NULL;
}
static inline int64_t fl_numel(const fl_node *n) { return fl_shape_numel(&n->shape); }
static inline int fl_is_f64(const fl_graph *g) { return g->dtype == FL_F64; }

/* Calls name_f64(args) or name_f32(args) by the graph's element type. */
#define FL_DISPATCH(g, name, ...) \
    (fl_is_f64(g) ? name##_f64(__VA_ARGS__) : name##_f32(__VA_ARGS__))

/* Store internals used by the graph. */
typedef struct fl_pstore_entry {
    char *name;
    fl_shape shape;
    int64_t numel;
    void *data, *grad;
    int no_decay, is_buffer, group;
} fl_pstore_entry;
int fl_pstore_get_or_create(fl_pstore *s, const char *name, const fl_shape *shape, fl_init init,
                           int is_buffer, int no_decay, fl_err *e);
fl_pstore_entry *fl_pstore_entry_at(fl_pstore *s, int index);

/* Memory planner (planner.c): assigns n->val/grad/aux/ws for every planned buffer. */
int fl_plan_memory(fl_graph *g, fl_err *e);
/* Backward pass (autodiff.c). */
int fl_autodiff_backward(fl_graph *g, const void *seed, fl_err *e);
/* Writes the seed (NULL = 1) into the target's gradient with the backend's seed_grad kernel:
 * overwritten for an op target, added for a leaf one (autodiff.c; the CPU replay uses it too). */
int fl_autodiff_seed(fl_graph *g, const void *seed, fl_err *e);
/* Input validation before a step (runtime/validate.c; public in runtime/step.h). */
int fl_graph_validate(fl_graph *g, fl_err *e);
/* Only the ops that read input x (fl_graph_set_input runs it after the copy; validate.c). */
int fl_graph_validate_input(fl_graph *g, fl_id x, fl_err *e);
/* The per-op input checks it runs (beside their ops). */
int fl_softmax_ce_validate(fl_graph *g, fl_node *n, fl_err *e);
int fl_arc_margin_validate(fl_graph *g, fl_node *n, fl_err *e);
int fl_yolo_loss_validate(fl_graph *g, fl_node *n, fl_err *e);
void fl_update_free(struct fl_update *u);

/* Every op the graph knows: its definition fl_op_<name> and its reference (CPU) kernel pair
 * fl_ref_<name>, both beside each other in runtime/ops/<family>.c. */
#define FL_OP(ID, nm) extern const fl_op_def fl_op_##nm; extern const fl_op_impl fl_ref_##nm;
#include "runtime/ops/oplist.h"
#undef FL_OP
/* NULL-terminated list of every op definition, in id order (runtime/ops/optable.c). */
const fl_op_def *const *fl_op_table(void);

#endif
