/* safetensors writer, sharded sets and loading by name (strict and non-strict). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/safetensors.h"

typedef struct tmpdir {
    char path[256];
} tmpdir;

static void mkdtmp(tmpdir *d) {
    snprintf(d->path, sizeof d->path, "/tmp/fl_st_test_XXXXXX");
    assert_non_null(mkdtemp(d->path));
}

static void rmtmp(tmpdir *d) {
    fl_err e;
    assert_int_equal(fl_remove_tree(d->path, &e), 0);
}

static void test_roundtrip_metadata_padding_atomic(void **state) {
    (void)state;
    tmpdir d;
    mkdtmp(&d);
    char *path = fl_strdupf("%s/m.safetensors", d.path);
    float w[6] = {1, -2, 3.5f, 4, 5, 6};
    uint16_t h[3] = {0x3C00, 0x4000, 0x4200};
    double x = 0.25;
    int64_t sw[2] = {2, 3}, sh[1] = {3};
    fl_st_entry v[3] = {
        {"conv.weight", FL_ST_F32, 2, sw, w},
        {"half \"quoted\"\n", FL_ST_F16, 1, sh, h},
        {"scalar", FL_ST_F64, 0, NULL, &x},
    };
    fl_st_kv meta[2] = {{"format", "pt"}, {"step", "12"}};
    fl_err e;
    assert_int_equal(fl_st_write(path, v, 3, meta, 2, &e), 0);
    /* nothing but the file left in the directory (the temporary was renamed) */
    DIR *dir = opendir(d.path);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(dir)))
        if (de->d_name[0] != '.') files++;
    closedir(dir);
    assert_int_equal(files, 1);
    /* the streamed file is byte for byte the in-memory image */
    size_t flen = 0, ilen = 0;
    char *bytes = fl_read_file(path, &flen, &e);
    unsigned char *img = fl_st_serialize(v, 3, meta, 2, &ilen, &e);
    assert_non_null(bytes);
    assert_non_null(img);
    assert_int_equal(flen, ilen);
    assert_memory_equal(bytes, img, ilen);
    free(bytes), free(img);
    fl_st_file *f = fl_st_open(path, &e);
    if (!f) print_error("%s\n", e.msg);
    assert_non_null(f);
    assert_int_equal(f->data_start % 8, 0);
    assert_int_equal(f->n, 3);
    assert_string_equal(fl_st_meta(f, "step"), "12");
    const fl_st_tensor *t = fl_st_find(f, "half \"quoted\"\n");
    assert_non_null(t);
    assert_int_equal(t->dtype, FL_ST_F16);
    float out[6];
    assert_int_equal(fl_st_to_f32(f, t, out, 3, &e), 0);
    assert_true(out[0] == 1 && out[1] == 2 && out[2] == 3);
    assert_int_equal(fl_st_to_f32(f, fl_st_find(f, "conv.weight"), out, 6, &e), 0);
    assert_memory_equal(out, w, sizeof w);
    assert_int_equal(fl_st_to_f32(f, fl_st_find(f, "scalar"), out, 1, &e), 0);
    assert_true(out[0] == 0.25f);
    fl_st_close(f);
    /* overwrite replaces atomically */
    assert_int_equal(fl_st_write(path, v, 1, NULL, 0, &e), 0);
    f = fl_st_open(path, &e);
    assert_non_null(f);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->nmeta, 0);
    fl_st_close(f);
    free(path);
    rmtmp(&d);
}

