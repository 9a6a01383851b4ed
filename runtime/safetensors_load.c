/* Sets of safetensors files (one file, or the shards of a model.safetensors.index.json) and
 * loading them into float32 destinations by name, with load_state_dict-style strictness: every
 * missing, unexpected and mis-shaped key is collected before anything is reported, so one run
 * shows the whole mismatch between a checkpoint and a graph. */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

void fl_st_close_set(fl_st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nfiles; i++) fl_st_close(s->files[i]);
    free(s->files);
    free(s->path);
    free(s);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* A shard name from an index: a plain file name next to the index, nothing that escapes it. */
static int safe_shard_name(const char *s) {
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static fl_st_set *open_index(const char *path, fl_st_set *s, fl_err *e) {
    char *txt = fl_read_file(path, NULL, e);
    if (!txt) return NULL;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        fl_errf(e, "%s: %s", path, root ? "no weight_map object" : "not valid JSON");
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 1;
    const char *dir = slash ? path : ".";
    int rc = 0;
    size_t nkeys = 0;
    for (const cJSON *c = wm->child; c && !rc; c = c->next, nkeys++) {
        if (!cJSON_IsString(c) || !safe_shard_name(c->valuestring)) {
            rc = fl_errf(e, "%s: weight_map entry '%s' does not name a shard file next to the index",
                         path, c->string);
            break;
        }
        const fl_st_file *have = NULL;
        char *shard = fl_strdupf("%.*s/%s", dirlen, dir, c->valuestring);
        for (size_t i = 0; i < s->nfiles && !have; i++)
            if (strcmp(s->files[i]->path, shard) == 0) have = s->files[i];
        if (!have) {
            fl_st_file **nf = realloc(s->files, (s->nfiles + 1) * sizeof *nf);
            fl_st_file *f = nf ? fl_st_open(shard, e) : NULL;
            if (nf) s->files = nf;
            if (!f) {
                rc = nf ? fl_errprefix(e, "%s (shard of %s)", shard, path)
                        : fl_errf(e, "%s: out of memory", path);
                free(shard);
                break;
            }
            s->files[s->nfiles++] = f;
            have = f;
        }
        free(shard);
        if (!fl_st_find(have, c->string))
            rc = fl_errf(e, "%s: weight_map puts '%s' in %s, which has no such tensor", path,
                         c->string, have->path);
    }
    /* every shard tensor must be listed, and listed under its own shard */
    for (size_t i = 0; i < s->nfiles && !rc; i++)
        for (size_t k = 0; k < s->files[i]->n && !rc; k++) {
            const char *nm = s->files[i]->t[k].name;
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(wm, nm);
            const char *base = strrchr(s->files[i]->path, '/');
            base = base ? base + 1 : s->files[i]->path;
            if (!cJSON_IsString(c) || strcmp(c->valuestring, base) != 0)
                rc = fl_errf(e, "%s: tensor '%s' of shard %s is not mapped to it in weight_map",
                             path, nm, base);
        }
    cJSON_Delete(root);
    return rc ? NULL : s;
}

fl_st_set *fl_st_open_set(const char *path, fl_err *e) {
    fl_st_set *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return fl_errf(e, "%s: out of memory", path), NULL;
    }
    if (ends_with(path, ".json")) {
        if (!open_index(path, s, e)) {
            fl_st_close_set(s);
            return NULL;
        }
        return s;
    }
    s->files = malloc(sizeof *s->files);
    fl_st_file *f = s->files ? fl_st_open(path, e) : NULL;
    if (!f) {
        fl_st_close_set(s);
        return NULL;
    }
    s->files[0] = f;
    s->nfiles = 1;
    return s;
}

const fl_st_tensor *fl_st_set_find(const fl_st_set *s, const char *name, const fl_st_file **file) {
    for (size_t i = 0; i < s->nfiles; i++) {
        const fl_st_tensor *t = fl_st_find(s->files[i], name);
        if (t) {
            if (file) *file = s->files[i];
            return t;
        }
    }
    return NULL;
}

/* ---- loading ---- */

typedef struct ref {
    const char *name;
    const fl_st_tensor *t;
    const fl_st_file *f;
    int used;
} ref;

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const ref *)a)->name, ((const ref *)b)->name);
}

/* A growing report: one section per kind of problem, at most `cap` items named in each so the
 * error fits in an fl_err; the warnings string has no cap. */
typedef struct report {
    char *p;
    size_t n, cap;
} report;

static void rp_add(report *r, const char *s) {
    if (!s) s = "(out of memory)";
    size_t k = strlen(s);
    if (r->n + k + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        while (cap < r->n + k + 1) cap *= 2;
        char *q = realloc(r->p, cap);
        if (!q) return; /* a shorter message is better than none */
        r->p = q, r->cap = cap;
    }
    memcpy(r->p + r->n, s, k + 1);
    r->n += k;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o + 24 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(buf + o, cap - o, "]");
}

/* Appends "N <what>: 'a', 'b', ... (and M more)" for the items in list. */
static void rp_section(report *r, const char *what, const char *const *items, size_t n,
                       size_t cap) {
    if (!n) return;
    char head[96];
    snprintf(head, sizeof head, "%s%zu %s: ", r->n ? "; " : "", n, what);
    rp_add(r, head);
    for (size_t i = 0; i < n && i < cap; i++) {
        if (i) rp_add(r, ", ");
        rp_add(r, items[i]);
    }
    if (n > cap) {
        char more[48];
        snprintf(more, sizeof more, " (and %zu more)", n - cap);
        rp_add(r, more);
    }
}

