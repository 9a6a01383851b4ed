/* Resize with OpenCV's uint8 arithmetic (imgproc/src/resize.cpp), so cv2-based reference
 * pipelines (YOLOv5's load_image / letterbox) get the same pixels:
 *  - INTER_LINEAR: half-pixel centres, 11-bit coefficients rounded independently, a horizontal
 *    pass into ints, then the uchar vertical pass ((b0*(S0>>4))>>16 + (b1*(S1>>4))>>16 + 2) >> 2.
 *    An exact 2x downscale is an area average, as in OpenCV.
 *  - INTER_AREA (downscale): integer factors average blocks; other factors weight each source
 *    pixel by its overlap with the destination cell (float accumulation, round to nearest). */
#include "runtime/image/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COEF_SCALE 2048

static inline short round_short(float v) { return (short)lrintf(v); }

/* Per destination index: source index and the two coefficients. clamp_edges follows OpenCV's
 * horizontal table (which clamps the index and zeroes the fraction at both borders); the
 * vertical table keeps the raw fraction and clamps rows when reading. */
static void linear_tab(int ssize, int dsize, int clamp_edges, int *ofs, short *coef) {
    double scale = 1.0 / ((double)dsize / ssize);
    for (int d = 0; d < dsize; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (clamp_edges) {
            if (s < 0) f = 0, s = 0;
            if (s >= ssize - 1) f = 0, s = ssize - 1;
        }
        ofs[d] = s;
        coef[2 * d] = round_short((1.f - f) * COEF_SCALE);
        coef[2 * d + 1] = round_short(f * COEF_SCALE);
    }
}

static void hresize_row(const uint8_t *S, int sw, int dw, const int *xofs, const short *alpha,
                        int *out) {
    for (int dx = 0; dx < dw; dx++) {
        int sx = xofs[dx], a0 = alpha[2 * dx], a1 = alpha[2 * dx + 1];
        const uint8_t *p = S + sx * 3;
        if (sx + 1 < sw) {
            for (int c = 0; c < 3; c++) out[dx * 3 + c] = p[c] * a0 + p[c + 3] * a1;
        } else {
            for (int c = 0; c < 3; c++) out[dx * 3 + c] = p[c] * a0;
        }
    }
}

