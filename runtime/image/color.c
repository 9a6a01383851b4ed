/* Colour operations: YOLOv5's HSV gains (OpenCV's uint8 RGB<->HSV, hue 0..179), grayscale,
 * Gaussian blur and torchvision-style colour jitter. All in place on 8-bit RGB. */
#include "runtime/image/image.h"

#include <math.h>
#include <stdlib.h>

static inline uint8_t clamp_u8f(float v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v); }

/* OpenCV RGB2HSV_b (hsv_shift 12, hrange 180). */
static void rgb2hsv_u8(const int *sdiv, const int *hdiv, const uint8_t *p, uint8_t *out) {
    int r = p[0], g = p[1], b = p[2];
    int v = b, vmin = b;
    if (g > v) v = g;
    if (r > v) v = r;
    if (g < vmin) vmin = g;
    if (r < vmin) vmin = r;
    int diff = v - vmin;
    int vr = v == r ? -1 : 0, vg = v == g ? -1 : 0;
    int s = (diff * sdiv[v] + (1 << 11)) >> 12;
    int h = (vr & (g - b)) + (~vr & ((vg & (b - r + 2 * diff)) + ((~vg) & (r - g + 4 * diff))));
    h = (h * hdiv[diff] + (1 << 11)) >> 12;
    h += h < 0 ? 180 : 0;
    out[0] = (uint8_t)(h > 255 ? 255 : h), out[1] = (uint8_t)s, out[2] = (uint8_t)v;
}

/* OpenCV 4.x HSV2RGB_b as its SIMD path computes it (which is what cv2 runs for all but a
 * row's last few pixels): float HSV, v * (1 - s*h) with a fused multiply-add (the AVX2 build
 * contracts it), then truncation of x * 255, not rounding. The fused 1 - s*h is evaluated in
 * double: s*h is exact there, so the one rounding to float matches fmaf in practice. */
static inline float one_minus_fused(float s, float h) { return (float)(1.0 - (double)s * h); }

static void hsv2rgb_u8(const uint8_t *hsv, uint8_t *p) {
    float h = hsv[0] * (6.0f / 180.0f), s = hsv[1] * (1.f / 255.f), v = hsv[2] * (1.f / 255.f);
    float pre = truncf(h);
    h -= pre;
    int sector = (int)pre % 6;
    float tab[4] = {v, v * (1.f - s), v * one_minus_fused(s, h), v * one_minus_fused(s, 1.f - h)};
    static const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1},
                                          {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
    float b = tab[sector_data[sector][0]] * 255.f, g = tab[sector_data[sector][1]] * 255.f;
    float r = tab[sector_data[sector][2]] * 255.f;
    p[0] = (uint8_t)fminf(r, 255.f), p[1] = (uint8_t)fminf(g, 255.f), p[2] = (uint8_t)fminf(b, 255.f);
}

void fl_hsv_apply_gains(fl_image *img, float rh, float rs, float rv) {
    int sdiv[256], hdiv[256];
    sdiv[0] = hdiv[0] = 0;
    for (int i = 1; i < 256; i++) {
        sdiv[i] = (int)lrint((255 << 12) / (1. * i));
        hdiv[i] = (int)lrint((180 << 12) / (6. * i));
    }
    /* YOLOv5: lut_hue = ((x * r0) % 180), lut_sat/val = clip(x * r, 0, 255), cast (truncate). */
    uint8_t lut[3][256];
    for (int x = 0; x < 256; x++) {
        double hv = fmod(x * (double)rh, 180.0);
        if (hv < 0) hv += 180.0;
        double sv = fmin(fmax(x * (double)rs, 0), 255), vv = fmin(fmax(x * (double)rv, 0), 255);
        lut[0][x] = (uint8_t)hv, lut[1][x] = (uint8_t)sv, lut[2][x] = (uint8_t)vv;
    }
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, p += 3) {
            uint8_t hsv[3];
            rgb2hsv_u8(sdiv, hdiv, p, hsv);
            hsv[0] = lut[0][hsv[0]], hsv[1] = lut[1][hsv[1]], hsv[2] = lut[2][hsv[2]];
            hsv2rgb_u8(hsv, p);
        }
    }
}

