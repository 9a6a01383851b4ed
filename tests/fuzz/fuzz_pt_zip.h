/* A minimal zip writer (STORED entries with their CRC-32, no zip64) for crafted torch.save-like
 * archives: the unit tests of runtime/torch_pt* and the fuzz target, which wraps fuzzed pickles
 * in valid containers so the unpickler gets the inputs instead of the CRC check. */
#ifndef FLUKE_FUZZ_PT_ZIP_H
#define FLUKE_FUZZ_PT_ZIP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t fz_crc32(const unsigned char *p, size_t n) {
    static uint32_t tab[256];
    if (!tab[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            tab[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = tab[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline void fz_put16(unsigned char **q, uint32_t v) {
    (*q)[0] = (unsigned char)v;
    (*q)[1] = (unsigned char)(v >> 8);
    *q += 2;
}
static inline void fz_put32(unsigned char **q, uint32_t v) {
    fz_put16(q, v & 0xFFFF);
    fz_put16(q, v >> 16);
}

typedef struct fz_zent {
    const char *name;
    const void *data;
    size_t len;
} fz_zent;

static inline unsigned char *fz_make_zip(const fz_zent *v, int n, size_t *out_len) {
    size_t cap = 1024;
    for (int i = 0; i < n; i++)
        cap += 2 * (46 + strlen(v[i].name)) + v[i].len;
    unsigned char *b = calloc(1, cap), *q = b;
    uint32_t *offs = calloc((size_t)n + 1, sizeof *offs);
    for (int i = 0; i < n; i++) {
        offs[i] = (uint32_t)(q - b);
        uint32_t crc = fz_crc32(v[i].data, v[i].len);
        fz_put32(&q, 0x04034b50u);
        fz_put16(&q, 20);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put32(&q, crc);
        fz_put32(&q, (uint32_t)v[i].len);
        fz_put32(&q, (uint32_t)v[i].len);
        fz_put16(&q, (uint32_t)strlen(v[i].name));
        fz_put16(&q, 0);
        memcpy(q, v[i].name, strlen(v[i].name));
        q += strlen(v[i].name);
        memcpy(q, v[i].data, v[i].len);
        q += v[i].len;
    }
    unsigned char *cd = q;
    for (int i = 0; i < n; i++) {
        fz_put32(&q, 0x02014b50u);
        fz_put16(&q, 20);
        fz_put16(&q, 20);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put32(&q, fz_crc32(v[i].data, v[i].len));
        fz_put32(&q, (uint32_t)v[i].len);
        fz_put32(&q, (uint32_t)v[i].len);
        fz_put16(&q, (uint32_t)strlen(v[i].name));
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put16(&q, 0);
        fz_put32(&q, 0);
        fz_put32(&q, offs[i]);
        memcpy(q, v[i].name, strlen(v[i].name));
        q += strlen(v[i].name);
    }
    size_t cdlen = (size_t)(q - cd);
    free(offs);
    fz_put32(&q, 0x06054b50u);
    fz_put16(&q, 0);
    fz_put16(&q, 0);
    fz_put16(&q, (uint32_t)n);
    fz_put16(&q, (uint32_t)n);
    fz_put32(&q, (uint32_t)cdlen);
    fz_put32(&q, (uint32_t)(cd - b));
    fz_put16(&q, 0);
    *out_len = (size_t)(q - b);
    return b;
}

#endif
