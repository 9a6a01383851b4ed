/* The 26 species of the competition (after the SPECS.md label fixes), with their real image
 * counts and a silhouette/colour description loosely following each animal's field marks. */
#include "stages/synth/synth.h"

#include <string.h>

#include "stages/synth/synth_internal.h"

/* name, real images, family, height, base, sweep, lead_pow, trail_pow, body_len, body_h,
 * fin_pos, body rgb, accent rgb, accent, apparent size */
static const fl_synth_species SPECIES[FL_SYNTH_NSPECIES] = {
    {"bottlenose_dolphin", 10781, FL_FAMILY_DORSAL, 1.00f, 1.15f, 0.45f, 1.6f, 0.60f, 1.9f, 0.28f,
     0.0f, {104, 112, 120}, {150, 156, 162}, FL_ACCENT_NONE, 1.00f},
    {"beluga", 7443, FL_FAMILY_BACK, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 2.2f, 0.60f, 0.2f,
     {222, 222, 212}, {190, 192, 186}, FL_ACCENT_NONE, 1.10f},
    {"humpback_whale", 7392, FL_FAMILY_FLUKE, 0.55f, 0.0f, 0.0f, 1.6f, 2.5f, 1.0f, 0.0f, 0.0f,
     {28, 30, 34}, {236, 236, 232}, FL_ACCENT_PIEBALD, 1.30f},
    {"blue_whale", 4830, FL_FAMILY_BACK, 0.16f, 0.35f, 0.15f, 1.4f, 0.7f, 2.6f, 0.46f, 0.55f,
     {92, 112, 132}, {150, 166, 180}, FL_ACCENT_MOTTLE, 1.35f},
    {"false_killer_whale", 3326, FL_FAMILY_DORSAL, 1.05f, 1.00f, 0.50f, 1.7f, 0.55f, 1.8f, 0.26f,
     0.0f, {32, 34, 38}, {60, 62, 66}, FL_ACCENT_NONE, 1.00f},
    {"dusky_dolphin", 3139, FL_FAMILY_DORSAL, 0.85f, 1.00f, 0.30f, 1.5f, 0.75f, 1.6f, 0.26f,
     0.0f, {50, 56, 66}, {196, 200, 204}, FL_ACCENT_FLANK, 0.85f},
    {"killer_whale", 2455, FL_FAMILY_DORSAL, 1.55f, 1.05f, 0.10f, 1.1f, 0.90f, 2.0f, 0.30f,
     0.0f, {14, 14, 16}, {176, 178, 180}, FL_ACCENT_SADDLE, 1.20f},
    {"spinner_dolphin", 1700, FL_FAMILY_DORSAL, 0.95f, 0.85f, 0.05f, 1.2f, 1.0f, 1.5f, 0.22f,
     0.0f, {74, 80, 90}, {140, 146, 152}, FL_ACCENT_FLANK, 0.80f},
    {"melon_headed_whale", 1689, FL_FAMILY_DORSAL, 0.90f, 0.95f, 0.30f, 1.4f, 0.75f, 1.7f, 0.26f,
     0.0f, {40, 44, 50}, {70, 74, 80}, FL_ACCENT_NONE, 0.90f},
    {"minke_whale", 1608, FL_FAMILY_BACK, 0.40f, 0.50f, 0.25f, 1.5f, 0.6f, 2.2f, 0.38f, 0.45f,
     {60, 66, 74}, {170, 174, 178}, FL_ACCENT_NONE, 1.10f},
    {"fin_whale", 1324, FL_FAMILY_BACK, 0.36f, 0.55f, 0.30f, 1.6f, 0.55f, 2.6f, 0.40f, 0.50f,
     {70, 74, 80}, {128, 132, 136}, FL_ACCENT_NONE, 1.30f},
    {"gray_whale", 1123, FL_FAMILY_BACK, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 2.4f, 0.52f, 0.3f,
     {112, 114, 114}, {206, 204, 196}, FL_ACCENT_MOTTLE, 1.25f},
    {"southern_right_whale", 866, FL_FAMILY_BACK, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 2.0f, 0.56f,
     0.0f, {22, 22, 26}, {214, 206, 190}, FL_ACCENT_SPOTS, 1.30f},
    {"short_finned_pilot_whale", 745, FL_FAMILY_DORSAL, 0.80f, 1.45f, 0.35f, 1.3f, 0.50f, 1.9f,
     0.30f, -0.15f, {24, 26, 30}, {150, 152, 156}, FL_ACCENT_RAKES, 1.00f},
    {"spotted_dolphin", 490, FL_FAMILY_DORSAL, 0.90f, 0.95f, 0.35f, 1.5f, 0.70f, 1.5f, 0.24f,
     0.0f, {70, 78, 92}, {200, 204, 210}, FL_ACCENT_SPOTS, 0.85f},
    {"sei_whale", 428, FL_FAMILY_BACK, 0.50f, 0.55f, 0.25f, 1.4f, 0.60f, 2.5f, 0.42f, 0.40f,
     {64, 70, 78}, {110, 116, 124}, FL_ACCENT_NONE, 1.25f},
    {"common_dolphin", 347, FL_FAMILY_DORSAL, 0.90f, 0.90f, 0.30f, 1.4f, 0.75f, 1.5f, 0.24f,
     0.0f, {36, 42, 52}, {204, 180, 120}, FL_ACCENT_FLANK, 0.85f},
    {"cuviers_beaked_whale", 341, FL_FAMILY_BACK, 0.32f, 0.50f, 0.20f, 1.4f, 0.70f, 2.0f, 0.40f,
     0.50f, {116, 100, 84}, {226, 222, 214}, FL_ACCENT_RAKES, 1.00f},
    {"long_finned_pilot_whale", 238, FL_FAMILY_DORSAL, 0.75f, 1.55f, 0.45f, 1.3f, 0.45f, 2.0f,
     0.30f, -0.15f, {20, 22, 24}, {120, 122, 126}, FL_ACCENT_SADDLE, 1.00f},
    {"white_sided_dolphin", 229, FL_FAMILY_DORSAL, 0.90f, 1.00f, 0.40f, 1.5f, 0.65f, 1.6f, 0.26f,
     0.0f, {30, 34, 40}, {214, 216, 218}, FL_ACCENT_FLANK, 0.85f},
    {"brydes_whale", 154, FL_FAMILY_BACK, 0.42f, 0.50f, 0.30f, 1.6f, 0.55f, 2.3f, 0.38f, 0.45f,
     {76, 80, 88}, {120, 124, 130}, FL_ACCENT_NONE, 1.20f},
    {"pantropic_spotted_dolphin", 145, FL_FAMILY_DORSAL, 0.85f, 0.90f, 0.40f, 1.6f, 0.65f, 1.4f,
     0.22f, 0.0f, {60, 66, 80}, {214, 216, 220}, FL_ACCENT_SPOTS, 0.80f},
    {"commersons_dolphin", 90, FL_FAMILY_DORSAL, 0.70f, 1.10f, 0.05f, 1.0f, 1.6f, 1.2f, 0.26f,
     0.0f, {16, 16, 18}, {236, 236, 236}, FL_ACCENT_PIEBALD, 0.75f},
    {"pygmy_killer_whale", 76, FL_FAMILY_DORSAL, 0.85f, 0.95f, 0.35f, 1.5f, 0.70f, 1.5f, 0.24f,
     0.0f, {30, 32, 38}, {88, 92, 100}, FL_ACCENT_NONE, 0.85f},
    {"rough_toothed_dolphin", 60, FL_FAMILY_DORSAL, 0.80f, 1.10f, 0.25f, 1.2f, 0.75f, 1.6f,
     0.24f, 0.0f, {56, 60, 70}, {204, 206, 210}, FL_ACCENT_SPOTS, 0.85f},
    {"frasiers_dolphin", 14, FL_FAMILY_DORSAL, 0.55f, 0.85f, 0.10f, 1.1f, 1.0f, 1.5f, 0.24f,
     0.0f, {84, 90, 100}, {40, 44, 52}, FL_ACCENT_FLANK, 0.80f},
};

/* Raw spellings of the real train.csv that the SPECS.md fixes merge (counts as in the public
 * exploratory analyses of the real file: they sum with the canonical labels to SPECS' totals). */
static const fl_synth_raw_label RAW[FL_SYNTH_NRAW] = {
    {"bottlenose_dolpin", "bottlenose_dolphin", 1117},
    {"kiler_whale", "killer_whale", 962},
    {"pilot_whale", "short_finned_pilot_whale", 262},
    {"globis", "short_finned_pilot_whale", 116},
};

const fl_synth_species *fl_synth_species_get(int i) {
    if (i < 0 || i >= FL_SYNTH_NSPECIES) return NULL;
    return &SPECIES[i];
}

int fl_synth_species_find(const char *name) {
    for (int i = 0; i < FL_SYNTH_NSPECIES; i++)
        if (strcmp(SPECIES[i].name, name) == 0) return i;
    return -1;
}

const fl_synth_raw_label *fl_synth_raw_label_get(int i) {
    if (i < 0 || i >= FL_SYNTH_NRAW) return NULL;
    return &RAW[i];
}
