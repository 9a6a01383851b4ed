/* EfficientNet (width 0.25, depth 0.5) + DOLG + neck + ArcFace against the PyTorch reference of
 * tests/fixtures/gen_models_effnet.py (train mode, dropout 0, float64 reference): loss,
 * embedding, logits and the gradients of the input and of every parameter. Two heads: plain
 * ArcFace (s 30, m 0.3) and 2 sub-centres with dynamic margins and a species head. Plus the
 * head's bad-input errors.
 *
 * Criterion (tests/unit/support/numcmp.h, nc_noise): per tensor, ||ours - torch|| (2- and
 * max-norm) within NOISE_LIMIT times the tensor's own float32 noise, the RMS change of our result when every
 * float32 input and parameter moves by one ulp (NOISE_RUNS draws). A fixed relative bound is
 * ill-posed here: dolg.attention2d.conv2.bias is one scalar summed from 64 cancelling terms
 * (sum|g_i| / |sum g_i| ~ 60), its float32 value moves by 6e-5..1.3e-4 relative with the BLAS
 * kernel (OPENBLAS_CORETYPE) and PyTorch float32 itself lands 2e-5..1.8e-4 off (the worst max
 * relative error of a gradient here is 1.4e-4 on OpenBLAS's Atom kernels, 3.6e-5 on Prescott's);
 * the noise ratio of every tensor stays below 1.5 on the Zen, Haswell, Sandybridge, Nehalem,
 * Prescott, Core2, Atom and Barcelona kernels.
 * Biases right before a train-mode BN have an exactly zero true gradient; the same criterion
 * holds them to their noise, which must stay below 1e-5 of the largest gradient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/embed_head.h"
#include "tests/unit/models_effnet_weights.h"
#include "tests/unit/support/numcmp.h"

#define NOISE_RUNS 3
#define NOISE_LIMIT 10.0
#define TEETH 1e-2 /* the most relative error the criterion may allow on a tensor */

static fl_st_file *open_fixture(const char *name) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/models_effnet/%s", root ? root : ".", name);
    fl_err e = {{0}};
    fl_st_file *f = fl_st_open(path, &e);
    if (!f) printf("%s\n", e.msg);
    assert_non_null(f);
    return f;
}

/* One model of a fixture, built and compiled, with its inputs set from the fixture. */
typedef struct dolg_run {
    fl_st_file *f;
    fl_embed_cfg c;
    int n, size;
    fl_pstore *s;
    fl_graph *g;
    fl_embed_model m;
} dolg_run;

static void dolg_open(dolg_run *r, const char *fixture) {
    memset(r, 0, sizeof *r);
    fl_st_file *f = r->f = open_fixture(fixture);
    fl_err e = {{0}};
    int classes = atoi(fl_st_meta(f, "classes"));
    r->n = atoi(fl_st_meta(f, "batch"));
    fl_embed_cfg c = fl_embed_defaults(classes, atoi(fl_st_meta(f, "emb")));
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c.backbone, &e), 0);
    c.backbone.width = atof(fl_st_meta(f, "width"));
    c.backbone.depth = atof(fl_st_meta(f, "depth"));
    c.backbone.drop_path_rate = 0;
    c.dolg = fl_dolg_defaults(atoi(fl_st_meta(f, "dim")));
    c.dropout = 0;
    c.arc.subcenters = atoi(fl_st_meta(f, "k"));
    c.arc.dynamic = atoi(fl_st_meta(f, "dynamic"));
    c.arc.s = atof(fl_st_meta(f, "s"));
    c.arc.m = atof(fl_st_meta(f, "m"));
    c.num_species = atoi(fl_st_meta(f, "species"));
    c.species_weight = atof(fl_st_meta(f, "species_weight"));
    r->c = c;
    r->size = atoi(fl_st_meta(f, "size"));
    r->s = fl_pstore_new(FL_F32, 7, &e);
    r->g = fl_graph_new(r->s, FL_MODE_TRAIN, &e);
    if (fl_embed_build(r->g, &r->c, r->n, r->size, r->size, 1, &r->m, &e) < 0) printf("%s\n", e.msg);
    assert_true(r->m.loss >= 0);
    fl_input_requires_grad(r->g, r->m.x);
    if (fl_graph_compile(r->g, r->m.loss, &e) < 0) printf("%s\n", e.msg);
    assert_string_equal(fl_graph_error(r->g), "");
}

static void dolg_close(dolg_run *r) {
    fl_graph_free(r->g);
    fl_pstore_free(r->s);
    fl_st_close(r->f);
}

/* Sets every parameter, buffer and input, each float moved by one ulp when perturb >= 0, then
 * runs forward and backward. */
