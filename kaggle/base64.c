/* Base64 (RFC 4648): encodes the Basic credentials and decodes x-goog-hash digests. */
#include <stdlib.h>
#include <string.h>

#include "kaggle/kaggle.h"

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *fl_base64_encode(const void *data, size_t len) {
    const uint8_t *p = data;
    char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
    if (!out) return NULL;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = ALPHA[v >> 18];
        *o++ = ALPHA[(v >> 12) & 63];
        *o++ = ALPHA[(v >> 6) & 63];
        *o++ = ALPHA[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = ALPHA[v >> 18];
        *o++ = ALPHA[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = ALPHA[v >> 18];
        *o++ = ALPHA[(v >> 12) & 63];
        *o++ = ALPHA[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = 0;
    return out;
}

static int val(char c) {
    const char *q = c ? strchr(ALPHA, c) : NULL;
    return q ? (int)(q - ALPHA) : -1;
}

int fl_base64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen) {
    while (slen && s[slen - 1] == '=') slen--;
    if (slen % 4 == 1) return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < slen; i++) {
        int v = val(s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap) return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (outlen) *outlen = n;
    return 0;
}
