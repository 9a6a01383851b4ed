/* The crop stage through its fl_stage_def (the executor's context built by hand): tiny synth
 * data, a YOLOv5n detector with random weights saved through fl_detector_save (nothing passes
 * conf 0.25: every image falls back to the whole image) and the same with its objectness and
 * class biases raised (every image detected), 1 vs 2 threads byte-identical, given train boxes,
 * corrupt JPEGs under and over crop.max_bad_share, and score on crops + detector without a
 * submission. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/graph.h"
#include "runtime/rng.h"
#include "stages/api/plan.h"
#include "stages/crop/crop.h"
#include "stages/detector/detector_io.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

typedef struct runner {
    char root[64];
    fl_plan plan;
    cJSON *config;
    int devnull;
} runner;

static char g_root[64]; /* synth data and detectors shared by the tests (made once) */

/* A YOLOv5n (nc classes, input imgsz) with its random init; boost raises the objectness and
 * class biases so every cell scores above any threshold. */
static void save_detector(const char *dir, int imgsz, int nc, int boost) {
    fl_err e = {{0}};
    assert_int_equal(fl_mkdirs(dir, &e), 0);
    fl_detector_meta m = {0};
    assert_int_equal(fl_yolo_cfg_size(&m.cfg, 'n', nc, &e), 0);
    m.imgsz = imgsz, m.nclasses = nc;
    for (int k = 0; k < nc; k++) snprintf(m.classes[k], sizeof m.classes[k], "class %d", k);
    fl_pstore *s = fl_pstore_new(FL_F32, 7, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, imgsz, imgsz, 3});
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, x, &m.cfg, &h, &e), 0);
    if (boost)
        for (int l = 0; l < 3; l++) {
            /* outputs that vary with the image (larger head weights), objectness mostly above
             * 0.25, anchor a favouring class a % nc */
            char name[64];
            size_t ne = 0;
            snprintf(name, sizeof name, "model.24.m.%d.weight", l);
            float *w = fl_pstore_data(s, name, &ne);
            assert_non_null(w);
            for (size_t i = 0; i < ne; i++) w[i] *= 30.0f;
            snprintf(name, sizeof name, "model.24.m.%d.bias", l);
            float *b = fl_pstore_data(s, name, &ne);
            assert_non_null(b);
            for (size_t i = 0; i < ne; i++)
                if (i % (size_t)(nc + 5) == 4) b[i] = 4.0f;
                else if (i % (size_t)(nc + 5) > 4)
                    b[i] = (int)(i % (size_t)(nc + 5)) - 5 == (int)(i / (size_t)(nc + 5)) % nc ? 6.0f : -6.0f;
        }
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    char *path = fl_strdupf("%s/%s", dir, FL_DETECTOR_FILE);
    if (fl_detector_save(path, &m, &pl, &e)) fail_msg("%s", e.msg);
    free(path);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static int group_setup(void **state) {
    (void)state;
    strcpy(g_root, "/tmp/fluke_crop_XXXXXX");
    if (!mkdtemp(g_root)) return -1;
    fl_err e = {{0}};
    fl_plan plan;
    fl_plan_init(&plan, g_root);
    cJSON *cfg = cJSON_Parse("{\"synth\": {\"preset\": \"tiny\", \"seed\": 5}}");
    fl_plan_node *n = fl_plan_add(&plan, &fl_stage_synth, -1, &e);
    fl_plan_node_section(n, "synth", &e);
    char *out = fl_strdupf("%s/synth", g_root), *work = fl_strdupf("%s/synth.work", g_root);
    fl_mkdirs(out, &e);
    fl_mkdirs(work, &e);
    int devnull = open("/dev/null", O_WRONLY);
    fl_stage_ctx c = {.node = n, .config = cfg, .out_dir = out, .work_dir = work,
                      .threads = 1, .gpu = -1, .t_start = fl_now(), .out_fd = devnull};
    int rc = n->def->run(&c, &e);
    if (rc) fprintf(stderr, "synth: %s\n", e.msg);
    close(devnull);
    free(out);
    free(work);
    cJSON_Delete(cfg);
    fl_plan_free(&plan);
    char *d = fl_strdupf("%s/det_random", g_root), *b = fl_strdupf("%s/det_boost", g_root);
    char *b2 = fl_strdupf("%s/det_boost2", g_root);
    save_detector(d, 64, 1, 0);
    save_detector(b, 64, 1, 1);
    save_detector(b2, 64, 2, 1);
    free(d), free(b), free(b2);
    return rc;
}

