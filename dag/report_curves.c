/* The report's training curves, from the metrics the training stages write per epoch: every node
 * declaring train_metrics.json (the embedding folds, grouped by stage: a round per stage name)
 * and detector_metrics.json (the detector). A fold that failed or has no metrics still gets its
 * panel, saying why. Per-epoch img/s is not in the artifacts (they stay byte-identical across
 * reruns, for early cutoff); the rate shown is the stage's average over its wall time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dag/report_int.h"

/* y[i] = epochs[i][key], x[i] = epochs[i].epoch (else i + 1). An epoch without the key (no
 * validation that epoch) gets x = NaN: the point is dropped, the line joins its neighbours and
 * the legend does not count it; a key present but not a number (a NaN loss is written as null)
 * stays a NaN y: a gap, counted. */
static void column(const cJSON *epochs, const char *key, double *x, double *y, size_t n) {
    size_t i = 0;
    for (const cJSON *e = epochs ? epochs->child : NULL; e && i < n; e = e->next, i++) {
        double ep = fl_rjson_num(e, "epoch");
        x[i] = !cJSON_GetObjectItemCaseSensitive(e, key) ? NAN : isfinite(ep) ? ep : (double)i + 1;
        y[i] = fl_rjson_num(e, key);
    }
}

/* A chart of the columns keys[] of epochs (names[] in the legend). */
static void epoch_chart(fl_html *h, const cJSON *epochs, const char *title, const char *ylabel,
                        const char *const *keys, const char *const *names, int nk, int smooth,
                        const char *attrs) {
    size_t n = (size_t)cJSON_GetArraySize(epochs);
    double *buf = calloc((n + 1) * (size_t)(3 * nk + 1), sizeof *buf); /* x, y, smoothed each */
    fl_series s[8];
    if (!buf || nk > 6) {
        free(buf);
        h->oom |= !buf;
        return;
    }
    int ns = 0;
    for (int k = 0; k < nk; k++) {
        double *x = buf + (n + 1) * (size_t)(3 * k), *y = x + (n + 1);
        column(epochs, keys[k], x, y, n);
        s[ns++] = (fl_series){.name = names[k], .x = x, .y = y, .n = n,
                              .cls = (const char *[]){"s0", "s1", "s2", "s3", "s4"}[k % 5]};
        if (k == 0 && smooth) { /* the first column also smoothed, as TensorBoard shows it */
            double *sm = y + (n + 1);
            fl_report_smooth(y, n, 0.6, sm);
            s[ns++] = (fl_series){.name = "smoothed", .x = x, .y = sm, .n = n, .cls = "s5"};
        }
    }
    fl_chart c = {.title = title, .xlabel = "epoch", .ylabel = ylabel, .attrs = attrs, .s = s,
                  .ns = (size_t)ns, .mark_x = NAN, .w = 360, .h = 200};
    fl_html_chart(h, &c);
    free(buf);
}

static void rate_line(fl_html *h, const fl_rnode *x, const cJSON *m, const char *imgs_key) {
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(m, "final");
    double imgs = fl_rjson_num(fin, imgs_key);
    int ep = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "epochs"));
    fl_html_raw(h, "<div class=\"sub\">");
    fl_html_printf(h, "%d epochs", ep);
    if (isfinite(x->seconds)) {
        fl_html_raw(h, " in ");
        fl_html_secs(h, x->seconds);
        if (isfinite(imgs) && x->seconds > 0)
            fl_html_printf(h, "; about %.1f img/s (%g train images x %d epochs over the stage's "
                              "wall time, validation included)",
                           imgs * ep / x->seconds, imgs, ep);
    }
    fl_html_raw(h, "</div>");
}

static void fold_panel(fl_html *h, const fl_rnode *x) {
    char why[1400];
    cJSON *m = fl_rnode_json(x, "train_metrics.json", why, sizeof why);
    const cJSON *epochs = cJSON_GetObjectItemCaseSensitive(m, "epochs");
    int inst = x->n->instance;
    fl_html_raw(h, "<div class=\"panel curve");
    if (!cJSON_IsArray(epochs)) fl_html_raw(h, " nocurve");
    fl_html_raw(h, "\" data-node=\"");
    fl_html_text(h, x->n->id);
    fl_html_printf(h, "\" data-fold=\"%d\"><h3>", inst);
    fl_html_text(h, x->n->id);
    fl_html_raw(h, "</h3>");
    if (!m) {
        fl_report_missing(h, "no curves", why);
    } else if (!cJSON_IsArray(epochs)) {
        fl_report_missing(h, "no curves", "train_metrics.json has no \"epochs\" list");
    } else {
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(m, "final");
        fl_html_raw(h, "<div>final validation MAP@5 ");
        fl_html_num(h, "%.4f", fl_rjson_num(fin, "val_map5"));
        fl_html_raw(h, " (known ");
        fl_html_num(h, "%.4f", fl_rjson_num(fin, "val_map5_known"));
        fl_html_raw(h, ", new ");
        fl_html_num(h, "%.4f", fl_rjson_num(fin, "val_map5_new"));
        fl_html_printf(h, ") on %g validation images; %g classes</div>", fl_rjson_num(fin, "val_images"),
                       fl_rjson_num(fin, "classes"));
        rate_line(h, x, m, "train_images");
        fl_html_raw(h, "<div class=\"grid2\">");
        epoch_chart(h, epochs, "loss (ArcFace)", "loss", (const char *[]){"loss", "val_loss"},
                    (const char *[]){"train", "val"}, 2, 1, "data-kind=\"loss\"");
        epoch_chart(h, epochs, "validation MAP@5", "MAP@5",
                    (const char *[]){"val_map5", "val_map5_known", "val_map5_new"},
                    (const char *[]){"all", "known", "new"}, 3, 0, "data-kind=\"map5\"");
        epoch_chart(h, epochs, "learning rate", "lr", (const char *[]){"lr"},
                    (const char *[]){"lr"}, 1, 0, "data-kind=\"lr\"");
        fl_html_raw(h, "</div>");
    }
    fl_html_raw(h, "</div>\n");
    cJSON_Delete(m);
}

