#include "dag/session.h"

#include "artifacts/remote.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int build_graph(fl_session *s, fl_err *e) {
    fl_plan *p = &s->plan;
    size_t n = p->n;
    s->deps = calloc(n ? n : 1, sizeof *s->deps);
    s->ndeps = calloc(n ? n : 1, sizeof *s->ndeps);
    s->order = calloc(n ? n : 1, sizeof *s->order);
    if (!s->deps || !s->ndeps || !s->order) return fl_errf(e, "out of memory");
    for (size_t i = 0; i < n; i++) {
        fl_plan_node *nd = p->nodes[i];
        s->deps[i] = calloc(nd->ninputs + 1, sizeof **s->deps);
        if (!s->deps[i]) return fl_errf(e, "out of memory");
        for (size_t k = 0; k < nd->ninputs; k++) {
            fl_plan_input *in = &nd->inputs[k];
            if (in->path && in->path[0] != '/') { /* external paths are relative to the config */
                char *abs = fl_strdupf("%s/%s", p->config_dir, in->path);
                if (!abs) return fl_errf(e, "out of memory");
                free(in->path);
                in->path = abs;
            }
            if (!in->from_node) continue;
            fl_plan_node *up = fl_plan_find(p, in->from_node);
            if (!up)
                return fl_errf(e, "stage '%s': input '%s' reads from unknown stage '%s'", nd->id,
                               in->name, in->from_node);
            int dup = 0;
            for (size_t j = 0; j < s->ndeps[i]; j++) dup |= s->deps[i][j] == up->index;
            if (!dup) s->deps[i][s->ndeps[i]++] = up->index;
        }
    }
    /* Kahn's algorithm in plan order, so the order is stable. */
    size_t *indeg = calloc(n ? n : 1, sizeof *indeg), done = 0;
    unsigned char *placed = calloc(n ? n : 1, 1);
    if (!indeg || !placed) {
        free(indeg);
        free(placed);
        return fl_errf(e, "out of memory");
    }
    for (size_t i = 0; i < n; i++) indeg[i] = s->ndeps[i];
    while (done < n) {
        size_t pick = n;
        for (size_t i = 0; i < n && pick == n; i++)
            if (!placed[i] && indeg[i] == 0) pick = i;
        if (pick == n) break;
        placed[pick] = 1;
        s->order[done++] = pick;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < s->ndeps[i]; j++)
                if (s->deps[i][j] == pick) indeg[i]--;
    }
    if (done < n) {
        /* Walk upstream from an unplaced node until a node repeats: that is the cycle. */
        size_t start = 0;
        while (placed[start]) start++;
        size_t *path = calloc(n + 1, sizeof *path), len = 0, cur = start;
        unsigned char *seen = calloc(n, 1);
        if (!path || !seen) {
            free(path);
            free(seen);
            free(indeg);
            free(placed);
            return fl_errf(e, "out of memory");
        }
        while (!seen[cur]) {
            seen[cur] = 1;
            path[len++] = cur;
            size_t next = cur;
            for (size_t j = 0; j < s->ndeps[cur]; j++)
                if (!placed[s->deps[cur][j]]) {
                    next = s->deps[cur][j];
                    break;
                }
            cur = next;
        }
        char msg[900] = "";
        size_t first = 0;
        while (path[first] != cur) first++;
        /* path runs downstream -> upstream; print it upstream -> downstream */
        for (size_t k = len; k-- > first;) {
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof msg - l, "%s -> ", p->nodes[path[k]]->id);
        }
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof msg - l, "%s", p->nodes[path[len - 1]]->id);
        free(path);
        free(seen);
        free(indeg);
        free(placed);
        return fl_errf(e, "%s: the stages form a cycle: %s", s->cfg.file, msg);
    }
    free(indeg);
    free(placed);
    return 0;
}

/* path made absolute and lexically normal (no ".", "..", "//", trailing "/"); NULL on overflow. */
static char *abs_normal(const char *path) {
    char cwd[4096], *buf = NULL;
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) return NULL;
    char *full = path[0] == '/' ? strdup(path) : fl_strdupf("%s/%s", cwd, path);
    if (!full || !(buf = malloc(strlen(full) + 2))) {
        free(full);
        return NULL;
    }
    size_t n = 0;
    for (char *tok = strtok(full, "/"); tok; tok = strtok(NULL, "/")) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..")) {
            while (n > 0 && buf[--n] != '/') {}
            continue;
        }
        buf[n++] = '/';
        size_t l = strlen(tok);
        memcpy(buf + n, tok, l);
        n += l;
    }
    if (n == 0) buf[n++] = '/';
    buf[n] = '\0';
    free(full);
    return buf;
}

