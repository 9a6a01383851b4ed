/* YOLOv5 inference: box decoding (Detect's inference branch), torchvision's NMS and batched NMS,
 * and ultralytics non_max_suppression (single label). NMS arithmetic is float32 like
 * torchvision's CPU kernel, so boxes at the IoU threshold fall on the same side. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/clones.h"
#include "runtime/models/yolo.h"

/* ultralytics max_wh: the class offset that separates classes in one NMS call */
#define MAX_WH 7680.0f
/* ultralytics max_nms: boxes into NMS at most */
#define MAX_NMS 30000

static float sigmf(float x) { return 1.0f / (1.0f + expf(-x)); }

size_t fl_yolo_num_cells(const fl_yolo_heads *h) {
    size_t n = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) n += (size_t)(h->ny[i] * h->nx[i] * FL_YOLO_NA);
    return n;
}

void fl_yolo_decode(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads, int64_t b,
                    float *out_xywh, float *out_prob) {
    const int no = h->no, nc = c->nc;
    size_t base = 0, k = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        const int64_t ny = h->ny[i], nx = h->nx[i];
        const float st = (float)c->strides[i];
        const float *p = heads + base + (size_t)(b * ny * nx * FL_YOLO_NA * no);
        for (int a = 0; a < FL_YOLO_NA; a++)
            for (int64_t y = 0; y < ny; y++)
                for (int64_t x = 0; x < nx; x++, k++) {
                    const float *v = p + ((size_t)(y * nx + x) * FL_YOLO_NA + a) * no;
                    float sx = sigmf(v[0]), sy = sigmf(v[1]), sw = sigmf(v[2]), sh = sigmf(v[3]);
                    out_xywh[k * 4 + 0] = (sx * 2 - 0.5f + (float)x) * st;
                    out_xywh[k * 4 + 1] = (sy * 2 - 0.5f + (float)y) * st;
                    out_xywh[k * 4 + 2] = (sw * 2) * (sw * 2) * c->anchors[i][a][0];
                    out_xywh[k * 4 + 3] = (sh * 2) * (sh * 2) * c->anchors[i][a][1];
                    for (int j = 0; j < 1 + nc; j++) out_prob[k * (1 + nc) + j] = sigmf(v[4 + j]);
                }
        base += fl_yolo_level_numel(h, i);
    }
}

typedef struct scored {
    float s;
    int i;
} scored;

/* descending score, ties by index: a stable descending sort */
static int cmp_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Greedy NMS over the boxes in descending score order. The boxes are laid out in that order as
 * separate coordinate arrays, so one kept box's overlaps with all later ones are one vector loop
 * (computed for already suppressed boxes too: harmless, and branch-free). finite-math lets
 * fmaxf / fminf become vector max / min: for finite coordinates they differ from libm's at most
 * in the sign of a zero width, which leaves the overlap 0 either way; so the kept set is a
 * pairwise loop's. (A NaN coordinate, which only a NaN head output gives, may suppress
 * differently.) */
__attribute__((optimize("finite-math-only", "no-signed-zeros", "no-trapping-math")))
FL_VEC_CLONES static void suppress_after(const float *x1, const float *y1, const float *x2,
                                         const float *y2, const float *area, int a, int n, float iou,
                                         unsigned char *gone) {
    const float bx1 = x1[a], by1 = y1[a], bx2 = x2[a], by2 = y2[a], ba = area[a];
#pragma omp simd
    for (int c = a + 1; c < n; c++) {
        float xx1 = fmaxf(bx1, x1[c]), yy1 = fmaxf(by1, y1[c]);
        float xx2 = fminf(bx2, x2[c]), yy2 = fminf(by2, y2[c]);
        float w = fmaxf(0.0f, xx2 - xx1), h = fmaxf(0.0f, yy2 - yy1);
        float inter = w * h;
        float ovr = inter / (ba + area[c] - inter);
        gone[c] |= (unsigned char)(ovr > iou);
    }
}

int fl_nms(const float *boxes, const float *scores, int n, float iou, int *keep, fl_err *e) {
    if (n < 0) return fl_errf(e, "nms: negative box count %d", n);
    if (n == 0) return 0;
    for (int i = 0; i < n; i++)
        if (isnan(scores[i])) return fl_errf(e, "nms: score %d is NaN", i);
    scored *o = malloc(sizeof *o * (size_t)n);
    float *soa = malloc(sizeof *soa * 5 * (size_t)n);
    unsigned char *gone = calloc((size_t)n, 1);
    if (!o || !soa || !gone) {
        free(o), free(soa), free(gone);
        return fl_errf(e, "nms: out of memory for %d boxes", n);
    }
    for (int i = 0; i < n; i++) {
        o[i].s = scores[i];
        o[i].i = i;
    }
    qsort(o, (size_t)n, sizeof *o, cmp_desc);
    float *x1 = soa, *y1 = x1 + n, *x2 = y1 + n, *y2 = x2 + n, *area = y2 + n;
    for (int a = 0; a < n; a++) {
        const float *q = boxes + 4 * (size_t)o[a].i;
        x1[a] = q[0], y1[a] = q[1], x2[a] = q[2], y2[a] = q[3];
        area[a] = (q[2] - q[0]) * (q[3] - q[1]);
    }
    int nk = 0;
    for (int a = 0; a < n; a++) {
        if (gone[a]) continue;
        keep[nk++] = o[a].i;
        suppress_after(x1, y1, x2, y2, area, a, n, iou, gone);
    }
    free(o), free(soa), free(gone);
    return nk;
}

