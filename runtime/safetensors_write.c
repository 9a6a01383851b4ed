/* safetensors writing: the JSON header is written by hand (offsets always plain integers) and
 * space-padded to a multiple of 8 so the data starts aligned; files are streamed to a temporary
 * name and atomically replace the target (fsync, rename, fsync of the directory). */
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt_u64(sbuf *b, unsigned long long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%llu", v);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string literal: quotes, backslashes and control characters escaped; other bytes
 * (UTF-8) as they are. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char esc[8];
        if (*q == '"' || *q == '\\') {
            esc[0] = '\\', esc[1] = (char)*q;
            sb_put(b, esc, 2);
        } else if (*q < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *q);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)q, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names non-empty, unique and not the metadata key; shapes sane. Sizes go to bytes[i]. */
static int check_entries(const fl_st_entry *v, size_t n, size_t *bytes, fl_err *e) {
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return fl_errf(e, "safetensors write: out of memory");
    for (size_t i = 0; i < n; i++) {
        const fl_st_entry *t = &v[i];
        const char *nm = t->name ? t->name : "";
        if (!nm[0] || strcmp(nm, "__metadata__") == 0) {
            free(names);
            return fl_errf(e, "safetensors write: entry %zu has an invalid name '%s'", i, nm);
        }
        if ((unsigned)t->dtype >= FL_ST_NDTYPES || t->ndim < 0 || t->ndim > FL_MAX_DIMS ||
            (t->ndim && !t->shape)) {
            free(names);
            return fl_errf(e, "safetensors write: tensor '%s': bad dtype or rank", nm);
        }
        size_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0) {
                free(names);
                return fl_errf(e, "safetensors write: tensor '%s': negative shape[%d]", nm, k);
            }
            numel *= (size_t)t->shape[k];
        }
        bytes[i] = numel * fl_st_dtype_size(t->dtype);
        if (bytes[i] && !t->data) {
            free(names);
            return fl_errf(e, "safetensors write: tensor '%s': no data", nm);
        }
        names[i] = nm;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i], names[i - 1]) == 0) {
            int rc = fl_errf(e, "safetensors write: tensor '%s' given twice", names[i]);
            free(names);
            return rc;
        }
    free(names);
    return 0;
}

/* The 8-byte length + padded JSON header for entries; *data_len gets the data size. Sizes of
 * the entries go to bytes[]. Returns a malloc'd buffer (length in *hlen) or NULL. */
static char *build_header(const fl_st_entry *v, size_t n, const fl_st_kv *meta, size_t nmeta,
                          size_t *bytes, size_t *hlen, size_t *data_len, fl_err *e) {
    if (check_entries(v, n, bytes, e) < 0) return NULL;
    sbuf h = {0};
    sb_put(&h, "\0\0\0\0\0\0\0\0", 8); /* the length, filled in below */
    sb_str(&h, "{");
    int first = 1;
    if (nmeta) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < nmeta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, meta[i].key ? meta[i].key : "");
            sb_str(&h, ":");
            sb_json_str(&h, meta[i].val ? meta[i].val : "");
        }
        sb_str(&h, "}");
        first = 0;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_str(&h, v[i].name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, fl_st_dtype_name(v[i].dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int k = 0; k < v[i].ndim; k++) {
            if (k) sb_str(&h, ",");
            sb_fmt_u64(&h, (unsigned long long)v[i].shape[k]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_fmt_u64(&h, (unsigned long long)off);
        sb_str(&h, ",");
        off += bytes[i];
        sb_fmt_u64(&h, (unsigned long long)off);
        sb_str(&h, "]}");
    }
    sb_str(&h, "}");
    while (!h.oom && h.n % 8) sb_str(&h, " ");
    if (h.oom || h.n - 8 > FL_ST_MAX_HEADER) {
        free(h.p);
        fl_errf(e, "safetensors write: header too large or out of memory");
        return NULL;
    }
    uint64_t hn = h.n - 8;
    for (int i = 0; i < 8; i++) h.p[i] = (char)(unsigned char)(hn >> (8 * i));
    *hlen = h.n;
    *data_len = off;
    return h.p;
}

unsigned char *fl_st_serialize(const fl_st_entry *v, size_t n, const fl_st_kv *meta, size_t nmeta,
                               size_t *len, fl_err *e) {
    size_t *bytes = malloc((n ? n : 1) * sizeof *bytes), hlen = 0, dlen = 0;
    if (!bytes) return fl_errf(e, "safetensors write: out of memory"), NULL;
    char *h = build_header(v, n, meta, nmeta, bytes, &hlen, &dlen, e);
    unsigned char *img = h ? malloc(hlen + dlen) : NULL;
    if (h && !img) fl_errf(e, "safetensors write: out of memory for %zu bytes", hlen + dlen);
    if (img) {
        memcpy(img, h, hlen);
        size_t pos = hlen;
        for (size_t i = 0; i < n; i++) {
            if (bytes[i]) memcpy(img + pos, v[i].data, bytes[i]);
            pos += bytes[i];
        }
        *len = hlen + dlen;
    }
    free(h), free(bytes);
    return img;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, len -= (size_t)w;
    }
    return 0;
}

