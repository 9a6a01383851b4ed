/* Named parameter sets of the generator and their range checks. */
#include <stdio.h>
#include <string.h>

#include "stages/synth/synth.h"

int fl_synth_preset(const char *name, fl_synth_params *p, fl_err *e) {
    memset(p, 0, sizeof *p);
    if (!name) return fl_errf(e, "synth preset: no name given (tiny, smoke, large)");
    p->seed = 1;
    p->new_share = 0.12;       /* SPECS.md: an estimated 10-16% of test images are new */
    p->box_share = 0.25;
    p->public_share = 0.2;     /* our choice: a public split a few times smaller than private */
    p->same_encounter = 0.5;
    p->quality_min = 75;
    p->quality_max = 95;
    p->raw_species = 1;
    if (strcmp(name, "tiny") == 0) {
        p->n_train = 120;
        p->n_test = 48;
        p->min_side = 96;
        p->max_side = 128;
    } else if (strcmp(name, "smoke") == 0) {
        p->n_train = 3000;
        p->n_test = 1000;
        p->min_side = 256;
        p->max_side = 384;
    } else if (strcmp(name, "large") == 0) {
        p->n_train = 30000;
        p->n_test = 12000;
        p->min_side = 1000;
        p->max_side = 3000;
    } else {
        return fl_errf(e, "synth preset: unknown preset \"%s\" (expected tiny, smoke or large)",
                       name);
    }
    snprintf(p->preset, sizeof p->preset, "%s", name);
    return 0;
}

int fl_synth_params_check(const fl_synth_params *p, fl_err *e) {
    if (p->n_train < 20 || p->n_train > 2000000)
        return fl_errf(e, "synth.n_train: %d out of range [20, 2000000]", p->n_train);
    if (p->n_test < 1 || p->n_test > 2000000)
        return fl_errf(e, "synth.n_test: %d out of range [1, 2000000]", p->n_test);
    if (p->min_side < 32 || p->max_side > 8192 || p->min_side > p->max_side)
        return fl_errf(e, "synth.min_side/max_side: need 32 <= min_side (%d) <= max_side (%d) "
                       "<= 8192", p->min_side, p->max_side);
    if (!(p->new_share >= 0 && p->new_share <= 1))
        return fl_errf(e, "synth.new_share: %g out of range [0, 1]", p->new_share);
    if (!(p->box_share >= 0 && p->box_share <= 1))
        return fl_errf(e, "synth.box_share: %g out of range [0, 1]", p->box_share);
    if (!(p->public_share >= 0 && p->public_share <= 1))
        return fl_errf(e, "synth.public_share: %g out of range [0, 1]", p->public_share);
    if (!(p->same_encounter >= 0 && p->same_encounter <= 1))
        return fl_errf(e, "synth.same_encounter: %g out of range [0, 1]", p->same_encounter);
    if (p->quality_min < 1 || p->quality_max > 100 || p->quality_min > p->quality_max)
        return fl_errf(e, "synth.quality_min/quality_max: need 1 <= %d <= %d <= 100",
                       p->quality_min, p->quality_max);
    return 0;
}
