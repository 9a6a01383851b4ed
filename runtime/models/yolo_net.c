/* YOLOv5 network: yolov5s.yaml's layer list (SPECS.md section 5) scaled by depth / width, with
 * ultralytics module and parameter names, built from the graph's public layers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/models/yolo.h"

#define BN_EPS 1e-3
#define BN_MOM 0.03

static const float DEFAULT_ANCHORS[FL_YOLO_NL][FL_YOLO_NA][2] = {
    {{10, 13}, {16, 30}, {33, 23}},
    {{30, 61}, {62, 45}, {59, 119}},
    {{116, 90}, {156, 198}, {373, 326}},
};

int fl_yolo_cfg_make(fl_yolo_cfg *c, double depth, double width, int nc, fl_err *e) {
    if (!(depth > 0 && depth <= 16) || !(width > 0 && width <= 16))
        return fl_errf(e, "yolo: depth %g / width %g multiple out of (0, 16]", depth, width);
    if (nc < 1 || nc > 100000) return fl_errf(e, "yolo: class count %d out of [1, 100000]", nc);
    memset(c, 0, sizeof *c);
    c->depth = depth;
    c->width = width;
    c->nc = nc;
    memcpy(c->anchors, DEFAULT_ANCHORS, sizeof c->anchors);
    for (int i = 0; i < FL_YOLO_NL; i++) c->strides[i] = 8 << i;
    return 0;
}

int fl_yolo_cfg_size(fl_yolo_cfg *c, char size, int nc, fl_err *e) {
    static const struct { char k; double d, w; } T[] = {
        {'n', 0.33, 0.25}, {'s', 0.33, 0.50}, {'m', 0.67, 0.75}, {'l', 1.0, 1.0}, {'x', 1.33, 1.25}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (T[i].k == size) return fl_yolo_cfg_make(c, T[i].d, T[i].w, nc, e);
    return fl_errf(e, "yolo: unknown size '%c' (want n, s, m, l or x)", size);
}

/* parse_model: n = max(round(n * gd), 1) if n > 1 (Python's round: half to even, which
 * nearbyint does in the default rounding mode). */
int fl_yolo_depth(const fl_yolo_cfg *c, int n) {
    if (n <= 1) return n;
    int r = (int)nearbyint(n * c->depth);
    return r > 1 ? r : 1;
}

/* make_divisible(c * gw, 8) = ceil(c * gw / 8) * 8 */
int64_t fl_yolo_width(const fl_yolo_cfg *c, int64_t ch) {
    return (int64_t)ceil((double)ch * c->width / 8.0) * 8;
}

/* Conv: conv (autopad, no bias) + BN(1e-3, 0.03) + SiLU; names prefix.conv, prefix.bn. */
static fl_id yconv(fl_graph *g, fl_id x, const char *prefix, int64_t co, int k, int s, int pad) {
    char a[160], b[160];
    snprintf(a, sizeof a, "%s.conv", prefix);
    snprintf(b, sizeof b, "%s.bn", prefix);
    fl_id y = fl_conv2d_layer(g, x, a, co, k, s, 1, 1, pad, 0);
    return fl_bn_silu_layer(g, y, b, BN_EPS, BN_MOM);
}

/* C3(c1, c2, n, shortcut): cv3(cat(m(cv1(x)), cv2(x))), c_ = c2/2 (e = 0.5, int()). Bottleneck
 * (e = 1.0): cv1 1x1, cv2 3x3, add when shortcut (c_ == c_ always holds inside C3). */
static fl_id c3(fl_graph *g, fl_id x, const char *pre, int64_t c2, int n, int shortcut) {
    char p[160], q[160];
    int64_t c_ = c2 / 2;
    snprintf(p, sizeof p, "%s.cv1", pre);
    fl_id a = yconv(g, x, p, c_, 1, 1, FL_PAD_AUTO);
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s.m.%d.cv1", pre, i);
        snprintf(q, sizeof q, "%s.m.%d.cv2", pre, i);
        fl_id h = yconv(g, yconv(g, a, p, c_, 1, 1, FL_PAD_AUTO), q, c_, 3, 1, FL_PAD_AUTO);
        a = shortcut ? fl_add(g, a, h) : h;
    }
    snprintf(p, sizeof p, "%s.cv2", pre);
    fl_id b = yconv(g, x, p, c_, 1, 1, FL_PAD_AUTO);
    snprintf(p, sizeof p, "%s.cv3", pre);
    return yconv(g, fl_concat(g, 2, (fl_id[]){a, b}, -1), p, c2, 1, 1, FL_PAD_AUTO);
}

