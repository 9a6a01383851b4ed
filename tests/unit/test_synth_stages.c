/* The stages of issue 4 run directly through their fl_stage_def (the executor's context built
 * by hand, as the executor would in its child process): synth (tiny) -> both baselines ->
 * score, checking the declared outputs, metrics.json against a direct MAP@5 computation, and
 * that a config key outside the declared sections or a missing input fails cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A training stage includes both the plan and the tensor graph: their names must not meet. */
#include "runtime/graph.h"
#include "stages/api/plan.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

typedef struct runner {
    char root[64];
    fl_plan plan;
    cJSON *config;
    int devnull;
} runner;

static int setup(void **state) {
    runner *r = calloc(1, sizeof *r);
    strcpy(r->root, "/tmp/fluke_stages_XXXXXX");
    if (!mkdtemp(r->root)) return -1;
    fl_plan_init(&r->plan, r->root);
    r->config = cJSON_Parse("{\"synth\": {\"preset\": \"tiny\", \"seed\": 3},"
                            " \"baseline\": {\"knn\": {\"thumb\": 8}}}");
    r->devnull = open("/dev/null", O_WRONLY);
    *state = r;
    return r->config && r->devnull >= 0 ? 0 : -1;
}

static int teardown(void **state) {
    runner *r = *state;
    fl_err e;
    fl_remove_tree(r->root, &e);
    fl_plan_free(&r->plan);
    cJSON_Delete(r->config);
    close(r->devnull);
    free(r);
    return 0;
}

/* Runs node (already declared) with its inputs resolved to other nodes' out dirs. */
static int run_node(runner *r, fl_plan_node *n, fl_err *e) {
    char *out = fl_strdupf("%s/%s", r->root, n->id);
    char *work = fl_strdupf("%s/%s.work", r->root, n->id);
    fl_mkdirs(out, e);
    fl_mkdirs(work, e);
    const char *paths[8] = {0};
    char *owned[8] = {0};
    for (size_t k = 0; k < n->ninputs; k++)
        paths[k] = owned[k] = fl_strdupf("%s/%s", r->root, n->inputs[k].from_node);
    fl_stage_ctx c = {.node = n, .config = r->config, .out_dir = out, .work_dir = work,
                      .input_paths = paths, .threads = 2, .gpu = -1, .t_start = fl_now(),
                      .out_fd = r->devnull};
    int rc = n->def->run(&c, e);
    for (size_t k = 0; k < n->outputs.n && rc == 0; k++) {
        char *p = fl_strdupf("%s/%s", out, n->outputs.v[k]);
        struct stat st;
        if (stat(p, &st) != 0) rc = fl_errf(e, "declared output %s missing", n->outputs.v[k]);
        free(p);
    }
    for (size_t k = 0; k < n->ninputs; k++) free(owned[k]);
    free(out);
    free(work);
    return rc;
}

static double json_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_pipeline_of_issue4(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    fl_plan *p = &r->plan;
    fl_plan_node *syn = fl_plan_add(p, &fl_stage_synth, -1, &e);
    assert_non_null(syn);
    assert_int_equal(fl_plan_node_section(syn, "synth", &e), 0);
    assert_int_equal(fl_plan_node_output(syn, "data", &e), 0);
    assert_int_equal(fl_plan_node_output(syn, "truth", &e), 0);
    if (run_node(r, syn, &e) != 0) fail_msg("synth: %s", e.msg);

    fl_plan_node *nf = fl_plan_add(p, &fl_stage_baseline_new_first, -1, &e);
    assert_int_equal(fl_plan_node_input(nf, "data", "synth", &e), 0);
    assert_int_equal(fl_plan_node_output(nf, "submission.csv", &e), 0);
    if (run_node(r, nf, &e) != 0) fail_msg("baseline_new_first: %s", e.msg);

    fl_plan_node *knn = fl_plan_add(p, &fl_stage_baseline_knn, -1, &e);
    assert_int_equal(fl_plan_node_input(knn, "data", "synth", &e), 0);
    assert_int_equal(fl_plan_node_section(knn, "baseline.knn", &e), 0);
    assert_int_equal(fl_plan_node_output(knn, "submission.csv", &e), 0);
    if (run_node(r, knn, &e) != 0) fail_msg("baseline_knn: %s", e.msg);

    const char *subs[2] = {"baseline_new_first", "baseline_knn"};
    for (int k = 0; k < 2; k++) {
        char id[32];
        snprintf(id, sizeof id, "score_%d", k);
        fl_plan_node *sc = fl_plan_add_as(p, &fl_stage_score, id, &e);
        assert_non_null(sc);
        assert_int_equal(fl_plan_node_input(sc, "submission", subs[k], &e), 0);
        assert_int_equal(fl_plan_node_input(sc, "truth", "synth", &e), 0);
        assert_int_equal(fl_plan_node_output(sc, "metrics.json", &e), 0);
        if (run_node(r, sc, &e) != 0) fail_msg("%s: %s", id, e.msg);
        /* metrics.json agrees with scoring the files directly. */
        char *mpath = fl_strdupf("%s/%s/metrics.json", r->root, id);
        char *text = fl_read_file(mpath, NULL, &e);
        assert_non_null(text);
        cJSON *m = cJSON_Parse(text);
        assert_non_null(m);
        char *sol_path = fl_strdupf("%s/synth/truth/solution.csv", r->root);
        char *sub_path = fl_strdupf("%s/%s/submission.csv", r->root, subs[k]);
        fl_solution sol;
        fl_submission sub;
        fl_map5_result res;
        assert_int_equal(fl_solution_read(sol_path, &sol, &e), 0);
        assert_int_equal(fl_submission_read(sub_path, &sub, &e), 0);
        assert_int_equal(fl_map5_score(&sol, &sub, &res, &e), 0);
        assert_true(fabs(json_num(m, "map5") - res.all) < 1e-12);
        assert_true(fabs(json_num(m, "map5_public") - res.pub) < 1e-12);
        assert_true(fabs(json_num(m, "map5_private") - res.priv) < 1e-12);
        assert_int_equal((int)json_num(m, "n_images"), sol.n);
        const cJSON *nw = cJSON_GetObjectItemCaseSensitive(m, "new_individual");
        assert_true(fabs(json_num(nw, "map5") - res.fresh) < 1e-12);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(m, "species");
        assert_int_equal(cJSON_GetArraySize(sp), res.n_species);
        if (k == 0) assert_true(res.fresh == 1.0); /* new_individual first always hits new */
        fl_map5_result_free(&res);
        fl_submission_free(&sub);
        fl_solution_free(&sol);
        cJSON_Delete(m);
        free(text);
        free(mpath);
        free(sol_path);
        free(sub_path);
    }
}

