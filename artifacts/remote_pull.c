/* Remote cache, download side: an /ac/ entry, a HEAD for every object the local store lacks,
 * then the trees and objects, each re-hashed as it arrives, rebuilt as the stage's output
 * directory in a staging folder and committed through fl_store_ingest and
 * fl_store_record_put: the same code, and the same crash safety, as a local run's commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/remote_internal.h"
#include "artifacts/store_internal.h"

/* What went wrong with an entry: a plain miss, or the run goes on without the remote. */
enum { V_OK = 0, V_MISS, V_BAD, V_NET, V_LOCAL };

/* Resume attempts after a connection drops in the middle of an object. */
#define RESUMES 3

typedef struct pull {
    fl_remote *r;
    fl_store *s;
    const char *label;
    fl_remote_ac ac;
    fl_dset files;      /* digest -> index + 1 into ac.files */
    fl_dset trees;      /* digest -> index + 1 into ac.trees */
    char **placed;      /* per file: the staging path it was first placed at (malloc'd) */
    char *work;         /* work/<key>/: partial downloads survive a killed run */
    char why[FL_ERRLEN]; /* V_MISS / V_BAD: the warning */
    fl_err *e;          /* V_LOCAL */
} pull;

static int miss(pull *p, int v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int miss(pull *p, int v, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    return v;
}

/* A local error (the run fails with it): returns V_LOCAL. */
static int lerr(pull *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lerr(pull *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->e->msg, sizeof p->e->msg, fmt, ap);
    va_end(ap);
    return V_LOCAL;
}
/* The server's copy of d is bad: the next push of a result holding d replaces it (a HEAD would
 * call it present). Out of memory only loses that repair. */
static void mark_bad(pull *p, const fl_digest *d) {
    int *v = fl__dset_get(&p->r->bad, d, 1);
    if (v) *v = 1;
}

/* 1 when kind/<d> is in the local store as a regular file (of size when size != UINT64_MAX). */
static int have_local(pull *p, const char *kind, const fl_digest *d, uint64_t size) {
    char *path = fl__shard_path(p->s, kind, d);
    struct stat st;
    int ok = path && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
             (size == UINT64_MAX || (uint64_t)st.st_size == size);
    free(path);
    return ok;
}

/* Everything the entry names is in the local store or on the server. */
static int check_present(pull *p) {
    for (size_t i = 0; i < p->ac.nfiles + p->ac.ntrees; i++) {
        int file = i < p->ac.nfiles;
        const fl_remote_item *it = file ? &p->ac.files[i] : &p->ac.trees[i - p->ac.nfiles];
        if (have_local(p, file ? "objects" : "trees", &it->d, file ? it->size : UINT64_MAX)) continue;
        char *url = fl_remote_url_for(p->r->url, "cas", &it->d);
        if (!url) return lerr(p, "out of memory");
        fl_xfer x;
        fl__rm_xfer_init(&x, "HEAD", url);
        fl_xres res;
        int rc = fl__rm_perform(p->r, &x, &res);
        free(url);
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&it->d, hex);
        if (rc == 0 && res.status == 404)
            return miss(p, V_MISS, "its %s %s is not on the server", file ? "object" : "tree", hex);
        if (rc != 0 || res.status != 200) {
            fl__rm_fail(p->r, "HEAD /cas/", &res);
            return V_NET;
        }
    }
    return V_OK;
}

/* A tree object: from the local store, or downloaded (at most its listed size) and checked. */
static int get_tree(pull *p, const fl_remote_item *it, fl_tree *t) {
    fl_err le;
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&it->d, hex);
    if (have_local(p, "trees", &it->d, UINT64_MAX) && fl__tree_load(p->s, &it->d, t, NULL, &le) == 0)
        return V_OK;
    char *url = fl_remote_url_for(p->r->url, "cas", &it->d), *buf = NULL;
    if (!url) return lerr(p, "out of memory");
    size_t len = 0;
    fl_xfer x;
    fl__rm_xfer_init(&x, "GET", url);
    x.mem = &buf;
    x.mem_len = &len;
    x.mem_max = it->size < FL_TREE_MAX ? (size_t)it->size : FL_TREE_MAX;
    fl_xres res;
    int rc;
    for (int attempt = 0;; attempt++) { /* small: a dropped answer is simply asked again */
        rc = fl__rm_perform(p->r, &x, &res);
        if (!(rc != 0 && res.transport && attempt < RESUMES)) break;
        fl__rm_log(p->r, "[fluke] remote get %s tree %.12s: connection lost (%s); asking again",
                   p->label, hex, res.why);
    }
    free(url);
    len = (size_t)res.body;
    int v = V_OK;
    if (rc == 0 && res.status == 404) v = miss(p, V_MISS, "its tree %s is not on the server", hex);
    else if (res.too_long) v = miss(p, V_BAD, "tree %s is longer than the entry says", hex);
    else if (res.local_error) v = lerr(p, "downloading tree %s: %s", hex, res.why);
    else if (rc != 0 || res.status != 200) {
        fl__rm_fail(p->r, "GET /cas/", &res);
        v = V_NET;
    }
    if (v == V_OK) {
        fl_digest got;
        fl__tree_digest(buf ? buf : "", len, &got);
        if (!fl_digest_eq(&got, &it->d)) {
            v = miss(p, V_BAD, "tree %s does not match its digest", hex);
            mark_bad(p, &it->d);
        }
        else if (fl__tree_parse(buf ? buf : "", len, t, hex, &le) != 0)
            v = miss(p, V_BAD, "tree %s: %s", hex, le.msg);
    }
    free(buf);
    return v;
}

