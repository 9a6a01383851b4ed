/* Test helper (header-only, included by tests/unit/test_kaggle_*.c): runs the loopback server
 * tests/kaggle/server.py as a child process, reads its port, fetches its /_state, and makes temp
 * directories. The repository root is $FLUKE_SRC (set by tests/run.sh) or the current directory. */
#ifndef FLUKE_TEST_SERVER_CHILD_H
#define FLUKE_TEST_SERVER_CHILD_H

#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/util.h"

typedef struct ts_server {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:PORT */
} ts_server;

/* Starts server.py with the given extra arguments (NULL-terminated); 0 ok. */
static inline int ts_server_start(ts_server *s, const char *mode, const char *const *extra) {
    memset(s, 0, sizeof *s);
    const char *src = getenv("FLUKE_SRC");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/kaggle/server.py", src && *src ? src : ".");
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        const char *argv[32] = {"python3", script, "--mode", mode};
        int n = 4;
        for (int i = 0; extra && extra[i] && n < 31; i++) argv[n++] = extra[i];
        argv[n] = NULL;
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[128] = {0};
    int ok = f && fgets(line, sizeof line, f) && sscanf(line, "PORT %d", &s->port) == 1;
    if (f) fclose(f);
    s->pid = pid;
    if (!ok) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    return 0;
}

static inline void ts_server_stop(ts_server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static inline size_t ts_collect(char *p, size_t sz, size_t n, void *ud) {
    char **buf = ud;
    size_t old = *buf ? strlen(*buf) : 0;
    char *nb = realloc(*buf, old + sz * n + 1);
    if (!nb) return 0;
    memcpy(nb + old, p, sz * n);
    nb[old + sz * n] = 0;
    *buf = nb;
    return sz * n;
}

/* GET /_state, parsed (caller deletes). */
static inline cJSON *ts_server_state(const ts_server *s) {
    char url[128];
    snprintf(url, sizeof url, "%s/_state", s->base);
    CURL *c = curl_easy_init();
    char *buf = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ts_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    cJSON *j = rc == CURLE_OK && buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return j;
}

/* Number of Authorization violations the server recorded at storage/upload paths (-1: error). */
static inline int ts_server_violations(const ts_server *s) {
    cJSON *j = ts_server_state(s);
    if (!j) return -1;
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "violations"));
    cJSON_Delete(j);
    return n;
}

/* Count of logged requests of kind (e.g. "storage") whose Range header is set (with_range=1)
 * or any (with_range=0). */
static inline int ts_server_count(const ts_server *s, const char *kind, int with_range) {
    cJSON *j = ts_server_state(s);
    if (!j) return -1;
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "log")) {
        const cJSON *k = cJSON_GetObjectItem(r, "kind"), *rg = cJSON_GetObjectItem(r, "range");
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0 &&
            (!with_range || cJSON_IsString(rg)))
            n++;
    }
    cJSON_Delete(j);
    return n;
}

/* mkdtemp under $TMPDIR or /tmp; malloc'd. */
static inline char *ts_tmpdir(const char *tag) {
    const char *t = getenv("TMPDIR");
    char *p = fl_strdupf("%s/fluke-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    if (p && !mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static inline int ts_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Environment for credential tests: clears every variable the discovery reads. */
static inline void ts_clear_cred_env(void) {
    unsetenv("KAGGLE_API_TOKEN");
    unsetenv("KAGGLE_USERNAME");
    unsetenv("KAGGLE_KEY");
    unsetenv("KAGGLE_CONFIG_DIR");
    unsetenv("XDG_CONFIG_HOME");
}

#endif
