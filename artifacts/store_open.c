/* Opening a store: the directory layout, the write path every object/tree/record/ref goes
 * through (temporary file under tmp/, fsync, rename, directory fsync, fault injection), staging
 * and work directories, and removal of staging directories left by dead processes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

static const char *const LAYOUT[] = {"objects", "trees",      "checkouts", "records", "refs",
                                     "work",    "tmp",        "quarantine", "locks"};

char *fl__shard_path(const fl_store *s, const char *kind, const fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    return fl_strdupf("%s/%s/%.2s/%s", s->root, kind, hex, hex + 2);
}

char *fl__store_read(const char *path, size_t max, size_t *len, fl_err *e) {
    return fl_read_file_flags(path, len, max, FL_READ_NOFOLLOW, e);
}

int fl__fsync_dir(const char *dir, fl_err *e) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fl_errf(e, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd), err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL) return fl_errf(e, "fsync %s: %s", dir, strerror(err));
    return 0;
}

int fl__store_count_write(fl_store *s, const char *what, const char *path, fl_err *e) {
    s->writes++;
    /* Once the disk is "full" it stays full: every later write fails too. */
    if (s->fault_after > 0 && s->writes >= s->fault_after)
        return fl_errf(e, "cannot write %s %s: %s (injected fault: write %ld, fault_write_after=%ld)",
                       what, path, strerror(ENOSPC), s->writes, s->fault_after);
    return 0;
}

int fl__rename_mkdir(const char *src, const char *dst, fl_err *e) {
    if (rename(src, dst) == 0) return 0;
    if (errno == ENOENT) {
        char *dir = strdup(dst);
        if (!dir) return fl_errf(e, "out of memory");
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        int rc = fl_mkdirs(dir, e);
        free(dir);
        if (rc != 0) return -1;
        if (rename(src, dst) == 0) return 0;
    }
    return fl_errf(e, "cannot rename %s to %s: %s", src, dst, strerror(errno));
}

int fl__store_tmpfile(fl_store *s, char **path, fl_err *e) {
    char *p = fl_strdupf("%s/tmp/%ld-w-XXXXXX", s->root, (long)getpid());
    if (!p) return fl_errf(e, "out of memory");
    int fd = mkostemp(p, O_CLOEXEC);
    if (fd < 0) {
        fl_errf(e, "cannot create a temporary file in %s/tmp: %s", s->root, strerror(errno));
        free(p);
        return -1;
    }
    *path = p;
    return fd;
}

