/* The stages embed_train[k] and embed[k] through their fl_stage_def (the executor's context
 * built by hand, as test_crop_stage.c does) on the tiny fold layout of embed_fixture.h:
 * embed_train[0] writes the model and train_metrics.json and logs the crop-less image;
 * embed[0] writes the embeddings artifact (every train crop in folds.csv order, then the test
 * crops; unit rows; the same numbers as fl_embinfer_run with flip TTA on that model); a fold
 * the file does not have is an error naming folds.csv. */
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
#include <unistd.h>

#include "embed_fixture.h"
#include "stages/api/plan.h"
#include "stages/embed/embed.h"
#include "stages/ident/embeddings.h"

static embf g_fix;
static char g_cfg[1200]; /* {"embed": <embf_opts_json>} */

static int group_setup(void **state) {
    (void)state;
    fl_err e = {{0}};
    if (embf_make(&g_fix, &e)) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        return -1;
    }
    /* the folds stage's output dir: folds/folds.csv */
    char dir[192], dst[256];
    snprintf(dir, sizeof dir, "%s/folds", g_fix.root);
    snprintf(dst, sizeof dst, "%s/folds.csv", dir);
    size_t n;
    char *txt = fl_read_file(g_fix.folds_csv, &n, &e);
    if (!txt || fl_mkdirs(dir, &e) || fl_write_file_atomic(dst, txt, n, &e)) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        free(txt);
        return -1;
    }
    free(txt);
    char opts[1024];
    embf_opts_json(opts, sizeof opts, "");
    snprintf(g_cfg, sizeof g_cfg, "{\"embed\": %s}", opts);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    embf_free(&g_fix);
    return 0;
}

/* Runs stage `def` instance k with inputs (name, node id) pairs; its log goes to root/<id>.log. */
static int run_stage(const fl_stage_def *def, int k, const char *const *inputs, int ninputs,
                     char *log_path, size_t cap, fl_err *e) {
    fl_plan plan;
    fl_plan_init(&plan, g_fix.root);
    cJSON *cfg = cJSON_Parse(g_cfg);
    assert_non_null(cfg);
    fl_plan_node *n = fl_plan_add(&plan, def, k, e);
    assert_non_null(n);
    assert_int_equal(fl_plan_node_section(n, "embed", e), 0);
    const char *paths[4] = {0};
    char *owned[4] = {0};
    for (int i = 0; i < ninputs; i++) {
        assert_int_equal(fl_plan_node_input(n, inputs[2 * i], inputs[2 * i + 1], e), 0);
        paths[i] = owned[i] = fl_strdupf("%s/%s", g_fix.root, inputs[2 * i + 1]);
    }
    char *out = fl_strdupf("%s/%s", g_fix.root, n->id), *work = fl_strdupf("%s/%s.work", g_fix.root, n->id);
    snprintf(log_path, cap, "%s/%s.log", g_fix.root, n->id);
    assert_int_equal(fl_mkdirs(out, e), 0);
    assert_int_equal(fl_mkdirs(work, e), 0);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    fl_stage_ctx c = {.node = n, .config = cfg, .out_dir = out, .work_dir = work,
                      .input_paths = paths, .threads = 1, .gpu = -1, .t_start = fl_now(),
                      .out_fd = fd};
    int rc = n->def->run(&c, e);
    close(fd);
    for (int i = 0; i < ninputs; i++) free(owned[i]);
    free(out);
    free(work);
    cJSON_Delete(cfg);
    fl_plan_free(&plan);
    return rc;
}

static char *slurp(const char *path) {
    fl_err e = {{0}};
    size_t n;
    char *b = fl_read_file(path, &n, &e);
    if (!b) fail_msg("%s", e.msg);
    return b;
}

