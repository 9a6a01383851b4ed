/* Why a stage must run: typed reasons from comparing its current description (dag/key.h) with
 * the record of the config's latest run. */
#ifndef FLUKE_EXPLAIN_H
#define FLUKE_EXPLAIN_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef enum fl_why {
    FL_WHY_NEW,    /* never run for this config */
    FL_WHY_CONFIG, /* a config value changed: key, old -> new */
    FL_WHY_INPUT,  /* an input's content changed */
    FL_WHY_CODE,   /* the stage's code identity changed */
    FL_WHY_LOST,   /* same key as before, but the cached result is gone (verify, gc) */
    FL_WHY_FORCED, /* --force */
} fl_why;

typedef struct fl_reason {
    fl_why kind;
    char *key;   /* config key, or input name */
    char *old_v; /* config: old canonical value, or "(absent)"; input: old digest */
    char *new_v;
    char *from;  /* input: upstream node id, or the external path */
} fl_reason;

typedef struct fl_reasons {
    fl_reason *v;
    size_t n;
} fl_reasons;

/* prev: the previous record JSON (NULL if none); cur: the current description. */
void fl_explain_diff(const cJSON *prev, const cJSON *cur, fl_reasons *out);
void fl_reasons_free(fl_reasons *r);
/* One reason as a line: "config text.a.suffix: \"x\" -> \"y\"". malloc'd. */
char *fl_reason_text(const fl_reason *r);

#endif
