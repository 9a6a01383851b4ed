/* stages/ident: candidates and new_individual insertion, MAP@5 and the threshold grid on
 * hand-made cases whose answers are worked out below, the per-species fallback, the OOF
 * evaluation on clustered embeddings, the embeddings artifact's reader errors, and the knn
 * stage end to end (through its fl_stage_def, the context built by hand) plus score's cv. */
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

#include "runtime/knn.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"
#include "stages/api/plan.h"
#include "stages/ident/embeddings.h"
#include "stages/ident/ident.h"
#include "stages/ident/pseudo.h"
#include "stages/ident/stages.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

static char g_root[64];

static void put(const char *path, const char *text) {
    fl_err e = {{0}};
    if (fl_write_file_atomic(path, text, strlen(text), &e)) fail_msg("%s", e.msg);
}

static char *slurp(const char *path) {
    fl_err e = {{0}};
    char *t = fl_read_file(path, NULL, &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

/* Neighbours -> distinct individuals with their max similarity; new_individual first below the
 * threshold, else second; the fill skips repeats. */
static void test_candidates_and_answer(void **state) {
    (void)state;
    /* gallery rows 0..5 belong to individuals 7 7 3 9 3 4 */
    int32_t gind[6] = {7, 7, 3, 9, 3, 4};
    int32_t idx[2 * 6] = {1, 0, 4, 2, 3, 5, /* q0 */ 5, -1, -1, -1, -1, -1 /* q1: one neighbour */};
    float sim[2 * 6] = {0.9f, 0.8f,      0.7f,      0.6f,      0.5f,      0.4f,
                        0.3f, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    fl_ident_cand c[2];
    fl_ident_candidates(idx, sim, 2, 6, gind, c);
    assert_int_equal(c[0].n, 4);
    assert_int_equal(c[0].ind[0], 7);
    assert_int_equal(c[0].ind[1], 3);
    assert_int_equal(c[0].ind[2], 9);
    assert_int_equal(c[0].ind[3], 4);
    assert_true(c[0].conf[1] == 0.7f && c[0].conf[2] == 0.5f);
    assert_int_equal(c[0].top1, 1);
    assert_int_equal(c[1].n, 1);
    int32_t out[FL_MAP_K], fill[3] = {4, 8, 2};
    assert_int_equal(fl_ident_answer(&c[0], 0.95, NULL, 0, out), 5); /* 0.9 < 0.95: new first */
    int32_t want1[5] = {FL_IDENT_NEW, 7, 3, 9, 4};
    assert_memory_equal(out, want1, sizeof want1);
    assert_int_equal(fl_ident_answer(&c[0], 0.9, NULL, 0, out), 5); /* not below: second */
    int32_t want2[5] = {7, FL_IDENT_NEW, 3, 9, 4};
    assert_memory_equal(out, want2, sizeof want2);
    assert_int_equal(fl_ident_answer(&c[1], 0.5, fill, 3, out), 4); /* 4 is not repeated */
    int32_t want3[5] = {FL_IDENT_NEW, 4, 8, 2, -99};
    assert_memory_equal(out, want3, 4 * sizeof *out);
    assert_int_equal(fl_ident_answer(&c[1], 0.5, fill, 2, out), 3);
    assert_true(fl_ident_ap(3, want2, 5) == 1.0 / 3);
    assert_true(fl_ident_ap(FL_IDENT_NEW, want1, 5) == 1.0);
    assert_true(fl_ident_ap(5, want1, 5) == 0.0);
}

/* Four queries (worked out by hand), grid step 0.1:
 *   q0 truth new, top 0.3      first 1,   second 1/2
 *   q1 truth A,   top A 0.9    first 1/2, second 1
 *   q2 truth A,   top A 0.5    first 1/2, second 1
 *   q3 truth new, top B 0.6    first 1,   second 1/2
 * MAP(t): t <= 0.3: 0.75; 0.4, 0.5: 0.875; 0.6: 0.75; 0.7 .. 0.9: 0.875; 1.0: 0.75. Best 0.875,
 * first reached at t = 0.4 (ties go to the smallest t). */
static void make_case(fl_ident_q *q) {
    fl_ident_cand c[4] = {{.n = 1, .ind = {5}, .conf = {0.3f}},
                          {.n = 1, .ind = {0}, .conf = {0.9f}},
                          {.n = 1, .ind = {0}, .conf = {0.5f}},
                          {.n = 1, .ind = {1}, .conf = {0.6f}}};
    int32_t truth[4] = {FL_IDENT_NEW, 0, 0, FL_IDENT_NEW};
    for (int i = 0; i < 4; i++)
        fl_ident_query(&c[i], truth[i], NULL, 0, &q[i]);
}

static void test_map5_and_threshold(void **state) {
    (void)state;
    fl_ident_q q[4];
    make_case(q);
    assert_true(q[0].ap_first == 1.0 && q[0].ap_second == 0.5 && q[0].is_new);
    assert_true(q[1].ap_first == 0.5 && q[1].ap_second == 1.0 && !q[1].is_new);
    double best;
    double t = fl_ident_grid_search(q, NULL, 4, 0.1, &best);
    assert_true(fabs(t - 0.4) < 1e-12);
    assert_true(fabs(best - 0.875) < 1e-12);
    assert_int_equal(fl_ident_grid_n(0.1), 11);
    assert_int_equal(fl_ident_grid_n(0.01), 101);
    /* only q0 and q3 (both new): new first for both from t = 0.7 on */
    uint8_t sel[4] = {1, 0, 0, 1};
    t = fl_ident_grid_search(q, sel, 4, 0.1, &best);
    assert_true(fabs(t - 0.7) < 1e-12 && fabs(best - 1.0) < 1e-12);
    double thr[4] = {0.4, 0.4, 0.4, 0.4};
    fl_ident_map m;
    fl_ident_score(q, thr, 4, &m);
    assert_true(fabs(m.map5 - 0.875) < 1e-12);
    assert_true(fabs(m.map5_known - 1.0) < 1e-12 && fabs(m.map5_new - 0.75) < 1e-12);
    assert_int_equal(m.n_known, 2);
    assert_int_equal(m.n_new, 2);
}

/* Species 0 = q0, q3 (2 queries: its own threshold 0.7), species 1 = q1 and species 2 = q2
 * (1 query each, under species_min 2: the global threshold). */
static void test_species_fallback(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_ident_q q[4];
    make_case(q);
    int32_t sp[4] = {0, 1, 2, 0};
    double thr[3];
    uint8_t own[3];
    assert_int_equal(fl_ident_species_thresholds(q, sp, 4, 3, 2, 0.1, 0.4, thr, own, &e), 0);
    assert_true(own[0] == 1 && fabs(thr[0] - 0.7) < 1e-12);
    assert_true(own[1] == 0 && thr[1] == 0.4);
    assert_true(own[2] == 0 && thr[2] == 0.4);
    /* species_min 1: species 1 gets its own (q1, known at 0.9: second up to t = 0.9, so 0) and
     * species 2 too (q2, known at 0.5: 0) */
    assert_int_equal(fl_ident_species_thresholds(q, sp, 4, 3, 1, 0.1, 0.4, thr, own, &e), 0);
    assert_true(own[1] == 1 && thr[1] == 0 && own[2] == 1 && thr[2] == 0);
}

/* n_ind individuals with 3 images each around random centres, then singletons: a clean case the
 * OOF evaluation must score 1.0 (known: top-1 is the same individual, near 1; new: far). */
static float *clustered(int n_ind, int per, int n_single, int64_t d, int32_t *ind, uint64_t seed) {
    int n = n_ind * per + n_single;
    float *x = malloc((size_t)n * d * sizeof *x), *ctr = malloc((size_t)d * sizeof *ctr);
    fl_rng r;
    fl_rng_init(&r, seed, 0);
    int row = 0;
    for (int i = 0; i < n_ind + n_single; i++) {
        for (int64_t j = 0; j < d; j++)
            ctr[j] = fl_rng_normal(&r);
        for (int p = 0; p < (i < n_ind ? per : 1); p++, row++) {
            for (int64_t j = 0; j < d; j++)
                x[row * d + j] = ctr[j] + 0.1f * fl_rng_normal(&r);
            ind[row] = i;
        }
    }
    fl_knn_normalize_rows(x, n, d);
    free(ctr);
    return x;
}

static void test_oof_eval(void **state) {
    (void)state;
    fl_err e = {{0}};
    int32_t ind[40];
    float *x = clustered(10, 3, 5, 64, ind, 7);
    uint8_t query[35];
    for (int i = 0; i < 35; i++)
        query[i] = 1;
    fl_ident_oof o;
    if (fl_ident_oof_eval(x, 35, 64, ind, query, 100, 0.01, &o, &e)) fail_msg("%s", e.msg);
    assert_true(o.map5 == 1.0);
    assert_int_equal(o.n_query, 35);
    assert_int_equal(o.n_known, 30);
    assert_int_equal(o.n_new, 5);
    assert_true(o.threshold > 0.05 && o.threshold < 0.95);
    /* queries only among the first individual's rows and one singleton */
    memset(query, 0, sizeof query);
    query[0] = query[34] = 1;
    assert_int_equal(fl_ident_oof_eval(x, 35, 64, ind, query, 5, 0.01, &o, &e), 0);
    assert_int_equal(o.n_query, 2);
    assert_int_equal(o.n_new, 1);
    assert_true(o.map5 == 1.0);
    assert_int_equal(fl_ident_oof_eval(x, 35, 64, ind, query, 5, 0, &o, &e), -1);
    free(x);
}

/* ---------------------------------------------------------------- the embeddings artifact */

static void make_emb(fl_emb *E, int n, int d, int ntest, uint64_t seed) {
    E->n = n, E->d = d;
    E->m = malloc((size_t)n * d * sizeof *E->m);
    E->image = calloc((size_t)n, sizeof *E->image);
    E->test = calloc((size_t)n, 1);
    fl_rng r;
    fl_rng_init(&r, seed, 0);
    for (int i = 0; i < n * d; i++)
        E->m[i] = fl_rng_normal(&r);
    fl_knn_normalize_rows(E->m, n, d);
    for (int i = 0; i < n; i++) {
        E->test[i] = i >= n - ntest;
        E->image[i] = fl_strdupf(E->test[i] ? "t%d.jpg" : "a,%d.jpg", i); /* a comma: quoted */
    }
}

static void test_embeddings_io(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_emb E = {0}, B;
    make_emb(&E, 12, 8, 4, 1);
    char *dir = fl_strdupf("%s/emb_io", g_root);
    if (fl_emb_write(dir, &E, &e)) fail_msg("%s", e.msg);
    if (fl_emb_read(dir, "embed[3]", &B, &e)) fail_msg("%s", e.msg);
    assert_int_equal(B.n, 12);
    assert_int_equal(B.d, 8);
    for (int i = 0; i < 12; i++) {
        assert_string_equal(B.image[i], E.image[i]);
        assert_int_equal(B.test[i], E.test[i]);
        for (int j = 0; j < 8; j++)
            assert_true(fabsf(B.m[i * 8 + j] - E.m[i * 8 + j]) < 1e-6f);
    }
    fl_emb_free(&B);
    char *rows = fl_strdupf("%s/rows.csv", dir), *st = fl_strdupf("%s/embeddings.safetensors", dir);
    char *good = slurp(rows);
    /* one row short: both files named */
    char *cut = strdup(good);
    *strrchr(cut, '\n') = 0;
    *(strrchr(cut, '\n') + 1) = 0;
    put(rows, cut);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "embed[3]"));
    assert_non_null(strstr(e.msg, "rows.csv: 11 rows"));
    assert_non_null(strstr(e.msg, "embeddings.safetensors holds 12"));
    /* bad split, duplicate image, bad row number */
    char *bad = strdup(good);
    char *p = strstr(bad, ",test\n");
    memcpy(p, ",tesx\n", 6);
    put(rows, bad);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "split 'tesx'"));
    put(rows, "row,image,split\n0,x,train\n1,y,test\n2,x,train\n3,a,train\n4,b,train\n5,c,train\n"
              "6,d,train\n7,e,train\n8,f,train\n9,g,train\n10,h,train\n11,y,train\n");
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "'x' appears twice"));
    put(rows, "row,image,split\n0,x,train\n2,y,test\n2,z,train\n3,a,train\n4,b,train\n5,c,train\n"
              "6,d,train\n7,e,train\n8,f,train\n9,g,train\n10,h,train\n11,y,train\n");
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "rows.csv:3: row is '2', expected 1"));
    put(rows, good);
    /* a NaN: file, row and image named */
    E.m[5 * 8 + 3] = NAN;
    assert_int_equal(fl_emb_write(dir, &E, &e), 0);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "embeddings.safetensors: row 5 (image 'a,5.jpg'"));
    assert_non_null(strstr(e.msg, "NaN"));
    E.m[5 * 8 + 3] = INFINITY;
    assert_int_equal(fl_emb_write(dir, &E, &e), 0);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "inf"));
    /* a zero row */
    memset(E.m + 2 * 8, 0, 8 * sizeof *E.m);
    E.m[5 * 8 + 3] = 0.5f;
    assert_int_equal(fl_emb_write(dir, &E, &e), 0);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "row 2"));
    /* width 0 */
    fl_emb Z = {.n = 0, .d = 0};
    assert_int_equal(fl_emb_write(dir, &Z, &e), -1);
    int64_t shape[2] = {3, 0};
    fl_st_entry ent = {
        .name = "embeddings", .dtype = FL_ST_F32, .ndim = 2, .shape = shape, .data = E.m};
    fl_st_kv meta[] = {{"fluke.kind", "embeddings"}};
    assert_int_equal(fl_st_write(st, &ent, 1, meta, 1, &e), 0);
    assert_int_equal(fl_emb_read(dir, "embed[3]", &B, &e), -1);
    assert_non_null(strstr(e.msg, "width 0"));
    fl_emb_free(&E);
    free(dir), free(rows), free(st), free(good), free(cut), free(bad);
}

