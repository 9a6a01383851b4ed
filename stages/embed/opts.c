/* The `embed` config section (stages/embed/embed.h). Defaults are the reproduced solution's
 * recipe (SPECS.md section 2): tf_efficientnet_b7 at 640 px, DOLG 512 on stages 5 and 7, dropout
 * 0.2, dense 2048 + BN, ArcFace s 30 m 0.3, Adam at 3.2e-4 with cosine decay and restarts, batch
 * 64, flip TTA. The loader ranges in the schema make every cast below safe. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stages/embed/embed.h"

#define K(path, type, doc, lo, hi) {"embed." path, type, 0, doc, lo, hi}
#define N(path, doc, lo, hi) K(path, FL_CFG_NUM, doc, lo, hi)
#define I(path, doc, lo, hi) K(path, FL_CFG_INT, doc, lo, hi)

const fl_cfg_field fl_embed_schema[] = {
    {"embed", FL_CFG_OBJ, 0, "the identification model (EfficientNet + DOLG + ArcFace) and its training", 0, 0},
    K("backbone", FL_CFG_OBJ, "EfficientNet backbone", 0, 0),
    K("backbone.name", FL_CFG_STR,
      "timm preset efficientnet_b0..b7 or tf_efficientnet_b0..b7 (default tf_efficientnet_b7)", 0, 0),
    N("backbone.width", "channel multiplier (default: the preset's)", 0.05, 8),
    N("backbone.depth", "repeat multiplier (default: the preset's)", 0.05, 8),
    N("backbone.drop_path", "stochastic depth of the last block (default 0.2)", 0, 0.9),
    N("backbone.bn_momentum", "BN momentum, PyTorch convention (default 0.1)", 0, 1),
    K("dolg", FL_CFG_OBJ, "DOLG local/global fusion (SPECS.md section 4)", 0, 0),
    I("dolg.dim", "local and global feature width (default 512)", 1, 65536),
    K("dolg.dilations", FL_CFG_ARR, "atrous dilations of the local branch (default [3, 6, 9])", 0, 0),
    K("dolg.dilations[]", FL_CFG_INT, "a dilation", 1, 64),
    I("dolg.local_tap", "backbone tap of the local branch, 0..4 = stages 1,2,3,5,7 (default 3)", 0, 4),
    I("dolg.global_tap", "backbone tap of the global branch (default 4)", 0, 4),
    N("dolg.gem_p", "GeM p init (default 3)", 0.1, 100),
    N("dolg.att_bn_momentum", "attention BN momentum (default 0.01)", 0, 1),
    K("neck", FL_CFG_OBJ, "dropout -> dense -> BN", 0, 0),
    N("neck.dropout", "dropout before the dense layer (default 0.2)", 0, 0.95),
    I("neck.dim", "embedding size (default 2048)", 1, 65536),
    K("head", FL_CFG_OBJ, "ArcFace over the training individuals", 0, 0),
    N("head.s", "ArcFace scale (default 30)", 0.01, 1000),
    N("head.m", "ArcFace margin (default 0.3)", 0, 1.5),
    I("head.subcenters", "sub-centres per class (default 1)", 1, 16),
    K("head.dynamic", FL_CFG_BOOL, "dynamic margins m_c = a*n_c^-b + c (default false)", 0, 0),
    N("head.dynamic_a", "dynamic margin a (default 0.271)", 0, 10),
    N("head.dynamic_b", "dynamic margin b (default 0.364)", 0, 10),
    N("head.dynamic_c", "dynamic margin c (default 0.05)", 0, 1.5),
    N("head.species_weight", "weight of a species CE head, 0 = no species head (default 0)", 0, 100),
    I("imgsz", "input side in pixels, >= 32 (default 640)", 32, 4096),
    K("train", FL_CFG_OBJ, "optimizer, schedule, sampling", 0, 0),
    I("train.epochs", "epochs (default 20)", 1, 100000),
    I("train.batch", "batch size (default 64)", 1, 65536),
    I("train.eval_batch", "batch size of the embedding passes (default: batch)", 1, 65536),
    I("train.workers", "loader threads (default 2)", 1, 256),
    K("train.optimizer", FL_CFG_STR, "adam | adamw (default adam)", 0, 0),
    N("train.lr", "peak learning rate (default 3.2e-4)", 0, 10),
    N("train.head_lr_mult", "learning-rate multiplier of the neck and heads (default 1)", 0, 1000),
    N("train.weight_decay", "weight decay, never on BN or biases (default 0)", 0, 1),
    N("train.clip", "gradient clip norm, 0 = off (default 0)", 0, 1e9),
    K("train.schedule", FL_CFG_STR, "cosine_restarts | onecycle | cosine | constant (default cosine_restarts)", 0, 0),
    N("train.t0_epochs", "cosine_restarts: first period in epochs (default: all epochs)", 0.01, 100000),
    I("train.t_mult", "cosine_restarts: period multiplier (default 1)", 1, 100),
    N("train.eta_min", "cosine schedules: final lr as a fraction of the peak (default 0)", 0, 1),
    N("train.warmup_epochs", "linear warmup epochs (default 0)", 0, 100000),
    N("train.warmup_start", "warmup start factor (default 0.1)", 0, 1),
    N("train.pct_start", "onecycle: share of steps rising (default 0.3)", 0, 1),
    N("train.div_factor", "onecycle: initial lr = peak / div_factor (default 25)", 1, 1e9),
    N("train.final_div", "onecycle: final lr = initial / final_div (default 1e4)", 1, 1e12),
    K("train.ema", FL_CFG_BOOL, "keep an EMA of the weights and use it (default false)", 0, 0),
    N("train.ema_decay", "EMA decay (default 0.999)", 0, 1),
    N("train.ema_tau", "EMA warmup tau in steps (default 100)", 0, 1e9),
    K("train.sampler", FL_CFG_STR, "plain | balanced (default plain)", 0, 0),
    N("train.balance_power", "balanced: weight count^-power (default 0.5)", 0, 4),
    I("train.seed", "seed of init, sampling and augmentation (default 0)", 0, FL_CFG_INT_MAX),
    I("train.val_every", "validate every N epochs, 0 = after the last only (default 1)", 0, 100000),
    I("train.knn_k", "neighbours of the validation kNN (default 100)", 1, 100000),
    N("train.max_bad_share", "unreadable crops tolerated, as a share (default 0.001)", 0, 1),
    K("aug", FL_CFG_OBJ, "training augmentation of the crops", 0, 0),
    N("aug.flip", "horizontal flip probability (default 0.5)", 0, 1),
    N("aug.rotate", "rotation +/- degrees (default 10)", 0, 180),
    N("aug.scale_min", "random resized crop: smallest area share (default 0.6)", 0.01, 1),
    N("aug.ratio_min", "random resized crop: smallest aspect ratio (default 0.75)", 0.05, 1),
    N("aug.ratio_max", "random resized crop: largest aspect ratio (default 1.333)", 1, 20),
    N("aug.brightness", "brightness jitter (default 0.2)", 0, 1),
    N("aug.contrast", "contrast jitter (default 0.2)", 0, 1),
    N("aug.saturation", "saturation jitter (default 0.2)", 0, 1),
    N("aug.hue", "hue jitter (default 0.05)", 0, 0.5),
    N("aug.jitter_p", "probability of the colour jitter (default 0.8)", 0, 1),
    N("aug.gray_p", "grayscale probability (default 0.1)", 0, 1),
    N("aug.blur_p", "blur probability (default 0.2)", 0, 1),
    N("aug.cutout_p", "cutout probability (default 0.25)", 0, 1),
    K("tta", FL_CFG_OBJ, "test-time augmentation of the embeddings", 0, 0),
    K("tta.flip", FL_CFG_BOOL, "flip TTA (default true)", 0, 0),
    {NULL, 0, 0, NULL, 0, 0},
};

static const cJSON *sub(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}
static double num(const cJSON *o, const char *key, double def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}
static const char *str(const cJSON *o, const char *key, const char *def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : def;
}
static int flag(const cJSON *o, const char *key, int def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int parse_backbone(const cJSON *bb, fl_embopts *o, fl_err *e) {
    const char *name = str(bb, "name", "tf_efficientnet_b7");
    snprintf(o->backbone, sizeof o->backbone, "%s", name);
    fl_effnet_cfg *c = &o->model.backbone;
    if (fl_effnet_preset(name, c, e)) return fl_errprefix(e, "embed.backbone.name");
    c->width = num(bb, "width", c->width);
    c->depth = num(bb, "depth", c->depth);
    c->drop_path_rate = num(bb, "drop_path", 0.2);
    c->bn_momentum = num(bb, "bn_momentum", c->bn_momentum);
    c->num_classes = 0;
    c->with_head = 0;
    fl_effnet_arch a;
    return fl_effnet_arch_of(c, &a, e) ? fl_errprefix(e, "embed.backbone") : 0;
}

static int parse_dolg(const cJSON *d, fl_embopts *o, fl_err *e) {
    fl_embed_cfg *m = &o->model;
    m->dolg = fl_dolg_defaults((int64_t)num(d, "dim", 512));
    const cJSON *dil = d ? cJSON_GetObjectItemCaseSensitive(d, "dilations") : NULL;
    if (dil) {
        int n = cJSON_GetArraySize(dil);
        if (n < 1 || n > FL_DOLG_MAX_DIL)
            return fl_errf(e, "embed.dolg.dilations: %d entries (1..%d)", n, FL_DOLG_MAX_DIL);
        m->dolg.n_dil = n;
        /* dim/4 per branch whatever the count, as fl_dolg_defaults (and the PyTorch peer) */
        int64_t w = m->dolg.dim / 4 > 0 ? m->dolg.dim / 4 : 1;
        for (int i = 0; i < n; i++) {
            m->dolg.dilations[i] = (int)cJSON_GetArrayItem(dil, i)->valuedouble;
            m->dolg.widths[i] = w;
        }
    }
    m->dolg.gem_p0 = num(d, "gem_p", m->dolg.gem_p0);
    m->dolg.att_bn_momentum = num(d, "att_bn_momentum", m->dolg.att_bn_momentum);
    m->local_tap = (int)num(d, "local_tap", 3);
    m->global_tap = (int)num(d, "global_tap", 4);
    if (m->local_tap > m->global_tap)
        return fl_errf(e, "embed.dolg.local_tap %d is deeper than global_tap %d", m->local_tap,
                       m->global_tap);
    return fl_dolg_check(&m->dolg, e) ? fl_errprefix(e, "embed.dolg") : 0;
}

