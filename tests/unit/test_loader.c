/* The data loader: identical batches for 1 and N workers (re-ID and YOLO mosaic), per-epoch
 * shuffles, the balanced sampler, bad images (error naming the file / counted skip with a
 * deterministic replacement), interrupt and early close, config errors, eval transforms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "runtime/data/loader.h"

#define NITEMS 23

typedef struct dataset {
    char dir[64];
    char paths[NITEMS + 3][128];
    fl_loader_item items[NITEMS + 3];
    fl_box boxes[NITEMS + 3];
} dataset;

/* NITEMS small JPEGs of varying size, each with a red rectangle (its box) on a grey-green
 * gradient; labels i % 5. */
static dataset *make_dataset(void) {
    dataset *d = calloc(1, sizeof *d);
    strcpy(d->dir, "/tmp/fl_test_loader_XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    fl_err e = {{0}};
    char dir[sizeof d->dir];
    memcpy(dir, d->dir, sizeof dir);
    for (int i = 0; i < NITEMS; i++) {
        int w = 64 + 8 * (i % 7), h = 48 + 8 * (i % 5);
        fl_image *img = fl_image_new(w, h, &e);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = fl_image_px(img, x, y);
                p[0] = (uint8_t)(40 + x), p[1] = (uint8_t)(90 + y), p[2] = (uint8_t)(60 + 3 * i);
            }
        fl_box b = {(float)(8 + i % 9), (float)(6 + i % 4), (float)(w - 12), (float)(h - 10), i % 3};
        for (int y = (int)b.y1; y < (int)b.y2; y++)
            for (int x = (int)b.x1; x < (int)b.x2; x++) {
                uint8_t *p = fl_image_px(img, x, y);
                p[0] = 230, p[1] = 20, p[2] = 20;
            }
        snprintf(d->paths[i], sizeof d->paths[i], "%s/img_%02d.jpg", dir, i);
        assert_int_equal(fl_jpeg_write(img, 92, d->paths[i], &e), 0);
        fl_image_free(img);
        d->boxes[i] = b;
        d->items[i] = (fl_loader_item){d->paths[i], i % 5, b, &d->boxes[i], 1};
    }
    return d;
}

static void free_dataset(dataset *d) {
    fl_err e;
    fl_remove_tree(d->dir, &e);
    free(d);
}

static fl_loader_config base_config(dataset *d, fl_loader_task task) {
    fl_loader_config c = fl_loader_config_defaults();
    c.items = d->items;
    c.n_items = NITEMS;
    c.task = task;
    c.out_w = c.out_h = task == FL_TASK_DETECT ? 64 : 32;
    c.batch_size = 5;
    c.seed = 1234;
    c.epochs = 2;
    return c;
}

/* Runs a loader to the end; returns a malloc'd concatenation of everything it produced. */
static uint8_t *run_all(const fl_loader_config *c, size_t *len, int64_t *nbatches) {
    fl_err e = {{0}};
    fl_loader *l = fl_loader_open(c, &e);
    if (!l) fail_msg("%s", e.msg);
    size_t cap = 1 << 20, n = 0;
    uint8_t *out = malloc(cap);
    const fl_batch *b;
    int rc;
    *nbatches = 0;
    while ((rc = fl_loader_next(l, &b, &e)) == 1) {
        assert_int_equal((uintptr_t)b->images % 64, 0);
        size_t img = (size_t)b->n * b->out_w * b->out_h * 3 * sizeof(float);
        size_t need = n + img + (size_t)b->n * (sizeof(int32_t) + sizeof(int64_t)) + 64 +
                      (b->boxes ? (size_t)b->n * (sizeof(int32_t) + sizeof(fl_box) * b->max_boxes) : 0);
        while (n + need > cap) out = realloc(out, cap *= 2);
        memcpy(out + n, &b->epoch, 8), n += 8;
        memcpy(out + n, &b->step, 8), n += 8;
        memcpy(out + n, b->images, img), n += img;
        memcpy(out + n, b->labels, (size_t)b->n * 4), n += (size_t)b->n * 4;
        memcpy(out + n, b->items, (size_t)b->n * 8), n += (size_t)b->n * 8;
        if (b->boxes) {
            memcpy(out + n, b->nboxes, (size_t)b->n * 4), n += (size_t)b->n * 4;
            for (int j = 0; j < b->n; j++) {
                size_t k = sizeof(fl_box) * (size_t)b->nboxes[j];
                memcpy(out + n, b->boxes + (size_t)j * b->max_boxes, k), n += k;
            }
        }
        (*nbatches)++;
    }
    if (rc < 0) fail_msg("%s", e.msg);
    fl_loader_close(l);
    *len = n;
    return out;
}