char *fl__store_tmpdir(fl_store *s, const char *label, fl_err *e) {
    char clean[64];
    size_t n = 0;
    for (const char *c = label ? label : "stage"; *c && n < sizeof clean - 1; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '.' || *c == '_' || *c == '-';
        clean[n++] = ok ? *c : '_';
    }
    clean[n] = '\0';
    char *p = fl_strdupf("%s/tmp/%ld-%s-XXXXXX", s->root, (long)getpid(), clean);
    if (!p) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    if (!mkdtemp(p)) {
        fl_errf(e, "cannot create a staging directory in %s/tmp: %s", s->root, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
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

int fl__store_write_tmp(fl_store *s, const void *data, size_t len, mode_t mode, int sync,
                        const char *what, const char *dst, char **tmp, fl_err *e) {
    int fd = fl__store_tmpfile(s, tmp, e);
    if (fd < 0) return -1;
    if (write_all(fd, data, len) != 0 || fchmod(fd, mode) != 0 || (sync && fsync(fd) != 0)) {
        int err = errno;
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return fl_errf(e, "cannot write %s %s: %s", what, dst, strerror(err));
    }
    close(fd);
    return 0;
}

int fl__set_aside_blocker(fl_store *s, const char *dst, fl_err *e) {
    struct stat st;
    char *p = strdup(dst);
    if (!p) return fl_errf(e, "out of memory");
    int rc = 0;
    if (lstat(p, &st) == 0) {
        if (S_ISDIR(st.st_mode)) rc = 1;
    } else if (errno == ENOTDIR) { /* some parent is not a directory: find it */
        for (char *slash; !rc && (slash = strrchr(p, '/')) && slash > p + strlen(s->root);) {
            *slash = '\0';
            if (lstat(p, &st) == 0) rc = S_ISDIR(st.st_mode) ? -2 : 1;
        }
        if (rc == -2) rc = 0;
    }
    if (rc == 1) {
        /* quarantine/<path below the root, '/' -> '_'> */
        char name[512];
        snprintf(name, sizeof name, "%s", p + strlen(s->root) + 1);
        for (char *c = name; *c; c++)
            if (*c == '/') *c = '_';
        if (fl__quarantine(s, p, "blocked-", name, e) != 0) rc = -1;
    }
    free(p);
    return rc;
}

int fl__store_put_file(fl_store *s, const char *dst, const void *data, size_t len, mode_t mode,
                       int keep_existing, const char *what, int *written, fl_err *e) {
    if (written) *written = 0;
    struct stat st;
    if (keep_existing && lstat(dst, &st) == 0) return 0;
    if (fl__store_count_write(s, what, dst, e) != 0) return -1;
    char *tmp;
    if (fl__store_write_tmp(s, data, len, mode, 1, what, dst, &tmp, e) != 0) return -1;
    int rc = fl__rename_mkdir(tmp, dst, e);
    if (rc != 0) {
        fl_err keep = *e;
        int b = fl__set_aside_blocker(s, dst, e);
        if (b == 1)
            rc = fl__rename_mkdir(tmp, dst, e);
        else if (b == 0)
            *e = keep;
    }
    if (rc != 0) unlink(tmp);
    free(tmp);
    if (rc != 0) return -1;
    if (fl_fsync_parent(dst, e) != 0) return -1;
    if (written) *written = 1;
    return 0;
}

int fl__quarantine(fl_store *s, const char *path, const char *prefix, const char *hex, fl_err *e) {
    for (int i = 0; i < 1000; i++) {
        char *dst = i ? fl_strdupf("%s/quarantine/%s%s.%d", s->root, prefix, hex, i)
                      : fl_strdupf("%s/quarantine/%s%s", s->root, prefix, hex);
        if (!dst) return fl_errf(e, "out of memory");
        struct stat st;
        if (lstat(dst, &st) == 0) {
            free(dst);
            continue;
        }
        int rc = fl__rename_mkdir(path, dst, e);
        if (rc == 0) rc = fl_fsync_parent(path, e);
        else if (lstat(path, &st) != 0 && errno == ENOENT) rc = 0; /* another process moved it */
        free(dst);
        return rc;
    }
    return fl_errf(e, "cannot quarantine %s: too many earlier copies", path);
}

int fl__check_name(const char *kind, const char *name, fl_err *e) {
    if (!name || !*name) return fl_errf(e, "invalid %s name: empty", kind);
    if (strlen(name) > 1000) return fl_errf(e, "invalid %s name: longer than 1000 bytes", kind);
    const char *comp = name;
    for (const char *c = name;; c++) {
        if (*c == '/' || *c == '\0') {
            size_t l = (size_t)(c - comp);
            if (l == 0 || (l == 1 && comp[0] == '.') || (l == 2 && comp[0] == '.' && comp[1] == '.'))
                return fl_errf(e, "invalid %s name '%s': empty, '.' or '..' path component", kind,
                               name);
            if (*c == '\0') break;
            comp = c + 1;
            continue;
        }
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '.' || *c == '_' || *c == '-';
        if (!ok)
            return fl_errf(e, "invalid %s name '%s': only [A-Za-z0-9._-] and '/' are allowed", kind,
                           name);
    }
    return 0;
}

/* tmp/ entries are named "<pid>-..."; those whose process is gone are leftovers of a crash. */
static void remove_stale_tmp(fl_store *s) {
    char *dir = fl_strdupf("%s/tmp", s->root);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        errno = 0;
        long pid = strtol(de->d_name, &end, 10);
        if (end == de->d_name || *end != '-' || pid <= 0 || errno) continue;
        if (pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = fl_strdupf("%s/%s", dir, de->d_name);
        fl_err ignored;
        if (p) fl_remove_tree(p, &ignored); /* best effort: another opener may race us */
        free(p);
    }
    closedir(d);
    free(dir);
}

/* A store lives in a folder of its own, marked by MARKER. Opening one in a folder that holds
 * other things ("store": "/", ".", a home directory) would make its tmp/ and work/ sweeps
 * delete files that are not the store's (stale-tmp removal matches "<pid>-*" in tmp/, gc
 * removes hex-named folders in work/), so only a marked store or a folder holding nothing but
 * store entries (new, or a store made before the marker existed) is accepted. */
#define MARKER ".fluke-store"
static int store_entry(const char *name) {
    if (!strcmp(name, MARKER) || !strcmp(name, "statcache")) return 1;
    for (size_t i = 0; i < sizeof LAYOUT / sizeof *LAYOUT; i++)
        if (!strcmp(name, LAYOUT[i])) return 1;
    return 0;
}

static int check_store_dir(const char *real, const char *root, int *marked, fl_err *e) {
    char *m = fl_strdupf("%s/" MARKER, real);
    struct stat st;
    *marked = m && lstat(m, &st) == 0 && S_ISREG(st.st_mode);
    free(m);
    if (!m) return fl_errf(e, "out of memory");
    if (*marked) return 0;
    /* Unmarked: a new folder, or a store made before the marker (or partly removed), holds
     * nothing but the store's own entries. */
    DIR *d = opendir(real);
    if (!d) return fl_errf(e, "cannot open store at %s: %s", root, strerror(errno));
    struct dirent *de;
    char other[256] = "";
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !store_entry(de->d_name)) {
            snprintf(other, sizeof other, "%s", de->d_name);
            break;
        }
    closedir(d);
    if (!other[0]) return 0;
    return fl_errf(e,
                   "cannot create store at %s: %s holds '%s', which is not part of a fluke store; "
                   "a store needs a folder of its own",
                   root, real, other);
}

static int mark_store(const char *real, fl_err *e) {
    char *m = fl_strdupf("%s/" MARKER, real);
    if (!m) return fl_errf(e, "out of memory");
    int fd = open(m, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    static const char text[] = "fluke artifact store\n";
    int rc = 0;
    if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)sizeof text - 1)
        rc = fl_errf(e, "cannot write %s: %s", m, strerror(errno));
    if (fd >= 0) close(fd);
    free(m);
    return rc;
}

fl_store *fl_store_open(const char *root, const fl_store_opts *opts, fl_err *e) {
    if (!root || !*root) {
        fl_errf(e, "cannot open store: empty root path");
        return NULL;
    }
    if (fl_mkdirs(root, e) != 0) {
        fl_errprefix(e, "cannot create store at %s", root);
        return NULL;
    }
    char real[PATH_MAX];
    if (!realpath(root, real)) {
        fl_errf(e, "cannot create store at %s: %s", root, strerror(errno));
        return NULL;
    }
    fl_store *s = calloc(1, sizeof *s);
    if (!s || !(s->root = strdup(real))) {
        free(s);
        fl_errf(e, "out of memory");
        return NULL;
    }
    if (opts) s->fault_after = opts->fault_write_after;
    int marked = 0;
    if (check_store_dir(s->root, root, &marked, e) != 0) {
        fl_store_close(s);
        return NULL;
    }
    for (size_t i = 0; i < sizeof LAYOUT / sizeof *LAYOUT; i++) {
        char *p = fl_strdupf("%s/%s", s->root, LAYOUT[i]);
        int rc = p ? fl_mkdirs(p, e) : fl_errf(e, "out of memory");
        free(p);
        if (rc != 0) {
            fl_errprefix(e, "cannot create store at %s", root);
            fl_store_close(s);
            return NULL;
        }
    }
    /* Permission bits do not stop root, and a read-only mount only shows on write: probe. */
    char *probe;
    int fd = fl__store_tmpfile(s, &probe, e);
    if (fd < 0) {
        fl_errprefix(e, "store at %s is not writable", root);
        fl_store_close(s);
        return NULL;
    }
    close(fd);
    unlink(probe);
    free(probe);
    if (!marked && mark_store(s->root, e) != 0) {
        fl_errprefix(e, "cannot create store at %s", root);
        fl_store_close(s);
        return NULL;
    }
    remove_stale_tmp(s);
    return s;
}

void fl_store_close(fl_store *s) {
    if (!s) return;
    fl__statcache_free(s->sc);
    free(s->root);
    free(s);
}

const char *fl_store_root(const fl_store *s) { return s->root; }

char *fl_store_staging_dir(fl_store *s, const char *label, fl_err *e) {
    return fl__store_tmpdir(s, label, e);
}

char *fl_store_work_dir(fl_store *s, const fl_digest *key, fl_err *e) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(key, hex);
    char *p = fl_strdupf("%s/work/%s", s->root, hex);
    if (!p) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    /* Scratch only: anything but a real directory here (a file, a symbolic link that would send
     * the stage's checkpoints elsewhere) is damage; remove it (a link, not its target). */
    struct stat st;
    if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode) && fl_remove_tree(p, e) != 0) {
        free(p);
        return NULL;
    }
    if (fl_mkdirs(p, e) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int fl_store_work_dir_remove(fl_store *s, const fl_digest *key, fl_err *e) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(key, hex);
    char *p = fl_strdupf("%s/work/%s", s->root, hex);
    if (!p) return fl_errf(e, "out of memory");
    int rc = fl_remove_tree(p, e);
    free(p);
    return rc;
}
