/* The animal in its local frame: u across (the animal faces -u), v up, fin height ~1 unit.
 * Each family is an implicit shape (a signed margin in local units, turned into anti-aliased
 * coverage with the pixel footprint) plus a colour function with the species accents and the
 * individual's marks. */
#include <math.h>

#include "stages/synth/synth_internal.h"

static float bump(float z, int vshape) {
    float a = fabsf(z);
    if (a >= 1.0f) return 0.0f;
    return vshape ? 1.0f - a : sqrtf(1.0f - a * a);
}

static float cover(float margin, float px) { return fl_synth_clampf(0.5f + margin / px, 0, 1); }

/* Dorsal fin with base centred at (u0, v0): margin > 0 inside. */
static float fin_margin(const fl_synth_identity *id, float u, float v, float u0, float v0) {
    float H = id->height, B = id->base, S = id->sweep;
    if (H <= 0) return -1e9f;
    float t = (v - v0) / H;
    float tc = fl_synth_clampf(t, 0.0f, 1.0f);
    float lead = u0 - 0.5f * B + (S + 0.5f * B) * powf(tc, id->lead_pow);
    float hook = 0.3f * B * (1.0f / id->trail_pow - 1.0f);
    float trail = u0 + (1.0f - tc) * 0.5f * B + tc * S - hook * sinf(3.14159265f * tc);
    /* Notches bite into the trailing edge but never sever the fin (at most 60% of its width). */
    float cut = 0;
    for (int k = 0; k < id->n_notch; k++) {
        const fl_synth_notch *n = &id->notch[k];
        cut += n->depth * B * bump((tc - n->t) / n->width, n->vshape);
    }
    trail -= fminf(cut, 0.6f * fmaxf(trail - lead, 0.0f));
    float top = (1.0f - id->tip_cut) * H - (v - v0);
    float m = fminf(u - lead, trail - u);
    return fminf(m, top);
}

static float seg_dist(float u, float v, const fl_synth_scar *s) {
    float du = s->u1 - s->u0, dv = s->v1 - s->v0;
    float l2 = du * du + dv * dv;
    float t = l2 > 0 ? ((u - s->u0) * du + (v - s->v0) * dv) / l2 : 0;
    t = fl_synth_clampf(t, 0, 1);
    float x = u - (s->u0 + t * du), y = v - (s->v0 + t * dv);
    return sqrtf(x * x + y * y);
}

static void mix(float rgb[3], const float c[3], float a) {
    for (int k = 0; k < 3; k++) rgb[k] += (c[k] - rgb[k]) * a;
}

static void lighten(float rgb[3], float shade) {
    for (int k = 0; k < 3; k++)
        rgb[k] = shade > 0 ? rgb[k] + (1.0f - rgb[k]) * shade : rgb[k] * (1.0f + shade);
}

/* Individual marks shared by all families: pigment patches and scars. */
static void apply_marks(const fl_synth_identity *id, float u, float v, float px, float rgb[3]) {
    for (int k = 0; k < id->n_patch; k++) {
        const fl_synth_patch *p = &id->patch[k];
        float c = p->ca, s = p->sa;
        float x = ((u - p->u) * c + (v - p->v) * s) / p->ru;
        float y = (-(u - p->u) * s + (v - p->v) * c) / p->rv;
        float d = x * x + y * y;
        if (d < 1.0f) lighten(rgb, p->shade * fl_synth_clampf((1.0f - d) * 3.0f, 0, 1));
    }
    for (int k = 0; k < id->n_scar; k++) {
        const fl_synth_scar *s = &id->scar[k];
        float d = seg_dist(u, v, s);
        float a = fl_synth_clampf(0.5f + (s->width - d) / fmaxf(px, 1e-4f), 0, 1);
        if (a > 0) lighten(rgb, s->shade * a);
    }
}

