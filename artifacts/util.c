#include "artifacts/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fl_errf(fl_err *e, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int fl_errprefix(fl_err *e, const char *fmt, ...) {
    if (!e) return -1;
    char head[FL_ERRLEN], old[FL_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t h = strlen(head);
    if (h > sizeof e->msg - 3) h = sizeof e->msg - 3;
    memcpy(e->msg, head, h);
    memcpy(e->msg + h, ": ", 2);
    size_t rest = sizeof e->msg - h - 3, o = strnlen(old, rest);
    memcpy(e->msg + h + 2, old, o);
    e->msg[h + 2 + o] = '\0';
    return -1;
}

int fl_mkdirs(const char *path, fl_err *e) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0) return 0;
    if (n >= sizeof buf) return fl_errf(e, "path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return fl_errf(e, "cannot create directory %s: %s", buf, strerror(errno));
        struct stat st;
        if (stat(buf, &st) != 0)
            return fl_errf(e, "cannot create directory %s: %s", buf, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return fl_errf(e, "cannot create directory %s: Not a directory", buf);
        buf[i] = c;
    }
    return 0;
}

const char *fl_file_kind(unsigned m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

char *fl_read_fd_max(int fd, const char *path, size_t *len, size_t max, fl_err *e) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        fl_errf(e, "cannot read %s: %s, not a regular file", path, fl_file_kind(st.st_mode));
        return NULL;
    }
    if (max > SIZE_MAX - 2) max = SIZE_MAX - 2;
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max) {
        fl_errf(e, "cannot read %s: %lld bytes, larger than the %zu-byte limit", path,
                (long long)st.st_size, max);
        return NULL;
    }
    /* Room for the size fstat gave, one byte to notice growth, and the NUL. */
    size_t cap = (size_t)st.st_size + 2, n = 0;
    if (cap < 4096 && max >= 4096) cap = 4096;
    char *buf = malloc(cap);
    if (!buf) {
        fl_errf(e, "out of memory reading %s (%zu bytes)", path, cap);
        return NULL;
    }
    for (;;) {
        if (n + 1 >= cap) { /* it grew since fstat: keep going, but never past max + 1 */
            size_t nc = cap > (max + 2) / 2 ? max + 2 : cap * 2;
            if (nc <= cap) {
                free(buf);
                fl_errf(e,
                        "cannot read %s: larger than the %zu-byte limit (it grew while being "
                        "read)",
                        path, max);
                return NULL;
            }
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fl_errf(e, "out of memory reading %s", path);
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fl_errf(e, "cannot read %s: %s", path, strerror(errno));
            free(buf);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max) {
            free(buf);
            fl_errf(e, "cannot read %s: larger than the %zu-byte limit (it grew while being read)",
                    path, max);
            return NULL;
        }
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

char *fl_read_file_flags(const char *path, size_t *len, size_t max, unsigned flags, fl_err *e) {
    /* O_NONBLOCK: opening a FIFO returns at once (and is then refused) instead of waiting for a
     * writer. It does not change reads of regular files. */
    int of = O_RDONLY | O_CLOEXEC | O_NONBLOCK | ((flags & FL_READ_NOFOLLOW) ? O_NOFOLLOW : 0);
    int fd = open(path, of);
    if (fd < 0) {
        if (errno == ELOOP && (flags & FL_READ_NOFOLLOW))
            fl_errf(e, "cannot read %s: a symbolic link, not a regular file", path);
        else
            fl_errf(e, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = fl_read_fd_max(fd, path, len, max, e);
    close(fd);
    return buf;
}

char *fl_read_file_max(const char *path, size_t *len, size_t max, fl_err *e) {
    return fl_read_file_flags(path, len, max, 0, e);
}

char *fl_read_file(const char *path, size_t *len, fl_err *e) {
    return fl_read_file_flags(path, len, FL_READ_MAX_DEFAULT, 0, e);
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fl_fsync_parent(const char *path, fl_err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    const char *dir = dirname(buf);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fl_errf(e, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL) return fl_errf(e, "fsync %s: %s", dir, strerror(err));
    return 0;
}

int fl_write_file_atomic(const char *path, const void *data, size_t len, fl_err *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fl_errf(e, "cannot create %s: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return fl_errf(e, "cannot write %s: %s", path, strerror(err));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return fl_errf(e, "cannot rename %s to %s: %s", tmp, path, strerror(err));
    }
    return fl_fsync_parent(path, e);
}

int fl_remove_tree(const char *path, fl_err *e) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : fl_errf(e, "cannot stat %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        if (!d) return fl_errf(e, "cannot open directory %s: %s", path, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *child = fl_strdupf("%s/%s", path, de->d_name);
            int rc = fl_remove_tree(child, e);
            free(child);
            if (rc != 0) {
                closedir(d);
                return -1;
            }
        }
        closedir(d);
        if (rmdir(path) != 0) return fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
        return 0;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return fl_errf(e, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int fl_copy_file(const char *src, const char *dst, fl_err *e) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return fl_errf(e, "cannot open %s: %s", src, strerror(errno));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    /* A fresh file, never through a link someone left at that name (dst may be in a user's
     * folder, out/): a stale one of ours is removed first, anything racing in is refused. */
    unlink(tmp);
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return fl_errf(e, "cannot create %s: %s", tmp, strerror(errno));
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (r > 0 && write_all(out, buf, (size_t)r) != 0)) {
            int err = errno;
            close(in);
            close(out);
            unlink(tmp);
            return fl_errf(e, "cannot copy %s to %s: %s", src, dst, strerror(err));
        }
        if (r == 0) break;
    }
    close(in);
    if (fsync(out) != 0) {
        int err = errno;
        close(out);
        unlink(tmp);
        return fl_errf(e, "cannot write %s: %s", dst, strerror(err));
    }
    close(out);
    if (rename(tmp, dst) != 0) {
        int err = errno;
        unlink(tmp);
        return fl_errf(e, "cannot rename %s to %s: %s", tmp, dst, strerror(err));
    }
    return 0;
}

char *fl_strdupf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

double fl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int fl_write_file(const char *path, const void *data, size_t len, fl_err *e) {
    FILE *f = fopen(path, "wb");
    if (!f) return fl_errf(e, "cannot create %s: %s", path, strerror(errno));
    size_t n = fwrite(data, 1, len, f);
    int bad = n != len || ferror(f);
    if (fclose(f) != 0) bad = 1;
    return bad ? fl_errf(e, "cannot write %s: %s", path, strerror(errno ? errno : EIO)) : 0;
}
