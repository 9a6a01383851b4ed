/* The embed stages' options and data (stages/embed/opts.c, dataset.c): the `embed` section's
 * defaults are the reproduced recipe, bad values are errors naming the key; fold k's classes
 * are the individuals of its training part only, a train image without a crop is left out and
 * counted, the first crops.csv row of an image is its crop, and bad layouts (a crops.csv train
 * image not in folds.csv, a fold out of range) are errors naming the file and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed_fixture.h"
#include "stages/embed/embed.h"
#include "stages/ident/folds.h"

/* ------------------------------------------------------------------ options */

static int opts_of(const char *json, fl_embopts *o, fl_err *e) {
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    int rc = fl_embopts_from_json(j, o, e);
    cJSON_Delete(j);
    return rc;
}

/* a == b, but for the padding at the end of the augmentation struct (copied by value from
 * fl_reid_aug_defaults, so unspecified). */
static void assert_same_opts(const fl_embopts *a, const fl_embopts *b) {
    size_t aug = offsetof(fl_embopts, aug), end = aug + sizeof a->aug;
    assert_memory_equal(a, b, aug);
    assert_memory_equal(&a->aug, &b->aug, offsetof(fl_reid_aug, fill) + 1);
    assert_memory_equal((const char *)a + end, (const char *)b + end, sizeof *a - end);
}

static void test_defaults_are_the_recipe(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts o;
    if (fl_embopts_from_json(NULL, &o, &e)) fail_msg("%s", e.msg);
    assert_string_equal(o.backbone, "tf_efficientnet_b7");
    fl_effnet_cfg b7;
    assert_int_equal(fl_effnet_preset("tf_efficientnet_b7", &b7, &e), 0);
    assert_true(o.model.backbone.tf);
    assert_true(o.model.backbone.width == b7.width && o.model.backbone.depth == b7.depth);
    assert_true(o.model.backbone.width == 2.0 && o.model.backbone.depth == 3.1);
    assert_int_equal(o.model.backbone.with_head, 0);
    assert_int_equal(o.imgsz, 640);
    assert_int_equal(o.model.dolg.dim, 512);
    assert_int_equal(o.model.dolg.n_dil, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.model.dolg.dilations[i], 3 * (i + 1));
        assert_int_equal(o.model.dolg.widths[i], 512 / 4);
    }
    assert_int_equal(o.model.local_tap, 3);
    assert_int_equal(o.model.global_tap, 4);
    assert_true(o.model.dropout == 0.2);
    assert_int_equal(o.model.emb_dim, 2048);
    assert_true(o.model.arc.s == 30 && o.model.arc.m == 0.3);
    assert_int_equal(o.model.arc.subcenters, 1);
    assert_int_equal(o.model.arc.dynamic, 0);
    assert_int_equal(o.species_head, 0);
    assert_int_equal(o.optimizer, FL_OPTIM_ADAM);
    assert_true(o.lr == 3.2e-4);
    assert_int_equal(o.batch, 64);
    assert_int_equal(o.eval_batch, 64);
    assert_int_equal(o.sched, FL_EMB_SCHED_COSINE_RESTARTS);
    assert_true(o.t0_epochs == o.epochs && o.t_mult == 1);
    assert_true(o.weight_decay == 0 && o.clip == 0 && o.head_lr_mult == 1);
    assert_int_equal(o.sampler, FL_SAMPLER_SHUFFLE);
    assert_int_equal(o.ema, 0);
    assert_int_equal(o.tta_flip, 1);
    assert_int_equal(o.knn_k, 100);
    /* an empty section is every default too */
    fl_embopts o2;
    assert_int_equal(opts_of("{}", &o2, &e), 0);
    assert_same_opts(&o, &o2);
}

