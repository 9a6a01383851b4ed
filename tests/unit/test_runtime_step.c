/* The whole train step inside the graph (runtime/step.h) against the host path (fl_optim_step,
 * fl_clip_grad_norm, fl_ema_update, fl_yolo_loss): two stores with the same seed, one trained
 * each way for several steps, must agree bit for bit in every parameter, buffer, gradient,
 * optimizer state array and EMA average, for a small EfficientNet + DOLG + ArcFace (dropout and
 * drop path active, AdamW / SGD-Nesterov / Adam, per-group lr, no_decay, clipping, EMA) and for
 * YOLOv5n with its loss and target assignment as a graph op. The YOLO loss op's backward is
 * checked against central differences of the host loss (in double); label / target validation
 * happens at copy-in with the host messages. */
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
#include "runtime/models/yolo.h"
#include "runtime/models/yolo_loss_internal.h"
#include "runtime/optim.h"
#include "runtime/rng.h"
#include "runtime/step.h"

#define EMB_N 2
#define EMB_S 64
#define EMB_C 10
#define STEPS 4

/* Every entry of two stores (same creation order) equal: data and gradients. */
static void same_stores(fl_pstore *a, fl_pstore *b, const char *what) {
    fl_err e = {{0}};
    fl_param_list pa, pb;
    assert_int_equal(fl_pstore_params(a, &pa, &e), 0);
    assert_int_equal(fl_pstore_params(b, &pb, &e), 0);
    assert_int_equal(pa.n, pb.n);
    for (size_t i = 0; i < pa.n; i++) {
        assert_string_equal(pa.v[i].name, pb.v[i].name);
        if (memcmp(pa.v[i].data, pb.v[i].data, pa.v[i].numel * 4) != 0)
            printf("%s: '%s' differs\n", what, pa.v[i].name);
        assert_memory_equal(pa.v[i].data, pb.v[i].data, pa.v[i].numel * 4);
        if (pa.v[i].grad) assert_memory_equal(pa.v[i].grad, pb.v[i].grad, pa.v[i].numel * 4);
    }
}

/* The graph's state equal to the host optimizer's and EMA's. */
static void same_state(fl_graph *g, const fl_optim *o, const fl_ema *m) {
    fl_err e = {{0}};
    fl_param_list vm, vv, ve;
    assert_int_equal(fl_graph_update_view(g, FL_UPD_M, &vm, &e), 0);
    assert_int_equal(fl_graph_update_view(g, FL_UPD_V, &vv, &e), 0);
    assert_int_equal(fl_graph_update_view(g, FL_UPD_EMA, &ve, &e), 0);
    assert_int_equal(vm.n, o->params.n);
    int nm = 0;
    for (size_t i = 0; i < vm.n; i++) {
        size_t bytes = vm.v[i].numel * 4;
        assert_true((vm.v[i].data != NULL) == (o->m[i] != NULL));
        assert_true((vv.v[i].data != NULL) == (o->v[i] != NULL));
        if (o->m[i]) assert_memory_equal(vm.v[i].data, o->m[i], bytes), nm++;
        if (o->v[i]) assert_memory_equal(vv.v[i].data, o->v[i], bytes);
        if (m) assert_memory_equal(ve.v[i].data, m->view.v[i].data, bytes);
    }
    if (o->cfg.kind != FL_OPTIM_SGD || o->cfg.momentum > 0) assert_true(nm > 0);
}

static fl_embed_cfg embed_cfg(void) {
    fl_err e = {{0}};
    fl_embed_cfg c = fl_embed_defaults(EMB_C, 16);
    assert_int_equal(fl_effnet_preset("efficientnet_b0", &c.backbone, &e), 0);
    c.backbone.width = 0.25;
    c.backbone.depth = 0.25;
    c.backbone.drop_path_rate = 0.2; /* drop path and dropout draw their masks in the graph */
    c.dolg = fl_dolg_defaults(16);
    c.dolg.att_bn_momentum = 0.1;
    c.dropout = 0.3;
    c.arc.subcenters = 2;
    c.num_species = 3;
    c.species_weight = 0.5;
    return c;
}

