/* The `crop` config section -> fl_crop_opts. The config loader already enforces the schema's
 * types and ranges (stages/crop.c); the checks here keep a hand-built config (tests, other
 * callers) from reaching the engine with a value it cannot use. */
#include <math.h>
#include <string.h>

#include "stages/crop/crop.h"

fl_crop_opts fl_crop_opts_default(void) {
    return (fl_crop_opts){.margin = 0.1, .size = 256, .keep_aspect = 0, .quality = 95,
                          .conf = 0.25f, .iou = 0.45f, .max_det = 300, .per_class = 0,
                          .given_boxes = 0, .batch = 16, .max_bad_share = 0.001, .imgsz = 0};
}

static int num(const cJSON *sec, const char *key, double lo, double hi, int integer, double *out,
               fl_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || (integer && v->valuedouble != floor(v->valuedouble)))
        return fl_errf(e, "crop.%s: must be %s", key, integer ? "an integer" : "a number");
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return fl_errf(e, "crop.%s: %.17g is outside [%g, %g]", key, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int flag(const cJSON *sec, const char *key, int *out, fl_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return fl_errf(e, "crop.%s: must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int fl_crop_opts_from_json(const cJSON *sec, fl_crop_opts *o, fl_err *e) {
    *o = fl_crop_opts_default();
    if (!sec) return 0;
    if (!cJSON_IsObject(sec)) return fl_errf(e, "crop: must be an object");
    double size = o->size, quality = o->quality, conf = o->conf, iou = o->iou;
    double max_det = o->max_det, batch = o->batch;
    if (num(sec, "margin", 0, 2, 0, &o->margin, e) || num(sec, "size", 16, 4096, 1, &size, e) ||
        num(sec, "quality", 1, 100, 1, &quality, e) || num(sec, "conf", 0, 1, 0, &conf, e) ||
        num(sec, "iou", 0, 1, 0, &iou, e) || num(sec, "max_det", 1, 30000, 1, &max_det, e) ||
        num(sec, "batch", 1, 1024, 1, &batch, e) ||
        num(sec, "max_bad_share", 0, 1, 0, &o->max_bad_share, e) ||
        flag(sec, "keep_aspect", &o->keep_aspect, e) || flag(sec, "per_class", &o->per_class, e))
        return -1;
    o->size = (int)size, o->quality = (int)quality, o->conf = (float)conf, o->iou = (float)iou;
    o->max_det = (int)max_det, o->batch = (int)batch;
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(sec, "train_boxes");
    if (tb) {
        if (!cJSON_IsString(tb) || (strcmp(tb->valuestring, "detect") && strcmp(tb->valuestring, "given")))
            return fl_errf(e, "crop.train_boxes: must be \"detect\" or \"given\"");
        o->given_boxes = !strcmp(tb->valuestring, "given");
    }
    return 0;
}