static int group_teardown(void **state) {
    (void)state;
    fl_err e;
    fl_remove_tree(g_root, &e);
    return 0;
}

static int setup(void **state) {
    runner *r = calloc(1, sizeof *r);
    strcpy(r->root, g_root);
    fl_plan_init(&r->plan, r->root);
    r->devnull = open("/dev/null", O_WRONLY);
    *state = r;
    return 0;
}

static int teardown(void **state) {
    runner *r = *state;
    fl_plan_free(&r->plan);
    cJSON_Delete(r->config);
    close(r->devnull);
    free(r);
    return 0;
}

static int run_node(runner *r, fl_plan_node *n, int threads, fl_err *e) {
    char *out = fl_strdupf("%s/%s", r->root, n->id);
    char *work = fl_strdupf("%s/%s.work", r->root, n->id);
    fl_remove_tree(out, e);
    fl_mkdirs(out, e);
    fl_mkdirs(work, e);
    const char *paths[8] = {0};
    char *owned[8] = {0};
    for (size_t k = 0; k < n->ninputs; k++)
        paths[k] = owned[k] = fl_strdupf("%s/%s", r->root, n->inputs[k].from_node);
    fl_stage_ctx c = {.node = n, .config = r->config, .out_dir = out, .work_dir = work,
                      .input_paths = paths, .threads = threads, .gpu = -1, .t_start = fl_now(),
                      .out_fd = getenv("CROP_TEST_LOG") ? 2 : r->devnull};
    int rc = n->def->run(&c, e);
    for (size_t k = 0; k < n->ninputs; k++) free(owned[k]);
    free(out);
    free(work);
    return rc;
}

/* A crop node named id reading data from `data` and the detector `det`, run with `crop` (JSON
 * text of the section) on `threads` threads. */
static int run_crop(runner *r, const char *id, const char *data, const char *det, const char *crop,
                    int threads, fl_err *e) {
    cJSON_Delete(r->config);
    char *text = fl_strdupf("{\"crop\": %s}", crop);
    r->config = cJSON_Parse(text);
    free(text);
    assert_non_null(r->config);
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_crop, id, e);
    assert_non_null(n);
    assert_int_equal(fl_plan_node_section(n, "crop", e), 0);
    assert_int_equal(fl_plan_node_input(n, "data", data, e), 0);
    assert_int_equal(fl_plan_node_input(n, "detector", det, e), 0);
    return run_node(r, n, threads, e);
}

static fl_csv read_csv(runner *r, const char *id, const char *name) {
    fl_err e = {{0}};
    fl_csv c;
    char *p = fl_strdupf("%s/%s/%s", r->root, id, name);
    if (fl_csv_read(p, &c, &e)) fail_msg("%s", e.msg);
    free(p);
    return c;
}

static const char *cell(const fl_csv *c, int row, const char *col) {
    int k = fl_csv_col(c, col);
    assert_true(k >= 0);
    return c->rows[row].f[k];
}

static void check_jpeg_size(runner *r, const char *id, const char *rel, int size) {
    fl_err e = {{0}};
    char *p = fl_strdupf("%s/%s/%s", r->root, id, rel);
    fl_image *img = fl_jpeg_read(p, NULL, NULL, &e);
    if (!img) fail_msg("%s", e.msg);
    assert_int_equal(img->width, size);
    assert_int_equal(img->height, size);
    fl_image_free(img);
    free(p);
}

