/* Benchmark of the image path: decode + resize to a 512 px long side of 3000 x 2000 camera-size
 * JPEGs (scaled TurboJPEG decode, then area/linear resize), against PIL (draft mode + BILINEAR
 * resize, tests/bench/bench_image_pil.py run with /usr/bin/python3) in the same run, images/s and
 * the ratio fluke / PIL (> 1: fluke faster). Then the data loader's throughput (re-ID task,
 * 256 x 256 augmented float batches) with 1 and 2 workers. Single-threaded decode on both sides.
 * The JPEGs are generated once into /tmp/fluke_bench_image/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artifacts/util.h"
#include "runtime/data/loader.h"
#include "runtime/image/image.h"

#define NFILES 4
#define REPS 3
#define ROUNDS 3
#define LONG_SIDE 512
#define DIR "/tmp/fluke_bench_image"

/* A photo-like 3000 x 2000 image: smooth colour fields, edges and sensor-like noise. */
static int make_jpeg(const char *path, int k, fl_err *e) {
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > 0) return 0;
    fl_image *img = fl_image_new(3000, 2000, e);
    if (!img) return -1;
    fl_rng r;
    fl_rng_init(&r, 99, (uint64_t)k);
    for (int y = 0; y < 2000; y++) {
        uint8_t *p = fl_image_px(img, 0, y);
        for (int x = 0; x < 3000; x++, p += 3) {
            float base = 100 + 60 * sinf(x * 0.004f + k) * cosf(y * 0.003f);
            int n = (int)(fl_rng_u32(&r) & 15) - 8;
            int inside = (x - 1500) * (x - 1500) / 4 + (y - 1000) * (y - 1000) < 400000;
            p[0] = (uint8_t)fminf(fmaxf(base + n + (inside ? 60 : 0), 0), 255);
            p[1] = (uint8_t)fminf(fmaxf(base * 0.8f + n + 20, 0), 255);
            p[2] = (uint8_t)fminf(fmaxf(base * 1.1f + n - (inside ? 40 : 0), 0), 255);
        }
    }
    int rc = fl_jpeg_write(img, 90, path, e);
    fl_image_free(img);
    return rc;
}

static int decode_resize(const char *path, fl_err *e) {
    size_t len;
    uint8_t *buf = (uint8_t *)fl_read_file(path, &len, e);
    if (!buf) return -1;
    fl_decode_info info;
    int rc = -1;
    if (fl_jpeg_probe(buf, len, path, &info, e) == 0) {
        double s = (double)LONG_SIDE / (info.src_width > info.src_height ? info.src_width : info.src_height);
        int tw = (int)lround(info.src_width * s), th = (int)lround(info.src_height * s);
        fl_decode_opts o = {.target_w = tw, .target_h = th};
        fl_image *img = fl_jpeg_decode(buf, len, path, &o, &info, e);
        if (img) {
            fl_image *r = fl_image_resize(img, tw, th, FL_INTERP_AUTO, e);
            rc = r ? 0 : -1;
            fl_image_free(r), fl_image_free(img);
        }
    }
    free(buf);
    return rc;
}

static double pil_rate(char paths[][256]) {
    const char *root = getenv("FLUKE_SRC");
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/bench/bench_image_pil.py %d %d",
                     root ? root : ".", REPS, LONG_SIDE);
    for (int i = 0; i < NFILES; i++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", paths[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>&1");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512];
    double rate = -1;
    /* No rate line ("skipped: PIL not found", or a failed run): -1, the caller says skipped. */
    while (fgets(line, sizeof line, p)) sscanf(line, "pil_images_per_s %lf", &rate);
    pclose(p);
    return rate;
}

static double loader_rate(fl_loader_item *items, size_t n, int workers, fl_err *e) {
    fl_loader_config c = fl_loader_config_defaults();
    c.items = items, c.n_items = n, c.task = FL_TASK_REID, c.out_w = c.out_h = 256;
    c.batch_size = 8, c.workers = workers, c.prefetch = 4, c.epochs = 1, c.seed = 1;
    double t0 = fl_now();
    fl_loader *l = fl_loader_open(&c, e);
    if (!l) return -1;
    const fl_batch *b;
    int rc, imgs = 0;
    while ((rc = fl_loader_next(l, &b, e)) == 1) imgs += b->n;
    fl_loader_close(l);
    return rc < 0 ? -1 : imgs / (fl_now() - t0);
}

int main(void) {
    fl_err e = {{0}};
    char paths[NFILES][256];
    if (fl_mkdirs(DIR, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    for (int i = 0; i < NFILES; i++) {
        snprintf(paths[i], sizeof paths[i], DIR "/photo_%d.jpg", i);
        if (make_jpeg(paths[i], i, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    }
    for (int i = 0; i < NFILES; i++) /* warm-up: file cache */
        if (decode_resize(paths[i], &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    /* Rounds alternate fluke and PIL so both see the same machine load; best of each. */
    double best = 0, pil = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int r = 0; r < REPS; r++) {
            double t0 = fl_now();
            for (int i = 0; i < NFILES; i++)
                if (decode_resize(paths[i], &e)) return fprintf(stderr, "%s\n", e.msg), 1;
            double rate = NFILES / (fl_now() - t0);
            best = rate > best ? rate : best;
        }
        double p = pil_rate(paths);
        if (p < 0) {
            pil = -1;
            break;
        }
        pil = p > pil ? p : pil;
    }
    printf("decode+resize 3000x2000 -> %d px: fluke %.1f images/s\n", LONG_SIDE, best);
    if (pil > 0) printf("decode+resize 3000x2000 -> %d px: PIL   %.1f images/s, ratio fluke/PIL %.2f\n",
                        LONG_SIDE, pil, best / pil);
    else printf("  skipped: PIL not found (or its run failed)\n");

    /* Loader: 64 samples (the 4 photos, a 1800x1400 box), re-ID augmentation to 256 px. */
    fl_loader_item items[64];
    for (int i = 0; i < 64; i++)
        items[i] = (fl_loader_item){.path = paths[i % NFILES], .label = i % 8,
                                    .box = {600, 300, 2400, 1700, -1}};
    double r1 = loader_rate(items, 64, 1, &e), r2 = loader_rate(items, 64, 2, &e);
    if (r1 < 0 || r2 < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    printf("loader re-ID 256 px from 3000x2000: 1 worker %.1f images/s, 2 workers %.1f images/s "
           "(x%.2f)\n", r1, r2, r2 / r1);
    return 0;
}