typedef struct emb_run {
    fl_pstore *s;
    fl_graph *g;
    fl_embed_model m;
} emb_run;

static void emb_open(emb_run *r, const fl_embed_cfg *c) {
    fl_err e = {{0}};
    r->s = fl_pstore_new(FL_F32, 21, &e);
    r->g = fl_graph_new(r->s, FL_MODE_TRAIN, &e);
    if (fl_embed_build(r->g, c, EMB_N, EMB_S, EMB_S, 1, &r->m, &e) < 0) printf("%s\n", e.msg);
    if (fl_graph_compile(r->g, r->m.loss, &e) < 0) printf("%s\n", e.msg);
    assert_string_equal(fl_graph_error(r->g), "");
    assert_int_equal(fl_pstore_set_group(r->s, "head.", 1) > 0, 1);
    assert_int_equal(fl_pstore_set_group(r->s, "neck.", 2) > 0, 1);
}

static void emb_batch(int step, float *x, size_t nx, int32_t *lab, int32_t *spc) {
    fl_rng rg;
    fl_rng_init(&rg, 5, (uint64_t)step);
    for (size_t k = 0; k < nx; k++) x[k] = fl_rng_normal(&rg);
    for (int k = 0; k < EMB_N; k++) lab[k] = (int32_t)fl_rng_below(&rg, EMB_C), spc[k] = (int32_t)fl_rng_below(&rg, 3);
}

static void run_embed(fl_optim_kind kind, double clip, int ema) {
    fl_err e = {{0}};
    fl_embed_cfg c = embed_cfg();
    emb_run a, b;
    emb_open(&a, &c);
    emb_open(&b, &c);
    fl_optim_cfg oc = fl_optim_defaults(kind, kind == FL_OPTIM_SGD ? 0.05 : 2e-3);
    oc.weight_decay = kind == FL_OPTIM_ADAMW ? 0.05 : 1e-3;
    if (kind == FL_OPTIM_SGD) oc.momentum = 0.9, oc.nesterov = 1;
    oc.group_lr_mult[1] = 10.0, oc.group_lr_mult[2] = 3.0;
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(a.s, &pl, &e), 0);
    fl_optim *o = fl_optim_create(&oc, &pl, &e);
    fl_ema *m = ema ? fl_ema_create(&pl, 0.99, 2, &e) : NULL;
    assert_non_null(o);
    fl_update_cfg uc = {.optim = oc, .clip = clip, .ema = ema, .ema_decay = 0.99, .ema_tau = 2};
    assert_int_equal(fl_graph_attach_update(b.g, &uc, &e), 0);
    size_t nx = (size_t)fl_graph_numel(a.g, a.m.x);
    float *x = malloc(nx * 4);
    int32_t lab[EMB_N], spc[EMB_N];
    for (int step = 0; step < STEPS; step++) {
        emb_batch(step, x, nx, lab, spc);
        double lr = oc.lr * (1.0 - 0.1 * step); /* a host-side schedule */
        /* host path */
        fl_optim_set_lr(o, lr);
        if (kind == FL_OPTIM_SGD) o->momentum = 0.8 + 0.03 * step; /* a warmup ramp */
        fl_graph_set_rng(a.g, 99, (uint64_t)step);
        fl_optim_zero_grad(o);
        memcpy(fl_graph_value(a.g, a.m.x), x, nx * 4);
        memcpy(fl_graph_value(a.g, a.m.labels), lab, sizeof lab);
        memcpy(fl_graph_value(a.g, a.m.species), spc, sizeof spc);
        assert_int_equal(fl_graph_forward(a.g, &e), 0);
        assert_int_equal(fl_graph_backward(a.g, NULL, &e), 0);
        float norm = clip != 0 ? fl_clip_grad_norm(&pl, clip) : NAN;
        fl_optim_step(o);
        if (m) fl_ema_update(m);
        /* in the graph */
        fl_update_scalars sc = {.momentum = o->momentum};
        for (int k = 0; k < FL_OPTIM_MAX_GROUPS; k++) sc.lr[k] = lr * oc.group_lr_mult[k];
        fl_graph_set_rng(b.g, 99, (uint64_t)step);
        assert_int_equal(fl_graph_set_input(b.g, b.m.x, x, nx * 4, &e), 0);
        assert_int_equal(fl_graph_set_input(b.g, b.m.labels, lab, sizeof lab, &e), 0);
        assert_int_equal(fl_graph_set_input(b.g, b.m.species, spc, sizeof spc, &e), 0);
        fl_step_out out;
        if (fl_graph_step(b.g, &sc, &out, &e) < 0) printf("%s\n", e.msg);
        assert_int_equal(out.step, step + 1);
        float la = *(float *)fl_graph_value(a.g, a.m.loss), lb = *(float *)fl_graph_value(b.g, b.m.loss);
        printf("embed %d step %d: loss %.6f / %.6f, norm %.6f / %.6f\n", (int)kind, step, la, lb, norm, out.grad_norm);
        assert_memory_equal(&la, &lb, 4);
        if (clip != 0) assert_memory_equal(&norm, &out.grad_norm, 4);
        same_stores(a.s, b.s, "embed");
        same_state(b.g, o, m);
    }
    free(x);
    fl_optim_free(o);
    fl_ema_free(m);
    fl_graph_free(a.g), fl_graph_free(b.g);
    fl_pstore_free(a.s), fl_pstore_free(b.s);
}

