/* YOLOv5 (runtime/models/yolo*) against SPECS.md section 5 and the PyTorch reference of
 * tests/fixtures/gen_models_yolo.py (tests/fixtures/models_yolo/): parameter counts of n..x,
 * raw head outputs of a small YOLOv5 loaded by name, ComputeLoss and its head gradient,
 * torchvision NMS / batched NMS keeps, strict loading, decoding, detection and mAP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/models/yolo.h"
#include "runtime/safetensors.h"
#include "tests/unit/support/numcmp.h"

static char *fixture(const char *name) {
    const char *src = getenv("FLUKE_SRC");
    return fl_strdupf("%s/tests/fixtures/models_yolo/%s", src ? src : ".", name);
}

static fl_st_file *open_fixture(const char *name) {
    char *p = fixture(name);
    fl_err e = {0};
    fl_st_file *f = fl_st_open(p, &e);
    if (!f) printf("%s\n", e.msg);
    free(p);
    assert_non_null(f);
    return f;
}

/* max|a - b| / max(max|b|, 1e-6), NaN-aware (numcmp.h): forward heads and the loss's head
 * gradient (elementwise terms over a count, no cancelling reduction) against float64 PyTorch. */
static double rel_err(const float *a, const float *b, size_t n) { return nc_normwise(NC_F32(a), NC_F32(b), n, 1e-6).fig; }
static double rel_err1(double a, double b) {
    float fa = (float)a, fb = (float)b;
    return nc_normwise(NC_F32(&fa), NC_F32(&fb), 1, 1e-6).fig;
}

static void test_param_counts_match_specs(void **state) {
    (void)state;
    static const struct { char size; int64_t n; } T[] = {
        {'n', 1872157}, {'s', 7235389}, {'m', 21190557}, {'l', 46563709}, {'x', 86749405}};
    for (size_t i = 0; i < 5; i++) {
        fl_err e = {0};
        fl_yolo_cfg c;
        assert_int_equal(fl_yolo_cfg_size(&c, T[i].size, 80, &e), 0);
        fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        /* built, never compiled: the parameters exist in the store after building */
        fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3});
        fl_yolo_heads h;
        assert_int_equal(fl_yolo_build(g, s, x, &c, &h, &e), 0);
        int64_t n = fl_yolo_param_count(s, &e);
        printf("yolov5%c: %lld parameters\n", T[i].size, (long long)n);
        assert_int_equal(n, T[i].n);
        assert_int_equal(h.no, 85);
        if (T[i].size == 's') {
            /* ultralytics names and PyTorch shapes of a yolov5s state dict */
            static const struct { const char *name; size_t numel; } K[] = {
                {"model.0.conv.weight", 32 * 3 * 6 * 6}, {"model.0.bn.running_var", 32},
                {"model.2.m.0.cv1.conv.weight", 32 * 32}, {"model.6.m.2.cv2.conv.weight", 128 * 128 * 9},
                {"model.9.cv2.conv.weight", 512 * 1024}, {"model.17.cv3.bn.weight", 128},
                {"model.24.m.0.weight", 255 * 128}, {"model.24.m.2.bias", 255}, {"model.24.anchors", 18}};
            for (size_t k = 0; k < sizeof K / sizeof K[0]; k++) {
                size_t nn = 0;
                assert_non_null(fl_pstore_data(s, K[k].name, &nn));
                assert_int_equal(nn, K[k].numel);
            }
            assert_null(fl_pstore_data(s, "model.6.m.3.cv1.conv.weight", NULL));
        }
        assert_int_equal(h.ny[0], 8);
        assert_int_equal(h.ny[2], 2);
        fl_graph_free(g);
        fl_pstore_free(s);
    }
}

