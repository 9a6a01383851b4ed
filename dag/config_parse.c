/* Strict, linear-time JSON for configs: see config_parse.h for why cJSON's parser is not used. */
#include "dag/config_parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t fl_cfg_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* ------------------------------------------------------------------ origins table */

static int origins_grow(fl_cfg_origins *o) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    size_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < o->n; i++) {
        size_t j = fl_cfg_hash(o->v[i].path) & (cap - 1);
        while (slot[j]) j = (j + 1) & (cap - 1);
        slot[j] = i + 1;
    }
    free(o->slot);
    o->slot = slot;
    o->cap = cap;
    return 0;
}

/* The slot holding path, or the empty slot where it would go. */
static size_t *origins_find(const fl_cfg_origins *o, const char *path) {
    size_t j = fl_cfg_hash(path) & (o->cap - 1);
    for (;;) {
        if (o->work) (*o->work)++;
        size_t k = o->slot[j];
        if (!k || !strcmp(o->v[k - 1].path, path)) return &o->slot[j];
        j = (j + 1) & (o->cap - 1);
    }
}

int fl_cfg_origins_set(fl_cfg_origins *o, const char *path, const char *file, int line) {
    if ((o->n + 1) * 2 > o->cap && origins_grow(o)) return -1;
    size_t *s = origins_find(o, path);
    if (!*s) {
        if (o->n == o->vcap) {
            size_t vcap = o->vcap ? o->vcap * 2 : 64;
            fl_cfg_origin *v = realloc(o->v, vcap * sizeof *v);
            if (!v) return -1;
            o->v = v;
            o->vcap = vcap;
        }
        if (!(o->v[o->n].path = strdup(path))) return -1;
        *s = ++o->n;
    }
    o->v[*s - 1].file = file;
    o->v[*s - 1].line = line;
    return 0;
}

const fl_cfg_origin *fl_cfg_origins_get(const fl_cfg_origins *o, const char *path) {
    if (!o->cap) return NULL;
    size_t k = *origins_find(o, path);
    return k ? &o->v[k - 1] : NULL;
}

int fl_cfg_origins_merge(fl_cfg_origins *to, const fl_cfg_origins *from) {
    for (size_t i = 0; i < from->n; i++)
        if (fl_cfg_origins_set(to, from->v[i].path, from->v[i].file, from->v[i].line)) return -1;
    return 0;
}

void fl_cfg_origins_free(fl_cfg_origins *o) {
    for (size_t i = 0; i < o->n; i++) free(o->v[i].path);
    free(o->v);
    free(o->slot);
    o->v = NULL;
    o->slot = NULL;
    o->n = o->vcap = o->cap = 0;
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    const char *s, *end;
    const char *lstart; /* start of the current line */
    int line;
    const char *file;
    fl_cfg_origins *orig;
    size_t *work;
    char *path; /* the key path being parsed, grown as needed */
    size_t plen, pcap;
    fl_err *e;
} parser;

__attribute__((format(printf, 3, 4))) static void perr(parser *p, const char *at, const char *fmt,
                                                        ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fl_errf(p->e, "%s:%d:%d: %s", p->file, p->line, (int)(at - p->lstart) + 1, msg);
}

/* "malformed JSON: expected X near '...'" with the text at the error (one line of it). */
static void malformed(parser *p, const char *what) {
    char near[20];
    size_t n = 0;
    for (const char *q = p->s; q < p->end && n < 16 && *q != '\n' && *q != '\r'; q++)
        near[n++] = *q;
    near[n] = '\0';
    if (p->s >= p->end)
        perr(p, p->s, "malformed JSON: expected %s, found the end of the file", what);
    else
        perr(p, p->s, "malformed JSON: expected %s near '%s'", what, near);
}

static void ws(parser *p) {
    while (p->s < p->end) {
        char c = *p->s;
        if (c == '\n') {
            p->line++;
            p->lstart = p->s + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            return;
        }
        p->s++;
        if (p->work) (*p->work)++;
    }
}

/* Appends ".key" (or "key" at the root) or "[i]" to the path; returns the old length. */
static size_t path_push(parser *p, const char *key, long index) {
    size_t old = p->plen;
    char idx[32];
    const char *add = key;
    size_t sep = 0;
    if (!key) {
        snprintf(idx, sizeof idx, "[%ld]", index);
        add = idx;
    } else if (old) {
        sep = 1;
    }
    size_t need = old + sep + strlen(add) + 1;
    if (need > p->pcap) {
        size_t cap = p->pcap ? p->pcap : 256;
        while (cap < need) cap *= 2;
        char *np = realloc(p->path, cap);
        if (!np) return (size_t)-1;
        p->path = np;
        p->pcap = cap;
    }
    if (sep) p->path[p->plen++] = '.';
    memcpy(p->path + p->plen, add, strlen(add) + 1);
    p->plen += strlen(add);
    return old;
}

