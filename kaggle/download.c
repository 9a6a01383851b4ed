/* The download engine: API call (credentials) -> redirects followed by hand as GET without
 * credentials -> body streamed into dest.part (resumed with Range when the server accepts
 * ranges) -> length, x-goog-hash MD5 and expected size/digest checked -> fsync + rename to dest.
 * dest never holds a partial file; a .part survives failures so the next try resumes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kaggle/internal.h"

#define MAX_HOPS 10

typedef struct dl {
    fl_kaggle *k;
    const char *dest, *part, *label;
    const fl_dl_expect *ex;
    /* state of dest when the try began */
    int dest_exists;
    struct stat dest_st;
    /* the .part */
    int fd;
    uint64_t have;       /* bytes in .part (the Range start) */
    uint64_t received;   /* body bytes of this response */
    int64_t total;       /* full object length, -1 unknown */
    fl_hashpipe *hp;     /* MD5 of the .part, when the response carries x-goog-hash md5 */
    XXH3_state_t *xxh;   /* only with an expected digest */
    int restart;         /* 206 that does not continue our .part: start from zero */
    int skip;            /* dest is already complete */
    int resumed;
    int write_errno;
    uint64_t written_total; /* all bytes written by this call (fault hook) */
    fl_progress prog;
    int prog_on;
} dl;

/* Hashes the .part into the XXH state, so the digest covers the whole object after a resume. */
static int hash_part(dl *d, uint64_t *n_out) {
    if (d->xxh) XXH3_128bits_reset(d->xxh);
    uint64_t n = 0;
    int fd = open(d->part, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *n_out = 0;
        return errno == ENOENT ? 0 : -1;
    }
    static const size_t B = 1 << 20;
    char *buf = malloc(B);
    ssize_t r = -1;
    while (buf && ((r = read(fd, buf, B)) > 0 || (r < 0 && errno == EINTR))) {
        if (r <= 0) continue;
        if (d->xxh) XXH3_128bits_update(d->xxh, buf, (size_t)r);
        n += (uint64_t)r;
    }
    free(buf);
    close(fd);
    *n_out = n;
    return r == 0 ? 0 : -1;
}

/* Size of the .part (the Range start) and the XXH of its bytes when a digest is expected. */
static int prehash_part(dl *d, fl_err *e) {
    d->have = 0;
    if (d->xxh) {
        if (hash_part(d, &d->have) < 0)
            return fl_errf(e, "cannot read %s: %s", d->part, strerror(errno));
        return 0;
    }
    struct stat st;
    if (stat(d->part, &st) == 0 && S_ISREG(st.st_mode)) d->have = (uint64_t)st.st_size;
    return 0;
}

