/* The report's look at the data: a seeded sample of images with the boxes the crop stage cut
 * (drawn on the originals, downscaled), and for a few test images the 5 nearest train crops the
 * kNN retrieved (neighbours.json), the correct ones marked when the truth is known. Images are
 * small JPEGs embedded as data: URIs (libjpeg-turbo: scaled decode, box-filter downscale), so
 * the report links nothing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "dag/report_int.h"

#define SHEET_N 12
#define SHEET_SEED 0x5eedULL
#define SHEET_PX 180 /* longest side of a contact-sheet image */
#define NB_PX 96     /* longest side of a neighbour crop */
#define MAX_SIDE 30000

typedef struct rgb {
    uint8_t *p;
    int w, h;
} rgb;

/* Decodes a JPEG to RGB at the smallest libjpeg-turbo scale whose longest side still reaches
 * px, then box-filters it down to px. */
static int load_thumb(const char *path, int px, rgb *out, double *scale, char *why, size_t wl) {
    fl_err e = {{0}};
    size_t len;
    unsigned char *data = (unsigned char *)fl_read_file_max(path, &len, 64u << 20, &e);
    if (!data) return snprintf(why, wl, "%s", e.msg), -1;
    tjhandle tj = tjInitDecompress();
    int w, h, sub, cs, rc = -1, n;
    uint8_t *full = NULL;
    if (!tj || tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &sub, &cs) != 0 ||
        w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE) {
        snprintf(why, wl, "%s: not a JPEG this report can read", path);
        goto out;
    }
    tjscalingfactor *sf = tjGetScalingFactors(&n); /* tjDecompress2 picks the one giving bw x bh */
    int bw = w, bh = h;
    for (int i = 0; sf && i < n; i++) {
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if ((sw >= px || sh >= px) && sw * sh < bw * bh) bw = sw, bh = sh;
    }
    full = malloc((size_t)bw * bh * 3 + 1);
    if (!full || tjDecompress2(tj, data, (unsigned long)len, full, bw, 0, bh, TJPF_RGB, 0) != 0) {
        snprintf(why, wl, "%s: %s", path, full ? tjGetErrorStr2(tj) : "out of memory");
        goto out;
    }
    double f = fmin(1.0, (double)px / (bw > bh ? bw : bh));
    int dw = (int)fmax(1, round(bw * f)), dh = (int)fmax(1, round(bh * f));
    out->p = calloc((size_t)dw * dh * 3 + 1, 1);
    if (!out->p) {
        snprintf(why, wl, "out of memory");
        goto out;
    }
    out->w = dw, out->h = dh;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++) {
            int x0 = x * bw / dw, x1 = (x + 1) * bw / dw, y0 = y * bh / dh, y1 = (y + 1) * bh / dh;
            if (x1 <= x0) x1 = x0 + 1;
            if (y1 <= y0) y1 = y0 + 1;
            unsigned s[3] = {0, 0, 0}, c = 0;
            for (int yy = y0; yy < y1; yy++)
                for (int xx = x0; xx < x1; xx++, c++)
                    for (int k = 0; k < 3; k++) s[k] += full[((size_t)yy * bw + xx) * 3 + k];
            for (int k = 0; k < 3; k++) out->p[((size_t)y * dw + x) * 3 + k] = (uint8_t)(s[k] / c);
        }
    *scale = (double)dw / w; /* original pixel -> thumbnail pixel */
    rc = 0;
out:
    if (tj) tjDestroy(tj);
    free(full);
    free(data);
    return rc;
}

static void draw_box(rgb *im, double x1, double y1, double x2, double y2, const uint8_t col[3]) {
    int a = (int)floor(x1), b = (int)floor(y1), c = (int)ceil(x2) - 1, d = (int)ceil(y2) - 1;
    if (a < 0) a = 0;
    if (b < 0) b = 0;
    if (c >= im->w) c = im->w - 1;
    if (d >= im->h) d = im->h - 1;
    for (int t = 0; t < 2; t++)
        for (int y = b; y <= d; y++)
            for (int x = a; x <= c; x++)
                if (x == a + t || x == c - t || y == b + t || y == d - t)
                    memcpy(im->p + ((size_t)y * im->w + x) * 3, col, 3);
}

