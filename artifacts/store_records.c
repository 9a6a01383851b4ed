/* Cache records (stage key -> output tree + JSON) and refs (named small text files).
 *
 * A record file (format 2):
 *   "fluke-record 2\n" "key <32 hex>\n" "tree <32 hex>\n" "json <length> <32 hex sum>\n" <JSON>
 * The sum is XXH3-128 over every byte before the "json" line followed by the JSON, so a damaged
 * record is detected instead of silently misread, whichever line the damage hits: a tree line
 * naming another stage's tree, or a record copied to another key's path, fails the check.
 * Reading a record touches its mtime so gc can keep the most recently used ones under a size
 * cap. Format 1 (no key line, sum over the JSON only) was written by earlier versions; those
 * records cannot match any current cache key (keys include the code identity), so they are
 * refused as unreadable rather than trusted. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "artifacts/store_internal.h"

static const char RECORD_MAGIC[] = "fluke-record 2\n";
static const char RECORD_MAGIC_V1[] = "fluke-record 1\n";
#define ML (sizeof RECORD_MAGIC - 1)
#define HEAD_LEN (ML + 37 + 38) /* magic, "key <hex>\n", "tree <hex>\n" */

/* The sum: XXH3-128 of the header lines before "json", then the JSON. */
static void record_sum(const char *head, size_t hl, const char *json, size_t jl, fl_digest *out) {
    XXH3_state_t st; /* on the stack: cannot fail */
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, head, hl);
    XXH3_128bits_update(&st, json, jl);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
    memcpy(out->b, c.digest, sizeof out->b);
}

char *fl__record_encode(const fl_digest *key, const fl_digest *tree, const char *json, size_t jl,
                        size_t *len) {
    char khex[FL_DIGEST_HEX], thex[FL_DIGEST_HEX], shex[FL_DIGEST_HEX];
    fl_digest_hex(key, khex);
    fl_digest_hex(tree, thex);
    char head[HEAD_LEN + 1];
    snprintf(head, sizeof head, "%skey %s\ntree %s\n", RECORD_MAGIC, khex, thex);
    fl_digest sum;
    record_sum(head, HEAD_LEN, json, jl, &sum);
    fl_digest_hex(&sum, shex);
    char jline[80];
    int n = snprintf(jline, sizeof jline, "json %zu %s\n", jl, shex);
    size_t total = HEAD_LEN + (size_t)n + jl;
    char *buf = malloc(total ? total : 1);
    if (!buf) return NULL;
    memcpy(buf, head, HEAD_LEN);
    memcpy(buf + HEAD_LEN, jline, (size_t)n);
    if (jl) memcpy(buf + HEAD_LEN + n, json, jl);
    *len = total;
    return buf;
}

/* "<prefix><32 lowercase hex>\n" at p; fills d. */
static int hex_line(const char *p, const char *end, const char *prefix, fl_digest *d) {
    size_t pl = strlen(prefix);
    if ((size_t)(end - p) < pl + 33 || memcmp(p, prefix, pl) != 0 || p[pl + 32] != '\n') return -1;
    char hex[FL_DIGEST_HEX];
    memcpy(hex, p + pl, 32);
    hex[32] = '\0';
    return fl__is_hex32(hex) && fl_digest_from_hex(hex, d) == 0 ? 0 : -1;
}

