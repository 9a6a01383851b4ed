/* Shared by the report's parts (report.c and its sections report_*.c); not a public API. */
#ifndef FLUKE_REPORT_INT_H
#define FLUKE_REPORT_INT_H

#include <cjson/cJSON.h>

#include "dag/report_html.h"
#include "dag/session.h"

enum {
    RS_RAN,     /* ran in the latest run */
    RS_CACHED,  /* reused from the cache */
    RS_FAILED,  /* failed in the latest run */
    RS_SKIPPED, /* not started: an upstream stage failed */
    RS_STALE,   /* would rerun now (config, input or code changed) */
    RS_MISSING, /* never run for this config */
    RS_PENDING, /* waits for a stale stage upstream */
    RS_DAMAGED, /* its record or outputs are damaged */
    RS_ERROR,   /* its key cannot be computed (an input is missing) */
    RS_NSTATES
};

typedef struct fl_rnode {
    const fl_plan_node *n;
    int state;
    double seconds; /* wall time of its computation (record or failed try); NaN: unknown */
    int have_key, have_out;
    char key[33], out[33];
    char *why;      /* why it ran, would run, or failed */
    char *dir;      /* checkout of its outputs when cached, else NULL */
    int depth, row; /* DAG layout */
} fl_rnode;

typedef struct fl_rctx {
    fl_session *s;
    fl_rnode *nodes; /* parallel to s->plan.nodes */
    size_t n;
    const cJSON *run; /* the latest run's summary (report/<name>), or NULL */
    int checkout;     /* make missing checkouts of cached stages (fl_report_write) */
} fl_rctx;

const char *fl_rstate_name(int st);
/* 1 when node declares rel among its outputs. */
int fl_rnode_declares(const fl_rnode *r, const char *rel);
/* The JSON artifact rel of node r, parsed; NULL with why filled (stage failed, not run, file
 * missing, malformed). */
cJSON *fl_rnode_json(const fl_rnode *r, const char *rel, char *why, size_t whylen);
/* malloc'd "<dir>/<rel>" when the node is cached and the file exists, else NULL. */
char *fl_rnode_file(const fl_rnode *r, const char *rel);
/* A box saying what is missing instead of a chart: "<id>: <why>". */
void fl_report_missing(fl_html *h, const char *what, const char *why);
/* A number of a JSON object (NaN when absent or not a number: cJSON writes NaN as null). */
double fl_rjson_num(const cJSON *o, const char *key);

void fl_report_dag(fl_html *h, const fl_rctx *r);
void fl_report_curves(fl_html *h, const fl_rctx *r);
void fl_report_ident(fl_html *h, const fl_rctx *r);
void fl_report_sheet(fl_html *h, const fl_rctx *r);

#endif
