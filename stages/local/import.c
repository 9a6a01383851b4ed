/* The local source's import (stages/local/stages.h): the Kaggle layout copied out of a folder
 * or extracted from the competition zip into the stage's output, normalized (files 0644,
 * folders 0755) so the stored tree depends only on the data, and checked before it is stored. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/kaggle.h"
#include "stages/labels/labels.h"
#include "stages/local/stages.h"

const char *const fl_local_entries[FL_LOCAL_NENTRIES] = {"train.csv", "sample_submission.csv",
                                                         "train_images", "test_images"};
static const int entry_is_dir[FL_LOCAL_NENTRIES] = {0, 0, 1, 1};

#define LAYOUT_HELP                                                                                \
    "the Kaggle layout is train.csv, sample_submission.csv, train_images/, test_images/"

int fl_local_is_zip(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n > 4 && strcasecmp(path + n - 4, ".zip") == 0;
}

void fl_local_rename_msg(fl_err *e, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    if (!fl) return;
    char out[FL_ERRLEN];
    size_t o = 0;
    for (const char *p = e->msg; *p && o < sizeof out - 1;) {
        if (strncmp(p, from, fl) == 0) {
            size_t n = tl < sizeof out - 1 - o ? tl : sizeof out - 1 - o;
            memcpy(out + o, to, n);
            o += n;
            p += fl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    memcpy(e->msg, out, o + 1);
}

/* ---------------------------------------------------------------- copying a folder */

typedef struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

static void counted(fl_local_stats *st, uint64_t bytes) {
    st->files++;
    st->bytes += bytes;
    if (st->progress && st->files % 1000 == 0) st->progress(st->user, st->files);
}

/* One regular file, src opened by path (following links), dst created fresh with 0644. No fsync:
 * the store's ingest makes every object durable before its record is written. */
static int copy_file(const char *src, const char *dst, fl_local_stats *st, fl_err *e) {
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (in < 0) return fl_errf(e, "cannot open %s: %s", src, strerror(errno));
    struct stat s;
    if (fstat(in, &s) != 0) {
        int en = errno;
        close(in);
        return fl_errf(e, "cannot stat %s: %s", src, strerror(en));
    }
    if (!S_ISREG(s.st_mode)) { /* swapped for something else since it was listed */
        close(in);
        return fl_errf(e, "%s is %s, not a regular file", src, fl_file_kind(s.st_mode));
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return fl_errf(e, "cannot create %s: %s", dst, strerror(errno));
    }
    uint64_t total = 0;
    int rc = 0, plain = 0;
    char buf[1 << 16];
    for (;;) {
        ssize_t n;
        if (!plain) { /* in-kernel copy (a reflink where the file system shares extents) */
            n = copy_file_range(in, NULL, out, NULL, (size_t)1 << 30, 0);
            if (n < 0 &&
                (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) &&
                total == 0) {
                plain = 1;
                continue;
            }
        } else {
            n = read(in, buf, sizeof buf);
            for (ssize_t w = 0, k; n > 0 && w < n; w += k)
                if ((k = write(out, buf + w, (size_t)(n - w))) < 0) {
                    if (errno == EINTR)
                        k = 0;
                    else {
                        rc = fl_errf(e, "cannot write %s: %s", dst, strerror(errno));
                        break;
                    }
                }
        }
        if (rc) break;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = fl_errf(e, "cannot copy %s to %s: %s", src, dst, strerror(errno));
            break;
        }
        if (n == 0) break;
        total += (uint64_t)n;
    }
    close(in);
    if (close(out) != 0 && !rc) rc = fl_errf(e, "cannot write %s: %s", dst, strerror(errno));
    if (!rc && total != (uint64_t)s.st_size)
        rc = fl_errf(e, "%s changed while it was copied (%lld bytes, then %llu)", src,
                     (long long)s.st_size, (unsigned long long)total);
    if (!rc) counted(st, total);
    return rc;
}

static int copy_tree(char *src, size_t slen, char *dst, size_t dlen, const ancestor *up,
                     fl_local_stats *st, fl_err *e) {
    if (mkdir(dst, 0755) != 0 && errno != EEXIST)
        return fl_errf(e, "cannot create %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d) return fl_errf(e, "cannot open directory %s: %s", src, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        size_t nl = strlen(de->d_name);
        if (slen + nl + 2 > PATH_MAX || dlen + nl + 2 > PATH_MAX) {
            rc = fl_errf(e, "path too long: %s/%s", src, de->d_name);
            break;
        }
        src[slen] = dst[dlen] = '/';
        memcpy(src + slen + 1, de->d_name, nl + 1);
        memcpy(dst + dlen + 1, de->d_name, nl + 1);
        struct stat s;
        if (stat(src, &s) != 0) {
            rc = fl_errf(e, "cannot stat %s: %s", src, strerror(errno));
        } else if (S_ISREG(s.st_mode)) {
            rc = copy_file(src, dst, st, e);
        } else if (S_ISDIR(s.st_mode)) {
            for (const ancestor *a = up; a && !rc; a = a->up)
                if (a->dev == s.st_dev && a->ino == s.st_ino)
                    rc = fl_errf(e, "%s: directory cycle through a symbolic link", src);
            ancestor me = {s.st_dev, s.st_ino, up};
            if (!rc) rc = copy_tree(src, slen + 1 + nl, dst, dlen + 1 + nl, &me, st, e);
        } else {
            rc = fl_errf(e, "%s is %s, not a regular file or folder", src, fl_file_kind(s.st_mode));
        }
        src[slen] = dst[dlen] = 0;
    }
    if (rc == 0 && errno) rc = fl_errf(e, "cannot read directory %s: %s", src, strerror(errno));
    closedir(d);
    return rc;
}

