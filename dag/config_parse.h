/* The config loader's own JSON reader (internal to dag/config.c).
 *
 * cJSON keeps no line numbers, truncates strings at \u0000, compares keys after decoding only
 * by accident and gives "malformed" for everything, so configs are parsed here: strict JSON
 * (RFC 8259) into a cJSON tree, in one linear pass that records the line of every key path,
 * rejects duplicate keys (compared decoded), NULs, and nesting deeper than a fixed limit, and
 * reports every error as file:line:col. */
#ifndef FLUKE_CONFIG_PARSE_H
#define FLUKE_CONFIG_PARSE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "artifacts/util.h"

/* Objects and arrays nested deeper than this are refused (no real config comes close). */
#define FL_CONFIG_MAX_DEPTH 64
/* Config files larger than this are refused before they are read. */
#define FL_CONFIG_MAX_BYTES (16u << 20)

/* Where each key path was set: the entries in the order first set, each path once, with a
 * hash index over them (open addressing) so that lookups are O(1). */
typedef struct fl_cfg_origin {
    char *path; /* concrete key path: "text.a.from[1]" */
    const char *file;
    int line;
} fl_cfg_origin;

typedef struct fl_cfg_origins {
    fl_cfg_origin *v;
    size_t n, vcap;
    size_t *slot;  /* index + 1 into v; 0 is an empty slot */
    size_t cap;    /* 0 or a power of two */
    size_t *work;  /* optional: probes are counted here (the linear-time test reads it) */
} fl_cfg_origins;

/* Sets (or overrides) path's origin; path is copied. 0, or -1 out of memory. */
int fl_cfg_origins_set(fl_cfg_origins *o, const char *path, const char *file, int line);
const fl_cfg_origin *fl_cfg_origins_get(const fl_cfg_origins *o, const char *path);
/* Copies every entry of from into to, overriding. */
int fl_cfg_origins_merge(fl_cfg_origins *to, const fl_cfg_origins *from);
void fl_cfg_origins_free(fl_cfg_origins *o);

/* Parses text[0..len) (the contents of file) into a new cJSON tree; records key paths in o.
 * work, if not NULL, counts the steps taken. NULL with e set ("file:line:col: ..."). */
cJSON *fl_config_parse(const char *text, size_t len, const char *file, fl_cfg_origins *o,
                       size_t *work, fl_err *e);

/* Hash of a string (FNV-1a), shared by the loader's tables. */
size_t fl_cfg_hash(const char *s);

#endif
