/* The Kaggle client: credentials, HTTPS on libcurl (retries, resume, MD5 checks, progress),
 * the competition API (list/download data files, submit and read the score), generic file
 * downloads (Hugging Face hub weights) and safe archive extraction (libarchive).
 *
 * Protocol facts: ../shared/SPECS.md section 6. Every API call is
 * POST {base}/v1/competitions.CompetitionApiService/<Method> with a JSON body.
 *
 * Secrets (tokens, keys, the Authorization header, signed-URL query strings) never appear in
 * error messages, logs or progress lines: messages are redacted before they leave this module. */
#ifndef FLUKE_KAGGLE_H
#define FLUKE_KAGGLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "artifacts/util.h"

/* ---------------------------------------------------------------- MD5 (RFC 1321) */

typedef struct fl_md5 {
    uint32_t s[4];
    uint64_t nbytes;
    uint8_t buf[64];
} fl_md5;

void fl_md5_init(fl_md5 *m);
void fl_md5_update(fl_md5 *m, const void *data, size_t len);
void fl_md5_final(fl_md5 *m, uint8_t out[16]);

/* ---------------------------------------------------------------- base64 (RFC 4648) */

/* malloc'd, NUL-terminated. */
char *fl_base64_encode(const void *data, size_t len);
/* Decodes standard base64 (padding optional); -1 on a bad character or when out is too small. */
int fl_base64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen);

/* ---------------------------------------------------------------- credentials */

typedef enum fl_kaggle_auth {
    FL_KAGGLE_AUTH_NONE = 0,
    FL_KAGGLE_AUTH_BEARER, /* KAGGLE_API_TOKEN or ~/.kaggle/access_token */
    FL_KAGGLE_AUTH_BASIC,  /* KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json */
} fl_kaggle_auth;

typedef struct fl_kaggle_creds {
    fl_kaggle_auth kind;
    char *authorization; /* full header line "Authorization: ..." (secret) */
    char *secret;        /* the raw token or key (secret; kept only to redact messages) */
    char *username;      /* Basic only */
    char source[512];    /* where they came from, safe to print: "KAGGLE_API_TOKEN (environment)" */
} fl_kaggle_creds;

/* Finds credentials in the official client's order:
 *   1. KAGGLE_API_TOKEN: the token itself, or the path of a file holding it -> Bearer
 *   2. ~/.kaggle/access_token (then access_token.txt) -> Bearer
 *   3. KAGGLE_USERNAME + KAGGLE_KEY -> Basic
 *   4. kaggle.json {"username","key"} in $KAGGLE_CONFIG_DIR if set; else in ~/.kaggle when that
 *      directory exists; else in ${XDG_CONFIG_HOME:-~/.config}/kaggle -> Basic
 * A kaggle.json readable by group or others prints a warning to warn (NULL: stderr). Fails with
 * a message listing the places searched when nothing is found. */
int fl_kaggle_creds_find(fl_kaggle_creds *c, FILE *warn, fl_err *e);
void fl_kaggle_creds_free(fl_kaggle_creds *c);

/* ---------------------------------------------------------------- client */

#define FL_KAGGLE_DEFAULT_BASE "https://api.kaggle.com"
#define FL_HF_DEFAULT_BASE "https://huggingface.co"