static void path_pop(parser *p, size_t old) {
    p->plen = old;
    p->path[old] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static long hex4(const char *q, const char *end) {
    if (end - q < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(q[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string at p->s (the opening quote), decoded to UTF-8 (malloc'd). NULs are refused: a C
 * string cannot hold one, and cutting "tiny\u0000large" to "tiny" would change its meaning. */
static char *parse_string(parser *p) {
    const char *q = p->s + 1;
    const char *close = q;
    while (close < p->end && *close != '"') close += *close == '\\' && close + 1 < p->end ? 2 : 1;
    if (close >= p->end) {
        perr(p, p->s, "malformed JSON: unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(close - q) + 1), *o = out;
    if (!out) {
        fl_errf(p->e, "out of memory");
        return NULL;
    }
    while (q < close) {
        if (p->work) (*p->work)++;
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) {
            perr(p, q, "malformed JSON: control character 0x%02x in a string (write it as \\u%04x)",
                 c, c);
            goto fail;
        }
        if (c != '\\') {
            *o++ = (char)c;
            q++;
            continue;
        }
        const char *esc = q++;
        switch (*q++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            long cp = hex4(q, close);
            if (cp < 0) {
                perr(p, esc, "malformed JSON: \\u needs four hex digits");
                goto fail;
            }
            q += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                long lo = q + 1 < close && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2, close) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    perr(p, esc, "malformed JSON: \\u%04lx is half a surrogate pair", cp);
                    goto fail;
                }
                q += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                perr(p, esc, "malformed JSON: \\u%04lx is half a surrogate pair", cp);
                goto fail;
            }
            if (cp == 0) {
                perr(p, esc, "a string contains \\u0000 (NUL), which no config value may hold");
                goto fail;
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            perr(p, esc, "malformed JSON: unknown escape '\\%c'", q[-1]);
            goto fail;
        }
    }
    *o = '\0';
    p->s = close + 1;
    return out;
fail:
    free(out);
    return NULL;
}

static cJSON *parse_number(parser *p) {
    const char *q = p->s;
    if (q < p->end && *q == '-') q++;
    if (q < p->end && *q == '0') {
        q++;
    } else if (q < p->end && *q >= '1' && *q <= '9') {
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    } else {
        malformed(p, "a value");
        return NULL;
    }
    if (q < p->end && *q == '.') {
        q++;
        if (q >= p->end || *q < '0' || *q > '9') {
            malformed(p, "a number");
            return NULL;
        }
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < p->end && (*q == '+' || *q == '-')) q++;
        if (q >= p->end || *q < '0' || *q > '9') {
            malformed(p, "a number");
            return NULL;
        }
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    char buf[512]; /* strtod needs a terminated copy (JSON sets no length limit; we do) */
    size_t n = (size_t)(q - p->s);
    if (n >= sizeof buf) {
        perr(p, p->s, "a number with more than %zu characters", sizeof buf - 1);
        return NULL;
    }
    memcpy(buf, p->s, n);
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v)) {
        perr(p, p->s, "number %s is too large for a double", buf);
        return NULL;
    }
    if (p->work) *p->work += n;
    p->s = q;
    cJSON *j = cJSON_CreateNumber(v);
    if (!j) fl_errf(p->e, "out of memory");
    return j;
}

/* The keys of one object: decoded, so "se\u0065d" and "seed" are the same key. */
typedef struct keyset {
    const char **k;
    int *line;
    size_t cap, n;
} keyset;

/* 0 if added, 1 if already present (*first = its line), -1 out of memory. */
static int keyset_add(keyset *ks, const char *key, int line, int *first, size_t *work) {
    if ((ks->n + 1) * 2 > ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 16;
        const char **k = calloc(cap, sizeof *k);
        int *l = malloc(cap * sizeof *l);
        if (!k || !l) {
            free(k);
            free(l);
            return -1;
        }
        for (size_t i = 0; i < ks->cap; i++) {
            if (!ks->k[i]) continue;
            size_t j = fl_cfg_hash(ks->k[i]) & (cap - 1);
            while (k[j]) j = (j + 1) & (cap - 1);
            k[j] = ks->k[i];
            l[j] = ks->line[i];
        }
        free(ks->k);
        free(ks->line);
        ks->k = k;
        ks->line = l;
        ks->cap = cap;
    }
    size_t j = fl_cfg_hash(key) & (ks->cap - 1);
    for (;; j = (j + 1) & (ks->cap - 1)) {
        if (work) (*work)++;
        if (!ks->k[j]) break;
        if (!strcmp(ks->k[j], key)) {
            *first = ks->line[j];
            return 1;
        }
    }
    ks->k[j] = key;
    ks->line[j] = line;
    ks->n++;
    return 0;
}

static cJSON *parse_value(parser *p, int depth);

static cJSON *parse_object(parser *p, int depth) {
    cJSON *obj = cJSON_CreateObject();
    keyset ks = {0};
    if (!obj) goto oom;
    p->s++; /* { */
    ws(p);
    if (p->s < p->end && *p->s == '}') {
        p->s++;
        return obj;
    }
    for (;;) {
        ws(p);
        if (p->s >= p->end || *p->s != '"') {
            malformed(p, "a key in double quotes");
            goto fail;
        }
        int line = p->line;
        char *key = parse_string(p);
        if (!key) goto fail;
        size_t old = path_push(p, key, 0);
        if (old == (size_t)-1) {
            free(key);
            goto oom;
        }
        ws(p);
        if (p->s >= p->end || *p->s != ':') {
            free(key);
            malformed(p, "':' after the key");
            goto fail;
        }
        p->s++;
        cJSON *v = parse_value(p, depth);
        if (!v) {
            free(key);
            goto fail;
        }
        /* The item owns the decoded key (cJSON frees ->string). */
        v->string = key;
        cJSON_AddItemToArray(obj, v);
        int first = 0, dup = keyset_add(&ks, v->string, line, &first, p->work);
        if (dup < 0) goto oom;
        if (dup) {
            fl_errf(p->e, "%s:%d: duplicate key '%s' (first at line %d)", p->file, line, p->path,
                    first);
            goto fail;
        }
        if (fl_cfg_origins_set(p->orig, p->path, p->file, line)) goto oom;
        path_pop(p, old);
        ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == '}') {
            p->s++;
            break;
        }
        malformed(p, "',' or '}'");
        goto fail;
    }
    free(ks.k);
    free(ks.line);
    return obj;
oom:
    fl_errf(p->e, "out of memory");
fail:
    free(ks.k);
    free(ks.line);
    cJSON_Delete(obj);
    return NULL;
}

static cJSON *parse_array(parser *p, int depth) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) goto oom;
    p->s++; /* [ */
    ws(p);
    if (p->s < p->end && *p->s == ']') {
        p->s++;
        return arr;
    }
    for (long i = 0;; i++) {
        ws(p);
        size_t old = path_push(p, NULL, i);
        if (old == (size_t)-1) goto oom;
        if (fl_cfg_origins_set(p->orig, p->path, p->file, p->line)) goto oom;
        cJSON *v = parse_value(p, depth);
        if (!v) goto fail;
        cJSON_AddItemToArray(arr, v); /* O(1): cJSON keeps the tail in child->prev */
        path_pop(p, old);
        ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == ']') {
            p->s++;
            break;
        }
        malformed(p, "',' or ']'");
        goto fail;
    }
    return arr;
