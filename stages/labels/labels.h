/* labels: the competition's CSV files and its metric.
 *
 * Readers for train.csv, box files (both public formats), submissions and the hidden solution;
 * a submission writer and validator; MAP@5 exactly as Kaggle scores it. Readers accept a UTF-8
 * BOM, CRLF line ends and quoted fields, and report bad input as "file:line: what". */
#ifndef FLUKE_LABELS_H
#define FLUKE_LABELS_H

#include <stddef.h>

#include "artifacts/util.h"

/* ---------------------------------------------------------------- CSV */

typedef struct fl_csv_row {
    int line; /* 1-based line where the record starts */
    int nf;
    char **f;
} fl_csv_row;

typedef struct fl_csv {
    char *name;   /* file name used in messages */
    int ncols;
    char **header;
    int nrows;    /* data rows: rows[1..nrows]; rows[0] is the header line */
    fl_csv_row *rows;
    char *buf;    /* field storage */
    char **fields;
} fl_csv;

int fl_csv_parse(const char *text, size_t len, const char *name, fl_csv *out, fl_err *e);
int fl_csv_read(const char *path, fl_csv *out, fl_err *e);
void fl_csv_free(fl_csv *c);
int fl_csv_col(const fl_csv *c, const char *name); /* column index, or -1 */
/* Finds each named column (idx[k]) and checks every row has exactly ncols fields. */
int fl_csv_require(const fl_csv *c, const char *const *cols, int n, int *idx, fl_err *e);

/* ---------------------------------------------------------------- string -> int map */

typedef struct fl_strmap {
    size_t cap, n;
    const char **keys; /* borrowed: the caller keeps the strings alive */
    int *vals;
} fl_strmap;

int fl_strmap_init(fl_strmap *m, size_t expected, fl_err *e);
void fl_strmap_free(fl_strmap *m);
/* Inserts key -> val; returns the existing value (and changes nothing) if key is present,
 * -1 when inserted, -2 when out of memory. */
int fl_strmap_put(fl_strmap *m, const char *key, int val);
int fl_strmap_get(const fl_strmap *m, const char *key); /* -1 if absent */

/* ---------------------------------------------------------------- species fixes */

#define FL_LABEL_NFIXES 4
/* The SPECS.md fixes: globis, pilot_whale -> short_finned_pilot_whale; kiler_whale ->
 * killer_whale; bottlenose_dolpin -> bottlenose_dolphin. Returns the canonical name (a static
 * string) and sets *rule to the fix index, or returns raw and sets *rule = -1. */
const char *fl_species_fix(const char *raw, int *rule);
const char *fl_species_fix_raw(int rule); /* the misspelling fixed by rule */

/* ---------------------------------------------------------------- train.csv */

typedef struct fl_train_set {
    int n;
    const char **image, **species, **individual; /* species after the fixes */
    int *line;
    int fix_count[FL_LABEL_NFIXES]; /* rows changed by each fix */
    int n_fixed;
    fl_csv csv;
} fl_train_set;

/* Reads train.csv (image,species,individual_id; extra columns allowed; at least one row;
 * individual_ids usable as submission labels). When image_dir is not NULL every listed image
 * must exist there. */
int fl_train_read(const char *path, const char *image_dir, fl_train_set *t, fl_err *e);
void fl_train_free(fl_train_set *t);

/* ---------------------------------------------------------------- box files */

typedef struct fl_box_entry {
    const char *image;
    int line;
    int nbox;
    float *xyxy; /* nbox * 4: x1 y1 x2 y2, pixels */
} fl_box_entry;

typedef struct fl_box_set {
    int n;
    fl_box_entry *entry;
    fl_csv csv;
} fl_box_set;

/* Reads a box file: a `bbox` column "[[x1 y1 x2 y2]]" (one or more boxes, also "[]" for
 * none), or a `box` column "x1 y1 x2 y2". When image_dir is not NULL each image must exist. */
int fl_boxes_read(const char *path, const char *image_dir, fl_box_set *b, fl_err *e);
void fl_boxes_free(fl_box_set *b);
/* Parses one bbox value; *xyxy is malloc'd (NULL when nbox is 0). Message without file/line. */
int fl_bbox_parse(const char *s, float **xyxy, int *nbox, fl_err *e);

/* ---------------------------------------------------------------- submissions */

#define FL_NEW_INDIVIDUAL "new_individual"
#define FL_MAP_K 5

typedef struct fl_submission {
    int n;
    const char **image;
    int *line;
    int *npred;                    /* labels given (0.. any; only the first 5 count) */
    const char *(*pred)[FL_MAP_K]; /* the first 5 labels */
    fl_csv csv;
} fl_submission;

/* Reads image,predictions (labels separated by spaces). Duplicate images and a file without
 * data rows are errors. */
int fl_submission_read(const char *path, fl_submission *s, fl_err *e);
/* Every image of s is a regular file in image_dir; the error names the file and line. */
int fl_submission_check_images(const fl_submission *s, const char *image_dir, fl_err *e);
/* Labels a valid answer has with n_known distinct train individuals: 5, or n_known + 1 when
 * fewer than 4 exist (new_individual and each of them). */
int fl_submission_labels_expected(int n_known);
void fl_submission_free(fl_submission *s);
/* A valid competition submission: exactly the test images, 5 distinct labels each (fewer only
 * when there are not enough: fl_submission_labels_expected(known_ids->n)), every label a known
 * individual (key of known_ids) or new_individual. */
int fl_submission_validate(const fl_submission *s, const char *const *test_images, int n_test,
                           const fl_strmap *known_ids, fl_err *e);
/* Writes image,predictions; refuses rows without 5 distinct, well-formed labels. A row may end
 * early with NULL labels (1..4 given) for a train set with fewer than 4 individuals. */
int fl_submission_write(const char *path, int n, const char *const *images,
                        const char *const (*labels)[FL_MAP_K], fl_err *e);

/* ---------------------------------------------------------------- solution and MAP@5 */

typedef struct fl_solution {
    int n;
    const char **image, **individual;
    const char **species; /* NULL entries when the file has no species column */
    int *is_public;
    int *line;
    fl_csv csv;
} fl_solution;

/* Reads image,individual_id,Usage (Public/Private), optional species. */
int fl_solution_read(const char *path, fl_solution *s, fl_err *e);
void fl_solution_free(fl_solution *s);

/* Average precision at 5 for one image with one true label, as Kaggle's map@k: 1/rank of the
 * first correct label among the first 5 (a repeated label counts at its first rank only). */
double fl_apk5(const char *truth, const char *const *pred, int npred);

typedef struct fl_map5_group {
    const char *name;
    int n;
    double sum;
} fl_map5_group;

typedef struct fl_map5_result {
    double all, pub, priv, known, fresh; /* means; 0 for an empty group */
    int n_all, n_pub, n_priv, n_known, n_fresh;
    int n_species;
    fl_map5_group *species; /* per species (when the solution has species), sorted by name */
} fl_map5_result;

/* Scores a submission against the solution; every solution image must be answered and no
 * other image may appear (as on Kaggle). */
int fl_map5_score(const fl_solution *sol, const fl_submission *sub, fl_map5_result *r,
                  fl_err *e);
void fl_map5_result_free(fl_map5_result *r);

#endif
