/* Optimizers, schedules, clipping and EMA against PyTorch 1.13 trajectories
 * (the tests/fixtures/optim safetensors files from tests/fixtures/gen_optim.py): the same toy model and
 * pseudo-gradients, every step's parameters within 1e-6 relative, learning rates and momenta
 * within 1e-12. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/optim.h"
#include "runtime/safetensors.h"
#include "tests/unit/support/numcmp.h"

#define NP 4 /* w, bn.weight, b, bn.running_mean (buffer) */

typedef struct toy {
    float w[12], bnw[3], b[4], rm[3];
    float gw[12], gbnw[3], gb[4];
    fl_param p[NP];
    fl_param_list pl;
} toy;

static void toy_init(toy *m) {
    memset(m, 0, sizeof *m);
    fl_param p[NP] = {
        {"w", m->w, m->gw, 12, 2, {4, 3}, 0, 0, 0, NULL},
        {"bn.weight", m->bnw, m->gbnw, 3, 1, {3}, 1, 0, 1, NULL},
        {"b", m->b, m->gb, 4, 1, {4}, 1, 0, 2, NULL},
        {"bn.running_mean", m->rm, NULL, 3, 1, {3}, 1, 1, 0, NULL},
    };
    memcpy(m->p, p, sizeof p);
    m->pl = (fl_param_list){m->p, NP};
}

typedef struct fixture {
    fl_st_file *f;
    int steps;
    float *noise[NP], *traj[NP], *ema[NP], *norm;
    double *lr, *mom, *acc;
} fixture;

static float *get(fl_st_file *f, const char *name) {
    fl_err e;
    float *v = fl_st_read_f32(f, name, NULL, &e);
    if (!v) print_error("%s\n", e.msg);
    assert_non_null(v);
    return v;
}

static double *get64(fl_st_file *f, const char *name) {
    const fl_st_tensor *t = fl_st_find(f, name);
    if (!t) return NULL;
    assert_int_equal(t->dtype, FL_ST_F64);
    double *v = malloc(t->numel * sizeof *v);
    memcpy(v, t->data, t->numel * sizeof *v);
    return v;
}

static void fixture_open(fixture *fx, const char *name, toy *m) {
    memset(fx, 0, sizeof *fx);
    const char *root = getenv("FLUKE_SRC");
    char *path = fl_strdupf("%s/tests/fixtures/optim/%s.safetensors", root ? root : ".", name);
    fl_err e;
    fx->f = fl_st_open(path, &e);
    if (!fx->f) print_error("%s\n", e.msg);
    assert_non_null(fx->f);
    free(path);
    fx->steps = atoi(fl_st_meta(fx->f, "steps"));
    assert_true(fx->steps > 0);
    for (int i = 0; i < NP; i++) {
        char k[64];
        snprintf(k, sizeof k, "init.%s", m->p[i].name);
        float *init = get(fx->f, k);
        memcpy(m->p[i].data, init, m->p[i].numel * sizeof(float));
        free(init);
        snprintf(k, sizeof k, "noise.%s", m->p[i].name);
        fx->noise[i] = get(fx->f, k);
        snprintf(k, sizeof k, "traj.%s", m->p[i].name);
        fx->traj[i] = get(fx->f, k);
        snprintf(k, sizeof k, "ema.%s", m->p[i].name);
        if (fl_st_find(fx->f, k)) fx->ema[i] = get(fx->f, k);
    }
    if (fl_st_find(fx->f, "norm")) fx->norm = get(fx->f, "norm");
    fx->lr = get64(fx->f, "lr");
    fx->mom = get64(fx->f, "momentum");
    fx->acc = get64(fx->f, "accumulate");
}

static void fixture_close(fixture *fx) {
    for (int i = 0; i < NP; i++) free(fx->noise[i]), free(fx->traj[i]), free(fx->ema[i]);
    free(fx->norm), free(fx->lr), free(fx->mom), free(fx->acc);
    fl_st_close(fx->f);
}

