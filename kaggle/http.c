/* One HTTP exchange on libcurl: request headers (credentials only when asked), response header
 * parsing (Location, Content-Length, Content-Range, Accept-Ranges, Last-Modified, x-goog-hash,
 * Retry-After) and body routing to a sink or memory. Redirects are never followed here: the
 * download engine follows them itself so that credentials never reach the storage host. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kaggle/internal.h"

#define MEM_BODY_CAP_OK (64u << 20) /* JSON answers */
#define MEM_BODY_CAP_ERR (64u << 10) /* error bodies: only the message matters */

typedef struct xfer {
    const fl_http_req *rq;
    fl_http_resp *rs;
    size_t cap;
    double stall_s;       /* abort when nothing moved for this long */
    double last_activity; /* fl_now() of the last byte in either direction */
    curl_off_t last_dl, last_ul;
} xfer;

void fl_http_resp_free(fl_http_resp *rs) {
    free(rs->body);
    free(rs->location);
    rs->body = rs->location = NULL;
    rs->len = 0;
}

static void resp_reset(fl_http_resp *rs) {
    fl_http_resp_free(rs);
    rs->status = 0;
    rs->content_length = rs->range_start = rs->range_total = -1;
    rs->accept_ranges = 0;
    rs->last_modified = 0;
    rs->has_md5 = 0;
    rs->retry_after = -1;
    rs->in_headers = 1;
}

static int is_2xx(long s) { return s >= 200 && s < 300; }

/* Copies a header value without surrounding blanks into out. */
static void header_value(const char *v, size_t n, char *out, size_t cap) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, v, n);
    out[n] = 0;
}

/* x-goog-hash: crc32c=AAAAAA==, md5=base64 (possibly repeated as separate headers). */
static void parse_goog_hash(fl_http_resp *rs, const char *v) {
    const char *p = v;
    while ((p = strcasestr(p, "md5=")) != NULL) {
        p += 4;
        size_t n = strcspn(p, ", \t");
        size_t got = 0;
        if (fl_base64_decode(p, n, rs->md5, 16, &got) == 0 && got == 16) rs->has_md5 = 1;
        p += n;
    }
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    fl_http_resp *rs = x->rs;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new response (also after "100 Continue"): start over. */
        resp_reset(rs);
        const char *sp = memchr(buf, ' ', n);
        rs->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (rs->status >= 100 && rs->status < 200) return n; /* interim response */
        rs->in_headers = 0;
        if (is_2xx(rs->status) && x->rq->sink && x->rq->sink->on_headers) {
            int r = x->rq->sink->on_headers(x->rq->sink->ud, rs);
            if (r != 0) {
                if (r > 0) rs->sink_stopped = 1;
                else rs->sink_failed = 1;
                return 0; /* aborts the transfer */
            }
        }
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t klen = (size_t)(colon - buf);
    char val[2048];
    header_value(colon + 1, n - klen - 1, val, sizeof val);
#define IS(name) (klen == sizeof(name) - 1 && strncasecmp(buf, name, klen) == 0)
    if (IS("location")) {
        free(rs->location);
        rs->location = strdup(val);
    } else if (IS("content-length")) {
        char *end;
        long long v = strtoll(val, &end, 10);
        if (end != val && v >= 0) rs->content_length = v;
    } else if (IS("content-range")) {
        long long a, b;
        char tot[32];
        if (sscanf(val, "bytes %lld-%lld/%31s", &a, &b, tot) == 3) {
            rs->range_start = a;
            rs->range_total = tot[0] == '*' ? -1 : strtoll(tot, NULL, 10);
        }
    } else if (IS("accept-ranges")) {
        rs->accept_ranges = strcasestr(val, "bytes") != NULL;
    } else if (IS("last-modified")) {
        time_t t = curl_getdate(val, NULL);
        if (t > 0) rs->last_modified = t;
    } else if (IS("x-goog-hash")) {
        parse_goog_hash(rs, val);
    } else if (IS("retry-after")) {
        char *end;
        double s = strtod(val, &end);
        if (end != val && s >= 0) {
            rs->retry_after = s;
        } else {
            time_t t = curl_getdate(val, NULL);
            if (t > 0) rs->retry_after = difftime(t, time(NULL)) > 0 ? difftime(t, time(NULL)) : 0;
        }
    }
#undef IS
    return n;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    fl_http_resp *rs = x->rs;
    size_t n = size * nmemb;
    if (is_2xx(rs->status) && x->rq->sink) {
        if (x->rq->sink->on_data(x->rq->sink->ud, buf, n) != 0) {
            rs->sink_failed = 1;
            return 0;
        }
        return n;
    }
    size_t cap = is_2xx(rs->status) ? MEM_BODY_CAP_OK : MEM_BODY_CAP_ERR;
    if (rs->len >= cap) return n; /* keep the head of an oversized error body */
    size_t take = rs->len + n > cap ? cap - rs->len : n;
    if (rs->len + take + 1 > x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 4096;
        while (nc < rs->len + take + 1) nc *= 2;
        char *nb = realloc(rs->body, nc);
        if (!nb) return 0;
        rs->body = nb;
        x->cap = nc;
    }
    memcpy(rs->body + rs->len, buf, take);
    rs->len += take;
    rs->body[rs->len] = 0;
    return n;
}

