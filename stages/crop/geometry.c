/* Crop geometry (crop.h): which JPEG scale to decode at, detector boxes back to full-size
 * pixels, margin and clamp, and the square output. */
#include <math.h>

#include "stages/crop/crop.h"

static const int denoms[] = {8, 4, 2};

int fl_crop_denom_long(int w, int h, int need) {
    int L = w > h ? w : h;
    for (int i = 0; i < 3; i++)
        if ((L + denoms[i] - 1) / denoms[i] >= need) return denoms[i]; /* TJSCALED rounds up */
    return 1;
}

int fl_crop_denom_region(float rw, float rh, int size, int keep_aspect) {
    for (int i = 0; i < 3; i++) {
        float w = rw / (float)denoms[i], h = rh / (float)denoms[i];
        if (keep_aspect ? fmaxf(w, h) >= (float)size : fminf(w, h) >= (float)size) return denoms[i];
    }
    return 1;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

fl_box fl_crop_unletterbox(fl_box b, const fl_letterbox *lb, int full_w, int full_h) {
    /* The exact inverse of letterbox's forward box map (x * new_w / w + left), with the decoded
     * width replaced by the full one: both span the same picture. */
    double kx = (double)full_w / lb->new_w, ky = (double)full_h / lb->new_h;
    fl_box r = b;
    r.x1 = clampf((float)((b.x1 - lb->left) * kx), 0, (float)full_w);
    r.x2 = clampf((float)((b.x2 - lb->left) * kx), 0, (float)full_w);
    r.y1 = clampf((float)((b.y1 - lb->top) * ky), 0, (float)full_h);
    r.y2 = clampf((float)((b.y2 - lb->top) * ky), 0, (float)full_h);
    return r;
}

fl_box fl_crop_widen(fl_box b, float margin, int w, int h) {
    float mw = (b.x2 - b.x1) * margin, mh = (b.y2 - b.y1) * margin;
    fl_box r = b;
    r.x1 = clampf(b.x1 - mw, 0, (float)w);
    r.x2 = clampf(b.x2 + mw, 0, (float)w);
    r.y1 = clampf(b.y1 - mh, 0, (float)h);
    r.y2 = clampf(b.y2 + mh, 0, (float)h);
    return r;
}

fl_image *fl_crop_square(const fl_image *img, int size, int keep_aspect, fl_err *e) {
    if (!keep_aspect) return fl_image_resize(img, size, size, FL_INTERP_AREA, e);
    double r = (double)size / (img->width > img->height ? img->width : img->height);
    int nw = (int)nearbyint(img->width * r), nh = (int)nearbyint(img->height * r);
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    if (nw > size) nw = size;
    if (nh > size) nh = size;
    fl_image *rs = fl_image_resize(img, nw, nh, FL_INTERP_AREA, e);
    if (!rs) return NULL;
    fl_image *out = fl_image_new_filled(size, size, FL_CROP_FILL, e);
    if (out) fl_image_paste(out, rs, (size - nw) / 2, (size - nh) / 2);
    fl_image_free(rs);
    return out;
}

fl_image *fl_crop_cut(const fl_image *img, int full_w, int full_h, fl_box r, int size,
                      int keep_aspect, fl_err *e) {
    float sx = (float)img->width / (float)full_w, sy = (float)img->height / (float)full_h;
    fl_box b = {r.x1 * sx, r.y1 * sy, r.x2 * sx, r.y2 * sy, r.cls};
    /* A sliver thinner than a decoded pixel still yields one pixel (crop rounds outward). */
    if (b.x2 <= b.x1) b.x2 = b.x1 + 1e-3f;
    if (b.y2 <= b.y1) b.y2 = b.y1 + 1e-3f;
    fl_image *c = fl_image_crop(img, b, 0, NULL, e);
    if (!c) return NULL;
    fl_image *out = fl_crop_square(c, size, keep_aspect, e);
    fl_image_free(c);
    return out;
}