/* ---------------------------------------------------------------- the knn stage end to end */

typedef struct runner {
    fl_plan plan;
    cJSON *config;
    int devnull;
} runner;

static int run_node(runner *r, fl_plan_node *n, fl_err *e) {
    char *out = fl_strdupf("%s/%s", g_root, n->id), *work = fl_strdupf("%s/%s.work", g_root, n->id);
    fl_remove_tree(out, e);
    fl_mkdirs(out, e);
    fl_mkdirs(work, e);
    const char *paths[16] = {0};
    char *owned[16] = {0};
    for (size_t k = 0; k < n->ninputs; k++)
        paths[k] = owned[k] = fl_strdupf("%s/%s", g_root, n->inputs[k].from_node);
    fl_stage_ctx c = {.node = n,
                      .config = r->config,
                      .out_dir = out,
                      .work_dir = work,
                      .input_paths = paths,
                      .threads = 2,
                      .gpu = -1,
                      .t_start = fl_now(),
                      .out_fd = getenv("KNN_TEST_LOG") ? 2 : r->devnull};
    int rc = n->def->run(&c, e);
    for (size_t k = 0; k < n->ninputs; k++)
        free(owned[k]);
    free(out), free(work);
    return rc;
}

/* A knn node named id over folds dir `folds` and embeddings e0, e1, config section text. */
static int run_knn(runner *r, const char *id, const char *folds, const char *e0, const char *e1,
                   const char *knn, fl_err *e) {
    cJSON_Delete(r->config);
    char *text = fl_strdupf("{\"knn\": %s}", knn);
    r->config = cJSON_Parse(text);
    free(text);
    assert_non_null(r->config);
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_knn, id, e);
    assert_non_null(n);
    assert_int_equal(fl_plan_node_section(n, "knn", e), 0);
    assert_int_equal(fl_plan_node_input(n, "data", "data", e), 0);
    assert_int_equal(fl_plan_node_input(n, "folds", folds, e), 0);
    assert_int_equal(fl_plan_node_input(n, "embed0", e0, e), 0);
    if (e1) assert_int_equal(fl_plan_node_input(n, "embed1", e1, e), 0);
    return run_node(r, n, e);
}

