/* Config strictness (issue 19 items 3, 4, 5, 7): numeric ranges, escaped duplicate keys, NULs,
 * names, nesting, what `extends` may name (regular files only, size-capped), linear time. */
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
#include <time.h>
#include <unistd.h>

#include "dag/config.h"
#include "stages/api/plan.h"
#include "stages/registry.h"

static const fl_cfg_field schema[] = {
    {"train", FL_CFG_OBJ, 0, NULL, 0, 0},
    {"train.lr", FL_CFG_NUM, 0, NULL, 0, 10},
    {"train.epochs", FL_CFG_INT, 0, NULL, 1, 1000},
    {"train.seed", FL_CFG_INT, 0, NULL, 0, FL_CFG_INT_MAX},
    {"train.size", FL_CFG_INT, 0, NULL, 0, 0}, /* no range given: must fit in an int */
    {"train.tags", FL_CFG_ARR, 0, NULL, 0, 0},
    {"train.tags[]", FL_CFG_STR, 0, NULL, 0, 0},
    {"train.sizes", FL_CFG_ARR, 0, NULL, 0, 0},
    {"train.sizes[]", FL_CFG_INT, 0, NULL, 1, 9},
    {"free", FL_CFG_MAP, 0, NULL, 0, 0},
    {"free.*", FL_CFG_ANY, 0, NULL, 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

static char dir[64];

static void put_n(const char *name, const char *text, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void put(const char *name, const char *text) { put_n(name, text, strlen(text)); }

static int load(fl_config *c, const char *name, fl_err *e) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    const fl_cfg_field *const schemas[] = {schema, NULL};
    memset(e, 0, sizeof *e);
    int rc = fl_config_load(c, p, schemas, e);
    if (rc) printf("  %s -> %s\n", name, e->msg);
    return rc;
}

/* Loads text as name and expects an error containing every fragment (NULL-terminated). */
static void expect_error(const char *name, const char *text, ...) {
    put(name, text);
    fl_config c;
    fl_err e;
    assert_int_equal(load(&c, name, &e), -1);
    va_list ap;
    va_start(ap, text);
    for (const char *frag; (frag = va_arg(ap, const char *));) {
        if (!strstr(e.msg, frag)) printf("  missing '%s' in: %s\n", frag, e.msg);
        assert_non_null(strstr(e.msg, frag));
    }
    va_end(ap);
}

static void expect_ok(const char *name, const char *text) {
    put(name, text);
    fl_config c;
    fl_err e;
    assert_int_equal(load(&c, name, &e), 0);
    fl_config_free(&c);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fluke-cfgs-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fl_err e;
    return fl_remove_tree(dir, &e);
}

/* ------------------------------------------------------------------ item 3: ranges */

static void test_numbers_outside_their_range(void **state) {
    (void)state;
    expect_error("r1.json", "{\"train\": {\n\"epochs\": 0}}", "r1.json:2: key 'train.epochs' is 0",
                 "outside its range [1, 1000]", NULL);
    /* 2^31 used to come back as -2147483648 */
    expect_error("r2.json", "{\"train\": {\"epochs\": 2147483648}}", "is 2147483648",
                 "[1, 1000]", NULL);
    expect_error("r3.json", "{\"train\": {\"size\": 2147483648}}",
                 "key 'train.size' is 2147483648, outside its range [-2147483648, 2147483647]",
                 NULL);
    expect_ok("r4.json", "{\"train\": {\"size\": -2147483648, \"seed\": 9007199254740991}}");
    expect_error("r5.json", "{\"train\": {\"seed\": 9007199254740992}}",
                 "[0, 9007199254740991]", NULL);
    expect_error("r6.json", "{\"train\": {\"seed\": -1}}", "is -1", NULL);
    expect_error("r7.json", "{\"train\": {\"lr\": -0.5}}", "key 'train.lr' is -0.5",
                 "range [0, 10]", NULL);
    expect_error("r8.json", "{\"train\": {\"lr\": 1e308}}", "is 1e+308", NULL);
    expect_error("r9.json", "{\"train\": {\"lr\": 1e999}}", "r9.json:1:", "too large", NULL);
    expect_error("ra.json", "{\"train\": {\"sizes\": [1,\n 10]}}",
                 "ra.json:2: element 'train.sizes[1]' is 10, outside its range [1, 9]", NULL);
    expect_error("rb.json", "{\"train\": {\"epochs\": 2.5}}", "must be an integer", NULL);
    /* the builtin keys: the executor sizes arrays by them */
    expect_error("g1.json", "{\"resources\": {\"gpus\": -2}}", "'resources.gpus' is -2",
                 "[0, 1024]", NULL);
    expect_error("g2.json", "{\"resources\": {\"gpus\": 2147483648}}", "[0, 1024]", NULL);
    expect_error("g3.json", "{\"resources\": {\"gpus\": 3e9}}", "is 3000000000", NULL);
    expect_error("g4.json", "{\"resources\": {\"threads\": 0}}", "[1, 4096]", NULL);
    expect_ok("g5.json", "{\"resources\": {\"gpus\": 1024, \"threads\": 4096}}");
}

/* Every numeric field the shipped registry declares has its own range, so nothing falls back
 * to "fits in an int". */
static void test_registry_numeric_fields_have_ranges(void **state) {
    (void)state;
    const fl_cfg_field *const *lists[] = {fl_pipeline_registry.schemas, NULL};
    const fl_cfg_field *builtin[] = {fl_config_builtin_schema, NULL};
    int numeric = 0;
    for (int pass = 0; pass < 2; pass++) {
        const fl_cfg_field *const *l = pass ? builtin : lists[0];
        for (; *l; l++)
            for (const fl_cfg_field *f = *l; f->path; f++) {
                if (f->type != FL_CFG_INT && f->type != FL_CFG_NUM) continue;
                numeric++;
                if (f->min == 0 && f->max == 0) printf("  no range: %s\n", f->path);
                assert_false(f->min == 0 && f->max == 0);
                assert_true(f->min < f->max);
                if (f->type == FL_CFG_INT) assert_true(f->max <= FL_CFG_INT_MAX);
            }
    }
    assert_true(numeric >= 15);
}

static void test_stage_int_getter_refuses_inexact(void **state) {
    (void)state;
    static const fl_stage_def def = {.name = "s", .code_id = "c"};
    fl_plan p;
    fl_err e = {{0}};
    fl_plan_init(&p, "/");
    fl_plan_node *n = fl_plan_add(&p, &def, -1, &e);
    assert_non_null(n);
    assert_int_equal(fl_plan_node_section(n, "g", &e), 0);
    cJSON *cfg = cJSON_Parse("{\"g\": {\"ok\": 9007199254740991, \"big\": 1e300}}");
    fl_stage_ctx c = {.node = n, .config = cfg, .out_fd = -1};
    long v = 0;
    assert_int_equal(fl_stage_cfg_int(&c, "g.ok", &v, &e), 0);
    assert_true(v == 9007199254740991L);
    assert_int_equal(fl_stage_cfg_int(&c, "g.big", &v, &e), -1);
    assert_non_null(strstr(e.msg, "outside"));
    cJSON_Delete(cfg);
    fl_plan_free(&p);
}

/* ------------------------------------------------------------------ item 7: strictness */

static void test_duplicates_compare_decoded(void **state) {
    (void)state;
    expect_error("d1.json", "{\"train\": {\"seed\": 1,\n \"se\\u0065d\": 2}}",
                 "d1.json:2: duplicate key 'train.seed' (first at line 1)", NULL);
    expect_error("d2.json", "{\"free\": {\"\\u00e9\": 1, \"\xc3\xa9\": 2}}", "duplicate key",
                 NULL);
    expect_error("d3.json", "{\"train\": {}, \"tr\\/ain\": {}, \"train\": {}}",
                 "duplicate key 'train'", NULL);
    /* different keys that decode differently are fine */
    expect_ok("d4.json", "{\"free\": {\"a\\u0062\": 1, \"ab \": 2, \"\\ud83d\\ude00\": 3}}");
}

/* One rule: a key twice in one file is an error (wherever it is); `extends` overrides. */
static void test_one_rule_for_repeated_keys(void **state) {
    (void)state;
    put("base.json", "{\"train\": {\"lr\": 0.1, \"epochs\": 3, \"tags\": [\"a\", \"b\"]}}");
    put("top.json", "{\"extends\": \"base.json\",\n\"train\": {\"lr\": 0.5, \"tags\": [\"c\"]}}");
    fl_config c;
    fl_err e;
    assert_int_equal(load(&c, "top.json", &e), 0);
    assert_true(fl_config_get(c.root, "train.lr")->valuedouble == 0.5);
    assert_int_equal((int)fl_config_get(c.root, "train.epochs")->valuedouble, 3);
    assert_int_equal(cJSON_GetArraySize(fl_config_get(c.root, "train.tags")), 1);
    char buf[512];
    assert_non_null(strstr(fl_config_where(&c, "train.lr", buf, sizeof buf), "top.json:2"));
    assert_non_null(strstr(fl_config_where(&c, "train.epochs", buf, sizeof buf), "base.json:1"));
    /* the flat list: each path once, with the file that set it last */
    int lr = 0;
    for (size_t i = 0; i < c.norigins; i++) {
        assert_true(c.origins[i].line >= 1);
        if (!strcmp(c.origins[i].path, "train.lr")) {
            lr++;
            assert_non_null(strstr(c.origins[i].file, "top.json"));
        }
    }
    assert_int_equal(lr, 1);
    fl_config_free(&c);
    put("dbase.json", "{\"train\": {\"lr\": 0.1,\n\"lr\": 0.2}}");
    expect_error("dtop.json", "{\"extends\": \"dbase.json\"}", "dbase.json:2: duplicate key",
                 NULL);
}

static void test_nul_is_refused_with_position(void **state) {
    (void)state;
    expect_error("n1.json", "{\"free\": {\n  \"p\": \"tiny\\u0000large\"}}", "n1.json:2:",
                 "\\u0000", NULL);
    expect_error("n2.json", "{\n\"name\": \"a\\u0000b\"}", "n2.json:2:", "\\u0000", NULL);
    expect_error("n3.json", "{\"store\": \"s\\u0000\"}", "n3.json:1:", "\\u0000", NULL);
    expect_error("n4.json", "{\"free\": {\"k\\u0000\": 1}}", "\\u0000", NULL);
    put_n("n5.json", "{\n  \"x\0\": 1}", 12);
    fl_config c;
    fl_err e;
    assert_int_equal(load(&c, "n5.json", &e), -1);
    assert_non_null(strstr(e.msg, "n5.json:2:5: contains a NUL byte"));
    /* raw control characters are not JSON either */
    expect_error("n6.json", "{\"free\": {\"k\": \"a\tb\"}}", "control character", NULL);
}

static void test_store_name_out_dir(void **state) {
    (void)state;
    expect_error("s1.json", "{\n\"store\": \"\"}", "s1.json:2: key 'store' is empty", NULL);
    expect_error("s2.json", "{\n\"out_dir\": \"\"}", "s2.json:2: key 'out_dir' is empty", NULL);
    expect_error("s3.json", "{\n\"name\": \"..\"}", "s3.json:2: config name '..'", NULL);
    expect_error("s4.json", "{\"name\": \".\"}", "config name '.'", NULL);
    expect_error("s5.json", "{\"name\": \"a/b\"}", "config name 'a/b'", NULL);
    expect_error("s6.json", "{\"name\": \"/\"}", "config name '/'", NULL);
    expect_error("s7.json", "{\"name\": \".hidden\"}", "may not start with '.'", NULL);
    expect_error("s8.json", "{\"name\": \"\"}", "1 to 128 characters", NULL);
    expect_error(".dot.json", "{}", ".dot.json: config name '.dot'", "taken from the file name",
                 NULL);
    expect_ok("s9.json", "{\"name\": \"tiny-2.v1_x\", \"store\": \"st\"}");
}

static void test_deep_nesting_says_so(void **state) {
    (void)state;
    size_t depth = 10000;
    char *t = malloc(2 * depth + 64);
    assert_non_null(t);
    char *p = t + sprintf(t, "{\"free\": {\n\"x\": ");
    for (size_t i = 0; i < depth; i++) *p++ = '[';
    for (size_t i = 0; i < depth; i++) *p++ = ']';
    strcpy(p, "}}");
    expect_error("deep.json", t, "deep.json:2:", "nested too deep", NULL);
    /* the limit itself is fine */
    p = t + sprintf(t, "{\"free\": {\"x\": ");
    for (int i = 0; i < FL_CONFIG_MAX_DEPTH - 2; i++) *p++ = '[';
    for (int i = 0; i < FL_CONFIG_MAX_DEPTH - 2; i++) *p++ = ']';
    strcpy(p, "}}");
    expect_ok("deep_ok.json", t);
    free(t);
}

static void test_strict_json_syntax(void **state) {
    (void)state;
    expect_error("j1.json", "{\"train\": {\"lr\": 01}}", "malformed JSON", NULL);
    expect_error("j2.json", "{\"train\": {\"lr\": .5}}", "malformed JSON", NULL);
    expect_error("j3.json", "{\"train\": {\"lr\": 1,}}", "malformed JSON", NULL);
    expect_error("j4.json", "{\"train\": {\"lr\": 1}} x", "malformed JSON", NULL);
    expect_error("j5.json", "{\"train\": {\"lr\": \"\\x\"}}", "unknown escape", NULL);
    expect_error("j6.json", "{\"free\": {\"k\": \"\\ud800\"}}", "surrogate", NULL);
    expect_error("j7.json", "{\"free\": {\"k\": \"abc}}", "unterminated string", NULL);
    expect_error("j8.json", "", "j8.json:1:1: malformed JSON", NULL);
    expect_ok("j9.json", "  {\"train\": {\"lr\": -0, \"epochs\": 1E2, \"tags\": []},\r\n"
                         "\"free\": {\"n\": null, \"t\": true, \"f\": false, \"o\": {}}}\n");
}

/* ------------------------------------------------------------------ item 4 + 7: what is read */

static void test_extends_targets(void **state) {
    (void)state;
    alarm(30); /* a FIFO used to block forever */
    expect_error("e1.json", "{\n\"extends\": \"\"}", "e1.json:2: key 'extends' is empty", NULL);
    expect_error("e2.json", "{\n\"extends\": \"/tmp\"}", "e2.json:2: extends '/tmp'",
                 "a directory, not a regular file", NULL);
    expect_error("e3.json", "{\n\"extends\": \"nope.json\"}",
                 "e3.json:2: extends 'nope.json', which cannot be opened", NULL);
    expect_error("e4.json", "{\"extends\": \"/dev/zero\"}", "e4.json:1: extends '/dev/zero'",
                 "character device", NULL);
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo.json", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_error("e5.json", "{\"extends\": \"fifo.json\"}", "e5.json:1: extends 'fifo.json'",
                 "a FIFO", NULL);
    char big[256];
    snprintf(big, sizeof big, "%s/big.json", dir);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, FL_CONFIG_MAX_BYTES + 1), 0); /* sparse: no disk used */
    close(fd);
    expect_error("e6.json", "{\"extends\": \"big.json\"}", "e6.json:1: extends 'big.json'",
                 "at most 16777216", NULL);
    /* the top file itself */
    fl_config c;
    fl_err e = {{0}};
    const fl_cfg_field *const schemas[] = {schema, NULL};
    assert_int_equal(fl_config_load(&c, "/dev/zero", schemas, &e), -1);
    assert_non_null(strstr(e.msg, "not a regular file"));
    assert_int_equal(fl_config_load(&c, fifo, schemas, &e), -1);
    assert_non_null(strstr(e.msg, "a FIFO"));
    alarm(0);
}

