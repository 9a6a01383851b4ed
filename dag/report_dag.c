/* The report's first section: the DAG as a picture (a column per depth, edges from each input's
 * stage), every stage's state, wall time, key and reason, and the totals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dag/report_int.h"

enum { BOX_W = 150, BOX_H = 40, COL_W = 180, ROW_H = 52, PAD = 10 };

/* depth: the longest path from a source, in topological order; row: order within the depth. */
static int layout(const fl_rctx *r, int *ncols, int *nrows) {
    const fl_session *s = r->s;
    int *count = calloc(r->n + 1, sizeof *count);
    if (!count) return -1;
    *ncols = 0, *nrows = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = s->order[k];
        int d = 0;
        for (size_t j = 0; j < s->ndeps[i]; j++)
            if (r->nodes[s->deps[i][j]].depth + 1 > d) d = r->nodes[s->deps[i][j]].depth + 1;
        r->nodes[i].depth = d;
        r->nodes[i].row = count[d]++;
        if (d + 1 > *ncols) *ncols = d + 1;
        if (count[d] > *nrows) *nrows = count[d];
    }
    free(count);
    return 0;
}

static double node_x(const fl_rnode *x) { return PAD + x->depth * COL_W; }
static double node_y(const fl_rnode *x) { return PAD + x->row * ROW_H; }

static void picture(fl_html *h, const fl_rctx *r) {
    int ncols, nrows;
    if (layout(r, &ncols, &nrows)) {
        h->oom = 1;
        return;
    }
    int W = 2 * PAD + (ncols - 1) * COL_W + BOX_W, H = 2 * PAD + (nrows - 1) * ROW_H + BOX_H;
    if (r->n == 0) W = 200, H = 40;
    fl_html_raw(h, "<div class=\"scroll\">");
    fl_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" id=\"dag\" "
                      "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" data-stages=\"%zu\">"
                      "<title>the stages of the run and their inputs</title>",
                   W, H, W, H, r->n);
    if (r->n == 0) fl_html_raw(h, "<text class=\"nodata\" x=\"10\" y=\"24\">no stages</text>");
    const fl_session *s = r->s;
    for (size_t i = 0; i < r->n; i++)
        for (size_t j = 0; j < s->ndeps[i]; j++) {
            const fl_rnode *a = &r->nodes[s->deps[i][j]], *b = &r->nodes[i];
            double x0 = node_x(a) + BOX_W, y0 = node_y(a) + BOX_H / 2.0;
            double x1 = node_x(b), y1 = node_y(b) + BOX_H / 2.0, mx = (x0 + x1) / 2;
            fl_html_printf(h, "<path class=\"edge\" data-from=\"");
            fl_html_text(h, a->n->id);
            fl_html_raw(h, "\" data-to=\"");
            fl_html_text(h, b->n->id);
            fl_html_printf(h, "\" d=\"M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f\"/>", x0, y0, mx,
                           y0, mx, y1, x1, y1);
        }
    for (size_t i = 0; i < r->n; i++) {
        const fl_rnode *x = &r->nodes[i];
        const char *st = fl_rstate_name(x->state);
        fl_html_raw(h, "<g class=\"node\" data-stage=\"");
        fl_html_text(h, x->n->id);
        fl_html_printf(h, "\" data-state=\"%s\"><title>", st);
        fl_html_text(h, x->n->id);
        fl_html_printf(h, ": %s", st);
        if (x->why) {
            fl_html_raw(h, " (");
            fl_html_text(h, x->why);
            fl_html_raw(h, ")");
        }
        fl_html_printf(h, "</title><rect class=\"st-%s\" x=\"%.0f\" y=\"%.0f\" width=\"%d\" "
                          "height=\"%d\" rx=\"5\"/><text x=\"%.0f\" y=\"%.0f\" "
                          "font-weight=\"bold\">",
                       st, node_x(x), node_y(x), BOX_W, BOX_H, node_x(x) + 6, node_y(x) + 16);
        fl_html_text(h, x->n->id);
        fl_html_printf(h, "</text><text x=\"%.0f\" y=\"%.0f\">%s", node_x(x) + 6, node_y(x) + 32, st);
        if (isfinite(x->seconds)) {
            fl_html_raw(h, ", ");
            fl_html_secs(h, x->seconds);
        }
        fl_html_raw(h, "</text></g>");
    }
    fl_html_raw(h, "</svg></div>\n");
}

