/* Fold k's data (stages/embed/embed.h): folds.csv gives every train image its individual, species
 * and fold; crops.csv (the crop stage) gives its crop file. Classes are the individuals of the
 * training part (fold != k), numbered in folds.csv order, so the ArcFace head has no class that
 * never gets a positive example. A train image without a crop (the crop stage skipped it as
 * unreadable) is left out and counted; a crops.csv image not in folds.csv is an error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stages/embed/embed.h"
#include "stages/ident/folds.h"
#include "stages/ident/pseudo.h"
#include "stages/labels/labels.h"

typedef struct priv {
    fl_folds folds;
    fl_csv crops;
    char **paths; /* owned crop paths, nall + ntest */
    size_t npaths;
} priv;

void fl_embset_free(fl_embset *s) {
    if (!s) return;
    priv *p = s->priv;
    if (p) {
        fl_folds_free(&p->folds);
        fl_csv_free(&p->crops);
        for (size_t i = 0; i < p->npaths; i++) free(p->paths[i]);
        free(p->paths);
        free(p);
    }
    free(s->all);
    free(s->ind);
    free(s->species);
    free(s->is_val);
    free(s->cls);
    free(s->image);
    free(s->train);
    free(s->class_count);
    free(s->train_species);
    free(s->test);
    free(s->test_image);
    memset(s, 0, sizeof *s);
}

/* Appends the pseudo-labelled test crops whose individual is a class (see embed.h). */
static int add_pseudo(fl_embset *s, const fl_pseudo *P, const char *pseudo_csv, const fl_strmap *cls,
                      const fl_strmap *sp, fl_err *e) {
    fl_strmap pimg;
    if (fl_strmap_init(&pimg, (size_t)P->n + 1, e)) return -1;
    int rc = 0;
    for (int j = 0; j < P->n && rc == 0; j++)
        if (fl_strmap_put(&pimg, P->image[j], j) == -2) rc = fl_errf(e, "out of memory");
    int used = 0;
    for (int64_t t = 0; rc == 0 && t < s->ntest; t++) {
        int j = fl_strmap_get(&pimg, s->test_image[t]);
        if (j < 0) continue;
        used++;
        int c = fl_strmap_get(cls, P->individual[j]), spi = fl_strmap_get(sp, P->species[j]);
        if (c < 0) {
            s->n_pseudo_other++;
            continue;
        }
        if (spi < 0) {
            rc = fl_errf(e, "%s: image %s: species '%s' of individual %s is not in folds.csv",
                         pseudo_csv, P->image[j], P->species[j], P->individual[j]);
            break;
        }
        s->class_count[c]++;
        s->train_species[s->ntrain] = spi;
        s->train[s->ntrain] = s->test[t];
        s->train[s->ntrain++].label = c;
        s->n_pseudo++;
    }
    if (rc == 0 && used < P->n)
        rc = fl_errf(e, "%s: %d pseudo-labelled images are not test crops of crops.csv",
                     pseudo_csv, P->n - used);
    fl_strmap_free(&pimg);
    return rc;
}

int fl_embset_build(const char *folds_csv, const char *crop_dir, int k, fl_embset *s, fl_err *e) {
    return fl_embset_build_pseudo(folds_csv, crop_dir, k, NULL, s, e);
}