static void check_worker_invariance(fl_loader_config c) {
    size_t n1, n2, n3;
    int64_t b1, b2, b3;
    c.workers = 1, c.prefetch = 1;
    uint8_t *a = run_all(&c, &n1, &b1);
    c.workers = 2, c.prefetch = 3;
    uint8_t *b = run_all(&c, &n2, &b2);
    c.workers = 3, c.prefetch = 2;
    uint8_t *d = run_all(&c, &n3, &b3);
    assert_int_equal(b1, 10); /* 2 epochs x ceil(23 / 5) */
    assert_int_equal(b1, b2);
    assert_int_equal(b1, b3);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, b, n1);
    assert_memory_equal(a, d, n1);
    c.seed++; /* a different seed changes the batches */
    c.workers = 2;
    uint8_t *x = run_all(&c, &n3, &b3);
    assert_true(n3 != n1 || memcmp(a, x, n1) != 0);
    free(a), free(b), free(d), free(x);
}

static void test_reid_batches_identical_for_1_2_3_workers(void **state) {
    (void)state;
    dataset *d = make_dataset();
    check_worker_invariance(base_config(d, FL_TASK_REID));
    free_dataset(d);
}

static void test_yolo_mosaic_batches_identical_for_1_2_3_workers(void **state) {
    (void)state;
    dataset *d = make_dataset();
    check_worker_invariance(base_config(d, FL_TASK_DETECT));
    free_dataset(d);
}

static void test_u8_output_matches_float(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_loader_config c = base_config(d, FL_TASK_REID);
    fl_err e = {{0}};
    fl_loader *lf = fl_loader_open(&c, &e);
    c.output_u8 = 1;
    fl_loader *lu = fl_loader_open(&c, &e);
    assert_non_null(lf);
    assert_non_null(lu);
    const fl_batch *bf, *bu;
    int n = 0;
    while (fl_loader_next(lf, &bf, &e) == 1) {
        assert_int_equal(fl_loader_next(lu, &bu, &e), 1);
        assert_null(bu->images);
        assert_int_equal((uintptr_t)bu->images_u8 % 64, 0);
        size_t k = (size_t)bf->n * 32 * 32 * 3;
        for (size_t i = 0; i < k; i++) assert_true(bf->images[i] == bu->images_u8[i] * (1.0f / 255.0f)); /* fl_image_to_float */
        n++;
    }
    assert_int_equal(fl_loader_next(lu, &bu, &e), 0);
    assert_int_equal(n, 10);
    fl_loader_close(lf), fl_loader_close(lu);
    free_dataset(d);
}

static void test_epoch_orders(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_err e = {{0}};
    int64_t a[NITEMS], b[NITEMS], c2[NITEMS];
    assert_int_equal(fl_sampler_epoch(FL_SAMPLER_SEQUENTIAL, d->items, NITEMS, 0, 1, 5, a, &e), 0);
    for (int i = 0; i < NITEMS; i++) assert_int_equal(a[i], i);
    assert_int_equal(fl_sampler_epoch(FL_SAMPLER_SHUFFLE, d->items, NITEMS, 0, 1, 0, a, &e), 0);
    assert_int_equal(fl_sampler_epoch(FL_SAMPLER_SHUFFLE, d->items, NITEMS, 0, 1, 1, b, &e), 0);
    assert_int_equal(fl_sampler_epoch(FL_SAMPLER_SHUFFLE, d->items, NITEMS, 0, 1, 0, c2, &e), 0);
    assert_memory_equal(a, c2, sizeof a); /* pure function of (seed, epoch) */
    assert_memory_not_equal(a, b, sizeof a);
    int seen[NITEMS] = {0};
    for (int i = 0; i < NITEMS; i++) seen[a[i]]++;
    for (int i = 0; i < NITEMS; i++) assert_int_equal(seen[i], 1); /* a permutation */
    free_dataset(d);
}

