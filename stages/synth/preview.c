/* Contact sheet: a grid of rendered train images, each scaled into a square tile with the
 * animal's box drawn, so a person can judge the realism of the generator at a glance. */
#include <stdlib.h>
#include <string.h>

#include "stages/synth/synth_internal.h"

/* Picks up to n train images: the first of each species, then the following ones in order. */
static int pick_images(const fl_synth_plan *p, int n, int *out) {
    int k = 0;
    int *taken = calloc((size_t)p->params.n_train, sizeof *taken);
    if (!taken) return 0;
    for (int s = 0; s < FL_SYNTH_NSPECIES && k < n; s++)
        for (int i = 0; i < p->params.n_train; i++)
            if (p->ind[p->img[i].individual].species == s) {
                out[k++] = i;
                taken[i] = 1;
                break;
            }
    for (int i = 0; i < p->params.n_train && k < n; i++)
        if (!taken[i]) out[k++] = i;
    free(taken);
    return k;
}

static void put(uint8_t *sheet, int sw, int x, int y, const uint8_t c[3]) {
    memcpy(sheet + ((size_t)y * sw + x) * 3, c, 3);
}

int fl_synth_preview(const fl_synth_plan *plan, const char *path, int cols, int rows, int cell,
                     fl_err *e) {
    if (cols < 1 || rows < 1 || cell < 16 || cols * cell > 8192 || rows * cell > 8192)
        return fl_errf(e, "synth preview: bad grid %dx%d of %d px tiles", cols, rows, cell);
    const int gap = 4;
    int sw = cols * (cell + gap) + gap, sh = rows * (cell + gap) + gap;
    uint8_t *sheet = malloc((size_t)sw * sh * 3);
    int *pick = malloc((size_t)cols * rows * sizeof *pick);
    if (!sheet || !pick) {
        free(sheet);
        free(pick);
        return fl_errf(e, "synth preview: out of memory");
    }
    memset(sheet, 24, (size_t)sw * sh * 3);
    int n = pick_images(plan, cols * rows, pick);
    static const uint8_t red[3] = {255, 40, 40};
    for (int k = 0; k < n; k++) {
        fl_synth_picture pic;
        if (fl_synth_render(plan, pick[k], &pic, e) != 0) {
            free(sheet);
            free(pick);
            return -1;
        }
        /* Fit the image into the tile keeping its aspect; nearest-neighbour is enough here. */
        float sc = (float)cell / (float)(pic.w > pic.h ? pic.w : pic.h);
        int tw = (int)(pic.w * sc), th = (int)(pic.h * sc);
        int ox = gap + (k % cols) * (cell + gap) + (cell - tw) / 2;
        int oy = gap + (k / cols) * (cell + gap) + (cell - th) / 2;
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++) {
                int sx = (int)((x + 0.5f) / sc), sy = (int)((y + 0.5f) / sc);
                if (sx >= pic.w) sx = pic.w - 1;
                if (sy >= pic.h) sy = pic.h - 1;
                put(sheet, sw, ox + x, oy + y, pic.rgb + ((size_t)sy * pic.w + sx) * 3);
            }
        int x1 = ox + (int)(pic.box.x1 * sc), x2 = ox + (int)(pic.box.x2 * sc) - 1;
        int y1 = oy + (int)(pic.box.y1 * sc), y2 = oy + (int)(pic.box.y2 * sc) - 1;
        if (x2 > ox + tw - 1) x2 = ox + tw - 1;
        if (y2 > oy + th - 1) y2 = oy + th - 1;
        for (int t = 0; t < 2; t++) {
            for (int x = x1; x <= x2; x++) {
                if (y1 + t <= y2) put(sheet, sw, x, y1 + t, red);
                if (y2 - t >= y1) put(sheet, sw, x, y2 - t, red);
            }
            for (int y = y1; y <= y2; y++) {
                if (x1 + t <= x2) put(sheet, sw, x1 + t, y, red);
                if (x2 - t >= x1) put(sheet, sw, x2 - t, y, red);
            }
        }
        fl_synth_picture_free(&pic);
    }
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    int rc = fl_synth_jpeg_encode(sheet, sw, sh, 82, &jpg, &len, e);
    if (rc == 0) rc = fl_write_file_atomic(path, jpg, len, e);
    free(jpg);
    free(sheet);
    free(pick);
    return rc;
}