/* ------------------------------------------------------------------ item 5: linear time */

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Writes a config of n keys (kind 0), an n-element array (kind 1), or n keys that override a
 * base of n keys through `extends` (kind 2); loads it; returns the work the loader counted. */
static size_t work_for(int kind, size_t n, double *secs) {
    size_t cap = n * 24 + 256, k = 0;
    char *t = malloc(cap), *b = malloc(cap);
    assert_non_null(t);
    assert_non_null(b);
    if (kind == 1) {
        k = (size_t)sprintf(t, "{\"train\": {\"sizes\": [");
        for (size_t i = 0; i < n; i++)
            k += (size_t)sprintf(t + k, "%s%zu", i ? "," : "", i % 9 + 1);
        strcpy(t + k, "]}}");
    } else {
        size_t kb = (size_t)sprintf(b, "{\"free\": {");
        const char *ext = kind == 2 ? "\"extends\": \"lin_base.json\", " : "";
        k = (size_t)sprintf(t, "{%s\"free\": {", ext);
        for (size_t i = 0; i < n; i++) {
            k += (size_t)sprintf(t + k, "%s\"k%zu\": %zu", i ? ",\n" : "", i, i);
            kb += (size_t)sprintf(b + kb, "%s\"k%zu\": 0", i ? ",\n" : "", n - 1 - i);
        }
        strcpy(t + k, "}}");
        strcpy(b + kb, "}}");
        put("lin_base.json", b);
    }
    put("lin.json", t);
    free(t);
    free(b);
    fl_config c;
    fl_err e;
    double t0 = cpu_now();
    assert_int_equal(load(&c, "lin.json", &e), 0);
    *secs = cpu_now() - t0;
    char buf[512];
    if (kind != 1)
        assert_non_null(strstr(fl_config_where(&c, "free.k7", buf, sizeof buf), "lin.json:8"));
    size_t w = c.work;
    fl_config_free(&c);
    return w;
}

