/* MD5 against the RFC 1321 test suite (appendix A.5), streaming in odd pieces, and base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kaggle/kaggle.h"

static void md5_hex(const void *d, size_t n, size_t piece, char out[33]) {
    fl_md5 m;
    fl_md5_init(&m);
    const uint8_t *p = d;
    while (n) {
        size_t t = piece && piece < n ? piece : n;
        fl_md5_update(&m, p, t);
        p += t;
        n -= t;
    }
    uint8_t dg[16];
    fl_md5_final(&m, dg);
    for (int i = 0; i < 16; i++) sprintf(out + 2 * i, "%02x", dg[i]);
}

static void test_rfc1321_vectors(void **state) {
    (void)state;
    static const char *const v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    char hex[33];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        for (size_t piece = 0; piece < 8; piece += 3) {
            md5_hex(v[i][0], strlen(v[i][0]), piece, hex);
            assert_string_equal(hex, v[i][1]);
        }
    }
}

static void test_streaming_matches_oneshot(void **state) {
    (void)state;
    size_t n = 100003;
    uint8_t *d = malloc(n);
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)(i * 2654435761u >> 13);
    char a[33], b[33], c[33];
    md5_hex(d, n, 0, a);
    md5_hex(d, n, 63, b);
    md5_hex(d, n, 4097, c);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    /* 1,000,000 x 'a' (well-known value). */
    uint8_t *m = malloc(1000000);
    memset(m, 'a', 1000000);
    md5_hex(m, 1000000, 65536, a);
    assert_string_equal(a, "7707d6ae4e027c70eea2a935c2296f21");
    free(m);
    free(d);
}

static void test_base64(void **state) {
    (void)state;
    static const char *const v[][2] = {{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
                                       {"foo", "Zm9v"},   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < 7; i++) {
        char *enc = fl_base64_encode(v[i][0], strlen(v[i][0]));
        assert_string_equal(enc, v[i][1]);
        uint8_t out[16];
        size_t n = 99;
        assert_int_equal(fl_base64_decode(enc, strlen(enc), out, sizeof out, &n), 0);
        assert_int_equal(n, strlen(v[i][0]));
        assert_memory_equal(out, v[i][0], n);
        free(enc);
    }
    /* The x-goog-hash md5 of "" decodes to the empty-string digest. */
    uint8_t dg[16];
    size_t n;
    assert_int_equal(fl_base64_decode("1B2M2Y8AsgTpgAmY7PhCfg==", 24, dg, 16, &n), 0);
    assert_int_equal(n, 16);
    assert_int_equal(dg[0], 0xd4);
    assert_int_equal(dg[15], 0x7e);
    /* Bad input: bad characters, too small a buffer. */
    assert_int_equal(fl_base64_decode("Zm9v!", 5, dg, 16, &n), -1);
    assert_int_equal(fl_base64_decode("Zm9vYmFy", 8, dg, 3, &n), -1);
    assert_int_equal(fl_base64_decode("Z", 1, dg, 16, &n), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc1321_vectors),
        cmocka_unit_test(test_streaming_matches_oneshot),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
