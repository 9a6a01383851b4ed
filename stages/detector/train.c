/* YOLOv5 training loop (stages/detector/train.h): ultralytics train.py's recipe on the runtime.
 * The whole step runs in the graph (runtime/step.h): the YOLOv5 loss and its target assignment
 * (fl_yolo_loss_node), backward, and every accumulate-th step gradient clipping, the optimizer
 * and the EMA as backend ops. t->opt and t->ema are their host mirror (the warmup's lr and
 * momentum, checkpoints, validation), synced once per epoch; the trajectory is bitwise that of
 * fl_yolo_loss + fl_clip_grad_norm + fl_optim_step + fl_ema_update (tests/unit/test_runtime_step.c). */
#include "stages/detector/train.h"

#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"
#include "runtime/step.h"
#include "runtime/torch_pt.h"
#include "stages/detector/val.h"

#define BIAS_GROUP 1

typedef struct trainer {
    const fl_dettrain_opts *o;
    fl_pstore *store;
    fl_graph *g;
    fl_id x, tin, items; /* inputs (batch, packed targets); the loss node [loss, box, obj, cls] */
    fl_yolo_heads h;
    fl_param_list pl;
    fl_optim *opt;
    fl_ema *ema;
    fl_detval_ctx *val;
    float *tpack; /* [max_targets, 6], fl_yolo_pack_targets */
    fl_yolo_target *targets;
    size_t max_targets;
    /* counters (checkpointed) */
    int64_t epoch_done, last_opt_step;
    cJSON *epochs; /* the metrics of finished epochs */
    /* the pending accumulated gradients under "grad.<name>" (saved beside the checkpoint) */
    fl_param *ck_v;
    char **ck_names;
    fl_param_list ck;
} trainer;

static void say(const fl_dettrain_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const fl_dettrain_opts *o, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o->log) o->log(o->user, line);
}

/* ultralytics train.py: g0 BN weights (no decay), g1 other weights (decay), g2 biases (no
 * decay, warmup from warmup_bias_lr). Decay is per parameter (no_decay) in fluke's optimizer;
 * only the bias group needs its own lr. */
static void set_groups(trainer *t) {
    for (size_t i = 0; i < t->pl.n; i++) {
        const char *n = t->pl.v[i].name;
        size_t len = strlen(n);
        if (len > 5 && !strcmp(n + len - 5, ".bias")) fl_pstore_set_group(t->store, n, BIAS_GROUP);
    }
}

/* ultralytics intersect_dicts (runtime/torch_pt.h): same name and shape, anchors excluded. */
static int load_pretrained(trainer *t, const char *path, fl_err *e) {
    fl_yolo_pretrained_report rep;
    if (fl_yolo_load_pretrained(t->store, path, &rep, e)) return -1;
    say(t->o,
        "pretrained: %zu of %zu tensors transferred from %s (%zu of another shape%s%s kept "
        "from init, %zu missing)",
        rep.loaded, rep.total, path, rep.shape_skip, rep.skipped[0] ? ": " : "", rep.skipped,
        rep.missing);
    return 0;
}

static int ck_build(trainer *t, fl_err *e) {
    size_t n = t->pl.n, k = 0;
    t->ck_v = calloc(n + 1, sizeof *t->ck_v);
    t->ck_names = calloc(n, sizeof *t->ck_names);
    if (!t->ck_v || !t->ck_names) return fl_errf(e, "detector_train: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!t->pl.v[i].grad) continue;
        fl_param p = t->pl.v[i];
        if (!(t->ck_names[i] = fl_strdupf("grad.%s", p.name))) return fl_errf(e, "out of memory");
        p.name = t->ck_names[i];
        p.data = p.grad;
        p.grad = NULL;
        p.is_buffer = 1;
        t->ck_v[k++] = p;
    }
    t->ck.v = t->ck_v;
    t->ck.n = k;
    return 0;
}

/* The pending gradients of epoch k live in <ckpt>.grads<k % 2>, written before the checkpoint
 * that names them: a kill between the two writes leaves the previous pair intact. */
static char *grads_path(const trainer *t, int64_t epoch) {
    return fl_strdupf("%s.grads%d", t->o->ckpt_path, (int)(epoch % 2));
}

