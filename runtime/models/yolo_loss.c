/* YOLOv5 training loss: ultralytics utils/loss.py ComputeLoss (gr = 1.0, no focal loss, no
 * autobalance, sort_obj_iou off) with its exact gradient w.r.t. the raw head outputs.
 *
 * build_targets is replayed in float32 with the reference's operation order, so which anchors
 * and cells a target lands on is decided exactly as PyTorch decides it (ratios near anchor_t and
 * centres near a cell edge included). The assignment order is the reference's (offset, anchor,
 * target), and a cell written twice keeps its last IoU, as tobj[b, a, gj, gi] = iou does. The
 * loss arithmetic itself runs in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/models/yolo.h"
#include "runtime/models/yolo_loss_internal.h"

#define CIOU_EPS 1e-7

fl_yolo_hyp fl_yolo_hyp_default(int imgsz) {
    fl_yolo_hyp h = {.box = 0.05, .cls = 0.5, .obj = 1.0, .anchor_t = 4.0,
                     .label_smoothing = 0.0, .imgsz = imgsz};
    return h;
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* BCEWithLogits element loss and its derivative w.r.t. x. */
static double bce(double x, double t) { return (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x))); }

/* d/dx of max(a, b) / min(a, b) for the first argument as autograd has it (ties split). */
static double dmax_a(double a, double b) { return a > b ? 1.0 : (a == b ? 0.5 : 0.0); }
static double dmin_a(double a, double b) { return a < b ? 1.0 : (a == b ? 0.5 : 0.0); }

/* bbox_iou(box1, box2, xywh=True, CIoU=True) with alpha detached; g (may be NULL) gets
 * dCIoU/d(x1, y1, w1, h1) of box1. */
static double ciou(const double b1[4], const double b2[4], double g[4]) {
    double x1 = b1[0], y1 = b1[1], w1 = b1[2], h1 = b1[3];
    double x2 = b2[0], y2 = b2[1], w2 = b2[2], h2 = b2[3];
    double ax1 = x1 - w1 / 2, ax2 = x1 + w1 / 2, ay1 = y1 - h1 / 2, ay2 = y1 + h1 / 2;
    double bx1 = x2 - w2 / 2, bx2 = x2 + w2 / 2, by1 = y2 - h2 / 2, by2 = y2 + h2 / 2;
    double iw = fmin(ax2, bx2) - fmax(ax1, bx1), ih = fmin(ay2, by2) - fmax(ay1, by1);
    double iwc = iw > 0 ? iw : 0, ihc = ih > 0 ? ih : 0;
    double inter = iwc * ihc;
    double uni = w1 * h1 + w2 * h2 - inter + CIOU_EPS;
    double iou = inter / uni;
    double cw = fmax(ax2, bx2) - fmin(ax1, bx1), ch = fmax(ay2, by2) - fmin(ay1, by1);
    double c2 = cw * cw + ch * ch + CIOU_EPS;
    double dx = bx1 + bx2 - ax1 - ax2, dy = by1 + by2 - ay1 - ay2;
    double rho2 = (dx * dx + dy * dy) / 4;
    double k = 4 / (M_PI * M_PI);
    double da = atan(w2 / h2) - atan(w1 / h1);
    double v = k * da * da;
    double alpha = v / (v - iou + (1 + CIOU_EPS));
    double r = iou - (rho2 / c2 + v * alpha);
    if (!g) return r;
    /* reverse mode, upstream 1 */
    double g_iou = 1, g_rho2 = -1 / c2, g_c2 = rho2 / (c2 * c2), g_v = -alpha;
    double g_inter = g_iou / uni, g_uni = -g_iou * inter / (uni * uni);
    g_inter -= g_uni;
    double gw1 = g_uni * h1, gh1 = g_uni * w1;
    double g_ax1 = 0, g_ax2 = 0, g_ay1 = 0, g_ay2 = 0;
    /* inter = clamp(iw, 0) * clamp(ih, 0); clamp passes at >= 0 */
    double g_iw = iw >= 0 ? g_inter * ihc : 0, g_ih = ih >= 0 ? g_inter * iwc : 0;
    g_ax2 += g_iw * dmin_a(ax2, bx2);
    g_ax1 -= g_iw * dmax_a(ax1, bx1);
    g_ay2 += g_ih * dmin_a(ay2, by2);
    g_ay1 -= g_ih * dmax_a(ay1, by1);
    double g_cw = g_c2 * 2 * cw, g_ch = g_c2 * 2 * ch;
    g_ax2 += g_cw * dmax_a(ax2, bx2);
    g_ax1 -= g_cw * dmin_a(ax1, bx1);
    g_ay2 += g_ch * dmax_a(ay2, by2);
    g_ay1 -= g_ch * dmin_a(ay1, by1);
    /* rho2 = (dx^2 + dy^2)/4, dx = ... - ax1 - ax2 */
    g_ax1 -= g_rho2 * dx / 2;
    g_ax2 -= g_rho2 * dx / 2;
    g_ay1 -= g_rho2 * dy / 2;
    g_ay2 -= g_rho2 * dy / 2;
    /* v = k (atan(w2/h2) - atan(w1/h1))^2 */
    double u = w1 / h1, datan = 1 / (1 + u * u);
    double g_u = g_v * k * 2 * da * (-datan);
    gw1 += g_u / h1;
    gh1 += g_u * (-w1 / (h1 * h1));
    g[0] = g_ax1 + g_ax2;
    g[1] = g_ay1 + g_ay2;
    g[2] = gw1 + (g_ax2 - g_ax1) / 2;
    g[3] = gh1 + (g_ay2 - g_ay1) / 2;
    return r;
}

