/* The embeddings artifact (embeddings.h). */
#include "stages/ident/embeddings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/knn.h"
#include "runtime/safetensors.h"
#include "stages/labels/labels.h"

void fl_emb_free(fl_emb *E) {
    if (!E) return;
    if (E->image)
        for (int64_t i = 0; i < E->n; i++)
            free(E->image[i]);
    free(E->image);
    free(E->m);
    free(E->test);
    memset(E, 0, sizeof *E);
}

/* Writes s at o as one CSV field (quoted when it holds a comma, quote or newline); o has room
 * for 2 strlen(s) + 2 bytes. Returns the end. */
static char *put_field(char *o, const char *s) {
    int q = strpbrk(s, ",\"\r\n") != NULL;
    if (q) *o++ = '"';
    for (; *s; s++) {
        if (*s == '"') *o++ = '"';
        *o++ = *s;
    }
    if (q) *o++ = '"';
    return o;
}

int fl_emb_write(const char *dir, const fl_emb *E, fl_err *e) {
    if (E->d < 1 || E->n < 0)
        return fl_errf(e, "%s: embeddings of shape [%lld, %lld]", dir, (long long)E->n,
                       (long long)E->d);
    if (fl_mkdirs(dir, e) != 0) return -1;
    char *st = fl_strdupf("%s/%s", dir, FL_EMB_FILE), *rows = fl_strdupf("%s/%s", dir, FL_EMB_ROWS);
    size_t len = 0, cap = 64 + (size_t)E->n * 48;
    char *buf = malloc(cap);
    int rc = -1;
    if (!st || !rows || !buf) {
        fl_errf(e, "%s: out of memory", dir);
        goto done;
    }
    len = (size_t)snprintf(buf, cap, "row,image,split\n");
    for (int64_t i = 0; i < E->n; i++) {
        size_t need = len + 2 * strlen(E->image[i]) + 48;
        if (need > cap) {
            char *nb = realloc(buf, cap = 2 * need);
            if (!nb) {
                fl_errf(e, "%s: out of memory", dir);
                goto done;
            }
            buf = nb;
        }
        char *o = buf + len;
        o += sprintf(o, "%lld,", (long long)i);
        o = put_field(o, E->image[i]);
        o += sprintf(o, E->test[i] ? ",test\n" : ",train\n");
        len = (size_t)(o - buf);
    }
    int64_t shape[2] = {E->n, E->d};
    fl_st_entry ent = {
        .name = FL_EMB_TENSOR, .dtype = FL_ST_F32, .ndim = 2, .shape = shape, .data = E->m};
    fl_st_kv meta[] = {{"fluke.kind", "embeddings"}};
    if (fl_st_write(st, &ent, 1, meta, 1, e) != 0) goto done;
    if (fl_write_file_atomic(rows, buf, len, e) != 0) goto done;
    rc = 0;
done:
    free(buf);
    free(st);
    free(rows);
    return rc;
}

