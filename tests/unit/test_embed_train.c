/* The embedding model's training and inference (stages/embed/train.c, infer.c, model_io.c) on
 * the tiny fold layout of embed_fixture.h (tf_efficientnet_b0 at width / depth 0.25, 32 px):
 *   - 3 epochs train and write a model file that loads strictly into a fresh inference store;
 *   - a run killed in epoch 2 (this binary re-executed as a child that _exits from the progress
 *     callback once epoch 1's checkpoint is written, like kill -9) resumes from the checkpoint
 *     and ends with a model file byte-identical to the uninterrupted run's;
 *   - a checkpoint that does not load is a fresh start, one of the last epoch a model rewrite,
 *     both byte-identical too;
 *   - a non-finite loss (lr 1e30) stops with an error naming the fold, epoch and step and
 *     whether a checkpoint is kept (and keeps it unchanged);
 *   - flip TTA (a 1-epoch model): the embedding of an image equals that of its mirror image, is
 *     the renormalized mean of the two normalized views, rows are unit norm and independent of
 *     the batch; without TTA the mirror differs;
 *   - a timm-named pretrained backbone loads (the log says so, the weights arrive by name), one
 *     of another width fails listing the mis-shaped keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "embed_fixture.h"
#include "runtime/models/effnet.h"
#include "runtime/safetensors.h"
#include "stages/embed/embed.h"

#define KILLED_EXIT 42

static embf g_fix;
static char g_model_a[256]; /* the uninterrupted run's model file (test_train_and_load) */
static char g_ckpt_epoch1[256]; /* a copy of the killed run's checkpoint (after epoch 1) */

typedef struct logbuf {
    char text[16384];
    size_t n;
} logbuf;

static void on_log(void *u, const char *line) {
    logbuf *b = u;
    int n = snprintf(b->text + b->n, sizeof b->text - b->n, "%s\n", line);
    if (n > 0) b->n += (size_t)n < sizeof b->text - b->n ? (size_t)n : sizeof b->text - b->n - 1;
}

typedef struct run_paths {
    char dir[192], model[256], metrics[256], ckpt[256];
} run_paths;

static void paths_in(const char *name, run_paths *p) {
    fl_err e = {{0}};
    snprintf(p->dir, sizeof p->dir, "%s/%s", g_fix.root, name);
    assert_int_equal(fl_mkdirs(p->dir, &e), 0);
    snprintf(p->model, sizeof p->model, "%s/%s", p->dir, FL_EMBED_MODEL_FILE);
    snprintf(p->metrics, sizeof p->metrics, "%s/%s", p->dir, FL_EMBED_METRICS_FILE);
    snprintf(p->ckpt, sizeof p->ckpt, "%s/embed_last.ckpt", p->dir);
}

static int train(const fl_embopts *o, const fl_embset *s, const run_paths *p, int ckpt,
                 const char *pretrained, logbuf *lb, fl_err *e) {
    memset(lb, 0, sizeof *lb);
    fl_embtrain_io io = {.set = s, .ckpt_path = ckpt ? p->ckpt : NULL, .pretrained = pretrained,
                         .model_path = p->model, .metrics_path = p->metrics, .log = on_log,
                         .user = lb};
    return fl_embtrain_run(o, &io, e);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static char *slurp(const char *path, size_t *n) {
    fl_err e = {{0}};
    char *b = fl_read_file(path, n, &e);
    if (!b) fail_msg("%s", e.msg);
    return b;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = slurp(from, &n);
    fl_err e = {{0}};
    assert_int_equal(fl_write_file_atomic(to, b, n, &e), 0);
    free(b);
}

static void build_set(int k, fl_embset *s) {
    fl_err e = {{0}};
    if (fl_embset_build(g_fix.folds_csv, g_fix.crop_dir, k, s, &e)) fail_msg("%s", e.msg);
}

static void assert_unit_rows(const float *v, size_t n, int64_t d) {
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) {
            assert_true(isfinite(v[i * d + j]));
            ss += (double)v[i * d + j] * v[i * d + j];
        }
        if (fabs(sqrt(ss) - 1) > 1e-5) fail_msg("row %zu has norm %.7f", i, sqrt(ss));
    }
}

/* ------------------------------------------------------------------ training */

