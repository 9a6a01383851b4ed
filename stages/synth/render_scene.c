/* The sea scene of one encounter: camera size, sky and horizon, water colour, waves, fine chop,
 * sun glare, noise level, and where the animal sits. Images of one encounter (a photo burst)
 * share all of it up to small per-image jitter, which is what makes photos of one sighting look
 * alike beyond the animal itself, as in the real data. */
#include <math.h>

#include "stages/synth/synth_internal.h"

static uint32_t hash3(int32_t x, int32_t y, uint32_t seed) {
    uint32_t h = seed ^ 0x27d4eb2du;
    h ^= (uint32_t)x * 0x85ebca6bu;
    h = (h << 13) | (h >> 19);
    h ^= (uint32_t)y * 0xc2b2ae35u;
    h *= 0x9e3779b1u;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return h;
}

static float corner(int32_t x, int32_t y, uint32_t seed) {
    return (float)hash3(x, y, seed) * (1.0f / 2147483648.0f) - 1.0f;
}

static float smooth_mix(float a, float b, float c, float d, float tx, float ty) {
    tx = tx * tx * (3 - 2 * tx);
    ty = ty * ty * (3 - 2 * ty);
    return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}

float fl_synth_vnoise(float x, float y, uint32_t seed) {
    float fx = floorf(x), fy = floorf(y);
    int32_t ix = (int32_t)fx, iy = (int32_t)fy;
    return smooth_mix(corner(ix, iy, seed), corner(ix + 1, iy, seed), corner(ix, iy + 1, seed),
                      corner(ix + 1, iy + 1, seed), x - fx, y - fy);
}

float fl_synth_vnoise_cached(fl_synth_vcache *vc, float x, float y, uint32_t seed) {
    float fx = floorf(x), fy = floorf(y);
    int32_t ix = (int32_t)fx, iy = (int32_t)fy;
    if (!vc->valid || vc->ix != ix || vc->iy != iy || vc->seed != seed) {
        vc->a = corner(ix, iy, seed), vc->b = corner(ix + 1, iy, seed);
        vc->c = corner(ix, iy + 1, seed), vc->d = corner(ix + 1, iy + 1, seed);
        vc->ix = ix, vc->iy = iy, vc->seed = seed, vc->valid = 1;
    }
    return smooth_mix(vc->a, vc->b, vc->c, vc->d, x - fx, y - fy);
}

static void set3(float *dst, float a, float b, float c) { dst[0] = a, dst[1] = b, dst[2] = c; }

void fl_synth_scene_make(const fl_synth_plan *plan, int individual, int encounter,
                         fl_synth_scene *s) {
    fl_rng r;
    fl_rng_init(&r, plan->params.seed,
                FL_SYNTH_STREAM_ENCOUNTER | ((uint64_t)individual << 16) | (uint64_t)encounter);
    const fl_synth_params *p = &plan->params;
    int longer = p->min_side + (int)fl_rng_below(&r, (uint32_t)(p->max_side - p->min_side + 1));
    float u = fl_rng_uniform(&r);
    float aspect = u < 0.6f ? 1.5f : u < 0.8f ? 4.0f / 3.0f : u < 0.9f ? 16.0f / 9.0f : 2.0f / 3.0f;
    if (aspect >= 1) {
        s->w = longer;
        s->h = (int)lroundf(longer / aspect);
    } else {
        s->h = longer;
        s->w = (int)lroundf(longer * aspect);
    }
    s->horizon = fl_rng_uniform(&r) < 0.45f ? -0.3f : fl_rng_range(&r, 0.04f, 0.40f);
    float haze = fl_rng_range(&r, 0.0f, 0.4f);
    set3(s->sky_top, fl_rng_range(&r, 0.30f, 0.55f), fl_rng_range(&r, 0.45f, 0.65f),
         fl_rng_range(&r, 0.70f, 0.92f));
    for (int k = 0; k < 3; k++) s->sky_bot[k] = s->sky_top[k] + (0.92f - s->sky_top[k]) * (0.5f + haze);
    /* Water: a blend of deep blue, green and grey seas, darker or brighter with the weather. */
    float wb = fl_rng_uniform(&r), wg = fl_rng_uniform(&r) * 0.7f, wr = fl_rng_uniform(&r) * 0.6f;
    float tot = wb + wg + wr + 1e-3f, bright = fl_rng_range(&r, 0.6f, 1.4f);
    for (int k = 0; k < 3; k++) {
        static const float deep_b[3] = {0.04f, 0.16f, 0.30f}, deep_g[3] = {0.07f, 0.20f, 0.17f},
                           deep_r[3] = {0.20f, 0.22f, 0.24f};
        s->water_deep[k] = bright * (wb * deep_b[k] + wg * deep_g[k] + wr * deep_r[k]) / tot;
        s->water_light[k] = fl_synth_clampf(s->water_deep[k] * 1.7f + 0.08f, 0, 1);
    }
    float dir = fl_rng_range(&r, -0.5f, 0.5f), amp = fl_rng_range(&r, 0.3f, 1.0f);
    for (int k = 0; k < 3; k++) {
        s->wave_k[k] = fl_rng_range(&r, 4.0f, 14.0f) * (1.0f + k);
        s->wave_dir[k] = dir + fl_rng_range(&r, -0.6f, 0.6f);
        s->wave_phase[k] = fl_rng_range(&r, 0, 6.2832f);
        s->wave_amp[k] = amp * fl_rng_range(&r, 0.2f, 0.5f) / (1.0f + k);
    }
    s->chop = fl_rng_range(&r, 0.1f, 0.5f);
    s->sun_x = fl_rng_uniform(&r);
    s->glare = fl_rng_uniform(&r) < 0.5f ? 0.0f : fl_rng_range(&r, 0.2f, 0.9f);
    s->noise_sigma = fl_rng_range(&r, 1.0f, 6.0f);
    s->light = fl_rng_range(&r, 0.75f, 1.2f);
    /* Target animal area 3-50% of the frame, skewed so that the measured box (which rotation,
     * perspective and species size enlarge) has a median near the real fin boxes' 6%. */
    s->area = 0.03f * powf(0.5f / 0.03f, powf(fl_rng_uniform(&r), 3.0f));
    s->cx = fl_rng_range(&r, 0.3f, 0.7f);
    s->cy = fl_rng_range(&r, 0.35f, 0.7f);
    s->rot = fl_rng_range(&r, -0.2f, 0.2f);
    s->persp_a = fl_rng_range(&r, -0.15f, 0.15f);
    s->persp_b = fl_rng_range(&r, -0.10f, 0.10f);
    s->waterline = fl_rng_uniform(&r);
    s->mirrored = fl_rng_uniform(&r) < 0.5f;
    s->tex_seed = fl_rng_u32(&r);
}

