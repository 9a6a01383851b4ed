/* Point checks outside `verify`: the digest one path has inside a tree, re-hashing a single
 * object (quarantined when it no longer matches its name), for callers that find damage on the
 * way (publishing to out/), and the read-only presence check of a record's tree (status). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artifacts/store_internal.h"

int fl_store_tree_lookup(fl_store *s, const fl_digest *tree, const char *relpath, fl_digest *out,
                         fl_err *e) {
    fl_digest cur = *tree;
    const char *p = relpath;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        fl_tree t;
        if (fl__tree_load(s, &cur, &t, NULL, e) != 0) return -1;
        const fl_tree_entry *hit = NULL;
        for (size_t i = 0; i < t.n && !hit; i++)
            if (strlen(t.v[i].name) == l && !memcmp(t.v[i].name, p, l)) hit = &t.v[i];
        int rc = 0, last = !slash;
        if (!hit) rc = fl_errf(e, "'%s' is not in the output tree", relpath);
        else if (last && hit->mode == FL_MODE_DIR) rc = fl_errf(e, "'%s' is a directory", relpath);
        else if (!last && hit->mode != FL_MODE_DIR) rc = fl_errf(e, "'%s': a file where a directory is expected", relpath);
        else if (last) *out = hit->d;
        else cur = hit->d;
        fl__tree_free(&t);
        if (rc != 0 || last) return rc;
        p = slash + 1;
    }
}

int fl_store_object_recheck(fl_store *s, const fl_digest *d, int *corrupt, fl_err *e) {
    *corrupt = 0;
    char *path = fl__shard_path(s, "objects", d);
    if (!path) return fl_errf(e, "out of memory");
    struct stat st;
    int rc = 0;
    if (lstat(path, &st) != 0) {
        *corrupt = 1; /* missing: nothing to set aside, but nothing to trust either */
        rc = errno == ENOENT ? 0 : fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
    } else {
        fl_digest got;
        if (!S_ISREG(st.st_mode) || fl_hash_file(path, &got, e) != 0 || !fl_digest_eq(&got, d)) {
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(d, hex);
            *corrupt = 1;
            rc = fl__quarantine(s, path, "", hex, e);
        }
    }
    free(path);
    return rc;
}

/* 1 when tree d and everything below it is present, 0 when not (e says what), -1 on error. The
 * trees are loaded (each re-hashed: they are small); objects are only lstat'ed. seen: trees
 * already found sound (shared subtrees are checked once). */
static int tree_intact(fl_store *s, fl_dset *seen, const fl_digest *d, int depth, fl_err *e) {
    int *v = fl__dset_get(seen, d, 1);
    if (!v) return fl_errf(e, "out of memory");
    if (*v) return 1;
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    if (depth > FL_MAX_TREE_DEPTH) {
        fl_errf(e, "tree %s is nested more than %d levels deep", hex, FL_MAX_TREE_DEPTH);
        return 0;
    }
    fl_tree t;
    if (fl__tree_load(s, d, &t, NULL, e) != 0) return strstr(e->msg, "out of memory") ? -1 : 0;
    int rc = 1;
    for (size_t i = 0; i < t.n && rc == 1; i++) {
        const fl_tree_entry *en = &t.v[i];
        if (en->mode == FL_MODE_DIR) {
            rc = tree_intact(s, seen, &en->d, depth + 1, e);
            continue;
        }
        char *path = fl__shard_path(s, "objects", &en->d);
        if (!path) {
            rc = fl_errf(e, "out of memory");
            break;
        }
        char ohex[FL_DIGEST_HEX];
        fl_digest_hex(&en->d, ohex);
        struct stat st;
        if (lstat(path, &st) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) {
                fl_errf(e, "missing object %s (%s in tree %s)", ohex, en->name, hex);
                rc = 0;
            } else {
                rc = fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
            }
        } else if (!S_ISREG(st.st_mode)) {
            fl_errf(e, "object %s (%s in tree %s) is not a regular file", ohex, en->name, hex);
            rc = 0;
        }
        free(path);
    }
    fl__tree_free(&t);
    int *done = rc == 1 ? fl__dset_get(seen, d, 0) : NULL; /* v may have moved as the map grew */
    if (done) *done = 1;
    return rc;
}

int fl_store_tree_intact(fl_store *s, const fl_digest *tree, fl_err *e) {
    fl_dset seen;
    memset(&seen, 0, sizeof seen);
    int rc = tree_intact(s, &seen, tree, 0, e);
    fl__dset_free(&seen);
    return rc;
}
