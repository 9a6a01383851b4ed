/* Loopback download of a large object (1 GiB x BENCH_SCALE) from tests/kaggle/server.py's storage
 * path: fluke's client (libcurl, .part + rename, streaming MD5 check against x-goog-hash; and the
 * same object without x-goog-hash, i.e. transfer only) against the `curl` command line writing
 * the same bytes, in the same run. Best of 3 runs each.
 * Prints the throughputs and the ratio (fluke time / curl time; < 1 means fluke is faster). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kaggle/kaggle.h"

static int start_server(const char *root, long long size, const char *file, pid_t *pid, int *port) {
    char script[4096], sz[32];
    snprintf(script, sizeof script, "%s/tests/kaggle/server.py", root);
    snprintf(sz, sizeof sz, "%lld", size);
    int fds[2];
    if (pipe(fds) != 0) return -1;
    *pid = fork();
    if (*pid < 0) return -1;
    if (*pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", script, "--mode", "ok", "--token", "bench", "--size", sz,
               "--file", file, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[128] = {0};
    int ok = f && fgets(line, sizeof line, f) && sscanf(line, "PORT %d", port) == 1;
    if (f) fclose(f);
    return ok ? 0 : -1;
}

/* Every timed run starts with no output file and no dirty pages, so one tool's writeback does
 * not throttle the next tool's writes. */
static void clean_slate(const char *a, const char *b) {
    unlink(a);
    unlink(b);
    sync();
}

static double run_curl(const char *url, const char *out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "curl -sS -o '%s' '%s'", out, url);
    double t0 = fl_now();
    int rc = system(cmd);
    double dt = fl_now() - t0;
    return rc == 0 ? dt : -1;
}

static double run_fluke(fl_kaggle *k, const char *url, const char *out, int *md5) {
    fl_err e;
    fl_dl_result r;
    double t0 = fl_now();
    int rc = fl_kaggle_download_url(k, url, out, NULL, &r, &e);
    double dt = fl_now() - t0;
    if (rc) fprintf(stderr, "fluke download failed: %s\n", e.msg);
    *md5 = r.md5_checked;
    return rc == 0 ? dt : -1;
}

int main(void) {
    const char *root = getenv("FLUKE_SRC");
    if (!root || !*root) root = ".";
    if (system("command -v curl >/dev/null 2>&1") != 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0) {
        printf("skipped: curl or python3 not installed\n");
        return 0;
    }
    double scale = getenv("BENCH_SCALE") ? atof(getenv("BENCH_SCALE")) : 1.0;
    if (scale <= 0) scale = 1.0;
    long long size = (long long)((double)(1LL << 30) * scale);
    if (size < (1 << 20)) size = 1 << 20;
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *src = fl_strdupf("%s/fluke-bench-src-%d.bin", tmp, (int)getpid());
    char *out_c = fl_strdupf("%s/fluke-bench-curl-%d.bin", tmp, (int)getpid());
    char *out_f = fl_strdupf("%s/fluke-bench-fluke-%d.bin", tmp, (int)getpid());
    pid_t pid;
    int port;
    if (start_server(root, size, src, &pid, &port) != 0) {
        printf("skipped: cannot start tests/kaggle/server.py (set FLUKE_SRC)\n");
        return 0;
    }
    char url[256], url_nomd5[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/storage/big.bin", port);
    snprintf(url_nomd5, sizeof url_nomd5, "http://127.0.0.1:%d/storage/big-nomd5.bin", port);
    fl_kaggle_opts o = {.no_credentials = 1, .progress = 0};
    fl_err e;
    fl_kaggle *k = fl_kaggle_new(&o, &e);
    double best_c = 1e30, best_f = 1e30, best_n = 1e30;
    int md5 = 0, md5n = 0, ok = k != NULL;
    for (int i = 0; i < 3 && ok; i++) {
        clean_slate(out_c, out_f);
        double c = run_curl(url, out_c);
        clean_slate(out_c, out_f);
        double f = run_fluke(k, url, out_f, &md5);
        clean_slate(out_c, out_f);
        double n = run_fluke(k, url_nomd5, out_f, &md5n);
        if (c < 0 || f < 0 || n < 0 || !md5 || md5n) ok = 0;
        if (c > 0 && c < best_c) best_c = c;
        if (f > 0 && f < best_f) best_f = f;
        if (n > 0 && n < best_n) best_n = n;
    }
    struct stat b;
    int same = ok && stat(out_f, &b) == 0 && b.st_size == size;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(out_c);
    unlink(out_f);
    unlink(src);
    fl_kaggle_free(k);
    if (!ok || !same) {
        printf("bench_kaggle: FAILED (download error or size mismatch)\n");
        return 1;
    }
    double mib = (double)size / (1 << 20);
    printf("loopback download of %.0f MiB (best of 3):\n", mib);
    printf("  curl CLI              %7.2f s  %8.1f MiB/s\n", best_c, mib / best_c);
    printf("  fluke, MD5 verified   %7.2f s  %8.1f MiB/s\n", best_f, mib / best_f);
    printf("  fluke, no x-goog-hash %7.2f s  %8.1f MiB/s\n", best_n, mib / best_n);
    printf("  ratio fluke/curl time: %.2f with the MD5 check, %.2f transfer only\n",
           best_f / best_c, best_n / best_c);
    free(src);
    free(out_c);
    free(out_f);
    return 0;
}