static int ckpt_save(trainer *t, fl_err *e) {
    char ep[32], last[32];
    snprintf(ep, sizeof ep, "%" PRId64, t->epoch_done);
    snprintf(last, sizeof last, "%" PRId64, t->last_opt_step);
    char *gp = grads_path(t, t->epoch_done);
    fl_st_kv gmeta[] = {{"detector.epoch", ep}};
    int rc = gp ? fl_st_write_params(gp, &t->ck, gmeta, 1, e) : fl_errf(e, "out of memory");
    free(gp);
    if (rc) return -1;
    char *metrics = cJSON_PrintUnformatted(t->epochs);
    if (!metrics) return fl_errf(e, "detector_train: out of memory");
    fl_st_kv extra[] = {
        {"detector.epoch", ep}, {"detector.last_opt_step", last}, {"detector.metrics", metrics}};
    fl_ckpt c = {.params = &t->pl,
                 .optim = t->opt,
                 .ema = t->ema,
                 .step = t->epoch_done,
                 .extra = extra,
                 .nextra = 3};
    rc = fl_ckpt_save(t->o->ckpt_path, &c, e);
    free(metrics);
    return rc;
}

/* Reads the gradients the checkpoint of `epoch` left pending; 0 ok, -1 missing or mismatched. */
static int grads_load(trainer *t, int64_t epoch, fl_err *e) {
    char *gp = grads_path(t, epoch);
    fl_st_set *s = gp ? fl_st_open_set(gp, e) : NULL;
    free(gp);
    if (!s) return -1;
    const char *ep = fl_st_meta(s->files[0], "detector.epoch");
    int rc = ep && strtoll(ep, NULL, 10) == epoch
                 ? fl_st_load_params(s, &t->ck, FL_ST_STRICT, NULL, e)
                 : fl_errf(e, "gradients of another epoch");
    fl_st_close_set(s);
    return rc;
}

/* 1 resumed, 0 nothing to resume (no file), -1 error. A checkpoint that does not load is
 * reported and training starts over: the work dir belongs to this cache key, so it can only be
 * a torn or foreign file, never a different run's state worth keeping. */
static int ckpt_resume(trainer *t, fl_err *e) {
    const char *path = t->o->ckpt_path;
    if (!path || access(path, F_OK) != 0) return 0;
    fl_ckpt c = {.params = &t->pl, .optim = t->opt, .ema = t->ema};
    fl_st_set *meta = NULL;
    fl_err le = {{0}};
    if (fl_ckpt_load(path, &c, &meta, &le) != 0) {
        say(t->o, "warning: checkpoint %s does not load (%s); starting over", path, le.msg);
        return 0;
    }
    const char *ep = fl_st_meta(meta->files[0], "detector.epoch");
    const char *last = fl_st_meta(meta->files[0], "detector.last_opt_step");
    const char *m = fl_st_meta(meta->files[0], "detector.metrics");
    cJSON *arr = m ? cJSON_Parse(m) : NULL;
    int rc = 1;
    if (!ep || !last || !cJSON_IsArray(arr)) {
        rc = fl_errf(e, "%s: checkpoint without detector counters", path);
        cJSON_Delete(arr);
    } else {
        t->epoch_done = strtoll(ep, NULL, 10);
        t->last_opt_step = strtoll(last, NULL, 10);
        cJSON_Delete(t->epochs);
        t->epochs = arr;
        if (grads_load(t, t->epoch_done, &le)) {
            /* The model was loaded already: start over from a fresh init rather than mix. */
            rc = fl_errf(e,
                         "%s: the pending gradients of epoch %" PRId64 " do not load (%s); "
                         "remove the work dir's detector_last.ckpt* files to start over",
                         path, t->epoch_done, le.msg);
        }
    }
    fl_st_close_set(meta);
    return rc;
}

static void trainer_free(trainer *t) {
    fl_detval_free(t->val);
    fl_ema_free(t->ema);
    fl_optim_free(t->opt);
    fl_graph_free(t->g);
    fl_pstore_free(t->store);
    free(t->tpack);
    free(t->targets);
    if (t->ck_names)
        for (size_t i = 0; i < t->pl.n; i++)
            free(t->ck_names[i]);
    free(t->ck_names);
    free(t->ck_v);
    cJSON_Delete(t->epochs);
}