/* Synthetic set: 12 individuals x 3 train images + 4 singletons = 40 train images (2 folds,
 * each individual's images in one fold... except the 3-image individuals split 2/1 across
 * folds so that OOF has known queries); 10 test images: 8 are noisy copies of individuals
 * 0..7, 2 are new; test image t9 has no embedding (bad crop). Train image i39 has none
 * either. Each fold's embeddings: the same clusters plus fold-specific noise. */
#define N_IND 12
#define N_TR (N_IND * 3 + 4)
#define N_TE 10
static void write_dataset(void) {
    fl_err e = {{0}};
    char *d = fl_strdupf("%s/data", g_root), *f = fl_strdupf("%s/folds", g_root);
    fl_mkdirs(d, &e), fl_mkdirs(f, &e);
    char *sample = fl_strdupf("%s/sample_submission.csv", d),
         *folds = fl_strdupf("%s/folds.csv", f);
    char buf[8192];
    int l = sprintf(buf, "image,predictions\n");
    for (int i = 0; i < N_TE; i++)
        l += sprintf(buf + l, "t%d.jpg,new_individual\n", i);
    put(sample, buf);
    l = sprintf(buf, "image,individual_id,species,fold\n");
    for (int i = 0; i < N_TR; i++) {
        int who = i < N_IND * 3 ? i / 3 : N_IND + (i - N_IND * 3);
        int fold = i < N_IND * 3 ? (i % 3 == 2) : i % 2;
        l +=
            sprintf(buf + l, "i%d.jpg,id%02d,%s,%d\n", i, who, who % 2 ? "whale" : "dolphin", fold);
    }
    put(folds, buf);
    /* the same rows grouped by individual (GroupKFold): every validation individual is absent
     * from its fold's training part, yet its other images are in the validation fold itself */
    char *fg = fl_strdupf("%s/folds_g", g_root), *folds_g = fl_strdupf("%s/folds.csv", fg);
    fl_mkdirs(fg, &e);
    l = sprintf(buf, "image,individual_id,species,fold\n");
    for (int i = 0; i < N_TR; i++) {
        int who = i < N_IND * 3 ? i / 3 : N_IND + (i - N_IND * 3);
        l += sprintf(buf + l, "i%d.jpg,id%02d,%s,%d\n", i, who, who % 2 ? "whale" : "dolphin", who % 2);
    }
    put(folds_g, buf);
    free(fg), free(folds_g);
    int64_t dim = 32;
    fl_rng r;
    fl_rng_init(&r, 99, 0);
    float ctr[N_IND + 4 + 2][32];
    for (int i = 0; i < N_IND + 6; i++)
        for (int j = 0; j < dim; j++)
            ctr[i][j] = fl_rng_normal(&r);
    for (int k = 0; k < 2; k++) {
        fl_emb E = {.n = N_TR - 1 + N_TE - 1, .d = dim};
        E.m = malloc((size_t)E.n * dim * sizeof *E.m);
        E.image = calloc((size_t)E.n, sizeof *E.image);
        E.test = calloc((size_t)E.n, 1);
        for (int64_t row = 0; row < E.n; row++) {
            int who;
            if (row < N_TR - 1) { /* train i0 .. i38 */
                E.image[row] = fl_strdupf("i%d.jpg", (int)row);
                who = row < N_IND * 3 ? (int)row / 3 : N_IND + ((int)row - N_IND * 3);
            } else { /* test t0 .. t8 */
                int t = (int)row - (N_TR - 1);
                E.image[row] = fl_strdupf("t%d.jpg", t);
                E.test[row] = 1;
                who = t < 8 ? t : N_IND + 4 + (t - 8);
            }
            for (int j = 0; j < dim; j++)
                E.m[row * dim + j] = ctr[who][j] + 0.25f * fl_rng_normal(&r);
        }
        fl_knn_normalize_rows(E.m, E.n, dim);
        char *dir = fl_strdupf("%s/embed%d/embeddings", g_root, k);
        if (fl_emb_write(dir, &E, &e)) fail_msg("%s", e.msg);
        free(dir);
        fl_emb_free(&E);
    }
    free(d), free(f), free(sample), free(folds);
}

