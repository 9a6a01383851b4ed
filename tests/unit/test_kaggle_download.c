/* The download engine against the loopback server: redirects without credentials, skip when
 * complete, resume with Range (byte-identical), dropped connections, 5xx and 429 retries,
 * MD5 from x-goog-hash, a full disk, servers that ignore Range, Hugging Face URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kaggle/kaggle.h"
#include "tests/kaggle/server_child.h"

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    fl_err e;
    char *x = fl_read_file(a, &la, &e), *y = fl_read_file(b, &lb, &e);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* The archive fetched straight from storage, as a reference copy. */
static char *reference_zip(ts_fx *f) {
    char *url = fl_strdupf("%s/storage/archive.zip", f->srv.base);
    char *ref = ts_path(f, "reference.zip");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_url(f->k, url, ref, NULL, &r, &e), 0);
    free(url);
    return ref;
}

static void test_ok_then_skip(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    fl_err e;
    fl_dl_result r;
    int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_true(r.md5_checked);
    assert_false(r.skipped);
    assert_int_equal(r.retries, 0);
    assert_true(r.bytes > 1000);
    assert_true(fl_is_zip(dest));
    assert_false(ts_exists(part));
    /* Complete and newer than Last-Modified: skipped without a body. */
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_true(r.skipped);
    assert_int_equal(r.transferred, 0);
    /* The storage host never saw credentials; the API did. */
    assert_int_equal(ts_server_violations(&f->srv), 0);
    assert_int_equal(ts_server_count(&f->srv, "storage", 0), 2);
    /* Older than Last-Modified (an hour ago on the server): downloaded again. */
    struct timespec old[2] = {{0, 0}, {0, 0}};
    old[0].tv_sec = old[1].tv_sec = time(NULL) - 7200;
    utimensat(AT_FDCWD, dest, old, 0);
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_false(r.skipped);
    assert_true(r.md5_checked);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "already complete, skipped"));
    assert_non_null(strstr(log, "comp.zip: ")); /* progress: bytes, time, rate */
    assert_non_null(strstr(log, "B/s"));
    free(log);
    /* Same size, newer, but different bytes (e.g. a crash before writeback): the MD5 from
     * x-goog-hash no longer matches, so it is downloaded again rather than skipped. */
    size_t len;
    char *good = fl_read_file(dest, &len, &e);
    char *bad = malloc(len);
    memset(bad, 0, len);
    assert_int_equal(fl_write_file_atomic(dest, bad, len, &e), 0);
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_false(r.skipped);
    char *again = fl_read_file(dest, NULL, &e);
    assert_memory_equal(again, good, len);
    free(again);
    free(good);
    free(bad);
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_stall_times_out_and_resumes(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("stall", NULL, NULL);
    fl_kaggle_free(f->k);
    f->o.stall_timeout_s = 1;
    fl_err e;
    f->k = fl_kaggle_new(&f->o, &e);
    char *dest = ts_path(f, "comp.zip");
    fl_dl_result r;
    int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    /* The server stays silent until the client hangs up (or, a minute later, gives up itself):
     * which of the two ended the stall is an event it reports, not a time to measure here. */
    char *stall = ts_server_stall(&f->srv, 0);
    if (!stall || strcmp(stall, "client hung up")) fail_msg("stalled GET: %s", stall ? stall : "none");
    free(stall);
    assert_true(r.resumed);
    assert_true(r.md5_checked);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "stalled: no data for 1s; retry 1/4"));
    free(log);
    free(dest);
    ts_fx_free(f);
}

static void test_drop_resumes_byte_identical(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("drop", NULL, NULL);
    char *dest = ts_path(f, "comp.zip");
    fl_err e;
    fl_dl_result r;
    int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_true(r.resumed);
    assert_true(r.retries >= 1);
    assert_true(r.md5_checked);
    assert_true(ts_server_count(&f->srv, "storage", 1) >= 1); /* a Range request arrived */
    char *ref = reference_zip(f);
    assert_true(same_file(dest, ref));
    free(ref);
    free(dest);
    ts_fx_free(f);
}

