/* ultralytics val.py metrics (yolo.h): process_batch's matching at each IoU threshold, then
 * utils/metrics.py ap_per_class / compute_ap / smooth, with numpy's interp and trapz rules
 * (np.interp's knot choice and its slope precomputation, np.linspace's points). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/yolo.h"

#define NPX 1000    /* np.linspace(0, 1, 1000): the P / R / F1 curves */
#define NAP 101     /* np.linspace(0, 1, 101): compute_ap's points */
#define NSMOOTH 101 /* smooth(y, 0.1): round(1000 * 0.1 * 2) // 2 + 1 */
#define EPS 1e-16

/* torch box_iou in float32: inter / (area_a + area_b - inter + 1e-7). */
static float box_iou(const fl_yolo_gt *a, const fl_yolo_det *b) {
    float w = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1),
          h = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    float aa = (a->x2 - a->x1) * (a->y2 - a->y1), ab = (b->x2 - b->x1) * (b->y2 - b->y1);
    return inter / (aa + ab - inter + 1e-7f);
}

/* np.linspace(0, 1, n): k * (1 / (n - 1)), the last point exactly 1. */
static double linspace01(int k, int n) {
    return k == n - 1 ? 1.0 : k * (1.0 / (n - 1));
}

/* np.interp(x[0..nx), xp[0..n), fp, left, right) for nondecreasing xp: the last knot j with
 * xp[j] <= x; fp[j] at the last knot or on a knot; else slope * (x - xp[j]) + fp[j], the slopes
 * precomputed as dy * (1 / dx) when n <= nx (numpy does the same), else dy / dx. */
static void np_interp(const double *x, int nx, const double *xp, const double *fp, int n,
                      double left, double right, double *out) {
    int pre = n <= nx;
    for (int i = 0; i < nx; i++) {
        double v = x[i];
        if (v < xp[0]) {
            out[i] = left;
            continue;
        }
        if (v > xp[n - 1]) {
            out[i] = right;
            continue;
        }
        int lo = 0, hi = n; /* bisection: the first index with xp > v, minus one */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (v >= xp[mid])
                lo = mid + 1;
            else
                hi = mid;
        }
        int j = lo - 1;
        if (j == n - 1 || xp[j] == v) {
            out[i] = fp[j];
            continue;
        }
        double slope = pre ? (fp[j + 1] - fp[j]) * (1.0 / (xp[j + 1] - xp[j]))
                           : (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
        out[i] = slope * (v - xp[j]) + fp[j];
    }
}

/* compute_ap: sentinels, the precision envelope, 101-point interpolation, np.trapz. mr / mp hold
 * n + 2 values (scratch). */
static double compute_ap(const double *rec, const double *prec, int n, double *mr, double *mp) {
    mr[0] = 0, mp[0] = 1;
    for (int i = 0; i < n; i++)
        mr[i + 1] = rec[i], mp[i + 1] = prec[i];
    mr[n + 1] = 1, mp[n + 1] = 0;
    for (int i = n; i >= 0; i--)
        mp[i] = fmax(mp[i], mp[i + 1]);
    double x[NAP], y[NAP];
    for (int k = 0; k < NAP; k++)
        x[k] = linspace01(k, NAP);
    np_interp(x, NAP, mr, mp, n + 2, mp[0], mp[n + 1], y);
    double ap = 0;
    for (int k = 0; k + 1 < NAP; k++)
        ap += (x[k + 1] - x[k]) * (y[k + 1] + y[k]) / 2.0;
    return ap;
}

/* One detection's statistics: confidence, class, and a bit per threshold when it is a TP. */
typedef struct rec {
    float conf;
    int cls;
    size_t order; /* position in the (image, detection) input order: the stable tie-break */
    uint32_t tp;
} rec;

static int cmp_rec(const void *pa, const void *pb) {
    const rec *a = pa, *b = pb;
    if (a->conf > b->conf) return -1;
    if (a->conf < b->conf) return 1;
    return (a->order > b->order) - (a->order < b->order);
}

