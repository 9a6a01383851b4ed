/* The detector's training set: the boxes of train images from a public box file (SPECS.md
 * section 1, either format), image sizes from JPEG headers, a seeded hold-out by individual, and
 * the validation ground truth in the pixels of the loader's eval input (its letterbox).
 *
 * Public box files cover test images too: their rows are counted and ignored. An image that is
 * neither in train.csv nor a test image, a box entirely outside its image, a malformed bbox cell,
 * an empty box file and a missing one are errors naming the file and line; a box partly outside
 * its image is clipped to it and counted; a boxed train image whose JPEG header does not read is
 * skipped and counted (the caller decides how many it tolerates).
 *
 * The split is a pure function of the seed and the set of (individual, image) pairs: each
 * individual gets a hash of (seed, individual_id), the lowest round(val_share * n) go to
 * validation (at least one individual on each side). Items are in train.csv order. */
#ifndef FLUKE_DETECTOR_DATASET_H
#define FLUKE_DETECTOR_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/data/loader.h"
#include "runtime/models/yolo.h"
#include "stages/labels/labels.h"

#define FL_DETSET_ONE_CLASS_NAME "animal"
#define FL_DETSET_NAMES 5           /* bad images / clipped lines named in the messages */
#define FL_DETSET_PREFIX (64 << 10) /* first read for a JPEG header (then 1 MiB, the whole file)   \
                                     */

typedef enum fl_detset_class_mode {
    FL_DETSET_ONE_CLASS, /* every box is class 0, "animal" */
    FL_DETSET_SPECIES,   /* class = index of the (fixed) species in the sorted list of species
                            of the boxed train images */
} fl_detset_class_mode;

typedef struct fl_detset_opts {
    const char *train_csv; /* train.csv */
    const char *train_dir; /* train images */
    const char *test;      /* sample_submission.csv or the test image folder; NULL: none */
    const char *boxes;     /* box file (config key detector.boxes); NULL: an error */
    fl_detset_class_mode classes;
    double val_share; /* share of the individuals held out, in (0, 1) */
    uint64_t seed;
    int threads; /* JPEG header reads in parallel (0: OpenMP's default); the result
                    does not depend on it */
} fl_detset_opts;

/* What the build did, for the log. */
typedef struct fl_detset_counts {
    int rows;          /* data rows of the box file */
    int rows_used;     /* rows whose boxes are in train or val */
    int rows_test;     /* rows of test images, ignored */
    int rows_empty;    /* train images without boxes ("[]"), ignored */
    int boxed;         /* train images with boxes (used + bad) */
    int boxes;         /* boxes in train + val */
    int boxes_clipped; /* boxes partly outside their image, clipped to it */
    int bad_images;    /* boxed train images whose JPEG header did not read, skipped */
    int individuals;   /* individuals among the used images */
    int val_individuals;
} fl_detset_counts;

/* Per item, alongside train[] / val[]. */
typedef struct fl_detset_image {
    const char *image, *individual, *species; /* species after the SPECS.md fixes */
    int line;                                 /* box-file line */
    int width, height;                        /* full-size upright pixels */
} fl_detset_image;

typedef struct fl_detset {
    int ntrain, nval;
    fl_loader_item *train, *val; /* label -1; boxes in full-size upright pixels */
    fl_detset_image *train_info, *val_info;
    int nclasses;
    const char **classes; /* class names, nclasses */
    fl_detset_counts n;
    /* "" when nothing was clipped / skipped; else a ready warning naming the first few. */
    char clip_warning[FL_ERRLEN];
    char bad_warning[FL_ERRLEN];
    int nbad_names;
    const char *bad_names[FL_DETSET_NAMES]; /* the first bad images (file names) */
    /* storage */
    fl_train_set tset;
    fl_box *box_store;
    char **path_store;
    int npaths;
    char **class_store;
} fl_detset;

/* Builds the set. On error *d is empty (fl_detset_free is still safe). */
int fl_detset_build(const fl_detset_opts *o, fl_detset *d, fl_err *e);
void fl_detset_free(fl_detset *d);

/* A box in full-size upright pixels of a w x h image -> pixels of the loader's eval input for
 * FL_TASK_DETECT at size s (augment off): load_image to long side s (ceil), then letterbox to
 * s x s without scaling up, centred. The same float arithmetic as runtime/data/sample.c and
 * fl_letterbox_apply, so the result equals the loader's boxes bit for bit. */
fl_box fl_detset_letterbox_box(int w, int h, int s, fl_box b);

/* The validation ground truth for fl_yolo_eval / fl_yolo_map: every box of d->val[i] as image i
 * in letterboxed pixels at size s. *gt is malloc'd (the caller frees it). */
int fl_detset_val_gt(const fl_detset *d, int s, fl_yolo_gt **gt, size_t *ngt, fl_err *e);

#endif
