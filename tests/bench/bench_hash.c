/* Hashing throughput of the store against xxhsum (XXH128) and md5sum on the same data in the
 * same run, and the stat cache's no-op rerun:
 *   1. one 1 GiB file: fl_hash_file vs `xxhsum -H2` vs `md5sum` (page cache warm for all);
 *   2. 20,000 x 20 KB files: fl_store_hash_external (empty stat cache, so every file is read)
 *      vs `xargs xxhsum -H2` / `xargs md5sum` over the same file list;
 *   3. an 80,000-file input: first fl_store_hash_external vs the no-op rerun after the cache is
 *      saved and the store reopened (files_hashed must be 0), and xxhsum over the same files.
 * BENCH_SCALE (0 < s <= 1) shrinks every size; BENCH_DIR picks the parent of the temporary
 * directory (default /tmp). Everything created is removed at the end. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/store.h"

#define MIB (1024.0 * 1024.0)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) { /* xorshift64*: fast filler bytes, content does not matter */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void fill(char *buf, size_t n) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t r = next_rand();
        memcpy(buf + i, &r, 8);
    }
}

static int write_file(const char *path, const char *buf, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    /* An hour in the past: no entry is racily clean by accident of timing. */
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 3600;
    ts[1] = ts[0];
    futimens(fd, ts);
    return close(fd);
}

static int have(const char *tool) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s > /dev/null 2>&1", tool);
    return system(cmd) == 0;
}

/* Seconds taken by a shell command (its output discarded); < 0 when it failed. */
static double time_cmd(const char *cmd) {
    double t = fl_now();
    int rc = system(cmd);
    double dt = fl_now() - t;
    return rc == 0 ? dt : -1;
}

/* Creates n files of size bytes as dir/dNN/fNNNNNN (100 directories); appends each path,
 * NUL-terminated, to list (may be NULL). */