static int trainer_init(trainer *t, const fl_dettrain_opts *o, fl_err *e) {
    memset(t, 0, sizeof *t);
    t->o = o;
    t->epochs = cJSON_CreateArray();
    int s = o->meta.imgsz;
    if (!t->epochs || !(t->store = fl_pstore_new(FL_F32, o->seed, e)) ||
        !(t->g = fl_graph_new(t->store, FL_MODE_TRAIN, e)))
        return -1;
    t->x = fl_input(t->g, "x", 4, (int64_t[]){o->batch, s, s, 3});
    if (fl_yolo_build(t->g, t->store, t->x, &o->meta.cfg, &t->h, e)) return -1;
    t->max_targets = (size_t)o->batch * 64;
    t->tin = fl_yolo_targets_input(t->g, "targets", (int64_t)t->max_targets);
    fl_id loss = -1;
    t->items = fl_yolo_loss_node(t->g, &o->meta.cfg, &o->hyp, &t->h, t->tin, &loss);
    if (fl_graph_compile(t->g, loss, e) < 0) return -1;
    if (fl_pstore_params(t->store, &t->pl, e)) return -1;
    set_groups(t);
    if (fl_pstore_params(t->store, &t->pl, e)) return -1;
    if (o->pretrained && load_pretrained(t, o->pretrained, e)) return -1;
    t->tpack = malloc(t->max_targets * 6 * sizeof *t->tpack);
    t->targets = malloc(t->max_targets * sizeof *t->targets);
    if (!t->tpack || !t->targets) return fl_errf(e, "detector_train: out of memory");

    /* train.py: weight_decay *= batch_size * accumulate / nbs, accumulate = max(round(nbs / bs), 1)
     */
    int accumulate = (int)nearbyint((double)o->nbs / o->batch);
    if (accumulate < 1) accumulate = 1;
    fl_optim_cfg oc = fl_optim_defaults(o->optimizer, o->lr0);
    oc.weight_decay = o->weight_decay * o->batch * accumulate / o->nbs;
    if (o->optimizer == FL_OPTIM_SGD) {
        oc.momentum = o->momentum;
        oc.nesterov = 1;
    } else {
        oc.beta1 = o->momentum; /* train.py: Adam(betas=(momentum, 0.999)) */
    }
    if (!(t->opt = fl_optim_create(&oc, &t->pl, e))) return -1;
    if (!(t->ema = fl_ema_create(&t->pl, o->ema_decay, o->ema_tau, e))) return -1;
    fl_update_cfg uc = {.optim = oc, .clip = o->clip, .ema = 1, .ema_decay = o->ema_decay,
                        .ema_tau = o->ema_tau};
    if (fl_graph_attach_update(t->g, &uc, e)) return -1;
    if (ck_build(t, e)) return -1;
    if (o->nval && !(t->val = fl_detval_new(&o->meta, o->val, o->nval, o->workers, e))) return -1;
    return 0;
}

/* Batch boxes (output pixels) -> normalized centre targets. */
static size_t make_targets(trainer *t, const fl_batch *b) {
    size_t n = 0;
    float s = (float)t->o->meta.imgsz;
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < b->nboxes[i] && n < t->max_targets; k++) {
            const fl_box *bx = &b->boxes[(size_t)i * b->max_boxes + k];
            float w = bx->x2 - bx->x1, h = bx->y2 - bx->y1;
            if (!(w > 0 && h > 0)) continue;
            t->targets[n++] = (fl_yolo_target){
                i, bx->cls, (bx->x1 + bx->x2) / 2 / s, (bx->y1 + bx->y2) / 2 / s, w / s, h / s};
        }
    return n;
}

typedef struct epoch_stats {
    double box, obj, cls;
    int64_t steps;
    double seconds;
} epoch_stats;

