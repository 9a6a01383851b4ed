/* Detector validation (stages/detector/val.h). */
#include "stages/detector/val.h"

#include <stdlib.h>
#include <string.h>

struct fl_detval_ctx {
    fl_detector_meta meta;
    const fl_loader_item *items;
    size_t n;
    int workers;
    fl_pstore *store;
    fl_graph *g;
    fl_id x, flat;
    fl_yolo_heads h;
    fl_yolo_det **dets;
    int *ndets;
    fl_yolo_gt *gt;
    size_t ngt, cap_gt;
};

fl_detval_ctx *fl_detval_new(const fl_detector_meta *m, const fl_loader_item *items, size_t n,
                             int workers, fl_err *e) {
    fl_detval_ctx *v = calloc(1, sizeof *v);
    if (!v) return fl_errf(e, "out of memory"), NULL;
    v->meta = *m;
    v->items = items;
    v->n = n;
    v->workers = workers;
    int s = m->imgsz;
    v->dets = calloc(n, sizeof *v->dets);
    v->ndets = calloc(n, sizeof *v->ndets);
    if (!v->dets || !v->ndets || !(v->store = fl_pstore_new(FL_F32, 0, e)) ||
        !(v->g = fl_graph_new(v->store, FL_MODE_EVAL, e))) {
        if (!e->msg[0]) fl_errf(e, "out of memory");
        fl_detval_free(v);
        return NULL;
    }
    v->x = fl_input(v->g, "x", 4, (int64_t[]){FL_DETVAL_BATCH, s, s, 3});
    if (fl_yolo_build(v->g, v->store, v->x, &m->cfg, &v->h, e) ||
        (v->flat = fl_yolo_flat_heads(v->g, &v->h), fl_graph_compile(v->g, v->flat, e) < 0)) {
        fl_detval_free(v);
        return NULL;
    }
    return v;
}

fl_pstore *fl_detval_store(fl_detval_ctx *v) {
    return v->store;
}

static void clear(fl_detval_ctx *v) {
    for (size_t i = 0; i < v->n; i++) {
        free(v->dets[i]);
        v->dets[i] = NULL;
        v->ndets[i] = 0;
    }
    v->ngt = 0;
}

void fl_detval_free(fl_detval_ctx *v) {
    if (!v) return;
    if (v->dets) clear(v);
    free(v->dets);
    free(v->ndets);
    free(v->gt);
    fl_graph_free(v->g);
    fl_pstore_free(v->store);
    free(v);
}

static int push_gt(fl_detval_ctx *v, fl_yolo_gt g, fl_err *e) {
    if (v->ngt == v->cap_gt) {
        size_t cap = v->cap_gt ? 2 * v->cap_gt : 256;
        fl_yolo_gt *p = realloc(v->gt, cap * sizeof *p);
        if (!p) return fl_errf(e, "out of memory");
        v->gt = p, v->cap_gt = cap;
    }
    v->gt[v->ngt++] = g;
    return 0;
}

int fl_detval_run(fl_detval_ctx *v, fl_detval *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    clear(v);
    fl_loader_config lc = fl_loader_config_defaults();
    lc.items = v->items;
    lc.n_items = v->n;
    lc.task = FL_TASK_DETECT;
    lc.out_w = lc.out_h = v->meta.imgsz;
    lc.batch_size = FL_DETVAL_BATCH;
    lc.workers = v->workers;
    lc.augment = 0;
    lc.sampler = FL_SAMPLER_SEQUENTIAL;
    lc.epochs = 1;
    lc.on_bad_image = FL_BAD_IMAGE_SKIP;
    fl_loader *L = fl_loader_open(&lc, e);
    if (!L) return -1;
    fl_yolo_nms_cfg nc = {0.001f, 0.6f, 300};
    const fl_batch *b;
    int r, rc = 0;
    size_t img = 0;
    while (rc == 0 && (r = fl_loader_next(L, &b, e)) == 1) {
        size_t per = (size_t)v->meta.imgsz * v->meta.imgsz * 3;
        float *xin = fl_graph_value(v->g, v->x);
        memcpy(xin, b->images, (size_t)b->n * per * sizeof *xin);
        if (b->n < FL_DETVAL_BATCH)
            memset(xin + (size_t)b->n * per, 0,
                   (size_t)(FL_DETVAL_BATCH - b->n) * per * sizeof *xin);
        if (fl_graph_forward(v->g, e) < 0) {
            rc = -1;
            break;
        }
        const float *heads = fl_graph_value(v->g, v->flat);
        for (int i = 0; i < b->n && rc == 0; i++, img++) {
            int nd = fl_yolo_detect(&v->meta.cfg, &v->h, heads, i, &nc, &v->dets[img], e);
            if (nd < 0)
                rc = -1;
            else
                v->ndets[img] = nd;
            for (int k = 0; rc == 0 && k < b->nboxes[i]; k++) {
                const fl_box *bx = &b->boxes[(size_t)i * b->max_boxes + k];
                rc = push_gt(v, (fl_yolo_gt){(int)img, bx->cls, bx->x1, bx->y1, bx->x2, bx->y2}, e);
            }
        }
    }
    if (rc == 0 && r < 0) rc = -1;
    fl_loader_close(L);
    if (rc) return -1;
    fl_yolo_eval_out m;
    if (fl_yolo_eval((const fl_yolo_det *const *)v->dets, v->ndets, (int)img, v->gt, v->ngt,
                     v->meta.cfg.nc, &m, NULL, e))
        return -1;
    out->map50 = m.map50;
    out->map50_95 = m.map;
    out->precision = m.precision;
    out->recall = m.recall;
    out->images = (int)img;
    out->labels = (int)v->ngt;
    return 0;
}