static void test_cfg_rules_and_bad_input(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_size(&c, 'x', 80, &e), 0);
    assert_int_equal(fl_yolo_depth(&c, 3), 4);
    assert_int_equal(fl_yolo_depth(&c, 9), 12);
    assert_int_equal(fl_yolo_depth(&c, 1), 1);
    assert_int_equal(fl_yolo_width(&c, 64), 80);
    assert_int_equal(fl_yolo_cfg_size(&c, 'n', 80, &e), 0);
    assert_int_equal(fl_yolo_depth(&c, 3), 1);
    assert_int_equal(fl_yolo_depth(&c, 9), 3);
    assert_int_equal(fl_yolo_width(&c, 1024), 256);
    assert_int_equal(fl_yolo_cfg_size(&c, 'q', 80, &e), -1);
    assert_non_null(strstr(e.msg, "unknown size 'q'"));
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, 0, &e), -1);
    assert_non_null(strstr(e.msg, "class count 0"));
    assert_int_equal(fl_yolo_cfg_make(&c, -1, 0.25, 3, &e), -1);
    assert_non_null(strstr(e.msg, "depth"));
    /* input size not a multiple of 32, wrong channel count */
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.0625, 3, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_yolo_heads h;
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 48, 64, 3});
    assert_int_equal(fl_yolo_build(g, s, x, &c, &h, &e), -1);
    assert_non_null(strstr(e.msg, "multiple of the largest stride 32"));
    fl_id x1 = fl_input(g, "x1", 4, (int64_t[]){1, 64, 64, 1});
    assert_int_equal(fl_yolo_build(g, s, x1, &c, &h, &e), -1);
    assert_non_null(strstr(e.msg, "[N, H, W, 3]"));
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* Detect's bias prior on fresh parameters; reused (loaded) parameters are left alone. */
static void test_detect_bias_init(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.0625, 4, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 3, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3}), &c, &h, &e), 0);
    /* base init U(+-1/sqrt(fan_in)), fan_in = 16 (P3 channels at width 0.0625): |b| <= 0.25 */
    float *b = fl_pstore_data(s, "model.24.m.0.bias", NULL);
    double dobj = log(8.0 / (80.0 * 80.0)), dcls = log(0.6 / (4 - 0.99999));
    for (int a = 0; a < 3; a++) {
        assert_true(fabs(b[a * 9 + 0]) <= 0.25f);
        assert_true(fabs(b[a * 9 + 4] - dobj) <= 0.25 + 1e-5);
        for (int k = 5; k < 9; k++) assert_true(fabs(b[a * 9 + k] - dcls) <= 0.25 + 1e-5);
    }
    float first = b[4];
    fl_graph *g2 = fl_graph_new(s, FL_MODE_EVAL, &e);
    assert_int_equal(fl_yolo_build(g2, s, fl_input(g2, "x", 4, (int64_t[]){1, 64, 64, 3}), &c, &h, &e), 0);
    assert_true(b[4] == first);
    float *anc = fl_pstore_data(s, "model.24.anchors", NULL);
    assert_true(anc[0] == 10.0f / 8 && anc[17] == 326.0f / 32);
    fl_graph_free(g2);
    fl_graph_free(g);
    fl_pstore_free(s);
}

static void test_heads_match_pytorch(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.0625, 3, &e), 0);
    fl_st_file *io = open_fixture("net_io.safetensors");
    char *wp = fixture("net_weights.safetensors");
    fl_st_set *ws = fl_st_open_set(wp, &e);
    free(wp);
    assert_non_null(ws);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){2, 64, 64, 3});
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, x, &c, &h, &e), 0);
    for (int i = 0; i < 3; i++) fl_graph_mark_output(g, h.p[i]);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    char *warn = NULL;
    if (fl_st_load_params(ws, &pl, FL_ST_STRICT, &warn, &e) < 0) printf("%s\n", e.msg);
    assert_null(warn);
    assert_int_equal(fl_yolo_param_count(s, &e), atoll(fl_st_meta(ws->files[0], "params")));
    assert_int_equal(fl_graph_compile(g, -1, &e), 0);
    size_t n = 0;
    float *xin = fl_st_read_f32(io, "in.x", &n, &e);
    assert_int_equal(n, (size_t)fl_graph_numel(g, x));
    memcpy(fl_graph_value(g, x), xin, n * sizeof(float));
    free(xin);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "out.p%d", i);
        float *ref = fl_st_read_f32(io, name, &n, &e);
        assert_non_null(ref);
        assert_int_equal(n, (size_t)fl_graph_numel(g, h.p[i]));
        double err = rel_err(fl_graph_value(g, h.p[i]), ref, n);
        printf("head P%d: max relative error %.3g\n", i + 3, err);
        assert_true(err < 1e-4);
        free(ref);
    }
    fl_graph_free(g);
    fl_pstore_free(s);
    fl_st_close_set(ws);
    fl_st_close(io);
}