static void test_train_and_load(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "", &e), 0);
    build_set(0, &s);
    run_paths p;
    paths_in("run_a", &p);
    logbuf lb;
    double t0 = fl_now();
    if (train(&o, &s, &p, 1, NULL, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    printf("    3 epochs of 3 batches of 8 at 32 px: %.1f s\n", fl_now() - t0);
    if (!strstr(lb.text, "fold 0:") || !strstr(lb.text, "ArcFace over 9 individuals") ||
        !strstr(lb.text, "26 train / 18 val crops") || !strstr(lb.text, "epoch 3/3"))
        fail_msg("log:\n%s", lb.text);
    assert_true(exists(p.ckpt));
    snprintf(g_model_a, sizeof g_model_a, "%s", p.model);

    /* metrics: 3 epochs, each validated (val_every 1), the final numbers */
    size_t n;
    char *txt = slurp(p.metrics, &n);
    cJSON *m = cJSON_Parse(txt);
    free(txt);
    assert_non_null(m);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "epochs")), 3);
    const cJSON *ep = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "epochs"), 2);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(ep, "val_map5")));
    /* validation loss over fold-0 images of individuals with training images (the whales) */
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(ep, "val_loss")));
    assert_true(isfinite(cJSON_GetObjectItem(ep, "val_loss")->valuedouble));
    assert_true(isfinite(cJSON_GetObjectItem(ep, "loss")->valuedouble));
    const cJSON *fin = cJSON_GetObjectItem(m, "final");
    assert_int_equal(cJSON_GetObjectItem(fin, "classes")->valueint, 9);
    assert_int_equal(cJSON_GetObjectItem(fin, "train_images")->valueint, 26);
    assert_int_equal(cJSON_GetObjectItem(fin, "val_images")->valueint, 18);
    assert_int_equal(cJSON_GetObjectItem(m, "fold")->valueint, 0);
    cJSON_Delete(m);

    /* the model file: metadata, no heads, strict load into a fresh inference store */
    fl_st_set *set = fl_st_open_set(p.model, &e);
    assert_non_null(set);
    assert_string_equal(fl_st_meta(set->files[0], "fluke.kind"), "embed_model");
    assert_string_equal(fl_st_meta(set->files[0], "embed.classes"), "9");
    assert_string_equal(fl_st_meta(set->files[0], "embed.imgsz"), "32");
    assert_null(fl_st_find(set->files[0], "head.weight"));
    assert_non_null(fl_st_find(set->files[0], "backbone.conv_stem.weight"));
    fl_st_close_set(set);
    fl_embinfer *inf = fl_embinfer_new(&o, 8, &e);
    assert_non_null(inf);
    if (fl_embmodel_load(p.model, fl_embinfer_store(inf), &e)) fail_msg("%s", e.msg);
    float *emb = malloc(sizeof *emb * (size_t)s.nall * 64);
    assert_non_null(emb);
    assert_int_equal(fl_embinfer_dim(inf), 64);
    if (fl_embinfer_run(inf, s.all, (size_t)s.nall, 1, 1, emb, NULL, NULL, &e)) fail_msg("%s", e.msg);
    assert_unit_rows(emb, (size_t)s.nall, 64);
    /* trained: not every row the same */
    double dmax = 0;
    for (int64_t j = 0; j < 64; j++) dmax = fmax(dmax, fabs(emb[j] - emb[(s.nall - 1) * 64 + j]));
    assert_true(dmax > 1e-3);
    free(emb);
    /* the checkpoint is not a model file */
    assert_int_not_equal(fl_embmodel_load(p.ckpt, fl_embinfer_store(inf), &e), 0);
    assert_non_null(strstr(e.msg, "not an embedding model"));
    fl_embinfer_free(inf);
    /* a model of another size does not load (strict) */
    fl_embopts o2;
    assert_int_equal(embf_opts(&o2, "", &e), 0);
    o2.model.emb_dim = 32;
    fl_embinfer *inf2 = fl_embinfer_new(&o2, 8, &e);
    assert_non_null(inf2);
    assert_int_not_equal(fl_embmodel_load(p.model, fl_embinfer_store(inf2), &e), 0);
    if (!strstr(e.msg, p.model) || !strstr(e.msg, "neck.")) fail_msg("%s", e.msg);
    fl_embinfer_free(inf2);
    fl_embset_free(&s);
}

