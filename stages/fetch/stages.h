/* The Kaggle-side stages (issue 7), for the registry:
 *
 * fetch    section "kaggle"; no inputs; output "data": the competition's files, extracted
 *          (train.csv, train_images/, test_images/, sample_submission.csv). Its digest is the
 *          tree of extracted files, so the same data gives a cache hit after a fresh download.
 *          Downloads live in the stage's work directory (resumed after a crash).
 * weights  section "weights"; no inputs; output "weights": a directory holding the downloaded
 *          file under its hub name (model.safetensors); a PyTorch file (the pytorch_model.bin
 *          fallback when the hub has no safetensors file, or a weights.file ending in .bin/.pt/
 *          .pth) is converted to safetensors (model.safetensors, x.safetensors) by the safe
 *          torch.save reader (runtime/torch_pt.h).
 *
 * `fluke submit [CONFIG] [--dry-run] [-m MESSAGE]` calls fl_kaggle_submit_cli (kaggle/kaggle.h)
 * with the competition from fl_kaggle_submit_opts(). */
#ifndef FLUKE_FETCH_STAGES_H
#define FLUKE_FETCH_STAGES_H

#include <stdio.h>

#include "kaggle/kaggle.h"
#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_fetch;
extern const fl_stage_def fl_stage_weights;

/* Config keys (NULL-path terminated, dotted). */
extern const fl_cfg_field fl_kaggle_schema[];
extern const fl_cfg_field fl_weights_schema[];

/* Reads the "kaggle" section of a (resolved) config for `fluke submit`: *competition and
 * opts->base_url point into config. -1 with a message naming the key when absent or mistyped. */
int fl_kaggle_submit_opts(const cJSON *config, const char **competition, fl_kaggle_opts *opts,
                          fl_err *e);

/* A FILE whose lines go to fl_stage_log (so client messages carry the stage prefix). Close it
 * with fclose. NULL on failure. */
FILE *fl_stage_log_file(fl_stage_ctx *c);

#endif
