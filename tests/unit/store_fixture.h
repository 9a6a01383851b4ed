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

/* A chain of n trees nested one in the next, written straight into trees/ (plain writes: 20,000
 * fsyncs would take half a minute): tree i holds one directory entry "x" pointing at tree i-1,
 * and the bottom points at a tree that does not exist. chain (optional) receives the n digests;
 * top the outermost. Returns 0, or -1 when a write fails. */
static inline int store_fx_tree_chain(fx *f, int n, fl_digest *chain, fl_digest *top) {
    fl_hasher *h0 = fl_hasher_new();
    fl_hasher_update(h0, "leaf", 4);
    fl_digest d;
    fl_hasher_digest(h0, &d);
    fl_hasher_free(h0);
    for (int i = 0; i < n; i++) {
        char buf[128], hex[FL_DIGEST_HEX];
        fl_digest_hex(&d, hex);
        size_t len = (size_t)snprintf(buf, sizeof buf, "fluke-tree 1\nd %s x", hex) + 1; /* with NUL */
        fl_hasher *h = fl_hasher_new();
        fl_hasher_update(h, "tree", 5);
        fl_hasher_update(h, buf, len);
        fl_hasher_digest(h, &d);
        fl_hasher_free(h);
        if (chain) chain[i] = d;
        fl_digest_hex(&d, hex);
        char *dir = fl_strdupf("%s/trees/%.2s", f->root, hex);
        char *p = fl_strdupf("%s/%s", dir, hex + 2);
        fl_err e = {0};
        FILE *fp = dir && p && fl_mkdirs(dir, &e) == 0 ? fopen(p, "wb") : NULL;
        int ok = fp && fwrite(buf, 1, len, fp) == len;
        if (fp && fclose(fp) != 0) ok = 0;
        free(dir);
        free(p);
        if (!ok) return -1;
    }
    *top = d;
    return 0;
}

#endif
