/* K-fold assignment of the train images (issue 12, Build 1) and its artifact, folds.csv:
 * header `image,individual_id,species,fold`, one row per train.csv row in the same order,
 * species after the fixes, fold in 0..k-1.
 *
 * Two modes, both pure functions of (train.csv rows, k, seed, mode), identical on every machine
 * (every ordering is a total order: ties end on the unique individual name or row index, and
 * the seeded "random" choices are hashes of (seed, name), not a stateful generator):
 *
 * FL_FOLDS_BY_INDIVIDUAL  GroupKFold: an individual's images are all in one fold, so every
 *    validation individual is new to its fold's training part. Stratified by species:
 *    individuals, largest first (ties: seeded hash, then name), go to the fold with the fewest
 *    images of their species (ties: fewest images in all, then a seeded hash of (individual,
 *    fold)). Per species the fold counts differ by at most that species' largest individual.
 * FL_FOLDS_BY_IMAGE  StratifiedKFold on individual_id (the reproduced Kaggle solution): each
 *    individual's m images, in a seeded order, are dealt round-robin from a seeded starting fold
 *    for the floor(m/k) full rounds, so an individual with >= k images is in every fold; the
 *    m mod k left over (all of a small individual's images) go to distinct folds with the fewest
 *    images of its species (same ties). Per species the fold counts differ by at most 1.
 *    Individuals absent from a fold's training part (singletons, ...) are new_individual in its
 *    validation: fl_folds_val_new says which rows.
 * An individual whose rows name different species is stratified under the smallest name. */
#ifndef FLUKE_IDENT_FOLDS_H
#define FLUKE_IDENT_FOLDS_H

#include <stdint.h>

#include "stages/labels/labels.h"

#define FL_FOLDS_MAX_K 100

typedef struct fl_folds {
    int n, k;
    char **image, **individual, **species;
    int32_t *fold;
} fl_folds;

typedef enum fl_folds_by { FL_FOLDS_BY_INDIVIDUAL, FL_FOLDS_BY_IMAGE } fl_folds_by;

/* "individual" | "image"; anything else is an error naming the key folds.by. */
int fl_folds_by_parse(const char *s, fl_folds_by *out, fl_err *e);

/* Assigns folds to the rows of t (2 <= k <= FL_FOLDS_MAX_K). Errors: k larger than the number
 * of individuals (names t's file), a fold left empty. f gets copies of t's columns. */
int fl_folds_make(const fl_train_set *t, int k, uint64_t seed, fl_folds_by by, fl_folds *f,
                  fl_err *e);

/* Writes folds.csv (atomically); fields with a comma or quote are quoted. */
int fl_folds_write(const char *path, const fl_folds *f, fl_err *e);

/* Reads folds.csv: the four columns, plain image names without duplicates, usable individual
 * ids, non-empty species, folds integers in 0..FL_FOLDS_MAX_K-1 with k = max + 1 and no fold
 * 0..k-1 empty. Errors name file:line. */
int fl_folds_read(const char *path, fl_folds *f, fl_err *e);
void fl_folds_free(fl_folds *f);

/* is_new[r] = 1 when no row outside row r's fold has its individual: in that fold's
 * validation its truth is new_individual. Returns the number of such rows, or -1 (memory). */
int fl_folds_val_new(const fl_folds *f, uint8_t *is_new, fl_err *e);

#endif
