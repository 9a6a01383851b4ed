/* The embedding backbone's pretrained weights (stages/ident/weights_stage.h): the plan helper
 * (no node without embed.backbone.weights; node "weights" reading exactly the two keys; bad
 * names refused at plan time naming the key), and the node run with a hand-built stage context
 * against the loopback hub: a tiny safetensors file served as
 * timm/<name>/resolve/main/model.safetensors arrives byte-identical, the pytorch_model.bin
 * fallback is converted and then refused for lacking an EfficientNet stem, and a name the hub
 * does not have is a 404 naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "stages/api/plan.h"
#include "stages/ident/weights_stage.h"
#include "tests/kaggle/server_child.h"

typedef struct run {
    fl_plan plan;
    fl_plan_node *node;
    fl_stage_ctx ctx;
    cJSON *cfg;
    char *out, *work, *logp;
    int logfd;
} run;

static void run_init(run *r, const char *dir, const char *cfg_json, const char *tag) {
    memset(r, 0, sizeof *r);
    fl_err e;
    fl_plan_init(&r->plan, dir);
    r->cfg = cJSON_Parse(cfg_json);
    assert_non_null(r->cfg);
    if (fl_plan_embed_weights(&r->plan, r->cfg, &r->node, &e)) fail_msg("%s", e.msg);
    assert_non_null(r->node);
    r->out = fl_strdupf("%s/%s-out", dir, tag);
    r->work = fl_strdupf("%s/%s-work", dir, tag);
    r->logp = fl_strdupf("%s/%s.log", dir, tag);
    assert_int_equal(fl_mkdirs(r->out, &e), 0);
    assert_int_equal(fl_mkdirs(r->work, &e), 0);
    r->logfd = open(r->logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    r->ctx = (fl_stage_ctx){.node = r->node,
                            .config = r->cfg,
                            .out_dir = r->out,
                            .work_dir = r->work,
                            .threads = 1,
                            .gpu = -1,
                            .t_start = fl_now(),
                            .out_fd = r->logfd};
}

static void run_free(run *r) {
    close(r->logfd);
    cJSON_Delete(r->cfg);
    fl_plan_free(&r->plan);
    free(r->out);
    free(r->work);
    free(r->logp);
}

static void test_plan(void **state) {
    (void)state;
    fl_plan p;
    fl_plan_init(&p, "/tmp");
    fl_err e;
    fl_plan_node *n = (fl_plan_node *)1;
    const char *none[] = {"{}", "{\"embed\":{\"lr\":0.001}}",
                          "{\"embed\":{\"backbone\":{\"name\":\"efficientnet_b0\"}}}"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        cJSON *c = cJSON_Parse(none[i]);
        assert_int_equal(fl_plan_embed_weights(&p, c, &n, &e), 0);
        assert_null(n);
        assert_int_equal(p.n, 0);
        cJSON_Delete(c);
    }
    cJSON *c = cJSON_Parse("{\"embed\":{\"lr\":0.001,\"backbone\":{\"weights\":"
                           "\"tf_efficientnet_b7.ns_jft_in1k\",\"dolg\":true}}}");
    assert_int_equal(fl_plan_embed_weights(&p, c, &n, &e), 0);
    assert_non_null(n);
    assert_string_equal(n->id, "weights");
    /* exactly the two keys: the learning rate (or anything else) never re-downloads */
    assert_int_equal(n->sections.n, 2);
    assert_string_equal(n->sections.v[0], "embed.backbone.weights");
    assert_string_equal(n->sections.v[1], "embed.backbone.weights_url");
    assert_int_equal(n->outputs.n, 1);
    assert_string_equal(n->outputs.v[0], FL_EMBED_PRETRAINED_FILE);
    assert_int_equal(n->ninputs, 0);
    cJSON_Delete(c);
    fl_plan_free(&p);
    const char *good[] = {"efficientnet_b0.ra_in1k", "tf_efficientnet_b0.ns_jft_in1k",
                          "tf_efficientnet_b7.ap_in1k", "efficientnet_b3.ra2_in1k"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (fl_embed_weights_name(good[i], &e)) fail_msg("%s: %s", good[i], e.msg);
    const char *bad[] = {"\"tf_efficientnet_b7\"",
                         "\"efficientnet_b8.ra_in1k\"",
                         "\"resnet50.a1_in1k\"",
                         "\"timm/tf_efficientnet_b0.ns_jft_in1k\"",
                         "\"tf_efficientnet_b0.NS\"",
                         "\"tf_efficientnet_b0.\"",
                         "\"tf_efficientnet_b0.ns/../x\"",
                         "\"tf_efficientnet_b0._x\"",
                         "\"efficientnet_b10.x\"",
                         "3",
                         "\"\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *js = fl_strdupf("{\"embed\":{\"backbone\":{\"weights\":%s}}}", bad[i]);
        fl_plan_init(&p, "/tmp");
        c = cJSON_Parse(js);
        assert_non_null(c);
        assert_int_equal(fl_plan_embed_weights(&p, c, &n, &e), -1);
        if (!strstr(e.msg, "config key 'embed.backbone.weights' is '") ||
            !strstr(e.msg, "not timm EfficientNet weights"))
            fail_msg("%s: %s", bad[i], e.msg);
        assert_int_equal(p.n, 0);
        cJSON_Delete(c);
        fl_plan_free(&p);
        free(js);
    }
    fl_plan_init(&p, "/tmp");
    c = cJSON_Parse("{\"embed\":{\"backbone\":{\"weights\":\"efficientnet_b0.ra_in1k\","
                    "\"weights_url\":5}}}");
    assert_int_equal(fl_plan_embed_weights(&p, c, &n, &e), -1);
    assert_non_null(strstr(e.msg, "'embed.backbone.weights_url' must be a non-empty string"));
    cJSON_Delete(c);
    fl_plan_free(&p);
}