int fl_embset_build_pseudo(const char *folds_csv, const char *crop_dir, int k,
                           const char *pseudo_csv, fl_embset *s, fl_err *e) {
    memset(s, 0, sizeof *s);
    fl_pseudo P = {0};
    priv *p = calloc(1, sizeof *p);
    if (!p) return fl_errf(e, "out of memory");
    s->priv = p;
    s->k = k;
    char *crops_csv = fl_strdupf("%s/crops.csv", crop_dir);
    int rc = crops_csv ? 0 : fl_errf(e, "out of memory");
    static const char *const ccols[] = {"image", "split", "crop"};
    int ci[3];
    if (rc == 0) rc = fl_folds_read(folds_csv, &p->folds, e);
    if (rc == 0) rc = fl_csv_read(crops_csv, &p->crops, e);
    if (rc == 0) rc = fl_csv_require(&p->crops, ccols, 3, ci, e);
    if (rc) goto out;
    int nf = p->folds.n, nc = p->crops.nrows;
    fl_strmap img, ind, sp, cls, train_crop, test_crop;
    memset(&img, 0, sizeof img), memset(&ind, 0, sizeof ind), memset(&sp, 0, sizeof sp);
    memset(&cls, 0, sizeof cls), memset(&train_crop, 0, sizeof train_crop);
    memset(&test_crop, 0, sizeof test_crop);
    if (fl_strmap_init(&img, (size_t)nf, e) || fl_strmap_init(&ind, (size_t)nf, e) ||
        fl_strmap_init(&sp, 64, e) || fl_strmap_init(&cls, (size_t)nf, e) ||
        fl_strmap_init(&train_crop, (size_t)nc, e) || fl_strmap_init(&test_crop, (size_t)nc, e)) {
        rc = -1;
        goto maps;
    }
    size_t cap = (size_t)nf + (size_t)nc + 1;
    s->all = calloc(cap, sizeof *s->all);
    s->ind = calloc(cap, sizeof *s->ind);
    s->species = calloc(cap, sizeof *s->species);
    s->is_val = calloc(cap, 1);
    s->cls = calloc(cap, sizeof *s->cls);
    s->image = calloc(cap, sizeof *s->image);
    s->train = calloc(cap, sizeof *s->train);
    s->class_count = calloc(cap, sizeof *s->class_count);
    s->train_species = calloc(cap, sizeof *s->train_species);
    s->test = calloc(cap, sizeof *s->test);
    s->test_image = calloc(cap, sizeof *s->test_image);
    p->paths = calloc(cap, sizeof *p->paths);
    if (!s->all || !s->ind || !s->species || !s->is_val || !s->cls || !s->image || !s->train ||
        !s->class_count || !s->train_species || !s->test || !s->test_image || !p->paths) {
        rc = fl_errf(e, "out of memory");
        goto maps;
    }
    /* the first crop of every train image (per_class crops: the first row is the best box) */
    for (int r = 1; r <= nc; r++) {
        char **f = p->crops.rows[r].f;
        if (!strcmp(f[ci[1]], "train")) {
            if (fl_strmap_put(&train_crop, f[ci[0]], r) == -2) rc = fl_errf(e, "out of memory");
        } else if (!strcmp(f[ci[1]], "test")) {
            int seen = fl_strmap_put(&test_crop, f[ci[0]], r);
            if (seen == -2) rc = fl_errf(e, "out of memory");
            if (seen != -1) continue; /* a later crop of the same image (per_class) */
            s->test_image[s->ntest] = f[ci[0]];
            if (!(p->paths[p->npaths] = fl_strdupf("%s/%s", crop_dir, f[ci[2]]))) rc = fl_errf(e, "out of memory");
            s->test[s->ntest].path = p->paths[p->npaths++];
            s->test[s->ntest].label = -1;
            s->ntest++;
        } else {
            rc = fl_errf(e, "%s:%d: split '%s' is neither train nor test", crops_csv,
                         p->crops.rows[r].line, f[ci[1]]);
        }
        if (rc) break;
    }
    const fl_folds *F = &p->folds;
    for (int r = 0; rc == 0 && r < nf; r++) {
        int fold = F->fold[r];
        if (fl_strmap_put(&img, F->image[r], r) == -2) rc = fl_errf(e, "out of memory");
        int id = fl_strmap_get(&ind, F->individual[r]);
        if (id < 0 && fl_strmap_put(&ind, F->individual[r], (id = (int)ind.n)) == -2) rc = fl_errf(e, "out of memory");
        int spi = fl_strmap_get(&sp, F->species[r]);
        if (spi < 0 && fl_strmap_put(&sp, F->species[r], (spi = (int)sp.n)) == -2) rc = fl_errf(e, "out of memory");
        int cr = fl_strmap_get(&train_crop, F->image[r]);
        if (cr < 0) {
            s->n_no_crop++;
            continue;
        }
        int64_t a = s->nall++;
        p->paths[p->npaths] = fl_strdupf("%s/%s", crop_dir, p->crops.rows[cr].f[ci[2]]);
        if (!p->paths[p->npaths]) rc = fl_errf(e, "out of memory");
        s->all[a].path = p->paths[p->npaths++];
        s->all[a].label = -1;
        s->ind[a] = id;
        s->species[a] = spi;
        s->image[a] = F->image[r];
        s->is_val[a] = fold == k;
        if (fold != k) {
            int c = fl_strmap_get(&cls, F->individual[r]);
            if (c < 0 && fl_strmap_put(&cls, F->individual[r], (c = s->nclasses++)) == -2) rc = fl_errf(e, "out of memory");
            s->class_count[c]++;
            s->all[a].label = c;
            s->train_species[s->ntrain] = spi;
            s->train[s->ntrain++] = s->all[a];
        }
    }
    for (int r = 1; rc == 0 && r <= nc; r++) {
        char **f = p->crops.rows[r].f;
        if (!strcmp(f[ci[1]], "train") && fl_strmap_get(&img, f[ci[0]]) < 0)
            rc = fl_errf(e, "%s:%d: train image %s is not in %s", crops_csv, p->crops.rows[r].line,
                         f[ci[0]], folds_csv);
    }
    for (int64_t a = 0; rc == 0 && a < s->nall; a++)
        s->cls[a] = fl_strmap_get(&cls, F->individual[fl_strmap_get(&img, s->image[a])]);
    s->nfolds = F->k;
    s->nspecies = (int)sp.n;
    if (rc == 0 && (k < 0 || k >= s->nfolds))
        rc = fl_errf(e, "%s: fold %d asked for, but the file has folds 0..%d", folds_csv, k, s->nfolds - 1);
    if (rc == 0 && s->ntrain == 0)
        rc = fl_errf(e, "%s: fold %d leaves no training images with crops", folds_csv, k);
    if (rc == 0 && pseudo_csv)
        rc = fl_pseudo_read(pseudo_csv, &P, e) || add_pseudo(s, &P, pseudo_csv, &cls, &sp, e);
maps:
    fl_strmap_free(&img);
    fl_strmap_free(&ind);
    fl_strmap_free(&sp);
    fl_strmap_free(&cls);
    fl_strmap_free(&train_crop);
    fl_strmap_free(&test_crop);
out:
    free(crops_csv);
    fl_pseudo_free(&P);
    if (rc) fl_embset_free(s);
    return rc;
}
