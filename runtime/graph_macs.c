/* Multiply-accumulates of a graph's forward pass, from node shapes alone (no compile, no data):
 * what a run's cost estimate scales by. Counts conv2d and linear, which are all but a few
 * percent of an EfficientNet's or a YOLOv5's arithmetic; element-wise ops are left out. */
#include "runtime/graph_internal.h"

int64_t fl_graph_macs(const fl_graph *g) {
    int64_t macs = 0;
    for (int i = 0; i < g->n; i++) {
        const fl_node *n = &g->nodes[i];
        if (n->kind != FL_NODE_OP || n->nin < 2) continue;
        const fl_node *w = &g->nodes[n->in[1]];
        int64_t out = fl_numel(n);
        if (n->op == &fl_op_conv2d && w->shape.ndim == 4) {
            /* weight [C_out, C_in/groups, KH, KW]: each output element sums C_in/groups*KH*KW */
            macs += out * (w->shape.d[1] * w->shape.d[2] * w->shape.d[3]);
        } else if (n->op == &fl_op_linear && w->shape.ndim == 2) {
            macs += out * w->shape.d[1]; /* weight [out, in] */
        }
    }
    return macs;
}