/* The child of test_kill_and_resume: the same run as run_a, in its own dir, leaving the
 * process as soon as a step of epoch 2 reports progress (epoch 1's checkpoint is on disk). */
typedef struct killer {
    int epochs;
} killer;

static void kill_in_epoch2(void *u, uint64_t step, uint64_t total, const char *line) {
    (void)line;
    const killer *k = u;
    if (step > total / (uint64_t)k->epochs) _exit(KILLED_EXIT);
}

static int killed_run(const char *root, const char *dir) {
    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    char folds[256], crop[256], model[256], metrics[256], ckpt[256];
    snprintf(folds, sizeof folds, "%s/folds.csv", root);
    snprintf(crop, sizeof crop, "%s/crop", root);
    snprintf(model, sizeof model, "%s/%s", dir, FL_EMBED_MODEL_FILE);
    snprintf(metrics, sizeof metrics, "%s/%s", dir, FL_EMBED_METRICS_FILE);
    snprintf(ckpt, sizeof ckpt, "%s/embed_last.ckpt", dir);
    if (embf_opts(&o, "", &e) || fl_embset_build(folds, crop, 0, &s, &e)) {
        fprintf(stderr, "killed_run: %s\n", e.msg);
        return 1;
    }
    killer k = {o.epochs};
    fl_embtrain_io io = {.set = &s, .ckpt_path = ckpt, .model_path = model,
                         .metrics_path = metrics, .progress = kill_in_epoch2, .user = &k};
    int rc = fl_embtrain_run(&o, &io, &e);
    fprintf(stderr, "killed_run: not killed (rc %d: %s)\n", rc, rc ? e.msg : "finished");
    fl_embset_free(&s);
    return 1;
}

