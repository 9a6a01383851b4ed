/* Config loading: read (regular files only, size-capped), parse (dag/config_parse.c), resolve
 * `extends`, record where each key came from, validate against the schema. */
#include "dag/config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const fl_cfg_field fl_config_builtin_schema[] = {
    {"extends", FL_CFG_STR, 0, "config file this one overrides (relative to this file)", 0, 0},
    {"name", FL_CFG_STR, 0, "config name: outputs go to out/<name>/ (default: file name)", 0, 0},
    {"store", FL_CFG_STR, 0, "artifact store directory (default .fluke beside the config's cwd)",
     0, 0},
    {"out_dir", FL_CFG_STR, 0, "where published outputs land (default out/<name>)", 0, 0},
    {"resources", FL_CFG_OBJ, 0, "what the scheduler may hand out", 0, 0},
    {"resources.gpus", FL_CFG_INT, 0, "GPUs stages may use (default 0: CPU only)", 0, 1024},
    {"resources.force_cpu", FL_CFG_BOOL, 0,
     "train on the CPU even when resources.gpus asks for a GPU this run cannot use (as --cpu)", 0,
     0},
    {"resources.threads", FL_CFG_INT, 0, "CPU threads in all (default: the machine's cores)", 1,
     4096},
    /* The executor (dag/exec_slurm.c): not part of any stage's key, so switching it reruns
     * nothing. */
    {"executor", FL_CFG_OBJ, 0, "where stages run: this machine or a Slurm cluster", 0, 0},
    {"executor.kind", FL_CFG_STR, 0, "local (default) | slurm; `fluke run --executor` overrides", 0,
     0},
    {"executor.slurm", FL_CFG_OBJ, 0, "sbatch options and polling of the Slurm executor", 0, 0},
    {"executor.slurm.partition", FL_CFG_STR, 0, "sbatch --partition", 0, 0},
    {"executor.slurm.account", FL_CFG_STR, 0, "sbatch --account", 0, 0},
    {"executor.slurm.time", FL_CFG_STR, 0, "sbatch --time per stage job (e.g. \"04:00:00\")", 0, 0},
    {"executor.slurm.mem", FL_CFG_STR, 0, "sbatch --mem per stage job (e.g. \"32G\")", 0, 0},
    {"executor.slurm.extra_args", FL_CFG_ARR, 0, "more sbatch options, one per element", 0, 0},
    {"executor.slurm.extra_args[]", FL_CFG_STR, 0, NULL, 0, 0},
    {"executor.slurm.poll_s", FL_CFG_NUM, 0, "seconds between squeue polls (default 10)", 0.1, 3600},
    {"executor.slurm.min_poll_s", FL_CFG_NUM, 0,
     "floor of poll_s (default 2: never poll a real controller faster)", 0.1, 3600},
    {"executor.slurm.retries", FL_CFG_INT, 0,
     "tries of a Slurm command failing with a transient controller error (default 6)", 1, 100},
    {"executor.slurm.retry_s", FL_CFG_NUM, 0, "first backoff after such a failure, doubling (default 1)",
     0.01, 600},
    {"executor.slurm.exit_wait_s", FL_CFG_NUM, 0,
     "how long a job that left the queue may take to show its exit file on the shared filesystem "
     "(default 60)", 0, 3600},
    {"executor.slurm.array", FL_CFG_BOOL, 0,
     "submit instances of one stage that are ready together (folds) as one job array", 0, 0},
    {"executor.slurm.max_jobs", FL_CFG_INT, 0, "jobs queued at once when -j is not given (default 64)",
     1, 100000},
    {"cache", FL_CFG_OBJ, 0, "a remote cache shared with other stores (Bazel HTTP cache protocol)", 0, 0},
    {"cache.remote", FL_CFG_STR, 0,
     "http(s) URL of the remote cache: /cas/<digest> and /ac/<key> below it (--remote-cache)", 0, 0},
    {"cache.remote_token_env", FL_CFG_STR, 0,
     "name of the environment variable holding a bearer token for the remote cache", 0, 0},
    {"cache.remote_mode", FL_CFG_STR, 0,
     "readwrite (default: download hits, upload results) or readonly (never upload: CI)", 0, 0},
    {"cache.remote_timeout_s", FL_CFG_INT, 0,
     "seconds to connect, and the longest a transfer may stall, before going on without the "
     "remote (default 30)", 1, 3600},
    {NULL, 0, 0, NULL, 0, 0},
};

