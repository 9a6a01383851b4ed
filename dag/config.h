/* Configs: JSON files that may `extends` another and override its keys, validated strictly
 * against the registry's schema. Every error names the file, the line and the key path. */
#ifndef FLUKE_CONFIG_H
#define FLUKE_CONFIG_H

#include <cjson/cJSON.h>

#include "artifacts/util.h"
#include "stages/api/stage.h"

typedef struct fl_cfg_origin {
    char *path; /* concrete key path: "text.a.from[1]" */
    const char *file;
    int line;
} fl_cfg_origin;

typedef struct fl_config {
    cJSON *root;  /* the effective config (extends resolved, "extends" removed) */
    char *file;   /* absolute path of the top config file */
    char *dir;    /* its directory: relative paths in the config resolve against it */
    char *name;   /* "name" key, or the file's base name without .json */
    char **files; /* every file read (top first), owned */
    size_t nfiles;
    fl_cfg_origin *origins;
    size_t norigins;
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
