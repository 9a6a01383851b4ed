/* Stage "embed_train[k]": fold k's EfficientNet + DOLG + ArcFace, trained on the crops of the
 * training part of folds.csv (stages/embed/train.c), validated every embed.train.val_every epochs
 * by the OOF kNN MAP@5 on fold k. Outputs embed_model.safetensors and train_metrics.json. */
#include <stdlib.h>
#include <string.h>

#include "codeid/embed_train.h"
#include "stages/embed/embed.h"
#include "stages/ident/weights_stage.h"

typedef struct log_ctx {
    fl_stage_ctx *c;
} log_ctx;

static void on_progress(void *u, uint64_t step, uint64_t total, const char *line) {
    fl_stage_progress(((log_ctx *)u)->c, step, total, "step", "%s", line);
}
static void on_log(void *u, const char *line) { fl_stage_log(((log_ctx *)u)->c, "%s", line); }

static int run_embed_train(fl_stage_ctx *c, fl_err *e) {
    fl_embopts o;
    const cJSON *sec;
    if (fl_embed_stage_opts(c, &o, &sec, e)) return -1;
    const char *folds = fl_stage_input(c, "folds", e), *crop = folds ? fl_stage_input(c, "crop", e) : NULL;
    if (!crop) return -1;
    char *folds_csv = fl_strdupf("%s/folds.csv", folds);
    if (!folds_csv) return fl_errf(e, "out of memory");
    fl_embset s;
    int rc = fl_embset_build(folds_csv, crop, fl_stage_instance(c), &s, e);
    free(folds_csv);
    if (rc) return -1;
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
    fl_embtrain_io io = {.set = &s, .ckpt_path = ckpt, .pretrained = pre, .model_path = model,
                         .metrics_path = metrics, .progress = on_progress, .log = on_log,
                         .user = &lg};
    if (rc == 0 && (!ckpt || !model || !metrics)) rc = fl_errf(e, "out of memory");
    if (rc == 0) rc = fl_embtrain_run(&o, &io, e);
    free(ckpt);
    free(model);
    free(metrics);
    free(pre);
    fl_embset_free(&s);
    return rc;
}

const fl_stage_def fl_stage_embed_train = {
    .name = "embed_train",
    .code_id = FL_CODE_ID,
    .summary = "fold k's EfficientNet + DOLG + ArcFace on the crops (validated on fold k)",
    .run = run_embed_train,
};
