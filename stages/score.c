/* Stage "score": what the pipeline built, against the hidden truth -> metrics.json. Every input
 * is optional, and each one declared adds its part:
 *
 *   submission (+ truth)  MAP@5 overall, on the public and private splits, for known and new
 *                         individuals, and per species (truth/solution.csv)
 *   crops (+ truth)       crops.test_iou50_recall: share of test images whose crops.csv box has
 *                         IoU >= 0.5 with the true box (truth/test_boxes.csv), and
 *                         crops.fallback_share: images cropped as a whole (train and test)
 *   detector              detector.map50, map50_95, precision, recall: the "final" object of
 *                         detector_metrics.json (the held-out validation boxes)
 *   cv                    cv.map5, cv.folds (OOF MAP@5 per fold), cv.threshold and
 *                         cv.species_thresholds: the knn stage's cv.json
 *   round0, round1, ...   rounds[r]: {round, cv, map5, known, new_individual} of each pseudo
 *                         round's knn output (cv.json; its submission.csv against the truth
 *                         when the truth is an input) */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codeid/score.h"
#include "stages/api/stage.h"
#include "stages/crop/crop.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

static char *find_file(const char *dir, const char *sub, const char *name) {
    struct stat st;
    char *p = fl_strdupf("%s/%s/%s", dir, sub, name);
    if (p && stat(p, &st) == 0) return p;
    free(p);
    return fl_strdupf("%s/%s", dir, name);
}

static cJSON *group(double map, int n) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "map5", map);
    cJSON_AddNumberToObject(o, "n", n);
    return o;
}

/* MAP@5 of the submission into j. */
static int add_map5(fl_stage_ctx *c, const char *sub_dir, const char *truth_dir, cJSON *j,
                    fl_err *e) {
    char *sub_path = fl_strdupf("%s/submission.csv", sub_dir);
    char *sol_path = find_file(truth_dir, "truth", "solution.csv");
    fl_submission sub = {0};
    fl_solution sol = {0};
    fl_map5_result r = {0};
    int rc = -1;
    if (fl_solution_read(sol_path, &sol, e) != 0) goto done;
    if (fl_submission_read(sub_path, &sub, e) != 0) goto done;
    if (fl_map5_score(&sol, &sub, &r, e) != 0) goto done;
    cJSON_AddNumberToObject(j, "map5", r.all);
    cJSON_AddNumberToObject(j, "map5_public", r.pub);
    cJSON_AddNumberToObject(j, "map5_private", r.priv);
    cJSON_AddNumberToObject(j, "n_images", r.n_all);
    cJSON_AddNumberToObject(j, "n_public", r.n_pub);
    cJSON_AddNumberToObject(j, "n_private", r.n_priv);
    cJSON_AddItemToObject(j, "known", group(r.known, r.n_known));
    cJSON_AddItemToObject(j, "new_individual", group(r.fresh, r.n_fresh));
    cJSON *sp = cJSON_AddObjectToObject(j, "species");
    for (int k = 0; k < r.n_species; k++)
        cJSON_AddItemToObject(sp, r.species[k].name,
                              group(r.species[k].sum / r.species[k].n, r.species[k].n));
    fl_stage_log(c, "MAP@5 %.5f (public %.5f on %d, private %.5f on %d; known %.5f, new %.5f)",
                 r.all, r.pub, r.n_pub, r.priv, r.n_priv, r.known, r.fresh);
    rc = 0;
done:
    fl_map5_result_free(&r);
    fl_submission_free(&sub);
    fl_solution_free(&sol);
    free(sub_path);
    free(sol_path);
    return rc;
}

/* The crops' recall against the true test boxes into j.crops. */
static int add_crops(fl_stage_ctx *c, const char *crops_dir, const char *truth_dir, cJSON *j,
                     fl_err *e) {
    char *csv = fl_strdupf("%s/crops.csv", crops_dir);
    char *truth = find_file(truth_dir, "truth", "test_boxes.csv");
    fl_crops_score r;
    int rc = fl_crops_score_files(csv, truth, &r, e);
    if (rc == 0) {
        cJSON *o = cJSON_AddObjectToObject(j, "crops");
        cJSON_AddNumberToObject(o, "test_iou50_recall", r.test_iou50_recall);
        cJSON_AddNumberToObject(o, "fallback_share", r.fallback_share);
        cJSON_AddNumberToObject(o, "n_test", r.n_test);
        cJSON_AddNumberToObject(o, "n_test_hit", r.n_test_hit);
        cJSON_AddNumberToObject(o, "n_test_skipped", r.n_test_absent);
        cJSON_AddNumberToObject(o, "n_images", r.n_images);
        cJSON_AddNumberToObject(o, "n_fallback", r.n_fallback);
        fl_stage_log(c, "crops: IoU >= 0.5 on %d of %d test images (recall %.4f, %d skipped as "
                     "corrupt); %d of %d images fell back to the whole image (%.4f)", r.n_test_hit,
                     r.n_test, r.test_iou50_recall, r.n_test_absent, r.n_fallback, r.n_images,
                     r.fallback_share);
    }
    free(csv);
    free(truth);
    return rc;
}

