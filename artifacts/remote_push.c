/* Remote cache, upload side: a committed record's content to /cas/ (what the server lacks,
 * streamed from the store's files), then its /ac/ entry. Also the walk that lists a record's
 * trees and objects, which the entry carries. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/remote_internal.h"
#include "artifacts/store_internal.h"

typedef struct walk {
    fl_store *s;
    fl_remote_ac *ac;
    size_t tcap, fcap;
    fl_dset seen_trees, seen_files;
} walk;

static int push_item(fl_remote_item **v, size_t *n, size_t *cap, const fl_digest *d, uint64_t size,
                     fl_err *e) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        fl_remote_item *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return fl_errf(e, "out of memory");
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (fl_remote_item){*d, size};
    return 0;
}

static int file_size(fl_store *s, const char *kind, const fl_digest *d, uint64_t *size, fl_err *e) {
    char *p = fl__shard_path(s, kind, d);
    if (!p) return fl_errf(e, "out of memory");
    struct stat st;
    int rc = 0;
    if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
        rc = fl_errf(e, "%s is missing or not a regular file", p);
    else
        *size = (uint64_t)st.st_size;
    free(p);
    return rc;
}

static int walk_tree(walk *w, const fl_digest *d, int depth, fl_err *e) {
    if (depth > FL_MAX_TREE_DEPTH) return fl_errf(e, "trees nested deeper than %d", FL_MAX_TREE_DEPTH);
    int *seen = fl__dset_get(&w->seen_trees, d, 1);
    if (!seen) return fl_errf(e, "out of memory");
    if (*seen) return 0;
    *seen = 1;
    uint64_t size;
    fl_tree t;
    if (file_size(w->s, "trees", d, &size, e) || fl__tree_load(w->s, d, &t, NULL, e)) return -1;
    int rc = push_item(&w->ac->trees, &w->ac->ntrees, &w->tcap, d, size, e);
    for (size_t i = 0; i < t.n && rc == 0; i++) {
        if (t.v[i].mode == FL_MODE_DIR) {
            rc = walk_tree(w, &t.v[i].d, depth + 1, e);
            continue;
        }
        int *f = fl__dset_get(&w->seen_files, &t.v[i].d, 1);
        if (!f) rc = fl_errf(e, "out of memory");
        else if (!*f) {
            *f = 1;
            rc = file_size(w->s, "objects", &t.v[i].d, &size, e);
            if (rc == 0) rc = push_item(&w->ac->files, &w->ac->nfiles, &w->fcap, &t.v[i].d, size, e);
        }
    }
    fl__tree_free(&t);
    return rc;
}

/* The entry of key from the local store: its record, every tree (root first) and object. */
static int local_entry(fl_store *s, const fl_digest *key, fl_remote_ac *ac, fl_err *e) {
    memset(ac, 0, sizeof *ac);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(key, hex);
    int rc = fl_store_record_peek(s, key, &ac->tree, &ac->json, e);
    if (rc != FL_RECORD_FOUND)
        return rc < 0 ? -1 : fl_errf(e, "no usable local record of key %s to upload", hex);
    ac->key = *key;
    walk w = {.s = s, .ac = ac};
    rc = walk_tree(&w, &ac->tree, 0, e);
    fl__dset_free(&w.seen_trees);
    fl__dset_free(&w.seen_files);
    if (rc) {
        fl_errprefix(e, "reading the output of key %s for upload", hex);
        fl_remote_ac_free(ac);
    }
    return rc;
}

/* 1 when the server holds /cas/<d> with the right size, 0 when not, -1 on a network failure
 * (warned, remote off). */
static int has_cas(fl_remote *r, const fl_digest *d, uint64_t size) {
    char *url = fl_remote_url_for(r->url, "cas", d);
    if (!url) return -1;
    fl_xfer x;
    fl__rm_xfer_init(&x, "HEAD", url);
    fl_xres res;
    int rc = fl__rm_perform(r, &x, &res);
    free(url);
    if (rc == 0 && res.status == 200) return res.content_length < 0 || (uint64_t)res.content_length == size;
    if (rc == 0 && res.status == 404) return 0;
    fl__rm_fail(r, "HEAD /cas/", &res);
    return -1;
}

static int put(fl_remote *r, const char *kind, const fl_digest *d, int fd, const char *buf,
               uint64_t len, const char *label) {
    char *url = fl_remote_url_for(r->url, kind, d);
    if (!url) return -1;
    char hex[FL_DIGEST_HEX], lab[256];
    fl_digest_hex(d, hex);
    snprintf(lab, sizeof lab, "put %s %.12s", label, hex);
    fl_xfer x;
    fl__rm_xfer_init(&x, "PUT", url);
    x.in_fd = fd;
    x.in_buf = buf;
    x.in_len = len;
    x.total = len;
    if (len >= r->progress_min) x.label = lab;
    fl_xres res;
    int rc = fl__rm_perform(r, &x, &res);
    free(url);
    if (rc == 0 && res.status >= 200 && res.status < 300) return 0;
    char what[64];
    snprintf(what, sizeof what, "PUT /%s/", kind);
    fl__rm_fail(r, what, &res);
    return -1;
}

/* Uploads one store file (objects/ or trees/) unless the server has it. */
static int push_file(fl_remote *r, fl_store *s, const char *kind, const fl_remote_item *it,
                     const char *label, fl_err *e) {
    int have = fl__dset_get(&r->bad, &it->d, 0) ? 0 : has_cas(r, &it->d, it->size);
    if (have < 0) return 1;
    if (have) {
        r->st.skipped_present++;
        return 0;
    }
    char *p = fl__shard_path(s, kind, &it->d);
    if (!p) return fl_errf(e, "out of memory");
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fl_errf(e, "cannot open %s for upload: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    free(p);
    int rc = put(r, "cas", &it->d, fd, NULL, it->size, label);
    close(fd);
    return rc < 0 ? 1 : 0;
}

int fl_remote_push(fl_remote *r, fl_store *s, const fl_digest *key, const char *label, fl_err *e) {
    if (r->off || r->readonly) return 0;
    fl_remote_ac ac;
    if (local_entry(s, key, &ac, e)) return -1;
    int rc = 0;
    /* Content first, the entry last: a reader never finds an entry whose content is not there. */
    for (size_t i = 0; i < ac.nfiles && rc == 0; i++) rc = push_file(r, s, "objects", &ac.files[i], label, e);
    for (size_t i = ac.ntrees; i-- > 0 && rc == 0;) rc = push_file(r, s, "trees", &ac.trees[i], label, e);
    if (rc == 0) {
        size_t len;
        char *buf = fl_remote_ac_encode(&ac, &len, e);
        if (!buf) rc = -1;
        else if (put(r, "ac", key, -1, buf, len, label) != 0) rc = 1;
        free(buf);
    }
    fl_remote_ac_free(&ac);
    return rc < 0 ? -1 : 0; /* 1: a network failure, already warned */
}
