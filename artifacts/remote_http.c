/* The remote cache's HTTP side on libcurl: the handle, one exchange with a file or memory
 * body, Range answers, progress, and the "log once, then turn off" failure rule.
 *
 * Why not kaggle/http.c: dag/ may use artifacts/ but not kaggle/, and kaggle's exchange is tied
 * to its client (Kaggle credentials, retries with backoff that would hold a run for minutes when
 * a cache is down). A cache only ever saves work, so this one never retries beyond resuming a
 * broken download; it fails fast and the run goes on locally. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "artifacts/remote_internal.h"

void fl__rm_log(fl_remote *r, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->log) r->log(r->log_arg, line, 0);
    else fprintf(stderr, "%s\n", line);
}

void fl__rm_fail(fl_remote *r, const char *what, const fl_xres *res) {
    if (r->off) return;
    r->off = 1;
    char st[64] = "";
    if (res->status) snprintf(st, sizeof st, "HTTP %ld", res->status);
    fl__rm_log(r, "[fluke] warning: remote cache %s: %s failed (%s%s%s); continuing without it",
               r->display, what, st, st[0] && res->why[0] ? ", " : "", res->why);
}

/* "scheme://[user[:pass]@]host[:port][/path]" without user:pass, and a check of the form. */
static char *display_url(const char *url, fl_err *e) {
    const char *rest = NULL;
    if (!strncasecmp(url, "http://", 7)) rest = url + 7;
    else if (!strncasecmp(url, "https://", 8)) rest = url + 8;
    if (!rest) {
        fl_errf(e, "cache.remote must be an http:// or https:// URL");
        return NULL;
    }
    const char *slash = strchr(rest, '/');
    const char *hostend = slash ? slash : rest + strlen(rest);
    const char *at = NULL;
    for (const char *p = rest; p < hostend; p++)
        if (*p == '@') at = p;
    const char *host = at ? at + 1 : rest;
    if (host == hostend) {
        fl_errf(e, "cache.remote: no host in the URL");
        return NULL;
    }
    if (strpbrk(url, "?# \t\r\n")) {
        fl_errf(e, "cache.remote: the URL may not hold a query, a fragment or white space");
        return NULL;
    }
    return fl_strdupf("%.*s%s%s", (int)(rest - url), url, at ? "***@" : "", host);
}

fl_remote *fl_remote_open(const fl_remote_opts *o, fl_err *e) {
    if (!o->url || !*o->url) {
        fl_errf(e, "cache.remote: empty URL");
        return NULL;
    }
    char *display = display_url(o->url, e);
    if (!display) return NULL;
    fl_remote *r = calloc(1, sizeof *r);
    if (!r) {
        free(display);
        fl_errf(e, "out of memory");
        return NULL;
    }
    r->display = display;
    size_t ul = strlen(o->url);
    while (ul > 0 && o->url[ul - 1] == '/') ul--;
    r->url = strndup(o->url, ul);
    size_t dl = strlen(r->display);
    while (dl > 0 && r->display[dl - 1] == '/') r->display[--dl] = '\0';
    r->readonly = o->readonly;
    r->timeout_s = o->timeout_s > 0 ? (long)(o->timeout_s + 0.999) : 30;
    r->progress_min = o->progress_min ? o->progress_min : (uint64_t)8 << 20;
    r->tty = o->progress_tty;
    r->log = o->log;
    r->log_arg = o->log_arg;
    int ok = r->url != NULL;
    if (ok && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) ok = 0;
    if (ok) r->curl = curl_easy_init();
    if (ok && r->curl) {
        struct curl_slist *h = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
        if (h && o->token && *o->token) {
            char *auth = fl_strdupf("Authorization: Bearer %s", o->token);
            struct curl_slist *h2 = auth ? curl_slist_append(h, auth) : NULL;
            if (auth) {
                memset(auth, 0, strlen(auth)); /* the token lives only in libcurl's copy */
                free(auth);
            }
            if (!h2) {
                curl_slist_free_all(h);
                h = NULL;
            }
        }
        r->hdrs = h;
    }
    if (!ok || !r->curl || !r->hdrs) {
        fl_errf(e, "cannot set up libcurl for the remote cache %s", r->display);
        fl_remote_close(r);
        return NULL;
    }
    return r;
}

void fl_remote_close(fl_remote *r) {
    if (!r) return;
    if (r->curl) curl_easy_cleanup(r->curl);
    if (r->hdrs) curl_slist_free_all(r->hdrs); /* holds the token: libcurl frees it */
    fl__dset_free(&r->bad);
    free(r->url);
    free(r->display);
    free(r);
}