static void test_write_rejects_bad_entries(void **state) {
    (void)state;
    float w[2] = {0};
    int64_t s1[1] = {2}, sneg[1] = {-1};
    fl_err e;
    size_t len;
    fl_st_entry dup[2] = {{"a", FL_ST_F32, 1, s1, w}, {"a", FL_ST_F32, 1, s1, w}};
    assert_null(fl_st_serialize(dup, 2, NULL, 0, &len, &e));
    assert_non_null(strstr(e.msg, "tensor 'a' given twice"));
    fl_st_entry meta[1] = {{"__metadata__", FL_ST_F32, 1, s1, w}};
    assert_null(fl_st_serialize(meta, 1, NULL, 0, &len, &e));
    assert_non_null(strstr(e.msg, "invalid name '__metadata__'"));
    fl_st_entry neg[1] = {{"n", FL_ST_F32, 1, sneg, w}};
    assert_null(fl_st_serialize(neg, 1, NULL, 0, &len, &e));
    assert_non_null(strstr(e.msg, "negative shape[0]"));
    fl_st_entry nodata[1] = {{"n", FL_ST_F32, 1, s1, NULL}};
    assert_null(fl_st_serialize(nodata, 1, NULL, 0, &len, &e));
    assert_non_null(strstr(e.msg, "tensor 'n': no data"));
    assert_int_equal(fl_st_write("/nonexistent/dir/x.safetensors", nodata, 1, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/x.safetensors"));
    /* an empty table is a valid file */
    unsigned char *img = fl_st_serialize(NULL, 0, NULL, 0, &len, &e);
    assert_non_null(img);
    fl_st_file *f = fl_st_parse(img, len, "empty", &e);
    assert_non_null(f);
    assert_int_equal(f->n, 0);
    fl_st_close(f);
    free(img);
}

/* A little "graph": conv weight, bn weight/bias/running stats. */
typedef struct model {
    float cw[2 * 3 * 1 * 1], bw[2], bb[2], rm[2], rv[2];
    fl_param p[5];
    fl_param_list pl;
} model;

static void model_init(model *m, float base) {
    for (int i = 0; i < 6; i++) m->cw[i] = base + (float)i;
    for (int i = 0; i < 2; i++)
        m->bw[i] = base + 10 + (float)i, m->bb[i] = base + 20 + (float)i,
        m->rm[i] = base + 30 + (float)i, m->rv[i] = base + 40 + (float)i;
    fl_param p[5] = {
        {"conv.weight", m->cw, NULL, 6, 4, {2, 3, 1, 1}, 0, 0, 0, NULL},
        {"bn.weight", m->bw, NULL, 2, 1, {2}, 1, 0, 0, NULL},
        {"bn.bias", m->bb, NULL, 2, 1, {2}, 1, 0, 0, NULL},
        {"bn.running_mean", m->rm, NULL, 2, 1, {2}, 1, 1, 0, NULL},
        {"bn.running_var", m->rv, NULL, 2, 1, {2}, 1, 1, 0, NULL},
    };
    memcpy(m->p, p, sizeof p);
    m->pl = (fl_param_list){m->p, 5};
}

static void test_params_roundtrip_and_strict_errors(void **state) {
    (void)state;
    tmpdir d;
    mkdtmp(&d);
    char *path = fl_strdupf("%s/w.safetensors", d.path);
    model a, b;
    model_init(&a, 1);
    model_init(&b, 100);
    fl_err e;
    assert_int_equal(fl_st_write_params(path, &a.pl, NULL, 0, &e), 0);
    fl_st_set *s = fl_st_open_set(path, &e);
    assert_non_null(s);
    char *warn = (char *)1;
    assert_int_equal(fl_st_load_params(s, &b.pl, FL_ST_STRICT, &warn, &e), 0);
    assert_null(warn);
    assert_memory_equal(a.cw, b.cw, sizeof a.cw);
    assert_memory_equal(a.rv, b.rv, sizeof a.rv);

    /* graph with a renamed key, an extra key and two wrong shapes: one error listing all */
    model c;
    model_init(&c, 500);
    float extra[3] = {7, 7, 7};
    fl_param p[6];
    memcpy(p, c.p, sizeof c.p);
    p[1].name = "bn1.weight";                                     /* missing in file */
    p[0].ndim = 2, p[0].shape[0] = 3, p[0].shape[1] = 2;          /* [3, 2] vs [2, 3, 1, 1] */
    p[4].shape[0] = 1, p[4].numel = 1;                            /* [1] vs [2] */
    p[5] = (fl_param){"head.bias", extra, NULL, 3, 1, {3}, 1, 0, 0, NULL}; /* missing in file */
    fl_param_list pl = {p, 6};
    assert_int_equal(fl_st_load_params(s, &pl, FL_ST_STRICT, &warn, &e), -1);
    assert_non_null(strstr(e.msg, "w.safetensors: cannot load: 2 missing keys: 'bn1.weight', "
                                  "'head.bias'; 1 unexpected key: 'bn.weight'; 2 size mismatches: "
                                  "'conv.weight' (file F32 [2, 3, 1, 1], expected F32 [3, 2]), "
                                  "'bn.running_var' (file F32 [2], expected F32 [1])"));
    assert_true(c.cw[0] == 500 && extra[0] == 7); /* nothing written on failure */
    /* non-strict: shapes still fatal */
    assert_int_equal(fl_st_load_params(s, &pl, FL_ST_NONSTRICT, &warn, &e), -1);
    assert_non_null(strstr(e.msg, "2 size mismatches"));
    assert_null(strstr(e.msg, "missing"));
    /* non-strict with shapes right: missing/unexpected become warnings, the rest loads */
    p[0] = c.p[0], p[4] = c.p[4];
    assert_int_equal(fl_st_load_params(s, &pl, FL_ST_NONSTRICT, &warn, &e), 0);
    assert_non_null(warn);
    assert_string_equal(warn, "2 missing keys: 'bn1.weight', 'head.bias'; 1 unexpected key: "
                              "'bn.weight'");
    free(warn);
    assert_memory_equal(a.cw, c.cw, sizeof a.cw);
    assert_true(c.bw[0] == 510 && extra[0] == 7);
    fl_st_close_set(s);
    free(path);
    rmtmp(&d);
}

static void test_load_converts_and_ignores_prefix(void **state) {
    (void)state;
    tmpdir d;
    mkdtmp(&d);
    char *path = fl_strdupf("%s/w.safetensors", d.path);
    uint16_t bf[2] = {0x3F80, 0xC000}; /* 1, -2 */
    double f64[2] = {0.5, 1e-3};
    int32_t i32[2] = {1, 2};
    int64_t s2[1] = {2};
    fl_st_entry v[4] = {{"a", FL_ST_BF16, 1, s2, bf},
                        {"b", FL_ST_F64, 1, s2, f64},
                        {"i", FL_ST_I32, 1, s2, i32},
                        {"optim.step", FL_ST_I32, 1, s2, i32}};
    fl_err e;
    assert_int_equal(fl_st_write(path, v, 4, NULL, 0, &e), 0);
    fl_st_set *s = fl_st_open_set(path, &e);
    assert_non_null(s);
    float a[2], b[2], i[2];
    fl_st_target tg[3] = {{"a", a, 1, s2}, {"b", b, 1, s2}, {"i", i, 1, s2}};
    assert_int_equal(fl_st_load(s, tg, 2, FL_ST_STRICT, "optim.", NULL, &e), -1);
    assert_non_null(strstr(e.msg, "1 unexpected key: 'i'"));
    assert_int_equal(fl_st_load(s, tg, 3, FL_ST_STRICT, "optim.", NULL, &e), 0);
    assert_true(i[0] == 1.0f && i[1] == 2.0f); /* integer tensors convert (num_batches_tracked) */
    assert_int_equal(fl_st_load(s, tg, 2, FL_ST_NONSTRICT, "optim.", NULL, &e), 0);
    assert_true(a[0] == 1 && a[1] == -2 && b[0] == 0.5f && b[1] == (float)1e-3);
    fl_st_target twice[2] = {{"a", a, 1, s2}, {"a", b, 1, s2}};
    assert_int_equal(fl_st_load(s, twice, 2, FL_ST_NONSTRICT, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "'a' is requested twice"));
    fl_st_close_set(s);
    free(path);
    rmtmp(&d);
}

static void write_text(const char *path, const char *txt) {
    fl_err e;
    assert_int_equal(fl_write_file_atomic(path, txt, strlen(txt), &e), 0);
}

static void test_sharded_index(void **state) {
    (void)state;
    tmpdir d;
    mkdtmp(&d);
    model a, b;
    model_init(&a, 1);
    model_init(&b, 100);
    fl_param_list s1 = {a.p, 2}, s2 = {a.p + 2, 3};
    char *p1 = fl_strdupf("%s/model-00001-of-00002.safetensors", d.path);
    char *p2 = fl_strdupf("%s/model-00002-of-00002.safetensors", d.path);
    char *ix = fl_strdupf("%s/model.safetensors.index.json", d.path);
    fl_err e;
    assert_int_equal(fl_st_write_params(p1, &s1, NULL, 0, &e), 0);
    assert_int_equal(fl_st_write_params(p2, &s2, NULL, 0, &e), 0);
    const char *good =
        "{\"metadata\":{\"total_size\":56},\"weight_map\":{"
        "\"conv.weight\":\"model-00001-of-00002.safetensors\","
        "\"bn.weight\":\"model-00001-of-00002.safetensors\","
        "\"bn.bias\":\"model-00002-of-00002.safetensors\","
        "\"bn.running_mean\":\"model-00002-of-00002.safetensors\","
        "\"bn.running_var\":\"model-00002-of-00002.safetensors\"}}";
    write_text(ix, good);
    fl_st_set *s = fl_st_open_set(ix, &e);
    if (!s) print_error("%s\n", e.msg);
    assert_non_null(s);
    assert_int_equal(s->nfiles, 2);
    const fl_st_file *where;
    assert_non_null(fl_st_set_find(s, "bn.bias", &where));
    assert_ptr_equal(where, s->files[1]);
    assert_int_equal(fl_st_load_params(s, &b.pl, FL_ST_STRICT, NULL, &e), 0);
    assert_memory_equal(a.rm, b.rm, sizeof a.rm);
    assert_memory_equal(a.cw, b.cw, sizeof a.cw);
    fl_st_close_set(s);

    /* a mapped tensor absent from its shard */
    write_text(ix, "{\"weight_map\":{\"bn.bias\":\"model-00001-of-00002.safetensors\"}}");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "weight_map puts 'bn.bias' in"));
    /* a shard tensor not in the map */
    write_text(ix, "{\"weight_map\":{\"conv.weight\":\"model-00001-of-00002.safetensors\"}}");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "tensor 'bn.weight' of shard model-00001-of-00002.safetensors "
                                  "is not mapped"));
    /* paths that escape the directory, missing shards, bad JSON */
    write_text(ix, "{\"weight_map\":{\"x\":\"../etc/passwd\"}}");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "does not name a shard file"));
    write_text(ix, "{\"weight_map\":{\"x\":\"gone.safetensors\"}}");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "gone.safetensors"));
    write_text(ix, "{\"weight_map\":");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "not valid JSON"));
    write_text(ix, "{\"metadata\":{}}");
    assert_null(fl_st_open_set(ix, &e));
    assert_non_null(strstr(e.msg, "no weight_map object"));
    free(p1), free(p2), free(ix);
    rmtmp(&d);
}

static void test_write_params_checks_numel(void **state) {
    (void)state;
    float w[4] = {0};
    fl_param p = {"w", w, NULL, 4, 2, {2, 3}, 0, 0, 0, NULL};
    fl_param_list pl = {&p, 1};
    fl_err e;
    assert_int_equal(fl_st_write_params("/tmp/never-written.safetensors", &pl, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "parameter 'w' has 4 elements but its shape holds 6"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_metadata_padding_atomic),
        cmocka_unit_test(test_write_rejects_bad_entries),
        cmocka_unit_test(test_params_roundtrip_and_strict_errors),
        cmocka_unit_test(test_load_converts_and_ignores_prefix),
        cmocka_unit_test(test_sharded_index),
        cmocka_unit_test(test_write_params_checks_numel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
