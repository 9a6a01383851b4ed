/* Named locks: flock() on files under locks/. The kernel releases a flock when the last
 * descriptor of its open file goes away, so a killed process never leaves a lock behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

/* Opens locks/<name> (creating it): a regular file, never through a symbolic link (which could
 * create a file anywhere) and never blocking on a FIFO. Returns the fd, or -1 with errno set
 * (EINVAL: it opened, but is not a regular file). */
static int open_lock(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

int fl_store_lock(fl_store *s, const char *name, int exclusive, int wait, fl_err *e) {
    if (fl__check_name("lock", name, e) != 0) return -1;
    char *path = fl_strdupf("%s/locks/%s", s->root, name);
    if (!path) return fl_errf(e, "out of memory");
    int fd = open_lock(path);
    if (fd < 0 && errno == ENOENT) {
        char *dir = strdup(path);
        if (dir) {
            *strrchr(dir, '/') = '\0';
            fl_err ignored;
            fl_mkdirs(dir, &ignored);
            free(dir);
        }
        fd = open_lock(path);
    }
    if (fd < 0 && (errno == ELOOP || errno == EISDIR || errno == ENXIO || errno == EINVAL ||
                   errno == ENOTDIR)) {
        /* Damage (a symbolic link, a directory, a FIFO, a socket in place of the lock file): a
         * lock file holds no data, so set it aside and use a fresh one. Only what is still not
         * a regular file is moved, so a racing opener's fresh file stays. */
        struct stat st;
        fl_err q;
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            const char *leaf = strrchr(path, '/') + 1;
            fl__quarantine(s, path, "lock-", leaf, &q);
        } else if (errno == ENOTDIR) {
            fl__set_aside_blocker(s, path, &q);
        }
        fd = open_lock(path);
        if (fd < 0 && errno == ENOENT) {
            char *dir = strdup(path);
            if (dir) {
                *strrchr(dir, '/') = '\0';
                fl_mkdirs(dir, &q);
                free(dir);
            }
            fd = open_lock(path);
        }
    }
    if (fd < 0) {
        fl_errf(e, "cannot open lock file %s: %s", path,
                errno == EINVAL ? "not a regular file" : strerror(errno));
        free(path);
        return -1;
    }
    int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
    for (;;) {
        if (flock(fd, op) == 0) break;
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK && !wait) {
            free(path);
            return -2;
        }
        fl_errf(e, "cannot lock %s: %s", path, strerror(err));
        free(path);
        return -1;
    }
    free(path);
    return fd;
}

void fl_store_unlock(int fd) {
    if (fd >= 0) close(fd);
}