static void dolg_step(dolg_run *r, int perturb) {
    fl_err e = {{0}};
    fl_graph *g = r->g;
    fl_embed_model *m = &r->m;
    assert_int_equal(mew_fill_store(r->s), 0);
    size_t nx = (size_t)r->n * r->size * r->size * 3;
    mew_values("input.x", nx, -1.0, 1.0, fl_graph_value(g, m->x));
    if (perturb >= 0) {
        fl_param_list pl;
        assert_int_equal(fl_pstore_params(r->s, &pl, &e), 0);
        for (size_t i = 0; i < pl.n; i++) nc_perturb_ulp(pl.v[i].data, pl.v[i].numel, 1000 * (uint64_t)perturb + i);
        nc_perturb_ulp(fl_graph_value(g, m->x), nx, 999999 + (uint64_t)perturb);
    }
    const fl_st_tensor *tl = fl_st_find(r->f, "labels");
    assert_non_null(tl);
    memcpy(fl_graph_value(g, m->labels), tl->data, (size_t)r->n * 4);
    if (r->c.num_species) {
        const fl_st_tensor *ts = fl_st_find(r->f, "species");
        assert_non_null(ts);
        memcpy(fl_graph_value(g, m->species), ts->data, (size_t)r->n * 4);
    }
    if (r->c.arc.dynamic) {
        int64_t counts[64];
        int k = 0;
        for (char *p = (char *)fl_st_meta(r->f, "counts"); p && *p && k < 64;) {
            counts[k++] = strtoll(p, &p, 10);
            if (*p == ',') p++;
        }
        assert_int_equal(k, r->c.arc.num_classes);
        assert_int_equal(fl_dynamic_margins(counts, k, 0.271, 0.364, 0.05, fl_graph_value(g, m->margins), &e), 0);
    }
    fl_pstore_zero_grad(r->s);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
}

/* Every compared tensor: the fixture key, where our value lives after a step, and its noise. */
typedef struct checked {
    char key[160];
    const float *ours;
    size_t n;
    float *ref;
    nc_spread sp;
} checked;

static int collect(dolg_run *r, checked *t, int max) {
    fl_graph *g = r->g;
    int k = 0;
    struct { const char *key; fl_id id; int grad; } outs[] = {
        {"loss", r->m.loss, 0}, {"emb", r->m.emb, 0}, {"logits", r->m.logits, 0},
        {"species_logits", r->c.num_species ? r->m.species_logits : -1, 0}, {"grad.x", r->m.x, 1}};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        if (outs[i].id < 0) continue;
        snprintf(t[k].key, sizeof t[k].key, "%s", outs[i].key);
        t[k].ours = outs[i].grad ? fl_graph_grad(g, outs[i].id) : fl_graph_value(g, outs[i].id);
        t[k].n = (size_t)fl_graph_numel(g, outs[i].id);
        k++;
    }
    for (size_t j = 0; j < r->f->n; j++) {
        const char *key = r->f->t[j].name;
        if (strncmp(key, "grad.", 5) != 0 || strcmp(key, "grad.x") == 0) continue;
        assert_true(k < max);
        snprintf(t[k].key, sizeof t[k].key, "%s", key);
        size_t numel = 0;
        assert_non_null(fl_pstore_data(r->s, key + 5, &numel));
        t[k].ours = fl_pstore_grad(r->s, key + 5);
        if (!t[k].ours) printf("no gradient for %s\n", key + 5);
        assert_non_null(t[k].ours);
        t[k].n = numel;
        k++;
    }
    fl_err e = {{0}};
    for (int i = 0; i < k; i++) {
        size_t m = 0;
        t[i].ref = fl_st_read_f32(r->f, t[i].key, &m, &e);
        if (!t[i].ref) printf("%s\n", e.msg);
        assert_non_null(t[i].ref);
        assert_non_null(t[i].ours);
        assert_int_equal(m, t[i].n);
    }
    return k;
}

static int is_param_grad(const char *key) { return strncmp(key, "grad.", 5) == 0 && strcmp(key, "grad.x") != 0; }