static void detector_panel(fl_html *h, const fl_rnode *x) {
    char why[1400];
    cJSON *m = fl_rnode_json(x, "detector_metrics.json", why, sizeof why);
    const cJSON *epochs = cJSON_GetObjectItemCaseSensitive(m, "epochs");
    fl_html_raw(h, "<div class=\"panel detector\" data-node=\"");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, "\"><h3>");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, "</h3>");
    if (!m || !cJSON_IsArray(epochs)) {
        fl_report_missing(h, "no curves", m ? "detector_metrics.json has no \"epochs\" list" : why);
    } else {
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(m, "final");
        fl_html_raw(h, "<div>final mAP@0.5 ");
        fl_html_num(h, "%.4f", fl_rjson_num(fin, "map50"));
        fl_html_raw(h, ", mAP@0.5:0.95 ");
        fl_html_num(h, "%.4f", fl_rjson_num(fin, "map50_95"));
        fl_html_raw(h, ", precision ");
        fl_html_num(h, "%.3f", fl_rjson_num(fin, "precision"));
        fl_html_raw(h, ", recall ");
        fl_html_num(h, "%.3f", fl_rjson_num(fin, "recall"));
        fl_html_printf(h, " on %g validation images</div>", fl_rjson_num(fin, "val_images"));
        rate_line(h, x, m, "train_images");
        fl_html_raw(h, "<div class=\"grid2\">");
        epoch_chart(h, epochs, "loss parts", "loss", (const char *[]){"box", "obj", "cls"},
                    (const char *[]){"box", "obj", "cls"}, 3, 0, "data-kind=\"det-loss\"");
        epoch_chart(h, epochs, "validation mAP (EMA weights)", "mAP",
                    (const char *[]){"map50", "map50_95"}, (const char *[]){"mAP@0.5", "mAP@0.5:0.95"},
                    2, 0, "data-kind=\"det-map\"");
        epoch_chart(h, epochs, "learning rate", "lr", (const char *[]){"lr"},
                    (const char *[]){"lr"}, 1, 0, "data-kind=\"det-lr\"");
        fl_html_raw(h, "</div>");
    }
    fl_html_raw(h, "</div>\n");
    cJSON_Delete(m);
}

void fl_report_curves(fl_html *h, const fl_rctx *r) {
    fl_html_raw(h, "<h2 id=\"curves\">Training curves</h2>\n");
    int any = 0;
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        if (fl_rnode_declares(x, "detector_metrics.json")) {
            detector_panel(h, x);
            any = 1;
        }
    }
    /* one group per training stage name (a round), its folds in instance order */
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        if (!fl_rnode_declares(x, "train_metrics.json")) continue;
        int seen = 0;
        for (size_t j = 0; j < k && !seen; j++) {
            const fl_rnode *y = &r->nodes[r->s->order[j]];
            seen = fl_rnode_declares(y, "train_metrics.json") && !strcmp(y->n->def->name, x->n->def->name);
        }
        if (seen) continue;
        fl_html_raw(h, "<h3>");
        fl_html_text(h, x->n->def->name);
        fl_html_raw(h, ": one panel per fold</h3><div class=\"folds\" data-stage=\"");
        fl_html_text(h, x->n->def->name);
        fl_html_raw(h, "\">\n");
        for (int inst = -1; inst < (int)r->n; inst++)
            for (size_t j = 0; j < r->n; j++) {
                const fl_rnode *y = &r->nodes[j];
                if (y->n->instance == inst && fl_rnode_declares(y, "train_metrics.json") &&
                    !strcmp(y->n->def->name, x->n->def->name))
                    fold_panel(h, y);
            }
        fl_html_raw(h, "</div>\n");
        any = 1;
    }
    if (!any) fl_report_missing(h, "no training stages", "this plan trains nothing");
}
