/* Private to the remote cache (artifacts/remote*.c): the handle and one HTTP exchange. */
#ifndef FLUKE_REMOTE_INTERNAL_H
#define FLUKE_REMOTE_INTERNAL_H

#include <curl/curl.h>

#include "artifacts/remote.h"
#include "artifacts/store_internal.h"

struct fl_remote {
    char *url;      /* base, no trailing slash (may hold user:password: never printed) */
    char *display;  /* url without user:password */
    int readonly;
    long timeout_s;
    uint64_t progress_min;
    int tty;
    void (*log)(void *arg, const char *line, int in_place);
    void *log_arg;
    CURL *curl;     /* one handle: connections are kept alive between requests */
    struct curl_slist *hdrs; /* Authorization (when a token is set), "Expect:" */
    int off;        /* a network failure turned the remote off */
    fl_dset bad;    /* /cas/ digests whose server copy failed verification: a push overwrites them */
    fl_remote_stats st;
};

/* One exchange. GET bodies (2xx) go to out_fd (hashed into h when set) or into memory (at most
 * mem_max bytes); PUT bodies come from in_fd or in_buf. */
typedef struct fl_xfer {
    const char *method;   /* "GET", "HEAD", "PUT" */
    const char *url;
    int out_fd;           /* -1: none */
    fl_hasher **h;        /* *h is replaced when a Range request is answered from byte 0 */
    uint64_t range_from;  /* GET: ask for bytes range_from- (0: whole) */
    uint64_t limit;       /* GET: the most bytes the body may have in all (0: no limit) */
    char **mem;           /* GET into memory (malloc'd, NUL-terminated) */
    size_t *mem_len;
    size_t mem_max;
    int in_fd;            /* PUT from a file (-1: from in_buf) */
    const char *in_buf;
    uint64_t in_len;
    const char *label;    /* progress label (NULL: no progress) */
    uint64_t total;       /* progress total */
} fl_xfer;

typedef struct fl_xres {
    long status;          /* 0: no response */
    int transport;        /* the exchange did not complete (curl error, timeout, dropped) */
    int too_long;         /* the body exceeded limit / mem_max */
    int local_error;      /* writing the body failed (errno in why) */
    uint64_t body;        /* body bytes received in this exchange */
    uint64_t start;       /* where the body starts in the object (206: the range start) */
    int64_t content_length; /* -1 when unknown (HEAD: the size the server holds) */
    char why[CURL_ERROR_SIZE + 64];
} fl_xres;

void fl__rm_xfer_init(fl_xfer *x, const char *method, const char *url);
/* 0 when a response arrived (any status), -1 otherwise (x filled either way). */
int fl__rm_perform(fl_remote *r, const fl_xfer *x, fl_xres *res);
/* Logs a line through the handle's log. */
void fl__rm_log(fl_remote *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A network failure: logs one warning naming what failed and turns the remote off. */
void fl__rm_fail(fl_remote *r, const char *what, const fl_xres *res);

#endif
