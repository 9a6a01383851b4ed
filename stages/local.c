/* Stage "local": the competition's data from a folder or zip already on disk, stored as the
 * same "data" tree the fetch stage writes (stages/local/stages.h). */
#include <stdlib.h>
#include <string.h>

#include "codeid/local.h"
#include "stages/local/stages.h"

const fl_cfg_field fl_local_schema[] = {
    {"local", FL_CFG_OBJ, 0, "the competition's data already on disk (pipeline.source \"local\")",
     0, 0},
    {"local.path", FL_CFG_STR, 0,
     "a folder in the Kaggle layout (train.csv, sample_submission.csv, train_images/, "
     "test_images/) or the competition zip (happy-whale-and-dolphin.zip); relative to the "
     "config's folder; only ever read",
     0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

static void progress(void *user, uint64_t files) {
    fl_stage_progress(user, files, 0, "file", "copying");
}

static int run_local(fl_stage_ctx *c, fl_err *e) {
    fl_local_stats st = {.progress = progress, .user = c};
    char *data = fl_strdupf("%s/data", fl_stage_out_dir(c));
    if (!data) return fl_errf(e, "out of memory");
    int rc;
    if (fl_stage_has_input(c, "zip")) {
        char *scratch = fl_strdupf("%s/extract", fl_stage_work_dir(c));
        const char *zip = fl_stage_input(c, "zip", e);
        rc = !zip       ? -1
             : !scratch ? fl_errf(e, "out of memory")
                        : fl_local_import_zip(zip, scratch, data, &st, e);
        if (rc == 0) fl_stage_log(c, "zip %s", zip);
        free(scratch);
    } else {
        /* The inputs are PATH/train.csv, ...: the folder is the first one's parent. */
        const char *csv = fl_stage_input(c, fl_local_entries[0], e);
        char *dir = csv ? strdup(csv) : NULL;
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) *slash = 0;
        rc = !csv     ? -1
             : !slash ? fl_errf(e, "out of memory")
                      : fl_local_import_dir(dir, data, &st, e);
        if (rc == 0) fl_stage_log(c, "folder %s", dir);
        free(dir);
    }
    if (rc == 0) {
        fl_stage_log(c, "%llu files (%.1f MB): %d train images, %d test images%s",
                     (unsigned long long)st.files, (double)st.bytes / 1e6, st.train_rows,
                     st.test_rows, st.species_fixed ? "" : "; no species label to fix");
        if (st.species_fixed)
            fl_stage_log(
                c, "train.csv: %d rows with a misspelt species (fixed when read, as for fetch)",
                st.species_fixed);
    }
    free(data);
    return rc;
}

const fl_stage_def fl_stage_local = {
    .name = "local",
    .code_id = FL_CODE_ID,
    .summary = "the competition's data from a folder or zip on disk (local.path), never modified",
    .run = run_local,
};