/* Hashes what fd already holds (a partial download), leaving the offset at its end. */
static int hash_prefix(int fd, fl_hasher *h, uint64_t *n) {
    char buf[1 << 16];
    *n = 0;
    if (lseek(fd, 0, SEEK_SET) != 0) return -1;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        fl_hasher_update(h, buf, (size_t)r);
        *n += (uint64_t)r;
    }
}

/* Downloads file object it to work/remote-<hex>.part, resuming what an earlier try left, and
 * checks its size and digest. On V_OK *path is the complete file. */
static int get_object(pull *p, const fl_remote_item *it, char **path) {
    char hex[FL_DIGEST_HEX], lab[256];
    fl_digest_hex(&it->d, hex);
    snprintf(lab, sizeof lab, "get %s %.12s", p->label, hex);
    char *part = fl_strdupf("%s/remote-%s.part", p->work, hex);
    char *url = fl_remote_url_for(p->r->url, "cas", &it->d);
    fl_hasher *h = fl_hasher_new();
    int fd = part ? open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
    int v = V_OK, resumes = 0, redo = 0, from_partial = -1;
    uint64_t have = 0;
    if (!part || !url || !h) {
        v = lerr(p, "out of memory");
        goto out;
    }
    if (fd < 0) {
        v = lerr(p, "cannot create %s: %s", part, strerror(errno));
        goto out;
    }
again:
    if (hash_prefix(fd, h, &have) != 0) {
        v = lerr(p, "cannot read %s: %s", part, strerror(errno));
        goto out;
    }
    if (from_partial < 0) from_partial = have > 0;
    if (have > it->size) { /* not a prefix of this object: start over */
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
            v = lerr(p, "cannot truncate %s: %s", part, strerror(errno));
            goto out;
        }
        fl_hasher_free(h);
        if (!(h = fl_hasher_new())) {
            v = lerr(p, "out of memory");
            goto out;
        }
        have = 0;
    }
    if (have > 0 && have < it->size)
        fl__rm_log(p->r, "[fluke] remote %s: resuming after %llu of %llu bytes", lab,
                   (unsigned long long)have, (unsigned long long)it->size);
    while (have < it->size) {
        fl_xfer x;
        fl__rm_xfer_init(&x, "GET", url);
        x.out_fd = fd;
        x.h = &h;
        x.range_from = have;
        x.limit = it->size;
        x.total = it->size;
        if (it->size >= p->r->progress_min) x.label = lab;
        fl_xres res;
        int rc = fl__rm_perform(p->r, &x, &res);
        if (res.local_error) {
            v = lerr(p, "downloading object %s into %s: %s", hex, part, res.why);
            goto out;
        }
        if (res.too_long) {
            v = miss(p, V_BAD, "object %s is longer than the %llu bytes the entry lists", hex,
                     (unsigned long long)it->size);
            goto out;
        }
        if (rc == 0 && res.status == 404) {
            v = miss(p, V_MISS, "its object %s is not on the server", hex);
            goto out;
        }
        if (rc == 0 && res.status != 200 && res.status != 206) {
            fl__rm_fail(p->r, "GET /cas/", &res);
            v = V_NET;
            goto out;
        }
        off_t end = lseek(fd, 0, SEEK_END);
        uint64_t now = end < 0 ? 0 : (uint64_t)end;
        if (rc == 0 && now < it->size) { /* a complete answer, but short */
            v = miss(p, V_BAD, "object %s has %llu bytes, the entry lists %llu", hex,
                     (unsigned long long)now, (unsigned long long)it->size);
            goto out;
        }
        if (rc != 0) { /* dropped or stalled: resume from what arrived */
            if (++resumes > RESUMES) {
                fl__rm_fail(p->r, "GET /cas/", &res);
                v = V_NET;
                goto out;
            }
            fl__rm_log(p->r, "[fluke] remote %s: connection lost after %llu bytes (%s); resuming",
                       lab, (unsigned long long)now, res.why);
        }
        have = now;
    }
    fl_digest got;
    fl_hasher_digest(h, &got);
    if (!fl_digest_eq(&got, &it->d)) {
        /* A resumed download (or a partial file left by an earlier try) may be what is wrong:
         * once more from scratch before calling the server's bytes bad. */
        if (!redo && (resumes > 0 || from_partial)) {
            redo = 1;
            resumes = from_partial = 0;
            fl_hasher_free(h);
            h = fl_hasher_new();
            if (!h || ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
                v = lerr(p, "cannot restart the download of %s into %s", hex, part);
                goto out;
            }
            goto again;
        }
        char ghex[FL_DIGEST_HEX];
        fl_digest_hex(&got, ghex);
        v = miss(p, V_BAD, "object %s does not match its digest (its bytes hash to %s)", hex, ghex);
        mark_bad(p, &it->d);
        goto out;
    }
    *path = part;
    part = NULL;
