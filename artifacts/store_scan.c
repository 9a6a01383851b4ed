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

int fl__scan_shards(fl_store *s, const char *kind, fl_scan_fn fn, void *arg, fl_err *e) {
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
        DIR *sd = sdir ? opendir(sdir) : NULL;
        if (!sd) {
            free(sdir);
            continue; /* not a directory, or vanished */
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
            else if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) rc = fn(&dg, p, &st, arg, e);
            free(p);
        }
        closedir(sd);
        free(sdir);
    }
    closedir(d);
    free(top);
    return rc;
}