static void accent(const fl_synth_identity *id, float u, float v, float vlo, float vhi,
                   float rgb[3]) {
    float ac[3];
    for (int k = 0; k < 3; k++) ac[k] = id->sp->accent[k] / 255.0f;
    uint32_t ps = id->pattern_seed;
    switch (id->sp->accent_kind) {
    case FL_ACCENT_SADDLE: { /* light saddle behind the fin, its edge the individual's own */
        float cu = 0.55f * id->base + 0.25f, cv = -0.45f * id->body_h;
        float d = ((u - cu) * (u - cu)) / 0.16f + ((v - cv) * (v - cv)) / (0.36f * id->body_h * id->body_h + 1e-4f);
        if (d < 1.35f && d < 1.0f + 0.35f * fl_synth_vnoise(u * 4.0f, v * 4.0f, ps))
            mix(rgb, ac, 0.85f);
        break;
    }
    case FL_ACCENT_SPOTS: {
        float n = fl_synth_vnoise(u * 24.0f, v * 24.0f, ps ^ 0x9e3779b9u);
        if (n > 0.62f + 0.15f * id->pattern_level) mix(rgb, ac, 0.7f);
        break;
    }
    case FL_ACCENT_FLANK: {
        float n1 = fl_synth_vnoise(u * 4.0f, v * 4.0f, ps);
        float edge = vlo + (vhi - vlo) * (0.25f + 0.12f * n1) + 0.1f * sinf(u * 2.5f);
        if (v < edge) mix(rgb, ac, 0.75f);
        break;
    }
    case FL_ACCENT_MOTTLE: {
        float n = 0.6f * fl_synth_vnoise(u * 7.0f, v * 7.0f, ps) +
                  0.4f * fl_synth_vnoise(u * 17.0f, v * 17.0f, ps + 1);
        if (n > 0.15f + 0.3f * id->pattern_level) mix(rgb, ac, 0.55f);
        break;
    }
    case FL_ACCENT_PIEBALD: {
        float n = 0.7f * fl_synth_vnoise(u * 3.0f, v * 5.0f, ps) +
                  0.3f * fl_synth_vnoise(u * 9.0f, v * 11.0f, ps + 7);
        if (n > id->pattern_level) mix(rgb, ac, 0.92f);
        break;
    }
    default:
        break;
    }
}

static float dorsal_sample(const fl_synth_identity *id, float u, float v, float px, float wl,
                           float rgb[3]) {
    float L = id->body_len * 0.55f, bh = id->body_h;
    float back_top = bh * (1.0f - (u / L) * (u / L)) - bh;
    float m_back = fminf(back_top - v, L - fabsf(u));
    /* Below its base the fin continues straight down into the back (no gap at the corners). */
    float m_fin = fin_margin(id, u, fmaxf(v, 0.0f), 0.0f, 0.0f);
    float m = fmaxf(m_back, m_fin);
    float cov = cover(m, px) * cover(v - wl, px);
    if (cov <= 0) return 0;
    for (int k = 0; k < 3; k++) rgb[k] = id->skin[k];
    if (id->sp->accent_kind == FL_ACCENT_PIEBALD && u > 0.6f * id->base && v < 0)
        for (int k = 0; k < 3; k++) rgb[k] = id->sp->accent[k] / 255.0f;
    else
        accent(id, u, v, wl, id->height, rgb);
    apply_marks(id, u, v, px, rgb);
    /* Sky light from above, wet dark skin near the water, a sheen on the leading edge. */
    float lit = 0.78f + 0.32f * fl_synth_clampf((v - wl) / (id->height - wl + 1e-3f), 0, 1);
    for (int k = 0; k < 3; k++) rgb[k] *= lit;
    if (m_fin > 0 && m_fin < 0.05f && u < id->sweep) lighten(rgb, 0.12f);
    return cov;
}