int fl_nms_batched(const float *boxes, const float *scores, const int *idxs, int n, float iou,
                   int *keep, fl_err *e) {
    if (n <= 0) return n < 0 ? fl_errf(e, "nms: negative box count %d", n) : 0;
    float mx = boxes[0];
    for (size_t k = 1; k < 4 * (size_t)n; k++) mx = fmaxf(mx, boxes[k]);
    float *b = malloc(sizeof *b * 4 * (size_t)n);
    if (!b) return fl_errf(e, "nms: out of memory for %d boxes", n);
    for (int i = 0; i < n; i++) {
        float off = (float)idxs[i] * (mx + 1.0f);
        for (int k = 0; k < 4; k++) b[4 * i + k] = boxes[4 * i + k] + off;
    }
    int r = fl_nms(b, scores, n, iou, keep, e);
    free(b);
    return r;
}

int fl_yolo_detect(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads, int64_t b,
                   const fl_yolo_nms_cfg *nmc, fl_yolo_det **dets, fl_err *e) {
    *dets = NULL;
    if (b < 0 || b >= h->n) return fl_errf(e, "yolo detect: image %lld outside the batch", (long long)b);
    if (!(nmc->conf >= 0 && nmc->conf <= 1) || !(nmc->iou >= 0 && nmc->iou <= 1) || nmc->max_det < 1)
        return fl_errf(e, "yolo detect: conf %g and iou %g must be in [0, 1], max_det %d >= 1",
                       nmc->conf, nmc->iou, nmc->max_det);
    const int nc = c->nc;
    size_t cells = fl_yolo_num_cells(h);
    float *xywh = malloc(sizeof(float) * 4 * cells), *prob = malloc(sizeof(float) * (1 + nc) * cells);
    fl_yolo_det *cand = malloc(sizeof *cand * cells);
    scored *ord = malloc(sizeof *ord * cells);
    if (!xywh || !prob || !cand || !ord) {
        free(xywh), free(prob), free(cand), free(ord);
        return fl_errf(e, "yolo detect: out of memory");
    }
    fl_yolo_decode(c, h, heads, b, xywh, prob);
    int n = 0;
    for (size_t k = 0; k < cells; k++) {
        const float *pr = prob + k * (1 + nc);
        if (!(pr[0] > nmc->conf)) continue;
        /* conf, j = (cls * obj).max(1): the first maximum */
        int best = 0;
        float bs = pr[1] * pr[0];
        for (int j = 1; j < nc; j++)
            if (pr[1 + j] * pr[0] > bs) bs = pr[1 + j] * pr[0], best = j;
        if (!(bs > nmc->conf)) continue;
        const float *q = xywh + 4 * k;
        cand[n] = (fl_yolo_det){q[0] - q[2] / 2, q[1] - q[3] / 2, q[0] + q[2] / 2, q[1] + q[3] / 2, bs, best};
        ord[n].s = bs;
        ord[n].i = n;
        n++;
    }
    free(xywh), free(prob);
    qsort(ord, (size_t)n, sizeof *ord, cmp_desc);
    if (n > MAX_NMS) n = MAX_NMS;
    float *bx = malloc(sizeof(float) * 4 * (size_t)(n ? n : 1)), *sc = malloc(sizeof(float) * (size_t)(n ? n : 1));
    int *keep = malloc(sizeof(int) * (size_t)(n ? n : 1));
    fl_yolo_det *sorted = malloc(sizeof *sorted * (size_t)(n ? n : 1));
    if (!bx || !sc || !keep || !sorted) {
        free(cand), free(ord), free(bx), free(sc), free(keep), free(sorted);
        return fl_errf(e, "yolo detect: out of memory");
    }
    for (int k = 0; k < n; k++) {
        sorted[k] = cand[ord[k].i];
        float off = (float)sorted[k].cls * MAX_WH;
        bx[4 * k + 0] = sorted[k].x1 + off;
        bx[4 * k + 1] = sorted[k].y1 + off;
        bx[4 * k + 2] = sorted[k].x2 + off;
        bx[4 * k + 3] = sorted[k].y2 + off;
        sc[k] = sorted[k].score;
    }
    free(cand), free(ord);
    int nk = fl_nms(bx, sc, n, nmc->iou, keep, e);
    if (nk > nmc->max_det) nk = nmc->max_det;
    fl_yolo_det *res = nk > 0 ? malloc(sizeof *res * (size_t)nk) : NULL;
    if (nk > 0 && !res) nk = fl_errf(e, "yolo detect: out of memory");
    for (int k = 0; k < nk; k++) res[k] = sorted[keep[k]];
    free(bx), free(sc), free(keep), free(sorted);
    *dets = res;
    return nk;
}
