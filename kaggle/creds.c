/* Kaggle credential discovery, in the order of the official client (kagglesdk
 * get_access_token_from_env, then KaggleApi._authenticate_with_legacy_apikey). The secrets are
 * kept in the struct only to build the Authorization header and to redact messages. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "kaggle/kaggle.h"

void fl_kaggle_creds_free(fl_kaggle_creds *c) {
    if (!c) return;
    if (c->authorization) memset(c->authorization, 0, strlen(c->authorization));
    if (c->secret) memset(c->secret, 0, strlen(c->secret));
    free(c->authorization);
    free(c->secret);
    free(c->username);
    memset(c, 0, sizeof *c);
}

/* Strips surrounding whitespace in place (tokens are often saved with a newline). */
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* A header value must not smuggle a line break or control characters into the request. */
static int header_safe(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

static int set_bearer(fl_kaggle_creds *c, const char *token, const char *source, fl_err *e) {
    if (!*token) return fl_errf(e, "Kaggle credentials: the token from %s is empty", source);
    if (!header_safe(token))
        return fl_errf(e, "Kaggle credentials: the token from %s contains control characters",
                       source);
    c->kind = FL_KAGGLE_AUTH_BEARER;
    c->secret = strdup(token);
    c->authorization = fl_strdupf("Authorization: Bearer %s", token);
    snprintf(c->source, sizeof c->source, "%s", source);
    if (!c->secret || !c->authorization) return fl_errf(e, "out of memory");
    return 0;
}

static int set_basic(fl_kaggle_creds *c, const char *user, const char *key, const char *source,
                     fl_err *e) {
    if (!*user || !*key)
        return fl_errf(e, "Kaggle credentials: %s has an empty username or key", source);
    if (!header_safe(user) || !header_safe(key) || strchr(user, ':'))
        return fl_errf(e, "Kaggle credentials: %s has a malformed username or key", source);
    char *pair = fl_strdupf("%s:%s", user, key);
    char *b64 = pair ? fl_base64_encode(pair, strlen(pair)) : NULL;
    if (pair) {
        memset(pair, 0, strlen(pair));
        free(pair);
    }
    if (!b64) return fl_errf(e, "out of memory");
    c->kind = FL_KAGGLE_AUTH_BASIC;
    c->authorization = fl_strdupf("Authorization: Basic %s", b64);
    memset(b64, 0, strlen(b64));
    free(b64);
    c->secret = strdup(key);
    c->username = strdup(user);
    snprintf(c->source, sizeof c->source, "%s", source);
    if (!c->secret || !c->authorization || !c->username) return fl_errf(e, "out of memory");
    return 0;
}

/* Reads a token file; 1 found (token set), 0 absent, -1 error. */
static int token_file(fl_kaggle_creds *c, const char *path, const char *source, fl_err *e) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    fl_err e2;
    char *data = fl_read_file(path, NULL, &e2);
    if (!data) return fl_errf(e, "Kaggle credentials: cannot read the token file %s", path);
    char *t = trim(data);
    int rc = *t ? set_bearer(c, t, source, e) : 0;
    memset(data, 0, strlen(data));
    free(data);
    return rc < 0 ? -1 : (c->kind ? 1 : 0);
}

static const char *home_dir(void) {
    const char *h = getenv("HOME");
    return h && *h ? h : NULL;
}

/* The one kaggle.json the official client would read (see the header). malloc'd. */
static char *kaggle_json_path(void) {
    const char *dir = getenv("KAGGLE_CONFIG_DIR");
    if (dir && *dir) return fl_strdupf("%s/kaggle.json", dir);
    const char *home = home_dir();
    struct stat st;
    if (home) {
        char *dot = fl_strdupf("%s/.kaggle", home);
        int exists = dot && stat(dot, &st) == 0;
        free(dot);
        if (exists) return fl_strdupf("%s/.kaggle/kaggle.json", home);
    }
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg) return fl_strdupf("%s/kaggle/kaggle.json", xdg);
    return home ? fl_strdupf("%s/.config/kaggle/kaggle.json", home) : NULL;
}

