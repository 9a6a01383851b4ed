/* The YOLOv5 loss's pieces shared by the host entry (fl_yolo_loss) and the graph op
 * (runtime/ops/yolo_loss_op.c). */
#ifndef FLUKE_MODELS_YOLO_LOSS_INTERNAL_H
#define FLUKE_MODELS_YOLO_LOSS_INTERNAL_H

#include "runtime/models/yolo.h"

/* Target k's checks (image in [0, nimg), class in [0, nc), finite positive box) with
 * fl_yolo_loss's messages. */
int fl_yolo_check_target(const fl_yolo_cfg *c, int64_t nimg, const fl_yolo_target *q, size_t k, fl_err *e);
/* Scratch the assignment needs for nt targets (one level at a time). */
size_t fl_yolo_match_bytes(size_t nt);
/* The loss on per-level heads pv[i] (gradients into gv[i], each may be NULL), targets already
 * checked. tobj_ws (the largest level's cells floats) and match_ws (fl_yolo_match_bytes) are
 * scratch, or NULL to allocate. */
int fl_yolo_loss_levels(const fl_yolo_cfg *c, const fl_yolo_hyp *hyp, const fl_yolo_heads *h,
                        const float *const *pv, const fl_yolo_target *t, size_t nt, float *const *gv,
                        float *tobj_ws, void *match_ws, fl_yolo_loss_out *out, fl_err *e);

#endif
