/* The executor's resource pools: jobs, CPU threads and GPUs. GPU slot g is the g-th entry of the
 * inherited CUDA_VISIBLE_DEVICES (ids or UUIDs), or device g when it is unset; a stage gets a
 * sub-list of them as its own CUDA_VISIBLE_DEVICES. */
#ifndef FLUKE_POOLS_H
#define FLUKE_POOLS_H

#include "dag/session.h"

/* resources.threads above this is a config error, not a pool to allocate. */
#define FL_MAX_THREADS 65536

typedef struct fl_pools {
    int jobs, running;
    int threads_total, threads_used;
    int ngpus;
    char **gpu_names;        /* CUDA_VISIBLE_DEVICES entry of each pool slot */
    unsigned char *gpu_busy;
} fl_pools;

/* Builds the pools from resources.threads / resources.gpus (range-checked: an error names the
 * config and the allowed range) and checks that every selected stage's GPU need fits, so a stage
 * that needs more GPUs than the config has fails before anything runs. Free with fl_pools_free
 * even on error. */
int fl_pools_make(fl_session *s, const unsigned char *sel, fl_pools *pl, fl_err *e);
void fl_pools_free(fl_pools *pl);
/* "3,5": the pool entries of slots idx[0..n-1] (malloc'd; "" for none), NULL when out of memory. */
char *fl_pools_gpu_list(const fl_pools *pl, const int *idx, int n);

#endif
