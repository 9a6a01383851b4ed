/* Decompression bombs (issue 19 item 6): a few-KB progressive (or multi-scan, or CMYK) JPEG
 * whose header claims 11585 x 11585 pixels, under the 2^27-pixel cap, used to make libjpeg
 * allocate and touch a whole-image coefficient buffer (w*h*components*2 bytes, ~0.8-1 GB)
 * however small the scaled output. Each case decodes in a child process and reads the child's
 * peak RSS (wait4's ru_maxrss) against an idle child's, so the figures are the decode's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "runtime/image/image.h"

/* A w x h noise JPEG (pf TJPF_RGB or TJPF_CMYK), progressive if asked; malloc'd. */
static uint8_t *make_jpeg(int w, int h, int pf, int samp, int progressive, size_t *len) {
    int ps = tjPixelSize[pf];
    uint8_t *px = malloc((size_t)w * h * ps);
    assert_non_null(px);
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)w * h * ps; i++) s = s * 1103515245u + 12345u, px[i] = (uint8_t)(s >> 24);
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *buf = NULL;
    unsigned long n = 0;
    int flags = progressive ? TJFLAG_PROGRESSIVE : 0;
    if (tjCompress2(tj, px, w, 0, h, pf, &buf, &n, samp, 90, flags) != 0)
        fail_msg("tjCompress2: %s", tjGetErrorStr2(tj));
    uint8_t *out = malloc(n);
    assert_non_null(out);
    memcpy(out, buf, n);
    *len = n;
    tjFree(buf);
    tjDestroy(tj);
    free(px);
    return out;
}

/* Rewrites the SOF's height and width (the bomb: the data stays a 16x16 image's). */
static void set_dims(uint8_t *d, size_t n, int w, int h) {
    for (size_t i = 2; i + 9 < n; i++)
        if (d[i] == 0xFF && d[i + 1] >= 0xC0 && d[i + 1] <= 0xC2) {
            d[i + 5] = (uint8_t)(h >> 8), d[i + 6] = (uint8_t)h;
            d[i + 7] = (uint8_t)(w >> 8), d[i + 8] = (uint8_t)w;
            return;
        }
    fail_msg("no SOF");
}

typedef struct job {
    const uint8_t *d;
    size_t n;
    fl_decode_opts o;
    int ok;
    uint64_t budget_peak; /* the child's budget high-water mark (job 0 only) */
    char msg[FL_ERRLEN];
} job;

static void *decode_job(void *arg) {
    job *j = arg;
    fl_err e = {{0}};
    fl_image *img = fl_jpeg_decode(j->d, j->n, "bomb.jpg", &j->o, NULL, &e);
    j->ok = img != NULL;
    snprintf(j->msg, sizeof j->msg, "%s", e.msg);
    fl_image_free(img);
    return NULL;
}

/* Runs nthreads decodes of jobs in a child; returns the child's peak RSS in KiB and copies job
 * 0's outcome back through a pipe. */
static long child_peak_kib(job *jobs, int nthreads, job *result) {
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        pthread_t t[16];
        for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, decode_job, &jobs[i]);
        for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
        for (int i = 1; i < nthreads; i++)
            if (!jobs[i].ok) jobs[0] = jobs[i]; /* report a failure if any */
        if (nthreads)
            jobs[0].budget_peak = fl_decode_budget_peak(
                jobs[0].o.budget ? jobs[0].o.budget : fl_decode_budget_process());
        ssize_t w = nthreads ? write(fd[1], &jobs[0], sizeof jobs[0]) : 0;
        _exit(w < 0);
    }
    close(fd[1]);
    if (result && nthreads) {
        ssize_t got = read(fd[0], result, sizeof *result);
        assert_int_equal(got, (ssize_t)sizeof *result);
    }
    close(fd[0]);
    int st;
    struct rusage ru;
    assert_int_equal(wait4(pid, &st, 0, &ru), pid);
    assert_true(WIFEXITED(st));
    return ru.ru_maxrss;
}

#define MIB 1024L