static void test_random_detector_falls_back(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_crop(r, "crop_fb", "synth", "det_random", "{\"size\": 48, \"batch\": 7}", 1, &e))
        fail_msg("%s", e.msg);
    fl_csv c = read_csv(r, "crop_fb", "crops.csv");
    assert_int_equal(c.nrows, 120 + 48);
    int tests = 0;
    for (int k = 1; k <= c.nrows; k++) {
        assert_string_equal(cell(&c, k, "fallback"), "1");
        assert_true(atof(cell(&c, k, "conf")) == 0);
        assert_true(atof(cell(&c, k, "x1")) == 0 && atof(cell(&c, k, "y1")) == 0);
        /* the whole image: its full size from the header */
        char *p = fl_strdupf("%s/synth/data/%s_images/%s", r->root, cell(&c, k, "split"), cell(&c, k, "image"));
        char *bytes;
        size_t len;
        fl_decode_info info;
        assert_non_null(bytes = fl_read_file(p, &len, &e));
        assert_int_equal(fl_jpeg_probe((uint8_t *)bytes, len, p, &info, &e), 0);
        assert_true(atof(cell(&c, k, "x2")) == info.src_width && atof(cell(&c, k, "y2")) == info.src_height);
        free(bytes);
        free(p);
        tests += !strcmp(cell(&c, k, "split"), "test");
        if (k % 40 == 1) check_jpeg_size(r, "crop_fb", cell(&c, k, "crop"), 48);
    }
    assert_int_equal(tests, 48);
    fl_csv_free(&c);
}

static char *slurp(runner *r, const char *id, const char *rel, size_t *len) {
    fl_err e = {{0}};
    char *p = fl_strdupf("%s/%s/%s", r->root, id, rel);
    char *t = fl_read_file(p, len, &e);
    if (!t) fail_msg("%s", e.msg);
    free(p);
    return t;
}

/* Every crop and crops.csv the same bytes for 1 and 2 threads (a partial last batch, several
 * decode scales: the crops at 96 px need the full-size decode, detection the 1/2 one). */
static void test_threads_byte_identical(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    const char *cfg = "{\"size\": 96, \"batch\": 25, \"margin\": 0.15, \"keep_aspect\": true}";
    if (run_crop(r, "crop_t1", "synth", "det_boost", cfg, 1, &e)) fail_msg("%s", e.msg);
    if (run_crop(r, "crop_t2", "synth", "det_boost", cfg, 2, &e)) fail_msg("%s", e.msg);
    size_t n1, n2;
    char *a = slurp(r, "crop_t1", "crops.csv", &n1), *b = slurp(r, "crop_t2", "crops.csv", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b);
    fl_csv c = read_csv(r, "crop_t1", "crops.csv");
    assert_int_equal(c.nrows, 168);
    int distinct = 0;
    for (int k = 1; k <= c.nrows; k++) {
        assert_string_equal(cell(&c, k, "fallback"), "0"); /* boosted: always a detection */
        distinct += k > 1 && strcmp(cell(&c, k, "x1"), cell(&c, k - 1, "x1"));
        assert_true(atof(cell(&c, k, "conf")) > 0.25);
        assert_string_equal(cell(&c, k, "class"), "class 0");
        assert_true(atof(cell(&c, k, "x2")) > atof(cell(&c, k, "x1")));
        char *rel = (char *)cell(&c, k, "crop");
        a = slurp(r, "crop_t1", rel, &n1);
        b = slurp(r, "crop_t2", rel, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a), free(b);
        if (k % 50 == 1) check_jpeg_size(r, "crop_t1", rel, 96);
    }
    assert_true(distinct > 50); /* boxes that depend on the image */
    fl_csv_free(&c);
}

/* Two classes with per_class: one crop per class, named <stem>_<class>.jpg. */
static void test_per_class(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_crop(r, "crop_pc", "synth", "det_boost2", "{\"size\": 32, \"per_class\": true}", 1, &e))
        fail_msg("%s", e.msg);
    fl_csv c = read_csv(r, "crop_pc", "crops.csv");
    assert_int_equal(c.nrows, 2 * 168);
    assert_non_null(strstr(cell(&c, 1, "crop"), "_class_"));
    assert_string_equal(cell(&c, 1, "image"), cell(&c, 2, "image"));
    assert_string_not_equal(cell(&c, 1, "class"), cell(&c, 2, "class"));
    check_jpeg_size(r, "crop_pc", cell(&c, 2, "crop"), 32);
    fl_csv_free(&c);
}