/* SPPF(c1, c2, 5): cv1 1x1 c1 -> c1/2, y1..y3 = chained maxpool(5, 1, 2), cv2 on the concat. */
static fl_id sppf(fl_graph *g, fl_id x, const char *pre, int64_t c1, int64_t c2) {
    char p[160];
    snprintf(p, sizeof p, "%s.cv1", pre);
    fl_id a = yconv(g, x, p, c1 / 2, 1, 1, FL_PAD_AUTO);
    fl_id y1 = fl_maxpool(g, a, 5, 1, 2);
    fl_id y2 = fl_maxpool(g, y1, 5, 1, 2);
    fl_id y3 = fl_maxpool(g, y2, 5, 1, 2);
    snprintf(p, sizeof p, "%s.cv2", pre);
    return yconv(g, fl_concat(g, 4, (fl_id[]){a, y1, y2, y3}, -1), p, c2, 1, 1, FL_PAD_AUTO);
}

static int64_t channels_of(fl_graph *g, fl_id x) {
    int64_t sh[FL_MAX_DIMS];
    int nd = fl_graph_shape(g, x, sh);
    return nd == 4 ? sh[3] : -1;
}

/* Detect's bias prior (ultralytics Model._initialize_biases), on freshly created biases. */
static int init_detect_biases(fl_pstore *s, const fl_yolo_cfg *c, fl_err *e) {
    int no = c->nc + 5;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        char name[64];
        snprintf(name, sizeof name, "model.24.m.%d.bias", i);
        size_t n = 0;
        float *b = fl_pstore_data(s, name, &n);
        if (!b || n != (size_t)(FL_YOLO_NA * no)) return fl_errf(e, "yolo: %s missing after build", name);
        double st = c->strides[i];
        double dobj = log(8.0 / ((640.0 / st) * (640.0 / st)));
        double dcls = log(0.6 / (c->nc - 0.99999));
        for (int a = 0; a < FL_YOLO_NA; a++) {
            b[a * no + 4] = (float)(b[a * no + 4] + dobj);
            for (int k = 5; k < no; k++) b[a * no + k] = (float)(b[a * no + k] + dcls);
        }
    }
    size_t n = 0;
    float *anc = fl_pstore_data(s, "model.24.anchors", &n);
    if (!anc || n != FL_YOLO_NL * FL_YOLO_NA * 2) return fl_errf(e, "yolo: model.24.anchors missing after build");
    for (int i = 0; i < FL_YOLO_NL; i++)
        for (int a = 0; a < FL_YOLO_NA; a++)
            for (int k = 0; k < 2; k++)
                anc[(i * FL_YOLO_NA + a) * 2 + k] = c->anchors[i][a][k] / (float)c->strides[i];
    return 0;
}

