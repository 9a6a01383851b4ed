/* Baselines to beat: answers built without any learned model, scored like real submissions.
 *
 * new_first: new_individual, then the four most photographed train individuals.
 * pixel_knn: raw-pixel thumbnails (area-downscaled colour squares, mean-centred, L2-normalised),
 *   cosine kNN against train, the five nearest distinct individuals; new_individual goes first
 *   when the best similarity is below a threshold, else second. The threshold is chosen by
 *   leave-one-out on train (an image whose individual has no other train image plays a new
 *   individual), like the reproduced solution's out-of-fold calibration. */
#ifndef FLUKE_BASELINES_H
#define FLUKE_BASELINES_H

#include "stages/labels/labels.h"

/* The k most photographed train individuals, most first (ties by id); returns how many. */
int fl_labels_top_individuals(const fl_train_set *train, int k, const char **top, fl_err *e);

/* The 5 labels for every test image; out is n_test rows (strings borrowed from train). With
 * fewer than 4 train individuals a row holds new_individual and each of them, then NULLs (the
 * same holds for pixel_knn). */
int fl_baseline_new_first(const fl_train_set *train, int n_test,
                          const char *(*out)[FL_MAP_K], fl_err *e);

typedef struct fl_knn_opts {
    int thumb;          /* thumbnail side, pixels (e.g. 16) */
    int threads;        /* <= 0: OpenMP default */
    int has_threshold;  /* 1: use threshold, 0: calibrate by leave-one-out on train */
    double threshold;
} fl_knn_opts;

typedef struct fl_knn_report {
    double threshold;   /* the one used */
    double loo_map5;    /* leave-one-out MAP@5 on train at that threshold (calibrated only) */
    double new_first_share; /* share of test images answered new_individual first */
} fl_knn_report;

/* Thumbnail features of images in dir: n x dim floats (dim = thumb*thumb*3), malloc'd, not yet
 * centred. */
float *fl_knn_features(const char *dir, const char *const *images, int n, int thumb, int threads,
                       fl_err *e);

int fl_baseline_pixel_knn(const fl_train_set *train, const char *train_dir,
                          const char *const *test_images, int n_test, const char *test_dir,
                          const fl_knn_opts *o, const char *(*out)[FL_MAP_K],
                          fl_knn_report *rep, fl_err *e);

#endif
