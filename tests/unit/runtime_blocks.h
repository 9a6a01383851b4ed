/* Test blocks built from runtime layers with timm / ultralytics parameter names, matching the
 * PyTorch definitions in tests/fixtures/gen_runtime.py: an EfficientNet MBConv block with
 * squeeze-excite (timm InvertedResidual) and a YOLOv5 C3 block. Shared by the fixture tests,
 * the training-parity test and the runtime benchmark. */
#ifndef FL_TEST_RUNTIME_BLOCKS_H
#define FL_TEST_RUNTIME_BLOCKS_H

#include <stdio.h>

#include "runtime/graph.h"

/* pw expand 1x1 -> BN -> SiLU -> dw kxk -> BN -> SiLU -> SE (reduce to se_ch, SiLU, expand,
 * sigmoid gate) -> pw project 1x1 -> BN -> + x (stride 1, in == out). */
static inline fl_id blk_mbconv(fl_graph *g, fl_id x, const char *pre, int64_t cin, int64_t mid,
                        int64_t se_ch, int k, double eps, double mom) {
    /* one buffer per name: a name must stay valid while its layer call is evaluated */
    char n[8][256];
    static const char *leaf[8] = {"conv_pw", "bn1", "conv_dw", "bn2", "se.conv_reduce", "se.conv_expand", "conv_pwl", "bn3"};
    for (int i = 0; i < 8; i++) snprintf(n[i], sizeof n[i], "%s%s", pre, leaf[i]);
    fl_id h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, x, n[0], mid, 1, 1, 1, 1, 0, 0), n[1], eps, mom));
    h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, h, n[2], mid, k, 1, 1, (int)mid, FL_PAD_AUTO, 0), n[3], eps, mom));
    fl_id s = fl_global_avgpool(g, h);
    s = fl_silu(g, fl_conv2d_layer(g, s, n[4], se_ch, 1, 1, 1, 1, 0, 1));
    s = fl_sigmoid(g, fl_conv2d_layer(g, s, n[5], mid, 1, 1, 1, 1, 0, 1));
    h = fl_mul(g, h, s);
    h = fl_bn_layer(g, fl_conv2d_layer(g, h, n[6], cin, 1, 1, 1, 1, 0, 0), n[7], eps, mom);
    return fl_add(g, h, x);
}

/* ultralytics Conv: conv (autopad, no bias) + BN(1e-3, 0.03) + SiLU, names prefix.conv / .bn */
static inline fl_id blk_yconv(fl_graph *g, fl_id x, const char *prefix, int64_t co, int k, int s) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s.conv", prefix);
    snprintf(b, sizeof b, "%s.bn", prefix);
    return fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, x, a, co, k, s, 1, 1, FL_PAD_AUTO, 0), b, 1e-3, 0.03));
}

/* C3(c1, c2, n, shortcut): cv3(cat(m(cv1(x)), cv2(x))) with c_ = c2/2. */
static inline fl_id blk_c3(fl_graph *g, fl_id x, int64_t c2, int n, int shortcut) {
    int64_t c_ = c2 / 2;
    fl_id a = blk_yconv(g, x, "cv1", c_, 1, 1);
    for (int i = 0; i < n; i++) {
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "m.%d.cv1", i);
        snprintf(p2, sizeof p2, "m.%d.cv2", i);
        fl_id h = blk_yconv(g, blk_yconv(g, a, p1, c_, 1, 1), p2, c_, 3, 1);
        a = shortcut ? fl_add(g, a, h) : h;
    }
    fl_id b = blk_yconv(g, x, "cv2", c_, 1, 1);
    return blk_yconv(g, fl_concat(g, 2, (fl_id[]){a, b}, -1), "cv3", c2, 1, 1);
}

#endif
