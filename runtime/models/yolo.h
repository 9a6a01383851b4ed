/* YOLOv5 (v6.0 and later, SPECS.md section 5): the yolov5s.yaml network at any depth / width
 * multiple and class count with ultralytics parameter names ("model.0.conv.weight",
 * "model.2.m.0.cv1.bn.running_mean", "model.24.m.0.weight"), box decoding, the training loss of
 * utils/loss.py ComputeLoss with its gradient w.r.t. the raw head outputs, batched class-aware
 * NMS with torchvision's keep rule, and ultralytics val.py's metrics (P, R, mAP@0.5, mAP@0.5:0.95).
 *
 * Layout: the network is NHWC. Head level i is [N, ny, nx, na*(nc+5)] with channel a*(nc+5)+k,
 * which is ultralytics' p[i][b, a, y, x, k] (its view(bs, na, no, ny, nx).permute(0,1,3,4,2)).
 *
 * Training: build the network, then fl_yolo_flat_heads for one graph target holding the three
 * levels back to back; after forward, fl_yolo_loss reads the heads, returns the loss and writes
 * dLoss/dhead into a buffer of the same layout, which seeds fl_graph_backward. */
#ifndef FLUKE_MODELS_YOLO_H
#define FLUKE_MODELS_YOLO_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/graph.h"

#define FL_YOLO_NL 3 /* detection levels P3, P4, P5 */
#define FL_YOLO_NA 3 /* anchors per level */

typedef struct fl_yolo_cfg {
    double depth, width; /* multiples (n 0.33/0.25 ... x 1.33/1.25) */
    int nc;              /* classes */
    float anchors[FL_YOLO_NL][FL_YOLO_NA][2]; /* pixels (w, h) */
    int strides[FL_YOLO_NL];
} fl_yolo_cfg;

/* A config with the default anchors and strides; -1 with a message on a bad multiple or nc < 1. */
int fl_yolo_cfg_make(fl_yolo_cfg *c, double depth, double width, int nc, fl_err *e);
/* The named sizes 'n' 's' 'm' 'l' 'x'. */
int fl_yolo_cfg_size(fl_yolo_cfg *c, char size, int nc, fl_err *e);
/* yaml repeat n -> max(round(n*depth), 1) when n > 1; channels c -> ceil(c*width/8)*8. */
int fl_yolo_depth(const fl_yolo_cfg *c, int n);
int64_t fl_yolo_width(const fl_yolo_cfg *c, int64_t ch);

typedef struct fl_yolo_heads {
    fl_id p[FL_YOLO_NL];              /* raw head outputs [N, ny, nx, na*(nc+5)] */
    int64_t n, ny[FL_YOLO_NL], nx[FL_YOLO_NL];
    int no;                           /* nc + 5 */
} fl_yolo_heads;

/* Builds the network on x [N, H, W, 3] (H, W multiples of 32). Parameters that are new in the
 * store get ultralytics' init (PyTorch defaults, then Detect's bias prior: obj += log(8/(640/s)^2),
 * cls += log(0.6/(nc - 0.99999))); existing ones are reused untouched (a second graph, or loaded
 * weights). The store also gets the buffer model.24.anchors [3, 3, 2] (anchors / stride, as in
 * every ultralytics state dict, so strict loading finds it); the loss and decoding read the
 * anchors from the config. Returns -1 with the graph's first error. */
int fl_yolo_build(fl_graph *g, fl_pstore *s, fl_id x, const fl_yolo_cfg *c, fl_yolo_heads *out,
                  fl_err *e);
/* One node holding the three levels flattened and back to back (level 0 first, each in its NHWC
 * order): the compile target of a training graph, and the layout of fl_yolo_loss's gradient. */
fl_id fl_yolo_flat_heads(fl_graph *g, const fl_yolo_heads *h);
/* Elements of level i and of all levels (the flat node's size). */
size_t fl_yolo_level_numel(const fl_yolo_heads *h, int i);
size_t fl_yolo_total_numel(const fl_yolo_heads *h);
/* Trainable parameter count (buffers excluded), as sum(p.numel() for p in model.parameters()). */
int64_t fl_yolo_param_count(fl_pstore *s, fl_err *e);

