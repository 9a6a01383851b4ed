/* Raw-pixel kNN baseline (see baselines.h): what a model that learned nothing about whales,
 * only how photos look, can do. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/image/image.h"
#include "stages/labels/baselines.h"

#define KNN_K 32      /* neighbours kept per query before grouping by individual */
#define KNN_BLOCK 256 /* queries per GEMM block */

float *fl_knn_features(const char *dir, const char *const *images, int n, int thumb, int threads,
                       fl_err *e) {
    if (thumb < 2 || thumb > 256) {
        fl_errf(e, "pixel kNN: thumbnail side %d out of range [2, 256]", thumb);
        return NULL;
    }
    size_t dim = (size_t)thumb * thumb * 3;
    float *f = malloc((size_t)(n > 0 ? n : 1) * dim * sizeof *f);
    if (!f) {
        fl_errf(e, "pixel kNN: out of memory for %d thumbnails", n);
        return NULL;
    }
    int failed = 0;
    fl_err first = {{0}};
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (int i = 0; i < n; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        fl_err le = {{0}};
        char *path = fl_strdupf("%s/%s", dir, images[i]);
        fl_decode_opts o = {.target_w = 2 * thumb, .target_h = 2 * thumb};
        fl_image *img = path ? fl_jpeg_read(path, &o, NULL, &le) : NULL;
        fl_image *small = img ? fl_image_resize(img, thumb, thumb, FL_INTERP_AREA, &le) : NULL;
        if (small) {
            fl_image_to_float(small, f + (size_t)i * dim);
        } else {
#pragma omp critical(fl_knn_err)
            if (!failed) {
                first = le;
#pragma omp atomic write
                failed = 1;
            }
        }
        fl_image_free(small);
        fl_image_free(img);
        free(path);
    }
    if (failed) {
        *e = first;
        free(f);
        return NULL;
    }
    return f;
}

/* Subtracts mean (dim) from every row and L2-normalises it. */
static void centre_normalise(float *x, int n, size_t dim, const float *mean) {
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * dim;
        double s = 0;
        for (size_t d = 0; d < dim; d++) {
            r[d] -= mean[d];
            s += (double)r[d] * r[d];
        }
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (size_t d = 0; d < dim; d++) r[d] *= inv;
    }
}

typedef struct knn_hit {
    int ind[FL_MAP_K]; /* nearest distinct individuals (index into the id table) */
    int n;
    float top1;        /* best similarity */
} knn_hit;

/* For each query, the 5 nearest distinct individuals among its KNN_K nearest train images
 * (skipping train image exclude[q] when exclude is given). */
static int search(const float *q, int nq, const float *base, int nb, size_t dim,
                  const int *base_ind, const int *exclude, int threads, knn_hit *hits,
                  fl_err *e) {
    float *sim = malloc((size_t)KNN_BLOCK * (size_t)nb * sizeof *sim);
    if (!sim) return fl_errf(e, "pixel kNN: out of memory for a %dx%d similarity block",
                             KNN_BLOCK, nb);
    for (int q0 = 0; q0 < nq; q0 += KNN_BLOCK) {
        int m = nq - q0 < KNN_BLOCK ? nq - q0 : KNN_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nb, (int)dim, 1.0f,
                    q + (size_t)q0 * dim, (int)dim, base, (int)dim, 0.0f, sim, nb);
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
        for (int r = 0; r < m; r++) {
            const float *s = sim + (size_t)r * nb;
            int best[KNN_K], nbest = 0;
            int skip = exclude ? exclude[q0 + r] : -1;
            for (int j = 0; j < nb; j++) { /* insertion into a small sorted list */
                if (j == skip) continue;
                if (nbest == KNN_K && s[j] <= s[best[KNN_K - 1]]) continue;
                int p = nbest < KNN_K ? nbest++ : KNN_K - 1;
                while (p > 0 && s[best[p - 1]] < s[j]) best[p] = best[p - 1], p--;
                best[p] = j;
            }
            knn_hit *h = &hits[q0 + r];
            h->n = 0;
            h->top1 = nbest ? s[best[0]] : -1.0f;
            for (int k = 0; k < nbest && h->n < FL_MAP_K; k++) {
                int id = base_ind[best[k]], dup = 0;
                for (int t = 0; t < h->n; t++) dup |= h->ind[t] == id;
                if (!dup) h->ind[h->n++] = id;
            }
        }
    }
    free(sim);
    return 0;
}

/* The 5 labels: up to 4 (or 5) neighbours with new_individual first or second, filled up from
 * the most photographed individuals when the neighbours run out; NULL after the last label when
 * train has fewer than 4 individuals. */
