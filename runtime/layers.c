/* Layers: ops together with their named parameters, named as in timm / ultralytics state dicts
 * (prefix.weight, prefix.bias, prefix.running_mean, ...) with PyTorch shapes and default inits,
 * so pretrained files load by name. */
#include <math.h>
#include <stdio.h>

#include "runtime/cpu/conv.h"
#include "runtime/graph_internal.h"

/* prefix + "." + leaf, recorded as a builder error when too long. */
static int pname(fl_graph *g, char *buf, size_t cap, const char *prefix, const char *leaf) {
    if (!prefix) return fl_graph_fail(g, "layer without a name prefix");
    int k = snprintf(buf, cap, "%s%s%s", prefix, *prefix ? "." : "", leaf);
    if (k < 0 || (size_t)k >= cap) return fl_graph_fail(g, "parameter name too long: %s.%s", prefix, leaf);
    return 0;
}

static int64_t last_dim(fl_graph *g, fl_id x) {
    if (x < 0 || x >= g->n) return -1;
    const fl_node *n = &g->nodes[x];
    return n->shape.ndim ? n->shape.d[n->shape.ndim - 1] : -1;
}

fl_id fl_linear_layer(fl_graph *g, fl_id x, const char *prefix, int64_t out, int bias) {
    int64_t in = last_dim(g, x);
    if (in < 1) return x < 0 ? -1 : fl_graph_fail(g, "%s: linear input must have a feature axis", prefix ? prefix : "?");
    char nw[512], nb[512];
    if (pname(g, nw, sizeof nw, prefix, "weight") < 0 || pname(g, nb, sizeof nb, prefix, "bias") < 0) return -1;
    double bound = 1 / sqrt((double)in); /* nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in)) */
    fl_init u = {FL_INIT_UNIFORM, -bound, bound};
    fl_id w = fl_parameter(g, nw, 2, (int64_t[]){out, in}, u, 0);
    fl_id b = bias ? fl_parameter(g, nb, 1, &out, u, FL_P_NO_DECAY) : -1;
    if (bias && b < 0) return -1;
    return fl_linear(g, x, w, b);
}

/* act 1: the fused batchnorm_silu op instead of batchnorm. */
static fl_id bn_layer(fl_graph *g, fl_id x, const char *prefix, double eps, double momentum, int act) {
    int64_t C = last_dim(g, x);
    if (C < 1) return x < 0 ? -1 : fl_graph_fail(g, "%s: batch norm input must have a channel axis", prefix ? prefix : "?");
    static const char *leaf[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    fl_id id[5];
    for (int k = 0; k < 5; k++) {
        char nm[512];
        if (pname(g, nm, sizeof nm, prefix, leaf[k]) < 0) return -1;
        fl_init init = {(k == 0 || k == 3) ? FL_INIT_ONES : FL_INIT_ZEROS, 0, 0};
        if (k < 2) id[k] = fl_parameter(g, nm, 1, &C, init, FL_P_NO_DECAY);
        else if (k < 4) id[k] = fl_buffer(g, nm, 1, &C, init);
        else id[k] = fl_buffer(g, nm, 0, NULL, init); /* a scalar, as in PyTorch */
    }
    if (act) return fl_batchnorm_silu(g, x, id[0], id[1], id[2], id[3], id[4], eps, momentum);
    return fl_batchnorm(g, x, id[0], id[1], id[2], id[3], id[4], eps, momentum);
}

fl_id fl_bn_layer(fl_graph *g, fl_id x, const char *prefix, double eps, double momentum) {
    return bn_layer(g, x, prefix, eps, momentum, 0);
}

fl_id fl_bn_silu_layer(fl_graph *g, fl_id x, const char *prefix, double eps, double momentum) {
    return bn_layer(g, x, prefix, eps, momentum, 1);
}

fl_id fl_prelu_layer(fl_graph *g, fl_id x, const char *prefix, int64_t channels) {
    char nm[512];
    if (pname(g, nm, sizeof nm, prefix, "weight") < 0) return -1;
    fl_id w = fl_parameter(g, nm, 1, &channels, (fl_init){FL_INIT_CONST, 0.25, 0}, 0);
    return fl_prelu(g, x, w);
}

fl_id fl_gem_layer(fl_graph *g, fl_id x, const char *prefix, double p0, double eps) {
    char nm[512];
    if (pname(g, nm, sizeof nm, prefix, "p") < 0) return -1;
    int64_t one = 1;
    fl_id p = fl_parameter(g, nm, 1, &one, (fl_init){FL_INIT_CONST, p0, 0}, FL_P_NO_DECAY);
    return fl_gem(g, x, p, eps);
}

fl_id fl_conv2d_layer(fl_graph *g, fl_id x, const char *prefix, int64_t c_out, int k, int stride,
                      int dilation, int groups, int pad, int bias) {
    if (x < 0) return -1;
    if (x >= g->n) return fl_graph_fail(g, "%s: bad input node %d", prefix ? prefix : "?", x);
    const fl_node *xn = &g->nodes[x];
    if (xn->shape.ndim != 4) return fl_graph_fail(g, "%s: conv input must be NHWC", prefix ? prefix : "?");
    if (k < 1 || stride < 1 || dilation < 1 || groups < 1 || c_out < 1 || pad < FL_PAD_SAME || xn->shape.d[3] % groups)
        return fl_graph_fail(g, "%s: bad conv arguments (k %d, stride %d, dilation %d, groups %d, c_out %lld, pad %d)",
                             prefix ? prefix : "?", k, stride, dilation, groups, (long long)c_out, pad);
    int p[4];
    if (pad >= 0) p[0] = p[1] = p[2] = p[3] = pad;
    else if (pad == FL_PAD_AUTO) p[0] = p[1] = p[2] = p[3] = fl_conv2d_pad_symmetric(k, dilation);
    else {
        fl_conv2d_pad_tf_same((int)xn->shape.d[1], k, stride, dilation, &p[0], &p[2]);
        fl_conv2d_pad_tf_same((int)xn->shape.d[2], k, stride, dilation, &p[1], &p[3]);
    }
    char nw[512], nb[512];
    if (pname(g, nw, sizeof nw, prefix, "weight") < 0 || pname(g, nb, sizeof nb, prefix, "bias") < 0) return -1;
    int64_t cin = xn->shape.d[3] / groups;
    double bound = 1 / sqrt((double)(cin * k * k));
    fl_init u = {FL_INIT_UNIFORM, -bound, bound};
    fl_id w = fl_parameter(g, nw, 4, (int64_t[]){c_out, cin, k, k}, u, 0);
    fl_id b = bias ? fl_parameter(g, nb, 1, &c_out, u, FL_P_NO_DECAY) : -1;
    if (bias && b < 0) return -1;
    return fl_conv2d(g, x, w, b, stride, dilation, groups, p);
}