int fl_yolo_build(fl_graph *g, fl_pstore *s, fl_id x, const fl_yolo_cfg *c, fl_yolo_heads *out,
                  fl_err *e) {
    int64_t sh[FL_MAX_DIMS];
    if (fl_graph_shape(g, x, sh) != 4 || sh[3] != 3)
        return fl_errf(e, "yolo: input must be [N, H, W, 3]");
    if (sh[1] % 32 || sh[2] % 32)
        return fl_errf(e, "yolo: input %lldx%lld is not a multiple of the largest stride 32",
                       (long long)sh[1], (long long)sh[2]);
    if (fl_pstore_dtype(s) != FL_F32) return fl_errf(e, "yolo: the parameter store must be F32");
    int fresh = fl_pstore_data(s, "model.24.m.0.bias", NULL) == NULL;
    int no = c->nc + 5;
    fl_id L[25];
    /* backbone */
    L[0] = yconv(g, x, "model.0", fl_yolo_width(c, 64), 6, 2, 2);
    L[1] = yconv(g, L[0], "model.1", fl_yolo_width(c, 128), 3, 2, FL_PAD_AUTO);
    L[2] = c3(g, L[1], "model.2", fl_yolo_width(c, 128), fl_yolo_depth(c, 3), 1);
    L[3] = yconv(g, L[2], "model.3", fl_yolo_width(c, 256), 3, 2, FL_PAD_AUTO);
    L[4] = c3(g, L[3], "model.4", fl_yolo_width(c, 256), fl_yolo_depth(c, 6), 1);
    L[5] = yconv(g, L[4], "model.5", fl_yolo_width(c, 512), 3, 2, FL_PAD_AUTO);
    L[6] = c3(g, L[5], "model.6", fl_yolo_width(c, 512), fl_yolo_depth(c, 9), 1);
    L[7] = yconv(g, L[6], "model.7", fl_yolo_width(c, 1024), 3, 2, FL_PAD_AUTO);
    L[8] = c3(g, L[7], "model.8", fl_yolo_width(c, 1024), fl_yolo_depth(c, 3), 1);
    L[9] = sppf(g, L[8], "model.9", channels_of(g, L[8]), fl_yolo_width(c, 1024));
    /* head */
    L[10] = yconv(g, L[9], "model.10", fl_yolo_width(c, 512), 1, 1, FL_PAD_AUTO);
    L[11] = fl_upsample_nearest(g, L[10], 2);
    L[12] = fl_concat(g, 2, (fl_id[]){L[11], L[6]}, -1);
    L[13] = c3(g, L[12], "model.13", fl_yolo_width(c, 512), fl_yolo_depth(c, 3), 0);
    L[14] = yconv(g, L[13], "model.14", fl_yolo_width(c, 256), 1, 1, FL_PAD_AUTO);
    L[15] = fl_upsample_nearest(g, L[14], 2);
    L[16] = fl_concat(g, 2, (fl_id[]){L[15], L[4]}, -1);
    L[17] = c3(g, L[16], "model.17", fl_yolo_width(c, 256), fl_yolo_depth(c, 3), 0);
    L[18] = yconv(g, L[17], "model.18", fl_yolo_width(c, 256), 3, 2, FL_PAD_AUTO);
    L[19] = fl_concat(g, 2, (fl_id[]){L[18], L[14]}, -1);
    L[20] = c3(g, L[19], "model.20", fl_yolo_width(c, 512), fl_yolo_depth(c, 3), 0);
    L[21] = yconv(g, L[20], "model.21", fl_yolo_width(c, 512), 3, 2, FL_PAD_AUTO);
    L[22] = fl_concat(g, 2, (fl_id[]){L[21], L[10]}, -1);
    L[23] = c3(g, L[22], "model.23", fl_yolo_width(c, 1024), fl_yolo_depth(c, 3), 0);
    /* Detect: one 1x1 conv with bias per level */
    static const int from[FL_YOLO_NL] = {17, 20, 23};
    memset(out, 0, sizeof *out);
    out->n = sh[0];
    out->no = no;
    for (int i = 0; i < FL_YOLO_NL; i++) {
        char p[64];
        snprintf(p, sizeof p, "model.24.m.%d", i);
        out->p[i] = fl_conv2d_layer(g, L[from[i]], p, (int64_t)FL_YOLO_NA * no, 1, 1, 1, 1, 0, 1);
        int64_t hs[FL_MAX_DIMS];
        if (out->p[i] >= 0 && fl_graph_shape(g, out->p[i], hs) == 4) {
            out->ny[i] = hs[1];
            out->nx[i] = hs[2];
        }
    }
    /* Detect's anchors buffer (grid units, anchors / stride): in every ultralytics state dict */
    fl_id anc = fl_buffer(g, "model.24.anchors", 3, (int64_t[]){FL_YOLO_NL, FL_YOLO_NA, 2},
                          (fl_init){FL_INIT_ZEROS, 0, 0});
    if (anc < 0) return fl_errf(e, "yolo: building the network: %s", fl_graph_error(g));
    for (int i = 0; i < FL_YOLO_NL; i++)
        if (out->p[i] < 0) return fl_errf(e, "yolo: building the network: %s", fl_graph_error(g));
    if (fresh && init_detect_biases(s, c, e) < 0) return -1;
    return 0;
}

size_t fl_yolo_level_numel(const fl_yolo_heads *h, int i) {
    return (size_t)(h->n * h->ny[i] * h->nx[i] * FL_YOLO_NA * h->no);
}

size_t fl_yolo_total_numel(const fl_yolo_heads *h) {
    size_t t = 0;
    for (int i = 0; i < FL_YOLO_NL; i++) t += fl_yolo_level_numel(h, i);
    return t;
}

fl_id fl_yolo_flat_heads(fl_graph *g, const fl_yolo_heads *h) {
    fl_id f[FL_YOLO_NL];
    for (int i = 0; i < FL_YOLO_NL; i++)
        f[i] = fl_reshape(g, h->p[i], 1, (int64_t[]){(int64_t)fl_yolo_level_numel(h, i)});
    return fl_concat(g, FL_YOLO_NL, f, 0);
}

int64_t fl_yolo_param_count(fl_pstore *s, fl_err *e) {
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, e) < 0) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < pl.n; i++)
        if (!pl.v[i].is_buffer) n += (int64_t)pl.v[i].numel;
    return n;
}