/* Under ASan freed blocks sit in a quarantine and every block has redzones, so RSS bounds
 * tighter than "not a gigabyte" hold only in the plain build; the budget's own high-water mark
 * is checked in both. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_EXACT 0
#else
#define RSS_EXACT 1
#endif

typedef struct bomb_case {
    const char *what;
    int pf, samp, progressive, target;
} bomb_case;

static void test_bombs_stay_small(void **state) {
    (void)state;
    const bomb_case cases[] = {
        {"progressive 4:4:4, scaled to 32 px", TJPF_RGB, TJSAMP_444, 1, 32},
        {"progressive 4:4:4, full size", TJPF_RGB, TJSAMP_444, 1, 0},
        {"progressive CMYK, scaled to 32 px", TJPF_CMYK, TJSAMP_444, 1, 32},
        {"baseline CMYK, full size", TJPF_CMYK, TJSAMP_444, 0, 0},
    };
    long idle = child_peak_kib(NULL, 0, NULL);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const bomb_case *c = &cases[k];
        size_t n;
        uint8_t *d = make_jpeg(16, 16, c->pf, c->samp, c->progressive, &n);
        set_dims(d, n, 11585, 11585);
        assert_true(n < 8192);
        job j = {.d = d, .n = n, .o = {.target_w = c->target, .target_h = c->target}}, r;
        long peak = child_peak_kib(&j, 1, &r) - idle;
        printf("bomb: %s, %zu-byte file: peak +%ld MiB; %s\n", c->what, n, peak / MIB,
               r.ok ? "decoded" : r.msg);
        if (peak > 64 * MIB)
            fail_msg("%s: the decode of a %zu-byte file peaked at +%ld MiB", c->what, n,
                     peak / MIB);
        assert_false(r.ok);
        free(d);
    }
}

/* Six real progressive 4:4:4 decodes on six threads: under a shared budget that holds one and
 * a half of them they take turns (the peak holds about one), all succeed, and a budget smaller
 * than one decode is a clear error. */
static void test_threads_share_the_budget(void **state) {
    (void)state;
    fl_err e = {{0}};
    size_t n;
    uint8_t *d = make_jpeg(1536, 1536, TJPF_RGB, TJSAMP_444, 1, &n);
    fl_jpeg_cost c;
    assert_int_equal(fl_jpeg_cost_estimate(d, n, "p.jpg", &c, &e), 0);
    assert_true(c.progressive && c.multi_scan);
    assert_int_equal(c.coef_bytes, (uint64_t)192 * 192 * 64 * 2 * 3);
    uint64_t need = c.total + (uint64_t)1536 * 1536 * 3;
    long idle = child_peak_kib(NULL, 0, NULL);
    job one = {.d = d, .n = n}, r;
    long one_peak = child_peak_kib(&one, 1, &r) - idle;
    assert_true(r.ok);
    /* The estimate bounds what the decode really touched (and is not far above it). */
    printf("one %zu-byte 1536x1536 progressive decode: peak +%ld MiB, estimated %llu MiB\n", n,
           one_peak / MIB, (unsigned long long)(need >> 20));
    if (RSS_EXACT) {
        assert_true((uint64_t)one_peak * 1024 <= need + (UINT64_C(4) << 20));
        assert_true((uint64_t)one_peak * 1024 * 2 >= need);
    }

    fl_decode_budget *wide = fl_decode_budget_new(UINT64_C(1) << 40, &e);
    fl_decode_budget *tight = fl_decode_budget_new(need * 3 / 2, &e);
    assert_non_null(wide);
    assert_non_null(tight);
    job six[6];
    for (int i = 0; i < 6; i++) six[i] = (job){.d = d, .n = n, .o = {.budget = wide}};
    long wide_peak = child_peak_kib(six, 6, &r) - idle;
    assert_true(r.ok);
    for (int i = 0; i < 6; i++) six[i].o.budget = tight;
    long tight_peak = child_peak_kib(six, 6, &r) - idle;
    if (!r.ok) fail_msg("a decode under the tight budget failed: %s", r.msg);
    printf("six on 6 threads: peak +%ld MiB unbudgeted, +%ld MiB under a %llu MiB budget "
           "(held at most %llu MiB)\n", wide_peak / MIB, tight_peak / MIB,
           (unsigned long long)(need * 3 / 2 >> 20), (unsigned long long)(r.budget_peak >> 20));
    assert_true(r.budget_peak <= need * 3 / 2);
    assert_true(r.budget_peak >= need);
    if (RSS_EXACT) assert_true((uint64_t)tight_peak * 1024 <= need * 3 / 2 + (UINT64_C(16) << 20));

    fl_decode_budget_set_limit(tight, need - 1);
    job small = {.d = d, .n = n, .o = {.budget = tight}};
    decode_job(&small);
    assert_false(small.ok);
    if (!strstr(small.msg, "bomb.jpg") || !strstr(small.msg, "whole decode budget"))
        fail_msg("budget too small: \"%s\"", small.msg);
    /* The per-image limit, configurable: the same file against 8 MiB. */
    job capped = {.d = d, .n = n, .o = {.max_bytes = UINT64_C(8) << 20}};
    decode_job(&capped);
    assert_false(capped.ok);
    if (!strstr(capped.msg, "progressive") || !strstr(capped.msg, "per-image limit of 8 MiB"))
        fail_msg("per-image limit: \"%s\"", capped.msg);
    fl_decode_budget_free(wide);
    fl_decode_budget_free(tight);
    free(d);
}

