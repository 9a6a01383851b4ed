/* The detector artifact shared by detector_train (writes it) and crop (reads it):
 *
 *   detector.safetensors   EMA weights and buffers under ultralytics names ("model.0.conv.weight",
 *                          "model.24.anchors"), F32, loadable by ultralytics' own state-dict
 * loaders
 *   __metadata__           fluke.detector = "1", yolo.depth / yolo.width (C99 hex floats),
 *                          yolo.nc, yolo.imgsz (the training input size), yolo.classes (class
 *                          names joined by ','), format = "pt" (what ultralytics tools expect)
 *
 * The network is rebuilt from the metadata (default anchors and strides) and the weights loaded
 * strictly by name, so a file that does not match its own metadata is an error, never a silent
 * partial model. */
#ifndef FLUKE_DETECTOR_IO_H
#define FLUKE_DETECTOR_IO_H

#include "artifacts/util.h"
#include "runtime/models/yolo.h"

#define FL_DETECTOR_FILE "detector.safetensors"
#define FL_DETECTOR_MAX_CLASSES 64

typedef struct fl_detector_meta {
    fl_yolo_cfg cfg;
    int imgsz;
    int nclasses;
    char classes[FL_DETECTOR_MAX_CLASSES][64];
} fl_detector_meta;

/* Writes the weights (the EMA view, or any list with the network's names) and metadata. */
int fl_detector_save(const char *path, const fl_detector_meta *m, const fl_param_list *weights,
                     fl_err *e);

/* A loaded detector: its parameter store and an eval-mode graph on x [batch, imgsz, imgsz, 3]. */
typedef struct fl_detector {
    fl_detector_meta meta;
    int batch;
    fl_pstore *store;
    fl_graph *graph;
    fl_id x, flat;
    fl_yolo_heads heads;
} fl_detector;

/* Reads the metadata and weights of path and builds the eval graph for `batch` images of
 * meta.imgsz (or of imgsz when > 0: any multiple of 32, YOLOv5 is fully convolutional). */
int fl_detector_load(const char *path, int batch, int imgsz, fl_detector *d, fl_err *e);
/* Only the metadata. */
int fl_detector_read_meta(const char *path, fl_detector_meta *m, fl_err *e);
void fl_detector_free(fl_detector *d);

#endif
