/* Checkpoints: a toy linear regression trained with AdamW + warmup/cosine + gradient clipping +
 * EMA, batches and gradient noise drawn from fl_rng, is trained 10 steps, checkpointed, reloaded
 * into freshly allocated state (different initial values and RNG seeds), trained 10 more, and
 * must be bitwise equal to 20 straight steps -- parameters, buffers, optimizer state, EMA, RNGs.
 * Mismatched checkpoints fail with every problem listed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"

#define N 64 /* samples */
#define D 8  /* features */
#define B 16 /* batch */

typedef struct run {
    float x[N][D], y[N];              /* the data set (fixed) */
    float w[D], b[1], mean[D];        /* weight [1, D], bias [1], a running-mean buffer [D] */
    float gw[D], gb[1];
    fl_param p[3];
    fl_param_list pl;
    fl_optim *o;
    fl_ema *ema;
    fl_rng data_rng, noise_rng;
    fl_ckpt_rng rngs[2];
    fl_sched sched;
    fl_yolo_warmup warm;      /* SGD runs: YOLOv5 warmup of lr and momentum */
    int64_t step;
} run;

static void make_data(run *r) {
    fl_rng g;
    fl_rng_init(&g, 7, 0);
    float wt[D];
    for (int k = 0; k < D; k++) wt[k] = fl_rng_normal(&g);
    for (int i = 0; i < N; i++) {
        float s = 0.3f;
        for (int k = 0; k < D; k++) s += (r->x[i][k] = fl_rng_normal(&g)) * wt[k];
        r->y[i] = s + 0.1f * fl_rng_normal(&g);
    }
}

/* Fresh state; `seed` gives different initial values so a resume must overwrite all of them. */
static run *run_new_kind(uint64_t seed, fl_optim_kind kind) {
    run *r = calloc(1, sizeof *r);
    make_data(r);
    fl_rng g;
    fl_rng_init(&g, seed, 99);
    for (int k = 0; k < D; k++) r->w[k] = 0.1f * fl_rng_normal(&g), r->mean[k] = fl_rng_uniform(&g);
    r->b[0] = fl_rng_uniform(&g);
    fl_param p[3] = {
        {"linear.weight", r->w, r->gw, D, 2, {1, D}, 0, 0, 0, NULL},
        {"linear.bias", r->b, r->gb, 1, 1, {1}, 1, 0, 1, NULL},
        {"norm.running_mean", r->mean, NULL, D, 1, {D}, 1, 1, 0, NULL},
    };
    memcpy(r->p, p, sizeof p);
    r->pl = (fl_param_list){r->p, 3};
    fl_err e;
    fl_optim_cfg c = fl_optim_defaults(kind, 0.05);
    c.weight_decay = 0.01;
    c.group_lr_mult[1] = 2.0;
    if (kind == FL_OPTIM_SGD) c.momentum = 0.937, c.nesterov = 1;
    r->o = fl_optim_create(&c, &r->pl, &e);
    assert_non_null(r->o);
    r->ema = fl_ema_create(&r->pl, 0.9, 3, &e);
    assert_non_null(r->ema);
    fl_rng_init(&r->data_rng, seed, 1);
    fl_rng_init(&r->noise_rng, seed, 2);
    r->rngs[0] = (fl_ckpt_rng){"data", &r->data_rng};
    r->rngs[1] = (fl_ckpt_rng){"noise", &r->noise_rng};
    r->sched = (fl_sched){.kind = FL_SCHED_COSINE, .base_lr = 0.05, .warmup_steps = 3,
                          .warmup_start_factor = 0.2, .t_max = 17, .eta_min = 1e-3};
    if (kind == FL_OPTIM_SGD)
        r->warm = (fl_yolo_warmup){.nw = 14, .warmup_bias_lr = 0.1, .warmup_momentum = 0.8,
                                   .momentum = 0.937, .bias_group = 1};
    return r;
}

static run *run_new(uint64_t seed) { return run_new_kind(seed, FL_OPTIM_ADAMW); }

static void run_free(run *r) {
    fl_optim_free(r->o);
    fl_ema_free(r->ema);
    free(r);
}