int fl_st_load(const fl_st_set *s, const fl_st_target *tg, size_t n, int mode,
               const char *ignore_prefix, char **warnings, fl_err *e) {
    if (warnings) *warnings = NULL;
    size_t nt = 0;
    for (size_t i = 0; i < s->nfiles; i++) nt += s->files[i]->n;
    ref *refs = calloc(nt ? nt : 1, sizeof *refs);
    char **missing = calloc(n ? n : 1, sizeof *missing), **badshape = calloc(n ? n : 1, sizeof(char *));
    char **unexpected = calloc(nt ? nt : 1, sizeof *unexpected);
    if (!refs || !missing || !badshape || !unexpected) {
        free(refs), free(missing), free(badshape), free(unexpected);
        return fl_errf(e, "%s: out of memory", s->path);
    }
    size_t k = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        for (size_t j = 0; j < s->files[i]->n; j++)
            refs[k++] = (ref){s->files[i]->t[j].name, &s->files[i]->t[j], s->files[i], 0};
    qsort(refs, nt, sizeof *refs, cmp_ref);
    size_t nmiss = 0, nbad = 0, nunex = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        ref key = {tg[i].name, NULL, NULL, 0};
        ref *r = nt ? bsearch(&key, refs, nt, sizeof *refs, cmp_ref) : NULL;
        if (!r) {
            missing[nmiss++] = fl_strdupf("'%s'", tg[i].name);
            continue;
        }
        if (r->used) {
            rc = fl_errf(e, "%s: '%s' is requested twice", s->path, tg[i].name);
            break;
        }
        r->used = 1;
        const fl_st_tensor *t = r->t;
        int same = t->ndim == tg[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == tg[i].shape[d];
        int convertible = fl_st_f32_convertible(t->dtype);
        if (!same || !convertible) {
            char a[160], b[160];
            shape_str(a, sizeof a, t->ndim, t->shape);
            shape_str(b, sizeof b, tg[i].ndim, tg[i].shape);
            badshape[nbad++] = fl_strdupf("'%s' (file %s %s, expected F32 %s)", tg[i].name,
                                          fl_st_dtype_name(t->dtype), a, b);
        }
    }
    for (size_t i = 0; i < nt && !rc; i++) {
        if (refs[i].used) continue;
        if (ignore_prefix && ignore_prefix[0] &&
            strncmp(refs[i].name, ignore_prefix, strlen(ignore_prefix)) == 0)
            continue;
        unexpected[nunex++] = fl_strdupf("'%s'", refs[i].name);
    }
    int strict = mode == FL_ST_STRICT;
    if (!rc && (nbad || (strict && (nmiss || nunex)))) {
        report r = {0};
        if (strict) rp_section(&r, nmiss == 1 ? "missing key" : "missing keys",
                               (const char *const *)missing, nmiss, 8);
        if (strict) rp_section(&r, nunex == 1 ? "unexpected key" : "unexpected keys",
                               (const char *const *)unexpected, nunex, 8);
        rp_section(&r, nbad == 1 ? "size mismatch" : "size mismatches",
                   (const char *const *)badshape, nbad, 6);
        rc = fl_errf(e, "%s: cannot load: %s", s->path, r.p ? r.p : "?");
        free(r.p);
    }
    if (!rc && !strict && (nmiss || nunex) && warnings) {
        report r = {0};
        rp_section(&r, nmiss == 1 ? "missing key" : "missing keys", (const char *const *)missing,
                   nmiss, (size_t)-1);
        rp_section(&r, nunex == 1 ? "unexpected key" : "unexpected keys",
                   (const char *const *)unexpected, nunex, (size_t)-1);
        *warnings = r.p;
    }
    /* all checks passed: now copy */
    for (size_t i = 0; i < n && !rc; i++) {
        ref key = {tg[i].name, NULL, NULL, 0};
        ref *r = nt ? bsearch(&key, refs, nt, sizeof *refs, cmp_ref) : NULL;
        if (!r) continue;
        if (fl_st_to_f32(r->f, r->t, tg[i].data, r->t->numel, e) < 0) rc = -1;
    }
    for (size_t i = 0; i < nmiss; i++) free(missing[i]);
    for (size_t i = 0; i < nbad; i++) free(badshape[i]);
    for (size_t i = 0; i < nunex; i++) free(unexpected[i]);
    free(missing), free(badshape), free(unexpected), free(refs);
    if (rc && warnings) free(*warnings), *warnings = NULL;
    return rc;
}

int fl_st_load_params(const fl_st_set *s, fl_param_list *pl, int mode, char **warnings,
                      fl_err *e) {
    fl_st_target *tg = calloc(pl->n ? pl->n : 1, sizeof *tg);
    if (!tg) return fl_errf(e, "%s: out of memory", s->path);
    for (size_t i = 0; i < pl->n; i++)
        tg[i] = (fl_st_target){pl->v[i].name, pl->v[i].data, pl->v[i].ndim, pl->v[i].shape};
    int rc = fl_st_load(s, tg, pl->n, mode, NULL, warnings, e);
    free(tg);
    return rc;
}
