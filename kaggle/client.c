/* The client handle (options with defaults, credentials, libcurl) and the error side: clear
 * messages for failed exchanges, URL sanitizing and secret redaction. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kaggle/internal.h"

fl_kaggle *fl_kaggle_new(const fl_kaggle_opts *opts, fl_err *e) {
    fl_kaggle *k = calloc(1, sizeof *k);
    if (!k) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    if (opts) k->o = *opts;
    fl_kaggle_opts *o = &k->o;
    if (o->max_retries == 0) o->max_retries = 6;
    if (o->max_retries < 0) o->max_retries = 0;
    if (o->backoff_initial_s <= 0) o->backoff_initial_s = 1.0;
    if (o->backoff_max_s <= 0) o->backoff_max_s = 60.0;
    if (o->retry_after_max_s <= 0) o->retry_after_max_s = 600.0;
    if (o->connect_timeout_s <= 0) o->connect_timeout_s = 30;
    if (o->stall_timeout_s <= 0) o->stall_timeout_s = 60;
    if (o->poll_interval_s <= 0) o->poll_interval_s = 5.0;
    if (o->poll_timeout_s <= 0) o->poll_timeout_s = 3600.0;
    k->log = o->log ? o->log : stderr;
    k->tty = isatty(fileno(k->log));
    const char *base = o->base_url && *o->base_url ? o->base_url : FL_KAGGLE_DEFAULT_BASE;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') bl--;
    k->base_url = strndup(base, bl);
    k->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    o->base_url = k->base_url;
    o->ca_file = k->ca_file;
    fl_rng_init(&k->rng, o->seed, 0x6b61676c65ULL /* "kagle" */);
    if (!k->base_url || (opts && opts->ca_file && !k->ca_file)) {
        fl_errf(e, "out of memory");
        fl_kaggle_free(k);
        return NULL;
    }
    if (strncmp(k->base_url, "https://", 8) != 0 && strncmp(k->base_url, "http://", 7) != 0) {
        fl_errf(e, "Kaggle base URL must start with https:// (or http:// for a loopback test "
                   "server), got '%s'", k->base_url);
        fl_kaggle_free(k);
        return NULL;
    }
    if (!o->no_credentials && fl_kaggle_creds_find(&k->creds, k->log, e) < 0) {
        fl_kaggle_free(k);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(k->curl = curl_easy_init())) {
        fl_errf(e, "cannot initialize libcurl");
        fl_kaggle_free(k);
        return NULL;
    }
    return k;
}

void fl_kaggle_free(fl_kaggle *k) {
    if (!k) return;
    if (k->curl) {
        curl_easy_cleanup(k->curl);
        curl_global_cleanup();
    }
    fl_kaggle_creds_free(&k->creds);
    free(k->base_url);
    free(k->ca_file);
    free(k);
}

const char *fl_kaggle_cred_source(const fl_kaggle *k) {
    return k->creds.kind ? k->creds.source : "none";
}

char *fl_kaggle_api_url(const fl_kaggle *k, const char *method) {
    return fl_strdupf("%s/v1/competitions.CompetitionApiService/%s", k->base_url, method);
}

void fl_url_safe(const char *url, char *out, size_t cap) {
    if (!cap) return;
    const char *p = url ? url : "";
    const char *scheme_end = strstr(p, "://");
    size_t o = 0;
    const char *rest = p;
    if (scheme_end) {
        size_t sl = (size_t)(scheme_end - p) + 3;
        o = sl < cap - 1 ? sl : cap - 1;
        memcpy(out, p, o);
        rest = scheme_end + 3;
        /* Drop user:password@ from the authority. */
        size_t auth_len = strcspn(rest, "/?#");
        const char *at = memchr(rest, '@', auth_len);
        if (at) rest = at + 1;
    }
    size_t n = strcspn(rest, "?#");
    if (o + n >= cap) n = cap - 1 - o;
    memcpy(out + o, rest, n);
    out[o + n] = 0;
}

char *fl_url_resolve(const char *base, const char *location) {
    CURLU *u = curl_url();
    if (!u) return NULL;
    char *res = NULL, *tmp = NULL;
    if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &tmp, 0) == CURLUE_OK) {
        res = strdup(tmp);
        curl_free(tmp);
    }
    curl_url_cleanup(u);
    return res;
}