static void table(fl_html *h, const fl_rctx *r) {
    fl_html_raw(h, "<table class=\"stages\" id=\"stages\"><tr><th>stage</th><th>state</th>"
                   "<th>wall time</th><th>key</th><th>output</th><th>inputs</th>"
                   "<th>why it ran / would run</th></tr>\n");
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        const char *st = fl_rstate_name(x->state);
        fl_html_raw(h, "<tr data-stage=\"");
        fl_html_text(h, x->n->id);
        fl_html_raw(h, "\"><td><b>");
        fl_html_text(h, x->n->id);
        fl_html_raw(h, "</b>");
        if (x->n->def->summary) {
            fl_html_raw(h, "<br/><span class=\"sub\">");
            fl_html_text(h, x->n->def->summary);
            fl_html_raw(h, "</span>");
        }
        fl_html_printf(h, "</td><td class=\"st-%s\">%s</td><td class=\"num\">", st, st);
        if (isfinite(x->seconds)) fl_html_secs(h, x->seconds);
        else fl_html_raw(h, "&#8212;");
        fl_html_printf(h, "</td><td><code>%.12s</code></td><td><code>%.12s</code></td><td>",
                       x->have_key ? x->key : "", x->have_out ? x->out : "");
        for (size_t j = 0; j < x->n->ninputs; j++) {
            const fl_plan_input *in = &x->n->inputs[j];
            fl_html_raw(h, j ? "<br/>" : "");
            fl_html_text(h, in->name);
            fl_html_raw(h, " &#8592; ");
            fl_html_text(h, in->from_node ? in->from_node : in->path);
        }
        fl_html_raw(h, "</td><td>");
        if (x->state == RS_CACHED) fl_html_raw(h, "<span class=\"sub\">reused: nothing it reads "
                                                  "changed</span>");
        fl_html_text(h, x->state == RS_CACHED ? NULL : x->why);
        fl_html_raw(h, "</td></tr>\n");
    }
    fl_html_raw(h, "</table>\n");
}

void fl_report_dag(fl_html *h, const fl_rctx *r) {
    fl_html_raw(h, "<h2 id=\"run\">The run</h2>\n");
    int count[RS_NSTATES] = {0};
    double ran = 0, saved = 0, failed = 0;
    for (size_t i = 0; i < r->n; i++) {
        const fl_rnode *x = &r->nodes[i];
        count[x->state]++;
        if (!isfinite(x->seconds)) continue;
        if (x->state == RS_RAN) ran += x->seconds;
        else if (x->state == RS_CACHED) saved += x->seconds;
        else if (x->state == RS_FAILED) failed += x->seconds;
    }
    fl_html_printf(h, "<p id=\"totals\">%zu stages: ", r->n);
    int first = 1;
    for (int s = 0; s < RS_NSTATES; s++)
        if (count[s]) {
            fl_html_printf(h, "%s%d %s", first ? "" : ", ", count[s], fl_rstate_name(s));
            first = 0;
        }
    fl_html_raw(h, ". Stage time this run: ");
    fl_html_secs(h, ran);
    if (count[RS_FAILED]) {
        fl_html_raw(h, " (plus ");
        fl_html_secs(h, failed);
        fl_html_raw(h, " in failed stages)");
    }
    fl_html_raw(h, "; <b>saved by the cache: ");
    fl_html_secs(h, saved);
    fl_html_raw(h, "</b> (the recorded wall time of the stages reused).</p>\n");
    picture(h, r);
    table(h, r);
}
