/* Stage "detector_train": YOLOv5 on the fin/body boxes of the train images (ultralytics
 * train.py with hyp.scratch-low; stages/detector/train.h), held-out individuals for validation.
 * Outputs detector.safetensors (EMA weights, ultralytics names) and detector_metrics.json. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/detector_train.h"
#include "stages/api/stage.h"
#include "stages/detector/dataset.h"
#include "stages/detector/stages.h"
#include "stages/detector/train.h"
#include "stages/detector/weights_stage.h"
#include "stages/synth/stages.h"

#define HYP(key, lo, hi, doc)                                                                      \
    { "detector.hyp." key, FL_CFG_NUM, 0, doc, lo, hi }

const fl_cfg_field fl_detector_schema[] = {
    {"detector", FL_CFG_OBJ, 0, "the YOLOv5 fin/body detector and its training", 0, 0},
    {"detector.size", FL_CFG_STR, 0, "n | s | m | l | x (default n); depth/width override it", 0,
     0},
    {"detector.depth", FL_CFG_NUM, 0, "depth multiple (yolov5n 0.33)", 0.01, 4},
    {"detector.width", FL_CFG_NUM, 0, "width multiple (yolov5n 0.25)", 0.01, 4},
    {"detector.imgsz", FL_CFG_INT, 0,
     "training and detection input size, a multiple of 32 (default 640)", 32, 4096},
    {"detector.epochs", FL_CFG_INT, 0, "training epochs (default 100)", 1, 100000},
    {"detector.batch", FL_CFG_INT, 0, "batch size (default 16)", 1, 1024},
    {"detector.nbs", FL_CFG_INT, 0, "nominal batch reached by gradient accumulation (default 64)",
     1, 65536},
    {"detector.workers", FL_CFG_INT, 0, "image loader threads (default 2)", 1, 64},
    {"detector.classes", FL_CFG_STR, 0, "one (a single 'animal' class, default) | species", 0, 0},
    {"detector.boxes", FL_CFG_STR, 0,
     "box CSV (image,bbox \"[[x1 y1 x2 y2]]\" or image,box \"x1 y1 x2 y2\"), relative to the "
     "config; "
     "default: the data's train_boxes.csv",
     0, 0},
    {"detector.val_share", FL_CFG_NUM, 0,
     "share of boxed individuals held out for validation (default 0.15)", 0, 0.9},
    {"detector.seed", FL_CFG_INT, 0, "seed of the split, the init and the augmentation (default 0)",
     0, FL_CFG_INT_MAX},
    {"detector.optimizer", FL_CFG_STR, 0, "sgd (nesterov, default) | adam | adamw", 0, 0},
    {"detector.max_bad_share", FL_CFG_NUM, 0,
     "unreadable images tolerated, as a share (default 0.001)", 0, 1},
    {"detector.ema_decay", FL_CFG_NUM, 0, "model EMA decay (default 0.9999)", 0, 1},
    {"detector.ema_tau", FL_CFG_NUM, 0, "model EMA ramp in updates (default 2000)", 1e-3, 1e12},
    {"detector.close_mosaic", FL_CFG_INT, 0,
     "train the last N epochs without mosaic (ultralytics v8's close_mosaic; default 0 as YOLOv5)",
     0, 100000},
    {"detector.clip", FL_CFG_NUM, 0, "gradient norm clip (default 10)", 1e-6, 1e12},
    {"detector.hyp", FL_CFG_OBJ, 0, "ultralytics hyp.scratch-low keys (defaults as there)", 0, 0},
    HYP("lr0", 0, 10, "initial learning rate (0.01)"),
    HYP("lrf", 0, 1, "final lr factor (0.01)"),
    HYP("momentum", 0, 1, "SGD momentum / Adam beta1 (0.937)"),
    HYP("weight_decay", 0, 1, "weight decay at the nominal batch (5e-4)"),
    HYP("warmup_epochs", 0, 1000, "warmup epochs (3)"),
    HYP("warmup_momentum", 0, 1, "initial warmup momentum (0.8)"),
    HYP("warmup_bias_lr", 0, 10, "initial warmup bias lr (0.1)"),
    HYP("box", 0, 1000, "box loss gain (0.05)"),
    HYP("cls", 0, 1000, "class loss gain (0.5)"),
    HYP("obj", 0, 1000, "objectness loss gain (1.0)"),
    HYP("anchor_t", 1, 100, "anchor-multiple threshold (4.0)"),
    HYP("hsv_h", 0, 1, "hue augmentation (0.015)"),
    HYP("hsv_s", 0, 1, "saturation augmentation (0.7)"),
    HYP("hsv_v", 0, 1, "value augmentation (0.4)"),
    HYP("degrees", 0, 180, "rotation +/- degrees (0)"),
    HYP("translate", 0, 1, "translation +/- fraction (0.1)"),
    HYP("scale", 0, 0.99, "scale +/- gain (0.5)"),
    HYP("shear", 0, 90, "shear +/- degrees (0)"),
    HYP("perspective", 0, 0.001, "perspective +/- fraction (0)"),
    HYP("fliplr", 0, 1, "left-right flip probability (0.5)"),
    HYP("mosaic", 0, 1, "mosaic probability (1.0)"),
    {NULL, 0, 0, NULL, 0, 0},
};

static double num(const cJSON *o, const char *key, double def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *str(const cJSON *o, const char *key, const char *def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : def;
}

/* The network from detector.size / depth / width and imgsz. */
static int detector_cfg_from_json(const cJSON *det, int nc, fl_yolo_cfg *cfg, int *imgsz, fl_err *e) {
    const char *size = str(det, "size", "n");
    if (strlen(size) != 1 || !strchr("nsmlx", size[0]))
        return fl_errf(e, "detector.size: '%s' is not a YOLOv5 size (n, s, m, l, x)", size);
    if (fl_yolo_cfg_size(cfg, size[0], nc, e)) return -1;
    double depth = num(det, "depth", cfg->depth), width = num(det, "width", cfg->width);
    if (fl_yolo_cfg_make(cfg, depth, width, nc, e)) return fl_errprefix(e, "detector");
    *imgsz = (int)num(det, "imgsz", 640);
    if (*imgsz % 32)
        return fl_errf(
            e, "detector.imgsz: %d is not a multiple of 32 (the network's largest stride)", *imgsz);
    return 0;
}

