/* The knn stage's inputs, read and cross-checked: folds.csv (ids and species interned), the
 * sample submission, every fold's embeddings (the same rows in the same order, each train row in
 * folds.csv and each test row in the sample), and a pseudo round's pseudo-labelled test images
 * as extra gallery rows. Internal to stages/knn.c; split out to keep that file about ranking. */
#ifndef FLUKE_IDENT_KNN_INPUT_H
#define FLUKE_IDENT_KNN_INPUT_H

#include <stdint.h>

#include "stages/ident/embeddings.h"
#include "stages/ident/folds.h"
#include "stages/labels/labels.h"

typedef struct fl_knn_in {
    char *folds_path, *sample_path;
    fl_folds folds;
    int nf, K;
    const char **img;
    int32_t *fold, *ind, *sp; /* per folds.csv row */
    int nind, nsp;
    const char **ids, **spn; /* individual and species names */
    fl_submission sample;
    fl_emb E[FL_FOLDS_MAX_K];
    int64_t ntr, nte;         /* embedding rows of each split */
    int64_t *tr_row, *te_row; /* embedding row of the i-th train / test row */
    int32_t *tr_f;            /* folds.csv row of train row i */
    int32_t *te_s;            /* sample row of test row i */
    int32_t fill[FL_MAP_K];
    int nfill;
    /* pseudo-labelled test images (input "pseudo", later rounds): extra gallery rows after the
     * ntr train rows, labelled with their pseudo individual */
    int64_t npl;
    int64_t *pl_row; /* embedding row */
    int32_t *pl_ind, *pl_sp;
    int64_t *te_excl; /* per test row: its own gallery row (ntr + j) when pseudo-labelled */
} fl_knn_in;

void fl_knn_in_free(fl_knn_in *in);

/* The species of gallery row g: a train row's own, a pseudo-labelled row's individual's. */
static inline int32_t fl_knn_gallery_species(const fl_knn_in *in, int64_t g) {
    return g < in->ntr ? in->sp[in->tr_f[g]] : in->pl_sp[g - in->ntr];
}

/* in->folds_path -> folds, interned ids and species, the most frequent individuals (fill). */
int fl_knn_read_folds(fl_knn_in *in, fl_err *e);
/* dirs[k] (k < in->K): fold k's embeddings directory; the row maps tr_row/te_row/tr_f/te_s.
 * Needs folds and the sample read first. */
int fl_knn_read_embeddings(fl_knn_in *in, const char *const *dirs, fl_err *e);
/* pseudo.csv at path -> the extra gallery rows; *skipped counts the rows left out (an individual
 * folds.csv does not know, an image without a test embedding, a repeat). */
int fl_knn_read_pseudo(fl_knn_in *in, const char *path, int64_t *skipped, fl_err *e);

#endif
