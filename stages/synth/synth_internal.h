/* Internal pieces of the synth generator shared between its files (not a public API). */
#ifndef FLUKE_SYNTH_INTERNAL_H
#define FLUKE_SYNTH_INTERNAL_H

#include <stdint.h>

#include "runtime/rng.h"
#include "stages/synth/synth.h"

/* ---------------------------------------------------------------- raw species spellings */

#define FL_SYNTH_NRAW 4
typedef struct fl_synth_raw_label {
    const char *raw;       /* as written in the real train.csv */
    const char *canonical; /* after the SPECS.md fix */
    int real_images;
} fl_synth_raw_label;
const fl_synth_raw_label *fl_synth_raw_label_get(int i);

/* ---------------------------------------------------------------- random streams
 * Each consumer has its own stream namespace (top byte), so adding draws in one place never
 * shifts another's numbers. */
#define FL_SYNTH_STREAM_PLAN (1ull << 56)
#define FL_SYNTH_STREAM_NAMES (2ull << 56)
#define FL_SYNTH_STREAM_IDENTITY (3ull << 56)   /* | individual */
#define FL_SYNTH_STREAM_ENCOUNTER (4ull << 56)  /* | individual << 16 | encounter */
#define FL_SYNTH_STREAM_IMAGE (5ull << 56)      /* | image index */
#define FL_SYNTH_STREAM_NOISE (6ull << 56)      /* | image index: pixel noise */

/* ---------------------------------------------------------------- identity (per individual) */

#define FL_SYNTH_MAX_NOTCH 6
#define FL_SYNTH_MAX_SCAR 5
#define FL_SYNTH_MAX_PATCH 5

typedef struct fl_synth_notch {
    float t, depth, width; /* position along the trailing edge, depth and half width */
    int vshape;            /* 1: V-shaped cut, 0: rounded bite */
} fl_synth_notch;

typedef struct fl_synth_scar {
    float u0, v0, u1, v1, width, shade;
} fl_synth_scar;

typedef struct fl_synth_patch {
    float u, v, ru, rv, angle, shade; /* ellipse in local units; shade: signed lightness */
    float ca, sa;                     /* cos and sin of angle, precomputed */
} fl_synth_patch;

typedef struct fl_synth_identity {
    const fl_synth_species *sp;
    int species;
    /* fin / fluke / back shape, species values with individual deviations */
    float height, base, sweep, lead_pow, trail_pow, body_len, body_h, fin_pos;
    float tip_cut;      /* fraction of the fin tip missing (0: intact) */
    float serration, serr_freq, serr_phase; /* trailing-edge wobble (flukes) */
    int n_notch, n_scar, n_patch;
    fl_synth_notch notch[FL_SYNTH_MAX_NOTCH];
    fl_synth_scar scar[FL_SYNTH_MAX_SCAR];
    fl_synth_patch patch[FL_SYNTH_MAX_PATCH];
    uint32_t pattern_seed; /* accent pattern noise (saddle edge, mottling, fluke pigment) */
    float pattern_level;   /* threshold of the accent pattern */
    float skin[3];         /* individual skin tone (linear 0..1) */
} fl_synth_identity;

void fl_synth_identity_make(const fl_synth_plan *plan, int individual, fl_synth_identity *id);

/* Local extent of the animal: u in [umin, umax], v in [vmin, vmax] (v up). */
void fl_synth_identity_extent(const fl_synth_identity *id, float *umin, float *umax, float *vmin,
                              float *vmax);

/* Coverage (0..1) and colour (0..1 RGB) of the animal at local point (u, v); px is the size of
 * one pixel in local units (for edge anti-aliasing); waterline: v below it is under water. */
float fl_synth_animal_sample(const fl_synth_identity *id, float u, float v, float px,
                             float waterline, float rgb[3]);

/* ---------------------------------------------------------------- scene (per encounter) */

typedef struct fl_synth_scene {
    int w, h;                  /* image size of the encounter's camera */
    float horizon;             /* horizon row as a fraction of height (< 0: no sky) */
    float sky_top[3], sky_bot[3];
    float water_deep[3], water_light[3];
    float wave_k[3], wave_dir[3], wave_phase[3], wave_amp[3];
    float chop;                /* amplitude of the fine value-noise texture */
    float sun_x, glare;        /* glare column (fraction of width) and strength */
    float noise_sigma;         /* pixel noise, in 0..255 units */
    float light;               /* sunlight level on the animal */
    /* animal placement, mean for the encounter */
    float area, cx, cy, rot, persp_a, persp_b, waterline;
    int mirrored;
    uint32_t tex_seed;
} fl_synth_scene;

void fl_synth_scene_make(const fl_synth_plan *plan, int individual, int encounter,
                         fl_synth_scene *s);
/* Background colours (0..1 RGB) of image row y: rgb gets s->w * 3 floats. */
void fl_synth_scene_row(const fl_synth_scene *s, int y, float *rgb);

/* ---------------------------------------------------------------- small shared helpers */

/* Smooth value noise in [-1, 1] on an integer lattice hashed with seed. */
float fl_synth_vnoise(float x, float y, uint32_t seed);

/* The same noise with the lattice corners of the last cell cached: along an image row many
 * pixels share a cell, so this skips most of the hashing and returns identical values. */
typedef struct fl_synth_vcache {
    int32_t ix, iy;
    uint32_t seed;
    int valid;
    float a, b, c, d;
} fl_synth_vcache;
float fl_synth_vnoise_cached(fl_synth_vcache *vc, float x, float y, uint32_t seed);
static inline float fl_synth_clampf(float x, float lo, float hi) {
    x = x > lo ? x : lo; /* two selects the compiler turns into maxss/minss, no branches */
    return x < hi ? x : hi;
}
/* Writes n lowercase hex digits of v (plus NUL) into out. */
void fl_synth_hex(uint64_t v, int n, char *out);

#endif
