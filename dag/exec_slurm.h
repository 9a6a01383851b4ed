/* The Slurm executor: each runnable stage becomes one `sbatch --parsable` job (or, with
 * executor.slurm.array, one task of a job array holding the instances of a stage that became
 * ready together) running `fluke __slurm_job PREFIX`, which starts the stage through the same
 * fl_runner_spawn / `__stage` entry point the local executor uses and writes PREFIX.exit.
 *
 * The job only writes into the stage's staging and work directories in the store (a shared
 * filesystem); the `fluke run` process that submitted it keeps the key lock, and commits (hash,
 * ingest, record last) once the job is known to have succeeded, so the commit protocol is the
 * local one. Stages are submitted as they become runnable, not all at once with
 * --dependency=afterok: a stage's key depends on its inputs' content digests, known only once
 * they ran (and an input that reran with identical bytes leaves it cached).
 *
 * Status: at most one batched `squeue --jobs=A,B,... -h -r -o %i|%T` per poll interval (never
 * faster than executor.slurm.min_poll_s), then one batched `sacct` for the jobs squeue no longer
 * lists, then the exit files. A job is a success only when Slurm says COMPLETED (or no longer
 * knows it) and its exit file says the stage exited 0; NODE_FAIL, PREEMPTED, CANCELLED, TIMEOUT,
 * OUT_OF_MEMORY, ... are failures even when the stage wrote its exit file (outputs written on a
 * node that failed may not have reached the filesystem). */
#ifndef FLUKE_EXEC_SLURM_H
#define FLUKE_EXEC_SLURM_H

#include <signal.h>
#include <stddef.h>

#include "artifacts/store.h"
#include "dag/runner.h"

typedef struct fl_slurm fl_slurm;

/* Reads executor.slurm.* from config (file names it in messages), makes the run directory
 * <store>/tmp/<pid>-slurm-<run id>-XXXXXX (job scripts, specs, exit files, logs). stop: the
 * run's interrupt flag (waits and retries end early when it is set). */
int fl_slurm_open(fl_slurm **out, const cJSON *config, const char *file, const char *config_name,
                  fl_store *store, volatile sig_atomic_t *stop, fl_err *e);
/* Removes the run directory (logs of failed stages were moved into their work dirs). */
void fl_slurm_close(fl_slurm *x);
const char *fl_slurm_run_id(const fl_slurm *x);

typedef struct fl_slurm_stage {
    size_t node;              /* the caller's index for the stage, reported back by fl_slurm_next */
    const char *stage_name;   /* the stage definition: instances of one may share a job array */
    const fl_stage_spec *spec;/* threads -> --cpus-per-task, ngpus -> --gres=gpu:N */
} fl_slurm_stage;

/* Writes the stage's spec and queues it; fl_slurm_flush submits. */
int fl_slurm_submit(fl_slurm *x, const fl_slurm_stage *st, fl_err *e);
/* Submits everything queued (arrays grouped). A submission that fails becomes a failure event
 * of its stages (fl_slurm_next), not an error of the run. */
void fl_slurm_flush(fl_slurm *x);
/* Polls when the interval has passed; block: sleep until then first (the stop flag ends the
 * sleep). */
void fl_slurm_wait(fl_slurm *x, int block);
/* The next finished stage: 1 with *node and msg ("" when it succeeded, else why it failed,
 * naming the job and its log), 0 when none. */
int fl_slurm_next(fl_slurm *x, size_t *node, char *msg, size_t len);
/* Jobs submitted (or queued) and not finished. */
size_t fl_slurm_live(const fl_slurm *x);
/* One `scancel` of every live job, then waits (bounded) for them to leave the queue. */
void fl_slurm_cancel(fl_slurm *x);

/* The hidden `__slurm_job PREFIX` command the batch script runs on the compute node. */
int fl_slurm_job_main(int argc, char **argv, const fl_registry *reg);

#endif
