/* A tiny fold layout for the embed stages' tests (stages/embed/embed.h), written by hand into a
 * temp dir: crop/crops/{train,test}/NAME.jpg (32x32 colour JPEGs), folds.csv and
 * crops.csv as the folds and crop stages write them.
 *
 * folds.csv (2 folds), in this order:
 *   solo_val     2 images, fold 0 only (new_individual in fold 0's validation)
 *   whale_0..7   5 images each: images 0,1,2 in fold 1, images 3,4 in fold 0
 *   solo_train   2 images, fold 1 only
 *   whale_0      one more image in fold 1 without a crop (the crop stage skipped it)
 * so fold 0's training part (fold 1) has 8 * 3 + 2 = 26 images with crops and 9 classes
 * (whale_0..7, solo_train), fold 1's (fold 0) 8 * 2 + 2 = 18 images and 9 classes (solo_val,
 * whale_0..7); 43 train images have crops, one has none. Species: beluga for odd whales and
 * solo_train, humpback otherwise.
 * crops.csv: one row per train image with a crop, except t_1_0.jpg which has two (per-class
 * crops: the first is the one used; the second names a file that does not exist), and 3 test
 * images, the first with two rows (counted once). */
#ifndef FLUKE_TEST_EMBED_FIXTURE_H
#define FLUKE_TEST_EMBED_FIXTURE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/image/image.h"
#include "stages/crop/crop.h"
#include "stages/embed/embed.h"

#define EMBF_SIDE 32
#define EMBF_WHALES 8
#define EMBF_PER_WHALE 5
#define EMBF_NTEST 3

typedef struct embf {
    char root[64];
    char folds_csv[128], crop_dir[128];
} embf;

/* A 32x32 image: a colour of the individual, a gradient and a bar at a place of the image. */
static inline int embf_jpeg(const char *path, int ind, int img, fl_err *e) {
    fl_image *im = fl_image_new(EMBF_SIDE, EMBF_SIDE, e);
    if (!im) return -1;
    int bar = 4 + (img * 7) % 20;
    for (int y = 0; y < EMBF_SIDE; y++)
        for (int x = 0; x < EMBF_SIDE; x++) {
            uint8_t *p = fl_image_px(im, x, y);
            int on = x >= bar && x < bar + 6;
            p[0] = (uint8_t)((40 + 25 * ind + 3 * x) % 256);
            p[1] = (uint8_t)(on ? 230 : (90 + 4 * y + 11 * img) % 256);
            p[2] = (uint8_t)((200 - 20 * ind + 2 * (x ^ y)) % 256);
        }
    int rc = fl_jpeg_write(im, 92, path, e);
    fl_image_free(im);
    return rc;
}

typedef struct embf_sb {
    char *p;
    size_t n, cap;
} embf_sb;

static inline int embf_printf(embf_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int embf_printf(embf_sb *b, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) return -1;
    if (b->n + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, line, (size_t)n + 1);
    b->n += (size_t)n;
    return 0;
}

/* One train image: its folds.csv row, its JPEG and (crop) its crops.csv row. */
static inline int embf_train(const embf *f, embf_sb *folds, embf_sb *crops, const char *image,
                             const char *ind, int indno, int img, int fold, int crop, fl_err *e) {
    const char *species = indno % 2 ? "beluga" : "humpback";
    if (embf_printf(folds, "%s,%s,%s,%d\n", image, ind, species, fold)) return fl_errf(e, "oom");
    if (!crop) return 0;
    char path[256];
    snprintf(path, sizeof path, "%s/crops/train/%s", f->crop_dir, image);
    if (embf_jpeg(path, indno, img, e)) return -1;
    if (embf_printf(crops, "%s,train,0,0,%d,%d,0.9,0,,crops/train/%s\n", image, EMBF_SIDE, EMBF_SIDE,
                    image))
        return fl_errf(e, "oom");
    return 0;
}

