/* Checks shared by the readers in stages/labels (not a public API). */
#ifndef FLUKE_LABELS_INTERNAL_H
#define FLUKE_LABELS_INTERNAL_H

#include "stages/labels/labels.h"

/* A plain, non-empty file name (no directory parts). */
int fl_labels_check_image_name(const fl_csv *c, int line, const char *name, fl_err *e);
/* No name twice; the message gives both lines. */
int fl_labels_check_unique(const fl_csv *c, const char *const *names, const int *lines, int n,
                           const char *what, fl_err *e);
/* Every name is a regular file in dir (no check when dir is NULL). */
int fl_labels_check_present(const fl_csv *c, const char *dir, const char *const *names,
                            const int *lines, int n, fl_err *e);

#endif
