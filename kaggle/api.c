/* The competition API calls: a JSON POST with retries, ListDataFiles with paging, and the two
 * download methods (which go through the download engine). */
#include <stdlib.h>
#include <string.h>

#include "kaggle/internal.h"

/* The competitionName of a request body, for the rules URL in a 403 message. */
static const char *competition_of(const cJSON *body) {
    const cJSON *c = body ? cJSON_GetObjectItemCaseSensitive(body, "competitionName") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

int fl_kaggle_call(fl_kaggle *k, const char *method, const cJSON *body, cJSON **resp, fl_err *e) {
    *resp = NULL;
    char *url = fl_kaggle_api_url(k, method);
    char *bs = body ? cJSON_PrintUnformatted(body) : strdup("{}");
    if (!url || !bs) {
        free(url);
        free(bs);
        return fl_errf(e, "out of memory");
    }
    const char *comp = competition_of(body);
    char what[256];
    if (comp)
        snprintf(what, sizeof what, "%s (competition '%s')", method, comp);
    else
        snprintf(what, sizeof what, "%s", method);
    int rc = -1;
    for (int attempt = 0;; attempt++) {
        fl_http_resp rs;
        fl_http_req rq = {.method = "POST", .url = url, .auth = 1, .body = bs,
                          .body_len = strlen(bs), .content_type = "application/json",
                          .upload_fd = -1};
        fl_http_perform(k, &rq, &rs);
        if (rs.cc == CURLE_OK && rs.status >= 200 && rs.status < 300) {
            /* Fields at their default are omitted, so an empty body is an empty object. */
            cJSON *j = rs.len ? cJSON_ParseWithLength(rs.body, rs.len) : cJSON_CreateObject();
            if (!j || !cJSON_IsObject(j)) {
                cJSON_Delete(j);
                fl_errf(e, "%s: the answer is not a JSON object", what);
            } else {
                *resp = j;
                rc = 0;
            }
            fl_http_resp_free(&rs);
            break;
        }
        fl_http_error(k, &rs, what, comp, e);
        if (!fl_http_retryable(&rs) || attempt >= k->o.max_retries) {
            if (fl_http_retryable(&rs)) fl_errprefix(e, "gave up after %d retries", attempt);
            fl_http_resp_free(&rs);
            break;
        }
        fl_http_backoff(k, attempt + 1, &rs, what);
        fl_http_resp_free(&rs);
    }
    free(url);
    free(bs);
    if (rc < 0) fl_kaggle_fail(k, e);
    return rc;
}

void fl_kaggle_files_free(fl_kaggle_files *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].name);
        free(f->v[i].creation_date);
    }
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

/* int64 fields travel as JSON numbers or (proto3 JSON) as strings. */
static int64_t json_i64(const cJSON *v) {
    if (cJSON_IsNumber(v)) return (int64_t)v->valuedouble;
    if (cJSON_IsString(v)) return strtoll(v->valuestring, NULL, 10);
    return -1;
}

int fl_kaggle_list_files(fl_kaggle *k, const char *competition, fl_kaggle_files *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    char *token = NULL;
    size_t cap = 0;
    for (int page = 0; page < 100000; page++) {
        cJSON *rq = cJSON_CreateObject();
        cJSON_AddStringToObject(rq, "competitionName", competition);
        cJSON_AddNumberToObject(rq, "pageSize", 200);
        if (token) cJSON_AddStringToObject(rq, "pageToken", token);
        cJSON *rs = NULL;
        int rc = fl_kaggle_call(k, "ListDataFiles", rq, &rs, e);
        cJSON_Delete(rq);
        free(token);
        token = NULL;
        if (rc < 0) {
            fl_kaggle_files_free(out);
            return -1;
        }
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(rs, "files"), *f;
        if (files && !cJSON_IsArray(files)) {
            cJSON_Delete(rs);
            fl_kaggle_files_free(out);
            return fl_errf(e, "ListDataFiles: \"files\" is not an array");
        }
        cJSON_ArrayForEach(f, files) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
            if (!cJSON_IsString(name)) continue;
            if (out->n == cap) {
                cap = cap ? cap * 2 : 16;
                fl_kaggle_file *nv = realloc(out->v, cap * sizeof *nv);
                if (!nv) {
                    cJSON_Delete(rs);
                    fl_kaggle_files_free(out);
                    return fl_errf(e, "out of memory");
                }
                out->v = nv;
            }
            const cJSON *cd = cJSON_GetObjectItemCaseSensitive(f, "creationDate");
            fl_kaggle_file *x = &out->v[out->n++];
            x->name = strdup(name->valuestring);
            x->total_bytes = json_i64(cJSON_GetObjectItemCaseSensitive(f, "totalBytes"));
            x->creation_date = cJSON_IsString(cd) ? strdup(cd->valuestring) : NULL;
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(rs, "nextPageToken");
        if (cJSON_IsString(next) && next->valuestring[0]) token = strdup(next->valuestring);
        cJSON_Delete(rs);
        if (!token) return 0;
    }
    free(token);
    fl_kaggle_files_free(out);
    return fl_errf(e, "ListDataFiles: the server kept sending page tokens");
}

int fl_kaggle_download_all(fl_kaggle *k, const char *competition, const char *dest,
                           fl_dl_result *res, fl_err *e) {
    cJSON *rq = cJSON_CreateObject();
    cJSON_AddStringToObject(rq, "competitionName", competition);
    int rc = fl_download(k, "DownloadDataFiles", rq, NULL, dest, NULL, res, competition, e);
    cJSON_Delete(rq);
    if (rc < 0) fl_errprefix(e, "competition '%s'", competition);
    return rc;
}

int fl_kaggle_download_file(fl_kaggle *k, const char *competition, const char *file_name,
                            const char *dest, fl_dl_result *res, fl_err *e) {
    cJSON *rq = cJSON_CreateObject();
    cJSON_AddStringToObject(rq, "competitionName", competition);
    cJSON_AddStringToObject(rq, "fileName", file_name);
    int rc = fl_download(k, "DownloadDataFile", rq, NULL, dest, NULL, res, competition, e);
    cJSON_Delete(rq);
    if (rc < 0) fl_errprefix(e, "competition '%s', file '%s'", competition, file_name);
    return rc;
}
