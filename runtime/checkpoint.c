/* Checkpoints as safetensors files: tensors for parameters, buffers, optimizer state and EMA;
 * metadata for the counters, learning rates and RNG states. Loading validates the metadata and
 * the tensor table completely before changing anything, so a bad checkpoint leaves the run as
 * it was. */
#include "runtime/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RNG_WORDS 13

static void rng_words(const fl_rng *r, uint32_t w[RNG_WORDS]) {
    w[0] = r->key[0], w[1] = r->key[1];
    for (int i = 0; i < 4; i++) w[2 + i] = r->ctr[i], w[6 + i] = r->buf[i];
    w[10] = r->used, w[11] = r->has_spare;
    memcpy(&w[12], &r->spare, 4);
}

void fl_ckpt_rng_to_hex(const fl_rng *r, char out[RNG_WORDS * 8 + 1]) {
    uint32_t w[RNG_WORDS];
    rng_words(r, w);
    for (int i = 0; i < RNG_WORDS; i++) snprintf(out + 8 * i, 9, "%08" PRIx32, w[i]);
}

int fl_ckpt_rng_from_hex(const char *s, fl_rng *r) {
    if (strlen(s) != RNG_WORDS * 8) return -1;
    uint32_t w[RNG_WORDS];
    for (int i = 0; i < RNG_WORDS; i++) {
        uint32_t v = 0;
        for (int k = 0; k < 8; k++) {
            char c = s[8 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = (v << 4) | (uint32_t)d;
        }
        w[i] = v;
    }
    if (w[10] > 4 || w[11] > 1) return -1; /* not a state fl_rng can be in */
    r->key[0] = w[0], r->key[1] = w[1];
    for (int i = 0; i < 4; i++) r->ctr[i] = w[2 + i], r->buf[i] = w[6 + i];
    r->used = w[10], r->has_spare = w[11];
    memcpy(&r->spare, &w[12], 4);
    return 0;
}

static const char *kind_name(fl_optim_kind k) {
    return k == FL_OPTIM_SGD ? "sgd" : k == FL_OPTIM_ADAM ? "adam" : "adamw";
}

/* A growable list of owned strings (metadata text, derived tensor names). */
typedef struct strs {
    char **v;
    size_t n, cap;
    int oom;
} strs;

static char *keep(strs *s, char *p) {
    if (!p) {
        s->oom = 1;
        return NULL;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        char **q = realloc(s->v, cap * sizeof *q);
        if (!q) {
            free(p);
            s->oom = 1;
            return NULL;
        }
        s->v = q, s->cap = cap;
    }
    return s->v[s->n++] = p;
}

static void strs_free(strs *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

/* The tensors of a checkpoint as load targets (names built in `names`); n in *count. */
static fl_st_target *targets(const fl_ckpt *c, strs *names, size_t *count) {
    size_t np = c->params ? c->params->n : 0;
    size_t cap = np * (1 + 2 + (c->ema ? 1 : 0));
    fl_st_target *t = calloc(cap ? cap : 1, sizeof *t);
    if (!t) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < np; i++) {
        const fl_param *p = &c->params->v[i];
        t[n++] = (fl_st_target){p->name, p->data, p->ndim, p->shape};
    }
    for (size_t i = 0; c->optim && i < np; i++) {
        const fl_param *p = &c->params->v[i];
        float *slot[2] = {c->optim->m[i], c->optim->v[i]};
        for (int s = 0; s < 2; s++) {
            const char *sn = fl_optim_state_name(c->optim, s);
            if (!sn || !slot[s]) continue;
            char *nm = keep(names, fl_strdupf("optim.%s.%s", sn, p->name));
            if (nm) t[n++] = (fl_st_target){nm, slot[s], p->ndim, p->shape};
        }
    }
    for (size_t i = 0; c->ema && i < c->ema->view.n; i++) {
        const fl_param *p = &c->ema->view.v[i];
        char *nm = keep(names, fl_strdupf("ema.%s", p->name));
        if (nm) t[n++] = (fl_st_target){nm, p->data, p->ndim, p->shape};
    }
    if (names->oom) {
        free(t);
        return NULL;
    }
    *count = n;
    return t;
}

int fl_ckpt_save(const char *path, const fl_ckpt *c, fl_err *e) {
    if (c->optim && c->params && c->optim->params.n != c->params->n)
        return fl_errf(e, "%s: the optimizer covers %zu entries but the parameter list has %zu",
                       path, c->optim->params.n, c->params->n);
    if (c->ema && c->params && c->ema->view.n != c->params->n)
        return fl_errf(e, "%s: the EMA covers %zu entries but the parameter list has %zu", path,
                       c->ema->view.n, c->params->n);
    strs names = {0}, text = {0};
    size_t n = 0;
    fl_st_target *t = targets(c, &names, &n);
    fl_st_entry *ent = calloc(n ? n : 1, sizeof *ent);
    fl_st_kv *meta = calloc(8 + c->nrngs + c->nextra, sizeof *meta);
    int rc = 0;
    if (!t || !ent || !meta) rc = fl_errf(e, "%s: out of memory", path);
    for (size_t i = 0; i < n && !rc; i++)
        ent[i] = (fl_st_entry){t[i].name, FL_ST_F32, t[i].ndim, t[i].shape, t[i].data};
    size_t nm = 0;
    if (!rc) {
        meta[nm++] = (fl_st_kv){"fluke.checkpoint", "1"};
        meta[nm++] = (fl_st_kv){"step", keep(&text, fl_strdupf("%" PRId64, c->step))};
        if (c->optim) {
            const fl_optim *o = c->optim;
            meta[nm++] = (fl_st_kv){"optim.kind", (char *)kind_name(o->cfg.kind)};
            meta[nm++] = (fl_st_kv){"optim.step", keep(&text, fl_strdupf("%" PRId64, o->step))};
            char lr[FL_OPTIM_MAX_GROUPS * 32] = "";
            for (int g = 0; g < FL_OPTIM_MAX_GROUPS; g++)
                snprintf(lr + strlen(lr), sizeof lr - strlen(lr), "%s%a", g ? "," : "", o->lr[g]);
            meta[nm++] = (fl_st_kv){"optim.lr", keep(&text, strdup(lr))};
            meta[nm++] = (fl_st_kv){"optim.momentum", keep(&text, fl_strdupf("%a", o->momentum))};
        }
        if (c->ema)
            meta[nm++] = (fl_st_kv){"ema.updates",
                                    keep(&text, fl_strdupf("%" PRId64, c->ema->updates))};
        for (size_t i = 0; i < c->nrngs; i++) {
            char hex[RNG_WORDS * 8 + 1];
            fl_ckpt_rng_to_hex(c->rngs[i].rng, hex);
            char *key = keep(&text, fl_strdupf("rng.%s", c->rngs[i].name));
            meta[nm++] = (fl_st_kv){key, keep(&text, strdup(hex))};
        }
        for (size_t i = 0; i < c->nextra; i++) {
            for (size_t k = 0; k < nm && !rc; k++)
                if (meta[k].key && c->extra[i].key && strcmp(meta[k].key, c->extra[i].key) == 0)
                    rc = fl_errf(e, "%s: extra metadata key '%s' is reserved or repeated", path,
                                 c->extra[i].key);
            meta[nm++] = c->extra[i];
        }
        if (!rc && text.oom) rc = fl_errf(e, "%s: out of memory", path);
    }
    if (!rc) rc = fl_st_write(path, ent, n, meta, nm, e);
    strs_free(&names);
    strs_free(&text);
    free(t), free(ent), free(meta);
    return rc;
}

static int parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return -1;
    *out = v;
    return 0;
}