static void test_embed_adamw_clip_ema(void **state) { run_embed(FL_OPTIM_ADAMW, 1.0, 1); }
static void test_embed_sgd_nesterov(void **state) { run_embed(FL_OPTIM_SGD, INFINITY, 1); }
static void test_embed_adam_noclip(void **state) { run_embed(FL_OPTIM_ADAM, 0, 0); }

/* ---- YOLOv5n ----------------------------------------------------------------------------- */

#define Y_N 2
#define Y_S 64
#define Y_NC 3
#define Y_T 16

static size_t yolo_targets(int step, fl_yolo_target *t) {
    fl_rng rg;
    fl_rng_init(&rg, 9, (uint64_t)step);
    size_t nt = 5 + (size_t)step % 3;
    for (size_t k = 0; k < nt; k++)
        t[k] = (fl_yolo_target){(int)fl_rng_below(&rg, Y_N), (int)fl_rng_below(&rg, Y_NC),
                                0.1f + 0.8f * fl_rng_uniform(&rg), 0.1f + 0.8f * fl_rng_uniform(&rg),
                                0.05f + 0.5f * fl_rng_uniform(&rg), 0.05f + 0.5f * fl_rng_uniform(&rg)};
    return nt;
}

static void test_yolo_step(void **state) {
    fl_err e = {{0}};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_size(&c, 'n', Y_NC, &e), 0);
    fl_yolo_hyp hyp = fl_yolo_hyp_default(Y_S);
    /* host: the flat heads are the target, fl_yolo_loss seeds backward */
    fl_pstore *sa = fl_pstore_new(FL_F32, 3, &e), *sb = fl_pstore_new(FL_F32, 3, &e);
    fl_graph *ga = fl_graph_new(sa, FL_MODE_TRAIN, &e), *gb = fl_graph_new(sb, FL_MODE_TRAIN, &e);
    fl_id xa = fl_input(ga, "x", 4, (int64_t[]){Y_N, Y_S, Y_S, 3});
    fl_id xb = fl_input(gb, "x", 4, (int64_t[]){Y_N, Y_S, Y_S, 3});
    fl_yolo_heads ha, hb;
    assert_int_equal(fl_yolo_build(ga, sa, xa, &c, &ha, &e), 0);
    assert_int_equal(fl_yolo_build(gb, sb, xb, &c, &hb, &e), 0);
    fl_id flat = fl_yolo_flat_heads(ga, &ha);
    assert_int_equal(fl_graph_compile(ga, flat, &e), 0);
    fl_id tin = fl_yolo_targets_input(gb, "targets", Y_T), loss = -1;
    fl_id items = fl_yolo_loss_node(gb, &c, &hyp, &hb, tin, &loss);
    if (fl_graph_compile(gb, loss, &e) < 0) printf("%s\n", e.msg);
    assert_true(items >= 0 && loss >= 0);
    /* the detector's groups: biases apart (no decay) with their own lr during warmup */
    fl_param_list pl, plb;
    assert_int_equal(fl_pstore_params(sa, &pl, &e), 0);
    for (int k = 0; k < 2; k++) {
        fl_param_list l;
        assert_int_equal(fl_pstore_params(k ? sb : sa, &l, &e), 0);
        for (size_t i = 0; i < l.n; i++) {
            size_t len = strlen(l.v[i].name);
            if (len > 5 && !strcmp(l.v[i].name + len - 5, ".bias")) fl_pstore_set_group(k ? sb : sa, l.v[i].name, 2);
        }
    }
    assert_int_equal(fl_pstore_params(sa, &pl, &e), 0);
    assert_int_equal(fl_pstore_params(sb, &plb, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_SGD, 0.01);
    oc.momentum = 0.937, oc.nesterov = 1, oc.weight_decay = 5e-4;
    fl_optim *o = fl_optim_create(&oc, &pl, &e);
    fl_ema *m = fl_ema_create(&pl, 0.9999, 2000, &e);
    fl_update_cfg uc = {.optim = oc, .clip = 10.0, .ema = 1, .ema_decay = 0.9999, .ema_tau = 2000};
    assert_int_equal(fl_graph_attach_update(gb, &uc, &e), 0);
    size_t nx = (size_t)Y_N * Y_S * Y_S * 3, nf = fl_yolo_total_numel(&ha);
    float *x = malloc(nx * 4), *grad = malloc(nf * 4), tpack[Y_T * 6];
    fl_yolo_target t[Y_T];
    fl_yolo_warmup wu = {.nw = 100, .warmup_bias_lr = 0.1, .warmup_momentum = 0.8, .momentum = 0.937, .bias_group = 2};
    for (int step = 0; step < STEPS; step++) {
        fl_rng rg;
        fl_rng_init(&rg, 4, (uint64_t)step);
        for (size_t k = 0; k < nx; k++) x[k] = fl_rng_uniform(&rg);
        size_t nt = yolo_targets(step, t);
        fl_yolo_warmup_apply(o, &wu, step, 0.01);
        /* host */
        memcpy(fl_graph_value(ga, xa), x, nx * 4);
        assert_int_equal(fl_graph_forward(ga, &e), 0);
        fl_yolo_loss_out lo;
        assert_int_equal(fl_yolo_loss(&c, &hyp, &ha, fl_graph_value(ga, flat), t, nt, grad, &lo, &e), 0);
        fl_optim_zero_grad(o);
        assert_int_equal(fl_graph_backward(ga, grad, &e), 0);
        float norm = fl_clip_grad_norm(&pl, 10.0);
        fl_optim_step(o);
        fl_ema_update(m);
        /* graph */
        fl_update_scalars sc = {.momentum = o->momentum};
        memcpy(sc.lr, o->lr, sizeof sc.lr);
        assert_int_equal(fl_yolo_pack_targets(t, nt, tpack, Y_T, &e), 0);
        assert_int_equal(fl_graph_set_input(gb, xb, x, nx * 4, &e), 0);
        assert_int_equal(fl_graph_set_input(gb, tin, tpack, sizeof tpack, &e), 0);
        fl_step_out out;
        if (fl_graph_step(gb, &sc, &out, &e) < 0) printf("%s\n", e.msg);
        const float *it = fl_graph_value(gb, items);
        float want[4] = {(float)lo.loss, (float)lo.lbox, (float)lo.lobj, (float)lo.lcls};
        printf("yolo step %d: loss %.6f / %.6f (%lld %lld %lld matches), norm %.6f / %.6f\n", step, lo.loss, it[0],
               (long long)lo.matches[0], (long long)lo.matches[1], (long long)lo.matches[2], norm, out.grad_norm);
        assert_memory_equal(it, want, sizeof want);
        assert_memory_equal(&norm, &out.grad_norm, 4);
        same_stores(sa, sb, "yolo");
        same_state(gb, o, m);
    }
    free(x), free(grad);
    fl_optim_free(o);
    fl_ema_free(m);
    fl_graph_free(ga), fl_graph_free(gb);
    fl_pstore_free(sa), fl_pstore_free(sb);
}

