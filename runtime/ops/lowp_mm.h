/* Low-precision (BF16 / F16) branches of the matrix ops, called from ops/linear.c and
 * ops/conv.c when their x and w are BF16 or F16 (see lowp_mm.c), and the autocast hook of their
 * builders (ops/cast.c). Internal to the ops. */
#ifndef FLUKE_OPS_LOWP_MM_H
#define FLUKE_OPS_LOWP_MM_H

#include "runtime/cpu/conv.h"
#include "runtime/graph_internal.h"

/* Under fl_graph_set_autocast: replaces *x and *w (float32 nodes) by casts to the autocast
 * type; a no-op otherwise. */
void fl_autocast_operands(fl_graph *g, fl_id *x, fl_id *w);

/* After the op's own shape rule: checks the dtypes of x, w (and b), sets n->dtype to the
 * requested output type out (the graph's type unless x and w are low precision) and the
 * scratch sizes of the low-precision path. conv is NULL for linear. */
int fl_lowp_mm_shape(fl_graph *g, fl_node *n, fl_dtype out, const fl_conv2d_params *conv, fl_err *e);
/* 1 when the node runs the low-precision path (x is BF16 / F16). */
static inline int fl_lowp_mm_node(fl_graph *g, fl_node *n) { return fl_dtype_is_lowp(fl_in(g, n, 0)->dtype); }

int fl_lowp_linear_fwd(fl_graph *g, fl_node *n, fl_err *e);
int fl_lowp_linear_bwd(fl_graph *g, fl_node *n, fl_err *e);
int fl_lowp_conv_fwd(fl_graph *g, fl_node *n, const fl_conv2d_params *p, fl_err *e);
int fl_lowp_conv_bwd(fl_graph *g, fl_node *n, const fl_conv2d_params *p, fl_err *e);

#endif
