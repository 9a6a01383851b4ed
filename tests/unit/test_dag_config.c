/* Config loading: extends + overrides, key origins (file:line), strict schema, canonical JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dag/config.h"
#include "dag/key.h"

static const fl_cfg_field schema[] = {
    {"train", FL_CFG_OBJ, 1, NULL, 0, 0},
    {"train.lr", FL_CFG_NUM, 1, NULL, 0, 10},
    {"train.epochs", FL_CFG_INT, 0, NULL, 1, 1000},
    {"train.seed", FL_CFG_INT, 0, NULL, 0, FL_CFG_INT_MAX},
    {"train.size", FL_CFG_INT, 0, NULL, 0, 0}, /* no range given: must fit in an int */
    {"train.tags", FL_CFG_ARR, 0, NULL, 0, 0},
    {"train.tags[]", FL_CFG_STR, 0, NULL, 0, 0},
    {"train.sizes", FL_CFG_ARR, 0, NULL, 0, 0},
    {"train.sizes[]", FL_CFG_INT, 0, NULL, 1, 9},
    {"nodes", FL_CFG_MAP, 0, NULL, 0, 0},
    {"nodes.*", FL_CFG_OBJ, 0, NULL, 0, 0},
    {"nodes.*.op", FL_CFG_STR, 1, NULL, 0, 0},
    {"free", FL_CFG_MAP, 0, NULL, 0, 0},
    {"free.*", FL_CFG_ANY, 0, NULL, 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

static char dir[64];

static void put(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int load(fl_config *c, const char *name, fl_err *e) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    const fl_cfg_field *const schemas[] = {schema, NULL};
    return fl_config_load(c, p, schemas, e);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fluke-cfg-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fl_err e;
    return fl_remove_tree(dir, &e);
}

static void test_extends_merges_and_tracks_lines(void **state) {
    (void)state;
    put("base.json", "{\n  \"train\": {\n    \"lr\": 0.1,\n    \"epochs\": 3\n  }\n}\n");
    put("top.json", "{\n  \"extends\": \"base.json\",\n  \"train\": {\"lr\": 0.5}\n}\n");
    fl_config c;
    fl_err e = {{0}};
    assert_int_equal(load(&c, "top.json", &e), 0);
    assert_float_equal(fl_config_get(c.root, "train.lr")->valuedouble, 0.5, 0);
    assert_int_equal((int)fl_config_get(c.root, "train.epochs")->valuedouble, 3);
    assert_null(fl_config_get(c.root, "extends"));
    assert_string_equal(c.name, "top");
    char buf[512];
    assert_non_null(strstr(fl_config_where(&c, "train.lr", buf, sizeof buf), "top.json:3"));
    assert_non_null(strstr(fl_config_where(&c, "train.epochs", buf, sizeof buf), "base.json:4"));
    fl_config_free(&c);
}

static void test_errors_name_file_line_key(void **state) {
    (void)state;
    fl_config c;
    fl_err e = {{0}};
    put("u.json", "{\n  \"train\": {\"lr\": 1,\n  \"epocs\": 2}\n}\n");
    assert_int_equal(load(&c, "u.json", &e), -1);
    assert_non_null(strstr(e.msg, "u.json:3: unknown key 'train.epocs'"));
    put("t.json", "{\"train\": {\"lr\": 1, \"epochs\": 2.5}}");
    assert_int_equal(load(&c, "t.json", &e), -1);
    assert_non_null(strstr(e.msg, "key 'train.epochs' must be an integer, not a number"));
    put("a.json", "{\"train\": {\"lr\": 1, \"tags\": [\"x\", 3]}}");
    assert_int_equal(load(&c, "a.json", &e), -1);
    assert_non_null(strstr(e.msg, "'train.tags[1]' must be a string"));
    put("r.json", "{\"train\": {\"epochs\": 1}}");
    assert_int_equal(load(&c, "r.json", &e), -1);
    assert_non_null(strstr(e.msg, "missing required key 'train.lr'"));
    put("m.json", "{\"train\": {\"lr\": 1}, \"nodes\": {\"a\": {\"op\": \"x\"}, \"b\": {}}}");
    assert_int_equal(load(&c, "m.json", &e), -1);
    assert_non_null(strstr(e.msg, "missing required key 'nodes.b.op'"));
    put("d.json", "{\"train\": {\"lr\": 1,\n \"lr\": 2}}");
    assert_int_equal(load(&c, "d.json", &e), -1);
    assert_non_null(strstr(e.msg, "d.json:2: duplicate key 'train.lr'"));
    put("j.json", "{\"train\": {\"lr\": 1,\n\n   ]}");
    assert_int_equal(load(&c, "j.json", &e), -1);
    assert_non_null(strstr(e.msg, "j.json:3:"));
    assert_non_null(strstr(e.msg, "malformed JSON"));
    put("n.json", "[1, 2]");
    assert_int_equal(load(&c, "n.json", &e), -1);
    assert_non_null(strstr(e.msg, "must be a JSON object"));
}

static void test_canonical_sorts_keys(void **state) {
    (void)state;
    cJSON *a = cJSON_Parse("{\"b\": 1, \"a\": {\"y\": [1, {\"q\": 1, \"p\": 2}], \"x\": true}}");
    cJSON *b = cJSON_Parse("{\"a\": {\"x\": true, \"y\": [1, {\"p\": 2, \"q\": 1}]}, \"b\": 1}");
    char *ca = fl_config_canonical(a), *cb = fl_config_canonical(b);
    assert_string_equal(ca, cb);
    assert_string_equal(ca, "{\"a\":{\"x\":true,\"y\":[1,{\"p\":2,\"q\":1}]},\"b\":1}");
    free(ca);
    free(cb);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static int noop_run(fl_stage_ctx *c, fl_err *e) {
    (void)c;
    (void)e;
    return 0;
}

static void test_key_covers_exactly_what_is_declared(void **state) {
    (void)state;
    static const fl_stage_def def = {.name = "s", .code_id = "c1", .run = noop_run};
    fl_plan p;
    fl_err e = {{0}};
    fl_plan_init(&p, "/");
    fl_plan_node *n = fl_plan_add(&p, &def, 2, &e);
    assert_non_null(n);
    assert_string_equal(n->id, "s[2]");
    fl_plan_node_section(n, "train", &e);
    fl_plan_node_input(n, "x", "up", &e);
    fl_plan_node_input(n, "y", "up2", &e);
    cJSON *cfg = cJSON_Parse("{\"train\": {\"lr\": 1}, \"other\": 5}");
    fl_digest in[2] = {{{1}}, {{2}}}, k1, k2, k3;
    assert_int_equal(fl_key_compute(n, cfg, in, &k1, NULL, &e), 0);
    /* an undeclared section does not matter */
    cJSON_ReplaceItemInObject(cfg, "other", cJSON_CreateNumber(6));
    fl_key_compute(n, cfg, in, &k2, NULL, &e);
    assert_true(fl_digest_eq(&k1, &k2));
    /* a declared value does */
    cJSON_ReplaceItemInObject(fl_config_get(cfg, "train") ? (cJSON *)fl_config_get(cfg, "train") : cfg,
                              "lr", cJSON_CreateNumber(2));
    fl_key_compute(n, cfg, in, &k3, NULL, &e);
    assert_false(fl_digest_eq(&k1, &k3));
    /* so does an input digest */
    in[1].b[0] = 9;
    fl_key_compute(n, cfg, in, &k2, NULL, &e);
    assert_false(fl_digest_eq(&k3, &k2));
    /* the section declared twice is one declaration; the input names must be unique */
    assert_int_equal(fl_plan_node_section(n, "train", &e), 0);
    assert_int_equal(n->sections.n, 1);
    assert_int_equal(fl_plan_node_input(n, "x", "other", &e), -1);
    assert_null(fl_plan_add(&p, &def, 2, &e));
    assert_non_null(strstr(e.msg, "declared twice"));
    cJSON_Delete(cfg);
    fl_plan_free(&p);
}

static void test_key_changes_with_code_identity(void **state) {
    (void)state;
    static const fl_stage_def d1 = {.name = "s", .code_id = "aaaa", .run = noop_run};
    static const fl_stage_def d2 = {.name = "s", .code_id = "bbbb", .run = noop_run};
    fl_plan p;
    fl_err e = {{0}};
    fl_plan_init(&p, "/");
    fl_plan_node *n1 = fl_plan_add_as(&p, &d1, "one", &e);
    fl_plan_node *n2 = fl_plan_add_as(&p, &d2, "two", &e);
    cJSON *cfg = cJSON_CreateObject();
    fl_digest k1, k2;
    fl_key_compute(n1, cfg, NULL, &k1, NULL, &e);
    free(n2->id);
    n2->id = strdup("one");
    fl_key_compute(n2, cfg, NULL, &k2, NULL, &e);
    assert_false(fl_digest_eq(&k1, &k2));
    cJSON_Delete(cfg);
    fl_plan_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extends_merges_and_tracks_lines),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_canonical_sorts_keys),
        cmocka_unit_test(test_key_covers_exactly_what_is_declared),
        cmocka_unit_test(test_key_changes_with_code_identity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