/* ---- the YOLO loss op's backward against central differences (tiny heads as inputs) -------- */

static void test_yolo_loss_op_fd(void **state) {
    fl_err e = {{0}};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.25, 2, &e), 0);
    fl_yolo_hyp hyp = fl_yolo_hyp_default(32);
    hyp.label_smoothing = 0.1;
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_yolo_heads h = {.n = 2, .no = 7, .ny = {4, 2, 1}, .nx = {4, 2, 1}};
    for (int i = 0; i < FL_YOLO_NL; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        h.p[i] = fl_input(g, nm, 4, (int64_t[]){2, h.ny[i], h.nx[i], 21});
        fl_input_requires_grad(g, h.p[i]);
    }
    fl_id tin = fl_yolo_targets_input(g, "t", 6);
    fl_id items = fl_yolo_loss_node(g, &c, &hyp, &h, tin, NULL);
    assert_int_equal(fl_graph_compile(g, items, &e), 0);
    fl_yolo_target t[4] = {{0, 1, 0.3f, 0.4f, 0.4f, 0.3f}, {1, 0, 0.7f, 0.55f, 0.2f, 0.5f},
                           {1, 1, 0.52f, 0.26f, 0.9f, 0.8f}, {0, 0, 0.1f, 0.9f, 0.1f, 0.15f}};
    float tp[36];
    assert_int_equal(fl_yolo_pack_targets(t, 4, tp, 6, &e), 0);
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), 0);
    fl_rng rg;
    fl_rng_init(&rg, 3, 0);
    float *pv[3];
    for (int i = 0; i < 3; i++) {
        pv[i] = fl_graph_value(g, h.p[i]);
        for (int64_t k = 0; k < fl_graph_numel(g, h.p[i]); k++) pv[i][k] = fl_rng_normal(&rg);
    }
    const float r[4] = {0.7f, -0.4f, 1.3f, 0.6f};
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, r, &e), 0);
    /* the host loss on the same heads: forward bitwise, and the gradient for seed (1, 0, 0, 0) */
    float *gh[3];
    for (int i = 0; i < 3; i++) gh[i] = malloc(fl_yolo_level_numel(&h, i) * 4);
    fl_yolo_loss_out lo;
    assert_int_equal(fl_yolo_loss_levels(&c, &hyp, &h, (const float *const *)pv, t, 4, gh, NULL, NULL, &lo, &e), 0);
    const float *y = fl_graph_value(g, items);
    float want[4] = {(float)lo.loss, (float)lo.lbox, (float)lo.lobj, (float)lo.lcls};
    assert_memory_equal(y, want, sizeof want);
    assert_true(lo.matches[0] + lo.matches[1] + lo.matches[2] > 4);
    /* Objectness and class channels: central differences of the host loss in double. The box
     * channels (0..3) carry autograd's gradient with CIoU's alpha detached (ultralytics computes
     * it under no_grad; checked against its fixtures in test_models_yolo), which is not the
     * derivative of the loss value: there the op must give the host gradient times
     * dy[0] + dy[1]/N, as computed. */
    double worst = 0;
    const double kbox = (double)r[0] + (double)r[1] / 2.0;
    for (int i = 0; i < 3; i++) {
        const float *ga = fl_graph_grad(g, h.p[i]);
        double num2 = 0, err2 = 0;
        for (size_t k = 0; k < fl_yolo_level_numel(&h, i); k++) {
            if (k % 7 < 4) {
                assert_true(ga[k] == (float)((double)gh[i][k] * kbox));
                continue;
            }
            float keep = pv[i][k], xp = keep + 1e-3f, xm = keep - 1e-3f;
            fl_yolo_loss_out op, om;
            pv[i][k] = xp;
            fl_yolo_loss_levels(&c, &hyp, &h, (const float *const *)pv, t, 4, (float *[3]){0}, NULL, NULL, &op, &e);
            pv[i][k] = xm;
            fl_yolo_loss_levels(&c, &hyp, &h, (const float *const *)pv, t, 4, (float *[3]){0}, NULL, NULL, &om, &e);
            pv[i][k] = keep;
            double Lp = r[0] * op.loss + r[1] * op.lbox + r[2] * op.lobj + r[3] * op.lcls;
            double Lm = r[0] * om.loss + r[1] * om.lbox + r[2] * om.lobj + r[3] * om.lcls;
            double fd = (Lp - Lm) / ((double)xp - (double)xm);
            num2 += fd * fd;
            err2 += (fd - ga[k]) * (fd - ga[k]);
        }
        double rel = sqrt(err2 / num2);
        printf("yolo loss op: level %d obj/cls gradient vs central differences: %.3e\n", i, rel);
        if (rel > worst) worst = rel;
    }
    assert_true(worst < 1e-4);
    /* seed (1, 0, 0, 0): the host gradient bit for bit */
    float *keep[3];
    for (int i = 0; i < 3; i++) {
        keep[i] = malloc(fl_yolo_level_numel(&h, i) * 4);
        memcpy(keep[i], pv[i], fl_yolo_level_numel(&h, i) * 4);
    }
    fl_graph_free(g);
    g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    for (int i = 0; i < FL_YOLO_NL; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        h.p[i] = fl_input(g, nm, 4, (int64_t[]){2, h.ny[i], h.nx[i], 21});
        fl_input_requires_grad(g, h.p[i]);
    }
    tin = fl_yolo_targets_input(g, "t", 6);
    fl_id loss;
    fl_yolo_loss_node(g, &c, &hyp, &h, tin, &loss);
    assert_int_equal(fl_graph_compile(g, loss, &e), 0);
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), 0);
    for (int i = 0; i < 3; i++) memcpy(fl_graph_value(g, h.p[i]), keep[i], fl_yolo_level_numel(&h, i) * 4);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
    for (int i = 0; i < 3; i++) assert_memory_equal(fl_graph_grad(g, h.p[i]), gh[i], fl_yolo_level_numel(&h, i) * 4);
    for (int i = 0; i < 3; i++) free(gh[i]), free(keep[i]);
    /* targets are validated at copy-in with the host messages */
    tp[1] = 2; /* class 2 of 2 */
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), -1);
    printf("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "target 0: class 2 outside [0, 2)"));
    tp[1] = 1, tp[6] = 2; /* image 2 of a batch of 2 */
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), -1);
    assert_non_null(strstr(e.msg, "target 1: image 2 outside the batch of 2"));
    tp[6] = 1, tp[12 + 4] = 0; /* zero width */
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), -1);
    assert_non_null(strstr(e.msg, "target 2: box"));
    tp[16] = 0.9f, tp[24] = -1, tp[30] = 1; /* a real row after padding */
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), -1);
    assert_non_null(strstr(e.msg, "follows a padding row"));
    tp[30] = -1;
    assert_int_equal(fl_graph_set_input(g, tin, tp, sizeof tp, &e), 0);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* Labels are checked at copy-in (and by forward, before any kernel); misuse of the API. */
