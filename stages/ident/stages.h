/* The identification stages: knn (OOF calibration of new_individual, the fold ensemble's
 * submission and cv.json), pseudo (confident test predictions -> labels of the next round) and
 * their config sections. */
#ifndef FLUKE_IDENT_STAGES_H
#define FLUKE_IDENT_STAGES_H

#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_knn;
extern const fl_cfg_field fl_knn_schema[];
extern const fl_stage_def fl_stage_pseudo;
extern const fl_cfg_field fl_pseudo_schema[];

#endif
