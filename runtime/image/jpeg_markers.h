/* Internal to runtime/image: the walk over a JPEG's marker segments up to the first SOS, shared
 * by the truncation check (jpeg.c) and the decode cost estimate (decode_budget.c), so both read
 * the header the same way. Segments are skipped by their lengths (an EXIF thumbnail's own
 * markers are inside an APP1 segment and never seen); fill bytes (FF FF) and the parameterless
 * markers TEM and RST0-7 are stepped over. */
#ifndef FL_IMAGE_JPEG_MARKERS_H
#define FL_IMAGE_JPEG_MARKERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fl_jpeg_walk {
    const uint8_t *d;
    size_t len;
    size_t p; /* the next marker's offset; after a segment, the byte that follows it */
} fl_jpeg_walk;

enum {
    FL_JPEG_SEG = 1,  /* a segment: marker, payload and its length filled in */
    FL_JPEG_END = 0,  /* fewer than 4 bytes left at p */
    FL_JPEG_BAD = -1, /* not a marker at p, EOI before any scan, or a bad segment length */
};

/* Starts after SOI. */
static inline fl_jpeg_walk fl_jpeg_walk_start(const uint8_t *d, size_t len) {
    return (fl_jpeg_walk){d, len, 2};
}

/* The next segment with a length (SOS included: the walk's caller stops there). */
static inline int fl_jpeg_walk_next(fl_jpeg_walk *w, uint8_t *marker, const uint8_t **payload,
                                    size_t *payload_len) {
    const uint8_t *d = w->d;
    while (w->p + 4 <= w->len) {
        size_t p = w->p;
        if (d[p] != 0xFF) return FL_JPEG_BAD;
        uint8_t m = d[p + 1];
        if (m == 0xFF) {
            w->p++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            w->p += 2;
            continue;
        }
        if (m == 0xD9) return FL_JPEG_BAD;
        size_t seg = (size_t)d[p + 2] << 8 | d[p + 3];
        if (seg < 2 || p + 2 + seg > w->len) return FL_JPEG_BAD;
        *marker = m;
        *payload = d + p + 4;
        *payload_len = seg - 2;
        w->p = p + 2 + seg;
        return FL_JPEG_SEG;
    }
    return FL_JPEG_END;
}

#endif