/* The loader's work grows linearly: ten times the keys, about ten times the steps (the
 * duplicate scan was quadratic: 100k keys took 17.8 s). Counting steps, not seconds, keeps
 * the test independent of the machine's load; the seconds are printed for the record. */
static void test_loading_is_linear(void **state) {
    (void)state;
    const char *what[] = {"keys", "array elements", "keys over a base of as many"};
    size_t n[] = {100000, 300000, 100000};
    for (int kind = 0; kind < 3; kind++) {
        double s1, s2;
        size_t w1 = work_for(kind, n[kind] / 10, &s1), w2 = work_for(kind, n[kind], &s2);
        double ratio = (double)w2 / (double)w1;
        printf("  %zu %s: %zu steps, %.3f s CPU; a tenth: %zu steps, %.3f s; ratio %.2f\n",
               n[kind], what[kind], w2, s2, w1, s1, ratio);
        assert_true(w2 > 0 && w1 > 0);
        assert_true(ratio < 13.0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_outside_their_range),
        cmocka_unit_test(test_registry_numeric_fields_have_ranges),
        cmocka_unit_test(test_stage_int_getter_refuses_inexact),
        cmocka_unit_test(test_duplicates_compare_decoded),
        cmocka_unit_test(test_one_rule_for_repeated_keys),
        cmocka_unit_test(test_nul_is_refused_with_position),
        cmocka_unit_test(test_store_name_out_dir),
        cmocka_unit_test(test_deep_nesting_says_so),
        cmocka_unit_test(test_strict_json_syntax),
        cmocka_unit_test(test_extends_targets),
        cmocka_unit_test(test_loading_is_linear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
