/* The safe torch.save reader (runtime/torch_pt.h) against files written by torch itself
 * (tests/fixtures/gen_pt.py -> tests/fixtures/pt/): an ultralytics-style YOLOv5 checkpoint and
 * a plain state dict read exactly (fp16 -> fp32, strided and shared views), the key set equal
 * to the model's, the converted safetensors loading strictly into fl_yolo_build's store, the
 * intersect load of another class count skipping exactly the Detect convs, and bad inputs
 * (os.system via REDUCE, legacy and deflated files, truncation, bad opcodes, huge lengths,
 * storages out of range) refused with messages naming the file and what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/models/yolo.h"
#include "runtime/safetensors.h"
#include "runtime/torch_pt.h"
#include "tests/fuzz/fuzz_pt_zip.h"

#define EVIL_MARKER "/tmp/fluke-pt-evil-marker"

static char *fx(const char *name) {
    const char *src = getenv("FLUKE_SRC");
    return fl_strdupf("%s/tests/fixtures/pt/%s", src ? src : ".", name);
}

static fl_pt_file *open_fx(const char *name) {
    char *p = fx(name);
    fl_err e = {{0}};
    fl_pt_file *f = fl_pt_open(p, &e);
    if (!f) fprintf(stderr, "%s\n", e.msg);
    free(p);
    return f;
}

/* Every tensor of `want` (the expected safetensors) in f, in the same order, bit for bit. */
static void assert_same_as(const fl_pt_file *f, const char *want_name) {
    char *wp = fx(want_name);
    fl_err e;
    fl_st_file *w = fl_st_open(wp, &e);
    free(wp);
    assert_non_null(w);
    assert_int_equal(f->n, w->n);
    for (size_t i = 0; i < w->n; i++) {
        const fl_st_tensor *t = &w->t[i];
        const fl_pt_tensor *p = &f->t[i];
        if (strcmp(p->name, t->name)) fprintf(stderr, "entry %zu: %s vs %s\n", i, p->name, t->name);
        assert_string_equal(p->name, t->name);
        assert_int_equal(p->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(p->shape[d], t->shape[d]);
        assert_int_equal(p->numel, t->numel);
        float *ref = fl_st_read_f32(w, t->name, NULL, &e);
        assert_non_null(ref);
        if (memcmp(ref, p->data, t->numel * sizeof(float)))
            fprintf(stderr, "%s differs\n", t->name);
        assert_memory_equal(ref, p->data, t->numel * sizeof(float));
        free(ref);
    }
    fl_st_close(w);
}

static void test_yolo_checkpoint_exact(void **state) {
    (void)state;
    fl_pt_file *f = open_fx("yolo_tiny.pt");
    assert_non_null(f);
    assert_same_as(f, "yolo_tiny_expected.safetensors");
    assert_non_null(strstr(f->where, "models.yolo.DetectionModel"));
    const fl_pt_tensor *w = fl_pt_find(f, "model.0.conv.weight");
    assert_non_null(w);
    assert_string_equal(w->src_dtype, "F16");
    assert_non_null(fl_pt_find(f, "model.24.anchors"));
    assert_null(fl_pt_find(f, "scratch")); /* a non-persistent buffer */
    assert_null(fl_pt_find(f, "stride"));  /* a plain attribute */
    const fl_pt_tensor *nb = fl_pt_find(f, "model.0.bn.num_batches_tracked");
    assert_non_null(nb);
    assert_int_equal(nb->ndim, 0);
    assert_true(nb->data[0] == 1234.0f);
    fl_pt_close(f);
}

static void test_plain_state_dict_exact(void **state) {
    (void)state;
    fl_pt_file *f = open_fx("plain.bin");
    assert_non_null(f);
    assert_same_as(f, "plain_expected.safetensors");
    assert_string_equal(fl_pt_find(f, "enc.bias_bf16")->src_dtype, "BF16");
    assert_string_equal(fl_pt_find(f, "enc.f64")->src_dtype, "F64");
    assert_string_equal(fl_pt_find(f, "enc.steps")->src_dtype, "I64");
    fl_pt_close(f);
    /* torch.save(model): the root is the module */
    f = open_fx("module_root.pt");
    assert_non_null(f);
    assert_same_as(f, "module_root_expected.safetensors");
    assert_string_equal(f->t[0].name, "0.weight");
    assert_non_null(strstr(f->where, "torch.nn.modules.container.Sequential"));
    fl_pt_close(f);
}

/* A YOLOv5 of the fixture's size with nc classes, its store and parameter list. */
static fl_pstore *yolo_store(int nc, fl_graph **g) {
    fl_err e;
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_make(&c, 0.33, 0.03125, nc, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    assert_non_null(s);
    *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    assert_non_null(*g);
    fl_id x = fl_input(*g, "x", 4, (int64_t[]){1, 64, 64, 3});
    fl_yolo_heads h;
    int rc = fl_yolo_build(*g, s, x, &c, &h, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    return s;
}

static void test_converted_loads_strictly(void **state) {
    (void)state;
    fl_err e;
    char *pt = fx("yolo_tiny.pt");
    char tmpl[] = "/tmp/fluke-pt-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *st = fl_strdupf("%s/conv.safetensors", tmpl);
    size_t n = 0;
    int rc = fl_pt_convert(pt, st, &n, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    fl_graph *g;
    fl_pstore *s = yolo_store(1, &g);
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    assert_int_equal(pl.n, n); /* the key set is the model's: strict loading checks both ways */
    fl_st_set *set = fl_st_open_set(st, &e);
    assert_non_null(set);
    assert_string_equal(fl_st_meta(set->files[0], "source"), "yolo_tiny.pt");
    rc = fl_st_load_params(set, &pl, FL_ST_STRICT, NULL, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    fl_pt_file *f = fl_pt_open(pt, &e);
    assert_non_null(f);
    for (size_t i = 0; i < pl.n; i++) {
        const fl_pt_tensor *t = fl_pt_find(f, pl.v[i].name);
        assert_non_null(t);
        assert_memory_equal(t->data, pl.v[i].data, t->numel * sizeof(float));
    }
    fl_pt_close(f);
    fl_st_close_set(set);
    fl_graph_free(g);
    fl_pstore_free(s);
    unlink(st);
    rmdir(tmpl);
    free(st);
    free(pt);
}

static void test_intersect_other_nc(void **state) {
    (void)state;
    fl_err e;
    char tmpl[] = "/tmp/fluke-pt-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *st = fl_strdupf("%s/conv.safetensors", tmpl);
    char *pt = fx("yolo_tiny.pt");
    assert_int_equal(fl_pt_convert(pt, st, NULL, &e), 0);
    fl_graph *g;
    fl_pstore *s = yolo_store(3, &g);
    size_t nb;
    float *bias = fl_pstore_data(s, "model.24.m.0.bias", &nb);
    float *anc = fl_pstore_data(s, "model.24.anchors", NULL);
    float b0 = bias[0], a0 = anc[0];
    fl_yolo_pretrained_report r;
    int rc = fl_yolo_load_pretrained(s, st, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(r.shape_skip, 6); /* model.24.m.{0,1,2}.{weight,bias} */
    assert_int_equal(r.excluded, 1);   /* model.24.anchors */
    assert_int_equal(r.missing, 0);
    assert_int_equal(r.unexpected, 0);
    assert_int_equal(r.loaded, r.total - 7);
    assert_string_equal(r.skipped, "model.24.m.0.weight,model.24.m.0.bias,model.24.m.1.weight,"
                                   "model.24.m.1.bias,model.24.m.2.weight,model.24.m.2.bias");
    assert_true(bias[0] == b0 && anc[0] == a0); /* skipped entries keep their init */
    fl_pt_file *f = fl_pt_open(pt, &e);
    const fl_pt_tensor *t = fl_pt_find(f, "model.23.cv3.conv.weight");
    assert_memory_equal(t->data, fl_pstore_data(s, t->name, NULL), t->numel * sizeof(float));
    fl_pt_close(f);
    /* Same class count: everything but the anchors. */
    fl_graph *g1;
    fl_pstore *s1 = yolo_store(1, &g1);
    assert_int_equal(fl_yolo_load_pretrained(s1, st, &r, &e), 0);
    assert_int_equal(r.loaded, r.total - 1);
    assert_int_equal(r.shape_skip, 0);
    fl_graph_free(g1);
    fl_pstore_free(s1);
    /* Not a YOLOv5 file at all. */
    char *plain = fx("plain_expected.safetensors");
    assert_int_equal(fl_yolo_load_pretrained(s, plain, &r, &e), -1);
    assert_non_null(strstr(e.msg, "not a YOLOv5 state dict"));
    free(plain);
    fl_graph_free(g);
    fl_pstore_free(s);
    unlink(st);
    rmdir(tmpl);
    free(st);
    free(pt);
}

static void expect_open_error(const char *name, const char *want) {
    char *p = fx(name);
    fl_err e = {{0}};
    fl_pt_file *f = fl_pt_open(p, &e);
    if (f || !strstr(e.msg, want)) fprintf(stderr, "%s: got '%s', want '%s'\n", name, e.msg, want);
    assert_null(f);
    assert_non_null(strstr(e.msg, want));
    assert_non_null(strstr(e.msg, name)); /* names the file */
    free(p);
}

static void test_bad_files(void **state) {
    (void)state;
    unlink(EVIL_MARKER);
    expect_open_error("evil.pt",
                      "posix.system object without _parameters/_modules: not an nn.Module");
    expect_open_error("evil_sd.bin", "entry 'x' is a posix.system object, not a tensor");
    assert_int_equal(access(EVIL_MARKER, F_OK), -1); /* nothing was executed */
    expect_open_error("legacy.pt", "legacy torch format");
    expect_open_error("deflate.pt", "is compressed (method 8)");
    expect_open_error("plain_expected.safetensors", "not a PyTorch checkpoint");
}

static void test_truncated(void **state) {
    (void)state;
    char *p = fx("yolo_tiny.pt");
    fl_err e;
    size_t len;
    char *buf = fl_read_file(p, &len, &e);
    assert_non_null(buf);
    size_t cuts[] = {0, 3, 100, len / 3, len / 2, len - 200, len - 23, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        fl_pt_file *f = fl_pt_parse(buf, cuts[i], "cut.pt", &e);
        assert_null(f);
        assert_int_equal(strncmp(e.msg, "cut.pt: ", 8), 0);
    }
    fl_pt_file *f = fl_pt_parse(buf, len - 1, "cut.pt", &e);
    assert_null(f);
    assert_non_null(strstr(e.msg, "truncated"));
    /* One flipped byte inside a storage: the CRC catches it. */
    buf[2000] ^= 0x55; /* inside data.pkl, the first entry */
    f = fl_pt_parse(buf, len, "flip.pt", &e);
    assert_null(f);
    assert_non_null(strstr(e.msg, "CRC-32"));
    free(buf);
    free(p);
}

/* ---- crafted archives (tests/fuzz/fuzz_pt_zip.h: a minimal STORED zip writer) ------------ */

/* A torch-like archive around a hand-written data.pkl and one 4-float storage "0". */
static fl_pt_file *parse_pkl(const char *pkl, size_t len, fl_err *e) {
    float st[4] = {1, 2, 3, 4};
    fz_zent v[] = {{"archive/data.pkl", pkl, len},
                   {"archive/data/0", st, sizeof st},
                   {"archive/version", "3\n", 2}};
    size_t zl;
    unsigned char *z = fz_make_zip(v, 3, &zl);
    fl_pt_file *f = fl_pt_parse(z, zl, "crafted.pt", e);
    free(z);
    return f;
}

#define PKL(s) s, sizeof(s) - 1
/* {'w': _rebuild_tensor_v2(persid(('storage', torch.FloatStorage, '0', 'cpu', 4)), OFF, (SZ,),
 * (ST,), False, OrderedDict())} */
#define TENSOR_PKL(OFF, SZ, ST)                                                                    \
    "\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n("                         \
    "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"                             \
    "0X\x03\x00\x00\x00"                                                                           \
    "cpuK\x04tQ"                                                                                   \
    "K" OFF "K" SZ "\x85K" ST "\x85\x89"                                                           \
    "ccollections\nOrderedDict\n)RtRs."

static void test_crafted_pickles(void **state) {
    (void)state;
    fl_err e;
    fl_pt_file *f = parse_pkl(PKL(TENSOR_PKL("\x01", "\x02", "\x02")), &e);
    if (!f) fprintf(stderr, "%s\n", e.msg);
    assert_non_null(f); /* the crafting is right: elements 1 and 3 */
    assert_int_equal(f->n, 1);
    assert_true(f->t[0].data[0] == 2.0f && f->t[0].data[1] == 4.0f);
    fl_pt_close(f);
    const struct {
        const char *pkl;
        size_t len;
        const char *want;
    } bad[] = {
        {PKL("\x80\x02\xff."), "offset 2: opcode 0xff: unknown opcode"},
        {PKL("\x80\x02X\xf0\xff\xff\xff"
             "abc."),
         "offset 2: BINUNICODE: length 4294967280 runs past the end"},
        {PKL("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff."),
         "BINUNICODE8: length 18446744073709551615 runs past"},
        {PKL("\x80\x02j\x05\x00\x01\x00."), "LONG_BINGET: memo index 65541 was never stored"},
        {PKL("\x80\x02t."), "TUPLE: no MARK on the stack"},
        {PKL("\x80\x02R."), "REDUCE: stack underflow"},
        {PKL("\x80\x02}X\x01\x00\x00\x00w"), "data.pkl ends before STOP (truncated)"},
        {PKL("\x80\x02I1\n."), "INT: opcode not supported"},
        {PKL("\x80\x02\x8b\x10\x00\x00\x00."), "LONG4: a 16-byte integer"},
        {PKL("\x80\x02r\x00\x00\x00\x40."), "LONG_BINPUT: stack underflow"},
        {PKL("\x80\x02Nr\x00\x00\x00\x40."), "memo index 1073741824 (limit"},
        {PKL("\x80\x02Nr\x00\x00\x10\x00."), "memo index 1048576 far past the 0 entries stored"},
        /* builtins.eval('...') is recorded, never run, and is not a state dict */
        {PKL("\x80\x02"
             "cbuiltins\neval\nX\x03\x00\x00\x00"
             "1+1\x85R."),
         "builtins.eval object without _parameters/_modules"},
        {PKL("\x80\x02}X\x01\x00\x00\x00w"
             "cposix\nsystem\nX\x02\x00\x00\x00ls\x85Rs."),
         "entry 'w' is a posix.system object, not a tensor"},
        /* tensors outside their storage, or of a storage that is not there */
        {PKL(TENSOR_PKL("\x01", "\x02", "\x03")), "reaches element 4 of storage '0' which has 4"},
        {PKL(TENSOR_PKL("\x00", "\x08", "\x00")), "broadcast view"},
        {PKL("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
             "9X\x03\x00\x00\x00"
             "cpuK\x04tQ."),
         "storage '9' has no entry archive/data/9"},
        {PKL("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
             "0X\x03\x00\x00\x00"
             "cpuK\x05tQ."),
         "5 x 4 bytes declared but the entry holds 16"},
        {PKL("\x80\x02(X\x07\x00\x00\x00storagecos\nsystem\nX\x01\x00\x00\x00"
             "0X\x03\x00\x00\x00"
             "cpuK\x04tQ."),
         "storage type the global os.system is not a known torch storage"},
        {PKL("\x80\x02]."), "the pickled root is a list"},
        {PKL("\x80\x02}."), "holds no tensors"},
        {PKL("\x80\x02}X\x01\x00\x00\x00wX\x01\x00\x00\x00vs."),
         "entry 'w' is a str, not a tensor"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        f = parse_pkl(bad[i].pkl, bad[i].len, &e);
        if (f || !strstr(e.msg, bad[i].want))
            fprintf(stderr, "case %zu: got '%s'\nwant '%s'\n", i, e.msg, bad[i].want);
        assert_null(f);
        assert_non_null(strstr(e.msg, bad[i].want));
        assert_int_equal(strncmp(e.msg, "crafted.pt: ", 12), 0);
    }
    /* Deep MARK nesting stops at the limit. */
    char *deep = malloc(10010);
    memcpy(deep, "\x80\x02", 2);
    memset(deep + 2, '(', 10000);
    deep[10002] = '.';
    f = parse_pkl(deep, 10003, &e);
    assert_null(f);
    assert_non_null(strstr(e.msg, "nested MARKs (limit)"));
    free(deep);
    /* Container errors: no data.pkl, a TorchScript archive. */
    fz_zent v1[] = {{"archive/constants.pkl", "\x80\x02N.", 4}};
    size_t zl;
    unsigned char *z = fz_make_zip(v1, 1, &zl);
    assert_null(fl_pt_parse(z, zl, "jit.pt", &e));
    assert_non_null(strstr(e.msg, "TorchScript"));
    free(z);
    fz_zent v2[] = {{"data.pkl", "\x80\x02N.", 4}};
    z = fz_make_zip(v2, 1, &zl);
    assert_null(fl_pt_parse(z, zl, "flat.pt", &e));
    assert_non_null(strstr(e.msg, "not inside an archive directory"));
    free(z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yolo_checkpoint_exact),
        cmocka_unit_test(test_plain_state_dict_exact),
        cmocka_unit_test(test_converted_loads_strictly),
        cmocka_unit_test(test_intersect_other_nc),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_crafted_pickles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
