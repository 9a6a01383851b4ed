/* The report's identification figures: from every node declaring cv.json (the kNN: out-of-fold
 * CV per fold, known vs new, the threshold grid with the chosen threshold marked, per-species
 * thresholds) and metrics.json (the score: MAP@5 against the hidden truth, per species). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dag/report_int.h"

static double arr_num(const cJSON *a, int i) {
    const cJSON *v = cJSON_GetArrayItem(a, i);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void threshold_plot(fl_html *h, const cJSON *cv) {
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(cv, "threshold_grid");
    double t = fl_rjson_num(cv, "threshold");
    const cJSON *given = cJSON_GetObjectItemCaseSensitive(cv, "threshold_given");
    if (!cJSON_IsArray(grid)) {
        fl_report_missing(h, "no threshold grid",
                          "cv.json has no threshold_grid (written by an older knn stage)");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(grid);
    double *b = calloc(4 * (n + 1), sizeof *b);
    if (!b) {
        h->oom = 1;
        return;
    }
    size_t i = 0;
    for (const cJSON *p = grid->child; p && i < n; p = p->next, i++)
        for (int c = 0; c < 4; c++) b[c * (n + 1) + i] = arr_num(p, c);
    fl_series s[3] = {
        {.name = "all", .x = b, .y = b + (n + 1), .n = n, .cls = "s0"},
        {.name = "known", .x = b, .y = b + 2 * (n + 1), .n = n, .cls = "s1"},
        {.name = "new", .x = b, .y = b + 3 * (n + 1), .n = n, .cls = "s2"},
    };
    char lab[64];
    snprintf(lab, sizeof lab, "%s %.3g", cJSON_IsTrue(given) ? "given" : "chosen", t);
    char attrs[96];
    snprintf(attrs, sizeof attrs, "id=\"threshold-plot\" data-threshold=\"%.6g\"", t);
    fl_chart c = {.title = "OOF MAP@5 against the new_individual threshold",
                  .xlabel = "threshold (top-1 similarity below it: new_individual first)",
                  .ylabel = "MAP@5", .attrs = attrs, .s = s, .ns = 3, .mark_x = t,
                  .mark_label = lab, .w = 560, .h = 260};
    fl_html_chart(h, &c);
    free(b);
}

static void cv_section(fl_html *h, const fl_rnode *x) {
    char why[1400];
    cJSON *cv = fl_rnode_json(x, "cv.json", why, sizeof why);
    fl_html_raw(h, "<div class=\"panel cv\" data-node=\"");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, "\"><h3>Out-of-fold CV (");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, ")</h3>");
    if (!cv) {
        fl_report_missing(h, "no CV", why);
        fl_report_missing(h, "no threshold plot", why);
        fl_html_raw(h, "</div>\n");
        return;
    }
    fl_html_raw(h, "<div>OOF MAP@5 <b>");
    fl_html_num(h, "%.4f", fl_rjson_num(cv, "map5"));
    fl_html_raw(h, "</b> at threshold ");
    fl_html_num(h, "%.3f", fl_rjson_num(cv, "threshold"));
    fl_html_printf(h, " over %g validation images (%.1f%% new); %g test images, k %g, ensemble ",
                   fl_rjson_num(cv, "n_query"), 100 * fl_rjson_num(cv, "new_share"),
                   fl_rjson_num(cv, "n_test"), fl_rjson_num(cv, "k"));
    const cJSON *ens = cJSON_GetObjectItemCaseSensitive(cv, "ensemble");
    fl_html_text(h, cJSON_IsString(ens) ? ens->valuestring : "?");
    fl_html_raw(h, "</div><div class=\"grid2\">");
    /* per fold, and known vs new */
    const cJSON *folds = cJSON_GetObjectItemCaseSensitive(cv, "folds");
    size_t nf = (size_t)cJSON_GetArraySize(folds), i = 0;
    char **lab = calloc(nf + 3, sizeof *lab);
    double *v = calloc(nf + 3, sizeof *v), *cnt = calloc(nf + 3, sizeof *cnt);
    if (lab && v && cnt) {
        for (const cJSON *f = folds ? folds->child : NULL; f && i < nf; f = f->next, i++) {
            lab[i] = fl_strdupf("fold %g", fl_rjson_num(f, "fold"));
            v[i] = fl_rjson_num(f, "map5");
            cnt[i] = fl_rjson_num(f, "n");
        }
        fl_html_bars(h, "MAP@5 per fold (OOF)", "id=\"cv-folds\"", (const char *const *)lab, v, cnt, i);
        const char *kn[2] = {"known individuals", "new_individual"};
        double kv[2] = {fl_rjson_num(cv, "map5_known"), fl_rjson_num(cv, "map5_new")};
        fl_html_bars(h, "known vs new (OOF)", "id=\"cv-known-new\"", kn, kv, NULL, 2);
    } else {
        h->oom = 1;
    }
    for (size_t k = 0; lab && k < i; k++) free(lab[k]);
    free(lab), free(v), free(cnt);
    fl_html_raw(h, "</div>");
    threshold_plot(h, cv);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(cv, "species_thresholds");
    if (cJSON_IsObject(st)) {
        fl_html_raw(h, "<table class=\"species-thresholds\"><tr><th>species</th><th>own threshold"
                       "</th></tr>");
        for (const cJSON *s = st->child; s; s = s->next) {
            fl_html_raw(h, "<tr><td>");
            fl_html_text(h, s->string);
            fl_html_raw(h, "</td><td class=\"num\">");
            fl_html_num(h, "%.3f", cJSON_IsNumber(s) ? s->valuedouble : NAN);
            fl_html_raw(h, "</td></tr>");
        }
        fl_html_raw(h, "</table><div class=\"sub\">other species use the global threshold</div>");
    }
    fl_html_raw(h, "</div>\n");
    cJSON_Delete(cv);
}

