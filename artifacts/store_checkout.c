/* fl_store_checkout: materializes a tree as checkouts/<tree hex>/, read-only. Built in a private
 * directory under tmp/ from hard links into objects/ (copies where linking is impossible, and for
 * executables, whose mode cannot differ from the shared 0444 object inode), every directory
 * fsynced, then renamed into place in one step, so a checkout is either complete or absent. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

static int place_file(fl_store *s, const fl_tree_entry *en, const char *dst, const char *rel,
                      fl_err *e) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&en->d, hex);
    char *obj = fl__shard_path(s, "objects", &en->d);
    if (!obj) return fl_errf(e, "out of memory");
    int rc = 0;
    struct stat st;
    if (lstat(obj, &st) != 0 || !S_ISREG(st.st_mode)) { /* a symbolic link is damage too */
        rc = fl_errf(e, "missing object %s for %s", hex, rel);
        goto out;
    }
    if (en->mode == FL_MODE_FILE) {
        if (link(obj, dst) == 0) goto out;
        if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
            rc = fl_errf(e, "cannot link %s to %s: %s", obj, dst, strerror(errno));
            goto out;
        }
    }
    if ((rc = fl_copy_file(obj, dst, e)) != 0) goto out;
    if (chmod(dst, en->mode == FL_MODE_EXEC ? 0555 : 0444) != 0)
        rc = fl_errf(e, "cannot chmod %s: %s", dst, strerror(errno));
out:
    free(obj);
    return rc;
}

/* Builds the directory for tree d at path (which exists); rel is the path inside the checkout. */
static int build(fl_store *s, const fl_digest *d, const char *path, const char *rel, fl_err *e) {
    fl_tree t;
    int missing;
    if (fl__tree_load(s, d, &t, &missing, e) != 0) {
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(d, hex);
        if (missing) return fl_errf(e, "missing tree %s for %s", hex, *rel ? rel : ".");
        return fl_errprefix(e, "checkout of %s", *rel ? rel : ".");
    }
    int rc = 0;
    for (size_t i = 0; i < t.n && rc == 0; i++) {
        const fl_tree_entry *en = &t.v[i];
        char *dst = fl_strdupf("%s/%s", path, en->name);
        char *r = *rel ? fl_strdupf("%s/%s", rel, en->name) : strdup(en->name);
        if (!dst || !r) rc = fl_errf(e, "out of memory");
        else if (en->mode == FL_MODE_DIR) {
            if (mkdir(dst, 0755) != 0) rc = fl_errf(e, "cannot create %s: %s", dst, strerror(errno));
            else rc = build(s, &en->d, dst, r, e);
        } else {
            rc = place_file(s, en, dst, r, e);
        }
        free(dst);
        free(r);
    }
    fl__tree_free(&t);
    if (rc == 0) rc = fl__fsync_dir(path, e);
    /* Read-only so a stage cannot add to its inputs (root ignores this, but users do not). The
     * top directory stays writable until renamed into checkouts/: rename(2) of a directory to
     * another parent updates its "..", which needs write permission on it. */
    if (rc == 0 && *rel && chmod(path, 0555) != 0)
        rc = fl_errf(e, "cannot chmod %s: %s", path, strerror(errno));
    return rc;
}

/* A checkout whose top directory is still writable (a crash between rename and chmod) is made
 * read-only now; returns path, or NULL (path freed) when that fails. */
static char *seal(char *path, mode_t mode, fl_err *e) {
    if ((mode & 0222) == 0) return path;
    if (chmod(path, 0555) == 0) return path;
    fl_errf(e, "cannot chmod %s: %s", path, strerror(errno));
    free(path);
    return NULL;
}

char *fl_store_checkout(fl_store *s, const fl_digest *tree, fl_err *e) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(tree, hex);
    char *final = fl_strdupf("%s/checkouts/%s", s->root, hex);
    if (!final) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    struct stat st;
    if (lstat(final, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return seal(final, st.st_mode, e);
        /* A file or a symbolic link in its place (damage): remove it (not a link's target). */
        if (fl_remove_tree(final, e) != 0) {
            free(final);
            return NULL;
        }
    }
    char *tmp = fl__store_tmpdir(s, "checkout", e);
    if (!tmp) {
        free(final);
        return NULL;
    }
    if (build(s, tree, tmp, "", e) != 0) goto fail;
    if (rename(tmp, final) != 0) {
        /* A concurrent checkout of the same tree won: theirs is identical, use it. */
        if ((errno == EEXIST || errno == ENOTEMPTY) && lstat(final, &st) == 0 &&
            S_ISDIR(st.st_mode)) {
            fl_err ignored;
            fl_remove_tree(tmp, &ignored);
            free(tmp);
            return seal(final, st.st_mode, e);
        }
        fl_errf(e, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        goto fail;
    }
    free(tmp);
    if (chmod(final, 0555) != 0) {
        fl_errf(e, "cannot chmod %s: %s", final, strerror(errno));
        free(final);
        return NULL;
    }
    char *parent = fl_strdupf("%s/checkouts", s->root);
    int rc = parent ? fl__fsync_dir(parent, e) : fl_errf(e, "out of memory");
    free(parent);
    if (rc != 0) {
        free(final);
        return NULL;
    }
    return final;
fail:;
    fl_err ignored;
    fl_remove_tree(tmp, &ignored);
    free(tmp);
    free(final);
    return NULL;
}
