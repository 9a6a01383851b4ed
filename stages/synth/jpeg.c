/* JPEG encoding of rendered images through TurboJPEG (libjpeg-turbo 2.1 API). */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "stages/synth/synth.h"

int fl_synth_jpeg_encode(const uint8_t *rgb, int w, int h, int quality, unsigned char **buf,
                         unsigned long *len, fl_err *e) {
    *buf = NULL;
    *len = 0;
    tjhandle tj = tjInitCompress();
    if (!tj) return fl_errf(e, "jpeg: cannot initialise TurboJPEG: %s", tjGetErrorStr2(NULL));
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    int rc = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jbuf, &jlen, TJSAMP_420, quality,
                         TJFLAG_ACCURATEDCT);
    if (rc != 0) {
        fl_errf(e, "jpeg: encoding a %dx%d image failed: %s", w, h, tjGetErrorStr2(tj));
        tjFree(jbuf);
        tjDestroy(tj);
        return -1;
    }
    tjDestroy(tj);
    /* Hand back a malloc'd copy so callers free() it like everything else. */
    *buf = malloc(jlen);
    if (!*buf) {
        tjFree(jbuf);
        return fl_errf(e, "jpeg: out of memory (%lu bytes)", jlen);
    }
    memcpy(*buf, jbuf, jlen);
    *len = jlen;
    tjFree(jbuf);
    return 0;
}
