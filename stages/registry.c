/* The pipeline: which stages exist, the config keys they read, and how the plan is built from a
 * config. Stages declare their own keys; this file only wires nodes together. */
#include "stages/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/crop/crop.h"
#include "stages/detector/stages.h"
#include "stages/detector/weights_stage.h"
#include "stages/embed/embed.h"
#include "stages/ident/folds_stage.h"
#include "stages/ident/stages.h"
#include "stages/ident/weights_stage.h"
#include "stages/fetch/stages.h"
#include "stages/local/stages.h"
#include "stages/preflight.h"
#include "stages/synth/stages.h"

#define FL_MAX_PSEUDO_ROUNDS 10

static const fl_cfg_field pipeline_schema[] = {
    {"pipeline", FL_CFG_OBJ, 1, "what the pipeline is made of", 0, 0},
    {"pipeline.source", FL_CFG_STR, 1,
     "synth (embedded data) | kaggle (the competition's data) | local (that data already on disk: "
     "local.path)",
     0, 0},
    {"pipeline.model", FL_CFG_STR, 1,
     "baseline_knn | baseline_new_first | effnet_dolg (EfficientNet + DOLG + ArcFace)", 0, 0},
    {"pipeline.threads", FL_CFG_INT, 0, "CPU threads for the heavy stages (default 2)", 1, 4096},
    {"pipeline.pseudo_rounds", FL_CFG_INT, 0,
     "pseudo-label rounds after the first (default 0; the reproduced solution used 1)", 0,
     FL_MAX_PSEUDO_ROUNDS},
    {NULL, 0, 0, NULL, 0, 0},
};

static const fl_cfg_field *const pipeline_schemas[] = {
    pipeline_schema, fl_synth_schema, fl_baseline_schema, fl_kaggle_schema, fl_weights_schema,
    fl_detector_schema, fl_detector_weights_schema, fl_crop_schema, fl_folds_schema,
    fl_embed_schema, fl_embed_weights_schema, fl_knn_schema, fl_pseudo_schema, fl_local_schema,
    NULL,
};

static const char *str_at_path(const cJSON *config, const char *a, const char *b, const char *key) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(config, a);
    s = s ? cJSON_GetObjectItemCaseSensitive(s, b) : NULL;
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *str_at(const cJSON *config, const char *sec, const char *key) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(config, sec);
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The crop stage after the detector. `detector` is the id of the node whose outputs hold
 * detector.safetensors and detector_metrics.json (detector_train). crop declares only the "crop"
 * section, so a crop.* edit reruns crop and what follows, never the detector. boxes: the
 * external box file (detector.boxes) crop.train_boxes "given" reads, or NULL for the data's own. */
static int plan_crop(fl_plan *p, const char *data, const char *detector, const char *boxes,
                     int threads, fl_err *e) {
    fl_plan_node *n;
    if (!(n = fl_plan_add(p, &fl_stage_crop, -1, e)) || fl_plan_node_section(n, "crop", e) ||
        fl_plan_node_input(n, "data", data, e) || fl_plan_node_input(n, "detector", detector, e) ||
        (boxes && fl_plan_node_input_path(n, "boxes", boxes, e)) ||
        fl_plan_node_output(n, "crops.csv", e) || fl_plan_node_output(n, "crops", e) ||
        fl_plan_node_output(n, "bad_images.csv", e))
        return -1;
    fl_plan_node_resources(n, threads, 0);
    return 0;
}

/* folds -> embed_train[k] -> embed[k] for every fold -> knn (the submission and cv.json). Every
 * embed_* node declares only the "embed" section and knn only "knn", so a knn.* edit reruns knn
 * and score, an embed.* edit the folds' models and what follows, never the detector or crops. */
