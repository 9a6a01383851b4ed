/* Submissions: validate the CSV, StartSubmissionUpload -> PUT createUrl (the storage host gets
 * no credentials) -> CreateSubmission -> poll GetSubmission until COMPLETE or ERROR. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaggle/internal.h"

int fl_kaggle_check_submission(const char *path, fl_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return fl_errf(e, "submission %s: %s", path, strerror(errno));
    char line[4096];
    int rc = 0;
    if (!fgets(line, sizeof line, f)) {
        rc = fl_errf(e, "submission %s:1: the file is empty", path);
    } else {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        const char *h = line;
        if ((unsigned char)h[0] == 0xef && (unsigned char)h[1] == 0xbb && (unsigned char)h[2] == 0xbf)
            h += 3; /* UTF-8 BOM */
        if (strcmp(h, "image,predictions") != 0) {
            rc = fl_errf(e, "submission %s:1: header must be \"image,predictions\", got \"%.80s\"",
                         path, h);
        } else {
            int rows = 0, ln = 1;
            while (fgets(line, sizeof line, f)) {
                ln++;
                n = strlen(line);
                while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
                if (!n) continue;
                const char *comma = strchr(line, ',');
                if (!comma || comma == line) {
                    rc = fl_errf(e, "submission %s:%d: expected \"image,predictions\", got \"%.80s\"",
                                 path, ln, line);
                    break;
                }
                rows++;
            }
            if (!rc && rows == 0) rc = fl_errf(e, "submission %s: no data rows after the header", path);
        }
    }
    fclose(f);
    return rc;
}

/* Strings or numbers (refs are int64, which proto3 JSON may send as a string). */
static void json_text(const cJSON *v, char *out, size_t cap) {
    out[0] = 0;
    if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v))
        snprintf(out, cap, "%.0f", v->valuedouble);
}

static int put_file(fl_kaggle *k, const char *url, const char *path, uint64_t len, fl_err *e) {
    char safe[400], what[480];
    fl_url_safe(url, safe, sizeof safe);
    snprintf(what, sizeof what, "upload to %s", safe);
    for (int attempt = 0;; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return fl_errf(e, "cannot open %s: %s", path, strerror(errno));
        fl_http_resp rs;
        fl_http_req rq = {.method = "PUT", .url = url, .auth = 0, .upload_fd = fd,
                          .upload_len = len, .content_type = "application/octet-stream"};
        fl_http_perform(k, &rq, &rs);
        close(fd);
        if (rs.cc == CURLE_OK && (rs.status == 200 || rs.status == 201)) {
            fl_http_resp_free(&rs);
            return 0;
        }
        fl_http_error(k, &rs, what, NULL, e);
        if (!fl_http_retryable(&rs) || attempt >= k->o.max_retries) {
            fl_http_resp_free(&rs);
            return -1;
        }
        fl_http_backoff(k, attempt + 1, &rs, what);
        fl_http_resp_free(&rs);
    }
}

