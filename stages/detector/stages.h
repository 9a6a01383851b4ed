/* The detector stages: detector_train (YOLOv5 on the boxes) and its config section. */
#ifndef FLUKE_DETECTOR_STAGES_H
#define FLUKE_DETECTOR_STAGES_H

#include <cjson/cJSON.h>

#include "runtime/models/yolo.h"
#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_detector_train;
extern const fl_cfg_field fl_detector_schema[];

#endif
