/* EfficientNet builder: timm 0.9's _gen_efficientnet (efficientnet.py) and EfficientNetBuilder
 * (_efficientnet_builder.py) transcribed onto the graph API.
 *
 * Stages (B0): ds k3 s1 c16 x1 | ir k3 s2 e6 c24 x2 | ir k5 s2 e6 c40 x2 | ir k3 s2 e6 c80 x3 |
 *              ir k5 s1 e6 c112 x3 | ir k5 s2 e6 c192 x4 | ir k3 s1 e6 c320 x1, stem 32, head 1280.
 * Channels: round_channels(c, width) (multiple of 8, never below 90%); repeats ceil(r * depth).
 * Blocks (timm names):
 *   DS (stage 0):  conv_dw -> bn1 -> SiLU -> se -> conv_pw -> bn2 [-> drop_path + x]
 *   IR (MBConv):   conv_pw -> bn1 -> SiLU -> conv_dw -> bn2 -> SiLU -> se -> conv_pwl -> bn3
 *                  [-> drop_path + x]     (skip when stride 1 and in == out)
 *   se: mean over H,W -> conv_reduce (bias) -> SiLU -> conv_expand (bias) -> sigmoid -> * x, with
 *       round(mid * 0.25 / exp_ratio) reduced channels (0.25 x the block's input channels).
 * Drop path of global block i (0-based) out of n: drop_path_rate * i / n. */
#include "runtime/models/effnet.h"

#include "runtime/graph_internal.h" /* fl_graph_fail: builder errors recorded in the graph */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct stage_def {
    int ds;        /* depthwise-separable (no expansion) block */
    int repeats;
    int k, stride;
    double exp;
    int out;
} stage_def;

static const stage_def k_stages[FL_EFFNET_STAGES] = {
    {1, 1, 3, 1, 1.0, 16},  {0, 2, 3, 2, 6.0, 24},  {0, 2, 5, 2, 6.0, 40},  {0, 3, 3, 2, 6.0, 80},
    {0, 3, 5, 1, 6.0, 112}, {0, 4, 5, 2, 6.0, 192}, {0, 1, 3, 1, 6.0, 320},
};

/* Stages whose outputs are the feature taps (0-based: stages 1,2,3,5,7 of SPECS.md). */
static const int k_tap_stage[FL_EFFNET_TAPS] = {0, 1, 2, 4, 6};

typedef struct preset {
    double width, depth;
    int res;
    double drop;
} preset;

static const preset k_presets[8] = {
    {1.0, 1.0, 224, 0.2}, {1.0, 1.1, 240, 0.2}, {1.1, 1.2, 260, 0.3}, {1.2, 1.4, 300, 0.3},
    {1.4, 1.8, 380, 0.4}, {1.6, 2.2, 456, 0.4}, {1.8, 2.6, 528, 0.5}, {2.0, 3.1, 600, 0.5},
};

/* timm make_divisible(v, divisor=8, min_value=None, round_limit=0.9). */
static int64_t make_divisible(double v) {
    int64_t nv = (int64_t)(v + 4.0) / 8 * 8;
    if (nv < 8) nv = 8;
    if ((double)nv < 0.9 * v) nv += 8;
    return nv;
}

int64_t fl_effnet_round_channels(double channels, double multiplier) {
    if (multiplier == 0) return (int64_t)channels; /* timm: "if not multiplier: return channels" */
    return make_divisible(channels * multiplier);
}

int fl_effnet_preset(const char *name, fl_effnet_cfg *cfg, fl_err *e) {
    if (!name || !cfg) return fl_errf(e, "effnet: no preset name");
    const char *n = name;
    int tf = 0;
    if (strncmp(n, "tf_", 3) == 0) {
        tf = 1;
        n += 3;
    }
    size_t base = strcspn(n, ".");
    if (base != strlen("efficientnet_b0") || strncmp(n, "efficientnet_b", 14) != 0 || n[14] < '0' || n[14] > '7')
        return fl_errf(e, "effnet: unknown model '%s' (efficientnet_b0..b7 or tf_efficientnet_b0..b7)", name);
    const preset *p = &k_presets[n[14] - '0'];
    memset(cfg, 0, sizeof *cfg);
    cfg->width = p->width;
    cfg->depth = p->depth;
    cfg->tf = tf;
    cfg->bn_momentum = 0.1;
    cfg->drop_rate = p->drop;
    cfg->drop_path_rate = 0.2;
    cfg->num_classes = 1000;
    cfg->with_head = 1;
    cfg->resolution = p->res;
    return 0;
}