int fl_emb_read(const char *dir, const char *what, fl_emb *E, fl_err *e) {
    memset(E, 0, sizeof *E);
    char *st = fl_strdupf("%s/%s", dir, FL_EMB_FILE), *rows = fl_strdupf("%s/%s", dir, FL_EMB_ROWS);
    fl_st_file *f = NULL;
    fl_csv c = {0};
    fl_strmap seen[2] = {{0}, {0}};
    int rc = -1;
    if (!st || !rows) {
        fl_errf(e, "%s: out of memory", what);
        goto done;
    }
    if (!(f = fl_st_open(st, e))) goto fail;
    const char *kind = fl_st_meta(f, "fluke.kind");
    if (!kind || strcmp(kind, "embeddings") != 0) {
        fl_errf(e, "%s: not an embeddings artifact (metadata fluke.kind is %s)", st,
                kind ? kind : "missing");
        goto fail;
    }
    const fl_st_tensor *t = fl_st_find(f, FL_EMB_TENSOR);
    if (!t) {
        fl_errf(e, "%s: no tensor '%s'", st, FL_EMB_TENSOR);
        goto fail;
    }
    if (t->dtype != FL_ST_F32 || t->ndim != 2) {
        fl_errf(e, "%s: tensor '%s' is %s with %d dims, want F32 [n, d]", st, FL_EMB_TENSOR,
                fl_st_dtype_name(t->dtype), t->ndim);
        goto fail;
    }
    E->n = t->shape[0], E->d = t->shape[1];
    if (E->d == 0) {
        fl_errf(e, "%s: embeddings of width 0 ([%lld, 0])", st, (long long)E->n);
        goto fail;
    }
    if (fl_csv_read(rows, &c, e) != 0) goto fail;
    static const char *const cols[] = {"row", "image", "split"};
    int ci[3];
    if (fl_csv_require(&c, cols, 3, ci, e) != 0) goto fail;
    if ((int64_t)c.nrows != E->n) {
        fl_errf(e, "%s: %d rows but %s holds %lld embeddings", rows, c.nrows, st, (long long)E->n);
        goto fail;
    }
    size_t nn = (size_t)E->n;
    E->m = malloc((nn ? nn : 1) * (size_t)E->d * sizeof *E->m);
    E->image = calloc(nn + 1, sizeof *E->image);
    E->test = calloc(nn + 1, 1);
    if (!E->m || !E->image || !E->test) {
        fl_errf(e, "%s: out of memory for %lld embeddings", what, (long long)E->n);
        goto fail;
    }
    if (fl_st_to_f32(f, t, E->m, t->numel, e) != 0) goto fail;
    if (fl_strmap_init(&seen[0], nn, e) != 0 || fl_strmap_init(&seen[1], nn, e) != 0) goto fail;
    for (int64_t i = 0; i < E->n; i++) {
        const fl_csv_row *r = &c.rows[i + 1];
        char *end;
        long long rn = strtoll(r->f[ci[0]], &end, 10);
        if (end == r->f[ci[0]] || *end || rn != i) {
            fl_errf(e, "%s:%d: row is '%s', expected %lld", rows, r->line, r->f[ci[0]],
                    (long long)i);
            goto fail;
        }
        const char *sp = r->f[ci[2]];
        if (strcmp(sp, "train") && strcmp(sp, "test")) {
            fl_errf(e, "%s:%d: split '%s' is neither train nor test", rows, r->line, sp);
            goto fail;
        }
        E->test[i] = sp[1] == 'e';
        if (!*r->f[ci[1]]) {
            fl_errf(e, "%s:%d: empty image name", rows, r->line);
            goto fail;
        }
        if (!(E->image[i] = strdup(r->f[ci[1]]))) {
            fl_errf(e, "%s: out of memory", what);
            goto fail;
        }
        int prev = fl_strmap_put(&seen[E->test[i]], E->image[i], (int)i);
        if (prev == -2) {
            fl_errf(e, "%s: out of memory", what);
            goto fail;
        }
        if (prev >= 0) {
            fl_errf(e, "%s:%d: image '%s' appears twice in split %s (also row %d)", rows, r->line,
                    E->image[i], sp, prev);
            goto fail;
        }
        const float *v = E->m + (size_t)i * (size_t)E->d;
        for (int64_t j = 0; j < E->d; j++)
            if (!isfinite(v[j])) {
                fl_errf(e, "%s: row %lld (image '%s', %s:%d) has %s at column %lld", st,
                        (long long)i, E->image[i], rows, r->line, isnan(v[j]) ? "NaN" : "inf",
                        (long long)j);
                goto fail;
            }
    }
    int64_t z = fl_knn_normalize_rows(E->m, E->n, E->d);
    if (z >= 0) {
        fl_errf(e, "%s: row %lld (image '%s') is all zeros: it has no direction", st, (long long)z,
                E->image[z]);
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    fl_errprefix(e, "%s", what);
    fl_emb_free(E);
done:
    fl_strmap_free(&seen[0]);
    fl_strmap_free(&seen[1]);
    fl_csv_free(&c);
    fl_st_close(f);
    free(st);
    free(rows);
    return rc;
}
