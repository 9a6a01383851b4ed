/* Cache keys: XXH3-128 over a typed, length-prefixed encoding of everything a stage's output
 * may depend on: schema version, stage name and instance, the canonical JSON of exactly the
 * declared config sections, each input's content digest, the stage's code identity and its
 * declared outputs. */
#ifndef FLUKE_KEY_H
#define FLUKE_KEY_H

#include "artifacts/store.h"
#include "stages/api/plan.h"

#define FL_KEY_SCHEMA "fluke-key-v1"

/* in: one digest per node input (parallel to n->inputs). desc (optional) receives the JSON
 * description stored in the record and used by explain: node, stage, code, config, inputs. */
int fl_key_compute(const fl_plan_node *n, const cJSON *config, const fl_digest *in, fl_digest *key,
                   cJSON **desc, fl_err *e);

#endif