/* Our own stall detector: libcurl's LOW_SPEED check averages over several seconds, so a
 * connection that goes silent after a burst would hang on much longer than stall_s. */
static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)dltotal;
    (void)ultotal;
    xfer *x = ud;
    double now = fl_now();
    if (dlnow != x->last_dl || ulnow != x->last_ul) {
        x->last_dl = dlnow;
        x->last_ul = ulnow;
        x->last_activity = now;
        return 0;
    }
    if (now - x->last_activity > x->stall_s) {
        x->rs->stalled = 1;
        return 1;
    }
    return 0;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud) {
    const fl_http_req *rq = ((xfer *)ud)->rq;
    for (;;) {
        ssize_t r = read(rq->upload_fd, buf, size * nitems);
        if (r >= 0) return (size_t)r;
        if (errno != EINTR) return CURL_READFUNC_ABORT;
    }
}

int fl_http_perform(fl_kaggle *k, const fl_http_req *rq, fl_http_resp *rs) {
    memset(rs, 0, sizeof *rs);
    resp_reset(rs);
    xfer x = {rq, rs, 0, (double)k->o.stall_timeout_s, fl_now(), 0, 0};
    CURL *c = k->curl;
    curl_easy_reset(c); /* keeps the connection cache */
    struct curl_slist *h = NULL;
    char line[128];
    if (rq->auth && k->creds.authorization) h = curl_slist_append(h, k->creds.authorization);
    if (rq->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", rq->content_type);
        h = curl_slist_append(h, line);
    }
    if (rq->range_from > 0) {
        snprintf(line, sizeof line, "Range: bytes=%llu-", (unsigned long long)rq->range_from);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip on POST/PUT */
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "fluke/1 (+libcurl)");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (k->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, k->o.connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 128L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, rs->curl_msg);
    rs->curl_msg[0] = 0;
    if (strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
    } else if (strcmp(rq->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &x);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->upload_len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    rs->cc = curl_easy_perform(c);
    curl_slist_free_all(h);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code) rs->status = code;
    if (rs->cc != CURLE_OK) {
        if (rs->stalled)
            snprintf(rs->curl_msg, sizeof rs->curl_msg, "stalled: no data for %lds",
                     k->o.stall_timeout_s);
        else if (!rs->curl_msg[0])
            snprintf(rs->curl_msg, sizeof rs->curl_msg, "%s", curl_easy_strerror(rs->cc));
        return -1;
    }
    return 0;
}

int fl_http_retryable(const fl_http_resp *rs) {
    if (rs->sink_failed || rs->sink_stopped) return 0;
    if (rs->stalled) return 1;
    switch (rs->cc) {
    case CURLE_OK:
        return rs->status == 408 || rs->status == 429 || (rs->status >= 500 && rs->status < 600);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

void fl_sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void fl_http_backoff(fl_kaggle *k, int attempt, const fl_http_resp *rs, const char *what) {
    double d;
    if (rs && rs->retry_after >= 0) {
        d = rs->retry_after < k->o.retry_after_max_s ? rs->retry_after : k->o.retry_after_max_s;
    } else {
        d = k->o.backoff_initial_s;
        for (int i = 1; i < attempt && d < k->o.backoff_max_s; i++) d *= 2;
        if (d > k->o.backoff_max_s) d = k->o.backoff_max_s;
        /* Jitter spreads clients that failed together (a 5xx burst) over the next window. */
        d *= 0.5 + 0.5 * (double)fl_rng_uniform(&k->rng);
    }
    char why[160];
    if (rs && rs->cc != CURLE_OK)
        snprintf(why, sizeof why, "%.150s", rs->stalled ? rs->curl_msg : curl_easy_strerror(rs->cc));
    else if (rs)
        snprintf(why, sizeof why, "HTTP %ld", rs->status);
    else
        snprintf(why, sizeof why, "verification failed");
    fprintf(k->log, "%s: %s; retry %d/%d in %.1fs\n", what, why, attempt, k->o.max_retries, d);
    fflush(k->log);
    fl_sleep_s(d);
}