static fl_image *resize_linear(const fl_image *src, int w, int h, fl_err *e) {
    int sw = src->width, sh = src->height;
    fl_image *dst = fl_image_new(w, h, e);
    int *xofs = malloc(sizeof(int) * (size_t)w), *yofs = malloc(sizeof(int) * (size_t)h);
    short *alpha = malloc(sizeof(short) * 2 * (size_t)w), *beta = malloc(sizeof(short) * 2 * (size_t)h);
    int *rows = malloc(sizeof(int) * 2 * 3 * (size_t)w);
    if (!dst || !xofs || !yofs || !alpha || !beta || !rows) {
        if (dst) fl_errf(e, "out of memory resizing to %dx%d", w, h);
        fl_image_free(dst);
        dst = NULL;
        goto out;
    }
    linear_tab(sw, w, 1, xofs, alpha);
    linear_tab(sh, h, 0, yofs, beta);
    int *r0 = rows, *r1 = rows + 3 * (size_t)w, have0 = -1, have1 = -1;
    for (int dy = 0; dy < h; dy++) {
        int y0 = yofs[dy], y1 = y0 + 1;
        y0 = y0 < 0 ? 0 : y0 >= sh ? sh - 1 : y0;
        y1 = y1 < 0 ? 0 : y1 >= sh ? sh - 1 : y1;
        /* Reuse the horizontally resized rows of the previous output row when possible. */
        if (y0 != have0) {
            if (y0 == have1) {
                int *t = r0;
                r0 = r1, r1 = t, have0 = have1, have1 = -1;
            } else {
                hresize_row(fl_image_px(src, 0, y0), sw, w, xofs, alpha, r0);
                have0 = y0;
            }
        }
        if (y1 != have1) {
            if (y1 == have0) {
                memcpy(r1, r0, sizeof(int) * 3 * (size_t)w);
            } else {
                hresize_row(fl_image_px(src, 0, y1), sw, w, xofs, alpha, r1);
            }
            have1 = y1;
        }
        int b0 = beta[2 * dy], b1 = beta[2 * dy + 1];
        uint8_t *D = fl_image_px(dst, 0, dy);
        for (int x = 0; x < 3 * w; x++) {
            int v = (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2;
            D[x] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
out:
    free(xofs), free(yofs), free(alpha), free(beta), free(rows);
    return dst;
}

/* Integer factors: block averages (OpenCV resizeAreaFast; its 2x2 SIMD path rounds half up). */
static fl_image *resize_area_fast(const fl_image *src, int w, int h, int fx, int fy, fl_err *e) {
    fl_image *dst = fl_image_new(w, h, e);
    if (!dst) return NULL;
    float inv = 1.f / (float)(fx * fy);
    for (int dy = 0; dy < h; dy++) {
        uint8_t *D = fl_image_px(dst, 0, dy);
        for (int dx = 0; dx < w; dx++) {
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int j = 0; j < fy; j++) {
                    const uint8_t *S = fl_image_px(src, dx * fx, dy * fy + j) + c;
                    for (int i = 0; i < fx; i++) sum += S[i * 3];
                }
                D[dx * 3 + c] =
                    fx == 2 && fy == 2 ? (uint8_t)((sum + 2) >> 2) : (uint8_t)lrintf((float)sum * inv);
            }
        }
    }
    return dst;
}

typedef struct area_tab {
    int di, si;
    float alpha;
} area_tab;

/* OpenCV computeResizeAreaTab: overlap weights of source cells with each destination cell. */
static int area_tab_build(int ssize, int dsize, double scale, area_tab *tab) {
    int k = 0;
    for (int dx = 0; dx < dsize; dx++) {
        double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        double cell = fmin(scale, ssize - fsx1);
        int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
        if (sx2 > ssize - 1) sx2 = ssize - 1;
        if (sx1 > sx2) sx1 = sx2;
        if (sx1 - fsx1 > 1e-3) tab[k++] = (area_tab){dx, sx1 - 1, (float)((sx1 - fsx1) / cell)};
        for (int sx = sx1; sx < sx2; sx++) tab[k++] = (area_tab){dx, sx, (float)(1.0 / cell)};
        if (fsx2 - sx2 > 1e-3)
            tab[k++] = (area_tab){dx, sx2, (float)(fmin(fmin(fsx2 - sx2, 1.), cell) / cell)};
    }
    return k;
}

static fl_image *resize_area(const fl_image *src, int w, int h, fl_err *e) {
    int sw = src->width, sh = src->height;
    double sx = 1.0 / ((double)w / sw), sy = 1.0 / ((double)h / sh);
    int ix = (int)lrint(sx), iy = (int)lrint(sy);
    if (fabs(sx - ix) < 2.2204460492503131e-16 && fabs(sy - iy) < 2.2204460492503131e-16)
        return resize_area_fast(src, w, h, ix, iy, e);
    fl_image *dst = fl_image_new(w, h, e);
    area_tab *xt = malloc(sizeof *xt * 2 * ((size_t)sw + 1));
    area_tab *yt = malloc(sizeof *yt * 2 * ((size_t)sh + 1));
    float *buf = malloc(sizeof(float) * 3 * (size_t)w), *sum = malloc(sizeof(float) * 3 * (size_t)w);
    if (!dst || !xt || !yt || !buf || !sum) {
        if (dst) fl_errf(e, "out of memory resizing to %dx%d", w, h);
        fl_image_free(dst);
        dst = NULL;
        goto out;
    }
    int nx = area_tab_build(sw, w, sx, xt), ny = area_tab_build(sh, h, sy, yt);
    int prev = yt[0].di;
    memset(sum, 0, sizeof(float) * 3 * (size_t)w);
    for (int j = 0; j < ny; j++) {
        float beta = yt[j].alpha;
        const uint8_t *S = fl_image_px(src, 0, yt[j].si);
        memset(buf, 0, sizeof(float) * 3 * (size_t)w);
        for (int k = 0; k < nx; k++) {
            const uint8_t *p = S + xt[k].si * 3;
            float *b = buf + xt[k].di * 3;
            b[0] += p[0] * xt[k].alpha, b[1] += p[1] * xt[k].alpha, b[2] += p[2] * xt[k].alpha;
        }
        if (yt[j].di != prev) {
            uint8_t *D = fl_image_px(dst, 0, prev);
            for (int x = 0; x < 3 * w; x++) {
                long v = lrintf(sum[x]);
                D[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                sum[x] = beta * buf[x];
            }
            prev = yt[j].di;
        } else {
            for (int x = 0; x < 3 * w; x++) sum[x] += beta * buf[x];
        }
    }
    uint8_t *D = fl_image_px(dst, 0, prev);
    for (int x = 0; x < 3 * w; x++) {
        long v = lrintf(sum[x]);
        D[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
out:
    free(xt), free(yt), free(buf), free(sum);
    return dst;
}

fl_image *fl_image_resize(const fl_image *src, int w, int h, fl_interp interp, fl_err *e) {
    if (w < 1 || h < 1 || w > 65535 || h > 65535) {
        fl_errf(e, "resize of a %dx%d image to %dx%d: target size out of range", src->width,
                src->height, w, h);
        return NULL;
    }
    if (w == src->width && h == src->height) return fl_image_clone(src, e);
    int shrink_x = src->width >= w, shrink_y = src->height >= h;
    if (interp == FL_INTERP_AUTO)
        interp = src->width >= 2 * w && src->height >= 2 * h ? FL_INTERP_AREA : FL_INTERP_LINEAR;
    /* OpenCV turns an exact 2x linear downscale into the (identical in theory) area average. */
    if (interp == FL_INTERP_LINEAR && src->width == 2 * w && src->height == 2 * h)
        interp = FL_INTERP_AREA;
    if (interp == FL_INTERP_AREA && shrink_x && shrink_y) return resize_area(src, w, h, e);
    return resize_linear(src, w, h, e);
}