static void test_existing_part_resumes(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *ref = reference_zip(f);
    size_t len;
    fl_err e;
    char *data = fl_read_file(ref, &len, &e);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    assert_int_equal(fl_write_file_atomic(part, data, len / 2, &e), 0);
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_true(r.resumed);
    assert_true(r.md5_checked);
    assert_int_equal(r.transferred, len - len / 2);
    assert_int_equal(ts_server_count(&f->srv, "storage", 1), 1);
    assert_true(same_file(dest, ref));
    assert_false(ts_exists(part));
    free(data);
    free(ref);
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_complete_part_416_restarts(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *ref = reference_zip(f);
    size_t len;
    fl_err e;
    char *data = fl_read_file(ref, &len, &e);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    /* A crash after the last byte but before the rename: Range asks past the end (416). */
    assert_int_equal(fl_write_file_atomic(part, data, len, &e), 0);
    fl_dl_result r;
    int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_true(r.md5_checked);
    assert_true(same_file(dest, ref));
    assert_false(ts_exists(part));
    free(data);
    free(ref);
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_norange_restarts(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("norange", NULL, NULL);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    fl_err e;
    /* A stale .part that the server will not continue: the 200 answer replaces it. */
    assert_int_equal(fl_write_file_atomic(part, "garbage-garbage", 15, &e), 0);
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_false(r.resumed);
    assert_true(r.md5_checked);
    char *ref = reference_zip(f);
    assert_true(same_file(dest, ref));
    free(ref);
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_err500_then_success(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("err500", NULL, NULL);
    char *dest = ts_path(f, "comp.zip");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_int_equal(r.retries, 2); /* the API's 500, then storage's 500 */
    assert_true(r.md5_checked);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "HTTP 500; retry 1/4"));
    free(log);
    free(dest);
    ts_fx_free(f);
}

static void test_429_honours_retry_after(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("retry429", NULL, NULL);
    char *dest = ts_path(f, "comp.zip");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    /* Retry-After: 1, not the 0.05 s backoff: the server records an API call that comes before
     * the Retry-After it gave has passed as a violation, which ts_fx_free asserts are none. */
    assert_int_equal(ts_server_violations(&f->srv), 0);
    assert_int_equal(r.retries, 1);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "HTTP 429; retry 1/4 in 1.0s"));
    free(log);
    free(dest);
    ts_fx_free(f);
}

static void test_odd_headers(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("oddheaders", NULL, NULL);
    char *dest = ts_path(f, "comp.zip");
    fl_err e;
    fl_dl_result r;
    int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    /* Retry-After as an HTTP date 1-2 s ahead: no API call before it (the server's record). */
    assert_int_equal(ts_server_violations(&f->srv), 0);
    assert_int_equal(r.retries, 1);
    assert_false(r.md5_checked); /* a malformed md5 is no md5, not a mismatch */
    char *ref = reference_zip(f);
    assert_true(same_file(dest, ref));
    free(ref);
    free(dest);
    ts_fx_free(f);
}

static void test_bad_md5_fails_clean(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("badmd5", NULL, NULL);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "MD5 mismatch"));
    assert_non_null(strstr(e.msg, "gave up after 4 retries"));
    assert_false(ts_exists(dest));
    assert_false(ts_exists(part)); /* damaged data is not kept for a resume */
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_disk_full(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    fl_kaggle_free(f->k);
    f->o.fault_enospc_after = 20000;
    fl_err e;
    f->k = fl_kaggle_new(&f->o, &e);
    char *dest = ts_path(f, "comp.zip"), *part = ts_path(f, "comp.zip.part");
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "disk full"));
    assert_int_equal(r.retries, 0); /* not retried */
    assert_false(ts_exists(dest));
    assert_true(ts_exists(part)); /* kept: the next run resumes */
    /* With space again, the next run resumes and completes. */
    fl_kaggle_free(f->k);
    f->o.fault_enospc_after = 0;
    f->k = fl_kaggle_new(&f->o, &e);
    assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), 0);
    assert_true(r.resumed);
    assert_true(r.md5_checked);
    free(dest);
    free(part);
    ts_fx_free(f);
}

