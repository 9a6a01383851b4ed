/* The crop stage's machinery (stages/crop.c is the stage; this is what it and the tests use):
 *
 *   geometry.c   decode scales, the letterbox mapping back to full-size upright pixels, margin
 *                and clamp, the square output (stretched or padded with the letterbox grey)
 *   opts.c       the `crop` config section -> fl_crop_opts (defaults for absent keys)
 *   engine.c     detect + crop a list of images: batched forward, per-image work on threads
 *   crops_csv.c  crops.csv written and read back, and the detector's recall against true boxes
 *
 * Coordinates are continuous pixels (x1,y1,x2,y2; pixel i covers [i, i+1)) of the full-size
 * upright image (after EXIF orientation), whatever scale an image was decoded at. */
#ifndef FLUKE_CROP_H
#define FLUKE_CROP_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/image/image.h"
#include "runtime/models/yolo.h"
#include "stages/api/stage.h"

/* The stage (stages/crop.c) and its config keys, for the registry. */
extern const fl_stage_def fl_stage_crop;
extern const fl_cfg_field fl_crop_schema[];

#define FL_CROP_FILL 114 /* ultralytics' letterbox grey */

/* ---------------------------------------------------------------- geometry */

/* The largest JPEG scale denominator d in {8, 4, 2} (else 1) with ceil(long side / d) >= need:
 * the smallest decode that still covers `need` pixels on the image's long side. */
int fl_crop_denom_long(int w, int h, int need);
/* The largest d in {8, 4, 2} (else 1) at which a region rw x rh of the full image still has
 * at least `size` pixels on both sides (long side only when keep_aspect). */
int fl_crop_denom_region(float rw, float rh, int size, int keep_aspect);

/* A box of the detector input (letterbox lb of a decoded image) -> full-size pixels of a
 * full_w x full_h image, clamped to it. The letterbox put the decoded image, resized to
 * new_w x new_h, at (left, top); decoded and full-size images cover the same area. */
fl_box fl_crop_unletterbox(fl_box b, const fl_letterbox *lb, int full_w, int full_h);
/* b widened by margin * (box size) on every side, clamped to [0,w] x [0,h]. */
fl_box fl_crop_widen(fl_box b, float margin, int w, int h);
/* The region r (full-size pixels of a full_w-wide image) cut from img, a decode of that image
 * at any scale (rounded outward, clamped), resized to size x size: stretched, or (keep_aspect)
 * the long side to size and centred on FL_CROP_FILL. */
fl_image *fl_crop_cut(const fl_image *img, int full_w, int full_h, fl_box r, int size,
                      int keep_aspect, fl_err *e);
/* The square output of a whole image (or cut): resize as fl_crop_cut does. */
fl_image *fl_crop_square(const fl_image *img, int size, int keep_aspect, fl_err *e);

/* ---------------------------------------------------------------- detection */

/* The first detection fl_yolo_detect would return for image b (the highest score passing conf,
 * the first cell on ties), without its NMS: NMS always keeps the top box, whatever the IoU
 * threshold. Linear in the cells, where NMS is quadratic in the candidates (every cell of an
 * undertrained detector). 1 found, 0 none, -1 out of memory. */
int fl_crop_best_detection(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads,
                           int64_t b, float conf, fl_yolo_det *out, fl_err *e);

/* ---------------------------------------------------------------- options */

typedef struct fl_crop_opts {
    double margin;        /* crop.margin: fraction of the box size added per side (0.1) */
    int size;             /* crop.size: output side in pixels (256) */
    int keep_aspect;      /* crop.keep_aspect: pad to square instead of stretching (false) */
    int quality;          /* crop.quality: JPEG quality (95) */
    float conf, iou;      /* crop.conf 0.25, crop.iou 0.45 (SPECS.md section 5) */
    int max_det;          /* crop.max_det 300 */
    int per_class;        /* crop.per_class: the best box of every class, not only the best */
    int given_boxes;      /* crop.train_boxes == "given": train images with a box use it */
    int batch;            /* crop.batch: images per detector forward (16) */
    double max_bad_share; /* crop.max_bad_share: corrupt images tolerated (0.001) */
    int imgsz;            /* detector input (0: the detector's training size); not a config key */
    /* 0 (default): one detector graph per image thread, each forwarded on its own thread;
     * N > 0: a single graph forwarded on an OpenMP team of N (for measurements). Not a key. */
    int forward_threads;
} fl_crop_opts;

fl_crop_opts fl_crop_opts_default(void);
/* Reads the `crop` section (NULL: all defaults); a key of the wrong type or outside its range
 * is an error naming it. */
int fl_crop_opts_from_json(const cJSON *sec, fl_crop_opts *o, fl_err *e);

/* ---------------------------------------------------------------- the engine */

enum { FL_CROP_TRAIN = 0, FL_CROP_TEST = 1 };

typedef struct fl_crop_item {
    const char *image; /* file name, also the crop's name */
    const char *path;  /* the JPEG to read */
    int split;         /* FL_CROP_TRAIN / FL_CROP_TEST */
    int has_box;       /* a given box (used when opts.given_boxes and split is train) */
    fl_box box;        /* full-size pixels */
} fl_crop_item;

typedef struct fl_crop_stats {
    int n;          /* images given */
    int n_crops;    /* crops written (several per image with per_class) */
    int n_detected, n_given, n_fallback, n_bad;
    char **bad;     /* n_bad "image: message" lines, in item order */
    double t_decode, t_forward, t_write; /* seconds in each phase */
} fl_crop_stats;

void fl_crop_stats_free(fl_crop_stats *s);

typedef struct fl_crop_hooks {
    void (*progress)(void *user, int done, int total, const fl_crop_stats *s);
    void (*log)(void *user, const char *line);
    void *user;
} fl_crop_hooks;

/* Detects (detector_path: a detector.safetensors) and crops every item into
 * out_dir/crops/{train,test}/, writing out_dir/crops.csv and out_dir/bad_images.csv. threads:
 * the image workers and the forward's OpenMP team; the output bytes do not depend on it.
 * Corrupt images are skipped (logged, counted, listed in bad_images.csv); more than
 * max_bad_share of n fails naming the count and the first few. */
int fl_crop_run(const fl_crop_opts *o, const char *detector_path, const fl_crop_item *items,
                int n, int threads, const char *out_dir, const fl_crop_hooks *hooks,
                fl_crop_stats *st, fl_err *e);

/* ---------------------------------------------------------------- crops.csv */

/* crops.csv: image,split,x1,y1,x2,y2,conf,fallback,class,crop: the box in full-size pixels
 * before the margin (the whole image and conf 0 for a fallback), the detector's class name
 * (empty for a fallback or a given box), the crop file relative to the stage output. */
#define FL_CROPS_CSV_HEADER "image,split,x1,y1,x2,y2,conf,fallback,class,crop\n"

typedef struct fl_crops_score {
    int n_test;        /* test images with a true box */
    int n_test_hit;    /* ... whose crops.csv box has IoU >= 0.5 with it (any of its rows) */
    int n_test_absent; /* ... without a row in crops.csv (skipped as corrupt) */
    int n_images;      /* distinct images in crops.csv (train and test) */
    int n_fallback;    /* ... cropped as the whole image */
    double test_iou50_recall, fallback_share;
} fl_crops_score;

float fl_box_iou(fl_box a, fl_box b);
/* Scores crops.csv against a box file of true test boxes (either public format; an image with
 * several boxes counts as a hit when any matches). */
int fl_crops_score_files(const char *crops_csv, const char *truth_boxes, fl_crops_score *r,
                         fl_err *e);

#endif