oom:
    fl_errf(p->e, "out of memory");
fail:
    cJSON_Delete(arr);
    return NULL;
}

static cJSON *literal(parser *p, const char *word, cJSON *(*make)(void)) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n)) {
        malformed(p, "a value");
        return NULL;
    }
    p->s += n;
    cJSON *j = make();
    if (!j) fl_errf(p->e, "out of memory");
    return j;
}

static cJSON *make_true(void) { return cJSON_CreateTrue(); }
static cJSON *make_false(void) { return cJSON_CreateFalse(); }
static cJSON *make_null(void) { return cJSON_CreateNull(); }

static cJSON *parse_value(parser *p, int depth) {
    ws(p);
    if (p->s >= p->end) {
        malformed(p, "a value");
        return NULL;
    }
    switch (*p->s) {
    case '{':
    case '[':
        if (depth >= FL_CONFIG_MAX_DEPTH) {
            perr(p, p->s, "nested too deep (more than %d levels of objects and arrays)",
                 FL_CONFIG_MAX_DEPTH);
            return NULL;
        }
        return *p->s == '{' ? parse_object(p, depth + 1) : parse_array(p, depth + 1);
    case '"': {
        char *s = parse_string(p);
        if (!s) return NULL;
        cJSON *j = cJSON_CreateString(s);
        free(s);
        if (!j) fl_errf(p->e, "out of memory");
        return j;
    }
    case 't': return literal(p, "true", make_true);
    case 'f': return literal(p, "false", make_false);
    case 'n': return literal(p, "null", make_null);
    default: return parse_number(p);
    }
}

cJSON *fl_config_parse(const char *text, size_t len, const char *file, fl_cfg_origins *o,
                       size_t *work, fl_err *e) {
    parser p = {.s = text, .end = text + len, .lstart = text, .line = 1, .file = file,
                .orig = o, .work = work, .e = e};
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        for (const char *q = text; q < nul; q++)
            if (*q == '\n') p.line++, p.lstart = q + 1;
        perr(&p, nul, "contains a NUL byte (not a text file?)");
        return NULL;
    }
    if (path_push(&p, "", 0) == (size_t)-1) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    cJSON *root = parse_value(&p, 0);
    if (root) {
        ws(&p);
        if (p.s < p.end) {
            malformed(&p, "the end of the file after the top-level value");
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(p.path);
    return root;
}
