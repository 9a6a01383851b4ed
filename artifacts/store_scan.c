/* Enumerates the sharded digest directories (objects/, trees/, records/) for verify and gc. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artifacts/store_internal.h"

static int is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[n] == '\0';
}

int fl__scan_shards_all(fl_store *s, const char *kind, fl_scan_fn fn, fl_scan_fn odd, void *arg,
                        fl_err *e) {
    char *top = fl_strdupf("%s/%s", s->root, kind);
    if (!top) return fl_errf(e, "out of memory");
    DIR *d = opendir(top);
    if (!d) {
        int err = errno;
        free(top);
        return err == ENOENT ? 0 : fl_errf(e, "cannot open %s/%s: %s", s->root, kind, strerror(err));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!is_hex(de->d_name, 2)) continue;
        char *sdir = fl_strdupf("%s/%s", top, de->d_name);
        struct stat sst;
        if (!sdir) {
            rc = fl_errf(e, "out of memory");
            break;
        }
        /* lstat: a symbolic link in place of a shard must not lead the scan elsewhere. */
        if (lstat(sdir, &sst) != 0 || !S_ISDIR(sst.st_mode)) {
            if (odd && lstat(sdir, &sst) == 0) rc = odd(NULL, sdir, &sst, arg, e);
            free(sdir);
            continue; /* vanished, or not a directory */
        }
        DIR *sd = opendir(sdir);
        if (!sd) {
            free(sdir);
            continue;
        }
        struct dirent *fe;
        while (rc == 0 && (fe = readdir(sd))) {
            if (!is_hex(fe->d_name, 30)) continue;
            char hex[FL_DIGEST_HEX];
            memcpy(hex, de->d_name, 2);
            memcpy(hex + 2, fe->d_name, 31);
            fl_digest dg;
            if (fl_digest_from_hex(hex, &dg) != 0) continue;
            char *p = fl_strdupf("%s/%s", sdir, fe->d_name);
            struct stat st;
            if (!p) rc = fl_errf(e, "out of memory");
            else if (lstat(p, &st) != 0) rc = 0; /* vanished */
            else if (S_ISREG(st.st_mode)) rc = fn(&dg, p, &st, arg, e);
            else if (odd) rc = odd(&dg, p, &st, arg, e);
            free(p);
        }
        closedir(sd);
        free(sdir);
    }
    closedir(d);
    free(top);
    return rc;
}

int fl__scan_shards(fl_store *s, const char *kind, fl_scan_fn fn, void *arg, fl_err *e) {
    return fl__scan_shards_all(s, kind, fn, NULL, arg, e);
}