static void train(run *r, int steps) {
    for (int s = 0; s < steps; s++, r->step++) {
        double lr = fl_sched_lr(&r->sched, r->o->step);
        if (r->o->cfg.kind != FL_OPTIM_SGD || !fl_yolo_warmup_apply(r->o, &r->warm, r->step, lr))
            fl_optim_set_lr(r->o, lr);
        fl_optim_zero_grad(r->o);
        for (int j = 0; j < B; j++) {
            int i = (int)fl_rng_below(&r->data_rng, N);
            float pred = r->b[0];
            for (int k = 0; k < D; k++) pred += r->w[k] * r->x[i][k];
            float err = 2.0f * (pred - r->y[i]) / B;
            for (int k = 0; k < D; k++) r->gw[k] += err * r->x[i][k];
            r->gb[0] += err;
            for (int k = 0; k < D; k++) r->mean[k] = 0.97f * r->mean[k] + 0.03f * r->x[i][k];
        }
        /* 3 or 4 normals per step: 35 by step 10, so a Box-Muller spare is pending at the save */
        for (int k = 0; k < 3 + (int)(r->step % 2); k++)
            r->gw[k] += 1e-3f * fl_rng_normal(&r->noise_rng);
        fl_clip_grad_norm(&r->pl, 0.5);
        fl_optim_step(r->o);
        fl_ema_update(r->ema);
    }
}

static fl_ckpt ckpt_of(run *r, const fl_st_kv *extra, size_t nextra) {
    return (fl_ckpt){&r->pl, r->o, r->ema, r->rngs, 2, r->step, extra, nextra};
}

static void assert_same(const run *a, const run *b) {
    assert_memory_equal(a->w, b->w, sizeof a->w);
    assert_memory_equal(a->b, b->b, sizeof a->b);
    assert_memory_equal(a->mean, b->mean, sizeof a->mean);
    for (size_t i = 0; i < 2; i++) {
        assert_memory_equal(a->o->m[i], b->o->m[i], a->p[i].numel * sizeof(float));
        if (a->o->v[i])
            assert_memory_equal(a->o->v[i], b->o->v[i], a->p[i].numel * sizeof(float));
    }
    for (size_t i = 0; i < 3; i++)
        assert_memory_equal(a->ema->view.v[i].data, b->ema->view.v[i].data,
                            a->p[i].numel * sizeof(float));
    assert_memory_equal(&a->data_rng, &b->data_rng, sizeof a->data_rng);
    assert_memory_equal(&a->noise_rng, &b->noise_rng, sizeof a->noise_rng);
    assert_int_equal(a->o->step, b->o->step);
    assert_memory_equal(a->o->lr, b->o->lr, sizeof a->o->lr);
    assert_true(a->o->momentum == b->o->momentum);
    assert_int_equal(a->ema->updates, b->ema->updates);
    assert_int_equal(a->step, b->step);
}

static char *tmp_path(const char *name) {
    return fl_strdupf("/tmp/fl_ckpt_%ld_%s.safetensors", (long)getpid(), name);
}

static void resume_case(fl_optim_kind kind) {
    run *straight = run_new_kind(1, kind);
    train(straight, 20);

    run *first = run_new_kind(1, kind);
    train(first, 10);
    assert_int_equal(first->noise_rng.has_spare, 1);
    char *path = tmp_path("resume");
    fl_err e;
    fl_st_kv extra[1] = {{"sched.kind", "cosine"}};
    fl_ckpt c = ckpt_of(first, extra, 1);
    assert_int_equal(fl_ckpt_save(path, &c, &e), 0);
    run_free(first);

    run *resumed = run_new_kind(12345, kind); /* different values everywhere */
    fl_ckpt c2 = ckpt_of(resumed, NULL, 0);
    fl_st_set *meta = NULL;
    if (fl_ckpt_load(path, &c2, &meta, &e) != 0) print_error("%s\n", e.msg);
    assert_non_null(meta);
    assert_string_equal(fl_st_meta(meta->files[0], "sched.kind"), "cosine");
    fl_st_close_set(meta);
    resumed->step = c2.step;
    assert_int_equal(resumed->step, 10);
    train(resumed, 10);
    assert_same(straight, resumed);

    /* without the reload the second half really differs (the test can fail) */
    run *fresh = run_new_kind(12345, kind);
    train(fresh, 10);
    assert_true(memcmp(fresh->w, straight->w, sizeof fresh->w) != 0);
    run_free(fresh);
    run_free(resumed);
    run_free(straight);
    unlink(path);
    free(path);
}

static void test_resume_is_bitwise_exact(void **state) {
    (void)state;
    resume_case(FL_OPTIM_ADAMW);
    /* SGD + Nesterov under YOLOv5's warmup: momentum buffers, ramped momentum and lr mid-warmup */
    resume_case(FL_OPTIM_SGD);
}