static void test_validation_and_misuse(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 2, (int64_t[]){3, 4});
    fl_id lab = fl_input_labels(g, "y", 3);
    fl_id l = fl_softmax_ce(g, fl_linear_layer(g, x, "fc", 5, 1), lab, 0);
    fl_update_cfg uc = {.optim = fl_optim_defaults(FL_OPTIM_ADAM, 1e-3)};
    fl_update_scalars sc = {.lr = {1e-3}};
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), -1);
    assert_non_null(strstr(e.msg, "before compile"));
    assert_int_equal(fl_graph_compile(g, l, &e), 0);
    assert_int_equal(fl_graph_step(g, &sc, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "no update attached"));
    int32_t bad[3] = {0, 5, 1};
    assert_int_equal(fl_graph_set_input(g, lab, bad, sizeof bad, &e), -1);
    assert_non_null(strstr(e.msg, "label 5 at row 1 outside [0, 5)"));
    assert_int_equal(fl_graph_set_input(g, lab, bad, 8, &e), -1);
    assert_non_null(strstr(e.msg, "holds 12 bytes"));
    uc.clip = -1;
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), -1);
    uc.clip = 0, uc.skip_nonfinite = 1;
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), -1);
    uc.clip = INFINITY;
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), 0);
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), -1);
    /* a non-finite gradient skips the update and says so; the weights stay */
    int32_t ok[3] = {0, 4, 1};
    assert_int_equal(fl_graph_set_input(g, lab, ok, sizeof ok, &e), 0);
    float *xv = fl_graph_value(g, x);
    for (int k = 0; k < 12; k++) xv[k] = k == 5 ? NAN : 0.5f;
    float w0 = ((float *)fl_pstore_data(s, "fc.weight", NULL))[0];
    fl_step_out out;
    assert_int_equal(fl_graph_step(g, &sc, &out, &e), -1);
    assert_non_null(strstr(e.msg, "gradient norm is NaN"));
    assert_true(((float *)fl_pstore_data(s, "fc.weight", NULL))[0] == w0);
    xv[5] = 0.25f;
    assert_int_equal(fl_graph_step(g, &sc, &out, &e), 0);
    assert_true(((float *)fl_pstore_data(s, "fc.weight", NULL))[0] != w0);
    assert_int_equal(out.step, 1);
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* Dropout masks are drawn inside the forward kernel as a pure function of (seed, node, step,
 * element): recomputed here from Philox4x32-10 with counter (element / 4, node, step) and key
 * seed, they match the kernel's output; another step gives another mask, the same step the
 * same one. */
