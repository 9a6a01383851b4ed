/* Checks shared by the readers in stages/labels (not a public API). */
#ifndef FLUKE_LABELS_INTERNAL_H
#define FLUKE_LABELS_INTERNAL_H

#include <string.h>

#include "stages/labels/labels.h"

/* A user value quoted in a message, cut to FL_QLEN bytes ("%.*s%s" with FL_Q(s)): a 100 KB field
 * must not push the rest of the message out of fl_err. */
#define FL_QLEN 80
#define FL_Q(s) FL_QLEN, (s), (strlen(s) > FL_QLEN ? "..." : "")

/* A plain, non-empty file name (no directory parts, no comma, quote or control character: it
 * must survive our unquoted submission writer). */
int fl_labels_check_image_name(const fl_csv *c, int line, const char *name, fl_err *e);
/* An individual_id usable as a submission label: non-empty, no space, tab, comma, quote or
 * control character (labels in a submission are separated by spaces). */
int fl_labels_check_label(const fl_csv *c, int line, const char *col, const char *v, fl_err *e);
/* At least one data row after the header (a header-only file is an error naming it). */
int fl_labels_check_rows(const fl_csv *c, const char *what, fl_err *e);
/* No name twice; the message gives both lines. */
int fl_labels_check_unique(const fl_csv *c, const char *const *names, const int *lines, int n,
                           const char *what, fl_err *e);
/* Every name is a regular file in dir (no check when dir is NULL). */
int fl_labels_check_present(const fl_csv *c, const char *dir, const char *const *names,
                            const int *lines, int n, fl_err *e);

#endif