/* process_batch for one image: g[0..m) labels, d[0..n) detections -> r[k].tp bits. */
static void match_image(const fl_yolo_gt *const *g, int m, const fl_yolo_det *d, int n,
                        const float *thr, int nthr, float *iou, int *best, unsigned char *taken,
                        rec *r) {
    for (int l = 0; l < m; l++)
        for (int k = 0; k < n; k++)
            iou[(size_t)l * n + k] = g[l]->cls == d[k].cls ? box_iou(g[l], &d[k]) : -1.0f;
    for (int t = 0; t < nthr; t++) {
        /* Each detection's label of the highest IoU >= thr (argsort()[::-1] then unique on the
         * detection: among equal IoUs the later label comes first). */
        for (int k = 0; k < n; k++) {
            best[k] = -1;
            float bi = 0;
            for (int l = 0; l < m; l++) {
                float v = iou[(size_t)l * n + k];
                if (v >= thr[t] && (best[k] < 0 || v >= bi)) best[k] = l, bi = v;
            }
        }
        /* unique on the label, over rows now in detection order: the first detection wins. */
        memset(taken, 0, (size_t)m + 1);
        for (int k = 0; k < n; k++)
            if (best[k] >= 0 && !taken[best[k]]) {
                taken[best[k]] = 1;
                r[k].tp |= 1u << t;
            }
    }
}

/* Per-class AP at each threshold and the P / R curves at the first threshold. */
typedef struct cls_curves {
    double ap[FL_YOLO_NIOU];
    double *p, *r; /* NPX each */
} cls_curves;

