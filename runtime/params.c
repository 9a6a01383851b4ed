/* The parameter store: named parameters and buffers (with their gradients) that graphs share.
 * A train and an eval graph built on one store read and write the same memory. */
#include <stdlib.h>
#include <string.h>

#include "runtime/graph_internal.h"
#include "runtime/rng.h"

struct fl_pstore {
    fl_dtype dtype;
    uint64_t seed;
    fl_pstore_entry *v;
    int n, cap;
    fl_param *view; /* rebuilt by fl_pstore_params */
    int view_n;     /* entries in view: it moves only when parameters were added since */
    uint64_t version; /* bumped by every write of parameter data from outside a graph step */
};

fl_pstore *fl_pstore_new(fl_dtype dtype, uint64_t seed, fl_err *e) {
    if (dtype != FL_F32 && dtype != FL_F64) {
        fl_errf(e, "store: element type %s not supported (F32 or F64)", fl_dtype_name(dtype));
        return NULL;
    }
    fl_pstore *s = calloc(1, sizeof *s);
    if (!s) {
        fl_errf(e, "store: out of memory");
        return NULL;
    }
    s->dtype = dtype;
    s->seed = seed;
    s->version = 1; /* 0 means "never made" to the caches that compare against it */
    return s;
}

void fl_pstore_free(fl_pstore *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->v[i].name);
        free(s->v[i].data);
        free(s->v[i].grad);
    }
    free(s->v);
    free(s->view);
    free(s);
}

fl_dtype fl_pstore_dtype(const fl_pstore *s) { return s->dtype; }

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void fill_init(fl_pstore *s, fl_pstore_entry *p, fl_init init) {
    fl_rng r;
    fl_rng_init(&r, s->seed, name_hash(p->name));
    for (int64_t i = 0; i < p->numel; i++) {
        double v = 0;
        switch (init.kind) {
        case FL_INIT_ZEROS: v = 0; break;
        case FL_INIT_ONES: v = 1; break;
        case FL_INIT_CONST: v = init.a; break;
        case FL_INIT_UNIFORM: v = init.a + (init.b - init.a) * fl_rng_uniform(&r); break;
        case FL_INIT_NORMAL: v = init.a + init.b * fl_rng_normal(&r); break;
        }
        if (s->dtype == FL_F64)
            ((double *)p->data)[i] = v;
        else
            ((float *)p->data)[i] = (float)v;
    }
}

int fl_pstore_get_or_create(fl_pstore *s, const char *name, const fl_shape *shape, fl_init init,
                           int is_buffer, int no_decay, fl_err *e) {
    if (!name || !*name) return fl_errf(e, "parameter without a name");
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].name, name) != 0) continue;
        if (!fl_shape_eq(&s->v[i].shape, shape)) {
            char a[128], b[128];
            return fl_errf(e, "parameter %s: shape %s requested, the store has %s", name,
                           fl_shape_str(shape, a, sizeof a), fl_shape_str(&s->v[i].shape, b, sizeof b));
        }
        if (s->v[i].is_buffer != is_buffer)
            return fl_errf(e, "parameter %s: used both as a buffer and as a trainable parameter", name);
        return i;
    }
    if ((int)init.kind < FL_INIT_ZEROS || init.kind > FL_INIT_NORMAL)
        return fl_errf(e, "parameter %s: unknown init kind %d", name, (int)init.kind);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        fl_pstore_entry *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return fl_errf(e, "store: out of memory");
        s->v = v;
        s->cap = cap;
    }
    fl_pstore_entry *p = &s->v[s->n];
    memset(p, 0, sizeof *p);
    p->shape = *shape;
    p->numel = fl_shape_numel(shape);
    p->is_buffer = is_buffer;
    p->no_decay = no_decay;
    size_t bytes = (size_t)p->numel * fl_dtype_size(s->dtype);
    p->name = strdup(name);
    p->data = calloc(1, bytes);
    p->grad = is_buffer ? NULL : calloc(1, bytes);
    if (!p->name || !p->data || (!is_buffer && !p->grad)) {
        free(p->name);
        free(p->data);
        free(p->grad);
        return fl_errf(e, "store: out of memory for %s", name);
    }
    fill_init(s, p, init);
    return s->n++;
}