static void test_mismatched_checkpoint_lists_everything(void **state) {
    (void)state;
    run *r = run_new(1);
    train(r, 2);
    char *path = tmp_path("mismatch");
    fl_err e;
    fl_ckpt c = ckpt_of(r, NULL, 0);
    assert_int_equal(fl_ckpt_save(path, &c, &e), 0);

    /* a graph with a renamed weight and a wider running mean */
    run *g = run_new(2);
    float w0[D], b0[1], mean0[D];
    memcpy(w0, g->w, sizeof w0), memcpy(b0, g->b, sizeof b0), memcpy(mean0, g->mean, sizeof mean0);
    g->p[0].name = "fc.weight";
    g->p[2].shape[0] = D / 2, g->p[2].numel = D / 2;
    fl_optim_free(g->o);
    fl_ema_free(g->ema);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 0.05);
    g->o = fl_optim_create(&oc, &g->pl, &e);
    g->ema = fl_ema_create(&g->pl, 0.9, 3, &e);
    fl_ckpt c2 = ckpt_of(g, NULL, 0);
    assert_int_equal(fl_ckpt_load(path, &c2, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "cannot load: 4 missing keys: 'fc.weight', "
                                  "'optim.exp_avg.fc.weight', 'optim.exp_avg_sq.fc.weight', "
                                  "'ema.fc.weight'; 4 unexpected keys: 'ema.linear.weight', "
                                  "'linear.weight', 'optim.exp_avg.linear.weight', "
                                  "'optim.exp_avg_sq.linear.weight'; 2 size mismatches: "
                                  "'norm.running_mean' (file F32 [8], expected F32 [4]), "
                                  "'ema.norm.running_mean' (file F32 [8], expected F32 [4])"));
    /* nothing was written: every parameter and buffer, the optimizer and the EMA */
    assert_memory_equal(g->w, w0, sizeof w0);
    assert_memory_equal(g->b, b0, sizeof b0);
    assert_memory_equal(g->mean, mean0, sizeof mean0);
    assert_true(g->o->step == 0 && g->ema->updates == 0);
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < g->p[i].numel; k++) assert_true(g->o->m[i][k] == 0.0f && g->o->v[i][k] == 0.0f);
    }
    run_free(g);

    /* optimizer kind mismatch */
    run *h = run_new(3);
    fl_optim_free(h->o);
    oc = fl_optim_defaults(FL_OPTIM_SGD, 0.1);
    oc.momentum = 0.9;
    h->o = fl_optim_create(&oc, &h->pl, &e);
    fl_ckpt c3 = ckpt_of(h, NULL, 0);
    assert_int_equal(fl_ckpt_load(path, &c3, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "checkpoint optimizer is adamw, this run uses sgd"));
    /* an RNG the checkpoint does not have */
    fl_optim_free(h->o);
    oc = fl_optim_defaults(FL_OPTIM_ADAMW, 0.05);
    h->o = fl_optim_create(&oc, &h->pl, &e);
    h->rngs[1].name = "dropout";
    c3 = ckpt_of(h, NULL, 0);
    assert_int_equal(fl_ckpt_load(path, &c3, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "metadata 'rng.dropout' missing"));
    run_free(h);

    /* reserved extra key */
    fl_st_kv bad[1] = {{"step", "3"}};
    c = ckpt_of(r, bad, 1);
    assert_int_equal(fl_ckpt_save(path, &c, &e), -1);
    assert_non_null(strstr(e.msg, "extra metadata key 'step' is reserved"));
    run_free(r);
    unlink(path);
    free(path);
}

static void test_corrupt_metadata(void **state) {
    (void)state;
    run *r = run_new(1);
    char *path = tmp_path("meta");
    fl_err e;
    float w[1] = {0};
    int64_t s1[1] = {1};
    fl_st_entry ent[1] = {{"x", FL_ST_F32, 1, s1, w}};
    fl_st_kv m1[1] = {{"format", "pt"}};
    assert_int_equal(fl_st_write(path, ent, 1, m1, 1, &e), 0);
    fl_ckpt c = ckpt_of(r, NULL, 0);
    assert_int_equal(fl_ckpt_load(path, &c, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "not a fluke checkpoint"));
    fl_st_kv m2[3] = {{"fluke.checkpoint", "1"}, {"step", "4"}, {"optim.kind", "adamw"}};
    assert_int_equal(fl_st_write(path, ent, 1, m2, 3, &e), 0);
    assert_int_equal(fl_ckpt_load(path, &c, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "metadata 'optim.step' missing"));
    /* RNG text round trip and rejection of garbage */
    char hex[13 * 8 + 1];
    fl_ckpt_rng_to_hex(&r->noise_rng, hex);
    fl_rng back;
    assert_int_equal(fl_ckpt_rng_from_hex(hex, &back), 0);
    assert_memory_equal(&back, &r->noise_rng, sizeof back);
    hex[5] = 'z';
    assert_int_equal(fl_ckpt_rng_from_hex(hex, &back), -1);
    assert_int_equal(fl_ckpt_rng_from_hex("00", &back), -1);
    assert_int_equal(fl_ckpt_load("/nonexistent/ckpt.safetensors", &c, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/ckpt.safetensors"));
    run_free(r);
    unlink(path);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_bitwise_exact),
        cmocka_unit_test(test_mismatched_checkpoint_lists_everything),
        cmocka_unit_test(test_corrupt_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
