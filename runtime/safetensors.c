/* safetensors reading: validation of the header and offsets, lookup, conversion to float32.
 * Every rule of SPECS.md section 7 is checked before any tensor is handed out, so a file that
 * opens can be read without further bounds checks. */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const DTYPE_NAMES[FL_ST_NDTYPES] = {
    "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32",
    "U32", "F32", "F64", "I64", "U64", "F8_E4M3", "F8_E5M2",
};
static const unsigned char DTYPE_SIZES[FL_ST_NDTYPES] = {1, 1, 1, 2, 2, 2, 2, 4,
                                                         4, 4, 8, 8, 8, 1, 1};

const char *fl_st_dtype_name(fl_st_dtype d) {
    return (unsigned)d < FL_ST_NDTYPES ? DTYPE_NAMES[d] : "?";
}

size_t fl_st_dtype_size(fl_st_dtype d) { return (unsigned)d < FL_ST_NDTYPES ? DTYPE_SIZES[d] : 0; }

int fl_st_dtype_parse(const char *s) {
    for (int i = 0; i < FL_ST_NDTYPES; i++)
        if (strcmp(s, DTYPE_NAMES[i]) == 0) return i;
    return -1;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF, no NUL); returns the offset
 * of the first bad byte or len when all is well. */
static size_t utf8_bad_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0) return i;
        if (c < 0x80) { i++; continue; }
        size_t n;
        unsigned min, cp;
        if ((c & 0xE0) == 0xC0) n = 1, min = 0x80, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) n = 2, min = 0x800, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) n = 3, min = 0x10000, cp = c & 0x07;
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

/* A JSON number that is a non-negative integer exactly representable (<= 2^53). */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static void free_file(fl_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    for (size_t i = 0; i < f->nmeta; i++) free(f->meta[i].key), free(f->meta[i].val);
    free(f->t);
    free(f->meta);
    free(f->buf);
    free(f->path);
    free(f);
}

void fl_st_close(fl_st_file *f) { free_file(f); }

static int parse_metadata(fl_st_file *f, const cJSON *m, fl_err *e) {
    if (cJSON_IsNull(m)) return 0;
    if (!cJSON_IsObject(m)) return fl_errf(e, "%s: __metadata__ is not an object", f->path);
    size_t cnt = 0;
    for (const cJSON *c = m->child; c; c = c->next) cnt++;
    f->meta = calloc(cnt ? cnt : 1, sizeof *f->meta);
    if (!f->meta) return fl_errf(e, "%s: out of memory", f->path);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return fl_errf(e, "%s: __metadata__ value of '%s' is not a string", f->path,
                           c->string);
        for (size_t i = 0; i < f->nmeta; i++)
            if (strcmp(f->meta[i].key, c->string) == 0)
                return fl_errf(e, "%s: __metadata__ key '%s' appears twice", f->path, c->string);
        fl_st_kv *kv = &f->meta[f->nmeta];
        kv->key = strdup(c->string);
        kv->val = strdup(c->valuestring);
        if (!kv->key || !kv->val) {
            free(kv->key), free(kv->val);
            return fl_errf(e, "%s: out of memory", f->path);
        }
        f->nmeta++;
    }
    return 0;
}