/* ---------------------------------------------------------------- normalizing an extracted tree */

/* Files 0644, folders 0755, and nothing else (the extractor may have made symbolic links,
 * which the store refuses: say which entry, as ZIP/entry). path is a PATH_MAX buffer whose
 * first root_len bytes are the data directory. */
static int normalize(char *path, size_t plen, const char *zip, size_t root_len, fl_local_stats *st,
                     fl_err *e) {
    DIR *d = opendir(path);
    if (!d) return fl_errf(e, "cannot open directory %s: %s", path, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        size_t nl = strlen(de->d_name);
        if (plen + nl + 2 > PATH_MAX) {
            rc = fl_errf(e, "path too long: %s/%s", path, de->d_name);
            break;
        }
        path[plen] = '/';
        memcpy(path + plen + 1, de->d_name, nl + 1);
        struct stat s;
        if (lstat(path, &s) != 0)
            rc = fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
        else if (S_ISREG(s.st_mode)) {
            if (chmod(path, 0644) != 0)
                rc = fl_errf(e, "cannot chmod %s: %s", path, strerror(errno));
            else
                counted(st, (uint64_t)s.st_size);
        } else if (S_ISDIR(s.st_mode)) {
            if (chmod(path, 0755) != 0)
                rc = fl_errf(e, "cannot chmod %s: %s", path, strerror(errno));
            else
                rc = normalize(path, plen + 1 + nl, zip, root_len, st, e);
        } else {
            rc = fl_errf(e,
                         "%s/%s is %s: refused (the competition's data holds only files and "
                         "folders)",
                         zip, path + root_len + 1, fl_file_kind(s.st_mode));
        }
        path[plen] = 0;
    }
    if (rc == 0 && errno) rc = fl_errf(e, "cannot read directory %s: %s", path, strerror(errno));
    closedir(d);
    return rc;
}

/* ---------------------------------------------------------------- checks */

int fl_local_check(const char *data_dir, fl_local_stats *st, fl_err *e) {
    char *train_csv = fl_strdupf("%s/train.csv", data_dir);
    char *train_dir = fl_strdupf("%s/train_images", data_dir);
    char *sample_csv = fl_strdupf("%s/sample_submission.csv", data_dir);
    char *test_dir = fl_strdupf("%s/test_images", data_dir);
    int rc = train_csv && train_dir && sample_csv && test_dir ? 0 : fl_errf(e, "out of memory");
    fl_train_set t = {0};
    fl_submission s = {0};
    if (!rc) rc = fl_train_read(train_csv, train_dir, &t, e);
    if (!rc) rc = fl_submission_read(sample_csv, &s, e);
    if (!rc) rc = fl_submission_check_images(&s, test_dir, e);
    if (!rc) {
        st->train_rows = t.n;
        st->test_rows = s.n;
        st->species_fixed = t.n_fixed;
    }
    fl_train_free(&t);
    fl_submission_free(&s);
    free(train_csv), free(train_dir), free(sample_csv), free(test_dir);
    return rc;
}

/* ---------------------------------------------------------------- the two imports */

int fl_local_import_dir(const char *src, const char *data_dir, fl_local_stats *st, fl_err *e) {
    st->files = st->bytes = 0;
    if (fl_mkdirs(data_dir, e)) return -1;
    char *s = malloc(PATH_MAX), *d = malloc(PATH_MAX);
    int rc = s && d ? 0 : fl_errf(e, "out of memory");
    for (int k = 0; k < FL_LOCAL_NENTRIES && !rc; k++) {
        int ns = snprintf(s, PATH_MAX, "%s/%s", src, fl_local_entries[k]);
        int nd = snprintf(d, PATH_MAX, "%s/%s", data_dir, fl_local_entries[k]);
        if (ns >= PATH_MAX || nd >= PATH_MAX) {
            rc = fl_errf(e, "path too long: %s", src);
            break;
        }
        struct stat sb;
        if (stat(s, &sb) != 0) {
            rc = fl_errf(e, "%s: %s (%s)", s, errno == ENOENT ? "missing" : strerror(errno),
                         LAYOUT_HELP);
        } else if (entry_is_dir[k] ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) {
            rc = fl_errf(e, "%s is %s, not a %s (%s)", s, fl_file_kind(sb.st_mode),
                         entry_is_dir[k] ? "folder" : "file", LAYOUT_HELP);
        } else if (entry_is_dir[k]) {
            ancestor me = {sb.st_dev, sb.st_ino, NULL};
            rc = copy_tree(s, (size_t)ns, d, (size_t)nd, &me, st, e);
        } else {
            rc = copy_file(s, d, st, e);
        }
    }
    free(s), free(d);
    if (!rc && fl_local_check(data_dir, st, e)) {
        fl_local_rename_msg(e, data_dir, src);
        rc = -1;
    }
    return rc;
}

