/* Pseudo-label threshold and pseudo.csv reader (see pseudo.h). */
#include "stages/ident/pseudo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cq {
    float conf;
    uint8_t hit;
} cq;

static int by_conf_desc(const void *a, const void *b) {
    float x = ((const cq *)a)->conf, y = ((const cq *)b)->conf;
    return x > y ? -1 : x < y ? 1 : 0;
}

int fl_pseudo_threshold(const float *conf, const uint8_t *hit, int64_t n, double target, int min_n,
                        double floor, fl_pseudo_cut *out, fl_err *e) {
    *out = (fl_pseudo_cut){.threshold = INFINITY};
    if (n <= 0) return 0;
    cq *v = malloc((size_t)n * sizeof *v);
    if (!v) return fl_errf(e, "pseudo: out of memory");
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(conf[i])) v[m].conf = conf[i], v[m++].hit = hit[i] != 0;
    qsort(v, (size_t)m, sizeof *v, by_conf_desc);
    int64_t hits = 0;
    for (int64_t i = 0; i < m; i++) {
        hits += v[i].hit;
        if (i + 1 < m && v[i + 1].conf == v[i].conf) continue; /* ties are cut together */
        if ((double)v[i].conf < floor) break;
        int64_t cnt = i + 1;
        double prec = (double)hits / (double)cnt;
        if (cnt >= min_n && prec >= target) /* the lowest such cut wins: keep going */
            *out = (fl_pseudo_cut){
                .reached = 1, .threshold = v[i].conf, .precision = prec, .n_above = cnt};
    }
    free(v);
    return 0;
}

int fl_pseudo_read(const char *path, fl_pseudo *p, fl_err *e) {
    memset(p, 0, sizeof *p);
    if (fl_csv_read(path, &p->csv, e) != 0) return -1;
    static const char *const cols[] = {"image", "individual_id", "species", "confidence"};
    int ci[4];
    const fl_csv *c = &p->csv;
    if (fl_csv_require(c, cols, 4, ci, e) != 0) goto fail;
    size_t sz = (size_t)c->nrows + 1;
    p->image = calloc(sz, sizeof *p->image), p->individual = calloc(sz, sizeof *p->individual);
    p->species = calloc(sz, sizeof *p->species), p->conf = calloc(sz, sizeof *p->conf);
    fl_strmap seen = {0};
    if (!p->image || !p->individual || !p->species || !p->conf ||
        fl_strmap_init(&seen, sz, e) != 0) {
        if (!e->msg[0]) fl_errf(e, "pseudo: out of memory");
        goto fail;
    }
    for (int r = 1; r <= c->nrows; r++) {
        char **f = c->rows[r].f, *end = NULL;
        int line = c->rows[r].line;
        for (int k = 0; k < 4; k++)
            if (!f[ci[k]][0]) {
                fl_errf(e, "%s:%d: empty %s", path, line, cols[k]);
                goto fail_map;
            }
        double v = strtod(f[ci[3]], &end);
        if (*end || !isfinite(v)) {
            fl_errf(e, "%s:%d: confidence '%s' is not a number", path, line, f[ci[3]]);
            goto fail_map;
        }
        if (fl_strmap_get(&seen, f[ci[0]]) >= 0) {
            fl_errf(e, "%s:%d: image '%s' listed twice", path, line, f[ci[0]]);
            goto fail_map;
        }
        if (fl_strmap_put(&seen, f[ci[0]], r) == -2) {
            fl_errf(e, "pseudo: out of memory");
            goto fail_map;
        }
        p->image[p->n] = f[ci[0]], p->individual[p->n] = f[ci[1]];
        p->species[p->n] = f[ci[2]], p->conf[p->n++] = (float)v;
    }
    fl_strmap_free(&seen);
    return 0;
fail_map:
    fl_strmap_free(&seen);
fail:
    fl_pseudo_free(p);
    return -1;
}

void fl_pseudo_free(fl_pseudo *p) {
    free(p->image), free(p->individual), free(p->species), free(p->conf);
    fl_csv_free(&p->csv);
    memset(p, 0, sizeof *p);
}