typedef struct match {
    int b, a, gj, gi, cls;
    float tbox[4]; /* gxy - gij, gwh (grid units) */
} match;

/* build_targets for level i: fills *out (malloc'd) in the reference's order; returns the count. */
size_t fl_yolo_match_bytes(size_t nt) { return sizeof(match) * nt * FL_YOLO_NA * 5; }

/* ws: fl_yolo_match_bytes(nt) of scratch, or NULL to allocate (*out is then malloc'd). */
static int64_t build_targets(const fl_yolo_cfg *c, const fl_yolo_hyp *hyp, const fl_yolo_heads *h,
                             int i, const fl_yolo_target *t, size_t nt, match *ws, match **out, fl_err *e) {
    *out = NULL;
    if (nt == 0) return 0;
    match *m = ws ? ws : malloc(fl_yolo_match_bytes(nt));
    if (!m) return fl_errf(e, "yolo loss: out of memory");
    float gx = (float)h->nx[i], gy = (float)h->ny[i];
    float st = (float)c->strides[i];
    static const float off[5][2] = {{0, 0}, {0.5f, 0}, {0, 0.5f}, {-0.5f, 0}, {0, -0.5f}};
    const float g = 0.5f, at = (float)hyp->anchor_t;
    int64_t n = 0;
    for (int o = 0; o < 5; o++)
        for (int a = 0; a < FL_YOLO_NA; a++) {
            float aw = c->anchors[i][a][0] / st, ah = c->anchors[i][a][1] / st;
            for (size_t k = 0; k < nt; k++) {
                float x = t[k].x * gx, y = t[k].y * gy, w = t[k].w * gx, hh = t[k].h * gy;
                float rw = w / aw, rh = hh / ah;
                float mw = fmaxf(rw, 1.0f / rw), mh = fmaxf(rh, 1.0f / rh);
                if (!(fmaxf(mw, mh) < at)) continue;
                float xi = gx - x, yi = gy - y;
                int sel;
                switch (o) {
                case 0: sel = 1; break;
                case 1: sel = fmodf(x, 1.0f) < g && x > 1.0f; break;
                case 2: sel = fmodf(y, 1.0f) < g && y > 1.0f; break;
                case 3: sel = fmodf(xi, 1.0f) < g && xi > 1.0f; break;
                default: sel = fmodf(yi, 1.0f) < g && yi > 1.0f; break;
                }
                if (!sel) continue;
                /* (gxy - offsets).long(): truncation toward zero */
                int gi = (int)(x - off[o][0]), gj = (int)(y - off[o][1]);
                match *q = &m[n++];
                q->b = t[k].img;
                q->cls = t[k].cls;
                q->a = a;
                q->tbox[0] = x - (float)gi;
                q->tbox[1] = y - (float)gj;
                q->tbox[2] = w;
                q->tbox[3] = hh;
                q->gj = gj < 0 ? 0 : (gj > h->ny[i] - 1 ? (int)h->ny[i] - 1 : gj);
                q->gi = gi < 0 ? 0 : (gi > h->nx[i] - 1 ? (int)h->nx[i] - 1 : gi);
            }
        }
    *out = m;
    return n;
}