/* The fixture's weights with one tensor dropped and another reshaped: strict loading names both. */
static void test_strict_load_lists_problems(void **state) {
    (void)state;
    fl_err e = {0};
    fl_st_file *w = open_fixture("net_weights.safetensors");
    fl_st_entry *v = calloc(w->n, sizeof *v);
    float **bufs = calloc(w->n, sizeof *bufs);
    int64_t bad_shape[4];
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++) {
        const fl_st_tensor *t = &w->t[i];
        if (strcmp(t->name, "model.17.cv3.bn.running_var") == 0) continue;
        bufs[m] = fl_st_read_f32(w, t->name, NULL, &e);
        v[m] = (fl_st_entry){t->name, FL_ST_F32, t->ndim, t->shape, bufs[m]};
        if (strcmp(t->name, "model.24.m.1.weight") == 0) {
            /* [27, 32, 1, 1] -> [27, 16, 2, 1]: the same element count, a wrong shape */
            memcpy(bad_shape, t->shape, sizeof bad_shape);
            bad_shape[1] /= 2;
            bad_shape[2] = 2;
            v[m].shape = bad_shape;
        }
        m++;
    }
    char *path = fl_strdupf("/tmp/fluke_yolo_bad_%d.safetensors", (int)getpid());
    assert_int_equal(fl_st_write(path, v, m, NULL, 0, &e), 0);
    fl_st_set *set = fl_st_open_set(path, &e);
    assert_non_null(set);
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.0625, 3, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3}), &c, &h, &e), 0);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    assert_int_equal(fl_st_load_params(set, &pl, FL_ST_STRICT, NULL, &e), -1);
    printf("strict load: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "model.17.cv3.bn.running_var"));
    assert_non_null(strstr(e.msg, "model.24.m.1.weight"));
    fl_graph_free(g);
    fl_pstore_free(s);
    fl_st_close_set(set);
    unlink(path);
    free(path);
    for (size_t i = 0; i < m; i++) free(bufs[i]);
    free(bufs);
    free(v);
    fl_st_close(w);
}

static void loss_case(const char *name) {
    fl_err e = {0};
    fl_st_file *f = open_fixture(name);
    int nc = atoi(fl_st_meta(f, "nc")), imgsz = atoi(fl_st_meta(f, "imgsz")), bs = atoi(fl_st_meta(f, "bs"));
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, nc, &e), 0);
    fl_yolo_hyp hyp = fl_yolo_hyp_default(imgsz);
    hyp.label_smoothing = atof(fl_st_meta(f, "label_smoothing"));
    fl_yolo_heads h = {.n = bs, .no = nc + 5};
    for (int i = 0; i < 3; i++) h.ny[i] = h.nx[i] = imgsz / c.strides[i];
    size_t n = 0, nt6 = 0, ni = 0;
    float *heads = fl_st_read_f32(f, "heads", &n, &e);
    float *ref = fl_st_read_f32(f, "grad", NULL, &e);
    float *tg = fl_st_read_f32(f, "targets", &nt6, &e);
    float *loss = fl_st_read_f32(f, "loss", NULL, &e);
    float *items = fl_st_read_f32(f, "items", &ni, &e);
    assert_int_equal(n, fl_yolo_total_numel(&h));
    size_t nt = nt6 / 6;
    fl_yolo_target *t = calloc(nt, sizeof *t);
    for (size_t k = 0; k < nt; k++)
        t[k] = (fl_yolo_target){(int)tg[6 * k], (int)tg[6 * k + 1], tg[6 * k + 2], tg[6 * k + 3], tg[6 * k + 4], tg[6 * k + 5]};
    float *grad = malloc(n * sizeof *grad);
    fl_yolo_loss_out lo;
    if (fl_yolo_loss(&c, &hyp, &h, heads, t, nt, grad, &lo, &e) < 0) printf("%s\n", e.msg);
    double el = rel_err1(lo.loss, loss[0]), eb = rel_err1(lo.lbox, items[0]);
    double eo = rel_err1(lo.lobj, items[1]), ec = rel_err1(lo.lcls, items[2]);
    double eg = rel_err(grad, ref, n);
    printf("%s: loss %.6f (torch %.6f) rel %.2g; box %.2g obj %.2g cls %.2g; grad %.2g; matches %lld/%lld/%lld\n",
           name, lo.loss, loss[0], el, eb, eo, ec, eg, (long long)lo.matches[0], (long long)lo.matches[1],
           (long long)lo.matches[2]);
    assert_true(el < 1e-4 && eb < 1e-4 && eo < 1e-4 && eg < 1e-4);
    if (nc > 1) assert_true(ec < 1e-4);
    assert_true(lo.matches[0] + lo.matches[1] + lo.matches[2] > (int64_t)nt);
    /* loss only (grad NULL) gives the same value */
    fl_yolo_loss_out lo2;
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, t, nt, NULL, &lo2, &e), 0);
    assert_true(lo2.loss == lo.loss);
    free(grad), free(t), free(heads), free(ref), free(tg), free(loss), free(items);
    fl_st_close(f);
}