/* The detector's held-out metrics (detector_metrics.json "final") into j.detector. */
static int add_detector(fl_stage_ctx *c, const char *det_dir, cJSON *j, fl_err *e) {
    char *path = fl_strdupf("%s/detector_metrics.json", det_dir);
    char *text = fl_read_file_max(path, NULL, 64u << 20, e);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    const cJSON *fin = m ? cJSON_GetObjectItemCaseSensitive(m, "final") : NULL;
    static const char *const keys[] = {"map50", "map50_95", "precision", "recall"};
    int rc = 0;
    if (!text) {
        rc = -1;
    } else if (!cJSON_IsObject(fin)) {
        rc = fl_errf(e, "%s: %s", path, m ? "no \"final\" object" : "not valid JSON");
    } else {
        cJSON *o = cJSON_AddObjectToObject(j, "detector");
        for (int k = 0; k < 4 && rc == 0; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(fin, keys[k]);
            if (!cJSON_IsNumber(v))
                rc = fl_errf(e, "%s: final.%s is missing or not a number", path, keys[k]);
            else
                cJSON_AddNumberToObject(o, keys[k], v->valuedouble);
        }
        const cJSON *nv = cJSON_GetObjectItemCaseSensitive(fin, "val_images");
        if (rc == 0 && cJSON_IsNumber(nv)) cJSON_AddNumberToObject(o, "val_images", nv->valuedouble);
        if (rc == 0)
            fl_stage_log(c, "detector: mAP@0.5 %.4f, mAP@0.5:0.95 %.4f, precision %.4f, recall "
                         "%.4f on the held-out boxes",
                         cJSON_GetObjectItem(o, "map50")->valuedouble,
                         cJSON_GetObjectItem(o, "map50_95")->valuedouble,
                         cJSON_GetObjectItem(o, "precision")->valuedouble,
                         cJSON_GetObjectItem(o, "recall")->valuedouble);
    }
    cJSON_Delete(m);
    free(text);
    free(path);
    return rc;
}

/* The knn stage's out-of-fold CV (cv.json) into j.cv. */
static int add_cv(fl_stage_ctx *c, const char *cv_dir, cJSON *j, fl_err *e) {
    char *path = fl_strdupf("%s/cv.json", cv_dir);
    char *text = path ? fl_read_file_max(path, NULL, 64u << 20, e) : NULL;
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    int rc = -1;
    if (!text) goto done;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(m, "map5");
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(m, "threshold");
    const cJSON *folds = cJSON_GetObjectItemCaseSensitive(m, "folds");
    if (!m) { fl_errf(e, "%s: not valid JSON", path); goto done; }
    if (!cJSON_IsNumber(map) || !cJSON_IsNumber(thr) || !cJSON_IsArray(folds)) {
        fl_errf(e, "%s: map5, threshold (numbers) and folds (array) are required", path);
        goto done;
    }
    cJSON *o = cJSON_AddObjectToObject(j, "cv");
    cJSON_AddNumberToObject(o, "map5", map->valuedouble);
    cJSON *fa = cJSON_AddArrayToObject(o, "folds");
    const cJSON *f;
    cJSON_ArrayForEach(f, folds) {
        const cJSON *fm = cJSON_GetObjectItemCaseSensitive(f, "map5");
        if (!cJSON_IsNumber(fm)) { fl_errf(e, "%s: a fold without a numeric map5", path); goto done; }
        cJSON_AddItemToArray(fa, cJSON_CreateNumber(fm->valuedouble));
    }
    cJSON_AddNumberToObject(o, "threshold", thr->valuedouble);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(m, "species_thresholds");
    if (cJSON_IsObject(st)) cJSON_AddItemToObject(o, "species_thresholds", cJSON_Duplicate(st, 1));
    fl_stage_log(c, "cv: OOF MAP@5 %.5f over %d folds at threshold %.4f", map->valuedouble,
                 cJSON_GetArraySize(folds), thr->valuedouble);
    rc = 0;
done:
    cJSON_Delete(m);
    free(text);
    free(path);
    return rc;
}