static int train_epoch(trainer *t, fl_loader *L, int64_t epoch, int64_t nb, const fl_sched *sch,
                       const fl_yolo_warmup *wu, epoch_stats *st, int64_t ni0, fl_err *e) {
    const fl_dettrain_opts *o = t->o;
    double lr_epoch = fl_sched_lr(sch, epoch);
    fl_optim_set_lr(t->opt, lr_epoch);
    memset(st, 0, sizeof *st);
    double t0 = fl_now();
    int64_t total = nb * o->epochs;
    for (int64_t i = 0; i < nb; i++) {
        const fl_batch *b;
        int r = fl_loader_next(L, &b, e);
        if (r <= 0)
            return r == 0 ? fl_errf(e, "detector_train: loader ended early in epoch %" PRId64,
                                    epoch + 1)
                          : -1;
        int64_t ni = i + nb * epoch;
        int accumulate = fl_yolo_accumulate(ni, wu->nw, o->nbs, o->batch);
        fl_yolo_warmup_apply(t->opt, wu, ni, lr_epoch);
        size_t nx = (size_t)b->n * o->meta.imgsz * o->meta.imgsz * 3;
        float *xin = fl_graph_value(t->g, t->x);
        memcpy(xin, b->images, nx * sizeof *xin);
        if (b->n < o->batch) memset(xin + nx, 0, (fl_graph_numel(t->g, t->x) - nx) * sizeof *xin);
        size_t nt = make_targets(t, b);
        if (fl_yolo_pack_targets(t->targets, nt, t->tpack, (int64_t)t->max_targets, e) ||
            fl_graph_set_input(t->g, t->tin, t->tpack, t->max_targets * 6 * sizeof *t->tpack, e) ||
            fl_graph_forward(t->g, e) < 0)
            return -1;
        const float *it = fl_graph_value(t->g, t->items);
        fl_yolo_loss_out lo = {.loss = it[0], .lbox = it[1], .lobj = it[2], .lcls = it[3]};
        if (!isfinite(lo.loss)) {
            char kept[96];
            if (t->epoch_done > 0)
                snprintf(kept, sizeof kept, "the last good checkpoint (epoch %" PRId64 ") is kept",
                         t->epoch_done);
            else
                snprintf(kept, sizeof kept, "no epoch finished, so there is no checkpoint");
            return fl_errf(e,
                           "detector_train: the loss is %s at epoch %" PRId64 " step %" PRId64
                           " (box %g obj %g cls %g); stopped, %s; lower detector.hyp.lr0, or check "
                           "the boxes and the pretrained weights",
                           isnan(lo.loss) ? "NaN" : "infinite", epoch + 1, i + 1, lo.lbox, lo.lobj,
                           lo.lcls, kept);
        }
        if (fl_graph_backward(t->g, NULL, e) < 0) return -1;
        if (ni - t->last_opt_step >= accumulate) {
            fl_update_scalars sc = {.momentum = t->opt->momentum};
            memcpy(sc.lr, t->opt->lr, sizeof sc.lr);
            fl_step_out so;
            if (fl_graph_update(t->g, &sc, &so, e) < 0 || fl_graph_zero_grad(t->g, e) < 0)
                return -1;
            t->last_opt_step = ni;
        }
        st->box += lo.lbox, st->obj += lo.lobj, st->cls += lo.lcls;
        st->steps++;
        double now = fl_now();
        if (o->progress && ((i + 1) % 10 == 0 || i + 1 == nb)) {
            char line[256];
            double ips = (double)st->steps * o->batch / fmax(now - t0, 1e-9);
            snprintf(line, sizeof line,
                     "epoch %" PRId64 "/%d step %" PRId64 "/%" PRId64
                     " box %.4f obj %.4f cls %.4f lr %.5f %.1f img/s",
                     epoch + 1, o->epochs, i + 1, nb, st->box / st->steps, st->obj / st->steps,
                     st->cls / st->steps, t->opt->lr[0], ips);
            o->progress(o->user, (uint64_t)(ni + 1 - ni0), (uint64_t)(total - ni0), line);
        }
    }
    st->seconds = fl_now() - t0;
    return fl_graph_update_store(t->g, t->opt, t->ema, e); /* the host mirror for what follows */
}

static cJSON *epoch_json(int64_t epoch, const epoch_stats *st, const fl_detval *v, double lr) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    double n = st->steps ? (double)st->steps : 1;
    cJSON_AddNumberToObject(j, "epoch", (double)epoch + 1);
    cJSON_AddNumberToObject(j, "box", st->box / n);
    cJSON_AddNumberToObject(j, "obj", st->obj / n);
    cJSON_AddNumberToObject(j, "cls", st->cls / n);
    cJSON_AddNumberToObject(j, "lr", lr);
    if (v) {
        cJSON_AddNumberToObject(j, "map50", v->map50);
        cJSON_AddNumberToObject(j, "map50_95", v->map50_95);
        cJSON_AddNumberToObject(j, "precision", v->precision);
        cJSON_AddNumberToObject(j, "recall", v->recall);
    }
    return j;
}

