/* What a JPEG decode will allocate, known from its headers before anything is allocated, and
 * the budget that decodes running on several threads share.
 *
 * Why the header is enough: libjpeg decodes a progressive or multi-scan JPEG (one whose first
 * scan does not hold every component) into a whole-image coefficient buffer, 2 bytes per
 * coefficient, 64 per 8x8 block of every component, at full resolution whatever the output
 * scale; a single-scan JPEG needs only an MCU row of them. So a file of a few KB that claims
 * 11585x11585 pixels costs ~0.8 GB before the first byte of image data is read. */
#include "runtime/image/image.h"
#include "runtime/image/jpeg_markers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MIB (UINT64_C(1) << 20)

struct fl_decode_budget {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t limit, in_use, peak;
};

/* The one budget every decode without its own shares: memory is a per-process resource. */
static fl_decode_budget process_budget = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                                          FL_DECODE_DEFAULT_BUDGET, 0, 0};

fl_decode_budget *fl_decode_budget_process(void) { return &process_budget; }

fl_decode_budget *fl_decode_budget_new(uint64_t limit, fl_err *e) {
    fl_decode_budget *b = calloc(1, sizeof *b);
    if (!b) {
        fl_errf(e, "out of memory for a decode budget");
        return NULL;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0 || pthread_cond_init(&b->cv, NULL) != 0) {
        free(b);
        fl_errf(e, "cannot create a decode budget's lock");
        return NULL;
    }
    b->limit = limit;
    return b;
}

void fl_decode_budget_free(fl_decode_budget *b) {
    if (!b || b == &process_budget) return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void fl_decode_budget_set_limit(fl_decode_budget *b, uint64_t limit) {
    pthread_mutex_lock(&b->mu);
    b->limit = limit;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

uint64_t fl_decode_budget_peak(fl_decode_budget *b) {
    pthread_mutex_lock(&b->mu);
    uint64_t p = b->peak;
    pthread_mutex_unlock(&b->mu);
    return p;
}

int fl_decode_budget_acquire(fl_decode_budget *b, uint64_t bytes, const char *name, fl_err *e) {
    pthread_mutex_lock(&b->mu);
    /* Every holder releases when its decode ends and no decode holds two shares, so waiting
     * for the others always ends. */
    while (bytes <= b->limit && b->in_use + bytes > b->limit) pthread_cond_wait(&b->cv, &b->mu);
    if (bytes > b->limit) {
        uint64_t limit = b->limit;
        pthread_mutex_unlock(&b->mu);
        return fl_errf(e, "%s: decoding needs about %llu MiB, more than the whole decode budget "
                       "of %llu MiB shared by the decoding threads", name,
                       (unsigned long long)((bytes + MIB - 1) / MIB),
                       (unsigned long long)(limit / MIB));
    }
    b->in_use += bytes;
    if (b->in_use > b->peak) b->peak = b->in_use;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void fl_decode_budget_release(fl_decode_budget *b, uint64_t bytes) {
    pthread_mutex_lock(&b->mu);
    b->in_use = bytes < b->in_use ? b->in_use - bytes : 0;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int is_sof(uint8_t m) {
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t round_up(uint64_t a, uint64_t b) { return ceil_div(a, b) * b; }

int fl_jpeg_cost_estimate(const uint8_t *d, size_t len, const char *name, fl_jpeg_cost *c,
                          fl_err *e) {
    memset(c, 0, sizeof *c);
    if (!name) name = "<memory>";
    int have_sof = 0, nc = 0, w = 0, h = 0, hs[10], vs[10];
    fl_jpeg_walk wk = fl_jpeg_walk_start(d, len);
    uint8_t m;
    const uint8_t *s;
    size_t sl;
    while (fl_jpeg_walk_next(&wk, &m, &s, &sl) == FL_JPEG_SEG) {
        if (is_sof(m)) {
            if (have_sof || sl < 6) break;
            h = s[1] << 8 | s[2], w = s[3] << 8 | s[4], nc = s[5];
            if (nc < 1 || nc > 10 || sl < 6 + 3 * (size_t)nc) break;
            int ok = 1;
            for (int k = 0; k < nc; k++) {
                hs[k] = s[7 + 3 * k] >> 4, vs[k] = s[7 + 3 * k] & 15;
                ok &= hs[k] >= 1 && hs[k] <= 4 && vs[k] >= 1 && vs[k] <= 4;
            }
            if (!ok) break;
            have_sof = 1;
            c->progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
        } else if (m == 0xDA) {
            if (!have_sof || sl < 1) break;
            c->multi_scan = c->progressive || s[0] < nc;
            int maxh = 1, maxv = 1;
            for (int k = 0; k < nc; k++) {
                if (hs[k] > maxh) maxh = hs[k];
                if (vs[k] > maxv) maxv = vs[k];
            }
            for (int k = 0; k < nc; k++) { /* libjpeg's jdinput.c initial_setup */
                uint64_t wb = round_up(ceil_div((uint64_t)w * hs[k], (uint64_t)maxh * 8), hs[k]);
                uint64_t hb = round_up(ceil_div((uint64_t)h * vs[k], (uint64_t)maxv * 8), vs[k]);
                if (c->multi_scan) c->coef_bytes += wb * hb * 64 * 2;
                /* Row buffers (main, upsampling, colour): a few block rows of every
                 * component, at full scale (an upper estimate). */
                c->work_bytes += wb * 8 * (uint64_t)vs[k] * 8 * 4;
            }
            c->work_bytes += MIB; /* the decoder's fixed tables and state */
            c->total = c->coef_bytes + c->work_bytes;
            /* Scans: FF DA can only be a marker in entropy-coded data (a data 0xFF is stuffed
             * as FF 00), so counting them is exact. */
            c->n_scans = 1;
            for (size_t q = wk.p; q + 1 < len; q++) {
                const uint8_t *ff = memchr(d + q, 0xFF, len - q - 1);
                if (!ff) break;
                q = (size_t)(ff - d);
                if (d[q + 1] == 0xDA) c->n_scans++;
            }
            return 0;
        }
    }
    return fl_errf(e, "%s: cannot read the JPEG frame and first scan headers to size the decode",
                   name);
}
