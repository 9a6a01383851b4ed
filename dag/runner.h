/* One stage as a fresh process. The parent writes a spec (the effective config, the node id, its
 * directories, input paths and budgets) into an anonymous memory file and fork+execs its own
 * binary (/proc/self/exe) with the hidden `__stage` command, with OMP_NUM_THREADS,
 * OPENBLAS_NUM_THREADS, OMP_THREAD_LIMIT and CUDA_VISIBLE_DEVICES set in the new environment, so
 * the OpenMP, OpenBLAS and CUDA runtimes of the stage start clean under its budget (an OpenMP
 * runtime the parent already loaded ignores a setenv after fork, and CUDA cannot cross a fork).
 * The child rebuilds the node from the registry's plan and runs it. */
#ifndef FLUKE_RUNNER_H
#define FLUKE_RUNNER_H

#include <sys/types.h>

#include "stages/api/plan.h"

typedef struct fl_stage_spec {
    const char *program;      /* argv[0] of the child (messages, ps) */
    const cJSON *config;      /* the effective config the key was computed from */
    const char *config_dir;
    const char *node_id;
    const char *out_dir, *work_dir;
    const char **input_paths; /* parallel to the node's inputs */
    size_t ninputs;
    int threads;              /* >= 1 */
    const char *gpu_list;     /* CUDA_VISIBLE_DEVICES for the stage ("3,5"), "" for none */
    int ngpus;                /* entries in gpu_list */
} fl_stage_spec;

/* The spec as the child reads it (JSON, malloc'd): the Slurm executor writes it to a file the
 * job hands to fl_runner_spawn on the compute node. NULL with e set when out of memory. */
char *fl_runner_spec_text(const fl_stage_spec *sp, fl_err *e);

/* Starts the stage process. On success *pid is the child and *err_fd the read end of the pipe
 * the child writes its error message to (close-on-exec in the parent). */
int fl_runner_spawn(const fl_stage_spec *sp, pid_t *pid, int *err_fd, fl_err *e);

/* The hidden `__stage SPEC_FD ERR_FD [NODE]` command: reads the spec, runs the stage, writes a
 * failure's message to ERR_FD. Returns the process exit code (0 ok, 1 failed). */
int fl_runner_child_main(int argc, char **argv, const fl_registry *reg);

#endif
