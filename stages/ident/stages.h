/* The identification stages: knn (OOF calibration of new_individual, the fold ensemble's
 * submission and cv.json) and its config section. */
#ifndef FLUKE_IDENT_STAGES_H
#define FLUKE_IDENT_STAGES_H

#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_knn;
extern const fl_cfg_field fl_knn_schema[];

#endif
