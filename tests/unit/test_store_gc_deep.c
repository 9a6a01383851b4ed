/* gc on a crafted chain of trees nested far deeper than any real directory: it must finish (the
 * walk stops at the depth verify calls damage) instead of overflowing the stack (gc without the
 * limit, one fl_err per frame, died of SIGSEGV here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artifacts/store.h"
#include "tests/unit/store_fixture.h"

enum { CHAIN = 20000, LIMIT = 4096 }; /* LIMIT: FL_MAX_TREE_DEPTH (artifacts/store_internal.h) */

static int setup(void **state) { return store_fx_setup(state, "gcdeep"); }
static int teardown(void **state) { return store_fx_teardown(state); }

static char *shard(fx *f, const char *kind, const fl_digest *d) {
    char hex[FL_DIGEST_HEX];
    fl_digest_hex(d, hex);
    return fl_strdupf("%s/%s/%.2s/%s", f->root, kind, hex, hex + 2);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_gc_deep_tree_chain(void **state) {
    fx *f = *state;
    fl_err e = {0};
    fl_digest *chain = calloc(CHAIN, sizeof *chain);
    assert_non_null(chain);
    /* chain[i] holds chain[i-1]; the record's tree is the top, chain[CHAIN-1]: depth CHAIN-1-i. */
    fl_digest d;
    assert_int_equal(store_fx_tree_chain(f, CHAIN, chain, &d), 0);
    fl_hasher *hk = fl_hasher_new();
    fl_hasher_update(hk, "deep", 4);
    fl_digest key;
    fl_hasher_digest(hk, &key);
    fl_hasher_free(hk);
    assert_int_equal(fl_store_record_put(f->s, &key, &d, "{}", &e), 0);
    char khex[FL_DIGEST_HEX + 1];
    fl_digest_hex(&key, khex);
    strcat(khex, "\n");
    assert_int_equal(fl_store_ref_set(f->s, "runs/deep", khex, &e), 0);

    fl_gc_report r;
    assert_int_equal(fl_store_gc(f->s, 0, &r, &e), 0);
    assert_int_equal(r.records_kept, 1);
    assert_int_equal(fl_store_record_get(f->s, &key, NULL, NULL, &e), 1);
    /* Kept down to the first level verify calls damage (LIMIT + 1): those were walked. */
    const int depths[] = {0, 1, LIMIT / 2, LIMIT, LIMIT + 1};
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        char *p = shard(f, "trees", &chain[CHAIN - 1 - depths[i]]);
        if (!exists(p)) fail_msg("tree at depth %d removed by gc", depths[i]);
        free(p);
    }
    /* Below that the walk stopped: unreachable, so swept (the record is damage for verify). */
    char *p = shard(f, "trees", &chain[CHAIN - 1 - (LIMIT + 2)]);
    if (exists(p)) fail_msg("gc walked past depth %d", LIMIT + 1);
    free(p);
    free(chain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gc_deep_tree_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
