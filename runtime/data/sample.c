/* One loader sample: read + scaled decode + the task's transform, from RNG streams derived from
 * (seed, epoch, position) alone. Bad images are handled here (error, or skip and replace). */
#include "runtime/data/loader.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BAD_IN_A_ROW 16

static uint64_t aug_key(uint64_t seed) { return seed ^ UINT64_C(0xA3B1C2D3E4F50617); }
static uint64_t repl_key(uint64_t seed) { return seed ^ UINT64_C(0x0F1E2D3C4B5A6978); }
static uint64_t stream_of(int64_t epoch, int64_t p) {
    return ((uint64_t)epoch << 32) ^ (uint64_t)p;
}

static int box_valid(fl_box b) { return b.x2 > b.x1 && b.y2 > b.y1; }

/* A decoded item: the image and the full-size -> image scale. */
typedef struct loaded {
    fl_image *img;
    float kx, ky;
    int W, H; /* full-size upright */
} loaded;

static int load_item(const fl_loader_config *c, const fl_loader_item *it, loaded *out, fl_err *e) {
    size_t len = 0;
    uint8_t *buf = (uint8_t *)fl_read_file(it->path, &len, e);
    if (!buf) return -1;
    fl_decode_info info;
    int rc = fl_jpeg_probe(buf, len, it->path, &info, e);
    if (rc == 0) {
        double W = info.src_width, H = info.src_height;
        fl_decode_opts o = {.max_pixels = c->max_pixels, .max_bytes = c->max_decode_bytes,
                            .budget = c->decode_budget};
        if (c->task == FL_TASK_REID) {
            double rw = box_valid(it->box) ? it->box.x2 - it->box.x1 : W;
            double rh = box_valid(it->box) ? it->box.y2 - it->box.y1 : H;
            if (c->augment && c->reid.enabled && c->reid.crop_scale_lo > 0) {
                double k = sqrt(c->reid.crop_scale_lo); /* the smallest crop must stay sharp */
                rw *= k, rh *= k;
            }
            o.target_w = (int)ceil(c->out_w * W / fmax(rw, 1));
            o.target_h = (int)ceil(c->out_h * H / fmax(rh, 1));
        } else {
            double r = (double)c->out_w / fmax(W, H);
            o.target_w = (int)ceil(W * r), o.target_h = (int)ceil(H * r);
        }
        out->img = fl_jpeg_decode(buf, len, it->path, &o, &info, e);
        if (!out->img) rc = -1;
        else {
            out->W = info.src_width, out->H = info.src_height;
            out->kx = (float)out->img->width / out->W, out->ky = (float)out->img->height / out->H;
        }
    }
    free(buf);
    return rc;
}

/* Loads *item, replacing it (under SKIP) by draws from `repl` until one decodes. */
static int load_checked(const fl_loader_config *c, int64_t *item, fl_rng *repl,
                        atomic_ullong *bad, loaded *out, fl_err *e) {
    for (int attempt = 0;; attempt++) {
        if (load_item(c, &c->items[*item], out, e) == 0) return 0;
        if (c->on_bad_image != FL_BAD_IMAGE_SKIP) return -1;
        unsigned long long nbad = bad ? atomic_fetch_add(bad, 1) + 1 : 0;
        char msg[FL_ERRLEN + 96];
        snprintf(msg, sizeof msg, "warning: skipping bad image (%llu so far): %s", nbad, e->msg);
        if (c->warn) c->warn(c->warn_ctx, msg);
        else fprintf(stderr, "%s\n", msg);
        if (attempt + 1 >= MAX_BAD_IN_A_ROW)
            return fl_errprefix(e, "%d bad images in a row, giving up; the last", MAX_BAD_IN_A_ROW);
        *item = fl_rng_below(repl, (uint32_t)c->n_items);
    }
}

/* YOLOv5 load_image: resize so the long side is s (LINEAR when augmenting or enlarging, else
 * AREA), with the item's boxes mapped into the new pixels (*boxes malloc'd). */
static fl_image *yolo_load(const fl_loader_config *c, int64_t *item, fl_rng *repl,
                           atomic_ullong *bad, fl_box **boxes, int *nb, fl_err *e) {
    loaded L;
    if (load_checked(c, item, repl, bad, &L, e)) return NULL;
    const fl_loader_item *it = &c->items[*item];
    double r = (double)c->out_w / fmax(L.W, L.H);
    int nw = (int)ceil(L.W * r), nh = (int)ceil(L.H * r);
    fl_interp ip = c->augment || r > 1 ? FL_INTERP_LINEAR : FL_INTERP_AREA;
    fl_image *img = L.img;
    if (nw != img->width || nh != img->height) {
        img = fl_image_resize(L.img, nw, nh, ip, e);
        fl_image_free(L.img);
        if (!img) return NULL;
    }
    *nb = it->nboxes;
    *boxes = malloc(sizeof **boxes * (size_t)(it->nboxes + 1));
    if (!*boxes) {
        fl_image_free(img);
        fl_errf(e, "out of memory for boxes");
        return NULL;
    }
    float kx = (float)nw / L.W, ky = (float)nh / L.H;
    for (int i = 0; i < it->nboxes; i++) {
        fl_box b = it->boxes[i];
        (*boxes)[i] = (fl_box){b.x1 * kx, b.y1 * ky, b.x2 * kx, b.y2 * ky, b.cls};
    }
    return img;
}