/* One identification round. Round 0: embed_train[k] -> embed[k] for every fold -> knn. Round
 * r >= 1 (pipeline.pseudo_rounds): pseudo[r] (round r-1's confident test predictions) ->
 * retrain[r][k] (the embed_train stage with the pseudo-labels, from round r-1's model of the
 * fold unless pseudo.retrain.init is "scratch") -> embed[r][k] -> knn[r] (the pseudo-labelled
 * images join the gallery). Only the last round's knn publishes submission.csv and cv.json.
 * Every embed_* node declares only "embed" (a retrain also "pseudo.retrain"), knn only "knn",
 * pseudo only "pseudo.select", so a knn.* edit reruns the knn nodes and score only. */
static int plan_round(fl_plan *p, int r, int K, int last, int from_prev, const char *data,
                      const fl_plan_node *w, int threads, fl_err *e) {
    char knn_id[32], prev_knn[32], pseudo_id[32];
    snprintf(knn_id, sizeof knn_id, r ? "knn[%d]" : "knn", r);
    snprintf(prev_knn, sizeof prev_knn, r > 1 ? "knn[%d]" : "knn", r - 1);
    snprintf(pseudo_id, sizeof pseudo_id, "pseudo[%d]", r);
    fl_plan_node *n;
    if (r > 0 &&
        (!(n = fl_plan_add(p, &fl_stage_pseudo, r, e)) || fl_plan_node_section(n, "pseudo.select", e) ||
         fl_plan_node_input(n, "knn", prev_knn, e) || fl_plan_node_output(n, "pseudo.csv", e) ||
         fl_plan_node_output(n, "pseudo.json", e)))
        return -1;
    fl_plan_node *knn = fl_plan_add_as(p, &fl_stage_knn, knn_id, e);
    if (!knn || fl_plan_node_section(knn, "knn", e) || fl_plan_node_input(knn, "data", data, e) ||
        fl_plan_node_input(knn, "folds", "folds", e) ||
        (r > 0 && fl_plan_node_input(knn, "pseudo", pseudo_id, e)))
        return -1;
    for (int k = 0; k < K; k++) {
        char train[32], embed[32], prev_train[32], name[32];
        if (r) {
            snprintf(train, sizeof train, "retrain[%d][%d]", r, k);
            snprintf(embed, sizeof embed, "embed[%d][%d]", r, k);
        } else {
            snprintf(train, sizeof train, "embed_train[%d]", k);
            snprintf(embed, sizeof embed, "embed[%d]", k);
        }
        if (r > 1)
            snprintf(prev_train, sizeof prev_train, "retrain[%d][%d]", r - 1, k);
        else
            snprintf(prev_train, sizeof prev_train, "embed_train[%d]", k);
        if (!(n = fl_plan_add_instance(p, &fl_stage_embed_train, train, k, e))) return -1;
        if (fl_plan_node_section(n, "embed", e) || fl_plan_node_input(n, "folds", "folds", e) ||
            fl_plan_node_input(n, "crop", "crop", e) ||
            (w && !(r > 0 && from_prev) && fl_plan_node_input(n, "pretrained", FL_EMBED_WEIGHTS_NODE, e)) ||
            (r > 0 && (fl_plan_node_section(n, "pseudo.retrain", e) ||
                       fl_plan_node_input(n, "pseudo", pseudo_id, e) ||
                       (from_prev && fl_plan_node_input(n, "init", prev_train, e)))) ||
            fl_plan_node_output(n, FL_EMBED_MODEL_FILE, e) || fl_plan_node_output(n, FL_EMBED_METRICS_FILE, e))
            return -1;
        fl_plan_node_resources(n, threads, 0);
        if (!(n = fl_plan_add_instance(p, &fl_stage_embed, embed, k, e))) return -1;
        if (fl_plan_node_section(n, "embed", e) || fl_plan_node_input(n, "folds", "folds", e) ||
            fl_plan_node_input(n, "crop", "crop", e) || fl_plan_node_input(n, "model", train, e) ||
            fl_plan_node_output(n, "embeddings", e))
            return -1;
        fl_plan_node_resources(n, threads, 0);
        snprintf(name, sizeof name, "embed%d", k);
        if (fl_plan_node_input(knn, name, embed, e)) return -1;
    }
    if (fl_plan_node_output(knn, "submission.csv", e) || fl_plan_node_output(knn, "cv.json", e) ||
        fl_plan_node_output(knn, "oof.csv", e) || fl_plan_node_output(knn, "predictions.csv", e) ||
        (last && (fl_plan_node_publish(knn, "submission.csv", e) || fl_plan_node_publish(knn, "cv.json", e))))
        return -1;
    fl_plan_node_resources(knn, threads, 0);
    return 0;
}

