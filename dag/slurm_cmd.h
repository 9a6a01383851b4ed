/* The Slurm client commands as the executor uses them: running one (argv, captured output, a
 * time limit), recognizing a busy controller's transient errors and retrying them with
 * exponential backoff, and reading what sbatch, squeue and sacct print. No state between calls;
 * dag/exec_slurm.c decides what to call when. */
#ifndef FLUKE_SLURM_CMD_H
#define FLUKE_SLURM_CMD_H

#include <signal.h>
#include <stddef.h>

#include "artifacts/util.h"

typedef struct fl_slurm_out {
    int status;    /* exit code; 128+N when killed by signal N; -1 when it did not run */
    int timed_out; /* killed after the time limit */
    char *out, *err;
} fl_slurm_out;

void fl_slurm_out_free(fl_slurm_out *o);

/* Runs argv (argv[0] looked up in PATH) with stdin from /dev/null, collecting stdout and stderr
 * (each capped at 4 MiB), killed after limit_s. 0 when it ran (whatever its exit code), -1 with
 * e set when it could not start (not installed: the message says so). */
int fl_slurm_run(char *const argv[], double limit_s, fl_slurm_out *o, fl_err *e);

/* Whether a failed command's stderr says the controller was busy or unreachable ("Socket timed
 * out", "Unable to contact slurm controller", "slurm_load_jobs error" other than an invalid job
 * id), or the command hung past its limit: worth another try. */
int fl_slurm_transient(const fl_slurm_out *o);

typedef struct fl_slurm_retry {
    int tries;                        /* >= 1 */
    double first_s;                   /* the first backoff; each next one doubles (capped 60 s) */
    double limit_s;                   /* per attempt */
    volatile sig_atomic_t *stop;      /* set by a signal handler: stop retrying (may be NULL) */
    int *retried;                     /* incremented per retry (may be NULL) */
} fl_slurm_retry;

/* fl_slurm_run, tried again after a transient failure. Returns 0 when the command ran and the
 * last try was not transient (o holds it: the caller reads its status), -1 with e set when it
 * could not run or every try failed transiently (the message quotes the last stderr). */
int fl_slurm_run_retry(char *const argv[], const fl_slurm_retry *r, fl_slurm_out *o, fl_err *e);

/* ------------------------------------------------------------------ job states */

typedef enum fl_sj {
    FL_SJ_UNKNOWN = 0, /* not (or no longer) known to the command asked */
    FL_SJ_LIVE,        /* PENDING, RUNNING, CONFIGURING, COMPLETING, SUSPENDED, REQUEUED, ... */
    FL_SJ_COMPLETED,
    FL_SJ_FAILED,
    FL_SJ_CANCELLED,
    FL_SJ_TIMEOUT,
    FL_SJ_NODE_FAIL,
    FL_SJ_PREEMPTED,
    FL_SJ_OOM,         /* OUT_OF_MEMORY */
    FL_SJ_BOOT_FAIL,
    FL_SJ_DEADLINE,
    FL_SJ_OTHER_FINAL  /* a terminal state this code does not know by name: a failure */
} fl_sj;

/* The state a word names: long (squeue %T, sacct State: "CANCELLED by 1000" reads CANCELLED)
 * or the short codes squeue %t prints (PD, R, CD, F, CA, TO, NF, PR, OOM, BF, DL, ...). */
fl_sj fl_slurm_state(const char *word);
/* "COMPLETED", "NODE_FAIL", ... for messages. */
const char *fl_slurm_state_name(fl_sj s);
static inline int fl_slurm_final(fl_sj s) { return s != FL_SJ_UNKNOWN && s != FL_SJ_LIVE; }

typedef struct fl_slurm_row {
    char id[64];    /* "123", or "123_4" for an array task */
    fl_sj state;
    int exit_code;  /* sacct ExitCode "2:0" -> 2, signal 0; -1 when not given */
    int exit_signal;
} fl_slurm_row;

typedef struct fl_slurm_rows {
    fl_slurm_row *v;
    size_t n, cap;
} fl_slurm_rows;

void fl_slurm_rows_free(fl_slurm_rows *r);
const fl_slurm_row *fl_slurm_rows_find(const fl_slurm_rows *r, const char *id);

/* `sbatch --parsable` prints "ID" or "ID;CLUSTER": the id into buf. -1 with e when the output is
 * not that (quoted). */
int fl_slurm_parse_sbatch(const char *text, char *buf, size_t len, fl_err *e);
/* `squeue -h -r -o "%i|%T"`: one "ID|STATE" per line; blank lines are skipped, anything else
 * malformed is an error quoting the line. Rows are appended. */
int fl_slurm_parse_squeue(const char *text, fl_slurm_rows *rows, fl_err *e);
/* `sacct -P -n -o JobID,State,ExitCode`: job lines ("123", "123_4") become rows; step lines
 * ("123.batch", "123.0", "123.extern") only sharpen their job's state: a step that ran out of
 * memory makes a FAILED job OUT_OF_MEMORY (older Slurm reports OOM on the step only). Pending
 * array ranges ("123_[0-4]") are skipped. Rows are appended. */
int fl_slurm_parse_sacct(const char *text, fl_slurm_rows *rows, fl_err *e);
/* squeue's answer when none of the ids asked for is in the queue any more. */
int fl_slurm_invalid_job_id(const fl_slurm_out *o);

#endif
