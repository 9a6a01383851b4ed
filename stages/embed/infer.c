/* Embeddings by an eval graph (stages/embed/embed.h). The loader's eval transform (crop resized
 * to imgsz, no augmentation) in item order; a short last batch is padded with zeros, harmless in
 * eval mode (BN uses running statistics, samples never mix). Flip TTA: the batch mirrored in
 * place and embedded again; each view L2-normalized, averaged, renormalized. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/embed/embed.h"

struct fl_embinfer {
    fl_embopts o;
    int batch;
    fl_pstore *store;
    fl_graph *g;
    fl_embed_model m;
    int64_t dim;
};

fl_embinfer *fl_embinfer_new(const fl_embopts *o, int batch, fl_err *e) {
    fl_embinfer *m = calloc(1, sizeof *m);
    if (!m) return fl_errf(e, "out of memory"), NULL;
    m->o = *o;
    m->batch = batch;
    m->dim = o->model.emb_dim;
    if (!(m->store = fl_pstore_new(FL_F32, o->seed, e)) ||
        !(m->g = fl_graph_new(m->store, FL_MODE_EVAL, e)) ||
        fl_embed_build(m->g, &o->model, batch, o->imgsz, o->imgsz, 0, &m->m, e) ||
        fl_graph_compile(m->g, m->m.emb, e) < 0) {
        fl_embinfer_free(m);
        return NULL;
    }
    return m;
}

fl_pstore *fl_embinfer_store(fl_embinfer *m) { return m->store; }
int64_t fl_embinfer_dim(const fl_embinfer *m) { return m->dim; }

void fl_embinfer_free(fl_embinfer *m) {
    if (!m) return;
    fl_graph_free(m->g);
    fl_pstore_free(m->store);
    free(m);
}

static void mirror(float *x, int n, int s) {
    for (int i = 0; i < n; i++)
        for (int y = 0; y < s; y++) {
            float *row = x + ((size_t)i * s + y) * s * 3;
            for (int a = 0, b = s - 1; a < b; a++, b--)
                for (int c = 0; c < 3; c++) {
                    float t = row[a * 3 + c];
                    row[a * 3 + c] = row[b * 3 + c];
                    row[b * 3 + c] = t;
                }
        }
}

static void normalize_add(const float *v, int64_t d, float *acc, int first) {
    double ss = 0;
    for (int64_t j = 0; j < d; j++) ss += (double)v[j] * v[j];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
    for (int64_t j = 0; j < d; j++) acc[j] = first ? v[j] * inv : acc[j] + v[j] * inv;
}

int fl_embinfer_run(fl_embinfer *m, const fl_loader_item *items, size_t n, int workers, int flip,
                    float *out, void (*progress)(void *u, size_t done, size_t total), void *u,
                    fl_err *e) {
    if (n == 0) return 0;
    fl_loader_config lc = fl_loader_config_defaults();
    lc.items = items;
    lc.n_items = n;
    lc.task = FL_TASK_REID;
    lc.out_w = lc.out_h = m->o.imgsz;
    lc.batch_size = m->batch;
    lc.workers = workers;
    lc.augment = 0;
    lc.sampler = FL_SAMPLER_SEQUENTIAL;
    lc.epochs = 1;
    lc.seed = m->o.seed;
    lc.reid = m->o.aug;
    lc.reid.enabled = 0;
    fl_loader *L = fl_loader_open(&lc, e);
    if (!L) return -1;
    int s = m->o.imgsz;
    int64_t d = m->dim;
    size_t per = (size_t)s * s * 3, done = 0;
    float *x = fl_graph_value(m->g, m->m.x);
    const float *emb = fl_graph_value(m->g, m->m.emb);
    int rc = 0;
    for (;;) {
        const fl_batch *b;
        int r = fl_loader_next(L, &b, e);
        if (r < 0) rc = -1;
        if (r <= 0) break;
        memcpy(x, b->images, (size_t)b->n * per * sizeof *x);
        if (b->n < m->batch) memset(x + (size_t)b->n * per, 0, (size_t)(m->batch - b->n) * per * sizeof *x);
        if (fl_graph_forward(m->g, e) < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < b->n; i++) normalize_add(emb + i * d, d, out + (done + i) * d, 1);
        if (flip) {
            mirror(x, b->n, s);
            if (fl_graph_forward(m->g, e) < 0) {
                rc = -1;
                break;
            }
            for (int i = 0; i < b->n; i++) normalize_add(emb + i * d, d, out + (done + i) * d, 0);
        }
        for (int i = 0; i < b->n; i++) {
            float *v = out + (done + i) * d;
            double ss = 0;
            for (int64_t j = 0; j < d; j++) ss += (double)v[j] * v[j];
            float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
            for (int64_t j = 0; j < d; j++) v[j] *= inv;
        }
        done += (size_t)b->n;
        if (progress) progress(u, done, n);
    }
    fl_loader_close(L);
    return rc;
}
