/* fl_store_ingest: moves a finished staging directory's files into objects/ and writes its tree
 * objects, bottom-up. Nothing reaches a final name before its data is durable, and everything is
 * durable before ingest returns (the caller then writes the record that makes it reachable).
 *
 * Two ways to get there, chosen by the number of files:
 *   - few files: each is fsynced and renamed in turn; shard directories are fsynced before the
 *     tree that names them is written;
 *   - many files (a stage writing 80,000 crops): per-file fsync would dominate, so files are
 *     hashed up front by a few threads, then queued, one syncfs() makes all their data durable, the queued renames run, and
 *     a second syncfs() makes the renames and the trees durable. A crash in between can leave
 *     objects or trees missing (re-created by the next ingest), never a final name with
 *     non-durable (possibly empty) content. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

/* Files with at most this many files are ingested with per-file fsync. */
#define BATCH_ABOVE 8

typedef struct move {
    char *src, *dst;
    int src_is_tmp; /* a temporary of ours (copy or tree), removed if the ingest fails */
} move;

typedef struct moves {
    move *v;
    size_t n, cap;
} moves;

typedef struct ingest {
    fl_store *s;
    int batch;
    fl_hash_job *pre;     /* batch mode: every file, hashed in parallel before the walk */
    size_t npre, cappre, cursor; /* the walk meets files in the same (sorted) order */
    uint8_t touched[256]; /* objects/<xx>/ shards that received a rename */
    moves objs, trees;    /* batch mode: renames to run after the first syncfs */
} ingest;

/* Takes ownership of src and dst. */
static int queue(moves *m, char *src, char *dst, int src_is_tmp, fl_err *e) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        move *nv = realloc(m->v, nc * sizeof *nv);
        if (!nv) {
            free(src);
            free(dst);
            return fl_errf(e, "out of memory");
        }
        m->v = nv;
        m->cap = nc;
    }
    m->v[m->n++] = (move){src, dst, src_is_tmp};
    return 0;
}