static void test_loss_matches_pytorch(void **state) {
    (void)state;
    loss_case("loss_0.safetensors");
    loss_case("loss_1.safetensors");
    loss_case("loss_2.safetensors");
}

static void test_loss_bad_targets(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, 2, &e), 0);
    fl_yolo_hyp hyp = fl_yolo_hyp_default(64);
    fl_yolo_heads h = {.n = 1, .no = 7, .ny = {8, 4, 2}, .nx = {8, 4, 2}};
    float *heads = calloc(fl_yolo_total_numel(&h), sizeof(float));
    fl_yolo_loss_out lo;
    fl_yolo_target t = {0, 2, 0.5f, 0.5f, 0.1f, 0.1f};
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, &t, 1, NULL, &lo, &e), -1);
    assert_non_null(strstr(e.msg, "target 0: class 2 outside [0, 2)"));
    t = (fl_yolo_target){1, 0, 0.5f, 0.5f, 0.1f, 0.1f};
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, &t, 1, NULL, &lo, &e), -1);
    assert_non_null(strstr(e.msg, "image 1 outside the batch of 1"));
    t = (fl_yolo_target){0, 0, 0.5f, 0.5f, 0.0f, 0.1f};
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, &t, 1, NULL, &lo, &e), -1);
    assert_non_null(strstr(e.msg, "not a finite positive size"));
    t = (fl_yolo_target){0, 0, NAN, 0.5f, 0.1f, 0.1f};
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, &t, 1, NULL, &lo, &e), -1);
    /* no targets: only objectness, every logit 0 -> BCE log 2 per cell */
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, NULL, 0, NULL, &lo, &e), 0);
    double gobj = (64 / 640.0) * (64 / 640.0);
    assert_true(fabs(lo.lobj - log(2.0) * (4.0 + 1.0 + 0.4) * gobj) < 1e-9);
    assert_true(lo.lbox == 0 && lo.lcls == 0);
    h.no = 8;
    assert_int_equal(fl_yolo_loss(&c, &hyp, &h, heads, NULL, 0, NULL, &lo, &e), -1);
    free(heads);
}

static void nms_case(const char *name) {
    fl_err e = {0};
    fl_st_file *f = open_fixture(name);
    size_t n4 = 0, n = 0, nk = 0, nbk = 0;
    float *boxes = fl_st_read_f32(f, "boxes", &n4, &e);
    float *scores = fl_st_read_f32(f, "scores", &n, &e);
    const fl_st_tensor *ti = fl_st_find(f, "idxs"), *tk = fl_st_find(f, "keep"), *tb = fl_st_find(f, "bkeep");
    assert_true(ti && tk && tb && ti->dtype == FL_ST_I32);
    int *idxs = malloc(n * sizeof(int)), *keep = malloc(n * sizeof(int));
    int *rk = malloc(tk->numel * sizeof(int) + 1), *rb = malloc(tb->numel * sizeof(int) + 1);
    memcpy(idxs, ti->data, n * sizeof(int));
    nk = tk->numel, nbk = tb->numel;
    memcpy(rk, tk->data, nk * sizeof(int));
    memcpy(rb, tb->data, nbk * sizeof(int));
    float iou = (float)atof(fl_st_meta(f, "iou"));
    int k = fl_nms(boxes, scores, (int)n, iou, keep, &e);
    assert_int_equal(k, (int)nk);
    assert_memory_equal(keep, rk, nk * sizeof(int));
    k = fl_nms_batched(boxes, scores, idxs, (int)n, iou, keep, &e);
    assert_int_equal(k, (int)nbk);
    assert_memory_equal(keep, rb, nbk * sizeof(int));
    printf("%s: %zu boxes, nms keeps %zu, batched keeps %zu, identical to torchvision\n", name, n, nk, nbk);
    free(boxes), free(scores), free(idxs), free(keep), free(rk), free(rb);
    fl_st_close(f);
}

