/* The embeddings artifact: a directory holding
 *   embeddings.safetensors  one F32 tensor "embeddings" [n, d], metadata fluke.kind=embeddings
 *   rows.csv                header row,image,split; row = 0..n-1, split train|test
 * Row r of the matrix is the embedding of rows.csv's row r. Rows are L2-normalized by the
 * writer's caller; the reader renormalizes defensively. An image without a crop is simply
 * absent. */
#ifndef FLUKE_IDENT_EMBEDDINGS_H
#define FLUKE_IDENT_EMBEDDINGS_H

#include <stdint.h>

#include "artifacts/util.h"

#define FL_EMB_TENSOR "embeddings"
#define FL_EMB_FILE "embeddings.safetensors"
#define FL_EMB_ROWS "rows.csv"

typedef struct fl_emb {
    int64_t n, d;
    float *m;      /* n x d, row-major */
    char **image;  /* n names */
    uint8_t *test; /* 1: split test, 0: train */
} fl_emb;

/* Creates dir if needed and writes both files (each atomically). */
int fl_emb_write(const char *dir, const fl_emb *E, fl_err *e);
/* Reads and validates; `what` names the artifact in messages ("embed[1]"). Errors: rows.csv's
 * row count differs from the tensor's (names both files), a NaN/inf value (file, row, image),
 * d == 0, a zero row, a bad split or row number, a duplicate image within a split. */
int fl_emb_read(const char *dir, const char *what, fl_emb *E, fl_err *e);
void fl_emb_free(fl_emb *E);

#endif
