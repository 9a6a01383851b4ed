/* The re-ID training augmentation: box (+ margin) -> random resized crop inside it -> flip and
 * small rotation (one bilinear warp straight to the output size) -> colour jitter -> grayscale
 * -> blur -> cutout. torchvision semantics (RandomResizedCrop, ColorJitter, RandomErasing) with
 * the runtime RNG; the draw order is fixed, so (seed, stream) reproduces a sample exactly. */
#include "runtime/image/image.h"

#include <math.h>

fl_reid_aug fl_reid_aug_defaults(void) {
    return (fl_reid_aug){.enabled = 1, .margin = 0.05f,
                         .crop_scale_lo = 0.6f, .crop_scale_hi = 1.0f,
                         .crop_ratio_lo = 3.f / 4.f, .crop_ratio_hi = 4.f / 3.f,
                         .flip_p = 0.5f, .rotate_deg = 10.f,
                         .brightness = 0.2f, .contrast = 0.2f, .saturation = 0.2f, .hue = 0.05f,
                         .jitter_p = 0.8f, .gray_p = 0.1f,
                         .blur_p = 0.2f, .blur_sigma_lo = 0.1f, .blur_sigma_hi = 2.0f,
                         .cutout_p = 0.25f, .cutout_area_lo = 0.02f, .cutout_area_hi = 0.2f,
                         .cutout_ratio_lo = 0.3f, .cutout_ratio_hi = 3.3f, .fill = 0};
}

/* torchvision RandomResizedCrop.get_params on a bw x bh region (continuous sizes). */
static void random_crop(float bw, float bh, const fl_reid_aug *a, fl_rng *rng, float *cx,
                        float *cy, float *cw, float *ch) {
    float area = bw * bh, llo = logf(a->crop_ratio_lo), lhi = logf(a->crop_ratio_hi);
    for (int t = 0; t < 10; t++) {
        float ta = area * fl_rng_range(rng, a->crop_scale_lo, a->crop_scale_hi);
        float ar = expf(fl_rng_range(rng, llo, lhi));
        float w = sqrtf(ta * ar), h = sqrtf(ta / ar);
        if (w > 0 && h > 0 && w <= bw && h <= bh) {
            *cx = fl_rng_uniform(rng) * (bw - w);
            *cy = fl_rng_uniform(rng) * (bh - h);
            *cw = w, *ch = h;
            return;
        }
    }
    float in_ratio = bw / bh, w = bw, h = bh; /* fallback: central crop with a clamped ratio */
    if (in_ratio < a->crop_ratio_lo) h = w / a->crop_ratio_lo;
    else if (in_ratio > a->crop_ratio_hi) w = h * a->crop_ratio_hi;
    *cx = (bw - w) / 2, *cy = (bh - h) / 2, *cw = w, *ch = h;
}

