/* One image: the encounter's scene, the individual's animal placed with this image's pose
 * (scale, rotation, perspective, side), spray, exposure, blur and sensor noise. Everything random
 * comes from the image's own stream, so rendering order and thread count never matter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/synth/synth_internal.h"

typedef struct pose {
    float S;          /* pixels per local unit */
    float D;          /* perspective normalisation (half the longer side) */
    float cx, cy;     /* image position of the local anchor */
    float uc, vc;     /* local anchor: centre of the visible extent */
    float c, s;       /* rotation */
    float a, b;       /* perspective */
    float m;          /* +1, or -1 when seen from the other side */
} pose;

static void to_image(const pose *P, float u, float v, float *x, float *y) {
    float qx = P->m * (u - P->uc) * P->S, qy = -(v - P->vc) * P->S;
    float rx = P->c * qx - P->s * qy, ry = P->s * qx + P->c * qy;
    float nx = rx / P->D, ny = ry / P->D;
    float den = 1.0f + P->a * nx + P->b * ny;
    *x = P->cx + P->D * nx / den;
    *y = P->cy + P->D * ny / den;
}

static void to_local(const pose *P, float x, float y, float *u, float *v) {
    float px = (x - P->cx) / P->D, py = (y - P->cy) / P->D;
    float den = 1.0f - P->a * px - P->b * py;
    float rx = P->D * px / den, ry = P->D * py / den;
    float qx = P->c * rx + P->s * ry, qy = -P->s * rx + P->c * ry;
    *u = P->uc + P->m * qx / P->S;
    *v = P->vc - qy / P->S;
}

/* Tight local bounding box of the visible animal (above the waterline), on a coarse grid. */
static void visible_extent(const fl_synth_identity *id, float wl, float ext[4]) {
    float u0, u1, v0, v1, rgb[3];
    fl_synth_identity_extent(id, &u0, &u1, &v0, &v1);
    float bu0 = 1e9f, bu1 = -1e9f, bv0 = 1e9f, bv1 = -1e9f;
    const int n = 48;
    for (int j = 0; j <= n; j++)
        for (int i = 0; i <= n; i++) {
            float u = u0 + (u1 - u0) * i / n, v = v0 + (v1 - v0) * j / n;
            if (fl_synth_animal_sample(id, u, v, 1e-3f, wl, rgb) < 0.5f) continue;
            bu0 = fminf(bu0, u), bu1 = fmaxf(bu1, u), bv0 = fminf(bv0, v), bv1 = fmaxf(bv1, v);
        }
    if (bu0 > bu1) bu0 = u0, bu1 = u1, bv0 = v0, bv1 = v1;
    ext[0] = bu0, ext[1] = bu1, ext[2] = bv0, ext[3] = bv1;
}

/* Separable box blur of radius r, rows and columns both walked row-major (the column pass keeps
 * one running sum per column) so large images stay cache friendly. */
static void box_blur(uint8_t *img, int w, int h, int r, uint8_t *tmp, uint32_t *acc) {
    if (r <= 0) return;
    const uint32_t win = (uint32_t)(2 * r + 1), inv = (65536u + win / 2) / win;
    for (int y = 0; y < h; y++) {
        const uint8_t *src = img + (size_t)y * w * 3;
        uint8_t *dst = tmp + (size_t)y * w * 3;
        for (int c = 0; c < 3; c++) {
            uint32_t a = 0;
            for (int k = -r; k <= r; k++) a += src[(k < 0 ? 0 : k >= w ? w - 1 : k) * 3 + c];
            for (int x = 0; x < w; x++) {
                dst[x * 3 + c] = (uint8_t)((a * inv + 32768u) >> 16);
                int xo = x - r < 0 ? 0 : x - r, xi = x + r + 1 >= w ? w - 1 : x + r + 1;
                a += src[xi * 3 + c];
                a -= src[xo * 3 + c];
            }
        }
    }
    size_t row = (size_t)w * 3;
    memset(acc, 0, row * sizeof *acc);
    for (int k = -r; k <= r; k++) {
        const uint8_t *s = tmp + (size_t)(k < 0 ? 0 : k >= h ? h - 1 : k) * row;
        for (size_t i = 0; i < row; i++) acc[i] += s[i];
    }
    for (int y = 0; y < h; y++) {
        uint8_t *dst = img + (size_t)y * row;
        for (size_t i = 0; i < row; i++) dst[i] = (uint8_t)((acc[i] * inv + 32768u) >> 16);
        int yo = y - r < 0 ? 0 : y - r, yi = y + r + 1 >= h ? h - 1 : y + r + 1;
        const uint8_t *add = tmp + (size_t)yi * row, *sub = tmp + (size_t)yo * row;
        for (size_t i = 0; i < row; i++) acc[i] += (uint32_t)add[i] - (uint32_t)sub[i];
    }
}

