/* Writes a plan as files in the Kaggle layout (data_dir) and the hidden solution (truth_dir).
 *
 * data_dir/train.csv              image,species,individual_id (sorted by image)
 * data_dir/train_images/<image>.jpg
 * data_dir/test_images/<image>.jpg
 * data_dir/sample_submission.csv  image,predictions
 * data_dir/train_boxes.csv        image,bbox,conf,width,height with bbox "[[x1 y1 x2 y2]]"
 * truth_dir/solution.csv          image,individual_id,species,Usage (Public/Private)
 * truth_dir/test_boxes.csv        image,bbox,conf,width,height: the true box of every test image
 *                                 (same format as train_boxes.csv), for scoring the detector */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/synth/synth_internal.h"

typedef struct img_meta {
    int w, h;
    fl_synth_box box;
} img_meta;

static int cmp_name(const void *a, const void *b, void *ctx) {
    const fl_synth_plan *p = ctx;
    return strcmp(p->img[*(const int *)a].name, p->img[*(const int *)b].name);
}

/* Indices [lo, hi) of the plan's images sorted by file name. */
static int *sorted_range(const fl_synth_plan *p, int lo, int hi) {
    int n = hi - lo;
    int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int i = 0; i < n; i++) idx[i] = lo + i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_name, (void *)p);
    return idx;
}

static FILE *open_w(const char *dir, const char *name, char **path, fl_err *e) {
    *path = fl_strdupf("%s/%s", dir, name);
    FILE *f = fopen(*path, "wb");
    if (!f) fl_errf(e, "cannot create %s: %s", *path, strerror(errno));
    return f;
}

static int close_w(FILE *f, char *path, fl_err *e) {
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    int rc = bad ? fl_errf(e, "cannot write %s: %s", path, strerror(errno)) : 0;
    free(path);
    return rc;
}

static int cmp_count_desc(const void *a, const void *b, void *ctx) {
    const fl_synth_plan *p = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (p->ind[ia].n_train != p->ind[ib].n_train) return p->ind[ib].n_train - p->ind[ia].n_train;
    return strcmp(p->ind[ia].id, p->ind[ib].id);
}

