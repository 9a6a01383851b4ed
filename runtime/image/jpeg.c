/* JPEG decode/encode through the TurboJPEG 2.x API (tjDecompressHeader3 / tjDecompress2), with
 * scaled decode, EXIF orientation, CMYK -> RGB and strict checks on bad input. */
#include "runtime/image/image.h"
#include "runtime/image/jpeg_markers.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#define MIB (UINT64_C(1) << 20)

/* tjGetErrorCode says TJERR_WARNING whenever any warning happened, even when a fatal error
 * followed and stopped the decode. libjpeg keeps the text of the first warning, but a fatal
 * error overwrites it, so the text tells them apart: these are libjpeg's warning messages
 * (jerror.h JWRN_*); anything else is a fatal error and the image is incomplete. */
static int is_libjpeg_warning(const char *msg) {
    static const char *const prefixes[] = {
        "Corrupt JPEG data", "Premature end of JPEG file", "Warning:",
        "Invalid SOS parameters for sequential JPEG", "Inconsistent progression sequence",
        "Unknown Adobe color transform code", "Application transferred too many scanlines",
    };
    for (size_t i = 0; msg && i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

/* Whether an EOI marker follows the first SOS. Segments before the SOS are skipped by their
 * lengths, so an EXIF thumbnail's own EOI does not count; after the SOS, entropy-coded data
 * cannot contain FF D9 (0xFF is stuffed as FF 00), so any FF D9 is a real marker. A header that
 * runs out before any SOS is searched from where the walk stopped. */
static int has_eoi_after_sos(const uint8_t *d, size_t len) {
    fl_jpeg_walk w = fl_jpeg_walk_start(d, len);
    uint8_t m;
    const uint8_t *s;
    size_t sl;
    int r;
    while ((r = fl_jpeg_walk_next(&w, &m, &s, &sl)) == FL_JPEG_SEG && m != 0xDA) {
    }
    if (r == FL_JPEG_BAD) return 0;
    for (size_t p = w.p; p + 1 < len; p++) {
        const uint8_t *f = memchr(d + p, 0xFF, len - p - 1);
        if (!f) return 0;
        p = (size_t)(f - d);
        if (d[p + 1] == 0xD9) return 1;
    }
    return 0;
}

/* TurboJPEG reports a truncated stream as a warning ("Premature end of JPEG file" /
 * "premature end of data segment") and fills the missing rows with grey; for training data that
 * is a broken file, so it is an error here. Only the first warning's text is kept by libjpeg,
 * hence also the structural check. Other warnings (extraneous bytes, ...) are benign. */
static int warning_is_truncation(const char *msg, const uint8_t *d, size_t len) {
    return (msg && strstr(msg, "remature end")) || !has_eoi_after_sos(d, len);
}

/* The largest supported 1/d (d in 8,4,2,1) keeping the upright image >= target. */
static int choose_denom(int uw, int uh, int tw, int th) {
    if (tw <= 0 && th <= 0) return 1; /* no target: full size */
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    static const int denoms[] = {8, 4, 2};
    for (int i = 0; i < 3; i++) {
        int d = denoms[i], ok = 0;
        for (int k = 0; sf && k < n; k++) ok |= sf[k].num == 1 && sf[k].denom == d;
        if (!ok) continue;
        tjscalingfactor f = {1, d};
        if (TJSCALED(uw, f) >= tw && TJSCALED(uh, f) >= th) return d;
    }
    return 1;
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb) on Adobe-inverted samples, which is what PIL (and
 * Photoshop) assume for every CMYK JPEG: ink = 255 - stored. */
static inline uint8_t muldiv255(unsigned a, unsigned b) {
    unsigned t = a * b + 128;
    return (uint8_t)((t + (t >> 8)) >> 8);
}
static void cmyk_to_rgb(const uint8_t *src, fl_image *img) {
    for (int y = 0; y < img->height; y++) {
        const uint8_t *s = src + (size_t)y * img->width * 4;
        uint8_t *d = fl_image_px(img, 0, y);
        for (int x = 0; x < img->width; x++, s += 4, d += 3) {
            unsigned nk = s[3]; /* 255 - ink K */
            for (int c = 0; c < 3; c++) {
                int v = (int)nk - muldiv255(255u - s[c], nk);
                d[c] = (uint8_t)(v < 0 ? 0 : v);
            }
        }
    }
}

fl_image *fl_jpeg_decode(const uint8_t *data, size_t len, const char *name,
                         const fl_decode_opts *opts, fl_decode_info *info, fl_err *e) {
    fl_decode_opts o = opts ? *opts : (fl_decode_opts){0};
    if (!name) name = "<memory>";
    if (!o.max_pixels) o.max_pixels = FL_DECODE_DEFAULT_MAX_PIXELS;
    if (!o.max_bytes) o.max_bytes = FL_DECODE_DEFAULT_MAX_BYTES;
    fl_decode_budget *budget = o.budget ? o.budget : fl_decode_budget_process();
    uint64_t held = 0;
    if (len == 0) {
        fl_errf(e, "%s: empty file (0 bytes), not a JPEG", name);
        return NULL;
    }
    if (len < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        fl_errf(e, "%s: not a JPEG file (%zu bytes, starts with %02x %02x %02x %02x)", name, len,
                data[0], len > 1 ? data[1] : 0, len > 2 ? data[2] : 0, len > 3 ? data[3] : 0);
        return NULL;
    }
    if (len > (size_t)0x7fffffff) {
        fl_errf(e, "%s: %zu bytes is too large for a JPEG file", name, len);
        return NULL;
    }
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        fl_errf(e, "%s: cannot create a TurboJPEG decompressor: %s", name, tjGetErrorStr2(NULL));
        return NULL;
    }
    fl_image *img = NULL, *oriented = NULL;
    uint8_t *cmyk = NULL;
    int w = 0, h = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &cs) != 0) {
        fl_errf(e, "%s: corrupt JPEG header: %s", name, tjGetErrorStr2(tj));
        goto done;
    }
    if (w < 1 || h < 1 || w > 65535 || h > 65535) {
        fl_errf(e, "%s: JPEG dimensions %dx%d out of range (1..65535)", name, w, h);
        goto done;
    }
    if ((uint64_t)w * (uint64_t)h > o.max_pixels) {
        fl_errf(e, "%s: JPEG is %dx%d = %llu pixels, above the limit of %llu", name, w, h,
                (unsigned long long)w * (unsigned long long)h, (unsigned long long)o.max_pixels);
        goto done;
    }
    int orient = o.ignore_exif ? 1 : fl_jpeg_exif_orientation(data, len);
    int swap = orient >= 5;
    int denom = choose_denom(swap ? h : w, swap ? w : h, o.target_w, o.target_h);
    tjscalingfactor f = {1, denom};
    int sw = TJSCALED(w, f), sh = TJSCALED(h, f);
    int is_cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    /* The whole peak, known before allocating: libjpeg's buffers, our output, the CMYK
     * staging buffer and the rotated copy. */
    fl_jpeg_cost cost;
    if (fl_jpeg_cost_estimate(data, len, name, &cost, e) != 0) goto done;
    uint64_t out_px = (uint64_t)sw * (uint64_t)sh;
    uint64_t need = cost.total + out_px * 3 + (is_cmyk ? out_px * 4 : 0) + (orient != 1 ? out_px * 3 : 0);
    if (need > o.max_bytes) {
        fl_errf(e, "%s: decoding this %dx%d%s JPEG at 1/%d scale needs about %llu MiB%s, above "
                "the per-image limit of %llu MiB", name, w, h,
                cost.progressive ? " progressive" : cost.multi_scan ? " multi-scan" : "", denom,
                (unsigned long long)((need + MIB - 1) / MIB),
                cost.multi_scan ? " (such files keep every coefficient of the full-size image, "
                                  "whatever the output scale)" : "",
                (unsigned long long)(o.max_bytes / MIB));
        goto done;
    }
    if (cost.n_scans > FL_DECODE_MAX_SCANS) {
        fl_errf(e, "%s: %d scans, more than the %d a JPEG may have here (each scan of a "
                "multi-scan file passes over the whole image)", name, cost.n_scans,
                FL_DECODE_MAX_SCANS);
        goto done;
    }
    if (fl_decode_budget_acquire(budget, need, name, e) != 0) goto done;
    held = need;
    if (!(img = fl_image_new(sw, sh, e))) {
        fl_errprefix(e, "%s", name);
        goto done;
    }
    uint8_t *dst = img->data;
    int pitch = (int)img->stride, pf = TJPF_RGB;
    if (is_cmyk) {
        if (!(cmyk = malloc((size_t)sw * (size_t)sh * 4))) {
            fl_errf(e, "%s: out of memory for a %dx%d CMYK image", name, sw, sh);
            goto fail;
        }
        dst = cmyk, pitch = sw * 4, pf = TJPF_CMYK;
    }
    if (tjDecompress2(tj, data, (unsigned long)len, dst, sw, pitch, sh, pf, 0) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) != TJERR_WARNING || !is_libjpeg_warning(msg)) {
            fl_errf(e, "%s: corrupt JPEG data: %s", name, msg);
            goto fail;
        }
        if (warning_is_truncation(msg, data, len)) {
            fl_errf(e, "%s: truncated JPEG (%s)", name, msg);
            goto fail;
        }
    }
    if (is_cmyk) cmyk_to_rgb(cmyk, img);
    if (orient != 1) {
        if (!(oriented = fl_image_orient(img, orient, e))) {
            fl_errprefix(e, "%s", name);
            goto fail;
        }
        fl_image_free(img);
        img = oriented;
    }
    if (info) {
        info->src_width = swap ? h : w;
        info->src_height = swap ? w : h;
        info->scale_denom = denom;
        info->orientation = orient;
        info->components = cs == TJCS_GRAY ? 1 : is_cmyk ? 4 : 3;
    }
    goto done;