/* ------------------------------------------------------------------ reading */

/* The file's contents, NUL-terminated. Only a regular file of at most FL_CONFIG_MAX_BYTES is
 * read: /dev/zero would grow without end and a FIFO block forever (O_NONBLOCK makes opening one
 * return at once, so fstat can refuse it). Errors say what the file is, not where it was named. */
static char *read_config_text(const char *path, size_t *len, fl_err *e) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fl_errf(e, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        fl_errf(e, "%s is %s, not a regular file", path,
                S_ISDIR(st.st_mode)    ? "a directory"
                : S_ISFIFO(st.st_mode) ? "a FIFO"
                : S_ISCHR(st.st_mode)  ? "a character device"
                : S_ISBLK(st.st_mode)  ? "a block device"
                : S_ISSOCK(st.st_mode) ? "a socket"
                                       : "something else");
        goto fail;
    }
    if (st.st_size > (off_t)FL_CONFIG_MAX_BYTES) {
        fl_errf(e, "%s is %lld bytes; a config may have at most %u (16 MiB)", path,
                (long long)st.st_size, FL_CONFIG_MAX_BYTES);
        goto fail;
    }
    /* Read at most one byte more than the cap: the file may grow after fstat. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    if (!(buf = malloc(cap + 1))) {
        fl_errf(e, "out of memory reading %s", path);
        goto fail;
    }
    for (;;) {
        if (n == cap) {
            if (cap > FL_CONFIG_MAX_BYTES) {
                fl_errf(e, "%s grew past %u bytes (16 MiB) while being read", path,
                        FL_CONFIG_MAX_BYTES);
                goto fail;
            }
            size_t ncap = cap * 2 > FL_CONFIG_MAX_BYTES + 1 ? FL_CONFIG_MAX_BYTES + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                fl_errf(e, "out of memory reading %s", path);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fl_errf(e, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* ------------------------------------------------------------------ extends */

static char *dir_of(const char *abs) {
    char *d = strdup(abs);
    if (!d) return NULL;
    char *slash = strrchr(d, '/');
    if (slash == d)
        d[1] = '\0';
    else if (slash)
        *slash = '\0';
    return d;
}

/* An index of an object's children by key, so that merging two large objects stays linear. */
typedef struct child_index {
    cJSON **slot;
    size_t cap;
} child_index;

static cJSON **index_find(child_index *ix, const char *key, size_t *work) {
    size_t j = fl_cfg_hash(key) & (ix->cap - 1);
    for (;; j = (j + 1) & (ix->cap - 1)) {
        (*work)++;
        if (!ix->slot[j] || !strcmp(ix->slot[j]->string, key)) return &ix->slot[j];
    }
}

/* Deep merge: objects merge key by key, anything else replaces. 0, or -1 out of memory. */
static int merge_into(cJSON *base, cJSON *over, size_t *work) {
    size_t n = 0, m = 0;
    for (cJSON *it = base->child; it; it = it->next) n++;
    for (cJSON *it = over->child; it; it = it->next) m++;
    child_index ix = {0};
    for (ix.cap = 16; ix.cap < 2 * (n + m); ix.cap *= 2) {}
    if (!(ix.slot = calloc(ix.cap, sizeof *ix.slot))) return -1;
    for (cJSON *it = base->child; it; it = it->next) *index_find(&ix, it->string, work) = it;
    int rc = 0;
    cJSON *item = over->child;
    while (item) {
        cJSON *next = item->next;
        cJSON **at = index_find(&ix, item->string, work);
        cJSON *b = *at;
        cJSON_DetachItemViaPointer(over, item);
        if (b && cJSON_IsObject(b) && cJSON_IsObject(item)) {
            if (merge_into(b, item, work)) rc = -1;
            cJSON_Delete(item);
        } else if (b) {
            cJSON_ReplaceItemViaPointer(base, b, item); /* frees b */
            *at = item;
        } else {
            cJSON_AddItemToArray(base, item); /* item keeps its key in ->string */
            *at = item;
        }
        item = next;
    }
    free(ix.slot);
    return rc;
}