static int parse_train(const cJSON *t, fl_embopts *o, fl_err *e) {
    o->epochs = (int)num(t, "epochs", 20);
    o->batch = (int)num(t, "batch", 64);
    o->eval_batch = (int)num(t, "eval_batch", o->batch);
    o->workers = (int)num(t, "workers", 2);
    const char *opt = str(t, "optimizer", "adam");
    if (!strcmp(opt, "adam")) o->optimizer = FL_OPTIM_ADAM;
    else if (!strcmp(opt, "adamw")) o->optimizer = FL_OPTIM_ADAMW;
    else return fl_errf(e, "embed.train.optimizer: '%s' is not one of: adam, adamw", opt);
    o->lr = num(t, "lr", 3.2e-4);
    o->head_lr_mult = num(t, "head_lr_mult", 1);
    o->weight_decay = num(t, "weight_decay", 0);
    o->clip = num(t, "clip", 0);
    const char *s = str(t, "schedule", "cosine_restarts");
    if (!strcmp(s, "cosine_restarts")) o->sched = FL_EMB_SCHED_COSINE_RESTARTS;
    else if (!strcmp(s, "onecycle")) o->sched = FL_EMB_SCHED_ONECYCLE;
    else if (!strcmp(s, "cosine")) o->sched = FL_EMB_SCHED_COSINE;
    else if (!strcmp(s, "constant")) o->sched = FL_EMB_SCHED_CONSTANT;
    else
        return fl_errf(e, "embed.train.schedule: '%s' is not one of: cosine_restarts, onecycle, "
                          "cosine, constant", s);
    o->t0_epochs = num(t, "t0_epochs", o->epochs);
    o->t_mult = (int)num(t, "t_mult", 1);
    o->eta_min_factor = num(t, "eta_min", 0);
    o->warmup_epochs = num(t, "warmup_epochs", 0);
    o->warmup_start = num(t, "warmup_start", 0.1);
    o->pct_start = num(t, "pct_start", 0.3);
    o->div_factor = num(t, "div_factor", 25);
    o->final_div = num(t, "final_div", 1e4);
    o->ema = flag(t, "ema", 0);
    o->ema_decay = num(t, "ema_decay", 0.999);
    o->ema_tau = num(t, "ema_tau", 100);
    const char *sm = str(t, "sampler", "plain");
    if (!strcmp(sm, "plain")) o->sampler = FL_SAMPLER_SHUFFLE;
    else if (!strcmp(sm, "balanced")) o->sampler = FL_SAMPLER_BALANCED;
    else return fl_errf(e, "embed.train.sampler: '%s' is not one of: plain, balanced", sm);
    o->balance_power = num(t, "balance_power", 0.5);
    o->seed = (uint64_t)num(t, "seed", 0);
    o->val_every = (int)num(t, "val_every", 1);
    o->knn_k = (int)num(t, "knn_k", 100);
    o->max_bad_share = num(t, "max_bad_share", 0.001);
    return 0;
}