static void answer(const knn_hit *h, int new_first, const char *const *ids, const char **fill,
                   int nfill, const char **out) {
    int k = 0, used = 0;
    if (new_first) out[k++] = FL_NEW_INDIVIDUAL;
    while (k < FL_MAP_K && used < h->n) {
        out[k++] = ids[h->ind[used++]];
        if (k == 1) out[k++] = FL_NEW_INDIVIDUAL;
    }
    if (k == 0) out[k++] = FL_NEW_INDIVIDUAL;
    for (int f = 0; f < nfill && k < FL_MAP_K; f++) {
        int dup = 0;
        for (int t = 0; t < k; t++) dup |= strcmp(out[t], fill[f]) == 0;
        if (!dup) out[k++] = fill[f];
    }
    if (k == 1 && strcmp(out[0], FL_NEW_INDIVIDUAL) != 0) out[k++] = FL_NEW_INDIVIDUAL;
    while (k < FL_MAP_K) out[k++] = NULL;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int fl_baseline_pixel_knn(const fl_train_set *train, const char *train_dir,
                          const char *const *test_images, int n_test, const char *test_dir,
                          const fl_knn_opts *o, const char *(*out)[FL_MAP_K],
                          fl_knn_report *rep, fl_err *e) {
    memset(rep, 0, sizeof *rep);
    int nt = train->n, rc = -1;
    /* The readers refuse empty files; a caller passing an empty set gets an error, not a crash
     * (the threshold quantiles index top1[0..nt-1]). */
    if (nt < 1) return fl_errf(e, "pixel kNN: the train set is empty");
    if (n_test < 1) return fl_errf(e, "pixel kNN: the test set is empty");
    size_t dim = (size_t)o->thumb * o->thumb * 3;
    float *xt = NULL, *xq = NULL, *mean = NULL;
    int *tind = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *tind);
    int *self = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *self);
    int *count = calloc((size_t)(nt > 0 ? nt : 1), sizeof *count);
    const char **ids = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *ids);
    knn_hit *hits = malloc((size_t)((nt > n_test ? nt : n_test) + 1) * sizeof *hits);
    double *ap_first = NULL, *ap_second = NULL;
    float *top1 = NULL;
    fl_strmap m = {0};
    const char *fill[FL_MAP_K];
    if (!tind || !self || !count || !ids || !hits) { fl_errf(e, "pixel kNN: out of memory"); goto done; }
    int nfill = fl_labels_top_individuals(train, FL_MAP_K, fill, e);
    if (nfill < 0 || fl_strmap_init(&m, (size_t)nt, e) != 0) goto done;
    int nid = 0;
    for (int i = 0; i < nt; i++) {
        int j = fl_strmap_get(&m, train->individual[i]);
        if (j < 0) {
            ids[j = nid++] = train->individual[i];
            if (fl_strmap_put(&m, ids[j], j) == -2) { fl_errf(e, "pixel kNN: out of memory"); goto done; }
        }
        tind[i] = j, self[i] = i, count[j]++;
    }
    if (!(xt = fl_knn_features(train_dir, train->image, nt, o->thumb, o->threads, e))) goto done;
    if (!(xq = fl_knn_features(test_dir, test_images, n_test, o->thumb, o->threads, e))) goto done;
    mean = calloc(dim, sizeof *mean);
    if (!mean) { fl_errf(e, "pixel kNN: out of memory"); goto done; }
    for (int i = 0; i < nt; i++)
        for (size_t d = 0; d < dim; d++) mean[d] += xt[(size_t)i * dim + d] / nt;
    centre_normalise(xt, nt, dim, mean);
    centre_normalise(xq, n_test, dim, mean);

    double thr = o->threshold;
    if (!o->has_threshold) {
        /* Leave-one-out on train: AP with new_individual first and second for every image,
         * then the threshold (a quantile of the top-1 similarities) that maximises the mean. */
        if (search(xt, nt, xt, nt, dim, tind, self, o->threads, hits, e) != 0) goto done;
        ap_first = malloc((size_t)nt * sizeof *ap_first);
        ap_second = malloc((size_t)nt * sizeof *ap_second);
        top1 = malloc((size_t)nt * sizeof *top1);
        if (!ap_first || !ap_second || !top1) { fl_errf(e, "pixel kNN: out of memory"); goto done; }
        for (int i = 0; i < nt; i++) {
            const char *truth = count[tind[i]] > 1 ? ids[tind[i]] : FL_NEW_INDIVIDUAL;
            const char *lab[FL_MAP_K];
            answer(&hits[i], 1, ids, fill, nfill, lab);
            ap_first[i] = fl_apk5(truth, lab, FL_MAP_K);
            answer(&hits[i], 0, ids, fill, nfill, lab);
            ap_second[i] = fl_apk5(truth, lab, FL_MAP_K);
            top1[i] = hits[i].top1;
        }
        qsort(top1, (size_t)nt, sizeof *top1, cmp_float);
        double best = -1;
        for (int qn = 0; qn <= 101; qn++) {
            double t = qn == 101 ? 2.0 : qn == 0 ? -2.0 : top1[(size_t)(qn - 1) * (nt - 1) / 99];
            double s = 0;
            for (int i = 0; i < nt; i++) s += hits[i].top1 < t ? ap_first[i] : ap_second[i];
            s /= nt;
            if (s > best) best = s, thr = t;
        }
        rep->loo_map5 = best;
    }
    rep->threshold = thr;
    if (search(xq, n_test, xt, nt, dim, tind, NULL, o->threads, hits, e) != 0) goto done;
    int n_new = 0;
    for (int i = 0; i < n_test; i++) {
        int nf = hits[i].top1 < thr;
        n_new += nf;
        answer(&hits[i], nf, ids, fill, nfill, out[i]);
    }
    rep->new_first_share = n_test ? (double)n_new / n_test : 0;
    rc = 0;
done:
    free(xt); free(xq); free(mean); free(tind); free(self); free(count); free(ids); free(hits);
    free(ap_first); free(ap_second); free(top1);
    fl_strmap_free(&m);
    return rc;
}
