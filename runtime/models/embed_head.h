/* The identification model's head (SPECS.md sections 2 and 4): the neck (dropout -> linear ->
 * BN) that turns a pooled feature into the embedding, the ArcFace family of margin heads, an
 * optional species head, and the whole embedding model (EfficientNet -> DOLG -> neck -> heads).
 *
 * Names: neck.fc.{weight,bias}, neck.bn.*, head.weight [C*K, D] (ArcFace class centres),
 * species_head.{weight,bias}; the backbone under "backbone." (timm names), DOLG under "dolg.".
 *
 * ArcFace (fl_arcface_logits): cos = linear(l2norm(emb), l2norm(W)); with K sub-centres the max
 * over each class's K centres; the label's logit s*cos(t + m) (cos(pi - m) fallback), others
 * s*cos t. Dynamic margins: m_c = a * n_c^(-b) + c per class (1st place: 0.271, 0.364, 0.05),
 * fed through a [C] input the caller fills with fl_dynamic_margins. */
#ifndef FLUKE_MODELS_EMBED_HEAD_H
#define FLUKE_MODELS_EMBED_HEAD_H

#include "runtime/graph.h"
#include "runtime/models/dolg.h"
#include "runtime/models/effnet.h"

/* dropout p (train mode) -> prefix.fc (bias) -> prefix.bn (BatchNorm1d eps 1e-5, bn_momentum). */
fl_id fl_neck_build(fl_graph *g, fl_id x, double dropout, int64_t emb_dim, double bn_momentum,
                    const char *prefix);

typedef struct fl_arcface_cfg {
    int num_classes;
    int subcenters;     /* K >= 1 */
    double s, m;        /* scale, constant margin */
    int dynamic;        /* 1: per-class margins from a [num_classes] input (m ignored) */
} fl_arcface_cfg;

/* cos [N, C] -> logits [N, C]. W = prefix.weight [C*K, D], Xavier-uniform init. margins is the
 * [C] input with dynamic margins, or -1. */
fl_id fl_arcface_logits(fl_graph *g, fl_id emb, fl_id labels, fl_id margins, const fl_arcface_cfg *c,
                        const char *prefix);
/* m_c = a * n_c^(-b) + c for every class count n (>= 1). */
int fl_dynamic_margins(const int64_t *counts, int n, double a, double b, double c, float *out, fl_err *e);

typedef struct fl_embed_cfg {
    fl_effnet_cfg backbone;      /* num_classes and with_head are ignored (the taps are used) */
    fl_dolg_cfg dolg;
    int local_tap, global_tap;   /* backbone taps (fl_effnet_out.tap) feeding DOLG's local and
                                    global branches: 3 and 4 (stages 5 and 7, strides 16, 32) */
    double dropout;              /* neck dropout (0.2) */
    double neck_bn_momentum;     /* neck BN momentum (0.1) */
    int64_t emb_dim;             /* embedding size (2048 in the reproduced solution) */
    fl_arcface_cfg arc;
    int num_species;             /* > 0: species_head linear + its CE in the loss */
    double species_weight;       /* weight of the species CE in the loss */
} fl_embed_cfg;

/* The reproduced solution's head at emb_dim / num_classes (B7 backbone, DOLG dim 512, dropout
 * 0.2, s 30, m 0.3, K 1, no species head). */
fl_embed_cfg fl_embed_defaults(int num_classes, int64_t emb_dim);

typedef struct fl_embed_model {
    fl_id x;           /* input [N, H, W, 3] */
    fl_id labels;      /* [N] individual ids (training graphs) or -1 */
    fl_id species;     /* [N] species ids or -1 */
    fl_id margins;     /* [C] dynamic margins or -1 */
    fl_id fused;       /* DOLG output [N, 2*dim] */
    fl_id emb;         /* neck output [N, emb_dim] */
    fl_id logits;      /* ArcFace logits [N, C] or -1 */
    fl_id species_logits;
    fl_id loss;        /* scalar or -1 */
} fl_embed_model;

/* Builds the model for a batch of n images of h x w. with_loss: labels (+ species) inputs, the
 * ArcFace logits and the loss (the compile target); without it only up to the embedding. */
int fl_embed_build(fl_graph *g, const fl_embed_cfg *c, int64_t n, int64_t h, int64_t w, int with_loss,
                   fl_embed_model *m, fl_err *e);

#endif