/* ---- loss (ultralytics utils/loss.py ComputeLoss, hyp.scratch-low) ------------------------- */

typedef struct fl_yolo_target {
    int img, cls;
    float x, y, w, h; /* centre and size, normalized to the image (0..1) */
} fl_yolo_target;

typedef struct fl_yolo_hyp {
    double box, cls, obj;  /* base gains 0.05, 0.5, 1.0 (scaled by 3/nl, nc/80, (imgsz/640)^2) */
    double anchor_t;       /* 4.0 */
    double label_smoothing; /* 0.0 */
    int imgsz;             /* the training image size for the obj gain */
} fl_yolo_hyp;

fl_yolo_hyp fl_yolo_hyp_default(int imgsz);

typedef struct fl_yolo_loss_out {
    double loss;                /* (lbox + lobj + lcls) * bs */
    double lbox, lobj, lcls;    /* gained components (ultralytics' loss_items) */
    int64_t matches[FL_YOLO_NL];  /* anchor-cell assignments per level */
} fl_yolo_loss_out;

/* Loss of the flat heads (fl_yolo_flat_heads layout, h gives the shapes) against nt targets.
 * grad (may be NULL) receives dLoss/dhead in the same layout. Targets with an image index
 * outside [0, N), a class outside [0, nc) or a non-finite / non-positive size are errors. */
int fl_yolo_loss(const fl_yolo_cfg *c, const fl_yolo_hyp *hyp, const fl_yolo_heads *h,
                 const float *heads, const fl_yolo_target *t, size_t nt, float *grad,
                 fl_yolo_loss_out *out, fl_err *e);

/* The loss as a graph op (runtime/ops/yolo_loss_op.c), the whole YOLOv5 step inside the graph:
 * targets is an input [T, 6] of rows (img, cls, x, y, w, h) (fl_yolo_targets_input), filled by
 * fl_yolo_pack_targets; rows whose img is -1 are padding and must all come after the real ones.
 * The op reads the three raw head levels directly and returns [4] = (loss, lbox, lobj, lcls)
 * (float32 of fl_yolo_loss's doubles); *loss (if not NULL) gets a scalar [1] view of element 0,
 * the compile target. Backward is exact for all four outputs (the components own disjoint head
 * channels: 0..3 box, 4 obj, 5.. cls). Targets are validated before the step
 * (fl_graph_validate / fl_graph_set_input) with fl_yolo_loss's messages. F32 graphs only. */
fl_id fl_yolo_targets_input(fl_graph *g, const char *name, int64_t max_targets);
fl_id fl_yolo_loss_node(fl_graph *g, const fl_yolo_cfg *c, const fl_yolo_hyp *hyp,
                        const fl_yolo_heads *h, fl_id targets, fl_id *loss);
/* Writes nt targets and cap - nt padding rows into dst [cap, 6]; -1 when nt > cap. */
int fl_yolo_pack_targets(const fl_yolo_target *t, size_t nt, float *dst, int64_t cap, fl_err *e);

/* ---- inference ------------------------------------------------------------------------------ */

typedef struct fl_yolo_det {
    float x1, y1, x2, y2; /* pixels of the network input */
    float score;          /* obj * cls */
    int cls;
} fl_yolo_det;

/* Decodes image b of the flat heads: for every anchor cell, xy = (2 sigmoid(t_xy) - 0.5 + grid)
 * * stride, wh = (2 sigmoid(t_wh))^2 * anchor, obj and class probabilities. out_xywh gets
 * [cells, 4] and out_prob [cells, 1 + nc] (obj, then the class sigmoids), cells = sum over levels of
 * na*ny*nx in (level, anchor, y, x) order (ultralytics' inference output z). */
size_t fl_yolo_num_cells(const fl_yolo_heads *h);
void fl_yolo_decode(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads, int64_t b,
                    float *out_xywh, float *out_prob);

/* torchvision.ops.nms: boxes [n, 4] x1y1x2y2, keeps the indices (into keep, highest score first)
 * of boxes not overlapping a kept higher-scored one by IoU > iou; scores sorted descending,
 * stable (ties keep input order). Returns the count, -1 on bad input. */
