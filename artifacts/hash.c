/* Digests: XXH3-128 in its canonical (big-endian) byte order, so a file's hex digest is exactly
 * what `xxhsum -H2` prints for it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "artifacts/store_internal.h"

struct fl_hasher {
    void *st;  /* XXH3_state_t of the library, or of the AVX2 build */
    int avx2;
};

static void from_xxh(XXH128_hash_t h, fl_digest *out) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out->b, c.digest, sizeof out->b);
}

/* Streaming state of whichever build this CPU runs best. */
static void *state_new(int avx2) {
    if (avx2) return fl__xxh128_avx2_new();
    XXH3_state_t *st = XXH3_createState();
    if (st) XXH3_128bits_reset(st);
    return st;
}

static void state_update(void *st, int avx2, const void *data, size_t len) {
    if (avx2) fl__xxh128_avx2_update(st, data, len);
    else XXH3_128bits_update(st, data, len);
}

static void state_digest(const void *st, int avx2, fl_digest *out) {
    if (avx2) fl__xxh128_avx2_digest(st, out);
    else from_xxh(XXH3_128bits_digest(st), out);
}

static void state_free(void *st, int avx2) {
    if (avx2) fl__xxh128_avx2_free(st);
    else XXH3_freeState(st);
}

void fl_digest_hex(const fl_digest *d, char out[FL_DIGEST_HEX]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[d->b[i] >> 4];
        out[2 * i + 1] = hx[d->b[i] & 15];
    }
    out[32] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int fl_digest_from_hex(const char *hex, fl_digest *d) {
    if (!hex) return -1;
    fl_digest t;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0) return -1;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0) return -1;
        t.b[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[32] != '\0') return -1;
    if (d) *d = t;
    return 0;
}

int fl_digest_eq(const fl_digest *a, const fl_digest *b) {
    return memcmp(a->b, b->b, sizeof a->b) == 0;
}

int fl__is_hex32(const char *s) {
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[32] == '\0';
}

fl_hasher *fl_hasher_new(void) {
    fl_hasher *h = malloc(sizeof *h);
    if (!h) return NULL;
    h->avx2 = fl__have_avx2();
    h->st = state_new(h->avx2);
    if (!h->st) {
        free(h);
        return NULL;
    }
    return h;
}

void fl_hasher_update(fl_hasher *h, const void *data, size_t len) {
    if (len) state_update(h->st, h->avx2, data, len);
}

void fl_hasher_digest(const fl_hasher *h, fl_digest *out) { state_digest(h->st, h->avx2, out); }

void fl_hasher_free(fl_hasher *h) {
    if (!h) return;
    state_free(h->st, h->avx2);
    free(h);
}

void fl__hash_buf(const void *data, size_t len, fl_digest *out) {
    if (fl__have_avx2()) fl__xxh128_avx2(data, len, out);
    else from_xxh(XXH3_128bits(data, len), out);
}

/* Small files (the common case: images, CSV rows) are hashed in one shot from a stack buffer;
 * larger ones stream through a 1 MiB heap buffer. */
#define SMALL_READ (64 * 1024)
#define BIG_READ (1024 * 1024)

static ssize_t read_full(int fd, char *buf, size_t want) {
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int fl__hash_fd(int fd, const char *path, fl_digest *out, uint64_t *bytes, fl_err *e) {
    char small[SMALL_READ];
    ssize_t n = read_full(fd, small, sizeof small);
    if (n < 0) return fl_errf(e, "cannot read %s: %s", path, strerror(errno));
    if ((size_t)n < sizeof small) {
        fl__hash_buf(small, (size_t)n, out);
        if (bytes) *bytes = (uint64_t)n;
        return 0;
    }
    int avx2 = fl__have_avx2();
    void *st = state_new(avx2);
    char *buf = malloc(BIG_READ);
    if (!st || !buf) {
        if (st) state_free(st, avx2);
        free(buf);
        return fl_errf(e, "out of memory hashing %s", path);
    }
    state_update(st, avx2, small, (size_t)n);
    uint64_t total = (uint64_t)n;
    for (;;) {
        ssize_t r = read_full(fd, buf, BIG_READ);
        if (r < 0) {
            int err = errno;
            state_free(st, avx2);
            free(buf);
            return fl_errf(e, "cannot read %s: %s", path, strerror(err));
        }
        if (r == 0) break;
        state_update(st, avx2, buf, (size_t)r);
        total += (uint64_t)r;
        if ((size_t)r < BIG_READ) break;
    }
    state_digest(st, avx2, out);
    state_free(st, avx2);
    free(buf);
    if (bytes) *bytes = total;
    return 0;
}

int fl__hash_path(const char *path, int nofollow, fl_digest *out, fl_err *e) {
    /* O_NONBLOCK: opening a FIFO must not hang; only regular files are hashed. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0) {
        if (nofollow && errno == ELOOP)
            return fl_errf(e, "cannot hash %s: a symbolic link, not a regular file", path);
        return fl_errf(e, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fl_errf(e, "cannot hash %s: not a regular file", path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = fl__hash_fd(fd, path, out, NULL, e);
    close(fd);
    return rc;
}

int fl_hash_file(const char *path, fl_digest *out, fl_err *e) {
    return fl__hash_path(path, 0, out, e);
}