/* Normwise relative error of one tensor (numcmp.h; NaN fails): max |a - b| / max |b|. No BLAS
 * and no reductions but the clip norm: the figure does not depend on the CPU's kernels.
 * Element-wise relative error is
 * not meaningful here: PyTorch's CPU kernels fuse a + alpha*b into one FMA, so each step differs
 * from the plain float32 expression by up to half an ulp of the larger operand, and where a value
 * cancels towards zero that ulp is large next to the value itself. */
static double max_rel(const float *a, const float *b, size_t n) { return nc_normwise(NC_F32(a), NC_F32(b), n, 0).fig; }

typedef struct spec {
    const char *name;
    fl_optim_cfg cfg;
    const fl_sched *sched;     /* NULL: constant cfg.lr */
    double clip;               /* 0: none */
    double ema_decay, ema_tau; /* 0: none */
    const fl_yolo_warmup *yolo;
    int nb;                    /* YOLO: iterations per epoch */
} spec;

static void run_case(const spec *s) {
    toy m;
    toy_init(&m);
    fixture fx;
    fixture_open(&fx, s->name, &m);
    fl_err e;
    fl_optim *o = fl_optim_create(&s->cfg, &m.pl, &e);
    assert_non_null(o);
    fl_ema *ema = s->ema_decay > 0 ? fl_ema_create(&m.pl, s->ema_decay, s->ema_tau, &e) : NULL;
    double worst = 0, worst_ema = 0;
    for (int t = 0; t < fx.steps; t++) {
        if (s->yolo) {
            int epoch = t / s->nb;
            double lr_epoch = fl_sched_lr(s->sched, epoch);
            if (!fl_yolo_warmup_apply(o, s->yolo, t, lr_epoch)) fl_optim_set_lr(o, lr_epoch);
            int acc = t <= s->yolo->nw ? fl_yolo_accumulate(t, s->yolo->nw, 64, 16) : 0;
            assert_int_equal(acc, (int)fx.acc[t]);
        } else if (s->sched) {
            fl_optim_set_lr(o, fl_sched_lr(s->sched, t));
        }
        for (int g = 0; g < 3; g++) {
            double want = fx.lr[t * 3 + g];
            if (!(fabs(o->lr[g] - want) <= 1e-12 * fmax(fabs(want), 1e-3))) { /* NaN fails */
                print_error("%s step %d group %d: lr %.17g, PyTorch %.17g\n", s->name, t, g,
                            o->lr[g], want);
                fail();
            }
        }
        if (s->cfg.kind == FL_OPTIM_SGD) assert_true(fabs(o->momentum - fx.mom[t]) < 1e-12);
        for (int i = 0; i < 3; i++)
            for (size_t k = 0; k < m.p[i].numel; k++)
                m.p[i].grad[k] = 0.5f * m.p[i].data[k] + fx.noise[i][t * m.p[i].numel + k];
        if (s->clip > 0) {
            float n = fl_clip_grad_norm(&m.pl, s->clip);
            assert_true(fabs(n - fx.norm[t]) <= 1e-6 * fx.norm[t]);
        }
        fl_optim_step(o);
        for (int k = 0; k < 3; k++) m.rm[k] = fmaf(0.1f, fx.noise[3][t * 3 + k], m.rm[k] * 0.9f);
        if (ema) fl_ema_update(ema);
        for (int i = 0; i < NP; i++) {
            size_t n = m.p[i].numel;
            double r = max_rel(m.p[i].data, fx.traj[i] + t * n, n);
            if (r > worst) worst = r;
            if (ema) {
                double re = max_rel(ema->view.v[i].data, fx.ema[i] + t * n, n);
                if (re > worst_ema) worst_ema = re;
            }
        }
    }
    print_message("%-22s %d steps: max relative error %.3g%s", s->name, fx.steps, worst,
                  ema ? "" : "\n");
    if (ema) print_message(", EMA %.3g\n", worst_ema);
    assert_true(worst < 1e-6);
    assert_true(worst_ema < 1e-6);
    fl_ema_free(ema);
    fl_optim_free(o);
    fixture_close(&fx);
}

