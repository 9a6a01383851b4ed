/* The cmocka fixture the store tests share: a fresh store under a temporary directory, removed
 * afterwards. Header-only (static) so each test binary takes just what it uses. */
#ifndef FL_TEST_STORE_FIXTURE_H
#define FL_TEST_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/store.h"

typedef struct fx {
    char dir[64];
    char *root;
    fl_store *s;
    char lines[16][256]; /* verify's reported lines */
    int nlines;
} fx;

/* tag names the temporary directory (/tmp/fluke-<tag>-XXXXXX). */
static inline int store_fx_setup(void **state, const char *tag) {
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/fluke-%s-XXXXXX", tag);
    if (!mkdtemp(f->dir)) return -1;
    f->root = fl_strdupf("%s/store", f->dir);
    fl_err e = {0};
    f->s = fl_store_open(f->root, NULL, &e);
    if (!f->s) return -1;
    *state = f;
    return 0;
}

static inline int store_fx_teardown(void **state) {
    fx *f = *state;
    fl_store_close(f->s);
    fl_err e;
    fl_remove_tree(f->dir, &e);
    free(f->root);
    free(f);
    return 0;
}

#endif
