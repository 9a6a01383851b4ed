/* The fetch, weights and detector_weights stages run with a hand-built stage context against the
 * loopback server: outputs in the declared places, client lines in the stage log, config errors
 * naming the key, the fetch output's tree digest equal across two downloads of differently-zipped
 * but identical data (so a fresh download is still a cache hit downstream), and PyTorch files
 * (the pytorch_model.bin fallback, ultralytics release weights) converted to safetensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "stages/api/plan.h"
#include "runtime/safetensors.h"
#include "stages/detector/weights_stage.h"
#include "stages/fetch/stages.h"
#include "tests/kaggle/server_child.h"

typedef struct run {
    fl_plan plan;
    fl_plan_node *node;
    fl_stage_ctx ctx;
    cJSON *cfg;
    char *out, *work, *logp;
    int logfd;
} run;

static void run_init(run *r, ts_fx *f, const fl_stage_def *def, const char *section,
                     const char *cfg_json, const char *tag) {
    memset(r, 0, sizeof *r);
    fl_err e;
    fl_plan_init(&r->plan, f->dir);
    r->cfg = cJSON_Parse(cfg_json);
    assert_non_null(r->cfg);
    if (section) {
        r->node = fl_plan_add(&r->plan, def, -1, &e);
        assert_non_null(r->node);
        assert_int_equal(fl_plan_node_section(r->node, section, &e), 0);
    } else { /* the stage's own plan helper */
        assert_int_equal(fl_plan_detector_weights(&r->plan, r->cfg, &r->node, &e), 0);
        assert_non_null(r->node);
    }
    r->out = fl_strdupf("%s/%s-out", f->dir, tag);
    r->work = fl_strdupf("%s/%s-work", f->dir, tag);
    r->logp = fl_strdupf("%s/%s.log", f->dir, tag);
    assert_int_equal(fl_mkdirs(r->out, &e), 0);
    assert_int_equal(fl_mkdirs(r->work, &e), 0);
    r->logfd = open(r->logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    r->ctx = (fl_stage_ctx){.node = r->node, .config = r->cfg, .out_dir = r->out,
                            .work_dir = r->work, .threads = 1, .gpu = -1, .t_start = fl_now(),
                            .out_fd = r->logfd};
}

static char *run_log(run *r) {
    fl_err e;
    return fl_read_file(r->logp, NULL, &e);
}

static void run_free(run *r) {
    close(r->logfd);
    cJSON_Delete(r->cfg);
    fl_plan_free(&r->plan);
    free(r->out);
    free(r->work);
    free(r->logp);
}

static char *cfg_for(ts_fx *f, const char *extra) {
    return fl_strdupf("{\"kaggle\":{\"competition\":\"%s\",\"base_url\":\"%s\"%s}}", TS_COMP,
                      f->srv.base, extra ? extra : "");
}