fail:
    fl_image_free(img);
    img = NULL;
done:
    free(cmyk);
    tjDestroy(tj);
    if (held) fl_decode_budget_release(budget, held);
    return img;
}

int fl_jpeg_probe(const uint8_t *data, size_t len, const char *name, fl_decode_info *info,
                  fl_err *e) {
    if (!name) name = "<memory>";
    if (len == 0) return fl_errf(e, "%s: empty file (0 bytes), not a JPEG", name);
    if (len < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF)
        return fl_errf(e, "%s: not a JPEG file (%zu bytes, starts with %02x %02x)", name, len,
                       data[0], len > 1 ? data[1] : 0);
    if (len > (size_t)0x7fffffff) return fl_errf(e, "%s: %zu bytes is too large", name, len);
    tjhandle tj = tjInitDecompress();
    if (!tj) return fl_errf(e, "%s: cannot create a TurboJPEG decompressor", name);
    int w = 0, h = 0, subsamp = 0, cs = 0, rc = 0;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &cs) != 0)
        rc = fl_errf(e, "%s: corrupt JPEG header: %s", name, tjGetErrorStr2(tj));
    else if (w < 1 || h < 1)
        rc = fl_errf(e, "%s: JPEG dimensions %dx%d out of range", name, w, h);
    tjDestroy(tj);
    if (rc) return rc;
    int o = fl_jpeg_exif_orientation(data, len), swap = o >= 5;
    info->src_width = swap ? h : w;
    info->src_height = swap ? w : h;
    info->scale_denom = 1;
    info->orientation = o;
    info->components = cs == TJCS_GRAY ? 1 : (cs == TJCS_CMYK || cs == TJCS_YCCK) ? 4 : 3;
    return 0;
}