static int make_files(const char *dir, long n, size_t size, FILE *list) {
    char *buf = malloc(size + 16), path[4200];
    if (!buf) return -1;
    fill(buf, size);
    for (long i = 0; i < n; i++) {
        if (i % (n / 100 > 0 ? n / 100 : 1) == 0) {
            snprintf(path, sizeof path, "%s/d%02ld", dir, i / (n / 100 > 0 ? n / 100 : 1));
            mkdir(path, 0755);
        }
        snprintf(path, sizeof path, "%s/d%02ld/f%06ld.jpg", dir, i / (n / 100 > 0 ? n / 100 : 1), i);
        memcpy(buf, &i, sizeof i); /* every file distinct */
        if (write_file(path, buf, size) != 0) {
            free(buf);
            fprintf(stderr, "bench_hash: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
        if (list) fprintf(list, "%s%c", path, 0);
    }
    free(buf);
    return 0;
}

static void ratio_line(const char *what, double ours_s, double peer_s, const char *peer) {
    if (peer_s < 0) printf("  %-34s skipped: %s not found or failed\n", what, peer);
    else printf("  %-34s %.3f s -> fluke is %.2fx the speed of %s\n", what, peer_s, peer_s / ours_s, peer);
}

int main(void) {
    double scale = 1.0;
    const char *sc = getenv("BENCH_SCALE");
    if (sc && *sc) scale = atof(sc);
    if (!(scale > 0 && scale <= 1)) {
        fprintf(stderr, "bench_hash: BENCH_SCALE must be in (0, 1], got %s\n", sc);
        return 2;
    }
    const char *parent = getenv("BENCH_DIR");
    if (!parent || !*parent) parent = "/tmp";
    size_t big = (size_t)(1024.0 * MIB * scale);
    long nsmall = (long)(20000 * scale), nmany = (long)(80000 * scale);
    size_t small = 20 * 1024;
    if (nsmall < 100) nsmall = 100;
    if (nmany < 100) nmany = 100;

    char *dir = fl_strdupf("%s/fluke-bench-hash-XXXXXX", parent);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_hash: cannot create a directory under %s: %s\n", parent, strerror(errno));
        return 1;
    }
    int xx = have("xxhsum"), md5 = have("md5sum");
    printf("bench_hash (scale %.3g, data under %s)\n", scale, dir);
    int rc = 1;
    fl_err e = {0};
    fl_store *s = NULL;
    char *cmd = NULL;

    /* ---------------------------------------------------------------- 1. one big file */
    char *bigp = fl_strdupf("%s/big.bin", dir);
    {
        int fd = open(bigp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char *buf = malloc(1 << 20);
        fill(buf, 1 << 20);
        for (size_t off = 0; fd >= 0 && off < big; off += 1 << 20) {
            size_t n = big - off < (1u << 20) ? big - off : 1u << 20;
            buf[0] = (char)off;
            if (write(fd, buf, n) != (ssize_t)n) {
                fprintf(stderr, "bench_hash: cannot write %s\n", bigp);
                goto out;
            }
        }
        free(buf);
        if (fd < 0) goto out;
        close(fd);
    }
    fl_digest d;
    fl_hash_file(bigp, &d, &e); /* warm the page cache for everyone */
    double t = fl_now();
    if (fl_hash_file(bigp, &d, &e) != 0) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    double ours = fl_now() - t;
    printf("1 file of %.0f MiB\n", big / MIB);
    printf("  %-34s %.3f s  %8.0f MiB/s\n", "fl_hash_file (XXH3-128)", ours, big / MIB / ours);
    cmd = fl_strdupf("xxhsum -H2 '%s' > /dev/null 2>&1", bigp);
    double pxx = xx ? time_cmd(cmd) : -1;
    free(cmd);
    cmd = fl_strdupf("md5sum '%s' > /dev/null 2>&1", bigp);
    double pmd = md5 ? time_cmd(cmd) : -1;
    free(cmd);
    cmd = NULL;
    ratio_line("xxhsum -H2", ours, pxx, "xxhsum");
    ratio_line("md5sum", ours, pmd, "md5sum");
    unlink(bigp);

    /* ---------------------------------------------------------------- 2. 20,000 x 20 KB */
    char *sdir = fl_strdupf("%s/small", dir), *slist = fl_strdupf("%s/small.list", dir);
    char *root = fl_strdupf("%s/store", dir);
    mkdir(sdir, 0755);
    FILE *lf = fopen(slist, "w");
    if (!lf || make_files(sdir, nsmall, small, lf) != 0) goto out;
    fclose(lf);
    s = fl_store_open(root, NULL, &e);
    if (!s) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    fl_hash_stats st = {0};
    t = fl_now();
    if (fl_store_hash_external(s, sdir, &d, &st, &e) != 0) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    ours = fl_now() - t;
    double mb = (double)nsmall * small / MIB;
    printf("%ld files x %zu KB (%.0f MiB)\n", nsmall, small / 1024, mb);
    printf("  %-34s %.3f s  %8.0f MiB/s  (%" PRIu64 " files read)\n",
           "fl_store_hash_external (cold)", ours, mb / ours, st.files_hashed);
    cmd = fl_strdupf("xargs -0 -a '%s' xxhsum -H2 > /dev/null 2>&1", slist);
    pxx = xx ? time_cmd(cmd) : -1;
    free(cmd);
    cmd = fl_strdupf("xargs -0 -a '%s' md5sum > /dev/null 2>&1", slist);
    pmd = md5 ? time_cmd(cmd) : -1;
    free(cmd);
    cmd = NULL;
    ratio_line("xargs xxhsum -H2", ours, pxx, "xxhsum");
    ratio_line("xargs md5sum", ours, pmd, "md5sum");
    fl_store_close(s);
    s = NULL;
    fl_remove_tree(root, &e);
    fl_remove_tree(sdir, &e);

    /* ---------------------------------------------------------------- 3. no-op rerun, 80,000 */
    char *mdir = fl_strdupf("%s/many", dir), *mlist = fl_strdupf("%s/many.list", dir);
    mkdir(mdir, 0755);
    lf = fopen(mlist, "w");
    if (!lf || make_files(mdir, nmany, small, lf) != 0) goto out;
    fclose(lf);
    s = fl_store_open(root, NULL, &e);
    st = (fl_hash_stats){0};
    t = fl_now();
    if (!s || fl_store_hash_external(s, mdir, &d, &st, &e) != 0) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    double first = fl_now() - t;
    uint64_t first_n = st.files_hashed;
    t = fl_now();
    if (fl_store_statcache_save(s, &e) != 0) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    double save = fl_now() - t;
    fl_store_close(s);
    t = fl_now();
    s = fl_store_open(root, NULL, &e);
    st = (fl_hash_stats){0};
    fl_digest d2;
    if (!s || fl_store_hash_external(s, mdir, &d2, &st, &e) != 0) {
        fprintf(stderr, "bench_hash: %s\n", e.msg);
        goto out;
    }
    double noop = fl_now() - t;
    printf("%ld-file input\n", nmany);
    printf("  %-34s %.3f s  (%" PRIu64 " files read)\n", "first hash", first, first_n);
    printf("  %-34s %.3f s\n", "stat cache save", save);
    printf("  %-34s %.3f s  (%" PRIu64 " files read, open + load included) -> %.1fx faster than the first\n",
           "no-op rerun", noop, st.files_hashed, first / noop);
    cmd = fl_strdupf("xargs -0 -a '%s' xxhsum -H2 > /dev/null 2>&1", mlist);
    pxx = xx ? time_cmd(cmd) : -1;
    free(cmd);
    /* The floor for any tool that must notice changes: one stat per file, nothing read. */
    cmd = fl_strdupf("find '%s' -type f -printf '%%s %%T@ %%C@ %%i\\n' > /dev/null 2>&1", mdir);
    double walk = have("find") ? time_cmd(cmd) : -1;
    free(cmd);
    cmd = NULL;
    ratio_line("xargs xxhsum -H2 (no cache)", noop, pxx, "xxhsum");
    ratio_line("find stat walk (the floor)", noop, walk, "find");
    if (st.files_hashed != 0 || !fl_digest_eq(&d, &d2)) {
        fprintf(stderr, "bench_hash: the rerun read %" PRIu64 " files (expected 0)\n", st.files_hashed);
        goto out;
    }
    rc = 0;
    free(mdir);
    free(mlist);
    free(sdir);
    free(slist);
    free(root);
out:
    fl_store_close(s);
    fl_remove_tree(dir, &e);
    free(bigp);
    free(dir);
    return rc;
}
