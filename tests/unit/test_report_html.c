/* The run report's writer (dag/report_html.h): escaping into valid, well-formed XHTML text,
 * numbers that are NaN or infinite, charts whose series are empty or hold NaN (a gap, a count in
 * the legend, "no data", never a "nan" coordinate), bars with a NaN value, the smoothing and
 * base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dag/report_html.h"

/* Tags balance: every <x ...> has its </x> in order, <x .../> closes itself; comments,
 * <!DOCTYPE> and CDATA are not used by the writer. Text holds no raw '<' or '&' outside an
 * entity. */
static int well_formed(const char *s) {
    char stack[64][32];
    int depth = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '&') {
            const char *q = strchr(p, ';');
            if (!q || q - p > 8 || q == p + 1) return 0;
            continue;
        }
        if (*p == '>') return 0; /* the writer escapes '>' in text too */
        if (*p != '<') continue;
        const char *end = strchr(p, '>');
        if (!end) return 0;
        /* quoted attribute values may not contain '<' */
        for (const char *q = p + 1; q < end; q++)
            if (*q == '<') return 0;
        int closing = p[1] == '/', self = end[-1] == '/';
        const char *n = p + 1 + closing;
        size_t len = strcspn(n, " />");
        if (len == 0 || len >= 32) return 0;
        if (closing) {
            if (depth == 0 || strncmp(stack[depth - 1], n, len) || stack[depth - 1][len]) return 0;
            depth--;
        } else if (!self) {
            if (depth == 64) return 0;
            memcpy(stack[depth], n, len);
            stack[depth++][len] = '\0';
        }
        p = end;
    }
    return depth == 0;
}

