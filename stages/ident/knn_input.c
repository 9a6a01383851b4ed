/* The knn stage's inputs (see knn_input.h). */
#include "stages/ident/knn_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/ident/pseudo.h"

void fl_knn_in_free(fl_knn_in *in) {
    free(in->folds_path), free(in->sample_path);
    free(in->img), free(in->fold), free(in->ind), free(in->sp), free(in->ids), free(in->spn);
    fl_folds_free(&in->folds);
    fl_submission_free(&in->sample);
    for (int k = 0; k < FL_FOLDS_MAX_K; k++)
        fl_emb_free(&in->E[k]);
    free(in->tr_row), free(in->te_row), free(in->tr_f), free(in->te_s);
    free(in->pl_row), free(in->pl_ind), free(in->pl_sp), free(in->te_excl);
}

/* Interns s into names (map m): its index. */
static int intern(fl_strmap *m, const char **names, int *n, const char *s, fl_err *e) {
    int j = fl_strmap_get(m, s);
    if (j >= 0) return j;
    names[*n] = s;
    if (fl_strmap_put(m, s, *n) == -2) return fl_errf(e, "knn: out of memory"), -2;
    return (*n)++;
}

typedef struct id_count {
    const char *id;
    int32_t ind;
    int64_t n;
} id_count;