fl_pstore_entry *fl_pstore_entry_at(fl_pstore *s, int index) {
    return index >= 0 && index < s->n ? &s->v[index] : NULL;
}

int fl_pstore_params(fl_pstore *s, fl_param_list *out, fl_err *e) {
    if (s->dtype != FL_F32)
        return fl_errf(e, "store: the fl_param view is float32; this store holds %s",
                       fl_dtype_name(s->dtype));
    /* Lists handed out earlier (to an optimizer, say) stay valid unless parameters were added. */
    fl_param *v = s->view;
    if (!v || s->view_n != s->n) {
        v = realloc(s->view, (size_t)(s->n ? s->n : 1) * sizeof *v);
        if (!v) return fl_errf(e, "store: out of memory");
        s->view = v;
        s->view_n = s->n;
    }
    for (int i = 0; i < s->n; i++) {
        fl_pstore_entry *p = &s->v[i];
        memset(&v[i], 0, sizeof v[i]);
        v[i].name = p->name;
        v[i].data = p->data;
        v[i].grad = p->grad;
        v[i].numel = (size_t)p->numel;
        v[i].ndim = p->shape.ndim;
        memcpy(v[i].shape, p->shape.d, sizeof v[i].shape);
        v[i].no_decay = p->no_decay;
        v[i].is_buffer = p->is_buffer;
        v[i].group = p->group;
        v[i].version = &s->version;
    }
    s->version++; /* the caller gets writable pointers (loaders write right away) */
    out->v = v;
    out->n = (size_t)s->n;
    return 0;
}

void fl_pstore_zero_grad(fl_pstore *s) {
    for (int i = 0; i < s->n; i++)
        if (s->v[i].grad) memset(s->v[i].grad, 0, (size_t)s->v[i].numel * fl_dtype_size(s->dtype));
}

int fl_pstore_set_group(fl_pstore *s, const char *prefix, int group) {
    int k = 0;
    size_t len = strlen(prefix);
    for (int i = 0; i < s->n; i++)
        if (strncmp(s->v[i].name, prefix, len) == 0) {
            s->v[i].group = group;
            k++;
        }
    return k;
}

static fl_pstore_entry *find(fl_pstore *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

void *fl_pstore_data(fl_pstore *s, const char *name, size_t *numel) {
    fl_pstore_entry *p = find(s, name);
    if (p) s->version++; /* a writable pointer: assume it is written */
    if (numel) *numel = p ? (size_t)p->numel : 0;
    return p ? p->data : NULL;
}

void *fl_pstore_grad(fl_pstore *s, const char *name) {
    fl_pstore_entry *p = find(s, name);
    return p ? p->grad : NULL;
}

int fl_pstore_copy_from(fl_pstore *s, const fl_param_list *src, fl_err *e) {
    if (s->dtype != FL_F32) return fl_errf(e, "store: copy_from needs a float32 store");
    for (int pass = 0; pass < 2; pass++) /* check everything first, then copy */
        for (size_t i = 0; i < src->n; i++) {
            const fl_param *p = &src->v[i];
            fl_pstore_entry *d = p->name ? find(s, p->name) : NULL;
            if (!d) return fl_errf(e, "store: no parameter named %s", p->name ? p->name : "(null)");
            int same = d->shape.ndim == p->ndim && (size_t)d->numel == p->numel && p->data;
            for (int k = 0; same && k < p->ndim; k++) same = d->shape.d[k] == p->shape[k];
            if (!same) return fl_errf(e, "store: %s has a different shape (or no data) in the source", p->name);
            if (pass == 1) memcpy(d->data, p->data, p->numel * sizeof(float));
        }
    s->version++;
    return 0;
}

void fl_pstore_touch(fl_pstore *s) { s->version++; }

uint64_t fl_pstore_version(const fl_pstore *s) { return s->version; }
