/* Competition data end to end: list, download (resumable, in a work directory), extract safely
 * into the data directory, and download once more when the archive turns out corrupt. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/internal.h"

/* A data file name from the API or a config: relative, no "..", no empty components. */
static int name_ok(const char *n) {
    if (!n || !*n || n[0] == '/') return 0;
    for (const char *p = n; *p;) {
        size_t l = strcspn(p, "/");
        if (l == 0 || (l == 2 && p[0] == '.' && p[1] == '.') || (l == 1 && p[0] == '.')) return 0;
        p += l;
        if (*p == '/') p++;
    }
    for (const char *p = n; *p; p++)
        if ((unsigned char)*p < 0x20) return 0;
    return 1;
}

/* Extracts zip into dir; on a corrupt archive removes the zip and returns 1 (download again). */
static int extract_or_retry(fl_kaggle *k, const char *zip, const char *dir, int last,
                            int remove_dir, fl_err *e) {
    fl_extract_stats st;
    int r = fl_extract(zip, dir, &st, e);
    if (r == 0) {
        char b[32];
        fl_fmt_bytes((double)st.bytes, b, sizeof b);
        fprintf(k->log, "extracted %llu files (%s) into %s\n", (unsigned long long)st.files, b, dir);
        fflush(k->log);
        return 0;
    }
    if (r != FL_EXTRACT_CORRUPT) return -1;
    fl_err e2;
    /* The whole-competition tree is ours to remove; a shared directory is not (the good archive
     * overwrites what the corrupt one left). */
    if (remove_dir) fl_remove_tree(dir, &e2);
    unlink(zip);
    if (last) return fl_errprefix(e, "the archive was still corrupt after downloading it again");
    fprintf(k->log, "%s: corrupt or truncated archive (%s); downloading it again\n", zip, e->msg);
    fflush(k->log);
    return 1;
}

static int move_into(const char *src, const char *dst, fl_err *e) {
    char *dir = strdup(dst);
    if (!dir) return fl_errf(e, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    int rc = slash ? fl_mkdirs(dir, e) : 0;
    free(dir);
    if (rc < 0) return -1;
    if (rename(src, dst) == 0) return 0;
    if (errno != EXDEV) return fl_errf(e, "cannot move %s to %s: %s", src, dst, strerror(errno));
    return fl_copy_file(src, dst, e);
}

int fl_kaggle_fetch(fl_kaggle *k, const char *competition, const char *const *files,
                    size_t nfiles, const char *work_dir, const char *data_dir, fl_err *e) {
    fl_kaggle_files list;
    if (fl_kaggle_list_files(k, competition, &list, e) < 0) return -1;
    int64_t total = 0;
    for (size_t i = 0; i < list.n; i++) total += list.v[i].total_bytes > 0 ? list.v[i].total_bytes : 0;
    char tb[32];
    fl_fmt_bytes((double)total, tb, sizeof tb);
    fprintf(k->log, "%s: %zu data files, %s\n", competition, list.n, tb);
    fflush(k->log);
    for (size_t i = 0; i < nfiles; i++) {
        size_t j = 0;
        while (j < list.n && strcmp(list.v[j].name, files[i]) != 0) j++;
        if (!name_ok(files[i]) || j == list.n) {
            fl_errf(e, "competition '%s' has no data file '%s' (it has %zu files, e.g. '%s')",
                    competition, files[i], list.n, list.n ? list.v[0].name : "none");
            fl_kaggle_files_free(&list);
            return -1;
        }
    }
    fl_kaggle_files_free(&list);
    if (fl_mkdirs(work_dir, e) < 0 || fl_mkdirs(data_dir, e) < 0) return -1;

    if (!files || !nfiles) {
        char *zip = fl_strdupf("%s/%s.zip", work_dir, competition);
        if (!zip) return fl_errf(e, "out of memory");
        int rc = -1;
        for (int round = 0; round < 2; round++) {
            if (fl_kaggle_download_all(k, competition, zip, NULL, e) < 0) break;
            int r = extract_or_retry(k, zip, data_dir, round == 1, 1, e);
            if (r == 1) {
                if (fl_mkdirs(data_dir, e) < 0) break;
                continue;
            }
            rc = r;
            break;
        }
        free(zip);
        return rc;
    }
    for (size_t i = 0; i < nfiles; i++) {
        char *dl = fl_strdupf("%s/files/%s", work_dir, files[i]);
        char *dst = fl_strdupf("%s/%s", data_dir, files[i]);
        char *dldir = dl ? strdup(dl) : NULL;
        int rc = -1;
        if (!dl || !dst || !dldir) {
            fl_errf(e, "out of memory");
            goto next;
        }
        *strrchr(dldir, '/') = 0;
        if (fl_mkdirs(dldir, e) < 0) goto next;
        for (int round = 0; round < 2; round++) {
            if (fl_kaggle_download_file(k, competition, files[i], dl, NULL, e) < 0) break;
            size_t nl = strlen(files[i]);
            int named_zip = nl > 4 && strcmp(files[i] + nl - 4, ".zip") == 0;
            if (!fl_is_zip(dl) || named_zip) { /* a requested .zip stays a file */
                rc = move_into(dl, dst, e);
                break;
            }
            /* Served zipped: unpack where the file belongs. */
            char *into = strdup(dst);
            char *sl = into ? strrchr(into, '/') : NULL;
            if (sl) *sl = 0;
            int r = into ? extract_or_retry(k, dl, into, round == 1, 0, e) : fl_errf(e, "out of memory");
            free(into);
            if (r == 1) continue;
            rc = r;
            break;
        }
    next:
        free(dl);
        free(dst);
        free(dldir);
        if (rc < 0) return -1;
    }
    return 0;
}