static int by_count(const void *a, const void *b) { /* most first, ties by id */
    const id_count *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* folds.csv (the folds stage's artifact, checked by its reader) -> interned ids and species. */
int fl_knn_read_folds(fl_knn_in *in, fl_err *e) {
    if (fl_folds_read(in->folds_path, &in->folds, e) != 0) return -1;
    const fl_folds *F = &in->folds;
    int n = in->nf = F->n;
    size_t sz = (size_t)n + 1;
    in->img = calloc(sz, sizeof *in->img), in->ids = calloc(sz, sizeof *in->ids);
    in->spn = calloc(sz, sizeof *in->spn);
    in->fold = calloc(sz, sizeof *in->fold), in->ind = calloc(sz, sizeof *in->ind);
    in->sp = calloc(sz, sizeof *in->sp);
    id_count *cnt = calloc(sz, sizeof *cnt);
    fl_strmap mi = {0}, ms = {0};
    int rc = -1;
    if (!in->img || !in->ids || !in->spn || !in->fold || !in->ind || !in->sp || !cnt) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    if (fl_strmap_init(&mi, sz, e) || fl_strmap_init(&ms, 64, e)) goto done;
    if (F->k > FL_FOLDS_MAX_K) {
        fl_errf(e, "%s: %d folds, at most %d", in->folds_path, F->k, FL_FOLDS_MAX_K);
        goto done;
    }
    in->K = F->k;
    for (int i = 0; i < n; i++) {
        in->img[i] = F->image[i];
        in->fold[i] = F->fold[i];
        int a = intern(&mi, in->ids, &in->nind, F->individual[i], e);
        int b = a < 0 ? -2 : intern(&ms, in->spn, &in->nsp, F->species[i], e);
        if (a < 0 || b < 0) goto done;
        in->ind[i] = a, in->sp[i] = b;
        cnt[a].id = in->ids[a], cnt[a].ind = a, cnt[a].n++;
    }
    if (n == 0) {
        fl_errf(e, "%s: no train rows", in->folds_path);
        goto done;
    }
    qsort(cnt, (size_t)in->nind, sizeof *cnt, by_count);
    in->nfill = in->nind < FL_MAP_K ? in->nind : FL_MAP_K;
    for (int j = 0; j < in->nfill; j++)
        in->fill[j] = cnt[j].ind;
    rc = 0;
done:
    free(cnt);
    fl_strmap_free(&mi), fl_strmap_free(&ms);
    return rc;
}

/* Every fold's embeddings: the same rows in the same order; each train row in folds.csv and
 * each test row in sample_submission.csv. */
int fl_knn_read_embeddings(fl_knn_in *in, const char *const *dirs, fl_err *e) {
    for (int k = 0; k < in->K; k++) {
        char what[32];
        snprintf(what, sizeof what, "embed[%d]", k);
        char *sub = fl_strdupf("%s/embeddings", dirs[k]);
        int rc = sub ? fl_emb_read(sub, what, &in->E[k], e) : fl_errf(e, "knn: out of memory");
        free(sub);
        if (rc) return -1;
        const fl_emb *A = &in->E[0], *B = &in->E[k];
        if (k == 0) continue;
        if (B->n != A->n || B->d != A->d)
            return fl_errf(e,
                           "embed[%d] holds %lld rows of width %lld but embed[0] %lld of width "
                           "%lld: every fold must embed the same images",
                           k, (long long)B->n, (long long)B->d, (long long)A->n, (long long)A->d);
        for (int64_t r = 0; r < A->n; r++)
            if (A->test[r] != B->test[r] || strcmp(A->image[r], B->image[r]))
                return fl_errf(e,
                               "embed[%d] rows.csv row %lld is '%s' (%s) but embed[0] has '%s' "
                               "(%s): every fold must embed the same rows in the same order",
                               k, (long long)r, B->image[r], B->test[r] ? "test" : "train",
                               A->image[r], A->test[r] ? "test" : "train");
    }
    const fl_emb *E = &in->E[0];
    size_t sz = (size_t)E->n + 1;
    in->tr_row = malloc(sz * sizeof *in->tr_row), in->te_row = malloc(sz * sizeof *in->te_row);
    in->tr_f = malloc(sz * sizeof *in->tr_f), in->te_s = malloc(sz * sizeof *in->te_s);
    fl_strmap mf = {0}, msam = {0};
    int rc = -1;
    if (!in->tr_row || !in->te_row || !in->tr_f || !in->te_s) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    if (fl_strmap_init(&mf, (size_t)in->nf, e) || fl_strmap_init(&msam, (size_t)in->sample.n, e))
        goto done;
    for (int i = 0; i < in->nf; i++)
        fl_strmap_put(&mf, in->img[i], i);
    for (int i = 0; i < in->sample.n; i++)
        fl_strmap_put(&msam, in->sample.image[i], i);
    for (int64_t r = 0; r < E->n; r++) {
        int j = fl_strmap_get(E->test[r] ? &msam : &mf, E->image[r]);
        if (j < 0) {
            fl_errf(e, "embed[0] embeddings/rows.csv row %lld: %s image '%s' is not in %s",
                    (long long)r, E->test[r] ? "test" : "train", E->image[r],
                    E->test[r] ? in->sample_path : in->folds_path);
            goto done;
        }
        if (E->test[r])
            in->te_row[in->nte] = r, in->te_s[in->nte++] = j;
        else
            in->tr_row[in->ntr] = r, in->tr_f[in->ntr++] = j;
    }
    if (in->ntr == 0) {
        fl_errf(e, "embed[0]: no train embeddings");
        goto done;
    }
    rc = 0;
done:
    fl_strmap_free(&mf), fl_strmap_free(&msam);
    return rc;
}

int fl_knn_read_pseudo(fl_knn_in *in, const char *path, int64_t *skipped, fl_err *e) {
    fl_pseudo P;
    fl_strmap mi = {0}, mt = {0};
    int32_t *ind_sp = NULL;
    int rc = -1;
    *skipped = 0;
    if (fl_pseudo_read(path, &P, e) != 0) return -1;
    size_t sz = (size_t)P.n + 1;
    in->pl_row = malloc(sz * sizeof *in->pl_row), in->pl_ind = malloc(sz * sizeof *in->pl_ind);
    in->pl_sp = malloc(sz * sizeof *in->pl_sp);
    in->te_excl = malloc(((size_t)in->nte + 1) * sizeof *in->te_excl);
    ind_sp = malloc(((size_t)in->nind + 1) * sizeof *ind_sp);
    if (!in->pl_row || !in->pl_ind || !in->pl_sp || !in->te_excl || !ind_sp ||
        fl_strmap_init(&mi, (size_t)in->nind + 1, e) ||
        fl_strmap_init(&mt, (size_t)in->nte + 1, e)) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    for (int i = 0; i < in->nind; i++)
        fl_strmap_put(&mi, in->ids[i], i);
    for (int r = 0; r < in->nf; r++) /* folds.csv gives an individual one species */
        ind_sp[in->ind[r]] = in->sp[r];
    for (int64_t i = 0; i < in->nte; i++) {
        in->te_excl[i] = -1;
        fl_strmap_put(&mt, in->sample.image[in->te_s[i]], (int)i);
    }
    for (int j = 0; j < P.n; j++) {
        int ind = fl_strmap_get(&mi, P.individual[j]), t = fl_strmap_get(&mt, P.image[j]);
        if (ind < 0 || t < 0 || in->te_excl[t] >= 0) {
            (*skipped)++;
            continue;
        }
        in->te_excl[t] = in->ntr + in->npl;
        in->pl_row[in->npl] = in->te_row[t], in->pl_ind[in->npl] = ind;
        in->pl_sp[in->npl++] = ind_sp[ind];
    }
    rc = 0;
done:
    fl_strmap_free(&mi), fl_strmap_free(&mt);
    fl_pseudo_free(&P);
    free(ind_sp);
    return rc;
}