static void score_section(fl_html *h, const fl_rnode *x) {
    char why[1400];
    cJSON *m = fl_rnode_json(x, "metrics.json", why, sizeof why);
    fl_html_raw(h, "<div class=\"panel score\" data-node=\"");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, "\"><h3>Score against the hidden truth (");
    fl_html_text(h, x->n->id);
    fl_html_raw(h, ")</h3>");
    if (!m) {
        fl_report_missing(h, "no score", why);
    } else if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "map5"))) {
        fl_report_missing(h, "no hidden-truth score", "the truth of this data is not known "
                                                      "(Kaggle data: submit to score)");
    } else {
        fl_html_raw(h, "<div id=\"truth-score\">test MAP@5 <b>");
        fl_html_num(h, "%.4f", fl_rjson_num(m, "map5"));
        fl_html_raw(h, "</b> (public ");
        fl_html_num(h, "%.4f", fl_rjson_num(m, "map5_public"));
        fl_html_raw(h, ", private ");
        fl_html_num(h, "%.4f", fl_rjson_num(m, "map5_private"));
        fl_html_printf(h, ") on %g images</div><div class=\"grid2\">", fl_rjson_num(m, "n_images"));
        const cJSON *kn = cJSON_GetObjectItemCaseSensitive(m, "known"),
                    *nw = cJSON_GetObjectItemCaseSensitive(m, "new_individual");
        const char *kl[2] = {"known individuals", "new_individual"};
        double kv[2] = {fl_rjson_num(kn, "map5"), fl_rjson_num(nw, "map5")};
        double kc[2] = {fl_rjson_num(kn, "n"), fl_rjson_num(nw, "n")};
        fl_html_bars(h, "known vs new (test)", "id=\"test-known-new\"", kl, kv, kc, 2);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(m, "species");
        size_t ns = (size_t)cJSON_GetArraySize(sp), i = 0;
        const char **lab = calloc(ns + 1, sizeof *lab);
        double *v = calloc(ns + 1, sizeof *v), *c = calloc(ns + 1, sizeof *c);
        if (lab && v && c) {
            for (const cJSON *s = sp ? sp->child : NULL; s && i < ns; s = s->next, i++) {
                lab[i] = s->string ? s->string : "?";
                v[i] = fl_rjson_num(s, "map5");
                c[i] = fl_rjson_num(s, "n");
            }
            fl_html_bars(h, "MAP@5 per species (test)", "id=\"species-bars\"", lab, v, c, i);
        } else {
            h->oom = 1;
        }
        free(lab), free(v), free(c);
        fl_html_raw(h, "</div>");
    }
    fl_html_raw(h, "</div>\n");
    cJSON_Delete(m);
}

void fl_report_ident(fl_html *h, const fl_rctx *r) {
    fl_html_raw(h, "<h2 id=\"ident\">Identification</h2>\n");
    int any = 0;
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        if (fl_rnode_declares(x, "cv.json")) cv_section(h, x), any = 1;
    }
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        if (fl_rnode_declares(x, "metrics.json")) score_section(h, x), any = 1;
    }
    if (!any) fl_report_missing(h, "no identification stages", "this plan has no cv.json or "
                                                               "metrics.json");
}