const char *fl_remote_display_url(const fl_remote *r) { return r->display; }
int fl_remote_usable(const fl_remote *r) { return !r->off; }
int fl_remote_readonly(const fl_remote *r) { return r->readonly; }
const fl_remote_stats *fl_remote_get_stats(const fl_remote *r) { return &r->st; }

/* ------------------------------------------------------------------ one exchange */

typedef struct xstate {
    fl_remote *r;
    const fl_xfer *x;
    fl_xres *res;
    int started;          /* the first body byte of a 2xx arrived */
    int64_t range_start;  /* from Content-Range; -1 absent */
    uint64_t sent;        /* PUT: bytes read from the source */
    size_t cap;           /* memory body capacity */
    double t0, last;
    int printed;
} xstate;

void fl__rm_xfer_init(fl_xfer *x, const char *method, const char *url) {
    memset(x, 0, sizeof *x);
    x->method = method;
    x->url = url;
    x->out_fd = -1;
    x->in_fd = -1;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
    xstate *s = ud;
    size_t len = size * n;
    if (len > 14 && !strncasecmp(buf, "content-range:", 14)) {
        const char *p = buf + 14;
        while (*p == ' ' || *p == '\t') p++;
        unsigned long long a;
        if (!strncasecmp(p, "bytes ", 6) && sscanf(p + 6, "%llu-", &a) == 1) s->range_start = (int64_t)a;
    }
    return len;
}

static void progress_line(xstate *s, uint64_t done, int final) {
    const fl_xfer *x = s->x;
    double now = fl_now(), dt = now - s->t0;
    double mib = 1024.0 * 1024.0, rate = dt > 0 ? (double)done / dt / mib : 0;
    char line[512];
    if (final)
        snprintf(line, sizeof line, "[fluke] remote %s: %.1f MiB in %.1fs, %.1f MiB/s", x->label,
                 (double)done / mib, dt, rate);
    else if (x->total)
        snprintf(line, sizeof line, "[fluke] remote %s: %.1f / %.1f MiB (%.0f%%), %.1f MiB/s%s",
                 x->label, (double)done / mib, (double)x->total / mib,
                 100.0 * (double)done / (double)x->total, rate, "");
    else
        snprintf(line, sizeof line, "[fluke] remote %s: %.1f MiB, %.1f MiB/s", x->label,
                 (double)done / mib, rate);
    if (s->r->log) s->r->log(s->r->log_arg, line, s->r->tty && !final);
    else fprintf(stderr, "%s\n", line);
    s->last = now;
    s->printed = 1;
}

static int on_progress(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
    (void)dlt, (void)ult;
    xstate *s = ud;
    if (!s->x->label) return 0;
    double now = fl_now();
    if (now - s->last < (s->r->tty ? 0.25 : 5.0)) return 0;
    uint64_t done = s->x->range_from + (uint64_t)(dln > 0 ? dln : 0) + (uint64_t)(uln > 0 ? uln : 0);
    progress_line(s, done, 0);
    return 0;
}

