/* Stage "fetch": the Kaggle competition's data, downloaded (resumable, in the work directory)
 * and extracted safely into the output "data". The cache key holds the "kaggle" section; the
 * output's digest is the extracted tree, so downstream stages keep their cache when the same
 * data is downloaded again. */
#include <stdlib.h>
#include <string.h>

#include "codeid/fetch.h"
#include "stages/fetch/stages.h"

const fl_cfg_field fl_kaggle_schema[] = {
    {"kaggle", FL_CFG_OBJ, 0, "the Kaggle competition (fetch stage, fluke submit)", 0, 0},
    {"kaggle.competition", FL_CFG_STR, 0, "competition slug, e.g. happy-whale-and-dolphin", 0, 0},
    {"kaggle.base_url", FL_CFG_STR, 0, "API base URL (default https://api.kaggle.com)", 0, 0},
    {"kaggle.files", FL_CFG_ARR, 0, "only these data files (default: the whole competition zip)",
     0, 0},
    {"kaggle.files[]", FL_CFG_STR, 0, "a data file name as ListDataFiles reports it", 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

/* Reads and type-checks the section; names point into config. files is malloc'd. */
static int read_section(const cJSON *sec, const char **comp, const char **base,
                        const char ***files, size_t *nfiles, fl_err *e) {
    *comp = *base = NULL;
    if (files) *files = NULL, *nfiles = 0;
    if (!cJSON_IsObject(sec)) return fl_errf(e, "config key 'kaggle' must be an object");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(sec, "competition");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(sec, "base_url");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(sec, "files");
    if (!c) return fl_errf(e, "config key 'kaggle.competition' is missing (e.g. \"happy-whale-and-dolphin\")");
    if (!cJSON_IsString(c) || !c->valuestring[0])
        return fl_errf(e, "config key 'kaggle.competition' must be a non-empty string");
    for (const char *p = c->valuestring; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
              (*p >= 'A' && *p <= 'Z')))
            return fl_errf(e, "config key 'kaggle.competition': '%s' is not a competition slug",
                           c->valuestring);
    *comp = c->valuestring;
    if (b && (!cJSON_IsString(b) || !b->valuestring[0]))
        return fl_errf(e, "config key 'kaggle.base_url' must be a non-empty string");
    *base = b ? b->valuestring : NULL;
    if (f && files) {
        if (!cJSON_IsArray(f)) return fl_errf(e, "config key 'kaggle.files' must be an array of strings");
        int n = cJSON_GetArraySize(f);
        *files = calloc((size_t)n + 1, sizeof **files);
        if (!*files) return fl_errf(e, "out of memory");
        for (int i = 0; i < n; i++) {
            const cJSON *x = cJSON_GetArrayItem(f, i);
            if (!cJSON_IsString(x) || !x->valuestring[0]) {
                free(*files);
                *files = NULL;
                return fl_errf(e, "config key 'kaggle.files[%d]' must be a non-empty string", i);
            }
            (*files)[i] = x->valuestring;
        }
        *nfiles = (size_t)n;
    }
    return 0;
}

int fl_kaggle_submit_opts(const cJSON *config, const char **competition, fl_kaggle_opts *opts,
                          fl_err *e) {
    const cJSON *sec = config ? cJSON_GetObjectItemCaseSensitive(config, "kaggle") : NULL;
    if (!sec) return fl_errf(e, "the config has no 'kaggle' section (kaggle.competition is needed to submit)");
    const char *base;
    if (read_section(sec, competition, &base, NULL, NULL, e) < 0) return -1;
    memset(opts, 0, sizeof *opts);
    opts->base_url = base;
    opts->progress = 1;
    return 0;
}

static int run_fetch(fl_stage_ctx *c, fl_err *e) {
    const cJSON *sec = fl_stage_cfg(c, "kaggle", e);
    if (!sec) return -1;
    const char *comp, *base, **files;
    size_t nfiles;
    if (read_section(sec, &comp, &base, &files, &nfiles, e) < 0) return -1;
    FILE *log = fl_stage_log_file(c);
    fl_kaggle_opts o = {.base_url = base, .progress = 1, .log = log};
    fl_kaggle *k = fl_kaggle_new(&o, e);
    int rc = -1;
    if (k) {
        fl_stage_log(c, "competition %s via %s (credentials: %s)", comp,
                     base ? base : FL_KAGGLE_DEFAULT_BASE, fl_kaggle_cred_source(k));
        char *data = fl_strdupf("%s/data", fl_stage_out_dir(c));
        rc = data ? fl_kaggle_fetch(k, comp, files, nfiles, fl_stage_work_dir(c), data, e)
                  : fl_errf(e, "out of memory");
        free(data);
        fl_kaggle_free(k);
    }
    free(files);
    if (log) fclose(log);
    return rc;
}

const fl_stage_def fl_stage_fetch = {
    .name = "fetch",
    .code_id = FL_CODE_ID,
    .summary = "download and extract the Kaggle competition data (kaggle.competition)",
    .run = run_fetch,
};
