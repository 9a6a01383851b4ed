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
} fl_param;

typedef struct fl_param_list {
    fl_param *v;
    size_t n;
} fl_param_list;

#endif