int fl_nms(const float *boxes, const float *scores, int n, float iou, int *keep, fl_err *e);
/* torchvision.ops.batched_nms: the same within each idxs value (the coordinate-offset trick:
 * boxes + idx * (max coordinate + 1)). */
int fl_nms_batched(const float *boxes, const float *scores, const int *idxs, int n, float iou,
                   int *keep, fl_err *e);

typedef struct fl_yolo_nms_cfg {
    float conf;   /* 0.25 detection, 0.001 validation */
    float iou;    /* 0.45 detection, 0.6 validation */
    int max_det;  /* 300 */
} fl_yolo_nms_cfg;

/* ultralytics non_max_suppression for image b (single label per box: the best class): keeps
 * cells with obj > conf and obj*cls > conf, class-aware NMS, at most max_det. *dets is malloc'd
 * (the caller frees it); returns the count or -1. */
int fl_yolo_detect(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads, int64_t b,
                   const fl_yolo_nms_cfg *nc, fl_yolo_det **dets, fl_err *e);

/* ---- evaluation (yolo_map.c): ultralytics val.py ------------------------------------------- */

typedef struct fl_yolo_gt {
    int img, cls;
    float x1, y1, x2, y2;
} fl_yolo_gt;

#define FL_YOLO_NIOU 10 /* IoU thresholds 0.50, 0.55, ..., 0.95 (torch.linspace(0.5, 0.95, 10)) */

typedef struct fl_yolo_eval_class {
    int nlabels, ndets;        /* ground truth and detections of the class */
    double p, r;               /* at the confidence of the best smoothed mean F1 */
    double ap50, ap;           /* AP@0.5, AP@0.5:0.95 (0 without detections) */
} fl_yolo_eval_class;

typedef struct fl_yolo_eval_out {
    double precision, recall;  /* means over the classes with labels */
    double map50, map;         /* mAP@0.5, mAP@0.5:0.95 */
    double map_at[FL_YOLO_NIOU]; /* mAP at each threshold */
    double conf;               /* the confidence where P and R were read (px of the argmax) */
    int nclasses;              /* classes with labels: the means' denominator */
    size_t ndets, nlabels;
} fl_yolo_eval_out;

/* What ultralytics val.py reports (P, R, mAP@0.5, mAP@0.5:0.95), computed its way:
 * - process_batch per image and threshold: candidate (label, detection) pairs with the same class
 *   and IoU >= thr (float32 box_iou with eps 1e-7); each detection keeps its highest-IoU label
 *   (ties: the later label), then each label keeps the first detection (input order, which for
 *   NMS output is the confidence order) among those that chose it. A detection whose best label
 *   went to an earlier detection is a false positive even if another label was free: this is
 *   ultralytics' rule, not a greedy optimum.
 * - ap_per_class: detections sorted by confidence (descending, stable), per class with labels
 *   cumulative TP/FP, recall = tp / (n_labels + 1e-16), precision = tp / (tp + fp); AP per
 *   threshold = np.trapz of np.interp on 101 points of the precision envelope (sentinels
 *   (0, 1) and (1, 0)); the P and R curves np.interp'ed on 1000 confidences; P and R taken at
 *   the argmax of the mean-over-classes F1 smoothed by a box filter of 101 points (fraction 0.1).
 * - means over the classes that have labels (a class with labels and no detections counts 0;
 *   detections of a class without labels count nowhere); everything 0 when no detection is a
 *   true positive at any threshold (val.py's `stats[0].any()`).
 * dets_per_img[i] holds ndets[i] detections of image i (NULL allowed when 0); gt boxes in the
 * same pixels. per_class (may be NULL) gets nc entries. Errors: bad counts, a class or image
 * out of range, a NaN score or coordinate. */
int fl_yolo_eval(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                 const fl_yolo_gt *gt, size_t ngt, int nc, fl_yolo_eval_out *out,
                 fl_yolo_eval_class *per_class, fl_err *e);

/* mAP at one IoU threshold, with fl_yolo_eval's matching and AP (iou_thr = 0.5 gives
 * fl_yolo_eval's map50). -1 on error. */
double fl_yolo_map(const fl_yolo_det *const *dets_per_img, const int *ndets, int nimg,
                   const fl_yolo_gt *gt, size_t ngt, int nc, double iou_thr, fl_err *e);

#endif