static void test_single_file_and_404(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    char *dest = ts_path(f, "train.csv");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_file(f->k, TS_COMP, "train.csv", dest, &r, &e), 0);
    char *d = fl_read_file(dest, NULL, &e);
    assert_non_null(strstr(d, "image,species,individual_id"));
    free(d);
    assert_int_equal(fl_kaggle_download_file(f->k, TS_COMP, "nope.csv", dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "404 Not Found"));
    assert_non_null(strstr(e.msg, "nope.csv"));
    assert_int_equal(r.http_status, 404);
    assert_int_equal(fl_kaggle_download_all(f->k, "no-such-comp", dest, &r, &e), -1);
    assert_non_null(strstr(e.msg, "404 Not Found: Competition not found"));
    assert_non_null(strstr(e.msg, "no-such-comp"));
    free(dest);
    ts_fx_free(f);
}

static void test_huggingface(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    fl_err e;
    fl_dl_result r;
    char *name = NULL;
    int rc = fl_hf_download(f->k, f->srv.base, "timm/tf_efficientnet_b7.ns_jft_in1k", NULL, f->dir,
                            NULL, &name, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(name, "model.safetensors");
    free(name);
    char *p = ts_path(f, "model.safetensors");
    size_t len;
    char *data = fl_read_file(p, &len, &e);
    assert_int_equal(len, 300000);
    /* Expected size and XXH3-128 digest: right ones pass, wrong ones fail without a file. */
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
    char hex[33];
    for (int i = 0; i < 16; i++) sprintf(hex + 2 * i, "%02x", c.digest[i]);
    unlink(p);
    fl_dl_expect ex = {.size = 300000, .xxh128 = hex};
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "timm/x", "model.safetensors", f->dir, &ex,
                                    NULL, &r, &e), 0);
    unlink(p);
    ex.size = 299999;
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "timm/x", NULL, f->dir, &ex, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "differs from the expected 299999"));
    assert_false(ts_exists(p));
    ex.size = -1;
    ex.xxh128 = "00000000000000000000000000000000";
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "timm/x", NULL, f->dir, &ex, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "XXH3-128"));
    assert_false(ts_exists(p));
    /* Bad repo names never reach the network. */
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "../etc", NULL, f->dir, NULL, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "owner/name"));
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "a/b", "../x", f->dir, NULL, NULL, &r, &e), -1);
    /* An explicit missing file is a 404 without fallback. */
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "a/b", "other.bin", f->dir, NULL, NULL, &r, &e), -1);
    assert_non_null(strstr(e.msg, "404"));
    free(data);
    free(p);
    ts_fx_free(f);
}

static void test_huggingface_fallback(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("hf404safetensors", NULL, NULL);
    fl_err e;
    fl_dl_result r;
    char *name = NULL;
    assert_int_equal(fl_hf_download(f->k, f->srv.base, "timm/tf_efficientnet_b0.ns_jft_in1k", NULL,
                                    f->dir, NULL, &name, &r, &e), 0);
    assert_string_equal(name, "pytorch_model.bin");
    free(name);
    char *p = ts_path(f, "pytorch_model.bin");
    assert_true(ts_exists(p));
    free(p);
    char *log = ts_fx_log(f);
    assert_non_null(strstr(log, "no model.safetensors, trying pytorch_model.bin"));
    free(log);
    ts_fx_free(f);
}

/* A 20 MB object: the MD5 thread is woken several times while the body arrives, on a fresh
 * download and after a resume from the middle. */