static void test_fetch_stage_and_stable_digest(void **state) {
    (void)state;
    fl_digest d[2];
    char *store_dir = ts_tmpdir("kstore");
    fl_err e;
    fl_store *s = fl_store_open(store_dir, NULL, &e);
    assert_non_null(s);
    uint8_t zipmd5[2][16];
    for (int i = 0; i < 2; i++) {
        /* The same files with other timestamps: different zips, the same data. */
        const char *year[] = {"--zip-year", i ? "2021" : "2020", NULL};
        ts_fx *f = ts_fx_new("ok", NULL, year);
        run r;
        char *cfg = cfg_for(f, NULL);
        run_init(&r, f, &fl_stage_fetch, "kaggle", cfg, "fetch");
        free(cfg);
        int rc = fl_stage_fetch.run(&r.ctx, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        char *p = fl_strdupf("%s/data/train.csv", r.out);
        assert_true(ts_exists(p));
        free(p);
        char *log = run_log(&r);
        assert_non_null(strstr(log, "[fetch] competition " TS_COMP));
        assert_non_null(strstr(log, "[fetch] extracted 5 files"));
        assert_false(ts_has_secret(log));
        free(log);
        char *zp = fl_strdupf("%s/%s.zip", r.work, TS_COMP);
        size_t zl;
        char *z = fl_read_file(zp, &zl, &e);
        assert_non_null(z);
        fl_md5 m;
        fl_md5_init(&m);
        fl_md5_update(&m, z, zl);
        fl_md5_final(&m, zipmd5[i]);
        free(z);
        free(zp);
        assert_int_equal(fl_store_ingest(s, r.out, &d[i], &e), 0);
        run_free(&r);
        ts_fx_free(f);
    }
    assert_true(memcmp(zipmd5[0], zipmd5[1], 16) != 0);
    assert_true(fl_digest_eq(&d[0], &d[1]));
    fl_store_close(s);
    fl_remove_tree(store_dir, &e);
    free(store_dir);
}

static void test_fetch_stage_config_errors(void **state) {
    (void)state;
    ts_fx *f = ts_fx_new("ok", NULL, NULL);
    const char *bad[][2] = {
        {"{\"kaggle\":{}}", "'kaggle.competition' is missing"},
        {"{\"kaggle\":{\"competition\":7}}", "'kaggle.competition' must be"},
        {"{\"kaggle\":{\"competition\":\"a/../b\"}}", "not a competition slug"},
        {"{\"kaggle\":{\"competition\":\"x\",\"files\":\"train.csv\"}}", "'kaggle.files' must be"},
        {"{\"kaggle\":{\"competition\":\"x\",\"files\":[3]}}", "'kaggle.files[0]'"},
        {"{\"kaggle\":{\"competition\":\"x\",\"base_url\":\"ftp://h\"}}", "base URL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run r;
        run_init(&r, f, &fl_stage_fetch, "kaggle", bad[i][0], "bad");
        fl_err e;
        assert_int_equal(fl_stage_fetch.run(&r.ctx, &e), -1);
        if (!strstr(e.msg, bad[i][1])) fprintf(stderr, "case %zu: %s\n", i, e.msg);
        assert_non_null(strstr(e.msg, bad[i][1]));
        run_free(&r);
    }
    /* fluke submit's view of the section. */
    cJSON *cfg = cJSON_Parse("{\"kaggle\":{\"competition\":\"happy-whale-and-dolphin\"}}");
    const char *comp;
    fl_kaggle_opts o;
    fl_err e;
    assert_int_equal(fl_kaggle_submit_opts(cfg, &comp, &o, &e), 0);
    assert_string_equal(comp, "happy-whale-and-dolphin");
    assert_null(o.base_url);
    cJSON_Delete(cfg);
    cfg = cJSON_Parse("{\"synth\":{}}");
    assert_int_equal(fl_kaggle_submit_opts(cfg, &comp, &o, &e), -1);
    assert_non_null(strstr(e.msg, "kaggle.competition"));
    cJSON_Delete(cfg);
    ts_fx_free(f);
}

/* A directory the server serves (--serve-dir): copies of fixtures under other names. */
static char *serve_dir(const char *const *pairs) {
    char *d = ts_tmpdir("serve");
    const char *src = getenv("FLUKE_SRC");
    fl_err e;
    for (int i = 0; pairs[i]; i += 2) {
        char *from = fl_strdupf("%s/tests/fixtures/pt/%s", src && *src ? src : ".", pairs[i]);
        char *to = fl_strdupf("%s/%s", d, pairs[i + 1]);
        assert_int_equal(fl_copy_file(from, to, &e), 0);
        free(from);
        free(to);
    }
    return d;
}

static void test_weights_stage(void **state) {
    (void)state;
    char *dir = serve_dir((const char *const[]){"plain.bin", "pytorch_model.bin", NULL});
    const char *extra[] = {"--serve-dir", dir, NULL};
    ts_fx *f = ts_fx_new("hf404safetensors", NULL, extra);
    char *bin = fl_strdupf("%s/pytorch_model.bin", dir);
    struct stat st;
    assert_int_equal(stat(bin, &st), 0);
    char *cfg = fl_strdupf("{\"weights\":{\"repo\":\"timm/tf_efficientnet_b7.ns_jft_in1k\","
                           "\"base_url\":\"%s\",\"size\":%lld}}", f->srv.base, (long long)st.st_size);
    run r;
    run_init(&r, f, &fl_stage_weights, "weights", cfg, "w");
    free(cfg);
    fl_err e;
    int rc = fl_stage_weights.run(&r.ctx, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    /* The fallback's .bin is converted: only model.safetensors is in the output. */
    char *p = fl_strdupf("%s/weights/pytorch_model.bin", r.out);
    assert_false(ts_exists(p));
    free(p);
    p = fl_strdupf("%s/weights/model.safetensors", r.out);
    fl_st_file *sf = fl_st_open(p, &e);
    assert_non_null(sf);
    assert_int_equal(sf->n, 9);
    assert_int_equal(sf->t[0].dtype, FL_ST_F32);
    assert_string_equal(sf->t[0].name, "enc.weight");
    fl_st_close(sf);
    free(p);
    char *log = run_log(&r);
    char *want = fl_strdupf("[weights] timm/tf_efficientnet_b7.ns_jft_in1k/pytorch_model.bin: %lld bytes, "
                            "converted to model.safetensors (9 tensors, F32)", (long long)st.st_size);
    if (!strstr(log, want)) fprintf(stderr, "log:\n%s\n", log);
    assert_non_null(strstr(log, want));
    free(want);
    free(log);
    run_free(&r);
    const char *bad[][2] = {
        {"{\"weights\":{}}", "'weights.repo'"},
        {"{\"weights\":{\"repo\":\"a/b\",\"xxh3\":\"zz\"}}", "'weights.xxh3'"},
        {"{\"weights\":{\"repo\":\"a/b\",\"size\":-1}}", "'weights.size'"},
        {"{\"weights\":{\"repo\":\"a/b\",\"file\":\"\"}}", "'weights.file'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_init(&r, f, &fl_stage_weights, "weights", bad[i][0], "wbad");
        assert_int_equal(fl_stage_weights.run(&r.ctx, &e), -1);
        assert_non_null(strstr(e.msg, bad[i][1]));
        run_free(&r);
    }
    ts_fx_free(f);
    /* A .bin that is not a state dict (a pickled os.system call): refused, nothing run. */
    fl_remove_tree(dir, &e);
    free(dir);
    dir = serve_dir((const char *const[]){"evil_sd.bin", "pytorch_model.bin", NULL});
    extra[1] = dir;
    f = ts_fx_new("hf404safetensors", NULL, extra);
    cfg = fl_strdupf("{\"weights\":{\"repo\":\"a/b\",\"base_url\":\"%s\"}}", f->srv.base);
    run_init(&r, f, &fl_stage_weights, "weights", cfg, "wevil");
    free(cfg);
    assert_int_equal(fl_stage_weights.run(&r.ctx, &e), -1);
    assert_non_null(strstr(e.msg, "pytorch_model.bin: the state dict entry 'x' is a posix.system object"));
    run_free(&r);
    ts_fx_free(f);
    fl_remove_tree(dir, &e);
    free(dir);
    free(bin);
}

static void test_detector_weights_stage(void **state) {
    (void)state;
    char *dir = serve_dir((const char *const[]){"yolo_tiny.pt", "yolov5s.pt", NULL});
    const char *extra[] = {"--serve-dir", dir, NULL};
    ts_fx *f = ts_fx_new("ok", NULL, extra);
    char *cfg = fl_strdupf("{\"detector\":{\"weights\":\"yolov5s\",\"epochs\":3,"
                           "\"weights_url\":\"%s/releases/download/v7.0/\"}}", f->srv.base);
    run r;
    run_init(&r, f, &fl_stage_detector_weights, NULL, cfg, "dw");
    free(cfg);
    /* The node reads exactly the two keys, so other detector settings never re-download. */
    assert_int_equal(r.node->sections.n, 2);
    assert_string_equal(r.node->sections.v[0], "detector.weights");
    assert_string_equal(r.node->sections.v[1], "detector.weights_url");
    fl_err e;
    int rc = fl_stage_detector_weights.run(&r.ctx, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    char *p = fl_strdupf("%s/" FL_DETECTOR_PRETRAINED_FILE, r.out);
    fl_st_file *got = fl_st_open(p, &e);
    assert_non_null(got);
    const char *src = getenv("FLUKE_SRC");
    char *wp = fl_strdupf("%s/tests/fixtures/pt/yolo_tiny_expected.safetensors", src && *src ? src : ".");
    fl_st_file *want = fl_st_open(wp, &e);
    assert_non_null(want);
    assert_int_equal(got->n, want->n);
    assert_string_equal(fl_st_meta(got, "source"), "yolov5s.pt");
    for (size_t i = 0; i < want->n; i++) {
        assert_string_equal(got->t[i].name, want->t[i].name);
        assert_int_equal(got->t[i].end - got->t[i].begin, want->t[i].end - want->t[i].begin);
        assert_memory_equal(got->t[i].data, want->t[i].data, want->t[i].end - want->t[i].begin);
    }
    fl_st_close(got);
    fl_st_close(want);
    free(wp);
    free(p);
    char *log = run_log(&r);
    assert_non_null(strstr(log, "[detector_weights] yolov5s.pt: "));
    assert_non_null(strstr(log, "model (a models.yolo.DetectionModel object)"));
    free(log);
    run_free(&r);
    /* A name the release does not have: the 404 names the URL and the key. */
    cfg = fl_strdupf("{\"detector\":{\"weights\":\"yolov5x6.pt\",\"weights_url\":\"%s/releases/download/v7.0\"}}",
                     f->srv.base);
    run_init(&r, f, &fl_stage_detector_weights, NULL, cfg, "dw404");
    free(cfg);
    assert_int_equal(fl_stage_detector_weights.run(&r.ctx, &e), -1);
    if (!strstr(e.msg, "yolov5x6.pt: not found (404)")) fprintf(stderr, "%s\n", e.msg);
    assert_non_null(strstr(e.msg, "/releases/download/v7.0/yolov5x6.pt: not found (404)"));
    run_free(&r);
    ts_fx_free(f);
    /* The plan helper: no node without the key, an error for a name that is not a release. */
    fl_plan pl;
    fl_plan_init(&pl, "/tmp");
    fl_plan_node *n = (fl_plan_node *)1;
    cJSON *c = cJSON_Parse("{\"detector\":{\"epochs\":3}}");
    assert_int_equal(fl_plan_detector_weights(&pl, c, &n, &e), 0);
    assert_null(n);
    assert_int_equal(pl.n, 0);
    cJSON_Delete(c);
    const char *badnames[] = {"yolov7", "yolov5", "yolov5s7", "yolov5S", "yolov5s.pth", "../yolov5s"};
    for (size_t i = 0; i < sizeof badnames / sizeof badnames[0]; i++) {
        char *js = fl_strdupf("{\"detector\":{\"weights\":\"%s\"}}", badnames[i]);
        c = cJSON_Parse(js);
        assert_int_equal(fl_plan_detector_weights(&pl, c, &n, &e), -1);
        assert_non_null(strstr(e.msg, "not a YOLOv5 release name"));
        cJSON_Delete(c);
        free(js);
    }
    char nm[16];
    assert_int_equal(fl_detector_weights_name("yolov5n6", nm, sizeof nm, &e), 0);
    assert_string_equal(nm, "yolov5n6.pt");
    fl_plan_free(&pl);
    fl_remove_tree(dir, &e);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_stage_and_stable_digest),
        cmocka_unit_test(test_fetch_stage_config_errors),
        cmocka_unit_test(test_weights_stage),
        cmocka_unit_test(test_detector_weights_stage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