/* Reads, parses and resolves one file; from:from_line is the `extends` that led here, which
 * named the file as `named` (messages quote the user's spelling, not the resolved path). */
static cJSON *load_file(fl_config *c, const char *path, const char *from, int from_line,
                        const char *named, int depth, fl_err *e) {
    char fromwhere[PATH_MAX + 64] = "";
    if (from)
        snprintf(fromwhere, sizeof fromwhere, "%s:%d: extends '%s': ", from, from_line, named);
    if (depth > 16) {
        fl_errf(e, "%s`extends` chain deeper than 16 (a cycle?)", fromwhere);
        return NULL;
    }
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        if (from)
            fl_errf(e, "%s:%d: extends '%s', which cannot be opened: %s", from, from_line, named,
                    strerror(errno));
        else
            fl_errf(e, "config %s cannot be opened: %s", path, strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < c->nfiles; i++)
        if (!strcmp(c->files[i], abs)) {
            fl_errf(e, "%s`extends` cycle through %s", fromwhere, abs);
            return NULL;
        }
    char **nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);
    if (!nf || !(nf[c->nfiles] = strdup(abs))) {
        if (nf) c->files = nf;
        fl_errf(e, "out of memory");
        return NULL;
    }
    c->files = nf;
    const char *file = c->files[c->nfiles++];

    size_t len;
    char *text = read_config_text(abs, &len, e);
    if (!text) {
        if (from) fl_errprefix(e, "%s:%d: extends '%s'", from, from_line, named);
        return NULL;
    }
    fl_cfg_origins mine = {.work = &c->work};
    /* A UTF-8 byte-order mark (Windows editors write one) is not content (RFC 8259 lets a
     * parser ignore it); refusing it read "malformed JSON near '{'" with the mark invisible. */
    size_t bom = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    cJSON *root = fl_config_parse(text + bom, len - bom, file, &mine, &c->work, e);
    free(text);
    if (!root) goto fail;
    if (!cJSON_IsObject(root)) {
        fl_errf(e, "%s:1: a config must be a JSON object", file);
        goto fail;
    }
    cJSON *ext = cJSON_GetObjectItemCaseSensitive(root, "extends");
    if (ext) {
        const fl_cfg_origin *o = fl_cfg_origins_get(&mine, "extends");
        int line = o ? o->line : 1;
        if (!cJSON_IsString(ext)) {
            fl_errf(e, "%s:%d: key 'extends' must be a string (a config file path)", file, line);
            goto fail;
        }
        if (!ext->valuestring[0]) {
            fl_errf(e, "%s:%d: key 'extends' is empty (it names the config file this one "
                       "overrides)", file, line);
            goto fail;
        }
        char *dir = dir_of(file);
        char *bpath = !dir                        ? NULL
                      : ext->valuestring[0] == '/' ? strdup(ext->valuestring)
                                                   : fl_strdupf("%s/%s", dir, ext->valuestring);
        free(dir);
        if (!bpath) {
            fl_errf(e, "out of memory");
            goto fail;
        }
        /* The base's origins go in first so that this file's override them. */
        cJSON *base = load_file(c, bpath, file, line, ext->valuestring, depth + 1, e);
        free(bpath);
        if (!base) goto fail;
        cJSON_DeleteItemFromObjectCaseSensitive(root, "extends");
        cJSON_DeleteItemFromObjectCaseSensitive(base, "extends");
        if (merge_into(base, root, &c->work)) {
            cJSON_Delete(base);
            fl_errf(e, "out of memory");
            goto fail;
        }
        cJSON_Delete(root);
        root = base;
    }
    if (!c->index.n) { /* the first file done (the deepest base): take its table whole */
        fl_cfg_origins_free(&c->index);
        c->index = mine;
        return root;
    }
    if (fl_cfg_origins_merge(&c->index, &mine)) {
        fl_errf(e, "out of memory");
        goto fail;
    }
    fl_cfg_origins_free(&mine);
    return root;