out:
    if (fd >= 0) close(fd);
    if (part && v != V_NET && v != V_LOCAL) unlink(part);
    free(part);
    free(url);
    fl_hasher_free(h);
    return v;
}

/* Places file entry e of a tree at dst: a hard link to the local object (ingest keeps the one
 * it has), a copy of an earlier placement of the same content, or a download. */
static int place_file(pull *p, const fl_tree_entry *te, const char *dst) {
    int *slot = fl__dset_get(&p->files, &te->d, 0);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&te->d, hex);
    if (!slot) return miss(p, V_BAD, "the entry does not list object %s, which a tree names", hex);
    size_t k = (size_t)*slot - 1;
    const fl_remote_item *it = &p->ac.files[k];
    int rc = 0;
    fl_err le;
    int linked = 0;
    if (p->placed[k]) {
        rc = fl_copy_file(p->placed[k], dst, &le);
    } else if (have_local(p, "objects", &it->d, it->size)) {
        /* A hard link (ingest then drops it for the object it has) for a plain file; the mode
         * of an executable is the link's own, and the object must stay 0444: a copy. */
        char *obj = fl__shard_path(p->s, "objects", &it->d);
        linked = obj && te->mode != FL_MODE_EXEC && link(obj, dst) == 0;
        rc = linked ? 0 : (obj ? fl_copy_file(obj, dst, &le) : -1);
        if (!obj) snprintf(le.msg, sizeof le.msg, "out of memory");
        free(obj);
    } else {
        char *got = NULL;
        int v = get_object(p, it, &got);
        if (v != V_OK) return v;
        if (rename(got, dst) != 0) {
            rc = -1;
            snprintf(le.msg, sizeof le.msg, "cannot move %s to %s: %s", got, dst, strerror(errno));
        }
        free(got);
    }
    if (rc == 0 && !linked && chmod(dst, te->mode == FL_MODE_EXEC ? 0755 : 0644) != 0) {
        rc = -1;
        snprintf(le.msg, sizeof le.msg, "cannot chmod %s: %s", dst, strerror(errno));
    }
    if (rc != 0) return lerr(p, "placing object %s: %s", hex, le.msg);
    if (!p->placed[k] && !(p->placed[k] = strdup(dst))) return lerr(p, "out of memory");
    return V_OK;
}

/* Rebuilds the directory of tree d under dir. */
static int build_dir(pull *p, const fl_digest *d, const char *dir, int depth) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    if (depth > FL_MAX_TREE_DEPTH) return miss(p, V_BAD, "trees nested deeper than %d", FL_MAX_TREE_DEPTH);
    int *slot = fl__dset_get(&p->trees, d, 0);
    if (!slot) return miss(p, V_BAD, "the entry does not list tree %s, which a tree names", hex);
    fl_tree t;
    int v = get_tree(p, &p->ac.trees[*slot - 1], &t);
    if (v != V_OK) return v;
    for (size_t i = 0; i < t.n && v == V_OK; i++) {
        char *sub = fl_strdupf("%s/%s", dir, t.v[i].name);
        if (!sub) v = lerr(p, "out of memory");
        else if (t.v[i].mode == FL_MODE_DIR) {
            if (mkdir(sub, 0755) != 0) v = lerr(p, "cannot create %s: %s", sub, strerror(errno));
            else v = build_dir(p, &t.v[i].d, sub, depth + 1);
        } else {
            v = place_file(p, &t.v[i], sub);
        }
        free(sub);
    }
    fl__tree_free(&t);
    return v;
}