/* A tiny EfficientNet-named checkpoint: conv_stem.weight [4,3,3,3] and bn1.weight [4]. */
static void write_tiny(const char *path) {
    float w[108], b[4];
    for (int i = 0; i < 108; i++)
        w[i] = (float)i * 0.01f - 0.5f;
    for (int i = 0; i < 4; i++)
        b[i] = 1.0f + (float)i;
    const int64_t sw[] = {4, 3, 3, 3}, sb[] = {4};
    fl_st_entry v[] = {{"conv_stem.weight", FL_ST_F32, 4, sw, w},
                       {"bn1.weight", FL_ST_F32, 1, sb, b}};
    fl_err e;
    if (fl_st_write(path, v, 2, NULL, 0, &e)) fail_msg("%s", e.msg);
}

static int hf_requests_for(const ts_server *s, const char *path) {
    cJSON *j = ts_server_state(s);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "log")) {
        const cJSON *p = cJSON_GetObjectItem(r, "path");
        if (cJSON_IsString(p) && !strcmp(p->valuestring, path)) n++;
    }
    cJSON_Delete(j);
    return n;
}

static void test_run(void **state) {
    (void)state;
    if (system("command -v python3 > /dev/null 2>&1") != 0) {
        printf("skipped: python3 not found (the loopback hub needs it)\n");
        skip();
    }
    char *srv = ts_tmpdir("hubdir");
    char *served = fl_strdupf("%s/model.safetensors", srv);
    write_tiny(served);
    const char *extra[] = {"--serve-dir", srv, NULL};
    ts_fx *f = ts_fx_new("ok", NULL, extra);
    char *cfg =
        fl_strdupf("{\"embed\":{\"backbone\":{\"weights\":\"tf_efficientnet_b0.ns_jft_in1k\","
                   "\"weights_url\":\"%s/\"}}}",
                   f->srv.base);
    run r;
    run_init(&r, f->dir, cfg, "ew");
    free(cfg);
    fl_err e;
    if (fl_stage_embed_weights.run(&r.ctx, &e)) fail_msg("%s", e.msg);
    char *got = fl_strdupf("%s/" FL_EMBED_PRETRAINED_FILE, r.out);
    size_t lg, lw;
    char *a = fl_read_file(got, &lg, &e), *b = fl_read_file(served, &lw, &e);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(lg, lw);
    assert_memory_equal(a, b, lw);
    free(a), free(b), free(got);
    assert_int_equal(
        hf_requests_for(&f->srv,
                        "/timm/tf_efficientnet_b0.ns_jft_in1k/resolve/main/model.safetensors"),
        1);
    assert_int_equal(ts_server_violations(&f->srv), 0);
    char *log = fl_read_file(r.logp, NULL, &e);
    if (!strstr(log, "[weights] timm/tf_efficientnet_b0.ns_jft_in1k: 2 tensors, 112 values, "
                     "written as " FL_EMBED_PRETRAINED_FILE))
        fail_msg("log:\n%s", log);
    free(log);
    run_free(&r);
    ts_fx_free(f);
    /* Neither file on the hub (model.safetensors a 404, no pytorch_model.bin served): the
     * message names the key and both candidates. */
    f = ts_fx_new("hf404safetensors", NULL, extra);
    cfg = fl_strdupf("{\"embed\":{\"backbone\":{\"weights\":\"efficientnet_b1.nope\","
                     "\"weights_url\":\"%s\"}}}",
                     f->srv.base);
    run_init(&r, f->dir, cfg, "ew404");
    free(cfg);
    assert_int_equal(fl_stage_embed_weights.run(&r.ctx, &e), -1);
    if (!strstr(e.msg, "embed.backbone.weights 'efficientnet_b1.nope' (neither model.safetensors "
                       "nor pytorch_model.bin on the hub)") ||
        !strstr(e.msg, "404"))
        fail_msg("%s", e.msg);
    run_free(&r);
    ts_fx_free(f);
    /* pytorch_model.bin fallback (model.safetensors a 404): converted, then refused as not an
     * EfficientNet (the fixture's tensors are enc.weight ...). */
    fl_remove_tree(srv, &e);
    assert_int_equal(fl_mkdirs(srv, &e), 0);
    const char *src = getenv("FLUKE_SRC");
    char *bin = fl_strdupf("%s/tests/fixtures/pt/plain.bin", src && *src ? src : ".");
    char *to = fl_strdupf("%s/pytorch_model.bin", srv);
    assert_int_equal(fl_copy_file(bin, to, &e), 0);
    f = ts_fx_new("hf404safetensors", NULL, extra);
    cfg = fl_strdupf("{\"embed\":{\"backbone\":{\"weights\":\"efficientnet_b0.ra_in1k\","
                     "\"weights_url\":\"%s\"}}}",
                     f->srv.base);
    run_init(&r, f->dir, cfg, "ewbin");
    free(cfg);
    assert_int_equal(fl_stage_embed_weights.run(&r.ctx, &e), -1);
    if (!strstr(e.msg, "embed.backbone.weights 'efficientnet_b0.ra_in1k': the hub's file has no "
                       "conv_stem.weight (9 tensors)"))
        fail_msg("%s", e.msg);
    log = fl_read_file(r.logp, NULL, &e);
    assert_non_null(strstr(log, "timm/efficientnet_b0.ra_in1k/pytorch_model.bin: "));
    free(log);
    run_free(&r);
    ts_fx_free(f);
    fl_remove_tree(srv, &e);
    free(srv), free(served), free(bin), free(to);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
