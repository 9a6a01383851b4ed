/* fl_yolo_eval (runtime/models/yolo_map.c) against tests/fixtures/gen_yolo_eval.py, a numpy
 * restatement of ultralytics val.py's P, R, mAP@0.5 and mAP@0.5:0.95 (hand cases and random
 * detections with duplicates, wrong classes, label-less classes, unsorted images), plus
 * hand-checked values, fl_yolo_map's agreement and the bad-input errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/yolo.h"

typedef struct evcase {
    char name[64];
    int nimg, nc;
    int *nd;
    fl_yolo_det **dets;
    fl_yolo_gt *gt;
    size_t ngt;
    fl_yolo_eval_out want;
} evcase;

static cJSON *load_cases(void) {
    const char *root = getenv("FLUKE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/yolo_eval/cases.json", root ? root : ".");
    fl_err e = {{0}};
    size_t len;
    char *txt = fl_read_file(path, &len, &e);
    if (!txt) fail_msg("%s (run tests/fixtures/gen_yolo_eval.py)", e.msg);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    return j;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    assert_non_null(v);
    return v->valuedouble;
}

static void case_parse(const cJSON *c, evcase *k) {
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", cJSON_GetObjectItem(c, "name")->valuestring);
    k->nimg = (int)num(c, "nimg"), k->nc = (int)num(c, "nc");
    k->nd = calloc((size_t)k->nimg, sizeof *k->nd);
    k->dets = calloc((size_t)k->nimg, sizeof *k->dets);
    const cJSON *imgs = cJSON_GetObjectItem(c, "dets"), *im, *r;
    int i = 0;
    cJSON_ArrayForEach(im, imgs) {
        int n = cJSON_GetArraySize(im), q = 0;
        k->nd[i] = n;
        k->dets[i] = calloc((size_t)n + 1, sizeof **k->dets);
        cJSON_ArrayForEach(r, im) {
            float v[6];
            for (int t = 0; t < 6; t++)
                v[t] = (float)cJSON_GetArrayItem(r, t)->valuedouble;
            k->dets[i][q++] = (fl_yolo_det){v[0], v[1], v[2], v[3], v[4], (int)v[5]};
        }
        i++;
    }
    assert_int_equal(i, k->nimg);
    const cJSON *g = cJSON_GetObjectItem(c, "gt");
    k->ngt = (size_t)cJSON_GetArraySize(g);
    k->gt = calloc(k->ngt + 1, sizeof *k->gt);
    size_t q = 0;
    cJSON_ArrayForEach(r, g) {
        float v[6];
        for (int t = 0; t < 6; t++)
            v[t] = (float)cJSON_GetArrayItem(r, t)->valuedouble;
        k->gt[q++] = (fl_yolo_gt){(int)v[0], (int)v[1], v[2], v[3], v[4], v[5]};
    }
    const cJSON *x = cJSON_GetObjectItem(c, "expect");
    k->want.precision = num(x, "precision"), k->want.recall = num(x, "recall");
    k->want.map50 = num(x, "map50"), k->want.map = num(x, "map"), k->want.conf = num(x, "conf");
    const cJSON *at = cJSON_GetObjectItem(x, "map_at");
    for (int t = 0; t < FL_YOLO_NIOU; t++)
        k->want.map_at[t] = cJSON_GetArrayItem(at, t)->valuedouble;
}

static void case_free(evcase *k) {
    for (int i = 0; i < k->nimg; i++)
        free(k->dets[i]);
    free(k->dets), free(k->nd), free(k->gt);
}

static void run_case(const evcase *k, fl_yolo_eval_out *o, fl_yolo_eval_class *pc) {
    fl_err e = {{0}};
    if (fl_yolo_eval((const fl_yolo_det *const *)k->dets, k->nd, k->nimg, k->gt, k->ngt, k->nc, o,
                     pc, &e) != 0)
        fail_msg("%s: %s", k->name, e.msg);
}

#define CLOSE(a, b, what)                                                                          \
    do {                                                                                           \
        if (!(fabs((a) - (b)) <= 1e-9))                                                            \
            fail_msg("%s: %s %.12f, numpy %.12f", k.name, what, (double)(a), (double)(b));         \
    } while (0)

static void test_matches_numpy_reference(void **state) {
    (void)state;
    cJSON *cases = load_cases(), *c;
    int n = 0;
    cJSON_ArrayForEach(c, cases) {
        evcase k;
        case_parse(c, &k);
        fl_yolo_eval_out o;
        run_case(&k, &o, NULL);
        printf("  %-22s P %.6f R %.6f mAP50 %.6f mAP %.6f (conf %.4f, %zu dets, %zu labels)\n",
               k.name, o.precision, o.recall, o.map50, o.map, o.conf, o.ndets, o.nlabels);
        CLOSE(o.precision, k.want.precision, "precision");
        CLOSE(o.recall, k.want.recall, "recall");
        CLOSE(o.map50, k.want.map50, "mAP@0.5");
        CLOSE(o.map, k.want.map, "mAP@0.5:0.95");
        for (int t = 0; t < FL_YOLO_NIOU; t++)
            CLOSE(o.map_at[t], k.want.map_at[t], "mAP at t");
        CLOSE(o.conf, k.want.conf, "F1 confidence");
        /* fl_yolo_map at one threshold is the same computation */
        fl_err e = {{0}};
        double m50 = fl_yolo_map((const fl_yolo_det *const *)k.dets, k.nd, k.nimg, k.gt, k.ngt,
                                 k.nc, 0.5, &e);
        double m75 = fl_yolo_map((const fl_yolo_det *const *)k.dets, k.nd, k.nimg, k.gt, k.ngt,
                                 k.nc, 0.75, &e);
        if (o.map50 > 0 || k.want.map_at[5] > 0) {
            CLOSE(m50, k.want.map50, "fl_yolo_map(0.5)");
            if (k.want.map_at[5] > 0) CLOSE(m75, k.want.map_at[5], "fl_yolo_map(0.75)");
        }
        case_free(&k);
        n++;
    }
    assert_true(n >= 10);
    cJSON_Delete(cases);
}

