/* Box files in the two public formats competitors used for detector training and crops:
 * `bbox` = "[[x1 y1 x2 y2]]" (numpy-style list of one or more boxes; commas optional, "[]" for
 * none, a flat "[x1 y1 x2 y2]" also accepted) or `box` = "x1 y1 x2 y2". */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "stages/labels/labels_internal.h"

static const char *skip_sep(const char *s) {
    while (*s && (isspace((unsigned char)*s) || *s == ',')) s++;
    return s;
}

static int parse_four(const char **ps, float out[4], fl_err *e) {
    const char *s = *ps;
    for (int k = 0; k < 4; k++) {
        s = skip_sep(s);
        char *end;
        float v = strtof(s, &end);
        if (end == s) return fl_errf(e, "expected a number at \"%.20s\"", s);
        if (!isfinite(v)) return fl_errf(e, "coordinate is not finite at \"%.20s\"", s);
        out[k] = v;
        s = end;
    }
    if (!(out[2] > out[0] && out[3] > out[1]))
        return fl_errf(e, "box [%g %g %g %g] has x2 <= x1 or y2 <= y1", out[0], out[1], out[2],
                       out[3]);
    *ps = s;
    return 0;
}

int fl_bbox_parse(const char *s, float **xyxy, int *nbox, fl_err *e) {
    *xyxy = NULL;
    *nbox = 0;
    int cap = 0;
    s = skip_sep(s);
    if (*s != '[') return fl_errf(e, "bbox must start with '[' (got \"%.20s\")", s);
    s = skip_sep(s + 1);
    if (*s != '[' && *s != ']') { /* flat form: one box */
        float b[4];
        if (parse_four(&s, b, e) != 0) return -1;
        s = skip_sep(s);
        if (*s != ']') return fl_errf(e, "expected ']' after 4 coordinates");
        s = skip_sep(s + 1);
        if (*s) return fl_errf(e, "unexpected text after the box: \"%.20s\"", s);
        *xyxy = malloc(4 * sizeof **xyxy);
        if (!*xyxy) return fl_errf(e, "out of memory");
        memcpy(*xyxy, b, sizeof b);
        *nbox = 1;
        return 0;
    }
    while (*s == '[') {
        float b[4];
        s++;
        if (parse_four(&s, b, e) != 0) goto fail;
        s = skip_sep(s);
        if (*s != ']') {
            fl_errf(e, "box %d: expected ']' after 4 coordinates (got \"%.20s\")", *nbox + 1, s);
            goto fail;
        }
        s = skip_sep(s + 1);
        if (*nbox == cap) {
            cap = cap ? cap * 2 : 2;
            float *nb = realloc(*xyxy, (size_t)cap * 4 * sizeof *nb);
            if (!nb) { fl_errf(e, "out of memory"); goto fail; }
            *xyxy = nb;
        }
        memcpy(*xyxy + 4 * *nbox, b, sizeof b);
        (*nbox)++;
    }
    if (*s != ']') { fl_errf(e, "expected '[' or ']' at \"%.20s\"", s); goto fail; }
    s = skip_sep(s + 1);
    if (*s) { fl_errf(e, "unexpected text after the box list: \"%.20s\"", s); goto fail; }
    return 0;
fail:
    free(*xyxy);
    *xyxy = NULL;
    *nbox = 0;
    return -1;
}

int fl_boxes_read(const char *path, const char *image_dir, fl_box_set *b, fl_err *e) {
    memset(b, 0, sizeof *b);
    if (fl_csv_read(path, &b->csv, e) != 0) return -1;
    int bcol = fl_csv_col(&b->csv, "bbox"), plain = 0;
    if (bcol < 0) bcol = fl_csv_col(&b->csv, "box"), plain = 1;
    if (bcol < 0) {
        fl_errf(e, "%s:%d: missing column \"bbox\" (\"[[x1 y1 x2 y2]]\") or \"box\" "
                "(\"x1 y1 x2 y2\")", path, b->csv.rows[0].line);
        goto fail;
    }
    static const char *const cols[] = {"image"};
    int icol;
    if (fl_csv_require(&b->csv, cols, 1, &icol, e) != 0) goto fail;
    if (fl_labels_check_rows(&b->csv, "boxes", e) != 0) goto fail;
    int n = b->csv.nrows;
    b->n = n;
    b->entry = calloc((size_t)n + 1, sizeof *b->entry);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    int *lines = calloc((size_t)n + 1, sizeof *lines);
    if (!b->entry || !names || !lines) {
        free(names);
        free(lines);
        fl_errf(e, "%s: out of memory", path);
        goto fail;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const fl_csv_row *r = &b->csv.rows[i + 1];
        fl_box_entry *be = &b->entry[i];
        be->image = names[i] = r->f[icol];
        be->line = lines[i] = r->line;
        rc = fl_labels_check_image_name(&b->csv, r->line, be->image, e);
        if (rc) break;
        if (plain) {
            const char *s = r->f[bcol];
            float v[4];
            rc = parse_four(&s, v, e);
            if (rc == 0 && *skip_sep(s)) rc = fl_errf(e, "unexpected text after 4 coordinates");
            if (rc == 0 && !(be->xyxy = malloc(sizeof v))) rc = fl_errf(e, "out of memory");
            if (rc == 0) memcpy(be->xyxy, v, sizeof v), be->nbox = 1;
        } else {
            rc = fl_bbox_parse(r->f[bcol], &be->xyxy, &be->nbox, e);
        }
        if (rc) fl_errprefix(e, "%s:%d: %s", path, r->line, plain ? "box" : "bbox");
    }
    if (rc == 0) rc = fl_labels_check_unique(&b->csv, names, lines, n, "image", e);
    if (rc == 0) rc = fl_labels_check_present(&b->csv, image_dir, names, lines, n, e);
    free(names);
    free(lines);
    if (rc == 0) return 0;
fail:
    fl_boxes_free(b);
    return -1;
}

void fl_boxes_free(fl_box_set *b) {
    if (!b) return;
    for (int i = 0; b->entry && i < b->n; i++) free(b->entry[i].xyxy);
    free(b->entry);
    fl_csv_free(&b->csv);
    memset(b, 0, sizeof *b);
}