static fl_optim_cfg sgd(double lr, double wd, double mom, double damp, int nesterov) {
    fl_optim_cfg c = fl_optim_defaults(FL_OPTIM_SGD, lr);
    c.weight_decay = wd, c.momentum = mom, c.dampening = damp, c.nesterov = nesterov;
    return c;
}

static void test_sgd(void **state) {
    (void)state;
    spec a = {.name = "sgd_plain", .cfg = sgd(0.1, 0, 0, 0, 0)};
    run_case(&a);
    spec b = {.name = "sgd_momentum", .cfg = sgd(0.05, 1e-2, 0.9, 0.1, 0)};
    run_case(&b);
    spec c = {.name = "sgd_nesterov", .cfg = sgd(0.05, 5e-4, 0.937, 0, 1)};
    run_case(&c);
}

static void test_adam_adamw_groups(void **state) {
    (void)state;
    spec a = {.name = "adam", .cfg = fl_optim_defaults(FL_OPTIM_ADAM, 1e-2)};
    a.cfg.weight_decay = 1e-2;
    run_case(&a);
    spec b = {.name = "adamw", .cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-2)};
    b.cfg.weight_decay = 0.05, b.cfg.beta1 = 0.8, b.cfg.beta2 = 0.99, b.cfg.eps = 1e-6;
    run_case(&b);
    spec c = {.name = "adamw_groups", .cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-2)};
    c.cfg.weight_decay = 0.05, c.cfg.group_lr_mult[1] = 0.5, c.cfg.group_lr_mult[2] = 2.0;
    run_case(&c);
}

static void test_schedules(void **state) {
    (void)state;
    fl_err e;
    fl_sched wc = {.kind = FL_SCHED_COSINE, .base_lr = 2e-2, .warmup_steps = 5,
                   .warmup_start_factor = 0.1, .t_max = 15, .eta_min = 1e-4};
    assert_int_equal(fl_sched_check(&wc, &e), 0);
    spec a = {.name = "adamw_warmup_cosine", .cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 2e-2),
              .sched = &wc};
    a.cfg.weight_decay = 0.05;
    run_case(&a);
    fl_sched cos = {.kind = FL_SCHED_COSINE, .base_lr = 0.1, .t_max = 12, .eta_min = 1e-3};
    spec b = {.name = "sgd_cosine", .cfg = sgd(0.1, 1e-3, 0.9, 0, 0), .sched = &cos};
    run_case(&b);
    fl_sched rs = {.kind = FL_SCHED_COSINE_RESTARTS, .base_lr = 0.1, .t_0 = 3, .t_mult = 2,
                   .eta_min = 1e-3};
    assert_int_equal(fl_sched_check(&rs, &e), 0);
    spec c = {.name = "sgd_restarts", .cfg = sgd(0.1, 1e-3, 0.9, 0, 1), .sched = &rs};
    run_case(&c);
}

static void test_clip(void **state) {
    (void)state;
    spec a = {.name = "adamw_clip", .cfg = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-2), .clip = 2.5};
    a.cfg.weight_decay = 0.05;
    run_case(&a);
}

static void test_ema(void **state) {
    (void)state;
    spec a = {.name = "sgd_ema_yolo", .cfg = sgd(0.05, 5e-4, 0.937, 0, 1), .ema_decay = 0.9999,
              .ema_tau = 2000};
    run_case(&a);
    spec b = {.name = "sgd_ema_fast", .cfg = sgd(0.05, 5e-4, 0.937, 0, 1), .ema_decay = 0.9,
              .ema_tau = 3};
    run_case(&b);
}