typedef struct log_ctx {
    fl_stage_ctx *c;
} log_ctx;

static void on_progress(void *u, uint64_t step, uint64_t total, const char *line) {
    fl_stage_progress(((log_ctx *)u)->c, step, total, "step", "%s", line);
}
static void on_log(void *u, const char *line) {
    fl_stage_log(((log_ctx *)u)->c, "%s", line);
}

static int run_detector_train(fl_stage_ctx *c, fl_err *e) {
    fl_err none = {{0}};
    const cJSON *det = fl_stage_cfg(c, "detector", &none); /* absent: every default */
    if (!det && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    const cJSON *hyp = det ? cJSON_GetObjectItemCaseSensitive(det, "hyp") : NULL;
    const char *dir = fl_stage_input(c, "data", e);
    if (!dir) return -1;
    char *data = fl_synth_data_dir(dir);
    const char *boxes = NULL;
    if (str(det, "boxes", NULL) && !(boxes = fl_stage_input(c, "boxes", e))) {
        free(data);
        return -1;
    }
    const char *classes = str(det, "classes", "one");
    if (strcmp(classes, "one") && strcmp(classes, "species")) {
        free(data);
        return fl_errf(e, "detector.classes: '%s' is not one of: one, species", classes);
    }
    char *train_csv = fl_strdupf("%s/train.csv", data),
         *train_dir = fl_strdupf("%s/train_images", data);
    char *sample = fl_strdupf("%s/sample_submission.csv", data);
    char *own_boxes = boxes ? NULL : fl_strdupf("%s/train_boxes.csv", data);
    fl_detset ds;
    fl_detset_opts dopt = {.train_csv = train_csv,
                           .train_dir = train_dir,
                           .test = sample,
                           .boxes = boxes ? boxes : own_boxes,
                           .classes = !strcmp(classes, "species") ? FL_DETSET_SPECIES
                                                                  : FL_DETSET_ONE_CLASS,
                           .val_share = num(det, "val_share", 0.15),
                           .seed = (uint64_t)num(det, "seed", 0),
                           .threads = fl_stage_threads(c)};
    int rc = fl_detset_build(&dopt, &ds, e);
    free(data);
    free(train_csv);
    free(train_dir);
    free(sample);
    free(own_boxes);
    if (rc) return -1;
    fl_stage_log(c,
                 "boxes: %d rows, %d used (%d boxes on %d images of %d individuals, %d held out), "
                 "%d rows of test images and %d empty rows ignored",
                 ds.n.rows, ds.n.rows_used, ds.n.boxes, ds.n.boxed, ds.n.individuals,
                 ds.n.val_individuals, ds.n.rows_test, ds.n.rows_empty);
    if (ds.clip_warning[0]) fl_stage_log(c, "warning: %s", ds.clip_warning);
    if (ds.bad_warning[0]) fl_stage_log(c, "warning: %s", ds.bad_warning);
    if (ds.n.bad_images > num(det, "max_bad_share", 0.001) * ds.n.boxed) {
        rc = fl_errf(e,
                     "detector_train: %d of %d boxed train images do not read, over "
                     "detector.max_bad_share %g: %s",
                     ds.n.bad_images, ds.n.boxed, num(det, "max_bad_share", 0.001), ds.bad_warning);
        fl_detset_free(&ds);
        return rc;
    }

    fl_dettrain_opts o = {0};
    log_ctx lg = {c};
    o.meta.nclasses = ds.nclasses;
    for (int i = 0; i < ds.nclasses && i < FL_DETECTOR_MAX_CLASSES; i++)
        snprintf(o.meta.classes[i], sizeof o.meta.classes[i], "%s", ds.classes[i]);
    if (ds.nclasses > FL_DETECTOR_MAX_CLASSES) {
        fl_detset_free(&ds);
        return fl_errf(e, "detector: %d classes, at most %d", ds.nclasses, FL_DETECTOR_MAX_CLASSES);
    }
    if (detector_cfg_from_json(det, ds.nclasses, &o.meta.cfg, &o.meta.imgsz, e)) {
        fl_detset_free(&ds);
        return -1;
    }
    const char *optname = str(det, "optimizer", "sgd");
    o.optimizer = !strcmp(optname, "sgd")     ? FL_OPTIM_SGD
                  : !strcmp(optname, "adam")  ? FL_OPTIM_ADAM
                  : !strcmp(optname, "adamw") ? FL_OPTIM_ADAMW
                                              : (fl_optim_kind)-1;
    if ((int)o.optimizer < 0) {
        fl_detset_free(&ds);
        return fl_errf(e, "detector.optimizer: '%s' is not one of: sgd, adam, adamw", optname);
    }
    o.epochs = (int)num(det, "epochs", 100);
    o.batch = (int)num(det, "batch", 16);
    o.nbs = (int)num(det, "nbs", 64);
    o.workers = (int)num(det, "workers", 2);
    o.lr0 = num(hyp, "lr0", 0.01);
    o.lrf = num(hyp, "lrf", 0.01);
    o.momentum = num(hyp, "momentum", 0.937);
    o.weight_decay = num(hyp, "weight_decay", 5e-4);
    o.warmup_epochs = num(hyp, "warmup_epochs", 3);
    o.warmup_momentum = num(hyp, "warmup_momentum", 0.8);
    o.warmup_bias_lr = num(hyp, "warmup_bias_lr", 0.1);
    o.hyp = fl_yolo_hyp_default(o.meta.imgsz);
    o.hyp.box = num(hyp, "box", o.hyp.box);
    o.hyp.cls = num(hyp, "cls", o.hyp.cls);
    o.hyp.obj = num(hyp, "obj", o.hyp.obj);
    o.hyp.anchor_t = num(hyp, "anchor_t", o.hyp.anchor_t);
    o.aug = fl_yolo_aug_defaults();
    o.aug.hsv_h = (float)num(hyp, "hsv_h", o.aug.hsv_h);
    o.aug.hsv_s = (float)num(hyp, "hsv_s", o.aug.hsv_s);
    o.aug.hsv_v = (float)num(hyp, "hsv_v", o.aug.hsv_v);
    o.aug.degrees = (float)num(hyp, "degrees", o.aug.degrees);
    o.aug.translate = (float)num(hyp, "translate", o.aug.translate);
    o.aug.scale = (float)num(hyp, "scale", o.aug.scale);
    o.aug.shear = (float)num(hyp, "shear", o.aug.shear);
    o.aug.perspective = (float)num(hyp, "perspective", o.aug.perspective);
    o.aug.flip_lr = (float)num(hyp, "fliplr", o.aug.flip_lr);
    o.aug.mosaic = (float)num(hyp, "mosaic", o.aug.mosaic);
    o.close_mosaic = (int)num(det, "close_mosaic", 0);
    o.ema_decay = num(det, "ema_decay", 0.9999);
    o.ema_tau = num(det, "ema_tau", 2000);
    o.clip = num(det, "clip", 10);
    o.seed = (uint64_t)num(det, "seed", 0);
    o.max_bad_share = num(det, "max_bad_share", 0.001);
    o.train = ds.train;
    o.ntrain = (size_t)ds.ntrain;
    o.val = ds.val;
    o.nval = (size_t)ds.nval;
    o.progress = on_progress;
    o.log = on_log;
    o.user = &lg;
    char *ckpt = fl_strdupf("%s/detector_last.ckpt", fl_stage_work_dir(c));
    char *wpath = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_DETECTOR_FILE);
    char *mpath = fl_strdupf("%s/detector_metrics.json", fl_stage_out_dir(c));
    o.ckpt_path = ckpt;
    char *pre = NULL;
    if (str(det, "weights", NULL)) {
        const char *pdir = fl_stage_input(c, "pretrained", e);
        if (!pdir)
            rc = -1;
        else
            o.pretrained = pre = fl_strdupf("%s/%s", pdir, FL_DETECTOR_PRETRAINED_FILE);
    }
    if (rc == 0) rc = fl_dettrain_run(&o, wpath, mpath, e);
    free(ckpt);
    free(pre);
    free(wpath);
    free(mpath);
    fl_detset_free(&ds);
    return rc;
}

const fl_stage_def fl_stage_detector_train = {
    .name = "detector_train",
    .code_id = FL_CODE_ID,
    .summary = "YOLOv5 trained on the fin/body boxes (ultralytics hyp.scratch-low)",
    .run = run_detector_train,
};
