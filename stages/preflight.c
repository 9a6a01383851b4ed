/* `fluke run`'s GPU check and CPU-time estimate (see preflight.h). */
#include "stages/preflight.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/device.h"
#include "runtime/graph.h"
#include "runtime/models/embed_head.h"
#include "runtime/models/yolo.h"
#include "stages/api/plan.h"
#include "stages/embed/embed.h"
#include "stages/synth/synth.h"

/* The competition's counts (SPECS.md section 1): what kaggle and local runs train on. */
#define KAGGLE_TRAIN 51033
#define KAGGLE_INDIVIDUALS 15587
/* Timed at this side at most (a multiple of 32), batch 2: a second or two on 2 cores for B7. */
#define PROBE_SIDE 128
#define PROBE_BATCH 2

static const cJSON *cfg_at(const cJSON *root, const char *path) {
    char key[64];
    const cJSON *o = root;
    while (o && *path) {
        size_t l = strcspn(path, ".");
        if (l >= sizeof key) return NULL;
        memcpy(key, path, l);
        key[l] = 0;
        o = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
        path += l + (path[l] == '.');
    }
    return o;
}

static double cfg_num(const cJSON *root, const char *path, double def) {
    const cJSON *v = cfg_at(root, path);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int probe_side(int imgsz) {
    int s = imgsz < PROBE_SIDE ? imgsz : PROBE_SIDE;
    return s < 32 ? 32 : s / 32 * 32;
}

/* Fills every F32 input of a compiled graph with small values, labels with 0. */
static void fill_input(fl_graph *g, fl_id x, int labels) {
    void *v = x >= 0 ? fl_graph_value(g, x) : NULL;
    int64_t n = x >= 0 ? fl_graph_numel(g, x) : 0;
    if (!v) return;
    if (labels) memset(v, 0, (size_t)n * sizeof(int32_t));
    else
        for (int64_t i = 0; i < n; i++) ((float *)v)[i] = (float)((i * 7919) % 255) / 255.0f;
}

/* Seconds of one forward + backward (second of two: the first warms caches) of a compiled
 * graph; seed: NULL for a scalar target. */
static int time_step(fl_graph *g, const void *seed, double *sec, fl_err *e) {
    double best = 0;
    for (int r = 0; r < 2; r++) {
        double t0 = now_s();
        if (fl_graph_forward(g, e) || fl_graph_backward(g, seed, e)) return -1;
        best = now_s() - t0;
    }
    *sec = best;
    return 0;
}

static int embed_probe(const cJSON *config, int nclasses, double *s_per_img, fl_err *e) {
    fl_embopts o;
    if (fl_embopts_from_json(cfg_at(config, "embed"), &o, e)) return fl_errprefix(e, "embed");
    o.model.arc.num_classes = nclasses;
    o.model.num_species = o.species_head ? 26 : 0;
    int side = probe_side(o.imgsz);
    fl_pstore *ps = fl_pstore_new(FL_F32, 1, e);
    fl_graph *small = ps ? fl_graph_new(ps, FL_MODE_TRAIN, e) : NULL;
    fl_graph *full = ps ? fl_graph_new(ps, FL_MODE_TRAIN, e) : NULL;
    fl_embed_model ms, mf;
    int rc = -1;
    double sec = 0;
    if (full && !fl_embed_build(small, &o.model, PROBE_BATCH, side, side, 1, &ms, e) &&
        !fl_embed_build(full, &o.model, PROBE_BATCH, o.imgsz, o.imgsz, 1, &mf, e) &&
        !fl_graph_compile(small, ms.loss, e)) {
        fill_input(small, ms.x, 0);
        fill_input(small, ms.labels, 1);
        fill_input(small, ms.species, 1);
        if (ms.margins >= 0) {
            float *m = fl_graph_value(small, ms.margins);
            for (int64_t i = 0; i < fl_graph_numel(small, ms.margins); i++) m[i] = 0.3f;
        }
        fl_graph_set_rng(small, 1, 0);
        if (!time_step(small, NULL, &sec, e)) {
            /* both graphs hold PROBE_BATCH images: seconds per image scale by their MACs */
            double mac_small = (double)fl_graph_macs(small);
            *s_per_img = sec / PROBE_BATCH * (double)fl_graph_macs(full) / (mac_small > 0 ? mac_small : 1);
            rc = 0;
        }
    }
    fl_graph_free(full);
    fl_graph_free(small);
    fl_pstore_free(ps);
    return rc;
}

static int detector_probe(const cJSON *config, double *s_per_img, fl_err *e) {
    const cJSON *sz = cfg_at(config, "detector.size");
    const char *size = cJSON_IsString(sz) ? sz->valuestring : "n";
    fl_yolo_cfg c;
    if (strlen(size) != 1 || !strchr("nsmlx", size[0]))
        return fl_errf(e, "detector.size: '%s' is not a YOLOv5 size (n, s, m, l, x)", size);
    if (fl_yolo_cfg_size(&c, size[0], 1, e) ||
        fl_yolo_cfg_make(&c, cfg_num(config, "detector.depth", c.depth),
                         cfg_num(config, "detector.width", c.width), 1, e))
        return fl_errprefix(e, "detector");
    int imgsz = (int)cfg_num(config, "detector.imgsz", 640), side = probe_side(imgsz);
    fl_pstore *ps = fl_pstore_new(FL_F32, 1, e);
    fl_graph *small = ps ? fl_graph_new(ps, FL_MODE_TRAIN, e) : NULL;
    fl_graph *full = ps ? fl_graph_new(ps, FL_MODE_TRAIN, e) : NULL;
    int rc = -1;
    float *seed = NULL;
    if (full) {
        fl_yolo_heads hs, hf;
        fl_id xs = fl_input(small, "x", 4, (int64_t[]){PROBE_BATCH, side, side, 3});
        fl_id xf = fl_input(full, "x", 4, (int64_t[]){PROBE_BATCH, imgsz, imgsz, 3});
        fl_id flat = -1;
        double sec = 0;
        if (!fl_yolo_build(small, ps, xs, &c, &hs, e) && !fl_yolo_build(full, ps, xf, &c, &hf, e) &&
            (flat = fl_yolo_flat_heads(small, &hs)) >= 0 && !fl_graph_compile(small, flat, e)) {
            size_t n = fl_yolo_total_numel(&hs);
            if (!(seed = malloc(n * sizeof *seed))) {
                fl_errf(e, "out of memory");
            } else {
                for (size_t i = 0; i < n; i++) seed[i] = 1e-3f;
                fill_input(small, xs, 0);
                if (!time_step(small, seed, &sec, e)) {
                    double mac_small = (double)fl_graph_macs(small);
                    *s_per_img = sec / PROBE_BATCH * (double)fl_graph_macs(full) / (mac_small > 0 ? mac_small : 1);
                    rc = 0;
                }
            }
        } else if (flat < 0 && !e->msg[0]) {
            fl_errf(e, "detector: %s", fl_graph_error(small));
        }
    }
    free(seed);
    fl_graph_free(full);
    fl_graph_free(small);
    fl_pstore_free(ps);
    return rc;
}

int fl_train_estimate_run(const cJSON *config, const fl_plan *p, const unsigned char *sel,
                          fl_train_estimate *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    double ntrain = KAGGLE_TRAIN, nind = KAGGLE_INDIVIDUALS;
    const cJSON *src = cfg_at(config, "pipeline.source");
    if (!cJSON_IsString(src) || !strcmp(src->valuestring, "synth")) {
        fl_synth_params sp;
        if (fl_synth_params_from_json(cfg_at(config, "synth"), &sp, e)) return fl_errprefix(e, "synth");
        ntrain = sp.n_train;
        nind = nind * ntrain / KAGGLE_TRAIN + 1;
    }
    double k = cfg_num(config, "folds.k", 5);
    double emb_epochs = cfg_num(config, "embed.train.epochs", 20);
    double re_epochs = cfg_num(config, "pseudo.retrain.epochs", emb_epochs);
    double det_imgs = ntrain * (1 - cfg_num(config, "detector.val_share", 0.15)) *
                      cfg_num(config, "detector.epochs", 100);
    for (size_t i = 0; i < p->n; i++) {
        const fl_plan_node *n = p->nodes[i];
        if (!sel[i]) continue;
        if (!strcmp(n->def->name, "detector_train")) {
            out->detector_nodes++;
            out->det_images += det_imgs;
        } else if (!strcmp(n->def->name, "embed_train")) {
            /* retrain[r][k] runs the embed_train stage too (plus pseudo-labelled crops, not
             * counted: how many is known only after round r-1) */
            out->embed_nodes++;
            out->emb_images += ntrain * (k - 1) / k * (strncmp(n->id, "retrain", 7) ? emb_epochs : re_epochs);
        }
    }
    if (!out->detector_nodes && !out->embed_nodes) return 0;
    /* the stages' thread budget, but never more threads than cores: oversubscribed, the probe
     * would measure contention, not the model */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    out->threads = (int)cfg_num(config, "pipeline.threads", 2);
    if (ncpu > 0 && out->threads > ncpu) out->threads = (int)ncpu;
    int keep_omp = omp_get_max_threads(), keep_blas = openblas_get_num_threads();
    omp_set_num_threads(out->threads);
    openblas_set_num_threads(out->threads);
    int rc = 0;
    if (out->detector_nodes && detector_probe(config, &out->det_s_per_img, e)) rc = -1;
    if (!rc && out->embed_nodes && embed_probe(config, (int)nind, &out->emb_s_per_img, e)) rc = -1;
    omp_set_num_threads(keep_omp);
    openblas_set_num_threads(keep_blas);
    if (rc) return fl_errprefix(e, "estimating the CPU training time");
    out->total_s = out->det_images * out->det_s_per_img + out->emb_images * out->emb_s_per_img;
    return 0;
}

static void human_time(double s, char *buf, size_t len) {
    if (s < 120) snprintf(buf, len, "%.0f s", s);
    else if (s < 7200) snprintf(buf, len, "%.0f min", s / 60);
    else if (s < 3 * 86400) snprintf(buf, len, "%.0f h", s / 3600);
    else snprintf(buf, len, "%.0f days", s / 86400);
}

int fl_pipeline_preflight(const fl_preflight *pf, fl_err *e) {
    int gpus = (int)cfg_num(pf->config, "resources.gpus", 0);
    if (gpus < 1) return 0; /* a CPU config: nothing to check */
    const char *why = !fl_device_cuda_built() ? "this fluke was built without CUDA"
                      : fl_device_count() == 0 ? "this machine has no usable CUDA device"
                                               : "fluke's CUDA training backend is not built yet, "
                                                 "so the CPU would train";
    /* only now which stages would really run: that hashes the external inputs */
    unsigned char *will = calloc(pf->plan->n + 1, 1);
    if (!will) return fl_errf(e, "out of memory");
    fl_train_estimate est;
    int rc = pf->would_run ? pf->would_run(pf, will, e) : (memcpy(will, pf->sel, pf->plan->n), 0);
    if (!rc) rc = fl_train_estimate_run(pf->config, pf->plan, will, &est, e);
    free(will);
    if (rc) return -1;
    if (!est.detector_nodes && !est.embed_nodes) return 0; /* nothing to train in this run */
    char total[32], det[32], emb[32], parts[256] = "";
    human_time(est.total_s, total, sizeof total);
    human_time(est.det_images * est.det_s_per_img, det, sizeof det);
    human_time(est.emb_images * est.emb_s_per_img, emb, sizeof emb);
    size_t o = 0;
    if (est.detector_nodes)
        o += (size_t)snprintf(parts + o, sizeof parts - o, "detector_train %s (%.2f s per image-epoch)",
                              det, est.det_s_per_img);
    if (est.embed_nodes && o < sizeof parts)
        snprintf(parts + o, sizeof parts - o, "%s%d embedding trainings %s (%.2f s per image-epoch)",
                 o ? ", " : "", est.embed_nodes, emb, est.emb_s_per_img);
    const cJSON *fc = cfg_at(pf->config, "resources.force_cpu");
    if (pf->force_cpu || cJSON_IsTrue(fc)) {
        fprintf(stderr,
                "[fluke] %s asks for %d GPU%s but %s: training on the CPU as asked, about %s on %d "
                "thread%s (%s)\n",
                pf->config_file, gpus, gpus == 1 ? "" : "s", why, total, est.threads,
                est.threads == 1 ? "" : "s", parts);
        return 0;
    }
    return fl_errf(e,
                   "%s asks for %d GPU%s (resources.gpus) but %s: its training would take about "
                   "%s on this CPU with %d thread%s (%s; measured here, pseudo-labelled crops "
                   "not counted). Nothing was run. Train on the CPU anyway with `fluke run --cpu` "
                   "(or resources.force_cpu: true), or run on a machine with a GPU",
                   pf->config_file, gpus, gpus == 1 ? "" : "s", why, total, est.threads,
                   est.threads == 1 ? "" : "s", parts);
}
