/* The identification model's training loop (stages/embed/embed.h).
 *
 * Invariants (what makes a resumed fold byte-identical to an uninterrupted one):
 *   1. Every batch is a pure function of (seed, epoch, position) (runtime/data/loader.h), and
 *      dropout / drop-path masks of (seed, step) (fl_graph_set_rng).
 *   2. The learning rate is a pure function of the global step.
 *   3. A checkpoint is written only after an epoch finished with a finite loss; it holds the
 *      weights, BN statistics, optimizer state, EMA, the step and the metrics so far, and replaces
 *      the previous one atomically. Resuming loads all of it and continues at the next epoch.
 *   4. Same thread counts: OpenMP reductions then add in the same order. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/step.h"
#include "stages/embed/embed.h"
#include "stages/ident/ident.h"

#define HEAD_GROUP 1

typedef struct trainer {
    const fl_embopts *o;
    const fl_embtrain_io *io;
    fl_embopts mo; /* o with the data's class and species counts */
    fl_pstore *store;
    fl_graph *g;
    fl_embed_model m;
    fl_param_list pl;
    fl_optim *opt;
    fl_ema *ema;
    fl_embinfer *inf;
    float *emb; /* nall x dim: the validation pass */
    fl_param *view; /* backbone/DOLG/neck entries of the weights evaluated */
    size_t nview;
    int64_t epoch_done, step;
    cJSON *epochs;
} trainer;

static void say(const trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const trainer *t, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (t->io->log) t->io->log(t->io->user, line);
}

static int is_head(const char *name) {
    return !strncmp(name, "head.", 5) || !strncmp(name, "species_head.", 13);
}

/* torch OneCycleLR (anneal_strategy cos, three_phase False) at step t of total. */
static double onecycle_lr(const fl_embopts *o, int64_t t, int64_t total) {
    double init = o->lr / o->div_factor, fin = init / o->final_div;
    double up = o->pct_start * (double)total - 1, down = (double)total - 1;
    double a, b, pct;
    if ((double)t <= up) {
        a = init, b = o->lr, pct = up > 0 ? (double)t / up : 1;
    } else {
        a = o->lr, b = fin, pct = down > up ? ((double)t - up) / (down - up) : 1;
    }
    if (pct > 1) pct = 1;
    return b + (a - b) / 2 * (cos(M_PI * pct) + 1);
}

static double lr_at(const trainer *t, int64_t step, int64_t nb) {
    const fl_embopts *o = t->o;
    int64_t total = nb * o->epochs;
    if (o->sched == FL_EMB_SCHED_ONECYCLE) return onecycle_lr(o, step, total);
    fl_sched s = {.base_lr = o->lr,
                  .warmup_steps = (int64_t)llround(o->warmup_epochs * nb),
                  .warmup_start_factor = o->warmup_start};
    if (s.warmup_steps >= total) s.warmup_steps = total - 1 > 0 ? total - 1 : 0;
    int64_t rest = total - s.warmup_steps > 0 ? total - s.warmup_steps : 1;
    if (o->sched == FL_EMB_SCHED_CONSTANT) {
        s.kind = FL_SCHED_CONSTANT;
    } else if (o->sched == FL_EMB_SCHED_COSINE) {
        s.kind = FL_SCHED_COSINE;
        s.t_max = rest;
        s.eta_min = o->eta_min_factor * o->lr;
    } else {
        s.kind = FL_SCHED_COSINE_RESTARTS;
        s.t_0 = (int64_t)llround(o->t0_epochs * nb);
        if (s.t_0 < 1) s.t_0 = 1;
        s.t_mult = o->t_mult;
        s.eta_min = o->eta_min_factor * o->lr;
    }
    return fl_sched_lr(&s, step);
}

static void trainer_free(trainer *t) {
    fl_embinfer_free(t->inf);
    fl_ema_free(t->ema);
    fl_optim_free(t->opt);
    fl_graph_free(t->g);
    fl_pstore_free(t->store);
    free(t->emb);
    free(t->view);
    cJSON_Delete(t->epochs);
}