static void test_nms_matches_torchvision(void **state) {
    (void)state;
    nms_case("nms_0.safetensors");
    nms_case("nms_1.safetensors");
    nms_case("nms_2.safetensors");
    fl_err e = {0};
    int keep[2];
    float s[2] = {NAN, 1};
    float b[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    assert_int_equal(fl_nms(b, s, 2, 0.5f, keep, &e), -1);
    assert_non_null(strstr(e.msg, "NaN"));
    assert_int_equal(fl_nms(b, s, 0, 0.5f, keep, &e), 0);
    /* equal scores: the earlier box wins (stable) */
    s[0] = s[1] = 0.5f;
    assert_int_equal(fl_nms(b, s, 2, 0.5f, keep, &e), 1);
    assert_int_equal(keep[0], 0);
}

/* Detect's decoding + ultralytics non_max_suppression on random heads: the same boxes, scores and
 * classes in the same order. */
static void detect_case(const char *name) {
    fl_err e = {0};
    fl_st_file *f = open_fixture(name);
    int nc = atoi(fl_st_meta(f, "nc")), imgsz = atoi(fl_st_meta(f, "imgsz")), bs = atoi(fl_st_meta(f, "bs"));
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, nc, &e), 0);
    fl_yolo_heads h = {.n = bs, .no = nc + 5};
    for (int i = 0; i < 3; i++) h.ny[i] = h.nx[i] = imgsz / c.strides[i];
    size_t n = 0;
    float *heads = fl_st_read_f32(f, "heads", &n, &e);
    assert_int_equal(n, fl_yolo_total_numel(&h));
    fl_yolo_nms_cfg nmc = {(float)atof(fl_st_meta(f, "conf")), (float)atof(fl_st_meta(f, "iou")),
                           atoi(fl_st_meta(f, "max_det"))};
    for (int b = 0; b < bs; b++) {
        char key[32];
        snprintf(key, sizeof key, "dets%d", b);
        const fl_st_tensor *t = fl_st_find(f, key);
        assert_non_null(t);
        size_t nr = t->numel / 6;
        float *ref = nr ? fl_st_read_f32(f, key, NULL, &e) : NULL;
        fl_yolo_det *d = NULL;
        int nd = fl_yolo_detect(&c, &h, heads, b, &nmc, &d, &e);
        printf("%s image %d: %d detections (ultralytics %zu)\n", name, b, nd, nr);
        assert_int_equal(nd, (int)nr);
        for (size_t k = 0; k < nr; k++) {
            const float *r = ref + 6 * k;
            float box[4] = {d[k].x1, d[k].y1, d[k].x2, d[k].y2};
            for (int q = 0; q < 4; q++) assert_true(fabsf(box[q] - r[q]) <= 1e-4f * fmaxf(1.0f, fabsf(r[q])));
            assert_true(fabsf(d[k].score - r[4]) <= 1e-5f);
            assert_int_equal(d[k].cls, (int)r[5]);
        }
        free(d);
        free(ref);
    }
    free(heads);
    fl_st_close(f);
}

static void test_detect_matches_ultralytics(void **state) {
    (void)state;
    detect_case("detect_0.safetensors");
    detect_case("detect_1.safetensors");
}