fail:
    cJSON_Delete(root);
    fl_cfg_origins_free(&mine);
    return NULL;
}

/* ------------------------------------------------------------------ schema validation */

/* The next path token: a key (up to '.' or '['), or an index "[...]" (is_index set). */
static int next_token(const char **p, const char **tok, size_t *len, int *is_index) {
    while (**p == '.') (*p)++;
    if (!**p) return 0;
    *tok = *p;
    if (**p == '[') {
        const char *q = strchr(*p, ']');
        *p = q ? q + 1 : *p + strlen(*p);
        *is_index = 1;
    } else {
        *len = strcspn(*p, ".[");
        *p += *len;
        *is_index = 0;
    }
    return 1;
}

/* Does the schema pattern ("text.*.from[]") describe the concrete path ("text.a.from[3]")? */
static int pattern_matches(const char *pattern, const char *path, size_t *work) {
    const char *a = pattern, *b = path, *ta, *tb;
    size_t la = 0, lb = 0;
    int ia, ib;
    for (;;) {
        (*work)++;
        int ha = next_token(&a, &ta, &la, &ia), hb = next_token(&b, &tb, &lb, &ib);
        if (!ha || !hb) return ha == hb;
        if (ia != ib) return 0;
        if (ia) continue;
        if (la == 1 && *ta == '*') continue;
        if (la != lb || memcmp(ta, tb, la)) return 0;
    }
}

#define FL_MAX_SCHEMAS 64

typedef struct validator {
    fl_config *c;
    const fl_cfg_field *schemas[FL_MAX_SCHEMAS + 1];
    fl_err *e;
} validator;

static const fl_cfg_field *find_field(const validator *v, const char *path) {
    for (int s = 0; v->schemas[s]; s++)
        for (const fl_cfg_field *f = v->schemas[s]; f->path; f++)
            if (pattern_matches(f->path, path, &v->c->work)) return f;
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
    case FL_CFG_INT: return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble);
    case FL_CFG_NUM: return cJSON_IsNumber(j);
    case FL_CFG_STR: return cJSON_IsString(j);
    case FL_CFG_BOOL: return cJSON_IsBool(j);
    case FL_CFG_OBJ:
    case FL_CFG_MAP: return cJSON_IsObject(j);
    case FL_CFG_ARR: return cJSON_IsArray(j);
    default: return 1;
    }
}

/* The range a field's values must lie in (its own, or the default when it gives none). */
static void field_range(const fl_cfg_field *f, double *lo, double *hi) {
    *lo = f->min;
    *hi = f->max;
    if (*lo == 0 && *hi == 0) {
        *lo = f->type == FL_CFG_INT ? (double)INT_MIN : -DBL_MAX;
        *hi = f->type == FL_CFG_INT ? (double)INT_MAX : DBL_MAX;
    }
}

static int in_range(const fl_cfg_field *f, const cJSON *j) {
    if (f->type != FL_CFG_INT && f->type != FL_CFG_NUM) return 1;
    double lo, hi;
    field_range(f, &lo, &hi);
    return j->valuedouble >= lo && j->valuedouble <= hi;
}