static int trainer_init(trainer *t, const fl_embopts *o, const fl_embtrain_io *io, fl_err *e) {
    memset(t, 0, sizeof *t);
    t->o = o;
    t->io = io;
    t->mo = *o;
    const fl_embset *s = io->set;
    t->mo.model.arc.num_classes = s->nclasses;
    t->mo.model.num_species = o->species_head ? s->nspecies : 0;
    if (!(t->epochs = cJSON_CreateArray())) return fl_errf(e, "out of memory");
    if (!(t->store = fl_pstore_new(FL_F32, o->seed, e)) ||
        !(t->g = fl_graph_new(t->store, FL_MODE_TRAIN, e)) ||
        fl_embed_build(t->g, &t->mo.model, o->batch, o->imgsz, o->imgsz, 1, &t->m, e) ||
        fl_graph_compile(t->g, t->m.loss, e) < 0 || fl_pstore_params(t->store, &t->pl, e))
        return -1;
    fl_pstore_set_group(t->store, "neck.", HEAD_GROUP);
    fl_pstore_set_group(t->store, "head.", HEAD_GROUP);
    fl_pstore_set_group(t->store, "species_head.", HEAD_GROUP);
    if (fl_pstore_params(t->store, &t->pl, e)) return -1;
    if (io->pretrained) {
        fl_st_set *set = fl_st_open_set(io->pretrained, e);
        static const char *const skip[] = {"classifier.", "conv_head.", "bn2.", NULL};
        int rc = set ? fl_effnet_load(t->store, set, "backbone.", skip, e) : -1;
        fl_st_close_set(set);
        if (rc) return fl_errprefix(e, "embed_train: pretrained backbone %s", io->pretrained);
        if (fl_pstore_params(t->store, &t->pl, e)) return -1;
        say(t, "pretrained backbone loaded from %s", io->pretrained);
    }
    if (io->init) { /* a pseudo round continuing from the previous round's model of the fold */
        if (fl_embmodel_load_init(io->init, t->store, e))
            return fl_errprefix(e, "embed_train: initial model");
        if (fl_pstore_params(t->store, &t->pl, e)) return -1;
        say(t, "starting from %s (heads new)", io->init);
    }
    if (t->mo.model.arc.dynamic) {
        if (fl_dynamic_margins(s->class_count, s->nclasses, o->dyn_a, o->dyn_b, o->dyn_c,
                               fl_graph_value(t->g, t->m.margins), e))
            return -1;
    }
    fl_optim_cfg oc = fl_optim_defaults(o->optimizer, o->lr);
    oc.weight_decay = o->weight_decay;
    oc.group_lr_mult[HEAD_GROUP] = o->head_lr_mult;
    if (!(t->opt = fl_optim_create(&oc, &t->pl, e))) return -1;
    if (o->ema && !(t->ema = fl_ema_create(&t->pl, o->ema_decay, o->ema_tau, e))) return -1;
    /* The update runs inside the graph (runtime/step.h); t->opt and t->ema are its host mirror
     * for checkpoints, the schedule and evaluation, synced once per epoch (bitwise the same
     * trajectory as fl_optim_step / fl_ema_update: tests/unit/test_runtime_step.c). */
    fl_update_cfg uc = {.optim = oc, .clip = o->clip > 0 ? o->clip : INFINITY, .skip_nonfinite = 1,
                        .ema = o->ema, .ema_decay = o->ema_decay, .ema_tau = o->ema_tau};
    if (fl_graph_attach_update(t->g, &uc, e)) return -1;
    int eb = o->eval_batch;
    if (!(t->inf = fl_embinfer_new(&t->mo, eb, e))) return -1;
    t->emb = malloc(sizeof *t->emb * (size_t)(s->nall ? s->nall : 1) * (size_t)o->model.emb_dim);
    t->view = calloc(t->pl.n + 1, sizeof *t->view);
    if (!t->emb || !t->view) return fl_errf(e, "out of memory");
    return 0;
}

/* The weights being evaluated (EMA or model), without the heads. */
static const fl_param_list *eval_view(trainer *t, fl_param_list *out) {
    const fl_param_list *src = t->ema ? &t->ema->view : &t->pl;
    size_t k = 0;
    for (size_t i = 0; i < src->n; i++)
        if (!is_head(src->v[i].name)) t->view[k++] = src->v[i];
    out->v = t->view;
    out->n = k;
    return out;
}