static void test_knn_stage(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_knn(r, "knn_a", "folds", "embed0", "embed1",
                "{\"k\": 10, \"per_species\": true, "
                "\"species_min\": 5}",
                &e))
        fail_msg("%s", e.msg);
    char *sp = fl_strdupf("%s/knn_a/submission.csv", g_root),
         *cvp = fl_strdupf("%s/knn_a/cv.json", g_root);
    fl_submission s;
    if (fl_submission_read(sp, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.n, N_TE);
    for (int i = 0; i < N_TE; i++) {
        assert_int_equal(s.npred[i], 5);
        char want[16];
        snprintf(want, sizeof want, "id%02d", i);
        if (i < 8) assert_true(!strcmp(s.pred[i][0], want) || !strcmp(s.pred[i][1], want));
    }
    /* t9 has no embedding: new_individual + the most frequent (the 3-image individuals, by id:
     * id00 id01 id02 id03) */
    const char *fb[5] = {FL_NEW_INDIVIDUAL, "id00", "id01", "id02", "id03"};
    for (int j = 0; j < 5; j++)
        assert_string_equal(s.pred[9][j], fb[j]);
    fl_submission_free(&s);
    char *text = slurp(cvp);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    const char *keys[] = {"map5",      "map5_known",           "map5_new", "threshold", "n_query",
                          "new_share", "test_new_first_share", "k"};
    for (size_t q = 0; q < sizeof keys / sizeof *keys; q++)
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[q])));
    assert_string_equal(cJSON_GetObjectItem(j, "ensemble")->valuestring, "embeddings");
    assert_int_equal((int)cJSON_GetObjectItem(j, "n_query")->valuedouble, N_TR - 1);
    assert_int_equal((int)cJSON_GetObjectItem(j, "n_train_missing")->valuedouble, 1);
    assert_int_equal((int)cJSON_GetObjectItem(j, "n_test_fallback")->valuedouble, 1);
    assert_int_equal((int)cJSON_GetObjectItem(j, "k")->valuedouble, 10);
    /* clean clusters: OOF MAP@5 near perfect; fold 0 has the 2-image halves (known), fold 1
     * the third images (known) and singletons (new) */
    assert_true(cJSON_GetObjectItem(j, "map5")->valuedouble > 0.9);
    const cJSON *fo = cJSON_GetObjectItem(j, "folds");
    assert_int_equal(cJSON_GetArraySize(fo), 2);
    int ntot = 0, nnew = 0;
    for (int f = 0; f < 2; f++) {
        const cJSON *x = cJSON_GetArrayItem(fo, f);
        assert_int_equal((int)cJSON_GetObjectItem(x, "fold")->valuedouble, f);
        ntot += (int)cJSON_GetObjectItem(x, "n")->valuedouble;
        nnew += (int)cJSON_GetObjectItem(x, "n_new")->valuedouble;
    }
    assert_int_equal(ntot, N_TR - 1);
    assert_int_equal(nnew, 3); /* singletons i36 i37 i38 (i39 has no embedding) */
    /* per species with >= 5 validation images: both species have 19-20 */
    const cJSON *st = cJSON_GetObjectItem(j, "species_thresholds");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(st, "whale")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(st, "dolphin")));
    cJSON_Delete(j);
    free(text);

    /* score with the cv input */
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_score, "score_cv", &e);
    assert_int_equal(fl_plan_node_input(n, "cv", "knn_a", &e), 0);
    if (run_node(r, n, &e)) fail_msg("%s", e.msg);
    char *mp = fl_strdupf("%s/score_cv/metrics.json", g_root);
    text = slurp(mp);
    j = cJSON_Parse(text);
    const cJSON *cv = cJSON_GetObjectItem(j, "cv");
    assert_non_null(cv);
    assert_true(cJSON_GetObjectItem(cv, "map5")->valuedouble > 0.9);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cv, "folds")), 2);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cv, "threshold")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(cv, "species_thresholds")));
    cJSON_Delete(j);
    free(text), free(mp);

    /* the similarity ensemble and a given threshold: no species thresholds, threshold kept */
    if (run_knn(r, "knn_b", "folds", "embed0", "embed1",
                "{\"ensemble\": \"similarity\", "
                "\"threshold\": 0.8}",
                &e))
        fail_msg("%s", e.msg);
    /* at 0.8 (known test images: cosine ~0.94 to their individual; t8, new: < 0.6) */
    char *spb = fl_strdupf("%s/knn_b/submission.csv", g_root);
    if (fl_submission_read(spb, &s, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < 8; i++) {
        char want[16];
        snprintf(want, sizeof want, "id%02d", i);
        assert_string_equal(s.pred[i][0], want);
        assert_string_equal(s.pred[i][1], FL_NEW_INDIVIDUAL);
    }
    assert_string_equal(s.pred[8][0], FL_NEW_INDIVIDUAL);
    fl_submission_free(&s);
    free(spb);
    char *cvb = fl_strdupf("%s/knn_b/cv.json", g_root);
    text = slurp(cvb);
    j = cJSON_Parse(text);
    assert_true(cJSON_GetObjectItem(j, "threshold")->valuedouble == 0.8);
    assert_null(cJSON_GetObjectItem(j, "species_thresholds"));
    assert_string_equal(cJSON_GetObjectItem(j, "ensemble")->valuestring, "similarity");
    cJSON_Delete(j);
    free(text), free(cvb);
    /* the same config twice: the same bytes */
    if (run_knn(r, "knn_c", "folds", "embed0", "embed1",
                "{\"k\": 10, \"per_species\": true, "
                "\"species_min\": 5}",
                &e))
        fail_msg("%s", e.msg);
    char *sc = fl_strdupf("%s/knn_c/submission.csv", g_root);
    char *t1 = slurp(sp), *t2 = slurp(sc);
    assert_string_equal(t1, t2);
    free(t1), free(t2), free(sc), free(sp), free(cvp);
}

