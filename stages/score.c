/* Stage "score": a submission against the hidden solution -> metrics.json (MAP@5 overall, on
 * the public and private splits, for known and new individuals, and per species). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codeid/score.h"
#include "stages/api/stage.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

static char *find_file(const char *dir, const char *sub, const char *name) {
    struct stat st;
    char *p = fl_strdupf("%s/%s/%s", dir, sub, name);
    if (p && stat(p, &st) == 0) return p;
    free(p);
    return fl_strdupf("%s/%s", dir, name);
}

static cJSON *group(double map, int n) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "map5", map);
    cJSON_AddNumberToObject(o, "n", n);
    return o;
}

static int run_score(fl_stage_ctx *c, fl_err *e) {
    const char *sub_dir = fl_stage_input(c, "submission", e);
    if (!sub_dir) return -1;
    const char *truth_dir = fl_stage_input(c, "truth", e);
    if (!truth_dir) return -1;
    char *sub_path = fl_strdupf("%s/submission.csv", sub_dir);
    char *sol_path = find_file(truth_dir, "truth", "solution.csv");
    char *out = fl_strdupf("%s/metrics.json", fl_stage_out_dir(c));
    fl_submission sub = {0};
    fl_solution sol = {0};
    fl_map5_result r = {0};
    cJSON *j = NULL;
    char *text = NULL;
    int rc = -1;
    if (fl_solution_read(sol_path, &sol, e) != 0) goto done;
    if (fl_submission_read(sub_path, &sub, e) != 0) goto done;
    if (fl_map5_score(&sol, &sub, &r, e) != 0) goto done;
    j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "map5", r.all);
    cJSON_AddNumberToObject(j, "map5_public", r.pub);
    cJSON_AddNumberToObject(j, "map5_private", r.priv);
    cJSON_AddNumberToObject(j, "n_images", r.n_all);
    cJSON_AddNumberToObject(j, "n_public", r.n_pub);
    cJSON_AddNumberToObject(j, "n_private", r.n_priv);
    cJSON_AddItemToObject(j, "known", group(r.known, r.n_known));
    cJSON_AddItemToObject(j, "new_individual", group(r.fresh, r.n_fresh));
    cJSON *sp = cJSON_AddObjectToObject(j, "species");
    for (int k = 0; k < r.n_species; k++)
        cJSON_AddItemToObject(sp, r.species[k].name,
                              group(r.species[k].sum / r.species[k].n, r.species[k].n));
    text = cJSON_Print(j);
    if (!text) { fl_errf(e, "score: out of memory"); goto done; }
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON leaves room for the NUL only: rewrite it as a newline */
    if (fl_write_file_atomic(out, text, len + 1, e) != 0) goto done;
    fl_stage_log(c, "MAP@5 %.5f (public %.5f on %d, private %.5f on %d; known %.5f, new %.5f)",
                 r.all, r.pub, r.n_pub, r.priv, r.n_priv, r.known, r.fresh);
    rc = 0;
done:
    cJSON_free(text);
    cJSON_Delete(j);
    fl_map5_result_free(&r);
    fl_submission_free(&sub);
    fl_solution_free(&sol);
    free(sub_path);
    free(sol_path);
    free(out);
    return rc;
}

const fl_stage_def fl_stage_score = {
    .name = "score",
    .code_id = FL_CODE_ID,
    .summary = "score submission.csv against the hidden solution (MAP@5) into metrics.json",
    .run = run_score,
};