static int ckpt_save(trainer *t, fl_err *e) {
    char ep[32], st[32];
    snprintf(ep, sizeof ep, "%" PRId64, t->epoch_done);
    snprintf(st, sizeof st, "%" PRId64, t->step);
    char *metrics = cJSON_PrintUnformatted(t->epochs);
    if (!metrics) return fl_errf(e, "out of memory");
    fl_st_kv extra[] = {{"embed.epoch", ep}, {"embed.step", st}, {"embed.metrics", metrics}};
    fl_ckpt c = {.params = &t->pl, .optim = t->opt, .ema = t->ema, .step = t->step,
                 .extra = extra, .nextra = 3};
    int rc = fl_ckpt_save(t->io->ckpt_path, &c, e);
    free(metrics);
    return rc;
}

/* 1 resumed, 0 nothing (or an unreadable file: start over), -1 error. */
static int ckpt_resume(trainer *t, fl_err *e) {
    const char *path = t->io->ckpt_path;
    if (!path || access(path, F_OK) != 0) return 0;
    fl_ckpt c = {.params = &t->pl, .optim = t->opt, .ema = t->ema};
    fl_st_set *meta = NULL;
    fl_err le = {{0}};
    if (fl_ckpt_load(path, &c, &meta, &le) != 0) {
        say(t, "warning: checkpoint %s does not load (%s); starting over", path, le.msg);
        return 0;
    }
    const char *ep = fl_st_meta(meta->files[0], "embed.epoch");
    const char *st = fl_st_meta(meta->files[0], "embed.step");
    const char *m = fl_st_meta(meta->files[0], "embed.metrics");
    cJSON *arr = m ? cJSON_Parse(m) : NULL;
    int rc = 1;
    if (!ep || !st || !cJSON_IsArray(arr)) {
        rc = fl_errf(e, "%s: checkpoint without embed counters; remove it to start over", path);
        cJSON_Delete(arr);
    } else {
        t->epoch_done = strtoll(ep, NULL, 10);
        t->step = strtoll(st, NULL, 10);
        cJSON_Delete(t->epochs);
        t->epochs = arr;
    }
    fl_st_close_set(meta);
    return rc;
}

typedef struct val_result {
    fl_ident_oof oof;
    double loss; /* ArcFace CE (with margin) of validation images of training individuals */
    int64_t nloss;
} val_result;

/* ArcFace CE of one normalized embedding against the normalized class centres (host side: a
 * few thousand validation rows, once per epoch). */
static double arc_ce(const trainer *t, const float *w, const float *wn, const float *v, int cls) {
    const fl_embopts *o = &t->mo;
    int C = o->model.arc.num_classes, K = o->model.arc.subcenters;
    int64_t d = o->model.emb_dim;
    double s = o->model.arc.s, mx = -1e30, sum = 0, tgt = 0;
    double m = o->model.arc.dynamic ? ((const float *)fl_graph_value(t->g, t->m.margins))[cls]
                                    : o->model.arc.m;
    (void)w;
    double *logit = malloc(sizeof *logit * (size_t)C);
    if (!logit) return NAN;
    for (int c = 0; c < C; c++) {
        double best = -2;
        for (int k = 0; k < K; k++) {
            const float *r = wn + ((size_t)c * K + k) * d;
            double dot = 0;
            for (int64_t j = 0; j < d; j++) dot += (double)r[j] * v[j];
            best = dot > best ? dot : best;
        }
        double l = s * best;
        if (c == cls) {
            double th = acos(fmax(-1, fmin(1, best)));
            l = best > cos(M_PI - m) ? s * cos(th + m) : s * (best - m * sin(M_PI - m));
            tgt = l;
        }
        logit[c] = l;
        mx = l > mx ? l : mx;
    }
    for (int c = 0; c < C; c++) sum += exp(logit[c] - mx);
    free(logit);
    return log(sum) + mx - tgt;
}

static void progress_embed(void *u, size_t done, size_t total) { (void)u, (void)done, (void)total; }

