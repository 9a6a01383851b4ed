/* A session: the loaded config, the plan its registry builds, the dependency graph, and the
 * store — everything `run`, `status`, `explain`, `dag`, `verify` and `gc` share. */
#ifndef FLUKE_SESSION_H
#define FLUKE_SESSION_H

#include "artifacts/store.h"
#include "dag/config.h"
#include "stages/api/plan.h"

typedef struct fl_session {
    const fl_registry *reg;
    fl_config cfg;
    fl_plan plan;
    size_t *order;     /* topological order of plan nodes */
    size_t **deps;     /* deps[i]: indices of nodes node i reads from (-1 terminated size_t) */
    size_t *ndeps;
    char *store_path;
    char *out_dir;
    fl_store *store;   /* opened on demand by fl_session_store */
    fl_store_opts store_opts;
    cJSON *prev;       /* node id -> the record JSON of this config's latest run (may be NULL) */
    cJSON *external;   /* external path -> digest hex, hashed once per session */
    /* The remote cache (dag/remote_hook.c): command-line overrides, the handle once opened. */
    const char *remote_url_cli; /* --remote-cache URL */
    int remote_readonly_cli;    /* --remote-readonly */
    int remote_opened;          /* fl_remote_hook_open ran (remote may still be NULL: none) */
    struct fl_remote *remote;
    int remote_hits, remote_pushes;
} fl_session;

/* Loads the config, builds and checks the plan (unknown inputs, cycles). Does not open the
 * store. */
int fl_session_open(fl_session *s, const fl_registry *reg, const char *config_path, fl_err *e);
int fl_session_store(fl_session *s, fl_err *e);
void fl_session_close(fl_session *s);

/* Selects node ids by id or stage name ("embed_train" selects every instance). Returns the
 * number of matches written into mark (a 0/1 array of plan size). */
size_t fl_session_select(const fl_session *s, const char *what, unsigned char *mark);
/* Marks every ancestor of the marked nodes too. */
void fl_session_close_upstream(const fl_session *s, unsigned char *mark);

/* The previous (latest run) record of a node for this config, or NULL. Loads lazily. */
const cJSON *fl_session_prev(fl_session *s, const char *node_id);
/* Records the keys of this run's finished nodes (have[i] != 0) as the config's latest run,
 * refs/runs/<name> (merged with the earlier run's nodes that were not part of this one). */
int fl_session_save_run(fl_session *s, const fl_digest *keys, const unsigned char *have,
                        fl_err *e);

/* Notes, before node_id starts with key, that its work dir belongs to this config: refs/work/<name>
 * keeps one "key node" line per node (its latest started key), so gc keeps the checkpoints of a
 * run that crashed, was killed or failed, and drops those of keys the config moved away from. */
int fl_session_note_started(fl_session *s, const char *node_id, const fl_digest *key, fl_err *e);

#endif
