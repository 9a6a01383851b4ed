/* Tree objects: the Merkle encoding of one directory.
 *
 *   "fluke-tree 1\n"  then, per entry sorted by name (bytewise):  "<m> <32 hex> <name>\0"
 *
 * m is 'f' (regular file), 'x' (executable file) or 'd' (directory, digest of its tree). Names
 * cannot contain '/' or NUL, so the NUL terminator makes the encoding unambiguous. The digest
 * hashes a "tree" type prefix before the encoding (see fl__tree_digest). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* XXH3_state_t's layout, for a stack state (the header matches the installed library). */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "artifacts/store_internal.h"

static const char TREE_MAGIC[] = "fluke-tree 1\n";
#define MAGIC_LEN (sizeof TREE_MAGIC - 1)
static const char TREE_PREFIX[] = "tree"; /* hashed with its NUL: 5 bytes */

int fl__tree_add(fl_tree *t, const char *name, char mode, const fl_digest *d, fl_err *e) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        fl_tree_entry *nv = realloc(t->v, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory building a tree");
        t->v = nv;
        t->cap = nc;
    }
    char *nm = strdup(name);
    if (!nm) return fl_errf(e, "out of memory building a tree");
    t->v[t->n].name = nm;
    t->v[t->n].mode = mode;
    t->v[t->n].d = *d;
    t->n++;
    return 0;
}

void fl__tree_free(fl_tree *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].name);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const fl_tree_entry *)a)->name, ((const fl_tree_entry *)b)->name);
}

int fl__tree_encode(fl_tree *t, char **buf, size_t *len, fl_err *e) {
    if (t->n) qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    size_t n = MAGIC_LEN;
    for (size_t i = 0; i < t->n; i++) n += 2 + 32 + 1 + strlen(t->v[i].name) + 1;
    char *b = malloc(n);
    if (!b) return fl_errf(e, "out of memory encoding a tree");
    char *p = b;
    memcpy(p, TREE_MAGIC, MAGIC_LEN);
    p += MAGIC_LEN;
    for (size_t i = 0; i < t->n; i++) {
        *p++ = t->v[i].mode;
        *p++ = ' ';
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&t->v[i].d, hex);
        memcpy(p, hex, 32);
        p += 32;
        *p++ = ' ';
        size_t l = strlen(t->v[i].name) + 1;
        memcpy(p, t->v[i].name, l);
        p += l;
    }
    *buf = b;
    *len = n;
    return 0;
}

void fl__tree_digest(const void *buf, size_t len, fl_digest *out) {
    XXH3_state_t st; /* on the stack: digesting a tree cannot fail */
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, TREE_PREFIX, sizeof TREE_PREFIX);
    XXH3_128bits_update(&st, buf, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
    memcpy(out->b, c.digest, sizeof out->b);
}

int fl__tree_compute(fl_tree *t, fl_digest *out, fl_err *e) {
    char *buf;
    size_t len;
    if (fl__tree_encode(t, &buf, &len, e) != 0) return -1;
    fl__tree_digest(buf, len, out);
    free(buf);
    return 0;
}

int fl__tree_parse(const char *buf, size_t len, fl_tree *t, const char *what, fl_err *e) {
    memset(t, 0, sizeof *t);
    if (len < MAGIC_LEN || memcmp(buf, TREE_MAGIC, MAGIC_LEN) != 0)
        return fl_errf(e, "%s: not a tree object (bad header)", what);
    size_t off = MAGIC_LEN;
    const char *prev = NULL;
    while (off < len) {
        if (len - off < 36) goto bad;
        char mode = buf[off];
        if ((mode != FL_MODE_FILE && mode != FL_MODE_EXEC && mode != FL_MODE_DIR) ||
            buf[off + 1] != ' ' || buf[off + 34] != ' ')
            goto bad;
        char hex[FL_DIGEST_HEX];
        memcpy(hex, buf + off + 2, 32);
        hex[32] = '\0';
        fl_digest d;
        if (!fl__is_hex32(hex) || fl_digest_from_hex(hex, &d) != 0) goto bad;
        const char *name = buf + off + 35;
        const char *end = memchr(name, '\0', len - (off + 35));
        if (!end || end == name || memchr(name, '/', (size_t)(end - name)) ||
            !strcmp(name, ".") || !strcmp(name, ".."))
            goto bad;
        if (prev && strcmp(prev, name) >= 0) goto bad; /* canonical: strictly sorted */
        if (fl__tree_add(t, name, mode, &d, e) != 0) {
            fl__tree_free(t);
            return -1;
        }
        prev = name;
        off = (size_t)(end - buf) + 1;
    }
    return 0;
bad:
    fl__tree_free(t);
    return fl_errf(e, "%s: malformed tree entry at byte %zu", what, off);
}

int fl__tree_present(fl_store *s, const char *path, const fl_digest *d, const char *buf,
                     size_t len, fl_err *e) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (S_ISREG(st.st_mode) && (size_t)st.st_size == len) {
        fl_err ignored;
        size_t got;
        char *old = fl__store_read(path, FL_TREE_MAX, &got, &ignored);
        int same = old && got == len && memcmp(old, buf, len) == 0;
        free(old);
        if (same) return 1;
    }
    /* A damaged tree (found before `verify` ran): set it aside, the caller writes it anew. */
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    return fl__quarantine(s, path, "tree-", hex, e) == 0 ? 0 : -1;
}

int fl__tree_store(fl_store *s, fl_tree *t, fl_digest *out, fl_err *e) {
    char *buf;
    size_t len;
    if (fl__tree_encode(t, &buf, &len, e) != 0) return -1;
    fl__tree_digest(buf, len, out);
    char *path = fl__shard_path(s, "trees", out);
    int rc = path ? fl__tree_present(s, path, out, buf, len, e) : fl_errf(e, "out of memory");
    if (rc == 0) rc = fl__store_put_file(s, path, buf, len, 0444, 0, "tree", NULL, e);
    free(path);
    free(buf);
    return rc < 0 ? -1 : 0;
}

int fl__tree_load(fl_store *s, const fl_digest *d, fl_tree *t, int *missing, fl_err *e) {
    memset(t, 0, sizeof *t);
    if (missing) *missing = 0;
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    char *path = fl__shard_path(s, "trees", d);
    if (!path) return fl_errf(e, "out of memory");
    struct stat st;
    if (lstat(path, &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
        free(path);
        if (missing) *missing = 1;
        return fl_errf(e, "missing tree %s", hex);
    }
    size_t len;
    fl_err rerr;
    char *buf = fl__store_read(path, FL_TREE_MAX, &len, &rerr);
    if (!buf) {
        free(path);
        if (strstr(rerr.msg, "out of memory")) return fl_errf(e, "%s", rerr.msg);
        return fl_errf(e, "corrupt tree %s: %s", hex, rerr.msg);
    }
    fl_digest got;
    fl__tree_digest(buf, len, &got);
    int rc;
    if (!fl_digest_eq(&got, d)) {
        char ghex[FL_DIGEST_HEX];
        fl_digest_hex(&got, ghex);
        rc = fl_errf(e, "corrupt tree %s: content hashes to %s", hex, ghex);
    } else {
        rc = fl__tree_parse(buf, len, t, path, e);
    }
    free(buf);
    free(path);
    return rc;
}
