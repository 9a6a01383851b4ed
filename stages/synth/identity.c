/* Per-individual identity: the species silhouette with the individual's own deviations and the
 * marks researchers identify animals by (trailing-edge notches, scars, pigment patches, a
 * cut tip, fluke serrations and pigment). Drawn from the individual's own random stream, so an
 * animal looks the same in every image whatever else changes. */
#include <math.h>
#include <string.h>

#include "stages/synth/synth_internal.h"

static float rng_lognorm(fl_rng *r, float sigma) { return expf(sigma * fl_rng_normal(r)); }

void fl_synth_identity_make(const fl_synth_plan *plan, int individual, fl_synth_identity *id) {
    memset(id, 0, sizeof *id);
    fl_rng r;
    fl_rng_init(&r, plan->params.seed, FL_SYNTH_STREAM_IDENTITY | (uint64_t)individual);
    int s = plan->ind[individual].species;
    const fl_synth_species *sp = fl_synth_species_get(s);
    id->sp = sp;
    id->species = s;
    id->height = sp->height * rng_lognorm(&r, 0.10f);
    id->base = sp->base * rng_lognorm(&r, 0.08f);
    id->sweep = sp->sweep + 0.12f * fl_rng_normal(&r) * (sp->base > 0 ? sp->base : 1.0f);
    id->lead_pow = sp->lead_pow * rng_lognorm(&r, 0.10f);
    id->trail_pow = sp->trail_pow * rng_lognorm(&r, 0.15f);
    id->body_len = sp->body_len * rng_lognorm(&r, 0.06f);
    id->body_h = sp->body_h * rng_lognorm(&r, 0.08f);
    id->fin_pos = sp->fin_pos + 0.06f * fl_rng_normal(&r);
    id->tip_cut = fl_rng_uniform(&r) < 0.12f ? fl_rng_range(&r, 0.05f, 0.25f) : 0.0f;
    for (int c = 0; c < 3; c++) id->skin[c] = sp->body[c] / 255.0f;
    float tone = 1.0f + 0.10f * fl_rng_normal(&r);
    for (int c = 0; c < 3; c++) id->skin[c] = fl_synth_clampf(id->skin[c] * tone, 0.02f, 0.98f);

    /* Notches: most photographed adults carry a few; heavier-marked animals more. */
    float u = fl_rng_uniform(&r);
    id->n_notch = u < 0.15f ? 0 : u < 0.40f ? 1 : u < 0.65f ? 2 : u < 0.82f ? 3 : u < 0.93f ? 4
                                                                                     : 6;
    for (int k = 0; k < id->n_notch; k++) {
        fl_synth_notch *n = &id->notch[k];
        n->t = fl_rng_range(&r, 0.08f, 0.92f);
        n->depth = fl_rng_range(&r, 0.04f, 0.16f);
        n->width = fl_rng_range(&r, 0.02f, 0.07f);
        n->vshape = fl_rng_uniform(&r) < 0.5f;
    }
    /* Scars: light strokes; rake-marked species carry many parallel ones. */
    int rakes = sp->accent_kind == FL_ACCENT_RAKES;
    id->n_scar = (int)fl_rng_below(&r, rakes ? 3 : 4) + (rakes ? 3 : 0);
    if (id->n_scar > FL_SYNTH_MAX_SCAR) id->n_scar = FL_SYNTH_MAX_SCAR;
    float rake_ang = fl_rng_range(&r, -0.6f, 0.6f);
    for (int k = 0; k < id->n_scar; k++) {
        fl_synth_scar *sc = &id->scar[k];
        float ang = rakes ? rake_ang + 0.1f * fl_rng_normal(&r) : fl_rng_range(&r, -1.5f, 1.5f);
        float len = fl_rng_range(&r, 0.12f, 0.45f);
        sc->u0 = fl_rng_range(&r, -0.6f, 0.6f);
        sc->v0 = fl_rng_range(&r, -0.05f, 0.7f);
        sc->u1 = sc->u0 + len * cosf(ang);
        sc->v1 = sc->v0 + len * sinf(ang);
        sc->width = fl_rng_range(&r, 0.010f, 0.028f);
        sc->shade = fl_rng_range(&r, 0.25f, 0.55f);
    }
    /* Pigment patches: lighter or darker ellipses. */
    id->n_patch = (int)fl_rng_below(&r, FL_SYNTH_MAX_PATCH + 1);
    for (int k = 0; k < id->n_patch; k++) {
        fl_synth_patch *pa = &id->patch[k];
        pa->u = fl_rng_range(&r, -0.7f, 0.7f);
        pa->v = fl_rng_range(&r, -0.05f, 0.8f);
        pa->ru = fl_rng_range(&r, 0.04f, 0.16f);
        pa->rv = fl_rng_range(&r, 0.03f, 0.12f);
        pa->angle = fl_rng_range(&r, 0.0f, 3.14159f);
        pa->ca = cosf(pa->angle), pa->sa = sinf(pa->angle);
        pa->shade = (fl_rng_uniform(&r) < 0.6f ? 1.0f : -1.0f) * fl_rng_range(&r, 0.15f, 0.35f);
    }
    id->serration = sp->family == FL_FAMILY_FLUKE ? fl_rng_range(&r, 0.005f, 0.03f) : 0.0f;
    id->serr_freq = fl_rng_range(&r, 18.0f, 40.0f);
    id->serr_phase = fl_rng_range(&r, 0.0f, 6.2832f);
    id->pattern_seed = fl_rng_u32(&r);
    id->pattern_level = fl_rng_range(&r, -0.5f, 0.5f);
}

void fl_synth_identity_extent(const fl_synth_identity *id, float *umin, float *umax,
                              float *vmin, float *vmax) {
    switch (id->sp->family) {
    case FL_FAMILY_FLUKE:
        *umin = -1.02f; *umax = 1.02f;
        *vmin = -0.6f; *vmax = id->height + 0.35f;
        break;
    case FL_FAMILY_BACK: {
        float L = 0.65f * id->body_len; /* as in render_animal.c */
        float fin_u = id->fin_pos * L;
        *umin = -L; *umax = L;
        if (fin_u + id->base + fabsf(id->sweep) > *umax) *umax = fin_u + id->base + fabsf(id->sweep);
        *vmin = -0.05f;
        *vmax = id->body_h + id->height + 0.02f;
        break;
    }
    default:
        *umin = -id->body_len * 0.55f;
        *umax = id->body_len * 0.55f;
        if (id->sweep + id->base * 0.5f > *umax) *umax = id->sweep + id->base * 0.5f;
        *vmin = -id->body_h - 0.05f;
        *vmax = id->height + 0.02f;
        break;
    }
}
