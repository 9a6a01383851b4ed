/* DEV SHIM: replaced by stages/detector/dataset.h when it lands. */
#ifndef FLUKE_DETSET_SHIM_H
#define FLUKE_DETSET_SHIM_H
#include "runtime/data/loader.h"
typedef struct fl_detset_opts { const char *data_dir, *boxes; int species_classes; double val_share; uint64_t seed; } fl_detset_opts;
typedef struct fl_detset {
    fl_loader_item *train, *val; size_t ntrain, nval; int nclasses; char **classes; int nwarnings; char **warnings;
    fl_box *boxes; char **paths;
} fl_detset;
int fl_detset_build(const fl_detset_opts *o, fl_detset *d, fl_err *e);
void fl_detset_free(fl_detset *d);
#endif