/* <img> of the thumbnail as an embedded JPEG. */
static void emit_img(fl_html *h, const rgb *im, const char *alt) {
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    if (!tj || tjCompress2(tj, im->p, im->w, 0, im->h, TJPF_RGB, &jpg, &len, TJSAMP_420, 80, 0)) {
        fl_report_missing(h, alt, "the thumbnail could not be encoded");
    } else {
        fl_html_printf(h, "<img width=\"%d\" height=\"%d\" alt=\"", im->w, im->h);
        fl_html_text(h, alt);
        fl_html_raw(h, "\" src=\"data:image/jpeg;base64,");
        fl_html_base64(h, jpg, len);
        fl_html_raw(h, "\"/>");
    }
    if (jpg) tjFree(jpg);
    if (tj) tjDestroy(tj);
}

/* ---------------------------------------------------------------- CSV */

typedef struct csv {
    char *text;
    char ***rows; /* rows[r][c] */
    int nrows, ncols;
    char **head;
} csv;

static void csv_free(csv *c) {
    for (int r = 0; r < c->nrows; r++) free(c->rows[r]);
    free(c->rows);
    free(c->head);
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* Simple comma-separated files without quoted commas (what the stages write); a row with fewer
 * fields than the header is dropped. */
static int csv_read(const char *path, csv *c, char *why, size_t wl) {
    memset(c, 0, sizeof *c);
    fl_err e = {{0}};
    size_t len;
    if (!(c->text = fl_read_file_max(path, &len, 256u << 20, &e))) return snprintf(why, wl, "%s", e.msg), -1;
    char *save = NULL, *line = strtok_r(c->text, "\r\n", &save);
    for (; line; line = strtok_r(NULL, "\r\n", &save)) {
        int nf = 1;
        for (char *p = line; *p; p++) nf += *p == ',';
        char **f = calloc((size_t)nf + 1, sizeof *f);
        if (!f) return snprintf(why, wl, "out of memory"), -1;
        int k = 0;
        for (char *p = line, *q; k < nf; p = q + 1) {
            f[k++] = p;
            if (!(q = strchr(p, ','))) break;
            *q = '\0';
        }
        if (!c->head) {
            c->head = f, c->ncols = k;
            continue;
        }
        if (k < c->ncols) {
            free(f);
            continue;
        }
        char ***nr = realloc(c->rows, ((size_t)c->nrows + 1) * sizeof *nr);
        if (!nr) return free(f), snprintf(why, wl, "out of memory"), -1;
        c->rows = nr;
        c->rows[c->nrows++] = f;
    }
    if (!c->head) return snprintf(why, wl, "%s is empty", path), -1;
    return 0;
}

static int csv_col(const csv *c, const char *name) {
    for (int i = 0; i < c->ncols; i++)
        if (!strcmp(c->head[i], name)) return i;
    return -1;
}

/* ---------------------------------------------------------------- the sections */

static uint64_t mix(uint64_t seed, const char *s) {
    uint64_t x = seed ^ 1469598103934665603ULL;
    for (; *s; s++) x = (x ^ (uint8_t)*s) * 1099511628211ULL;
    x ^= x >> 33, x *= 0xff51afd7ed558ccdULL, x ^= x >> 33;
    return x;
}

/* The data folder a node's "data" input points at (synth puts it under data/). */
static char *data_root(const fl_rctx *r, const fl_rnode *x) {
    for (size_t j = 0; j < x->n->ninputs; j++) {
        const fl_plan_input *in = &x->n->inputs[j];
        if (strcmp(in->name, "data")) continue;
        if (!in->from_node) return strdup(in->path);
        const fl_plan_node *up = fl_plan_find(&r->s->plan, in->from_node);
        const fl_rnode *u = up ? &r->nodes[up->index] : NULL;
        char *sub = u ? fl_rnode_file(u, "data/train.csv") : NULL;
        if (sub) {
            free(sub);
            return fl_strdupf("%s/data", u->dir);
        }
        return u && u->dir ? strdup(u->dir) : NULL;
    }
    return NULL;
}

static void contact_sheet(fl_html *h, const fl_rctx *r, const fl_rnode *x) {
    char why[1400];
    char *path = fl_rnode_file(x, "crops.csv"), *root = data_root(r, x);
    csv c;
    fl_html_raw(h, "<h3>Detected boxes on the originals (");
    fl_html_text(h, x->n->id);
    fl_html_printf(h, "): a sample of %d, seed %#llx</h3>\n", SHEET_N, (unsigned long long)SHEET_SEED);
    if (!path || !root) {
        snprintf(why, sizeof why, "%s %s%s", !path ? x->n->id : "its data",
                 !path ? fl_rstate_name(x->state) : "is not in the store", !path ? ", no crops.csv" : "");
        fl_report_missing(h, "no contact sheet", why);
        free(path), free(root);
        return;
    }
    if (csv_read(path, &c, why, sizeof why)) {
        fl_report_missing(h, "no contact sheet", why);
        free(path), free(root);
        csv_free(&c);
        return;
    }
    int ci = csv_col(&c, "image"), cs = csv_col(&c, "split"), cx1 = csv_col(&c, "x1"),
        cy1 = csv_col(&c, "y1"), cx2 = csv_col(&c, "x2"), cy2 = csv_col(&c, "y2"),
        cc = csv_col(&c, "conf"), cf = csv_col(&c, "fallback");
    if (ci < 0 || cs < 0 || cx1 < 0 || cy1 < 0 || cx2 < 0 || cy2 < 0) {
        fl_report_missing(h, "no contact sheet", "crops.csv lacks image,split,x1,y1,x2,y2");
    } else {
        /* the SHEET_N rows with the smallest seeded hash of their image name */
        int pick[SHEET_N], np = 0;
        uint64_t key[SHEET_N];
        for (int i = 0; i < c.nrows; i++) {
            uint64_t k = mix(SHEET_SEED, c.rows[i][ci]);
            int at = np;
            while (at > 0 && key[at - 1] > k) at--;
            if (at >= SHEET_N) continue;
            int last = np < SHEET_N ? np++ : SHEET_N - 1;
            for (int j = last; j > at; j--) key[j] = key[j - 1], pick[j] = pick[j - 1];
            key[at] = k, pick[at] = i;
        }
        fl_html_printf(h, "<div class=\"sheet\" id=\"contact-sheet\" data-images=\"%d\">", np);
        for (int j = 0; j < np; j++) {
            char **row = c.rows[pick[j]];
            char *img = fl_strdupf("%s/%s_images/%s", root, row[cs], row[ci]);
            rgb im = {0};
            double sc;
            fl_html_raw(h, "<figure>");
            if (img && load_thumb(img, SHEET_PX, &im, &sc, why, sizeof why) == 0) {
                int fb = cf >= 0 && atoi(row[cf]) != 0;
                static const uint8_t red[3] = {230, 20, 20}, orange[3] = {255, 160, 0};
                draw_box(&im, atof(row[cx1]) * sc, atof(row[cy1]) * sc, atof(row[cx2]) * sc,
                         atof(row[cy2]) * sc, fb ? orange : red);
                emit_img(h, &im, row[ci]);
                fl_html_raw(h, "<figcaption>");
                fl_html_text(h, row[cs]);
                fl_html_raw(h, " ");
                fl_html_text(h, row[ci]);
                fl_html_raw(h, "<br/>");
                if (fb) fl_html_raw(h, "no detection: whole image");
                else if (cc >= 0) {
                    fl_html_raw(h, "conf ");
                    fl_html_text(h, row[cc]);
                }
                fl_html_raw(h, "</figcaption>");
            } else {
                fl_report_missing(h, row[ci], img ? why : "out of memory");
            }
            free(im.p);
            free(img);
            fl_html_raw(h, "</figure>");
        }
        fl_html_raw(h, "</div>\n<div class=\"sub\">red: the detector's box; orange: no box "
                       "found, the whole image is the crop</div>\n");
    }
    csv_free(&c);
    free(path);
    free(root);
}

static const char *truth_of(const csv *t, const char *img) {
    int ci = csv_col(t, "image"), cid = csv_col(t, "individual_id");
    for (int i = 0; ci >= 0 && cid >= 0 && i < t->nrows; i++)
        if (!strcmp(t->rows[i][ci], img)) return t->rows[i][cid];
    return NULL;
}

static void crop_fig(fl_html *h, const fl_rnode *crop, const char *split, const char *img,
                     const char *cls, const char *caption) {
    char rel[1200], why[1400];
    snprintf(rel, sizeof rel, "crops/%s/%s", split, img);
    char *p = fl_rnode_file(crop, rel);
    rgb im = {0};
    double sc;
    fl_html_printf(h, "<figure class=\"%s\">", cls);
    if (p && load_thumb(p, NB_PX, &im, &sc, why, sizeof why) == 0) emit_img(h, &im, img);
    else fl_report_missing(h, img, p ? why : "its crop is not in the store");
    fl_html_raw(h, "<figcaption>");
    fl_html_text(h, caption);
    fl_html_raw(h, "</figcaption></figure>");
    free(im.p);
    free(p);
}

static void neighbours(fl_html *h, const fl_rctx *r, const fl_rnode *knn, const fl_rnode *crop,
                       const csv *truth) {
    char why[1400];
    fl_html_raw(h, "<h3>Nearest train crops of a few test images (");
    fl_html_text(h, knn->n->id);
    fl_html_raw(h, ")</h3>\n");
    cJSON *nb = fl_rnode_json(knn, "neighbours.json", why, sizeof why);
    if (!nb || !cJSON_IsArray(nb)) {
        fl_report_missing(h, "no neighbours", nb ? "neighbours.json is not a list" : why);
        cJSON_Delete(nb);
        return;
    }
    fl_html_printf(h, "<div id=\"neighbours\" data-queries=\"%d\">", cJSON_GetArraySize(nb));
    for (const cJSON *q = nb->child; q; q = q->next) {
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(q, "image");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(q, "neighbours");
        if (!cJSON_IsString(im)) continue;
        const char *t = truth ? truth_of(truth, im->valuestring) : NULL;
        char cap[400];
        snprintf(cap, sizeof cap, "test %.80s%s%.60s", im->valuestring, t ? ": truth " : "", t ? t : "");
        fl_html_raw(h, "<div class=\"nb\">");
        crop_fig(h, crop, "test", im->valuestring, "query", cap);
        int hits = 0;
        for (const cJSON *n = cJSON_IsArray(list) ? list->child : NULL; n; n = n->next) {
            const cJSON *ni = cJSON_GetObjectItemCaseSensitive(n, "image"),
                        *id = cJSON_GetObjectItemCaseSensitive(n, "individual_id");
            if (!cJSON_IsString(ni) || !cJSON_IsString(id)) continue;
            int hit = t && !strcmp(t, id->valuestring);
            hits += hit;
            snprintf(cap, sizeof cap, "%s%.40s sim %.4f", hit ? "\xE2\x9C\x93 " : "", id->valuestring,
                     fl_rjson_num(n, "similarity"));
            crop_fig(h, crop, "train", ni->valuestring, hit ? "hit" : "miss", cap);
        }
        fl_html_raw(h, "</div>");
        if (t && !hits)
            fl_html_printf(h, "<div class=\"sub\">%s</div>",
                           !strcmp(t, "new_individual") ? "truth: new_individual (not in train)"
                                                        : "the true individual is not among them");
    }
    fl_html_raw(h, "</div>\n");
    if (!truth) fl_html_raw(h, "<div class=\"sub\">the truth is not known: no match marked</div>\n");
    else fl_html_raw(h, "<div class=\"sub\">green frame: the neighbour is the test image's true "
                        "individual</div>\n");
    (void)r;
    cJSON_Delete(nb);
}

void fl_report_sheet(fl_html *h, const fl_rctx *r) {
    fl_html_raw(h, "<h2 id=\"data\">Look at the data</h2>\n");
    const fl_rnode *crop = NULL, *knn = NULL, *truth = NULL;
    for (size_t k = 0; k < r->n; k++) {
        const fl_rnode *x = &r->nodes[r->s->order[k]];
        if (!crop && fl_rnode_declares(x, "crops.csv")) crop = x;
        if (!knn && fl_rnode_declares(x, "cv.json")) knn = x;
        if (!truth && fl_rnode_declares(x, "truth/solution.csv")) truth = x;
    }
    if (!crop) {
        fl_report_missing(h, "no contact sheet", "this plan crops nothing");
        return;
    }
    contact_sheet(h, r, crop);
    if (!knn) return;
    csv t;
    char why[1400];
    char *tp = truth ? fl_rnode_file(truth, "truth/solution.csv") : NULL;
    int have_t = tp && csv_read(tp, &t, why, sizeof why) == 0;
    if (tp && !have_t) csv_free(&t);
    neighbours(h, r, knn, crop, have_t ? &t : NULL);
    if (have_t) csv_free(&t);
    free(tp);
}
