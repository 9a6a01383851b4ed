/* Binary PPM (P6, maxval 255) read/write: the raw-pixel format of the test fixtures. */
#include "runtime/image/image.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Reads one header integer, skipping whitespace and # comments. */
static int ppm_int(const char *b, size_t len, size_t *pos, long *out) {
    size_t p = *pos;
    for (;;) {
        while (p < len && isspace((unsigned char)b[p])) p++;
        if (p < len && b[p] == '#') {
            while (p < len && b[p] != '\n') p++;
            continue;
        }
        break;
    }
    if (p >= len || !isdigit((unsigned char)b[p])) return -1;
    long v = 0;
    while (p < len && isdigit((unsigned char)b[p])) {
        v = v * 10 + (b[p++] - '0');
        if (v > 1000000) return -1;
    }
    *pos = p;
    *out = v;
    return 0;
}

fl_image *fl_image_read_ppm(const char *path, fl_err *e) {
    size_t len = 0;
    char *b = fl_read_file(path, &len, e);
    if (!b) return NULL;
    size_t pos = 2;
    long w, h, maxval;
    fl_image *img = NULL;
    if (len < 2 || b[0] != 'P' || b[1] != '6') {
        fl_errf(e, "%s: not a binary PPM (P6)", path);
    } else if (ppm_int(b, len, &pos, &w) || ppm_int(b, len, &pos, &h) ||
               ppm_int(b, len, &pos, &maxval) || pos >= len) {
        fl_errf(e, "%s: malformed PPM header", path);
    } else if (maxval != 255) {
        fl_errf(e, "%s: PPM maxval %ld unsupported (only 255)", path, maxval);
    } else if (len - pos - 1 < (size_t)w * (size_t)h * 3) {
        fl_errf(e, "%s: PPM data truncated (%zu bytes for %ldx%ld)", path, len - pos - 1, w, h);
    } else if ((img = fl_image_new((int)w, (int)h, e)) != NULL) {
        memcpy(img->data, b + pos + 1, (size_t)w * (size_t)h * 3);
    } else {
        fl_errprefix(e, "%s", path);
    }
    free(b);
    return img;
}

int fl_image_write_ppm(const fl_image *img, const char *path, fl_err *e) {
    char head[64];
    int hl = snprintf(head, sizeof head, "P6\n%d %d\n255\n", img->width, img->height);
    size_t row = (size_t)img->width * 3, n = (size_t)hl + row * (size_t)img->height;
    uint8_t *buf = malloc(n);
    if (!buf) return fl_errf(e, "%s: out of memory", path);
    memcpy(buf, head, (size_t)hl);
    for (int y = 0; y < img->height; y++)
        memcpy(buf + hl + row * (size_t)y, fl_image_px(img, 0, y), row);
    int rc = fl_write_file_atomic(path, buf, n, e);
    free(buf);
    return rc;
}