static int write_metrics(trainer *t, const fl_detval *final, const char *path, fl_err *e) {
    cJSON *root = cJSON_CreateObject(), *fin = cJSON_CreateObject();
    if (!root || !fin) {
        cJSON_Delete(root);
        cJSON_Delete(fin);
        return fl_errf(e, "out of memory");
    }
    cJSON_AddItemToObject(root, "epochs", cJSON_Duplicate(t->epochs, 1));
    cJSON_AddNumberToObject(fin, "map50", final->map50);
    cJSON_AddNumberToObject(fin, "map50_95", final->map50_95);
    cJSON_AddNumberToObject(fin, "precision", final->precision);
    cJSON_AddNumberToObject(fin, "recall", final->recall);
    cJSON_AddNumberToObject(fin, "val_images", final->images);
    cJSON_AddNumberToObject(fin, "val_labels", final->labels);
    cJSON_AddNumberToObject(fin, "train_images", (double)t->o->ntrain);
    cJSON_AddItemToObject(root, "final", fin);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return fl_errf(e, "out of memory");
    size_t len = strlen(txt);
    txt[len] = '\n'; /* cJSON's buffer has the terminator's byte to spare */
    int rc = fl_write_file_atomic(path, txt, len + 1, e);
    free(txt);
    return rc;
}

