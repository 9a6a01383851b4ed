/* PyTorch checkpoints (runtime/torch_pt.h): the state dict found by name in the unpickled root,
 * materialized as float32, and written out as safetensors. */
#include "runtime/torch_pt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/torch_pt_internal.h"

#define MAX_DEPTH 64  /* module nesting */
#define MAX_NAME 1024 /* a state-dict key */
#define MAX_TENSORS (1 << 20)

typedef struct ex {
    fl_pt_file *f;
    size_t cap;
    uint64_t budget; /* float32 elements still allowed (bounds shared-storage amplification) */
    fl_err *e;
} ex;

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, ex = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (ex == 0) {
        float v = ldexpf((float)man, -24); /* zero and subnormals, exact */
        return sign ? -v : v;
    }
    bits = ex == 31 ? sign | 0x7f800000u | man << 13 : sign | (ex + 112) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float elem_f32(const unsigned char *p, fl_st_dtype dt) {
    union {
        uint16_t u16;
        uint32_t u32;
        float f;
        double d;
        int64_t i64;
        int32_t i32;
        int16_t i16;
    } u;
    switch (dt) {
    case FL_ST_F16:
        memcpy(&u.u16, p, 2);
        return half_to_f32(u.u16);
    case FL_ST_BF16:
        memcpy(&u.u16, p, 2);
        u.u32 = (uint32_t)u.u16 << 16;
        return u.f;
    case FL_ST_F32:
        memcpy(&u.f, p, 4);
        return u.f;
    case FL_ST_F64:
        memcpy(&u.d, p, 8);
        return (float)u.d;
    case FL_ST_I64:
        memcpy(&u.i64, p, 8);
        return (float)u.i64;
    case FL_ST_I32:
        memcpy(&u.i32, p, 4);
        return (float)u.i32;
    case FL_ST_I16:
        memcpy(&u.i16, p, 2);
        return (float)u.i16;
    case FL_ST_I8:
        return (float)(int8_t)p[0];
    case FL_ST_BOOL:
        return p[0] ? 1.0f : 0.0f;
    default:
        return (float)p[0]; /* U8 */
    }
}

static int add_tensor(ex *x, const char *name, const fl_pv *tv) {
    fl_pt_file *f = x->f;
    if (strlen(name) >= MAX_NAME)
        return fl_errf(x->e, "%s: state-dict key '%.80s...' is too long", f->path, name);
    if (f->n >= MAX_TENSORS)
        return fl_errf(x->e, "%s: more than %d tensors (limit)", f->path, MAX_TENSORS);
    const fl_pv_tensor *t = tv->u.tensor;
    const fl_pv_storage *st = t->storage->u.storage;
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++)
        numel *= (size_t)t->size[i];
    if (numel > x->budget)
        return fl_errf(
            x->e,
            "%s: tensor '%s': the state dict holds more elements than the file can (shared "
            "storages viewed too often)",
            f->path, name);
    x->budget -= numel;
    if (f->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64;
        fl_pt_tensor *nv = realloc(f->t, nc * sizeof *nv);
        if (!nv) return fl_errf(x->e, "%s: out of memory", f->path);
        f->t = nv;
        x->cap = nc;
    }
    fl_pt_tensor *o = &f->t[f->n];
    memset(o, 0, sizeof *o);
    o->name = strdup(name);
    o->data = malloc(numel ? numel * sizeof(float) : 1);
    if (!o->name || !o->data) {
        free(o->name);
        free(o->data);
        return fl_errf(x->e, "%s: out of memory for tensor '%s'", f->path, name);
    }
    f->n++;
    o->src_dtype = fl_st_dtype_name(st->dtype);
    o->ndim = t->ndim;
    o->numel = numel;
    memcpy(o->shape, t->size, sizeof(int64_t) * (size_t)t->ndim);
    size_t es = fl_st_dtype_size(st->dtype);
    /* Contiguous (every state dict torch writes itself): one linear pass. */
    int contiguous = 1;
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != want) contiguous = 0;
        want *= t->size[d];
    }
    if (contiguous) {
        const unsigned char *p = st->data + (size_t)t->offset * es;
        if (st->dtype == FL_ST_F32)
            memcpy(o->data, p, numel * sizeof(float));
        else
            for (size_t k = 0; k < numel; k++)
                o->data[k] = elem_f32(p + k * es, st->dtype);
        return 0;
    }
    /* Row-major walk of a strided view; the indices were checked at rebuild. */
    int64_t idx[FL_MAX_DIMS] = {0};
    for (size_t k = 0; k < numel; k++) {
        int64_t at = t->offset;
        for (int d = 0; d < t->ndim; d++)
            at += idx[d] * t->stride[d];
        o->data[k] = elem_f32(st->data + (size_t)at * es, st->dtype);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}