static void test_kill_and_resume(void **state) {
    (void)state;
    if (!g_model_a[0]) fail_msg("needs test_train_and_load's model");
    run_paths p;
    paths_in("run_b", &p);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_embed_train", "--killed-run", g_fix.root, p.dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != KILLED_EXIT)
        fail_msg("child: status 0x%x, not the kill in epoch 2", st);
    assert_true(exists(p.ckpt));
    assert_false(exists(p.model));
    snprintf(g_ckpt_epoch1, sizeof g_ckpt_epoch1, "%s/epoch1.ckpt", g_fix.root);
    copy_file(p.ckpt, g_ckpt_epoch1);

    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "", &e), 0);
    build_set(0, &s);
    logbuf lb;
    if (train(&o, &s, &p, 1, NULL, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    if (!strstr(lb.text, "resuming from") || !strstr(lb.text, "after epoch 1 of 3") ||
        strstr(lb.text, "epoch 1/3:") || !strstr(lb.text, "epoch 2/3:"))
        fail_msg("log:\n%s", lb.text);
    size_t na, nb;
    char *a = slurp(g_model_a, &na), *b = slurp(p.model, &nb);
    assert_int_equal(na, nb);
    if (memcmp(a, b, na)) fail_msg("the resumed model differs from the uninterrupted run's");
    free(a);
    free(b);
    /* the metrics too: epoch 1's entry comes from the checkpoint */
    char ma[256];
    snprintf(ma, sizeof ma, "%s/run_a/%s", g_fix.root, FL_EMBED_METRICS_FILE);
    a = slurp(ma, &na), b = slurp(p.metrics, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    fl_embset_free(&s);
}

/* A checkpoint that does not load is a warning and a fresh start, with the same result; a
 * checkpoint of the last epoch resumes with nothing left to train and writes the same model. */
static void test_bad_and_final_checkpoints(void **state) {
    (void)state;
    if (!g_model_a[0]) fail_msg("needs test_train_and_load's model");
    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "", &e), 0);
    build_set(0, &s);
    run_paths p;
    paths_in("run_c", &p);
    assert_int_equal(fl_write_file_atomic(p.ckpt, "not a checkpoint", 16, &e), 0);
    logbuf lb;
    if (train(&o, &s, &p, 1, NULL, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    if (!strstr(lb.text, "does not load") || !strstr(lb.text, "starting over") ||
        !strstr(lb.text, "epoch 1/3:"))
        fail_msg("log:\n%s", lb.text);
    size_t na, nb;
    char *a = slurp(g_model_a, &na), *b = slurp(p.model, &nb);
    assert_int_equal(na, nb);
    if (memcmp(a, b, na)) fail_msg("a fresh start after a bad checkpoint differs from run_a");
    free(b);
    /* p.ckpt now holds epoch 3 of 3: a rerun trains nothing and writes the same model */
    assert_int_equal(remove(p.model), 0);
    if (train(&o, &s, &p, 1, NULL, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    if (!strstr(lb.text, "after epoch 3 of 3") || strstr(lb.text, "epoch 3/3:"))
        fail_msg("log:\n%s", lb.text);
    b = slurp(p.model, &nb);
    assert_int_equal(na, nb);
    if (memcmp(a, b, na)) fail_msg("the model rewritten from the final checkpoint differs");
    free(a);
    free(b);
    fl_embset_free(&s);
}

static void test_nan_guard(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "\"schedule\": \"constant\"", &e), 0);
    o.lr = 1e30; /* beyond the schema's range, so set here */
    build_set(0, &s);
    run_paths p;
    paths_in("run_nan", &p);
    logbuf lb;
    assert_int_not_equal(train(&o, &s, &p, 1, NULL, &lb, &e), 0);
    if (!strstr(e.msg, "embed_train[0]") || !strstr(e.msg, "epoch 1 step 2") ||
        !strstr(e.msg, "no epoch finished, so there is no checkpoint"))
        fail_msg("%s", e.msg);
    assert_false(exists(p.ckpt));
    assert_false(exists(p.model));

    /* resumed from a good epoch-1 checkpoint: the error says it is kept, and it is */
    if (!g_ckpt_epoch1[0]) fail_msg("needs test_kill_and_resume's checkpoint");
    run_paths q;
    paths_in("run_nan2", &q);
    copy_file(g_ckpt_epoch1, q.ckpt);
    fl_embopts o3;
    assert_int_equal(embf_opts(&o3, "", &e), 0);
    o3.lr = 1e30;
    assert_int_not_equal(train(&o3, &s, &q, 1, NULL, &lb, &e), 0);
    if (!strstr(e.msg, "embed_train[0]") || !strstr(e.msg, "epoch 2 step 2") ||
        !strstr(e.msg, "the last good checkpoint (epoch 1) is kept"))
        fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    size_t na, nb;
    char *a = slurp(g_ckpt_epoch1, &na), *b = slurp(q.ckpt, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    assert_false(exists(q.model));
    fl_embset_free(&s);
}

/* ------------------------------------------------------------------ flip TTA */

/* A grey 32x32 image whose every 8-pixel-wide block column is mirror-symmetric inside itself,
 * so the mirrored image is a permutation of whole 8x8 JPEG blocks (grey: chroma constant) and
 * decodes to exactly the mirror of the original's decode. mirror: the mirrored image. */
static void tta_jpeg(const char *path, int mirror) {
    fl_err e = {{0}};
    fl_image *im = fl_image_new(EMBF_SIDE, EMBF_SIDE, &e);
    assert_non_null(im);
    for (int y = 0; y < EMBF_SIDE; y++)
        for (int x = 0; x < EMBF_SIDE; x++) {
            int bx = x / 8, in = x % 8, m = in < 8 - in - 1 ? in : 8 - in - 1;
            if (mirror) bx = EMBF_SIDE / 8 - 1 - bx;
            int v = (30 + 50 * bx + 6 * y + 17 * m * (bx + 1) + (y > 20 && bx == 0 ? 80 : 0)) % 256;
            uint8_t *p = fl_image_px(im, x, y);
            p[0] = p[1] = p[2] = (uint8_t)v;
        }
    assert_int_equal(fl_jpeg_write(im, 90, path, &e), 0);
    fl_image_free(im);
}

static void test_flip_tta(void **state) {
    (void)state;
    fl_err e = {{0}};
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/tta_a.jpg", g_fix.root);
    snprintf(b, sizeof b, "%s/tta_b.jpg", g_fix.root);
    tta_jpeg(a, 0);
    tta_jpeg(b, 1);
    /* precondition: the files decode to exact mirrors */
    fl_image *da = fl_jpeg_read(a, NULL, NULL, &e), *db = fl_jpeg_read(b, NULL, NULL, &e);
    assert_non_null(da);
    assert_non_null(db);
    for (int y = 0; y < EMBF_SIDE; y++)
        for (int x = 0; x < EMBF_SIDE; x++)
            assert_memory_equal(fl_image_px(da, x, y), fl_image_px(db, EMBF_SIDE - 1 - x, y), 3);
    fl_image_free(da);
    fl_image_free(db);

    /* a model of one epoch (see embf_opts: running statistics of real batches) */
    fl_embopts o;
    fl_embset s;
    assert_int_equal(embf_opts(&o, "\"epochs\": 1", &e), 0);
    build_set(0, &s);
    run_paths p;
    paths_in("run_tta", &p);
    logbuf lb;
    if (train(&o, &s, &p, 0, NULL, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    fl_embset_free(&s);
    fl_embinfer *m = fl_embinfer_new(&o, 4, &e);
    assert_non_null(m);
    if (fl_embmodel_load(p.model, fl_embinfer_store(m), &e)) fail_msg("%s", e.msg);
    int64_t d = fl_embinfer_dim(m);
    char c[256];
    snprintf(c, sizeof c, "%s/crops/train/t_2_1.jpg", g_fix.crop_dir);
    fl_loader_item it[3] = {{.path = a, .label = -1}, {.path = b, .label = -1}, {.path = c, .label = -1}};
    float *tta = malloc(sizeof *tta * 3 * (size_t)d), *plain = malloc(sizeof *plain * 3 * (size_t)d);
    assert_non_null(tta);
    assert_non_null(plain);
    if (fl_embinfer_run(m, it, 3, 1, 1, tta, NULL, NULL, &e)) fail_msg("%s", e.msg);
    if (fl_embinfer_run(m, it, 3, 1, 0, plain, NULL, NULL, &e)) fail_msg("%s", e.msg);
    assert_unit_rows(tta, 3, d);
    assert_unit_rows(plain, 3, d);
    double same = 0, diff = 0, mean = 0;
    double sa = 0;
    for (int64_t j = 0; j < d; j++) sa += pow((double)plain[j] + plain[d + j], 2);
    for (int64_t j = 0; j < d; j++) {
        same = fmax(same, fabs(tta[j] - tta[d + j]));
        diff = fmax(diff, fabs(plain[j] - plain[d + j]));
        /* TTA = the renormalized mean of the two normalized views */
        mean = fmax(mean, fabs(tta[j] - (plain[j] + plain[d + j]) / sqrt(sa)));
    }
    printf("    flip TTA: |tta(x) - tta(mirror x)| %.2g, |emb(x) - emb(mirror x)| %.2g, "
           "|tta - mean of views| %.2g\n", same, diff, mean);
    assert_true(same < 1e-5);
    assert_true(mean < 1e-5);
    assert_true(diff > 1e-3);
    /* eval mode: a row does not depend on the batch it is in (batch 1, no zero padding) */
    fl_embinfer *m1 = fl_embinfer_new(&o, 1, &e);
    assert_non_null(m1);
    if (fl_embmodel_load(p.model, fl_embinfer_store(m1), &e)) fail_msg("%s", e.msg);
    float *one = malloc(sizeof *one * 3 * (size_t)d);
    assert_non_null(one);
    if (fl_embinfer_run(m1, it, 3, 1, 1, one, NULL, NULL, &e)) fail_msg("%s", e.msg);
    double batch = 0;
    for (int64_t j = 0; j < 3 * d; j++) batch = fmax(batch, fabs(one[j] - tta[j]));
    if (batch > 1e-5) fail_msg("batch 1 vs batch 4: rows differ by %g", batch);
    free(one);
    fl_embinfer_free(m1);
    /* another image is not its own mirror */
    double other = 0;
    for (int64_t j = 0; j < d; j++) other = fmax(other, fabs(tta[2 * d + j] - tta[j]));
    assert_true(other > 1e-3);
    free(tta);
    free(plain);
    fl_embinfer_free(m);
}

/* ------------------------------------------------------------------ pretrained backbone */

/* A timm-named backbone file: a fresh EfficientNet of cfg's size, its parameters without any
 * prefix (what fl_effnet_load expects of tf_efficientnet_b0.*.safetensors, head dropped). */
static void write_pretrained(const char *path, const fl_effnet_cfg *cfg, fl_pstore **keep) {
    fl_err e = {{0}};
    fl_pstore *ps = fl_pstore_new(FL_F32, 4242, &e);
    assert_non_null(ps);
    fl_graph *g = fl_graph_new(ps, FL_MODE_EVAL, &e);
    assert_non_null(g);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){1, EMBF_SIDE, EMBF_SIDE, 3});
    fl_effnet_out out;
    assert_true(fl_effnet_build(g, x, cfg, "", &out) >= 0);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(ps, &pl, &e), 0);
    assert_true(pl.n > 10);
    for (size_t i = 0; i < pl.n; i++) assert_null(strstr(pl.v[i].name, "backbone."));
    if (fl_st_write_params(path, &pl, NULL, 0, &e)) fail_msg("%s", e.msg);
    fl_graph_free(g);
    *keep = ps;
}

static void test_pretrained(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embopts o;
    fl_embset s;
    /* lr 0: the model file's backbone weights are the pretrained ones, by name */
    assert_int_equal(embf_opts(&o, "\"schedule\": \"constant\", \"epochs\": 1", &e), 0);
    o.lr = 0;
    build_set(0, &s);
    char pre[256];
    snprintf(pre, sizeof pre, "%s/tf_efficientnet_b0.safetensors", g_fix.root);
    fl_pstore *ps;
    write_pretrained(pre, &o.model.backbone, &ps);
    run_paths p;
    paths_in("run_pre", &p);
    logbuf lb;
    if (train(&o, &s, &p, 0, pre, &lb, &e)) fail_msg("%s\nlog:\n%s", e.msg, lb.text);
    char want[320];
    snprintf(want, sizeof want, "pretrained backbone loaded from %s", pre);
    if (!strstr(lb.text, want)) fail_msg("log:\n%s", lb.text);
    fl_st_set *set = fl_st_open_set(p.model, &e);
    assert_non_null(set);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(ps, &pl, &e), 0);
    size_t checked = 0;
    for (size_t i = 0; i < pl.n; i++) {
        if (pl.v[i].is_buffer) continue; /* BN statistics move in training mode */
        char name[256];
        snprintf(name, sizeof name, "backbone.%s", pl.v[i].name);
        size_t n = 0;
        float *v = fl_st_read_f32(set->files[0], name, &n, &e);
        if (!v) fail_msg("%s", e.msg);
        assert_int_equal(n, pl.v[i].numel);
        if (memcmp(v, pl.v[i].data, n * sizeof *v)) fail_msg("%s is not the pretrained tensor", name);
        free(v);
        checked++;
    }
    assert_true(checked > 10);
    fl_st_close_set(set);
    fl_pstore_free(ps);

    /* a backbone of another width: the error lists the mis-shaped keys */
    fl_effnet_cfg wide = o.model.backbone;
    wide.width = 0.5;
    char pre2[256];
    snprintf(pre2, sizeof pre2, "%s/wide.safetensors", g_fix.root);
    write_pretrained(pre2, &wide, &ps);
    fl_pstore_free(ps);
    run_paths q;
    paths_in("run_pre_bad", &q);
    assert_int_not_equal(train(&o, &s, &q, 0, pre2, &lb, &e), 0);
    if (!strstr(e.msg, "pretrained backbone") || !strstr(e.msg, pre2) ||
        !strstr(e.msg, "shape mismatch") ||
        !strstr(e.msg, "conv_stem.weight (file [16,3,3,3], model [8,3,3,3])"))
        fail_msg("%s", e.msg);
    assert_null(strstr(lb.text, "pretrained backbone loaded"));
    assert_false(exists(q.model));
    fl_embset_free(&s);
}

/* ------------------------------------------------------------------ main */

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

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--killed-run")) return killed_run(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_and_load),  /* run_a: kept for the next two */
        cmocka_unit_test(test_kill_and_resume), /* the epoch-1 checkpoint: kept for the next */
        cmocka_unit_test(test_bad_and_final_checkpoints),
        cmocka_unit_test(test_nan_guard),
        cmocka_unit_test(test_flip_tta),
        cmocka_unit_test(test_pretrained),
    };
    return cmocka_run_group_tests_name("embed training", tests, group_setup, group_teardown);
}