static float fluke_sample(const fl_synth_identity *id, float u, float v, float px, float wl,
                          float rgb[3]) {
    float au = fabsf(u), H = id->height;
    float span = 1.0f - 0.5f * id->tip_cut;
    float vlo = 0.05f + 0.30f * powf(au, id->lead_pow);
    float chord = H * (1.0f - powf(fminf(au, 1.0f), id->trail_pow)) + 0.03f;
    float vhi = vlo + chord - 0.12f * fmaxf(0.0f, 1.0f - au / 0.10f);
    float cut = 0;
    for (int k = 0; k < id->n_notch; k++) {
        const fl_synth_notch *n = &id->notch[k];
        float uk = 2.0f * n->t - 1.0f;
        cut += n->depth * H * bump((u - uk) / (n->width * 2.0f), n->vshape);
    }
    vhi -= fminf(cut, 0.6f * fmaxf(vhi - vlo, 0.0f));
    vhi += id->serration * sinf(u * id->serr_freq + id->serr_phase);
    float m_fl = fminf(fminf(v - vlo, vhi - v), span - au);
    float half = 0.10f + 0.05f * (v + 0.6f);
    float m_ped = fminf(half - au, 0.12f - v);
    float m = fmaxf(m_fl, m_ped);
    float cov = cover(m, px) * cover(v - wl, px);
    if (cov <= 0) return 0;
    for (int k = 0; k < 3; k++) rgb[k] = id->skin[k];
    if (m_fl > 0) {
        accent(id, u, v, vlo, vhi, rgb);
        if (vhi - v < 0.035f) /* dark trailing-edge margin */
            for (int k = 0; k < 3; k++) rgb[k] = id->skin[k];
    }
    apply_marks(id, u, v, px, rgb);
    float lit = 0.85f + 0.2f * fl_synth_clampf(v / (H + 0.3f), 0, 1);
    for (int k = 0; k < 3; k++) rgb[k] *= lit;
    return cov;
}

static float back_sample(const fl_synth_identity *id, float u, float v, float px, float wl,
                         float rgb[3]) {
    float L = 0.65f * id->body_len, bh = id->body_h; /* the part of a long back in view */
    float x = u / L;
    float top = x * x < 1.0f ? bh * sqrtf(1.0f - x * x) : -1.0f;
    float m_back = fminf(top - v, L - fabsf(u));
    float u0 = id->fin_pos * L, x0 = u0 / L;
    float base_v = x0 * x0 < 1.0f ? bh * sqrtf(1.0f - x0 * x0) : 0.0f;
    float m_fin = id->height > 0 ? fin_margin(id, u, fmaxf(v, base_v - 0.02f), u0, base_v - 0.02f)
                                 : -1e9f;
    float m = fmaxf(m_back, m_fin);
    float cov = cover(m, px) * cover(v - wl, px);
    if (cov <= 0) return 0;
    for (int k = 0; k < 3; k++) rgb[k] = id->skin[k];
    if (id->sp->accent_kind == FL_ACCENT_SPOTS) { /* callosities on the head end */
        float n = fl_synth_vnoise(u * 5.0f, v * 5.0f, id->pattern_seed);
        if (u < -0.35f * L && n > 0.3f + 0.2f * id->pattern_level) {
            float ac[3];
            for (int k = 0; k < 3; k++) ac[k] = id->sp->accent[k] / 255.0f;
            mix(rgb, ac, 0.85f);
        }
    } else {
        accent(id, u, v, wl, bh + id->height, rgb);
    }
    /* Marks live near the fin (or mid back when finless): shift into that frame. */
    apply_marks(id, (u - u0) / (id->height > 0 ? 1.0f : 1.6f), v - base_v * 0.5f, px, rgb);
    float lit = 0.75f + 0.35f * fl_synth_clampf((v - wl) / (bh + id->height - wl + 1e-3f), 0, 1);
    for (int k = 0; k < 3; k++) rgb[k] *= lit;
    return cov;
}

float fl_synth_animal_sample(const fl_synth_identity *id, float u, float v, float px,
                             float waterline, float rgb[3]) {
    switch (id->sp->family) {
    case FL_FAMILY_FLUKE:
        return fluke_sample(id, u, v, px, -0.6f + 0.55f * waterline, rgb);
    case FL_FAMILY_BACK:
        return back_sample(id, u, v, px, id->body_h * 0.55f * waterline, rgb);
    default:
        return dorsal_sample(id, u, v, px, -id->body_h * (1.0f - 0.85f * waterline), rgb);
    }
}
