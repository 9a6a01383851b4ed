/* The runtime's public interface: a static computation graph with reverse-mode autodiff.
 *
 * Use:
 *   fl_pstore *ps = fl_pstore_new(FL_F32, seed, &e);        parameters live here, shared by graphs
 *   fl_graph *g = fl_graph_new(ps, FL_MODE_TRAIN, &e);     a graph for one batch/image size
 *   fl_id x = fl_input(g, "x", 4, (int64_t[]){N, H, W, C});
 *   fl_id y = fl_bn_layer(g, fl_linear_layer(g, x, "fc", 128, 1), "bn", 1e-5, 0.1);
 *   fl_id loss = fl_softmax_ce(g, logits, labels, 0.1);
 *   fl_graph_compile(g, loss, &e);                          shapes fixed, memory planned
 *   fl_graph_set_input(g, x, batch, bytes, &e);  fl_graph_forward(g, &e);  fl_graph_backward(g, NULL, &e);
 *
 * Where a graph runs, who owns its buffers and what one step is: runtime/backend.h (included
 * here), the design note of the runtime's backend seam.
 *
 * Builders never fail loudly: on bad arguments (shape mismatch, a bad id) they record the first
 * error in the graph and return -1; every builder given -1 returns -1, so model code can chain
 * calls and check once (fl_graph_compile reports the recorded error, or fl_graph_error()).
 *
 * Nodes are created in topological order (an op's inputs exist before it). The forward pass runs
 * them in creation order; the backward pass runs in reverse, accumulating gradients of a value
 * used several times. Parameter gradients accumulate across backward calls (micro-batches) until
 * fl_pstore_zero_grad. A graph's mode decides batch norm (batch vs running statistics) and dropout
 * / drop path (active vs identity); a train and an eval graph built on the same store share
 * parameters and BN running statistics.
 *
 * Element type: the store's (FL_F32 normally, FL_F64 for the double-precision reference path the
 * finite-difference tests use). Labels are FL_I32. Every node has its own type: BF16 / F16 nodes
 * come from fl_cast or from fl_graph_set_autocast (mixed precision, below). */
#ifndef FLUKE_GRAPH_H
#define FLUKE_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/backend.h"
#include "runtime/param.h"
#include "runtime/tensor.h"

typedef struct fl_pstore fl_pstore;
typedef struct fl_graph fl_graph;
typedef int fl_id; /* node id; -1 = error */

typedef enum fl_mode { FL_MODE_EVAL = 0, FL_MODE_TRAIN = 1 } fl_mode;

/* ---- parameter store ---------------------------------------------------------------------- */

typedef enum fl_init_kind {
    FL_INIT_ZEROS,
    FL_INIT_ONES,
    FL_INIT_CONST,   /* a */
    FL_INIT_UNIFORM, /* U(a, b) */
    FL_INIT_NORMAL,  /* N(a, b^2): mean a, std b */
} fl_init_kind;

typedef struct fl_init {
    fl_init_kind kind;
    double a, b;
} fl_init;

/* Initial values are drawn from Philox with stream = hash(name), so a parameter's init depends on
 * (seed, name) only, never on creation order. */
fl_pstore *fl_pstore_new(fl_dtype dtype, uint64_t seed, fl_err *e);
void fl_pstore_free(fl_pstore *s);
fl_dtype fl_pstore_dtype(const fl_pstore *s);
/* The fl_param view of every parameter and buffer in creation order (F32 stores only; the
 * list is owned by the store; calling this again returns the same memory, refreshed, so a list
 * handed to an optimizer stays valid until the next parameter is created). */
int fl_pstore_params(fl_pstore *s, fl_param_list *out, fl_err *e);
/* Zeroes every parameter gradient (the start of a new accumulation). */
void fl_pstore_zero_grad(fl_pstore *s);
/* Sets the group of every parameter whose name starts with prefix; returns how many matched. */
int fl_pstore_set_group(fl_pstore *s, const char *prefix, int group);
/* Copies every entry of src (by name, shapes must match) into the store's parameters and
 * buffers, e.g. EMA weights into the store an eval graph runs on. Entries of src the store does
 * not have, or a shape mismatch, are errors naming the entry; nothing is copied then. F32 only. */
int fl_pstore_copy_from(fl_pstore *s, const fl_param_list *src, fl_err *e);
/* Data / gradient of a named parameter (NULL when absent; grad NULL for buffers); the element
 * type is the store's. numel may be NULL. */