int fl_effnet_arch_of(const fl_effnet_cfg *c, fl_effnet_arch *a, fl_err *e) {
    if (!c || !a) return fl_errf(e, "effnet: no config");
    if (!(c->width > 0 && c->width <= 16) || !(c->depth > 0 && c->depth <= 16))
        return fl_errf(e, "effnet: width %g and depth %g must be in (0, 16]", c->width, c->depth);
    if (!(c->drop_rate >= 0 && c->drop_rate < 1) || !(c->drop_path_rate >= 0 && c->drop_path_rate < 1))
        return fl_errf(e, "effnet: drop_rate %g and drop_path_rate %g must be in [0, 1)", c->drop_rate,
                       c->drop_path_rate);
    if (c->num_classes < 0) return fl_errf(e, "effnet: num_classes %d < 0", c->num_classes);
    if (!(c->bn_momentum >= 0 && c->bn_momentum <= 1)) return fl_errf(e, "effnet: bn_momentum %g not in [0, 1]", c->bn_momentum);
    memset(a, 0, sizeof *a);
    a->stem = fl_effnet_round_channels(32, c->width);
    for (int s = 0; s < FL_EFFNET_STAGES; s++) {
        a->out[s] = fl_effnet_round_channels(k_stages[s].out, c->width);
        a->repeats[s] = (int)ceil(k_stages[s].repeats * c->depth);
        a->num_blocks += a->repeats[s];
    }
    a->num_features = fl_effnet_round_channels(1280, c->width);
    return 0;
}

/* Names of one block's layers: prefix + "blocks.S.B." + leaf. */
typedef struct namer {
    char base[256];
    char buf[8][320];
    int used;
} namer;

static const char *nm(namer *n, const char *leaf) {
    char *b = n->buf[n->used++ & 7];
    size_t lb = strlen(n->base), ll = strlen(leaf); /* base <= 255, leaf short: fits in 320 */
    memcpy(b, n->base, lb);
    memcpy(b + lb, leaf, ll + 1);
    return b;
}

static fl_id conv_bn(fl_graph *g, fl_id x, namer *n, const char *conv, const char *bn, int64_t co, int k,
                     int stride, int groups, const fl_effnet_cfg *c, int act) {
    int pad = c->tf ? FL_PAD_SAME : FL_PAD_AUTO;
    fl_id h = fl_conv2d_layer(g, x, nm(n, conv), co, k, stride, 1, groups, pad, 0);
    double eps = c->tf ? 1e-3 : 1e-5;
    if (act) return fl_bn_silu_layer(g, h, nm(n, bn), eps, c->bn_momentum); /* fused SiLU */
    return fl_bn_layer(g, h, nm(n, bn), eps, c->bn_momentum);
}

static fl_id squeeze_excite(fl_graph *g, fl_id x, namer *n, int64_t ch, int64_t rd) {
    fl_id s = fl_global_avgpool(g, x);
    s = fl_silu(g, fl_conv2d_layer(g, s, nm(n, "se.conv_reduce"), rd, 1, 1, 1, 1, 0, 1));
    s = fl_sigmoid(g, fl_conv2d_layer(g, s, nm(n, "se.conv_expand"), ch, 1, 1, 1, 1, 0, 1));
    return fl_mul(g, x, s);
}

/* Python's round() of a float: half to even (nearbyint in the default rounding mode). */
static int64_t py_round(double v) { return (int64_t)nearbyint(v); }

