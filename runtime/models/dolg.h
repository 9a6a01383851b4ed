/* DOLG (Deep Orthogonal Local and Global features, SPECS.md section 4) on two backbone maps.
 *
 * Local branch (shallow map, e.g. EfficientNet stage 5, stride 16):
 *   mam.d{i}: 3x3 conv, dilation d_i, padding d_i, bias, -> widths[i]   (i < n_dil)
 *   concat -> mam.conv1 1x1 (bias) -> dim -> ReLU
 *   attention2d.conv1 1x1 (bias) -> attention2d.bn (eps 1e-5, momentum att_bn_momentum) = a
 *   f_l = L2-normalize(a) over channels; att = softplus(attention2d.conv2 1x1 (bias, -> 1)(ReLU(a)))
 *   local = att * f_l
 * Global branch (deep map, stage 7, stride 32):
 *   conv_g 1x1 (bias) -> dim -> bn_g (eps 1e-3, momentum 0.1) -> SiLU -> GeM (gem.p, init p0) = f_g
 * Orthogonal fusion per position: f_orth = local - ((local . f_g) / ||f_g||^2) f_g; mean over H, W;
 * output = concat(mean f_orth, f_g): [N, 2*dim].
 * Parameter names are prefix + the names above (the fixture script's PyTorch module uses them). */
#ifndef FLUKE_MODELS_DOLG_H
#define FLUKE_MODELS_DOLG_H

#include "runtime/graph.h"

#define FL_DOLG_MAX_DIL 4

typedef struct fl_dolg_cfg {
    int n_dil;                          /* atrous branches, 1..FL_DOLG_MAX_DIL (3) */
    int dilations[FL_DOLG_MAX_DIL];     /* (3, 6, 9) */
    int64_t widths[FL_DOLG_MAX_DIL];    /* output channels of each branch (dim/4 each) */
    int64_t dim;                        /* local and global feature width (512) */
    double gem_p0;                      /* GeM p init (3) */
    double gem_eps;                     /* GeM clamp (1e-6) */
    double att_bn_momentum;             /* attention BN momentum (0.01, as the DOLG reference code;
                                           short runs want 0.1 so eval statistics keep up) */
} fl_dolg_cfg;

/* Defaults: dilations (3, 6, 9), widths dim/4 (at least 1), GeM p 3, eps 1e-6, attention BN
 * momentum 0.01. */
fl_dolg_cfg fl_dolg_defaults(int64_t dim);
int fl_dolg_check(const fl_dolg_cfg *c, fl_err *e);

/* Builds the fusion; returns [N, 2*dim] (or -1, the error in the graph). */
fl_id fl_dolg_build(fl_graph *g, fl_id shallow, fl_id deep, const fl_dolg_cfg *c, const char *prefix);

#endif
