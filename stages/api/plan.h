/* The executor's view of a plan: what fl_plan_add and fl_node_* built. Used by dag/ and by
 * the implementation of the stage context; stages themselves only need stage.h. */
#ifndef FLUKE_PLAN_H
#define FLUKE_PLAN_H

#include "stages/api/stage.h"

typedef struct fl_plan_input {
    char *name;
    char *from_node; /* another node's id, or NULL */
    char *path;      /* external path (absolute after resolution), or NULL */
} fl_plan_input;

typedef struct fl_strv {
    char **v;
    size_t n;
} fl_strv;

struct fl_plan_node {
    const fl_stage_def *def;
    char *id;
    int instance;
    fl_strv sections;
    fl_plan_input *inputs;
    size_t ninputs;
    fl_strv outputs;
    fl_strv publish;
    int threads, gpus;
    size_t index; /* position in the plan */
};

struct fl_plan {
    fl_plan_node **nodes;
    size_t n;
    const char *config_dir; /* external paths are resolved against it */
};

void fl_plan_init(fl_plan *p, const char *config_dir);
void fl_plan_free(fl_plan *p);
fl_plan_node *fl_plan_find(const fl_plan *p, const char *id);

int fl_strv_push(fl_strv *v, const char *s);
void fl_strv_free(fl_strv *v);

/* The context handed to a running stage (built by the executor in the child process). */
struct fl_stage_ctx {
    const fl_plan_node *node;
    const cJSON *config;      /* the effective config */
    const char *out_dir;
    const char *work_dir;
    const char **input_paths; /* parallel to node->inputs */
    int threads;
    int gpu;                  /* first visible GPU (0) or -1 */
    int ngpus;                /* GPUs the stage was given (CUDA_VISIBLE_DEVICES lists them) */
    double t_start, t_last_progress;
    int out_fd;               /* log lines go here (one write per line) */
};

/* 1 when path lies inside one of the node's declared sections. */
int fl_plan_node_reads(const fl_plan_node *n, const char *path);

#endif
