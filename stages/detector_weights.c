/* Stage "detector_weights" (stages/detector/weights_stage.h): ultralytics release weights by
 * name, downloaded and converted to safetensors by the safe torch.save reader. */
#include <stdlib.h>
#include <string.h>

#include "codeid/detector_weights.h"
#include "runtime/torch_pt.h"
#include "stages/detector/weights_stage.h"
#include "stages/fetch/stages.h"

const fl_cfg_field fl_detector_weights_schema[] = {
    {"detector.weights", FL_CFG_STR, 0,
     "pretrained ultralytics YOLOv5 weights by release name: "
     "yolov5n|yolov5s|yolov5m|yolov5l|yolov5x "
     "or the P6 variants yolov5n6 ... yolov5x6 ('.pt' optional); downloaded, converted to "
     "safetensors and loaded by name and shape (the Detect convs only when the class count "
     "matches)",
     0, 0},
    {"detector.weights_url", FL_CFG_STR, 0,
     "base URL of the release assets (default " FL_DETECTOR_WEIGHTS_URL ")", 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

int fl_detector_weights_name(const char *v, char *out, size_t cap, fl_err *e) {
    size_t n = v ? strlen(v) : 0;
    if (n > 3 && !strcmp(v + n - 3, ".pt")) n -= 3;
    int ok = v && (n == 7 || (n == 8 && v[7] == '6')) && !strncmp(v, "yolov5", 6) &&
             strchr("nsmlx", v[6]) && v[6];
    if (!ok || cap < 16)
        return fl_errf(
            e,
            "config key 'detector.weights' is '%s': not a YOLOv5 release name (yolov5n, "
            "yolov5s, yolov5m, yolov5l, yolov5x, or yolov5n6 ... yolov5x6; '.pt' optional)",
            v ? v : "(not a string)");
    snprintf(out, cap, "%.*s.pt", (int)n, v);
    return 0;
}

static int run_detector_weights(fl_stage_ctx *c, fl_err *e) {
    const char *v;
    if (fl_stage_cfg_str(c, "detector.weights", &v, e)) return -1;
    char name[16];
    if (fl_detector_weights_name(v, name, sizeof name, e)) return -1;
    /* The section is always declared: NULL here means the key is absent. */
    fl_err ignore;
    const cJSON *u = fl_stage_cfg(c, "detector.weights_url", &ignore);
    if (u && (!cJSON_IsString(u) || !u->valuestring[0]))
        return fl_errf(e, "config key 'detector.weights_url' must be a non-empty string (a URL)");
    const char *base = u ? u->valuestring : FL_DETECTOR_WEIGHTS_URL;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/')
        bl--;
    char *url = fl_strdupf("%.*s/%s", (int)bl, base, name);
    char *src = fl_strdupf("%s/%s", fl_stage_work_dir(c), name);
    char *dst = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_DETECTOR_PRETRAINED_FILE);
    FILE *log = fl_stage_log_file(c);
    fl_kaggle_opts o = {.progress = 1, .log = log, .no_credentials = 1};
    fl_kaggle *k = NULL;
    fl_pt_file *f = NULL;
    int rc = -1;
    if (!url || !src || !dst) {
        fl_errf(e, "out of memory");
        goto out;
    }
    if (!(k = fl_kaggle_new(&o, e))) goto out;
    fl_dl_result r = {0};
    if (fl_kaggle_download_url(k, url, src, NULL, &r, e)) {
        if (r.http_status == 404)
            fl_errf(e, "%s: not found (404): detector.weights '%s' is not a release asset there",
                    url, v);
        goto out;
    }
    if (!(f = fl_pt_open(src, e))) goto out;
    fl_st_kv meta[] = {{"format", "pt"}, {"source", name}, {"fluke.state_dict", f->where}};
    if (fl_pt_write_safetensors(f, dst, meta, sizeof meta / sizeof meta[0], e)) goto out;
    size_t numel = 0;
    for (size_t i = 0; i < f->n; i++)
        numel += f->t[i].numel;
    fl_stage_log(c, "%s: %llu bytes%s; %s: %zu tensors, %zu values (from %s), written as %s", name,
                 (unsigned long long)r.bytes, r.skipped ? " (already here)" : "", f->where, f->n,
                 numel, f->n ? f->t[0].src_dtype : "-", FL_DETECTOR_PRETRAINED_FILE);
    rc = 0;
out:
    fl_pt_close(f);
    fl_kaggle_free(k);
    if (log) fclose(log);
    free(url);
    free(src);
    free(dst);
    return rc;
}

const fl_stage_def fl_stage_detector_weights = {
    .name = "detector_weights",
    .code_id = FL_CODE_ID,
    .summary = "download ultralytics YOLOv5 weights by name (detector.weights) as safetensors",
    .run = run_detector_weights,
};

int fl_plan_detector_weights(fl_plan *p, const cJSON *config, fl_plan_node **out, fl_err *e) {
    *out = NULL;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(config, "detector");
    const cJSON *w = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "weights") : NULL;
    if (!w) return 0;
    char name[16];
    if (fl_detector_weights_name(cJSON_IsString(w) ? w->valuestring : NULL, name, sizeof name, e))
        return -1;
    fl_plan_node *n = fl_plan_add(p, &fl_stage_detector_weights, -1, e);
    if (!n || fl_plan_node_section(n, "detector.weights", e) ||
        fl_plan_node_section(n, "detector.weights_url", e) ||
        fl_plan_node_output(n, FL_DETECTOR_PRETRAINED_FILE, e))
        return -1;
    fl_plan_node_resources(n, 1, 0);
    *out = n;
    return 0;
}