/* The first body byte: a 206 must start where we asked; a 200 to a Range request starts over. */
static int body_begins(xstate *s) {
    const fl_xfer *x = s->x;
    long st = 0;
    curl_easy_getinfo(s->r->curl, CURLINFO_RESPONSE_CODE, &st);
    s->started = 1;
    s->res->start = 0;
    if (st == 206) {
        if (s->range_start < 0 || (uint64_t)s->range_start != x->range_from) {
            snprintf(s->res->why, sizeof s->res->why, "the server answered a Range request from byte %llu with other bytes",
                     (unsigned long long)x->range_from);
            return -1;
        }
        s->res->start = x->range_from;
        return 0;
    }
    if (x->out_fd >= 0 && x->range_from > 0) { /* whole body: drop what we had */
        if (ftruncate(x->out_fd, 0) != 0 || lseek(x->out_fd, 0, SEEK_SET) != 0) goto ioerr;
        if (x->h) {
            fl_hasher *nh = fl_hasher_new();
            if (!nh) goto ioerr;
            fl_hasher_free(*x->h);
            *x->h = nh;
        }
    }
    return 0;
ioerr:
    s->res->local_error = 1;
    snprintf(s->res->why, sizeof s->res->why, "cannot restart the download: %s", strerror(errno));
    return -1;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
    xstate *s = ud;
    const fl_xfer *x = s->x;
    size_t len = size * n;
    long st = 0;
    curl_easy_getinfo(s->r->curl, CURLINFO_RESPONSE_CODE, &st);
    if (st < 200 || st > 299) return len; /* error bodies are not kept */
    if (!s->started && body_begins(s) != 0) return 0;
    uint64_t at = s->res->start + s->res->body;
    if (x->limit && at + len > x->limit) {
        s->res->too_long = 1;
        snprintf(s->res->why, sizeof s->res->why, "the body is longer than the %llu bytes expected",
                 (unsigned long long)x->limit);
        return 0;
    }
    if (x->mem) {
        if (s->res->body + len > x->mem_max) {
            s->res->too_long = 1;
            snprintf(s->res->why, sizeof s->res->why, "the body is larger than %zu bytes", x->mem_max);
            return 0;
        }
        if (s->res->body + len + 1 > s->cap) {
            size_t nc = s->cap ? s->cap : 4096;
            while (nc < s->res->body + len + 1) nc *= 2;
            char *nb = realloc(*x->mem, nc);
            if (!nb) {
                s->res->local_error = 1;
                snprintf(s->res->why, sizeof s->res->why, "out of memory");
                return 0;
            }
            *x->mem = nb;
            s->cap = nc;
        }
        memcpy(*x->mem + s->res->body, buf, len);
        (*x->mem)[s->res->body + len] = '\0';
    } else if (x->out_fd >= 0) {
        for (size_t off = 0; off < len;) {
            ssize_t w = write(x->out_fd, buf + off, len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                s->res->local_error = 1;
                snprintf(s->res->why, sizeof s->res->why, "cannot write the download: %s", strerror(errno));
                return 0;
            }
            off += (size_t)w;
        }
        if (x->h) fl_hasher_update(*x->h, buf, len);
    }
    s->res->body += len;
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud) {
    xstate *s = ud;
    const fl_xfer *x = s->x;
    size_t want = size * n;
    if (s->sent >= x->in_len) return 0;
    if (want > x->in_len - s->sent) want = (size_t)(x->in_len - s->sent);
    if (x->in_fd < 0) {
        memcpy(buf, x->in_buf + s->sent, want);
        s->sent += want;
        return want;
    }
    for (;;) {
        ssize_t r = read(x->in_fd, buf, want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { /* the file shrank or failed: never send a short object as complete */
            s->res->local_error = 1;
            snprintf(s->res->why, sizeof s->res->why, "cannot read the upload: %s",
                     r < 0 ? strerror(errno) : "unexpected end of file");
            return CURL_READFUNC_ABORT;
        }
        s->sent += (uint64_t)r;
        return (size_t)r;
    }
}

int fl__rm_perform(fl_remote *r, const fl_xfer *x, fl_xres *res) {
    memset(res, 0, sizeof *res);
    xstate s = {.r = r, .x = x, .res = res, .range_start = -1};
    s.t0 = s.last = fl_now();
    char errbuf[CURL_ERROR_SIZE] = "";
    char range[64];
    CURL *c = r->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->timeout_s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, x->label ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
    if (!strcmp(x->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        r->st.heads++;
    } else if (!strcmp(x->method, "PUT")) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &s);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->in_len);
        r->st.puts++;
    } else {
        if (x->range_from > 0) {
            snprintf(range, sizeof range, "%llu-", (unsigned long long)x->range_from);
            curl_easy_setopt(c, CURLOPT_RANGE, range);
        }
        r->st.gets++;
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
    if (!strcmp(x->method, "PUT") && cc == CURLE_OK) r->st.put_bytes += x->in_len;
    if (!strcmp(x->method, "GET")) r->st.get_bytes += res->body;
    if (cc != CURLE_OK) {
        if (!res->why[0] && cc == CURLE_OPERATION_TIMEDOUT)
            snprintf(res->why, sizeof res->why, "timed out: nothing moved for %ld s (cache.remote_timeout_s)",
                     r->timeout_s);
        else if (!res->why[0])
            snprintf(res->why, sizeof res->why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        res->transport = !res->too_long && !res->local_error;
        if (s.printed && r->tty && r->log) r->log(r->log_arg, "", 0); /* end the in-place line */
        return -1;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    res->content_length = cl;
    if (x->label && res->status >= 200 && res->status < 300)
        progress_line(&s, !strcmp(x->method, "PUT") ? x->in_len : res->start + res->body, 1);
    return 0;
}
