/* The /ac/ entry of the remote cache (format in remote.h): the store's own record of the key,
 * then every tree and file object its output reaches, so a reader can check that the server
 * has them all (HEAD) before downloading anything. Parsing is strict and canonical: the bytes
 * come from an untrusted server. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/remote.h"
#include "artifacts/store_internal.h"

static const char AC_MAGIC[] = "fluke-ac 1\n";
#define AC_ML (sizeof AC_MAGIC - 1)

void fl_remote_ac_free(fl_remote_ac *ac) {
    free(ac->json);
    free(ac->trees);
    free(ac->files);
    memset(ac, 0, sizeof *ac);
}

/* Decimal without leading zeros (or "0"), below 2^63, then term. Advances *p. */
static int parse_u64(const char **p, const char *end, char term, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        if (*p - s >= 18) return -1; /* 18 digits < 2^63 */
        v = v * 10 + (uint64_t)(**p - '0');
        (*p)++;
    }
    if (*p == s || (*s == '0' && *p - s > 1) || *p >= end || **p != term) return -1;
    (*p)++;
    *out = v;
    return 0;
}

/* "<32 lowercase hex> " at p. */
static int hex_word(const char *p, const char *end, fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    if (end - p < 33 || p[32] != ' ') return -1;
    memcpy(hex, p, 32);
    hex[32] = '\0';
    return fl__is_hex32(hex) && fl_digest_from_hex(hex, d) == 0 ? 0 : -1;
}

static int add_item(fl_remote_item **v, size_t *n, size_t *cap, const fl_digest *d, uint64_t size) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        fl_remote_item *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[*n].d = *d;
    (*v)[*n].size = size;
    (*n)++;
    return 0;
}

int fl_remote_ac_parse(const char *buf, size_t len, const fl_digest *key, const char *what,
                       fl_remote_ac *ac, fl_err *e) {
    memset(ac, 0, sizeof *ac);
    const char *p = buf, *end = buf + len;
    if (len > FL_REMOTE_AC_MAX) return fl_errf(e, "bad /ac/ entry %s: larger than %zu bytes", what, FL_REMOTE_AC_MAX);
    if (len < AC_ML || memcmp(p, AC_MAGIC, AC_ML) != 0)
        return fl_errf(e, "bad /ac/ entry %s: not a fluke entry (bad header)", what);
    p += AC_ML;
    uint64_t rl;
    if (end - p < 7 || memcmp(p, "record ", 7) != 0)
        return fl_errf(e, "bad /ac/ entry %s: bad record line", what);
    p += 7;
    if (parse_u64(&p, end, '\n', &rl) != 0 || rl > (uint64_t)(end - p))
        return fl_errf(e, "bad /ac/ entry %s: bad record length", what);
    const char *json;
    size_t jl;
    fl_err re;
    char rwhat[256];
    snprintf(rwhat, sizeof rwhat, "in %s", what);
    if (fl__record_parse_key(p, (size_t)rl, rwhat, NULL, &ac->tree, &json, &jl, NULL, &re) != 0)
        return fl_errf(e, "bad /ac/ entry %s: %s", what, re.msg);
    /* The key line sits right after the record's 15-byte magic ("key <hex>\n"). */
    char khex[FL_DIGEST_HEX];
    memcpy(khex, p + 19, 32);
    khex[32] = '\0';
    if (fl_digest_from_hex(khex, &ac->key) != 0)
        return fl_errf(e, "bad /ac/ entry %s: bad record key", what);
    if (key && !fl_digest_eq(key, &ac->key))
        return fl_errf(e, "bad /ac/ entry %s: it is the entry of key %s", what, khex);
    if (memchr(json, '\0', jl)) return fl_errf(e, "bad /ac/ entry %s: the record's JSON holds a NUL byte", what);
    if (!(ac->json = malloc(jl + 1))) return fl_errf(e, "out of memory");
    memcpy(ac->json, json, jl);
    ac->json[jl] = '\0';
    p += rl;
    size_t tcap = 0, fcap = 0;
    int section = 0; /* 0: trees, 1: files */
    for (;;) {
        if (end - p == 4 && memcmp(p, "end\n", 4) == 0) break;
        int is_tree = end - p >= 5 && memcmp(p, "tree ", 5) == 0;
        int is_file = end - p >= 5 && memcmp(p, "file ", 5) == 0;
        if (!is_tree && !is_file) {
            fl_remote_ac_free(ac);
            return fl_errf(e, "bad /ac/ entry %s: expected a tree, file or end line at byte %zu", what,
                           (size_t)(p - buf));
        }
        if (is_tree && section == 1) {
            fl_remote_ac_free(ac);
            return fl_errf(e, "bad /ac/ entry %s: tree line after the file lines", what);
        }
        section = is_file;
        p += 5;
        fl_digest d;
        uint64_t size;
        if (hex_word(p, end, &d) != 0) {
            fl_remote_ac_free(ac);
            return fl_errf(e, "bad /ac/ entry %s: bad digest at byte %zu", what, (size_t)(p - buf));
        }
        p += 33;
        if (parse_u64(&p, end, '\n', &size) != 0) {
            fl_remote_ac_free(ac);
            return fl_errf(e, "bad /ac/ entry %s: bad size at byte %zu", what, (size_t)(p - buf));
        }
        int rc = is_tree ? add_item(&ac->trees, &ac->ntrees, &tcap, &d, size)
                         : add_item(&ac->files, &ac->nfiles, &fcap, &d, size);
        if (rc != 0) {
            fl_remote_ac_free(ac);
            return fl_errf(e, "out of memory");
        }
    }
    if (ac->ntrees == 0 || !fl_digest_eq(&ac->trees[0].d, &ac->tree)) {
        fl_remote_ac_free(ac);
        return fl_errf(e, "bad /ac/ entry %s: the first tree is not the record's output tree", what);
    }
    return 0;
}

char *fl_remote_ac_encode(const fl_remote_ac *ac, size_t *len, fl_err *e) {
    size_t rl;
    const char *json = ac->json ? ac->json : "";
    char *rec = fl__record_encode(&ac->key, &ac->tree, json, strlen(json), &rl);
    if (!rec) {
        fl_errf(e, "out of memory");
        return NULL;
    }
    size_t cap = AC_ML + 32 + rl + (ac->ntrees + ac->nfiles) * 64 + 8;
    char *buf = malloc(cap);
    if (!buf) {
        free(rec);
        fl_errf(e, "out of memory");
        return NULL;
    }
    size_t n = 0;
    memcpy(buf, AC_MAGIC, AC_ML);
    n += AC_ML;
    n += (size_t)snprintf(buf + n, cap - n, "record %zu\n", rl);
    memcpy(buf + n, rec, rl);
    n += rl;
    free(rec);
    char hex[FL_DIGEST_HEX];
    for (size_t i = 0; i < ac->ntrees; i++) {
        fl_digest_hex(&ac->trees[i].d, hex);
        n += (size_t)snprintf(buf + n, cap - n, "tree %s %" PRIu64 "\n", hex, ac->trees[i].size);
    }
    for (size_t i = 0; i < ac->nfiles; i++) {
        fl_digest_hex(&ac->files[i].d, hex);
        n += (size_t)snprintf(buf + n, cap - n, "file %s %" PRIu64 "\n", hex, ac->files[i].size);
    }
    memcpy(buf + n, "end\n", 4);
    n += 4;
    *len = n;
    return buf;
}

char *fl_remote_url_for(const char *base, const char *kind, const fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--; /* "http://h/cache/" and "http://h/cache" alike */
    return fl_strdupf("%.*s/%s/%s", (int)bl, base, kind, hex);
}
