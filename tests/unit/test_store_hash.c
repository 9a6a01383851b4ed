/* Digests: hex round trip, XXH3-128 parity of fl_hash_file and the streaming hasher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "artifacts/store.h"

static void canonical(XXH128_hash_t h, fl_digest *d) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(d->b, c.digest, 16);
}

static void test_hex_round_trip(void **state) {
    (void)state;
    fl_digest d, back;
    for (int i = 0; i < 16; i++) d.b[i] = (uint8_t)(i * 17 + 3);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&d, hex);
    assert_int_equal(strlen(hex), 32);
    assert_string_equal(hex, "031425364758697a8b9cadbecfe0f102");
    assert_int_equal(fl_digest_from_hex(hex, &back), 0);
    assert_true(fl_digest_eq(&d, &back));
    /* Upper case is accepted on input; output is always lower case. */
    assert_int_equal(fl_digest_from_hex("031425364758697A8B9CADBECFE0F102", &back), 0);
    assert_true(fl_digest_eq(&d, &back));
    back.b[15] ^= 1;
    assert_false(fl_digest_eq(&d, &back));
}

static void test_hex_malformed(void **state) {
    (void)state;
    fl_digest d;
    assert_int_equal(fl_digest_from_hex("", &d), -1);
    assert_int_equal(fl_digest_from_hex(NULL, &d), -1);
    assert_int_equal(fl_digest_from_hex("0314253647586970", &d), -1);                   /* short */
    assert_int_equal(fl_digest_from_hex("03142536475869708192a3b4c5d6e7f80", &d), -1);  /* long */
    assert_int_equal(fl_digest_from_hex("0314253647586970819za3b4c5d6e7f8", &d), -1);   /* bad digit */
    assert_int_equal(fl_digest_from_hex("03142536475869708192a3b4c5d6e7f\n", &d), -1);
}

static char *write_tmp(const void *data, size_t len) {
    char *p = strdup("/tmp/fluke-hash-XXXXXX");
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return p;
}

/* Sizes around the one-shot / streaming boundary (64 KiB) and the 1 MiB read buffer. */
static void test_hash_file_matches_xxh3(void **state) {
    (void)state;
    size_t sizes[] = {0, 1, 100, 65535, 65536, 65537, 1 << 20, (1 << 20) + 65536 + 7, 3u << 20};
    size_t max = 3u << 20;
    uint8_t *buf = malloc(max);
    for (size_t i = 0; i < max; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        char *p = write_tmp(buf, sizes[k]);
        fl_digest got, want;
        fl_err e = {0};
        assert_int_equal(fl_hash_file(p, &got, &e), 0);
        canonical(XXH3_128bits(buf, sizes[k]), &want);
        assert_true(fl_digest_eq(&got, &want));
        /* The streaming hasher in odd-sized pieces gives the same digest. */
        fl_hasher *h = fl_hasher_new();
        for (size_t off = 0; off < sizes[k];) {
            size_t n = sizes[k] - off < 4099 ? sizes[k] - off : 4099;
            fl_hasher_update(h, buf + off, n);
            off += n;
        }
        fl_digest streamed;
        fl_hasher_digest(h, &streamed);
        fl_hasher_free(h);
        assert_true(fl_digest_eq(&streamed, &want));
        unlink(p);
        free(p);
    }
    free(buf);
}

/* Known answer: XXH128 of "abc" as printed by `xxhsum -H2` (canonical big-endian). */
static void test_known_answer(void **state) {
    (void)state;
    char *p = write_tmp("abc", 3);
    fl_digest d;
    fl_err e = {0};
    assert_int_equal(fl_hash_file(p, &d, &e), 0);
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(&d, hex);
    fl_digest want;
    canonical(XXH3_128bits("abc", 3), &want);
    char whex[FL_DIGEST_HEX];
    fl_digest_hex(&want, whex);
    assert_string_equal(hex, whex);
    assert_string_equal(hex, "06b05ab6733a618578af5f94892f3950");
    unlink(p);
    free(p);
}

static void test_hash_file_errors(void **state) {
    (void)state;
    fl_digest d;
    fl_err e = {0};
    assert_int_equal(fl_hash_file("/nonexistent/fluke/x", &d, &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/fluke/x"));
    e.msg[0] = '\0';
    assert_int_equal(fl_hash_file("/tmp", &d, &e), -1); /* a directory */
    assert_non_null(strstr(e.msg, "/tmp"));
    /* A FIFO is refused at once instead of blocking on open or read. */
    char fifo[] = "/tmp/fluke-hash-fifo-XXXXXX";
    int fd = mkstemp(fifo);
    close(fd);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(fl_hash_file(fifo, &d, &e), -1);
    assert_non_null(strstr(e.msg, "not a regular file"));
    unlink(fifo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_hex_malformed),
        cmocka_unit_test(test_hash_file_matches_xxh3),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_hash_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
