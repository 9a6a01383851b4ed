/* The stat cache: digests of external input files (external.c walks the inputs), reused while
 * (dev, ino, size, mtime_ns, ctime_ns) is unchanged and the entry is not racily clean.
 *
 * Racy-clean guard. A file modified again within one timestamp tick of being hashed keeps its
 * mtime, so its stat tuple cannot show the change. Each entry therefore carries a reference time
 * and is trusted only when its mtime is strictly older than it:
 *   - when a file is hashed, the reference is CLOCK_REALTIME_COARSE read before the file is
 *     opened (the clock the kernel stamps files with, so any later write gets an mtime >= it);
 *   - when the cache is loaded, every reference is capped by the cache file's own mtime (git's
 *     rule: an entry whose mtime is not older than the cache write is re-hashed).
 * On file systems with nanosecond timestamps (ext4, xfs, btrfs, tmpfs) this is exact. Where
 * timestamps are coarser than the clock (FAT: 2 s), a same-size rewrite inside the tick in which
 * the file was hashed can go unseen unless the cache is written in that tick too; git has the
 * same limit.
 *
 * File format ("statcache" under the store root), text with NUL-terminated paths:
 *   "fluke-statcache 1\n"
 *   per entry: "<dev> <ino> <size> <mtime_ns> <ctime_ns> <ref_ns> <32 hex> <abs path>\0\n"
 *   "end <32 hex>\n"   XXH3-128 of everything before this line
 * A damaged or foreign file is ignored (everything is re-hashed), never trusted. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "artifacts/store_internal.h"

static const char SC_MAGIC[] = "fluke-statcache 1\n";

typedef struct sc_entry {
    char *path;
    uint64_t h; /* XXH3-64 of path: table slot, and a cheap check before strcmp */
    uint64_t dev, ino;
    int64_t size, mtime_ns, ctime_ns, ref_ns;
    fl_digest d;
    uint8_t seen; /* looked up or hashed by this process (unseen ones may be pruned on save) */
} sc_entry;

struct fl_statcache {
    sc_entry *v;
    size_t n, cap;
    uint32_t *tab; /* entry index + 1; 0 = empty slot */
    size_t tcap;   /* power of two, kept at least twice n */
    int dirty;
    struct stat file; /* the statcache file as loaded (st_ino 0: none), to notice other savers */
};

void fl__statcache_free(fl_statcache *sc) {
    if (!sc) return;
    for (size_t i = 0; i < sc->n; i++) free(sc->v[i].path);
    free(sc->v);
    free(sc->tab);
    free(sc);
}

static uint64_t path_hash(const char *p) { return XXH3_64bits(p, strlen(p)); }

static int rehash_table(fl_statcache *sc, size_t tcap) {
    uint32_t *t = calloc(tcap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < sc->n; i++) {
        size_t j = (size_t)(sc->v[i].h & (tcap - 1));
        while (t[j]) j = (j + 1) & (tcap - 1);
        t[j] = (uint32_t)(i + 1);
    }
    free(sc->tab);
    sc->tab = t;
    sc->tcap = tcap;
    return 0;
}

static sc_entry *sc_find_h(fl_statcache *sc, const char *path, uint64_t h) {
    if (!sc->tcap) return NULL;
    size_t j = (size_t)(h & (sc->tcap - 1));
    while (sc->tab[j]) {
        sc_entry *en = &sc->v[sc->tab[j] - 1];
        if (en->h == h && !strcmp(en->path, path)) return en;
        j = (j + 1) & (sc->tcap - 1);
    }
    return NULL;
}

static sc_entry *sc_find(fl_statcache *sc, const char *path) {
    return sc_find_h(sc, path, path_hash(path));
}

/* Inserts or replaces the entry for en->path; takes ownership of en->path. */
static int sc_put(fl_statcache *sc, sc_entry *en) {
    en->h = path_hash(en->path);
    sc_entry *old = sc_find_h(sc, en->path, en->h);
    if (old) {
        free(old->path);
        *old = *en;
        return 0;
    }
    if (sc->n == sc->cap) {
        size_t nc = sc->cap ? sc->cap * 2 : 1024;
        sc_entry *nv = realloc(sc->v, nc * sizeof *nv);
        if (!nv) return -1;
        sc->v = nv;
        sc->cap = nc;
    }
    if ((sc->n + 1) * 2 > sc->tcap && rehash_table(sc, sc->tcap ? sc->tcap * 2 : 2048) != 0)
        return -1;
    sc->v[sc->n] = *en;
    size_t j = (size_t)(en->h & (sc->tcap - 1));
    while (sc->tab[j]) j = (j + 1) & (sc->tcap - 1);
    sc->tab[j] = (uint32_t)(++sc->n);
    return 0;
}