static void test_balanced_sampler(void **state) {
    (void)state;
    /* One image of individual 0 and 99 of individual 1: power 1 gives each about half. */
    enum { N = 100 };
    fl_loader_item items[N];
    for (int i = 0; i < N; i++) items[i] = (fl_loader_item){.path = "x.jpg", .label = i == 0 ? 0 : 1};
    int64_t out[N];
    fl_err e = {{0}};
    int hits = 0, hits_sqrt = 0;
    for (int ep = 0; ep < 50; ep++) {
        assert_int_equal(fl_sampler_epoch(FL_SAMPLER_BALANCED, items, N, 1.0f, 9, ep, out, &e), 0);
        for (int i = 0; i < N; i++) hits += out[i] == 0;
        assert_int_equal(fl_sampler_epoch(FL_SAMPLER_BALANCED, items, N, 0.5f, 9, ep, out, &e), 0);
        for (int i = 0; i < N; i++) hits_sqrt += out[i] == 0;
    }
    /* expected 2500 of 5000; sqrt: 1 / (1 + 99 / sqrt(99)) = 9.1% -> 455 */
    assert_true(hits > 2300 && hits < 2700);
    assert_true(hits_sqrt > 370 && hits_sqrt < 540);
}

static void counting_warn(void *ctx, const char *msg) {
    atomic_fetch_add((atomic_int *)ctx, 1);
    (void)msg;
}

static void test_bad_images(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_err e = {{0}};
    /* item 3: truncated; item 7: zero bytes; item 11: text under a .jpg name */
    size_t len;
    char *bytes = fl_read_file(d->paths[3], &len, &e);
    assert_int_equal(fl_write_file_atomic(d->paths[3], bytes, len / 2, &e), 0);
    free(bytes);
    assert_int_equal(fl_write_file_atomic(d->paths[7], "", 0, &e), 0);
    assert_int_equal(fl_write_file_atomic(d->paths[11], "hello, not a jpeg", 17, &e), 0);

    fl_loader_config c = base_config(d, FL_TASK_REID);
    c.sampler = FL_SAMPLER_SEQUENTIAL;
    fl_loader *l = fl_loader_open(&c, &e);
    assert_non_null(l);
    const fl_batch *b;
    assert_int_equal(fl_loader_next(l, &b, &e), -1); /* the first batch holds item 3 */
    assert_non_null(strstr(e.msg, d->paths[3]));
    assert_non_null(strstr(e.msg, "truncated"));
    assert_int_equal(fl_loader_next(l, &b, &e), -1); /* stays failed */
    fl_loader_close(l);

    atomic_int warnings;
    atomic_init(&warnings, 0);
    c.on_bad_image = FL_BAD_IMAGE_SKIP;
    c.warn = counting_warn;
    c.warn_ctx = &warnings;
    int64_t used_first[2][NITEMS];
    for (int workers = 1; workers <= 2; workers++) {
        c.workers = workers;
        atomic_store(&warnings, 0);
        l = fl_loader_open(&c, &e);
        assert_non_null(l);
        int k = 0;
        while (fl_loader_next(l, &b, &e) == 1) {
            for (int j = 0; j < b->n; j++, k++) {
                int64_t it = b->items[j];
                assert_true(it != 3 && it != 7 && it != 11);
                if (k < NITEMS) used_first[workers - 1][k] = it;
            }
        }
        assert_int_equal(k, 2 * NITEMS); /* nothing dropped: bad samples were replaced */
        assert_true(fl_loader_bad_images(l) >= 6); /* 3 per epoch, more if a replacement was bad */
        assert_int_equal((int)fl_loader_bad_images(l), atomic_load(&warnings));
        fl_loader_close(l);
    }
    assert_memory_equal(used_first[0], used_first[1], sizeof used_first[0]);
    free_dataset(d);
}