typedef struct fl_kaggle_opts {
    const char *base_url;      /* API base; NULL: https://api.kaggle.com (tests: http://127.0.0.1:P) */
    const char *ca_file;       /* CA bundle for HTTPS peers; NULL: the system store. Verification
                                * is never disabled. */
    int max_retries;           /* retries after the first try on 429/5xx/timeouts/resets; 0: 6 */
    double backoff_initial_s;  /* first backoff; doubles per retry, with jitter; 0: 1 s */
    double backoff_max_s;      /* 0: 60 s */
    double retry_after_max_s;  /* cap on a server's Retry-After; 0: 600 s */
    long connect_timeout_s;    /* 0: 30 s */
    long stall_timeout_s;      /* abort a transfer with no bytes for this long (then retry); 0: 60 s */
    int progress;              /* 1: progress lines on the log (rewritten in place on a tty) */
    FILE *log;                 /* messages, warnings, progress; NULL: stderr */
    uint64_t seed;             /* backoff jitter stream */
    double poll_interval_s;    /* submission status polling; 0: 5 s */
    double poll_timeout_s;     /* give up polling after; 0: 3600 s */
    int no_credentials;        /* 1: don't look for Kaggle credentials (plain downloads only) */
    int fsync_downloads;       /* 1: fsync each download before its rename (the store already
                                * fsyncs what it ingests; a complete file is re-checked against
                                * x-goog-hash before it is skipped) */
    /* Test hook: simulate a full disk (ENOSPC) once this many bytes of a download were written.
     * 0 = off. */
    uint64_t fault_enospc_after;
} fl_kaggle_opts;

typedef struct fl_kaggle fl_kaggle;

/* Copies opts, finds credentials (unless opts->no_credentials), prepares libcurl. */
fl_kaggle *fl_kaggle_new(const fl_kaggle_opts *opts, fl_err *e);
void fl_kaggle_free(fl_kaggle *k);
/* Where the credentials came from (safe to print), or "none". */
const char *fl_kaggle_cred_source(const fl_kaggle *k);

/* ---------------------------------------------------------------- downloads */

typedef struct fl_dl_expect {
    int64_t size;          /* expected byte count, or -1 */
    const char *xxh128;    /* expected XXH3-128 (32 lowercase hex, canonical order), or NULL */
} fl_dl_expect;

typedef struct fl_dl_result {
    uint64_t bytes;        /* size of the final file */
    uint64_t transferred;  /* body bytes received in this call (0 when skipped) */
    int skipped;           /* the final file was already complete and current */
    int resumed;           /* at least one request continued a .part with Range */
    int md5_checked;       /* x-goog-hash md5 was present and matched */
    int retries;
    int http_status;       /* last status seen (404 for "not found" failures) */
} fl_dl_result;

/* Downloads url (GET, no Kaggle credentials) to dest through dest.part: resume with Range when
 * the server accepts ranges, skip when dest already has the full length and is not older than
 * Last-Modified, MD5 from x-goog-hash, expected size/digest. Redirects are followed by hand as
 * GET. On failure dest is untouched (a .part may remain for the next resume); res->http_status
 * tells a 404 apart. expect/res may be NULL. */
int fl_kaggle_download_url(fl_kaggle *k, const char *url, const char *dest,
                           const fl_dl_expect *expect, fl_dl_result *res, fl_err *e);

/* Hugging Face hub: {base}/{repo}/resolve/main/{file} (base NULL: https://huggingface.co).
 * When file is NULL, model.safetensors is tried and pytorch_model.bin only if that is a 404.
 * The file lands at dest_dir/<name>; *name_out (may be NULL) gets the name used (malloc'd). */
int fl_hf_download(fl_kaggle *k, const char *base, const char *repo, const char *file,
                   const char *dest_dir, const fl_dl_expect *expect, char **name_out,
                   fl_dl_result *res, fl_err *e);

/* ---------------------------------------------------------------- competition API */

typedef struct fl_kaggle_file {
    char *name;
    int64_t total_bytes;   /* -1 when absent */
    char *creation_date;   /* as sent, or NULL */
} fl_kaggle_file;

typedef struct fl_kaggle_files {
    fl_kaggle_file *v;
    size_t n;
} fl_kaggle_files;

/* ListDataFiles, following nextPageToken until the last page. */
int fl_kaggle_list_files(fl_kaggle *k, const char *competition, fl_kaggle_files *out, fl_err *e);
void fl_kaggle_files_free(fl_kaggle_files *f);

/* DownloadDataFiles (the whole competition as one zip) to dest. */
int fl_kaggle_download_all(fl_kaggle *k, const char *competition, const char *dest,
                           fl_dl_result *res, fl_err *e);
