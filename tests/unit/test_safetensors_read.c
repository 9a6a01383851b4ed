/* safetensors reader: every validation rule of SPECS.md section 7 on hand-made files, with the
 * exact error text, plus dtype conversion and unaligned data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

/* 8-byte LE length + header + data, in a malloc'd buffer. */
static unsigned char *mk(const char *hdr, const void *data, size_t dlen, size_t *len) {
    size_t n = strlen(hdr);
    unsigned char *b = malloc(8 + n + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, hdr, n);
    if (dlen) memcpy(b + 8 + n, data, dlen);
    *len = 8 + n + dlen;
    return b;
}

/* Parses hdr+data, expects failure with `want` inside the message. */
static void expect_fail(const char *hdr, size_t dlen, const char *want) {
    unsigned char zeros[256] = {0};
    size_t len;
    unsigned char *b = mk(hdr, zeros, dlen, &len);
    fl_err e = {{0}};
    fl_st_file *f = fl_st_parse(b, len, "x.safetensors", &e);
    if (f || !strstr(e.msg, want)) {
        print_error("header %s\nwanted: %s\ngot: %s\n", hdr, want, f ? "(accepted)" : e.msg);
        fail();
    }
    assert_true(strncmp(e.msg, "x.safetensors", 13) == 0);
    free(b);
}

static void test_valid_file_and_lookup(void **state) {
    (void)state;
    float v[6] = {1, 2, 3, 4, 5, 6};
    size_t len;
    unsigned char *b = mk("{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}   ",
                          v, sizeof v, &len);
    fl_err e;
    fl_st_file *f = fl_st_parse(b, len, "x.safetensors", &e);
    assert_non_null(f);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->t[0].name, "b"); /* header order */
    assert_string_equal(fl_st_meta(f, "format"), "pt");
    assert_null(fl_st_meta(f, "nope"));
    const fl_st_tensor *a = fl_st_find(f, "a");
    assert_non_null(a);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[1], 2);
    assert_int_equal(a->numel, 4);
    size_t n;
    float *bv = fl_st_read_f32(f, "b", &n, &e);
    assert_non_null(bv);
    assert_int_equal(n, 2);
    assert_true(bv[0] == 5 && bv[1] == 6);
    free(bv);
    assert_null(fl_st_read_f32(f, "zz", &n, &e));
    assert_non_null(strstr(e.msg, "no tensor 'zz'"));
    fl_st_close(f);
    free(b);
}

static void test_size_dtype_mismatch_message(void **state) {
    (void)state;
    expect_fail("{\"blocks.0.bn1.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}",
                12,
                "x.safetensors: tensor 'blocks.0.bn1.weight': data_offsets [0, 12] but F32 [4] "
                "needs 16 bytes");
    expect_fail("{\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
                "tensor 'h': data_offsets [0, 24] but F16 [2, 3] needs 12 bytes");
}

static void test_truncated(void **state) {
    (void)state;
    fl_err e;
    unsigned char tiny[5] = {1, 0, 0, 0, 0};
    assert_null(fl_st_parse(tiny, sizeof tiny, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "too short for the 8-byte header length"));
    /* header length promises more than the file has */
    size_t len;
    unsigned char *b = mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd",
                          4, &len);
    assert_null(fl_st_parse(b, 20, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "only 12 bytes follow (truncated?)"));
    /* data cut short */
    assert_null(fl_st_parse(b, len - 1, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "tensor 'a': data_offsets [0, 4] beyond the 3 data bytes"));
    /* extra trailing bytes */
    unsigned char *c = realloc(b, len + 4);
    memset(c + len, 0, 4);
    assert_null(fl_st_parse(c, len + 4, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "tensors end at data byte 4 but the file has 8 data bytes"));
    free(c);
}

static void test_overlap_hole_out_of_range(void **state) {
    (void)state;
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' (which ends at 8)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                12, "tensor 'b': data_offsets [8, 12] leave a hole at bytes [4, 8)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                "leave a hole at bytes [0, 4)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,104]}}", 4,
                "beyond the 4 data bytes");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,3]}}", 4,
                "end before begin");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}", 4,
                "not non-negative integers");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.5]}}", 4,
                "not non-negative integers");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                "data_offsets must be [begin, end]");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                2, "tensor 'a' appears twice");
    expect_fail("{}", 4, "no tensors but 4 data bytes");
}

static void test_oversized_header(void **state) {
    (void)state;
    unsigned char b[16] = {0};
    uint64_t n = FL_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    fl_err e;
    assert_null(fl_st_parse(b, sizeof b, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "header length 100000001 exceeds the limit"));
    memset(b, 0xff, 8); /* 2^64-1: no overflow in the N + 8 check */
    assert_null(fl_st_parse(b, sizeof b, "x.safetensors", &e));
    assert_non_null(strstr(e.msg, "exceeds the limit"));
}