typedef struct spray {
    float x, y, r, alpha;
} spray;

int fl_synth_render(const fl_synth_plan *plan, int i, fl_synth_picture *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= plan->n_images) return fl_errf(e, "synth: image index %d out of range", i);
    const fl_synth_image *im = &plan->img[i];
    fl_synth_identity id;
    fl_synth_scene sc;
    fl_synth_identity_make(plan, im->individual, &id);
    fl_synth_scene_make(plan, im->individual, im->encounter, &sc);
    fl_rng r;
    fl_rng_init(&r, plan->params.seed, FL_SYNTH_STREAM_IMAGE | (uint64_t)i);

    /* Per-image jitter around the encounter (a burst moves a little between frames). */
    int W = sc.w, H = sc.h;
    sc.horizon += 0.01f * fl_rng_normal(&r);
    for (int k = 0; k < 3; k++) sc.wave_phase[k] += fl_rng_range(&r, 0, 1.5f);
    sc.tex_seed ^= fl_rng_u32(&r) & 0x0000ff00u;
    float area = sc.area * id.sp->size * id.sp->size * expf(0.10f * fl_rng_normal(&r));
    area = fl_synth_clampf(area, 0.03f, 0.36f); /* the measured box stays within ~3-50% */
    float wl = fl_synth_clampf(sc.waterline + 0.1f * fl_rng_normal(&r), 0, 1);
    float rot = fl_synth_clampf(sc.rot + 0.07f * fl_rng_normal(&r), -0.349f, 0.349f);
    pose P;
    P.a = sc.persp_a + 0.04f * fl_rng_normal(&r);
    P.b = sc.persp_b + 0.04f * fl_rng_normal(&r);
    P.a = fl_synth_clampf(P.a, -0.2f, 0.2f);
    P.b = fl_synth_clampf(P.b, -0.15f, 0.15f);
    int flip = fl_rng_uniform(&r) < 0.08f;
    P.m = (id.sp->family != FL_FAMILY_FLUKE && (sc.mirrored ^ flip)) ? -1.0f : 1.0f;
    P.c = cosf(rot), P.s = sinf(rot);
    P.D = 0.5f * (float)(W > H ? W : H);
    float light = sc.light * expf(0.06f * fl_rng_normal(&r));
    float bright = 0.03f * fl_rng_normal(&r), contrast = expf(0.08f * fl_rng_normal(&r));
    float u_blur = fl_rng_uniform(&r);
    int blur = u_blur < 0.5f ? 0 : u_blur < 0.85f ? 1 : 2;
    int scale_blur = (W > H ? W : H) / 700;
    blur *= scale_blur > 1 ? scale_blur : 1;
    out->quality = plan->params.quality_min +
                   (int)fl_rng_below(&r, (uint32_t)(plan->params.quality_max -
                                                    plan->params.quality_min + 1));

    float ext[4];
    visible_extent(&id, wl, ext);
    P.uc = 0.5f * (ext[0] + ext[1]);
    P.vc = 0.5f * (ext[2] + ext[3]);
    float ext_area = (ext[1] - ext[0]) * (ext[3] - ext[2]);
    P.S = sqrtf(area * (float)W * (float)H / fmaxf(ext_area, 1e-3f));
    P.cx = (sc.cx + 0.03f * fl_rng_normal(&r)) * W;
    P.cy = (sc.cy + 0.03f * fl_rng_normal(&r)) * H;
    /* Keep the whole animal in frame: shrink if needed, then shift. */
    float bx0 = 0, bx1 = 0, by0 = 0, by1 = 0;
    for (int pass = 0; pass < 8; pass++) {
        bx0 = by0 = 1e9f, bx1 = by1 = -1e9f;
        for (int k = 0; k < 4; k++) {
            float x, y;
            to_image(&P, ext[k & 1], ext[2 + (k >> 1)], &x, &y);
            bx0 = fminf(bx0, x), bx1 = fmaxf(bx1, x), by0 = fminf(by0, y), by1 = fmaxf(by1, y);
        }
        float margin = 2.0f;
        if (bx1 - bx0 > W - 2 * margin || by1 - by0 > H - 2 * margin) {
            P.S *= 0.9f;
            continue;
        }
        float dx = bx0 < margin ? margin - bx0 : bx1 > W - margin ? W - margin - bx1 : 0;
        float dy = by0 < margin ? margin - by0 : by1 > H - margin ? H - margin - by1 : 0;
        P.cx += dx, P.cy += dy;
        bx0 += dx, bx1 += dx, by0 += dy, by1 += dy;
        if (dx == 0 && dy == 0) break;
    }
    int ax0 = (int)floorf(bx0) - 3, ax1 = (int)ceilf(bx1) + 3;
    int ay0 = (int)floorf(by0) - 3, ay1 = (int)ceilf(by1) + 3;

    /* Spray: a few translucent white blobs around the lower part of the animal. */
    spray sp[6];
    int n_spray = fl_rng_uniform(&r) < 0.3f ? 1 + (int)fl_rng_below(&r, 6) : 0;
    for (int k = 0; k < n_spray; k++) {
        sp[k].x = fl_rng_range(&r, bx0, bx1);
        sp[k].y = by0 + (by1 - by0) * fl_rng_range(&r, 0.6f, 1.05f);
        sp[k].r = (by1 - by0) * fl_rng_range(&r, 0.08f, 0.3f) + 1.0f;
        sp[k].alpha = fl_rng_range(&r, 0.3f, 0.85f);
    }

    out->w = W, out->h = H;
    out->rgb = malloc((size_t)W * H * 3);
    uint8_t *tmp = malloc((size_t)W * H * 3);
    if (!out->rgb || !tmp) {
        free(tmp);
        fl_synth_picture_free(out);
        return fl_errf(e, "synth: out of memory rendering %dx%d image", W, H);
    }
    float *row = malloc((size_t)W * 3 * sizeof *row);
    if (!row) {
        free(tmp);
        fl_synth_picture_free(out);
        return fl_errf(e, "synth: out of memory rendering %dx%d image", W, H);
    }
    float sx0 = 1e9f, sx1 = -1e9f, sy0 = 1e9f, sy1 = -1e9f; /* spray's bounding box */
    for (int k = 0; k < n_spray; k++) {
        sx0 = fminf(sx0, sp[k].x - sp[k].r), sx1 = fmaxf(sx1, sp[k].x + sp[k].r);
        sy0 = fminf(sy0, sp[k].y - sp[k].r), sy1 = fmaxf(sy1, sp[k].y + sp[k].r);
    }
    int mx0 = W, my0 = H, mx1 = -1, my1 = -1;
    float px = 1.0f / P.S;
    for (int y = 0; y < H; y++) {
        fl_synth_scene_row(&sc, y, row);
        if (y >= ay0 && y <= ay1)
            for (int x = ax0 < 0 ? 0 : ax0; x <= ax1 && x < W; x++) {
                float u, v, a[3], *c = row + 3 * x;
                to_local(&P, x + 0.5f, y + 0.5f, &u, &v);
                float cov = fl_synth_animal_sample(&id, u, v, px, wl, a);
                if (cov <= 0) continue;
                for (int k = 0; k < 3; k++) c[k] += (a[k] * light - c[k]) * cov;
                if (cov >= 0.5f) {
                    if (x < mx0) mx0 = x;
                    if (x > mx1) mx1 = x;
                    if (y < my0) my0 = y;
                    if (y > my1) my1 = y;
                }
            }
        if (y >= sy0 && y <= sy1)
            for (int x = sx0 < 0 ? 0 : (int)sx0; x <= sx1 && x < W; x++)
                for (int k = 0; k < n_spray; k++) {
                    float dx = (x - sp[k].x) / sp[k].r, dy = (y - sp[k].y) / sp[k].r;
                    float d = dx * dx + dy * dy;
                    if (d >= 1.0f) continue;
                    float n = fl_synth_vnoise(x * 0.35f, y * 0.35f, sc.tex_seed + (uint32_t)k);
                    float al = sp[k].alpha * (1.0f - d) * fl_synth_clampf(0.55f + 0.6f * n, 0, 1);
                    float *c = row + 3 * x;
                    c[0] += (0.90f - c[0]) * al, c[1] += (0.93f - c[1]) * al;
                    c[2] += (0.95f - c[2]) * al;
                }
        uint8_t *o = out->rgb + (size_t)y * W * 3;
        for (int k = 0; k < 3 * W; k++) {
            float vv = ((row[k] - 0.5f) * contrast + 0.5f + bright) * 255.0f;
            o[k] = (uint8_t)fl_synth_clampf(vv + 0.5f, 0, 255);
        }
    }
    free(row);
    uint32_t *acc = blur > 0 ? malloc((size_t)W * 3 * sizeof *acc) : NULL;
    if (blur > 0 && !acc) {
        free(tmp);
        fl_synth_picture_free(out);
        return fl_errf(e, "synth: out of memory rendering %dx%d image", W, H);
    }
    box_blur(out->rgb, W, H, blur, tmp, acc);
    free(acc);
    free(tmp);
    /* Sensor noise: triangular, from the image's own noise stream; integer arithmetic (16.16
     * fixed point) since this touches every byte of large images. */
    fl_rng nr;
    fl_rng_init(&nr, plan->params.seed, FL_SYNTH_STREAM_NOISE | (uint64_t)i);
    const int32_t K = (int32_t)lroundf(sc.noise_sigma * 2.45f * 65536.0f / 255.0f);
    size_t np = (size_t)W * H * 3;
    for (size_t k = 0; k < np; k += 2) {
        uint32_t b = fl_rng_u32(&nr); /* two triangular draws from 4 random bytes */
        for (size_t j = 0; j < 2 && k + j < np; j++, b >>= 16) {
            int32_t t = (int32_t)(b & 0xff) + (int32_t)((b >> 8) & 0xff) - 255; /* -255..255 */
            int32_t v = out->rgb[k + j] + ((t * K + 32768) >> 16);
            v = v < 0 ? 0 : v;
            out->rgb[k + j] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    if (mx1 < 0) { /* the animal vanished (cannot happen with the margins above): use the frame */
        mx0 = (int)bx0, my0 = (int)by0, mx1 = (int)bx1, my1 = (int)by1;
    }
    out->box.x1 = mx0, out->box.y1 = my0, out->box.x2 = mx1 + 1, out->box.y2 = my1 + 1;
    return 0;
}

void fl_synth_picture_free(fl_synth_picture *pic) {
    if (!pic) return;
    free(pic->rgb);
    pic->rgb = NULL;
}