static void color_jitter(fl_image *img, const fl_reid_aug *a, fl_rng *rng) {
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) { /* ColorJitter applies the four in a random order */
        int j = (int)fl_rng_below(rng, (uint32_t)i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    float fb = fl_rng_range(rng, fmaxf(0, 1 - a->brightness), 1 + a->brightness);
    float fc = fl_rng_range(rng, fmaxf(0, 1 - a->contrast), 1 + a->contrast);
    float fs = fl_rng_range(rng, fmaxf(0, 1 - a->saturation), 1 + a->saturation);
    float fh = fl_rng_range(rng, -a->hue, a->hue);
    for (int i = 0; i < 4; i++) {
        switch (order[i]) {
        case 0: if (a->brightness > 0) fl_image_adjust_brightness(img, fb); break;
        case 1: if (a->contrast > 0) fl_image_adjust_contrast(img, fc); break;
        case 2: if (a->saturation > 0) fl_image_adjust_saturation(img, fs); break;
        default: if (a->hue > 0) fl_image_adjust_hue(img, fh); break;
        }
    }
}

/* torchvision RandomErasing with a constant value. */
static void cutout(fl_image *img, const fl_reid_aug *a, fl_rng *rng) {
    int W = img->width, H = img->height;
    float area = (float)W * H, llo = logf(a->cutout_ratio_lo), lhi = logf(a->cutout_ratio_hi);
    for (int t = 0; t < 10; t++) {
        float ea = area * fl_rng_range(rng, a->cutout_area_lo, a->cutout_area_hi);
        float ar = expf(fl_rng_range(rng, llo, lhi));
        int h = (int)lrintf(sqrtf(ea * ar)), w = (int)lrintf(sqrtf(ea / ar));
        if (!(h < H && w < W && h > 0 && w > 0)) continue;
        int y0 = (int)fl_rng_below(rng, (uint32_t)(H - h + 1));
        int x0 = (int)fl_rng_below(rng, (uint32_t)(W - w + 1));
        for (int y = y0; y < y0 + h; y++) {
            uint8_t *p = fl_image_px(img, x0, y);
            for (int x = 0; x < 3 * w; x++) p[x] = a->fill;
        }
        return;
    }
}

fl_image *fl_reid_augment(const fl_image *img, fl_box box, const fl_reid_aug *a, int out_w,
                          int out_h, fl_rng *rng, fl_err *e) {
    float W = (float)img->width, H = (float)img->height;
    if (!(box.x2 > box.x1) || !(box.y2 > box.y1)) box = (fl_box){0, 0, W, H, box.cls};
    float mw = (box.x2 - box.x1) * a->margin, mh = (box.y2 - box.y1) * a->margin;
    box.x1 = fmaxf(box.x1 - mw, 0), box.y1 = fmaxf(box.y1 - mh, 0);
    box.x2 = fminf(box.x2 + mw, W), box.y2 = fminf(box.y2 + mh, H);
    if (!(box.x2 > box.x1) || !(box.y2 > box.y1)) {
        fl_errf(e, "re-ID box lies outside the %dx%d image", img->width, img->height);
        return NULL;
    }
    float cx = 0, cy = 0, cw = box.x2 - box.x1, ch = box.y2 - box.y1, angle = 0;
    int flip = 0;
    if (a->enabled) {
        random_crop(cw, ch, a, rng, &cx, &cy, &cw, &ch);
        flip = fl_rng_uniform(rng) < a->flip_p;
        angle = fl_rng_range(rng, -a->rotate_deg, a->rotate_deg);
    }
    cx += box.x1, cy += box.y1;
    /* Bilinear sampling aliases beyond 2x shrink: area-reduce the source first. */
    const fl_image *src = img;
    fl_image *small = NULL;
    float k = fminf(cw / out_w, ch / out_h);
    if (k >= 2) {
        int f = (int)k, sw = (int)lrintf(W / f), sh = (int)lrintf(H / f);
        if (sw < 1) sw = 1;
        if (sh < 1) sh = 1;
        if (!(small = fl_image_resize(img, sw, sh, FL_INTERP_AREA, e))) return NULL;
        float kx = sw / W, ky = sh / H;
        cx *= kx, cw *= kx, cy *= ky, ch *= ky;
        src = small;
    }
    /* Forward map: crop centre -> origin, scale to the output, mirror, rotate, -> out centre. */
    fl_mat3 Tc = fl_mat3_identity(), Sc = fl_mat3_identity(), R = fl_mat3_identity();
    fl_mat3 To = fl_mat3_identity();
    Tc.m[2] = -(cx + cw / 2.0), Tc.m[5] = -(cy + ch / 2.0);
    Sc.m[0] = (flip ? -1.0 : 1.0) * out_w / cw, Sc.m[4] = (double)out_h / ch;
    double rad = angle * M_PI / 180.0;
    R.m[0] = cos(rad), R.m[1] = sin(rad), R.m[3] = -sin(rad), R.m[4] = cos(rad);
    To.m[2] = out_w / 2.0, To.m[5] = out_h / 2.0;
    /* The warp works in pixel-index coordinates (centres at integers, like cv2.warpAffine);
     * the crop is a continuous rectangle, hence the half-pixel shifts on both sides. */
    fl_mat3 Hin = fl_mat3_identity(), Hout = fl_mat3_identity();
    Hin.m[2] = Hin.m[5] = 0.5, Hout.m[2] = Hout.m[5] = -0.5;
    fl_mat3 M = fl_mat3_mul(Hout, fl_mat3_mul(To, fl_mat3_mul(R, fl_mat3_mul(Sc, fl_mat3_mul(Tc, Hin)))));
    fl_image *out = fl_image_warp(src, M, out_w, out_h, 1, a->fill, e);
    fl_image_free(small);
    if (!out || !a->enabled) return out;
    if (fl_rng_uniform(rng) < a->jitter_p) color_jitter(out, a, rng);
    if (fl_rng_uniform(rng) < a->gray_p) fl_image_grayscale(out);
    if (fl_rng_uniform(rng) < a->blur_p) {
        float sigma = fl_rng_range(rng, a->blur_sigma_lo, a->blur_sigma_hi);
        if (fl_image_gaussian_blur(out, sigma, e)) {
            fl_image_free(out);
            return NULL;
        }
    }
    if (fl_rng_uniform(rng) < a->cutout_p) cutout(out, a, rng);
    return out;
}