/* pipeline.pseudo_rounds, checked: 0 when absent. */
static int pseudo_rounds(const cJSON *config, int *rounds, fl_err *e) {
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(config, "pipeline");
    const cJSON *v = pl ? cJSON_GetObjectItemCaseSensitive(pl, "pseudo_rounds") : NULL;
    *rounds = 0;
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < 0 ||
        v->valuedouble > FL_MAX_PSEUDO_ROUNDS)
        return fl_errf(e, "pipeline.pseudo_rounds: must be an integer in 0..%d", FL_MAX_PSEUDO_ROUNDS);
    *rounds = (int)v->valuedouble;
    return 0;
}

/* folds, [weights], then the rounds (plan_round). The id of the last round's knn goes to *last. */
static int plan_identify(const cJSON *config, fl_plan *p, const char *data, int threads,
                         char *last_knn, size_t cap, fl_err *e) {
    int K, R;
    uint64_t seed;
    fl_folds_by by;
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(config, "folds");
    if (fl_folds_cfg(cJSON_IsObject(fs) ? fs : NULL, &K, &seed, &by, e) || pseudo_rounds(config, &R, e))
        return -1;
    const char *init = str_at_path(config, "pseudo", "retrain", "init");
    if (init && strcmp(init, "previous") && strcmp(init, "scratch"))
        return fl_errf(e, "pseudo.retrain.init: '%s' is neither previous nor scratch", init);
    int from_prev = !init || !strcmp(init, "previous");
    fl_plan_node *n, *w = NULL;
    if (fl_plan_embed_weights(p, config, &w, e)) return -1;
    if (!(n = fl_plan_add(p, &fl_stage_folds, -1, e)) || fl_plan_node_section(n, "folds", e) ||
        fl_plan_node_input(n, "data", data, e) || fl_plan_node_output(n, "folds.csv", e) ||
        fl_plan_node_publish(n, "folds.csv", e))
        return -1;
    for (int r = 0; r <= R; r++)
        if (plan_round(p, r, K, r == R, from_prev, data, w, threads, e)) return -1;
    snprintf(last_knn, cap, R ? "knn[%d]" : "knn", R);
    return 0;
}

/* pipeline.model effnet_dolg: the detector, the crops, the K folds' identification models, the
 * kNN submission and its score. */
