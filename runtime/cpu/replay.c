/* Record and replay of a compiled step on the CPU. A compiled graph never changes: which op
 * nodes run, in which order, with which buffers, and in backward which gradient each kernel
 * overwrites (beta 0), adds to (beta 1) or needs zeroed first. Recording resolves all of that
 * once, walking the graph exactly as the eager schedule does (graph.c for forward, autodiff.c
 * for backward); a replay then only calls the kernels in order. Same kernels, same buffers, same
 * order: a replayed step is bitwise the eager one. What a step reads at run time (inputs, the
 * parameters, the step's RNG counter, the seed) is read by the kernels then, not recorded. */
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/backend_cpu.h"

typedef struct rec_fwd {
    fl_kernel_fn fn;
    fl_node *n;
} rec_fwd;

typedef struct rec_bwd {
    fl_kernel_fn fn;
    fl_node *n;
    int beta[FL_MAX_IN];
    int z0, nz; /* zero[z0 .. z0+nz) is cleared before the kernel runs */
} rec_bwd;

typedef struct rec_zero {
    void *p;
    size_t bytes;
} rec_zero;

typedef struct cpu_rec {
    int nf, nb, nz;
    rec_fwd *fwd;
    rec_bwd *bwd;
    rec_zero *zero;
} cpu_rec;

void fl_cpu_release(fl_graph *g) {
    cpu_rec *r = g->rec;
    if (!r) return;
    free(r->fwd);
    free(r->bwd);
    free(r->zero);
    free(r);
    g->rec = NULL;
}

/* The backward schedule of autodiff.c, recorded instead of run (keep the two in step). */
static int record_backward(fl_graph *g, cpu_rec *r, fl_err *e) {
    int t = g->target;
    if (t < 0 || !g->bwd[t] || g->nodes[t].kind != FL_NODE_OP) return 0; /* nothing to schedule */
    unsigned char *ready = calloc((size_t)g->n, 1);
    if (!ready) return fl_errf(e, "record: out of memory");
    size_t es = fl_dtype_size(g->dtype);
    for (int i = 0; i < g->n; i++) ready[i] = g->nodes[i].kind == FL_NODE_PARAM;
    ready[t] = 1;
    for (int i = t; i >= 0; i--) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->bwd[i] || !ready[i]) continue;
        rec_bwd *b = &r->bwd[r->nb++];
        b->fn = fl_node_impl(g, n)->backward;
        b->n = n;
        b->z0 = r->nz;
        b->nz = 0;
        int beta_ok = (n->op->flags & FL_OPF_BWD_BETA) != 0;
        for (int k = 0; k < FL_MAX_IN; k++) b->beta[k] = 1;
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            if (!g->bwd[j] || ready[j]) continue;
            int dup = 0;
            for (int q = 0; q < k; q++) dup |= n->in[q] == j;
            if (dup) continue;
            if (beta_ok) b->beta[k] = 0;
            else {
                r->zero[r->nz++] = (rec_zero){g->nodes[j].grad, (size_t)fl_numel(&g->nodes[j]) * es};
                b->nz++;
            }
        }
        for (int k = 0; k < n->nin; k++)
            if (g->bwd[n->in[k]]) ready[n->in[k]] = 1;
    }
    free(ready);
    return 0;
}

int fl_cpu_record(fl_graph *g, fl_err *e) {
    cpu_rec *r = calloc(1, sizeof *r);
    int nops = 0, nzero = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].kind == FL_NODE_OP) nops++, nzero += g->nodes[i].nin;
    if (r) {
        r->fwd = malloc(sizeof *r->fwd * (size_t)(nops + 1));
        r->bwd = malloc(sizeof *r->bwd * (size_t)(nops + 1));
        r->zero = malloc(sizeof *r->zero * (size_t)(nzero + 1));
    }
    if (!r || !r->fwd || !r->bwd || !r->zero) {
        g->rec = r;
        fl_cpu_release(g);
        return fl_errf(e, "record: out of memory");
    }
    for (int i = 0; i < g->n; i++) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->needed[i]) continue;
        r->fwd[r->nf++] = (rec_fwd){fl_node_impl(g, n)->forward, n};
    }
    if (record_backward(g, r, e) < 0) {
        g->rec = r;
        fl_cpu_release(g);
        return -1;
    }
    g->rec = r;
    return 0;
}

static int node_id(const fl_graph *g, const fl_node *n) { return (int)(n - g->nodes); }

int fl_cpu_replay_forward(fl_graph *g, fl_err *e) {
    const cpu_rec *r = g->rec;
    for (int k = 0; k < r->nf; k++) {
        fl_node *n = r->fwd[k].n;
        if (r->fwd[k].fn(g, n, e) < 0) return fl_errprefix(e, "%s (node %d) forward", n->op->name, node_id(g, n));
    }
    return 0;
}

int fl_cpu_replay_backward(fl_graph *g, const void *seed, fl_err *e) {
    const cpu_rec *r = g->rec;
    int t = g->target;
    fl_node *tn = &g->nodes[t];
    /* Nothing trainable, or a leaf target: the eager path has nothing to schedule either. */
    if (!g->bwd[t] || tn->kind != FL_NODE_OP) return fl_autodiff_backward(g, seed, e);
    int64_t tnum = fl_numel(tn);
    if (!seed && tnum != 1)
        return fl_errf(e, "backward: target has %lld elements; pass a seed gradient", (long long)tnum);
    if (fl_autodiff_seed(g, seed, e) < 0) return -1; /* as eager: the seed_grad kernel */
    for (int k = 0; k < r->nb; k++) {
        const rec_bwd *b = &r->bwd[k];
        for (int z = b->z0; z < b->z0 + b->nz; z++) memset(r->zero[z].p, 0, r->zero[z].bytes);
        memcpy(g->beta, b->beta, sizeof g->beta);
        if (b->fn(g, b->n, e) < 0) return fl_errprefix(e, "%s (node %d) backward", b->n->op->name, node_id(g, b->n));
    }
    return 0;
}
