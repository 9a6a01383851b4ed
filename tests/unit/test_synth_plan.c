/* The label plan of the generator against the real statistics of SPECS.md section 1, measured
 * on the smoke preset's plan (no rendering): images per individual, singletons, species
 * frequencies, new individuals in test, and the structural rules (every known test individual
 * is in train, unique names). Tolerances are stated beside each check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/synth/synth.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_plan_statistics(const char *preset, int n_train) {
    fl_err e = {{0}};
    fl_synth_params p;
    assert_int_equal(fl_synth_preset(preset, &p, &e), 0);
    if (n_train) p.n_train = n_train, p.n_test = n_train / 3;
    fl_synth_plan plan;
    assert_int_equal(fl_synth_plan_make(&p, &plan, &e), 0);
    assert_int_equal(plan.n_images, p.n_train + p.n_test);

    int known = 0, singles = 0, hist[11] = {0}, max_per = 0;
    long sp_images[FL_SYNTH_NSPECIES] = {0};
    for (int i = 0; i < plan.n_individuals; i++) {
        const fl_synth_individual *in = &plan.ind[i];
        if (in->is_new) {
            assert_int_equal(in->n_train, 0); /* new individuals never appear in train */
            assert_true(in->n_test > 0);
            continue;
        }
        assert_true(in->n_train > 0); /* every known individual (test ones included) in train */
        known++;
        singles += in->n_train == 1;
        hist[in->n_train >= 10 ? 10 : in->n_train]++;
        if (in->n_train > max_per) max_per = in->n_train;
        sp_images[in->species] += in->n_train;
    }
    int train_count = 0, test_new = 0, pub = 0, boxes = 0;
    for (int i = 0; i < plan.n_images; i++) {
        const fl_synth_image *im = &plan.img[i];
        assert_int_equal(im->is_test, i >= p.n_train);
        if (!im->is_test) train_count++, boxes += im->has_box;
        else test_new += plan.ind[im->individual].is_new, pub += im->is_public;
    }
    assert_int_equal(train_count, p.n_train);
    /* Singletons: 9258 / 15587 = 59.4% of real individuals; within 1.5 points. */
    double single_share = (double)singles / known;
    assert_true(fabs(single_share - 9258.0 / 15587) < 0.015);
    /* Images per individual: real mean 51033 / 15587 = 3.27; within 5%. */
    double mean = (double)p.n_train / known;
    assert_true(fabs(mean / (51033.0 / 15587) - 1) < 0.05);
    /* Each histogram bin 1..9 within 1 point of the real share (of individuals); 10+ likewise. */
    static const int real[11] = {0, 9258, 3091, 773, 741, 374, 135, 108, 158, 111, 838};
    for (int k = 1; k <= 10; k++)
        assert_true(fabs((double)hist[k] / known - real[k] / 15587.0) < 0.01);
    assert_true(max_per >= 40); /* a heavy tail, like the real 400-image individual */
    /* New individuals: 12% of test images, exactly up to rounding. */
    assert_true(abs(test_new - (int)lround(0.12 * p.n_test)) <= 1);
    assert_true(abs(pub - (int)lround(p.public_share * p.n_test)) <= 1);
    assert_true(abs(boxes - (int)lround(p.box_share * p.n_train)) <= 1);
    /* Species: every species present; each within 10% relative or 3 images of its quota. */
    for (int s = 0; s < FL_SYNTH_NSPECIES; s++) {
        const fl_synth_species *sp = fl_synth_species_get(s);
        double expect = (double)p.n_train * sp->real_images / 51033.0;
        assert_true(sp_images[s] >= 1);
        if (fabs(sp_images[s] - expect) > fmax(3.0, 0.10 * expect))
            fail_msg("%s: %ld train images, expected %.1f", sp->name, sp_images[s], expect);
    }
    /* Names: unique image names (14 hex + .jpg) and individual ids (12 hex). */
    char **names = malloc((size_t)plan.n_images * sizeof *names);
    for (int i = 0; i < plan.n_images; i++) {
        names[i] = plan.img[i].name;
        assert_int_equal(strlen(names[i]), 18);
        assert_int_equal(strspn(names[i], "0123456789abcdef"), 14);
    }
    qsort(names, (size_t)plan.n_images, sizeof *names, cmp_str);
    for (int i = 1; i < plan.n_images; i++) assert_string_not_equal(names[i - 1], names[i]);
    free(names);
    fl_synth_plan_free(&plan);
}