/* Published files must not land inside the store: they would mix with its objects, refs and
 * temporaries (gc and tmp cleanup delete there), and a published name could shadow a store
 * entry. Compared by path, and by the real path where both exist (a link into the store). */
static int check_out_dir(const fl_session *s, fl_err *e) {
    char *o = abs_normal(s->out_dir), *st = abs_normal(s->store_path);
    char *ro = realpath(s->out_dir, NULL), *rs = realpath(s->store_path, NULL);
    int inside = 0;
    const char *pairs[2][2] = {{o, st}, {ro, rs}};
    for (int k = 0; k < 2; k++) {
        const char *a = pairs[k][0], *b = pairs[k][1];
        size_t bl = b ? strlen(b) : 0;
        if (a && b && !strncmp(a, b, bl) && (a[bl] == '\0' || a[bl] == '/' || !strcmp(b, "/")))
            inside = 1;
    }
    int rc = 0;
    struct stat sb;
    if (!o || !st) rc = fl_errf(e, "out of memory");
    else if (strlen(o) >= 4000) /* fl_mkdirs' limit; found only after every stage had run */
        rc = fl_errf(e, "%s: out_dir is %zu bytes long: at most 4000", s->cfg.file, strlen(o));
    else if (stat(o, &sb) == 0 && !S_ISDIR(sb.st_mode))
        rc = fl_errf(e, "%s: out_dir %s exists and is not a folder", s->cfg.file, s->out_dir);
    else if (inside)
        rc = fl_errf(e,
                     "%s: out_dir %s is inside the store %s: published files would mix with the "
                     "store's own (choose a folder outside it)",
                     s->cfg.file, s->out_dir, s->store_path);
    free(o);
    free(st);
    free(ro);
    free(rs);
    return rc;
}

int fl_session_open(fl_session *s, const fl_registry *reg, const char *config_path, fl_err *e) {
    memset(s, 0, sizeof *s);
    s->reg = reg;
    if (fl_config_load(&s->cfg, config_path, reg->schemas, e)) return -1;
    fl_plan_init(&s->plan, s->cfg.dir);
    if (reg->plan(s->cfg.root, s->cfg.dir, &s->plan, e)) {
        fl_errprefix(e, "%s", s->cfg.file);
        return -1;
    }
    if (build_graph(s, e)) return -1;
    const cJSON *st = fl_config_get(s->cfg.root, "store");
    if (st)
        s->store_path = st->valuestring[0] == '/' ? strdup(st->valuestring)
                                                  : fl_strdupf("%s/%s", s->cfg.dir, st->valuestring);
    else
        s->store_path = strdup(".fluke");
    const cJSON *od = fl_config_get(s->cfg.root, "out_dir");
    if (od)
        s->out_dir = od->valuestring[0] == '/' ? strdup(od->valuestring)
                                               : fl_strdupf("%s/%s", s->cfg.dir, od->valuestring);
    else
        s->out_dir = fl_strdupf("out/%s", s->cfg.name);
    if (!s->store_path || !s->out_dir) return fl_errf(e, "out of memory");
    return check_out_dir(s, e);
}

int fl_session_store(fl_session *s, fl_err *e) {
    if (s->store) return 0;
    s->store = fl_store_open(s->store_path, &s->store_opts, e);
    return s->store ? 0 : -1;
}

void fl_session_close(fl_session *s) {
    if (s->store) fl_store_close(s->store);
    fl_remote_close(s->remote);
    for (size_t i = 0; i < s->plan.n; i++) free(s->deps ? s->deps[i] : NULL);
    free(s->deps);
    free(s->ndeps);
    free(s->order);
    fl_plan_free(&s->plan);
    fl_config_free(&s->cfg);
    free(s->store_path);
    free(s->out_dir);
    cJSON_Delete(s->prev);
    cJSON_Delete(s->external);
    memset(s, 0, sizeof *s);
}

size_t fl_session_select(const fl_session *s, const char *what, unsigned char *mark) {
    size_t hits = 0;
    for (size_t i = 0; i < s->plan.n; i++) {
        const fl_plan_node *n = s->plan.nodes[i];
        if (!strcmp(n->id, what) || !strcmp(n->def->name, what)) {
            mark[i] = 1;
            hits++;
        }
    }
    return hits;
}

void fl_session_close_upstream(const fl_session *s, unsigned char *mark) {
    /* reverse topological order: a marked node marks its deps before they are visited */
    for (size_t k = s->plan.n; k-- > 0;) {
        size_t i = s->order[k];
        if (!mark[i]) continue;
        for (size_t j = 0; j < s->ndeps[i]; j++) mark[s->deps[i][j]] = 1;
    }
}

