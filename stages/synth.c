/* Stage "synth": the embedded default data set (stages/synth/synth.h), and the
 * `fluke synth --preview` command that draws a contact sheet of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codeid/synth.h"
#include "stages/api/stage.h"
#include "stages/synth/stages.h"
#include "stages/synth/synth.h"

const fl_cfg_field fl_synth_schema[] = {
    {"synth", FL_CFG_OBJ, 0, "embedded synthetic Happywhale data", 0, 0},
    {"synth.preset", FL_CFG_STR, 0, "tiny | smoke (default) | large", 0, 0},
    {"synth.seed", FL_CFG_INT, 0, "random seed (same seed -> byte-identical files)", 0, 9e15},
    {"synth.n_train", FL_CFG_INT, 0, "train images", 20, 2000000},
    {"synth.n_test", FL_CFG_INT, 0, "test images", 1, 2000000},
    {"synth.min_side", FL_CFG_INT, 0, "smallest longer image side, pixels", 32, 8192},
    {"synth.max_side", FL_CFG_INT, 0, "largest longer image side, pixels", 32, 8192},
    {"synth.new_share", FL_CFG_NUM, 0, "share of test images showing new individuals (0.12)", 0, 1},
    {"synth.box_share", FL_CFG_NUM, 0, "share of train images in train_boxes.csv (0.25)", 0, 1},
    {"synth.public_share", FL_CFG_NUM, 0, "share of test images in the public split (0.2)", 0, 1},
    {"synth.same_encounter", FL_CFG_NUM, 0,
     "chance a known test image comes from one of the train photo sessions (0.5)", 0, 1},
    {"synth.quality_min", FL_CFG_INT, 0, "lowest JPEG quality", 1, 100},
    {"synth.quality_max", FL_CFG_INT, 0, "highest JPEG quality", 1, 100},
    {"synth.raw_species", FL_CFG_BOOL, 0, "write the real data's misspelled species labels", 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

char *fl_synth_data_dir(const char *dir) {
    char *sub = fl_strdupf("%s/data/train.csv", dir);
    struct stat st;
    int nested = sub && stat(sub, &st) == 0;
    free(sub);
    return nested ? fl_strdupf("%s/data", dir) : strdup(dir);
}

static void progress(void *user, int done, int total) {
    fl_stage_ctx *c = user;
    if (done == total || done % 500 == 0)
        fl_stage_progress(c, (uint64_t)done, (uint64_t)total, "img", "rendering");
}

static int run_synth(fl_stage_ctx *c, fl_err *e) {
    fl_err ignore = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "synth", &ignore); /* absent: the defaults */
    if (!sec && strstr(ignore.msg, "programming error")) return fl_errf(e, "%s", ignore.msg);
    fl_synth_params p;
    if (fl_synth_params_from_json(sec, &p, e) != 0) return -1;
    fl_synth_plan plan;
    if (fl_synth_plan_make(&p, &plan, e) != 0) return -1;
    fl_stage_log(c, "preset %s seed %llu: %d train + %d test images, %d individuals, %d-%d px",
                 p.preset, (unsigned long long)p.seed, p.n_train, p.n_test, plan.n_individuals,
                 p.min_side, p.max_side);
    char *data = fl_strdupf("%s/data", fl_stage_out_dir(c));
    char *truth = fl_strdupf("%s/truth", fl_stage_out_dir(c));
    int rc = fl_synth_write(&plan, data, truth, fl_stage_threads(c), progress, c, e);
    free(data);
    free(truth);
    fl_synth_plan_free(&plan);
    return rc;
}

const fl_stage_def fl_stage_synth = {
    .name = "synth",
    .code_id = FL_CODE_ID,
    .summary = "generate the embedded synthetic Happywhale data (Kaggle layout + hidden truth)",
    .run = run_synth,
};

int fl_synth_preview_main(int argc, char **argv, const cJSON *config, const char *out_dir,
                          fl_err *e) {
    const char *preset = NULL, *out = NULL;
    long seed = -1;
    int cols = 6, rows = 4, cell = 200, preview = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--preview") == 0) preview = 1;
        else if (strcmp(a, "--preset") == 0 && v) preset = v, i++;
        else if (strcmp(a, "--out") == 0 && v) out = v, i++;
        else if (strcmp(a, "--seed") == 0 && v && (seed = strtol(v, &end, 10)) >= 0 && !*end) i++;
        else if (strcmp(a, "--cell") == 0 && v && (cell = (int)strtol(v, &end, 10)) > 0 && !*end) i++;
        else if (strcmp(a, "--grid") == 0 && v && sscanf(v, "%dx%d", &cols, &rows) == 2) i++;
        else return fl_errf(e, "synth: bad or incomplete argument \"%s\" (usage: fluke %s)", a,
                            FL_SYNTH_COMMAND_USAGE), 2;
    }
    if (!preview)
        return fl_errf(e, "synth: only --preview is a command; the data itself is the `synth` "
                       "stage of `fluke run`"), 2;
    fl_synth_params p;
    const cJSON *sec = config ? cJSON_GetObjectItemCaseSensitive(config, "synth") : NULL;
    if (preset) {
        if (fl_synth_preset(preset, &p, e) != 0) return 2;
        if (sec) { /* keep the configured seed unless overridden */
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(sec, "seed");
            if (cJSON_IsNumber(s) && s->valuedouble >= 0) p.seed = (uint64_t)s->valuedouble;
        }
    } else if (fl_synth_params_from_json(sec, &p, e) != 0) {
        return 2;
    }
    if (seed >= 0) p.seed = (uint64_t)seed;
    fl_synth_plan plan;
    if (fl_synth_plan_make(&p, &plan, e) != 0) return 1;
    char *path = out ? strdup(out) : fl_strdupf("%s/synth_preview.jpg", out_dir ? out_dir : ".");
    int rc = out_dir && !out ? fl_mkdirs(out_dir, e) : 0;
    if (rc == 0) rc = fl_synth_preview(&plan, path, cols, rows, cell, e);
    fl_synth_plan_free(&plan);
    if (rc == 0)
        printf("wrote %s (%dx%d %s images, seed %llu)\n", path, cols, rows, p.preset,
               (unsigned long long)p.seed);
    free(path);
    return rc == 0 ? 0 : 1;
}

const fl_command fl_synth_command = FL_SYNTH_COMMAND;
