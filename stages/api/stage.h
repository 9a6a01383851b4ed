/* The stage API: how a stage declares itself and what it sees when it runs.
 *
 * A registry (stages/registry.c for the pipeline, tests/teststages/ for the executor tests) has a
 * plan function that, given the effective config, adds nodes: one per stage instance, each with
 * its declared config sections, inputs, outputs and resources. The executor (dag/) computes each
 * node's cache key from exactly those declarations, runs missing nodes in a child process with a
 * fl_stage_ctx, and commits the outputs. */
#ifndef FLUKE_STAGE_H
#define FLUKE_STAGE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "artifacts/util.h"

/* ---------------------------------------------------------------- config schema */

typedef enum fl_cfg_type {
    FL_CFG_INT,    /* JSON number with an integral value */
    FL_CFG_NUM,    /* any JSON number */
    FL_CFG_STR,
    FL_CFG_BOOL,
    FL_CFG_OBJ,    /* object whose keys are themselves described by the schema */
    FL_CFG_MAP,    /* object with free keys: children are described as "path.*" */
    FL_CFG_ARR,    /* array of anything; "path[]" describes elements when given */
    FL_CFG_ANY,
} fl_cfg_type;

/* One config key. path is dotted from the root ("synth.n_train"); "*" matches any key of a
 * FL_CFG_MAP, "[]" any element of an array. Every key present in a config must be described;
 * required keys must be present after `extends` is resolved.
 *
 * min/max: for FL_CFG_INT and FL_CFG_NUM, the inclusive range the loader enforces (rc 2, with
 * file:line and the range), so a stage may cast an FL_CFG_INT value to int without checking.
 * Give every numeric field its real range; both 0 means "not given", and then an integer must
 * fit in an int and a number be finite. Ints are exact only up to FL_CFG_INT_MAX (2^53 - 1). */
typedef struct fl_cfg_field {
    const char *path;
    fl_cfg_type type;
    int required;
    const char *help;
    double min, max;
} fl_cfg_field;

#define FL_CFG_INT_MAX 9007199254740991.0 /* 2^53 - 1: the largest exact integer in a double */

/* ---------------------------------------------------------------- stage definition */

typedef struct fl_stage_ctx fl_stage_ctx;

typedef struct fl_stage_def {
    const char *name;    /* "embed_train" */
    const char *code_id; /* FL_CODE_ID from the generated "codeid/<file>.h" */
    const char *summary; /* one line for `fluke dag` and --help */
    /* Runs in a fresh process of its own (the binary re-executed, budgets in its environment);
     * writes outputs under fl_stage_out_dir(). 0 ok, -1 with e set. */
    int (*run)(fl_stage_ctx *ctx, fl_err *e);
} fl_stage_def;

/* ---------------------------------------------------------------- plan building */

typedef struct fl_plan fl_plan;
typedef struct fl_plan_node fl_plan_node;

/* Adds a node; instance < 0 means a single-instance stage ("synth"), else "name[instance]". */
fl_plan_node *fl_plan_add(fl_plan *p, const fl_stage_def *def, int instance, fl_err *e);
/* Adds a node with its own id (e.g. "retrain[1][0]") and the instance the stage sees. */
fl_plan_node *fl_plan_add_instance(fl_plan *p, const fl_stage_def *def, const char *id, int instance,
                                   fl_err *e);
/* Adds a node with an explicit id (registries whose node names come from the config). */
fl_plan_node *fl_plan_add_as(fl_plan *p, const fl_stage_def *def, const char *id, fl_err *e);
/* Declares a config section (dotted path) the node reads; its canonical JSON enters the key. */
int fl_plan_node_section(fl_plan_node *n, const char *section, fl_err *e);
/* Declares an input: the outputs of another node ("synth", "embed_train[3]"). */
int fl_plan_node_input(fl_plan_node *n, const char *name, const char *from_node, fl_err *e);
/* Declares an external input (file or directory), resolved against the config's directory. */
int fl_plan_node_input_path(fl_plan_node *n, const char *name, const char *path, fl_err *e);
/* Declares an output path (relative) that must exist in the out dir after run. */
int fl_plan_node_output(fl_plan_node *n, const char *relpath, fl_err *e);
/* An output copied to out/<config name>/ after a successful run (submission.csv, metrics.json). */
int fl_plan_node_publish(fl_plan_node *n, const char *relpath, fl_err *e);
/* Resources: CPU threads the stage uses and GPUs it needs (0..FL_MAX_GPUS). Default 1, 0. The
 * stage runs with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set to its thread budget (at most the
 * config's resources.threads) and CUDA_VISIBLE_DEVICES listing exactly its GPUs; a stage that
 * needs more GPUs than the config's resources.gpus fails before anything runs. */