static char *run_ref_name(const fl_session *s) { return fl_strdupf("runs/%s", s->cfg.name); }

static void load_prev(fl_session *s) {
    if (s->prev) return;
    s->prev = cJSON_CreateObject();
    fl_err e = {0};
    if (fl_session_store(s, &e)) return;
    char *ref = run_ref_name(s);
    char *text = fl_store_ref_get(s->store, ref, &e);
    free(ref);
    if (!text) return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        fl_digest key;
        if (fl_digest_from_hex(line, &key)) continue;
        char *json = NULL;
        if (fl_store_record_peek(s->store, &key, NULL, &json, &e) != FL_RECORD_FOUND) continue;
        cJSON *rec = cJSON_Parse(json);
        free(json);
        const cJSON *id = rec ? cJSON_GetObjectItemCaseSensitive(rec, "node") : NULL;
        if (cJSON_IsString(id) && !cJSON_GetObjectItemCaseSensitive(s->prev, id->valuestring))
            cJSON_AddItemToObject(s->prev, id->valuestring, rec);
        else
            cJSON_Delete(rec);
    }
    free(text);
}

const cJSON *fl_session_prev(fl_session *s, const char *node_id) {
    load_prev(s);
    return cJSON_GetObjectItemCaseSensitive(s->prev, node_id);
}

/* refs/work/<name>: "key node" lines, one per node that ever started under this config (its
 * latest key). Rewritten under a lock, and only when the node's line changes. */
int fl_session_note_started(fl_session *s, const char *node_id, const fl_digest *key, fl_err *e) {
    if (fl_session_store(s, e)) return -1;
    char *name = fl_strdupf("work/%s", s->cfg.name);
    char *lname = fl_strdupf("ref-work-%s", s->cfg.name);
    if (!name || !lname) {
        free(name);
        free(lname);
        return fl_errf(e, "out of memory");
    }
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(key, hex);
    int rc = -1, fd = fl_store_lock(s->store, lname, 1, 1, e);
    char *old = NULL, *text = NULL;
    if (fd < 0) goto out;
    e->msg[0] = '\0';
    old = fl_store_ref_get(s->store, name, e);
    if (!old && e->msg[0]) goto out;
    size_t idl = strlen(node_id), cap = (old ? strlen(old) : 0) + FL_DIGEST_HEX + idl + 3, len = 0;
    if (!(text = malloc(cap))) {
        fl_errf(e, "out of memory");
        goto out;
    }
    int same = 0;
    for (char *l = old; l && *l;) {
        char *nl = strchr(l, '\n');
        size_t body = nl ? (size_t)(nl - l) : strlen(l); /* the line without its newline */
        const size_t h = FL_DIGEST_HEX - 1;
        int mine = body == h + 1 + idl && l[h] == ' ' && !memcmp(l + h + 1, node_id, idl);
        if (mine) {
            same = !memcmp(l, hex, h);
        } else {
            memcpy(text + len, l, body);
            len += body;
            text[len++] = '\n';
        }
        l += body + (nl != NULL);
    }
    len += (size_t)snprintf(text + len, cap - len, "%s %s\n", hex, node_id);
    rc = same ? 0 : fl_store_ref_set(s->store, name, text, e);
out:
    if (fd >= 0) fl_store_unlock(fd);
    free(old);
    free(text);
    free(name);
    free(lname);
    return rc;
}

int fl_session_save_run(fl_session *s, const fl_digest *keys, const unsigned char *have,
                        fl_err *e) {
    if (fl_session_store(s, e)) return -1;
    load_prev(s);
    size_t cap = 64 + 34 * (s->plan.n + (size_t)cJSON_GetArraySize(s->prev)), len = 0;
    char *text = malloc(cap);
    if (!text) return fl_errf(e, "out of memory");
    text[0] = '\0';
    for (size_t i = 0; i < s->plan.n; i++) {
        char hex[FL_DIGEST_HEX];
        if (have[i]) {
            fl_digest_hex(&keys[i], hex);
        } else {
            const cJSON *rec = cJSON_GetObjectItemCaseSensitive(s->prev, s->plan.nodes[i]->id);
            const cJSON *k = rec ? cJSON_GetObjectItemCaseSensitive(rec, "key") : NULL;
            if (!cJSON_IsString(k)) continue;
            snprintf(hex, sizeof hex, "%s", k->valuestring);
        }
        len += (size_t)snprintf(text + len, cap - len, "%s\n", hex);
    }
    char *ref = run_ref_name(s);
    int rc = ref ? fl_store_ref_set(s->store, ref, text, e) : fl_errf(e, "out of memory");
    free(ref);
    free(text);
    cJSON_Delete(s->prev); /* reload on next use */
    s->prev = NULL;
    return rc;
}
