/* Stage "embed[k]": embeddings of every train and test crop by fold k's model, with flip TTA
 * (embed.tta.flip), written as the embeddings artifact (stages/ident/embeddings.h) under
 * embeddings/: a float32 matrix and its row index. */
#include <stdlib.h>
#include <string.h>

#include "codeid/embed.h"
#include "stages/embed/embed.h"
#include "stages/ident/embeddings.h"

typedef struct prog {
    fl_stage_ctx *c;
    size_t base, total;
} prog;

static void on_progress(void *u, size_t done, size_t total) {
    prog *p = u;
    (void)total;
    if ((p->base + done) % 256 < 32 || p->base + done == p->total)
        fl_stage_progress(p->c, p->base + done, p->total, "img", "embedding");
}

static int run_embed(fl_stage_ctx *c, fl_err *e) {
    fl_embopts o;
    if (fl_embed_stage_opts(c, &o, NULL, e)) return -1;
    const char *folds = fl_stage_input(c, "folds", e), *crop = folds ? fl_stage_input(c, "crop", e) : NULL;
    const char *model = crop ? fl_stage_input(c, "model", e) : NULL;
    if (!model) return -1;
    char *folds_csv = fl_strdupf("%s/folds.csv", folds);
    if (!folds_csv) return fl_errf(e, "out of memory");
    fl_embset s;
    int rc = fl_embset_build(folds_csv, crop, fl_stage_instance(c), &s, e);
    free(folds_csv);
    if (rc) return -1;
    fl_embinfer *m = fl_embinfer_new(&o, o.eval_batch, e);
    char *mpath = fl_strdupf("%s/%s", model, FL_EMBED_MODEL_FILE);
    if (!mpath) rc = fl_errf(e, "out of memory");
    else if (!m || fl_embmodel_load(mpath, fl_embinfer_store(m), e)) rc = -1;
    free(mpath);
    int64_t n = s.nall + s.ntest, d = o.model.emb_dim;
    fl_emb E = {.n = n, .d = d};
    E.m = rc ? NULL : malloc(sizeof *E.m * (size_t)(n ? n : 1) * (size_t)d);
    E.image = rc ? NULL : calloc((size_t)n + 1, sizeof *E.image);
    E.test = rc ? NULL : calloc((size_t)n + 1, 1);
    if (rc == 0 && (!E.m || !E.image || !E.test)) rc = fl_errf(e, "out of memory");
    prog p = {c, 0, (size_t)n};
    if (rc == 0)
        rc = fl_embinfer_run(m, s.all, (size_t)s.nall, o.workers, o.tta_flip, E.m, on_progress, &p, e);
    p.base = (size_t)s.nall;
    if (rc == 0)
        rc = fl_embinfer_run(m, s.test, (size_t)s.ntest, o.workers, o.tta_flip, E.m + s.nall * d,
                             on_progress, &p, e);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        E.image[i] = i < s.nall ? s.image[i] : s.test_image[i - s.nall];
        E.test[i] = i >= s.nall;
    }
    char *dir = fl_strdupf("%s/embeddings", fl_stage_out_dir(c));
    if (rc == 0 && !dir) rc = fl_errf(e, "out of memory");
    if (rc == 0) rc = fl_mkdirs(dir, e);
    if (rc == 0) rc = fl_emb_write(dir, &E, e);
    if (rc == 0)
        fl_stage_log(c, "%lld train + %lld test embeddings of %lld dimensions%s", (long long)s.nall,
                     (long long)s.ntest, (long long)d, o.tta_flip ? " (flip TTA)" : "");
    free(dir);
    free(E.m);
    free(E.image);
    free(E.test);
    fl_embinfer_free(m);
    fl_embset_free(&s);
    return rc;
}

const fl_stage_def fl_stage_embed = {
    .name = "embed",
    .code_id = FL_CODE_ID,
    .summary = "embeddings of every train and test crop by fold k's model (flip TTA)",
    .run = run_embed,
};