/* A decompression bomb among the items (issue 19 item 6): a progressive JPEG of a few hundred
 * bytes whose header claims 11585x11585 is refused before libjpeg allocates its ~0.8 GB
 * coefficient buffer, as a bad image naming the file; and the workers' decodes hold the
 * configured shared budget. */
static void test_decode_bomb_and_budget(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_err e = {{0}};
    fl_image *img = fl_image_new_filled(16, 16, 128, &e);
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jn = 0;
    assert_int_equal(tjCompress2(tj, img->data, 16, 0, 16, TJPF_RGB, &jb, &jn, TJSAMP_444, 90,
                                 TJFLAG_PROGRESSIVE), 0);
    for (unsigned long i = 2; i + 9 < jn; i++)
        if (jb[i] == 0xFF && jb[i + 1] == 0xC2) {
            jb[i + 5] = 0x2D, jb[i + 6] = 0x41, jb[i + 7] = 0x2D, jb[i + 8] = 0x41; /* 11585 */
            break;
        }
    assert_int_equal(fl_write_file_atomic(d->paths[5], jb, jn, &e), 0);
    tjFree(jb);
    tjDestroy(tj);
    fl_image_free(img);

    fl_loader_config c = base_config(d, FL_TASK_REID);
    c.sampler = FL_SAMPLER_SEQUENTIAL;
    c.workers = 3;
    fl_decode_budget *budget = fl_decode_budget_new(UINT64_C(64) << 20, &e);
    assert_non_null(budget);
    c.decode_budget = budget;
    fl_loader *l = fl_loader_open(&c, &e);
    assert_non_null(l);
    const fl_batch *b;
    int rc;
    while ((rc = fl_loader_next(l, &b, &e)) == 1) {}
    assert_int_equal(rc, -1);
    if (!strstr(e.msg, d->paths[5]) || !strstr(e.msg, "per-image limit"))
        fail_msg("bomb: \"%s\"", e.msg);
    fl_loader_close(l);
    c.on_bad_image = FL_BAD_IMAGE_SKIP;
    atomic_int warnings;
    atomic_init(&warnings, 0);
    c.warn = counting_warn;
    c.warn_ctx = &warnings;
    l = fl_loader_open(&c, &e);
    assert_non_null(l);
    while ((rc = fl_loader_next(l, &b, &e)) == 1) {}
    if (rc != 0) fail_msg("%s", e.msg);
    assert_true(fl_loader_bad_images(l) >= 2); /* once per epoch */
    fl_loader_close(l);
    uint64_t peak = fl_decode_budget_peak(budget);
    assert_true(peak > 0 && peak <= UINT64_C(64) << 20);
    fl_decode_budget_free(budget);
    free_dataset(d);
}

static void test_interrupt_and_early_close(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_loader_config c = base_config(d, FL_TASK_REID);
    atomic_int stop;
    atomic_init(&stop, 0);
    c.interrupt = &stop;
    c.epochs = 0; /* endless */
    fl_err e = {{0}};
    fl_loader *l = fl_loader_open(&c, &e);
    const fl_batch *b;
    assert_int_equal(fl_loader_next(l, &b, &e), 1);
    assert_int_equal(fl_loader_next(l, &b, &e), 1);
    atomic_store(&stop, 1);
    int rc;
    for (int i = 0; i < 10 && (rc = fl_loader_next(l, &b, &e)) == 1; i++) {}
    assert_int_equal(rc, -1);
    assert_non_null(strstr(e.msg, "interrupted"));
    fl_loader_close(l);
    /* Closing while workers are busy, before anything was consumed. */
    atomic_store(&stop, 0);
    c.workers = 3;
    l = fl_loader_open(&c, &e);
    assert_non_null(l);
    fl_loader_close(l);
    free_dataset(d);
}