/* The layout above under a fresh temp dir (f->root). */
static inline int embf_make(embf *f, fl_err *e) {
    memset(f, 0, sizeof *f);
    strcpy(f->root, "/tmp/fl_test_embed_XXXXXX");
    if (!mkdtemp(f->root)) return fl_errf(e, "mkdtemp failed");
    snprintf(f->folds_csv, sizeof f->folds_csv, "%s/folds.csv", f->root);
    snprintf(f->crop_dir, sizeof f->crop_dir, "%s/crop", f->root);
    char dir[192];
    snprintf(dir, sizeof dir, "%s/crops/train", f->crop_dir);
    if (fl_mkdirs(dir, e)) return -1;
    snprintf(dir, sizeof dir, "%s/crops/test", f->crop_dir);
    if (fl_mkdirs(dir, e)) return -1;
    embf_sb folds = {0}, crops = {0};
    int rc = embf_printf(&folds, "image,individual_id,species,fold\n") ||
             embf_printf(&crops, "%s", FL_CROPS_CSV_HEADER) ? fl_errf(e, "oom") : 0;
    char image[64];
    for (int j = 0; rc == 0 && j < 2; j++) {
        snprintf(image, sizeof image, "sv_%d.jpg", j);
        rc = embf_train(f, &folds, &crops, image, "solo_val", 8, 100 + j, 0, 1, e);
    }
    for (int w = 0; rc == 0 && w < EMBF_WHALES; w++)
        for (int j = 0; rc == 0 && j < EMBF_PER_WHALE; j++) {
            char ind[32];
            snprintf(image, sizeof image, "t_%d_%d.jpg", w, j);
            snprintf(ind, sizeof ind, "whale_%d", w);
            rc = embf_train(f, &folds, &crops, image, ind, w, w * EMBF_PER_WHALE + j, j < 3 ? 1 : 0,
                            1, e);
            if (rc == 0 && w == 1 && j == 0 &&
                embf_printf(&crops, "t_1_0.jpg,train,1,1,20,20,0.5,0,,crops/train/t_1_0_second.jpg\n"))
                rc = fl_errf(e, "oom");
        }
    for (int j = 0; rc == 0 && j < 2; j++) {
        snprintf(image, sizeof image, "st_%d.jpg", j);
        rc = embf_train(f, &folds, &crops, image, "solo_train", 9, 200 + j, 1, 1, e);
    }
    if (rc == 0) rc = embf_train(f, &folds, &crops, "t_0_nocrop.jpg", "whale_0", 0, 0, 1, 0, e);
    for (int j = 0; rc == 0 && j < EMBF_NTEST; j++) {
        char path[256];
        snprintf(path, sizeof path, "%s/crops/test/q_%d.jpg", f->crop_dir, j);
        rc = embf_jpeg(path, j, 300 + j, e);
        for (int dup = 0; rc == 0 && dup < (j == 0 ? 2 : 1); dup++)
            if (embf_printf(&crops, "q_%d.jpg,test,0,0,%d,%d,0.8,0,c%d,crops/test/q_%d.jpg\n", j,
                            EMBF_SIDE, EMBF_SIDE, dup, j))
                rc = fl_errf(e, "oom");
    }
    char path[192];
    snprintf(path, sizeof path, "%s/crops.csv", f->crop_dir);
    if (rc == 0) rc = fl_write_file_atomic(f->folds_csv, folds.p, folds.n, e);
    if (rc == 0) rc = fl_write_file_atomic(path, crops.p, crops.n, e);
    free(folds.p);
    free(crops.p);
    return rc;
}

static inline void embf_free(embf *f) {
    fl_err e = {{0}};
    if (f->root[0]) fl_remove_tree(f->root, &e);
}

/* Small options for the tests: tf_efficientnet_b0 at width/depth 0.25, 32 px, DOLG 32, neck
 * 64, batch 8 (3 batches per epoch on fold 0), 3 epochs, one loader thread; `extra_train` is
 * spliced into the train section ("" for none). BN momentum 1 (running statistics = the last
 * batch's): with the initial ones (mean 0, var 1) a random or barely trained net's activations
 * vanish in eval mode and every image gets the same embedding, whatever the code does. */
static inline void embf_opts_json(char *txt, size_t cap, const char *extra_train) {
    snprintf(txt, cap,
             "{\"backbone\": {\"name\": \"tf_efficientnet_b0\", \"width\": 0.25, \"depth\": 0.25,"
             " \"bn_momentum\": 1}, \"dolg\": {\"dim\": 32, \"att_bn_momentum\": 1},"
             " \"neck\": {\"dim\": 64}, \"imgsz\": 32,"
             " \"train\": {\"epochs\": 3, \"batch\": 8, \"workers\": 1, \"knn_k\": 5%s%s}}",
             extra_train[0] ? ", " : "", extra_train);
}

static inline int embf_opts(fl_embopts *o, const char *extra_train, fl_err *e) {
    char txt[1024];
    embf_opts_json(txt, sizeof txt, extra_train);
    cJSON *j = cJSON_Parse(txt);
    if (!j) return fl_errf(e, "bad test JSON: %s", txt);
    int rc = fl_embopts_from_json(j, o, e);
    cJSON_Delete(j);
    if (rc == 0) o->model.neck_bn_momentum = 1; /* not a config key */
    return rc;
}

#endif
