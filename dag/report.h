/* The run report: out/<config name>/report.html, one self-contained file (inline SVG and CSS,
 * images as data: URIs, no script, nothing linked outside out/<name>/) with the DAG of the run,
 * the training curves, the identification figures and a look at the data. It is built from the
 * store (records and output artifacts of the config's stages), so it is no cached stage and a
 * no-op rerun reruns nothing; `fluke report` rebuilds it for any run still in the store. */
#ifndef FLUKE_REPORT_H
#define FLUKE_REPORT_H

#include "dag/exec.h"

/* Keeps what a run did per node (nodes: plan.n entries from fl_exec_run; NULL when the run
 * stopped before any node) as the store ref report/<name>, for the reports built later. run_rc:
 * the run's exit code; error: its message or NULL. */
int fl_report_note_run(fl_session *s, const fl_run_node *nodes, double t_start, double t_end,
                       int run_rc, const char *error, fl_err *e);
/* Writes out/<name>/report.html (atomically, through the same out/ checks as publishing);
 * *path (may be NULL) gets its malloc'd path. Missing or bad artifacts show in the report.
 * checkout: materialize the missing checkouts of cached stages to read their artifacts (`fluke
 * report`); 0 after a run, which leaves the store as the run left it. */
int fl_report_write(fl_session *s, int checkout, char **path, fl_err *e);

#endif
