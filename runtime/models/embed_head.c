/* Neck, ArcFace heads and the embedding model assembly (see embed_head.h). */
#include "runtime/models/embed_head.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/graph_internal.h" /* fl_graph_fail: builder errors recorded in the graph */

fl_id fl_neck_build(fl_graph *g, fl_id x, double dropout, int64_t emb_dim, double bn_momentum,
                    const char *prefix) {
    if (x < 0) return -1;
    if (!prefix) prefix = "";
    if (!(dropout >= 0 && dropout < 1) || emb_dim < 1 || !(bn_momentum >= 0 && bn_momentum <= 1))
        return fl_graph_fail(g, "neck: dropout %g must be in [0, 1), emb_dim %lld >= 1, BN momentum %g in [0, 1]",
                             dropout, (long long)emb_dim, bn_momentum);
    char fc[256], bn[256];
    snprintf(fc, sizeof fc, "%sfc", prefix);
    snprintf(bn, sizeof bn, "%sbn", prefix);
    fl_id h = dropout > 0 ? fl_dropout(g, x, dropout) : x;
    return fl_bn_layer(g, fl_linear_layer(g, h, fc, emb_dim, 1), bn, 1e-5, bn_momentum);
}

fl_id fl_arcface_logits(fl_graph *g, fl_id emb, fl_id labels, fl_id margins, const fl_arcface_cfg *c,
                        const char *prefix) {
    if (emb < 0 || labels < 0) return -1;
    if (!c || c->num_classes < 1 || c->subcenters < 1 || !(c->s > 0) || !(c->m >= 0 && c->m < M_PI / 2))
        return fl_graph_fail(g, "arcface: needs classes >= 1, sub-centres >= 1, s > 0, 0 <= m < pi/2");
    if (c->dynamic && margins < 0) return fl_graph_fail(g, "arcface: dynamic margins without a margins input");
    int64_t es[FL_MAX_DIMS];
    if (fl_graph_shape(g, emb, es) != 2) return fl_graph_fail(g, "arcface: embedding must be [N, D]");
    char wn[256];
    snprintf(wn, sizeof wn, "%sweight", prefix ? prefix : "");
    int64_t rows = (int64_t)c->num_classes * c->subcenters;
    double bound = sqrt(6.0 / (double)(rows + es[1])); /* nn.init.xavier_uniform_ */
    fl_id w = fl_parameter(g, wn, 2, (int64_t[]){rows, es[1]}, (fl_init){FL_INIT_UNIFORM, -bound, bound}, 0);
    fl_id cos = fl_linear(g, fl_l2norm(g, emb, 1e-12), fl_l2norm(g, w, 1e-12), -1);
    if (c->subcenters > 1) cos = fl_subcenter_max(g, cos, c->subcenters);
    return fl_arc_margin(g, cos, labels, c->dynamic ? margins : -1, c->m, c->s);
}

int fl_dynamic_margins(const int64_t *counts, int n, double a, double b, double c, float *out, fl_err *e) {
    if (!counts || !out || n < 1) return fl_errf(e, "dynamic margins: no classes");
    for (int i = 0; i < n; i++) {
        if (counts[i] < 1) return fl_errf(e, "dynamic margins: class %d has count %lld (needs >= 1)", i, (long long)counts[i]);
        out[i] = (float)(a * pow((double)counts[i], -b) + c);
    }
    return 0;
}

fl_embed_cfg fl_embed_defaults(int num_classes, int64_t emb_dim) {
    fl_embed_cfg c;
    memset(&c, 0, sizeof c);
    fl_err e;
    fl_effnet_preset("tf_efficientnet_b7", &c.backbone, &e);
    c.dolg = fl_dolg_defaults(512);
    c.local_tap = 3;
    c.global_tap = 4;
    c.dropout = 0.2;
    c.neck_bn_momentum = 0.1;
    c.emb_dim = emb_dim;
    c.arc = (fl_arcface_cfg){num_classes, 1, 30.0, 0.3, 0};
    c.species_weight = 1.0;
    return c;
}

int fl_embed_build(fl_graph *g, const fl_embed_cfg *c, int64_t n, int64_t h, int64_t w, int with_loss,
                   fl_embed_model *m, fl_err *e) {
    if (!g || !c || !m) return fl_errf(e, "embed model: missing argument");
    memset(m, 0xff, sizeof *m);
    if (n < 1 || h < 32 || w < 32) return fl_errf(e, "embed model: batch %lld of %lldx%lld (needs >= 1 of >= 32x32)",
                                                  (long long)n, (long long)h, (long long)w);
    if (fl_dolg_check(&c->dolg, e) < 0) return -1;
    if (c->local_tap < 0 || c->global_tap >= FL_EFFNET_TAPS || c->local_tap > c->global_tap)
        return fl_errf(e, "embed model: DOLG taps local %d, global %d (needs 0 <= local <= global < %d)",
                       c->local_tap, c->global_tap, FL_EFFNET_TAPS);
    if (with_loss && (c->arc.num_classes < 1 || (c->num_species > 0 && !(c->species_weight >= 0))))
        return fl_errf(e, "embed model: needs num_classes >= 1 (and a species weight >= 0)");
    fl_effnet_cfg bb = c->backbone;
    bb.num_classes = 0;
    bb.with_head = 0;
    m->x = fl_input(g, "x", 4, (int64_t[]){n, h, w, 3});
    fl_effnet_out o;
    fl_effnet_build(g, m->x, &bb, "backbone.", &o);
    m->fused = fl_dolg_build(g, o.tap[c->local_tap], o.tap[c->global_tap], &c->dolg, "dolg.");
    m->emb = fl_neck_build(g, m->fused, c->dropout, c->emb_dim, c->neck_bn_momentum, "neck.");
    fl_graph_mark_output(g, m->emb);
    if (with_loss) {
        m->labels = fl_input_labels(g, "labels", n);
        if (c->arc.dynamic) m->margins = fl_input(g, "margins", 1, (int64_t[]){c->arc.num_classes});
        m->logits = fl_arcface_logits(g, m->emb, m->labels, m->margins, &c->arc, "head.");
        fl_graph_mark_output(g, m->logits);
        m->loss = fl_softmax_ce(g, m->logits, m->labels, 0.0);
        if (c->num_species > 0) {
            m->species = fl_input_labels(g, "species", n);
            m->species_logits = fl_linear_layer(g, m->emb, "species_head", c->num_species, 1);
            fl_graph_mark_output(g, m->species_logits);
            fl_id sl = fl_softmax_ce(g, m->species_logits, m->species, 0.0);
            m->loss = fl_add(g, m->loss, fl_scale(g, sl, c->species_weight, 0.0));
        }
    }
    const char *ge = fl_graph_error(g);
    if (ge[0]) return fl_errf(e, "embed model: %s", ge);
    return 0;
}