static int plan_effnet_dolg(const cJSON *config, fl_plan *p, const char *data, const char *truth,
                            int threads, fl_err *e) {
    fl_plan_node *n, *dw = NULL;
    if (fl_plan_detector_weights(p, config, &dw, e)) return -1;
    const cJSON *det = cJSON_GetObjectItemCaseSensitive(config, "detector");
    const cJSON *boxes = det ? cJSON_GetObjectItemCaseSensitive(det, "boxes") : NULL;
    const cJSON *imgsz = det ? cJSON_GetObjectItemCaseSensitive(det, "imgsz") : NULL;
    if (cJSON_IsNumber(imgsz) && (int)imgsz->valuedouble % 32)
        return fl_errf(e, "detector.imgsz: %d is not a multiple of 32 (the network's largest stride)",
                       (int)imgsz->valuedouble);
    if (!(n = fl_plan_add(p, &fl_stage_detector_train, -1, e)) || fl_plan_node_section(n, "detector", e) ||
        fl_plan_node_input(n, "data", data, e) ||
        (cJSON_IsString(boxes) && fl_plan_node_input_path(n, "boxes", boxes->valuestring, e)) ||
        (dw && fl_plan_node_input(n, "pretrained", "detector_weights", e)) ||
        fl_plan_node_output(n, "detector.safetensors", e) || fl_plan_node_output(n, "detector_metrics.json", e))
        return -1;
    fl_plan_node_resources(n, threads, 0);
    char knn[32];
    if (plan_crop(p, data, "detector_train", cJSON_IsString(boxes) ? boxes->valuestring : NULL,
                  threads, e) ||
        plan_identify(config, p, data, threads, knn, sizeof knn, e))
        return -1;
    /* The score: the submission against the hidden truth when it is known (embedded data), the
     * CV, the detector's and the crops' figures; with pseudo rounds each round's CV and score. */
    if (!(n = fl_plan_add(p, &fl_stage_score, -1, e)) ||
        fl_plan_node_input(n, "detector", "detector_train", e) || fl_plan_node_input(n, "cv", knn, e) ||
        (truth && (fl_plan_node_input(n, "submission", knn, e) || fl_plan_node_input(n, "crops", "crop", e) ||
                   fl_plan_node_input(n, "truth", truth, e))) ||
        fl_plan_node_output(n, "metrics.json", e) || fl_plan_node_publish(n, "metrics.json", e))
        return -1;
    if (strcmp(knn, "knn")) /* pseudo rounds: every round's knn, round0 = "knn" */
        for (int r = 0;; r++) {
            char id[32], name[32];
            snprintf(id, sizeof id, r ? "knn[%d]" : "knn", r);
            snprintf(name, sizeof name, "round%d", r);
            if (fl_plan_node_input(n, name, id, e)) return -1;
            if (!strcmp(id, knn)) break;
        }
    return 0;
}

/* pipeline.source local: the data on disk as the same "data" tree fetch writes. A folder's four
 * layout entries are separate external inputs, so only they are hashed (stat cache) and a
 * missing one is named; a zip is one input. No section: the content is the key, not the path. */
static int plan_local(const cJSON *config, fl_plan *p, fl_err *e) {
    const char *path = str_at(config, "local", "path");
    if (!path || !path[0])
        return fl_errf(e, "pipeline.source is \"local\" but local.path is not set (a folder in the "
                          "Kaggle layout, or happy-whale-and-dolphin.zip)");
    fl_plan_node *n = fl_plan_add(p, &fl_stage_local, -1, e);
    if (!n || fl_plan_node_output(n, "data", e)) return -1;
    if (fl_local_is_zip(path)) return fl_plan_node_input_path(n, "zip", path, e);
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/') l--;
    for (int k = 0; k < FL_LOCAL_NENTRIES; k++) {
        char *q = fl_strdupf("%.*s/%s", (int)l, path, fl_local_entries[k]);
        int rc = q ? fl_plan_node_input_path(n, fl_local_entries[k], q, e)
                   : fl_errf(e, "out of memory");
        free(q);
        if (rc) return -1;
    }
    return 0;
}

