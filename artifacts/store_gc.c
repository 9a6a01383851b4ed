/* fl_store_gc: mark and sweep. Roots are the record keys listed in ref files (they also keep
 * their work dirs); with a size cap,
 * further records are kept most recently used first (record mtime, touched on every read) while
 * everything kept fits. Records go first (and durably), then unreachable trees and objects, so a
 * crash mid-gc never leaves a record pointing at deleted outputs. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

typedef struct item {
    fl_digest d;
    uint64_t size;
    int live;
    uint32_t stamp; /* last collect() pass that counted it */
} item;

typedef struct items {
    item *v;
    size_t n, cap;
    fl_dset idx; /* digest -> index + 1 */
} items;

typedef struct rec {
    fl_digest key, tree;
    int64_t mtime_ns;
    int parsed, keep;
} rec;

typedef struct pend {
    items *set;
    size_t i;
} pend;

typedef struct gctx {
    fl_store *s;
    items objs, trees;
    rec *recs;
    size_t nrec, caprec;
    fl_dset roots;
    pend *pending;
    size_t npend, cappend;
    uint32_t stamp;
    fl_err ignored; /* collect()'s tree load errors (verify's job): not one per stack frame */
} gctx;

static int add_item(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                    fl_err *e) {
    items *it = arg;
    if (it->n == it->cap) {
        size_t nc = it->cap ? it->cap * 2 : 1024;
        item *nv = realloc(it->v, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory");
        it->v = nv;
        it->cap = nc;
    }
    int *slot = fl__dset_get(&it->idx, d, 1);
    if (!slot) return fl_errf(e, "out of memory");
    it->v[it->n] = (item){*d, (uint64_t)st->st_size, 0, 0};
    *slot = (int)++it->n;
    return 0;
}

static int add_rec(const fl_digest *key, const char *path, const struct stat *st, void *arg,
                   fl_err *e) {
    gctx *g = arg;
    if (g->nrec == g->caprec) {
        size_t nc = g->caprec ? g->caprec * 2 : 256;
        rec *nv = realloc(g->recs, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory");
        g->recs = nv;
        g->caprec = nc;
    }
    rec *r = &g->recs[g->nrec++];
    memset(r, 0, sizeof *r);
    r->key = *key;
    r->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    size_t len;
    fl_err ignored;
    char *buf = fl_read_file(path, &len, &ignored);
    const char *json;
    size_t jl;
    if (buf && fl__record_parse(buf, len, path, &r->tree, &json, &jl, &ignored) == 0) r->parsed = 1;
    free(buf);
    return 0;
}

/* Every line of every file under dir that is a 32-hex key becomes a root (other lines, such as
 * comments, are ignored). A ref gc cannot read (a link, a FIFO, a NUL byte) or that has text but
 * no key at all is damage: reading it as "no references" would delete the results and
 * checkpoints it protects, so gc refuses. */
static int read_refs(gctx *g, const char *dir, fl_err *e) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : fl_errf(e, "cannot open %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        /* NAME.tmp.PID: an atomic write a killed writer left; NAME itself still holds the keys */
        if (strstr(de->d_name, ".tmp.")) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        struct stat st;
        if (!p) rc = fl_errf(e, "out of memory");
        else if (lstat(p, &st) != 0) rc = 0; /* vanished */
        else if (S_ISDIR(st.st_mode)) rc = read_refs(g, p, e);
        else if (!S_ISREG(st.st_mode))
            rc = fl_errf(e, "gc: the ref %s is %s, not a file of keys: not collecting (remove or repair it)", p,
                         fl_file_kind(st.st_mode));
        else {
            size_t len = 0;
            char *text = fl_read_file_flags(p, &len, (size_t)64 << 20, FL_READ_NOFOLLOW, e);
            if (!text) rc = -1;
            else if (strlen(text) != len)
                rc = fl_errf(e, "gc: the ref %s holds a NUL byte: damaged, not collecting (remove or repair it)", p);
            size_t keys = 0, lines = 0;
            for (char *line = text, *next; rc == 0 && line && *line; line = next) {
                next = strchr(line, '\n');
                if (next) *next++ = '\0';
                else next = line + strlen(line);
                size_t l = strlen(line);
                while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = '\0';
                while (*line == ' ' || *line == '\t') line++;
                if (!*line || *line == '#') continue;
                lines++;
                line[strcspn(line, " \t")] = '\0'; /* "key node-id" lines: the key */
                fl_digest k;
                if (fl_digest_from_hex(line, &k) != 0) continue;
                keys++;
                if (!fl__dset_get(&g->roots, &k, 1)) rc = fl_errf(e, "out of memory");
            }
            if (rc == 0 && lines > 0 && keys == 0)
                rc = fl_errf(e, "gc: the ref %s has text but no key: damaged, not collecting (remove or repair it)", p);
            free(text);
        }
        free(p);
    }
    closedir(d);
    return rc;
}

static int push(gctx *g, items *set, size_t i, uint64_t *add, fl_err *e) {
    if (set->v[i].live || set->v[i].stamp == g->stamp) return 0;
    if (g->npend == g->cappend) {
        size_t nc = g->cappend ? g->cappend * 2 : 1024;
        pend *nv = realloc(g->pending, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory");
        g->pending = nv;
        g->cappend = nc;
    }
    set->v[i].stamp = g->stamp;
    *add += set->v[i].size;
    g->pending[g->npend++] = (pend){set, i};
    return 1;
}

/* Adds to pending (and *add) every tree and object under tree d that is not yet live. depth is
 * d's nesting level (the record's tree is 0); a tree nested deeper than any real directory can
 * be is kept but not descended into, like any other corrupt tree (verify's job), so a crafted
 * chain cannot overflow the stack. */
static int collect(gctx *g, const fl_digest *d, int depth, uint64_t *add, fl_err *e) {
    int *ti = fl__dset_get(&g->trees.idx, d, 0);
    if (!ti) return 0; /* missing: nothing to keep */
    int pushed = push(g, &g->trees, (size_t)*ti - 1, add, e);
    if (pushed <= 0) return pushed;
    if (depth > FL_MAX_TREE_DEPTH) return 0; /* as verify: deeper is damage */
    fl_tree t;
    if (fl__tree_load(g->s, d, &t, NULL, &g->ignored) != 0) return 0; /* corrupt: verify's job */
    int rc = 0;
    for (size_t i = 0; i < t.n && rc == 0; i++) {
        if (t.v[i].mode == FL_MODE_DIR) {
            rc = collect(g, &t.v[i].d, depth + 1, add, e);
        } else {
            int *oi = fl__dset_get(&g->objs.idx, &t.v[i].d, 0);
            if (oi && push(g, &g->objs, (size_t)*oi - 1, add, e) < 0) rc = -1;
        }
    }
    fl__tree_free(&t);
    return rc < 0 ? -1 : 0;
}

static void commit_pending(gctx *g, int keep) {
    for (size_t i = 0; i < g->npend; i++)
        if (keep) g->pending[i].set->v[g->pending[i].i].live = 1;
    g->npend = 0;
}

static int by_recency(const void *a, const void *b) {
    int64_t x = ((const rec *)a)->mtime_ns, y = ((const rec *)b)->mtime_ns;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int sweep(gctx *g, items *set, const char *kind, uint64_t *kept, uint64_t *removed,
                 uint64_t *bytes_kept, uint64_t *bytes_freed, fl_err *e) {
    for (size_t i = 0; i < set->n; i++) {
        item *it = &set->v[i];
        if (it->live) {
            if (kept) (*kept)++;
            *bytes_kept += it->size;
            continue;
        }
        char *p = fl__shard_path(g->s, kind, &it->d);
        if (!p) return fl_errf(e, "out of memory");
        int rc = unlink(p) == 0 || errno == ENOENT ? 0 : fl_errf(e, "cannot remove %s: %s", p, strerror(errno));
        free(p);
        if (rc != 0) return -1;
        if (removed) (*removed)++;
        *bytes_freed += it->size;
    }
    return 0;
}

static int sweep_checkouts(gctx *g, fl_err *e) {
    char *dir = fl_strdupf("%s/checkouts", g->s->root);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        fl_digest t;
        if (!fl__is_hex32(de->d_name) || fl_digest_from_hex(de->d_name, &t) != 0) continue;
        int *ti = fl__dset_get(&g->trees.idx, &t, 0);
        if (ti && g->trees.v[*ti - 1].live) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        rc = p ? fl_remove_tree(p, e) : fl_errf(e, "out of memory");
        free(p);
    }
    closedir(d);
    free(dir);
    return rc;
}

/* work/<key>/ holds a started stage's checkpoints until it commits; one whose key no ref lists
 * (the runs record the keys of stages that started and did not finish) belongs to no config. */
static int sweep_work(gctx *g, uint64_t *removed, fl_err *e) {
    char *dir = fl_strdupf("%s/work", g->s->root);
    if (!dir) return fl_errf(e, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        int rc = errno == ENOENT ? 0 : fl_errf(e, "cannot open %s: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        fl_digest k;
        if (!fl__is_hex32(de->d_name) || fl_digest_from_hex(de->d_name, &k) != 0) continue;
        if (fl__dset_get(&g->roots, &k, 0)) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        rc = p ? fl_remove_tree(p, e) : fl_errf(e, "out of memory");
        free(p);
        if (rc == 0) (*removed)++;
    }
    closedir(d);
    free(dir);
    return rc;
}

static int run_gc(gctx *g, uint64_t max_bytes, fl_gc_report *r, fl_err *e) {
    char *refs = fl_strdupf("%s/refs", g->s->root);
    if (!refs) return fl_errf(e, "out of memory");
    int rc = read_refs(g, refs, e);
    free(refs);
    if (rc == 0) rc = fl__scan_shards(g->s, "objects", add_item, &g->objs, e);
    if (rc == 0) rc = fl__scan_shards(g->s, "trees", add_item, &g->trees, e);
    if (rc == 0) rc = fl__scan_shards(g->s, "records", add_rec, g, e);
    if (rc != 0) return -1;
    uint64_t total = 0;
    for (size_t i = 0; i < g->nrec; i++) { /* roots: kept whatever their size */
        rec *rr = &g->recs[i];
        if (!fl__dset_get(&g->roots, &rr->key, 0)) continue;
        rr->keep = 1;
        g->stamp++;
        if (rr->parsed && collect(g, &rr->tree, 0, &total, e) != 0) return -1;
        commit_pending(g, 1);
    }
    if (max_bytes > 0) {
        if (g->nrec) qsort(g->recs, g->nrec, sizeof *g->recs, by_recency);
        for (size_t i = 0; i < g->nrec; i++) {
            rec *rr = &g->recs[i];
            if (rr->keep || !rr->parsed) continue;
            uint64_t add = 0;
            g->stamp++;
            if (collect(g, &rr->tree, 0, &add, e) != 0) return -1;
            int fits = total + add <= max_bytes;
            commit_pending(g, fits);
            if (!fits) break; /* least recently used from here on */
            rr->keep = 1;
            total += add;
        }
    }
    /* Records first, durably: afterwards nothing points at what is about to go. */
    uint8_t touched[256] = {0};
    for (size_t i = 0; i < g->nrec; i++) {
        rec *rr = &g->recs[i];
        if (rr->keep) {
            r->records_kept++;
            continue;
        }
        char *p = fl__shard_path(g->s, "records", &rr->key);
        if (!p) return fl_errf(e, "out of memory");
        int bad = unlink(p) != 0 && errno != ENOENT;
        if (bad) fl_errf(e, "cannot remove %s: %s", p, strerror(errno));
        free(p);
        if (bad) return -1;
        touched[rr->key.b[0]] = 1;
        r->records_removed++;
    }
    for (int i = 0; i < 256; i++) {
        if (!touched[i]) continue;
        char *sd = fl_strdupf("%s/records/%02x", g->s->root, i);
        rc = sd ? fl__fsync_dir(sd, e) : fl_errf(e, "out of memory");
        free(sd);
        if (rc != 0) return -1;
    }
    if (sweep_checkouts(g, e) != 0 || sweep_work(g, &r->work_removed, e) != 0) return -1;
    if (sweep(g, &g->trees, "trees", NULL, NULL, &r->bytes_kept, &r->bytes_freed, e) != 0) return -1;
    return sweep(g, &g->objs, "objects", &r->objects_kept, &r->objects_removed, &r->bytes_kept,
                 &r->bytes_freed, e);
}

int fl_store_gc(fl_store *s, uint64_t max_bytes, fl_gc_report *r, fl_err *e) {
    fl_gc_report local;
    if (!r) r = &local;
    memset(r, 0, sizeof *r);
    gctx g;
    memset(&g, 0, sizeof g);
    g.s = s;
    int rc = run_gc(&g, max_bytes, r, e);
    free(g.objs.v);
    fl__dset_free(&g.objs.idx);
    free(g.trees.v);
    fl__dset_free(&g.trees.idx);
    free(g.recs);
    free(g.pending);
    fl__dset_free(&g.roots);
    return rc;
}
