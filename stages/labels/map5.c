/* MAP@5 as Kaggle scores this competition: per image, ml_metrics' apk(actual=[truth],
 * predicted, k=5) = 1/rank of the first correct label among the first 5 predictions (a label
 * repeated before is skipped, so a repeat never scores twice); new_individual is an ordinary
 * label; the score is the mean over the images of the public or private split. */
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "stages/labels/labels_internal.h"

double fl_apk5(const char *truth, const char *const *pred, int npred) {
    if (npred > FL_MAP_K) npred = FL_MAP_K;
    for (int k = 0; k < npred; k++) {
        if (!pred[k] || strcmp(pred[k], truth) != 0) continue;
        int seen = 0;
        for (int j = 0; j < k; j++) seen |= pred[j] && strcmp(pred[j], pred[k]) == 0;
        if (!seen) return 1.0 / (k + 1);
    }
    return 0.0;
}

static int cmp_group(const void *a, const void *b) {
    return strcmp(((const fl_map5_group *)a)->name, ((const fl_map5_group *)b)->name);
}

int fl_map5_score(const fl_solution *sol, const fl_submission *sub, fl_map5_result *r,
                  fl_err *e) {
    memset(r, 0, sizeof *r);
    const char *sname = sub->csv.name ? sub->csv.name : "submission";
    fl_strmap by_image, sp_index;
    if (fl_strmap_init(&by_image, (size_t)sub->n, e) != 0) return -1;
    if (fl_strmap_init(&sp_index, 64, e) != 0) {
        fl_strmap_free(&by_image);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < sub->n; i++) fl_strmap_put(&by_image, sub->image[i], i);
    fl_map5_group *groups = calloc((size_t)sol->n + 1, sizeof *groups);
    char *answered = calloc((size_t)sub->n + 1, 1);
    if (!groups || !answered) {
        rc = fl_errf(e, "scoring: out of memory");
        goto done;
    }
    double s_all = 0, s_pub = 0, s_priv = 0, s_known = 0, s_new = 0;
    for (int i = 0; i < sol->n; i++) {
        int j = fl_strmap_get(&by_image, sol->image[i]);
        if (j < 0) {
            rc = fl_errf(e, "%s: no prediction for test image \"%s\" (listed at %s:%d)", sname,
                         sol->image[i], sol->csv.name ? sol->csv.name : "solution", sol->line[i]);
            goto done;
        }
        answered[j] = 1;
        double ap = fl_apk5(sol->individual[i], sub->pred[j], sub->npred[j]);
        s_all += ap, r->n_all++;
        if (sol->is_public[i]) s_pub += ap, r->n_pub++;
        else s_priv += ap, r->n_priv++;
        if (strcmp(sol->individual[i], FL_NEW_INDIVIDUAL) == 0) s_new += ap, r->n_fresh++;
        else s_known += ap, r->n_known++;
        if (sol->species && sol->species[i]) {
            int g = fl_strmap_get(&sp_index, sol->species[i]);
            if (g < 0) {
                g = r->n_species++;
                groups[g].name = sol->species[i];
                if (fl_strmap_put(&sp_index, sol->species[i], g) == -2) {
                    rc = fl_errf(e, "scoring: out of memory");
                    goto done;
                }
            }
            groups[g].n++;
            groups[g].sum += ap;
        }
    }
    for (int j = 0; j < sub->n; j++)
        if (!answered[j]) {
            rc = fl_errf(e, "%s:%d: image \"%.*s%s\" is not in the test set", sname,
                         sub->line[j], FL_Q(sub->image[j]));
            goto done;
        }
    r->all = r->n_all ? s_all / r->n_all : 0;
    r->pub = r->n_pub ? s_pub / r->n_pub : 0;
    r->priv = r->n_priv ? s_priv / r->n_priv : 0;
    r->known = r->n_known ? s_known / r->n_known : 0;
    r->fresh = r->n_fresh ? s_new / r->n_fresh : 0;
    qsort(groups, (size_t)r->n_species, sizeof *groups, cmp_group);
    r->species = groups;
    groups = NULL;
done:
    free(groups);
    free(answered);
    fl_strmap_free(&by_image);
    fl_strmap_free(&sp_index);
    if (rc != 0) fl_map5_result_free(r);
    return rc;
}

void fl_map5_result_free(fl_map5_result *r) {
    if (!r) return;
    free(r->species);
    memset(r, 0, sizeof *r);
}