static void test_train_then_embed(void **state) {
    (void)state;
    fl_err e = {{0}};
    char log[256];
    static const char *const tin[] = {"folds", "folds", "crop", "crop"};
    if (run_stage(&fl_stage_embed_train, 0, tin, 2, log, sizeof log, &e)) {
        char *l = slurp(log);
        fail_msg("embed_train[0]: %s\nlog:\n%s", e.msg, l);
    }
    char *l = slurp(log);
    if (!strstr(l, "1 train images have no crop") || !strstr(l, "ArcFace over 9 individuals"))
        fail_msg("log:\n%s", l);
    free(l);
    char model[256], metrics[256];
    snprintf(model, sizeof model, "%s/embed_train[0]/%s", g_fix.root, FL_EMBED_MODEL_FILE);
    snprintf(metrics, sizeof metrics, "%s/embed_train[0]/%s", g_fix.root, FL_EMBED_METRICS_FILE);
    assert_int_equal(access(model, F_OK), 0);
    assert_int_equal(access(metrics, F_OK), 0);

    static const char *const ein[] = {"folds", "folds", "crop", "crop", "model", "embed_train[0]"};
    if (run_stage(&fl_stage_embed, 0, ein, 3, log, sizeof log, &e)) {
        l = slurp(log);
        fail_msg("embed[0]: %s\nlog:\n%s", e.msg, l);
    }
    l = slurp(log);
    if (!strstr(l, "44 train + 3 test embeddings of 64 dimensions (flip TTA)")) fail_msg("log:\n%s", l);
    free(l);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/embed[0]/embeddings", g_fix.root);
    fl_emb E;
    if (fl_emb_read(dir, "embed[0]", &E, &e)) fail_msg("%s", e.msg);
    assert_int_equal(E.n, 47);
    assert_int_equal(E.d, 64);
    assert_string_equal(E.image[0], "sv_0.jpg");
    assert_string_equal(E.image[2], "t_0_0.jpg");
    assert_string_equal(E.image[43], "st_1.jpg");
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "q_%d.jpg", i);
        assert_string_equal(E.image[44 + i], want);
        assert_int_equal(E.test[44 + i], 1);
    }
    for (int64_t i = 0; i < 44; i++) assert_int_equal(E.test[i], 0);
    for (int64_t i = 0; i < E.n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < E.d; j++) ss += (double)E.m[i * E.d + j] * E.m[i * E.d + j];
        if (fabs(sqrt(ss) - 1) > 1e-5) fail_msg("row %lld: norm %.7f", (long long)i, sqrt(ss));
    }
    /* the same numbers as the library on that model */
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "", &e), 0);
    if (fl_embset_build(g_fix.folds_csv, g_fix.crop_dir, 0, &s, &e)) fail_msg("%s", e.msg);
    fl_embinfer *m = fl_embinfer_new(&o, o.eval_batch, &e);
    assert_non_null(m);
    if (fl_embmodel_load(model, fl_embinfer_store(m), &e)) fail_msg("%s", e.msg);
    float *v = malloc(sizeof *v * (size_t)s.ntest * 64);
    assert_non_null(v);
    if (fl_embinfer_run(m, s.test, (size_t)s.ntest, 1, 1, v, NULL, NULL, &e)) fail_msg("%s", e.msg);
    double dmax = 0;
    for (int64_t j = 0; j < s.ntest * 64; j++) dmax = fmax(dmax, fabs(v[j] - E.m[44 * 64 + j]));
    if (dmax > 1e-6) fail_msg("test rows differ from fl_embinfer_run's by %g", dmax);
    free(v);
    fl_embinfer_free(m);
    fl_embset_free(&s);
    fl_emb_free(&E);
}

static void test_fold_beyond_the_file(void **state) {
    (void)state;
    fl_err e = {{0}};
    char log[256];
    static const char *const tin[] = {"folds", "folds", "crop", "crop"};
    assert_int_not_equal(run_stage(&fl_stage_embed_train, 2, tin, 2, log, sizeof log, &e), 0);
    if (!strstr(e.msg, "folds.csv") || !strstr(e.msg, "fold 2")) fail_msg("%s", e.msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_then_embed),
        cmocka_unit_test(test_fold_beyond_the_file),
    };
    return cmocka_run_group_tests_name("embed stages", tests, group_setup, group_teardown);
}