/* Type, then range: "file:line: key 'k' is 3000000000, outside its range [0, 1024]". */
static int check_value(const validator *v, const fl_cfg_field *f, const cJSON *j,
                       const char *what, const char *path) {
    char where[PATH_MAX + 32];
    if (!type_ok(f->type, j))
        return fl_errf(v->e, "%s: %s '%s' must be %s, not %s",
                       fl_config_where(v->c, path, where, sizeof where), what, path,
                       type_name(f->type), json_kind(j));
    if (in_range(f, j)) return 0;
    double lo, hi, x = j->valuedouble;
    field_range(f, &lo, &hi);
    const char *fmt = f->type == FL_CFG_INT ? "%.0f" : "%.17g";
    char sx[64], slo[64], shi[64];
    snprintf(sx, sizeof sx, f->type == FL_CFG_INT ? "%.0f" : "%g", x);
    snprintf(slo, sizeof slo, fmt, lo);
    snprintf(shi, sizeof shi, fmt, hi);
    return fl_errf(v->e, "%s: %s '%s' is %s, outside its range [%s, %s]",
                   fl_config_where(v->c, path, where, sizeof where), what, path, sx, slo, shi);
}

/* Required fields whose parent pattern is `pattern` must be present in obj. */
static int check_required(const validator *v, const cJSON *obj, const char *path,
                          const char *pattern) {
    char where[PATH_MAX + 32];
    for (int s = 0; v->schemas[s]; s++)
        for (const fl_cfg_field *f = v->schemas[s]; f->path; f++) {
            if (!f->required) continue;
            const char *dot = strrchr(f->path, '.');
            size_t plen = dot ? (size_t)(dot - f->path) : 0;
            const char *leaf = dot ? dot + 1 : f->path;
            if (strlen(pattern) != plen || strncmp(pattern, f->path, plen)) continue;
            if (cJSON_GetObjectItemCaseSensitive(obj, leaf)) continue;
            const char *at = *path ? fl_config_where(v->c, path, where, sizeof where) : v->c->file;
            return fl_errf(v->e, "%s: missing required key '%s%s%s'%s%s", at, path,
                           *path ? "." : "", leaf, f->help ? " — " : "", f->help ? f->help : "");
        }
    return 0;
}

static int validate(const validator *v, const cJSON *obj, const char *path, const char *pattern);

/* Elements of an array: one schema lookup for all of them (patterns ignore the index). */
static int validate_array(const validator *v, const cJSON *arr, const char *path) {
    char *p0 = fl_strdupf("%s[0]", path);
    if (!p0) return fl_errf(v->e, "out of memory");
    const fl_cfg_field *ef = find_field(v, p0);
    free(p0);
    if (!ef) return 0; /* elements not described: any */
    long i = 0;
    for (const cJSON *el = arr->child; el; el = el->next, i++) {
        v->c->work++;
        int nested = ef->type == FL_CFG_OBJ || ef->type == FL_CFG_MAP;
        if (!nested && type_ok(ef->type, el) && in_range(ef, el))
            continue; /* the common case: no path needed */
        char *ep = fl_strdupf("%s[%ld]", path, i);
        if (!ep) return fl_errf(v->e, "out of memory");
        int rc = check_value(v, ef, el, "element", ep);
        if (!rc && nested) rc = validate(v, el, ep, ef->path);
        free(ep);
        if (rc) return -1;
    }
    return 0;
}

static int validate(const validator *v, const cJSON *obj, const char *path, const char *pattern) {
    if (check_required(v, obj, path, pattern)) return -1;
    char where[PATH_MAX + 32];
    for (const cJSON *it = obj->child; it; it = it->next) {
        char *child = fl_strdupf("%s%s%s", path, *path ? "." : "", it->string);
        if (!child) return fl_errf(v->e, "out of memory");
        const fl_cfg_field *f = find_field(v, child);
        int rc = 0;
        if (!f)
            rc = fl_errf(v->e, "%s: unknown key '%s'",
                         fl_config_where(v->c, child, where, sizeof where), child);
        else
            rc = check_value(v, f, it, "key", child);
        if (!rc && (f->type == FL_CFG_OBJ || f->type == FL_CFG_MAP))
            rc = validate(v, it, child, f->path);
        else if (!rc && f->type == FL_CFG_ARR)
            rc = validate_array(v, it, child);
        free(child);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ public */

/* A string key that, if present, may not be empty. */
static int nonempty(fl_config *c, const char *key, const char *why, fl_err *e) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!j || j->valuestring[0]) return 0;
    char where[PATH_MAX + 32];
    return fl_errf(e, "%s: key '%s' is empty (%s)", fl_config_where(c, key, where, sizeof where),
                   key, why);
}