int fl_kaggle_submit(fl_kaggle *k, const char *competition, const char *path,
                     const char *description, int no_wait, fl_kaggle_submit_result *res,
                     fl_err *e) {
    memset(res, 0, sizeof *res);
    if (fl_kaggle_check_submission(path, e) < 0) return -1;
    struct stat st;
    if (stat(path, &st) != 0) return fl_errf(e, "submission %s: %s", path, strerror(errno));
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

    cJSON *rq = cJSON_CreateObject(), *rs = NULL;
    cJSON_AddStringToObject(rq, "competitionName", competition);
    cJSON_AddNumberToObject(rq, "contentLength", (double)st.st_size);
    cJSON_AddNumberToObject(rq, "lastModifiedEpochSeconds", (double)st.st_mtime);
    cJSON_AddStringToObject(rq, "fileName", base);
    int rc = fl_kaggle_call(k, "StartSubmissionUpload", rq, &rs, e);
    cJSON_Delete(rq);
    if (rc < 0) return -1;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(rs, "token");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(rs, "createUrl");
    if (!cJSON_IsString(tok) || !cJSON_IsString(cu)) {
        cJSON_Delete(rs);
        return fl_errf(e, "StartSubmissionUpload: the answer lacks \"token\" or \"createUrl\"");
    }
    char *token = strdup(tok->valuestring);
    char *url = fl_url_resolve(k->base_url, cu->valuestring);
    cJSON_Delete(rs);
    if (!token || !url) {
        free(token);
        free(url);
        return fl_errf(e, "StartSubmissionUpload: malformed createUrl");
    }
    rc = put_file(k, url, path, (uint64_t)st.st_size, e);
    free(url);
    if (rc < 0) {
        free(token);
        return fl_kaggle_fail(k, e);
    }

    rq = cJSON_CreateObject();
    cJSON_AddStringToObject(rq, "competitionName", competition);
    cJSON_AddStringToObject(rq, "blobFileTokens", token);
    if (description && *description) cJSON_AddStringToObject(rq, "submissionDescription", description);
    free(token);
    rc = fl_kaggle_call(k, "CreateSubmission", rq, &rs, e);
    cJSON_Delete(rq);
    if (rc < 0) return -1;
    json_text(cJSON_GetObjectItemCaseSensitive(rs, "ref"), res->ref, sizeof res->ref);
    json_text(cJSON_GetObjectItemCaseSensitive(rs, "message"), res->message, sizeof res->message);
    cJSON_Delete(rs);
    if (!res->ref[0]) return fl_errf(e, "CreateSubmission: no submission ref in the answer (%s)",
                                     res->message[0] ? res->message : "no message");
    snprintf(res->status, sizeof res->status, "PENDING");
    if (k->o.progress) {
        fprintf(k->log, "submitted %s to %s (ref %s)%s%s\n", base, competition, res->ref,
                res->message[0] ? ": " : "", res->message);
        fflush(k->log);
    }
    if (no_wait) return 0;

    double t0 = fl_now();
    for (int polls = 0;; polls++) {
        rq = cJSON_CreateObject();
        /* ref is an int64 in the API: send a number when it is one. */
        char *end;
        double rv = strtod(res->ref, &end);
        if (*end == 0)
            cJSON_AddNumberToObject(rq, "ref", rv);
        else
            cJSON_AddStringToObject(rq, "ref", res->ref);
        rc = fl_kaggle_call(k, "GetSubmission", rq, &rs, e);
        cJSON_Delete(rq);
        if (rc < 0) return -1;
        char status[32];
        json_text(cJSON_GetObjectItemCaseSensitive(rs, "status"), status, sizeof status);
        if (!status[0]) snprintf(status, sizeof status, "PENDING"); /* default enum value */
        snprintf(res->status, sizeof res->status, "%s", status);
        json_text(cJSON_GetObjectItemCaseSensitive(rs, "publicScore"), res->public_score,
                  sizeof res->public_score);
        json_text(cJSON_GetObjectItemCaseSensitive(rs, "privateScore"), res->private_score,
                  sizeof res->private_score);
        if (strcmp(status, "ERROR") == 0) {
            json_text(cJSON_GetObjectItemCaseSensitive(rs, "errorDescription"), res->message,
                      sizeof res->message);
        }
        cJSON_Delete(rs);
        if (strcmp(status, "COMPLETE") == 0 || strcmp(status, "ERROR") == 0) return 0;
        if (fl_now() - t0 > k->o.poll_timeout_s)
            return fl_errf(e, "submission %s still %s after %.0fs; check "
                              "https://www.kaggle.com/competitions/%s/submissions",
                           res->ref, status, fl_now() - t0, competition);
        if (k->o.progress && polls % 6 == 0) {
            fprintf(k->log, "submission %s: %s (%.0fs)\n", res->ref, status, fl_now() - t0);
            fflush(k->log);
        }
        fl_sleep_s(k->o.poll_interval_s);
    }
}

int fl_kaggle_submit_cli(const fl_kaggle_opts *opts, const char *competition, const char *path,
                         const char *description, int dry_run, FILE *out, fl_err *e) {
    if (!out) out = stdout;
    if (!competition || !*competition)
        return fl_errf(e, "submit: no competition (set kaggle.competition in the config)");
    if (fl_kaggle_check_submission(path, e) < 0) return -1;
    if (dry_run) {
        fprintf(out, "dry run: %s looks like a submission for %s; nothing uploaded\n", path,
                competition);
        return 0;
    }
    fl_kaggle *k = fl_kaggle_new(opts, e);
    if (!k) return -1;
    fl_kaggle_submit_result r;
    int rc = fl_kaggle_submit(k, competition, path, description, 0, &r, e);
    if (rc == 0 && strcmp(r.status, "ERROR") == 0)
        rc = fl_errf(e, "submission %s failed on Kaggle: %s", r.ref,
                     r.message[0] ? r.message : "no description");
    if (rc == 0) {
        fprintf(out, "submission %s: %s\n", r.ref, r.status);
        fprintf(out, "public score: %s\n", r.public_score[0] ? r.public_score : "(none)");
        if (r.private_score[0]) fprintf(out, "private score: %s\n", r.private_score);
    }
    if (rc < 0) fl_kaggle_fail(k, e);
    fl_kaggle_free(k);
    return rc;
}
