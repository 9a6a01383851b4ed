/* Affine / perspective warps with OpenCV's INTER_LINEAR fixed point (imgproc/src/imgwarp.cpp):
 * source coordinates are quantised to 1/32 px (INTER_BITS 5; the affine path through 10-bit
 * AB_SCALE deltas), weights (32-fx)(32-fy)*32 etc. sum to 2^15, BORDER_CONSTANT neighbours take
 * the fill value. Also the box transforms, YOLOv5's box_candidates and letterbox. */
#include "runtime/image/image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

fl_mat3 fl_mat3_identity(void) { return (fl_mat3){{1, 0, 0, 0, 1, 0, 0, 0, 1}}; }

fl_mat3 fl_mat3_mul(fl_mat3 a, fl_mat3 b) {
    fl_mat3 r;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            r.m[i * 3 + j] = a.m[i * 3] * b.m[j] + a.m[i * 3 + 1] * b.m[3 + j] + a.m[i * 3 + 2] * b.m[6 + j];
    return r;
}

int fl_mat3_inverse(fl_mat3 a, fl_mat3 *out) {
    const double *m = a.m;
    double c00 = m[4] * m[8] - m[5] * m[7], c01 = m[5] * m[6] - m[3] * m[8], c02 = m[3] * m[7] - m[4] * m[6];
    double det = m[0] * c00 + m[1] * c01 + m[2] * c02;
    if (det == 0 || !isfinite(det)) return -1;
    double d = 1.0 / det;
    out->m[0] = c00 * d;
    out->m[1] = (m[2] * m[7] - m[1] * m[8]) * d;
    out->m[2] = (m[1] * m[5] - m[2] * m[4]) * d;
    out->m[3] = c01 * d;
    out->m[4] = (m[0] * m[8] - m[2] * m[6]) * d;
    out->m[5] = (m[2] * m[3] - m[0] * m[5]) * d;
    out->m[6] = c02 * d;
    out->m[7] = (m[1] * m[6] - m[0] * m[7]) * d;
    out->m[8] = (m[0] * m[4] - m[1] * m[3]) * d;
    return 0;
}

static inline int sat_int(double v) {
    if (!(v > INT_MIN)) return INT_MIN; /* also NaN */
    if (v >= INT_MAX) return INT_MAX;
    return (int)lrint(v);
}
static inline int sat_short(int v) { return v < SHRT_MIN ? SHRT_MIN : v > SHRT_MAX ? SHRT_MAX : v; }

/* One output pixel from integer source position (sx, sy) and 1/32 fractions (fx, fy). */
static inline void sample_bilinear(const fl_image *src, int sx, int sy, int fx, int fy,
                                   uint8_t fill, uint8_t *d) {
    int W = src->width, H = src->height;
    if (sx >= W || sx + 1 < 0 || sy >= H || sy + 1 < 0) {
        d[0] = d[1] = d[2] = fill;
        return;
    }
    int w0 = (32 - fx) * (32 - fy) * 32, w1 = fx * (32 - fy) * 32;
    int w2 = (32 - fx) * fy * 32, w3 = fx * fy * 32;
    int in_x0 = sx >= 0, in_x1 = sx + 1 < W, in_y0 = sy >= 0, in_y1 = sy + 1 < H;
    const uint8_t *r0 = in_y0 ? fl_image_px(src, 0, sy) : NULL;
    const uint8_t *r1 = in_y1 ? fl_image_px(src, 0, sy + 1) : NULL;
    for (int c = 0; c < 3; c++) {
        int p0 = r0 && in_x0 ? r0[sx * 3 + c] : fill;
        int p1 = r0 && in_x1 ? r0[(sx + 1) * 3 + c] : fill;
        int p2 = r1 && in_x0 ? r1[sx * 3 + c] : fill;
        int p3 = r1 && in_x1 ? r1[(sx + 1) * 3 + c] : fill;
        int v = (p0 * w0 + p1 * w1 + p2 * w2 + p3 * w3 + (1 << 14)) >> 15;
        d[c] = (uint8_t)(v > 255 ? 255 : v);
    }
}