/* Bad input: a missing fold input, embeddings that disagree between folds, rows not in
 * folds.csv / sample_submission.csv, a bad config value. */
/* Grouped folds: a validation image is ranked against every other train image (its own fold's
 * included), so the 3-image individuals are known and only the singletons are new. */
/* The pseudo threshold on a hand-made case: conf 0.9 0.8 0.8 0.7 0.6 0.5, hit 1 1 0 1 1 0;
 * the cuts >= 0.9, 0.8, 0.7, 0.6, 0.5 have precision 1, 2/3, 3/4, 4/5, 4/6. */
static void test_pseudo_threshold(void **state) {
    (void)state;
    const float conf[] = {0.7f, 0.9f, 0.8f, 0.5f, 0.8f, 0.6f, -INFINITY};
    const uint8_t hit[] = {1, 1, 1, 0, 0, 1, 1}; /* the -inf one (no neighbour) never counts */
    fl_pseudo_cut c;
    fl_err e = {{0}};
    assert_int_equal(fl_pseudo_threshold(conf, hit, 7, 0.75, 1, -1, &c, &e), 0);
    assert_true(c.reached);
    assert_true(c.threshold == 0.6f && c.n_above == 5 && fabs(c.precision - 0.8) < 1e-12);
    assert_int_equal(fl_pseudo_threshold(conf, hit, 7, 0.75, 1, 0.65, &c, &e), 0); /* floor */
    assert_true(c.threshold == 0.7f && c.n_above == 4 && fabs(c.precision - 0.75) < 1e-12);
    assert_int_equal(fl_pseudo_threshold(conf, hit, 7, 1.0, 1, -1, &c, &e), 0);
    assert_true(c.threshold == 0.9f && c.n_above == 1);
    assert_int_equal(fl_pseudo_threshold(conf, hit, 7, 0.75, 6, -1, &c, &e), 0); /* support */
    assert_false(c.reached);
    assert_true(isinf(c.threshold));
    assert_int_equal(fl_pseudo_threshold(conf, hit, 7, 0.7, 2, -1, &c, &e), 0); /* ties cut together */
    assert_true(c.threshold == 0.6f);
    /* the first three only (all hits): {0.9} is below min_n 2, {0.9, 0.8} and {.., 0.7} are
     * precise: the lowest, 0.7, wins */
    assert_int_equal(fl_pseudo_threshold(conf, hit, 3, 0.99, 2, -1, &c, &e), 0);
    assert_true(c.reached && c.threshold == 0.7f && c.n_above == 3);
}

