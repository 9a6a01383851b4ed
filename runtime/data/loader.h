/* The training data loader: a pthread worker pool that reads, decodes and augments images into
 * 64-byte aligned NHWC float batches ([0,1], RGB) several batches ahead of the consumer.
 *
 * Reproducibility: epoch e's order comes from (seed, e); the sample at position p of epoch e is
 * produced from RNG streams derived from (seed, e, p) only, so a seed gives byte-identical
 * batches whatever the worker count. Bad images either stop the loader with an error naming the
 * file, or (on_bad_image = SKIP) are counted, reported through the warning callback and replaced
 * by another item chosen from (seed, e, p) as well. */
#ifndef FLUKE_LOADER_H
#define FLUKE_LOADER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/image/image.h"

typedef enum fl_loader_task {
    FL_TASK_REID,   /* box crop (+ re-ID augmentation) -> out_w x out_h */
    FL_TASK_DETECT, /* YOLOv5: load_image to long side s, mosaic + random_perspective, hsv, flip;
                       or letterbox to s x s when augmentation is off. s = out_w = out_h */
} fl_loader_task;

typedef enum fl_sampler_kind {
    FL_SAMPLER_SEQUENTIAL, /* items in order, every epoch */
    FL_SAMPLER_SHUFFLE,    /* a permutation per epoch */
    FL_SAMPLER_BALANCED,   /* n draws with replacement, item weight count(label)^-power */
} fl_sampler_kind;

typedef enum fl_bad_image_policy { FL_BAD_IMAGE_ERROR, FL_BAD_IMAGE_SKIP } fl_bad_image_policy;

typedef struct fl_loader_item {
    const char *path;
    int32_t label;       /* individual (re-ID class) index, or -1 */
    fl_box box;          /* re-ID crop region in full-size upright pixels; x2 <= x1: whole image */
    const fl_box *boxes; /* detection targets in full-size upright pixels (cls = class id) */
    int nboxes;
} fl_loader_item;

typedef struct fl_loader_config {
    const fl_loader_item *items; /* borrowed: must outlive the loader */
    size_t n_items;
    fl_loader_task task;
    int out_w, out_h;
    int batch_size;
    int workers;  /* >= 1 */
    int prefetch; /* batches prepared ahead of the one the consumer holds (0 -> 2) */
    int drop_last;
    int augment;  /* 0: deterministic eval transform (crop+resize / letterbox) */
    uint64_t seed;
    int64_t first_epoch;
    int64_t epochs; /* epochs to produce; 0 = endless */
    fl_sampler_kind sampler;
    float balance_power; /* BALANCED: 1 = each individual equally likely, 0.5 = sqrt */
    fl_bad_image_policy on_bad_image;
    uint64_t max_pixels; /* decode cap (0 = FL_DECODE_DEFAULT_MAX_PIXELS) */
    uint64_t max_decode_bytes; /* per-image decode memory cap (0 = FL_DECODE_DEFAULT_MAX_BYTES) */
    /* Decode memory shared by the workers (NULL: the process-wide budget, so loaders and other
     * decoders in one process never hold more than its limit together). */
    fl_decode_budget *decode_budget;
    int max_boxes;       /* DETECT: boxes kept per image in a batch (0 -> 64) */
    fl_reid_aug reid;
    fl_yolo_aug yolo;
    int output_u8;       /* 1: batches hold uint8 pixels (images_u8), 4x smaller than floats */
    const atomic_int *interrupt; /* optional: set non-zero (e.g. from SIGINT) to stop */
    /* Optional; default: a line on stderr. Called from worker threads: must be thread-safe. */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} fl_loader_config;

/* Defaults: 2 workers, prefetch 2, shuffle, augment, error on bad images, re-ID/YOLO defaults. */
fl_loader_config fl_loader_config_defaults(void);

typedef struct fl_batch {
    int64_t epoch, step; /* step: batch index within the epoch */
    int n;               /* samples in this batch (the last one may be short) */
    int out_w, out_h;
    float *images;       /* n * out_h * out_w * 3 in [0,1], 64-byte aligned (NULL if output_u8) */
    uint8_t *images_u8;  /* the same as bytes when output_u8 (else NULL), 64-byte aligned */
    int32_t *labels;     /* n */
    int64_t *items;      /* item index behind each sample (after bad-image replacement) */
    int32_t *nboxes;     /* DETECT: n */
    fl_box *boxes;       /* DETECT: n * max_boxes, output pixels */
    int max_boxes;
} fl_batch;

typedef struct fl_loader fl_loader;

/* Validates the config (every error names the key) and starts the workers. */
fl_loader *fl_loader_open(const fl_loader_config *c, fl_err *e);
/* Next batch, in order. 1: *out is valid until the next call or close; 0: all epochs done;
 * -1: error (a bad image under ERROR, an interrupt, out of memory) with e filled. */
int fl_loader_next(fl_loader *l, const fl_batch **out, fl_err *e);
int64_t fl_loader_batches_per_epoch(const fl_loader *l);
/* Bad images seen so far (each failed read counts once per occurrence). */
uint64_t fl_loader_bad_images(const fl_loader *l);
/* Stops and joins every worker, frees everything. Safe at any point, also after an error. */
void fl_loader_close(fl_loader *l);

/* The epoch order (sampler.c): n item indices for `epoch`, a pure function of the arguments. */
int fl_sampler_epoch(fl_sampler_kind kind, const fl_loader_item *items, size_t n, float power,
                     uint64_t seed, int64_t epoch, int64_t *out, fl_err *e);

/* One sample (sample.c), exactly as a worker makes it: position p of epoch e holding item
 * `item`. Writes out_h*out_w*3 values to img (floats in [0,1]) or, when img is NULL, to img_u8
 * (bytes); label; detection boxes (cap max_boxes) and count.
 * *item_used gets the item actually used (differs after a skipped bad image). */
int fl_loader_make_sample(const fl_loader_config *c, int64_t epoch, int64_t p, int64_t item,
                          float *img, uint8_t *img_u8, int32_t *label, fl_box *boxes,
                          int32_t *nboxes,
                          int64_t *item_used, atomic_ullong *bad_count, fl_err *e);

#endif
