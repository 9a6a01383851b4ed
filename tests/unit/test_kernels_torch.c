/* The CPU conv / pool kernels against PyTorch 1.13's answers, stored by
 * tests/fixtures/gen_kernels.py in tests/fixtures/kernels/kernels.safetensors (NHWC activations,
 * OIHW weights, per-case parameters as JSON strings in __metadata__). Forward outputs and all
 * gradients must match element by element within the rounding both sides may do (expect_close).
 * Exact operations (max pool's and upsampling's forward) must match exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/util.h"
#include "runtime/cpu/conv.h"
#include "runtime/cpu/pool.h"
#include "tests/unit/support/numcmp.h"

typedef struct fixture {
    char *buf;      /* whole file */
    size_t len;
    cJSON *header;
    const char *data;
    size_t data_len;
} fixture;

static char *fixture_path(void) {
    const char *src = getenv("FLUKE_SRC");
    return fl_strdupf("%s/tests/fixtures/kernels/kernels.safetensors", src ? src : ".");
}

static int fixture_open(fixture *f, fl_err *e) {
    memset(f, 0, sizeof *f);
    char *path = fixture_path();
    f->buf = fl_read_file(path, &f->len, e);
    free(path);
    if (!f->buf) return -1;
    uint64_t hl = 0;
    if (f->len < 8) return fl_errf(e, "fixture shorter than its header length");
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)f->buf[i];
    if (hl > f->len - 8) return fl_errf(e, "fixture header length %llu past the end", (unsigned long long)hl);
    f->header = cJSON_ParseWithLength(f->buf + 8, (size_t)hl);
    if (!f->header) return fl_errf(e, "fixture header is not JSON");
    f->data = f->buf + 8 + hl;
    f->data_len = f->len - 8 - hl;
    return 0;
}

static void fixture_close(fixture *f) {
    cJSON_Delete(f->header);
    free(f->buf);
}

/* A copy of tensor "<case>.<name>" (NULL when absent); checks dtype, offsets and element count. */
static float *tensor(const fixture *f, const char *cs, const char *name, size_t want) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", cs, name);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->header, key);
    if (!t) return NULL;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || !cJSON_IsArray(sh) ||
        cJSON_GetArraySize(off) != 2)
        fail_msg("%s: bad tensor header", key);
    size_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) numel *= (size_t)d->valuedouble;
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (b < 0 || en > (double)f->data_len || en - b != (double)numel * 4)
        fail_msg("%s: offsets [%g, %g) do not fit %zu floats in %zu data bytes", key, b, en, numel, f->data_len);
    if (want && numel != want) fail_msg("%s: %zu elements, the kernel expects %zu", key, numel, want);
    float *v = malloc(numel * 4 + 1);
    memcpy(v, f->data + (size_t)b, numel * 4);
    return v;
}

static float *need(const fixture *f, const char *cs, const char *name, size_t want) {
    float *v = tensor(f, cs, name, want);
    if (!v) fail_msg("%s.%s missing from the fixture", cs, name);
    return v;
}

static int geti(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) fail_msg("fixture metadata lacks %s", k);
    return v->valueint;
}

/* Criterion (numcmp.h, nc_sumbound): |ours - torch| <= limit * u * sum|terms| per element,
 * where sum|terms| is the same kernel run on absolute values (exact up to a relative L*u for
 * sums of non-negative terms) and limit = 2 * (the roundings per element + 1): each side is
 * within gamma_L of the exact value whatever its summation order. */
static nc_worst g_worst;

static float *abs_of(const float *v, size_t n) {
    float *a = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) a[i] = fabsf(v[i]);
    return a;
}

static void expect_close(const char *cs, const char *what, const float *got, const float *want, const float *mag,
                         size_t n, double roundings) {
    char name[200];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    double limit = 2 * (roundings + 1);
    nc_res r = nc_sumbound(NC_F32(got), NC_F32(want), NC_F32(mag), n);
    if (!nc_worst_add(&g_worst, name, r, limit))
        fail_msg("%s: %s differs from PyTorch: %.3g u*sum|terms| at [%zu] (limit %g), %zu non-finite", cs, what,
                 r.fig, r.at, limit, r.nonfinite);
}

