/* The YOLOv5 augmentations (utils/augmentations.py and utils/dataloaders.py load_mosaic):
 * random_perspective (M = T @ S @ R @ P @ C), augment_hsv and the 4-image mosaic, drawing their
 * random numbers from the runtime RNG in the order YOLOv5 draws them. */
#include "runtime/image/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

fl_yolo_aug fl_yolo_aug_defaults(void) {
    /* hyp.scratch-low.yaml */
    return (fl_yolo_aug){.enabled = 1, .hsv_h = 0.015f, .hsv_s = 0.7f, .hsv_v = 0.4f,
                         .degrees = 0, .translate = 0.1f, .scale = 0.5f, .shear = 0,
                         .perspective = 0, .flip_lr = 0.5f, .mosaic = 1.0f};
}

fl_perspective_params fl_perspective_draw(const fl_yolo_aug *a, fl_rng *rng) {
    fl_perspective_params p;
    p.px = fl_rng_range(rng, -a->perspective, a->perspective);
    p.py = fl_rng_range(rng, -a->perspective, a->perspective);
    p.angle = fl_rng_range(rng, -a->degrees, a->degrees);
    p.scale = fl_rng_range(rng, 1 - a->scale, 1 + a->scale);
    p.shear_x = fl_rng_range(rng, -a->shear, a->shear);
    p.shear_y = fl_rng_range(rng, -a->shear, a->shear);
    p.tx = fl_rng_range(rng, 0.5f - a->translate, 0.5f + a->translate);
    p.ty = fl_rng_range(rng, 0.5f - a->translate, 0.5f + a->translate);
    return p;
}

fl_mat3 fl_perspective_matrix(const fl_perspective_params *p, int src_w, int src_h, int out_w,
                              int out_h) {
    fl_mat3 C = fl_mat3_identity(), P = fl_mat3_identity(), R = fl_mat3_identity();
    fl_mat3 S = fl_mat3_identity(), T = fl_mat3_identity();
    C.m[2] = -src_w / 2.0;
    C.m[5] = -src_h / 2.0;
    P.m[6] = p->px;
    P.m[7] = p->py;
    /* cv2.getRotationMatrix2D(center=(0,0), angle, scale) */
    double rad = p->angle * M_PI / 180.0, al = p->scale * cos(rad), be = p->scale * sin(rad);
    R.m[0] = al, R.m[1] = be, R.m[3] = -be, R.m[4] = al;
    S.m[1] = tan(p->shear_x * M_PI / 180.0);
    S.m[3] = tan(p->shear_y * M_PI / 180.0);
    T.m[2] = p->tx * (double)out_w;
    T.m[5] = p->ty * (double)out_h;
    return fl_mat3_mul(T, fl_mat3_mul(S, fl_mat3_mul(R, fl_mat3_mul(P, C))));
}

fl_image *fl_random_perspective(const fl_image *img, fl_box *boxes, int *n, int out_w, int out_h,
                                const fl_yolo_aug *a, fl_rng *rng, fl_err *e) {
    fl_perspective_params p = fl_perspective_draw(a, rng);
    fl_mat3 M = fl_perspective_matrix(&p, img->width, img->height, out_w, out_h);
    int affine = a->perspective == 0;
    int same = out_w == img->width && out_h == img->height;
    fl_mat3 I = fl_mat3_identity();
    for (int i = 0; i < 9; i++) same &= M.m[i] == I.m[i];
    fl_image *out = same ? fl_image_clone(img, e) : fl_image_warp(img, M, out_w, out_h, affine, 114, e);
    if (!out) return NULL;
    if (*n > 0) {
        fl_box *old = malloc(sizeof *old * (size_t)*n);
        if (!old) {
            fl_image_free(out);
            fl_errf(e, "out of memory for %d boxes", *n);
            return NULL;
        }
        memcpy(old, boxes, sizeof *old * (size_t)*n);
        fl_boxes_transform(boxes, *n, M, affine, out_w, out_h);
        *n = fl_boxes_filter(old, boxes, *n, p.scale, 2.f, 100.f, 0.10f);
        free(old);
    }
    return out;
}

void fl_augment_hsv(fl_image *img, const fl_yolo_aug *a, fl_rng *rng) {
    if (!(a->hsv_h != 0 || a->hsv_s != 0 || a->hsv_v != 0)) return;
    float rh = fl_rng_range(rng, -1, 1) * a->hsv_h + 1;
    float rs = fl_rng_range(rng, -1, 1) * a->hsv_s + 1;
    float rv = fl_rng_range(rng, -1, 1) * a->hsv_v + 1;
    fl_hsv_apply_gains(img, rh, rs, rv);
}

fl_image *fl_mosaic4(fl_image *const imgs[4], fl_box *const boxes[4], const int nboxes[4], int s,
                     fl_box *out_boxes, int cap, int *out_n, fl_rng *rng, fl_err *e) {
    int b = s / 2; /* mosaic_border = -s // 2 */
    int yc = (int)fl_rng_range(rng, (float)b, (float)(2 * s - b));
    int xc = (int)fl_rng_range(rng, (float)b, (float)(2 * s - b));
    fl_image *canvas = fl_image_new_filled(2 * s, 2 * s, 114, e);
    if (!canvas) return NULL;
    int n = 0, S2 = 2 * s;
    for (int i = 0; i < 4; i++) {
        const fl_image *im = imgs[i];
        int w = im->width, h = im->height, x1a, y1a, x2a, y2a, x1b, y1b;
        switch (i) {
        case 0: /* top left */
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc - h > 0 ? yc - h : 0, x2a = xc, y2a = yc;
            x1b = w - (x2a - x1a), y1b = h - (y2a - y1a);
            break;
        case 1: /* top right */
            x1a = xc, y1a = yc - h > 0 ? yc - h : 0, x2a = xc + w < S2 ? xc + w : S2, y2a = yc;
            x1b = 0, y1b = h - (y2a - y1a);
            break;
        case 2: /* bottom left */
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc, x2a = xc, y2a = yc + h < S2 ? yc + h : S2;
            x1b = w - (x2a - x1a), y1b = 0;
            break;
        default: /* bottom right */
            x1a = xc, y1a = yc, x2a = xc + w < S2 ? xc + w : S2, y2a = yc + h < S2 ? yc + h : S2;
            x1b = 0, y1b = 0;
            break;
        }
        for (int y = 0; y < y2a - y1a; y++)
            memcpy(fl_image_px(canvas, x1a, y1a + y), fl_image_px(im, x1b, y1b + y),
                   (size_t)(x2a - x1a) * 3);
        float padw = (float)(x1a - x1b), padh = (float)(y1a - y1b);
        for (int k = 0; k < nboxes[i]; k++) {
            if (n >= cap) {
                fl_image_free(canvas);
                fl_errf(e, "mosaic: more than %d boxes", cap);
                return NULL;
            }
            fl_box bx = boxes[i][k];
            bx.x1 = fminf(fmaxf(bx.x1 + padw, 0), (float)S2);
            bx.x2 = fminf(fmaxf(bx.x2 + padw, 0), (float)S2);
            bx.y1 = fminf(fmaxf(bx.y1 + padh, 0), (float)S2);
            bx.y2 = fminf(fmaxf(bx.y2 + padh, 0), (float)S2);
            out_boxes[n++] = bx;
        }
    }
    *out_n = n;
    return canvas;
}