static int index_entry(pull *p) {
    for (size_t i = 0; i < p->ac.nfiles; i++) {
        int *s = fl__dset_get(&p->files, &p->ac.files[i].d, 1);
        if (!s) return lerr(p, "out of memory");
        if (!*s) *s = (int)i + 1;
    }
    for (size_t i = 0; i < p->ac.ntrees; i++) {
        int *s = fl__dset_get(&p->trees, &p->ac.trees[i].d, 1);
        if (!s) return lerr(p, "out of memory");
        if (!*s) *s = (int)i + 1;
    }
    if (!(p->placed = calloc(p->ac.nfiles + 1, sizeof *p->placed))) return lerr(p, "out of memory");
    return V_OK;
}

/* GET /ac/<key>: V_OK with p->ac filled, or why not. */
static int get_entry(pull *p, const fl_digest *key) {
    char *url = fl_remote_url_for(p->r->url, "ac", key), *buf = NULL;
    if (!url) return lerr(p, "out of memory");
    size_t len = 0;
    fl_xfer x;
    fl__rm_xfer_init(&x, "GET", url);
    x.mem = &buf;
    x.mem_len = &len;
    x.mem_max = FL_REMOTE_AC_MAX;
    fl_xres res;
    int rc = fl__rm_perform(p->r, &x, &res);
    free(url);
    int v = V_OK;
    if (rc == 0 && res.status == 404) v = V_MISS;
    else if (res.too_long) v = miss(p, V_BAD, "its /ac/ entry is larger than %zu bytes", FL_REMOTE_AC_MAX);
    else if (res.local_error) v = lerr(p, "%s", res.why);
    else if (rc != 0 || res.status != 200) {
        fl__rm_fail(p->r, "GET /ac/", &res);
        v = V_NET;
    } else {
        fl_err pe;
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(key, hex);
        if (fl_remote_ac_parse(buf ? buf : "", (size_t)res.body, key, hex, &p->ac, &pe) != 0)
            v = miss(p, V_BAD, "%s", pe.msg);
    }
    free(buf);
    return v;
}

int fl_remote_peek(fl_remote *r, const fl_digest *key, fl_digest *tree) {
    if (r->off) return FL_REMOTE_MISS;
    fl_err e;
    pull p = {.r = r, .e = &e};
    int v = get_entry(&p, key);
    if (v == V_OK) *tree = p.ac.tree;
    fl_remote_ac_free(&p.ac);
    return v == V_OK ? FL_REMOTE_HIT : FL_REMOTE_MISS;
}

int fl_remote_pull(fl_remote *r, fl_store *s, const fl_digest *key, const char *label,
                   fl_digest *tree, fl_err *e) {
    if (r->off) return FL_REMOTE_MISS;
    pull p = {.r = r, .s = s, .label = label, .e = e};
    char *staging = NULL;
    int v = get_entry(&p, key);
    if (v == V_OK) v = index_entry(&p);
    if (v == V_OK) v = check_present(&p);
    if (v == V_OK && !(p.work = fl_store_work_dir(s, key, e))) v = V_LOCAL;
    if (v == V_OK && !(staging = fl_store_staging_dir(s, label, e))) v = V_LOCAL;
    if (v == V_OK) v = build_dir(&p, &p.ac.tree, staging, 0);
    fl_digest got;
    if (v == V_OK && fl_store_ingest(s, staging, &got, e) != 0) v = V_LOCAL;
    if (v == V_OK && !fl_digest_eq(&got, &p.ac.tree)) {
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&p.ac.tree, hex);
        v = miss(&p, V_BAD, "its content does not rebuild output tree %s", hex);
    }
    /* The commit point, as for a local run: the record, written last. */
    if (v == V_OK && fl_store_record_put(s, key, &got, p.ac.json, e) != 0) v = V_LOCAL;
    if (v == V_OK) {
        *tree = got;
        fl_err ig;
        fl_store_work_dir_remove(s, key, &ig);
    }
    if (v == V_BAD)
        fl__rm_log(r, "[fluke] warning: remote cache %s: the result of %s is unusable (%s); running it "
                      "locally", r->display, label, p.why);
    else if (v == V_MISS && p.why[0])
        fl__rm_log(r, "[fluke] note   remote cache: %s has an entry for %s but %s: a miss", r->display,
                   label, p.why);
    if (staging) {
        fl_err ig;
        fl_remove_tree(staging, &ig);
        free(staging);
    }
    for (size_t i = 0; p.placed && i < p.ac.nfiles; i++) free(p.placed[i]);
    free(p.placed);
    free(p.work);
    fl__dset_free(&p.files);
    fl__dset_free(&p.trees);
    fl_remote_ac_free(&p.ac);
    if (v == V_LOCAL) return -1;
    return v == V_OK ? FL_REMOTE_HIT : FL_REMOTE_MISS;
}