static int count(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

static void test_text_escaping(void **state) {
    (void)state;
    fl_html h = {0};
    fl_html_text(&h, "<a href=\"x\">&'</a>");
    assert_string_equal(h.p, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    fl_html_free(&h);
    /* controls, DEL, a stray continuation byte, an overlong '/', a surrogate, past U+10FFFF and
     * a truncated sequence become U+FFFD; valid UTF-8 stays */
    fl_html_text(&h, "a\x01" "b\x7f" "c\x80" "d\xC0\xAF" "e\xED\xA0\x80" "f\xF4\x90\x80\x80" "g\xE2\x82");
    assert_string_equal(h.p, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d\xEF\xBF\xBD\xEF\xBF\xBD"
                             "e\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                             "f\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                             "g\xEF\xBF\xBD\xEF\xBF\xBD");
    fl_html_free(&h);
    fl_html_text(&h, "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x90\x8B\ttab\nline");
    assert_string_equal(h.p, "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x90\x8B\ttab\nline");
    fl_html_free(&h);
    fl_html_text(&h, NULL);
    fl_html_raw(&h, "");
    assert_true(h.n == 0);
    fl_html_free(&h);
}

static void test_numbers(void **state) {
    (void)state;
    fl_html h = {0};
    fl_html_num(&h, "%.3f", 0.5);
    fl_html_raw(&h, " ");
    fl_html_num(&h, "%.3f", NAN);
    fl_html_raw(&h, " ");
    fl_html_num(&h, "%.3f", INFINITY);
    fl_html_raw(&h, " ");
    fl_html_num(&h, "%.3f", -INFINITY);
    fl_html_raw(&h, " | ");
    fl_html_secs(&h, 0.421);
    fl_html_raw(&h, " | ");
    fl_html_secs(&h, 185);
    fl_html_raw(&h, " | ");
    fl_html_secs(&h, 3720);
    fl_html_raw(&h, " | ");
    fl_html_secs(&h, NAN);
    assert_string_equal(h.p, "0.500 NaN inf -inf | 0.42 s | 3 min 05 s | 1 h 02 min | ?");
    fl_html_free(&h);
}

/* Epochs without a value (validation every 10 epochs) are no points: x is NaN, the legend
 * counts only measured NaNs, and the measured points form one line. */
static void test_chart_unmeasured_points(void **state) {
    (void)state;
    double x[5] = {NAN, 2, NAN, 4, 5}, y[5] = {NAN, 0.3, NAN, NAN, 0.5};
    fl_series s[1] = {{.name = "val map", .x = x, .y = y, .n = 5, .cls = "s0"}};
    fl_chart c = {.title = "v", .xlabel = "epoch", .s = s, .ns = 1, .mark_x = NAN};
    fl_html h = {0};
    fl_html_chart(&h, &c);
    assert_false(h.oom);
    assert_non_null(strstr(h.p, "val map (1 NaN)"));
    assert_null(strstr(h.p, "(3 NaN)"));
    fl_html_free(&h);
}

static void test_chart_nan_gap_and_empty(void **state) {
    (void)state;
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {0.5, NAN, 0.25, 0.125, INFINITY};
    fl_series s[2] = {{.name = "loss", .x = x, .y = y, .n = 5, .cls = "s0"},
                      {.name = "val <loss>", .x = x, .y = NULL, .n = 0, .cls = "s1"}};
    fl_chart c = {.title = "a & b", .xlabel = "epoch", .s = s, .ns = 2, .mark_x = 2.5,
                  .mark_label = "chosen", .attrs = "data-kind=\"loss\""};
    fl_html h = {0};
    fl_html_chart(&h, &c);
    assert_false(h.oom);
    assert_true(well_formed(h.p));
    /* no non-finite coordinate reaches the markup; the gap splits the line in two */
    assert_null(strstr(h.p, "nan"));
    assert_null(strstr(h.p, "inf"));
    static const char pat[] = "data-points=\"3\" data-missing=\"2\" d=\"";
    const char *d = strstr(h.p, pat);
    assert_non_null(d);
    d += sizeof pat - 1;
    const char *dend = strchr(d, '"');
    int moves = 0;
    for (const char *p = d; p < dend; p++) moves += *p == 'M';
    assert_int_equal(moves, 2);
    assert_non_null(strstr(h.p, "loss (2 NaN)"));
    assert_non_null(strstr(h.p, "val &lt;loss&gt; (no data)"));
    assert_non_null(strstr(h.p, "data-points=\"0\" data-missing=\"0\" d=\"\""));
    assert_non_null(strstr(h.p, "<title>a &amp; b</title>"));
    assert_non_null(strstr(h.p, "class=\"mark\""));
    assert_non_null(strstr(h.p, "data-kind=\"loss\""));
    fl_html_free(&h);
}

static void test_chart_without_data(void **state) {
    (void)state;
    double x[3] = {1, 2, 3}, y[3] = {NAN, NAN, NAN};
    fl_series s[1] = {{.name = "loss", .x = x, .y = y, .n = 3}};
    fl_chart c = {.title = "t", .s = s, .ns = 1, .mark_x = NAN};
    fl_html h = {0};
    fl_html_chart(&h, &c);
    assert_true(well_formed(h.p));
    assert_int_equal(count(h.p, ">no data</text>"), 1);
    assert_non_null(strstr(h.p, "loss (no data)"));
    assert_null(strstr(h.p, "<path"));
    fl_html_free(&h);
    /* no series at all, and one flat point: both still draw */
    c.ns = 0;
    fl_html_chart(&h, &c);
    assert_true(well_formed(h.p));
    assert_int_equal(count(h.p, ">no data</text>"), 1);
    fl_html_free(&h);
    double one = 7;
    fl_series s1 = {.name = "lr", .x = x, .y = &one, .n = 1};
    c.s = &s1, c.ns = 1;
    fl_html_chart(&h, &c);
    assert_true(well_formed(h.p));
    assert_null(strstr(h.p, "nan"));
    assert_int_equal(count(h.p, "<circle"), 1);
    fl_html_free(&h);
}

/* Two series one ulp apart (a raw loss and its 'smoothed' copy over a single epoch): the span
 * is below the values' resolution, and the ticks must still end (they once looped forever). */
static void test_chart_span_below_resolution(void **state) {
    (void)state;
    double x[1] = {1}, a[1] = {4.1234}, b[1] = {nextafter(4.1234, 5)}, big[2] = {1e15, 1e15 + 0.25};
    double x2[2] = {1, 2};
    fl_series s[2] = {{.name = "loss", .x = x, .y = a, .n = 1}, {.name = "smooth", .x = x, .y = b, .n = 1}};
    fl_chart c = {.title = "t", .s = s, .ns = 2, .mark_x = NAN};
    fl_html h = {0};
    fl_html_chart(&h, &c);
    assert_true(well_formed(h.p));
    assert_true(count(h.p, "class=\"grid\"") <= 64);
    fl_html_free(&h);
    fl_series s2 = {.name = "big", .x = x2, .y = big, .n = 2};
    c.s = &s2, c.ns = 1;
    fl_html_chart(&h, &c);
    assert_true(well_formed(h.p));
    assert_true(count(h.p, "class=\"grid\"") <= 64);
    fl_html_free(&h);
}

static void test_bars_with_nan(void **state) {
    (void)state;
    const char *lab[3] = {"fold 0", "fold <1>", "fold 2"};
    double v[3] = {0.25, NAN, 1.5}, n[3] = {10, 0, -1};
    fl_html h = {0};
    fl_html_bars(&h, "MAP@5 per fold", "id=\"x\"", lab, v, n, 3);
    assert_true(well_formed(h.p));
    assert_int_equal(count(h.p, "<rect class=\"bar\""), 2); /* none for the NaN */
    assert_non_null(strstr(h.p, "class=\"bval bad\" x=\"396\" y=\"53\">NaN (n 0)"));
    assert_non_null(strstr(h.p, "fold &lt;1&gt;"));
    assert_non_null(strstr(h.p, "width=\"220.0\"")); /* 1.5 clamped to the full bar */
    assert_null(strstr(h.p, "nan"));
    fl_html_free(&h);
    fl_html_bars(&h, "empty", NULL, NULL, NULL, NULL, 0);
    assert_true(well_formed(h.p));
    assert_non_null(strstr(h.p, ">no data<"));
    fl_html_free(&h);
}

static void test_smooth(void **state) {
    (void)state;
    double y[5] = {1, NAN, 3, 3, 3}, o[5];
    fl_report_smooth(y, 5, 0.5, o);
    assert_true(fabs(o[0] - 1) < 1e-12); /* debiased: the first value is itself */
    assert_true(isnan(o[1]));
    /* after the gap: (0.5 * 0.5 * 1 + 0.5 * 3) / (0.75) = 7/3 */
    assert_true(fabs(o[2] - 7.0 / 3) < 1e-12);
    assert_true(o[3] > o[2] && o[4] > o[3] && o[4] < 3);
    fl_report_smooth(y, 0, 0.5, o); /* an empty series is fine */
}

static void test_base64(void **state) {
    (void)state;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        fl_html h = {0};
        fl_html_raw(&h, "");
        fl_html_base64(&h, (const uint8_t *)in[i], strlen(in[i]));
        assert_string_equal(h.p ? h.p : "", want[i]);
        fl_html_free(&h);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_escaping),     cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_chart_nan_gap_and_empty),
        cmocka_unit_test(test_chart_unmeasured_points), cmocka_unit_test(test_chart_without_data),
        cmocka_unit_test(test_chart_span_below_resolution),
        cmocka_unit_test(test_bars_with_nan),     cmocka_unit_test(test_smooth),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