int fl_dettrain_run(const fl_dettrain_opts *o, const char *weights_path, const char *metrics_path,
                    fl_err *e) {
    if (o->ntrain < 1) return fl_errf(e, "detector_train: no training images with boxes");
    trainer t;
    fl_loader *L = NULL;
    int rc = trainer_init(&t, o, e);
    int resumed = rc == 0 ? ckpt_resume(&t, e) : 0;
    if (resumed < 0) rc = -1;
    if (resumed > 0 && fl_graph_update_load(t.g, t.opt, t.ema, e)) rc = -1;
    if (rc == 0 && resumed)
        say(o, "resuming from %s after epoch %" PRId64 " of %d", o->ckpt_path, t.epoch_done,
            o->epochs);

    fl_loader_config lc = fl_loader_config_defaults();
    lc.items = o->train;
    lc.n_items = o->ntrain;
    lc.task = FL_TASK_DETECT;
    lc.out_w = lc.out_h = o->meta.imgsz;
    lc.batch_size = o->batch;
    lc.workers = o->workers;
    lc.augment = 1;
    /* A short last batch would be padded with black images, which then enter the batch-norm
     * statistics and the loss; drop it, as long as a full batch exists. */
    lc.drop_last = o->ntrain >= (size_t)o->batch;
    lc.seed = o->seed;
    lc.first_epoch = t.epoch_done;
    lc.epochs = o->epochs - t.epoch_done;
    lc.yolo = o->aug;
    /* close_mosaic: the last epochs train on single letterboxed-scale images, the distribution
     * detection sees (a second loader from that epoch on; batches stay pure functions of
     * (seed, epoch, position), so resuming inside either phase is exact). */
    int64_t mosaic_end =
        o->close_mosaic > 0 && o->aug.mosaic > 0 ? o->epochs - o->close_mosaic : o->epochs;
    if (mosaic_end < 0) mosaic_end = 0;
    if (t.epoch_done >= mosaic_end) lc.yolo.mosaic = 0;
    lc.on_bad_image = FL_BAD_IMAGE_SKIP;
    lc.max_boxes = 64;
    fl_sched sch = {
        .kind = FL_SCHED_YOLO_LINEAR, .base_lr = o->lr0, .epochs = o->epochs, .lrf = o->lrf};
    int64_t nb = 0;
    if (rc == 0 && lc.epochs > 0 && !(L = fl_loader_open(&lc, e))) rc = -1;
    if (rc == 0 && L) nb = fl_loader_batches_per_epoch(L);
    fl_yolo_warmup wu = {.nw = fl_yolo_warmup_iters(o->warmup_epochs, nb ? nb : 1),
                         .warmup_bias_lr = o->warmup_bias_lr,
                         .warmup_momentum = o->warmup_momentum,
                         .momentum = o->momentum,
                         .bias_group = BIAS_GROUP};
    if (rc == 0 && t.epoch_done == 0)
        say(o,
            "YOLOv5 depth %.2f width %.3f, %d class(es), %d px: %zu train / %zu val images, %d "
            "epochs "
            "of %" PRId64 " batches of %d (nominal %d), warmup %" PRId64 " iterations",
            o->meta.cfg.depth, o->meta.cfg.width, o->meta.cfg.nc, o->meta.imgsz, o->ntrain, o->nval,
            o->epochs, nb, o->batch, o->nbs, wu.nw);
    int64_t ni0 = nb * t.epoch_done;
    fl_detval v = {0};
    int have_v = 0;
    uint64_t bad_before = 0;
    for (int64_t ep = t.epoch_done; rc == 0 && ep < o->epochs; ep++) {
        epoch_stats st;
        if (ep == mosaic_end && lc.yolo.mosaic > 0) {
            bad_before += fl_loader_bad_images(L);
            fl_loader_close(L);
            lc.yolo.mosaic = 0;
            lc.first_epoch = ep;
            lc.epochs = o->epochs - ep;
            if (!(L = fl_loader_open(&lc, e))) {
                rc = -1;
                break;
            }
            say(o, "mosaic closed for the last %d epochs", o->close_mosaic);
        }
        if (train_epoch(&t, L, ep, nb, &sch, &wu, &st, ni0, e)) {
            rc = -1;
            break;
        }
        uint64_t bad = bad_before + fl_loader_bad_images(L);
        double seen =
            (double)(ep + 1 - ni0 / (nb ? nb : 1)) * nb * o->batch * (o->aug.mosaic > 0 ? 4 : 1);
        if (bad && bad > o->max_bad_share * seen) {
            rc = fl_errf(e,
                         "detector_train: %" PRIu64
                         " unreadable images in about %.0f reads, over the "
                         "limit detector.max_bad_share %g (they are listed above)",
                         bad, seen, o->max_bad_share);
            break;
        }
        int have_val = t.val != NULL;
        double tv = fl_now();
        if (have_val && (fl_pstore_copy_from(fl_detval_store(t.val), &t.ema->view, e) ||
                         fl_detval_run(t.val, &v, e))) {
            rc = -1;
            break;
        }
        have_v = have_val;
        tv = fl_now() - tv;
        cJSON *j = epoch_json(ep, &st, have_val ? &v : NULL, t.opt->lr[0]);
        if (!j) {
            rc = fl_errf(e, "out of memory");
            break;
        }
        cJSON_AddItemToArray(t.epochs, j);
        say(o, "epoch %" PRId64 "/%d: box %.4f obj %.4f cls %.4f, %.1f s", ep + 1, o->epochs,
            st.box / fmax(st.steps, 1), st.obj / fmax(st.steps, 1), st.cls / fmax(st.steps, 1),
            st.seconds);
        if (have_val)
            say(o,
                "epoch %" PRId64
                " val (EMA): P %.3f R %.3f mAP@0.5 %.3f mAP@0.5:0.95 %.3f on %d images (%.1f s)",
                ep + 1, v.precision, v.recall, v.map50, v.map50_95, v.images, tv);
        t.epoch_done = ep + 1;
        double tc = fl_now();
        if (o->ckpt_path && ckpt_save(&t, e)) rc = -1;
        if (ep == 0) say(o, "checkpoint %s written in %.2f s", o->ckpt_path, fl_now() - tc);
    }
    fl_loader_close(L);
    /* The final figures are the last epoch's validation of the EMA weights (recomputed when
     * everything was resumed from a finished checkpoint). */
    if (rc == 0 && t.val && !have_v &&
        (fl_pstore_copy_from(fl_detval_store(t.val), &t.ema->view, e) ||
         fl_detval_run(t.val, &v, e)))
        rc = -1;
    if (rc == 0 && fl_detector_save(weights_path, &o->meta, &t.ema->view, e)) rc = -1;
    if (rc == 0 && write_metrics(&t, &v, metrics_path, e)) rc = -1;
    trainer_free(&t);
    return rc;
}
