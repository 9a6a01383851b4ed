/* K-fold assignment and folds.csv (stages/ident/folds.h). */
#include "stages/ident/folds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels_internal.h"

/* ---------------------------------------------------------------- seeded hashes */

/* splitmix64's finalizer: the "random" choices are hashes, so they depend only on (seed, name)
 * and not on the order rows are visited. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t str_hash(uint64_t seed, uint64_t salt, const char *s) {
    uint64_t h = 0xcbf29ce484222325ull ^ mix64(seed ^ mix64(salt)); /* FNV-1a, keyed */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return mix64(h);
}

enum { SALT_ORDER = 1, SALT_FOLD = 2, SALT_START = 3, SALT_IMAGE = 4 };

/* ---------------------------------------------------------------- assignment */

typedef struct ind {
    const char *name;
    int m;       /* images */
    int species; /* stratum: the smallest species name among its rows */
    int first;   /* a row of it (with that species) */
    uint64_t h;  /* seeded order hash */
} ind;

/* Largest first; then the seeded hash; then the (unique) name: a total order. */
static int ind_cmp(const void *a, const void *b) {
    const ind *x = a, *y = b;
    if (x->m != y->m) return x->m > y->m ? -1 : 1;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct row_key {
    uint64_t h;
    int row;
} row_key;

static int row_cmp(const void *a, const void *b) {
    const row_key *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Folds ordered by (images of the species, images in all, seeded hash, index): order[0] is
 * where the next image of this individual goes. Insertion sort: k <= 100. */
static void rank_folds(int k, const int *spc, const int *tot, uint64_t h, int *order,
                       uint64_t *tie) {
    for (int f = 0; f < k; f++)
        tie[f] = mix64(h ^ mix64((uint64_t)f + 1));
    for (int i = 0; i < k; i++) {
        int f = i, j = i;
        for (; j > 0; j--) {
            int g = order[j - 1];
            int less = spc[f] != spc[g]   ? spc[f] < spc[g]
                       : tot[f] != tot[g] ? tot[f] < tot[g]
                       : tie[f] != tie[g] ? tie[f] < tie[g]
                                          : f < g;
            if (!less) break;
            order[j] = g;
        }
        order[j] = f;
    }
}

static char **dup_column(const char *const *v, int n) {
    char **out = calloc((size_t)n + 1, sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            for (int j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    return out;
}

int fl_folds_by_parse(const char *s, fl_folds_by *out, fl_err *e) {
    if (s && !strcmp(s, "individual")) return *out = FL_FOLDS_BY_INDIVIDUAL, 0;
    if (s && !strcmp(s, "image")) return *out = FL_FOLDS_BY_IMAGE, 0;
    return fl_errf(e,
                   "folds.by: '%s' is not a fold mode (individual: an individual's images in "
                   "one fold | image: StratifiedKFold on individual_id)",
                   s ? s : "(none)");
}

/* The assignment proper: fold[r] for every row, given the individuals (sorted) and, per row,
 * its individual's index in the sorted list. */
static void assign(const fl_train_set *t, int k, uint64_t seed, fl_folds_by by, const ind *iv,
                   int nind, const int *rows, const int *row_start, int *spc_all, int *tot,
                   int32_t *fold, row_key *keys, int *order, uint64_t *tie) {
    for (int i = 0; i < nind; i++) {
        const ind *d = &iv[i];
        int *spc = spc_all + (size_t)d->species * k;
        uint64_t hf = str_hash(seed, SALT_FOLD, d->name);
        rank_folds(k, spc, tot, hf, order, tie);
        const int *r = rows + row_start[i];
        if (by == FL_FOLDS_BY_INDIVIDUAL) {
            for (int j = 0; j < d->m; j++)
                fold[r[j]] = order[0];
            spc[order[0]] += d->m, tot[order[0]] += d->m;
            continue;
        }
        /* by image: the images in a seeded order; full rounds from a seeded start fold, the
         * rest to the folds with the fewest images of the species. */
        for (int j = 0; j < d->m; j++)
            keys[j] = (row_key){str_hash(seed, SALT_IMAGE, t->image[r[j]]), r[j]};
        qsort(keys, (size_t)d->m, sizeof *keys, row_cmp);
        int full = d->m / k * k, start = (int)(str_hash(seed, SALT_START, d->name) % (uint64_t)k);
        for (int j = 0; j < full; j++)
            fold[keys[j].row] = (start + j) % k;
        for (int f = 0; f < k; f++)
            spc[f] += full / k, tot[f] += full / k;
        for (int j = full; j < d->m; j++) {
            int f = order[j - full];
            fold[keys[j].row] = f;
            spc[f]++, tot[f]++;
        }
    }
}

int fl_folds_make(const fl_train_set *t, int k, uint64_t seed, fl_folds_by by, fl_folds *f,
                  fl_err *e) {
    memset(f, 0, sizeof *f);
    if (k < 2 || k > FL_FOLDS_MAX_K)
        return fl_errf(e, "folds.k: %d is not in 2..%d", k, FL_FOLDS_MAX_K);
    const char *path = t->csv.name ? t->csv.name : "train.csv";
    int n = t->n, rc = -1, nind = 0, nsp = 0;
    fl_strmap im = {0}, sm = {0};
    ind *iv = calloc((size_t)n + 1, sizeof *iv);
    int *row_ind = calloc((size_t)n + 1, sizeof *row_ind);
    int *rows = calloc((size_t)n + 1, sizeof *rows);
    int *row_start = calloc((size_t)n + 2, sizeof *row_start);
    int *rank = calloc((size_t)n + 1, sizeof *rank);
    row_key *keys = calloc((size_t)n + 1, sizeof *keys);
    int32_t *fold = calloc((size_t)n + 1, sizeof *fold);
    int *tot = calloc((size_t)k, sizeof *tot), *order = calloc((size_t)k, sizeof *order);
    uint64_t *tie = calloc((size_t)k, sizeof *tie);
    int *spc = NULL;
    if (!iv || !row_ind || !rows || !row_start || !rank || !keys || !fold || !tot || !order ||
        !tie || fl_strmap_init(&im, (size_t)n, e) || fl_strmap_init(&sm, 64, e)) {
        fl_errf(e, "%s: out of memory assigning folds", path);
        goto out;
    }
    for (int r = 0; r < n; r++) {
        int s = fl_strmap_put(&sm, t->species[r], nsp);
        if (s == -1) s = nsp++;
        int i = fl_strmap_put(&im, t->individual[r], nind);
        if (s == -2 || i == -2) {
            fl_errf(e, "%s: out of memory assigning folds", path);
            goto out;
        }
        if (i == -1) {
            i = nind++;
            iv[i] = (ind){.name = t->individual[r],
                          .species = s,
                          .first = r,
                          .h = str_hash(seed, SALT_ORDER, t->individual[r])};
        }
        /* Stratum of an individual whose rows disagree: the smallest species name, so the
         * assignment does not depend on the row order. */
        if (strcmp(t->species[r], t->species[iv[i].first]) < 0) iv[i].species = s, iv[i].first = r;
        iv[i].m++;
        row_ind[r] = i;
    }
    if (k > nind) {
        fl_errf(e, "folds.k is %d but train.csv (%s) has only %d individual%s", k, path, nind,
                nind == 1 ? "" : "s");
        goto out;
    }
    if (!(spc = calloc((size_t)nsp * (size_t)k, sizeof *spc))) {
        fl_errf(e, "%s: out of memory assigning folds", path);
        goto out;
    }
    /* Sort the individuals, then lay out each one's rows (in row order) contiguously. */
    int *pos = rank; /* first-seen index -> sorted index */
    {
        ind *sorted = malloc(((size_t)nind + 1) * sizeof *sorted);
        if (!sorted) {
            fl_errf(e, "%s: out of memory assigning folds", path);
            goto out;
        }
        memcpy(sorted, iv, (size_t)nind * sizeof *iv);
        qsort(sorted, (size_t)nind, sizeof *sorted, ind_cmp);
        for (int i = 0; i < nind; i++)
            pos[row_ind[sorted[i].first]] = i;
        memcpy(iv, sorted, (size_t)nind * sizeof *iv);
        free(sorted);
    }
    for (int i = 0; i < nind; i++)
        row_start[i + 1] = row_start[i] + iv[i].m;
    {
        int *fill = calloc((size_t)nind + 1, sizeof *fill);
        if (!fill) {
            fl_errf(e, "%s: out of memory assigning folds", path);
            goto out;
        }
        for (int r = 0; r < n; r++) {
            int i = pos[row_ind[r]];
            rows[row_start[i] + fill[i]++] = r;
        }
        free(fill);
    }
    assign(t, k, seed, by, iv, nind, rows, row_start, spc, tot, fold, keys, order, tie);
    for (int g = 0; g < k; g++)
        if (tot[g] == 0) {
            fl_errf(e,
                    "folds: fold %d of %d would be empty (train.csv %s: %d images of %d "
                    "individuals)",
                    g, k, path, n, nind);
            goto out;
        }
    f->n = n, f->k = k, f->fold = fold, fold = NULL;
    if (!(f->image = dup_column(t->image, n)) || !(f->individual = dup_column(t->individual, n)) ||
        !(f->species = dup_column(t->species, n))) {
        fl_folds_free(f);
        fl_errf(e, "%s: out of memory assigning folds", path);
        goto out;
    }
    rc = 0;
out:
    fl_strmap_free(&im);
    fl_strmap_free(&sm);
    free(iv), free(row_ind), free(rows), free(row_start), free(rank), free(keys), free(fold);
    free(tot), free(order), free(tie), free(spc);
    return rc;
}

/* ---------------------------------------------------------------- folds.csv */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

/* A CSV field, quoted (quotes doubled) when it holds a comma, quote or line break. */
static void sb_field(sbuf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        sb_put(b, s, strlen(s));
        return;
    }
    sb_put(b, "\"", 1);
    for (const char *q; (q = strchr(s, '"')); s = q + 1) {
        sb_put(b, s, (size_t)(q - s));
        sb_put(b, "\"\"", 2);
    }
    sb_put(b, s, strlen(s));
    sb_put(b, "\"", 1);
}

int fl_folds_write(const char *path, const fl_folds *f, fl_err *e) {
    sbuf b = {0};
    sb_put(&b, "image,individual_id,species,fold\n", 33);
    for (int r = 0; r < f->n; r++) {
        char num[16];
        sb_field(&b, f->image[r]);
        sb_put(&b, ",", 1);
        sb_field(&b, f->individual[r]);
        sb_put(&b, ",", 1);
        sb_field(&b, f->species[r]);
        snprintf(num, sizeof num, ",%d\n", (int)f->fold[r]);
        sb_put(&b, num, strlen(num));
    }
    int rc =
        b.oom ? fl_errf(e, "%s: out of memory", path) : fl_write_file_atomic(path, b.p, b.n, e);
    free(b.p);
    return rc;
}

void fl_folds_free(fl_folds *f) {
    if (!f) return;
    for (int r = 0; r < f->n; r++) {
        if (f->image) free(f->image[r]);
        if (f->individual) free(f->individual[r]);
        if (f->species) free(f->species[r]);
    }
    free(f->image);
    free(f->individual);
    free(f->species);
    free(f->fold);
    memset(f, 0, sizeof *f);
}

static int parse_fold(const char *s, int32_t *out) {
    if (!s[0] || strspn(s, "0123456789") != strlen(s) || strlen(s) > 3) return -1;
    long v = strtol(s, NULL, 10);
    if (v >= FL_FOLDS_MAX_K) return -1;
    *out = (int32_t)v;
    return 0;
}

int fl_folds_read(const char *path, fl_folds *f, fl_err *e) {
    memset(f, 0, sizeof *f);
    fl_csv c;
    if (fl_csv_read(path, &c, e)) return -1;
    static const char *const cols[] = {"image", "individual_id", "species", "fold"};
    int idx[4], rc = -1, n = c.nrows, nfold[FL_FOLDS_MAX_K] = {0};
    int *lines = NULL;
    const char **names = NULL;
    int hdr_ok = c.ncols == 4;
    for (int j = 0; hdr_ok && j < 4; j++)
        hdr_ok = !strcmp(c.header[j], cols[j]);
    if (!hdr_ok) {
        fl_errf(e, "%s:%d: the header must be image,individual_id,species,fold", path,
                c.rows[0].line);
        goto out;
    }
    if (fl_csv_require(&c, cols, 4, idx, e)) goto out; /* every row has 4 fields */
    if (fl_labels_check_rows(&c, "folds rows", e)) goto out;
    f->image = calloc((size_t)n + 1, sizeof *f->image);
    f->individual = calloc((size_t)n + 1, sizeof *f->individual);
    f->species = calloc((size_t)n + 1, sizeof *f->species);
    f->fold = calloc((size_t)n + 1, sizeof *f->fold);
    lines = calloc((size_t)n + 1, sizeof *lines);
    names = calloc((size_t)n + 1, sizeof *names);
    if (!f->image || !f->individual || !f->species || !f->fold || !lines || !names) {
        fl_errf(e, "%s: out of memory", path);
        goto out;
    }
    for (int r = 0; r < n; r++) {
        const fl_csv_row *row = &c.rows[r + 1];
        char **v = row->f;
        lines[r] = row->line, names[r] = v[0];
        if (fl_labels_check_image_name(&c, row->line, v[0], e) ||
            fl_labels_check_label(&c, row->line, "individual_id", v[1], e))
            goto out;
        if (!strcmp(v[1], FL_NEW_INDIVIDUAL)) {
            fl_errf(e, "%s:%d: \"%s\" is not an individual_id for a train image", path, row->line,
                    FL_NEW_INDIVIDUAL);
            goto out;
        }
        if (!v[2][0]) {
            fl_errf(e, "%s:%d: empty species", path, row->line);
            goto out;
        }
        if (parse_fold(v[3], &f->fold[r])) {
            fl_errf(e, "%s:%d: fold \"%.*s%s\" is not an integer in 0..%d", path, row->line,
                    FL_Q(v[3]), FL_FOLDS_MAX_K - 1);
            goto out;
        }
        nfold[f->fold[r]]++;
        if (f->fold[r] + 1 > f->k) f->k = f->fold[r] + 1;
        f->n = r + 1; /* what fl_folds_free releases */
        if (!(f->image[r] = strdup(v[0])) || !(f->individual[r] = strdup(v[1])) ||
            !(f->species[r] = strdup(v[2]))) {
            fl_errf(e, "%s: out of memory", path);
            goto out;
        }
    }
    if (fl_labels_check_unique(&c, names, lines, n, "image", e)) goto out;
    if (f->k < 2) {
        fl_errf(e, "%s: every row is in fold 0: a fold assignment needs at least 2 folds", path);
        goto out;
    }
    for (int g = 0; g < f->k; g++)
        if (!nfold[g]) {
            fl_errf(e, "%s: fold %d has no rows (the file has folds 0..%d)", path, g, f->k - 1);
            goto out;
        }
    rc = 0;
out:
    if (rc) fl_folds_free(f);
    free(lines);
    free(names);
    fl_csv_free(&c);
    return rc;
}

int fl_folds_val_new(const fl_folds *f, uint8_t *is_new, fl_err *e) {
    fl_strmap m;
    if (fl_strmap_init(&m, (size_t)f->n, e)) return -1;
    int32_t *first = malloc(((size_t)f->n + 1) * sizeof *first);
    uint8_t *multi = calloc((size_t)f->n + 1, 1);
    int nind = 0, count = -1;
    if (!first || !multi) goto out;
    for (int r = 0; r < f->n; r++) {
        int i = fl_strmap_put(&m, f->individual[r], nind);
        if (i == -2) goto out;
        if (i == -1)
            first[i = nind++] = f->fold[r];
        else if (first[i] != f->fold[r])
            multi[i] = 1;
    }
    count = 0;
    for (int r = 0; r < f->n; r++) {
        is_new[r] = !multi[fl_strmap_get(&m, f->individual[r])];
        count += is_new[r];
    }
out:
    if (count < 0) fl_errf(e, "folds: out of memory");
    free(first);
    free(multi);
    fl_strmap_free(&m);
    return count;
}
