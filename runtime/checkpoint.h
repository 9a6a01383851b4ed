/* Training checkpoints: one safetensors file (written atomically) holding everything a run needs
 * to resume bit-exactly:
 *
 *   tensors   <name>                        parameters and buffers, F32, under their own names
 *             optim.<state>.<name>          optimizer state (exp_avg, exp_avg_sq, momentum_buffer)
 *             ema.<name>                    model EMA (parameters and buffers)
 *   metadata  fluke.checkpoint = "1", step, optim.kind, optim.step, optim.lr (per group),
 *             optim.momentum, ema.updates, rng.<name> (fl_rng as 13 words of 8 hex digits),
 *             plus any caller metadata (schedule settings, epoch, config hash, ...)
 *
 * Floating-point metadata is written as C99 hex floats ("%a"), which parse back exactly.
 * Loading is strict (load_state_dict(strict=True)): every missing, unexpected or mis-shaped key
 * is listed in one error, and nothing is modified unless the whole checkpoint fits. */
#ifndef FLUKE_CHECKPOINT_H
#define FLUKE_CHECKPOINT_H

#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/optim.h"
#include "runtime/param.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"

typedef struct fl_ckpt_rng {
    const char *name;         /* e.g. "data", "dropout" */
    fl_rng *rng;
} fl_ckpt_rng;

/* What goes into (and comes back out of) a checkpoint. Everything but params may be NULL/0. */
typedef struct fl_ckpt {
    fl_param_list *params;    /* parameters and buffers */
    fl_optim *optim;
    fl_ema *ema;
    fl_ckpt_rng *rngs;
    size_t nrngs;
    int64_t step;             /* the caller's step counter (saved; restored by load) */
    const fl_st_kv *extra;    /* extra metadata to save (keys must not collide with ours) */
    size_t nextra;
} fl_ckpt;

int fl_ckpt_save(const char *path, const fl_ckpt *c, fl_err *e);

/* Restores everything c points at (which must have the same structure as when saved: same
 * parameter names and shapes, same optimizer kind, same EMA and RNG names). When meta is not
 * NULL it receives the opened file for reading extra metadata (fl_st_meta; close with
 * fl_st_close_set); otherwise the file is closed. */
int fl_ckpt_load(const char *path, fl_ckpt *c, fl_st_set **meta, fl_err *e);

/* fl_rng as text and back (13 words of 8 hex digits, the form the checkpoint uses). */
void fl_ckpt_rng_to_hex(const fl_rng *r, char out[13 * 8 + 1]);
int fl_ckpt_rng_from_hex(const char *s, fl_rng *r);

#endif
