/* Config loading: parse, resolve `extends`, record where each key came from, validate. */
#include "dag/config.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const fl_cfg_field fl_config_builtin_schema[] = {
    {"extends", FL_CFG_STR, 0, "config file this one overrides (relative to this file)"},
    {"name", FL_CFG_STR, 0, "config name: outputs go to out/<name>/ (default: file name)"},
    {"store", FL_CFG_STR, 0, "artifact store directory (default .fluke beside the config's cwd)"},
    {"out_dir", FL_CFG_STR, 0, "where published outputs land (default out/<name>)"},
    {"resources", FL_CFG_OBJ, 0, "what the scheduler may hand out"},
    {"resources.gpus", FL_CFG_INT, 0, "GPUs stages may use (default 0: CPU only)"},
    {"resources.threads", FL_CFG_INT, 0, "CPU threads in all (default: the machine's cores)"},
    {NULL, 0, 0, NULL},
};

/* ------------------------------------------------------------------ key origins (line numbers)
 * cJSON does not keep line numbers, so a small scanner walks the (already valid) text and
 * records the line of every key path. */

typedef struct scan {
    const char *s;
    int line;
    const char *file;
    fl_config *c;
    fl_err *e;
    int failed;
} scan;

static void skip_ws(scan *sc) {
    while (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r') {
        if (*sc->s == '\n') sc->line++;
        sc->s++;
    }
}

/* Reads a JSON string into buf (escapes kept simple: \" and \\ unescaped, others copied). */
static void scan_string(scan *sc, char *buf, size_t len) {
    size_t n = 0;
    sc->s++; /* opening quote */
    while (*sc->s && *sc->s != '"') {
        char ch = *sc->s;
        if (ch == '\\' && sc->s[1]) {
            sc->s++;
            ch = *sc->s;
        }
        if (n + 1 < len) buf[n++] = ch;
        sc->s++;
    }
    if (*sc->s == '"') sc->s++;
    buf[n] = '\0';
}

static int add_origin(fl_config *c, const char *path, const char *file, int line) {
    fl_cfg_origin *nv = realloc(c->origins, (c->norigins + 1) * sizeof *nv);
    if (!nv) return -1;
    c->origins = nv;
    nv[c->norigins].path = strdup(path);
    nv[c->norigins].file = file;
    nv[c->norigins].line = line;
    c->norigins++;
    return 0;
}

static void scan_value(scan *sc, const char *path);

static void scan_object(scan *sc, const char *path) {
    size_t first = sc->c->norigins;
    sc->s++; /* { */
    for (;;) {
        skip_ws(sc);
        if (*sc->s == '}') {
            sc->s++;
            return;
        }
        if (*sc->s == ',') {
            sc->s++;
            continue;
        }
        if (*sc->s != '"') return; /* cannot happen on valid JSON */
        int line = sc->line;
        char key[256], child[1024];
        scan_string(sc, key, sizeof key);
        snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", key);
        for (size_t i = first; i < sc->c->norigins; i++)
            if (sc->c->origins[i].file == sc->file && !strcmp(sc->c->origins[i].path, child) &&
                !sc->failed) {
                fl_errf(sc->e, "%s:%d: duplicate key '%s' (first at line %d)", sc->file, line,
                        child, sc->c->origins[i].line);
                sc->failed = 1;
            }
        add_origin(sc->c, child, sc->file, line);
        skip_ws(sc);
        if (*sc->s == ':') sc->s++;
        skip_ws(sc);
        scan_value(sc, child);
    }
}

static void scan_value(scan *sc, const char *path) {
    skip_ws(sc);
    if (*sc->s == '{') {
        scan_object(sc, path);
    } else if (*sc->s == '[') {
        sc->s++;
        for (int i = 0;; i++) {
            skip_ws(sc);
            if (*sc->s == ']') {
                sc->s++;
                return;
            }
            if (*sc->s == ',') {
                sc->s++;
                skip_ws(sc);
            }
            if (*sc->s == ']') continue;
            char child[1024];
            snprintf(child, sizeof child, "%s[%d]", path, i);
            add_origin(sc->c, child, sc->file, sc->line);
            scan_value(sc, child);
        }
    } else if (*sc->s == '"') { /* a string value: skip it */
        sc->s++;
        while (*sc->s && *sc->s != '"') {
            if (*sc->s == '\\' && sc->s[1]) sc->s++;
            sc->s++;
        }
        if (*sc->s) sc->s++;
    } else {
        while (*sc->s && !strchr(",]} \t\r\n", *sc->s)) sc->s++;
    }
}