/* The header parse behind the estimate: single-scan files need no coefficient buffer, and a
 * header it cannot follow is an error, not a guess. */
static void test_cost_estimate(void **state) {
    (void)state;
    fl_err e = {{0}};
    size_t n;
    uint8_t *d = make_jpeg(64, 48, TJPF_RGB, TJSAMP_420, 0, &n);
    fl_jpeg_cost c;
    assert_int_equal(fl_jpeg_cost_estimate(d, n, "b.jpg", &c, &e), 0);
    assert_false(c.multi_scan);
    assert_int_equal(c.coef_bytes, 0);
    set_dims(d, n, 11585, 11585); /* a single-scan "bomb" scaled to 32 px stays small */
    job j = {.d = d, .n = n, .o = {.target_w = 32, .target_h = 32}};
    long idle = child_peak_kib(NULL, 0, NULL);
    long peak = child_peak_kib(&j, 1, &j) - idle;
    printf("baseline 4:2:0 bomb scaled to 32 px: peak +%ld MiB (%s)\n", peak / MIB, j.msg);
    assert_true(peak < 64 * MIB);
    free(d);
    d = make_jpeg(64, 48, TJPF_RGB, TJSAMP_420, 1, &n);
    assert_int_equal(fl_jpeg_cost_estimate(d, n, "p.jpg", &c, &e), 0);
    assert_true(c.progressive && c.multi_scan);
    /* Y 8x6 blocks; Cb, Cr 4x3 each. */
    assert_int_equal(c.coef_bytes, (uint64_t)(8 * 6 + 2 * 4 * 3) * 128);
    assert_int_equal(fl_jpeg_cost_estimate(d, 200 > n ? n / 4 : 200, "cut.jpg", &c, &e), -1);
    assert_non_null(strstr(e.msg, "cut.jpg"));
    free(d);
}

/* A CPU bomb: a progressive file whose last scan is repeated 600 times (each scan walks the
 * whole coefficient buffer) is refused before decoding; its normal version has ~10 scans. */
static void test_scan_limit(void **state) {
    (void)state;
    fl_err e = {{0}};
    size_t n;
    uint8_t *d = make_jpeg(256, 256, TJPF_RGB, TJSAMP_420, 1, &n);
    fl_jpeg_cost c;
    assert_int_equal(fl_jpeg_cost_estimate(d, n, "p.jpg", &c, &e), 0);
    assert_true(c.n_scans >= 2 && c.n_scans < 20);
    size_t last = 0;
    for (size_t i = 2; i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xDA) last = i;
    size_t chunk = n - 2 - last, reps = 600, m = last + chunk * reps + 2;
    uint8_t *big = malloc(m);
    assert_non_null(big);
    memcpy(big, d, last);
    for (size_t r = 0; r < reps; r++) memcpy(big + last + r * chunk, d + last, chunk);
    big[m - 2] = 0xFF, big[m - 1] = 0xD9;
    assert_int_equal(fl_jpeg_cost_estimate(big, m, "many.jpg", &c, &e), 0);
    assert_true(c.n_scans >= 600);
    fl_image *img = fl_jpeg_decode(big, m, "many.jpg", NULL, NULL, &e);
    assert_null(img);
    if (!strstr(e.msg, "many.jpg") || !strstr(e.msg, "scans"))
        fail_msg("scan bomb: \"%s\"", e.msg);
    img = fl_jpeg_decode(d, n, "p.jpg", NULL, NULL, &e);
    if (!img) fail_msg("%s", e.msg);
    fl_image_free(img);
    free(big);
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bombs_stay_small),
        cmocka_unit_test(test_threads_share_the_budget),
        cmocka_unit_test(test_cost_estimate),
        cmocka_unit_test(test_scan_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