static void test_large_object_md5(void **state) {
    (void)state;
    char *dir = ts_tmpdir("big");
    char *src = fl_strdupf("%s/src.bin", dir);
    const char *extra[] = {"--size", "20000003", "--file", src, NULL};
    ts_fx *f = ts_fx_new("ok", NULL, extra);
    char *url = fl_strdupf("%s/storage/big.bin", f->srv.base);
    char *dest = ts_path(f, "big.bin"), *part = ts_path(f, "big.bin.part");
    fl_err e;
    fl_dl_result r;
    assert_int_equal(fl_kaggle_download_url(f->k, url, dest, NULL, &r, &e), 0);
    assert_true(r.md5_checked);
    assert_int_equal(r.bytes, 20000003);
    size_t len;
    char *data = fl_read_file(dest, &len, &e);
    assert_int_equal(fl_write_file_atomic(part, data, 12345678, &e), 0);
    unlink(dest);
    assert_int_equal(fl_kaggle_download_url(f->k, url, dest, NULL, &r, &e), 0);
    assert_true(r.resumed);
    assert_true(r.md5_checked);
    assert_int_equal(r.transferred, 20000003 - 12345678);
    char *again = fl_read_file(dest, &len, &e);
    assert_memory_equal(again, data, len);
    free(again);
    free(data);
    free(url);
    free(dest);
    free(part);
    ts_fx_free(f);
    fl_remove_tree(dir, &e);
    free(src);
    free(dir);
}

/* HTTPS against a self-signed loopback server: verification fails without its CA (no retry,
 * a clear message), works with ca_file, and a redirect down to plain http is refused. */
static void test_tls_verification(void **state) {
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        printf("skipped: openssl command not found (it makes the self-signed certificate)\n");
        skip();
    }
    char *dir = ts_tmpdir("tls");
    char *cert = fl_strdupf("%s/cert.pem", dir), *key = fl_strdupf("%s/key.pem", dir);
    char *cmd = fl_strdupf("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' "
                           "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                           ">/dev/null 2>&1", key, cert);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    const char *modes[] = {"ok", "downgrade"};
    for (int m = 0; m < 2; m++) {
        const char *extra[] = {"--tls", cert, key, NULL};
        ts_fx *f = ts_fx_new(modes[m], NULL, extra);
        snprintf(f->srv.base, sizeof f->srv.base, "https://127.0.0.1:%d", f->srv.port);
        snprintf(f->srv.ca, sizeof f->srv.ca, "%s", cert);
        fl_kaggle_free(f->k);
        f->o.base_url = f->srv.base;
        fl_err e;
        char *dest = ts_path(f, "comp.zip");
        fl_dl_result r;
        if (m == 0) {
            f->k = fl_kaggle_new(&f->o, &e); /* system CA store: the self-signed cert fails */
            assert_int_equal(fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e), -1);
            assert_non_null(strstr(e.msg, "TLS certificate verification failed"));
            assert_int_equal(r.retries, 0);
            fl_kaggle_free(f->k);
        }
        f->o.ca_file = cert;
        f->k = fl_kaggle_new(&f->o, &e);
        int rc = fl_kaggle_download_all(f->k, TS_COMP, dest, &r, &e);
        if (m == 0) {
            if (rc) fprintf(stderr, "%s\n", e.msg);
            assert_int_equal(rc, 0);
            assert_true(r.md5_checked);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(e.msg, "refusing a redirect from HTTPS to plain HTTP"));
            assert_false(ts_exists(dest));
        }
        free(dest);
        ts_fx_free(f);
    }
    fl_remove_tree(dir, &(fl_err){{0}});
    free(cert);
    free(key);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_then_skip),
        cmocka_unit_test(test_drop_resumes_byte_identical),
        cmocka_unit_test(test_stall_times_out_and_resumes),
        cmocka_unit_test(test_existing_part_resumes),
        cmocka_unit_test(test_complete_part_416_restarts),
        cmocka_unit_test(test_norange_restarts),
        cmocka_unit_test(test_err500_then_success),
        cmocka_unit_test(test_429_honours_retry_after),
        cmocka_unit_test(test_odd_headers),
        cmocka_unit_test(test_bad_md5_fails_clean),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_single_file_and_404),
        cmocka_unit_test(test_huggingface),
        cmocka_unit_test(test_huggingface_fallback),
        cmocka_unit_test(test_large_object_md5),
        cmocka_unit_test(test_tls_verification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
