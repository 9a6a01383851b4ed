/* The YOLOv5 loss (runtime/models/yolo_loss.c: ComputeLoss with build_targets) as a graph op,
 * so a detector step is copy in, compute, read back. Inputs: the three raw head levels
 * [N, ny, nx, 3*(nc+5)] and targets [T, 6] (img, cls, x, y, w, h; img -1 = padding, at the end).
 * Output [4] = (loss, lbox, lobj, lcls).
 *
 * Forward runs the host code on the graph's buffers (targets parsed and the assignment's scratch
 * in the planned ws_fwd, nothing allocated) and keeps dLoss/dheads in aux; backward scales it
 * by the upstream gradient per component: the box terms own channels 0..3, objectness channel
 * 4, the classes 5.., and loss = (lbox + lobj + lcls) * N, so
 *   dheads = g * (dy[0] + dy[c] / N)   for the component c owning the channel.
 * With dy = (1, 0, 0, 0) this is g itself: the step equals the host path bit for bit.
 *
 * Attributes: f = (box, cls, obj, anchor_t) gains; i[0..8] the 18 float anchors (pixels, two
 * float bit patterns per slot), i[9] the strides (20 bits each), i[10] imgsz, i[11] the label
 * smoothing's double bits. F32 only. */
#include <math.h>
#include <string.h>

#include "runtime/graph_internal.h"
#include "runtime/models/yolo_loss_internal.h"

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void unpack(fl_graph *g, const fl_node *n, fl_yolo_cfg *c, fl_yolo_hyp *hyp, fl_yolo_heads *h) {
    memset(c, 0, sizeof *c);
    memset(h, 0, sizeof *h);
    float *a = &c->anchors[0][0][0];
    for (int k = 0; k < 9; k++) {
        uint64_t v = (uint64_t)n->i[k];
        a[2 * k] = bitsf((uint32_t)v);
        a[2 * k + 1] = bitsf((uint32_t)(v >> 32));
    }
    for (int i = 0; i < FL_YOLO_NL; i++) c->strides[i] = (int)(((uint64_t)n->i[9] >> (20 * i)) & 0xfffff);
    const fl_node *p0 = fl_in(g, (fl_node *)n, 0);
    h->no = (int)(p0->shape.d[3] / FL_YOLO_NA);
    c->nc = h->no - 5;
    h->n = p0->shape.d[0];
    for (int i = 0; i < FL_YOLO_NL; i++) {
        h->p[i] = n->in[i];
        h->ny[i] = fl_in(g, (fl_node *)n, i)->shape.d[1];
        h->nx[i] = fl_in(g, (fl_node *)n, i)->shape.d[2];
    }
    double ls;
    uint64_t lb = (uint64_t)n->i[11];
    memcpy(&ls, &lb, sizeof ls);
    *hyp = (fl_yolo_hyp){.box = n->f[0], .cls = n->f[1], .obj = n->f[2], .anchor_t = n->f[3],
                         .label_smoothing = ls, .imgsz = (int)n->i[10]};
}

static size_t max_cells(fl_graph *g, fl_node *n) {
    size_t m = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        const fl_node *p = fl_in(g, n, i);
        size_t c = (size_t)(p->shape.d[0] * p->shape.d[1] * p->shape.d[2] * FL_YOLO_NA);
        if (c > m) m = c;
    }
    return m;
}