static void test_bad_json_and_fields(void **state) {
    (void)state;
    expect_fail("{\"a\":{\"dtype\":\"F32\",", 0, "header is not valid JSON");
    expect_fail("[1, 2]", 0, "header is not a JSON object");
    expect_fail("{} x", 0, "trailing bytes after the header JSON");
    expect_fail("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                "tensor 'a': unknown dtype 'F33'");
    expect_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing or non-string dtype");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                "shape[0] is not a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4,
                "missing or non-array shape");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
                4, "9 dimensions, more than the 8 supported");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                "\"data_offsets\":[0,4]}}",
                4, "shape overflows");
    expect_fail("{\"a\":7}", 0, "tensor 'a': entry is not an object");
    expect_fail("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is not a string");
    expect_fail("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_fail("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "empty name");
    expect_fail("{\"\xc3\x28\":1}", 0, "header is not valid UTF-8 (byte 2 of the header)");
    expect_fail("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"); /* surrogate */
    expect_fail("{\"\xc0\xaf\":1}", 0, "not valid UTF-8");     /* overlong */
    expect_fail("{", 0, "too short for a JSON object");
}

static void test_padding_scalars_zero_size_all_dtypes(void **state) {
    (void)state;
    /* every dtype, a scalar, a zero-size tensor and UTF-8 names; header padded with spaces */
    const char *hdr =
        "{\"\xc3\xa9t\xc3\xa9\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]},"
        "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
        "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[2,3]},"
        "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[3,4]},"
        "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[4,5]},"
        "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[5,7]},"
        "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[7,9]},"
        "\"bf\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[9,11]},"
        "\"f16\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[11,13]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[13,13]},"
        "\"i32\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[13,17]},"
        "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[17,21]},"
        "\"f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[21,25]},"
        "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[25,33]},"
        "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[33,41]},"
        "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[41,49]}}       ";
    unsigned char data[49] = {0};
    uint16_t bf = 0x4049; /* 3.140625 */
    memcpy(data + 9, &bf, 2);
    uint16_t h = 0xC500; /* -5.0 */
    memcpy(data + 11, &h, 2);
    float f = 0.1f;
    memcpy(data + 21, &f, 4); /* offset 21: unaligned */
    double d = 1.0 / 3.0;
    memcpy(data + 25, &d, 8);
    int64_t i64 = -7; /* integers convert as load_state_dict's copy_ does */
    memcpy(data + 33, &i64, 8);
    size_t len;
    unsigned char *b = mk(hdr, data, sizeof data, &len);
    fl_err e;
    fl_st_file *fl = fl_st_parse(b, len, "x.safetensors", &e);
    if (!fl) print_error("%s\n", e.msg);
    assert_non_null(fl);
    assert_int_equal(fl->n, 16);
    assert_non_null(fl_st_find(fl, "\xc3\xa9t\xc3\xa9"));
    const fl_st_tensor *sc = fl_st_find(fl, "i32");
    assert_int_equal(sc->ndim, 0);
    assert_int_equal(sc->numel, 1);
    assert_int_equal(fl_st_find(fl, "empty")->numel, 0);
    float out;
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "bf"), &out, 1, &e), 0);
    assert_true(out == 3.140625f);
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "f16"), &out, 1, &e), 0);
    assert_true(out == -5.0f);
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "f32"), &out, 1, &e), 0);
    assert_true(out == 0.1f);
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "f64"), &out, 1, &e), 0);
    assert_true(out == (float)(1.0 / 3.0));
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "i64"), &out, 1, &e), 0);
    assert_true(out == -7.0f);
    assert_false(fl_st_f32_convertible(FL_ST_F8_E4M3));
    assert_int_equal(fl_st_to_f32(fl, fl_st_find(fl, "f32"), &out, 2, &e), -1);
    assert_non_null(strstr(e.msg, "destination holds 2 values, tensor has 1"));
    fl_st_close(fl);
    free(b);
}

static void test_half_conversion_edge_values(void **state) {
    (void)state;
    /* normal, largest, smallest normal, subnormals, zeros, infinities, NaN */
    uint16_t h[] = {0x3C00, 0x7BFF, 0x0400, 0x0001, 0x03FF, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x3555};
    float want[] = {1.0f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f,
                    6.097555160522461e-05f, -0.0f, INFINITY, -INFINITY, NAN, 0.333251953125f};
    char hdr[128];
    snprintf(hdr, sizeof hdr, "{\"h\":{\"dtype\":\"F16\",\"shape\":[10],\"data_offsets\":[0,20]}}");
    size_t len;
    unsigned char *b = mk(hdr, h, sizeof h, &len);
    fl_err e;
    fl_st_file *f = fl_st_parse(b, len, "x.safetensors", &e);
    assert_non_null(f);
    float out[10];
    assert_int_equal(fl_st_to_f32(f, &f->t[0], out, 10, &e), 0);
    for (int i = 0; i < 10; i++) {
        if (isnan(want[i])) assert_true(isnan(out[i]));
        else assert_memory_equal(&out[i], &want[i], 4);
    }
    fl_st_close(f);
    free(b);
}

static void test_open_missing_file(void **state) {
    (void)state;
    fl_err e;
    assert_null(fl_st_open("/nonexistent/dir/w.safetensors", &e));
    assert_non_null(strstr(e.msg, "/nonexistent/dir/w.safetensors"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file_and_lookup),
        cmocka_unit_test(test_size_dtype_mismatch_message),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_overlap_hole_out_of_range),
        cmocka_unit_test(test_oversized_header),
        cmocka_unit_test(test_bad_json_and_fields),
        cmocka_unit_test(test_padding_scalars_zero_size_all_dtypes),
        cmocka_unit_test(test_half_conversion_edge_values),
        cmocka_unit_test(test_open_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