int fl_yolo_check_target(const fl_yolo_cfg *c, int64_t nimg, const fl_yolo_target *q, size_t k, fl_err *e) {
    if (q->img < 0 || q->img >= nimg)
        return fl_errf(e, "yolo loss: target %zu: image %d outside the batch of %lld", k, q->img, (long long)nimg);
    if (q->cls < 0 || q->cls >= c->nc)
        return fl_errf(e, "yolo loss: target %zu: class %d outside [0, %d)", k, q->cls, c->nc);
    if (!(q->w > 0 && q->h > 0 && isfinite(q->w) && isfinite(q->h) && isfinite(q->x) && isfinite(q->y)))
        return fl_errf(e, "yolo loss: target %zu: box (%g, %g, %g, %g) is not a finite positive size", k, q->x, q->y, q->w, q->h);
    return 0;
}

int fl_yolo_loss(const fl_yolo_cfg *c, const fl_yolo_hyp *hyp, const fl_yolo_heads *h,
                 const float *heads, const fl_yolo_target *t, size_t nt, float *grad,
                 fl_yolo_loss_out *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    if (h->no != c->nc + 5) return fl_errf(e, "yolo loss: heads have %d outputs per anchor, config %d", h->no, c->nc + 5);
    if (hyp->imgsz < 1 || !(hyp->anchor_t > 1)) return fl_errf(e, "yolo loss: bad imgsz %d / anchor_t %g", hyp->imgsz, hyp->anchor_t);
    for (size_t k = 0; k < nt; k++)
        if (fl_yolo_check_target(c, h->n, &t[k], k, e) < 0) return -1;
    const float *pv[FL_YOLO_NL];
    float *gv[FL_YOLO_NL];
    size_t base = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        pv[i] = heads + base;
        gv[i] = grad ? grad + base : NULL;
        base += fl_yolo_level_numel(h, i);
    }
    return fl_yolo_loss_levels(c, hyp, h, pv, t, nt, gv, NULL, NULL, out, e);
}

