/* Reverse-mode autodiff: seed the target's gradient, then run every op on a path into the
 * target backwards in reverse creation order (a reverse topological order). A node used by
 * several consumers receives the sum of their contributions: its gradient buffer is zeroed
 * (or, for FL_OPF_BWD_BETA ops, overwritten) by the first writer and added to by the rest.
 * Parameter gradients are never zeroed here, so successive backward calls accumulate them
 * (micro-batches); fl_pstore_zero_grad starts a new sum. */
#include <string.h>

#include "runtime/backend_internal.h"
#include "runtime/update_internal.h"

int fl_autodiff_seed(fl_graph *g, const void *seed, fl_err *e) {
    fl_node *tn = &g->nodes[g->target];
    /* The seed is written by a kernel (a device backend's target gradient is device memory); a
     * leaf target's gradient accumulates, an op target's is overwritten. */
    if (tn->kind != FL_NODE_OP && !tn->grad) return 0;
    fl_node sn;
    memset(&sn, 0, sizeof sn);
    sn.kind = FL_NODE_OP;
    sn.op = &fl_op_seed_grad;
    sn.val = (void *)seed;
    sn.grad = tn->grad;
    sn.i[0] = fl_numel(tn);
    sn.i[1] = tn->kind != FL_NODE_OP;
    const fl_op_impl *im = fl_node_impl(g, &sn);
    if (!im || !im->forward) return fl_errf(e, "backward: no seed_grad kernel on the %s backend", g->be->name);
    return im->forward(g, &sn, e);
}

int fl_autodiff_backward(fl_graph *g, const void *seed, fl_err *e) {
    int t = g->target;
    fl_node *tn = &g->nodes[t];
    if (!g->bwd[t]) return 0; /* nothing trainable feeds the target */
    size_t es = fl_dtype_size(g->dtype);
    int64_t tnum = fl_numel(tn);
    if (!seed && tnum != 1)
        return fl_errf(e, "backward: target has %lld elements; pass a seed gradient", (long long)tnum);
    for (int i = 0; i < g->n; i++)
        g->ready[i] = g->nodes[i].kind == FL_NODE_PARAM; /* parameters accumulate */
    if (fl_autodiff_seed(g, seed, e) < 0) return -1;
    if (tn->kind != FL_NODE_OP) return 0; /* the target is a leaf: its gradient is the seed */
    g->ready[t] = 1;
    for (int i = t; i >= 0; i--) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->bwd[i]) continue;
        if (!g->ready[i]) continue; /* no consumer on a path into the target wrote it */
        int beta_ok = (n->op->flags & FL_OPF_BWD_BETA) != 0;
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            g->beta[k] = 1;
            if (!g->bwd[j]) continue;
            if (!g->ready[j]) {
                /* The same input twice in one op: the first occurrence zeroes / overwrites. */
                int dup = 0;
                for (int q = 0; q < k; q++) dup |= n->in[q] == j;
                if (!dup) {
                    if (beta_ok) g->beta[k] = 0;
                    else memset(g->nodes[j].grad, 0, (size_t)fl_numel(&g->nodes[j]) * es);
                }
            }
        }
        fl_kernel_fn f = fl_node_impl(g, n)->backward; /* compile checked it exists */
        if (f(g, n, e) < 0) return fl_errprefix(e, "%s (node %d) backward", n->op->name, i);
        for (int k = 0; k < n->nin; k++)
            if (g->bwd[n->in[k]]) g->ready[n->in[k]] = 1;
    }
    return 0;
}
