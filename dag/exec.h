/* The executor: runs a session's plan, skipping every stage whose cached result is valid, and
 * reports what is cached or stale and why. */
#ifndef FLUKE_EXEC_H
#define FLUKE_EXEC_H

#include "dag/session.h"

typedef struct fl_run_opts {
    int jobs;            /* stages running at once (-j); 0: not given (local 1, slurm max_jobs) */
    const char *until;   /* run only this stage (id or stage name) and its upstream */
    const char **force;  /* rerun these (ids or stage names) even when cached */
    size_t nforce;
    int dry_run;
    const char *executor; /* "local" | "slurm" (--executor), NULL: executor.kind or local */
    int force_cpu;        /* --cpu: the registry's preflight lets GPU configs train on the CPU */
} fl_run_opts;

/* What kind of error fl_exec_run reports (maps to the exit codes in cli.h). */
enum { FL_RUN_ERR_STAGE = 0, FL_RUN_ERR_USAGE, FL_RUN_ERR_STORE };

/* What one plan node did in a run (the run report's source). */
enum { FL_NODE_NOT_RUN = 0, FL_NODE_CACHED, FL_NODE_RAN, FL_NODE_FAILED, FL_NODE_SKIPPED };
typedef struct fl_run_node {
    int state;          /* FL_NODE_* */
    int have_key;       /* its key was computed (its inputs were known) */
    fl_digest key;
    double seconds;     /* RAN / FAILED: wall time of its process; else 0 */
    char why[512];      /* RAN / FAILED: the reason it ran (explain), truncated */
    char error[512];    /* FAILED: the message, truncated */
} fl_run_node;

typedef struct fl_run_result {
    int ran, cached, failed, skipped;
    int error_kind; /* FL_RUN_ERR_*, of the error fl_exec_run returned */
    /* Optional: the caller's array of plan.n entries, filled by fl_exec_run (kept over its
     * reset of the counts); NULL: not wanted. */
    fl_run_node *nodes;
} fl_run_result;

/* 0 when every selected stage is done; -1 with e set otherwise (a failed stage, a store error,
 * an interrupt: *interrupted is set). */
int fl_exec_run(fl_session *s, const fl_run_opts *o, fl_run_result *res, int *interrupted,
                fl_err *e);
/* Prints one line per stage: cached / stale / missing with the reason, collapsed to the root
 * cause, and last where the next run would take its result from: [local hit], [remote hit] or
 * [would run] ([cannot run] for an error). explain != NULL: only that stage, with every reason.
 * Returns the number of stages that are not cached, or -1 on error. */
int fl_exec_status(fl_session *s, const char *explain, fl_err *e);
/* hit[i] = 1 when the next run takes node i's result from the store or the remote cache (as
 * `fluke status` would say: local or remote hit); nothing is run or printed. */
int fl_exec_cached_nodes(fl_session *s, unsigned char *hit, fl_err *e);

/* The "remote hit" hook of `fluke status`: a remote cache's read-only answer for a key that is
 * not cached locally. peek: 1 with *tree set when the remote holds a complete result (its
 * downstream keys are then computed from that tree, so they may be hits too), 0 when it does not,
 * -1 when it cannot tell (unreachable: the stage shows as would run). It must not download. */
typedef struct fl_status_remote {
    int (*peek)(void *ctx, const fl_digest *key, fl_digest *tree);
    void *ctx;
} fl_status_remote;
/* fl_exec_status asking remote (NULL: no remote cache) about what is not cached locally. */
int fl_exec_status_remote(fl_session *s, const char *explain, const fl_status_remote *remote,
                          fl_err *e);
/* Digests of node i's inputs: upstream outputs from outs[] (indexed by node), external paths
 * through the store's stat cache (logging file counts unless quiet). */
int fl_exec_input_digests(fl_session *s, size_t i, const fl_digest *outs, fl_digest *in,
                          int quiet, fl_err *e);
/* The checks publishing makes before writing into out/<name>/ (not inside the store, not a
 * symbolic link), creating it: for other writers there (the run report). */
int fl_exec_out_dir_ready(fl_session *s, fl_err *e);
/* One line on stdout with one write(2), so lines of concurrent writers never interleave. */
void fl_exec_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* `fluke dag`: the plan as text, or Graphviz dot. */
void fl_exec_print_dag(const fl_session *s, int dot);

#endif