fl_image *fl_jpeg_read(const char *path, const fl_decode_opts *opts, fl_decode_info *info,
                       fl_err *e) {
    size_t len = 0;
    char *buf = fl_read_file(path, &len, e);
    if (!buf) return NULL;
    fl_image *img = fl_jpeg_decode((const uint8_t *)buf, len, path, opts, info, e);
    free(buf);
    return img;
}

int fl_jpeg_encode(const fl_image *img, int quality, uint8_t **out, size_t *out_len, fl_err *e) {
    if (quality < 1 || quality > 100) return fl_errf(e, "JPEG quality %d not in 1..100", quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return fl_errf(e, "cannot create a TurboJPEG compressor: %s", tjGetErrorStr2(NULL));
    unsigned char *buf = NULL;
    unsigned long n = 0;
    int rc = -1;
    if (tjCompress2(tj, img->data, img->width, (int)img->stride, img->height, TJPF_RGB, &buf, &n,
                    TJSAMP_420, quality, 0) != 0) {
        fl_errf(e, "JPEG encode of a %dx%d image failed: %s", img->width, img->height,
                tjGetErrorStr2(tj));
    } else if (!(*out = malloc(n))) {
        fl_errf(e, "out of memory for a %lu-byte JPEG", n);
    } else {
        memcpy(*out, buf, n);
        *out_len = n;
        rc = 0;
    }
    tjFree(buf);
    tjDestroy(tj);
    return rc;
}

int fl_jpeg_write(const fl_image *img, int quality, const char *path, fl_err *e) {
    uint8_t *buf = NULL;
    size_t n = 0;
    if (fl_jpeg_encode(img, quality, &buf, &n, e)) return fl_errprefix(e, "%s", path);
    int rc = fl_write_file_atomic(path, buf, n, e);
    free(buf);
    return rc;
}
