/* The pipeline's check before `fluke run` starts anything: a config that asks for a GPU
 * (resources.gpus >= 1) but would train on the CPU stops with the reason and an estimate of the
 * CPU time its training stages would take here, unless the user forces the CPU (--cpu or
 * resources.force_cpu). The estimate is measured, not guessed: one training step of each model at
 * a reduced input size is timed on this machine and scaled by the multiply-accumulates of the
 * configured size (fl_graph_macs), times images and epochs per training stage. */
#ifndef FLUKE_STAGES_PREFLIGHT_H
#define FLUKE_STAGES_PREFLIGHT_H

#include "stages/api/stage.h"

typedef struct fl_train_estimate {
    int detector_nodes, embed_nodes;  /* selected training stages of each kind */
    double det_s_per_img, emb_s_per_img; /* measured train-step seconds per image, full size */
    double det_images, emb_images;    /* image-epochs over all selected stages of the kind */
    double total_s;
    int threads;
} fl_train_estimate;

/* Measures and sums the selected training stages (detector_train, embed_train / retrain). */
int fl_train_estimate_run(const cJSON *config, const fl_plan *p, const unsigned char *sel,
                          fl_train_estimate *out, fl_err *e);
/* The registry's preflight (stages/api/stage.h). */
int fl_pipeline_preflight(const fl_preflight *pf, fl_err *e);

#endif
