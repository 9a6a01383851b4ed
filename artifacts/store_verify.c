/* fl_store_verify: re-hashes every object and tree; a corrupt one is reported, moved to
 * quarantine/, and everything that depends on it goes: checkouts (hard links share the damaged
 * inode) and records whose tree reaches it, so those stages recompute on the next run. A tree
 * that reaches a missing object or tree is treated the same way. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

/* Values in the digest maps. */
enum { V_OK = 1, V_CORRUPT = 2 };          /* objects / trees seen on disk */
enum { R_GOOD = 1, R_BAD = 2, R_BUSY = 3 }; /* tree reachability memo */

typedef struct vctx {
    fl_store *s;
    fl_verify_report *r;
    void (*on_corrupt)(const char *line, void *arg);
    void *arg;
    fl_dset objs, trees, memo;
} vctx;

static void report(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(vctx *v, const char *fmt, ...) {
    if (!v->on_corrupt) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    v->on_corrupt(line, v->arg);
}

/* A damaged entry that cannot even be read as what it should be (a directory, a symbolic link or
 * a FIFO where a file belongs, a file where a shard directory belongs, an oversized file):
 * reported, counted as corrupt, marked in map (may be NULL) and moved to quarantine/. */
static int odd_entry(vctx *v, const char *what, const char *kind, const char *prefix,
                     const fl_digest *d, const char *path, const char *why, fl_dset *map,
                     fl_err *e) {
    v->r->corrupt++;
    if (!d) { /* <kind>/<xx> is not a directory */
        const char *xx = strrchr(path, '/') + 1;
        report(v, "damaged store: %s/%s is not a directory (%s)", kind, xx, why);
        char name[16];
        snprintf(name, sizeof name, "%s-%.2s", kind, xx);
        return fl__quarantine(v->s, path, "shard-", name, e);
    }
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    report(v, "corrupt %s %s: %s", what, hex, why);
    if (map) {
        int *val = fl__dset_get(map, d, 1);
        if (!val) return fl_errf(e, "out of memory");
        *val = V_CORRUPT;
    }
    return fl__quarantine(v->s, path, prefix, hex, e);
}

static const char *kind_of(const struct stat *st, char *buf, size_t n) {
    snprintf(buf, n, "%s, not a regular file", fl_file_kind(st->st_mode));
    return buf;
}

static int odd_object(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                      fl_err *e) {
    vctx *v = arg;
    char why[64];
    return odd_entry(v, "object", "objects", "", d, path, kind_of(st, why, sizeof why), &v->objs,
                     e);
}

static int odd_tree(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                    fl_err *e) {
    vctx *v = arg;
    char why[64];
    return odd_entry(v, "tree", "trees", "tree-", d, path, kind_of(st, why, sizeof why), &v->trees,
                     e);
}

static int check_object(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                        fl_err *e) {
    vctx *v = arg;
    fl_digest got;
    if (fl__hash_path(path, 1, &got, e) != 0) return -1;
    v->r->objects++;
    v->r->bytes += (uint64_t)st->st_size;
    int *val = fl__dset_get(&v->objs, d, 1);
    if (!val) return fl_errf(e, "out of memory");
    if (fl_digest_eq(&got, d)) {
        *val = V_OK;
        return 0;
    }
    *val = V_CORRUPT;
    v->r->corrupt++;
    char hex[FL_DIGEST_HEX], ghex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    fl_digest_hex(&got, ghex);
    report(v, "corrupt object %s: content hashes to %s", hex, ghex);
    return fl__quarantine(v->s, path, "", hex, e);
}

static int check_tree(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                      fl_err *e) {
    vctx *v = arg;
    size_t len;
    fl_err perr;
    char *buf = fl__store_read(path, FL_TREE_MAX, &len, &perr);
    if (!buf) {
        if (strstr(perr.msg, "out of memory")) return fl_errf(e, "%s", perr.msg);
        return odd_entry(v, "tree", "trees", "tree-", d, path, perr.msg, &v->trees, e);
    }
    v->r->trees++;
    v->r->bytes += (uint64_t)st->st_size;
    fl_digest got;
    fl__tree_digest(buf, len, &got);
    fl_tree t;
    int parsed = fl__tree_parse(buf, len, &t, path, &perr) == 0;
    if (parsed) fl__tree_free(&t);
    free(buf);
    int *val = fl__dset_get(&v->trees, d, 1);
    if (!val) return fl_errf(e, "out of memory");
    if (fl_digest_eq(&got, d) && parsed) {
        *val = V_OK;
        return 0;
    }
    *val = V_CORRUPT;
    v->r->corrupt++;
    char hex[FL_DIGEST_HEX], ghex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    fl_digest_hex(&got, ghex);
    if (!fl_digest_eq(&got, d)) report(v, "corrupt tree %s: content hashes to %s", hex, ghex);
    else report(v, "corrupt tree %s: %s", hex, perr.msg);
    return fl__quarantine(v->s, path, "tree-", hex, e);
}

/* 1 when tree d (or anything below it) is corrupt or missing, 0 when sound, -1 on error. */
static int tree_bad(vctx *v, const fl_digest *d, int depth, fl_err *e) {
    int *memo = fl__dset_get(&v->memo, d, 1);
    if (!memo) return fl_errf(e, "out of memory");
    if (*memo == R_GOOD) return 0;
    if (*memo == R_BAD || *memo == R_BUSY) return 1; /* a cycle cannot come from real hashes */
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    if (depth > FL_MAX_TREE_DEPTH) {
        report(v, "corrupt tree %s: nested more than %d levels deep", hex, FL_MAX_TREE_DEPTH);
        v->r->corrupt++;
        *memo = R_BAD;
        return 1;
    }
    int *seen = fl__dset_get(&v->trees, d, 0);
    if (!seen || *seen != V_OK) {
        if (!seen) report(v, "missing tree %s", hex);
        *memo = R_BAD;
        return 1;
    }
    *memo = R_BUSY;
    fl_tree t;
    if (fl__tree_load(v->s, d, &t, NULL, e) != 0) return -1; /* it verified a moment ago */
    int bad = 0;
    for (size_t i = 0; i < t.n && !bad; i++) {
        const fl_tree_entry *en = &t.v[i];
        if (en->mode == FL_MODE_DIR) {
            bad = tree_bad(v, &en->d, depth + 1, e);
            if (bad < 0) break;
        } else {
            int *o = fl__dset_get(&v->objs, &en->d, 0);
            if (!o) {
                char ohex[FL_DIGEST_HEX];
                fl_digest_hex(&en->d, ohex);
                report(v, "missing object %s (%s in tree %s)", ohex, en->name, hex);
            }
            bad = !o || *o != V_OK;
        }
    }
    fl__tree_free(&t);
    if (bad < 0) return -1;
    /* The memo slot may have moved while the map grew: look it up again. */
    memo = fl__dset_get(&v->memo, d, 1);
    if (!memo) return fl_errf(e, "out of memory");
    *memo = bad ? R_BAD : R_GOOD;
    return bad;
}

static int odd_record(const fl_digest *key, const char *path, const struct stat *st, void *arg,
                      fl_err *e) {
    vctx *v = arg;
    char why[64];
    if (key) v->r->records_dropped++;
    return odd_entry(v, "record", "records", "record-", key, path, kind_of(st, why, sizeof why),
                     NULL, e);
}

static int check_record(const fl_digest *key, const char *path, const struct stat *st, void *arg,
                        fl_err *e) {
    vctx *v = arg;
    (void)st;
    size_t len;
    fl_err perr;
    char khex[FL_DIGEST_HEX];
    fl_digest_hex(key, khex);
    char *buf = fl__store_read(path, FL_RECORD_MAX, &len, &perr);
    if (!buf) {
        if (strstr(perr.msg, "out of memory")) return fl_errf(e, "%s", perr.msg);
        v->r->records_dropped++;
        return odd_entry(v, "record", "records", "record-", key, path, perr.msg, NULL, e);
    }
    fl_digest tree;
    const char *json;
    size_t jl;
    int old = 0, bad;
    if (fl__record_parse_key(buf, len, path, key, &tree, &json, &jl, &old, &perr) != 0) {
        free(buf);
        v->r->records_dropped++;
        if (old) { /* unreachable since its format changed, not damaged */
            report(v, "dropping record %s: written by an older fluke (format 1)", khex);
            return fl_store_record_drop(v->s, key, e);
        }
        v->r->corrupt++;
        report(v, "%s", perr.msg);
        return fl__quarantine(v->s, path, "record-", khex, e);
    }
    free(buf);
    bad = tree_bad(v, &tree, 0, e);
    if (bad < 0) return -1;
    if (!bad) return 0;
    report(v, "dropping record %s: its outputs are damaged", khex);
    v->r->records_dropped++;
    return fl_store_record_drop(v->s, key, e);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dot(const struct dirent *d) {
    return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/* A checkout can be damaged without any object being corrupt: a stage running as root ignores
 * the read-only bits and may delete, add or replace files in its inputs. Returns 1 (with why)
 * when the directory at path no longer matches tree d, 0 when it does, -1 on error. */
static int checkout_damaged(vctx *v, const fl_digest *d, const char *path, char *why, size_t wn,
                            fl_err *e) {
    fl_tree t;
    if (fl__tree_load(v->s, d, &t, NULL, e) != 0) return -1; /* tree_bad() vetted it already */
    struct dirent **names = NULL;
    int n = scandir(path, &names, not_dot, by_name), bad = 0;
    if (n < 0) {
        snprintf(why, wn, "cannot list %s: %s", path, strerror(errno));
        bad = 1;
    } else if ((size_t)n != t.n) {
        snprintf(why, wn, "%s has %d entries, its tree %zu", path, n, t.n);
        bad = 1;
    }
    for (size_t i = 0; !bad && i < t.n; i++) {
        const fl_tree_entry *en = &t.v[i];
        char *p = fl_strdupf("%s/%s", path, en->name);
        if (!p) {
            bad = fl_errf(e, "out of memory");
            break;
        }
        struct stat st, ost;
        if (strcmp(names[i]->d_name, en->name) != 0 || lstat(p, &st) != 0) {
            snprintf(why, wn, "%s is missing", p);
            bad = 1;
        } else if (en->mode == FL_MODE_DIR) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(why, wn, "%s is not a directory", p);
                bad = 1;
            } else {
                bad = checkout_damaged(v, &en->d, p, why, wn, e);
            }
        } else {
            char *op = fl__shard_path(v->s, "objects", &en->d);
            fl_digest got;
            if (!op) bad = fl_errf(e, "out of memory");
            else if (!S_ISREG(st.st_mode)) {
                snprintf(why, wn, "%s is not a regular file", p);
                bad = 1;
            } else if (stat(op, &ost) == 0 && ost.st_ino == st.st_ino && ost.st_dev == st.st_dev) {
                bad = 0; /* a hard link to the object, which was just re-hashed */
            } else if (fl_hash_file(p, &got, e) != 0) {
                bad = -1;
            } else if (!fl_digest_eq(&got, &en->d)) {
                snprintf(why, wn, "%s was modified", p);
                bad = 1;
            }
            free(op);
        }
        free(p);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    fl__tree_free(&t);
    return bad;
}

static int check_checkouts(vctx *v, fl_err *e) {
    char *dir = fl_strdupf("%s/checkouts", v->s->root);
    if (!dir) return fl_errf(e, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        fl_digest t;
        if (!fl__is_hex32(de->d_name) || fl_digest_from_hex(de->d_name, &t) != 0) continue;
        int bad = tree_bad(v, &t, 0, e);
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        struct stat st;
        if (!p) bad = fl_errf(e, "out of memory");
        else if (bad == 0 && lstat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
            /* A file or a symbolic link (which could lead a stage anywhere) in its place. */
            report(v, "damaged checkout %s: %s, not a directory", de->d_name,
                   fl_file_kind(st.st_mode));
            bad = 1;
        }
        if (bad == 0) {
            char why[600];
            bad = checkout_damaged(v, &t, p, why, sizeof why, e);
            if (bad > 0) report(v, "damaged checkout %s: %s", de->d_name, why);
        }
        if (bad > 0) {
            rc = fl_remove_tree(p, e);
            if (rc == 0) v->r->checkouts_removed++;
        } else if (bad < 0) {
            rc = -1;
        }
        free(p);
    }
    closedir(d);
    free(dir);
    return rc;
}

int fl_store_verify(fl_store *s, fl_verify_report *r,
                    void (*on_corrupt)(const char *line, void *arg), void *arg, fl_err *e) {
    fl_verify_report local;
    if (!r) r = &local;
    memset(r, 0, sizeof *r);
    vctx v = {.s = s, .r = r, .on_corrupt = on_corrupt, .arg = arg};
    int rc = fl__scan_shards_all(s, "objects", check_object, odd_object, &v, e);
    if (rc == 0) rc = fl__scan_shards_all(s, "trees", check_tree, odd_tree, &v, e);
    if (rc == 0) rc = check_checkouts(&v, e);
    if (rc == 0) rc = fl__scan_shards_all(s, "records", check_record, odd_record, &v, e);
    fl__dset_free(&v.objs);
    fl__dset_free(&v.trees);
    fl__dset_free(&v.memo);
    return rc;
}