/* Replaces every occurrence of needle in s (of capacity cap) by "[redacted]". */
static void redact(char *s, size_t cap, const char *needle) {
    if (!needle || strlen(needle) < 4) return; /* too short to be a secret; would mangle text */
    static const char R[] = "[redacted]";
    size_t nl = strlen(needle), rl = sizeof R - 1;
    char *p;
    while ((p = strstr(s, needle)) != NULL) {
        size_t tail = strlen(p + nl);
        if ((size_t)(p - s) + rl + tail + 1 > cap) tail = cap - 1 - (size_t)(p - s) - rl;
        memmove(p + rl, p + nl, tail);
        memcpy(p, R, rl);
        p[rl + tail] = 0;
    }
}

int fl_kaggle_fail(const fl_kaggle *k, fl_err *e) {
    if (!k || !e) return -1;
    redact(e->msg, sizeof e->msg, k->creds.secret);
    if (k->creds.authorization) {
        const char *v = strchr(k->creds.authorization, ' ');
        if (v) v = strchr(v + 1, ' '); /* past "Authorization: Basic " */
        if (v) redact(e->msg, sizeof e->msg, v + 1);
    }
    return -1;
}

/* The "message" of a JSON error body {"code":4xx,"message":...}, else a short printable head of
 * the body. */
static void server_message(const fl_http_resp *rs, char *out, size_t cap) {
    out[0] = 0;
    if (!rs->body || !rs->len) return;
    cJSON *j = cJSON_ParseWithLength(rs->body, rs->len);
    const cJSON *m = j ? cJSON_GetObjectItemCaseSensitive(j, "message") : NULL;
    if (cJSON_IsString(m)) {
        snprintf(out, cap, "%s", m->valuestring);
    } else {
        size_t n = 0;
        for (size_t i = 0; i < rs->len && n + 1 < cap && n < 200; i++) {
            unsigned char ch = (unsigned char)rs->body[i];
            out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
        }
        out[n] = 0;
    }
    cJSON_Delete(j);
}

int fl_http_error(fl_kaggle *k, const fl_http_resp *rs, const char *what, const char *competition,
                  fl_err *e) {
    if (rs->cc != CURLE_OK) {
        if (rs->cc == CURLE_PEER_FAILED_VERIFICATION || rs->cc == CURLE_SSL_CACERT_BADFILE)
            return fl_errf(e, "%s: TLS certificate verification failed (%s); fluke never disables "
                              "verification: fix the system CA store or the clock",
                           what, rs->curl_msg);
        return fl_errf(e, "%s: network error: %s", what, rs->curl_msg);
    }
    char msg[512];
    server_message(rs, msg, sizeof msg);
    const char *sep = msg[0] ? ": " : "";
    switch (rs->status) {
    case 401:
        return fl_errf(e, "%s: 401 Unauthorized: Kaggle rejected the credentials from %s (expired "
                          "or revoked? create a new API token at https://www.kaggle.com/settings)%s%s",
                       what, fl_kaggle_cred_source(k), sep, msg);
    case 403:
        if (strcasestr(msg, "accept this competition") || strcasestr(msg, "rules"))
            return fl_errf(e, "%s: 403 Forbidden: you must accept this competition's rules "
                              "first: open https://www.kaggle.com/competitions/%s/rules, accept "
                              "them, then run again (this cannot be done through the API)",
                           what, competition ? competition : "<competition>");
        return fl_errf(e, "%s: 403 Forbidden (credentials from %s)%s%s", what,
                       fl_kaggle_cred_source(k), sep, msg);
    case 404:
        if (competition)
            return fl_errf(e, "%s: 404 Not Found%s%s (check the slug: "
                              "https://www.kaggle.com/competitions/%s)",
                           what, sep, msg, competition);
        return fl_errf(e, "%s: 404 Not Found%s%s", what, sep, msg);
    default:
        return fl_errf(e, "%s: HTTP %ld%s%s", what, rs->status, sep, msg);
    }
}
