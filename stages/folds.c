/* Stage "folds" (stages/ident/folds_stage.h): the K-fold assignment of train.csv, written as
 * folds.csv, with per-fold counts in the log. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/folds.h"
#include "stages/ident/folds_stage.h"
#include "stages/synth/stages.h"

const fl_cfg_field fl_folds_schema[] = {
    {"folds", FL_CFG_OBJ, 0, "K-fold split of the train images for embed_train[k]", 0, 0},
    {"folds.k", FL_CFG_INT, 0, "number of folds (default 5)", 2, FL_FOLDS_MAX_K},
    {"folds.seed", FL_CFG_INT, 0, "seed of the assignment (default 42)", 0, FL_CFG_INT_MAX},
    {"folds.by", FL_CFG_STR, 0,
     "individual (default; GroupKFold stratified by species: an individual's images never "
     "straddle train and validation) | image (StratifiedKFold on individual_id, as the Kaggle "
     "solution: an individual with >= k images is in every fold)",
     0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

int fl_folds_cfg(const cJSON *sec, int *k, uint64_t *seed, fl_folds_by *by, fl_err *e) {
    *k = FL_FOLDS_DEFAULT_K, *seed = FL_FOLDS_DEFAULT_SEED, *by = FL_FOLDS_BY_INDIVIDUAL;
    if (!sec) return 0;
    if (!cJSON_IsObject(sec)) return fl_errf(e, "config key 'folds' must be an object");
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "k"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 2 ||
            v->valuedouble > FL_FOLDS_MAX_K)
            return fl_errf(e, "folds.k: must be an integer in 2..%d", FL_FOLDS_MAX_K);
        *k = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "seed"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > FL_CFG_INT_MAX)
            return fl_errf(e, "folds.seed: must be a non-negative integer");
        *seed = (uint64_t)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "by"))) {
        if (!cJSON_IsString(v))
            return fl_errf(e, "folds.by: must be a string (individual | image)");
        if (fl_folds_by_parse(v->valuestring, by, e)) return -1;
    }
    return 0;
}

/* One line per fold: its images and individuals, and how many of its validation images are
 * new_individual (their individual has no image in the other folds). */
static int log_folds(fl_stage_ctx *c, const fl_folds *f, fl_err *e) {
    uint8_t *is_new = malloc((size_t)f->n + 1);
    int *img = calloc((size_t)f->k, sizeof *img), *nw = calloc((size_t)f->k, sizeof *nw);
    if (!is_new || !img || !nw || fl_folds_val_new(f, is_new, e) < 0) {
        free(is_new), free(img), free(nw);
        return fl_errf(e, "folds: out of memory");
    }
    for (int r = 0; r < f->n; r++)
        img[f->fold[r]]++, nw[f->fold[r]] += is_new[r];
    for (int g = 0; g < f->k; g++)
        fl_stage_log(c, "fold %d: %d images, %d new_individual in validation (%.1f%%)", g, img[g],
                     nw[g], 100.0 * nw[g] / (img[g] ? img[g] : 1));
    free(is_new), free(img), free(nw);
    return 0;
}

static int run_folds(fl_stage_ctx *c, fl_err *e) {
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "folds", &none); /* absent: defaults */
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    int k;
    uint64_t seed;
    fl_folds_by by;
    if (fl_folds_cfg(sec, &k, &seed, &by, e)) return -1;
    const char *dir = fl_stage_input(c, "data", e);
    if (!dir) return -1;
    char *data = fl_synth_data_dir(dir);
    char *train_csv = data ? fl_strdupf("%s/train.csv", data) : NULL;
    char *out = fl_strdupf("%s/folds.csv", fl_stage_out_dir(c));
    fl_train_set t;
    fl_folds f = {0};
    int rc = -1;
    if (!data || !train_csv || !out) {
        fl_errf(e, "folds: out of memory");
        goto done;
    }
    /* No image directory: folds only need the labels (crop decides which images are usable). */
    if (fl_train_read(train_csv, NULL, &t, e)) goto done;
    if (t.n_fixed) fl_stage_log(c, "train.csv: %d species labels fixed", t.n_fixed);
    rc = fl_folds_make(&t, k, seed, by, &f, e);
    fl_train_free(&t);
    if (rc == 0) rc = fl_folds_write(out, &f, e);
    if (rc == 0) {
        fl_stage_log(c, "%d images in %d folds by %s (seed %llu)", f.n, f.k,
                     by == FL_FOLDS_BY_IMAGE ? "image" : "individual", (unsigned long long)seed);
        rc = log_folds(c, &f, e);
    }
done:
    fl_folds_free(&f);
    free(data);
    free(train_csv);
    free(out);
    return rc;
}

const fl_stage_def fl_stage_folds = {
    .name = "folds",
    .code_id = FL_CODE_ID,
    .summary = "K-fold split of train.csv by individual (grouped) or image, stratified by species",
    .run = run_folds,
};