static void dolg_parity(const char *fixture) {
    dolg_run r;
    dolg_open(&r, fixture);
    static checked t[256];
    dolg_step(&r, -1);
    int nt = collect(&r, t, 256);
    for (int i = 0; i < nt; i++) nc_spread_begin(&t[i].sp, t[i].ours, t[i].n);
    for (int p = 0; p < NOISE_RUNS; p++) {
        dolg_step(&r, p);
        for (int i = 0; i < nt; i++) nc_spread_add(&t[i].sp, t[i].ours);
    }
    double gmax = 0;
    for (int i = 0; i < nt; i++)
        if (is_param_grad(t[i].key)) {
            double m = nc_max_abs(NC_F32(t[i].ref), t[i].n);
            gmax = m > gmax ? m : gmax;
        }
    printf("%s: loss %.6f (torch %.6f), largest parameter gradient %.3g\n", fixture, t[0].sp.base[0], t[0].ref[0], gmax);
    nc_worst w, nw;
    nc_worst_init(&w);
    nc_worst_init(&nw);
    int ngrads = 0, nzero = 0, toothless = 0;
    double loosest = 0;
    const char *loosest_key = "";
    for (int i = 0; i < nt; i++) {
        const float *ours = t[i].sp.base;
        nc_res nz = nc_noise(NC_F32(ours), NC_F32(t[i].ref), t[i].n, &t[i].sp);
        nc_res rel = nc_normwise(NC_F32(ours), NC_F32(t[i].ref), t[i].n, 0);
        int ok = nc_worst_add(&w, t[i].key, nz, NOISE_LIMIT);
        int zero = is_param_grad(t[i].key) && nc_max_abs(NC_F32(t[i].ref), t[i].n) < 1e-9 * gmax;
        if (!zero) nc_worst_add(&nw, t[i].key, rel, INFINITY);
        if (!is_param_grad(t[i].key) || !ok)
            printf("  %-44s noise ratio %.2f (limit %.0f), max rel %.2e%s\n", t[i].key, nz.fig, NOISE_LIMIT, rel.fig,
                   ok ? "" : "  FAIL");
        /* The criterion has teeth only where the noise is small next to the value: what it
         * allows must stay far below the value (or, for the gradients that are zero by
         * construction, far below the largest gradient). */
        double rnorm = nc_norm2(NC_F32(t[i].ref), t[i].n), allowed = nc_noise_allowed(&t[i].sp, NC_F32(t[i].ref), t[i].n, NOISE_LIMIT);
        if (zero) {
            nzero++;
            if (!(allowed <= 1e-5 * gmax * sqrt((double)t[i].n))) toothless++, printf("  %s: noise too large\n", t[i].key);
        } else {
            ngrads += is_param_grad(t[i].key);
            if (allowed / rnorm > loosest) loosest = allowed / rnorm, loosest_key = t[i].key;
            if (!(allowed <= TEETH * rnorm)) toothless++, printf("  %s: noise too large\n", t[i].key);
        }
    }
    printf("  %d parameter gradients (%d zero by construction); the loosest allows %.2e relative (%s)\n", ngrads,
           nzero, loosest, loosest_key);
    nc_worst_print(&nw, "  max relative error (for scale only)");
    nc_worst_print(&w, "  noise ratio");
    assert_int_equal(w.failed, 0);
    assert_int_equal(toothless, 0);
    assert_true(ngrads >= 10);
    for (int i = 0; i < nt; i++) free(t[i].ref), nc_spread_free(&t[i].sp);
    dolg_close(&r);
}

static void test_dolg_arcface_matches_torch(void **state) { dolg_parity("dolg_arcface.safetensors"); }
static void test_dolg_subcenter_dynamic_species_matches_torch(void **state) {
    dolg_parity("dolg_subcenter.safetensors");
}

static void test_head_bad_inputs(void **state) {
    fl_err e = {{0}};
    float out[2];
    assert_int_equal(fl_dynamic_margins((int64_t[]){3, 0}, 2, 0.271, 0.364, 0.05, out, &e), -1);
    assert_non_null(strstr(e.msg, "class 1"));
    assert_int_equal(fl_dynamic_margins((int64_t[]){1, 8}, 2, 0.271, 0.364, 0.05, out, &e), 0);
    assert_true(out[0] > out[1] && out[0] > 0.3 && out[0] < 0.33); /* rare classes get wider margins */

    fl_embed_cfg c = fl_embed_defaults(10, 16);
    c.backbone.width = 0.25;
    c.backbone.depth = 0.25;
    c.dolg = fl_dolg_defaults(16);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_embed_model m;
    fl_embed_cfg bad = c;
    bad.dolg.dilations[1] = 0;
    assert_int_equal(fl_embed_build(g, &bad, 2, 64, 64, 1, &m, &e), -1);
    assert_non_null(strstr(e.msg, "branch 1"));
    assert_int_equal(fl_embed_build(g, &c, 2, 16, 64, 1, &m, &e), -1);
    bad = c;
    bad.arc.num_classes = 0;
    assert_int_equal(fl_embed_build(g, &bad, 2, 64, 64, 1, &m, &e), -1);
    fl_graph_free(g);
    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    bad = c;
    bad.arc.m = 2.0; /* beyond pi/2: a builder error from the head, reported by the model */
    assert_int_equal(fl_embed_build(g, &bad, 2, 64, 64, 1, &m, &e), -1);
    assert_non_null(strstr(e.msg, "arcface"));
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dolg_arcface_matches_torch),
        cmocka_unit_test(test_dolg_subcenter_dynamic_species_matches_torch),
        cmocka_unit_test(test_head_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
