/* Trainable parameters as the optimizers, checkpoints and weight loaders see them: named flat
 * float32 arrays with their gradients. The graph owns the memory; this is the shared view.
 * Names follow the timm / ultralytics state-dict convention ("blocks.1.0.conv_pw.weight"), and
 * shapes are PyTorch's (conv weights OIHW), so pretrained files load by name without repacking. */
#ifndef FLUKE_PARAM_H
#define FLUKE_PARAM_H

#include <stddef.h>
#include <stdint.h>

#define FL_MAX_DIMS 8

typedef struct fl_param {
    const char *name;
    float *data;
    float *grad;       /* NULL for buffers (BN running stats) */
    size_t numel;
    int ndim;
    int64_t shape[FL_MAX_DIMS];
    int no_decay;      /* 1 for BN weights/biases and all biases: no weight decay */
    int is_buffer;     /* running_mean/var etc.: saved and loaded, never optimized */
    int group;         /* parameter group index (per-group lr multipliers) */
    uint64_t *version; /* the owning store's parameter version (NULL: not a store's view);
                          whoever writes data through this view bumps it, fl_param_list_touch */
} fl_param;

typedef struct fl_param_list {
    fl_param *v;
    size_t n;
} fl_param_list;

/* Declares that data of the list's parameters was written (optimizer step, checkpoint load):
 * cached derivatives of the parameters (a conv's packed weights) are remade before next use. */
static inline void fl_param_list_touch(const fl_param_list *pl) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->v[i].version) ++*pl->v[i].version;
}

#endif