/* 1 found, 0 absent, -1 error. */
static int kaggle_json(fl_kaggle_creds *c, const char *path, FILE *warn, fl_err *e) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (st.st_mode & (S_IRGRP | S_IROTH))
        fprintf(warn ? warn : stderr,
                "Warning: Your Kaggle API key is readable by other users on this system! "
                "To fix this, you can run 'chmod 600 %s'\n",
                path);
    fl_err e2;
    size_t len = 0;
    char *data = fl_read_file(path, &len, &e2);
    if (!data) return fl_errf(e, "Kaggle credentials: cannot read %s", path);
    cJSON *j = cJSON_ParseWithLength(data, len);
    memset(data, 0, len);
    free(data);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        /* No parser detail: it could quote part of the key. */
        return fl_errf(e, "Kaggle credentials: %s is not a JSON object", path);
    }
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "username");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "key");
    int rc;
    if (!cJSON_IsString(u) || !cJSON_IsString(k))
        rc = fl_errf(e, "Kaggle credentials: %s needs string fields \"username\" and \"key\"", path);
    else
        rc = set_basic(c, u->valuestring, k->valuestring, path, e) < 0 ? -1 : 1;
    if (cJSON_IsString(k)) memset(k->valuestring, 0, strlen(k->valuestring));
    cJSON_Delete(j);
    return rc;
}

int fl_kaggle_creds_find(fl_kaggle_creds *c, FILE *warn, fl_err *e) {
    memset(c, 0, sizeof *c);
    int rc;
    const char *tok = getenv("KAGGLE_API_TOKEN");
    if (tok && *tok) {
        struct stat st;
        /* Like kagglesdk: a value naming an existing file is a path, anything else the token. */
        if (stat(tok, &st) == 0) {
            rc = token_file(c, tok, "KAGGLE_API_TOKEN (token file)", e);
            if (rc < 0) goto fail;
            if (rc == 0) {
                fl_errf(e, "Kaggle credentials: KAGGLE_API_TOKEN names a file without a token");
                goto fail;
            }
            return 0;
        }
        char *buf = strdup(tok);
        if (!buf) return fl_errf(e, "out of memory");
        rc = set_bearer(c, trim(buf), "KAGGLE_API_TOKEN (environment)", e);
        memset(buf, 0, strlen(buf));
        free(buf);
        if (rc < 0) goto fail;
        return 0;
    }
    const char *home = home_dir();
    if (home) {
        static const char *const names[] = {"access_token", "access_token.txt"};
        for (int i = 0; i < 2; i++) {
            char *p = fl_strdupf("%s/.kaggle/%s", home, names[i]);
            rc = p ? token_file(c, p, p, e) : fl_errf(e, "out of memory");
            free(p);
            if (rc < 0) goto fail;
            if (rc > 0) return 0;
        }
    }
    const char *user = getenv("KAGGLE_USERNAME"), *key = getenv("KAGGLE_KEY");
    if (user && *user && key && *key) {
        if (set_basic(c, user, key, "KAGGLE_USERNAME/KAGGLE_KEY (environment)", e) < 0) goto fail;
        return 0;
    }
    char *json = kaggle_json_path();
    if (json) {
        rc = kaggle_json(c, json, warn, e);
        if (rc != 0) {
            free(json);
            if (rc < 0) goto fail;
            return 0;
        }
    }
    fl_errf(e,
            "no Kaggle credentials: set KAGGLE_API_TOKEN (a token or a file holding one), create "
            "~/.kaggle/access_token, set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json "
            "(searched: %s); see https://www.kaggle.com/settings (API section)",
            json ? json : "$HOME is not set");
    free(json);
    return -1;
fail:
    fl_kaggle_creds_free(c);
    return -1;
}