/* Hand-checked values (see gen_yolo_eval.py's hand_cases for the geometry). */
static void test_hand_cases(void **state) {
    (void)state;
    fl_yolo_gt g = {0, 0, 10, 10, 110, 60};
    fl_yolo_det perfect = {10, 10, 110, 60, 0.9f, 0};
    const fl_yolo_det *per[2] = {&perfect, NULL};
    int nd[2] = {1, 0};
    fl_yolo_eval_out o;
    fl_yolo_eval_class pc[3];
    fl_err e = {{0}};
    /* Perfect: P = R = 1; AP is ultralytics' 0.995 (the sentinel (1, 0) costs half a step). */
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, pc, &e), 0);
    assert_true(o.precision == 1 && o.recall == 1);
    assert_true(fabs(o.map50 - 0.995) < 1e-12 && fabs(o.map - 0.995) < 1e-12);
    assert_int_equal(o.nclasses, 1);
    assert_int_equal(pc[0].nlabels, 1);
    assert_int_equal(pc[0].ndets, 1);

    /* One FP ranked above the TP: envelope 0.5 everywhere -> AP 0.4975; F1 best (2/3) at low
     * confidence, where P = 0.5 and R = 1. */
    fl_yolo_det two[2] = {{300, 300, 350, 350, 0.95f, 0}, {10, 10, 110, 60, 0.9f, 0}};
    per[0] = two, nd[0] = 2;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), 0);
    assert_true(fabs(o.precision - 0.5) < 1e-12 && fabs(o.recall - 1) < 1e-12);
    assert_true(fabs(o.map50 - 0.4975) < 1e-12 && fabs(o.map - 0.4975) < 1e-12);

    /* A class with labels and no detections counts 0 in every mean; a detection of a class
     * without labels (class 2) counts nowhere. */
    fl_yolo_gt g2[2] = {g, {0, 1, 200, 200, 300, 300}};
    fl_yolo_det d3[2] = {perfect, {400, 400, 420, 420, 0.99f, 2}};
    per[0] = d3, nd[0] = 2;
    assert_int_equal(fl_yolo_eval(per, nd, 1, g2, 2, 3, &o, pc, &e), 0);
    assert_int_equal(o.nclasses, 2);
    assert_true(fabs(o.precision - 0.5) < 1e-12 && fabs(o.recall - 0.5) < 1e-12);
    assert_true(fabs(o.map50 - 0.4975) < 1e-12);
    assert_true(pc[1].nlabels == 1 && pc[1].ndets == 0 && pc[1].ap50 == 0 && pc[1].p == 0);
    assert_true(pc[2].nlabels == 0 && pc[2].ndets == 1);
    assert_true(fabs(pc[0].ap50 - 0.995) < 1e-12 && pc[0].p == 1 && pc[0].r == 1);

    /* ultralytics' matching: both detections choose label B, the first gets it, the second is a
     * FP although label A is free (a greedy matcher would give 0.995). */
    fl_yolo_gt ab[2] = {{0, 0, 0, 5, 100, 100}, {0, 0, 0, 0, 100, 100}};
    fl_yolo_det q[2] = {{0, 0, 100, 90, 0.9f, 0}, {0, 0, 100, 95, 0.8f, 0}};
    per[0] = q, nd[0] = 2;
    assert_int_equal(fl_yolo_eval(per, nd, 1, ab, 2, 1, &o, NULL, &e), 0);
    assert_true(fabs(o.map50 - 0.6225) < 1e-12);

    /* Nothing correct: every metric 0 (val.py's stats[0].any()). A wrong class is not a TP. */
    fl_yolo_det wrong = {10, 10, 110, 60, 0.9f, 1};
    per[0] = &wrong, nd[0] = 1;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 2, &o, NULL, &e), 0);
    assert_true(o.precision == 0 && o.recall == 0 && o.map50 == 0 && o.map == 0);
    /* No detections at all, and no images at all */
    nd[0] = 0;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), 0);
    assert_true(o.map == 0 && o.nclasses == 1);
    assert_int_equal(fl_yolo_eval(NULL, NULL, 0, NULL, 0, 1, &o, NULL, &e), 0);
    assert_true(o.map == 0 && o.nclasses == 0);
}

