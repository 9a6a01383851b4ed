/* EfficientNet B0-B7 (SPECS.md section 3) built on the graph API, exactly as timm 0.9 builds
 * `efficientnet_bN` (BN eps 1e-5, symmetric k//2 padding) and `tf_efficientnet_bN` (BN eps 1e-3,
 * TensorFlow "same" padding), at any width / depth multiplier.
 *
 * Parameter names are timm's state-dict names (conv_stem.weight, bn1.*, blocks.S.B.conv_pw ...,
 * conv_head.weight, bn2.*, classifier.*), optionally under a prefix, so a timm safetensors file
 * (e.g. tf_efficientnet_b7.ns_jft_in1k) loads by name (fl_effnet_load).
 *
 * Use:
 *   fl_effnet_cfg c;  fl_effnet_preset("tf_efficientnet_b7", &c, &e);  c.num_classes = 0;
 *   fl_effnet_out o;  fl_effnet_build(g, x, &c, "", &o);   x is NHWC [N,H,W,3]
 *   o.tap[3], o.tap[4]: stage-5 (stride 16) and stage-7 (stride 32) maps for DOLG. */
#ifndef FLUKE_MODELS_EFFNET_H
#define FLUKE_MODELS_EFFNET_H

#include "runtime/graph.h"
#include "runtime/safetensors.h"

#define FL_EFFNET_STAGES 7
#define FL_EFFNET_TAPS 5

typedef struct fl_effnet_cfg {
    double width;          /* channel multiplier (B0 1.0 ... B7 2.0) */
    double depth;          /* repeat multiplier (B0 1.0 ... B7 3.1) */
    int tf;                /* 1: tf_ variant (eps 1e-3, "same" padding); 0: native (eps 1e-5) */
    double bn_momentum;    /* PyTorch momentum (0.1) */
    double drop_rate;      /* dropout before the classifier (B0 0.2 ... B7 0.5) */
    double drop_path_rate; /* stochastic depth of the last block; block i gets rate*i/num_blocks */
    int num_classes;       /* > 0: global pool + dropout + classifier.{weight,bias} */
    int with_head;         /* 1: conv_head + bn2 (+ SiLU) after the blocks; 0: stop at the blocks */
    int resolution;        /* the preset's native resolution (informative; any input size works) */
} fl_effnet_cfg;

/* Layer sizes derived from a cfg (timm's round_channels / ceil depth scaling). */
typedef struct fl_effnet_arch {
    int64_t stem;                        /* conv_stem output channels */
    int64_t out[FL_EFFNET_STAGES];       /* output channels per stage */
    int repeats[FL_EFFNET_STAGES];
    int num_blocks;
    int64_t num_features;                /* conv_head output channels */
} fl_effnet_arch;

/* "efficientnet_b0".."efficientnet_b7", "tf_efficientnet_b0".."tf_efficientnet_b7" (a timm
 * pretrained tag after a dot, e.g. ".ns_jft_in1k", is accepted and ignored). Fills the scaling
 * table values, 1000 classes, head on, drop path 0.2, momentum 0.1. */
int fl_effnet_preset(const char *name, fl_effnet_cfg *cfg, fl_err *e);
/* Checks the multipliers and rates; computes the layer sizes. */
int fl_effnet_arch_of(const fl_effnet_cfg *cfg, fl_effnet_arch *a, fl_err *e);
/* timm's make_divisible(v, 8, round_limit 0.9). */
int64_t fl_effnet_round_channels(double channels, double multiplier);

typedef struct fl_effnet_out {
    fl_id tap[FL_EFFNET_TAPS];      /* outputs of stages 1,2,3,5,7 (strides 2,4,8,16,32) */
    int64_t tap_channels[FL_EFFNET_TAPS];
    fl_id features;                 /* after conv_head/bn2/SiLU (or the last stage without head) */
    fl_id pooled;                   /* [N, C] global average pool of features (-1 without classifier) */
    fl_id logits;                   /* [N, num_classes] or -1 */
} fl_effnet_out;

/* Builds the network on x (NHWC, 3 channels) with parameter names prefix + timm name (prefix ""
 * or e.g. "backbone." ending with a dot). Returns the last node (logits, or features); -1 on a
 * builder error (see fl_graph_error). */
fl_id fl_effnet_build(fl_graph *g, fl_id x, const fl_effnet_cfg *cfg, const char *prefix,
                      fl_effnet_out *out);

/* Loads the parameters whose names start with prefix from a timm state dict (names without the
 * prefix). Strict: every such parameter must be in the file with its shape, and every tensor in
 * the file must be used, except those under one of the `skip` prefixes (e.g. "classifier.",
 * "conv_head.", "bn2." when the model was built without them; NULL-terminated list or NULL).
 * On failure nothing is written and the error lists every missing, unexpected and mis-shaped key.
 * num_batches_tracked may be absent (PyTorch's BN tolerates that too) or an integer tensor (as
 * timm files store it); it is converted. It takes a fresh fl_pstore_params view, which may move
 * any earlier view of the store: load before creating an optimizer, or re-fetch views after. */
int fl_effnet_load(fl_pstore *ps, const fl_st_set *set, const char *prefix,
                   const char *const *skip, fl_err *e);

#endif
