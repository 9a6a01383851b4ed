/* The update phase of a train graph (runtime/step.c builds it, runtime/ops/update.c holds its
 * kernels). Update nodes are fl_node records outside the graph's node list, one per store entry
 * and phase, so their kernels have the ordinary kernel signature:
 *   val = the parameter (EMA: the shadow), grad = its gradient, aux = momentum_buffer / exp_avg
 *   (EMA: the model entry it averages), ws_fwd = exp_avg_sq, i[0] = group, i[1] = no_decay,
 *   i[2] = index into the per-parameter norm slots, shape [numel].
 * The kernels read the step's scalars from g->upd (on a device backend: a small buffer copied in
 * per step). */
#ifndef FLUKE_UPDATE_INTERNAL_H
#define FLUKE_UPDATE_INTERNAL_H

#include "runtime/graph_internal.h"
#include "runtime/step.h"

struct fl_update {
    fl_update_cfg cfg;
    size_t n;                /* store entries */
    int nt;                  /* trainable entries (optimizer / clip nodes) */
    fl_node *opt;            /* [nt] optimizer nodes (also zero / norm / scale: same bindings) */
    fl_node *ema;            /* [n] EMA nodes, or NULL */
    fl_node coef;            /* clip coefficient: reduces the norm slots */
    size_t *opt_entry;       /* [nt] store index of each optimizer node */
    float *block;            /* every state array, back to back (one allocation) */
    fl_param *views[3];      /* FL_UPD_M, FL_UPD_V, FL_UPD_EMA: [n] each */
    /* the step's scalars */
    double lr[FL_OPTIM_MAX_GROUPS];
    double momentum;
    int64_t step;            /* optimizer steps taken (incremented before the update) */
    int64_t ema_updates;
    float *norms;            /* [nt] per-parameter gradient norms (float, as torch.norm) */
    float total, clip_coef;
    int skip;                /* this step's update is skipped (non-finite norm) */
};

#endif
