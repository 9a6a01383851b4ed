/* For fuzz targets whose readers take a path: a private scratch directory per process (under
 * TMPDIR, removed at exit) and a writer that puts the input into a named file there. */
#ifndef FLUKE_FUZZ_FILES_H
#define FLUKE_FUZZ_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FZ_MAX_FILES 8

static char fz_dir_path[512];
static char fz_names[FZ_MAX_FILES][600];
static int fz_nnames;

static void fz_cleanup(void) {
    for (int i = 0; i < fz_nnames; i++) unlink(fz_names[i]);
    if (fz_dir_path[0]) rmdir(fz_dir_path);
}

static const char *fz_dir(void) {
    if (!fz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/fluke-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir_path)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir_path;
}

/* Writes data to DIR/name (replacing it); returns the path (static storage per name). */
static const char *fz_write(const char *name, const void *data, size_t size) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    int k = 0;
    while (k < fz_nnames && strcmp(fz_names[k], path)) k++;
    if (k == fz_nnames) {
        if (fz_nnames == FZ_MAX_FILES) abort();
        memcpy(fz_names[fz_nnames++], path, sizeof path);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return fz_names[k];
}

#endif
