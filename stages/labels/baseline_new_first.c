/* "new_individual first": the answer that needs no images at all. */
#include <stdlib.h>
#include <string.h>

#include "stages/labels/baselines.h"

typedef struct id_count {
    const char *id;
    int n;
} id_count;

static int by_count(const void *a, const void *b) {
    const id_count *x = a, *y = b;
    if (x->n != y->n) return y->n - x->n;
    return strcmp(x->id, y->id);
}

/* The most photographed individuals, most first (ties by id): up to k into top. */
int fl_labels_top_individuals(const fl_train_set *train, int k, const char **top, fl_err *e) {
    fl_strmap m;
    if (fl_strmap_init(&m, (size_t)train->n, e) != 0) return -1;
    id_count *c = calloc((size_t)train->n + 1, sizeof *c);
    if (!c) {
        fl_strmap_free(&m);
        return fl_errf(e, "out of memory");
    }
    int nid = 0;
    for (int i = 0; i < train->n; i++) {
        int j = fl_strmap_get(&m, train->individual[i]);
        if (j < 0) {
            j = nid++;
            c[j].id = train->individual[i];
            if (fl_strmap_put(&m, c[j].id, j) == -2) {
                free(c);
                fl_strmap_free(&m);
                return fl_errf(e, "out of memory");
            }
        }
        c[j].n++;
    }
    qsort(c, (size_t)nid, sizeof *c, by_count);
    int got = nid < k ? nid : k;
    for (int i = 0; i < got; i++) top[i] = c[i].id;
    free(c);
    fl_strmap_free(&m);
    return got;
}

int fl_baseline_new_first(const fl_train_set *train, int n_test, const char *(*out)[FL_MAP_K],
                          fl_err *e) {
    const char *top[FL_MAP_K - 1];
    int got = fl_labels_top_individuals(train, FL_MAP_K - 1, top, e);
    if (got < 0) return -1;
    /* Fewer than 4 individuals: new_individual and each of them (the rest stays NULL). */
    for (int i = 0; i < n_test; i++) {
        out[i][0] = FL_NEW_INDIVIDUAL;
        for (int k = 1; k < FL_MAP_K; k++) out[i][k] = k - 1 < got ? top[k - 1] : NULL;
    }
    return 0;
}