static void test_dropout_mask_pure(void **state) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    const int64_t n = 1000;
    fl_id x = fl_input(g, "x", 1, &n);
    fl_id y = fl_dropout(g, x, 0.3);
    assert_int_equal(fl_graph_compile(g, y, &e), 0);
    float *xv = fl_graph_value(g, x);
    for (int64_t k = 0; k < n; k++) xv[k] = 1.0f;
    const uint64_t seed = 0x123456789abcULL;
    float first[1000];
    for (uint64_t step = 5; step < 8; step++) {
        fl_graph_set_rng(g, seed, step);
        assert_int_equal(fl_graph_forward(g, &e), 0);
        const float *yv = fl_graph_value(g, y);
        if (step == 5) memcpy(first, yv, sizeof first);
        else assert_true(memcmp(first, yv, sizeof first) != 0);
        uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        uint32_t thr = (uint32_t)(0.3 * 16777216.0 + 0.5);
        for (int64_t k = 0; k < n; k++) {
            uint32_t ctr[4] = {(uint32_t)(k / 4), 0, (uint32_t)y, (uint32_t)step}, out[4];
            fl_philox4x32(ctr, key, out);
            int keep = (out[k % 4] >> 8) >= thr;
            assert_true(yv[k] == (keep ? (float)(1 / (1 - 0.3)) : 0.0f));
        }
    }
    fl_graph_set_rng(g, seed, 5);
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_memory_equal(first, fl_graph_value(g, y), sizeof first);
    fl_graph_free(g);
    fl_pstore_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_adamw_clip_ema),
        cmocka_unit_test(test_embed_sgd_nesterov),
        cmocka_unit_test(test_embed_adam_noclip),
        cmocka_unit_test(test_yolo_step),
        cmocka_unit_test(test_yolo_loss_op_fd),
        cmocka_unit_test(test_validation_and_misuse),
        cmocka_unit_test(test_dropout_mask_pure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