static int validate(trainer *t, val_result *r, fl_err *e) {
    const fl_embset *s = t->io->set;
    fl_param_list v;
    memset(r, 0, sizeof *r);
    if (fl_pstore_copy_from(fl_embinfer_store(t->inf), eval_view(t, &v), e)) return -1;
    if (fl_embinfer_run(t->inf, s->all, (size_t)s->nall, t->o->workers, 0, t->emb, progress_embed,
                        NULL, e))
        return -1;
    int64_t d = t->mo.model.emb_dim;
    if (fl_ident_oof_eval(t->emb, s->nall, d, s->ind, s->is_val, t->o->knn_k, 0.01, &r->oof, e))
        return -1;
    /* validation loss over rows whose individual has training images */
    const fl_param_list *src = t->ema ? &t->ema->view : &t->pl;
    const float *w = NULL;
    size_t rows = (size_t)t->mo.model.arc.num_classes * t->mo.model.arc.subcenters;
    for (size_t i = 0; i < src->n; i++)
        if (!strcmp(src->v[i].name, "head.weight")) w = src->v[i].data;
    float *wn = w ? malloc(sizeof *wn * rows * (size_t)d) : NULL;
    if (!wn) return w ? fl_errf(e, "out of memory") : 0;
    for (size_t c = 0; c < rows; c++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)w[c * d + j] * w[c * d + j];
        float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
        for (int64_t j = 0; j < d; j++) wn[c * d + j] = w[c * d + j] * inv;
    }
    double sum = 0;
    for (int64_t a = 0; a < s->nall; a++)
        if (s->is_val[a] && s->cls[a] >= 0) {
            sum += arc_ce(t, w, wn, t->emb + a * d, s->cls[a]);
            r->nloss++;
        }
    free(wn);
    r->loss = r->nloss ? sum / (double)r->nloss : NAN;
    return 0;
}

static cJSON *epoch_json(int64_t epoch, double loss, double lr, const val_result *v) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "epoch", (double)epoch + 1);
    cJSON_AddNumberToObject(j, "loss", loss);
    cJSON_AddNumberToObject(j, "lr", lr);
    if (v) {
        cJSON_AddNumberToObject(j, "val_map5", v->oof.map5);
        cJSON_AddNumberToObject(j, "val_map5_known", v->oof.map5_known);
        cJSON_AddNumberToObject(j, "val_map5_new", v->oof.map5_new);
        cJSON_AddNumberToObject(j, "val_threshold", v->oof.threshold);
        if (v->nloss) cJSON_AddNumberToObject(j, "val_loss", v->loss);
    }
    return j;
}

static int write_metrics(trainer *t, const val_result *v, fl_err *e) {
    const fl_embset *s = t->io->set;
    cJSON *root = cJSON_CreateObject(), *fin = cJSON_CreateObject();
    if (!root || !fin) {
        cJSON_Delete(root);
        cJSON_Delete(fin);
        return fl_errf(e, "out of memory");
    }
    cJSON_AddNumberToObject(root, "fold", s->k);
    cJSON_AddItemToObject(root, "epochs", cJSON_Duplicate(t->epochs, 1));
    cJSON_AddNumberToObject(fin, "val_map5", v->oof.map5);
    cJSON_AddNumberToObject(fin, "val_map5_known", v->oof.map5_known);
    cJSON_AddNumberToObject(fin, "val_map5_new", v->oof.map5_new);
    cJSON_AddNumberToObject(fin, "val_threshold", v->oof.threshold);
    cJSON_AddNumberToObject(fin, "val_images", (double)v->oof.n_query);
    cJSON_AddNumberToObject(fin, "train_images", (double)s->ntrain);
    cJSON_AddNumberToObject(fin, "classes", s->nclasses);
    cJSON_AddItemToObject(root, "final", fin);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return fl_errf(e, "out of memory");
    size_t len = strlen(txt);
    txt[len] = '\n';
    int rc = fl_write_file_atomic(t->io->metrics_path, txt, len + 1, e);
    free(txt);
    return rc;
}

