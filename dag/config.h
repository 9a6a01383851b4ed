/* Configs: JSON files that may `extends` another and override its keys, validated strictly
 * against the registry's schema. Every error names the file, the line and the key path.
 *
 * Rules: a key may appear once per object in one file (keys compare after decoding escapes); a
 * file that `extends` another overrides it key by key (objects merge, anything else replaces).
 * Numbers must lie in their field's range; strings may not hold NUL; files must be regular
 * files of at most FL_CONFIG_MAX_BYTES; nesting is limited to FL_CONFIG_MAX_DEPTH. */
#ifndef FLUKE_CONFIG_H
#define FLUKE_CONFIG_H

#include <cjson/cJSON.h>

#include "artifacts/util.h"
#include "dag/config_parse.h"
#include "stages/api/stage.h"

typedef struct fl_config {
    cJSON *root;  /* the effective config (extends resolved, "extends" removed) */
    char *file;   /* absolute path of the top config file */
    char *dir;    /* its directory: relative paths in the config resolve against it */
    char *name;   /* "name" key, or the file's base name without .json */
    char **files; /* every file read (top first), owned */
    size_t nfiles;
    fl_cfg_origins index;    /* key path -> the file:line that set it last (owns origins) */
    fl_cfg_origin *origins;  /* every key path once, with that file:line (= index.v) */
    size_t norigins;
    size_t work; /* steps spent loading (hash probes, characters, schema matches): the
                  * linear-time test checks it grows linearly with the config */
} fl_config;

/* The keys every config may have, whatever the registry. */
extern const fl_cfg_field fl_config_builtin_schema[];

/* schemas: a NULL-terminated list of field arrays (the registry's), checked after the builtin. */
int fl_config_load(fl_config *c, const char *path, const fl_cfg_field *const *schemas, fl_err *e);
void fl_config_free(fl_config *c);
/* "file:line" of a key (the last file that set it), or the top file's name if unknown. */
const char *fl_config_where(const fl_config *c, const char *keypath, char *buf, size_t len);
/* A dotted path ("a.b.c") through nested objects; NULL if absent. */
const cJSON *fl_config_get(const cJSON *root, const char *path);
/* Canonical JSON: keys sorted recursively, no whitespace (malloc'd). NULL item -> "null". */
char *fl_config_canonical(const cJSON *item);

#endif