static int parse_f64(const char *s, const char **end, double *out) {
    char *q;
    errno = 0;
    *out = strtod(s, &q);
    if (q == s || errno) return -1;
    *end = q;
    return 0;
}

/* Every metadata value checked and decoded before anything is changed. */
typedef struct decoded {
    int64_t step, ostep, updates;
    double lr[FL_OPTIM_MAX_GROUPS], momentum;
    fl_rng *rng;
} decoded;

static int decode_meta(const char *path, const fl_st_file *f, const fl_ckpt *c, decoded *d,
                       fl_err *e) {
    const char *v = fl_st_meta(f, "fluke.checkpoint");
    if (!v || strcmp(v, "1") != 0)
        return fl_errf(e, "%s: not a fluke checkpoint (no __metadata__ fluke.checkpoint = \"1\")",
                       path);
    if (parse_i64(fl_st_meta(f, "step"), &d->step) < 0)
        return fl_errf(e, "%s: metadata 'step' missing or not a count", path);
    if (c->optim) {
        const char *k = fl_st_meta(f, "optim.kind");
        if (!k) return fl_errf(e, "%s: no optimizer state in the checkpoint", path);
        if (strcmp(k, kind_name(c->optim->cfg.kind)) != 0)
            return fl_errf(e, "%s: checkpoint optimizer is %s, this run uses %s", path, k,
                           kind_name(c->optim->cfg.kind));
        if (parse_i64(fl_st_meta(f, "optim.step"), &d->ostep) < 0)
            return fl_errf(e, "%s: metadata 'optim.step' missing or not a count", path);
        const char *s = fl_st_meta(f, "optim.lr");
        for (int g = 0; g < FL_OPTIM_MAX_GROUPS; g++) {
            if (!s || parse_f64(s, &s, &d->lr[g]) < 0 || *s != (g + 1 < FL_OPTIM_MAX_GROUPS ? ',' : 0))
                return fl_errf(e, "%s: metadata 'optim.lr' must list %d numbers", path,
                               FL_OPTIM_MAX_GROUPS);
            s++;
        }
        const char *m = fl_st_meta(f, "optim.momentum"), *end;
        if (!m || parse_f64(m, &end, &d->momentum) < 0 || *end)
            return fl_errf(e, "%s: metadata 'optim.momentum' missing or not a number", path);
    }
    if (c->ema && parse_i64(fl_st_meta(f, "ema.updates"), &d->updates) < 0)
        return fl_errf(e, "%s: metadata 'ema.updates' missing or not a count", path);
    for (size_t i = 0; i < c->nrngs; i++) {
        char key[128];
        snprintf(key, sizeof key, "rng.%s", c->rngs[i].name);
        const char *h = fl_st_meta(f, key);
        if (!h) return fl_errf(e, "%s: metadata '%s' missing", path, key);
        if (fl_ckpt_rng_from_hex(h, &d->rng[i]) < 0)
            return fl_errf(e, "%s: metadata '%s' is not an RNG state (%d hex words)", path, key,
                           RNG_WORDS);
    }
    return 0;
}