/* Spelling a default out gives the default model (here: the DOLG branch widths). */
static void test_explicit_defaults_change_nothing(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts a, b;
    assert_int_equal(opts_of("{}", &a, &e), 0);
    if (opts_of("{\"backbone\": {\"name\": \"tf_efficientnet_b7\"}, \"dolg\": {\"dim\": 512, "
                "\"dilations\": [3, 6, 9], \"local_tap\": 3, \"global_tap\": 4}, \"neck\": "
                "{\"dim\": 2048, \"dropout\": 0.2}, \"head\": {\"s\": 30, \"m\": 0.3}, "
                "\"imgsz\": 640, \"train\": {\"optimizer\": \"adam\", \"lr\": 3.2e-4, \"batch\": "
                "64, \"schedule\": \"cosine_restarts\", \"sampler\": \"plain\"}}",
                &b, &e))
        fail_msg("%s", e.msg);
    assert_memory_equal(&a.model.dolg, &b.model.dolg, sizeof a.model.dolg);
    assert_same_opts(&a, &b);
}

static void test_overrides(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts o;
    if (opts_of("{\"backbone\": {\"name\": \"efficientnet_b0\", \"width\": 0.5, \"depth\": 0.25},"
                " \"dolg\": {\"dim\": 64, \"dilations\": [2, 4], \"local_tap\": 2},"
                " \"train\": {\"optimizer\": \"adamw\", \"schedule\": \"onecycle\", \"sampler\": "
                "\"balanced\", \"epochs\": 7}, \"tta\": {\"flip\": false}, \"imgsz\": 96}",
                &o, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(o.model.backbone.tf, 0);
    assert_true(o.model.backbone.width == 0.5 && o.model.backbone.depth == 0.25);
    assert_int_equal(o.model.dolg.n_dil, 2);
    assert_int_equal(o.model.dolg.dilations[1], 4);
    assert_int_equal(o.model.local_tap, 2);
    assert_int_equal(o.optimizer, FL_OPTIM_ADAMW);
    assert_int_equal(o.sched, FL_EMB_SCHED_ONECYCLE);
    assert_int_equal(o.sampler, FL_SAMPLER_BALANCED);
    assert_true(o.t0_epochs == 7);
    assert_int_equal(o.tta_flip, 0);
    assert_int_equal(o.imgsz, 96);
}

static void expect_error(const char *json, const char *key, const char *also) {
    fl_err e = {{0}};
    fl_embopts o;
    if (opts_of(json, &o, &e) == 0) fail_msg("accepted: %s", json);
    if (!strstr(e.msg, key) || (also && !strstr(e.msg, also)))
        fail_msg("error for %s does not name %s / %s: %s", json, key, also ? also : "-", e.msg);
}

static void test_bad_values_name_the_key(void **state) {
    (void)state;
    expect_error("{\"train\": {\"schedule\": \"step\"}}", "embed.train.schedule", "'step'");
    expect_error("{\"train\": {\"optimizer\": \"sgd\"}}", "embed.train.optimizer", "'sgd'");
    expect_error("{\"train\": {\"sampler\": \"weighted\"}}", "embed.train.sampler", "'weighted'");
    expect_error("{\"dolg\": {\"local_tap\": 4, \"global_tap\": 3}}", "embed.dolg.local_tap",
                 "global_tap 3");
    expect_error("{\"dolg\": {\"dilations\": [1, 2, 3, 4, 5]}}", "embed.dolg.dilations", "5");
    expect_error("{\"dolg\": {\"dilations\": []}}", "embed.dolg.dilations", NULL);
    expect_error("{\"backbone\": {\"name\": \"resnet50\"}}", "embed.backbone.name", "resnet50");
    expect_error("{\"head\": {\"m\": 1.6}}", "embed.head.m", NULL);
}

/* ------------------------------------------------------------------ dataset */

static embf g_fix;

static int group_setup(void **state) {
    (void)state;
    fl_err e = {{0}};
    if (embf_make(&g_fix, &e)) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    embf_free(&g_fix);
    return 0;
}

static const char *individual_of(const char *image, char *buf, size_t cap) {
    if (!strncmp(image, "sv_", 3)) return "solo_val";
    if (!strncmp(image, "st_", 3)) return "solo_train";
    snprintf(buf, cap, "whale_%c", image[2]);
    return buf;
}

static void check_fold(int k) {
    fl_err e = {{0}};
    fl_embset s;
    if (fl_embset_build(g_fix.folds_csv, g_fix.crop_dir, k, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.k, k);
    assert_int_equal(s.nfolds, 2);
    assert_int_equal(s.nall, 2 + EMBF_WHALES * EMBF_PER_WHALE + 2);
    assert_int_equal(s.n_no_crop, 1);
    assert_int_equal(s.nclasses, 9);
    assert_int_equal(s.ntrain, k == 0 ? 8 * 3 + 2 : 8 * 2 + 2);
    assert_int_equal(s.nspecies, 2);
    assert_int_equal(s.ntest, EMBF_NTEST);
    /* classes numbered in folds.csv order over the training part; every row's class is its
     * individual's, -1 for an individual without training images */
    char cls_name[16][32];
    int64_t count[16] = {0};
    int next = 0;
    for (int64_t a = 0; a < s.nall; a++) { /* first pass: the classes */
        char buf[32];
        const char *ind = individual_of(s.image[a], buf, sizeof buf);
        int c = -1;
        for (int i = 0; i < next; i++)
            if (!strcmp(cls_name[i], ind)) c = i;
        if (!s.is_val[a] && c < 0) snprintf(cls_name[next++], sizeof cls_name[0], "%s", ind);
    }
    size_t ti = 0;
    for (int64_t a = 0; a < s.nall; a++) {
        char buf[32];
        const char *ind = individual_of(s.image[a], buf, sizeof buf);
        assert_false(strcmp(s.image[a], "t_0_nocrop.jpg") == 0);
        int fold = s.image[a][0] == 's' ? (s.image[a][1] == 'v' ? 0 : 1) : (s.image[a][4] < '3');
        assert_int_equal(s.is_val[a], fold == k);
        int c = -1;
        for (int i = 0; i < next; i++)
            if (!strcmp(cls_name[i], ind)) c = i;
        if (fold != k) {
            assert_true(c >= 0);
            count[c]++;
            assert_int_equal(s.all[a].label, c);
            assert_true(ti < s.ntrain);
            assert_int_equal(s.train[ti].label, c);
            assert_string_equal(s.train[ti].path, s.all[a].path);
            assert_int_equal(s.train_species[ti], s.species[a]);
            ti++;
        } else {
            assert_int_equal(s.all[a].label, -1);
        }
        assert_int_equal(s.cls[a], c);
        if (k == 0 && !strcmp(ind, "solo_val")) assert_int_equal(s.cls[a], -1);
        if (k == 1 && !strcmp(ind, "solo_train")) assert_int_equal(s.cls[a], -1);
        /* the path: the first crops.csv row of the image */
        char want[256];
        snprintf(want, sizeof want, "%s/crops/train/%s", g_fix.crop_dir, s.image[a]);
        assert_string_equal(s.all[a].path, want);
    }
    assert_int_equal(ti, s.ntrain);
    assert_int_equal(next, s.nclasses);
    for (int c = 0; c < s.nclasses; c++) assert_int_equal(s.class_count[c], count[c]);
    /* same individual -> same ind index, over all of folds.csv */
    for (int64_t a = 0; a < s.nall; a++)
        for (int64_t b = 0; b < s.nall; b++) {
            char x[32], y[32];
            int same = !strcmp(individual_of(s.image[a], x, sizeof x), individual_of(s.image[b], y, sizeof y));
            assert_int_equal(s.ind[a] == s.ind[b], same);
        }
    for (int64_t t = 0; t < s.ntest; t++) {
        char want[256], img[32];
        snprintf(img, sizeof img, "q_%d.jpg", (int)t);
        snprintf(want, sizeof want, "%s/crops/test/%s", g_fix.crop_dir, img);
        assert_string_equal(s.test_image[t], img);
        assert_string_equal(s.test[t].path, want);
        assert_int_equal(s.test[t].label, -1);
    }
    fl_embset_free(&s);
}

static void test_fold0(void **state) {
    (void)state;
    check_fold(0);
}
static void test_fold1(void **state) {
    (void)state;
    check_fold(1);
}

/* Pseudo-labels join fold 0's training part only for individuals of that part: a label of a
 * fold-0 (validation) individual is left out, a pseudo image that is no test crop is an error. */
static void test_pseudo_labels(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_folds F;
    if (fl_folds_read(g_fix.folds_csv, &F, &e)) fail_msg("%s", e.msg);
    int tr = -1, va = -1;
    for (int r = 0; r < F.n; r++) {
        if (F.fold[r] == 1 && tr < 0) tr = r;
        if (!strcmp(F.individual[r], "solo_val")) va = r;
    }
    assert_true(tr >= 0 && va >= 0 && F.fold[va] == 0);
    char *path = fl_strdupf("%s/pseudo_test.csv", g_fix.crop_dir);
    char text[1024];
    snprintf(text, sizeof text,
             "image,individual_id,species,confidence\nq_1.jpg,%s,%s,0.9\nq_0.jpg,%s,%s,0.8\n"
             "q_2.jpg,%s,%s,0.99\n",
             F.individual[tr], F.species[tr], F.individual[tr], F.species[tr], F.individual[va],
             F.species[va]);
    assert_int_equal(fl_write_file_atomic(path, text, strlen(text), &e), 0);
    fl_embset s, plain;
    if (fl_embset_build(g_fix.folds_csv, g_fix.crop_dir, 0, &plain, &e)) fail_msg("%s", e.msg);
    if (fl_embset_build_pseudo(g_fix.folds_csv, g_fix.crop_dir, 0, path, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.n_pseudo, 2);
    assert_int_equal(s.n_pseudo_other, 1);
    assert_int_equal(s.ntrain, plain.ntrain + 2);
    assert_int_equal(s.nclasses, plain.nclasses);
    /* appended in test order (q_0 then q_1), with the class of the individual's train rows */
    int c = -1;
    for (int64_t a = 0; a < plain.nall; a++)
        if (!strcmp(plain.image[a], F.image[tr])) c = plain.cls[a];
    assert_true(c >= 0);
    for (int j = 0; j < 2; j++) {
        char want[256];
        snprintf(want, sizeof want, "%s/crops/test/q_%d.jpg", g_fix.crop_dir, j);
        assert_string_equal(s.train[plain.ntrain + j].path, want);
        assert_int_equal(s.train[plain.ntrain + j].label, c);
    }
    assert_int_equal(s.class_count[c], plain.class_count[c] + 2);
    fl_embset_free(&s);
    fl_embset_free(&plain);
    /* an image that is not a test crop */
    snprintf(text, sizeof text, "image,individual_id,species,confidence\nnope.jpg,%s,%s,0.9\n",
             F.individual[tr], F.species[tr]);
    assert_int_equal(fl_write_file_atomic(path, text, strlen(text), &e), 0);
    assert_int_not_equal(fl_embset_build_pseudo(g_fix.folds_csv, g_fix.crop_dir, 0, path, &s, &e), 0);
    assert_non_null(strstr(e.msg, "pseudo_test.csv: 1 pseudo-labelled images are not test crops"));
    unlink(path);
    free(path);
    fl_folds_free(&F);
}

static void test_fold_out_of_range(void **state) {
    (void)state;
    for (int k = -1; k <= 2; k += 3) {
        fl_err e = {{0}};
        fl_embset s;
        assert_int_not_equal(fl_embset_build(g_fix.folds_csv, g_fix.crop_dir, k, &s, &e), 0);
        assert_non_null(strstr(e.msg, "folds.csv"));
        char want[48];
        snprintf(want, sizeof want, "fold %d", k);
        if (!strstr(e.msg, want) || !strstr(e.msg, "0..1")) fail_msg("%s", e.msg);
        fl_embset_free(&s); /* safe after a failed build */
    }
}

/* A copy of the fixture's crops.csv with one more line appended, in a dir of its own. */
static void crops_with(const char *extra, char *dir, size_t cap) {
    fl_err e = {{0}};
    snprintf(dir, cap, "%s/crop_bad", g_fix.root);
    assert_int_equal(fl_mkdirs(dir, &e), 0);
    char src[256], dst[256];
    snprintf(src, sizeof src, "%s/crops.csv", g_fix.crop_dir);
    snprintf(dst, sizeof dst, "%s/crops.csv", dir);
    size_t n;
    char *txt = fl_read_file(src, &n, &e);
    assert_non_null(txt);
    size_t m = strlen(extra);
    char *all = malloc(n + m);
    assert_non_null(all);
    memcpy(all, txt, n);
    memcpy(all + n, extra, m);
    assert_int_equal(fl_write_file_atomic(dst, all, n + m, &e), 0);
    free(all);
    free(txt);
}

static int count_lines(const char *path) {
    fl_err e = {{0}};
    size_t n;
    char *txt = fl_read_file(path, &n, &e);
    assert_non_null(txt);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += txt[i] == '\n';
    free(txt);
    return lines;
}

static void test_crop_not_in_folds(void **state) {
    (void)state;
    char dir[192], csv[256];
    crops_with("stranger.jpg,train,0,0,32,32,0.9,0,,crops/train/stranger.jpg\n", dir, sizeof dir);
    snprintf(csv, sizeof csv, "%s/crops.csv", dir);
    int line = count_lines(csv);
    fl_err e = {{0}};
    fl_embset s;
    assert_int_not_equal(fl_embset_build(g_fix.folds_csv, dir, 0, &s, &e), 0);
    char want[300];
    snprintf(want, sizeof want, "%s:%d:", csv, line);
    if (!strstr(e.msg, want) || !strstr(e.msg, "stranger.jpg") || !strstr(e.msg, "folds.csv"))
        fail_msg("want '%s' ... stranger.jpg ... folds.csv in: %s", want, e.msg);
    /* a test image absent from folds.csv is fine (folds.csv lists train images only) */
    crops_with("q_9.jpg,test,0,0,32,32,0.9,0,,crops/test/q_9.jpg\n", dir, sizeof dir);
    if (fl_embset_build(g_fix.folds_csv, dir, 0, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.ntest, EMBF_NTEST + 1);
    fl_embset_free(&s);
}

static void test_bad_split(void **state) {
    (void)state;
    char dir[192], csv[256];
    crops_with("t_0_0.jpg,val,0,0,32,32,0.9,0,,crops/train/t_0_0.jpg\n", dir, sizeof dir);
    snprintf(csv, sizeof csv, "%s/crops.csv", dir);
    int line = count_lines(csv);
    fl_err e = {{0}};
    fl_embset s;
    assert_int_not_equal(fl_embset_build(g_fix.folds_csv, dir, 0, &s, &e), 0);
    char want[300];
    snprintf(want, sizeof want, "%s:%d:", csv, line);
    if (!strstr(e.msg, want) || !strstr(e.msg, "'val'")) fail_msg("want '%s' 'val' in: %s", want, e.msg);
}

/* folds.csv problems reach the caller with the file and line (fl_folds_read). */
static void test_bad_folds_csv(void **state) {
    (void)state;
    fl_err e = {{0}};
    char path[192];
    snprintf(path, sizeof path, "%s/folds_bad.csv", g_fix.root);
    const char *txt = "image,individual_id,species,fold\na.jpg,w1,beluga,0\nb.jpg,,beluga,1\n";
    assert_int_equal(fl_write_file_atomic(path, txt, strlen(txt), &e), 0);
    fl_embset s;
    assert_int_not_equal(fl_embset_build(path, g_fix.crop_dir, 0, &s, &e), 0);
    char want[220];
    snprintf(want, sizeof want, "%s:3", path);
    if (!strstr(e.msg, want)) fail_msg("want %s in: %s", want, e.msg);
}

int main(void) {
    const struct CMUnitTest opts[] = {
        cmocka_unit_test(test_defaults_are_the_recipe),
        cmocka_unit_test(test_explicit_defaults_change_nothing),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_bad_values_name_the_key),
    };
    const struct CMUnitTest data[] = {
        cmocka_unit_test(test_fold0),
        cmocka_unit_test(test_fold1),
        cmocka_unit_test(test_pseudo_labels),
        cmocka_unit_test(test_fold_out_of_range),
        cmocka_unit_test(test_crop_not_in_folds),
        cmocka_unit_test(test_bad_split),
        cmocka_unit_test(test_bad_folds_csv),
    };
    int rc = cmocka_run_group_tests_name("embed options", opts, NULL, NULL);
    return rc | cmocka_run_group_tests_name("embed dataset", data, group_setup, group_teardown);
}