int fl__record_parse_key(const char *buf, size_t len, const char *path, const fl_digest *key,
                         fl_digest *tree, const char **json, size_t *json_len, int *old_format,
                         fl_err *e) {
    if (old_format) *old_format = 0;
    if (len >= ML && memcmp(buf, RECORD_MAGIC_V1, ML) == 0) {
        if (old_format) *old_format = 1;
        return fl_errf(e, "corrupt record %s: format 1, written by an older fluke", path);
    }
    if (len < ML || memcmp(buf, RECORD_MAGIC, ML) != 0)
        return fl_errf(e, "corrupt record %s: bad header%s", path, len ? "" : " (empty file)");
    const char *p = buf + ML, *end = buf + len;
    fl_digest k, t;
    if (hex_line(p, end, "key ", &k) != 0)
        return fl_errf(e, "corrupt record %s: bad key line", path);
    p += 37;
    if (hex_line(p, end, "tree ", &t) != 0)
        return fl_errf(e, "corrupt record %s: bad tree line", path);
    p += 38;
    /* "json <decimal, no leading zero> <32 hex>\n", byte by byte: nothing may follow the sum. */
    if (end - p < 5 || memcmp(p, "json ", 5) != 0)
        return fl_errf(e, "corrupt record %s: bad json line", path);
    p += 5;
    uint64_t jl = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - digits >= 19) return fl_errf(e, "corrupt record %s: json length too large", path);
        jl = jl * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == digits || (*digits == '0' && p - digits > 1))
        return fl_errf(e, "corrupt record %s: bad json length", path);
    fl_digest want;
    if (hex_line(p, end, " ", &want) != 0)
        return fl_errf(e, "corrupt record %s: bad json line", path);
    p += 34;
    if ((uint64_t)(end - p) != jl)
        return fl_errf(e, "corrupt record %s: json is %zu bytes, header says %" PRIu64, path,
                       (size_t)(end - p), jl);
    fl_digest got;
    record_sum(buf, HEAD_LEN, p, (size_t)jl, &got);
    if (!fl_digest_eq(&want, &got)) return fl_errf(e, "corrupt record %s: checksum mismatch", path);
    if (key && !fl_digest_eq(key, &k)) {
        char khex[FL_DIGEST_HEX];
        fl_digest_hex(&k, khex);
        return fl_errf(e, "corrupt record %s: it is the record of key %s (misplaced)", path, khex);
    }
    *tree = t;
    *json = p;
    *json_len = (size_t)jl;
    return 0;
}

int fl__record_parse(const char *buf, size_t len, const char *path, fl_digest *tree,
                     const char **json, size_t *json_len, fl_err *e) {
    return fl__record_parse_key(buf, len, path, NULL, tree, json, json_len, NULL, e);
}

/* Reads and validates the record of key. Returns FL_RECORD_FOUND (tree, *json filled),
 * FL_RECORD_ABSENT, FL_RECORD_DAMAGED (why in e; *bad is the path to set aside, and *shard says
 * it is the place of the shard directory records/<xx>, not the record), or -1 on an error that
 * says nothing about the record (out of memory, permission denied). */
static int record_read(fl_store *s, const fl_digest *key, fl_digest *tree, char **json, int touch,
                       char **bad, int *shard, fl_err *e) {
    *bad = NULL;
    *shard = 0;
    char *path = fl__shard_path(s, "records", key);
    if (!path) return fl_errf(e, "out of memory");
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(key, hex);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        int err = errno;
        struct stat st;
        if (err == ENOENT) {
            free(path);
            return FL_RECORD_ABSENT;
        }
        if (err == ENOTDIR) { /* records/<xx> is not a directory */
            char *slash = strrchr(path, '/');
            *slash = '\0';
            if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
                fl_errf(e, "%s is %s, not a directory", path, fl_file_kind(st.st_mode));
                *bad = path;
                *shard = 1;
                return FL_RECORD_DAMAGED;
            }
            free(path);
            return FL_RECORD_ABSENT;
        }
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            fl_errf(e, "corrupt record %s: %s, not a regular file", path, fl_file_kind(st.st_mode));
            *bad = path;
            return FL_RECORD_DAMAGED;
        }
        fl_errf(e, "cannot open record %s: %s", path, strerror(err));
        free(path);
        return -1;
    }
    size_t len;
    fl_err rerr;
    char *buf = fl_read_fd_max(fd, path, &len, FL_RECORD_MAX, &rerr);
    if (!buf) {
        close(fd);
        if (strstr(rerr.msg, "out of memory")) {
            free(path);
            memcpy(e->msg, rerr.msg, sizeof e->msg);
            return -1;
        }
        fl_errf(e, "corrupt record %s", rerr.msg); /* "cannot read <path>: <why>" */
        *bad = path;
        return FL_RECORD_DAMAGED;
    }
    fl_digest t;
    const char *j;
    size_t jl;
    if (fl__record_parse_key(buf, len, path, key, &t, &j, &jl, NULL, e) != 0) {
        free(buf);
        close(fd);
        *bad = path;
        return FL_RECORD_DAMAGED;
    }
    int rc = FL_RECORD_FOUND;
    if (tree) *tree = t;
    if (json) {
        *json = malloc(jl + 1);
        if (!*json)
            rc = fl_errf(e, "out of memory");
        else {
            memcpy(*json, j, jl);
            (*json)[jl] = '\0';
        }
    }
    /* Recency for gc's size cap; failing to touch only loses that hint. */
    if (rc == FL_RECORD_FOUND && touch) futimens(fd, NULL);
    free(buf);
    close(fd);
    free(path);
    return rc;
}

