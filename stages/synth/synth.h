/* synth: the embedded default data set, a synthetic Happywhale generator.
 *
 * Writes the Kaggle layout (train.csv, train_images/, test_images/, sample_submission.csv, a
 * public-format box file for a share of train images) plus a hidden solution.csv in a separate
 * directory. Label statistics follow the real competition (SPECS.md section 1); images are
 * rendered by our own code (sea scene + one animal with per-individual marks) and encoded with
 * libjpeg-turbo.
 *
 * Determinism: every random choice derives from (seed, a stable identity: individual, encounter,
 * image index) through the counter-based Philox generator, so the files are byte-identical for a
 * seed whatever the thread count. */
#ifndef FLUKE_SYNTH_H
#define FLUKE_SYNTH_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "artifacts/util.h"

/* ---------------------------------------------------------------- species */

#define FL_SYNTH_NSPECIES 26

typedef enum fl_synth_family {
    FL_FAMILY_DORSAL, /* a dorsal fin on a strip of back (most dolphins, killer whale) */
    FL_FAMILY_FLUKE,  /* raised tail flukes seen from behind (humpback) */
    FL_FAMILY_BACK,   /* a long back with a small fin or none (beluga, baleen whales) */
} fl_synth_family;

typedef enum fl_synth_accent {
    FL_ACCENT_NONE,
    FL_ACCENT_SADDLE,   /* light saddle patch behind the fin (killer whale) */
    FL_ACCENT_SPOTS,    /* many small spots (spotted dolphins) */
    FL_ACCENT_FLANK,    /* light flank band low on the body (dusky, common, white-sided) */
    FL_ACCENT_MOTTLE,   /* mottled skin (gray, blue whale) */
    FL_ACCENT_RAKES,    /* many parallel white scars (beaked whales, pilot whales) */
    FL_ACCENT_PIEBALD,  /* large black/white fields (commerson's dolphin) */
} fl_synth_accent;

typedef struct fl_synth_species {
    const char *name;    /* real competition name, after the SPECS.md fixes */
    int real_images;     /* images of this species in the real train.csv */
    fl_synth_family family;
    float height, base;  /* fin height and base length (local units) */
    float sweep;         /* tip offset backwards (falcate fins) */
    float lead_pow, trail_pow; /* leading/trailing edge curvature exponents */
    float body_len, body_h;    /* visible back: half length and height */
    float fin_pos;       /* fin position along the back, in body half lengths */
    uint8_t body[3];     /* skin colour */
    uint8_t accent[3];   /* accent pattern colour */
    fl_synth_accent accent_kind;
    float size;          /* apparent size: scales the share of the frame the animal fills */
} fl_synth_species;

const fl_synth_species *fl_synth_species_get(int i); /* 0 <= i < FL_SYNTH_NSPECIES */
int fl_synth_species_find(const char *name);         /* index or -1 */

/* ---------------------------------------------------------------- parameters and presets */

typedef struct fl_synth_params {
    char preset[16];
    uint64_t seed;
    int n_train, n_test;     /* images */
    int min_side, max_side;  /* range of the longer image side, pixels */
    double new_share;        /* share of test images showing individuals absent from train */
    double box_share;        /* share of train images listed in the box file */
    double public_share;     /* share of test images in the public leaderboard split */
    double same_encounter;   /* chance a known test image comes from a train encounter */
    int quality_min, quality_max; /* JPEG quality range */
    int raw_species;         /* 1: write the raw misspelled species labels of the real data */
} fl_synth_params;

/* Fills p with a named preset: "tiny" (tests), "smoke" (default, CPU), "large" (GPU runs). */
int fl_synth_preset(const char *name, fl_synth_params *p, fl_err *e);
/* The `synth` config object (NULL: defaults): "preset" (default smoke) then overrides of any
 * field above by its name; checked. */
int fl_synth_params_from_json(const cJSON *o, fl_synth_params *p, fl_err *e);
/* Checks ranges; the message names the parameter. */
int fl_synth_params_check(const fl_synth_params *p, fl_err *e);

/* ---------------------------------------------------------------- the label plan */

typedef struct fl_synth_individual {
    char id[16];     /* 12 lowercase hex digits, like the real ids */
    int species;
    int n_train, n_test;
    int n_encounters;
    int is_new;      /* appears only in test */
    int raw_label;   /* index into the raw-spelling table, -1 for the canonical name */
} fl_synth_individual;

typedef struct fl_synth_image {
    char name[24];   /* 14 hex digits + ".jpg" */
    int individual;
    int encounter;   /* per individual */
    int is_test;
    int has_box;     /* train: listed in the box file */
    int is_public;   /* test: public leaderboard split */
} fl_synth_image;

typedef struct fl_synth_plan {
    fl_synth_params params;
    int n_individuals;
    fl_synth_individual *ind;
    int n_images;        /* train images first (n_train), then test (n_test) */
    fl_synth_image *img;
} fl_synth_plan;

/* The label plan: individuals, species, images per individual, test split, names. No pixels. */
int fl_synth_plan_make(const fl_synth_params *p, fl_synth_plan *plan, fl_err *e);
void fl_synth_plan_free(fl_synth_plan *plan);
/* The species label written to train.csv for an individual (raw spelling when configured). */
const char *fl_synth_species_label(const fl_synth_plan *plan, int individual);

/* ---------------------------------------------------------------- rendering */

typedef struct fl_synth_box {
    int x1, y1, x2, y2; /* pixels, x2/y2 exclusive */
} fl_synth_box;

typedef struct fl_synth_picture {
    int w, h;
    uint8_t *rgb;      /* w*h*3, malloc'd */
    fl_synth_box box;  /* the animal's visible extent */
    int quality;       /* JPEG quality chosen for this image */
} fl_synth_picture;

/* Renders image i of the plan (deterministic in (seed, i)). */
int fl_synth_render(const fl_synth_plan *plan, int i, fl_synth_picture *out, fl_err *e);
void fl_synth_picture_free(fl_synth_picture *pic);

/* JPEG encoding (TurboJPEG, 4:2:0). *buf is malloc'd. */
int fl_synth_jpeg_encode(const uint8_t *rgb, int w, int h, int quality, unsigned char **buf,
                         unsigned long *len, fl_err *e);

/* ---------------------------------------------------------------- output */

typedef void (*fl_synth_progress_fn)(void *user, int done, int total);

/* Writes the data set: data_dir gets the Kaggle layout, truth_dir gets solution.csv.
 * threads <= 0 means OpenMP's default. */
int fl_synth_write(const fl_synth_plan *plan, const char *data_dir, const char *truth_dir,
                   int threads, fl_synth_progress_fn progress, void *user, fl_err *e);

/* A contact sheet: cols x rows train images (one per species first) scaled into cell x cell
 * tiles with their boxes drawn, as one JPEG. */
int fl_synth_preview(const fl_synth_plan *plan, const char *path, int cols, int rows, int cell,
                     fl_err *e);

#endif