/* crop.train_boxes "given": train images listed in train_boxes.csv keep exactly that box. */
static void test_given_boxes(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_crop(r, "crop_given", "synth", "det_random", "{\"size\": 32, \"train_boxes\": \"given\"}", 1, &e))
        fail_msg("%s", e.msg);
    fl_box_set bs;
    char *bp = fl_strdupf("%s/synth/data/train_boxes.csv", r->root);
    assert_int_equal(fl_boxes_read(bp, NULL, &bs, &e), 0);
    assert_true(bs.n > 5);
    fl_csv c = read_csv(r, "crop_given", "crops.csv");
    int matched = 0, fallbacks = 0;
    for (int k = 1; k <= c.nrows; k++) {
        int given = -1;
        for (int i = 0; i < bs.n; i++)
            if (!strcmp(bs.entry[i].image, cell(&c, k, "image"))) given = i;
        if (given < 0) {
            fallbacks += !strcmp(cell(&c, k, "fallback"), "1");
            continue;
        }
        assert_string_equal(cell(&c, k, "split"), "train");
        assert_string_equal(cell(&c, k, "fallback"), "0");
        assert_true(fabs(atof(cell(&c, k, "x1")) - bs.entry[given].xyxy[0]) < 0.01);
        assert_true(fabs(atof(cell(&c, k, "y2")) - bs.entry[given].xyxy[3]) < 0.01);
        matched++;
    }
    assert_int_equal(matched, bs.n);
    assert_int_equal(fallbacks, 168 - bs.n); /* the rest is detected, and the detector is random */
    fl_csv_free(&c);

    /* a "boxes" input (here a file in the other public format) replaces the data's box file */
    const char *img = bs.entry[0].image;
    char *text = fl_strdupf("image,box\n%s,5 6 40 50\n", img);
    char *custom = fl_strdupf("%s/custom_boxes.csv", r->root);
    assert_int_equal(fl_write_file_atomic(custom, text, strlen(text), &e), 0);
    cJSON_Delete(r->config);
    r->config = cJSON_Parse("{\"crop\": {\"size\": 32, \"train_boxes\": \"given\"}}");
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_crop, "crop_given2", &e);
    assert_int_equal(fl_plan_node_section(n, "crop", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "data", "synth", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "detector", "det_random", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "boxes", "custom_boxes.csv", &e), 0);
    if (run_node(r, n, 1, &e)) fail_msg("%s", e.msg);
    c = read_csv(r, "crop_given2", "crops.csv");
    int given = 0;
    for (int k = 1; k <= c.nrows; k++)
        if (!strcmp(cell(&c, k, "fallback"), "0")) {
            given++;
            assert_string_equal(cell(&c, k, "image"), img);
            assert_true(atof(cell(&c, k, "x1")) == 5 && atof(cell(&c, k, "y2")) == 50);
        }
    assert_int_equal(given, 1);
    fl_csv_free(&c);
    free(text);
    free(custom);
    fl_boxes_free(&bs);
    free(bp);
}

