/* YOLOv5 training as ultralytics train.py runs it (hyp.scratch-low, SPECS.md section 5), on the
 * runtime's graph: SGD (nesterov) or Adam/AdamW in three parameter groups, warmup of lr and
 * momentum over max(warmup_epochs * nb, 100) iterations with accumulation towards the nominal
 * batch, the linear lr schedule per epoch, gradient clipping, model EMA, and a validation pass of
 * the EMA weights after every epoch (val.py's P, R, mAP@0.5, mAP@0.5:0.95).
 *
 * Invariants (what makes a resumed run byte-identical to an uninterrupted one):
 *   1. Every batch is a pure function of (seed, epoch, position) (runtime/data/loader.h).
 *   2. A checkpoint is written only after an epoch has finished and its loss stayed finite; it
 *      holds the weights, buffers, pending accumulated gradients, optimizer state, EMA, the
 *      iteration counters and the metrics so far, and replaces the previous one atomically.
 *   3. Resuming loads all of it and continues with the next epoch; nothing else carries state.
 *   4. Same thread counts: OpenMP reductions then add in the same order. */
#ifndef FLUKE_DETECTOR_TRAIN_H
#define FLUKE_DETECTOR_TRAIN_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/data/loader.h"
#include "runtime/models/yolo.h"
#include "runtime/optim.h"
#include "stages/detector/detector_io.h"

typedef struct fl_dettrain_opts {
    fl_detector_meta meta; /* network (cfg, imgsz, class names) */
    int epochs, batch, nbs, workers;
    fl_optim_kind optimizer;
    double lr0, lrf, momentum, weight_decay;
    double warmup_epochs, warmup_momentum, warmup_bias_lr;
    fl_yolo_hyp hyp; /* loss gains (box, cls, obj), anchor_t */
    fl_yolo_aug aug;
    int close_mosaic; /* last epochs without mosaic (ultralytics v8's close_mosaic; 0: v5) */
    double ema_decay, ema_tau, clip;
    uint64_t seed;
    const fl_loader_item *train, *val;
    size_t ntrain, nval;
    double max_bad_share;   /* unreadable images allowed, as a share of images read */
    const char *pretrained; /* safetensors state dict loaded by shape (intersect), or NULL */
    const char *ckpt_path;  /* checkpoint in the work dir (resumed from when valid) */
    /* Progress and log lines (may be NULL). */
    void (*progress)(void *user, uint64_t step, uint64_t total, const char *line);
    void (*log)(void *user, const char *line);
    void *user;
} fl_dettrain_opts;

/* Trains and writes weights_path (the EMA weights through fl_detector_save) and metrics_path
 * (detector_metrics.json: {"epochs": [...], "final": {...}}). A non-finite loss stops with an
 * error naming the epoch and step; the last good checkpoint stays. */
int fl_dettrain_run(const fl_dettrain_opts *o, const char *weights_path, const char *metrics_path,
                    fl_err *e);

/* The validation metrics of one evaluation. */
typedef struct fl_detval {
    double map50, map50_95, precision, recall;
    int images, labels;
} fl_detval;

#endif