static void free_moves(moves *m, int unlink_tmps) {
    for (size_t i = 0; i < m->n; i++) {
        if (unlink_tmps && m->v[i].src_is_tmp) unlink(m->v[i].src);
        free(m->v[i].src);
        free(m->v[i].dst);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

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
    if (cnt) qsort(v, cnt, sizeof *v, cmp_str);
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
static int add_pre(ingest *g, const char *path, fl_err *e) {
    if (g->npre == g->cappre) {
        size_t nc = g->cappre ? g->cappre * 2 : 256;
        fl_hash_job *nv = realloc(g->pre, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory");
        g->pre = nv;
        g->cappre = nc;
    }
    memset(&g->pre[g->npre], 0, sizeof *g->pre);
    if (!(g->pre[g->npre].path = strdup(path))) return fl_errf(e, "out of memory");
    g->npre++;
    return 0;
}

static int check_dir(ingest *g, const char *path, fl_err *e) {
    char **names;
    size_t n;
    if (list_dir(path, &names, &n, e) != 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = fl_strdupf("%s/%s", path, names[i]);
        struct stat st;
        if (!p) rc = fl_errf(e, "out of memory");
        else if (lstat(p, &st) != 0) rc = fl_errf(e, "cannot stat %s: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = check_dir(g, p, e);
        else if (S_ISREG(st.st_mode)) rc = add_pre(g, p, e);
        else
            rc = fl_errf(e, "cannot store %s: %s (only regular files and directories can be outputs)",
                         p, S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
        free(p);
    }
    free_names(names, n);
    return rc;
}

/* Copies fd's contents into a fresh temporary file under tmp/ (0444, fsynced when sync). */
static int copy_to_tmp(fl_store *s, int in, const char *src, int sync, char **tmp, fl_err *e) {
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
    if (fchmod(out, 0444) != 0 || (sync && fsync(out) != 0)) goto fail;
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
    /* Batch mode hashed every file up front (in parallel); use that digest unless the file
     * changed since, which a finished stage's staging directory never should. */
    const fl_hash_job *pre = NULL;
    if (g->cursor < g->npre && !strcmp(g->pre[g->cursor].path, path)) pre = &g->pre[g->cursor++];
    if (pre && !pre->err && pre->fst.st_dev == st.st_dev && pre->fst.st_ino == st.st_ino &&
        pre->fst.st_size == st.st_size && pre->fst.st_mtim.tv_sec == st.st_mtim.tv_sec &&
        pre->fst.st_mtim.tv_nsec == st.st_mtim.tv_nsec) {
        *d = pre->d;
    } else if (fl__hash_fd(fd, path, d, NULL, e) != 0) {
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
    if (lstat(dst, &ost) != 0 && errno == ENOTDIR && fl__set_aside_blocker(g->s, dst, e) < 0) {
        rc = -1; /* objects/<xx> is a file: set aside above, or this error */
        goto out;
    }
    if (lstat(dst, &ost) == 0) {
        if (S_ISREG(ost.st_mode) && ost.st_size == st.st_size) {
            /* Already stored: keep the existing object, drop the duplicate. */
            if (unlink(path) != 0) rc = fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
            goto out;
        }
        /* Its size cannot hash to this digest: a damaged object (found before `verify` ran).
         * Set it aside and store the good copy in its place. */
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(d, hex);
        if ((rc = fl__quarantine(g->s, dst, "", hex, e)) != 0) goto out;
    }
    if ((rc = fl__store_count_write(g->s, "object", dst, e)) != 0) goto out;
    /* A file with other hard links (say, linked from an input checkout or a user's file) must
     * not become the object itself: a write through the other name would corrupt the store. */
    int copy = st.st_nlink > 1;
    if (g->batch) {
        char *src = NULL, *qdst = strdup(dst);
        if (!qdst) {
            rc = fl_errf(e, "out of memory");
            goto out;
        }
        if (copy) {
            if ((rc = copy_to_tmp(g->s, fd, path, 0, &src, e)) != 0) {
                free(qdst);
                goto out;
            }
            if (unlink(path) != 0) {
                rc = fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
                unlink(src);
                free(src);
                free(qdst);
                goto out;
            }
        } else if (fchmod(fd, 0444) != 0) {
            rc = fl_errf(e, "cannot write object %s: %s", dst, strerror(errno));
            free(qdst);
            goto out;
        } else if (!(src = strdup(path))) {
            rc = fl_errf(e, "out of memory");
            free(qdst);
            goto out;
        }
        rc = queue(&g->objs, src, qdst, copy, e);
        goto out;
    }
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
        if ((rc = copy_to_tmp(g->s, fd, path, 1, &tmp, e)) != 0) goto out;
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

/* Batch mode: the tree goes to a temporary file now, to its final name after the syncfs. */
static int queue_tree(ingest *g, fl_tree *t, fl_digest *out, fl_err *e) {
    char *buf;
    size_t len;
    if (fl__tree_encode(t, &buf, &len, e) != 0) return -1;
    fl__tree_digest(buf, len, out);
    char *dst = fl__shard_path(g->s, "trees", out), *tmp = NULL;
    int rc = 0;
    if (!dst) rc = fl_errf(e, "out of memory");
    else if ((rc = fl__tree_present(g->s, dst, out, buf, len, e)) != 0) { /* stored, or error */
        rc = rc < 0 ? -1 : 0;
    } else if ((rc = fl__store_count_write(g->s, "tree", dst, e)) == 0 &&
               (rc = fl__store_write_tmp(g->s, buf, len, 0444, 0, "tree", dst, &tmp, e)) == 0) {
        rc = queue(&g->trees, tmp, dst, 1, e);
        dst = NULL;
    }
    free(dst);
    free(buf);
    return rc;
}

static int sync_store_fs(ingest *g, fl_err *e) {
    char *dir = fl_strdupf("%s/objects", g->s->root);
    if (!dir) return fl_errf(e, "out of memory");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0 || syncfs(fd) != 0) rc = fl_errf(e, "cannot sync the store's file system (%s): %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

/* Runs one queued rename; an existing destination wins (identical content). */
static int run_move(ingest *g, const move *m, fl_err *e) {
    struct stat st;
    if (lstat(m->dst, &st) != 0 && errno == ENOTDIR && fl__set_aside_blocker(g->s, m->dst, e) < 0)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (renameat2(AT_FDCWD, m->src, AT_FDCWD, m->dst, RENAME_NOREPLACE) == 0) return 0;
        if (errno == EEXIST) {
            if (unlink(m->src) != 0) return fl_errf(e, "cannot remove %s: %s", m->src, strerror(errno));
            return 0;
        }
        if (errno == ENOENT && attempt == 0) {
            char *shard = strdup(m->dst);
            if (!shard) return fl_errf(e, "out of memory");
            *strrchr(shard, '/') = '\0';
            int rc = fl_mkdirs(shard, e);
            free(shard);
            if (rc != 0) return -1;
            continue;
        }
        break;
    }
    if (errno == EXDEV || errno == EINVAL) { /* staging on another file system */
        int fd = open(m->src, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return fl_errf(e, "cannot open %s: %s", m->src, strerror(errno));
        char *tmp;
        int rc = copy_to_tmp(g->s, fd, m->src, 1, &tmp, e);
        close(fd);
        if (rc != 0) return -1;
        rc = fl__rename_mkdir(tmp, m->dst, e);
        if (rc != 0) unlink(tmp);
        free(tmp);
        if (rc == 0 && unlink(m->src) != 0) rc = fl_errf(e, "cannot remove %s: %s", m->src, strerror(errno));
        return rc;
    }
    return fl_errf(e, "cannot move %s to %s: %s", m->src, m->dst, strerror(errno));
}

static int finish_batch(ingest *g, fl_err *e) {
    if (sync_store_fs(g, e) != 0) return -1; /* data first ... */
    for (size_t i = 0; i < g->objs.n; i++)
        if (run_move(g, &g->objs.v[i], e) != 0) return -1;
    for (size_t i = 0; i < g->trees.n; i++)
        if (run_move(g, &g->trees.v[i], e) != 0) return -1;
    return sync_store_fs(g, e); /* ... then the names */
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
    if (rc == 0 && g->batch) {
        rc = queue_tree(g, &t, out, e);
        fl__tree_free(&t);
        return rc;
    }
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
    ingest g;
    memset(&g, 0, sizeof g);
    g.s = s;
    int rc = check_dir(&g, dir, e);
    g.batch = g.npre > BATCH_ABOVE;
    if (rc == 0 && g.batch) fl__hash_jobs(g.pre, g.npre);
    if (rc == 0) rc = ingest_dir(&g, dir, tree, e);
    if (rc == 0 && g.batch) rc = finish_batch(&g, e);
    free_moves(&g.objs, rc != 0);
    free_moves(&g.trees, rc != 0);
    fl__hash_jobs_free(g.pre, g.npre);
    return rc;
}
