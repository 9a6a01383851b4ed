/* Named locks: flock() on files under locks/. The kernel releases a flock when the last
 * descriptor of its open file goes away, so a killed process never leaves a lock behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

int fl_store_lock(fl_store *s, const char *name, int exclusive, int wait, fl_err *e) {
    if (fl__check_name("lock", name, e) != 0) return -1;
    char *path = fl_strdupf("%s/locks/%s", s->root, name);
    if (!path) return fl_errf(e, "out of memory");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        char *dir = strdup(path);
        if (dir) {
            *strrchr(dir, '/') = '\0';
            fl_err ignored;
            fl_mkdirs(dir, &ignored);
            free(dir);
        }
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        fl_errf(e, "cannot open lock file %s: %s", path, strerror(errno));
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