/* The name becomes a directory (out/<name>) and a ref name (runs/<name>): one plain component. */
static int check_name(fl_config *c, int own, fl_err *e) {
    char where[PATH_MAX + 32];
    const char *at = own ? fl_config_where(c, "name", where, sizeof where) : c->file;
    const char *from = own ? "" : " (taken from the file name; set \"name\" to choose another)";
    size_t n = strlen(c->name);
    if (n == 0 || n > 128)
        return fl_errf(e, "%s: config name '%s' must have 1 to 128 characters%s", at, c->name,
                       from);
    if (c->name[0] == '.')
        return fl_errf(e, "%s: config name '%s' may not start with '.'%s", at, c->name, from);
    for (const char *p = c->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return fl_errf(e, "%s: config name '%s' may only use letters, digits, _ - .%s", at,
                           c->name, from);
    return 0;
}

int fl_config_load(fl_config *c, const char *path, const fl_cfg_field *const *schemas, fl_err *e) {
    memset(c, 0, sizeof *c);
    c->index.work = &c->work;
    cJSON *root = load_file(c, path, NULL, 0, NULL, 0, e);
    if (!root) {
        fl_config_free(c);
        return -1;
    }
    c->root = root;
    c->file = strdup(c->files[0]);
    c->dir = c->file ? dir_of(c->file) : NULL;
    if (!c->dir) {
        fl_config_free(c);
        return fl_errf(e, "out of memory");
    }
    validator v = {.c = c, .e = e};
    int ns = 0;
    v.schemas[ns++] = fl_config_builtin_schema;
    for (int i = 0; schemas && schemas[i] && ns < FL_MAX_SCHEMAS; i++) v.schemas[ns++] = schemas[i];
    if (validate(&v, root, "", "") ||
        nonempty(c, "store", "leave it out for the default .fluke", e) ||
        nonempty(c, "out_dir", "leave it out for the default out/<name>", e)) {
        fl_config_free(c);
        return -1;
    }
    /* The name is not inherited: a config extending smoke.json is its own run with its own
     * outputs, unless it says otherwise. */
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const fl_cfg_origin *no = fl_cfg_origins_get(&c->index, "name");
    int own_name = name && no && no->file == c->files[0];
    if (own_name) {
        c->name = strdup(name->valuestring);
    } else {
        const char *b = strrchr(c->file, '/');
        c->name = strdup(b ? b + 1 : c->file);
        char *dot = c->name ? strrchr(c->name, '.') : NULL;
        if (dot && !strcmp(dot, ".json")) *dot = '\0';
    }
    if (!c->name) {
        fl_config_free(c);
        return fl_errf(e, "out of memory");
    }
    if (check_name(c, own_name, e)) {
        fl_config_free(c);
        return -1;
    }
    c->index.work = NULL; /* lookups after loading are not counted (c may be moved) */
    c->origins = c->index.v;
    c->norigins = c->index.n;
    return 0;
}

void fl_config_free(fl_config *c) {
    cJSON_Delete(c->root);
    free(c->file);
    free(c->dir);
    free(c->name);
    for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
    free(c->files);
    fl_cfg_origins_free(&c->index);
    memset(c, 0, sizeof *c);
}

const char *fl_config_where(const fl_config *c, const char *keypath, char *buf, size_t len) {
    const fl_cfg_origin *o = fl_cfg_origins_get(&c->index, keypath);
    if (o)
        snprintf(buf, len, "%s:%d", o->file, o->line);
    else
        snprintf(buf, len, "%s", c->file ? c->file : c->nfiles ? c->files[0] : "config");
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
