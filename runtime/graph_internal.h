/* Internals shared by the graph, the planner, autodiff and the op implementations. Not for
 * model code (that uses graph.h). */
#ifndef FLUKE_GRAPH_INTERNAL_H
#define FLUKE_GRAPH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/arena.h"
#include "runtime/graph.h"

#define FL_MAX_IN 8

/* Backends: every op has one slot per backend (the CUDA slot stays NULL until runtime/cuda fills
 * it; the executor refuses a NULL kernel with a message). */
typedef enum fl_backend { FL_BACKEND_CPU = 0, FL_BACKEND_CUDA = 1, FL_BACKEND_COUNT = 2 } fl_backend;

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

typedef struct fl_op_def {
    const char *name;
    /* Checks inputs and attributes, sets n->shape, n->dtype, n->aux_bytes, n->ws_*_bytes. */
    int (*shape)(fl_graph *g, fl_node *n, fl_err *e);
    unsigned flags;
    fl_op_impl impl[FL_BACKEND_COUNT];
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
    void *own_val; /* inputs own their storage */
    void *own_grad;
};

struct fl_graph {
    fl_pstore *store;
    fl_mode mode;
    fl_dtype dtype;
    fl_backend backend;
    fl_node *nodes;
    int n, cap;
    char err[FL_ERRLEN];
    int compiled;
    int target;
    uint64_t rng_seed, rng_step;
    /* execution */
    unsigned char *needed;   /* ancestor of an output/target */
    unsigned char *bwd;      /* gets a gradient in backward */
    unsigned char *ready;    /* gradient written during the current backward */
    int beta[FL_MAX_IN];     /* see FL_OPF_BWD_BETA */
    int forwarded;
    fl_arena arena;
    size_t peak_bytes, noreuse_bytes;
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
/* Input validation before a step (runtime/validate.c; public in runtime/step.h). */
int fl_graph_validate(fl_graph *g, fl_err *e);
/* The per-op input checks it runs (beside their ops). */
int fl_softmax_ce_validate(fl_graph *g, fl_node *n, fl_err *e);
int fl_arc_margin_validate(fl_graph *g, fl_node *n, fl_err *e);
int fl_yolo_loss_validate(fl_graph *g, fl_node *n, fl_err *e);
void fl_update_free(struct fl_update *u);

/* The op table: every op the graph knows, one definition each (runtime/ops/optable.c). */
extern const fl_op_def fl_op_relu, fl_op_silu, fl_op_sigmoid, fl_op_softplus, fl_op_prelu,
    fl_op_scale, fl_op_add, fl_op_sub, fl_op_mul, fl_op_div, fl_op_concat, fl_op_reshape,
    fl_op_sum, fl_op_mean, fl_op_linear, fl_op_batchnorm, fl_op_gem, fl_op_l2norm,
    fl_op_dropout, fl_op_drop_path, fl_op_softmax_ce, fl_op_bce_logits, fl_op_subcenter_max,
    fl_op_arc_margin, fl_op_conv2d, fl_op_maxpool, fl_op_upsample, fl_op_global_avgpool, fl_op_slice;
/* The train step's ops (runtime/ops/update.c: the update phase and the backward seed;
 * runtime/ops/yolo_loss_op.c). */
extern const fl_op_def fl_op_zero_grad, fl_op_grad_norm, fl_op_clip_coef, fl_op_grad_scale,
    fl_op_sgd_update, fl_op_adam_update, fl_op_ema_update, fl_op_seed_grad, fl_op_yolo_loss;
/* NULL-terminated list of every op definition (for listings and table-wide tests). */
const fl_op_def *const *fl_op_table(void);

#endif