static void copy_tree(const char *from, const char *to) {
    char *cmd = fl_strdupf("rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* One truncated train JPEG and one garbled test JPEG among 168: skipped, counted and listed
 * while under crop.max_bad_share; over it the stage fails naming the count and the files. */
static void test_corrupt_jpegs(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    char *src = fl_strdupf("%s/synth", r->root), *dst = fl_strdupf("%s/bad_data", r->root);
    copy_tree(src, dst);
    fl_train_set t;
    fl_submission s;
    char *tcsv = fl_strdupf("%s/data/train.csv", dst), *scsv = fl_strdupf("%s/data/sample_submission.csv", dst);
    assert_int_equal(fl_train_read(tcsv, NULL, &t, &e), 0);
    assert_int_equal(fl_submission_read(scsv, &s, &e), 0);
    char *trunc = fl_strdupf("%s/data/train_images/%s", dst, t.image[3]);
    char *garb = fl_strdupf("%s/data/test_images/%s", dst, s.image[1]);
    size_t len;
    char *bytes = fl_read_file(trunc, &len, &e);
    assert_int_equal(fl_write_file_atomic(trunc, bytes, len / 2, &e), 0);
    free(bytes);
    bytes = fl_read_file(garb, &len, &e);
    memset(bytes + 2, 0x11, 40); /* the header is gone */
    assert_int_equal(fl_write_file_atomic(garb, bytes, len, &e), 0);
    free(bytes);

    if (run_crop(r, "crop_bad_ok", "bad_data", "det_random", "{\"size\": 32, \"max_bad_share\": 0.02}", 1, &e))
        fail_msg("%s", e.msg);
    fl_csv c = read_csv(r, "crop_bad_ok", "crops.csv");
    assert_int_equal(c.nrows, 166);
    for (int k = 1; k <= c.nrows; k++) {
        assert_string_not_equal(cell(&c, k, "image"), t.image[3]);
        assert_string_not_equal(cell(&c, k, "image"), s.image[1]);
    }
    fl_csv_free(&c);
    c = read_csv(r, "crop_bad_ok", "bad_images.csv");
    assert_int_equal(c.nrows, 2);
    assert_string_equal(cell(&c, 1, "image"), t.image[3]);
    assert_string_equal(cell(&c, 2, "image"), s.image[1]);
    assert_non_null(strstr(cell(&c, 1, "error"), "truncated"));
    fl_csv_free(&c);

    /* 2 of 168 = 1.2% > 0.5%: fails, naming both */
    assert_int_equal(run_crop(r, "crop_bad_fail", "bad_data", "det_random",
                              "{\"size\": 32, \"max_bad_share\": 0.005}", 1, &e), -1);
    assert_non_null(strstr(e.msg, "2 of 168 images"));
    assert_non_null(strstr(e.msg, t.image[3]));
    assert_non_null(strstr(e.msg, s.image[1]));
    /* the default 0.1% */
    assert_int_equal(run_crop(r, "crop_bad_default", "bad_data", "det_random", "{}", 1, &e), -1);
    assert_non_null(strstr(e.msg, "crop.max_bad_share"));
    fl_train_free(&t);
    fl_submission_free(&s);
    free(tcsv), free(scsv), free(trunc), free(garb), free(src), free(dst);
}

static void test_bad_config_and_detector(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    assert_int_equal(run_crop(r, "crop_cfg", "synth", "det_random", "{\"train_boxes\": \"maybe\"}", 1, &e), -1);
    assert_non_null(strstr(e.msg, "crop.train_boxes"));
    assert_int_equal(run_crop(r, "crop_cfg2", "synth", "det_random", "{\"size\": 2}", 1, &e), -1);
    assert_non_null(strstr(e.msg, "crop.size"));
    assert_int_equal(run_crop(r, "crop_nodet", "synth", "synth", "{}", 1, &e), -1);
    assert_non_null(strstr(e.msg, FL_DETECTOR_FILE));
}

/* score with crops, detector and truth but no submission: only these metrics. */
static void test_score_without_submission(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    char *mj = fl_strdupf("%s/det_random/detector_metrics.json", r->root);
    const char *text = "{\"epochs\": [{\"epoch\": 1, \"map50\": 0.5, \"map50_95\": 0.2, "
                       "\"precision\": 0.6, \"recall\": 0.7, \"box\": 0.1, \"obj\": 0.2, "
                       "\"cls\": 0}], \"final\": {\"map50\": 0.91, \"map50_95\": 0.55, "
                       "\"precision\": 0.8, \"recall\": 0.85, \"val_images\": 12}}";
    assert_int_equal(fl_write_file_atomic(mj, text, strlen(text), &e), 0);
    if (run_crop(r, "crop_sc", "synth", "det_random", "{\"size\": 16}", 1, &e)) fail_msg("%s", e.msg);
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_score, "score_sc", &e);
    assert_int_equal(fl_plan_node_input(n, "crops", "crop_sc", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "detector", "det_random", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "truth", "synth", &e), 0);
    if (run_node(r, n, 1, &e)) fail_msg("%s", e.msg);
    char *m = slurp(r, "score_sc", "metrics.json", NULL);
    cJSON *j = cJSON_Parse(m);
    assert_null(cJSON_GetObjectItem(j, "map5"));
    const cJSON *cr = cJSON_GetObjectItem(j, "crops"), *dt = cJSON_GetObjectItem(j, "detector");
    assert_true(cJSON_GetObjectItem(dt, "map50")->valuedouble == 0.91);
    assert_true(cJSON_GetObjectItem(dt, "recall")->valuedouble == 0.85);
    assert_true(cJSON_GetObjectItem(cr, "fallback_share")->valuedouble == 1.0);
    assert_int_equal((int)cJSON_GetObjectItem(cr, "n_test")->valuedouble, 48);
    /* whole-image crops still overlap some true boxes by IoU >= 0.5 (large animals) */
    double rec = cJSON_GetObjectItem(cr, "test_iou50_recall")->valuedouble;
    assert_true(rec >= 0 && rec <= 1);
    cJSON_Delete(j);
    free(m);
    /* crops without truth: an error naming the input */
    fl_plan_node *bad = fl_plan_add_as(&r->plan, &fl_stage_score, "score_bad", &e);
    assert_int_equal(fl_plan_node_input(bad, "crops", "crop_sc", &e), 0);
    assert_int_equal(run_node(r, bad, 1, &e), -1);
    assert_non_null(strstr(e.msg, "truth"));
    free(mj);
}

/* The best detection without NMS is fl_yolo_detect's first, bit for bit, at several thresholds
 * (every cell passing, some, none). */
static void test_best_equals_nms_first(void **state) {
    (void)state;
    fl_err e = {{0}};
    const char *dets[] = {"det_boost", "det_boost2", "det_random"};
    for (int d = 0; d < 3; d++) {
        char *path = fl_strdupf("%s/%s/%s", g_root, dets[d], FL_DETECTOR_FILE);
        fl_detector det;
        if (fl_detector_load(path, 3, 0, &det, &e)) fail_msg("%s", e.msg);
        float *x = fl_graph_value(det.graph, det.x);
        fl_rng rng;
        fl_rng_init(&rng, 3, (uint64_t)d);
        for (int i = 0; i < 3 * 64 * 64 * 3; i++) x[i] = fl_rng_uniform(&rng);
        assert_int_equal(fl_graph_forward(det.graph, &e), 0);
        float *heads = fl_graph_value(det.graph, det.flat);
        if (d == 0) /* heads of every kind: scores spread over (0, 1), boxes anywhere */
            for (size_t i = 0; i < fl_yolo_total_numel(&det.heads); i++) heads[i] = 2.5f * fl_rng_normal(&rng);
        int some = 0;
        for (int b = 0; b < 3; b++) {
            /* thresholds: everything, 0.25, half of the kept boxes, the top score (none) */
            fl_yolo_nms_cfg n0 = {.conf = 0.001f, .iou = 0.45f, .max_det = 300};
            fl_yolo_det *d0 = NULL;
            int k0 = fl_yolo_detect(&det.meta.cfg, &det.heads, heads, b, &n0, &d0, &e);
            assert_true(k0 >= 0);
            float confs[4] = {0.001f, 0.25f, k0 > 1 ? d0[k0 / 2].score : 0.5f, k0 > 0 ? d0[0].score : 0.5f};
            if (getenv("CROP_TEST_LOG")) fprintf(stderr, "%s b%d: %d kept, %.9g %.9g\n", dets[d], b, k0, k0 ? d0[0].score : 0, k0 > 1 ? d0[k0/2].score : 0);
            free(d0);
            for (int k = 0; k < 4; k++) {
                fl_yolo_nms_cfg nms = {.conf = confs[k], .iou = 0.45f, .max_det = 300};
                fl_yolo_det *all = NULL, best;
                int n = fl_yolo_detect(&det.meta.cfg, &det.heads, heads, b, &nms, &all, &e);
                int f = fl_crop_best_detection(&det.meta.cfg, &det.heads, heads, b, confs[k], &best, &e);
                assert_true(n >= 0 && f >= 0);
                assert_int_equal(f, n > 0);
                if (n > 0) assert_memory_equal(&best, &all[0], sizeof best);
                some += k == 2 && n > 0;
                free(all);
            }
        }
        if (d < 2) assert_true(some > 0);
        fl_detector_free(&det);
        free(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_best_equals_nms_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_detector_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_byte_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_given_boxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_jpegs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_and_detector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_score_without_submission, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