static fl_id block(fl_graph *g, fl_id x, namer *n, const stage_def *sd, int64_t cin, int64_t cout,
                   int stride, double dp, const fl_effnet_cfg *c) {
    fl_id h;
    if (sd->ds) {
        h = conv_bn(g, x, n, "conv_dw", "bn1", cin, sd->k, stride, (int)cin, c, 1);
        h = squeeze_excite(g, h, n, cin, py_round((double)cin * 0.25));
        h = conv_bn(g, h, n, "conv_pw", "bn2", cout, 1, 1, 1, c, 0);
    } else {
        int64_t mid = make_divisible((double)cin * sd->exp);
        h = conv_bn(g, x, n, "conv_pw", "bn1", mid, 1, 1, 1, c, 1);
        h = conv_bn(g, h, n, "conv_dw", "bn2", mid, sd->k, stride, (int)mid, c, 1);
        h = squeeze_excite(g, h, n, mid, py_round((double)mid * (0.25 / sd->exp)));
        h = conv_bn(g, h, n, "conv_pwl", "bn3", cout, 1, 1, 1, c, 0);
    }
    if (stride == 1 && cin == cout) {
        if (dp > 0) h = fl_drop_path(g, h, dp);
        h = fl_add(g, h, x);
    }
    return h;
}

fl_id fl_effnet_build(fl_graph *g, fl_id x, const fl_effnet_cfg *c, const char *prefix,
                      fl_effnet_out *out) {
    fl_effnet_out o;
    memset(&o, 0xff, sizeof o); /* every id -1 */
    for (int t = 0; t < FL_EFFNET_TAPS; t++) o.tap_channels[t] = 0;
    if (out) *out = o;
    if (x < 0) return -1;
    fl_err e = {{0}};
    fl_effnet_arch a;
    if (fl_effnet_arch_of(c, &a, &e) < 0) return fl_graph_fail(g, "%s", e.msg);
    if (!prefix) prefix = "";
    if (strlen(prefix) > 200) return fl_graph_fail(g, "effnet: prefix too long");
    int64_t sh[FL_MAX_DIMS];
    if (fl_graph_shape(g, x, sh) != 4 || sh[3] != 3)
        return fl_graph_fail(g, "effnet: input must be NHWC with 3 channels");

    namer n = {{0}, {{0}}, 0};
    snprintf(n.base, sizeof n.base, "%s", prefix);
    fl_id h = conv_bn(g, x, &n, "conv_stem", "bn1", a.stem, 3, 2, 1, c, 1);
    int64_t cin = a.stem;
    int bi = 0, tap = 0;
    for (int s = 0; s < FL_EFFNET_STAGES; s++) {
        for (int b = 0; b < a.repeats[s]; b++, bi++) {
            snprintf(n.base, sizeof n.base, "%sblocks.%d.%d.", prefix, s, b);
            double dp = c->drop_path_rate * bi / a.num_blocks;
            h = block(g, h, &n, &k_stages[s], cin, a.out[s], b == 0 ? k_stages[s].stride : 1, dp, c);
            cin = a.out[s];
        }
        if (tap < FL_EFFNET_TAPS && k_tap_stage[tap] == s) {
            o.tap[tap] = h;
            o.tap_channels[tap] = cin;
            tap++;
        }
    }
    snprintf(n.base, sizeof n.base, "%s", prefix);
    if (c->with_head) h = conv_bn(g, h, &n, "conv_head", "bn2", a.num_features, 1, 1, 1, c, 1);
    o.features = h;
    if (c->num_classes > 0) {
        int64_t fs[FL_MAX_DIMS];
        if (fl_graph_shape(g, h, fs) != 4) return -1;
        fl_id p = fl_reshape(g, fl_global_avgpool(g, h), 2, (int64_t[]){fs[0], fs[3]});
        o.pooled = p;
        if (c->drop_rate > 0) p = fl_dropout(g, p, c->drop_rate);
        h = fl_linear_layer(g, p, nm(&n, "classifier"), c->num_classes, 1);
        o.logits = h;
    }
    if (out) *out = o;
    return fl_graph_error(g)[0] ? -1 : h;
}

/* ---- loading by name ---------------------------------------------------------------------- */

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int is_nbt(const char *name) {
    size_t n = strlen(name), k = strlen("num_batches_tracked");
    return n >= k && strcmp(name + n - k, "num_batches_tracked") == 0;
}

static int skipped(const char *name, const char *const *skip) {
    for (; skip && *skip; skip++)
        if (has_prefix(name, *skip)) return 1;
    return 0;
}

/* Appends "name" to a bounded list string; counts what did not fit. */
static void list_add(char *buf, size_t cap, int *count, const char *name) {
    size_t len = strlen(buf);
    if (len + strlen(name) + 8 < cap) snprintf(buf + len, cap - len, "%s%s", *count ? ", " : "", name);
    else if (len + 8 < cap && !strstr(buf, ", ...")) snprintf(buf + len, cap - len, ", ...");
    (*count)++;
}