static int plan_pipeline(const cJSON *config, const char *config_dir, fl_plan *p, fl_err *e) {
    (void)config_dir;
    const char *source = str_at(config, "pipeline", "source");
    const char *model = str_at(config, "pipeline", "model");
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(config, "pipeline");
    const cJSON *th = pl ? cJSON_GetObjectItemCaseSensitive(pl, "threads") : NULL;
    int threads = th ? (int)th->valuedouble : 2;
    fl_plan_node *n;

    /* Data: the embedded synthetic set (with a hidden truth for offline scoring) or Kaggle. */
    int scored = 0;
    if (!strcmp(source, "synth")) {
        if (!(n = fl_plan_add(p, &fl_stage_synth, -1, e)) || fl_plan_node_section(n, "synth", e) ||
            fl_plan_node_output(n, "data/train.csv", e) || fl_plan_node_output(n, "truth/solution.csv", e))
            return -1;
        fl_plan_node_resources(n, threads, 0);
        scored = 1;
    } else if (!strcmp(source, "kaggle")) {
        if (!(n = fl_plan_add(p, &fl_stage_fetch, -1, e)) || fl_plan_node_section(n, "kaggle", e) ||
            fl_plan_node_output(n, "data", e))
            return -1;
    } else if (!strcmp(source, "local")) {
        if (plan_local(config, p, e)) return -1;
    } else {
        return fl_errf(e, "pipeline.source: '%s' is not a data source (synth | kaggle | local)",
                       source);
    }
    const char *data = !strcmp(source, "synth")   ? "synth"
                       : !strcmp(source, "local") ? "local"
                                                  : "fetch";

    /* The model that writes the submission. */
    const fl_stage_def *def = NULL;
    if (!strcmp(model, "baseline_knn")) {
        def = &fl_stage_baseline_knn;
    } else if (!strcmp(model, "baseline_new_first")) {
        def = &fl_stage_baseline_new_first;
    } else if (!strcmp(model, "effnet_dolg")) {
        return plan_effnet_dolg(config, p, data, scored ? "synth" : NULL, threads, e);
    } else {
        return fl_errf(e, "pipeline.model: '%s' is not a model (baseline_knn | baseline_new_first "
                          "| effnet_dolg)", model);
    }
    if (!(n = fl_plan_add(p, def, -1, e)) || fl_plan_node_input(n, "data", data, e) ||
        fl_plan_node_output(n, "submission.csv", e) || fl_plan_node_publish(n, "submission.csv", e))
        return -1;
    if (def == &fl_stage_baseline_knn && fl_plan_node_section(n, "baseline.knn", e)) return -1;
    fl_plan_node_resources(n, threads, 0);

    /* Offline score when the truth is known (the embedded data). */
    if (scored) {
        if (!(n = fl_plan_add(p, &fl_stage_score, -1, e)) ||
            fl_plan_node_input(n, "submission", def->name, e) || fl_plan_node_input(n, "truth", "synth", e) ||
            fl_plan_node_output(n, "metrics.json", e) || fl_plan_node_publish(n, "metrics.json", e))
            return -1;
    }
    return 0;
}

/* `fluke submit [CONFIG] [--dry-run] [-m MESSAGE]`: uploads out/<name>/submission.csv. */
static int submit_main(int argc, char **argv, const cJSON *config, const char *out_dir, fl_err *e) {
    int dry = 0;
    const char *msg = "fluke";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run") || !strcmp(argv[i], "-n"))
            dry = 1;
        else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--message")) && i + 1 < argc)
            msg = argv[++i];
        else
            return fl_errf(e, "unexpected argument %s (usage: fluke submit [CONFIG] [--dry-run] "
                              "[-m MESSAGE])", argv[i]), 2;
    }
    if (!config) return fl_errf(e, "no config given (and no configs/smoke.json here)"), 2;
    const char *competition;
    fl_kaggle_opts opts;
    if (fl_kaggle_submit_opts(config, &competition, &opts, e)) return 2;
    char *path = malloc(strlen(out_dir) + 32);
    sprintf(path, "%s/submission.csv", out_dir);
    int rc = fl_kaggle_submit_cli(&opts, competition, path, msg, dry, stdout, e);
    free(path);
    return rc ? 1 : 0;
}

static const fl_command submit_command = {
    .name = "submit",
    .usage = "submit [CONFIG] [--dry-run] [-m MSG]",
    .summary = "upload out/<name>/submission.csv to Kaggle and print the score",
    .main_config = submit_main,
};

static const fl_command *const pipeline_commands[] = {&submit_command, &fl_synth_command, NULL};

const fl_registry fl_pipeline_registry = {
    .program = "fluke",
    .default_config = "smoke.json",
    .schemas = pipeline_schemas,
    .plan = plan_pipeline,
    .commands = pipeline_commands,
    .preflight = fl_pipeline_preflight,
};