fl_image *fl_image_warp(const fl_image *src, fl_mat3 m, int w, int h, int affine, uint8_t fill,
                        fl_err *e) {
    fl_mat3 inv;
    if (affine) {
        /* cv2.warpAffine's own 2x3 inversion (a singular map gives the zero matrix there). */
        const double *M = m.m;
        double D = M[0] * M[4] - M[1] * M[3];
        D = D != 0 ? 1. / D : 0;
        double A11 = M[4] * D, A22 = M[0] * D, A12 = -M[1] * D, A21 = -M[3] * D;
        double b1 = -A11 * M[2] - A12 * M[5], b2 = -A21 * M[2] - A22 * M[5];
        inv = (fl_mat3){{A11, A12, b1, A21, A22, b2, 0, 0, 1}};
    } else if (fl_mat3_inverse(m, &inv)) {
        fl_errf(e, "perspective warp: the matrix is singular");
        return NULL;
    }
    fl_image *dst = fl_image_new(w, h, e);
    if (!dst) return NULL;
    const double *M = inv.m;
    int *adelta = NULL, *bdelta = NULL;
    if (affine) {
        adelta = malloc(sizeof(int) * (size_t)w);
        bdelta = malloc(sizeof(int) * (size_t)w);
        if (!adelta || !bdelta) {
            free(adelta), free(bdelta), fl_image_free(dst);
            fl_errf(e, "out of memory for a %dx%d warp", w, h);
            return NULL;
        }
        for (int x = 0; x < w; x++) {
            adelta[x] = sat_int(M[0] * x * 1024);
            bdelta[x] = sat_int(M[3] * x * 1024);
        }
    }
    for (int y = 0; y < h; y++) {
        uint8_t *d = fl_image_px(dst, 0, y);
        int X0 = 0, Y0 = 0;
        if (affine) {
            X0 = sat_int((M[1] * y + M[2]) * 1024) + 16;
            Y0 = sat_int((M[4] * y + M[5]) * 1024) + 16;
        }
        for (int x = 0; x < w; x++, d += 3) {
            int X, Y;
            if (affine) {
                /* int overflow is impossible in OpenCV's range; do the sum in 64 bits anyway. */
                long long xs = (long long)X0 + adelta[x], ys = (long long)Y0 + bdelta[x];
                xs = xs < INT_MIN ? INT_MIN : xs > INT_MAX ? INT_MAX : xs;
                ys = ys < INT_MIN ? INT_MIN : ys > INT_MAX ? INT_MAX : ys;
                X = (int)(xs >> 5), Y = (int)(ys >> 5);
            } else {
                double Wd = M[6] * x + M[7] * y + M[8];
                Wd = Wd != 0 ? 32.0 / Wd : 0;
                X = sat_int((M[0] * x + M[1] * y + M[2]) * Wd);
                Y = sat_int((M[3] * x + M[4] * y + M[5]) * Wd);
            }
            sample_bilinear(src, sat_short(X >> 5), sat_short(Y >> 5), X & 31, Y & 31, fill, d);
        }
    }
    free(adelta), free(bdelta);
    return dst;
}

void fl_boxes_transform(fl_box *boxes, int n, fl_mat3 m, int affine, int w, int h) {
    const double *M = m.m;
    for (int i = 0; i < n; i++) {
        double xs[4] = {boxes[i].x1, boxes[i].x2, boxes[i].x1, boxes[i].x2};
        double ys[4] = {boxes[i].y1, boxes[i].y2, boxes[i].y2, boxes[i].y1};
        double lo_x = INFINITY, lo_y = INFINITY, hi_x = -INFINITY, hi_y = -INFINITY;
        for (int k = 0; k < 4; k++) {
            double X = M[0] * xs[k] + M[1] * ys[k] + M[2];
            double Y = M[3] * xs[k] + M[4] * ys[k] + M[5];
            if (!affine) {
                double Wd = M[6] * xs[k] + M[7] * ys[k] + M[8];
                X /= Wd, Y /= Wd;
            }
            lo_x = fmin(lo_x, X), hi_x = fmax(hi_x, X), lo_y = fmin(lo_y, Y), hi_y = fmax(hi_y, Y);
        }
        boxes[i].x1 = (float)fmin(fmax(lo_x, 0), w);
        boxes[i].x2 = (float)fmin(fmax(hi_x, 0), w);
        boxes[i].y1 = (float)fmin(fmax(lo_y, 0), h);
        boxes[i].y2 = (float)fmin(fmax(hi_y, 0), h);
    }
}

int fl_boxes_filter(const fl_box *old, fl_box *nb, int n, float area_scale, float wh_thr,
                    float ar_thr, float area_thr) {
    const double eps = 1e-16;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double w1 = ((double)old[i].x2 - old[i].x1) * area_scale;
        double h1 = ((double)old[i].y2 - old[i].y1) * area_scale;
        double w2 = (double)nb[i].x2 - nb[i].x1, h2 = (double)nb[i].y2 - nb[i].y1;
        double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
        if (w2 > wh_thr && h2 > wh_thr && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < ar_thr)
            nb[k++] = nb[i];
    }
    return k;
}

fl_image *fl_letterbox_apply(const fl_image *src, int out_w, int out_h, int scaleup,
                             uint8_t fill, fl_box *boxes, int n, fl_letterbox *lb, fl_err *e) {
    double r = fmin((double)out_h / src->height, (double)out_w / src->width);
    if (!scaleup && r > 1) r = 1;
    /* Python's round() is half-to-even, like rint in the default rounding mode. */
    int nw = (int)nearbyint(src->width * r), nh = (int)nearbyint(src->height * r);
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    double dw = (out_w - nw) / 2.0, dh = (out_h - nh) / 2.0;
    int left = (int)nearbyint(dw - 0.1), top = (int)nearbyint(dh - 0.1);
    fl_image *resized = NULL, *out = NULL;
    if (nw != src->width || nh != src->height) {
        if (!(resized = fl_image_resize(src, nw, nh, FL_INTERP_LINEAR, e))) return NULL;
    }
    if ((out = fl_image_new_filled(out_w, out_h, fill, e)))
        fl_image_paste(out, resized ? resized : src, left, top);
    fl_image_free(resized);
    if (!out) return NULL;
    float kx = (float)nw / src->width, ky = (float)nh / src->height;
    for (int i = 0; i < n; i++) {
        boxes[i].x1 = boxes[i].x1 * kx + left, boxes[i].x2 = boxes[i].x2 * kx + left;
        boxes[i].y1 = boxes[i].y1 * ky + top, boxes[i].y2 = boxes[i].y2 * ky + top;
    }
    if (lb) *lb = (fl_letterbox){(float)r, (float)dw, (float)dh, left, top, nw, nh};
    return out;
}
