/* Pseudo-labels: the confident part of a round's test predictions, taken as labels for the next
 * round. The confidence threshold is calibrated, not guessed: it is the lowest top-1 confidence
 * at which the out-of-fold queries at or above it reach the target top-1 precision (the share
 * whose nearest individual is the truth), so the expected precision of the labels is known.
 *
 * pseudo.csv (the pseudo stage's artifact): image,individual_id,species,confidence, one row per
 * test image taken, in the order of the sample submission. */
#ifndef FLUKE_IDENT_PSEUDO_H
#define FLUKE_IDENT_PSEUDO_H

#include <stdint.h>

#include "artifacts/util.h"
#include "stages/labels/labels.h"

#define FL_PSEUDO_FILE "pseudo.csv"
#define FL_PSEUDO_SUMMARY "pseudo.json"
#define FL_KNN_OOF_FILE "oof.csv"          /* knn: the OOF queries' top-1 (see stages/knn.c) */
#define FL_KNN_PRED_FILE "predictions.csv" /* knn: the test images' top-1 */

typedef struct fl_pseudo_cut {
    int reached;      /* some cut with >= min_n queries reaches the target */
    double threshold; /* take confidence >= threshold (+inf when not reached) */
    double precision; /* OOF top-1 precision at or above it */
    int64_t n_above;  /* OOF queries at or above it */
} fl_pseudo_cut;

/* conf[i], hit[i] (top-1 correct) for n OOF queries. Considers every cut "confidence >= c[i]"
 * holding at least min_n queries and takes the lowest whose precision is >= target, never below
 * floor. Deterministic: ties in confidence are cut together. */
int fl_pseudo_threshold(const float *conf, const uint8_t *hit, int64_t n, double target, int min_n,
                        double floor, fl_pseudo_cut *out, fl_err *e);

typedef struct fl_pseudo {
    int n;
    const char **image, **individual, **species;
    float *conf;
    fl_csv csv;
} fl_pseudo;

/* Reads and checks pseudo.csv (header, non-empty fields, a finite confidence, no repeated image);
 * errors name the file and line. */
int fl_pseudo_read(const char *path, fl_pseudo *p, fl_err *e);
void fl_pseudo_free(fl_pseudo *p);

#endif