/* DownloadDataFile (one file) to dest. */
int fl_kaggle_download_file(fl_kaggle *k, const char *competition, const char *file_name,
                            const char *dest, fl_dl_result *res, fl_err *e);

/* A generic API call: POST {base}/v1/competitions.CompetitionApiService/<method> with the JSON
 * body (NULL: "{}"); *resp gets the parsed answer (caller deletes). */
int fl_kaggle_call(fl_kaggle *k, const char *method, const cJSON *body, cJSON **resp, fl_err *e);

/* The fetch stage's work: ListDataFiles (checks that each requested name exists, logs the total
 * size), then either DownloadDataFiles (files == NULL: the competition zip, work_dir/<slug>.zip)
 * or DownloadDataFile for each name (work_dir/files/<name>), then extraction into data_dir.
 * A zip is extracted (a single requested file that arrives zipped is unpacked next to where it
 * belongs); anything else is moved to data_dir/<name>. A truncated or corrupt archive is
 * downloaded again once; a second failure is an error. Downloads in work_dir resume/skip. */
int fl_kaggle_fetch(fl_kaggle *k, const char *competition, const char *const *files,
                    size_t nfiles, const char *work_dir, const char *data_dir, fl_err *e);

/* ---------------------------------------------------------------- submissions */

typedef struct fl_kaggle_submit_result {
    char ref[64];            /* submission ref as returned by CreateSubmission */
    char status[32];         /* COMPLETE or ERROR (PENDING only if polling was disabled) */
    char public_score[64];   /* "" when absent */
    char private_score[64];
    char message[512];       /* CreateSubmission's message, or the error description */
} fl_kaggle_submit_result;

/* Checks that path is a readable, non-empty CSV whose header is exactly "image,predictions"
 * (a trailing \r allowed) and that it has at least one data row. Errors name the file and line. */
int fl_kaggle_check_submission(const char *path, fl_err *e);

/* StartSubmissionUpload -> PUT createUrl (no credentials; 200/201) -> CreateSubmission -> poll
 * GetSubmission until COMPLETE or ERROR (a missing status means PENDING). An ERROR status is
 * reported in res (status "ERROR", message) and returns 0; transport/API failures return -1.
 * no_wait: return after CreateSubmission with status "PENDING". */
int fl_kaggle_submit(fl_kaggle *k, const char *competition, const char *path,
                     const char *description, int no_wait, fl_kaggle_submit_result *res,
                     fl_err *e);

/* What `fluke submit [CONFIG] [--dry-run] [-m MESSAGE]` runs: validates the file, and unless
 * dry_run, submits it and prints "public score: X" (and private when present) to out. */
int fl_kaggle_submit_cli(const fl_kaggle_opts *opts, const char *competition, const char *path,
                         const char *description, int dry_run, FILE *out, fl_err *e);

/* ---------------------------------------------------------------- archives */

typedef struct fl_extract_stats {
    uint64_t files;
    uint64_t dirs;
    uint64_t bytes;
} fl_extract_stats;

#define FL_EXTRACT_CORRUPT (-2)

/* Streams archive (zip, tar, ... as libarchive reads them) into dest_dir (created if needed).
 * Refuses, with an error naming the entry: absolute paths, ".." components, symlinks whose
 * target is absolute or contains "..", hard links to anything but an earlier regular file of
 * the archive, device files, fifos and sockets; never writes through a symlink. Files get mode
 * 0644 (0755 when executable) whatever the umask, so the tree's digest only depends on data.
 * Returns 0, -1 (refused / I/O error), or FL_EXTRACT_CORRUPT (truncated or corrupt archive: the
 * caller may download again). stats may be NULL. */
int fl_extract(const char *archive, const char *dest_dir, fl_extract_stats *stats, fl_err *e);

/* 1 when the file starts with a zip local-header signature "PK\3\4", 0 otherwise (or on error). */
int fl_is_zip(const char *path);

#endif