/* Where the layout sits in the extracted tree: its root, or its only top-level folder (a zip
 * of the folder rather than of its contents; a __MACOSX folder beside it is ignored). Returns a
 * malloc'd path, or NULL with e set. */
static char *find_root(const char *zip, const char *scratch, fl_err *e) {
    char *p = fl_strdupf("%s/train.csv", scratch);
    struct stat s;
    int here = p && lstat(p, &s) == 0;
    free(p);
    if (here) return strdup(scratch);
    DIR *d = opendir(scratch);
    if (!d) return fl_errf(e, "cannot open %s: %s", scratch, strerror(errno)), NULL;
    char names[200] = "";
    size_t off = 0;
    int n = 0, ndirs = 0;
    char *only = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        /* "." and "..", and the resource-fork folder macOS's Archive Utility adds */
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            !strcmp(de->d_name, "__MACOSX"))
            continue;
        if (off < sizeof names - 1)
            off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", n ? ", " : "",
                                    de->d_name);
        n++;
        char *q = fl_strdupf("%s/%s", scratch, de->d_name);
        if (q && lstat(q, &s) == 0 && S_ISDIR(s.st_mode)) {
            ndirs++;
            free(only);
            only = q;
        } else {
            free(q);
        }
    }
    closedir(d);
    if (n == 1 && ndirs == 1) {
        p = fl_strdupf("%s/train.csv", only);
        here = p && lstat(p, &s) == 0;
        free(p);
        if (here) return only;
    }
    free(only);
    if (off >= sizeof names - 1) snprintf(names + sizeof names - 5, 5, "...");
    fl_errf(e, "%s is not the competition's data: no train.csv inside (%s%s%s; %s)", zip,
            n ? "it holds: " : "it is empty", names, "", LAYOUT_HELP);
    return NULL;
}

int fl_local_import_zip(const char *zip, const char *scratch, const char *data_dir,
                        fl_local_stats *st, fl_err *e) {
    st->files = st->bytes = 0;
    if (!fl_is_zip(zip))
        return fl_errf(e,
                       "%s is not a zip file (local.path: a folder in the Kaggle layout, or the "
                       "competition zip as `kaggle competitions download` leaves it)",
                       zip);
    if (fl_remove_tree(scratch, e) || fl_mkdirs(data_dir, e)) return -1;
    fl_extract_stats xs;
    int r = fl_extract(zip, scratch, &xs, e);
    if (r == FL_EXTRACT_CORRUPT)
        return fl_errprefix(e, "%s is corrupt or truncated (left as it is: download it again)",
                            zip);
    if (r) return -1;
    char *root = find_root(zip, scratch, e);
    if (!root) return fl_remove_tree(scratch, &(fl_err){{0}}), -1;
    size_t root_len = strlen(root);
    char *path = malloc(PATH_MAX);
    int rc = path ? 0 : fl_errf(e, "out of memory");
    const char *in_zip = root_len > strlen(scratch) ? root + strlen(scratch) + 1 : "";
    char *as = fl_strdupf("%s%s%s", zip, *in_zip ? "/" : "", in_zip); /* how messages name it */
    if (!as) rc = fl_errf(e, "out of memory");
    for (int k = 0; k < FL_LOCAL_NENTRIES && !rc; k++) {
        char *from = fl_strdupf("%s/%s", root, fl_local_entries[k]);
        char *to = fl_strdupf("%s/%s", data_dir, fl_local_entries[k]);
        struct stat s;
        if (!from || !to)
            rc = fl_errf(e, "out of memory");
        else if (lstat(from, &s) != 0 ||
                 (entry_is_dir[k] ? !S_ISDIR(s.st_mode) : !S_ISREG(s.st_mode)))
            rc = fl_errf(e, "%s has no %s%s%s %s (%s)", zip, in_zip, *in_zip ? "/" : "",
                         fl_local_entries[k], entry_is_dir[k] ? "folder" : "file", LAYOUT_HELP);
        else if (rename(from, to) != 0)
            rc = fl_errf(e, "cannot move %s to %s: %s", from, to, strerror(errno));
        free(from), free(to);
    }
    /* Modes and kinds: what fetch would store for the same data. */
    if (!rc) {
        snprintf(path, PATH_MAX, "%s", data_dir);
        rc = normalize(path, strlen(path), as, strlen(data_dir), st, e);
    }
    free(path);
    fl_err e2;
    fl_remove_tree(scratch, &e2);
    if (!rc && fl_local_check(data_dir, st, e)) {
        fl_local_rename_msg(e, data_dir, as);
        rc = -1;
    }
    free(as);
    free(root);
    return rc;
}
