/* Stage "folds" (stages/folds.c), for the registry (issue 12):
 *
 * folds  section "folds"; input "data" (a node whose outputs hold the Kaggle layout, directly or
 *        under data/: train.csv is read through fl_train_read, species after the fixes);
 *        output "folds.csv" (stages/ident/folds.h). One thread.
 *
 * Keys: folds.k (2..100, default 5), folds.seed (default 42), folds.by ("individual", the
 * default: an individual's images in one fold | "image": StratifiedKFold on individual_id). */
#ifndef FLUKE_IDENT_FOLDS_STAGE_H
#define FLUKE_IDENT_FOLDS_STAGE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "stages/api/stage.h"
#include "stages/ident/folds.h"

#define FL_FOLDS_DEFAULT_K 5
#define FL_FOLDS_DEFAULT_SEED 42

extern const fl_stage_def fl_stage_folds;
extern const fl_cfg_field fl_folds_schema[];

/* The "folds" section of a config (sec: that object, or NULL when absent) with its defaults:
 * for the plan (K embed_train nodes) and the stage alike. -1 with a message naming the key. */
int fl_folds_cfg(const cJSON *sec, int *k, uint64_t *seed, fl_folds_by *by, fl_err *e);

#endif