static void run_conv(const fixture *f, const char *cs, const cJSON *m) {
    fl_conv2d_params p = {
        .N = geti(m, "N"), .H = geti(m, "H"), .W = geti(m, "W"), .C_in = geti(m, "C_in"),
        .C_out = geti(m, "C_out"), .KH = geti(m, "KH"), .KW = geti(m, "KW"),
        .stride_h = geti(m, "stride"), .stride_w = geti(m, "stride"),
        .dilation_h = geti(m, "dilation"), .dilation_w = geti(m, "dilation"),
        .groups = geti(m, "groups"), .pad_top = geti(m, "pad_top"), .pad_left = geti(m, "pad_left"),
        .pad_bottom = geti(m, "pad_bottom"), .pad_right = geti(m, "pad_right")};
    fl_err e;
    if (fl_conv2d_check(&p, NULL, NULL, &e)) fail_msg("%s: %s", cs, e.msg);
    size_t nx = fl_conv2d_x_numel(&p), ny = fl_conv2d_y_numel(&p), nw = fl_conv2d_w_numel(&p);
    size_t nb = (size_t)p.C_out;
    int has_bias = geti(m, "bias");
    float *x = need(f, cs, "x", nx), *w = need(f, cs, "w", nw), *y = need(f, cs, "y", ny);
    float *dy = need(f, cs, "dy", ny), *dx = need(f, cs, "dx", nx), *dw = need(f, cs, "dw", nw);
    float *b = has_bias ? need(f, cs, "b", nb) : NULL, *db = has_bias ? need(f, cs, "db", nb) : NULL;
    float *oy = malloc(ny * 4), *odx = malloc(nx * 4), *odw = malloc(nw * 4), *odb = malloc(nb * 4);
    assert_int_equal(fl_conv2d_forward(&p, x, w, b, oy, &e), 0);
    assert_int_equal(fl_conv2d_backward_data(&p, dy, w, odx, &e), 0);
    assert_int_equal(fl_conv2d_backward_weight(&p, x, dy, odw, has_bias ? odb : NULL, &e), 0);
    int OH, OW;
    assert_int_equal(fl_conv2d_check(&p, &OH, &OW, &e), 0);
    float *ax = abs_of(x, nx), *aw = abs_of(w, nw), *ab = has_bias ? abs_of(b, nb) : NULL, *ady = abs_of(dy, ny);
    float *my = malloc(ny * 4), *mdx = malloc(nx * 4), *mdw = malloc(nw * 4), *mdb = malloc(nb * 4);
    assert_int_equal(fl_conv2d_forward(&p, ax, aw, ab, my, &e), 0);
    assert_int_equal(fl_conv2d_backward_data(&p, ady, aw, mdx, &e), 0);
    assert_int_equal(fl_conv2d_backward_weight(&p, ax, ady, mdw, has_bias ? mdb : NULL, &e), 0);
    double taps = (double)p.KH * p.KW, ci = (double)p.C_in / p.groups, co = (double)p.C_out / p.groups;
    expect_close(cs, "y", oy, y, my, ny, ci * taps + 1);
    expect_close(cs, "dx", odx, dx, mdx, nx, co * taps);
    expect_close(cs, "dw", odw, dw, mdw, nw, (double)p.N * OH * OW);
    if (has_bias) expect_close(cs, "db", odb, db, mdb, nb, (double)p.N * OH * OW);
    free(x); free(w); free(y); free(dy); free(dx); free(dw); free(b); free(db);
    free(oy); free(odx); free(odw); free(odb);
    free(ax); free(aw); free(ab); free(ady); free(my); free(mdx); free(mdw); free(mdb);
}

static void run_pool(const fixture *f, const char *cs, const cJSON *m, int is_max) {
    int k = geti(m, "K"), s = geti(m, "stride"), pad = geti(m, "pad"), d = geti(m, "dilation");
    fl_pool2d_params p = {.N = geti(m, "N"), .H = geti(m, "H"), .W = geti(m, "W"), .C = geti(m, "C"),
                          .KH = k, .KW = k, .stride_h = s, .stride_w = s, .dilation_h = d,
                          .dilation_w = d, .pad_top = pad, .pad_left = pad, .pad_bottom = pad,
                          .pad_right = pad, .count_include_pad = geti(m, "count_include_pad")};
    fl_err e;
    int OH, OW;
    if (fl_pool2d_check(&p, &OH, &OW, &e)) fail_msg("%s: %s", cs, e.msg);
    size_t nx = (size_t)p.N * p.H * p.W * p.C, ny = (size_t)p.N * OH * OW * p.C;
    float *x = need(f, cs, "x", nx), *y = need(f, cs, "y", ny), *dy = need(f, cs, "dy", ny);
    float *dx = need(f, cs, "dx", nx), *oy = malloc(ny * 4), *odx = malloc(nx * 4);
    if (is_max) {
        assert_int_equal(fl_maxpool2d_forward(&p, x, oy, &e), 0);
        assert_int_equal(fl_maxpool2d_backward(&p, x, dy, odx, &e), 0);
    } else {
        assert_int_equal(fl_avgpool2d_forward(&p, x, oy, &e), 0);
        assert_int_equal(fl_avgpool2d_backward(&p, dy, odx, &e), 0);
    }
    /* max: a selection (exact) and dx a sum of routed dy; avg: taps and a division */
    float *ax = abs_of(x, nx), *ady = abs_of(dy, ny), *my = malloc(ny * 4), *mdx = malloc(nx * 4);
    if (is_max) {
        for (size_t i = 0; i < ny; i++) my[i] = fabsf(oy[i]);
        assert_int_equal(fl_maxpool2d_backward(&p, x, ady, mdx, &e), 0);
    } else {
        assert_int_equal(fl_avgpool2d_forward(&p, ax, my, &e), 0);
        assert_int_equal(fl_avgpool2d_backward(&p, ady, mdx, &e), 0);
    }
    double taps = (double)k * k;
    expect_close(cs, "y", oy, y, my, ny, is_max ? -1 : taps + 2);
    expect_close(cs, "dx", odx, dx, mdx, nx, is_max ? taps : 2 * taps + 1);
    free(x); free(y); free(dy); free(dx); free(oy); free(odx);
    free(ax); free(ady); free(my); free(mdx);
}