static int dict_of_tensors(ex *x, const fl_pv *d, const char *what) {
    char buf[128];
    size_t nt = 0;
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        const fl_pv *k = d->u.seq.v[i], *v = d->u.seq.v[i + 1];
        if (k->kind != FL_PV_STR || strlen(k->u.str.s) != k->u.str.len || !k->u.str.len)
            return fl_errf(x->e, "%s: %s has a key that is %s, not a name", x->f->path, what,
                           fl_pv_describe(k, buf, sizeof buf));
        if (v->kind != FL_PV_TENSOR)
            return fl_errf(x->e, "%s: %s entry '%.200s' is %s, not a tensor", x->f->path, what,
                           k->u.str.s, fl_pv_describe(v, buf, sizeof buf));
        if (add_tensor(x, k->u.str.s, v)) return -1;
        nt++;
    }
    return 0;
}

/* model.state_dict() of a pickled nn.Module: own parameters, persistent buffers, then the
 * children in _modules order, each under "<child>.". */
static int walk_module(ex *x, const fl_pv *obj, const char *prefix, int depth) {
    char buf[128];
    const char *path = x->f->path;
    if (depth > MAX_DEPTH)
        return fl_errf(x->e, "%s: modules nested deeper than %d at '%s'", path, MAX_DEPTH, prefix);
    const fl_pv *st = obj->kind == FL_PV_OBJ ? obj->state : NULL;
    const fl_pv *params = fl_pv_dict_get(st, "_parameters"), *bufs = fl_pv_dict_get(st, "_buffers"),
                *mods = fl_pv_dict_get(st, "_modules"),
                *np = fl_pv_dict_get(st, "_non_persistent_buffers_set");
    if (!st || !params || !mods || params->kind != FL_PV_DICT || mods->kind != FL_PV_DICT ||
        (bufs && bufs->kind != FL_PV_DICT))
        return fl_errf(x->e, "%s: '%s' is %s without _parameters/_modules: not an nn.Module", path,
                       *prefix ? prefix : "model", fl_pv_describe(obj, buf, sizeof buf));
    if (np && np->kind != FL_PV_SET && np->kind != FL_PV_LIST)
        return fl_errf(x->e, "%s: '%s_non_persistent_buffers_set' is %s", path, prefix,
                       fl_pv_describe(np, buf, sizeof buf));
    char name[MAX_NAME + 8];
    for (int pass = 0; pass < 2; pass++) {
        const fl_pv *d = pass ? bufs : params;
        for (size_t i = 0; d && i + 1 < d->u.seq.n; i += 2) {
            const fl_pv *k = d->u.seq.v[i], *v = d->u.seq.v[i + 1];
            if (k->kind != FL_PV_STR || strlen(k->u.str.s) != k->u.str.len || !k->u.str.len)
                return fl_errf(x->e, "%s: module '%s' has a %s key that is not a name", path,
                               prefix, pass ? "buffer" : "parameter");
            if (v->kind == FL_PV_NONE) continue;
            int skip = 0;
            for (size_t j = 0; pass && np && j < np->u.seq.n; j++)
                skip |= np->u.seq.v[j]->kind == FL_PV_STR &&
                        !strcmp(np->u.seq.v[j]->u.str.s, k->u.str.s);
            if (skip) continue;
            if (snprintf(name, sizeof name, "%s%s", prefix, k->u.str.s) >= MAX_NAME)
                return fl_errf(x->e, "%s: state-dict key '%.80s...' is too long", path, name);
            if (v->kind != FL_PV_TENSOR)
                return fl_errf(x->e, "%s: %s '%s' is %s, not a tensor", path,
                               pass ? "buffer" : "parameter", name,
                               fl_pv_describe(v, buf, sizeof buf));
            if (add_tensor(x, name, v)) return -1;
        }
    }
    for (size_t i = 0; i + 1 < mods->u.seq.n; i += 2) {
        const fl_pv *k = mods->u.seq.v[i], *v = mods->u.seq.v[i + 1];
        if (k->kind != FL_PV_STR || strlen(k->u.str.s) != k->u.str.len || !k->u.str.len)
            return fl_errf(x->e, "%s: module '%s' has a child whose name is not a string", path,
                           prefix);
        if (v->kind == FL_PV_NONE) continue;
        if (snprintf(name, sizeof name, "%s%s.", prefix, k->u.str.s) >= MAX_NAME)
            return fl_errf(x->e, "%s: module name '%.80s...' is too long", path, name);
        if (walk_module(x, v, name, depth + 1)) return -1;
    }
    return 0;
}

static int set_where(ex *x, const char *key, const fl_pv *v) {
    char buf[160];
    x->f->where = fl_strdupf("%s (%s)", key, fl_pv_describe(v, buf, sizeof buf));
    return x->f->where ? 0 : fl_errf(x->e, "%s: out of memory", x->f->path);
}