static void test_config_errors(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_err e = {{0}};
    fl_loader_config c = base_config(d, FL_TASK_REID);
    c.batch_size = 0;
    assert_null(fl_loader_open(&c, &e));
    assert_non_null(strstr(e.msg, "batch_size"));
    c = base_config(d, FL_TASK_REID);
    c.workers = 0;
    assert_null(fl_loader_open(&c, &e));
    assert_non_null(strstr(e.msg, "workers"));
    c = base_config(d, FL_TASK_REID);
    c.n_items = 0;
    assert_null(fl_loader_open(&c, &e));
    assert_non_null(strstr(e.msg, "items"));
    c = base_config(d, FL_TASK_DETECT);
    c.out_h = 32;
    assert_null(fl_loader_open(&c, &e));
    assert_non_null(strstr(e.msg, "square"));
    c = base_config(d, FL_TASK_REID);
    c.drop_last = 1, c.batch_size = 100;
    assert_null(fl_loader_open(&c, &e));
    assert_non_null(strstr(e.msg, "drop_last"));
    free_dataset(d);
}

static int red_f(const float *p) { return p[0] > 0.7f && p[1] < 0.3f && p[2] < 0.3f; }

static void test_eval_transforms(void **state) {
    (void)state;
    dataset *d = make_dataset();
    fl_err e = {{0}};
    fl_loader_config c = base_config(d, FL_TASK_REID);
    c.augment = 0, c.sampler = FL_SAMPLER_SEQUENTIAL, c.epochs = 1, c.drop_last = 1;
    c.reid.margin = 0;
    fl_loader *l = fl_loader_open(&c, &e);
    assert_non_null(l);
    const fl_batch *b;
    int batches = 0;
    while (fl_loader_next(l, &b, &e) == 1) { /* the crop is the red box: red almost everywhere */
        batches++;
        for (int j = 0; j < b->n; j++) {
            const float *im = b->images + (size_t)j * 32 * 32 * 3;
            int red = 0;
            for (int k = 0; k < 32 * 32; k++) red += red_f(im + 3 * k);
            assert_true(red > 32 * 32 * 8 / 10);
            assert_int_equal(b->labels[j], (int)(b->items[j] % 5));
        }
    }
    assert_int_equal(batches, NITEMS / 5); /* drop_last */
    fl_loader_close(l);

    /* Detection eval: letterbox; every red pixel lies inside the sample's box. */
    c = base_config(d, FL_TASK_DETECT);
    c.augment = 0, c.epochs = 1;
    l = fl_loader_open(&c, &e);
    assert_non_null(l);
    int rc, samples = 0; /* a loader that fails at once must not pass by checking nothing */
    while ((rc = fl_loader_next(l, &b, &e)) == 1) {
        samples += b->n;
        for (int j = 0; j < b->n; j++) {
            assert_int_equal(b->nboxes[j], 1);
            fl_box bx = b->boxes[(size_t)j * b->max_boxes];
            const float *im = b->images + (size_t)j * 64 * 64 * 3;
            for (int y = 0; y < 64; y++)
                for (int x = 0; x < 64; x++)
                    if (red_f(im + 3 * (y * 64 + x)))
                        assert_true(x + 0.5f >= bx.x1 - 1 && x + 0.5f <= bx.x2 + 1 &&
                                    y + 0.5f >= bx.y1 - 1 && y + 0.5f <= bx.y2 + 1);
        }
    }
    if (rc != 0) fail_msg("detection eval loader: %s", e.msg);
    assert_int_equal(samples, NITEMS);
    fl_loader_close(l);
    free_dataset(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reid_batches_identical_for_1_2_3_workers),
        cmocka_unit_test(test_yolo_mosaic_batches_identical_for_1_2_3_workers),
        cmocka_unit_test(test_u8_output_matches_float),
        cmocka_unit_test(test_epoch_orders),
        cmocka_unit_test(test_balanced_sampler),
        cmocka_unit_test(test_bad_images),
        cmocka_unit_test(test_decode_bomb_and_budget),
        cmocka_unit_test(test_interrupt_and_early_close),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_eval_transforms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
