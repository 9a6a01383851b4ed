/* Typed reasons: config key old -> new, input changed (and from where), code changed, new, lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dag/explain.h"

static cJSON *rec(const char *json) {
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    return j;
}

static void test_config_input_code(void **state) {
    (void)state;
    cJSON *prev = rec("{\"key\":\"k1\",\"code\":\"c1\",\"config\":{\"train\":{\"lr\":0.1,\"ep\":3,\"old\":1}},"
                      "\"inputs\":{\"data\":{\"digest\":\"aaaa\",\"from\":\"synth\"},"
                      "\"ext\":{\"digest\":\"1111\",\"path\":\"/x\"}}}");
    cJSON *cur = rec("{\"key\":\"k2\",\"code\":\"c2\",\"config\":{\"train\":{\"lr\":0.2,\"ep\":3,\"new\":\"x\"}},"
                     "\"inputs\":{\"data\":{\"digest\":\"bbbb\",\"from\":\"synth\"},"
                     "\"ext\":{\"digest\":\"1111\",\"path\":\"/x\"}}}");
    fl_reasons r;
    fl_explain_diff(prev, cur, &r);
    /* Each config reason must be one of these, with this text, and each must appear once (a
     * reason under another key would otherwise skip the text checks and still be counted). */
    static const char *const want[3][2] = {{"train.lr", "config train.lr: 0.1 -> 0.2"},
                                           {"train.new", "config train.new: (absent) -> \"x\""},
                                           {"train.old", "config train.old: 1 -> (absent)"}};
    int seen[3] = {0}, code = 0, input = 0;
    for (size_t i = 0; i < r.n; i++) {
        char *t = fl_reason_text(&r.v[i]);
        if (r.v[i].kind == FL_WHY_CONFIG) {
            int k = 0;
            while (k < 3 && strcmp(r.v[i].key, want[k][0])) k++;
            if (k == 3) fail_msg("unexpected config reason: %s", t);
            assert_string_equal(t, want[k][1]);
            seen[k]++;
        } else if (r.v[i].kind == FL_WHY_CODE) {
            code++;
        } else if (r.v[i].kind == FL_WHY_INPUT) {
            input++;
            assert_string_equal(r.v[i].key, "data");
            assert_string_equal(r.v[i].from, "synth");
        }
        free(t);
    }
    for (int k = 0; k < 3; k++)
        if (seen[k] != 1) fail_msg("config reason %s seen %d times", want[k][0], seen[k]);
    assert_int_equal(code, 1);
    assert_int_equal(input, 1);
    fl_reasons_free(&r);
    cJSON_Delete(prev);
    cJSON_Delete(cur);
}

static void test_new_and_lost(void **state) {
    (void)state;
    cJSON *cur = rec("{\"key\":\"k\",\"code\":\"c\",\"config\":{},\"inputs\":{}}");
    fl_reasons r;
    fl_explain_diff(NULL, cur, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, FL_WHY_NEW);
    fl_reasons_free(&r);
    fl_explain_diff(cur, cur, &r); /* same key, no record: the result was lost */
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, FL_WHY_LOST);
    char *t = fl_reason_text(&r.v[0]);
    assert_non_null(strstr(t, "lost"));
    free(t);
    fl_reasons_free(&r);
    cJSON_Delete(cur);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_input_code),
        cmocka_unit_test(test_new_and_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