/* ------------------------------------------------------------------ parse + extends */

static void line_col(const char *text, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static char *dir_of(const char *abs) {
    char *d = strdup(abs);
    char *slash = strrchr(d, '/');
    if (slash == d)
        d[1] = '\0';
    else if (slash)
        *slash = '\0';
    return d;
}

/* Deep merge: objects merge key by key, anything else replaces. */
static void merge_into(cJSON *base, cJSON *over) {
    cJSON *item = over->child;
    while (item) {
        cJSON *next = item->next;
        cJSON *b = cJSON_GetObjectItemCaseSensitive(base, item->string);
        cJSON_DetachItemViaPointer(over, item);
        if (b && cJSON_IsObject(b) && cJSON_IsObject(item)) {
            merge_into(b, item);
            cJSON_Delete(item);
        } else if (b) {
            cJSON_ReplaceItemViaPointer(base, b, item);
        } else {
            cJSON_AddItemToObject(base, item->string, item);
        }
        item = next;
    }
}

static cJSON *load_file(fl_config *c, const char *path, const char *from, int depth, fl_err *e) {
    if (depth > 16) {
        fl_errf(e, "%s: `extends` chain deeper than 16 (a cycle?)", path);
        return NULL;
    }
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        if (from)
            fl_errf(e, "%s: extends '%s', which cannot be opened", from, path);
        else
            fl_errf(e, "config %s cannot be opened", path);
        return NULL;
    }
    for (size_t i = 0; i < c->nfiles; i++)
        if (!strcmp(c->files[i], abs)) {
            fl_errf(e, "%s: `extends` cycle through %s", from ? from : abs, abs);
            return NULL;
        }
    char **nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);
    if (!nf) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    c->files = nf;
    c->files[c->nfiles++] = strdup(abs);
    const char *file = c->files[c->nfiles - 1];

    size_t len;
    char *text = fl_read_file(abs, &len, e);
    if (!text) return NULL;
    if (strlen(text) != len) {
        fl_errf(e, "%s: contains a NUL byte", abs);
        free(text);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        if (!at) at = end ? end : text;
        int line, col;
        line_col(text, at, &line, &col);
        char near[24] = "";
        snprintf(near, sizeof near, "%.16s", at);
        for (char *p = near; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        fl_errf(e, "%s:%d:%d: malformed JSON near '%s'", file, line, col, near);
        free(text);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        fl_errf(e, "%s:1: a config must be a JSON object", file);
        cJSON_Delete(root);
        free(text);
        return NULL;
    }
    scan sc = {.s = text, .line = 1, .file = file, .c = c, .e = e};
    size_t first_origin = c->norigins;
    scan_value(&sc, "");
    free(text);
    if (sc.failed) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON *ext = cJSON_GetObjectItemCaseSensitive(root, "extends");
    if (!ext) return root;
    if (!cJSON_IsString(ext)) {
        int line = 1;
        for (size_t i = first_origin; i < c->norigins; i++)
            if (!strcmp(c->origins[i].path, "extends")) line = c->origins[i].line;
        fl_errf(e, "%s:%d: key 'extends' must be a string (a config file path)", file, line);
        cJSON_Delete(root);
        return NULL;
    }
    char *dir = dir_of(file);
    char *bpath = ext->valuestring[0] == '/' ? strdup(ext->valuestring)
                                             : fl_strdupf("%s/%s", dir, ext->valuestring);
    free(dir);
    /* The base's origins must come before this file's so that this file's win. */
    size_t mine = c->norigins - first_origin;
    fl_cfg_origin *saved = malloc((mine ? mine : 1) * sizeof *saved);
    if (mine) memcpy(saved, c->origins + first_origin, mine * sizeof *saved);
    c->norigins = first_origin;
    cJSON *base = load_file(c, bpath, file, depth + 1, e);
    free(bpath);
    for (size_t i = 0; i < mine; i++) {
        if (!base || add_origin(c, saved[i].path, saved[i].file, saved[i].line)) {
            for (size_t j = i; j < mine; j++) free(saved[j].path);
            break;
        }
        free(saved[i].path);
    }
    free(saved);
    if (!base) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "extends");
    cJSON_DeleteItemFromObjectCaseSensitive(base, "extends");
    merge_into(base, root);
    cJSON_Delete(root);
    return base;
}

/* ------------------------------------------------------------------ schema validation */