/* knn's top-1 files -> the pseudo stage -> a knn round with the pseudo-labelled images in its
 * gallery, where a pseudo-labelled test image must not find itself. */
static void test_knn_pseudo_round(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_knn(r, "knn_p0", "folds", "embed0", "embed1", "{\"k\": 10}", &e)) fail_msg("%s", e.msg);
    char *oof = fl_strdupf("%s/knn_p0/oof.csv", g_root), *pred = fl_strdupf("%s/knn_p0/predictions.csv", g_root);
    fl_csv c;
    if (fl_csv_read(oof, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.nrows, N_TR - 1);
    assert_string_equal(c.header[0], "image");
    fl_csv_free(&c);
    if (fl_csv_read(pred, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.nrows, N_TE - 1); /* t9 has no embedding */
    for (int i = 1; i <= N_TE - 1; i++) { /* clean clusters: every known test image's top-1 is right */
        char want[16];
        int t = atoi(c.rows[i].f[0] + 1);
        if (t < 8) {
            snprintf(want, sizeof want, "id%02d", t);
            assert_string_equal(c.rows[i].f[1], want);
        }
    }
    fl_csv_free(&c);

    cJSON_Delete(r->config);
    r->config = cJSON_Parse("{\"pseudo\": {\"select\": {\"precision\": 0.9, \"min_n\": 5}}}");
    fl_plan_node *n = fl_plan_add_as(&r->plan, &fl_stage_pseudo, "pseudo_1", &e);
    assert_int_equal(fl_plan_node_section(n, "pseudo.select", &e), 0);
    assert_int_equal(fl_plan_node_input(n, "knn", "knn_p0", &e), 0);
    if (run_node(r, n, &e)) fail_msg("%s", e.msg);
    char *pcsv = fl_strdupf("%s/pseudo_1/pseudo.csv", g_root);
    fl_pseudo P;
    if (fl_pseudo_read(pcsv, &P, &e)) fail_msg("%s", e.msg);
    assert_true(P.n >= 6 && P.n <= 9); /* the 8 known ones, maybe minus a borderline one */
    for (int j = 0; j < P.n; j++) {
        int t = atoi(P.image[j] + 1);
        char want[16];
        snprintf(want, sizeof want, "id%02d", t);
        if (t < 8) assert_string_equal(P.individual[j], want);
    }
    fl_pseudo_free(&P);
    char *js = fl_strdupf("%s/pseudo_1/pseudo.json", g_root), *text = slurp(js);
    cJSON *j = cJSON_Parse(text);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "reached")));
    assert_true(cJSON_GetObjectItem(j, "oof_precision")->valuedouble >= 0.9);
    cJSON_Delete(j), free(text);

    /* a wrong pseudo-label on t0 (id05): with the self-exclusion t0 still answers id00 before
     * id05; finding itself would put id05 first at similarity 1 */
    put(pcsv, "image,individual_id,species,confidence\nt0.jpg,id05,whale,0.99\nt1.jpg,id01,whale,0.99\n");
    fl_plan_node *k2 = fl_plan_add_as(&r->plan, &fl_stage_knn, "knn_p1", &e);
    assert_int_equal(fl_plan_node_section(k2, "knn", &e), 0);
    assert_int_equal(fl_plan_node_input(k2, "data", "data", &e), 0);
    assert_int_equal(fl_plan_node_input(k2, "folds", "folds", &e), 0);
    assert_int_equal(fl_plan_node_input(k2, "embed0", "embed0", &e), 0);
    assert_int_equal(fl_plan_node_input(k2, "embed1", "embed1", &e), 0);
    assert_int_equal(fl_plan_node_input(k2, "pseudo", "pseudo_1", &e), 0);
    cJSON_Delete(r->config);
    r->config = cJSON_Parse("{\"knn\": {\"k\": 10}}");
    if (run_node(r, k2, &e)) fail_msg("%s", e.msg);
    char *sp = fl_strdupf("%s/knn_p1/submission.csv", g_root);
    fl_submission s;
    if (fl_submission_read(sp, &s, &e)) fail_msg("%s", e.msg);
    int q = !strcmp(s.pred[0][0], FL_NEW_INDIVIDUAL);
    assert_string_equal(s.pred[0][q], "id00");
    fl_submission_free(&s);
    /* a pseudo-label of an individual folds.csv does not know is left out (counted in the
     * log), and the round still answers */
    put(pcsv, "image,individual_id,species,confidence\nt0.jpg,id99,whale,0.99\n");
    if (run_node(r, k2, &e)) fail_msg("%s", e.msg);
    /* a broken pseudo.csv names its file and line */
    put(pcsv, "image,individual_id,species,confidence\nt0.jpg,id01,whale,x\n");
    assert_int_equal(run_node(r, k2, &e), -1);
    assert_non_null(strstr(e.msg, "pseudo.csv:2: confidence 'x'"));
    free(oof), free(pred), free(pcsv), free(js), free(sp);
}