/* Validation at scale: 1000 images x 300 detections (conf 0.001 NMS output), two classes. */
static void test_scale(void **state) {
    (void)state;
    enum { NI = 1000, ND = 300 };
    fl_yolo_det *d = malloc(sizeof *d * NI * ND);
    fl_yolo_gt *g = malloc(sizeof *g * NI);
    const fl_yolo_det **per = malloc(sizeof *per * NI);
    int *nd = malloc(sizeof *nd * NI);
    uint32_t x = 12345;
    for (int i = 0; i < NI; i++) {
        g[i] = (fl_yolo_gt){i, i % 2, 100, 100, 300, 260};
        for (int k = 0; k < ND; k++) {
            x = x * 1664525u + 1013904223u;
            float j = (float)(x >> 8) / (1 << 24) * 40 * (k % 7 == 0 ? 1 : 8);
            d[i * ND + k] = (fl_yolo_det){100 + j, 100, 300 + j, 260, 1.0f - k / (float)ND, k % 2};
        }
        per[i] = d + i * ND, nd[i] = ND;
    }
    fl_err e = {{0}};
    fl_yolo_eval_out o;
    double t0 = fl_now();
    assert_int_equal(fl_yolo_eval(per, nd, NI, g, NI, 2, &o, NULL, &e), 0);
    printf("  %d detections: %.2f s, P %.4f R %.4f mAP50 %.4f mAP %.4f\n", NI * ND, fl_now() - t0,
           o.precision, o.recall, o.map50, o.map);
    assert_true(o.map50 > 0 && o.map50 <= 1 && o.recall > 0);
    free(d), free(g), free(per), free(nd);
}

static void test_bad_input(void **state) {
    (void)state;
    fl_yolo_gt g = {0, 0, 10, 10, 110, 60};
    fl_yolo_det d = {10, 10, 110, 60, 0.9f, 0};
    const fl_yolo_det *per[1] = {&d};
    int nd[1] = {1};
    fl_yolo_eval_out o;
    fl_err e = {{0}};
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 0, &o, NULL, &e), -1);
    g.img = 1;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "ground truth 0: image 1"));
    g.img = 0, g.cls = 3;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), -1);
    g.cls = 0, d.cls = -1;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "image 0 detection 0"));
    d.cls = 0, d.score = NAN;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), -1);
    d.score = 0.5f, nd[0] = -2;
    assert_int_equal(fl_yolo_eval(per, nd, 1, &g, 1, 1, &o, NULL, &e), -1);
    nd[0] = 1;
    assert_true(fl_yolo_map(per, nd, 1, &g, 1, 1, 1.5, &e) < 0);
    assert_true(fabs(fl_yolo_map(per, nd, 1, &g, 1, 1, 0.5, &e) - 0.995) < 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_numpy_reference),
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