static int64_t ts_ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

/* Parses "<number> " at *p (decimal, optional '-'); advances past the space. */
static int parse_num(const char **p, const char *end, int64_t *out) {
    const char *q = *p;
    int neg = 0;
    if (q < end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= end || *q < '0' || *q > '9') return -1;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        v = v * 10 + (uint64_t)(*q - '0');
        q++;
    }
    if (q >= end || *q != ' ') return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    *p = q + 1;
    return 0;
}

/* Adds the entries of a cache file's text; with merge, paths already present are kept as they
 * are (this process's view is at least as fresh). */
static int parse_cache(fl_statcache *sc, const char *buf, size_t len, int64_t written_ns, int merge) {
    size_t ml = sizeof SC_MAGIC - 1;
    if (len < ml + 37 || memcmp(buf, SC_MAGIC, ml) != 0) return -1;
    /* The trailer must be "end <hex>\n" covering everything before it. */
    const char *trailer = buf + len - 37;
    if (memcmp(trailer, "end ", 4) != 0 || buf[len - 1] != '\n') return -1;
    char hex[FL_DIGEST_HEX];
    memcpy(hex, trailer + 4, 32);
    hex[32] = '\0';
    fl_digest want, got;
    if (!fl__is_hex32(hex) || fl_digest_from_hex(hex, &want) != 0) return -1;
    fl__hash_buf(buf, (size_t)(trailer - buf), &got);
    if (!fl_digest_eq(&want, &got)) return -1;
    const char *p = buf + ml, *end = trailer;
    while (p < end) {
        int64_t f[6];
        for (int i = 0; i < 6; i++)
            if (parse_num(&p, end, &f[i]) != 0) return -1;
        if (end - p < 34) return -1;
        memcpy(hex, p, 32);
        hex[32] = '\0';
        sc_entry en;
        en.seen = 0;
        if (fl_digest_from_hex(hex, &en.d) != 0 || p[32] != ' ') return -1;
        p += 33;
        const char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z || z + 1 >= end || z[1] != '\n' || *p != '/') return -1;
        en.dev = (uint64_t)f[0];
        en.ino = (uint64_t)f[1];
        en.size = f[2];
        en.mtime_ns = f[3];
        en.ctime_ns = f[4];
        en.ref_ns = f[5] < written_ns ? f[5] : written_ns; /* git's rule caps every entry */
        if (merge && sc_find(sc, p)) {
            p = z + 2;
            continue;
        }
        if (!(en.path = strdup(p)) || sc_put(sc, &en) != 0) {
            free(en.path);
            return -1;
        }
        p = z + 2;
    }
    return 0;
}

static char *cache_path(const fl_store *s) { return fl_strdupf("%s/statcache", s->root); }

/* Reads the cache file into sc (see parse_cache for merge). A missing, unreadable or damaged
 * file adds nothing: the cache only saves work, it is never trusted beyond its checksum. */