static void test_knn_grouped_folds(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    if (run_knn(r, "knn_g", "folds_g", "embed0", "embed1", "{\"k\": 10}", &e)) fail_msg("%s", e.msg);
    char *cvp = fl_strdupf("%s/knn_g/cv.json", g_root);
    char *text = slurp(cvp);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetObjectItem(j, "n_query")->valuedouble, N_TR - 1);
    const cJSON *fo = cJSON_GetObjectItem(j, "folds");
    int nknown = 0, nnew = 0;
    for (int f = 0; f < 2; f++) {
        nknown += (int)cJSON_GetObjectItem(cJSON_GetArrayItem(fo, f), "n_known")->valuedouble;
        nnew += (int)cJSON_GetObjectItem(cJSON_GetArrayItem(fo, f), "n_new")->valuedouble;
    }
    assert_int_equal(nknown, N_IND * 3);
    assert_int_equal(nnew, 3);
    assert_true(cJSON_GetObjectItem(j, "map5")->valuedouble > 0.9);
    cJSON_Delete(j);
    free(text), free(cvp);
}

static void test_knn_stage_errors(void **state) {
    runner *r = *state;
    fl_err e = {{0}};
    assert_int_equal(run_knn(r, "knn_e1", "folds", "embed0", NULL, "{}", &e), -1);
    assert_non_null(strstr(e.msg, "embed1"));
    assert_non_null(strstr(e.msg, "2 folds"));
    /* embed2: embed0 with one train image renamed */
    fl_emb E;
    char *src = fl_strdupf("%s/embed0/embeddings", g_root),
         *dst = fl_strdupf("%s/embed2/embeddings", g_root);
    if (fl_emb_read(src, "embed[0]", &E, &e)) fail_msg("%s", e.msg);
    free(E.image[3]);
    E.image[3] = strdup("stranger.jpg");
    assert_int_equal(fl_emb_write(dst, &E, &e), 0);
    assert_int_equal(run_knn(r, "knn_e2", "folds", "embed0", "embed2", "{}", &e), -1);
    assert_non_null(strstr(e.msg, "embed[1] rows.csv row 3 is 'stranger.jpg'"));
    assert_non_null(strstr(e.msg, "embed[0] has 'i3.jpg'"));
    assert_int_equal(run_knn(r, "knn_e3", "folds", "embed2", "embed2", "{}", &e), -1);
    assert_non_null(strstr(e.msg, "row 3: train image 'stranger.jpg' is not in"));
    assert_non_null(strstr(e.msg, "folds.csv"));
    free(E.image[3]);
    E.image[3] = strdup("i3.jpg");
    free(E.image[E.n - 1]);
    E.image[E.n - 1] = strdup("t99.jpg");
    assert_int_equal(fl_emb_write(dst, &E, &e), 0);
    assert_int_equal(run_knn(r, "knn_e4", "folds", "embed2", "embed2", "{}", &e), -1);
    assert_non_null(strstr(e.msg, "test image 't99.jpg' is not in"));
    assert_non_null(strstr(e.msg, "sample_submission.csv"));
    fl_emb_free(&E);
    assert_int_equal(
        run_knn(r, "knn_e5", "folds", "embed0", "embed1", "{\"ensemble\": \"vote\"}", &e), -1);
    assert_non_null(strstr(e.msg, "knn.ensemble"));
    free(src), free(dst);
}

