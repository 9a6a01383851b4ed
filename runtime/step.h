/* The whole train step inside the graph: after fl_graph_compile, fl_graph_attach_update adds an
 * update phase to a train graph (optional global-norm gradient clipping, the optimizer update of
 * every trainable parameter of the store, optional model EMA), each as backend ops (runtime/ops/
 * update.c) run after backward. A step is then
 *
 *   fl_graph_set_input(g, x, batch, bytes, &e);  fl_graph_set_input(g, labels, ...);  copy in +
 *                                                                                    validate
 *   fl_update_scalars sc = {.lr = {...}, .momentum = ...};   host-side schedule scalars
 *   fl_graph_step(g, &sc, &out, &e);                         zero grads, forward, backward,
 *                                                            clip, update, EMA
 *   read the loss (fl_graph_value) and out.grad_norm          the scalars asked for
 *
 * The arithmetic is that of the host reference in runtime/optim.c / ema.c (torch 1.13 operation
 * order), so both paths give bitwise the same parameters, state and averages
 * (tests/unit/test_runtime_step.c). The state (momentum / exp_avg, exp_avg_sq, EMA shadow) is
 * one block owned by the graph, allocated at attach (never in a step); fl_graph_update_view
 * exposes it as parameter lists (checkpoints), fl_graph_update_load / _store copy it from / to
 * an fl_optim and fl_ema (resuming, host-side checkpoint code). */
#ifndef FLUKE_STEP_H
#define FLUKE_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/graph.h"
#include "runtime/optim.h"

typedef struct fl_update_cfg {
    fl_optim_cfg optim;  /* kind and hyper-parameters as fl_optim_create takes them */
    double clip;         /* 0: no clipping; > 0: clip_grad_norm_(max_norm = clip) (INFINITY:
                            measure the norm only, grads *= 1) */
    int skip_nonfinite;  /* 1: a non-finite gradient norm (needs clip != 0) skips the update and
                            EMA of that step (fl_graph_update then fails, naming the norm) */
    int ema;             /* 1: ModelEMA after the update */
    double ema_decay, ema_tau;
} fl_update_cfg;

/* Host-side scalars of one step (learning-rate schedules and warmups stay on the host). */
typedef struct fl_update_scalars {
    double lr[FL_OPTIM_MAX_GROUPS]; /* per group, as fl_optim's lr[] */
    double momentum;                /* SGD's current momentum (YOLOv5's warmup ramps it) */
} fl_update_scalars;

typedef struct fl_step_out {
    float grad_norm;    /* total gradient norm before clipping (NaN without clipping) */
    int64_t step;       /* optimizer steps taken so far */
} fl_step_out;

/* Attaches the update phase over every parameter of the graph's store (fl_pstore_params order;
 * buffers are averaged by the EMA, never optimized). Needs a compiled F32 train graph with a
 * target; the EMA shadow starts as a copy of the current weights. Once per graph; parameters
 * created in the store afterwards (another graph's) are not part of it. */
int fl_graph_attach_update(fl_graph *g, const fl_update_cfg *c, fl_err *e);
/* Clip + update + EMA from the gradients as they are (after one or several backward calls). */
int fl_graph_update(fl_graph *g, const fl_update_scalars *s, fl_step_out *out, fl_err *e);
/* Zeroes the gradient of every trainable parameter (the start of an accumulation), by kernel. */
int fl_graph_zero_grad(fl_graph *g, fl_err *e);
/* Zero grads, forward (validating the inputs first), backward from the scalar target, then
 * fl_graph_update. */
int fl_graph_step(fl_graph *g, const fl_update_scalars *s, fl_step_out *out, fl_err *e);

/* The state as parameter lists (names / shapes of the store's entries, data = the state;
 * FL_UPD_M: momentum_buffer / exp_avg, FL_UPD_V: exp_avg_sq, FL_UPD_EMA: the averages of every
 * entry). Entries without that state have data NULL. Owned by the graph. */
enum { FL_UPD_M = 0, FL_UPD_V = 1, FL_UPD_EMA = 2 };
int fl_graph_update_view(fl_graph *g, int which, fl_param_list *out, fl_err *e);
/* Copies the state and counters from / to host objects made over the same store (o, m may be
 * NULL to skip); their configs must match the attached one. */
int fl_graph_update_load(fl_graph *g, const fl_optim *o, const fl_ema *m, fl_err *e);
int fl_graph_update_store(fl_graph *g, fl_optim *o, fl_ema *m, fl_err *e);

/* Input validation, before any kernel runs: every label / target input is checked against the
 * ops that read it (a label outside [0, K) names the row; a YOLO target names its index). The
 * forward and backward entries run it; fl_graph_set_input runs it at copy-in for the ops that
 * read that input. */
int fl_graph_validate(fl_graph *g, fl_err *e);
/* fl_graph_set_input (runtime/backend.h) copies into input x, then runs these checks for the
 * ops that read x (fl_graph_validate_input, runtime/graph_internal.h). */

#endif