/* One strong cell decodes to the formula's box, survives NMS alone, and scores mAP 1. */
static void test_decode_detect_map(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, 2, &e), 0);
    fl_yolo_heads h = {.n = 2, .no = 7, .ny = {8, 4, 2}, .nx = {8, 4, 2}};
    size_t n = fl_yolo_total_numel(&h);
    float *heads = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) heads[i] = -10.0f;
    /* image 1, level 1 (stride 16), cell y 2 x 3, anchor 1 (62x45): t_xy = 0, t_wh = 0, obj and
     * class 1 high */
    size_t base = fl_yolo_level_numel(&h, 0);
    float *v = heads + base + ((size_t)((1 * 4 + 2) * 4 + 3) * 3 + 1) * 7;
    v[0] = v[1] = v[2] = v[3] = 0.0f;
    v[4] = 5.0f;
    v[6] = 5.0f;
    fl_yolo_nms_cfg nc = {0.25f, 0.45f, 300};
    fl_yolo_det *d = NULL;
    assert_int_equal(fl_yolo_detect(&c, &h, heads, 0, &nc, &d, &e), 0);
    assert_int_equal(fl_yolo_detect(&c, &h, heads, 1, &nc, &d, &e), 1);
    /* xy = (2*0.5 - 0.5 + grid) * 16 = (3.5, 2.5) * 16; wh = (2*0.5)^2 * anchor */
    float cx = 3.5f * 16, cy = 2.5f * 16;
    assert_true(fabsf(d[0].x1 - (cx - 31)) < 1e-4f && fabsf(d[0].y2 - (cy + 22.5f)) < 1e-4f);
    assert_int_equal(d[0].cls, 1);
    float sg = 1.0f / (1.0f + expf(-5.0f));
    assert_true(fabsf(d[0].score - sg * sg) < 1e-6f);
    free(d);
    assert_int_equal(fl_yolo_detect(&c, &h, heads, 2, &nc, &d, &e), -1);
    assert_null(d);
    /* mAP: the detection on its ground truth, then a wrong class, then a missing image */
    fl_yolo_det *d1 = NULL;
    assert_int_equal(fl_yolo_detect(&c, &h, heads, 1, &nc, &d1, &e), 1);
    const fl_yolo_det *per[2] = {NULL, d1};
    int nd[2] = {0, 1};
    fl_yolo_gt gt = {1, 1, cx - 31, cy - 22.5f, cx + 31, cy + 22.5f};
    /* ultralytics' perfect score: the sentinel precision 0 at recall 1 costs half a step */
    double m = fl_yolo_map(per, nd, 2, &gt, 1, 2, 0.5, &e);
    printf("perfect mAP %.6f\n", m);
    assert_true(fabs(m - 0.995) < 1e-9);
    gt.cls = 0;
    assert_true(fl_yolo_map(per, nd, 2, &gt, 1, 2, 0.5, &e) == 0.0);
    gt.img = 2;
    assert_true(fl_yolo_map(per, nd, 2, &gt, 1, 2, 0.5, &e) < 0);
    assert_non_null(strstr(e.msg, "out of range"));
    free(d), free(d1), free(heads);
}

/* Half the ground truth found: the values numpy gives for ultralytics compute_ap
 * (np.interp on 101 points of the envelope, np.trapz). */
static void test_map_partial_recall(void **state) {
    (void)state;
    fl_err e = {0};
    fl_yolo_gt gt[2] = {{0, 0, 0, 0, 10, 10}, {0, 0, 20, 20, 30, 30}};
    fl_yolo_det d[2] = {{0, 0, 10, 10, 0.9f, 0}, {50, 50, 60, 60, 0.8f, 0}};
    const fl_yolo_det *per[1] = {d};
    int nd[1] = {2};
    double m = fl_yolo_map(per, nd, 1, gt, 2, 1, 0.5, &e);
    printf("mAP TP+FP of 2: %.6f\n", m);
    assert_true(fabs(m - 0.6225) < 1e-9); /* recall (0.5, 0.5), precision (1, 0.5) */
    nd[0] = 1;
    m = fl_yolo_map(per, nd, 1, gt, 2, 1, 0.5, &e);
    printf("mAP TP of 2: %.6f\n", m);
    assert_true(fabs(m - 0.75) < 1e-9); /* recall 0.5, precision 1 */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cfg_rules_and_bad_input),
        cmocka_unit_test(test_detect_bias_init),
        cmocka_unit_test(test_heads_match_pytorch),
        cmocka_unit_test(test_strict_load_lists_problems),
        cmocka_unit_test(test_loss_matches_pytorch),
        cmocka_unit_test(test_loss_bad_targets),
        cmocka_unit_test(test_nms_matches_torchvision),
        cmocka_unit_test(test_detect_matches_ultralytics),
        cmocka_unit_test(test_decode_detect_map),
        cmocka_unit_test(test_map_partial_recall),
        cmocka_unit_test(test_param_counts_match_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
