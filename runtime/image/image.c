/* The RGB image type: allocation, float conversion, crop, flip, paste. */
#include "runtime/image/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

fl_image *fl_image_new(int w, int h, fl_err *e) {
    if (w < 1 || h < 1 || w > 65535 || h > 65535) {
        fl_errf(e, "image size %dx%d out of range (1..65535)", w, h);
        return NULL;
    }
    fl_image *img = calloc(1, sizeof *img);
    if (!img) {
        fl_errf(e, "out of memory for image header");
        return NULL;
    }
    img->width = w;
    img->height = h;
    img->stride = (size_t)w * 3;
    img->data = malloc(img->stride * (size_t)h);
    if (!img->data) {
        free(img);
        fl_errf(e, "out of memory for a %dx%d image", w, h);
        return NULL;
    }
    return img;
}

fl_image *fl_image_new_filled(int w, int h, uint8_t value, fl_err *e) {
    fl_image *img = fl_image_new(w, h, e);
    if (img) memset(img->data, value, img->stride * (size_t)h);
    return img;
}

fl_image *fl_image_clone(const fl_image *src, fl_err *e) {
    fl_image *img = fl_image_new(src->width, src->height, e);
    if (!img) return NULL;
    for (int y = 0; y < src->height; y++)
        memcpy(fl_image_px(img, 0, y), fl_image_px(src, 0, y), (size_t)src->width * 3);
    return img;
}

void fl_image_free(fl_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}

void fl_image_to_float(const fl_image *img, float *dst) {
    const float k = 1.0f / 255.0f;
    size_t row = (size_t)img->width * 3;
    for (int y = 0; y < img->height; y++) {
        const uint8_t *s = fl_image_px(img, 0, y);
        float *d = dst + (size_t)y * row;
        for (size_t i = 0; i < row; i++) d[i] = (float)s[i] * k;
    }
}

int fl_image_from_float(fl_image *img, const float *src, fl_err *e) {
    size_t row = (size_t)img->width * 3;
    for (int y = 0; y < img->height; y++) {
        uint8_t *d = fl_image_px(img, 0, y);
        const float *s = src + (size_t)y * row;
        for (size_t i = 0; i < row; i++) {
            float v = s[i] * 255.0f;
            if (!(v == v)) return fl_errf(e, "NaN at row %d, element %zu", y, i);
            d[i] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v);
        }
    }
    return 0;
}

fl_image *fl_image_crop(const fl_image *src, fl_box box, float margin, fl_box *out_box,
                        fl_err *e) {
    if (!(box.x2 > box.x1) || !(box.y2 > box.y1)) { /* empty or NaN box: the whole image */
        box.x1 = 0, box.y1 = 0, box.x2 = (float)src->width, box.y2 = (float)src->height;
    }
    float mw = (box.x2 - box.x1) * margin, mh = (box.y2 - box.y1) * margin;
    double x1 = floor(box.x1 - mw), y1 = floor(box.y1 - mh);
    double x2 = ceil(box.x2 + mw), y2 = ceil(box.y2 + mh);
    if (x1 < 0) x1 = 0;
    if (y1 < 0) y1 = 0;
    if (x2 > src->width) x2 = src->width;
    if (y2 > src->height) y2 = src->height;
    if (!(x2 > x1) || !(y2 > y1)) {
        fl_errf(e, "crop box (%.1f,%.1f,%.1f,%.1f) lies outside the %dx%d image", box.x1, box.y1,
                box.x2, box.y2, src->width, src->height);
        return NULL;
    }
    int ix = (int)x1, iy = (int)y1, w = (int)(x2 - x1), h = (int)(y2 - y1);
    fl_image *img = fl_image_new(w, h, e);
    if (!img) return NULL;
    for (int y = 0; y < h; y++)
        memcpy(fl_image_px(img, 0, y), fl_image_px(src, ix, iy + y), (size_t)w * 3);
    if (out_box) *out_box = (fl_box){(float)ix, (float)iy, (float)(ix + w), (float)(iy + h), box.cls};
    return img;
}

void fl_image_flip_lr(fl_image *img, fl_box *boxes, int n) {
    int w = img->width;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = fl_image_px(img, 0, y);
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        float x1 = (float)w - boxes[i].x2, x2 = (float)w - boxes[i].x1;
        boxes[i].x1 = x1;
        boxes[i].x2 = x2;
    }
}

void fl_image_paste(fl_image *dst, const fl_image *src, int x, int y) {
    int sx = 0, sy = 0, w = src->width, h = src->height;
    if (x < 0) sx = -x, w += x, x = 0;
    if (y < 0) sy = -y, h += y, y = 0;
    if (x + w > dst->width) w = dst->width - x;
    if (y + h > dst->height) h = dst->height - y;
    if (w <= 0 || h <= 0) return;
    for (int r = 0; r < h; r++)
        memcpy(fl_image_px(dst, x, y + r), fl_image_px(src, sx, sy + r), (size_t)w * 3);
}
