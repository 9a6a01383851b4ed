/* Stages "baseline_new_first" and "baseline_knn": submissions without a learned model, the
 * floor every real model must clear (stages/labels/baselines.h). Both read the Kaggle layout
 * (train.csv, sample_submission.csv for the test image list, the images) and write a checked
 * submission.csv. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/baseline.h"
#include "stages/api/stage.h"
#include "stages/labels/baselines.h"
#include "stages/synth/stages.h"

const fl_cfg_field fl_baseline_schema[] = {
    {"baseline", FL_CFG_OBJ, 0, "baselines without a learned model", 0, 0},
    {"baseline.knn", FL_CFG_OBJ, 0, "raw-pixel kNN", 0, 0},
    {"baseline.knn.thumb", FL_CFG_INT, 0, "thumbnail side in pixels (default 16)", 2, 256},
    {"baseline.knn.threshold", FL_CFG_NUM, 0,
     "cosine similarity below which new_individual goes first (default: leave-one-out on train)",
     -1, 1},
    {NULL, 0, 0, NULL, 0, 0},
};

typedef struct inputs {
    char *data, *train_dir, *test_dir, *out;
    fl_train_set train;
    fl_submission sample; /* only its image column: the test set */
} inputs;

static void inputs_free(inputs *in) {
    free(in->data);
    free(in->train_dir);
    free(in->test_dir);
    free(in->out);
    fl_train_free(&in->train);
    fl_submission_free(&in->sample);
}

static int inputs_read(fl_stage_ctx *c, inputs *in, fl_err *e) {
    memset(in, 0, sizeof *in);
    const char *dir = fl_stage_input(c, "data", e);
    if (!dir) return -1;
    in->data = fl_synth_data_dir(dir);
    in->train_dir = fl_strdupf("%s/train_images", in->data);
    in->test_dir = fl_strdupf("%s/test_images", in->data);
    in->out = fl_strdupf("%s/submission.csv", fl_stage_out_dir(c));
    char *train_csv = fl_strdupf("%s/train.csv", in->data);
    char *sample_csv = fl_strdupf("%s/sample_submission.csv", in->data);
    int rc = fl_train_read(train_csv, in->train_dir, &in->train, e);
    if (rc == 0) rc = fl_submission_read(sample_csv, &in->sample, e);
    /* A listed test image that is missing: name the sample_submission.csv line now, rather
     * than fail later on an image path without the line that listed it. */
    if (rc == 0) rc = fl_submission_check_images(&in->sample, in->test_dir, e);
    free(train_csv);
    free(sample_csv);
    if (rc == 0 && in->train.n_fixed)
        fl_stage_log(c, "train.csv: %d species labels fixed (globis %d, pilot_whale %d, "
                     "kiler_whale %d, bottlenose_dolpin %d)", in->train.n_fixed,
                     in->train.fix_count[0], in->train.fix_count[1], in->train.fix_count[2],
                     in->train.fix_count[3]);
    return rc;
}

static int write_checked_raw(inputs *in, const char *(*ans)[FL_MAP_K], fl_err *e) {
    if (fl_submission_write(in->out, in->sample.n, in->sample.image,
                            (const char *const(*)[FL_MAP_K])ans, e) != 0)
        return -1;
    fl_strmap known;
    if (fl_strmap_init(&known, (size_t)in->train.n, e) != 0) return -1;
    for (int i = 0; i < in->train.n; i++)
        if (fl_strmap_put(&known, in->train.individual[i], i) == -2) {
            fl_strmap_free(&known);
            return fl_errf(e, "baseline: out of memory");
        }
    fl_submission back;
    int rc = fl_submission_read(in->out, &back, e);
    if (rc == 0) {
        rc = fl_submission_validate(&back, in->sample.image, in->sample.n, &known, e);
        fl_submission_free(&back);
    }
    fl_strmap_free(&known);
    return rc;
}

/* Writes the answer and reads it back through the validator: a baseline must be a valid
 * competition submission. The inputs were checked when read, so a failure here is a bug in
 * the baseline; the message says so rather than only naming the internal output file. */
static int write_checked(inputs *in, const char *(*ans)[FL_MAP_K], fl_err *e) {
    int rc = write_checked_raw(in, ans, e);
    if (rc != 0)
        fl_errprefix(e, "internal check of the answer to %d test images (a bug, not bad input)",
                     in->sample.n);
    return rc;
}

static int run_new_first(fl_stage_ctx *c, fl_err *e) {
    inputs in;
    int rc = inputs_read(c, &in, e);
    const char *(*ans)[FL_MAP_K] = NULL;
    if (rc == 0) {
        ans = calloc((size_t)in.sample.n + 1, sizeof *ans);
        rc = ans ? fl_baseline_new_first(&in.train, in.sample.n, ans, e)
                 : fl_errf(e, "baseline: out of memory");
    }
    if (rc == 0) rc = write_checked(&in, ans, e);
    free(ans);
    inputs_free(&in);
    return rc;
}

static int run_knn(fl_stage_ctx *c, fl_err *e) {
    fl_knn_opts o = {.thumb = 16, .threads = fl_stage_threads(c)};
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "baseline.knn", &none); /* absent: defaults */
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    const cJSON *v;
    if (sec && (v = cJSON_GetObjectItemCaseSensitive(sec, "thumb"))) {
        /* Range-checked before the cast: (int) of 3e9 is undefined. */
        if (!cJSON_IsNumber(v)) return fl_errf(e, "baseline.knn.thumb: must be an integer");
        if (v->valuedouble != floor(v->valuedouble) || v->valuedouble < 2 ||
            v->valuedouble > 256)
            return fl_errf(e, "baseline.knn.thumb: %.17g is not an integer in [2, 256]",
                           v->valuedouble);
        o.thumb = (int)v->valuedouble;
    }
    if (sec && (v = cJSON_GetObjectItemCaseSensitive(sec, "threshold"))) {
        if (!cJSON_IsNumber(v)) return fl_errf(e, "baseline.knn.threshold: must be a number");
        o.has_threshold = 1, o.threshold = v->valuedouble;
    }
    inputs in;
    int rc = inputs_read(c, &in, e);
    const char *(*ans)[FL_MAP_K] = NULL;
    fl_knn_report rep;
    if (rc == 0) {
        ans = calloc((size_t)in.sample.n + 1, sizeof *ans);
        rc = ans ? fl_baseline_pixel_knn(&in.train, in.train_dir, in.sample.image, in.sample.n,
                                         in.test_dir, &o, ans, &rep, e)
                 : fl_errf(e, "baseline: out of memory");
    }
    if (rc == 0) {
        fl_stage_log(c, "pixel kNN (%dx%d thumbnails): threshold %.4f%s, leave-one-out MAP@5 "
                     "%.4f, new_individual first on %.1f%% of test", o.thumb, o.thumb,
                     rep.threshold, o.has_threshold ? " (given)" : " (calibrated)", rep.loo_map5,
                     100.0 * rep.new_first_share);
        rc = write_checked(&in, ans, e);
    }
    free(ans);
    inputs_free(&in);
    return rc;
}

const fl_stage_def fl_stage_baseline_new_first = {
    .name = "baseline_new_first",
    .code_id = FL_CODE_ID,
    .summary = "baseline: new_individual, then the 4 most photographed individuals",
    .run = run_new_first,
};

const fl_stage_def fl_stage_baseline_knn = {
    .name = "baseline_knn",
    .code_id = FL_CODE_ID,
    .summary = "baseline: raw-pixel cosine kNN with a calibrated new_individual threshold",
    .run = run_knn,
};
