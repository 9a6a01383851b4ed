/* fl_store_ingest: moves a finished staging directory's files into objects/ and writes its tree
 * objects, bottom-up. Files are fsynced before they are renamed into place; the shard
 * directories that received renames are fsynced once at the end, before the caller writes the
 * record that makes any of it reachable. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

typedef struct ingest {
    fl_store *s;
    uint8_t touched[256]; /* objects/<xx>/ shards that received a rename */
} ingest;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of a directory (without . and ..). */
static int list_dir(const char *path, char ***names, size_t *n, fl_err *e) {
    DIR *d = opendir(path);
    if (!d) return fl_errf(e, "cannot open directory %s: %s", path, strerror(errno));
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 32;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) goto oom;
            v = nv;
        }
        if (!(v[cnt] = strdup(de->d_name))) goto oom;
        cnt++;
    }
    closedir(d);
    qsort(v, cnt, sizeof *v, cmp_str);
    *names = v;
    *n = cnt;
    return 0;
oom:
    closedir(d);
    for (size_t i = 0; i < cnt; i++) free(v[i]);
    free(v);
    return fl_errf(e, "out of memory listing %s", path);
}

static void free_names(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* First pass: only regular files and directories may be ingested. Checking everything before
 * moving anything keeps a rejected output directory intact for the user to inspect. */
static int check_dir(const char *path, fl_err *e) {
    char **names;
    size_t n;
    if (list_dir(path, &names, &n, e) != 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = fl_strdupf("%s/%s", path, names[i]);
        struct stat st;
        if (!p) rc = fl_errf(e, "out of memory");
        else if (lstat(p, &st) != 0) rc = fl_errf(e, "cannot stat %s: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = check_dir(p, e);
        else if (!S_ISREG(st.st_mode))
            rc = fl_errf(e, "cannot store %s: %s (only regular files and directories can be outputs)",
                         p, S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
        free(p);
    }
    free_names(names, n);
    return rc;
}

/* Copies fd's contents into a fresh temporary file under tmp/ (fsynced, 0444). */
static int copy_to_tmp(fl_store *s, int in, const char *src, char **tmp, fl_err *e) {
    int out = fl__store_tmpfile(s, tmp, e);
    if (out < 0) return -1;
    char buf[1 << 16];
    if (lseek(in, 0, SEEK_SET) < 0) goto fail;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) goto fail;
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) goto fail;
            off += w;
        }
    }
    if (fchmod(out, 0444) != 0 || fsync(out) != 0) goto fail;
    close(out);
    return 0;
fail:;
    int err = errno;
    close(out);
    unlink(*tmp);
    free(*tmp);
    *tmp = NULL;
    return fl_errf(e, "cannot copy %s into the store: %s", src, strerror(err));
}

/* Moves one regular file into objects/ and returns its digest and tree mode. */
static int ingest_file(ingest *g, const char *path, fl_digest *d, char *mode, fl_err *e) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fl_errf(e, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fl_errf(e, "cannot store %s: not a regular file", path);
    }
    if (fl__hash_fd(fd, path, d, NULL, e) != 0) {
        close(fd);
        return -1;
    }
    *mode = (st.st_mode & 0111) ? FL_MODE_EXEC : FL_MODE_FILE;
    char *dst = fl__shard_path(g->s, "objects", d);
    if (!dst) {
        close(fd);
        return fl_errf(e, "out of memory");
    }
    int rc = 0;
    struct stat ost;
    if (lstat(dst, &ost) == 0) {
        /* Already stored: keep the existing object, drop the duplicate. */
        if (unlink(path) != 0) rc = fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
        goto out;
    }
    if ((rc = fl__store_count_write(g->s, "object", dst, e)) != 0) goto out;
    /* A file with other hard links (say, linked from an input checkout or a user's file) must
     * not become the object itself: a write through the other name would corrupt the store. */
    int copy = st.st_nlink > 1;
    if (!copy) {
        if (fsync(fd) != 0 || fchmod(fd, 0444) != 0) {
            rc = fl_errf(e, "cannot write object %s: %s", dst, strerror(errno));
            goto out;
        }
        if (renameat2(AT_FDCWD, path, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) {
            if (errno == ENOENT) {
                char *shard = strdup(dst);
                if (!shard) {
                    rc = fl_errf(e, "out of memory");
                    goto out;
                }
                *strrchr(shard, '/') = '\0';
                rc = fl_mkdirs(shard, e);
                free(shard);
                if (rc != 0) goto out;
                if (renameat2(AT_FDCWD, path, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) goto moved;
            }
            if (errno == EEXIST) { /* a concurrent run stored the same content first */
                if (unlink(path) != 0) rc = fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
                goto out;
            }
            if (errno == EXDEV || errno == EINVAL) copy = 1; /* other fs, or no NOREPLACE */
            else {
                rc = fl_errf(e, "cannot move %s to %s: %s", path, dst, strerror(errno));
                goto out;
            }
        }
    }
    if (copy) {
        char *tmp;
        if ((rc = copy_to_tmp(g->s, fd, path, &tmp, e)) != 0) goto out;
        rc = fl__rename_mkdir(tmp, dst, e);
        if (rc != 0) unlink(tmp);
        free(tmp);
        if (rc == 0 && unlink(path) != 0)
            rc = fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
        if (rc != 0) goto out;
    }
moved:
    g->touched[d->b[0]] = 1;
out:
    close(fd);
    free(dst);
    return rc;
}

static int ingest_dir(ingest *g, const char *path, fl_digest *out, fl_err *e) {
    char **names;
    size_t n;
    if (list_dir(path, &names, &n, e) != 0) return -1;
    fl_tree t = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = fl_strdupf("%s/%s", path, names[i]);
        struct stat st;
        fl_digest d;
        char mode = FL_MODE_DIR;
        if (!p) rc = fl_errf(e, "out of memory");
        else if (lstat(p, &st) != 0) rc = fl_errf(e, "cannot stat %s: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = ingest_dir(g, p, &d, e);
        else if (S_ISREG(st.st_mode)) rc = ingest_file(g, p, &d, &mode, e);
        else rc = fl_errf(e, "cannot store %s: not a regular file or directory", p);
        if (rc == 0) rc = fl__tree_add(&t, names[i], mode, &d, e);
        free(p);
    }
    free_names(names, n);
    if (rc == 0) {
        /* Make this directory's objects durable before a tree can point at them. */
        for (int i = 0; i < 256 && rc == 0; i++) {
            if (!g->touched[i]) continue;
            char *shard = fl_strdupf("%s/objects/%02x", g->s->root, i);
            rc = shard ? fl__fsync_dir(shard, e) : fl_errf(e, "out of memory");
            free(shard);
            g->touched[i] = 0;
        }
    }
    if (rc == 0) rc = fl__tree_store(g->s, &t, out, e);
    fl__tree_free(&t);
    return rc;
}

int fl_store_ingest(fl_store *s, const char *dir, fl_digest *tree, fl_err *e) {
    struct stat st;
    if (lstat(dir, &st) != 0) return fl_errf(e, "cannot ingest %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fl_errf(e, "cannot ingest %s: not a directory", dir);
    if (check_dir(dir, e) != 0) return -1;
    ingest g;
    memset(&g, 0, sizeof g);
    g.s = s;
    return ingest_dir(&g, dir, tree, e);
}
