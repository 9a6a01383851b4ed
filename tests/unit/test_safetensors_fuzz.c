/* Runs the safetensors fuzz target (tests/fuzz/fuzz_safetensors.c, included here without its
 * main) over a corpus of corrupted files derived from a valid one: every truncation, single-byte
 * substitutions at every position, and random multi-byte mutations with the header length kept
 * consistent. The target aborts on any broken reader promise; ASan/UBSan catch the rest. */
#define FL_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz_safetensors.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/rng.h"

static unsigned char *valid_file(size_t *len) {
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    static const uint16_t h[2] = {0x3C00, 0xBC00};
    static const double x = 2.5;
    static const int64_t sw[2] = {2, 3}, sh[1] = {2}, sz[2] = {0, 4};
    static const uint8_t u[3] = {1, 2, 3};
    static const int64_t su[1] = {3};
    fl_st_entry v[5] = {
        {"blocks.0.conv.weight", FL_ST_F32, 2, sw, w}, {"h", FL_ST_F16, 1, sh, h},
        {"x", FL_ST_F64, 0, NULL, &x},                 {"empty", FL_ST_BF16, 2, sz, NULL},
        {"mask", FL_ST_U8, 1, su, u},
    };
    fl_st_kv meta[1] = {{"format", "pt"}};
    fl_err e;
    unsigned char *img = fl_st_serialize(v, 5, meta, 1, len, &e);
    assert_non_null(img);
    return img;
}

static int accepts(const unsigned char *b, size_t len) {
    fl_err e;
    fl_st_file *f = fl_st_parse(b, len, "x", &e);
    fl_st_close(f);
    return f != NULL;
}

static void test_every_truncation_rejected(void **state) {
    (void)state;
    size_t len;
    unsigned char *img = valid_file(&len);
    assert_true(accepts(img, len));
    LLVMFuzzerTestOneInput(img, len);
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1); /* exact size, so ASan sees any over-read */
        memcpy(cut, img, n);
        assert_false(accepts(cut, n));
        LLVMFuzzerTestOneInput(cut, n);
        free(cut);
    }
    free(img);
}

static void test_single_byte_substitutions(void **state) {
    (void)state;
    size_t len;
    unsigned char *img = valid_file(&len);
    static const unsigned char subst[] = {0x00, 0xff, '"', '[', ']', '{', '}', ',', ':', '9',
                                          '-', ' ', '.', 'e', 0x80, 0xc3};
    int acc = 0, rej = 0;
    unsigned char *m = malloc(len);
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < sizeof subst + 1; k++) {
            memcpy(m, img, len);
            m[i] = k < sizeof subst ? subst[k] : (unsigned char)(img[i] ^ 1);
            LLVMFuzzerTestOneInput(m, len);
            if (accepts(m, len)) acc++;
            else rej++;
        }
    /* data bytes and padding spaces may change freely; structure bytes may not */
    assert_true(acc > 0 && rej > 0);
    free(m);
    free(img);
}

static void test_random_mutations(void **state) {
    (void)state;
    size_t len;
    unsigned char *img = valid_file(&len);
    fl_rng r;
    fl_rng_init(&r, 1234, 0);
    unsigned char *m = malloc(len + 64);
    for (int it = 0; it < 20000; it++) {
        size_t n = len;
        memcpy(m, img, len);
        int edits = 1 + (int)fl_rng_below(&r, 4);
        for (int k = 0; k < edits; k++) {
            uint32_t kind = fl_rng_below(&r, 3);
            size_t at = fl_rng_below(&r, (uint32_t)n);
            if (kind == 0) {
                m[at] = (unsigned char)fl_rng_below(&r, 256);
            } else if (kind == 1 && n < len + 60) { /* insert a byte */
                memmove(m + at + 1, m + at, n - at);
                m[at] = (unsigned char)" 0123456789[]{}\",:"[fl_rng_below(&r, 18)];
                n++;
            } else if (n > 9) { /* delete a byte */
                memmove(m + at, m + at + 1, n - at - 1);
                n--;
            }
        }
        /* half the time keep the header length in step with inserted/deleted header bytes */
        if (fl_rng_below(&r, 2)) {
            uint64_t hl = 0;
            for (int i = 7; i >= 0; i--) hl = (hl << 8) | img[i];
            hl += n - len; /* wraps harmlessly when n < len */
            for (int i = 0; i < 8; i++) m[i] = (unsigned char)(hl >> (8 * i));
        }
        unsigned char *exact = malloc(n);
        memcpy(exact, m, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
    }
    free(m);
    free(img);
}

/* Hand-made corrupted files on disk, read through fl_st_open like real checkpoints. */
static void test_corrupted_files_on_disk(void **state) {
    (void)state;
    static const char *const hdrs[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", /* overlap */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", /* hole */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", /* size mismatch */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", /* out of range */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",  /* bad JSON */
        "{\"a\":{\"dtype\":\"X9\",\"shape\":[2],\"data_offsets\":[0,8]}}",  /* bad dtype */
    };
    char dir[] = "/tmp/fl_st_fuzz_XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        size_t hn = strlen(hdrs[i]), len = 8 + hn + 8;
        unsigned char *b = calloc(1, len);
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hn >> (8 * k));
        memcpy(b + 8, hdrs[i], hn);
        char *p = fl_strdupf("%s/bad%zu.safetensors", dir, i);
        fl_err e;
        assert_int_equal(fl_write_file_atomic(p, b, len, &e), 0);
        assert_null(fl_st_open(p, &e));
        assert_non_null(strstr(e.msg, p)); /* the message names the file */
        size_t rl;
        char *back = fl_read_file(p, &rl, &e);
        LLVMFuzzerTestOneInput((const uint8_t *)back, rl);
        free(back), free(p), free(b);
    }
    fl_err e;
    assert_int_equal(fl_remove_tree(dir, &e), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_single_byte_substitutions),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_corrupted_files_on_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