/* Splits "a.b[2].c" into tokens: a, b, [], c (indices are normalized to []). */
static int tokens(const char *path, char tok[][128], int max) {
    int n = 0;
    const char *p = path;
    while (*p && n < max) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            const char *q = strchr(p, ']');
            snprintf(tok[n++], 128, "[]");
            p = q ? q + 1 : p + strlen(p);
            continue;
        }
        size_t l = strcspn(p, ".[");
        snprintf(tok[n++], 128, "%.*s", (int)(l < 127 ? l : 127), p);
        p += l;
    }
    return n;
}

static int pattern_matches(const char *pattern, const char *path) {
    char a[32][128], b[32][128];
    int na = tokens(pattern, a, 32), nb = tokens(path, b, 32);
    if (na != nb) return 0;
    for (int i = 0; i < na; i++) {
        if (!strcmp(a[i], "*") && strcmp(b[i], "[]")) continue;
        if (strcmp(a[i], b[i])) return 0;
    }
    return 1;
}

#define FL_MAX_SCHEMAS 64

typedef struct validator {
    const fl_config *c;
    const fl_cfg_field *schemas[FL_MAX_SCHEMAS + 1];
    fl_err *e;
} validator;

static const fl_cfg_field *find_field(const validator *v, const char *path) {
    for (int s = 0; v->schemas[s]; s++)
        for (const fl_cfg_field *f = v->schemas[s]; f->path; f++)
            if (pattern_matches(f->path, path)) return f;
    return NULL;
}

static const char *type_name(fl_cfg_type t) {
    switch (t) {
    case FL_CFG_INT: return "an integer";
    case FL_CFG_NUM: return "a number";
    case FL_CFG_STR: return "a string";
    case FL_CFG_BOOL: return "true or false";
    case FL_CFG_OBJ:
    case FL_CFG_MAP: return "an object";
    case FL_CFG_ARR: return "an array";
    default: return "a value";
    }
}

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsNull(j)) return "null";
    return "something else";
}

static int type_ok(fl_cfg_type t, const cJSON *j) {
    switch (t) {
    case FL_CFG_INT:
        return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) &&
               fabs(j->valuedouble) < 9.0e15;
    case FL_CFG_NUM: return cJSON_IsNumber(j);
    case FL_CFG_STR: return cJSON_IsString(j);
    case FL_CFG_BOOL: return cJSON_IsBool(j);
    case FL_CFG_OBJ:
    case FL_CFG_MAP: return cJSON_IsObject(j);
    case FL_CFG_ARR: return cJSON_IsArray(j);
    default: return 1;
    }
}

/* Required fields whose parent pattern is `pattern` must be present in obj. */
static int check_required(const validator *v, const cJSON *obj, const char *path,
                          const char *pattern) {
    char where[1200];
    for (int s = 0; v->schemas[s]; s++)
        for (const fl_cfg_field *f = v->schemas[s]; f->path; f++) {
            if (!f->required) continue;
            const char *dot = strrchr(f->path, '.');
            size_t plen = dot ? (size_t)(dot - f->path) : 0;
            const char *leaf = dot ? dot + 1 : f->path;
            if (strlen(pattern) != plen || strncmp(pattern, f->path, plen)) continue;
            if (cJSON_GetObjectItemCaseSensitive(obj, leaf)) continue;
            char full[1024];
            snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", leaf);
            if (*path)
                return fl_errf(v->e, "%s: missing required key '%s'%s%s",
                               fl_config_where(v->c, path, where, sizeof where), full,
                               f->help ? " — " : "", f->help ? f->help : "");
            return fl_errf(v->e, "%s: missing required key '%s'%s%s", v->c->file, full,
                           f->help ? " — " : "", f->help ? f->help : "");
        }
    return 0;
}

