/* The detector training loop (stages/detector/train.c) on a few generated images: it trains,
 * validates every epoch and writes weights that load strictly into a detector plus
 * detector_metrics.json; a non-finite loss (here from pretrained weights holding a NaN) stops
 * it with an error naming the epoch and step, and nothing is written. */
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
#include <unistd.h>

#include "runtime/image/image.h"
#include "runtime/safetensors.h"
#include "stages/detector/detector_io.h"
#include "stages/detector/train.h"

#define NIMG 8

typedef struct fx {
    char dir[64];
    char *paths[NIMG];
    fl_box boxes[NIMG];
    fl_loader_item items[NIMG];
} fx;

/* A bright rectangle on a dark, noisy background: the box to find. */
static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fluke-dettrain-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    fl_err e = {{0}};
    for (int i = 0; i < NIMG; i++) {
        int w = 96 + 8 * i, h = 80;
        fl_image *img = fl_image_new_filled(w, h, 30, &e);
        assert_non_null(img);
        int x1 = 8 + 4 * i, y1 = 12 + i, x2 = x1 + 40, y2 = y1 + 30;
        for (int y = y1; y < y2; y++)
            for (int x = x1; x < x2; x++)
                memset(fl_image_px(img, x, y), 220, 3);
        f->paths[i] = fl_strdupf("%s/i%d.jpg", f->dir, i);
        assert_int_equal(fl_jpeg_write(img, 90, f->paths[i], &e), 0);
        fl_image_free(img);
        f->boxes[i] = (fl_box){(float)x1, (float)y1, (float)x2, (float)y2, 0};
        f->items[i] =
            (fl_loader_item){.path = f->paths[i], .label = -1, .boxes = &f->boxes[i], .nboxes = 1};
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    for (int i = 0; i < NIMG; i++)
        free(f->paths[i]);
    free(f);
    return 0;
}

static fl_dettrain_opts opts(fx *f) {
    fl_dettrain_opts o = {0};
    fl_err e = {{0}};
    assert_int_equal(fl_yolo_cfg_make(&o.meta.cfg, 0.33, 0.0625, 1, &e), 0);
    o.meta.imgsz = 64;
    o.meta.nclasses = 1;
    snprintf(o.meta.classes[0], sizeof o.meta.classes[0], "animal");
    o.epochs = 2, o.batch = 4, o.nbs = 8, o.workers = 1;
    o.optimizer = FL_OPTIM_ADAM;
    o.lr0 = 0.003, o.lrf = 0.01, o.momentum = 0.937, o.weight_decay = 5e-4;
    o.warmup_epochs = 1, o.warmup_momentum = 0.8, o.warmup_bias_lr = 0.003;
    o.hyp = fl_yolo_hyp_default(64);
    o.aug = fl_yolo_aug_defaults();
    o.ema_decay = 0.9999, o.ema_tau = 200, o.clip = 10;
    o.seed = 3;
    o.train = f->items, o.ntrain = 6;
    o.val = f->items + 6, o.nval = 2;
    o.max_bad_share = 0.001;
    return o;
}

static void test_trains_and_writes(void **state) {
    fx *f = *state;
    fl_dettrain_opts o = opts(f);
    char *w = fl_strdupf("%s/w.safetensors", f->dir), *m = fl_strdupf("%s/m.json", f->dir);
    char *ck = fl_strdupf("%s/last.ckpt", f->dir);
    o.ckpt_path = ck;
    fl_err e = {{0}};
    assert_int_equal(fl_dettrain_run(&o, w, m, &e), 0);
    fl_detector d;
    if (fl_detector_load(w, 2, 0, &d, &e) != 0) fail_msg("%s", e.msg);
    assert_int_equal(d.meta.imgsz, 64);
    assert_string_equal(d.meta.classes[0], "animal");
    fl_detector_free(&d);
    size_t len;
    char *txt = fl_read_file(m, &len, &e);
    assert_non_null(txt);
    cJSON *j = cJSON_Parse(txt);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "epochs")), 2);
    const cJSON *fin = cJSON_GetObjectItem(j, "final");
    assert_non_null(cJSON_GetObjectItem(fin, "map50_95"));
    assert_int_equal((int)cJSON_GetObjectItem(fin, "val_images")->valuedouble, 2);
    assert_int_equal(access(ck, F_OK), 0); /* the last epoch's checkpoint */
    cJSON_Delete(j);
    free(txt);
    free(w), free(m), free(ck);
}

static void test_nan_loss_stops(void **state) {
    fx *f = *state;
    fl_dettrain_opts o = opts(f);
    fl_err e = {{0}};
    /* pretrained weights for the same network with one NaN in a Detect conv */
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, 64, 64, 3});
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, x, &o.meta.cfg, &h, &e), 0);
    float *wd = fl_pstore_data(s, "model.24.m.0.weight", NULL);
    assert_non_null(wd);
    wd[0] = NAN;
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    char *pre = fl_strdupf("%s/nan.safetensors", f->dir);
    assert_int_equal(fl_st_write_params(pre, &pl, NULL, 0, &e), 0);
    fl_graph_free(g);
    fl_pstore_free(s);
    o.pretrained = pre;
    char *w = fl_strdupf("%s/wn.safetensors", f->dir), *m = fl_strdupf("%s/mn.json", f->dir);
    assert_int_equal(fl_dettrain_run(&o, w, m, &e), -1);
    printf("error: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "the loss is NaN at epoch 1 step 1"));
    assert_non_null(strstr(e.msg, "no epoch finished, so there is no checkpoint"));
    assert_int_not_equal(access(w, F_OK), 0);
    assert_int_not_equal(access(m, F_OK), 0);
    free(pre), free(w), free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trains_and_writes),
        cmocka_unit_test(test_nan_loss_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
