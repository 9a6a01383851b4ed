/* JPEG marker scan for what TurboJPEG does not report: the EXIF Orientation tag (APP1, TIFF IFD0
 * tag 0x0112). Every read is bounds-checked; malformed EXIF yields
 * orientation 1 rather than an error, as camera files with broken EXIF still hold good pixels. */
#include "runtime/image/image.h"

#include <string.h>

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* tiff: the bytes after "Exif\0\0". Returns the orientation (1..8) or 1. */
static int exif_orientation(const uint8_t *tiff, size_t n) {
    if (n < 8) return 1;
    int le;
    if (tiff[0] == 'I' && tiff[1] == 'I') le = 1;
    else if (tiff[0] == 'M' && tiff[1] == 'M') le = 0;
    else return 1;
    if (rd16(tiff + 2, le) != 42) return 1;
    uint32_t ifd = rd32(tiff + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = rd16(tiff + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t off = (size_t)ifd + 2 + (size_t)i * 12;
        if (off + 12 > n) return 1;
        const uint8_t *ent = tiff + off;
        if (rd16(ent, le) != 0x0112) continue;
        unsigned type = rd16(ent + 2, le);
        uint32_t cnt = rd32(ent + 4, le);
        if (type != 3 || cnt < 1) return 1; /* SHORT, stored inline in the value field */
        unsigned v = rd16(ent + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

int fl_jpeg_exif_orientation(const uint8_t *d, size_t len) {
    if (len < 4 || d[0] != 0xFF || d[1] != 0xD8) return 1;
    size_t p = 2;
    while (p + 4 <= len) {
        if (d[p] != 0xFF) return 1; /* lost sync: leave the rest to the decoder */
        uint8_t m = d[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (m == 0xD9 || m == 0xDA) return 1; /* EOI / SOS: headers are over */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* markers without a length */
            p += 2;
            continue;
        }
        size_t seg = rd16(d + p + 2, 0);
        if (seg < 2 || p + 2 + seg > len) return 1;
        const uint8_t *body = d + p + 4;
        size_t bl = seg - 2;
        /* The first EXIF block wins, like PIL. */
        if (m == 0xE1 && bl >= 6 && memcmp(body, "Exif\0\0", 6) == 0)
            return exif_orientation(body + 6, bl - 6);
        p += 2 + seg;
    }
    return 1;
}

/* dst(x, y) = src(sx, sy) for the eight EXIF orientations (PIL ImageOps.exif_transpose):
 * 2 mirror, 3 rotate 180, 4 flip vertical, 5 transpose, 6 rotate 90 clockwise, 7 transverse,
 * 8 rotate 90 counter-clockwise. */
fl_image *fl_image_orient(const fl_image *img, int o, fl_err *e) {
    if (o < 1 || o > 8) o = 1;
    int W = img->width, H = img->height, swap = o >= 5;
    fl_image *out = fl_image_new(swap ? H : W, swap ? W : H, e);
    if (!out) return NULL;
    for (int y = 0; y < out->height; y++) {
        uint8_t *d = fl_image_px(out, 0, y);
        for (int x = 0; x < out->width; x++, d += 3) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x, sy = y; break;
            case 3: sx = W - 1 - x, sy = H - 1 - y; break;
            case 4: sx = x, sy = H - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = H - 1 - x; break;
            case 7: sx = W - 1 - y, sy = H - 1 - x; break;
            case 8: sx = W - 1 - y, sy = x; break;
            default: sx = x, sy = y; break;
            }
            const uint8_t *s = fl_image_px(img, sx, sy);
            d[0] = s[0], d[1] = s[1], d[2] = s[2];
        }
    }
    return out;
}