void *fl_pstore_data(fl_pstore *s, const char *name, size_t *numel);
void *fl_pstore_grad(fl_pstore *s, const char *name);
/* Parameter version: graphs keep data derived from parameters (a conv's packed weights) and
 * remake it when this number moved since. Bumped by fl_pstore_params, fl_pstore_data and
 * fl_graph_value of a parameter (they hand out writable pointers), fl_pstore_copy_from, and
 * through fl_param.version by fl_optim_step and fl_ckpt_load. Whoever writes parameter data
 * through a pointer obtained before the last forward calls fl_pstore_touch; an op that writes
 * parameters inside a step bumps it too. */
void fl_pstore_touch(fl_pstore *s);
uint64_t fl_pstore_version(const fl_pstore *s);

/* ---- graph --------------------------------------------------------------------------------- */

fl_graph *fl_graph_new(fl_pstore *s, fl_mode mode, fl_err *e);
void fl_graph_free(fl_graph *g);
/* First builder error ("" when none). */
const char *fl_graph_error(const fl_graph *g);
/* Records a builder error (the first one wins) and returns -1: for model builders that check
 * their own arguments ("effnet: unknown variant b9"). */
int fl_graph_fail(fl_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Randomness of dropout / drop path: masks are a pure function of (seed, node, step). */
void fl_graph_set_rng(fl_graph *g, uint64_t seed, uint64_t step);

/* Leaves. Inputs are filled by the caller after compile: fl_graph_set_input (any backend), or
 * in place through fl_graph_value (host backends). */
fl_id fl_input(fl_graph *g, const char *name, int ndim, const int64_t *shape);
fl_id fl_input_labels(fl_graph *g, const char *name, int64_t n); /* FL_I32 [n] */
/* Asks for the gradient of an input (tests, attribution). */
void fl_input_requires_grad(fl_graph *g, fl_id x);
/* A trainable parameter (created in the store on first use with init; later uses must agree on
 * the shape). flags: FL_P_NO_DECAY. */
#define FL_P_NO_DECAY 1
fl_id fl_parameter(fl_graph *g, const char *name, int ndim, const int64_t *shape, fl_init init,
               int flags);
/* A saved, never optimized tensor (BN running statistics). */
fl_id fl_buffer(fl_graph *g, const char *name, int ndim, const int64_t *shape, fl_init init);

/* Keeps a node's value readable after forward (losses, embeddings). The compile target is
 * always kept. */
void fl_graph_mark_output(fl_graph *g, fl_id x);

/* ---- ops (each has a shape rule, forward and backward; see runtime/ops/) -------------------- */

fl_id fl_relu(fl_graph *g, fl_id x);
fl_id fl_silu(fl_graph *g, fl_id x);
fl_id fl_sigmoid(fl_graph *g, fl_id x);
/* PyTorch Softplus(beta=1, threshold=20): x when x > 20. */
fl_id fl_softplus(fl_graph *g, fl_id x);
/* PReLU with weight [1] or [C] (C = last axis). */
fl_id fl_prelu(fl_graph *g, fl_id x, fl_id w);
/* y = alpha * x + beta (constants). */
fl_id fl_scale(fl_graph *g, fl_id x, double alpha, double beta);

/* Binary ops with NumPy broadcasting (e.g. SE gating [N,1,1,C] * [N,H,W,C]). */
fl_id fl_add(fl_graph *g, fl_id a, fl_id b);
fl_id fl_sub(fl_graph *g, fl_id a, fl_id b);
fl_id fl_mul(fl_graph *g, fl_id a, fl_id b);
fl_id fl_div(fl_graph *g, fl_id a, fl_id b);

/* Concatenation along `axis` (-1 = last = channels in NHWC); 1..8 inputs. */
fl_id fl_concat(fl_graph *g, int n, const fl_id *xs, int axis);
/* x[..., start:start+len, ...] along `axis` (-1 = last). */
fl_id fl_slice(fl_graph *g, fl_id x, int axis, int64_t start, int64_t len);
/* Same element count, new shape (a copy in this runtime: buffers are planned, not aliased). */
fl_id fl_reshape(fl_graph *g, fl_id x, int ndim, const int64_t *shape);
/* Sum / mean over the axes whose bits are set in axes_mask (bit i = axis i); keepdim keeps them
 * as size 1, else they are removed (all removed = a scalar). */
fl_id fl_sum(fl_graph *g, fl_id x, unsigned axes_mask, int keepdim);
fl_id fl_mean(fl_graph *g, fl_id x, unsigned axes_mask, int keepdim);

/* y = x W^T + b over the last axis; W is PyTorch's [out, in]; b [out] or -1. */
fl_id fl_linear(fl_graph *g, fl_id x, fl_id w, fl_id b);
/* Batch norm over the last axis (C). Train mode: batch statistics (biased variance) normalize;
 * running_mean/var move by momentum with the unbiased variance (PyTorch), num_batches_tracked
 * counts. Eval mode: running statistics. */
fl_id fl_batchnorm(fl_graph *g, fl_id x, fl_id weight, fl_id bias, fl_id running_mean,
                   fl_id running_var, fl_id num_batches_tracked, double eps, double momentum);
/* silu(fl_batchnorm(...)) as one op (same inputs, statistics and results; the normalized
 * value is not stored, backward recomputes it): fewer passes over memory. */
fl_id fl_batchnorm_silu(fl_graph *g, fl_id x, fl_id weight, fl_id bias, fl_id running_mean,
                        fl_id running_var, fl_id num_batches_tracked, double eps, double momentum);
/* GeM over H, W of NHWC x: (mean(clamp(x, eps)^p))^(1/p), p a [1] parameter; y [N,1,1,C]. */
fl_id fl_gem(fl_graph *g, fl_id x, fl_id p, double eps);
/* x / max(||x||_2, eps) over the last axis (F.normalize). */
fl_id fl_l2norm(fl_graph *g, fl_id x, double eps);
/* Train mode: zero with probability p, scale the rest by 1/(1-p); eval mode: identity. */
fl_id fl_dropout(fl_graph *g, fl_id x, double p);
/* Drop path (stochastic depth): the same, but one draw per sample (axis 0) (timm drop_path). */
fl_id fl_drop_path(fl_graph *g, fl_id x, double p);

/* Mean softmax cross-entropy of logits [N,K] against int labels [N], label smoothing ls
 * (PyTorch CrossEntropyLoss(label_smoothing=ls)); y is a scalar. */
fl_id fl_softmax_ce(fl_graph *g, fl_id logits, fl_id labels, double ls);
/* Mean BCE with logits of x against targets t (same shape); y is a scalar. */
fl_id fl_bce_logits(fl_graph *g, fl_id x, fl_id t);
/* [N, C*K] -> [N, C]: max over the K sub-centres of each class (index c*K + k). */
fl_id fl_subcenter_max(fl_graph *g, fl_id cos, int k);
/* ArcFace logits from cosines [N,C]: s*cos(t + m) at the label, s*cos t elsewhere; where
 * cos t <= cos(pi - m): s*(cos t - m sin(pi - m)) (SPECS.md section 4). margins: -1 for the
 * constant m, or an input [C] of per-class margins m_c (then m is ignored). */
fl_id fl_arc_margin(fl_graph *g, fl_id cos, fl_id labels, fl_id margins, double m, double s);

/* 2-D convolution: NHWC x, OIHW weight [C_out, C_in/groups, KH, KW], bias [C_out] or -1;
 * pad = {top, left, bottom, right} zero padding. Depthwise: groups == C_in == C_out. */
fl_id fl_conv2d(fl_graph *g, fl_id x, fl_id w, fl_id b, int stride, int dilation, int groups,
                const int pad[4]);
/* Max pool k x k, stride, symmetric pad (PyTorch semantics, padding never selected). */
fl_id fl_maxpool(fl_graph *g, fl_id x, int k, int stride, int pad);
/* Nearest upsampling by an integer factor (YOLOv5's Upsample(None, 2, 'nearest')). */
fl_id fl_upsample_nearest(fl_graph *g, fl_id x, int scale);
/* Mean over H and W: [N,H,W,C] -> [N,1,1,C]. */
fl_id fl_global_avgpool(fl_graph *g, fl_id x);

/* ---- mixed precision (runtime/ops/cast.c, runtime/ops/lowp_mm.c) ---------------------------- */

/* x converted to F32, FL_BF16 or FL_F16 (round to nearest even; x itself when it has that type
 * already; one cast node per (x, type)). Backward converts the gradient back to x's type. Only
 * casts, fl_linear and fl_conv2d take BF16 / F16 inputs; other ops refuse them. F32 graphs. */
fl_id fl_cast(fl_graph *g, fl_id x, fl_dtype to);
/* Autocast for the nodes built after this call: fl_linear and fl_conv2d (and so every layer and
 * model) cast their float32 x and weight to t (FL_BF16 or FL_F16; FL_F32 turns it off) and
 * accumulate in float32 with a float32 output. Parameters stay float32 in the store (master
 * weights) and get float32 gradients through the casts. F16 gradients can underflow: scale the
 * loss (runtime/loss_scale.h). Returns -1 (recorded) on a bad type or a non-F32 graph. */
int fl_graph_set_autocast(fl_graph *g, fl_dtype t);
fl_dtype fl_graph_autocast(const fl_graph *g); /* the autocast type, or the graph's when off */
/* fl_linear / fl_conv2d with an explicit output type: F32 (the default) or, when x and w are
 * BF16 / F16, a low-precision output (rounded once after the float32 accumulation and bias). */
fl_id fl_linear_dt(fl_graph *g, fl_id x, fl_id w, fl_id b, fl_dtype out);
fl_id fl_conv2d_dt(fl_graph *g, fl_id x, fl_id w, fl_id b, int stride, int dilation, int groups,
                   const int pad[4], fl_dtype out);

/* ---- layers: ops plus their named parameters (timm / ultralytics names) -------------------- */

/* prefix.weight [out,in] and prefix.bias [out], PyTorch's default init U(+-1/sqrt(in)). */
fl_id fl_linear_layer(fl_graph *g, fl_id x, const char *prefix, int64_t out, int bias);
/* prefix.{weight,bias,running_mean,running_var,num_batches_tracked}. */
fl_id fl_bn_layer(fl_graph *g, fl_id x, const char *prefix, double eps, double momentum);
/* silu(fl_bn_layer(...)) as the fused op: the same parameters, names and inits. */
fl_id fl_bn_silu_layer(fl_graph *g, fl_id x, const char *prefix, double eps, double momentum);
/* prefix.weight [C] (init 0.25, as nn.PReLU). */
fl_id fl_prelu_layer(fl_graph *g, fl_id x, const char *prefix, int64_t channels);
/* Padding of a conv layer: a value >= 0 pads every side by it; FL_PAD_AUTO pads
 * dilation*(k-1)/2 per side (timm native, ultralytics autopad); FL_PAD_SAME is TensorFlow "same"
 * (timm tf_ models: the extra pixel right/bottom, depends on the input size). */
#define FL_PAD_AUTO (-1)
#define FL_PAD_SAME (-2)
/* prefix.weight [c_out, C_in/groups, k, k] (PyTorch's default init U(+-1/sqrt(fan_in))) and,
 * with bias, prefix.bias [c_out]. */
fl_id fl_conv2d_layer(fl_graph *g, fl_id x, const char *prefix, int64_t c_out, int k, int stride,
                      int dilation, int groups, int pad, int bias);
/* prefix.p [1] (init p0). */
fl_id fl_gem_layer(fl_graph *g, fl_id x, const char *prefix, double p0, double eps);

/* ---- compile, run ---------------------------------------------------------------------------- */

/* Fixes the graph: target is the node backward starts from (a scalar loss, or any node when
 * the caller seeds its gradient), or -1 for a forward-only graph. Plans memory. */
int fl_graph_compile(fl_graph *g, fl_id target, fl_err *e);
int fl_graph_forward(fl_graph *g, fl_err *e);
/* Backward from the compile target; seed = dL/dtarget (target's shape and element type), or
 * NULL for 1 (target must then have one element). */
int fl_graph_backward(fl_graph *g, const void *seed, fl_err *e);

/* Value / gradient storage of a node after compile (element type: the node's: the store's, I32
 * labels, uint16_t bit patterns for BF16 / F16 nodes, see runtime/cpu/lowp.h): the host-backend
 * accessor, the backend's own pointer (NULL on a backend whose buffers are not host memory: use
 * fl_graph_set_input / fl_graph_read there). Values of intermediate nodes are only valid while
 * live (outputs and the target are always readable after forward); gradients of inputs marked
 * requires_grad and of parameters are readable after backward. */
void *fl_graph_value(fl_graph *g, fl_id x);
void *fl_graph_grad(fl_graph *g, fl_id x);
/* Shape of a node; ndim, or -1 for a bad id. */
int fl_graph_shape(const fl_graph *g, fl_id x, int64_t shape[FL_MAX_DIMS]);
int64_t fl_graph_numel(const fl_graph *g, fl_id x);
/* Memory plan: bytes of the shared arena (peak) and the sum of every planned buffer (what no
 * reuse would cost). */
void fl_graph_mem(const fl_graph *g, size_t *peak, size_t *no_reuse);
int fl_graph_num_nodes(const fl_graph *g);
/* Multiply-accumulates of one forward pass over conv2d and linear nodes (shapes only: works on
 * an uncompiled graph). */
int64_t fl_graph_macs(const fl_graph *g);

#endif