/* 1 when the file's MD5 equals want (a complete file is only trusted when it still matches). */
static int file_md5_is(const char *path, const uint8_t want[16]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    static const size_t B = 1 << 20;
    char *buf = malloc(B);
    fl_md5 m;
    fl_md5_init(&m);
    ssize_t r = -1;
    while (buf && ((r = read(fd, buf, B)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0) fl_md5_update(&m, buf, (size_t)r);
    free(buf);
    close(fd);
    if (r != 0) return 0;
    uint8_t got[16];
    fl_md5_final(&m, got);
    return memcmp(got, want, 16) == 0;
}

static int on_headers(void *ud, const fl_http_resp *rs) {
    dl *d = ud;
    int64_t total = -1;
    if (rs->status == 206 && rs->range_total >= 0)
        total = rs->range_total;
    else if (rs->status != 206 && rs->content_length >= 0)
        total = rs->content_length;
    if (d->dest_exists && total >= 0 && (int64_t)d->dest_st.st_size == total &&
        (!rs->last_modified || d->dest_st.st_mtime >= rs->last_modified) &&
        (!rs->has_md5 || file_md5_is(d->dest, rs->md5))) {
        d->skip = 1;
        return 1;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    if (rs->status == 206) {
        if (rs->range_start < 0 || (uint64_t)rs->range_start != d->have) {
            d->restart = 1; /* not the continuation of our .part */
            return 1;
        }
        flags |= O_APPEND;
        d->resumed = 1;
    } else {
        flags |= O_TRUNC;
        if (d->xxh) XXH3_128bits_reset(d->xxh);
        d->have = 0;
    }
    d->fd = open(d->part, flags, 0644);
    if (d->fd < 0) {
        d->write_errno = errno;
        return -1;
    }
    if (rs->has_md5 && !(d->hp = fl_hashpipe_start(d->part, d->have))) {
        d->write_errno = errno ? errno : ENOMEM;
        return -1;
    }
    d->total = total;
    d->received = 0;
    fl_progress_begin(&d->prog, d->k, d->label, d->have, total);
    d->prog_on = 1;
    return 0;
}

static int on_data(void *ud, const void *p, size_t n) {
    dl *d = ud;
    uint64_t lim = d->k->o.fault_enospc_after;
    if (lim && d->written_total + n > lim) {
        d->write_errno = ENOSPC;
        return -1;
    }
    const char *c = p;
    size_t left = n;
    while (left) {
        ssize_t w = write(d->fd, c, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            d->write_errno = errno;
            return -1;
        }
        c += w;
        left -= (size_t)w;
    }
    if (d->xxh) XXH3_128bits_update(d->xxh, p, n);
    d->received += n;
    if (d->hp) fl_hashpipe_advance(d->hp, d->have + d->received);
    d->written_total += n;
    fl_progress_update(&d->prog, d->have + d->received);
    return 0;
}

static void close_part(dl *d) {
    fl_hashpipe_abort(d->hp);
    d->hp = NULL;
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
}

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* After a complete 2xx body: 0 ok (renamed to dest), 1 retry from zero (length/MD5 wrong:
 * transfer damage), -1 fatal. */
static int finish(dl *d, const fl_http_resp *rs, fl_dl_result *res, fl_err *e) {
    uint64_t size = d->have + d->received;
    if (d->total >= 0 && size != (uint64_t)d->total) {
        fl_errf(e, "%s: got %llu bytes, expected %lld", d->label, (unsigned long long)size,
                (long long)d->total);
        return 1;
    }
    if (rs->has_md5) {
        uint8_t got[16];
        fl_hashpipe *hp = d->hp;
        d->hp = NULL;
        if (!hp || fl_hashpipe_finish(hp, size, got) < 0) {
            fl_errf(e, "%s: cannot read back %s to check its MD5", d->label, d->part);
            return 1;
        }
        if (memcmp(got, rs->md5, 16) != 0) {
            char a[33], b[33];
            hex(got, 16, a);
            hex(rs->md5, 16, b);
            fl_errf(e, "%s: MD5 mismatch (got %s, x-goog-hash says %s)", d->label, a, b);
            return 1;
        }
        res->md5_checked = 1;
    }
    if (d->ex && d->ex->size >= 0 && size != (uint64_t)d->ex->size)
        return fl_errf(e, "%s: size %llu differs from the expected %lld", d->label,
                       (unsigned long long)size, (long long)d->ex->size);
    if (d->xxh && d->ex && d->ex->xxh128) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(d->xxh));
        char got[33];
        hex(c.digest, 16, got);
        if (strcasecmp(got, d->ex->xxh128) != 0)
            return fl_errf(e, "%s: XXH3-128 %s differs from the expected %s", d->label, got,
                           d->ex->xxh128);
    }
    /* Durability of downloads is the store's job (ingest fsyncs every object); here a crash
     * can at worst leave a complete-looking dest with bad bytes, which the MD5 check on skip
     * catches. fsync only when asked. */
    if (d->k->o.fsync_downloads && fsync(d->fd) != 0) {
        int en = errno;
        return fl_errf(e, "%s: %s while writing %s", d->label,
                       en == ENOSPC ? "disk full (ENOSPC)" : strerror(en), d->part);
    }
    close_part(d);
    if (rename(d->part, d->dest) != 0)
        return fl_errf(e, "cannot rename %s to %s: %s", d->part, d->dest, strerror(errno));
    fl_err e2;
    fl_fsync_parent(d->dest, &e2);
    res->bytes = size;
    return 0;
}

int fl_download(fl_kaggle *k, const char *method, const cJSON *body, const char *url,
                const char *dest, const fl_dl_expect *ex, fl_dl_result *res_out,
                const char *competition, fl_err *e) {
    fl_dl_result res_local, *res = res_out ? res_out : &res_local;
    memset(res, 0, sizeof *res);
    char *part = fl_strdupf("%s.part", dest);
    const char *base = strrchr(dest, '/');
    dl d = {.k = k, .dest = dest, .part = part, .label = base ? base + 1 : dest, .ex = ex, .fd = -1};
    char *api_url = method ? fl_kaggle_api_url(k, method) : NULL;
    char *body_s = method ? (body ? cJSON_PrintUnformatted(body) : strdup("{}")) : NULL;
    char what[600];
    char safe[400];
    if (method)
        snprintf(what, sizeof what, "%s %s", method, d.label);
    else {
        fl_url_safe(url, safe, sizeof safe);
        snprintf(what, sizeof what, "GET %s", safe);
    }
    int rc = -1;
    if (!part || (method && (!api_url || !body_s))) {
        fl_errf(e, "out of memory");
        goto out;
    }
    if (ex && ex->xxh128 && !(d.xxh = XXH3_createState())) {
        fl_errf(e, "out of memory");
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        fl_http_resp rs;
        memset(&rs, 0, sizeof rs);
        d.dest_exists = stat(dest, &d.dest_st) == 0 && S_ISREG(d.dest_st.st_mode);
        d.skip = d.restart = d.write_errno = 0;
        d.received = 0;
        d.total = -1;
        d.prog_on = 0;
        /* With a complete dest we ask for the whole object (to compare its length); else we
         * continue the .part. */
        if (d.dest_exists) {
            unlink(part);
            d.have = 0;
        } else if (prehash_part(&d, e) < 0) {
            goto out;
        }
        char *cur = strdup(method ? api_url : url);
        int verdict = 0; /* 0 done, 1 retry, -1 fatal */
        int fresh_restart = 0;
        for (int hop = 0;; hop++) {
            fl_http_sink sink = {on_headers, on_data, &d};
            fl_http_req rq = {.method = (method && hop == 0) ? "POST" : "GET",
                              .url = cur,
                              .auth = method && hop == 0,
                              .body = hop == 0 ? body_s : NULL,
                              .body_len = hop == 0 && body_s ? strlen(body_s) : 0,
                              .content_type = method && hop == 0 ? "application/json" : NULL,
                              .upload_fd = -1,
                              .range_from = d.have,
                              .sink = &sink};
            fl_http_perform(k, &rq, &rs);
            if (d.skip) {
                if (k->o.progress) {
                    fprintf(k->log, "%s: already complete, skipped\n", d.label);
                    fflush(k->log);
                }
                res->skipped = 1;
                res->bytes = (uint64_t)d.dest_st.st_size;
                verdict = 0;
                rc = 0;
                break;
            }
            /* 416: our .part is not a prefix the server can continue (e.g. it is already
             * complete, or the object shrank): start from zero, like a wrong 206. */
            if (rs.cc == CURLE_OK && rs.status == 416 && d.have > 0) d.restart = 1;
            if (d.restart) {
                close_part(&d);
                unlink(part);
                d.have = 0;
                if (d.xxh) XXH3_128bits_reset(d.xxh);
                if (!fresh_restart++) { /* once immediately, without counting as a retry */
                    fl_http_resp_free(&rs);
                    free(cur);
                    cur = strdup(method ? api_url : url);
                    hop = -1;
                    continue;
                }
                fl_errf(e, "%s: server answered a resume with the wrong range", what);
                verdict = 1;
                break;
            }
            if (d.write_errno) {
                close_part(&d);
                verdict = -1;
                if (d.write_errno == ENOSPC)
                    fl_errf(e, "%s: disk full (ENOSPC) while writing %s; free space and run "
                               "again (the download resumes from %s)", what, part, part);
                else
                    fl_errf(e, "%s: cannot write %s: %s", what, part, strerror(d.write_errno));
                break;
            }
            if (rs.cc != CURLE_OK) {
                res->http_status = (int)rs.status;
                close_part(&d);
                fl_http_error(k, &rs, what, competition, e);
                verdict = fl_http_retryable(&rs) ? 1 : -1;
                break;
            }
            res->http_status = (int)rs.status;
            if (rs.status >= 300 && rs.status < 400 && rs.location) {
                char *next = fl_url_resolve(cur, rs.location);
                if (!next) {
                    fl_errf(e, "%s: malformed redirect", what);
                    verdict = -1;
                    break;
                }
                if (strncmp(cur, "https://", 8) == 0 && strncmp(next, "https://", 8) != 0) {
                    free(next);
                    fl_errf(e, "%s: refusing a redirect from HTTPS to plain HTTP", what);
                    verdict = -1;
                    break;
                }
                if (hop + 1 >= MAX_HOPS) {
                    free(next);
                    fl_errf(e, "%s: too many redirects", what);
                    verdict = -1;
                    break;
                }
                free(cur);
                cur = next;
                fl_http_resp_free(&rs);
                continue;
            }
            if (rs.status >= 200 && rs.status < 300) {
                if (d.fd < 0) { /* empty body: on_headers ran, but be safe */
                    fl_errf(e, "%s: no body", what);
                    verdict = 1;
                    break;
                }
                int f = finish(&d, &rs, res, e);
                close_part(&d);
                if (f == 0) {
                    if (d.prog_on) {
                        d.prog.done = res->bytes;
                        fl_progress_end(&d.prog, 1);
                        d.prog_on = 0;
                    }
                    rc = 0;
                    verdict = 0;
                } else if (f == 1) {
                    unlink(part); /* damaged: start from zero next time */
                    d.have = 0;
                    verdict = 1;
                } else {
                    unlink(part);
                    verdict = -1;
                }
                break;
            }
            fl_http_error(k, &rs, what, competition, e);
            verdict = fl_http_retryable(&rs) ? 1 : -1;
            break;
        }
        free(cur);
        if (d.prog_on) fl_progress_end(&d.prog, 0);
        d.prog_on = 0;
        res->transferred += d.received;
        if (d.resumed) res->resumed = 1;
        if (verdict == 0 || verdict < 0) {
            fl_http_resp_free(&rs);
            break;
        }
        if (attempt >= k->o.max_retries) {
            fl_http_resp_free(&rs);
            fl_errprefix(e, "gave up after %d retries", attempt);
            break;
        }
        res->retries++;
        /* A 2xx that failed verification has no Retry-After and no status worth reporting. */
        fl_http_backoff(k, attempt + 1, rs.cc != CURLE_OK || rs.status >= 300 ? &rs : NULL, what);
        fl_http_resp_free(&rs);
    }
out:
    close_part(&d);
    if (d.xxh) XXH3_freeState(d.xxh);
    free(part);
    free(api_url);
    if (body_s) cJSON_free(body_s);
    if (rc < 0) fl_kaggle_fail(k, e);
    return rc;
}

int fl_kaggle_download_url(fl_kaggle *k, const char *url, const char *dest,
                           const fl_dl_expect *expect, fl_dl_result *res, fl_err *e) {
    return fl_download(k, NULL, NULL, url, dest, expect, res, NULL, e);
}