static void run_resample(const fixture *f, const char *cs, const cJSON *m, int is_up) {
    int N = geti(m, "N"), H = geti(m, "H"), W = geti(m, "W"), C = geti(m, "C");
    int s = is_up ? geti(m, "scale") : 1;
    size_t nx = (size_t)N * H * W * C, ny = is_up ? nx * s * s : (size_t)N * C;
    float *x = need(f, cs, "x", nx), *y = need(f, cs, "y", ny), *dy = need(f, cs, "dy", ny);
    float *dx = need(f, cs, "dx", nx), *oy = malloc(ny * 4), *odx = malloc(nx * 4);
    fl_err e;
    if (is_up) {
        assert_int_equal(fl_upsample_nearest2d_forward(N, H, W, C, s, x, oy, &e), 0);
        assert_int_equal(fl_upsample_nearest2d_backward(N, H, W, C, s, dy, odx, &e), 0);
    } else {
        assert_int_equal(fl_global_avgpool_forward(N, H, W, C, x, oy, &e), 0);
        assert_int_equal(fl_global_avgpool_backward(N, H, W, C, dy, odx, &e), 0);
    }
    float *ax = abs_of(x, nx), *ady = abs_of(dy, ny), *my = malloc(ny * 4), *mdx = malloc(nx * 4);
    if (is_up) {
        assert_int_equal(fl_upsample_nearest2d_forward(N, H, W, C, s, ax, my, &e), 0);
        assert_int_equal(fl_upsample_nearest2d_backward(N, H, W, C, s, ady, mdx, &e), 0);
    } else {
        assert_int_equal(fl_global_avgpool_forward(N, H, W, C, ax, my, &e), 0);
        assert_int_equal(fl_global_avgpool_backward(N, H, W, C, ady, mdx, &e), 0);
    }
    /* upsample: a copy (exact) and dx a sum of s*s; GAP: H*W taps and a division */
    expect_close(cs, "y", oy, y, my, ny, is_up ? -1 : (double)H * W + 2);
    expect_close(cs, "dx", odx, dx, mdx, nx, is_up ? (double)s * s : 2);
    free(x); free(y); free(dy); free(dx); free(oy); free(odx);
    free(ax); free(ady); free(my); free(mdx);
}

static void test_against_pytorch(void **state) {
    (void)state;
    fixture f;
    fl_err e;
    if (fixture_open(&f, &e)) fail_msg("kernels fixture: %s", e.msg);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f.header, "__metadata__");
    assert_non_null(meta);
    int counts[5] = {0}; /* conv, max, avg, upsample, global */
    const cJSON *c;
    cJSON_ArrayForEach(c, meta) {
        cJSON *m = cJSON_Parse(cJSON_GetStringValue(c));
        if (!m) fail_msg("%s: metadata is not JSON", c->string);
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "op"));
        if (!op) fail_msg("%s: no op", c->string);
        if (!strcmp(op, "conv2d")) run_conv(&f, c->string, m), counts[0]++;
        else if (!strcmp(op, "maxpool2d")) run_pool(&f, c->string, m, 1), counts[1]++;
        else if (!strcmp(op, "avgpool2d")) run_pool(&f, c->string, m, 0), counts[2]++;
        else if (!strcmp(op, "upsample_nearest2d")) run_resample(&f, c->string, m, 1), counts[3]++;
        else if (!strcmp(op, "global_avgpool")) run_resample(&f, c->string, m, 0), counts[4]++;
        else fail_msg("%s: unknown op %s", c->string, op);
        cJSON_Delete(m);
    }
    /* The fixture must exercise every kernel (a truncated fixture cannot pass silently). */
    assert_true(counts[0] >= 11);
    assert_true(counts[1] >= 4);
    assert_true(counts[2] >= 2);
    assert_int_equal(counts[3], 1);
    assert_int_equal(counts[4], 1);
    nc_worst_print(&g_worst, "kernels vs PyTorch (units of u*sum|terms|)");
    assert_int_equal(g_worst.failed, 0);
    fixture_close(&f);
}

int main(void) {
    nc_worst_init(&g_worst);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