static int group_setup(void **state) {
    (void)state;
    strcpy(g_root, "/tmp/fluke_ident_XXXXXX");
    if (!mkdtemp(g_root)) return -1;
    write_dataset();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    fl_err e;
    if (!getenv("KNN_TEST_KEEP")) fl_remove_tree(g_root, &e);
    return 0;
}

static int setup(void **state) {
    runner *r = calloc(1, sizeof *r);
    fl_plan_init(&r->plan, g_root);
    r->devnull = open("/dev/null", O_WRONLY);
    *state = r;
    return 0;
}

static int teardown(void **state) {
    runner *r = *state;
    fl_plan_free(&r->plan);
    cJSON_Delete(r->config);
    close(r->devnull);
    free(r);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_candidates_and_answer),
        cmocka_unit_test(test_map5_and_threshold),
        cmocka_unit_test(test_species_fallback),
        cmocka_unit_test(test_oof_eval),
        cmocka_unit_test(test_embeddings_io),
        cmocka_unit_test_setup_teardown(test_knn_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_knn_grouped_folds, setup, teardown),
        cmocka_unit_test(test_pseudo_threshold),
        cmocka_unit_test_setup_teardown(test_knn_pseudo_round, setup, teardown),
        cmocka_unit_test_setup_teardown(test_knn_stage_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
