/* Safe archive extraction with libarchive. Every entry path is checked (relative, no ".."),
 * directories are walked with openat(O_NOFOLLOW) so nothing is ever written through a symlink,
 * links may not point outside the tree, and special files are refused. Modes are normalized so
 * the extracted tree (and its digest) depends only on the archive's data. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/kaggle.h"

int fl_is_zip(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char b[4];
    ssize_t r = read(fd, b, 4);
    close(fd);
    return r == 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
}

/* A complete zip ends with its End Of Central Directory record (signature PK\5\6, 22 bytes plus
 * a comment of the length it declares). libarchive's streaming reader accepts a zip cut inside
 * its central directory, so a download truncated there is caught here. 1 ok, 0 missing. */
static int zip_has_eocd(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    int ok = 0;
    if (fstat(fd, &st) == 0 && st.st_size >= 22) {
        size_t span = st.st_size < 22 + 65535 ? (size_t)st.st_size : 22 + 65535;
        unsigned char *b = malloc(span);
        if (b && pread(fd, b, span, st.st_size - (off_t)span) == (ssize_t)span) {
            for (size_t i = span - 22 + 1; i-- > 0;) {
                if (b[i] == 'P' && b[i + 1] == 'K' && b[i + 2] == 5 && b[i + 3] == 6) {
                    size_t comment = (size_t)b[i + 20] | (size_t)b[i + 21] << 8;
                    ok = i + 22 + comment == span;
                    break;
                }
            }
        }
        free(b);
    }
    close(fd);
    return ok;
}

/* Normalizes an entry path into out: drops "." and empty components; refuses absolute paths,
 * ".." and control characters. Returns 0 ok (out may be "" for the root itself), -1 refused. */
static int clean_path(const char *in, char *out, size_t cap, const char **why) {
    if (!in || !*in) return *why = "empty path", -1;
    if (in[0] == '/') return *why = "absolute path", -1;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') return *why = "path contains \"..\"", -1;
        if (!(n == 0 || (n == 1 && p[0] == '.'))) {
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)p[i] < 0x20) return *why = "control character in path", -1;
            if (o + n + 2 > cap) return *why = "path too long", -1;
            if (o) out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/') p++;
    }
    out[o] = 0;
    return 0;
}

/* Opens the directory holding rel's last component, creating (0755) missing directories when
 * create is set; *leaf points into rel. Never follows a symlink. -1 with errno. */
static int open_parent(int rootfd, char *rel, int create, const char **leaf) {
    int fd = dup(rootfd);
    if (fd < 0) return -1;
    char *p = rel;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash) break;
        *slash = 0;
        if (create && mkdirat(fd, p, 0755) == 0) {
            int d = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (d >= 0) fchmod(d, 0755);
            if (d >= 0) close(d);
        }
        int nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int en = errno;
        *slash = '/';
        close(fd);
        if (nfd < 0) {
            errno = en;
            return -1;
        }
        fd = nfd;
        p = slash + 1;
    }
    *leaf = p;
    return fd;
}

static int mkdir_tree(int rootfd, const char *rel) {
    char buf[4100];
    size_t n = strlen(rel);
    if (n + 3 > sizeof buf) return errno = ENAMETOOLONG, -1;
    memcpy(buf, rel, n);
    memcpy(buf + n, "/x", 3); /* open_parent creates every directory before "x" */
    const char *leaf;
    int fd = open_parent(rootfd, buf, 1, &leaf);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int write_data(struct archive *a, int fd, uint64_t *bytes, const char **why) {
    const void *buf;
    size_t size;
    la_int64_t off;
    la_int64_t end = 0;
    for (;;) {
        int r = archive_read_data_block(a, &buf, &size, &off);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) return *why = archive_error_string(a), -2; /* incl. bad CRC (WARN) */
        const char *c = buf;
        size_t left = size;
        la_int64_t pos = off;
        while (left) {
            ssize_t w = pwrite(fd, c, left, pos);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return *why = strerror(errno), -1;
            c += w;
            left -= (size_t)w;
            pos += w;
        }
        *bytes += size;
        if (pos > end) end = pos;
    }
    /* Sparse tails: make the file as long as the archive says. */
    if (ftruncate(fd, end) != 0) return *why = strerror(errno), -1;
    return 0;
}

/* Symlink targets must stay inside: relative and without "..". A conservative rule: with no
 * ".." anywhere, every link resolves downward, whatever other links the archive creates. */
static int link_target_ok(const char *t) {
    if (!t || !*t || t[0] == '/') return 0;
    for (const char *p = t; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += n;
        if (*p == '/') p++;
    }
    return 1;
}

