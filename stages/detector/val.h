/* Validation of a detector as ultralytics val.py runs it during training: letterboxed images
 * (no augmentation), NMS at conf 0.001 / IoU 0.6 / 300 boxes, then P, R, mAP@0.5 and
 * mAP@0.5:0.95 over the classes that have labels. */
#ifndef FLUKE_DETECTOR_VAL_H
#define FLUKE_DETECTOR_VAL_H

#include "runtime/data/loader.h"
#include "stages/detector/detector_io.h"
#include "stages/detector/train.h"

typedef struct fl_detval_ctx fl_detval_ctx;

/* An eval graph of its own (batch FL_DETVAL_BATCH) over the val items (borrowed). */
#define FL_DETVAL_BATCH 16
fl_detval_ctx *fl_detval_new(const fl_detector_meta *m, const fl_loader_item *items, size_t n,
                             int workers, fl_err *e);
void fl_detval_free(fl_detval_ctx *v);
/* The store the eval graph reads: copy the weights to evaluate into it first. */
fl_pstore *fl_detval_store(fl_detval_ctx *v);
int fl_detval_run(fl_detval_ctx *v, fl_detval *out, fl_err *e);

#endif