static void test_smoke_plan_statistics(void **state) {
    (void)state;
    check_plan_statistics("smoke", 0);
}

static void test_large_plan_statistics(void **state) {
    (void)state;
    check_plan_statistics("large", 0);
}

static void test_raw_species_labels(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_synth_params p;
    assert_int_equal(fl_synth_preset("large", &p, &e), 0);
    fl_synth_plan plan;
    assert_int_equal(fl_synth_plan_make(&p, &plan, &e), 0);
    /* The misspellings of the real file appear, for their species only, in about the real
     * proportion (kiler_whale: 962 of 2455 killer whale images). */
    int kw = fl_synth_species_find("killer_whale"), raw = 0, all = 0;
    for (int i = 0; i < plan.n_individuals; i++) {
        const char *lab = fl_synth_species_label(&plan, i);
        if (plan.ind[i].is_new || plan.ind[i].species != kw) {
            assert_string_not_equal(lab, "kiler_whale");
            continue;
        }
        all += plan.ind[i].n_train;
        if (strcmp(lab, "kiler_whale") == 0) raw += plan.ind[i].n_train;
    }
    assert_true(all > 0);
    assert_true(fabs((double)raw / all - 962.0 / 2455) < 0.12);
    fl_synth_plan_free(&plan);
}

static void test_plan_deterministic(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_synth_params p;
    assert_int_equal(fl_synth_preset("tiny", &p, &e), 0);
    fl_synth_plan a, b, c;
    assert_int_equal(fl_synth_plan_make(&p, &a, &e), 0);
    assert_int_equal(fl_synth_plan_make(&p, &b, &e), 0);
    p.seed = 2;
    assert_int_equal(fl_synth_plan_make(&p, &c, &e), 0);
    assert_int_equal(a.n_individuals, b.n_individuals);
    assert_memory_equal(a.img, b.img, (size_t)a.n_images * sizeof *a.img);
    assert_memory_equal(a.ind, b.ind, (size_t)a.n_individuals * sizeof *a.ind);
    assert_string_not_equal(a.img[0].name, c.img[0].name);
    fl_synth_plan_free(&a);
    fl_synth_plan_free(&b);
    fl_synth_plan_free(&c);
}

static void test_bad_params(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_synth_params p;
    assert_int_equal(fl_synth_preset("huge", &p, &e), -1);
    assert_non_null(strstr(e.msg, "huge"));
    assert_int_equal(fl_synth_preset("tiny", &p, &e), 0);
    p.new_share = 1.5;
    fl_synth_plan plan;
    assert_int_equal(fl_synth_plan_make(&p, &plan, &e), -1);
    assert_non_null(strstr(e.msg, "synth.new_share"));

    const char *cases[][2] = {
        {"{\"preset\": 3}", "synth.preset"},
        {"{\"preset\": \"tiny\", \"n_train\": 1.5}", "synth.n_train"},
        {"{\"preset\": \"tiny\", \"n_train\": 5}", "synth.n_train"},
        {"{\"seed\": -1}", "synth.seed"},
        {"{\"min_side\": 500, \"max_side\": 400}", "min_side"},
        {"{\"quality_min\": 0}", "quality"},
        {"{\"box_share\": \"x\"}", "synth.box_share"},
        {"{\"raw_species\": 1}", "synth.raw_species"},
        {"[1]", "synth"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cJSON *j = cJSON_Parse(cases[k][0]);
        assert_non_null(j);
        e.msg[0] = '\0';
        assert_int_equal(fl_synth_params_from_json(j, &p, &e), -1);
        if (!strstr(e.msg, cases[k][1]))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[k][0], e.msg, cases[k][1]);
        cJSON_Delete(j);
    }
    cJSON *ok = cJSON_Parse("{\"preset\": \"tiny\", \"seed\": 7, \"n_test\": 30, "
                            "\"raw_species\": false}");
    assert_int_equal(fl_synth_params_from_json(ok, &p, &e), 0);
    assert_int_equal(p.seed, 7);
    assert_int_equal(p.n_test, 30);
    assert_int_equal(p.n_train, 120);
    assert_int_equal(p.raw_species, 0);
    cJSON_Delete(ok);
    assert_int_equal(fl_synth_params_from_json(NULL, &p, &e), 0);
    assert_string_equal(p.preset, "smoke");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smoke_plan_statistics),
        cmocka_unit_test(test_large_plan_statistics),
        cmocka_unit_test(test_raw_species_labels),
        cmocka_unit_test(test_plan_deterministic),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