int fl_ckpt_load(const char *path, fl_ckpt *c, fl_st_set **meta, fl_err *e) {
    if (meta) *meta = NULL;
    fl_st_set *s = fl_st_open_set(path, e);
    if (!s) return -1;
    if (s->nfiles != 1) {
        fl_st_close_set(s);
        return fl_errf(e, "%s: a checkpoint is a single file, not a sharded index", path);
    }
    decoded d = {0};
    d.rng = calloc(c->nrngs ? c->nrngs : 1, sizeof *d.rng);
    strs names = {0};
    size_t n = 0;
    fl_st_target *t = d.rng ? targets(c, &names, &n) : NULL;
    int rc = t ? 0 : fl_errf(e, "%s: out of memory", path);
    if (!rc) rc = decode_meta(path, s->files[0], c, &d, e);
    if (!rc) rc = fl_st_load(s, t, n, FL_ST_STRICT, NULL, NULL, e);
    if (c->params) fl_param_list_touch(c->params); /* even a failed load may have written some */
    if (!rc) {
        c->step = d.step;
        if (c->optim) {
            c->optim->step = d.ostep;
            memcpy(c->optim->lr, d.lr, sizeof d.lr);
            c->optim->momentum = d.momentum;
        }
        if (c->ema) c->ema->updates = d.updates;
        for (size_t i = 0; i < c->nrngs; i++) *c->rngs[i].rng = d.rng[i];
    }
    strs_free(&names);
    free(t);
    free(d.rng);
    if (!rc && meta) *meta = s;
    else fl_st_close_set(s);
    return rc;
}
