/* Publishing a stage's output to out/<config name>/: the copy is re-hashed against the digest
 * its record's tree names, so a byte flipped in the store after the commit (disk, a stray write
 * through a hard link) is refused instead of published with exit 0. */
#ifndef FLUKE_PUBLISH_H
#define FLUKE_PUBLISH_H

#include "artifacts/store.h"

typedef struct fl_publish_item {
    const char *node_id;
    const fl_digest *key;  /* the stage's record key */
    const fl_digest *tree; /* its output tree */
    const char *checkout;  /* the tree's checkout */
    const char *rel;       /* the published path inside the tree */
    const char *dst;       /* where it goes */
} fl_publish_item;

/* Copies checkout/rel to dst when its content hashes to the tree's entry. On a mismatch nothing
 * is published, the damage is repaired as far as it is known (a corrupt object is quarantined
 * and the record dropped, so the next run recomputes the stage; a damaged checkout is removed)
 * and -1 is returned with *kind FL_RUN_ERR_STAGE; a store error gives FL_RUN_ERR_STORE. */
int fl_publish_file(fl_store *s, const fl_publish_item *it, int *kind, fl_err *e);

#endif