static int parse_entry(fl_st_file *f, const cJSON *j, fl_st_tensor *t, fl_err *e) {
    const char *p = f->path, *nm = j->string;
    if (!cJSON_IsObject(j)) return fl_errf(e, "%s: tensor '%s': entry is not an object", p, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt)) return fl_errf(e, "%s: tensor '%s': missing or non-string dtype", p, nm);
    int d = fl_st_dtype_parse(dt->valuestring);
    if (d < 0) return fl_errf(e, "%s: tensor '%s': unknown dtype '%s'", p, nm, dt->valuestring);
    t->dtype = (fl_st_dtype)d;
    if (!cJSON_IsArray(sh)) return fl_errf(e, "%s: tensor '%s': missing or non-array shape", p, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > FL_MAX_DIMS)
        return fl_errf(e, "%s: tensor '%s': %d dimensions, more than the %d supported", p, nm, nd,
                       FL_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *c = sh->child; c; c = c->next, k++) {
        uint64_t v;
        if (json_uint(c, &v) < 0)
            return fl_errf(e, "%s: tensor '%s': shape[%d] is not a non-negative integer", p, nm, k);
        t->shape[k] = (int64_t)v;
        if (v && numel > UINT64_MAX / v)
            return fl_errf(e, "%s: tensor '%s': shape overflows", p, nm);
        numel *= v;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return fl_errf(e, "%s: tensor '%s': data_offsets must be [begin, end]", p, nm);
    uint64_t b, en;
    if (json_uint(off->child, &b) < 0 || json_uint(off->child->next, &en) < 0)
        return fl_errf(e, "%s: tensor '%s': data_offsets are not non-negative integers", p, nm);
    size_t dsz = fl_st_dtype_size(t->dtype);
    if (numel > UINT64_MAX / dsz) return fl_errf(e, "%s: tensor '%s': size overflows", p, nm);
    char shp[160];
    size_t o = 0;
    shp[o++] = '[';
    for (int i = 0; i < nd && o < sizeof shp - 24; i++)
        o += (size_t)snprintf(shp + o, sizeof shp - o, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    snprintf(shp + o, sizeof shp - o, "]");
    if (en < b)
        return fl_errf(e, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", p, nm,
                       (unsigned long long)b, (unsigned long long)en);
    if (en - b != numel * dsz)
        return fl_errf(e, "%s: tensor '%s': data_offsets [%llu, %llu] but %s %s needs %llu bytes", p,
                       nm, (unsigned long long)b, (unsigned long long)en, DTYPE_NAMES[d], shp,
                       (unsigned long long)(numel * dsz));
    size_t avail = f->len - f->data_start;
    if (en > avail)
        return fl_errf(e,
                       "%s: tensor '%s': data_offsets [%llu, %llu] beyond the %zu data bytes in "
                       "the file (truncated?)",
                       p, nm, (unsigned long long)b, (unsigned long long)en, avail);
    t->numel = (size_t)numel;
    t->begin = (size_t)b;
    t->end = (size_t)en;
    t->data = f->buf + f->data_start + t->begin;
    t->name = strdup(nm);
    if (!t->name) return fl_errf(e, "%s: out of memory", p);
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    const fl_st_tensor *x = *(const fl_st_tensor *const *)a, *y = *(const fl_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const fl_st_tensor *x = *(const fl_st_tensor *const *)a, *y = *(const fl_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Names unique; data covered exactly once from 0 to the end of the file. */
static int check_layout(fl_st_file *f, fl_err *e) {
    size_t avail = f->len - f->data_start;
    if (f->n == 0) {
        if (avail)
            return fl_errf(e, "%s: no tensors but %zu data bytes after the header", f->path, avail);
        return 0;
    }
    const fl_st_tensor **ix = malloc(f->n * sizeof *ix);
    if (!ix) return fl_errf(e, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++) ix[i] = &f->t[i];
    int rc = 0;
    qsort(ix, f->n, sizeof *ix, cmp_by_name);
    for (size_t i = 1; i < f->n && !rc; i++)
        if (strcmp(ix[i]->name, ix[i - 1]->name) == 0)
            rc = fl_errf(e, "%s: tensor '%s' appears twice in the header", f->path, ix[i]->name);
    if (!rc) qsort(ix, f->n, sizeof *ix, cmp_by_offset);
    size_t pos = 0;
    for (size_t i = 0; i < f->n && !rc; i++) {
        const fl_st_tensor *t = ix[i];
        if (t->begin > pos)
            rc = fl_errf(e, "%s: tensor '%s': data_offsets [%zu, %zu] leave a hole at bytes [%zu, "
                            "%zu)",
                         f->path, t->name, t->begin, t->end, pos, t->begin);
        else if (t->begin < pos)
            rc = fl_errf(e, "%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' "
                            "(which ends at %zu)",
                         f->path, t->name, t->begin, t->end, ix[i - 1]->name, pos);
        pos = t->end;
    }
    if (!rc && pos != avail)
        rc = fl_errf(e, "%s: tensors end at data byte %zu but the file has %zu data bytes "
                        "(8 + header + data must equal the file size)",
                     f->path, pos, avail);
    free(ix);
    return rc;
}

static int parse_header(fl_st_file *f, fl_err *e) {
    const char *p = f->path;
    if (f->len < 8)
        return fl_errf(e, "%s: %zu bytes, too short for the 8-byte header length (truncated?)", p,
                       f->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->buf[i];
    if (n > FL_ST_MAX_HEADER)
        return fl_errf(e, "%s: header length %llu exceeds the limit of %llu bytes", p,
                       (unsigned long long)n, (unsigned long long)FL_ST_MAX_HEADER);
    if (n > f->len - 8)
        return fl_errf(e, "%s: header length %llu but only %zu bytes follow (truncated?)", p,
                       (unsigned long long)n, f->len - 8);
    if (n < 2) return fl_errf(e, "%s: header length %llu is too short for a JSON object", p,
                              (unsigned long long)n);
    f->data_start = 8 + (size_t)n;
    const unsigned char *h = f->buf + 8;
    size_t bad = utf8_bad_at(h, (size_t)n);
    if (bad != n)
        return fl_errf(e, "%s: header is not valid UTF-8 (byte %zu of the header)", p, bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end && end >= (const char *)h ? (size_t)(end - (const char *)h) : 0;
        return fl_errf(e, "%s: header is not valid JSON (near byte %zu of the header)", p, at);
    }
    int rc = 0;
    for (const char *q = end; q < (const char *)h + n && !rc; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            rc = fl_errf(e, "%s: trailing bytes after the header JSON (byte %zu of the header)", p,
                         (size_t)(q - (const char *)h));
    if (!rc && !cJSON_IsObject(root)) rc = fl_errf(e, "%s: header is not a JSON object", p);
    size_t cnt = 0;
    for (const cJSON *c = rc ? NULL : root->child; c; c = c->next)
        if (strcmp(c->string, "__metadata__") != 0) cnt++;
    if (!rc && !(f->t = calloc(cnt ? cnt : 1, sizeof *f->t)))
        rc = fl_errf(e, "%s: out of memory", p);
    int seen_meta = 0;
    for (const cJSON *c = rc ? NULL : root->child; c && !rc; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (seen_meta++) rc = fl_errf(e, "%s: __metadata__ appears twice", p);
            else rc = parse_metadata(f, c, e);
            continue;
        }
        if (!c->string[0]) {
            rc = fl_errf(e, "%s: a tensor has an empty name", p);
            break;
        }
        rc = parse_entry(f, c, &f->t[f->n], e);
        if (!rc) f->n++;
        else free(f->t[f->n].name), f->t[f->n].name = NULL;
    }
    cJSON_Delete(root);
    if (rc) return -1;
    return check_layout(f, e);
}

fl_st_file *fl_st_parse(const void *buf, size_t len, const char *label, fl_err *e) {
    fl_st_file *f = calloc(1, sizeof *f);
    if (!f) return fl_errf(e, "%s: out of memory", label), NULL;
    f->path = strdup(label ? label : "(memory)");
    f->buf = malloc(len ? len : 1);
    if (!f->path || !f->buf) {
        free_file(f);
        fl_errf(e, "%s: out of memory", label);
        return NULL;
    }
    if (len) memcpy(f->buf, buf, len);
    f->len = len;
    if (parse_header(f, e) < 0) {
        free_file(f);
        return NULL;
    }
    return f;
}

fl_st_file *fl_st_open(const char *path, fl_err *e) {
    size_t len = 0;
    char *data = fl_read_file(path, &len, e);
    if (!data) return NULL;
    fl_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(data), free(f);
        fl_errf(e, "%s: out of memory", path);
        return NULL;
    }
    f->buf = (unsigned char *)data; /* take ownership, no second copy */
    f->len = len;
    if (parse_header(f, e) < 0) {
        free_file(f);
        return NULL;
    }
    return f;
}

const fl_st_tensor *fl_st_find(const fl_st_file *f, const char *name) {
    for (size_t i = 0; f && i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *fl_st_meta(const fl_st_file *f, const char *key) {
    for (size_t i = 0; f && i < f->nmeta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].val;
    return NULL;
}

/* IEEE half to single, exact (every half is a float), subnormals, infinities and NaN included. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1F, man = h & 0x3FFu, bits;
    if (ex == 0x1F) bits = sign | 0x7F800000u | (man << 13);
    else if (ex) bits = sign | ((ex + 112u) << 23) | (man << 13);
    else if (!man) bits = sign;
    else {
        /* subnormal: normalise the mantissa */
        int s = 0;
        while (!(man & 0x400u)) man <<= 1, s++;
        bits = sign | ((uint32_t)(113 - s) << 23) | ((man & 0x3FFu) << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

int fl_st_to_f32(const fl_st_file *f, const fl_st_tensor *t, float *out, size_t n, fl_err *e) {
    if (n != t->numel)
        return fl_errf(e, "%s: tensor '%s': destination holds %zu values, tensor has %zu", f->path,
                       t->name, n, t->numel);
    const unsigned char *s = t->data;
    switch (t->dtype) {
    case FL_ST_F32:
        if (n) memcpy(out, s, n * 4); /* little-endian host assumed (x86-64, aarch64) */
        return 0;
    case FL_ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            out[i] = half_to_float(h);
        }
        return 0;
    case FL_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&out[i], &bits, 4);
        }
        return 0;
    case FL_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
#define INT_CASE(tag, type)                                                                        \
    case tag:                                                                                      \
        for (size_t i = 0; i < n; i++) {                                                           \
            type v;                                                                                \
            memcpy(&v, s + sizeof v * i, sizeof v);                                                \
            out[i] = (float)v;                                                                     \
        }                                                                                          \
        return 0;
    /* Integer tensors (BN's int64 num_batches_tracked in every PyTorch export) convert the way
     * load_state_dict's copy_ does. */
    INT_CASE(FL_ST_BOOL, uint8_t)
    INT_CASE(FL_ST_U8, uint8_t)
    INT_CASE(FL_ST_I8, int8_t)
    INT_CASE(FL_ST_I16, int16_t)
    INT_CASE(FL_ST_U16, uint16_t)
    INT_CASE(FL_ST_I32, int32_t)
    INT_CASE(FL_ST_U32, uint32_t)
    INT_CASE(FL_ST_I64, int64_t)
    INT_CASE(FL_ST_U64, uint64_t)
#undef INT_CASE
    default:
        return fl_errf(e, "%s: tensor '%s': dtype %s cannot be converted to F32", f->path, t->name,
                       fl_st_dtype_name(t->dtype));
    }
}

int fl_st_f32_convertible(int dtype) { return dtype != FL_ST_F8_E4M3 && dtype != FL_ST_F8_E5M2; }

float *fl_st_read_f32(const fl_st_file *f, const char *name, size_t *numel, fl_err *e) {
    const fl_st_tensor *t = fl_st_find(f, name);
    if (!t) return fl_errf(e, "%s: no tensor '%s'", f->path, name), NULL;
    float *out = malloc(t->numel ? t->numel * sizeof *out : 1);
    if (!out) return fl_errf(e, "%s: tensor '%s': out of memory", f->path, name), NULL;
    if (fl_st_to_f32(f, t, out, t->numel, e) < 0) {
        free(out);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return out;
}