static void parse_aug(const cJSON *a, fl_reid_aug *g) {
    *g = fl_reid_aug_defaults();
    g->margin = 0; /* crops already carry the crop stage's margin */
    g->flip_p = (float)num(a, "flip", g->flip_p);
    g->rotate_deg = (float)num(a, "rotate", g->rotate_deg);
    g->crop_scale_lo = (float)num(a, "scale_min", g->crop_scale_lo);
    g->crop_ratio_lo = (float)num(a, "ratio_min", g->crop_ratio_lo);
    g->crop_ratio_hi = (float)num(a, "ratio_max", g->crop_ratio_hi);
    g->brightness = (float)num(a, "brightness", g->brightness);
    g->contrast = (float)num(a, "contrast", g->contrast);
    g->saturation = (float)num(a, "saturation", g->saturation);
    g->hue = (float)num(a, "hue", g->hue);
    g->jitter_p = (float)num(a, "jitter_p", g->jitter_p);
    g->gray_p = (float)num(a, "gray_p", g->gray_p);
    g->blur_p = (float)num(a, "blur_p", g->blur_p);
    g->cutout_p = (float)num(a, "cutout_p", g->cutout_p);
}

int fl_embopts_from_json(const cJSON *embed, fl_embopts *o, fl_err *e) {
    memset(o, 0, sizeof *o);
    o->model = fl_embed_defaults(1, 2048);
    if (parse_backbone(sub(embed, "backbone"), o, e) || parse_dolg(sub(embed, "dolg"), o, e))
        return -1;
    const cJSON *neck = sub(embed, "neck"), *head = sub(embed, "head");
    o->model.dropout = num(neck, "dropout", 0.2);
    o->model.emb_dim = (int64_t)num(neck, "dim", 2048);
    o->model.arc.s = num(head, "s", 30);
    o->model.arc.m = num(head, "m", 0.3);
    o->model.arc.subcenters = (int)num(head, "subcenters", 1);
    o->model.arc.dynamic = flag(head, "dynamic", 0);
    if (o->model.arc.m >= M_PI / 2) return fl_errf(e, "embed.head.m: %g must be below pi/2", o->model.arc.m);
    o->dyn_a = num(head, "dynamic_a", 0.271);
    o->dyn_b = num(head, "dynamic_b", 0.364);
    o->dyn_c = num(head, "dynamic_c", 0.05);
    o->model.species_weight = num(head, "species_weight", 0);
    o->species_head = o->model.species_weight > 0;
    o->imgsz = (int)num(embed, "imgsz", 640);
    if (parse_train(sub(embed, "train"), o, e)) return -1;
    parse_aug(sub(embed, "aug"), &o->aug);
    o->tta_flip = flag(sub(embed, "tta"), "flip", 1);
    return 0;
}

/* The stages' view: the declared `embed` section (absent: every default); loader threads
 * capped near the stage's thread budget. */
int fl_embed_stage_opts(fl_stage_ctx *c, fl_embopts *o, const cJSON **sec, fl_err *e) {
    fl_err none = {{0}};
    const cJSON *embed = fl_stage_cfg(c, "embed", &none);
    if (!embed && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    if (sec) *sec = embed;
    if (fl_embopts_from_json(embed, o, e)) return -1;
    if (o->workers > fl_stage_threads(c) + 2) o->workers = fl_stage_threads(c) + 2;
    return 0;
}
