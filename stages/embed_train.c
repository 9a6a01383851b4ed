/* Stage "embed_train[k]": fold k's EfficientNet + DOLG + ArcFace, trained on the crops of the
 * training part of folds.csv (stages/embed/train.c), validated every embed.train.val_every epochs
 * by the OOF kNN MAP@5 on fold k. Outputs embed_model.safetensors and train_metrics.json.
 *
 * The same stage is a pseudo round's "retrain[r][k]" when the plan gives it a "pseudo" input
 * (pseudo[r]'s pseudo.csv: those of the training part's individuals join the training part,
 * validation stays fold k's train images only), optionally an "init" input (the previous
 * round's model of the fold) and the pseudo.retrain section (epochs, lr, warmup overrides). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/embed_train.h"
#include "stages/embed/embed.h"
#include "stages/ident/pseudo.h"
#include "stages/ident/weights_stage.h"

typedef struct log_ctx {
    fl_stage_ctx *c;
} log_ctx;

static void on_progress(void *u, uint64_t step, uint64_t total, const char *line) {
    fl_stage_progress(((log_ctx *)u)->c, step, total, "step", "%s", line);
}
static void on_log(void *u, const char *line) { fl_stage_log(((log_ctx *)u)->c, "%s", line); }

/* pseudo.retrain's overrides of the embed section's schedule. */
static int retrain_opts(fl_stage_ctx *c, fl_embopts *o, fl_err *e) {
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "pseudo.retrain", &none), *v;
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    if (!sec) return 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "epochs"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1)
            return fl_errf(e, "pseudo.retrain.epochs: must be an integer >= 1");
        o->epochs = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "lr"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
            return fl_errf(e, "pseudo.retrain.lr: must be a positive number");
        o->lr = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "warmup_epochs"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0))
            return fl_errf(e, "pseudo.retrain.warmup_epochs: must be a number >= 0");
        o->warmup_epochs = v->valuedouble;
    }
    return 0;
}

/* dir/file of input `name` into *out (NULL when the node has no such input). */
static int input_file(fl_stage_ctx *c, const char *name, const char *file, char **out, fl_err *e) {
    *out = NULL;
    if (!fl_stage_has_input(c, name)) return 0;
    const char *dir = fl_stage_input(c, name, e);
    if (!dir) return -1;
    if (!(*out = fl_strdupf("%s/%s", dir, file))) return fl_errf(e, "out of memory");
    return 0;
}

static int run_embed_train(fl_stage_ctx *c, fl_err *e) {
    fl_embopts o;
    const cJSON *sec;
    if (fl_embed_stage_opts(c, &o, &sec, e)) return -1;
    int retrain = fl_stage_has_input(c, "pseudo");
    if (retrain && retrain_opts(c, &o, e)) return -1;
    const char *folds = fl_stage_input(c, "folds", e), *crop = folds ? fl_stage_input(c, "crop", e) : NULL;
    if (!crop) return -1;
    char *folds_csv = fl_strdupf("%s/folds.csv", folds);
    if (!folds_csv) return fl_errf(e, "out of memory");
    char *pseudo = NULL, *init = NULL;
    if (input_file(c, "pseudo", FL_PSEUDO_FILE, &pseudo, e) ||
        input_file(c, "init", FL_EMBED_MODEL_FILE, &init, e)) {
        free(folds_csv), free(pseudo);
        return -1;
    }
    fl_embset s;
    int rc = fl_embset_build_pseudo(folds_csv, crop, fl_stage_instance(c), pseudo, &s, e);
    free(folds_csv);
    if (rc) {
        free(pseudo), free(init);
        return -1;
    }
    if (pseudo)
        fl_stage_log(c, "%d pseudo-labelled test crops join the training part (%d more are of "
                        "individuals outside it and are left out, so the fold stays out of fold)",
                     s.n_pseudo, s.n_pseudo_other);
    free(pseudo);
    if (s.n_no_crop)
        fl_stage_log(c, "%d train images have no crop (unreadable; see the crop stage's "
                        "bad_images.csv) and are left out", s.n_no_crop);
    char *pre = NULL;
    if (fl_stage_has_input(c, "pretrained")) {
        const char *pdir = fl_stage_input(c, "pretrained", e);
        if (!pdir) rc = -1;
        else if (!(pre = fl_strdupf("%s/%s", pdir, FL_EMBED_PRETRAINED_FILE))) rc = fl_errf(e, "out of memory");
    }
    log_ctx lg = {c};
    char *ckpt = fl_strdupf("%s/embed_last.ckpt", fl_stage_work_dir(c));
    char *model = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_EMBED_MODEL_FILE);
    char *metrics = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_EMBED_METRICS_FILE);
    fl_embtrain_io io = {.set = &s, .ckpt_path = ckpt, .pretrained = pre, .init = init,
                         .model_path = model,
                         .metrics_path = metrics, .progress = on_progress, .log = on_log,
                         .user = &lg};
    if (rc == 0 && (!ckpt || !model || !metrics)) rc = fl_errf(e, "out of memory");
    if (rc == 0) rc = fl_embtrain_run(&o, &io, e);
    free(ckpt);
    free(model);
    free(metrics);
    free(pre), free(init);
    fl_embset_free(&s);
    return rc;
}

const fl_stage_def fl_stage_embed_train = {
    .name = "embed_train",
    .code_id = FL_CODE_ID,
    .summary = "fold k's EfficientNet + DOLG + ArcFace on the crops (validated on fold k)",
    .run = run_embed_train,
};