static int write_csvs(const fl_synth_plan *p, const img_meta *meta, const char *data_dir,
                      const char *truth_dir, fl_err *e) {
    int nt = p->params.n_train;
    int *tr = sorted_range(p, 0, nt), *te = sorted_range(p, nt, p->n_images);
    int *by_count = malloc((size_t)p->n_individuals * sizeof *by_count);
    int rc = -1;
    char *path = NULL;
    FILE *f = NULL;
    if (!tr || !te || !by_count) { fl_errf(e, "synth: out of memory writing CSVs"); goto done; }

    if (!(f = open_w(data_dir, "train.csv", &path, e))) goto done;
    fprintf(f, "image,species,individual_id\n");
    for (int k = 0; k < nt; k++) {
        const fl_synth_image *im = &p->img[tr[k]];
        fprintf(f, "%s,%s,%s\n", im->name, fl_synth_species_label(p, im->individual),
                p->ind[im->individual].id);
    }
    if (close_w(f, path, e) != 0) goto done;

    if (!(f = open_w(data_dir, "train_boxes.csv", &path, e))) goto done;
    fprintf(f, "image,bbox,conf,width,height\n");
    for (int k = 0; k < nt; k++) {
        const fl_synth_image *im = &p->img[tr[k]];
        if (!im->has_box) continue;
        const img_meta *m = &meta[tr[k]];
        fprintf(f, "%s,[[%d %d %d %d]],1.0,%d,%d\n", im->name, m->box.x1, m->box.y1, m->box.x2,
                m->box.y2, m->w, m->h);
    }
    if (close_w(f, path, e) != 0) goto done;

    /* Like Kaggle's sample: a fixed, valid answer (the four most photographed individuals and
     * new_individual) for every test image. */
    for (int i = 0; i < p->n_individuals; i++) by_count[i] = i;
    qsort_r(by_count, (size_t)p->n_individuals, sizeof *by_count, cmp_count_desc, (void *)p);
    if (!(f = open_w(data_dir, "sample_submission.csv", &path, e))) goto done;
    fprintf(f, "image,predictions\n");
    for (int k = 0; k < p->params.n_test; k++) {
        fprintf(f, "%s,", p->img[te[k]].name);
        int written = 0;
        for (int j = 0; j < p->n_individuals && written < 4; j++)
            if (!p->ind[by_count[j]].is_new)
                fprintf(f, "%s ", p->ind[by_count[j]].id), written++;
        fprintf(f, "new_individual\n");
    }
    if (close_w(f, path, e) != 0) goto done;

    if (!(f = open_w(truth_dir, "solution.csv", &path, e))) goto done;
    fprintf(f, "image,individual_id,species,Usage\n");
    for (int k = 0; k < p->params.n_test; k++) {
        const fl_synth_image *im = &p->img[te[k]];
        const fl_synth_individual *in = &p->ind[im->individual];
        fprintf(f, "%s,%s,%s,%s\n", im->name, in->is_new ? "new_individual" : in->id,
                fl_synth_species_get(in->species)->name, im->is_public ? "Public" : "Private");
    }
    if (close_w(f, path, e) != 0) goto done;

    /* Hidden from the pipeline's data like solution.csv: only the score stage reads it. */
    if (!(f = open_w(truth_dir, "test_boxes.csv", &path, e))) goto done;
    fprintf(f, "image,bbox,conf,width,height\n");
    for (int k = 0; k < p->params.n_test; k++) {
        const fl_synth_image *im = &p->img[te[k]];
        const img_meta *m = &meta[te[k]];
        fprintf(f, "%s,[[%d %d %d %d]],1.0,%d,%d\n", im->name, m->box.x1, m->box.y1, m->box.x2,
                m->box.y2, m->w, m->h);
    }
    if (close_w(f, path, e) != 0) goto done;
    rc = 0;
done:
    free(tr);
    free(te);
    free(by_count);
    return rc;
}

int fl_synth_write(const fl_synth_plan *plan, const char *data_dir, const char *truth_dir,
                   int threads, fl_synth_progress_fn progress, void *user, fl_err *e) {
    char *tr_dir = fl_strdupf("%s/train_images", data_dir);
    char *te_dir = fl_strdupf("%s/test_images", data_dir);
    int rc = -1;
    img_meta *meta = calloc((size_t)plan->n_images, sizeof *meta);
    if (!meta) { fl_errf(e, "synth: out of memory"); goto done; }
    if (fl_mkdirs(tr_dir, e) || fl_mkdirs(te_dir, e) || fl_mkdirs(truth_dir, e)) goto done;

    int failed = 0, done_n = 0, n = plan->n_images;
    fl_err first = {{0}};
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (int i = 0; i < n; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        fl_err le = {{0}};
        fl_synth_picture pic;
        unsigned char *jpg = NULL;
        unsigned long len = 0;
        int ok = fl_synth_render(plan, i, &pic, &le) == 0;
        if (ok) {
            meta[i].w = pic.w, meta[i].h = pic.h, meta[i].box = pic.box;
            ok = fl_synth_jpeg_encode(pic.rgb, pic.w, pic.h, pic.quality, &jpg, &len, &le) == 0;
            fl_synth_picture_free(&pic);
        }
        if (ok) {
            char *path = fl_strdupf("%s/%s", plan->img[i].is_test ? te_dir : tr_dir,
                                    plan->img[i].name);
            ok = fl_write_file(path, jpg, len, &le) == 0;
            free(path);
        }
        free(jpg);
#pragma omp critical(fl_synth_write_report)
        {
            if (!ok && !failed) {
                first = le;
#pragma omp atomic write
                failed = 1;
            }
            done_n++;
            if (progress && ok) progress(user, done_n, n);
        }
    }
    if (failed) {
        *e = first;
        fl_errprefix(e, "synth");
        goto done;
    }
    rc = write_csvs(plan, meta, data_dir, truth_dir, e);
done:
    free(meta);
    free(tr_dir);
    free(te_dir);
    return rc;
}