static int extract(ex *x, const fl_pv *root) {
    char buf[128];
    const char *path = x->f->path;
    if (root->kind == FL_PV_OBJ) /* torch.save(model) */
        return set_where(x, "root", root) || walk_module(x, root, "", 0);
    if (root->kind != FL_PV_DICT)
        return fl_errf(x->e,
                       "%s: the pickled root is %s, neither a state dict nor a checkpoint dict",
                       path, fl_pv_describe(root, buf, sizeof buf));
    /* Checkpoints: the weights under a known key (ultralytics: 'ema' when 'model' is None). */
    static const char *const keys[] = {"model", "ema", "state_dict", "model_state_dict"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const fl_pv *v = fl_pv_dict_get(root, keys[i]);
        if (!v || v->kind == FL_PV_NONE) continue;
        if (v->kind == FL_PV_OBJ) return set_where(x, keys[i], v) || walk_module(x, v, "", 0);
        if (v->kind == FL_PV_DICT) {
            char what[64];
            snprintf(what, sizeof what, "the '%s' dict", keys[i]);
            return set_where(x, keys[i], v) || dict_of_tensors(x, v, what);
        }
        return fl_errf(x->e, "%s: checkpoint entry '%s' is %s, neither a model nor a state dict",
                       path, keys[i], fl_pv_describe(v, buf, sizeof buf));
    }
    if (set_where(x, "root", root)) return -1;
    return dict_of_tensors(x, root, "the state dict");
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const fl_pt_tensor *const *)a)->name, (*(const fl_pt_tensor *const *)b)->name);
}

/* Keys are unique in a state dict; a crafted file could repeat one (sorted check, n log n). */
static int check_unique(const fl_pt_file *f, fl_err *e) {
    if (f->n < 2) return 0;
    const fl_pt_tensor **v = malloc(f->n * sizeof *v);
    if (!v) return fl_errf(e, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++)
        v[i] = &f->t[i];
    qsort(v, f->n, sizeof *v, cmp_name);
    int rc = 0;
    for (size_t i = 1; i < f->n && !rc; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            rc = fl_errf(e, "%s: state-dict key '%s' appears twice", f->path, v[i]->name);
    free(v);
    return rc;
}

void fl_pt_close(fl_pt_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->t[i].name);
        free(f->t[i].data);
    }
    free(f->t);
    free(f->path);
    free(f->where);
    free(f);
}

fl_pt_file *fl_pt_parse(const void *buf, size_t len, const char *label, fl_err *e) {
    fl_ptz z;
    if (fl_ptz_open(&z, buf, len, label, e)) return NULL;
    fl_pt_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label))) {
        free(f);
        fl_ptz_free(&z);
        fl_errf(e, "%s: out of memory", label);
        return NULL;
    }
    const fl_ptz_entry *pk = fl_ptz_find(&z, "data.pkl");
    fl_pk vm = {0};
    fl_pv *root = fl_pk_load(&vm, z.buf + pk->off, pk->len, &z, label, e);
    ex x = {.f = f, .budget = 2 * (uint64_t)len + ((uint64_t)1 << 20), .e = e};
    int rc = root ? extract(&x, root) : -1;
    if (rc == 0) rc = check_unique(f, e);
    if (rc == 0 && f->n == 0)
        rc = fl_errf(e, "%s: the state dict (%s) holds no tensors", label, f->where);
    fl_pk_free(&vm);
    fl_ptz_free(&z);
    if (rc) {
        fl_pt_close(f);
        return NULL;
    }
    return f;
}

fl_pt_file *fl_pt_open(const char *path, fl_err *e) {
    size_t len;
    char *buf = fl_read_file_max(path, &len, FL_PT_MAX_FILE, e);
    if (!buf) return NULL;
    fl_pt_file *f = fl_pt_parse(buf, len, path, e);
    free(buf);
    return f;
}

const fl_pt_tensor *fl_pt_find(const fl_pt_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

int fl_pt_write_safetensors(const fl_pt_file *f, const char *path, const fl_st_kv *meta,
                            size_t nmeta, fl_err *e) {
    fl_st_entry *v = calloc(f->n ? f->n : 1, sizeof *v);
    if (!v) return fl_errf(e, "%s: out of memory", path);
    for (size_t i = 0; i < f->n; i++)
        v[i] = (fl_st_entry){f->t[i].name, FL_ST_F32, f->t[i].ndim, f->t[i].shape, f->t[i].data};
    int rc = fl_st_write(path, v, f->n, meta, nmeta, e);
    free(v);
    return rc;
}

int fl_pt_convert(const char *pt_path, const char *st_path, size_t *ntensors, fl_err *e) {
    fl_pt_file *f = fl_pt_open(pt_path, e);
    if (!f) return -1;
    const char *base = strrchr(pt_path, '/');
    fl_st_kv meta[] = {{"format", "pt"},
                       {"source", (char *)(base ? base + 1 : pt_path)},
                       {"fluke.state_dict", f->where}};
    int rc = fl_pt_write_safetensors(f, st_path, meta, sizeof meta / sizeof meta[0], e);
    if (rc == 0 && ntensors) *ntensors = f->n;
    fl_pt_close(f);
    return rc;
}
