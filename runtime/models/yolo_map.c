/* A small mAP evaluator for detections (the overfit test, the detector stage's validation):
 * greedy matching per image, then ultralytics ap_per_class / compute_ap (101-point interpolation
 * of the precision envelope, trapezoid rule). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/yolo.h"

typedef struct pr {
    float conf;
    int tp, cls, idx;
} pr;

static int cmp_conf(const void *pa, const void *pb) {
    const pr *a = pa, *b = pb;
    if (a->conf > b->conf) return -1;
    if (a->conf < b->conf) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

typedef struct pair {
    float iou;
    int d, g;
} pair;

static int cmp_iou(const void *pa, const void *pb) {
    const pair *a = pa, *b = pb;
    if (a->iou > b->iou) return -1;
    if (a->iou < b->iou) return 1;
    if (a->d != b->d) return a->d - b->d;
    return a->g - b->g;
}

static float box_iou(float ax1, float ay1, float ax2, float ay2, float bx1, float by1, float bx2,
                     float by2) {
    float w = fminf(ax2, bx2) - fmaxf(ax1, bx1), h = fminf(ay2, by2) - fmaxf(ay1, by1);
    float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter + 1e-7f);
}

/* compute_ap: area under the 101-point interpolated precision envelope. */
static double compute_ap(const double *rec, const double *prec, int n) {
    double *mr = malloc(sizeof *mr * (size_t)(n + 2)), *mp = malloc(sizeof *mp * (size_t)(n + 2));
    if (!mr || !mp) {
        free(mr), free(mp);
        return NAN;
    }
    mr[0] = 0, mp[0] = 1;
    for (int i = 0; i < n; i++) mr[i + 1] = rec[i], mp[i + 1] = prec[i];
    mr[n + 1] = 1, mp[n + 1] = 0;
    for (int i = n; i >= 0; i--) mp[i] = fmax(mp[i], mp[i + 1]);
    /* np.interp(x, mrec, mpre) on x = linspace(0, 1, 101), then np.trapz */
    double ap = 0, prev = 0;
    for (int k = 0; k <= 100; k++) {
        double x = k / 100.0, y;
        /* np.interp: the right-most knot at or left of x (knots are nondecreasing) */
        int i = -1;
        for (int q = 0; q < n + 2 && mr[q] <= x; q++) i = q;
        if (i < 0) y = mp[0];
        else if (i == n + 1) y = mp[n + 1];
        else y = mp[i] + (mp[i + 1] - mp[i]) * (x - mr[i]) / (mr[i + 1] - mr[i]);
        if (k > 0) ap += (y + prev) / 2 * 0.01;
        prev = y;
    }
    free(mr), free(mp);
    return ap;
}

double fl_yolo_map(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                   const fl_yolo_gt *gt, size_t ngt, int nc, double iou_thr, fl_err *e) {
    if (nimg < 0 || nc < 1) return fl_errf(e, "map: %d images, %d classes", nimg, nc);
    for (size_t k = 0; k < ngt; k++)
        if (gt[k].img < 0 || gt[k].img >= nimg || gt[k].cls < 0 || gt[k].cls >= nc)
            return fl_errf(e, "map: ground truth %zu: image %d / class %d out of range", k, gt[k].img, gt[k].cls);
    size_t nd = 0;
    for (int i = 0; i < nimg; i++) {
        if (ndets[i] < 0) return fl_errf(e, "map: image %d has %d detections", i, ndets[i]);
        nd += (size_t)ndets[i];
    }
    pr *all = malloc(sizeof *all * (nd ? nd : 1));
    int *npos = calloc((size_t)nc, sizeof *npos);
    if (!all || !npos) {
        free(all), free(npos);
        return fl_errf(e, "map: out of memory");
    }
    for (size_t k = 0; k < ngt; k++) npos[gt[k].cls]++;
    size_t w = 0;
    for (int i = 0; i < nimg; i++) {
        const fl_yolo_det *d = dets_per_img[i];
        int n = ndets[i];
        size_t ng = 0;
        for (size_t k = 0; k < ngt; k++) ng += gt[k].img == i;
        pair *pp = malloc(sizeof *pp * ((size_t)n * ng + 1));
        unsigned char *gu = calloc(ngt + 1, 1), *du = calloc((size_t)n + 1, 1);
        if (!pp || !gu || !du) {
            free(pp), free(gu), free(du), free(all), free(npos);
            return fl_errf(e, "map: out of memory");
        }
        size_t np = 0;
        for (int a = 0; a < n; a++)
            for (size_t k = 0; k < ngt; k++) {
                if (gt[k].img != i || gt[k].cls != d[a].cls) continue;
                float iou = box_iou(d[a].x1, d[a].y1, d[a].x2, d[a].y2, gt[k].x1, gt[k].y1, gt[k].x2, gt[k].y2);
                if (iou >= iou_thr) pp[np++] = (pair){iou, a, (int)k};
            }
        qsort(pp, np, sizeof *pp, cmp_iou);
        for (size_t k = 0; k < np; k++)
            if (!du[pp[k].d] && !gu[pp[k].g]) du[pp[k].d] = gu[pp[k].g] = 1;
        for (int a = 0; a < n; a++) {
            if (d[a].cls < 0 || d[a].cls >= nc || isnan(d[a].score)) {
                free(pp), free(gu), free(du), free(all), free(npos);
                return fl_errf(e, "map: image %d detection %d: class %d out of range or NaN score", i, a, d[a].cls);
            }
            all[w] = (pr){d[a].score, du[a], d[a].cls, (int)w};
            w++;
        }
        free(pp), free(gu), free(du);
    }
    qsort(all, w, sizeof *all, cmp_conf);
    double *rec = malloc(sizeof *rec * (w + 1)), *prec = malloc(sizeof *prec * (w + 1));
    if (!rec || !prec) {
        free(rec), free(prec), free(all), free(npos);
        return fl_errf(e, "map: out of memory");
    }
    double sum = 0;
    int ncls = 0;
    for (int c = 0; c < nc; c++) {
        if (npos[c] == 0) continue;
        ncls++;
        int m = 0, tp = 0, fp = 0;
        for (size_t k = 0; k < w; k++) {
            if (all[k].cls != c) continue;
            tp += all[k].tp;
            fp += !all[k].tp;
            rec[m] = tp / (npos[c] + 1e-16);
            prec[m] = tp / (double)(tp + fp);
            m++;
        }
        if (m > 0) sum += compute_ap(rec, prec, m);
    }
    free(rec), free(prec), free(all), free(npos);
    return ncls ? sum / ncls : 0.0;
}