static void test_yolo_warmup_and_linear(void **state) {
    (void)state;
    fl_sched lin = {.kind = FL_SCHED_YOLO_LINEAR, .base_lr = 0.01, .epochs = 5, .lrf = 0.01};
    fl_yolo_warmup w = {.nw = 12, .warmup_bias_lr = 0.1, .warmup_momentum = 0.8,
                        .momentum = 0.937, .bias_group = 2};
    spec a = {.name = "yolo_sgd", .cfg = sgd(0.01, 5e-4, 0.937, 0, 1), .sched = &lin, .yolo = &w,
              .nb = 8};
    run_case(&a);
    /* nw = max(round(warmup_epochs * nb), 100), Python rounding */
    assert_int_equal(fl_yolo_warmup_iters(3.0, 10), 100);
    assert_int_equal(fl_yolo_warmup_iters(3.0, 1000), 3000);
    assert_int_equal(fl_yolo_warmup_iters(0.5, 401), 200);  /* 200.5 -> 200 (half to even) */
    assert_int_equal(fl_yolo_warmup_iters(0.5, 403), 202);  /* 201.5 -> 202 */
}

static void test_bad_configs(void **state) {
    (void)state;
    toy m;
    toy_init(&m);
    fl_err e;
    fl_optim_cfg c = sgd(0.1, 0, 0, 0, 1);
    assert_null(fl_optim_create(&c, &m.pl, &e));
    assert_non_null(strstr(e.msg, "Nesterov momentum requires a momentum"));
    c = fl_optim_defaults(FL_OPTIM_ADAM, 1e-3);
    c.beta2 = 1.0;
    assert_null(fl_optim_create(&c, &m.pl, &e));
    assert_non_null(strstr(e.msg, "invalid hyper-parameter"));
    c = fl_optim_defaults(FL_OPTIM_ADAM, 1e-3);
    m.p[1].group = FL_OPTIM_MAX_GROUPS;
    assert_null(fl_optim_create(&c, &m.pl, &e));
    assert_non_null(strstr(e.msg, "parameter 'bn.weight' is in group 8"));
    fl_sched s = {.kind = FL_SCHED_COSINE_RESTARTS, .base_lr = 0.1, .t_0 = 0, .t_mult = 1};
    assert_int_equal(fl_sched_check(&s, &e), -1);
    assert_non_null(strstr(e.msg, "T_0 > 0"));
    s = (fl_sched){.kind = FL_SCHED_COSINE, .base_lr = 0.1};
    assert_int_equal(fl_sched_check(&s, &e), -1);
    assert_non_null(strstr(e.msg, "T_max > 0"));
    s = (fl_sched){.kind = FL_SCHED_CONSTANT, .base_lr = 0.1, .warmup_steps = 3,
                   .warmup_start_factor = 2};
    assert_int_equal(fl_sched_check(&s, &e), -1);
    assert_non_null(strstr(e.msg, "warmup of 3 steps"));
    assert_null(fl_ema_create(&m.pl, 1.5, 2000, &e));
    assert_non_null(strstr(e.msg, "EMA: decay 1.5"));
}

/* Buffers and grad-less entries are never touched; no_decay entries get no weight decay. */
static void test_buffers_untouched_and_no_decay(void **state) {
    (void)state;
    toy m;
    toy_init(&m);
    for (int i = 0; i < 12; i++) m.w[i] = 1;
    for (int i = 0; i < 4; i++) m.b[i] = 1;
    for (int i = 0; i < 3; i++) m.rm[i] = 7, m.bnw[i] = 1;
    fl_err e;
    fl_optim_cfg c = fl_optim_defaults(FL_OPTIM_ADAMW, 0.1);
    c.weight_decay = 0.5;
    fl_optim *o = fl_optim_create(&c, &m.pl, &e);
    assert_non_null(o);
    fl_optim_zero_grad(o);
    fl_optim_step(o); /* zero grads: only decoupled decay moves anything */
    assert_true(m.w[0] == (float)(1.0 - 0.1 * 0.5));
    assert_true(m.b[0] == 1.0f && m.bnw[0] == 1.0f && m.rm[0] == 7.0f);
    assert_null(fl_optim_state_name(o, 2));
    assert_string_equal(fl_optim_state_name(o, 1), "exp_avg_sq");
    fl_optim_free(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam_adamw_groups),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_yolo_warmup_and_linear),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_buffers_untouched_and_no_decay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
