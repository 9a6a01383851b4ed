/* Point checks outside `verify`: the digest one path has inside a tree, and re-hashing a single
 * object (quarantined when it no longer matches its name), for callers that find damage on the
 * way (publishing to out/). */
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
