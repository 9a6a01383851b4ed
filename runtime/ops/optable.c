/* The one op table: every op the graph knows. Each definition (name, shape rule, flags, one
 * forward/backward pair per backend) lives beside its kernels in runtime/ops/<family>.c; this
 * list is what table-wide code (listings, backend coverage checks) iterates. */
#include "runtime/graph_internal.h"

static const fl_op_def *const table[] = {
    &fl_op_relu, &fl_op_silu, &fl_op_sigmoid, &fl_op_softplus, &fl_op_prelu, &fl_op_scale,
    &fl_op_add, &fl_op_sub, &fl_op_mul, &fl_op_div,
    &fl_op_sum, &fl_op_mean, &fl_op_concat, &fl_op_slice, &fl_op_reshape,
    &fl_op_linear, &fl_op_batchnorm, &fl_op_gem, &fl_op_l2norm, &fl_op_dropout, &fl_op_drop_path,
    &fl_op_softmax_ce, &fl_op_bce_logits, &fl_op_subcenter_max, &fl_op_arc_margin,
    &fl_op_conv2d, &fl_op_maxpool, &fl_op_upsample, &fl_op_global_avgpool,
    &fl_op_zero_grad, &fl_op_grad_norm, &fl_op_clip_coef, &fl_op_grad_scale, &fl_op_sgd_update,
    &fl_op_adam_update, &fl_op_ema_update, &fl_op_seed_grad, &fl_op_yolo_loss,
    NULL,
};

const fl_op_def *const *fl_op_table(void) { return table; }