static fl_image *detect_sample(const fl_loader_config *c, int64_t *item, fl_rng *rng,
                               fl_rng *repl, atomic_ullong *bad, fl_box **boxes, int *nb,
                               fl_err *e) {
    fl_yolo_aug a = c->yolo;
    int aug = c->augment && a.enabled, s = c->out_w;
    fl_image *out = NULL;
    *boxes = NULL, *nb = 0;
    if (aug && fl_rng_uniform(rng) < a.mosaic) {
        int64_t idx[4] = {*item};
        for (int i = 1; i < 4; i++) idx[i] = fl_rng_below(rng, (uint32_t)c->n_items);
        for (int i = 3; i > 0; i--) { /* random.shuffle */
            int j = (int)fl_rng_below(rng, (uint32_t)i + 1);
            int64_t t = idx[i];
            idx[i] = idx[j], idx[j] = t;
        }
        int prim = 0; /* where the sample's own item landed, to report a replacement */
        while (idx[prim] != *item) prim++;
        fl_image *imgs[4] = {0};
        fl_box *bx[4] = {0};
        int nbx[4] = {0}, total = 0, ok = 1;
        for (int i = 0; i < 4 && ok; i++) {
            ok = (imgs[i] = yolo_load(c, &idx[i], repl, bad, &bx[i], &nbx[i], e)) != NULL;
            total += nbx[i];
        }
        fl_image *canvas = NULL;
        if (ok && (*boxes = malloc(sizeof **boxes * (size_t)(total + 1))))
            canvas = fl_mosaic4(imgs, bx, nbx, s, *boxes, total, nb, rng, e);
        else if (ok)
            fl_errf(e, "out of memory for mosaic boxes");
        for (int i = 0; i < 4; i++) fl_image_free(imgs[i]), free(bx[i]);
        if (!canvas) goto fail;
        *item = idx[prim];
        int os = 2 * s - 2 * (s / 2);
        out = fl_random_perspective(canvas, *boxes, nb, os, os, &a, rng, e);
        fl_image_free(canvas);
        if (!out) goto fail;
    } else {
        fl_image *img = yolo_load(c, item, repl, bad, boxes, nb, e);
        if (!img) goto fail;
        out = fl_letterbox_apply(img, s, s, c->augment, 114, *boxes, *nb, NULL, e);
        fl_image_free(img);
        if (!out) goto fail;
        if (aug) {
            fl_image *w = fl_random_perspective(out, *boxes, nb, s, s, &a, rng, e);
            fl_image_free(out);
            if (!(out = w)) goto fail;
        }
    }
    if (aug) {
        fl_augment_hsv(out, &a, rng);
        if (fl_rng_uniform(rng) < a.flip_lr) fl_image_flip_lr(out, *boxes, *nb);
    }
    return out;
fail:
    free(*boxes);
    *boxes = NULL;
    return NULL;
}

int fl_loader_make_sample(const fl_loader_config *c, int64_t epoch, int64_t p, int64_t item,
                          float *img, uint8_t *img_u8, int32_t *label, fl_box *boxes,
                          int32_t *nboxes,
                          int64_t *item_used, atomic_ullong *bad, fl_err *e) {
    fl_rng rng, repl;
    fl_rng_init(&rng, aug_key(c->seed), stream_of(epoch, p));
    fl_rng_init(&repl, repl_key(c->seed), stream_of(epoch, p));
    fl_image *out = NULL;
    if (c->task == FL_TASK_REID) {
        loaded L;
        if (load_checked(c, &item, &repl, bad, &L, e)) return -1;
        fl_box b = c->items[item].box;
        if (box_valid(b)) b.x1 *= L.kx, b.x2 *= L.kx, b.y1 *= L.ky, b.y2 *= L.ky;
        fl_reid_aug a = c->reid;
        if (!c->augment) a.enabled = 0;
        out = fl_reid_augment(L.img, b, &a, c->out_w, c->out_h, &rng, e);
        fl_image_free(L.img);
        if (!out) return fl_errprefix(e, "%s", c->items[item].path);
    } else {
        fl_box *bx = NULL;
        int nb = 0;
        if (!(out = detect_sample(c, &item, &rng, &repl, bad, &bx, &nb, e))) return -1;
        int cap = c->max_boxes > 0 ? c->max_boxes : 64;
        if (nb > cap) {
            free(bx), fl_image_free(out);
            return fl_errf(e, "%s: %d boxes after augmentation, more than max_boxes = %d",
                           c->items[item].path, nb, cap);
        }
        if (boxes) memcpy(boxes, bx, sizeof *bx * (size_t)nb);
        if (nboxes) *nboxes = nb;
        free(bx);
    }
    if (img) {
        fl_image_to_float(out, img);
    } else {
        for (int y = 0; y < out->height; y++)
            memcpy(img_u8 + (size_t)y * out->width * 3, fl_image_px(out, 0, y), (size_t)out->width * 3);
    }
    fl_image_free(out);
    if (label) *label = c->items[item].label;
    if (item_used) *item_used = item;
    return 0;
}