#define FL_MAX_GPUS 1024
void fl_plan_node_resources(fl_plan_node *n, int threads, int gpus);

/* An extra CLI command a registry adds (`fluke submit`, `fluke synth --preview`). It gets the
 * arguments after its name and the config path the user gave (or the default). Returns the
 * process exit code; e is set when it is non-zero. */
typedef struct fl_command {
    const char *name;
    const char *usage;
    const char *summary;
    int (*main)(int argc, char **argv, const char *config_path, fl_err *e);
    /* Alternative for commands that need the loaded config: the executor resolves CONFIG (the
     * first argument ending in .json, else the default), validates it, and passes the effective
     * config and its output directory, with the remaining arguments. */
    int (*main_config)(int argc, char **argv, const cJSON *config, const char *out_dir, fl_err *e);
} fl_command;

/* What `fluke run` knows before it starts anything (not for --dry-run): the registry's preflight
 * may refuse a run that cannot sensibly go on this machine (training that asks for a GPU on a
 * machine without one) with a message that says why and what to do. */
typedef struct fl_preflight {
    const cJSON *config;      /* the effective config */
    const char *config_file;
    const fl_plan *plan;
    const unsigned char *sel; /* plan.n flags: the stages this run selects */
    int force_cpu;            /* --cpu (or resources.force_cpu): train on the CPU anyway */
    /* will[i] = 1 for the selected stages the run would really run (not cached here or in the
     * remote cache, or --force-d). On demand: it hashes the external inputs. */
    int (*would_run)(const struct fl_preflight *pf, unsigned char *will, fl_err *e);
    void *ctx;                /* the executor's, for would_run */
} fl_preflight;

/* What a registry provides. */
typedef struct fl_registry {
    const char *program;          /* name used in messages */
    const char *default_config;   /* file name looked up in configs/ when none is given, or NULL */
    const fl_cfg_field *const *schemas; /* NULL-terminated list of NULL-path terminated arrays */
    int (*plan)(const cJSON *config, const char *config_dir, fl_plan *p, fl_err *e);
    const fl_command *const *commands; /* NULL-terminated, or NULL */
    int (*preflight)(const fl_preflight *pf, fl_err *e); /* or NULL */
} fl_registry;

/* ---------------------------------------------------------------- what a running stage sees */

const char *fl_stage_name(const fl_stage_ctx *c);   /* "embed_train[3]" */
int fl_stage_instance(const fl_stage_ctx *c);       /* -1 for single-instance stages */
const char *fl_stage_out_dir(const fl_stage_ctx *c);/* staging directory: write outputs here */
const char *fl_stage_work_dir(const fl_stage_ctx *c);/* survives crashes: checkpoints go here */
int fl_stage_threads(const fl_stage_ctx *c);
/* The stage's first GPU as CUDA numbers it inside the stage (0: CUDA_VISIBLE_DEVICES lists only
 * the stage's GPUs), or -1 without one; fl_stage_gpus: how many it has (devices 0..n-1). */
int fl_stage_gpu(const fl_stage_ctx *c);
int fl_stage_gpus(const fl_stage_ctx *c);
/* Path of a declared input (directory of another node's outputs, or the external path).
 * An undeclared name is an error. */
const char *fl_stage_input(fl_stage_ctx *c, const char *name, fl_err *e);
/* 1 when the node declared an input of this name: for stages whose inputs are optional. */
int fl_stage_has_input(const fl_stage_ctx *c, const char *name);

/* Config access, by dotted path. Reading outside the declared sections is a programming error:
 * it fails with a message naming the stage and key, so no undeclared key can cause a false
 * cache hit. get returns NULL (e set) if absent or undeclared. */
const cJSON *fl_stage_cfg(fl_stage_ctx *c, const char *path, fl_err *e);
int fl_stage_cfg_int(fl_stage_ctx *c, const char *path, long *out, fl_err *e);
/* j as indented JSON plus a newline, written atomically to path (metrics.json, cv.json, ...);
 * who names the writer in the out-of-memory message. */
int fl_json_write_file(const char *path, const cJSON *j, const char *who, fl_err *e);
int fl_stage_cfg_num(fl_stage_ctx *c, const char *path, double *out, fl_err *e);
int fl_stage_cfg_str(fl_stage_ctx *c, const char *path, const char **out, fl_err *e);
int fl_stage_cfg_bool(fl_stage_ctx *c, const char *path, int *out, fl_err *e);

/* Progress: plain lines in logs, one line per call, with rate and ETA computed from the
 * stage's start. step/total in the unit named (e.g. "img", "step"). */
void fl_stage_log(fl_stage_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_stage_progress(fl_stage_ctx *c, uint64_t step, uint64_t total, const char *unit,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