static void test_stage_misuse_fails_cleanly(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    /* A node that forgot to declare its section: the programming error surfaces. */
    fl_plan_node *knn = fl_plan_add_as(&r->plan, &fl_stage_baseline_knn, "knn_bad", &e);
    assert_int_equal(fl_plan_node_input(knn, "data", "nowhere", &e), 0);
    assert_int_equal(fl_plan_node_output(knn, "submission.csv", &e), 0);
    assert_int_equal(run_node(r, knn, &e), -1);
    assert_non_null(strstr(e.msg, "baseline.knn"));
    /* An input that holds no data: the error names the path. */
    assert_int_equal(fl_plan_node_section(knn, "baseline.knn", &e), 0);
    assert_int_equal(run_node(r, knn, &e), -1);
    assert_non_null(strstr(e.msg, "nowhere"));
    /* Score without a truth input declared: an error naming the input. */
    fl_plan_node *sc = fl_plan_add_as(&r->plan, &fl_stage_score, "score_bad", &e);
    assert_int_equal(fl_plan_node_input(sc, "submission", "nowhere", &e), 0);
    assert_int_equal(run_node(r, sc, &e), -1);
    assert_non_null(strstr(e.msg, "truth"));
    /* synth with a bad section value: the message names the key. */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r->config, "synth"), "preset",
                              cJSON_CreateString("enormous"));
    fl_plan_node *syn = fl_plan_add_as(&r->plan, &fl_stage_synth, "synth_bad", &e);
    assert_int_equal(fl_plan_node_section(syn, "synth", &e), 0);
    assert_int_equal(run_node(r, syn, &e), -1);
    assert_non_null(strstr(e.msg, "enormous"));
}

static void test_preview_command(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    char *out = fl_strdupf("%s/sheet.jpg", r->root);
    char *ok[] = {"--preview", "--preset", "tiny", "--grid", "2x1", "--cell", "32", "--out", out};
    assert_int_equal(fl_synth_preview_main(9, ok, NULL, NULL, &e), 0);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    /* Without --out the sheet goes to the output directory; the config's synth section
     * (tiny, seed 3) is used when no preset is given. */
    char *cfg_out = fl_strdupf("%s/outdir", r->root);
    char *from_cfg[] = {"--preview", "--grid", "1x1", "--cell", "32"};
    assert_int_equal(fl_synth_preview_main(5, from_cfg, r->config, cfg_out, &e), 0);
    char *sheet = fl_strdupf("%s/synth_preview.jpg", cfg_out);
    assert_int_equal(stat(sheet, &st), 0);
    char *bogus[] = {"--preview", "--bogus"};
    assert_int_equal(fl_synth_preview_main(2, bogus, NULL, NULL, &e), 2);
    assert_non_null(strstr(e.msg, "--bogus"));
    char *no_flag[] = {"--preset", "tiny"};
    assert_int_equal(fl_synth_preview_main(2, no_flag, NULL, NULL, &e), 2);
    assert_non_null(strstr(e.msg, "--preview"));
    char *bad_preset[] = {"--preview", "--preset", "gigantic"};
    assert_int_equal(fl_synth_preview_main(3, bad_preset, NULL, NULL, &e), 2);
    assert_non_null(strstr(e.msg, "gigantic"));
    char *bad_seed[] = {"--preview", "--seed", "x1"};
    assert_int_equal(fl_synth_preview_main(3, bad_seed, NULL, NULL, &e), 2);
    free(out);
    free(cfg_out);
    free(sheet);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipeline_of_issue4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_misuse_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preview_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
