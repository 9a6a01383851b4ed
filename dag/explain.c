#include "dag/explain.h"

#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "dag/config.h"

static void add(fl_reasons *r, fl_why kind, const char *key, const char *o, const char *n,
                const char *from) {
    fl_reason *nv = realloc(r->v, (r->n + 1) * sizeof *nv);
    if (!nv) return;
    r->v = nv;
    fl_reason *x = &r->v[r->n++];
    x->kind = kind;
    x->key = key ? strdup(key) : NULL;
    x->old_v = o ? strdup(o) : NULL;
    x->new_v = n ? strdup(n) : NULL;
    x->from = from ? strdup(from) : NULL;
}

/* Flattens objects into (dotted path, canonical value) leaves. */
typedef struct flat {
    char **k, **v;
    size_t n;
} flat;

static void flatten(const cJSON *j, const char *path, flat *f) {
    if (cJSON_IsObject(j) && j->child) {
        for (const cJSON *it = j->child; it; it = it->next) {
            char *p = fl_strdupf("%s%s%s", path, *path ? "." : "", it->string);
            flatten(it, p, f);
            free(p);
        }
        return;
    }
    f->k = realloc(f->k, (f->n + 1) * sizeof *f->k);
    f->v = realloc(f->v, (f->n + 1) * sizeof *f->v);
    f->k[f->n] = strdup(path);
    f->v[f->n] = fl_config_canonical(j);
    f->n++;
}

static void flat_free(flat *f) {
    for (size_t i = 0; i < f->n; i++) {
        free(f->k[i]);
        free(f->v[i]);
    }
    free(f->k);
    free(f->v);
}

static const char *flat_get(const flat *f, const char *k) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->k[i], k)) return f->v[i];
    return NULL;
}

void fl_explain_diff(const cJSON *prev, const cJSON *cur, fl_reasons *out) {
    memset(out, 0, sizeof *out);
    if (!prev) {
        add(out, FL_WHY_NEW, NULL, NULL, NULL, NULL);
        return;
    }
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(prev, "key");
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(cur, "key");
    if (cJSON_IsString(pk) && cJSON_IsString(ck) && !strcmp(pk->valuestring, ck->valuestring)) {
        add(out, FL_WHY_LOST, NULL, NULL, NULL, NULL);
        return;
    }
    /* config */
    flat fo = {0}, fn = {0};
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(prev, "config");
    const cJSON *cc = cJSON_GetObjectItemCaseSensitive(cur, "config");
    for (const cJSON *it = pc ? pc->child : NULL; it; it = it->next) flatten(it, it->string, &fo);
    for (const cJSON *it = cc ? cc->child : NULL; it; it = it->next) flatten(it, it->string, &fn);
    for (size_t i = 0; i < fn.n; i++) {
        const char *o = flat_get(&fo, fn.k[i]);
        if (!o || strcmp(o, fn.v[i])) add(out, FL_WHY_CONFIG, fn.k[i], o ? o : "(absent)", fn.v[i], NULL);
    }
    for (size_t i = 0; i < fo.n; i++)
        if (!flat_get(&fn, fo.k[i])) add(out, FL_WHY_CONFIG, fo.k[i], fo.v[i], "(absent)", NULL);
    flat_free(&fo);
    flat_free(&fn);
    /* code */
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(prev, "code");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(cur, "code");
    if (cJSON_IsString(po) && cJSON_IsString(co) && strcmp(po->valuestring, co->valuestring))
        add(out, FL_WHY_CODE, NULL, po->valuestring, co->valuestring, NULL);
    /* inputs */
    const cJSON *pi = cJSON_GetObjectItemCaseSensitive(prev, "inputs");
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(cur, "inputs");
    for (const cJSON *it = ci ? ci->child : NULL; it; it = it->next) {
        const cJSON *old = pi ? cJSON_GetObjectItemCaseSensitive(pi, it->string) : NULL;
        const cJSON *od = old ? cJSON_GetObjectItemCaseSensitive(old, "digest") : NULL;
        const cJSON *nd = cJSON_GetObjectItemCaseSensitive(it, "digest");
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(it, "from");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(it, "path");
        if (!cJSON_IsString(od) || !cJSON_IsString(nd) || strcmp(od->valuestring, nd->valuestring))
            add(out, FL_WHY_INPUT, it->string, cJSON_IsString(od) ? od->valuestring : "(absent)",
                cJSON_IsString(nd) ? nd->valuestring : "?",
                cJSON_IsString(from) ? from->valuestring
                                     : (cJSON_IsString(path) ? path->valuestring : NULL));
    }
    if (out->n == 0) add(out, FL_WHY_CODE, NULL, "key schema", "changed", NULL);
}

void fl_reasons_free(fl_reasons *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].old_v);
        free(r->v[i].new_v);
        free(r->v[i].from);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

char *fl_reason_text(const fl_reason *r) {
    switch (r->kind) {
    case FL_WHY_NEW: return strdup("never run for this config");
    case FL_WHY_CONFIG: return fl_strdupf("config %s: %s -> %s", r->key, r->old_v, r->new_v);
    case FL_WHY_INPUT:
        return fl_strdupf("input '%s' changed%s%s (%.8s -> %.8s)", r->key, r->from ? " from " : "",
                          r->from ? r->from : "", r->old_v, r->new_v);
    case FL_WHY_CODE: return fl_strdupf("code changed (%.8s -> %.8s)", r->old_v, r->new_v);
    case FL_WHY_LOST: return strdup("cached result lost (removed by verify or gc)");
    case FL_WHY_FORCED: return strdup("forced (--force)");
    }
    return strdup("?");
}