int fl_extract(const char *archive_path, const char *dest_dir, fl_extract_stats *stats, fl_err *e) {
    fl_extract_stats st_local, *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    if (fl_mkdirs(dest_dir, e) < 0) return -1;
    int rootfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) return fl_errf(e, "cannot open %s: %s", dest_dir, strerror(errno));
    if (fl_is_zip(archive_path) && !zip_has_eocd(archive_path)) {
        close(rootfd);
        fl_errf(e, "%s: truncated zip (no end-of-central-directory record)", archive_path);
        return FL_EXTRACT_CORRUPT;
    }
    struct archive *a = archive_read_new();
    if (!a) {
        close(rootfd);
        return fl_errf(e, "out of memory");
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    int rc = 0;
    if (archive_read_open_filename(a, archive_path, 1 << 16) != ARCHIVE_OK) {
        rc = fl_errf(e, "%s: cannot open archive: %s", archive_path, archive_error_string(a));
        if (access(archive_path, R_OK) == 0) rc = FL_EXTRACT_CORRUPT;
        goto out;
    }
    struct archive_entry *ent;
    char rel[4096];
    for (;;) {
        int r = archive_read_next_header(a, &ent);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN || r == ARCHIVE_RETRY) {
            fl_errf(e, "%s: corrupt or truncated archive: %s", archive_path,
                    archive_error_string(a) ? archive_error_string(a) : "bad header");
            rc = FL_EXTRACT_CORRUPT;
            goto out;
        }
        const char *name = archive_entry_pathname(ent);
        const char *why = NULL;
        if (clean_path(name, rel, sizeof rel, &why) < 0) {
            rc = fl_errf(e, "%s: refusing entry '%s': %s", archive_path, name ? name : "", why);
            goto out;
        }
        const char *hl = archive_entry_hardlink(ent);
        mode_t type = archive_entry_filetype(ent);
        if (!rel[0]) continue; /* "./" itself */
        if (hl) {
            char trel[4096];
            if (clean_path(hl, trel, sizeof trel, &why) < 0) {
                rc = fl_errf(e, "%s: refusing hard link '%s' -> '%s': %s", archive_path, name, hl, why);
                goto out;
            }
            const char *tleaf, *nleaf;
            int tfd = open_parent(rootfd, trel, 0, &tleaf);
            struct stat ts;
            if (tfd < 0 || fstatat(tfd, tleaf, &ts, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(ts.st_mode)) {
                if (tfd >= 0) close(tfd);
                rc = fl_errf(e, "%s: refusing hard link '%s' -> '%s': the target is not a regular "
                                "file extracted earlier from this archive", archive_path, name, hl);
                goto out;
            }
            int nfd = open_parent(rootfd, rel, 1, &nleaf);
            if (nfd < 0) {
                close(tfd);
                rc = fl_errf(e, "%s: entry '%s': cannot create its directory (%s)", archive_path,
                             name, strerror(errno));
                goto out;
            }
            unlinkat(nfd, nleaf, 0);
            int lr = linkat(tfd, tleaf, nfd, nleaf, 0);
            int en = errno;
            close(tfd);
            close(nfd);
            if (lr != 0) {
                rc = fl_errf(e, "%s: entry '%s': link failed: %s", archive_path, name, strerror(en));
                goto out;
            }
            st->files++;
            continue;
        }
        if (type == AE_IFDIR) {
            if (mkdir_tree(rootfd, rel) < 0) {
                rc = fl_errf(e, "%s: entry '%s': cannot create directory (%s)", archive_path, name,
                             errno == ELOOP || errno == ENOTDIR ? "a path component is a symlink or a file"
                                                                : strerror(errno));
                goto out;
            }
            st->dirs++;
            continue;
        }
        if (type != AE_IFREG && type != AE_IFLNK) {
            const char *kind = type == AE_IFCHR   ? "a character device"
                               : type == AE_IFBLK ? "a block device"
                               : type == AE_IFIFO ? "a fifo"
                               : type == AE_IFSOCK ? "a socket"
                                                   : "of an unknown type";
            rc = fl_errf(e, "%s: refusing entry '%s': it is %s", archive_path, name, kind);
            goto out;
        }
        const char *leaf;
        int pfd = open_parent(rootfd, rel, 1, &leaf);
        if (pfd < 0) {
            rc = fl_errf(e, "%s: refusing entry '%s': %s", archive_path, name,
                         errno == ELOOP || errno == ENOTDIR
                             ? "its path goes through a symlink or a file"
                             : strerror(errno));
            goto out;
        }
        if (type == AE_IFLNK) {
            const char *target = archive_entry_symlink(ent);
            if (!link_target_ok(target)) {
                close(pfd);
                rc = fl_errf(e, "%s: refusing symlink '%s' -> '%s': it may point outside the "
                                "extraction directory", archive_path, name, target ? target : "");
                goto out;
            }
            unlinkat(pfd, leaf, 0);
            int sr = symlinkat(target, pfd, leaf);
            int en = errno;
            close(pfd);
            if (sr != 0) {
                rc = fl_errf(e, "%s: entry '%s': symlink failed: %s", archive_path, name, strerror(en));
                goto out;
            }
            st->files++;
            continue;
        }
        int fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        int en = errno;
        close(pfd);
        if (fd < 0) {
            rc = fl_errf(e, "%s: entry '%s': cannot create file: %s", archive_path, name,
                         en == ELOOP ? "an earlier entry made it a symlink" : strerror(en));
            goto out;
        }
        int wr = write_data(a, fd, &st->bytes, &why);
        fchmod(fd, (archive_entry_perm(ent) & 0111) ? 0755 : 0644);
        if (wr == 0 && close(fd) != 0) {
            wr = -1;
            why = strerror(errno);
        } else if (wr != 0) {
            close(fd);
        }
        if (wr == -2) {
            rc = fl_errf(e, "%s: corrupt or truncated archive at entry '%s': %s", archive_path,
                         name, why ? why : "data error");
            rc = FL_EXTRACT_CORRUPT;
            goto out;
        }
        if (wr < 0) {
            rc = fl_errf(e, "%s: entry '%s': write failed: %s%s", archive_path, name,
                         why ? why : "error", strcmp(why ? why : "", strerror(ENOSPC)) == 0
                                                  ? " (disk full)" : "");
            goto out;
        }
        st->files++;
    }
out:
    archive_read_free(a);
    close(rootfd);
    return rc;
}