int fl_yolo_loss_levels(const fl_yolo_cfg *c, const fl_yolo_hyp *hyp, const fl_yolo_heads *h,
                        const float *const *pv, const fl_yolo_target *t, size_t nt, float *const *gv,
                        float *tobj_ws, void *match_ws, fl_yolo_loss_out *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    const int no = h->no, nc = c->nc;
    const double bs = (double)h->n;
    /* train.py: hyp['box'] *= 3/nl; hyp['cls'] *= nc/80 * 3/nl; hyp['obj'] *= (imgsz/640)^2 * 3/nl */
    const double kl = 3.0 / FL_YOLO_NL;
    const double gbox = hyp->box * kl, gcls = hyp->cls * nc / 80.0 * kl;
    const double gobj = hyp->obj * (hyp->imgsz / 640.0) * (hyp->imgsz / 640.0) * kl;
    const double balance[FL_YOLO_NL] = {4.0, 1.0, 0.4};
    const double cp = 1.0 - 0.5 * hyp->label_smoothing, cn = 0.5 * hyp->label_smoothing;
    double lbox = 0, lobj = 0, lcls = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        const float *p = pv[i];
        float *gp = gv[i];
        if (gp) memset(gp, 0, sizeof(float) * fl_yolo_level_numel(h, i));
        size_t cells = (size_t)(h->n * h->ny[i] * h->nx[i] * FL_YOLO_NA);
        float *tobj = tobj_ws ? tobj_ws : calloc(cells, sizeof *tobj);
        if (tobj_ws) memset(tobj_ws, 0, cells * sizeof *tobj);
        match *m = NULL;
        int64_t n = tobj ? build_targets(c, hyp, h, i, t, nt, match_ws, &m, e) : fl_errf(e, "yolo loss: out of memory");
        if (n < 0) {
            if (!tobj_ws) free(tobj);
            return -1;
        }
        out->matches[i] = n;
        const float st = (float)c->strides[i];
        for (int64_t k = 0; k < n; k++) {
            const match *q = &m[k];
            size_t cell = (size_t)((q->b * h->ny[i] + q->gj) * h->nx[i] + q->gi) * FL_YOLO_NA + q->a;
            const float *v = p + cell * no;
            double s[4], pb[4], tb[4], dc[4];
            for (int j = 0; j < 4; j++) s[j] = sigm(v[j]);
            double aw = c->anchors[i][q->a][0] / st, ah = c->anchors[i][q->a][1] / st;
            aw = (float)aw;
            ah = (float)ah;
            pb[0] = s[0] * 2 - 0.5;
            pb[1] = s[1] * 2 - 0.5;
            pb[2] = (s[2] * 2) * (s[2] * 2) * aw;
            pb[3] = (s[3] * 2) * (s[3] * 2) * ah;
            for (int j = 0; j < 4; j++) tb[j] = q->tbox[j];
            double iou = ciou(pb, tb, gp ? dc : NULL);
            lbox += (1.0 - iou) / (double)n;
            tobj[cell] = (float)(iou > 0 ? iou : 0); /* detached, clamp(0), gr = 1; last write wins */
            if (gp) {
                double gi = -gbox * bs / (double)n; /* dLoss/dCIoU */
                float *gv = gp + cell * no;
                gv[0] += (float)(gi * dc[0] * 2 * s[0] * (1 - s[0]));
                gv[1] += (float)(gi * dc[1] * 2 * s[1] * (1 - s[1]));
                gv[2] += (float)(gi * dc[2] * 8 * s[2] * s[2] * (1 - s[2]) * aw);
                gv[3] += (float)(gi * dc[3] * 8 * s[3] * s[3] * (1 - s[3]) * ah);
            }
            if (nc > 1) {
                double scale = 1.0 / ((double)n * nc);
                for (int j = 0; j < nc; j++) {
                    double x = v[5 + j], tt = j == q->cls ? cp : cn;
                    lcls += bce(x, tt) * scale;
                    if (gp) gp[cell * no + 5 + j] += (float)((sigm(x) - tt) * scale * gcls * bs);
                }
            }
        }
        double so = 0, ob = balance[i] / (double)cells;
        for (size_t cell = 0; cell < cells; cell++) {
            double x = p[cell * no + 4];
            so += bce(x, tobj[cell]);
            if (gp) gp[cell * no + 4] = (float)((sigm(x) - tobj[cell]) * ob * gobj * bs);
        }
        lobj += so * ob;
        if (!match_ws) free(m);
        if (!tobj_ws) free(tobj);
    }
    out->lbox = lbox * gbox;
    out->lobj = lobj * gobj;
    out->lcls = lcls * gcls;
    out->loss = (out->lbox + out->lobj + out->lcls) * bs;
    return 0;
}