int fl_store_record_get(fl_store *s, const fl_digest *key, fl_digest *tree, char **json,
                        fl_err *e) {
    if (json) *json = NULL;
    char *bad;
    int shard;
    int rc = record_read(s, key, tree, json, 1, &bad, &shard, e);
    if (rc != FL_RECORD_DAMAGED) return rc;
    /* Damaged on disk (the atomic write rules out a torn one): set it aside so the stage
     * recomputes, and keep the reason in e for the caller to report. */
    char hex[FL_DIGEST_HEX], msg[FL_ERRLEN];
    fl_digest_hex(key, hex);
    memcpy(msg, e->msg, sizeof msg);
    char sh[3] = {hex[0], hex[1], '\0'};
    int q = shard ? fl__quarantine(s, bad, "records-shard-", sh, e)
                  : fl__quarantine(s, bad, "record-", hex, e);
    free(bad);
    if (q != 0) return fl_errprefix(e, "%s; setting it aside", msg);
    snprintf(e->msg, sizeof e->msg, "%.*s (moved to quarantine/)", (int)(sizeof e->msg - 30), msg);
    return FL_RECORD_DAMAGED;
}

int fl_store_record_peek(fl_store *s, const fl_digest *key, fl_digest *tree, char **json,
                         fl_err *e) {
    if (json) *json = NULL;
    char *bad;
    int shard;
    int rc = record_read(s, key, tree, json, 0, &bad, &shard, e);
    free(bad);
    return rc;
}

int fl_store_record_put(fl_store *s, const fl_digest *key, const fl_digest *tree,
                        const char *json, fl_err *e) {
    char khex[FL_DIGEST_HEX], thex[FL_DIGEST_HEX];
    fl_digest_hex(key, khex);
    fl_digest_hex(tree, thex);
    /* The record is the commit point: it may only name a tree that is already stored. */
    char *tpath = fl__shard_path(s, "trees", tree);
    struct stat st;
    if (!tpath) return fl_errf(e, "out of memory");
    int have = lstat(tpath, &st) == 0 && S_ISREG(st.st_mode);
    free(tpath);
    if (!have) return fl_errf(e, "cannot write record %s: its tree %s is not in the store", khex, thex);
    if (!json) json = "";
    size_t len;
    char *buf = fl__record_encode(key, tree, json, strlen(json), &len);
    char *path = fl__shard_path(s, "records", key);
    int rc;
    if (!buf || !path) rc = fl_errf(e, "out of memory");
    else
        rc = fl__store_put_file(s, path, buf, len, 0444, 0, "record", NULL, e);
    free(buf);
    free(path);
    return rc;
}

int fl_store_record_drop(fl_store *s, const fl_digest *key, fl_err *e) {
    char *path = fl__shard_path(s, "records", key);
    if (!path) return fl_errf(e, "out of memory");
    int rc = 0;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* damage, not a record: remove it all */
        if ((rc = fl_remove_tree(path, e)) == 0) rc = fl_fsync_parent(path, e);
    } else if (unlink(path) == 0) {
        rc = fl_fsync_parent(path, e);
    } else if (errno != ENOENT && errno != ENOTDIR) {
        rc = fl_errf(e, "cannot remove record %s: %s", path, strerror(errno));
    }
    free(path);
    return rc;
}

int fl_store_ref_set(fl_store *s, const char *name, const char *text, fl_err *e) {
    if (fl__check_name("ref", name, e) != 0) return -1;
    char *path = fl_strdupf("%s/refs/%s", s->root, name);
    if (!path) return fl_errf(e, "out of memory");
    if (!text) text = "";
    int rc = fl__store_put_file(s, path, text, strlen(text), 0644, 0, "ref", NULL, e);
    free(path);
    return rc;
}

char *fl_store_ref_get(fl_store *s, const char *name, fl_err *e) {
    if (e) e->msg[0] = '\0';
    if (fl__check_name("ref", name, e) != 0) return NULL;
    char *path = fl_strdupf("%s/refs/%s", s->root, name);
    if (!path) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            fl_errf(e, "cannot read ref %s: %s", name, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        fl_errf(e, "damaged ref %s: %s is %s, not a file", name, path, fl_file_kind(st.st_mode));
    } else {
        text = fl__store_read(path, FL_REF_MAX, NULL, e);
        if (!text) fl_errprefix(e, "damaged ref %s", name);
    }
    free(path);
    return text;
}
