/* Stage "detector_weights": released ultralytics YOLOv5 weights by name (detector.weights:
 * "yolov5s", "yolov5n.pt", ... the sizes n s m l x and their P6 variants n6 ... x6), downloaded
 * from {detector.weights_url}/<name>.pt (default the v7.0 GitHub release) through the Kaggle
 * client's plain downloader (no credentials; resume, retries, redirects), read by the safe
 * torch.save reader (runtime/torch_pt.h) and written as FL_DETECTOR_PRETRAINED_FILE: the
 * checkpoint's state dict ('model', or 'ema' when 'model' is None) as F32 under ultralytics names
 * (model.0.conv.weight ... model.24.anchors), metadata source = "<name>.pt". Load it into a
 * YOLOv5 store with fl_yolo_load_pretrained (intersect by name and shape, anchors excluded).
 *
 * The node reads only the sections "detector.weights" and "detector.weights_url", so no other
 * detector setting re-downloads the weights. */
#ifndef FLUKE_DETECTOR_WEIGHTS_STAGE_H
#define FLUKE_DETECTOR_WEIGHTS_STAGE_H

#include <cjson/cJSON.h>

#include "stages/api/stage.h"

#define FL_DETECTOR_PRETRAINED_FILE "detector_pretrained.safetensors"
#define FL_DETECTOR_WEIGHTS_URL "https://github.com/ultralytics/yolov5/releases/download/v7.0"

extern const fl_stage_def fl_stage_detector_weights;
/* Only detector.weights and detector.weights_url (the lead declares the "detector" object). */
extern const fl_cfg_field fl_detector_weights_schema[];

/* Checks a detector.weights value: "yolov5" + n|s|m|l|x + optional "6" + optional ".pt". Writes
 * the file name ("yolov5s.pt") to out (>= 16 bytes). -1 with a message listing the names. */
int fl_detector_weights_name(const char *v, char *out, size_t cap, fl_err *e);

/* Adds the node (id "detector_weights", output FL_DETECTOR_PRETRAINED_FILE) when the config sets
 * detector.weights; *out gets it, or NULL when the key is absent. A bad name is an error here
 * already, before anything runs. */
int fl_plan_detector_weights(fl_plan *p, const cJSON *config, fl_plan_node **out, fl_err *e);

#endif
