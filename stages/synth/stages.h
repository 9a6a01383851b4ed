/* The stages of issue 4, for the registry: the synthetic data set, scoring, and the baselines.
 *
 * synth            section "synth"; no inputs; outputs "data" (Kaggle layout: train.csv,
 *                  train_images/, test_images/, sample_submission.csv, train_boxes.csv) and
 *                  "truth" (solution.csv). Threads: fl_stage_threads.
 * baseline_new_first  input "data" (a node whose outputs hold the Kaggle layout, directly or
 *                  under data/); no section; output "submission.csv".
 * baseline_knn     input "data"; section "baseline.knn"; output "submission.csv".
 * score            inputs "submission" (a node with submission.csv) and "truth" (a node with
 *                  solution.csv, directly or under truth/); no section; output "metrics.json".
 *
 * `fluke synth --preview [--preset P] [--seed N] [--out FILE] [--grid COLSxROWS]` is
 * fl_synth_command. */
#ifndef FLUKE_SYNTH_STAGES_H
#define FLUKE_SYNTH_STAGES_H

#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_synth;
extern const fl_stage_def fl_stage_score;
extern const fl_stage_def fl_stage_baseline_new_first;
extern const fl_stage_def fl_stage_baseline_knn;

/* Config keys (NULL-path terminated). */
extern const fl_cfg_field fl_synth_schema[];
extern const fl_cfg_field fl_baseline_schema[];

/* `fluke synth --preview ...` */
extern const fl_command fl_synth_command;

/* Where a Kaggle-layout directory sits in a node's outputs: dir/data if it has train.csv,
 * else dir itself. Returns a malloc'd path. */
char *fl_synth_data_dir(const char *dir);

#endif
