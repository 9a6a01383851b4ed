/* Input validation before the step: labels and detection targets are checked on the host
 * against the ops that read them, before any kernel runs, so the kernels (and a device backend,
 * which could not report a bad index from inside a kernel) trust their inputs. The checks live
 * beside their ops; this file only knows which op has one. */
#include <string.h>

#include "runtime/step.h"
#include "runtime/update_internal.h"

static fl_kernel_fn validator(const fl_op_def *op) {
    if (op == &fl_op_softmax_ce) return fl_softmax_ce_validate;
    if (op == &fl_op_arc_margin) return fl_arc_margin_validate;
    if (op == &fl_op_yolo_loss) return fl_yolo_loss_validate;
    return NULL;
}

/* only: check the ops reading that node (-1: every op). */
static int validate(fl_graph *g, int only, fl_err *e) {
    for (int i = 0; i < g->n; i++) {
        fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || !g->needed[i]) continue;
        fl_kernel_fn v = validator(n->op);
        if (!v) continue;
        int reads = only < 0;
        for (int k = 0; k < n->nin && !reads; k++) reads = n->in[k] == only;
        if (reads && v(g, n, e) < 0) return fl_errprefix(e, "%s (node %d)", n->op->name, i);
    }
    return 0;
}

int fl_graph_validate(fl_graph *g, fl_err *e) {
    if (!g->compiled) return fl_errf(e, "graph: validate before compile");
    return validate(g, -1, e);
}

int fl_graph_validate_input(fl_graph *g, fl_id x, fl_err *e) { return validate(g, x, e); }
