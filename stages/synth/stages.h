/* The stages of issue 4, for the registry: the synthetic data set, scoring, and the baselines.
 *
 * synth            section "synth"; no inputs; outputs "data" (Kaggle layout: train.csv,
 *                  train_images/, test_images/, sample_submission.csv, train_boxes.csv) and
 *                  "truth" (solution.csv, test_boxes.csv). Threads: fl_stage_threads.
 * baseline_new_first  input "data" (a node whose outputs hold the Kaggle layout, directly or
 *                  under data/); no section; output "submission.csv".
 * baseline_knn     input "data"; section "baseline.knn"; output "submission.csv".
 * score            optional inputs "submission" (submission.csv), "crops" (the crop stage's
 *                  crops.csv), "detector" (detector_metrics.json), with "truth" (solution.csv,
 *                  test_boxes.csv, directly or under truth/) for the first two; no section;
 *                  output "metrics.json" (stages/score.c).
 *
 * `fluke synth --preview` is FL_SYNTH_COMMAND / fl_synth_command (below). */
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

/* `fluke synth --preview ...`: a contact sheet of the configured synth data (the config's
 * `synth` section, overridable by --preset/--seed) written to --out (default:
 * OUT_DIR/synth_preview.jpg). FL_SYNTH_COMMAND is a constant initializer for a registry's
 * command table; fl_synth_command is the same as an object. */
int fl_synth_preview_main(int argc, char **argv, const cJSON *config, const char *out_dir,
                          fl_err *e);
#define FL_SYNTH_COMMAND_USAGE                                                                  \
    "synth [CONFIG] --preview [--preset tiny|smoke|large] [--seed N] [--out FILE] "             \
    "[--grid COLSxROWS] [--cell PX]"
#define FL_SYNTH_COMMAND_SUMMARY                                                                \
    "draw a contact sheet of the synthetic data (images with their boxes)"
#define FL_SYNTH_COMMAND                                                                        \
    {.name = "synth", .usage = FL_SYNTH_COMMAND_USAGE, .summary = FL_SYNTH_COMMAND_SUMMARY,      \
     .main_config = fl_synth_preview_main}
extern const fl_command fl_synth_command;

/* Where a Kaggle-layout directory sits in a node's outputs: dir/data if it has train.csv,
 * else dir itself. Returns a malloc'd path. */
char *fl_synth_data_dir(const char *dir);

#endif
