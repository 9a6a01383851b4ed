/* The remote cache: a store's records and objects shared over the Bazel HTTP cache protocol.
 *
 *   GET/PUT/HEAD <base>/cas/<32 hex>   content: file objects (XXH3-128 of their bytes) and tree
 *                                      objects (their tree digest), exactly as in objects/, trees/
 *   GET/PUT/HEAD <base>/ac/<32 hex>    a stage key's entry (fl_remote_ac below)
 *
 * The path components are fluke's own 32-hex XXH3-128 digests and keys, not SHA-256: the server
 * must accept any lowercase hex name and must not re-hash what it stores. nginx with WebDAV
 * (`dav_methods PUT`) and plain HTTP object stores qualify; bazel-remote does not as such (its
 * /cas/ keys must be 64 hex, the SHA-256 of the body, and /ac/ bodies ActionResult protobufs
 * unless --disable_http_ac_validation).
 *
 * Push: every object and tree of a committed record goes to /cas/ (HEAD first, so what the
 * server has is never sent again: an interrupted push resumes object by object), then the entry
 * to /ac/<key>, last, so an entry never names content the server lacks. Pull: GET /ac/<key>,
 * HEAD every object not in the local store (one missing: a miss), GET the trees and objects
 * (a broken download resumes with a Range request; a partial object survives in work/<key>/ for
 * the next run), re-hash everything (the server is not trusted), rebuild the output directory
 * and commit it through fl_store_ingest + fl_store_record_put exactly as a local run would. A
 * server copy that failed verification is overwritten by the next push of content holding it
 * (the stage recomputed locally), so a damaged cache heals instead of missing forever.
 *
 * Failure policy: the remote only ever saves work. A network error, a timeout, a 5xx or any
 * unexpected status is logged once and turns the remote off for the rest of the handle's life
 * (the run continues locally); content that fails verification is a miss with a warning. Only
 * local store errors (disk full) are returned as errors. The bearer token is sent as
 * "Authorization: Bearer" and never appears in a message (nor does a URL's user:password). */
#ifndef FLUKE_REMOTE_H
#define FLUKE_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/store.h"

typedef struct fl_remote fl_remote;

typedef struct fl_remote_opts {
    const char *url;      /* http:// or https:// base, e.g. http://cache:8080/fluke */
    const char *token;    /* bearer token, or NULL */
    int readonly;         /* never PUT (CI) */
    double timeout_s;     /* connect timeout, and the longest a transfer may stall (0: 30) */
    uint64_t progress_min; /* transfers at least this large show progress (0: 8 MiB) */
    int progress_tty;      /* progress rewrites one line in place (a terminal) */
    /* Where warnings and progress go (one line each, no newline; in_place: a progress line to
     * rewrite). NULL: stderr. */
    void (*log)(void *arg, const char *line, int in_place);
    void *log_arg;
} fl_remote_opts;

typedef struct fl_remote_stats {
    uint64_t puts, put_bytes, heads, gets, get_bytes, skipped_present;
} fl_remote_stats;

/* Checks the URL (scheme http/https, a host, no query or fragment) and sets up libcurl. */
fl_remote *fl_remote_open(const fl_remote_opts *o, fl_err *e);
void fl_remote_close(fl_remote *r);
/* The base URL without any user:password, for messages. */
const char *fl_remote_display_url(const fl_remote *r);
/* 0 once a network failure turned the remote off. */
int fl_remote_usable(const fl_remote *r);
int fl_remote_readonly(const fl_remote *r);
const fl_remote_stats *fl_remote_get_stats(const fl_remote *r);

/* <base>/<kind>/<hex> (malloc'd); kind is "cas" or "ac". NULL when out of memory. */
char *fl_remote_url_for(const char *base, const char *kind, const fl_digest *d);

/* Uploads the locally committed record of key (label names the stage in messages). 0 when
 * pushed, skipped (read-only, off) or abandoned after a network failure (warned); -1 with e
 * only for a local problem (the record or its tree unreadable). */
int fl_remote_push(fl_remote *r, fl_store *s, const fl_digest *key, const char *label, fl_err *e);

enum { FL_REMOTE_MISS = 0, FL_REMOTE_HIT = 1 };
/* Fetches key's result: FL_REMOTE_HIT when the entry and all its content arrived, verified, and
 * the record is now committed in the local store (*tree filled); FL_REMOTE_MISS otherwise
 * (absent, incomplete or bad content: warned; the remote off: silent). -1 with e on a local
 * store error. The caller holds the key's lock. */
int fl_remote_pull(fl_remote *r, fl_store *s, const fl_digest *key, const char *label,
                   fl_digest *tree, fl_err *e);
/* Read-only look-up for `fluke status`: GET /ac/<key> and check the entry (not its content).
 * FL_REMOTE_HIT with *tree, or FL_REMOTE_MISS. */
int fl_remote_peek(fl_remote *r, const fl_digest *key, fl_digest *tree);

/* ------------------------------------------------------------------ the /ac/ entry format
 *
 *   "fluke-ac 1\n"
 *   "record <n>\n" <n bytes: the store's record file of the key (format 2, with its checksum)>
 *   "tree <32 hex> <size>\n"...   every tree object of the output, the root tree first
 *   "file <32 hex> <size>\n"...   every file object (each digest once)
 *   "end\n"
 * Sizes are decimal without leading zeros. Everything is checked again after download: trees
 * against their digests, files against theirs and their listed sizes. */
typedef struct fl_remote_item {
    fl_digest d;
    uint64_t size;
} fl_remote_item;

typedef struct fl_remote_ac {
    fl_digest key, tree;
    char *json;            /* the record's JSON (malloc'd, NUL-terminated) */
    fl_remote_item *trees; /* trees[0] is the root */
    size_t ntrees;
    fl_remote_item *files;
    size_t nfiles;
} fl_remote_ac;

#define FL_REMOTE_AC_MAX ((size_t)256 << 20)

/* Parses an entry; key != NULL also requires it to be that key's. what names the source in the
 * message ("bad /ac/ entry <what>: <why>"). */
int fl_remote_ac_parse(const char *buf, size_t len, const fl_digest *key, const char *what,
                       fl_remote_ac *ac, fl_err *e);
/* The encoding (malloc'd, *len bytes) of ac: canonical, so parse(encode(x)) == x. */
char *fl_remote_ac_encode(const fl_remote_ac *ac, size_t *len, fl_err *e);
void fl_remote_ac_free(fl_remote_ac *ac);

#endif