static int train_epoch(trainer *t, fl_loader *L, int64_t epoch, int64_t nb, double *loss_out,
                       fl_err *e) {
    const fl_embopts *o = t->o;
    const fl_embset *s = t->io->set;
    size_t per = (size_t)o->imgsz * o->imgsz * 3;
    float *x = fl_graph_value(t->g, t->m.x);
    int32_t *lab = fl_graph_value(t->g, t->m.labels);
    int32_t *spc = t->m.species >= 0 ? fl_graph_value(t->g, t->m.species) : NULL;
    const float *lossv = fl_graph_value(t->g, t->m.loss);
    double sum = 0, t0 = fl_now();
    int64_t total = nb * o->epochs;
    for (int64_t i = 0; i < nb; i++) {
        const fl_batch *b;
        int r = fl_loader_next(L, &b, e);
        if (r <= 0)
            return r == 0 ? fl_errf(e, "embed_train: loader ended early in epoch %" PRId64, epoch + 1) : -1;
        /* A short batch (fewer training images than the batch) repeats its samples. */
        for (int j = 0; j < o->batch; j++) {
            int src = j % b->n;
            memcpy(x + (size_t)j * per, b->images + (size_t)src * per, per * sizeof *x);
            lab[j] = b->labels[src];
            if (spc) spc[j] = s->train_species[b->items[src]];
        }
        double lr = lr_at(t, t->step, nb);
        fl_optim_set_lr(t->opt, lr);
        fl_graph_set_rng(t->g, o->seed, (uint64_t)t->step);
        if (fl_graph_zero_grad(t->g, e) < 0 || fl_graph_forward(t->g, e) < 0) return -1;
        double l = lossv[0];
        if (!isfinite(l)) {
            char kept[96];
            if (t->epoch_done > 0)
                snprintf(kept, sizeof kept, "the last good checkpoint (epoch %" PRId64 ") is kept", t->epoch_done);
            else
                snprintf(kept, sizeof kept, "no epoch finished, so there is no checkpoint");
            return fl_errf(e, "embed_train[%d]: the loss is %s at epoch %" PRId64 " step %" PRId64
                              "; stopped, %s; lower embed.train.lr or set embed.train.clip",
                           s->k, isnan(l) ? "NaN" : "infinite", epoch + 1, i + 1, kept);
        }
        if (fl_graph_backward(t->g, NULL, e) < 0) return -1;
        /* A finite loss can still have a non-finite gradient; an update with it would poison the
         * weights the next checkpoint saves, so the update phase skips it (skip_nonfinite). */
        fl_update_scalars sc = {.momentum = t->opt->momentum};
        memcpy(sc.lr, t->opt->lr, sizeof sc.lr);
        fl_step_out so;
        fl_err ue = {{0}};
        if (fl_graph_update(t->g, &sc, &so, &ue) < 0) {
            float gn = so.grad_norm;
            if (isfinite(gn)) return fl_errf(e, "embed_train[%d]: %s", s->k, ue.msg);
            char kept[96];
            if (t->epoch_done > 0)
                snprintf(kept, sizeof kept, "the last good checkpoint (epoch %" PRId64 ") is kept", t->epoch_done);
            else
                snprintf(kept, sizeof kept, "no epoch finished, so there is no checkpoint");
            return fl_errf(e, "embed_train[%d]: the gradient norm is %s at epoch %" PRId64 " step %" PRId64
                              "; stopped before the update, %s; lower embed.train.lr or set embed.train.clip",
                           s->k, isnan(gn) ? "NaN" : "infinite", epoch + 1, i + 1, kept);
        }
        t->step++;
        sum += l;
        if (t->io->progress && ((i + 1) % 10 == 0 || i + 1 == nb)) {
            char line[256];
            double ips = (double)(i + 1) * o->batch / fmax(fl_now() - t0, 1e-9);
            snprintf(line, sizeof line, "epoch %" PRId64 "/%d step %" PRId64 "/%" PRId64
                                        " loss %.4f lr %.3g %.1f img/s",
                     epoch + 1, o->epochs, i + 1, nb, sum / (double)(i + 1), lr, ips);
            t->io->progress(t->io->user, (uint64_t)t->step,
                            (uint64_t)total, line);
        }
    }
    *loss_out = sum / (double)(nb ? nb : 1);
    return fl_graph_update_store(t->g, t->opt, t->ema, e); /* the host mirror for what follows */
}

