/* Test helper (header-only, included by tests/unit/test_kaggle_*.c): runs the loopback server
 * tests/kaggle/server.py as a child process, reads its port, fetches its /_state, and makes temp
 * directories. The repository root is $FLUKE_SRC (set by tests/run.sh) or the current directory. */
#ifndef FLUKE_TEST_SERVER_CHILD_H
#define FLUKE_TEST_SERVER_CHILD_H

#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/util.h"
#include "kaggle/kaggle.h"

typedef struct ts_server {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:PORT (https:// for a TLS server) */
    char ca[512];  /* CA file for a TLS server's /_state */
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
        /* The server dies with the test, even when a failed assertion skips ts_server_stop. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
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
    if (s->ca[0]) curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    cJSON *j = rc == CURLE_OK && buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return j;
}

/* Number of violations the server recorded (Authorization at storage/upload paths, an API call
 * before a Retry-After passed), each printed; -1: error. */
static inline int ts_server_violations(const ts_server *s) {
    cJSON *j = ts_server_state(s);
    if (!j) return -1;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(j, "violations"))
        if (cJSON_IsString(v)) fprintf(stderr, "server: violation: %s\n", v->valuestring);
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

/* How the i-th stalled GET ended ("client hung up" or "gave up"; malloc'd), NULL if none. */
static inline char *ts_server_stall(const ts_server *s, int i) {
    cJSON *j = ts_server_state(s);
    const cJSON *o = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "stalls"), i),
                                         "outcome");
    char *out = cJSON_IsString(o) ? strdup(o->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
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

/* ---------------------------------------------------------------- a client against the server */

#define TS_TOKEN "tok-S3CR3T-0123456789abcdef"
#define TS_USER "whaleuser"
#define TS_KEY "key-S3CR3T-fedcba9876543210"
#define TS_COMP "happy-whale-and-dolphin"

typedef struct ts_fx {
    ts_server srv;
    char *dir;      /* temp dir (also $HOME) */
    char *log_path; /* everything the client printed */
    FILE *log;
    fl_kaggle *k;
    fl_kaggle_opts o;
} ts_fx;

/* Starts the server in mode (extra args may be NULL), sets a Bearer token in the environment
 * (auth "basic": KAGGLE_USERNAME/KAGGLE_KEY instead) and makes a client with short backoffs. */
static inline ts_fx *ts_fx_new(const char *mode, const char *auth, const char *const *extra) {
    if (getenv("TS_TIMING")) fprintf(stderr, "[%.2f] start %s\n", fl_now(), mode);
    ts_fx *f = calloc(1, sizeof *f);
    f->dir = ts_tmpdir("kaggle");
    ts_clear_cred_env();
    setenv("HOME", f->dir, 1);
    const char *args[16] = {"--token", TS_TOKEN, "--user", TS_USER, "--key", TS_KEY};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 15; i++) args[n++] = extra[i];
    args[n] = NULL;
    if (ts_server_start(&f->srv, mode, args) != 0) {
        fprintf(stderr, "cannot start tests/kaggle/server.py (python3 missing? FLUKE_SRC?)\n");
        abort();
    }
    if (auth && strcmp(auth, "basic") == 0) {
        setenv("KAGGLE_USERNAME", TS_USER, 1);
        setenv("KAGGLE_KEY", TS_KEY, 1);
    } else {
        setenv("KAGGLE_API_TOKEN", TS_TOKEN, 1);
    }
    f->log_path = fl_strdupf("%s/client.log", f->dir);
    f->log = fopen(f->log_path, "w+");
    f->o = (fl_kaggle_opts){.base_url = f->srv.base, .max_retries = 4, .backoff_initial_s = 0.05,
                            .backoff_max_s = 0.2, .retry_after_max_s = 5, .connect_timeout_s = 5,
                            .stall_timeout_s = 5, .progress = 1, .log = f->log, .seed = 1,
                            .poll_interval_s = 0.05, .poll_timeout_s = 20};
    fl_err e;
    f->k = fl_kaggle_new(&f->o, &e);
    if (!f->k) {
        fprintf(stderr, "fl_kaggle_new: %s\n", e.msg);
        abort();
    }
    return f;
}

/* 1 if any secret (token, key, the Basic value, the signed URL's signature) occurs in s. */
static inline int ts_has_secret(const char *s) {
    if (!s) return 0;
    char *basic = fl_base64_encode(TS_USER ":" TS_KEY, strlen(TS_USER ":" TS_KEY));
    int bad = strstr(s, TS_TOKEN) || strstr(s, TS_KEY) || strstr(s, basic) ||
              strstr(s, "S3CR3T") || strstr(s, "deadbeefsignature");
    free(basic);
    return bad;
}

static inline char *ts_fx_log(ts_fx *f) {
    fflush(f->log);
    fl_err e;
    return fl_read_file(f->log_path, NULL, &e);
}

/* Stops everything; fails the test when the server saw Authorization at a storage path or the
 * client's output holds a secret. */
static inline void ts_fx_free(ts_fx *f) {
    if (getenv("TS_TIMING")) fprintf(stderr, "[%.2f] end\n", fl_now());
    int v = ts_server_violations(&f->srv);
    char *log = ts_fx_log(f);
    int leak = ts_has_secret(log);
    if (leak) fprintf(stderr, "client output leaks a secret:\n%s\n", log);
    free(log);
    fl_kaggle_free(f->k);
    ts_server_stop(&f->srv);
    fclose(f->log);
    fl_err e;
    fl_remove_tree(f->dir, &e);
    free(f->dir);
    free(f->log_path);
    free(f);
    ts_clear_cred_env();
    if (v != 0) fprintf(stderr, "server: %d violations\n", v);
    assert_int_equal(v, 0);
    assert_false(leak);
}

static inline char *ts_path(ts_fx *f, const char *rel) { return fl_strdupf("%s/%s", f->dir, rel); }

#endif
