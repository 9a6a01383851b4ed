/* The `synth` config section -> generator parameters: a preset, then per-key overrides. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stages/synth/synth.h"

static int get_int(const cJSON *o, const char *key, int *out, fl_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 2147483647.0)
        return fl_errf(e, "synth.%s: must be an integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *o, const char *key, double *out, fl_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return fl_errf(e, "synth.%s: must be a number", key);
    *out = v->valuedouble;
    return 0;
}

int fl_synth_params_from_json(const cJSON *o, fl_synth_params *p, fl_err *e) {
    if (o && !cJSON_IsObject(o)) return fl_errf(e, "synth: must be an object");
    const cJSON *pre = o ? cJSON_GetObjectItemCaseSensitive(o, "preset") : NULL;
    if (pre && !cJSON_IsString(pre)) return fl_errf(e, "synth.preset: must be a string");
    if (fl_synth_preset(pre ? pre->valuestring : "smoke", p, e) != 0) return -1;
    if (!o) return 0;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (seed) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble > 9.0e15 ||
            seed->valuedouble != floor(seed->valuedouble))
            return fl_errf(e, "synth.seed: must be a non-negative integer");
        p->seed = (uint64_t)seed->valuedouble;
    }
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(o, "raw_species");
    if (raw) {
        if (!cJSON_IsBool(raw)) return fl_errf(e, "synth.raw_species: must be true or false");
        p->raw_species = cJSON_IsTrue(raw);
    }
    if (get_int(o, "n_train", &p->n_train, e) || get_int(o, "n_test", &p->n_test, e) ||
        get_int(o, "min_side", &p->min_side, e) || get_int(o, "max_side", &p->max_side, e) ||
        get_int(o, "quality_min", &p->quality_min, e) ||
        get_int(o, "quality_max", &p->quality_max, e) ||
        get_num(o, "new_share", &p->new_share, e) || get_num(o, "box_share", &p->box_share, e) ||
        get_num(o, "public_share", &p->public_share, e) ||
        get_num(o, "same_encounter", &p->same_encounter, e))
        return -1;
    return fl_synth_params_check(p, e);
}
