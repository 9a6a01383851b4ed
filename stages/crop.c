/* Stage "crop": detects the fin / body on every train and test image with the detector of
 * detector_train and writes the crops the identification model trains on (stages/crop/crop.h).
 *
 * Inputs: "data" (the Kaggle layout, directly or under data/), "detector" (a node holding
 * detector.safetensors) and, optionally, "boxes" (the box file crop.train_boxes "given" uses:
 * a CSV or a folder with train_boxes.csv; default the data's train_boxes.csv). Section: "crop" only, so a crop.* edit reruns this stage and what
 * follows, never the detector. Outputs: crops/train/<image>, crops/test/<image>, crops.csv,
 * bad_images.csv. Threads: fl_stage_threads (image workers and the forward's OpenMP team). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codeid/crop.h"
#include "stages/api/stage.h"
#include "stages/crop/crop.h"
#include "stages/detector/detector_io.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

const fl_cfg_field fl_crop_schema[] = {
    {"crop", FL_CFG_OBJ, 0, "detect the fin / body on every image and cut it out", 0, 0},
    {"crop.margin", FL_CFG_NUM, 0,
     "added to the detected box on every side, as a fraction of its width / height (0.1)", 0, 2},
    {"crop.size", FL_CFG_INT, 0, "side of the square crops written, pixels (256)", 16, 4096},
    {"crop.keep_aspect", FL_CFG_BOOL, 0,
     "pad the crop to a square with the letterbox grey (114) instead of stretching it (false)", 0,
     0},
    {"crop.quality", FL_CFG_INT, 0, "JPEG quality of the crops (95)", 1, 100},
    {"crop.conf", FL_CFG_NUM, 0, "detection threshold on obj * cls (0.25, ultralytics detect)", 0,
     1},
    {"crop.iou", FL_CFG_NUM, 0,
     "NMS IoU threshold (0.45); only per_class runs NMS: the best box is NMS's first anyway", 0,
     1},
    {"crop.max_det", FL_CFG_INT, 0, "detections NMS keeps per image (300; per_class)", 1, 30000},
    {"crop.per_class", FL_CFG_BOOL, 0,
     "one crop per detected class (<stem>_<class>.jpg) instead of only the best box (false)", 0,
     0},
    {"crop.train_boxes", FL_CFG_STR, 0,
     "detect (default: train and test crops from the same detector) | given (train images with "
     "a box in the data's box file use it)", 0, 0},
    {"crop.batch", FL_CFG_INT, 0, "images per detector forward pass (16)", 1, 1024},
    {"crop.max_bad_share", FL_CFG_NUM, 0,
     "share of corrupt or truncated images skipped before the stage fails (0.001)", 0, 1},
    {NULL, 0, 0, NULL, 0, 0},
};

static void on_progress(void *user, int done, int total, const fl_crop_stats *s) {
    fl_stage_progress(user, (uint64_t)done, (uint64_t)total, "img", "%d fallback, %d skipped",
                      s->n_fallback, s->n_bad);
}

static void on_log(void *user, const char *line) { fl_stage_log(user, "%s", line); }

static int run_crop(fl_stage_ctx *c, fl_err *e) {
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "crop", &none); /* absent: the defaults */
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    fl_crop_opts o;
    if (fl_crop_opts_from_json(sec, &o, e)) return -1;
    const char *data_in = fl_stage_input(c, "data", e);
    if (!data_in) return -1;
    const char *det_in = fl_stage_input(c, "detector", e);
    if (!det_in) return -1;
    const char *boxes_in = NULL;
    if (fl_stage_has_input(c, "boxes") && !(boxes_in = fl_stage_input(c, "boxes", e))) return -1;

    char *data = fl_synth_data_dir(data_in);
    char *train_dir = fl_strdupf("%s/train_images", data), *test_dir = fl_strdupf("%s/test_images", data);
    char *train_csv = fl_strdupf("%s/train.csv", data);
    char *sample_csv = fl_strdupf("%s/sample_submission.csv", data);
    /* The given boxes: an optional "boxes" input (a box CSV, or a folder holding
     * train_boxes.csv: the registry passes detector.boxes, Kaggle data has none of its own),
     * else the data's own train_boxes.csv (synth). */
    char *boxes_csv = NULL;
    struct stat bst;
    if (boxes_in)
        boxes_csv = stat(boxes_in, &bst) == 0 && S_ISDIR(bst.st_mode)
                        ? fl_strdupf("%s/train_boxes.csv", boxes_in)
                        : strdup(boxes_in);
    else
        boxes_csv = fl_strdupf("%s/train_boxes.csv", data);
    char *det_path = fl_strdupf("%s/%s", det_in, FL_DETECTOR_FILE);
    fl_train_set train = {0};
    fl_submission test = {0};
    fl_box_set boxes = {0};
    fl_strmap box_of = {0};
    fl_crop_item *items = NULL;
    char **paths = NULL;
    fl_crop_stats st = {0};
    int rc = -1, n = 0;
    if (fl_train_read(train_csv, train_dir, &train, e) || fl_submission_read(sample_csv, &test, e) ||
        fl_submission_check_images(&test, test_dir, e))
        goto done;
    if (o.given_boxes) {
        if (fl_boxes_read(boxes_csv, train_dir, &boxes, e)) {
            fl_errprefix(e, "crop.train_boxes is \"given\"");
            goto done;
        }
        if (fl_strmap_init(&box_of, (size_t)boxes.n + 1, e)) goto done;
        for (int i = 0; i < boxes.n; i++)
            if (boxes.entry[i].nbox > 0 && fl_strmap_put(&box_of, boxes.entry[i].image, i) == -2) {
                fl_errf(e, "crop: out of memory");
                goto done;
            }
    }
    n = train.n + test.n;
    items = calloc((size_t)n + 1, sizeof *items);
    paths = calloc((size_t)n + 1, sizeof *paths);
    if (!items || !paths) { fl_errf(e, "crop: out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        int is_test = i >= train.n;
        const char *img = is_test ? test.image[i - train.n] : train.image[i];
        if (!(paths[i] = fl_strdupf("%s/%s", is_test ? test_dir : train_dir, img))) {
            fl_errf(e, "crop: out of memory");
            goto done;
        }
        items[i] = (fl_crop_item){.image = img, .path = paths[i],
                                  .split = is_test ? FL_CROP_TEST : FL_CROP_TRAIN};
        int b = !is_test && o.given_boxes ? fl_strmap_get(&box_of, img) : -1;
        if (b >= 0) {
            const float *q = boxes.entry[b].xyxy; /* the first box: the file's best */
            items[i].has_box = 1;
            items[i].box = (fl_box){q[0], q[1], q[2], q[3], -1};
        }
    }
    fl_detector_meta meta;
    if (fl_detector_read_meta(det_path, &meta, e)) goto done;
    fl_stage_log(c, "%d train + %d test images; detector YOLOv5 (depth %.2f, width %.2f, %d "
                 "class%s) at %d px, conf %.3g, IoU %.3g; crops %d px%s, margin %.3g%s, %d threads",
                 train.n, test.n, meta.cfg.depth, meta.cfg.width, meta.nclasses,
                 meta.nclasses == 1 ? "" : "es", meta.imgsz, o.conf, o.iou, o.size,
                 o.keep_aspect ? " (aspect kept)" : "", o.margin,
                 o.given_boxes ? ", given train boxes" : "", fl_stage_threads(c));
    fl_crop_hooks hooks = {.progress = on_progress, .log = on_log, .user = c};
    double t0 = fl_now();
    char *out = (char *)fl_stage_out_dir(c);
    if (fl_crop_run(&o, det_path, items, n, fl_stage_threads(c), out, &hooks, &st, e)) goto done;
    double dt = fl_now() - t0;
    fl_stage_log(c, "%d images in %.1f s (%.1f img/s: decode %.1f s, forward %.1f s, crop+write "
                 "%.1f s): %d crops, %d detected, %d given boxes, %d fallback to the whole image "
                 "(%.2f%%), %d corrupt skipped", n, dt, dt > 0 ? n / dt : 0, st.t_decode,
                 st.t_forward, st.t_write, st.n_crops, st.n_detected, st.n_given, st.n_fallback,
                 n ? 100.0 * st.n_fallback / n : 0, st.n_bad);
    rc = 0;
done:
    fl_crop_stats_free(&st);
    for (int i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    free(items);
    fl_strmap_free(&box_of);
    fl_boxes_free(&boxes);
    fl_submission_free(&test);
    fl_train_free(&train);
    free(data), free(train_dir), free(test_dir), free(train_csv), free(sample_csv);
    free(boxes_csv), free(det_path);
    return rc;
}

const fl_stage_def fl_stage_crop = {
    .name = "crop",
    .code_id = FL_CODE_ID,
    .summary = "detect the fin / body on every train and test image and cut out the crops",
    .run = run_crop,
};