static inline uint8_t luma(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16); /* PIL "L" */
}

void fl_image_grayscale(fl_image *img) {
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, p += 3) p[0] = p[1] = p[2] = luma(p);
    }
}

static inline int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}

int fl_image_gaussian_blur(fl_image *img, float sigma, fl_err *e) {
    if (!(sigma > 0)) return 0;
    int r = (int)ceilf(3 * sigma);
    if (r > 64) r = 64;
    float k[129], sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = expf(-(float)(i * i) / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    int W = img->width, H = img->height;
    float *tmp = malloc(sizeof(float) * 3 * (size_t)W * (size_t)H);
    if (!tmp) return fl_errf(e, "out of memory blurring a %dx%d image", W, H);
    for (int y = 0; y < H; y++) { /* horizontal into tmp */
        const uint8_t *row = fl_image_px(img, 0, y);
        float *t = tmp + (size_t)y * W * 3;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                float a = 0;
                for (int i = -r; i <= r; i++) a += k[i + r] * row[reflect101(x + i, W) * 3 + c];
                t[x * 3 + c] = a;
            }
    }
    for (int y = 0; y < H; y++) { /* vertical back into the image */
        uint8_t *d = fl_image_px(img, 0, y);
        for (int x = 0; x < W * 3; x++) {
            float a = 0;
            for (int i = -r; i <= r; i++) a += k[i + r] * tmp[(size_t)reflect101(y + i, H) * W * 3 + x];
            d[x] = clamp_u8f(a);
        }
    }
    free(tmp);
    return 0;
}

void fl_image_adjust_brightness(fl_image *img, float f) {
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width * 3; x++) p[x] = clamp_u8f(p[x] * f);
    }
}

/* torchvision adjust_contrast: blend with the mean of the grayscale image. */
void fl_image_adjust_contrast(fl_image *img, float f) {
    double s = 0;
    for (int y = 0; y < img->height; y++) {
        const uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, p += 3) s += luma(p);
    }
    float mean = (float)(s / ((double)img->width * img->height));
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width * 3; x++) p[x] = clamp_u8f(f * p[x] + (1 - f) * mean);
    }
}

/* torchvision adjust_saturation: blend each pixel with its own grey. */
void fl_image_adjust_saturation(fl_image *img, float f) {
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, p += 3) {
            float g = luma(p);
            for (int c = 0; c < 3; c++) p[c] = clamp_u8f(f * p[c] + (1 - f) * g);
        }
    }
}

/* torchvision adjust_hue: rotate the hue by `shift` turns in float HSV. */
void fl_image_adjust_hue(fl_image *img, float shift) {
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, p += 3) {
            float r = p[0] / 255.f, g = p[1] / 255.f, b = p[2] / 255.f;
            float mx = fmaxf(r, fmaxf(g, b)), mn = fminf(r, fminf(g, b)), d = mx - mn, h = 0;
            if (d > 0) {
                if (mx == r) h = fmodf((g - b) / d, 6.f);
                else if (mx == g) h = (b - r) / d + 2;
                else h = (r - g) / d + 4;
                h /= 6.f;
            }
            float s = mx > 0 ? d / mx : 0, v = mx;
            h += shift;
            h -= floorf(h);
            float h6 = h * 6.f;
            int i = (int)floorf(h6) % 6;
            float f = h6 - floorf(h6);
            float pp = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
            float rr[6] = {v, q, pp, pp, t, v}, gg[6] = {t, v, v, q, pp, pp}, bb[6] = {pp, pp, t, v, v, q};
            p[0] = clamp_u8f(rr[i] * 255.f), p[1] = clamp_u8f(gg[i] * 255.f), p[2] = clamp_u8f(bb[i] * 255.f);
        }
    }
}
