/* Stage "pseudo[r]": round r-1's confident test predictions become labels for round r.
 *
 * Input "knn" is the previous round's knn output: oof.csv (every OOF query's top-1 individual,
 * its confidence and whether it is the truth) and predictions.csv (every test image's top-1).
 * The confidence threshold is the lowest at which the OOF queries at or above it reach
 * pseudo.select.precision top-1 precision (stages/ident/pseudo.h), so the labels' expected
 * precision is measured, not guessed; test images whose top-1 confidence reaches it are taken.
 * new_individual is never a pseudo-label (new ids from clusters are not built).
 * Outputs pseudo.csv (image,individual_id,species,confidence) and pseudo.json (the threshold, its
 * OOF precision and support, how many were taken, per species). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/pseudo.h"
#include "stages/api/stage.h"
#include "stages/ident/pseudo.h"
#include "stages/ident/stages.h"
#include "stages/labels/labels.h"

const fl_cfg_field fl_pseudo_schema[] = {
    {"pseudo", FL_CFG_OBJ, 0, "pseudo-label rounds (pipeline.pseudo_rounds of them)", 0, 0},
    {"pseudo.select", FL_CFG_OBJ, 0, "which test predictions become labels", 0, 0},
    {"pseudo.select.precision", FL_CFG_NUM, 0,
     "OOF top-1 precision the taken confidences must reach (default 0.95)", 0.01, 1},
    {"pseudo.select.min_n", FL_CFG_INT, 0,
     "OOF queries a confidence cut needs before its precision counts (default 20)", 1, 1e9},
    {"pseudo.select.min_conf", FL_CFG_NUM, 0, "never take a confidence below this (default 0)", -1,
     1},
    {"pseudo.retrain", FL_CFG_OBJ, 0, "how each fold is retrained with the pseudo-labels", 0, 0},
    {"pseudo.retrain.init", FL_CFG_STR, 0,
     "previous (start from the previous round's model of the fold; default) | scratch", 0, 0},
    {"pseudo.retrain.epochs", FL_CFG_INT, 0, "epochs of a retrain (default embed.train.epochs)", 1,
     100000},
    {"pseudo.retrain.lr", FL_CFG_NUM, 0, "peak learning rate of a retrain (default embed.train.lr)",
     1e-9, 10},
    {"pseudo.retrain.warmup_epochs", FL_CFG_NUM, 0,
     "warmup epochs of a retrain (default embed.train.warmup_epochs)", 0, 1000},
    {NULL, 0, 0, NULL, 0, 0},
};

typedef struct sel_cfg {
    double precision, min_conf;
    int min_n;
} sel_cfg;

static int read_cfg(fl_stage_ctx *c, sel_cfg *o, fl_err *e) {
    *o = (sel_cfg){.precision = 0.95, .min_n = 20, .min_conf = 0};
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "pseudo.select", &none);
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    if (!sec) return 0;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "precision"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.01 && v->valuedouble <= 1))
            return fl_errf(e, "pseudo.select.precision: must be a number in [0.01, 1]");
        o->precision = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "min_n"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > 1e9)
            return fl_errf(e, "pseudo.select.min_n: must be an integer >= 1");
        o->min_n = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "min_conf"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= -1 && v->valuedouble <= 1))
            return fl_errf(e, "pseudo.select.min_conf: must be a number in [-1, 1]");
        o->min_conf = v->valuedouble;
    }
    return 0;
}

/* A number field of a knn file; the error names file and line. */
static int num_field(const char *path, int line, const char *what, const char *s, double *out,
                     fl_err *e) {
    char *end = NULL;
    *out = strtod(s, &end);
    if (!s[0] || *end || !isfinite(*out))
        return fl_errf(e, "%s:%d: %s '%s' is not a number", path, line, what, s);
    return 0;
}

typedef struct sp_count {
    const char *name;
    int n;
} sp_count;

