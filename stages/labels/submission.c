/* Submissions: image,predictions with up to 5 labels separated by spaces. The reader is as
 * lenient as Kaggle's scorer (any number of labels, only the first 5 count); the validator and
 * the writer hold our own output to the competition's rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "stages/labels/labels_internal.h"

int fl_submission_read(const char *path, fl_submission *s, fl_err *e) {
    memset(s, 0, sizeof *s);
    if (fl_csv_read(path, &s->csv, e) != 0) return -1;
    static const char *const cols[] = {"image", "predictions"};
    int idx[2];
    if (fl_csv_require(&s->csv, cols, 2, idx, e) != 0) goto fail;
    if (fl_labels_check_rows(&s->csv, "test images", e) != 0) goto fail;
    int n = s->csv.nrows;
    s->n = n;
    s->image = calloc((size_t)n + 1, sizeof *s->image);
    s->line = calloc((size_t)n + 1, sizeof *s->line);
    s->npred = calloc((size_t)n + 1, sizeof *s->npred);
    s->pred = calloc((size_t)n + 1, sizeof *s->pred);
    if (!s->image || !s->line || !s->npred || !s->pred) {
        fl_errf(e, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const fl_csv_row *r = &s->csv.rows[i + 1];
        s->image[i] = r->f[idx[0]];
        s->line[i] = r->line;
        if (fl_labels_check_image_name(&s->csv, r->line, s->image[i], e) != 0) goto fail;
        /* Split the predictions field in place (the CSV owns the bytes). */
        char *p = r->f[idx[1]];
        int k = 0;
        for (;;) {
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) break;
            char *tok = p;
            while (*p && *p != ' ' && *p != '\t') p++;
            if (*p) *p++ = '\0';
            if (k < FL_MAP_K) s->pred[i][k] = tok;
            k++;
        }
        s->npred[i] = k;
    }
    if (fl_labels_check_unique(&s->csv, s->image, s->line, n, "image", e) != 0) goto fail;
    return 0;
fail:
    fl_submission_free(s);
    return -1;
}

int fl_submission_check_images(const fl_submission *s, const char *image_dir, fl_err *e) {
    return fl_labels_check_present(&s->csv, image_dir, s->image, s->line, s->n, e);
}

int fl_submission_labels_expected(int n_known) {
    return n_known + 1 < FL_MAP_K ? n_known + 1 : FL_MAP_K;
}

void fl_submission_free(fl_submission *s) {
    if (!s) return;
    free(s->image);
    free(s->line);
    free(s->npred);
    free(s->pred);
    fl_csv_free(&s->csv);
    memset(s, 0, sizeof *s);
}

/* want distinct, non-empty labels without separators; msg gets the reason. */
static int check_labels(const char *const *lab, int n, int want, char *msg, size_t cap) {
    if (n != want)
        return snprintf(msg, cap, "%d labels, expected %d%s", n, want,
                        want < FL_MAP_K ? " (new_individual and every train individual)" : ""),
               -1;
    for (int k = 0; k < n; k++) {
        if (!lab[k] || !lab[k][0]) return snprintf(msg, cap, "label %d is empty", k + 1), -1;
        if (strpbrk(lab[k], " \t,\"\r\n"))
            return snprintf(msg, cap, "label %d \"%.*s%s\" contains a separator", k + 1,
                            FL_Q(lab[k])), -1;
        for (int j = 0; j < k; j++)
            if (strcmp(lab[j], lab[k]) == 0)
                return snprintf(msg, cap, "label \"%.*s%s\" repeated (ranks %d and %d)",
                                FL_Q(lab[k]), j + 1, k + 1), -1;
    }
    return 0;
}

int fl_submission_validate(const fl_submission *s, const char *const *test_images, int n_test,
                           const fl_strmap *known_ids, fl_err *e) {
    const char *name = s->csv.name ? s->csv.name : "submission";
    fl_strmap tests;
    if (fl_strmap_init(&tests, (size_t)n_test, e) != 0) return -1;
    for (int i = 0; i < n_test; i++)
        if (fl_strmap_put(&tests, test_images[i], i) == -2) {
            fl_strmap_free(&tests);
            return fl_errf(e, "%s: out of memory", name);
        }
    int want = fl_submission_labels_expected((int)known_ids->n);
    char *seen = calloc((size_t)n_test + 1, 1);
    int rc = seen ? 0 : fl_errf(e, "%s: out of memory", name);
    for (int i = 0; i < s->n && rc == 0; i++) {
        int t = fl_strmap_get(&tests, s->image[i]);
        if (t < 0) {
            rc = fl_errf(e, "%s:%d: image \"%.*s%s\" is not a test image", name, s->line[i],
                         FL_Q(s->image[i]));
            break;
        }
        seen[t] = 1;
        char why[256];
        int np = s->npred[i];
        if (check_labels(s->pred[i], np, want, why, sizeof why) != 0) {
            rc = fl_errf(e, "%s:%d: %s", name, s->line[i], why);
            break;
        }
        for (int k = 0; k < want; k++)
            if (strcmp(s->pred[i][k], FL_NEW_INDIVIDUAL) != 0 &&
                fl_strmap_get(known_ids, s->pred[i][k]) < 0) {
                rc = fl_errf(e, "%s:%d: label \"%.*s%s\" is neither a train individual nor %s",
                             name, s->line[i], FL_Q(s->pred[i][k]), FL_NEW_INDIVIDUAL);
                break;
            }
    }
    for (int t = 0; t < n_test && rc == 0; t++)
        if (!seen[t]) rc = fl_errf(e, "%s: test image \"%s\" has no prediction", name, test_images[t]);
    free(seen);
    fl_strmap_free(&tests);
    return rc;
}

int fl_submission_write(const char *path, int n, const char *const *images,
                        const char *const (*labels)[FL_MAP_K], fl_err *e) {
    size_t cap = 64, len = 0;
    for (int i = 0; i < n; i++) {
        cap += strlen(images[i]) + 8;
        for (int k = 0; k < FL_MAP_K; k++) cap += strlen(labels[i][k] ? labels[i][k] : "") + 1;
    }
    char *buf = malloc(cap);
    if (!buf) return fl_errf(e, "%s: out of memory", path);
    len += (size_t)snprintf(buf, cap, "image,predictions\n");
    for (int i = 0; i < n; i++) {
        char why[256];
        if (!images[i][0] || strpbrk(images[i], ",\"\r\n")) {
            free(buf);
            return fl_errf(e, "%s: row %d: bad image name \"%s\"", path, i + 1, images[i]);
        }
        int nl = 0; /* the labels given: a non-empty prefix, NULL after it */
        while (nl < FL_MAP_K && labels[i][nl]) nl++;
        int want = nl, extra = nl;
        while (extra < FL_MAP_K && !labels[i][extra]) extra++;
        if (nl == 0 || extra < FL_MAP_K) want = FL_MAP_K; /* a hole: report the empty label */
        if (check_labels(labels[i], want, want, why, sizeof why) != 0) {
            free(buf);
            return fl_errf(e, "%s: row %d (%s): %s", path, i + 1, images[i], why);
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s,", images[i]);
        for (int k = 0; k < nl; k++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", k ? " " : "", labels[i][k]);
        buf[len++] = '\n';
    }
    int rc = fl_write_file_atomic(path, buf, len, e);
    free(buf);
    return rc;
}