/* Streams header and tensors into a temporary file beside path (no second copy of a large
 * model in memory), then fsync, rename over path and fsync the directory. */
int fl_st_write(const char *path, const fl_st_entry *v, size_t n, const fl_st_kv *meta,
                size_t nmeta, fl_err *e) {
    size_t *bytes = malloc((n ? n : 1) * sizeof *bytes), hlen = 0, dlen = 0;
    if (!bytes) return fl_errf(e, "%s: out of memory", path);
    char *h = build_header(v, n, meta, nmeta, bytes, &hlen, &dlen, e);
    if (!h) {
        free(bytes);
        return fl_errprefix(e, "%s", path);
    }
    char *tmp = fl_strdupf("%s.tmp.%ld", path, (long)getpid());
    int fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    int rc = 0;
    if (fd < 0) {
        rc = fl_errf(e, "cannot create %s: %s", tmp ? tmp : path, strerror(errno));
    } else {
        int bad = write_all(fd, h, hlen);
        for (size_t i = 0; i < n && !bad; i++)
            if (bytes[i]) bad = write_all(fd, v[i].data, bytes[i]);
        if (bad || fsync(fd) != 0) rc = fl_errf(e, "cannot write %s: %s", path, strerror(errno));
        if (close(fd) != 0 && !rc) rc = fl_errf(e, "cannot write %s: %s", path, strerror(errno));
        if (!rc && rename(tmp, path) != 0)
            rc = fl_errf(e, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (rc) unlink(tmp);
        else rc = fl_fsync_parent(path, e);
    }
    free(tmp), free(h), free(bytes);
    return rc;
}

int fl_st_write_params(const char *path, const fl_param_list *pl, const fl_st_kv *meta,
                       size_t nmeta, fl_err *e) {
    fl_st_entry *v = calloc(pl->n ? pl->n : 1, sizeof *v);
    if (!v) return fl_errf(e, "%s: out of memory", path);
    for (size_t i = 0; i < pl->n; i++) {
        const fl_param *p = &pl->v[i];
        size_t numel = 1;
        for (int k = 0; k < p->ndim && k < FL_MAX_DIMS; k++) numel *= (size_t)p->shape[k];
        if (numel != p->numel || p->ndim < 0 || p->ndim > FL_MAX_DIMS) {
            free(v);
            return fl_errf(e, "%s: parameter '%s' has %zu elements but its shape holds %zu", path,
                           p->name ? p->name : "?", p->numel, numel);
        }
        v[i] = (fl_st_entry){p->name, FL_ST_F32, p->ndim, p->shape, p->data};
    }
    int rc = fl_st_write(path, v, pl->n, meta, nmeta, e);
    free(v);
    return rc;
}
