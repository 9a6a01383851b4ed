/* crops.csv read back against true boxes: the detector's share of test images found (IoU >= 0.5)
 * and the share of images cropped as a whole (crop.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/crop/crop.h"
#include "stages/labels/labels.h"

float fl_box_iou(fl_box a, fl_box b) {
    float iw = fminf(a.x2, b.x2) - fmaxf(a.x1, b.x1), ih = fminf(a.y2, b.y2) - fmaxf(a.y1, b.y1);
    if (!(iw > 0) || !(ih > 0)) return 0;
    float inter = iw * ih;
    float uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
    return uni > 0 ? inter / uni : 0;
}

static int parse_num(const fl_csv *c, int row, int col, float *out, fl_err *e) {
    const char *s = c->rows[row].f[col];
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return fl_errf(e, "%s:%d: %s '%s' is not a number", c->name, c->rows[row].line,
                       c->header[col], s);
    *out = (float)v;
    return 0;
}

int fl_crops_score_files(const char *crops_csv, const char *truth_boxes, fl_crops_score *r,
                         fl_err *e) {
    memset(r, 0, sizeof *r);
    fl_csv c = {0};
    fl_box_set truth = {0};
    fl_strmap test_row = {0}, images = {0};
    char *hit = NULL;
    int rc = -1;
    static const char *const cols[] = {"image", "split", "x1", "y1", "x2", "y2", "fallback"};
    int ix[7];
    if (fl_csv_read(crops_csv, &c, e) || fl_csv_require(&c, cols, 7, ix, e)) goto done;
    if (fl_boxes_read(truth_boxes, NULL, &truth, e)) goto done;
    if (fl_strmap_init(&images, (size_t)c.nrows + 1, e) ||
        fl_strmap_init(&test_row, (size_t)truth.n + 1, e))
        goto done;
    for (int i = 0; i < truth.n; i++)
        if (fl_strmap_put(&test_row, truth.entry[i].image, i) == -2) goto oom;
    if (!(hit = calloc((size_t)truth.n + 1, 2))) goto oom;
    char *present = hit + truth.n + 1;
    for (int k = 1; k <= c.nrows; k++) {
        const char *img = c.rows[k].f[ix[0]], *split = c.rows[k].f[ix[1]], *fb = c.rows[k].f[ix[6]];
        if (strcmp(fb, "0") && strcmp(fb, "1")) {
            fl_errf(e, "%s:%d: fallback '%s' is not 0 or 1", c.name, c.rows[k].line, fb);
            goto done;
        }
        int put = fl_strmap_put(&images, img, k);
        if (put == -2) goto oom;
        if (put == -1) {
            r->n_images++;
            r->n_fallback += fb[0] == '1';
        }
        if (strcmp(split, "test")) continue;
        int t = fl_strmap_get(&test_row, img);
        if (t < 0) continue; /* a test image without a true box is not scored */
        fl_box b;
        if (parse_num(&c, k, ix[2], &b.x1, e) || parse_num(&c, k, ix[3], &b.y1, e) ||
            parse_num(&c, k, ix[4], &b.x2, e) || parse_num(&c, k, ix[5], &b.y2, e))
            goto done;
        present[t] = 1;
        const fl_box_entry *te = &truth.entry[t];
        for (int j = 0; j < te->nbox; j++) {
            fl_box g = {te->xyxy[4 * j], te->xyxy[4 * j + 1], te->xyxy[4 * j + 2], te->xyxy[4 * j + 3], -1};
            if (fl_box_iou(b, g) >= 0.5f) hit[t] = 1;
        }
    }
    for (int i = 0; i < truth.n; i++) {
        if (truth.entry[i].nbox == 0) continue;
        r->n_test++;
        r->n_test_hit += hit[i];
        r->n_test_absent += !present[i];
    }
    r->test_iou50_recall = r->n_test ? (double)r->n_test_hit / r->n_test : 0;
    r->fallback_share = r->n_images ? (double)r->n_fallback / r->n_images : 0;
    rc = 0;
    goto done;
oom:
    fl_errf(e, "%s: out of memory", crops_csv);
done:
    free(hit);
    fl_strmap_free(&images);
    fl_strmap_free(&test_row);
    fl_boxes_free(&truth);
    fl_csv_free(&c);
    return rc;
}
