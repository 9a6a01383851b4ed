/* Cache records (stage key -> output tree + JSON) and refs (named small text files).
 *
 * A record file:
 *   "fluke-record 1\n" "tree <32 hex>\n" "json <length> <32 hex XXH3-128 of the JSON>\n" <JSON>
 * The length and checksum make a damaged record detectable instead of silently misread. Reading
 * a record touches its mtime so gc can keep the most recently used ones under a size cap. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

static const char RECORD_MAGIC[] = "fluke-record 1\n";

int fl__record_parse(const char *buf, size_t len, const char *path, fl_digest *tree,
                     const char **json, size_t *json_len, fl_err *e) {
    size_t ml = sizeof RECORD_MAGIC - 1;
    if (len < ml || memcmp(buf, RECORD_MAGIC, ml) != 0)
        return fl_errf(e, "corrupt record %s: bad header", path);
    const char *p = buf + ml, *end = buf + len;
    char hex[FL_DIGEST_HEX];
    if (end - p < 38 || memcmp(p, "tree ", 5) != 0 || p[37] != '\n')
        return fl_errf(e, "corrupt record %s: bad tree line", path);
    memcpy(hex, p + 5, 32);
    hex[32] = '\0';
    if (!fl__is_hex32(hex) || fl_digest_from_hex(hex, tree) != 0)
        return fl_errf(e, "corrupt record %s: bad tree digest", path);
    p += 38;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || end - p < 5 || memcmp(p, "json ", 5) != 0)
        return fl_errf(e, "corrupt record %s: bad json line", path);
    char line[128];
    size_t ll = (size_t)(nl - p);
    if (ll >= sizeof line) return fl_errf(e, "corrupt record %s: bad json line", path);
    memcpy(line, p, ll);
    line[ll] = '\0';
    uint64_t jl;
    char sum[64];
    char canon[128];
    if (sscanf(line, "json %" SCNu64 " %63s", &jl, sum) != 2 || !fl__is_hex32(sum) ||
        (snprintf(canon, sizeof canon, "json %" PRIu64 " %s", jl, sum), strcmp(canon, line) != 0))
        return fl_errf(e, "corrupt record %s: bad json line", path);
    p = nl + 1;
    if ((uint64_t)(end - p) != jl)
        return fl_errf(e, "corrupt record %s: json is %zu bytes, header says %" PRIu64, path,
                       (size_t)(end - p), jl);
    fl_digest want, got;
    fl_digest_from_hex(sum, &want);
    fl__hash_buf(p, (size_t)jl, &got);
    if (!fl_digest_eq(&want, &got)) return fl_errf(e, "corrupt record %s: json checksum mismatch", path);
    *json = p;
    *json_len = (size_t)jl;
    return 0;
}

int fl_store_record_get(fl_store *s, const fl_digest *key, fl_digest *tree, char **json,
                        fl_err *e) {
    if (json) *json = NULL;
    char *path = fl__shard_path(s, "records", key);
    if (!path) return fl_errf(e, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0) {
        int err = errno;
        free(path);
        if (err == ENOENT || err == ENOTDIR) return 0;
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(key, hex);
        return fl_errf(e, "cannot stat record %s: %s", hex, strerror(err));
    }
    size_t len;
    char *buf = fl_read_file(path, &len, e);
    if (!buf) {
        free(path);
        return -1;
    }
    fl_digest t;
    const char *j;
    size_t jl;
    int rc = fl__record_parse(buf, len, path, &t, &j, &jl, e), damaged = rc != 0;
    if (rc == 0) {
        if (tree) *tree = t;
        if (json) {
            *json = malloc(jl + 1);
            if (!*json) rc = fl_errf(e, "out of memory");
            else {
                memcpy(*json, j, jl);
                (*json)[jl] = '\0';
            }
        }
        /* Recency for gc's size cap; failing to touch only loses that hint. */
        utimensat(AT_FDCWD, path, NULL, 0);
    }
    free(buf);
    if (damaged) {
        /* Damaged on disk (the atomic write rules out a torn one): set it aside so the stage
         * recomputes, and keep the message in e for a caller that wants to mention it. */
        char hex[FL_DIGEST_HEX], msg[FL_ERRLEN];
        fl_digest_hex(key, hex);
        memcpy(msg, e->msg, sizeof msg);
        rc = fl__quarantine(s, path, "record-", hex, e);
        if (rc == 0) {
            memcpy(e->msg, msg, sizeof msg);
            fl_errprefix(e, "moved to quarantine");
        }
        free(path);
        return rc == 0 ? 0 : -1;
    }
    free(path);
    return rc == 0 ? 1 : -1;
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
    int have = stat(tpath, &st) == 0;
    free(tpath);
    if (!have) return fl_errf(e, "cannot write record %s: its tree %s is not in the store", khex, thex);
    if (!json) json = "";
    size_t jl = strlen(json);
    fl_digest sum;
    fl__hash_buf(json, jl, &sum);
    char shex[FL_DIGEST_HEX];
    fl_digest_hex(&sum, shex);
    char *head = fl_strdupf("%stree %s\njson %zu %s\n", RECORD_MAGIC, thex, jl, shex);
    if (!head) return fl_errf(e, "out of memory");
    size_t hl = strlen(head);
    char *buf = malloc(hl + jl);
    char *path = fl__shard_path(s, "records", key);
    int rc;
    if (!buf || !path) rc = fl_errf(e, "out of memory");
    else {
        memcpy(buf, head, hl);
        memcpy(buf + hl, json, jl);
        rc = fl__store_put_file(s, path, buf, hl + jl, 0444, 0, "record", NULL, e);
    }
    free(head);
    free(buf);
    free(path);
    return rc;
}

int fl_store_record_drop(fl_store *s, const fl_digest *key, fl_err *e) {
    char *path = fl__shard_path(s, "records", key);
    if (!path) return fl_errf(e, "out of memory");
    int rc = 0;
    if (unlink(path) == 0) rc = fl_fsync_parent(path, e);
    else if (errno != ENOENT && errno != ENOTDIR)
        rc = fl_errf(e, "cannot remove record %s: %s", path, strerror(errno));
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
    if (stat(path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            fl_errf(e, "cannot read ref %s: %s", name, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        fl_errf(e, "cannot read ref %s: %s is not a file", name, path);
    } else {
        text = fl_read_file(path, NULL, e);
    }
    free(path);
    return text;
}