static void read_cache_file(const char *path, fl_statcache *sc, int merge) {
    /* Never through a symbolic link, never blocking on a FIFO, never more than the limit. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size <= FL_STATCACHE_MAX) {
        size_t len = (size_t)st.st_size, got = 0;
        char *buf = malloc(len);
        while (buf && got < len) {
            ssize_t r = read(fd, buf + got, len - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (buf && got == len) {
            if (!merge) sc->file = st;
            if (parse_cache(sc, buf, len, ts_ns(&st.st_mtim), merge) != 0 && !merge) {
                for (size_t i = 0; i < sc->n; i++) free(sc->v[i].path);
                sc->n = 0;
                if (sc->tab) memset(sc->tab, 0, sc->tcap * sizeof *sc->tab);
            }
        }
        free(buf);
    }
    close(fd);
}

int fl__statcache_load(fl_store *s, fl_err *e) {
    if (s->sc) return 0;
    fl_statcache *sc = calloc(1, sizeof *sc);
    char *path = cache_path(s);
    if (!sc || !path) {
        free(sc);
        free(path);
        return fl_errf(e, "out of memory");
    }
    read_cache_file(path, sc, 0);
    free(path);
    s->sc = sc;
    return 0;
}

int fl_store_statcache_save(fl_store *s, fl_err *e) {
    fl_statcache *sc = s->sc;
    if (!sc || !sc->dirty) return 0;
    /* Another process (a concurrent `fluke run`) saved since we loaded: keep its entries too. */
    char *cpath = cache_path(s);
    struct stat cur;
    if (cpath && lstat(cpath, &cur) == 0 && S_ISREG(cur.st_mode) &&
        (cur.st_ino != sc->file.st_ino || cur.st_dev != sc->file.st_dev ||
         cur.st_size != sc->file.st_size || ts_ns(&cur.st_mtim) != ts_ns(&sc->file.st_mtim)))
        read_cache_file(cpath, sc, 1);
    free(cpath);
    size_t cap = sizeof SC_MAGIC + 64, len = 0;
    for (size_t i = 0; i < sc->n; i++) cap += strlen(sc->v[i].path) + 6 * 21 + 32 + 4;
    cap += 40;
    char *buf = malloc(cap);
    if (!buf) return fl_errf(e, "out of memory saving the stat cache");
    len = (size_t)snprintf(buf, cap, "%s", SC_MAGIC);
    struct stat gone;
    for (size_t i = 0; i < sc->n; i++) {
        const sc_entry *en = &sc->v[i];
        /* Files deleted since they were cached would otherwise stay in the cache forever. */
        if (!en->seen && lstat(en->path, &gone) != 0 && errno == ENOENT) continue;
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&en->d, hex);
        len += (size_t)snprintf(buf + len, cap - len,
                                "%" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                                " %s %s",
                                en->dev, en->ino, en->size, en->mtime_ns, en->ctime_ns, en->ref_ns,
                                hex, en->path);
        buf[len++] = '\0';
        buf[len++] = '\n';
    }
    fl_digest sum;
    fl__hash_buf(buf, len, &sum);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&sum, hex);
    len += (size_t)snprintf(buf + len, cap - len, "end %s\n", hex);
    /* Not a counted store write: the cache only saves work, and losing it is harmless. */
    char *tmp = NULL, *path = cache_path(s);
    int rc = 0, fd = path ? fl__store_tmpfile(s, &tmp, e) : fl_errf(e, "out of memory");
    if (fd >= 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, buf + off, len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) break;
            off += (size_t)w;
        }
        if (off < len || fsync(fd) != 0)
            rc = fl_errf(e, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        if (rc == 0 && rename(tmp, path) != 0) {
            /* A directory in its place (damage) blocks the rename: set it aside, try again. */
            int err = errno;
            fl_err keep;
            if ((err == EISDIR || err == ENOTEMPTY || err == EEXIST) &&
                fl__set_aside_blocker(s, path, &keep) == 1 && rename(tmp, path) == 0)
                err = 0;
            if (err) rc = fl_errf(e, "cannot rename %s to %s: %s", tmp, path, strerror(err));
        }
        if (rc != 0) unlink(tmp);
    } else {
        rc = -1;
    }
    free(tmp);
    if (rc == 0) {
        sc->dirty = 0;
        if (lstat(path, &sc->file) != 0) memset(&sc->file, 0, sizeof sc->file);
    }
    free(path);
    free(buf);
    return rc;
}

int fl__statcache_lookup(fl_statcache *sc, const char *abs, const struct stat *st, fl_digest *out) {
    sc_entry *en = sc_find(sc, abs);
    if (en && en->dev == (uint64_t)st->st_dev && en->ino == (uint64_t)st->st_ino &&
        en->size == (int64_t)st->st_size && en->mtime_ns == ts_ns(&st->st_mtim) &&
        en->ctime_ns == ts_ns(&st->st_ctim) && en->mtime_ns < en->ref_ns) {
        en->seen = 1;
        *out = en->d;
        return 1;
    }
    return 0;
}

int fl__statcache_record(fl_statcache *sc, const char *abs, const struct stat *fst, int64_t ref_ns,
                         const fl_digest *d, fl_err *e) {
    sc_entry ne = {.path = strdup(abs),
                   .dev = (uint64_t)fst->st_dev,
                   .ino = (uint64_t)fst->st_ino,
                   .size = (int64_t)fst->st_size,
                   .mtime_ns = ts_ns(&fst->st_mtim),
                   .ctime_ns = ts_ns(&fst->st_ctim),
                   .ref_ns = ref_ns,
                   .d = *d,
                   .seen = 1};
    if (!ne.path || sc_put(sc, &ne) != 0) {
        free(ne.path);
        return fl_errf(e, "out of memory in the stat cache");
    }
    sc->dirty = 1;
    return 0;
}