static int yl_shape(fl_graph *g, fl_node *n, fl_err *e) {
    if (g->dtype != FL_F32) return fl_errf(e, "float32 graphs only");
    const fl_node *p0 = fl_in(g, n, 0);
    for (int i = 0; i < FL_YOLO_NL; i++) {
        const fl_node *p = fl_in(g, n, i);
        if (p->dtype != FL_F32 || p->shape.ndim != 4 || p->shape.d[0] != p0->shape.d[0] ||
            p->shape.d[3] != p0->shape.d[3])
            return fl_errf(e, "head %d must be float [N, ny, nx, 3*(nc+5)] like head 0", i);
    }
    if (p0->shape.d[3] % FL_YOLO_NA != 0 || p0->shape.d[3] / FL_YOLO_NA < 6)
        return fl_errf(e, "heads have %lld channels, not 3*(nc+5)", (long long)p0->shape.d[3]);
    const fl_node *t = fl_in(g, n, 3);
    if (t->dtype != FL_F32 || t->shape.ndim != 2 || t->shape.d[1] != 6)
        return fl_errf(e, "targets must be float [T, 6] (img, cls, x, y, w, h)");
    if (!(n->f[3] > 1) || n->i[10] < 1) return fl_errf(e, "bad imgsz %lld / anchor_t %g", (long long)n->i[10], n->f[3]);
    size_t T = (size_t)t->shape.d[0], total = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) total += (size_t)fl_numel(fl_in(g, n, i));
    n->shape.ndim = 1;
    n->shape.d[0] = 4;
    n->aux_bytes = total * sizeof(float);
    n->ws_fwd_bytes = round64(T * sizeof(fl_yolo_target) + 1) + round64(max_cells(g, n) * sizeof(float)) +
                      round64(fl_yolo_match_bytes(T) + 1);
    return 0;
}

/* Leading rows up to the first padding row. */
static size_t parse(const float *rows, size_t T, fl_yolo_target *t) {
    size_t k = 0;
    for (; k < T && rows[6 * k] != -1.0f; k++) {
        const float *r = rows + 6 * k;
        t[k] = (fl_yolo_target){(int)r[0], (int)r[1], r[2], r[3], r[4], r[5]};
    }
    return k;
}

int fl_yolo_loss_validate(fl_graph *g, fl_node *n, fl_err *e) {
    fl_yolo_cfg c;
    fl_yolo_hyp hyp;
    fl_yolo_heads h;
    unpack(g, n, &c, &hyp, &h);
    const fl_node *tn = fl_in(g, n, 3);
    const float *rows = tn->val;
    size_t T = (size_t)tn->shape.d[0];
    int pad = 0;
    for (size_t k = 0; k < T; k++) {
        const float *r = rows + 6 * k;
        if (r[0] == -1.0f) {
            pad = 1;
            continue;
        }
        if (pad) return fl_errf(e, "yolo loss: target row %zu follows a padding row (img -1 rows go last)", k);
        for (int j = 0; j < 2; j++)
            if (!(r[j] == floorf(r[j]) && fabsf(r[j]) < 1e9f))
                return fl_errf(e, "yolo loss: target %zu: %s %g is not an integer index", k, j ? "class" : "image", r[j]);
        fl_yolo_target q = {(int)r[0], (int)r[1], r[2], r[3], r[4], r[5]};
        if (fl_yolo_check_target(&c, h.n, &q, k, e) < 0) return -1;
    }
    return 0;
}

static int yl_fwd(fl_graph *g, fl_node *n, fl_err *e) {
    fl_yolo_cfg c;
    fl_yolo_hyp hyp;
    fl_yolo_heads h;
    unpack(g, n, &c, &hyp, &h);
    const fl_node *tn = fl_in(g, n, 3);
    size_t T = (size_t)tn->shape.d[0];
    unsigned char *ws = n->ws_fwd;
    fl_yolo_target *t = (fl_yolo_target *)ws;
    float *tobj = (float *)(ws + round64(T * sizeof *t + 1));
    void *mws = ws + round64(T * sizeof *t + 1) + round64(max_cells(g, n) * sizeof(float));
    size_t nt = parse(tn->val, T, t);
    const float *pv[FL_YOLO_NL];
    float *gv[FL_YOLO_NL];
    float *aux = n->aux;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        pv[i] = fl_in_val(g, n, i);
        gv[i] = g->bwd[n - g->nodes] ? aux : NULL; /* the gradient only when backward runs */
        aux += fl_yolo_level_numel(&h, i);
    }
    fl_yolo_loss_out lo;
    if (fl_yolo_loss_levels(&c, &hyp, &h, pv, t, nt, gv, tobj, mws, &lo, e) < 0) return -1;
    float *y = n->val;
    y[0] = (float)lo.loss, y[1] = (float)lo.lbox, y[2] = (float)lo.lobj, y[3] = (float)lo.lcls;
    return 0;
}