void fl_synth_scene_row(const fl_synth_scene *s, int y, float *rgb) {
    int W = s->w;
    float hy = s->horizon * s->h, yc = y + 0.5f;
    if (yc < hy) {
        float t = yc / (hy > 1 ? hy : 1);
        float base[3];
        for (int k = 0; k < 3; k++) base[k] = s->sky_top[k] + (s->sky_bot[k] - s->sky_top[k]) * t;
        fl_synth_vcache vc = {0};
        for (int x = 0; x < W; x++) {
            float *o = rgb + 3 * x;
            float cl = fl_synth_vnoise_cached(&vc, (x + 0.5f) / W * 6.0f, yc / s->h * 14.0f,
                                              s->tex_seed ^ 0x55u);
            float a = cl > 0.2f ? (cl - 0.2f) * 0.8f : 0.0f;
            for (int k = 0; k < 3; k++) o[k] = base[k] + (0.95f - base[k]) * a;
        }
        return;
    }
    float d = (yc - hy) / (s->h - hy); /* 0 at the horizon, 1 at the bottom row */
    float inv = 1.0f / (d + 0.08f);
    float fade = sqrtf(d); /* far waves are small and blur into haze */
    float haze = (1.0f - d) * (1.0f - d);
    haze = haze * haze * 0.8f;
    /* Along a row each wave's phase is linear in x: advance it by a rotation (double precision,
     * so rows thousands of pixels long do not drift) instead of calling sin per pixel. */
    double sn[3], cs[3], dsn[3], dcs[3];
    float Y = inv * 0.25f, dX = inv * 0.6f / W;
    for (int k = 0; k < 3; k++) {
        float c = cosf(s->wave_dir[k]), si = sinf(s->wave_dir[k]);
        double ph0 = s->wave_k[k] * ((0.5 / W - 0.5) * inv * 0.6 * si + Y * c) + s->wave_phase[k];
        double dph = s->wave_k[k] * dX * si;
        sn[k] = sin(ph0), cs[k] = cos(ph0), dsn[k] = sin(dph), dcs[k] = cos(dph);
    }
    float chop = s->chop * fade, ny = yc / s->h * 70.0f, nx = 14.0f * inv * 0.3f / W;
    fl_synth_vcache vc = {0};
    for (int x = 0; x < W; x++) {
        float w = 0;
        for (int k = 0; k < 3; k++) {
            w += s->wave_amp[k] * (float)sn[k];
            double ns = sn[k] * dcs[k] + cs[k] * dsn[k];
            cs[k] = cs[k] * dcs[k] - sn[k] * dsn[k];
            sn[k] = ns;
        }
        w = w * fade + chop * fl_synth_vnoise_cached(&vc, (x + 0.5f) * nx, ny, s->tex_seed);
        float t = fl_synth_clampf(0.5f + 0.45f * w, 0, 1);
        float *o = rgb + 3 * x;
        for (int k = 0; k < 3; k++) {
            float c = s->water_deep[k] + (s->water_light[k] - s->water_deep[k]) * t;
            o[k] = c + (s->sky_bot[k] - c) * haze;
        }
        if (s->glare > 0 && w > 0) {
            float gx = ((x + 0.5f) / W - s->sun_x) / 0.12f;
            if (gx * gx < 16.0f) {
                float g = s->glare * expf(-gx * gx) * w * w * 2.0f * (1.0f - 0.5f * d);
                for (int k = 0; k < 3; k++) o[k] += g;
            }
        }
    }
}