int fl_effnet_load(fl_pstore *ps, const fl_st_set *set, const char *prefix, const char *const *skip,
                   fl_err *e) {
    if (!ps || !set) return fl_errf(e, "effnet load: no store or file");
    if (!prefix) prefix = "";
    fl_param_list pl;
    if (fl_pstore_params(ps, &pl, e) < 0) return -1;
    size_t plen = strlen(prefix);
    fl_st_target *tg = calloc(pl.n ? pl.n : 1, sizeof *tg);
    if (!tg) return fl_errf(e, "effnet load: out of memory");
    size_t nt = 0;
    char missing[400] = "", shapes[400] = "", unexpected[400] = "";
    int nmiss = 0, nshape = 0, nunexp = 0, nint = 0;
    struct {
        float *dst;
        float v;
    } ints[512];
    for (size_t i = 0; i < pl.n; i++) {
        const fl_param *p = &pl.v[i];
        if (!has_prefix(p->name, prefix)) continue;
        const char *key = p->name + plen;
        const fl_st_tensor *t = fl_st_set_find(set, key, NULL);
        int nbt = is_nbt(key);
        /* PyTorch's BN accepts a state dict without num_batches_tracked (it keeps its counter),
         * and timm files store it as an integer: convert it here, written after success. */
        if (nbt && !t) continue;
        if (nbt && t && (t->dtype == FL_ST_I64 || t->dtype == FL_ST_I32) && t->numel == 1 && p->numel == 1) {
            if (nint < (int)(sizeof ints / sizeof ints[0])) {
                int64_t v = 0;
                if (t->dtype == FL_ST_I64) memcpy(&v, t->data, 8);
                else {
                    int32_t v32;
                    memcpy(&v32, t->data, 4);
                    v = v32;
                }
                ints[nint].dst = p->data;
                ints[nint].v = (float)v;
                nint++;
            }
            continue;
        }
        if (!t) {
            list_add(missing, sizeof missing, &nmiss, key);
            continue;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char item[300], ss[96] = "[", sp[96] = "[";
            for (int d = 0; d < t->ndim; d++) snprintf(ss + strlen(ss), sizeof ss - strlen(ss), "%s%lld", d ? "," : "", (long long)t->shape[d]);
            for (int d = 0; d < p->ndim; d++) snprintf(sp + strlen(sp), sizeof sp - strlen(sp), "%s%lld", d ? "," : "", (long long)p->shape[d]);
            snprintf(item, sizeof item, "%s (file %s], model %s])", key, ss, sp);
            list_add(shapes, sizeof shapes, &nshape, item);
            continue;
        }
        tg[nt].name = key;
        tg[nt].data = p->data;
        tg[nt].ndim = p->ndim;
        tg[nt].shape = p->shape;
        nt++;
    }
    for (size_t f = 0; f < set->nfiles; f++)
        for (size_t k = 0; k < set->files[f]->n; k++) {
            const char *key = set->files[f]->t[k].name;
            if (skipped(key, skip)) continue;
            int used = 0;
            for (size_t i = 0; i < pl.n && !used; i++)
                used = has_prefix(pl.v[i].name, prefix) && strcmp(pl.v[i].name + plen, key) == 0;
            if (!used) list_add(unexpected, sizeof unexpected, &nunexp, key);
        }
    if (nmiss || nshape || nunexp) {
        fl_errf(e, "%s: state dict does not fit the model: %d missing key(s)%s%s; %d unexpected key(s)%s%s; %d shape mismatch(es)%s%s",
                set->path, nmiss, nmiss ? ": " : "", missing, nunexp, nunexp ? ": " : "", unexpected, nshape,
                nshape ? ": " : "", shapes);
        free(tg);
        return -1;
    }
    /* Every key checked above: the non-strict mode only tolerates the skipped extras. */
    char *warn = NULL;
    int rc = fl_st_load(set, tg, nt, FL_ST_NONSTRICT, NULL, &warn, e);
    free(warn);
    for (int i = 0; rc == 0 && i < nint; i++) *ints[i].dst = ints[i].v;
    free(tg);
    return rc;
}
