/* train.csv (image,species,individual_id) with the species fixes of SPECS.md, and the checks
 * shared by every image-keyed reader: file-name sanity, duplicates, listed-but-missing images. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stages/labels/labels.h"
#include "stages/labels/labels_internal.h"

static const struct {
    const char *raw, *fixed;
} FIXES[FL_LABEL_NFIXES] = {
    {"globis", "short_finned_pilot_whale"},
    {"pilot_whale", "short_finned_pilot_whale"},
    {"kiler_whale", "killer_whale"},
    {"bottlenose_dolpin", "bottlenose_dolphin"},
};

const char *fl_species_fix(const char *raw, int *rule) {
    for (int k = 0; k < FL_LABEL_NFIXES; k++)
        if (strcmp(raw, FIXES[k].raw) == 0) {
            if (rule) *rule = k;
            return FIXES[k].fixed;
        }
    if (rule) *rule = -1;
    return raw;
}

const char *fl_species_fix_raw(int rule) {
    return rule >= 0 && rule < FL_LABEL_NFIXES ? FIXES[rule].raw : NULL;
}

/* The first control character in s, or NULL. */
static const char *find_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return s;
    return NULL;
}

int fl_labels_check_image_name(const fl_csv *c, int line, const char *name, fl_err *e) {
    if (!name[0]) return fl_errf(e, "%s:%d: empty image name", c->name, line);
    if (strchr(name, '/') || strchr(name, '\\') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return fl_errf(e, "%s:%d: image name \"%.*s%s\" is not a plain file name", c->name, line,
                       FL_Q(name));
    if (strpbrk(name, ",\"") || find_control(name))
        return fl_errf(e, "%s:%d: image name \"%.*s%s\" contains a comma, quote or control "
                       "character", c->name, line, FL_Q(name));
    return 0;
}

int fl_labels_check_label(const fl_csv *c, int line, const char *col, const char *v, fl_err *e) {
    if (!v[0]) return fl_errf(e, "%s:%d: empty %s", c->name, line, col);
    const char *bad = strpbrk(v, " \t,\"");
    if (!bad) bad = find_control(v);
    if (bad)
        return fl_errf(e, "%s:%d: %s \"%.*s%s\" contains %s at byte %d (submission labels are "
                       "separated by spaces)", c->name, line, col, FL_Q(v),
                       *bad == ' ' ? "a space" : *bad == ',' ? "a comma" : *bad == '"' ? "a quote"
                       : "a tab or control character", (int)(bad - v) + 1);
    return 0;
}

int fl_labels_check_rows(const fl_csv *c, const char *what, fl_err *e) {
    if (c->nrows > 0) return 0;
    return fl_errf(e, "%s:%d: no %s: the file has a header line and no data rows", c->name,
                   c->rows[0].line, what);
}

int fl_labels_check_unique(const fl_csv *c, const char *const *names, const int *lines, int n,
                           const char *what, fl_err *e) {
    fl_strmap m;
    if (fl_strmap_init(&m, (size_t)n, e) != 0) return -1;
    for (int i = 0; i < n; i++) {
        int prev = fl_strmap_put(&m, names[i], i);
        if (prev == -2) {
            fl_strmap_free(&m);
            return fl_errf(e, "%s: out of memory", c->name);
        }
        if (prev >= 0) {
            fl_strmap_free(&m);
            return fl_errf(e, "%s:%d: duplicate %s \"%.*s%s\" (first on line %d)", c->name,
                           lines[i], what, FL_Q(names[i]), lines[prev]);
        }
    }
    fl_strmap_free(&m);
    return 0;
}

int fl_labels_check_present(const fl_csv *c, const char *dir, const char *const *names,
                            const int *lines, int n, fl_err *e) {
    if (!dir) return 0;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fl_errf(e, "%s: image directory %s does not exist", c->name, dir);
    for (int i = 0; i < n; i++) {
        char *p = fl_strdupf("%s/%s", dir, names[i]);
        int ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
        if (!ok)
            return fl_errf(e, "%s:%d: image \"%.*s%s\" is listed but missing from %s", c->name,
                           lines[i], FL_Q(names[i]), dir);
    }
    return 0;
}

int fl_train_read(const char *path, const char *image_dir, fl_train_set *t, fl_err *e) {
    memset(t, 0, sizeof *t);
    if (fl_csv_read(path, &t->csv, e) != 0) return -1;
    static const char *const cols[] = {"image", "species", "individual_id"};
    int idx[3];
    if (fl_csv_require(&t->csv, cols, 3, idx, e) != 0) goto fail;
    if (fl_labels_check_rows(&t->csv, "train images", e) != 0) goto fail;
    int n = t->csv.nrows;
    t->n = n;
    t->image = calloc((size_t)n + 1, sizeof *t->image);
    t->species = calloc((size_t)n + 1, sizeof *t->species);
    t->individual = calloc((size_t)n + 1, sizeof *t->individual);
    t->line = calloc((size_t)n + 1, sizeof *t->line);
    if (!t->image || !t->species || !t->individual || !t->line) {
        fl_errf(e, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const fl_csv_row *r = &t->csv.rows[i + 1];
        t->line[i] = r->line;
        t->image[i] = r->f[idx[0]];
        if (fl_labels_check_image_name(&t->csv, r->line, t->image[i], e) != 0) goto fail;
        if (!r->f[idx[1]][0]) {
            fl_errf(e, "%s:%d: empty species", path, r->line);
            goto fail;
        }
        if (fl_labels_check_label(&t->csv, r->line, "individual_id", r->f[idx[2]], e) != 0)
            goto fail;
        if (strcmp(r->f[idx[2]], FL_NEW_INDIVIDUAL) == 0) {
            fl_errf(e, "%s:%d: \"%s\" is not an individual_id for a train image", path, r->line,
                    FL_NEW_INDIVIDUAL);
            goto fail;
        }
        int rule;
        t->species[i] = fl_species_fix(r->f[idx[1]], &rule);
        if (rule >= 0) t->fix_count[rule]++, t->n_fixed++;
        t->individual[i] = r->f[idx[2]];
    }
    if (fl_labels_check_unique(&t->csv, t->image, t->line, n, "image", e) != 0) goto fail;
    if (fl_labels_check_present(&t->csv, image_dir, t->image, t->line, n, e) != 0) goto fail;
    return 0;
fail:
    fl_train_free(t);
    return -1;
}

void fl_train_free(fl_train_set *t) {
    if (!t) return;
    free(t->image);
    free(t->species);
    free(t->individual);
    free(t->line);
    fl_csv_free(&t->csv);
    memset(t, 0, sizeof *t);
}