static int yl_bwd(fl_graph *g, fl_node *n, fl_err *e) {
    (void)e;
    fl_yolo_cfg c;
    fl_yolo_hyp hyp;
    fl_yolo_heads h;
    unpack(g, n, &c, &hyp, &h);
    const float *dy = n->grad;
    const double bs = (double)h.n;
    const double k[3] = {(double)dy[0] + (double)dy[1] / bs, (double)dy[0] + (double)dy[2] / bs,
                         (double)dy[0] + (double)dy[3] / bs};
    const float *gsrc = n->aux;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        float *dp = fl_in_grad(g, n, i);
        int64_t cnt = (int64_t)fl_yolo_level_numel(&h, i);
        if (dp) {
#pragma omp parallel for if (cnt > 65536)
            for (int64_t q = 0; q < cnt; q++) {
                int ch = (int)(q % h.no);
                dp[q] += (float)((double)gsrc[q] * k[ch < 4 ? 0 : ch == 4 ? 1 : 2]);
            }
        }
        gsrc += cnt;
    }
    return 0;
}

const fl_op_def fl_op_yolo_loss = {"yolo_loss", yl_shape, 0, FL_OP_YOLO_LOSS};
const fl_op_impl fl_ref_yolo_loss = {yl_fwd, yl_bwd};

fl_id fl_yolo_targets_input(fl_graph *g, const char *name, int64_t max_targets) {
    return fl_input(g, name, 2, (int64_t[]){max_targets, 6});
}

fl_id fl_yolo_loss_node(fl_graph *g, const fl_yolo_cfg *c, const fl_yolo_hyp *hyp,
                        const fl_yolo_heads *h, fl_id targets, fl_id *loss) {
    if (loss) *loss = -1;
    int64_t ia[12];
    const float *a = &c->anchors[0][0][0];
    for (int k = 0; k < 9; k++)
        ia[k] = (int64_t)((uint64_t)fbits(a[2 * k]) | (uint64_t)fbits(a[2 * k + 1]) << 32);
    uint64_t st = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        if (c->strides[i] < 1 || c->strides[i] >= (1 << 20)) return fl_graph_fail(g, "yolo_loss: stride %d", c->strides[i]);
        st |= (uint64_t)c->strides[i] << (20 * i);
    }
    ia[9] = (int64_t)st;
    ia[10] = hyp->imgsz;
    uint64_t lb;
    memcpy(&lb, &hyp->label_smoothing, sizeof lb);
    ia[11] = (int64_t)lb;
    double fa[4] = {hyp->box, hyp->cls, hyp->obj, hyp->anchor_t};
    fl_id in[4] = {h->p[0], h->p[1], h->p[2], targets};
    fl_id v = fl_graph_add_op(g, &fl_op_yolo_loss, 4, in, fa, 4, ia, 12);
    if (v < 0) return -1;
    if (h->no != c->nc + 5) return fl_graph_fail(g, "yolo_loss: heads have %d outputs per anchor, config %d", h->no, c->nc + 5);
    fl_graph_mark_output(g, v);
    if (loss) *loss = fl_slice(g, v, 0, 0, 1);
    return v;
}

int fl_yolo_pack_targets(const fl_yolo_target *t, size_t nt, float *dst, int64_t cap, fl_err *e) {
    if (cap < 0 || nt > (size_t)cap) return fl_errf(e, "yolo targets: %zu targets, room for %lld", nt, (long long)cap);
    for (size_t k = 0; k < (size_t)cap; k++) {
        float *r = dst + 6 * k;
        if (k < nt) {
            r[0] = (float)t[k].img, r[1] = (float)t[k].cls;
            r[2] = t[k].x, r[3] = t[k].y, r[4] = t[k].w, r[5] = t[k].h;
        } else {
            r[0] = -1.0f;
            r[1] = r[2] = r[3] = r[4] = r[5] = 0.0f;
        }
    }
    return 0;
}