int fl_embtrain_run(const fl_embopts *o, const fl_embtrain_io *io, fl_err *e) {
    const fl_embset *s = io->set;
    trainer t;
    fl_loader *L = NULL;
    int rc = trainer_init(&t, o, io, e);
    int resumed = rc == 0 ? ckpt_resume(&t, e) : 0;
    if (resumed < 0) rc = -1;
    if (resumed > 0 && fl_graph_update_load(t.g, t.opt, t.ema, e)) rc = -1;
    if (rc == 0 && resumed)
        say(&t, "resuming from %s after epoch %" PRId64 " of %d", io->ckpt_path, t.epoch_done, o->epochs);
    fl_loader_config lc = fl_loader_config_defaults();
    lc.items = s->train;
    lc.n_items = s->ntrain;
    lc.task = FL_TASK_REID;
    lc.out_w = lc.out_h = o->imgsz;
    lc.batch_size = o->batch;
    lc.workers = o->workers;
    lc.augment = 1;
    lc.drop_last = s->ntrain >= (size_t)o->batch;
    lc.seed = o->seed;
    lc.first_epoch = t.epoch_done;
    lc.epochs = o->epochs - t.epoch_done;
    lc.sampler = o->sampler;
    lc.balance_power = (float)o->balance_power;
    lc.reid = o->aug;
    lc.on_bad_image = FL_BAD_IMAGE_SKIP;
    int64_t nb = 0;
    if (rc == 0 && lc.epochs > 0 && !(L = fl_loader_open(&lc, e))) rc = -1;
    if (rc == 0) {
        nb = L ? fl_loader_batches_per_epoch(L) : 0;
        if (t.epoch_done == 0) {
            fl_effnet_arch a;
            fl_effnet_arch_of(&o->model.backbone, &a, e);
            say(&t, "fold %d: %s (width %.3g depth %.3g, %d blocks) + DOLG %lld + %lld-d embedding, "
                    "ArcFace over %d individuals, %d px; %zu train / %lld val crops, %d epochs of %"
                    PRId64 " batches of %d",
                s->k, o->backbone, o->model.backbone.width, o->model.backbone.depth, a.num_blocks,
                (long long)o->model.dolg.dim, (long long)o->model.emb_dim, s->nclasses, o->imgsz,
                s->ntrain, (long long)(s->nall - (int64_t)s->ntrain), o->epochs, nb, o->batch);
        }
    }
    val_result v = {0};
    int have_v = 0;
    for (int64_t ep = t.epoch_done; rc == 0 && ep < o->epochs; ep++) {
        double loss = 0, t0 = fl_now();
        if (train_epoch(&t, L, ep, nb, &loss, e)) {
            rc = -1;
            break;
        }
        double dt = fl_now() - t0;
        uint64_t bad = fl_loader_bad_images(L);
        double seen = (double)(ep + 1 - lc.first_epoch) * nb * o->batch;
        if (bad && bad > o->max_bad_share * seen) {
            rc = fl_errf(e, "embed_train[%d]: %" PRIu64 " unreadable crops in about %.0f reads, over "
                            "embed.train.max_bad_share %g", s->k, bad, seen, o->max_bad_share);
            break;
        }
        int last = ep + 1 == o->epochs;
        int do_val = last || (o->val_every > 0 && (ep + 1) % o->val_every == 0);
        double tv = fl_now();
        if (do_val && validate(&t, &v, e)) {
            rc = -1;
            break;
        }
        have_v = do_val;
        cJSON *j = epoch_json(ep, loss, t.opt->lr[0], do_val ? &v : NULL);
        if (!j) {
            rc = fl_errf(e, "out of memory");
            break;
        }
        cJSON_AddItemToArray(t.epochs, j);
        if (do_val) {
            char vl[64] = "";
            if (v.nloss) snprintf(vl, sizeof vl, " loss %.4f", v.loss);
            say(&t, "epoch %" PRId64 "/%d: loss %.4f, %.1f s (%.1f img/s); val MAP@5 %.4f (known %.4f, "
                    "new %.4f, threshold %.2f)%s on %lld crops (%.1f s)",
                ep + 1, o->epochs, loss, dt, nb * o->batch / fmax(dt, 1e-9), v.oof.map5,
                v.oof.map5_known, v.oof.map5_new, v.oof.threshold, vl, (long long)v.oof.n_query,
                fl_now() - tv);
        }
        if (!do_val)
            say(&t, "epoch %" PRId64 "/%d: loss %.4f, %.1f s (%.1f img/s)", ep + 1, o->epochs, loss,
                dt, nb * o->batch / fmax(dt, 1e-9));
        t.epoch_done = ep + 1;
        if (io->ckpt_path && ckpt_save(&t, e)) rc = -1;
    }
    fl_loader_close(L);
    if (rc == 0 && !have_v && validate(&t, &v, e)) rc = -1;
    fl_param_list view;
    if (rc == 0 && fl_embmodel_save(io->model_path, &t.mo, eval_view(&t, &view), e)) rc = -1;
    if (rc == 0 && write_metrics(&t, &v, e)) rc = -1;
    trainer_free(&t);
    return rc;
}
