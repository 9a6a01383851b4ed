/* A restricted pickle VM for torch.save's data.pkl (runtime/torch_pt_internal.h). It builds
 * values and never calls anything: GLOBAL/STACK_GLOBAL give opaque (module, name) pairs,
 * REDUCE/NEWOBJ of an unknown callable give an opaque object holding the callable and its
 * arguments, BUILD stores the state on it. Only the tensor rebuild functions, OrderedDict, set
 * and torch's storage persistent ids are interpreted. Every read is bounds-checked and the
 * memo, stack, marks, string sizes and object count are capped (fl_pk_limits). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/torch_pt_internal.h"

typedef struct vm {
    fl_pk *pk;
    const unsigned char *p;
    size_t len, pos, op_at;
    unsigned char op;
    const fl_ptz *z;
    const char *label;
    fl_err *e;
    fl_pv **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    fl_pv **memo;
    size_t memo_n, memo_cnt; /* slots allocated, slots set (MEMOIZE's len(memo)) */
} vm;

static int fail(vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(vm *m, const char *fmt, ...) {
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const char *nm = fl_pk_op_name(m->op);
    char opbuf[32];
    if (!nm) {
        snprintf(opbuf, sizeof opbuf, "opcode 0x%02x", m->op);
        nm = opbuf;
    }
    return fl_errf(m->e, "%s: data.pkl offset %zu: %s: %s", m->label, m->op_at, nm, why);
}

/* ---- values ------------------------------------------------------------------------------ */

static fl_pv *pv_new(vm *m, fl_pv_kind k) {
    fl_pk *pk = m->pk;
    if (pk->nall >= pk->lim.max_objects) {
        fail(m, "more than %zu objects (limit)", pk->lim.max_objects);
        return NULL;
    }
    if (pk->nall == pk->cap) {
        size_t nc = pk->cap ? pk->cap * 2 : 256;
        fl_pv **nv = realloc(pk->all, nc * sizeof *nv);
        if (!nv) {
            fail(m, "out of memory");
            return NULL;
        }
        pk->all = nv;
        pk->cap = nc;
    }
    fl_pv *v = calloc(1, sizeof *v);
    if (!v) {
        fail(m, "out of memory");
        return NULL;
    }
    v->kind = k;
    pk->all[pk->nall++] = v;
    return v;
}

static int seq_push(vm *m, fl_pv *s, fl_pv *x) {
    if (s->u.seq.n == s->u.seq.cap) {
        size_t nc = s->u.seq.cap ? s->u.seq.cap * 2 : 4;
        fl_pv **nv = realloc(s->u.seq.v, nc * sizeof *nv);
        if (!nv) return fail(m, "out of memory");
        s->u.seq.v = nv;
        s->u.seq.cap = nc;
    }
    s->u.seq.v[s->u.seq.n++] = x;
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

static int need(vm *m, size_t n) {
    if (m->len - m->pos < n)
        return fail(m, "needs %zu more bytes but data.pkl ends at %zu (truncated)", n, m->len);
    return 0;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int push(vm *m, fl_pv *v) {
    if (!v) return -1;
    if (m->sn >= m->pk->lim.max_stack)
        return fail(m, "stack deeper than %zu (limit)", m->pk->lim.max_stack);
    if (m->sn == m->scap) {
        size_t nc = m->scap ? m->scap * 2 : 64;
        fl_pv **nv = realloc(m->stack, nc * sizeof *nv);
        if (!nv) return fail(m, "out of memory");
        m->stack = nv;
        m->scap = nc;
    }
    m->stack[m->sn++] = v;
    return 0;
}

/* The bottom of the current mark frame: values above the last MARK belong to the frame. */
static size_t frame_base(vm *m) {
    return m->mn ? m->marks[m->mn - 1] : 0;
}

static fl_pv *pop(vm *m) {
    if (m->sn <= frame_base(m)) {
        fail(m, "stack underflow");
        return NULL;
    }
    return m->stack[--m->sn];
}

static fl_pv *top(vm *m) {
    if (m->sn <= frame_base(m)) {
        fail(m, "stack underflow");
        return NULL;
    }
    return m->stack[m->sn - 1];
}

static int pop_mark(vm *m, size_t *base) {
    if (!m->mn) return fail(m, "no MARK on the stack");
    *base = m->marks[--m->mn];
    return 0;
}

static fl_pv *new_str(vm *m, fl_pv_kind k, const unsigned char *s, uint64_t n) {
    if (n > m->pk->lim.max_str) {
        fail(m, "a %" PRIu64 "-byte string (limit %zu)", n, m->pk->lim.max_str);
        return NULL;
    }
    if (k == FL_PV_STR && !fl_pk_utf8_ok(s, (size_t)n)) {
        fail(m, "string is not valid UTF-8");
        return NULL;
    }
    fl_pv *v = pv_new(m, k);
    if (!v) return NULL;
    v->u.str.s = malloc((size_t)n + 1);
    if (!v->u.str.s) {
        fail(m, "out of memory");
        return NULL;
    }
    memcpy(v->u.str.s, s, (size_t)n);
    v->u.str.s[n] = 0;
    v->u.str.len = (size_t)n;
    return v;
}

static int op_str(vm *m, fl_pv_kind k, int lenbytes) {
    if (need(m, (size_t)lenbytes)) return -1;
    uint64_t n = le(m->p + m->pos, lenbytes);
    m->pos += (size_t)lenbytes;
    if (n > m->len - m->pos)
        return fail(m, "length %" PRIu64 " runs past the end of data.pkl (%zu bytes left)", n,
                    m->len - m->pos);
    fl_pv *v = new_str(m, k, m->p + m->pos, n);
    m->pos += (size_t)n;
    return push(m, v);
}

static int op_int(vm *m, int64_t x) {
    fl_pv *v = pv_new(m, FL_PV_INT);
    if (v) v->u.i = x;
    return push(m, v);
}

static int op_long(vm *m, int lenbytes) {
    if (need(m, (size_t)lenbytes)) return -1;
    uint64_t n = le(m->p + m->pos, lenbytes);
    m->pos += (size_t)lenbytes;
    if (n > 8) return fail(m, "a %" PRIu64 "-byte integer (at most 8 are read)", n);
    if (need(m, (size_t)n)) return -1;
    uint64_t u = le(m->p + m->pos, (int)n);
    if (n && n < 8 && (m->p[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign */
    m->pos += (size_t)n;
    return op_int(m, (int64_t)u);
}

static fl_pv *make_seq(vm *m, fl_pv_kind k, size_t from, size_t to) {
    fl_pv *v = pv_new(m, k);
    if (!v) return NULL;
    for (size_t i = from; i < to; i++)
        if (seq_push(m, v, m->stack[i])) return NULL;
    return v;
}

static int op_tuple_n(vm *m, size_t n) {
    if (m->sn - frame_base(m) < n) return fail(m, "stack underflow");
    fl_pv *t = make_seq(m, FL_PV_TUPLE, m->sn - n, m->sn);
    if (!t) return -1;
    m->sn -= n;
    return push(m, t);
}

static int op_from_mark(vm *m, fl_pv_kind k) {
    size_t base = 0;
    if (pop_mark(m, &base)) return -1;
    fl_pv *t = make_seq(m, k, base, m->sn);
    if (!t) return -1;
    if (k == FL_PV_DICT && t->u.seq.n % 2) return fail(m, "odd number of items for a dict");
    m->sn = base;
    return push(m, t);
}

/* APPEND(S), SETITEM(S), ADDITEMS: items from `base` up onto the target below them. */
static int add_items(vm *m, size_t base, int pairs) {
    if (base == 0 || base <= (m->mn ? m->marks[m->mn - 1] : 0))
        return fail(m, "no target below the items");
    fl_pv *t = m->stack[base - 1];
    size_t n = m->sn - base;
    if (pairs && n % 2) return fail(m, "odd number of items");
    int ok = pairs ? (t->kind == FL_PV_DICT || t->kind == FL_PV_OBJ)
                   : (t->kind == FL_PV_LIST || t->kind == FL_PV_SET || t->kind == FL_PV_OBJ);
    if (!ok) {
        char d[128];
        return fail(m, "cannot add items to %s", fl_pv_describe(t, d, sizeof d));
    }
    for (size_t i = base; i < m->sn; i++)
        if (seq_push(m, t, m->stack[i])) return -1;
    m->sn = base;
    return 0;
}

static int op_additems_mark(vm *m, int pairs) {
    size_t base = 0;
    if (pop_mark(m, &base)) return -1;
    return add_items(m, base, pairs);
}

static int op_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl) {
    if (ml == 0 || nl == 0 || ml > 256 || nl > 256 || memchr(mod, 0, ml) || memchr(name, 0, nl))
        return fail(m, "bad global name");
    fl_pv *g = pv_new(m, FL_PV_GLOBAL);
    if (!g) return -1;
    g->mod = strndup(mod, ml);
    g->name = strndup(name, nl);
    if (!g->mod || !g->name) return fail(m, "out of memory");
    return push(m, g);
}

static int op_text_global(vm *m) {
    const char *s[2];
    size_t l[2];
    for (int k = 0; k < 2; k++) {
        const unsigned char *st = m->p + m->pos;
        const unsigned char *nl = memchr(st, '\n', m->len - m->pos);
        if (!nl) return fail(m, "unterminated name (truncated)");
        s[k] = (const char *)st;
        l[k] = (size_t)(nl - st);
        m->pos += l[k] + 1;
    }
    return op_global(m, s[0], l[0], s[1], l[1]);
}

static int memo_put(vm *m, uint64_t idx, fl_pv *v) {
    if (idx >= m->pk->lim.max_memo)
        return fail(m, "memo index %" PRIu64 " (limit %zu)", idx, m->pk->lim.max_memo);
    /* Picklers number memo entries 0, 1, 2, ...: a far-off index only costs memory. */
    if (idx > m->memo_cnt + 65536)
        return fail(m, "memo index %" PRIu64 " far past the %zu entries stored", idx, m->memo_cnt);
    if (idx >= m->memo_n) {
        size_t nn = m->memo_n ? m->memo_n : 64;
        while (nn <= idx)
            nn *= 2;
        if (nn > m->pk->lim.max_memo) nn = m->pk->lim.max_memo;
        fl_pv **nv = realloc(m->memo, nn * sizeof *nv);
        if (!nv) return fail(m, "out of memory");
        memset(nv + m->memo_n, 0, (nn - m->memo_n) * sizeof *nv);
        m->memo = nv;
        m->memo_n = nn;
    }
    m->memo_cnt += m->memo[idx] == NULL;
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx) {
    if (idx >= m->memo_n || !m->memo[idx])
        return fail(m, "memo index %" PRIu64 " was never stored", idx);
    return push(m, m->memo[idx]);
}

/* ---- torch's interpreted calls ----------------------------------------------------------- */

static const struct {
    const char *name;
    fl_st_dtype dt;
} STORAGES[] = {
    {"HalfStorage", FL_ST_F16},      {"FloatStorage", FL_ST_F32},  {"DoubleStorage", FL_ST_F64},
    {"BFloat16Storage", FL_ST_BF16}, {"LongStorage", FL_ST_I64},   {"IntStorage", FL_ST_I32},
    {"ShortStorage", FL_ST_I16},     {"CharStorage", FL_ST_I8},    {"ByteStorage", FL_ST_U8},
    {"BoolStorage", FL_ST_BOOL},     {"UntypedStorage", FL_ST_U8},
};

static int item_int(const fl_pv *v, int64_t *out) {
    if (!v || (v->kind != FL_PV_INT && v->kind != FL_PV_BOOL)) return -1;
    *out = v->u.i;
    return 0;
}

/* BINPERSID: ('storage', torch.<Type>Storage, key, location, numel) -> data/<key>. */
static int op_persid(vm *m) {
    fl_pv *pid = pop(m);
    if (!pid) return -1;
    const fl_pv *const *it = (const fl_pv *const *)pid->u.seq.v;
    if (pid->kind != FL_PV_TUPLE || pid->u.seq.n != 5 || it[0]->kind != FL_PV_STR ||
        strcmp(it[0]->u.str.s, "storage"))
        return fail(m, "persistent id is not ('storage', type, key, location, numel)");
    const fl_pv *ty = it[1];
    int dt = -1;
    for (size_t i = 0; ty->kind == FL_PV_GLOBAL && i < sizeof STORAGES / sizeof STORAGES[0]; i++)
        if ((!strcmp(ty->mod, "torch") || !strcmp(ty->mod, "torch.storage")) &&
            !strcmp(ty->name, STORAGES[i].name))
            dt = (int)STORAGES[i].dt;
    char d[128];
    if (dt < 0)
        return fail(m, "storage type %s is not a known torch storage",
                    fl_pv_describe(ty, d, sizeof d));
    int64_t numel;
    if (it[2]->kind != FL_PV_STR || it[2]->u.str.len == 0 || it[2]->u.str.len >= 64 ||
        item_int(it[4], &numel) || numel < 0)
        return fail(m, "storage key or size malformed");
    char rel[80];
    snprintf(rel, sizeof rel, "data/%s", it[2]->u.str.s);
    if (strchr(it[2]->u.str.s, '/')) return fail(m, "storage key '%s' has a '/'", it[2]->u.str.s);
    const fl_ptz_entry *en = fl_ptz_find(m->z, rel);
    if (!en)
        return fail(m, "storage '%s' has no entry %s/%s in the archive", it[2]->u.str.s,
                    m->z->prefix, rel);
    size_t es = fl_st_dtype_size((fl_st_dtype)dt);
    if ((uint64_t)numel > SIZE_MAX / es || en->len != (size_t)numel * es)
        return fail(m, "storage '%s': %" PRId64 " x %zu bytes declared but the entry holds %zu",
                    it[2]->u.str.s, numel, es, en->len);
    fl_pv *v = pv_new(m, FL_PV_STORAGE);
    if (!v) return -1;
    if (!(v->u.storage = calloc(1, sizeof *v->u.storage))) return fail(m, "out of memory");
    v->u.storage->dtype = (fl_st_dtype)dt;
    v->u.storage->data = m->z->buf + en->off;
    v->u.storage->numel = (size_t)numel;
    snprintf(v->u.storage->key, sizeof v->u.storage->key, "%s", it[2]->u.str.s);
    return push(m, v);
}

static int tuple_ints(const fl_pv *t, int64_t *out, int *n) {
    if (!t || t->kind != FL_PV_TUPLE || t->u.seq.n > FL_MAX_DIMS) return -1;
    for (size_t i = 0; i < t->u.seq.n; i++)
        if (item_int(t->u.seq.v[i], &out[i])) return -1;
    *n = (int)t->u.seq.n;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, ...): checked to lie inside the storage. */
static fl_pv *rebuild_tensor(vm *m, const fl_pv *args) {
    const fl_pv *const *a = (const fl_pv *const *)args->u.seq.v;
    int64_t off;
    fl_pv_tensor t = {0};
    int ns;
    if (args->u.seq.n < 4 || a[0]->kind != FL_PV_STORAGE || item_int(a[1], &off) || off < 0 ||
        tuple_ints(a[2], t.size, &t.ndim) || tuple_ints(a[3], t.stride, &ns) || ns != t.ndim) {
        fail(m,
             "_rebuild_tensor_v2 arguments are not (storage, offset, size <= %d dims, stride, ...)",
             FL_MAX_DIMS);
        return NULL;
    }
    const fl_pv_storage *st = a[0]->u.storage;
    uint64_t numel = 1, last = (uint64_t)off;
    for (int i = 0; i < t.ndim; i++) {
        uint64_t span;
        if (t.size[i] < 0 || t.stride[i] < 0 ||
            __builtin_mul_overflow(numel, (uint64_t)t.size[i], &numel) ||
            numel > (UINT64_C(1) << 40) ||
            (t.size[i] &&
             (__builtin_mul_overflow((uint64_t)(t.size[i] - 1), (uint64_t)t.stride[i], &span) ||
              __builtin_add_overflow(last, span, &last)))) {
            fail(m, "tensor of storage '%s': bad size %" PRId64 " / stride %" PRId64 " in dim %d",
                 st->key, t.size[i], t.stride[i], i);
            return NULL;
        }
    }
    if (numel && last >= st->numel) {
        fail(m, "tensor reaches element %" PRIu64 " of storage '%s' which has %zu", last, st->key,
             st->numel);
        return NULL;
    }
    if (numel > st->numel) {
        fail(m,
             "tensor of %" PRIu64
             " elements views the %zu of storage '%s' (a broadcast view; not read)",
             numel, st->numel, st->key);
        return NULL;
    }
    fl_pv *v = pv_new(m, FL_PV_TENSOR);
    if (!v) return NULL;
    if (!(v->u.tensor = malloc(sizeof t))) {
        fail(m, "out of memory");
        return NULL;
    }
    t.storage = a[0];
    t.offset = off;
    *v->u.tensor = t;
    return v;
}

static int is_builtin(const fl_pv *g, const char *name) {
    return fl_pv_is_global(g, "builtins", name) || fl_pv_is_global(g, "__builtin__", name);
}

/* REDUCE: interpreted for torch's rebuild functions, OrderedDict and set; opaque otherwise. */
static fl_pv *reduce(vm *m, fl_pv *fn, fl_pv *args) {
    if (args->kind != FL_PV_TUPLE) {
        fail(m, "arguments are not a tuple");
        return NULL;
    }
    size_t n = args->u.seq.n;
    fl_pv **a = args->u.seq.v;
    if (fl_pv_is_global(fn, "torch._utils", "_rebuild_tensor_v2") ||
        fl_pv_is_global(fn, "torch._utils", "_rebuild_tensor"))
        return rebuild_tensor(m, args);
    if (fl_pv_is_global(fn, "torch._utils", "_rebuild_parameter") ||
        fl_pv_is_global(fn, "torch._utils", "_rebuild_parameter_with_state")) {
        if (n < 1 || a[0]->kind != FL_PV_TENSOR) {
            fail(m, "%s's first argument is not a tensor", fn->name);
            return NULL;
        }
        return a[0];
    }
    if (fl_pv_is_global(fn, "torch._tensor", "_rebuild_from_type_v2")) {
        /* (func, type, args, state): a Tensor subclass; the data is func(*args) */
        if (n < 3 || a[2]->kind != FL_PV_TUPLE) {
            fail(m, "_rebuild_from_type_v2 arguments malformed");
            return NULL;
        }
        if (fl_pv_is_global(a[0], "torch._utils", "_rebuild_tensor_v2"))
            return rebuild_tensor(m, a[2]);
    }
    if (fl_pv_is_global(fn, "collections", "OrderedDict")) {
        if (n == 0) return pv_new(m, FL_PV_DICT);
        fail(m, "collections.OrderedDict with %zu arguments (only the empty form is read)", n);
        return NULL;
    }
    if ((is_builtin(fn, "set") || is_builtin(fn, "frozenset")) && n <= 1) {
        fl_pv *s = pv_new(m, FL_PV_SET);
        if (!s) return NULL;
        if (n == 1) {
            if (a[0]->kind != FL_PV_LIST && a[0]->kind != FL_PV_TUPLE) {
                fail(m, "set() of something other than a list");
                return NULL;
            }
            for (size_t i = 0; i < a[0]->u.seq.n; i++)
                if (seq_push(m, s, a[0]->u.seq.v[i])) return NULL;
        }
        return s;
    }
    /* Never called: recorded. */
    fl_pv *o = pv_new(m, FL_PV_OBJ);
    if (!o) return NULL;
    o->callable = fn;
    o->args = args;
    return o;
}

static int op_build(vm *m) {
    fl_pv *state = pop(m), *obj = top(m);
    if (!state || !obj) return -1;
    if (obj->kind == FL_PV_OBJ) {
        obj->state = state;
        return 0;
    }
    /* OrderedDict attributes (a state_dict's _metadata) and tensor subclass state: not data. */
    if (obj->kind == FL_PV_DICT || obj->kind == FL_PV_TENSOR || obj->kind == FL_PV_SET) return 0;
    char d[128];
    return fail(m, "BUILD on %s", fl_pv_describe(obj, d, sizeof d));
}

/* ---- the loop ---------------------------------------------------------------------------- */

static int step(vm *m, fl_pv **result) {
    fl_pv *a, *b, *c;
    size_t base = 0;
    switch (m->op) {
    case 0x80: /* PROTO */
        if (need(m, 1)) return -1;
        if (m->p[m->pos] > 5) return fail(m, "pickle protocol %d is not supported", m->p[m->pos]);
        m->pos++;
        return 0;
    case 0x95: /* FRAME: a length hint; the frame's opcodes follow inline */
        if (need(m, 8)) return -1;
        if (le(m->p + m->pos, 8) > m->len - m->pos - 8)
            return fail(m, "frame runs past the end of data.pkl");
        m->pos += 8;
        return 0;
    case '.':
        if (!(a = pop(m))) return -1;
        *result = a;
        return 1;
    case '(':
        if (m->mn >= m->pk->lim.max_marks)
            return fail(m, "more than %zu nested MARKs (limit)", m->pk->lim.max_marks);
        if (m->mn == m->mcap) {
            size_t nc = m->mcap ? m->mcap * 2 : 16;
            size_t *nv = realloc(m->marks, nc * sizeof *nv);
            if (!nv) return fail(m, "out of memory");
            m->marks = nv;
            m->mcap = nc;
        }
        m->marks[m->mn++] = m->sn;
        return 0;
    case '0':
        return pop(m) ? 0 : -1;
    case '1':
        if (pop_mark(m, &base)) return -1;
        m->sn = base;
        return 0;
    case '2':
        return (a = top(m)) ? push(m, a) : -1;
    case 'N':
        return push(m, pv_new(m, FL_PV_NONE));
    case 0x88:
    case 0x89:
        if (!(a = pv_new(m, FL_PV_BOOL))) return -1;
        a->u.i = m->op == 0x88;
        return push(m, a);
    case 'J':
        if (need(m, 4)) return -1;
        m->pos += 4;
        return op_int(m, (int32_t)(uint32_t)le(m->p + m->pos - 4, 4));
    case 'K':
        if (need(m, 1)) return -1;
        return op_int(m, m->p[m->pos++]);
    case 'M':
        if (need(m, 2)) return -1;
        m->pos += 2;
        return op_int(m, (int64_t)le(m->p + m->pos - 2, 2));
    case 0x8a:
        return op_long(m, 1);
    case 0x8b:
        return op_long(m, 4);
    case 'G': {
        if (need(m, 8)) return -1;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = u << 8 | m->p[m->pos + i]; /* big-endian */
        m->pos += 8;
        double d;
        memcpy(&d, &u, sizeof d);
        if (!(a = pv_new(m, FL_PV_FLOAT))) return -1;
        a->u.f = d;
        return push(m, a);
    }
    case 'X':
        return op_str(m, FL_PV_STR, 4);
    case 0x8c:
        return op_str(m, FL_PV_STR, 1);
    case 0x8d:
        return op_str(m, FL_PV_STR, 8);
    case 'T':
        return op_str(m, FL_PV_STR, 4);
    case 'U':
        return op_str(m, FL_PV_STR, 1);
    case 'B':
        return op_str(m, FL_PV_BYTES, 4);
    case 'C':
        return op_str(m, FL_PV_BYTES, 1);
    case 0x8e:
    case 0x96:
        return op_str(m, FL_PV_BYTES, 8);
    case ')':
        return push(m, pv_new(m, FL_PV_TUPLE));
    case 't':
        return op_from_mark(m, FL_PV_TUPLE);
    case 0x85:
        return op_tuple_n(m, 1);
    case 0x86:
        return op_tuple_n(m, 2);
    case 0x87:
        return op_tuple_n(m, 3);
    case ']':
        return push(m, pv_new(m, FL_PV_LIST));
    case 'l':
        return op_from_mark(m, FL_PV_LIST);
    case '}':
        return push(m, pv_new(m, FL_PV_DICT));
    case 'd':
        return op_from_mark(m, FL_PV_DICT);
    case 0x8f:
        return push(m, pv_new(m, FL_PV_SET));
    case 0x91:
        return op_from_mark(m, FL_PV_SET);
    case 'a':
        if (m->sn - frame_base(m) < 2) return fail(m, "stack underflow");
        return add_items(m, m->sn - 1, 0);
    case 's':
        if (m->sn - frame_base(m) < 3) return fail(m, "stack underflow");
        return add_items(m, m->sn - 2, 1);
    case 'e':
        return op_additems_mark(m, 0);
    case 'u':
        return op_additems_mark(m, 1);
    case 0x90:
        return op_additems_mark(m, 0);
    case 'c':
        return op_text_global(m);
    case 0x93:
        if (!(b = pop(m)) || !(a = pop(m))) return -1;
        if (a->kind != FL_PV_STR || b->kind != FL_PV_STR)
            return fail(m, "module or name is not a string");
        return op_global(m, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
    case 'R':
        if (!(b = pop(m)) || !(a = pop(m))) return -1;
        return push(m, reduce(m, a, b));
    case 0x81: /* NEWOBJ cls args: cls.__new__(cls, *args), recorded */
        if (!(b = pop(m)) || !(a = pop(m))) return -1;
        if (b->kind != FL_PV_TUPLE) return fail(m, "arguments are not a tuple");
        if (fl_pv_is_global(a, "collections", "OrderedDict")) return push(m, pv_new(m, FL_PV_DICT));
        if (!(c = pv_new(m, FL_PV_OBJ))) return -1;
        c->callable = a;
        c->args = b;
        return push(m, c);
    case 0x92: /* NEWOBJ_EX cls args kwargs */
        if (!pop(m) || !(b = pop(m)) || !(a = pop(m))) return -1;
        if (!(c = pv_new(m, FL_PV_OBJ))) return -1;
        c->callable = a;
        c->args = b;
        return push(m, c);
    case 'b':
        return op_build(m);
    case 'Q':
        return op_persid(m);
    case 'q':
        if (need(m, 1) || !(a = top(m))) return -1;
        return memo_put(m, m->p[m->pos++], a);
    case 'r':
        if (need(m, 4) || !(a = top(m))) return -1;
        m->pos += 4;
        return memo_put(m, le(m->p + m->pos - 4, 4), a);
    case 0x94: /* MEMOIZE stores at len(memo) */
        if (!(a = top(m))) return -1;
        return memo_put(m, m->memo_cnt, a);
    case 'h':
        if (need(m, 1)) return -1;
        return memo_get(m, m->p[m->pos++]);
    case 'j':
        if (need(m, 4)) return -1;
        m->pos += 4;
        return memo_get(m, le(m->p + m->pos - 4, 4));
    default:
        if (fl_pk_op_name(m->op))
            return fail(m, "opcode not supported by this reader (torch.save does not write it)");
        return fail(m, "unknown opcode (not a pickle, or a damaged one)");
    }
}

fl_pv *fl_pk_load(fl_pk *pk, const unsigned char *pkl, size_t len, const fl_ptz *z,
                  const char *label, fl_err *e) {
    if (!pk->lim.max_objects) {
        pk->lim = (fl_pk_limits){.max_objects = (size_t)1 << 22,
                                 .max_memo = (size_t)1 << 22,
                                 .max_stack = (size_t)1 << 20,
                                 .max_marks = 4096,
                                 .max_str = (size_t)64 << 20};
    }
    vm m = {.pk = pk, .p = pkl, .len = len, .z = z, .label = label, .e = e};
    fl_pv *result = NULL;
    int rc = 0;
    while (rc == 0) {
        if (m.pos >= m.len) {
            m.op_at = m.pos;
            m.op = '.';
            rc = fail(&m, "data.pkl ends before STOP (truncated)");
            break;
        }
        m.op_at = m.pos;
        m.op = m.p[m.pos++];
        rc = step(&m, &result);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    return rc == 1 ? result : NULL;
}