/* rounds[]: each pseudo round's CV and (with the truth) MAP@5, so a round's gain is visible. */
static int add_rounds(fl_stage_ctx *c, const char *truth_dir, cJSON *j, fl_err *e) {
    cJSON *arr = NULL;
    for (int r = 0;; r++) {
        char name[32];
        snprintf(name, sizeof name, "round%d", r);
        if (!fl_stage_has_input(c, name)) return 0;
        const char *dir = fl_stage_input(c, name, e);
        if (!dir) return -1;
        if (!arr && !(arr = cJSON_AddArrayToObject(j, "rounds"))) return fl_errf(e, "score: out of memory");
        cJSON *o = cJSON_CreateObject(), *cv = cJSON_CreateObject();
        if (!o || !cv) {
            cJSON_Delete(o), cJSON_Delete(cv);
            return fl_errf(e, "score: out of memory");
        }
        cJSON_AddItemToArray(arr, o);
        cJSON_AddNumberToObject(o, "round", r);
        int rc = add_cv(c, dir, cv, e);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cv, "cv"), "map5");
        if (rc == 0) cJSON_AddNumberToObject(o, "cv", cm->valuedouble);
        if (rc == 0 && truth_dir && (rc = add_map5(c, dir, truth_dir, cv, e)) == 0) {
            cJSON_AddNumberToObject(o, "map5", cJSON_GetObjectItemCaseSensitive(cv, "map5")->valuedouble);
            cJSON_AddItemToObject(o, "known", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cv, "known"), 1));
            cJSON_AddItemToObject(o, "new_individual",
                                  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cv, "new_individual"), 1));
            fl_stage_log(c, "round %d: CV %.5f, MAP@5 %.5f", r, cm->valuedouble,
                         cJSON_GetObjectItemCaseSensitive(cv, "map5")->valuedouble);
        } else if (rc == 0) {
            fl_stage_log(c, "round %d: CV %.5f", r, cm->valuedouble);
        }
        cJSON_Delete(cv);
        if (rc) return fl_errprefix(e, "round %d", r);
    }
}

static int run_score(fl_stage_ctx *c, fl_err *e) {
    int has_sub = fl_stage_has_input(c, "submission"), has_crops = fl_stage_has_input(c, "crops");
    int has_det = fl_stage_has_input(c, "detector"), has_cv = fl_stage_has_input(c, "cv");
    if (!has_sub && !has_crops && !has_det && !has_cv)
        return fl_errf(e, "stage '%s' has nothing to score: declare a submission, crops, "
                       "detector or cv input", fl_stage_name(c));
    const char *truth_dir = NULL;
    if ((has_sub || has_crops) && !(truth_dir = fl_stage_input(c, "truth", e))) return -1;
    char *out = fl_strdupf("%s/metrics.json", fl_stage_out_dir(c));
    cJSON *j = cJSON_CreateObject();
    const char *dir;
    int rc = -1;
    if (!out || !j) { fl_errf(e, "score: out of memory"); goto done; }
    if (has_sub && (!(dir = fl_stage_input(c, "submission", e)) || add_map5(c, dir, truth_dir, j, e)))
        goto done;
    if (has_det && (!(dir = fl_stage_input(c, "detector", e)) || add_detector(c, dir, j, e)))
        goto done;
    if (has_crops && (!(dir = fl_stage_input(c, "crops", e)) || add_crops(c, dir, truth_dir, j, e)))
        goto done;
    if (has_cv && (!(dir = fl_stage_input(c, "cv", e)) || add_cv(c, dir, j, e))) goto done;
    if (add_rounds(c, has_sub ? truth_dir : NULL, j, e)) goto done;
    /* Kaggle data: knn's submission exists but no truth does, so score gets only its cv. */
    if (!has_sub && has_cv)
        fl_stage_log(c, "no hidden truth to score the submission against (not the embedded "
                     "data), so no MAP@5; metrics.json holds the OOF CV and the detector metrics");
    else if (!has_sub)
        fl_stage_log(c, "no submission or cv to score: no identification stage feeds score, so "
                     "there is no MAP@5; metrics.json holds the detector and crop metrics");
    if (fl_json_write_file(out, j, "score", e) != 0) goto done;
    rc = 0;
done:
    cJSON_Delete(j);
    free(out);
    return rc;
}

const fl_stage_def fl_stage_score = {
    .name = "score",
    .code_id = FL_CODE_ID,
    .summary = "score what was built (submission MAP@5, detector mAP, crop recall) into metrics.json",
    .run = run_score,
};
