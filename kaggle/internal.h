/* Private to kaggle/: the client handle, one HTTP exchange on libcurl, retry policy, progress
 * and message redaction. Other modules use kaggle/kaggle.h only. */
#ifndef FLUKE_KAGGLE_INTERNAL_H
#define FLUKE_KAGGLE_INTERNAL_H

#include <curl/curl.h>
#include <time.h>

#include "kaggle/kaggle.h"
#include "runtime/rng.h"

struct fl_kaggle {
    fl_kaggle_opts o; /* with defaults filled in; strings below are owned copies */
    char *base_url;
    char *ca_file;
    fl_kaggle_creds creds;
    CURL *curl; /* one handle: libcurl keeps the connection alive between requests */
    fl_rng rng; /* backoff jitter */
    FILE *log;
    int tty;
};

struct fl_http_resp;

/* Called at the end of a 2xx response's headers (return 0 to receive the body, 1 to stop the
 * transfer without error, -1 to stop with an error), then for each body chunk (0 ok, -1 stop). */
typedef struct fl_http_sink {
    int (*on_headers)(void *ud, const struct fl_http_resp *rs);
    int (*on_data)(void *ud, const void *p, size_t n);
    void *ud;
} fl_http_sink;

typedef struct fl_http_req {
    const char *method; /* "GET", "POST", "PUT" */
    const char *url;
    int auth;           /* send the Authorization header (API calls only, never storage) */
    const char *body;   /* POST body */
    size_t body_len;
    const char *content_type;
    int upload_fd;      /* PUT: file to send (>= 0) */
    uint64_t upload_len;
    uint64_t range_from; /* > 0: Range: bytes=N- */
    const fl_http_sink *sink; /* 2xx bodies go here; NULL: into resp->body */
} fl_http_req;

typedef struct fl_http_resp {
    long status;
    CURLcode cc;            /* CURLE_OK when the exchange completed (whatever the status) */
    char curl_msg[CURL_ERROR_SIZE];
    int sink_stopped;       /* the sink's on_headers returned 1 */
    int sink_failed;        /* the sink returned -1 */
    int stalled;            /* aborted: no bytes moved for stall_timeout_s */
    char *body;             /* non-2xx bodies (capped), and 2xx bodies without a sink */
    size_t len;
    char *location;
    int64_t content_length; /* -1 when absent */
    int64_t range_start;    /* from Content-Range, -1 when absent */
    int64_t range_total;    /* -1 when absent or "*" */
    int accept_ranges;
    time_t last_modified;   /* 0 when absent */
    int has_md5;
    uint8_t md5[16];
    double retry_after;     /* seconds, -1 when absent */
    int in_headers;         /* parser state */
} fl_http_resp;

/* One request/response, no retries and no redirects. 0 when a response arrived (any status),
 * -1 on a transport failure (rs->cc, rs->curl_msg). */
int fl_http_perform(fl_kaggle *k, const fl_http_req *rq, fl_http_resp *rs);
void fl_http_resp_free(fl_http_resp *rs);

/* Transport failures and statuses worth another try: timeouts, resets, refused connections,
 * 408, 429, 5xx. */
int fl_http_retryable(const fl_http_resp *rs);
/* Sleeps before retry number attempt (1-based): Retry-After when the server sent one (capped),
 * else initial * 2^(attempt-1) capped at max, times a jitter factor in [0.5, 1). Logs a line. */
void fl_http_backoff(fl_kaggle *k, int attempt, const fl_http_resp *rs, const char *what);

/* A clear error for a failed exchange: 401 names the credential source, 403 "accept the rules"
 * gives the rules URL of competition (may be NULL), 404 says what was not found; the server's
 * JSON message is quoted when present. Returns -1. Never includes headers or secrets. */
int fl_http_error(fl_kaggle *k, const fl_http_resp *rs, const char *what, const char *competition,
                  fl_err *e);

/* Replaces every occurrence of the client's secrets in e->msg by "[redacted]", and returns -1
 * so public functions can `return fl_kaggle_fail(k, e)`. */
int fl_kaggle_fail(const fl_kaggle *k, fl_err *e);
/* scheme://host[:port]/path of url, without user info, query or fragment (signed URLs carry
 * their signature in the query). */
void fl_url_safe(const char *url, char *out, size_t cap);
/* base + "/v1/competitions.CompetitionApiService/" + method (malloc'd). */
char *fl_kaggle_api_url(const fl_kaggle *k, const char *method);
/* Resolves a Location header against the URL it came from (malloc'd, NULL if malformed). */
char *fl_url_resolve(const char *base, const char *location);
void fl_sleep_s(double s);

/* Progress lines: "label: 12.0 MiB / 1.0 GiB (1%), 85.3 MiB/s, ETA 11s". On a tty the line is
 * rewritten in place; otherwise one line at most every few seconds. */
typedef struct fl_progress {
    fl_kaggle *k;
    const char *label;
    double t0, last;
    uint64_t start;  /* bytes already present (resume) */
    uint64_t done;   /* bytes present now */
    int64_t total;   /* -1 unknown */
    int printed;
} fl_progress;
void fl_progress_begin(fl_progress *p, fl_kaggle *k, const char *label, uint64_t start,
                       int64_t total);
void fl_progress_update(fl_progress *p, uint64_t done);
void fl_progress_end(fl_progress *p, int ok);
/* "1.5 GiB" */
void fl_fmt_bytes(double b, char *out, size_t cap);

/* MD5 of a file being written, computed on a second thread (kaggle/hashpipe.c). start: the
 * first `written` bytes are already there; advance: the file now has `written` bytes (the
 * hasher is woken every few MB); finish: the file has `written` bytes, waits for their hash (-1 on a read error); abort: stops and frees. */
typedef struct fl_hashpipe fl_hashpipe;
fl_hashpipe *fl_hashpipe_start(const char *path, uint64_t written);
void fl_hashpipe_advance(fl_hashpipe *h, uint64_t written);
int fl_hashpipe_finish(fl_hashpipe *h, uint64_t written, uint8_t out[16]);
void fl_hashpipe_abort(fl_hashpipe *h);

/* The download engine shared by the API (method != NULL: POST with credentials, then redirects
 * as GET without them) and plain URLs (method == NULL: GET url). */
int fl_download(fl_kaggle *k, const char *method, const cJSON *body, const char *url,
                const char *dest, const fl_dl_expect *ex, fl_dl_result *res,
                const char *competition, fl_err *e);

#endif
