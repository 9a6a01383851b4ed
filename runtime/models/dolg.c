/* DOLG fusion on the graph API; see dolg.h for the structure. NHWC: channels are the last axis,
 * so "over channels" reductions are sums over axis 3 and f_g broadcasts as [N,1,1,dim]. */
#include "runtime/models/dolg.h"

#include <stdio.h>
#include <string.h>

#include "runtime/graph_internal.h" /* fl_graph_fail: builder errors recorded in the graph */

fl_dolg_cfg fl_dolg_defaults(int64_t dim) {
    fl_dolg_cfg c;
    memset(&c, 0, sizeof c);
    c.n_dil = 3;
    c.dim = dim;
    for (int i = 0; i < 3; i++) {
        c.dilations[i] = 3 * (i + 1);
        c.widths[i] = dim / 4 > 0 ? dim / 4 : 1;
    }
    c.gem_p0 = 3.0;
    c.gem_eps = 1e-6;
    c.att_bn_momentum = 0.01;
    return c;
}

int fl_dolg_check(const fl_dolg_cfg *c, fl_err *e) {
    if (!c) return fl_errf(e, "dolg: no config");
    if (c->n_dil < 1 || c->n_dil > FL_DOLG_MAX_DIL)
        return fl_errf(e, "dolg: %d atrous branches (1..%d)", c->n_dil, FL_DOLG_MAX_DIL);
    for (int i = 0; i < c->n_dil; i++)
        if (c->dilations[i] < 1 || c->widths[i] < 1)
            return fl_errf(e, "dolg: branch %d needs dilation >= 1 and width >= 1 (got %d, %lld)", i,
                           c->dilations[i], (long long)c->widths[i]);
    if (c->dim < 1) return fl_errf(e, "dolg: dim %lld < 1", (long long)c->dim);
    if (!(c->gem_p0 > 0) || !(c->gem_eps > 0)) return fl_errf(e, "dolg: GeM p0 %g and eps %g must be > 0", c->gem_p0, c->gem_eps);
    if (!(c->att_bn_momentum >= 0 && c->att_bn_momentum <= 1))
        return fl_errf(e, "dolg: attention BN momentum %g not in [0, 1]", c->att_bn_momentum);
    return 0;
}

fl_id fl_dolg_build(fl_graph *g, fl_id shallow, fl_id deep, const fl_dolg_cfg *c, const char *prefix) {
    if (shallow < 0 || deep < 0) return -1;
    fl_err e = {{0}};
    if (fl_dolg_check(c, &e) < 0) return fl_graph_fail(g, "%s", e.msg);
    if (!prefix) prefix = "";
    if (strlen(prefix) > 200) return fl_graph_fail(g, "dolg: prefix too long");
    int64_t ss[FL_MAX_DIMS], sd[FL_MAX_DIMS];
    if (fl_graph_shape(g, shallow, ss) != 4 || fl_graph_shape(g, deep, sd) != 4 || ss[0] != sd[0])
        return fl_graph_fail(g, "dolg: both maps must be NHWC with the same batch");
    char n[6][256];
    fl_id br[FL_DOLG_MAX_DIL];
    for (int i = 0; i < c->n_dil; i++) {
        snprintf(n[0], sizeof n[0], "%smam.d%d", prefix, i);
        br[i] = fl_conv2d_layer(g, shallow, n[0], c->widths[i], 3, 1, c->dilations[i], 1, c->dilations[i], 1);
    }
    fl_id h = c->n_dil > 1 ? fl_concat(g, c->n_dil, br, -1) : br[0];
    snprintf(n[1], sizeof n[1], "%smam.conv1", prefix);
    h = fl_relu(g, fl_conv2d_layer(g, h, n[1], c->dim, 1, 1, 1, 1, 0, 1));
    snprintf(n[2], sizeof n[2], "%sattention2d.conv1", prefix);
    snprintf(n[3], sizeof n[3], "%sattention2d.bn", prefix);
    snprintf(n[4], sizeof n[4], "%sattention2d.conv2", prefix);
    fl_id a = fl_bn_layer(g, fl_conv2d_layer(g, h, n[2], c->dim, 1, 1, 1, 1, 0, 1), n[3], 1e-5, c->att_bn_momentum);
    fl_id fl = fl_l2norm(g, a, 1e-12);
    fl_id att = fl_softplus(g, fl_conv2d_layer(g, fl_relu(g, a), n[4], 1, 1, 1, 1, 1, 0, 1));
    fl_id local = fl_mul(g, att, fl);

    char cg[256], bg[256], gp[256];
    snprintf(cg, sizeof cg, "%sconv_g", prefix);
    snprintf(bg, sizeof bg, "%sbn_g", prefix);
    snprintf(gp, sizeof gp, "%sgem", prefix);
    fl_id fg = fl_bn_silu_layer(g, fl_conv2d_layer(g, deep, cg, c->dim, 1, 1, 1, 1, 0, 1), bg, 1e-3, 0.1);
    fg = fl_gem_layer(g, fg, gp, c->gem_p0, c->gem_eps); /* [N,1,1,dim] */

    /* projection of every local vector onto f_g, removed */
    fl_id dot = fl_sum(g, fl_mul(g, local, fg), 1u << 3, 1);  /* [N,H,W,1] */
    fl_id nrm2 = fl_sum(g, fl_mul(g, fg, fg), 1u << 3, 1);    /* [N,1,1,1] */
    fl_id orth = fl_sub(g, local, fl_mul(g, fl_div(g, dot, nrm2), fg));
    fl_id pooled = fl_reshape(g, fl_global_avgpool(g, orth), 2, (int64_t[]){ss[0], c->dim});
    fl_id fgv = fl_reshape(g, fg, 2, (int64_t[]){ss[0], c->dim});
    return fl_concat(g, 2, (fl_id[]){pooled, fgv}, -1);
}