static int run(fl_stage_ctx *c, fl_err *e) {
    sel_cfg o;
    if (read_cfg(c, &o, e)) return -1;
    const char *dir = fl_stage_input(c, "knn", e);
    if (!dir) return -1;
    char *oof_path = fl_strdupf("%s/%s", dir, FL_KNN_OOF_FILE);
    char *pred_path = fl_strdupf("%s/%s", dir, FL_KNN_PRED_FILE);
    char *out_csv = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_PSEUDO_FILE);
    char *out_json = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_PSEUDO_SUMMARY);
    fl_csv oofc = {0}, pred = {0};
    float *conf = NULL;
    uint8_t *hit = NULL;
    sp_count *sp = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;
    cJSON *j = NULL;
    int rc = -1;
    if (!oof_path || !pred_path || !out_csv || !out_json) {
        fl_errf(e, "pseudo: out of memory");
        goto done;
    }
    static const char *const ocols[] = {"confidence", "hit", "individual_id"};
    static const char *const pcols[] = {"image", "individual_id", "species", "confidence"};
    int oi[3], pi[4];
    if (fl_csv_read(oof_path, &oofc, e) || fl_csv_require(&oofc, ocols, 3, oi, e) ||
        fl_csv_read(pred_path, &pred, e) || fl_csv_require(&pred, pcols, 4, pi, e))
        goto done;
    int64_t n = oofc.nrows;
    conf = malloc(((size_t)n + 1) * sizeof *conf), hit = malloc((size_t)n + 1);
    sp = calloc((size_t)pred.nrows + 1, sizeof *sp);
    if (!conf || !hit || !sp) {
        fl_errf(e, "pseudo: out of memory");
        goto done;
    }
    for (int64_t r = 1; r <= n; r++) {
        char **fv = oofc.rows[r].f;
        double v, h;
        int line = oofc.rows[r].line;
        if (num_field(oof_path, line, "confidence", fv[oi[0]], &v, e) ||
            num_field(oof_path, line, "hit", fv[oi[1]], &h, e))
            goto done;
        if (h != 0 && h != 1) {
            fl_errf(e, "%s:%d: hit must be 0 or 1", oof_path, line);
            goto done;
        }
        /* a query without any neighbour has no top-1 to trust */
        conf[r - 1] = fv[oi[2]][0] ? (float)v : -INFINITY, hit[r - 1] = (uint8_t)h;
    }
    fl_pseudo_cut cut;
    if (fl_pseudo_threshold(conf, hit, n, o.precision, o.min_n, o.min_conf, &cut, e)) goto done;
    if (cut.reached)
        fl_stage_log(c,
                     "threshold %.4f: OOF top-1 precision %.4f on the %lld of %lld queries at or "
                     "above it (target %.3f)",
                     cut.threshold, cut.precision, (long long)cut.n_above, (long long)n,
                     o.precision);
    else
        fl_stage_log(c,
                     "no confidence reaches OOF top-1 precision %.3f on >= %d queries: no "
                     "pseudo-labels this round",
                     o.precision, o.min_n);
    if (!(f = open_memstream(&buf, &len))) {
        fl_errf(e, "pseudo: out of memory");
        goto done;
    }
    fputs("image,individual_id,species,confidence\n", f);
    int taken = 0, nsp = 0;
    for (int r = 1; r <= pred.nrows; r++) {
        char **fv = pred.rows[r].f;
        double v;
        if (num_field(pred_path, pred.rows[r].line, "confidence", fv[pi[3]], &v, e)) goto done;
        if (!fv[pi[1]][0] || !cut.reached || (float)v < (float)cut.threshold) continue;
        if (!fv[pi[2]][0]) {
            fl_errf(e, "%s:%d: a prediction without a species", pred_path, pred.rows[r].line);
            goto done;
        }
        fprintf(f, "%s,%s,%s,%s\n", fv[pi[0]], fv[pi[1]], fv[pi[2]], fv[pi[3]]);
        taken++;
        int s = 0;
        while (s < nsp && strcmp(sp[s].name, fv[pi[2]]))
            s++;
        if (s == nsp) sp[nsp++].name = fv[pi[2]];
        sp[s].n++;
    }
    if (ferror(f)) {
        fl_errf(e, "pseudo: out of memory");
        goto done;
    }
    fclose(f), f = NULL;
    if (fl_write_file_atomic(out_csv, buf, len, e)) goto done;
    fl_stage_log(c, "%d of %d test images pseudo-labelled (%.1f%%) over %d species", taken,
                 pred.nrows, pred.nrows ? 100.0 * taken / pred.nrows : 0.0, nsp);
    if (!(j = cJSON_CreateObject())) {
        fl_errf(e, "pseudo: out of memory");
        goto done;
    }
    cJSON_AddNumberToObject(j, "target_precision", o.precision);
    cJSON_AddBoolToObject(j, "reached", cut.reached);
    if (cut.reached) {
        cJSON_AddNumberToObject(j, "threshold", cut.threshold);
        cJSON_AddNumberToObject(j, "oof_precision", cut.precision);
        cJSON_AddNumberToObject(j, "oof_support", (double)cut.n_above);
    }
    cJSON_AddNumberToObject(j, "oof_queries", (double)n);
    cJSON_AddNumberToObject(j, "n_test", pred.nrows);
    cJSON_AddNumberToObject(j, "taken", taken);
    cJSON *ps = cJSON_AddObjectToObject(j, "per_species");
    for (int s = 0; s < nsp; s++)
        cJSON_AddNumberToObject(ps, sp[s].name, sp[s].n);
    rc = fl_json_write_file(out_json, j, "pseudo", e);
done:
    if (f) fclose(f);
    cJSON_Delete(j);
    free(buf), free(conf), free(hit), free(sp);
    fl_csv_free(&oofc), fl_csv_free(&pred);
    free(oof_path), free(pred_path), free(out_csv), free(out_json);
    return rc;
}

const fl_stage_def fl_stage_pseudo = {
    .name = "pseudo",
    .code_id = FL_CODE_ID,
    .summary = "confident test predictions of the previous round -> pseudo-labels (threshold "
               "from the OOF top-1 precision)",
    .run = run,
};
