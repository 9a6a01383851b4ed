/* The memory planner: every activation, gradient, saved (aux) and scratch buffer of the compiled
 * graph gets a byte range in one arena, and two buffers share bytes only when their lifetimes
 * do not overlap.
 *
 * Time line: the needed op nodes run forward at t = 0..T-1 (creation order); the backward of the
 * node that ran at t runs at 2T-1-t. A buffer lives over a closed interval of steps:
 *   value     from its forward step to its last reader: a consumer's forward, a consumer's
 *             backward that saves it (FL_OPF_SAVE_IN), its own backward (FL_OPF_SAVE_OUT),
 *             or forever for outputs and the target;
 *   gradient  from the first consumer backward that writes it (the target's from the start of
 *             backward) to its own backward;
 *   aux       from its forward to its backward (saved statistics and masks);
 *   scratch   one step;
 *   kept      the whole time line (packed weights reused across steps).
 * Placement is greedy by size (largest first, lowest offset that fits beside every placed buffer
 * whose lifetime overlaps), the heuristic of TFLite's arena planner; good enough and simple. */
#include <stdlib.h>
#include <string.h>

#include "runtime/backend_internal.h"

typedef struct buf {
    size_t size, off;
    int t0, t1;
    void **slot; /* where the pointer goes */
} buf;

static int by_size_desc(const void *a, const void *b) {
    const buf *x = *(const buf *const *)a, *y = *(const buf *const *)b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->t0 - y->t0;
}

int fl_plan_memory(fl_graph *g, fl_err *e) {
    int n = g->n;
    int *tf = malloc(sizeof(int) * (size_t)(n + 1));
    buf *bufs = calloc((size_t)n * 6 + 1, sizeof *bufs);
    if (!tf || !bufs) {
        free(tf);
        free(bufs);
        return fl_errf(e, "planner: out of memory");
    }
    int T = 0;
    for (int i = 0; i < n; i++) tf[i] = (g->nodes[i].kind == FL_NODE_OP && g->needed[i]) ? T++ : -1;
    const int END = 2 * T;
#define TB(i) (2 * T - 1 - tf[i])
#define RUNS_BWD(i) (g->bwd[i] && g->nodes[i].kind == FL_NODE_OP)
    /* Last reader of each value and first writer of each gradient, in one pass over consumers. */
    int *vend = malloc(sizeof(int) * (size_t)(n + 1)), *gstart = malloc(sizeof(int) * (size_t)(n + 1));
    if (!vend || !gstart) {
        free(tf);
        free(bufs);
        free(vend);
        free(gstart);
        return fl_errf(e, "planner: out of memory");
    }
    for (int i = 0; i < n; i++) {
        fl_node *nd = &g->nodes[i];
        vend[i] = tf[i];
        gstart[i] = i == g->target ? T : END;
        if (tf[i] >= 0 && RUNS_BWD(i) && (nd->op->flags & FL_OPF_SAVE_OUT) && TB(i) > vend[i]) vend[i] = TB(i);
        if (nd->is_output || i == g->target) vend[i] = END;
    }
    for (int c = 0; c < n; c++) {
        fl_node *cn = &g->nodes[c];
        if (tf[c] < 0) continue;
        for (int k = 0; k < cn->nin; k++) {
            int i = cn->in[k];
            if (tf[c] > vend[i]) vend[i] = tf[c];
            if (RUNS_BWD(c)) {
                if ((cn->op->flags & FL_OPF_SAVE_IN(k)) && TB(c) > vend[i]) vend[i] = TB(c);
                if (TB(c) < gstart[i]) gstart[i] = TB(c);
            }
        }
    }
    int nb = 0;
    for (int i = 0; i < n; i++) {
        fl_node *nd = &g->nodes[i];
        if (tf[i] < 0) continue;
        int gst = gstart[i];
        size_t vb = (size_t)fl_numel(nd) * fl_dtype_size(nd->dtype);
        bufs[nb++] = (buf){fl_arena_round(vb), 0, tf[i], vend[i], &nd->val};
        if (RUNS_BWD(i)) {
            if (gst > TB(i)) gst = TB(i);
            bufs[nb++] = (buf){fl_arena_round(vb), 0, gst, TB(i), &nd->grad};
            if (nd->ws_bwd_bytes) bufs[nb++] = (buf){fl_arena_round(nd->ws_bwd_bytes), 0, TB(i), TB(i), &nd->ws_bwd};
        }
        if (nd->aux_bytes)
            bufs[nb++] = (buf){fl_arena_round(nd->aux_bytes), 0, tf[i], RUNS_BWD(i) ? TB(i) : tf[i], &nd->aux};
        if (nd->ws_fwd_bytes) bufs[nb++] = (buf){fl_arena_round(nd->ws_fwd_bytes), 0, tf[i], tf[i], &nd->ws_fwd};
        if (nd->keep_bytes) bufs[nb++] = (buf){fl_arena_round(nd->keep_bytes), 0, 0, END, &nd->keep};
    }
#undef TB
#undef RUNS_BWD
    free(vend);
    free(gstart);
    /* placed: buffers already given an offset, kept sorted by offset, so the lowest gap that
     * fits is found in one scan over those whose lifetimes overlap (no per-buffer sort). */
    buf **order = malloc(sizeof(buf *) * (size_t)(nb + 1));
    buf **placed = malloc(sizeof(buf *) * (size_t)(nb + 1));
    if (!order || !placed) {
        free(tf);
        free(bufs);
        free(order);
        free(placed);
        return fl_errf(e, "planner: out of memory");
    }
    for (int k = 0; k < nb; k++) order[k] = &bufs[k];
    qsort(order, (size_t)nb, sizeof *order, by_size_desc);
    size_t peak = 0, total = 0;
    int np = 0;
    for (int k = 0; k < nb; k++) {
        buf *b = order[k];
        total += b->size;
        size_t off = 0;
        for (int j = 0; j < np; j++) {
            buf *p = placed[j];
            if (p->t1 < b->t0 || b->t1 < p->t0) continue; /* never alive together */
            if (p->off >= off + b->size) break;          /* the gap before p fits */
            if (p->off + p->size > off) off = p->off + p->size;
        }
        b->off = off;
        if (off + b->size > peak) peak = off + b->size;
        int at = np++;
        while (at > 0 && placed[at - 1]->off > off) {
            placed[at] = placed[at - 1];
            at--;
        }
        placed[at] = b;
    }
    free(order);
    free(placed);
    int rc = fl_backend_arena_init(g, peak, e);
    if (rc == 0)
        for (int k = 0; k < nb; k++) *bufs[k].slot = fl_arena_at(&g->arena, bufs[k].off, bufs[k].size);
    g->peak_bytes = peak;
    g->noreuse_bytes = total;
    free(tf);
    free(bufs);
    return rc;
}