static int eval_core(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                     const fl_yolo_gt *gt, size_t ngt, int nc, const float *thr, int nthr,
                     fl_yolo_eval_out *out, fl_yolo_eval_class *per_class, fl_err *e) {
    memset(out, 0, sizeof *out);
    if (nimg < 0 || nc < 1 || (nimg > 0 && !ndets))
        return fl_errf(e, "yolo eval: %d images, %d classes", nimg, nc);
    for (size_t k = 0; k < ngt; k++) {
        const fl_yolo_gt *g = &gt[k];
        if (g->img < 0 || g->img >= nimg || g->cls < 0 || g->cls >= nc)
            return fl_errf(e, "yolo eval: ground truth %zu: image %d / class %d out of range", k,
                           g->img, g->cls);
        if (isnan(g->x1) || isnan(g->y1) || isnan(g->x2) || isnan(g->y2))
            return fl_errf(e, "yolo eval: ground truth %zu has a NaN coordinate", k);
    }
    size_t nd = 0;
    int maxn = 0;
    for (int i = 0; i < nimg; i++) {
        if (ndets[i] < 0 || (ndets[i] > 0 && !dets_per_img[i]))
            return fl_errf(e, "yolo eval: image %d has %d detections", i, ndets[i]);
        for (int k = 0; k < ndets[i]; k++) {
            const fl_yolo_det *d = &dets_per_img[i][k];
            if (d->cls < 0 || d->cls >= nc || isnan(d->score) || isnan(d->x1) || isnan(d->y1) ||
                isnan(d->x2) || isnan(d->y2))
                return fl_errf(e,
                               "yolo eval: image %d detection %d: class %d out of range or a "
                               "NaN score or coordinate",
                               i, k, d->cls);
        }
        nd += (size_t)ndets[i];
        if (ndets[i] > maxn) maxn = ndets[i];
    }
    out->ndets = nd, out->nlabels = ngt;

    int rc = -1;
    rec *all = calloc(nd + 1, sizeof *all);
    size_t *gstart = calloc((size_t)nimg + 2, sizeof *gstart);
    const fl_yolo_gt **gs = malloc(sizeof *gs * (ngt + 1));
    int *nt = calloc((size_t)nc, sizeof *nt), *best = malloc(sizeof *best * ((size_t)maxn + 1));
    cls_curves *cv = calloc((size_t)nc, sizeof *cv);
    double *buf = NULL, *px = malloc(sizeof *px * NPX), *mpx = malloc(sizeof *mpx * NPX);
    double *f1 = calloc(NPX, sizeof *f1), *sm = malloc(sizeof *sm * NPX);
    float *iou = NULL;
    unsigned char *taken = NULL;
    const rec **byc = NULL;
    size_t *cstart = NULL;
    if (!all || !gstart || !gs || !nt || !best || !cv || !px || !mpx || !f1 || !sm) goto oom;

    /* Labels grouped by image, each image's in input order (val.py's labels[targets[:, 0] == si]).
     */
    for (size_t k = 0; k < ngt; k++)
        gstart[gt[k].img + 1]++, nt[gt[k].cls]++;
    for (int i = 0; i < nimg; i++)
        gstart[i + 1] += gstart[i];
    {
        size_t *fill = calloc((size_t)nimg + 1, sizeof *fill);
        if (!fill) goto oom;
        for (size_t k = 0; k < ngt; k++)
            gs[gstart[gt[k].img] + fill[gt[k].img]++] = &gt[k];
        free(fill);
    }
    size_t maxm = 0, maxcells = 0;
    for (int i = 0; i < nimg; i++) {
        size_t m = gstart[i + 1] - gstart[i];
        if (m > maxm) maxm = m;
        if (m * (size_t)ndets[i] > maxcells) maxcells = m * (size_t)ndets[i];
    }
    iou = malloc(sizeof *iou * (maxcells + 1));
    taken = malloc(maxm + 1);
    if (!iou || !taken) goto oom;
    size_t w = 0;
    int any_tp = 0;
    for (int i = 0; i < nimg; i++) {
        const fl_yolo_det *d = dets_per_img[i];
        int n = ndets[i];
        for (int k = 0; k < n; k++)
            all[w + k] = (rec){d[k].score, d[k].cls, w + k, 0};
        int m = (int)(gstart[i + 1] - gstart[i]);
        if (m > 0 && n > 0)
            match_image(gs + gstart[i], m, d, n, thr, nthr, iou, best, taken, all + w);
        for (int k = 0; k < n; k++)
            any_tp |= all[w + k].tp != 0;
        w += (size_t)n;
    }
    qsort(all, nd, sizeof *all, cmp_rec);

    for (int c = 0; c < nc; c++)
        out->nclasses += nt[c] > 0;
    for (int c = 0; c < nc && per_class; c++)
        per_class[c] = (fl_yolo_eval_class){.nlabels = nt[c]};
    for (size_t k = 0; k < nd; k++)
        if (per_class) per_class[all[k].cls].ndets++;
    if (!any_tp || out->nclasses == 0) { /* val.py: every metric stays 0 */
        rc = 0;
        goto done;
    }

    /* Per class (its detections contiguous, still by confidence): cumulative TP / FP, recall and
     * precision one threshold at a time, the AP, and the P / R curves at the first threshold. */
    if (!(buf = malloc(sizeof *buf * 5 * (nd + 2))) || !(byc = malloc(sizeof *byc * (nd + 1))) ||
        !(cstart = calloc((size_t)nc + 1, sizeof *cstart)))
        goto oom;
    double *cconf = buf, *recall = cconf + nd + 2, *prec = recall + nd + 2;
    double *mr = prec + nd + 2, *mp = mr + nd + 2; /* compute_ap's scratch */
    for (size_t k = 0; k < nd; k++)
        cstart[all[k].cls + 1]++;
    for (int c = 0; c < nc; c++)
        cstart[c + 1] += cstart[c];
    {
        size_t *pos = malloc(sizeof *pos * ((size_t)nc + 1));
        if (!pos) goto oom;
        memcpy(pos, cstart, sizeof *pos * (size_t)nc);
        for (size_t k = 0; k < nd; k++)
            byc[pos[all[k].cls]++] = all + k;
        free(pos);
    }
    for (int k = 0; k < NPX; k++)
        px[k] = linspace01(k, NPX), mpx[k] = -px[k];
    for (int c = 0; c < nc; c++) {
        int np_ = (int)(cstart[c + 1] - cstart[c]);
        if (nt[c] == 0 || np_ == 0) continue; /* no detections: AP 0, P 0, R 0 */
        if (!(cv[c].p = calloc(NPX, sizeof *cv[c].p)) || !(cv[c].r = calloc(NPX, sizeof *cv[c].r)))
            goto oom;
        const rec *const *rc_ = byc + cstart[c];
        for (int k = 0; k < np_; k++)
            cconf[k] = -(double)rc_[k]->conf; /* np.interp: -conf */
        for (int t = 0; t < nthr; t++) {
            int64_t tpc = 0, fpc = 0;
            for (int k = 0; k < np_; k++) {
                int tp = (rc_[k]->tp >> t) & 1;
                tpc += tp, fpc += !tp;
                recall[k] = (double)tpc / (nt[c] + EPS);
                prec[k] = (double)tpc / (double)(tpc + fpc);
            }
            if (t == 0) {
                np_interp(mpx, NPX, cconf, recall, np_, 0.0, recall[np_ - 1], cv[c].r);
                np_interp(mpx, NPX, cconf, prec, np_, 1.0, prec[np_ - 1], cv[c].p);
            }
            cv[c].ap[t] = compute_ap(recall, prec, np_, mr, mp);
        }
    }

    /* F1 = 2pr / (p + r + eps), its mean over the classes with labels, the box filter, argmax. */
    for (int c = 0; c < nc; c++) {
        if (nt[c] == 0 || !cv[c].p) continue;
        for (int k = 0; k < NPX; k++) {
            double p = cv[c].p[k], r = cv[c].r[k];
            f1[k] += 2 * p * r / (p + r + EPS);
        }
    }
    for (int k = 0; k < NPX; k++)
        f1[k] /= out->nclasses;
    const double wgt = 1.0 / NSMOOTH;
    int half = NSMOOTH / 2, arg = 0;
    for (int k = 0; k < NPX; k++) {
        double s = 0;
        for (int j = 0; j < NSMOOTH; j++) {
            int q = k + j - half;
            s += f1[q < 0 ? 0 : q >= NPX ? NPX - 1 : q] * wgt;
        }
        sm[k] = s;
        if (s > sm[arg]) arg = k;
    }
    out->conf = px[arg];

    double sp = 0, sr = 0, sap[FL_YOLO_NIOU] = {0}, sall = 0;
    for (int c = 0; c < nc; c++) {
        if (nt[c] == 0) continue;
        double p = cv[c].p ? cv[c].p[arg] : 0, r = cv[c].r ? cv[c].r[arg] : 0, apm = 0;
        for (int t = 0; t < nthr; t++)
            sap[t] += cv[c].ap[t], apm += cv[c].ap[t];
        apm /= nthr;
        sp += p, sr += r, sall += apm;
        if (per_class) {
            per_class[c].p = p, per_class[c].r = r;
            per_class[c].ap50 = cv[c].ap[0], per_class[c].ap = apm;
        }
    }
    out->precision = sp / out->nclasses, out->recall = sr / out->nclasses;
    for (int t = 0; t < nthr; t++)
        out->map_at[t] = sap[t] / out->nclasses;
    out->map50 = out->map_at[0];
    out->map = sall / out->nclasses;
    rc = 0;
    goto done;
oom:
    rc = fl_errf(e, "yolo eval: out of memory (%zu detections, %zu labels)", nd, ngt);
done:
    for (int c = 0; cv && c < nc; c++)
        free(cv[c].p), free(cv[c].r);
    free(cv), free(all), free(gstart), free(gs), free(nt), free(best), free(buf), free(px);
    free(mpx), free(f1), free(sm), free(iou), free(taken), free(byc), free(cstart);
    return rc;
}

int fl_yolo_eval(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                 const fl_yolo_gt *gt, size_t ngt, int nc, fl_yolo_eval_out *out,
                 fl_yolo_eval_class *per_class, fl_err *e) {
    float thr[FL_YOLO_NIOU];
    for (int t = 0; t < FL_YOLO_NIOU; t++)
        thr[t] = (float)(0.5 + 0.05 * t);
    return eval_core(dets_per_img, ndets, nimg, gt, ngt, nc, thr, FL_YOLO_NIOU, out, per_class, e);
}

double fl_yolo_map(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                   const fl_yolo_gt *gt, size_t ngt, int nc, double iou_thr, fl_err *e) {
    if (!(iou_thr >= 0 && iou_thr <= 1)) return fl_errf(e, "yolo eval: IoU threshold %g", iou_thr);
    float thr = (float)iou_thr;
    fl_yolo_eval_out o;
    if (eval_core(dets_per_img, ndets, nimg, gt, ngt, nc, &thr, 1, &o, NULL, e) != 0) return -1;
    return o.map50;
}