static int validate(const validator *v, const cJSON *obj, const char *path, const char *pattern) {
    if (check_required(v, obj, path, pattern)) return -1;
    char where[1200];
    for (const cJSON *it = obj->child; it; it = it->next) {
        char child[1024];
        snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", it->string);
        const fl_cfg_field *f = find_field(v, child);
        if (!f)
            return fl_errf(v->e, "%s: unknown key '%s'",
                           fl_config_where(v->c, child, where, sizeof where), child);
        if (!type_ok(f->type, it))
            return fl_errf(v->e, "%s: key '%s' must be %s, not %s",
                           fl_config_where(v->c, child, where, sizeof where), child,
                           type_name(f->type), json_kind(it));
        if (f->type == FL_CFG_OBJ || f->type == FL_CFG_MAP) {
            if (validate(v, it, child, f->path)) return -1;
        } else if (f->type == FL_CFG_ARR) {
            int i = 0;
            for (const cJSON *el = it->child; el; el = el->next, i++) {
                char ep[1100];
                snprintf(ep, sizeof ep, "%s[%d]", child, i);
                const fl_cfg_field *ef = find_field(v, ep);
                if (!ef) break; /* elements not described: any */
                if (!type_ok(ef->type, el))
                    return fl_errf(v->e, "%s: element '%s' must be %s, not %s",
                                   fl_config_where(v->c, ep, where, sizeof where), ep,
                                   type_name(ef->type), json_kind(el));
                if ((ef->type == FL_CFG_OBJ || ef->type == FL_CFG_MAP) &&
                    validate(v, el, ep, ef->path))
                    return -1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ public */

int fl_config_load(fl_config *c, const char *path, const fl_cfg_field *const *schemas, fl_err *e) {
    memset(c, 0, sizeof *c);
    cJSON *root = load_file(c, path, NULL, 0, e);
    if (!root) {
        fl_config_free(c);
        return -1;
    }
    c->root = root;
    c->file = strdup(c->files[0]);
    c->dir = dir_of(c->file);
    validator v = {.c = c, .e = e};
    int ns = 0;
    v.schemas[ns++] = fl_config_builtin_schema;
    for (int i = 0; schemas && schemas[i] && ns < FL_MAX_SCHEMAS; i++) v.schemas[ns++] = schemas[i];
    if (validate(&v, root, "", "")) {
        fl_config_free(c);
        return -1;
    }
    /* The name is not inherited: a config extending smoke.json is its own run with its own
     * outputs, unless it says otherwise. */
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    int own_name = 0;
    for (size_t i = 0; i < c->norigins; i++)
        own_name |= !strcmp(c->origins[i].path, "name") && c->origins[i].file == c->files[0];
    if (name && own_name) {
        c->name = strdup(name->valuestring);
    } else {
        const char *b = strrchr(c->file, '/');
        c->name = strdup(b ? b + 1 : c->file);
        char *dot = strrchr(c->name, '.');
        if (dot && !strcmp(dot, ".json")) *dot = '\0';
    }
    for (const char *p = c->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.')) {
            char where[1200];
            fl_errf(e, "%s: config name '%s' may only use letters, digits, _ - .",
                    fl_config_where(c, "name", where, sizeof where), c->name);
            fl_config_free(c);
            return -1;
        }
    return 0;
}

void fl_config_free(fl_config *c) {
    cJSON_Delete(c->root);
    free(c->file);
    free(c->dir);
    free(c->name);
    for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
    free(c->files);
    for (size_t i = 0; i < c->norigins; i++) free(c->origins[i].path);
    free(c->origins);
    memset(c, 0, sizeof *c);
}

const char *fl_config_where(const fl_config *c, const char *keypath, char *buf, size_t len) {
    for (size_t i = c->norigins; i-- > 0;)
        if (!strcmp(c->origins[i].path, keypath)) {
            snprintf(buf, len, "%s:%d", c->origins[i].file, c->origins[i].line);
            return buf;
        }
    snprintf(buf, len, "%s", c->file ? c->file : "config");
    return buf;
}

const cJSON *fl_config_get(const cJSON *root, const char *path) {
    char seg[256];
    const cJSON *cur = root;
    const char *p = path;
    while (cur && *p) {
        size_t l = strcspn(p, ".");
        if (l >= sizeof seg) return NULL;
        memcpy(seg, p, l);
        seg[l] = '\0';
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, seg) : NULL;
        p += l + (p[l] == '.');
    }
    return cur;
}

static int cmp_items(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

static void sort_keys(cJSON *j) {
    if (cJSON_IsObject(j)) {
        size_t n = 0;
        for (cJSON *it = j->child; it; it = it->next) n++;
        if (n > 1) {
            cJSON **v = malloc(n * sizeof *v);
            size_t i = 0;
            for (cJSON *it = j->child; it; it = it->next) v[i++] = it;
            qsort(v, n, sizeof *v, cmp_items);
            for (i = 0; i < n; i++) {
                v[i]->prev = i ? v[i - 1] : v[n - 1]; /* cJSON: child->prev is the tail */
                v[i]->next = i + 1 < n ? v[i + 1] : NULL;
            }
            j->child = v[0];
            free(v);
        }
    }
    for (cJSON *it = j->child; it; it = it->next) sort_keys(it);
}

char *fl_config_canonical(const cJSON *item) {
    if (!item) return strdup("null");
    cJSON *dup = cJSON_Duplicate(item, 1);
    if (!dup) return NULL;
    sort_keys(dup);
    char *s = cJSON_PrintUnformatted(dup);
    cJSON_Delete(dup);
    return s;
}
