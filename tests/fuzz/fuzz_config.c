/* Fuzz target for the config loader (dag/config.c) and what `run` does with a config before it
 * runs anything (dag/session.c: the registry's plan, the dependency graph), with the pipeline's
 * real schema.
 *
 *   libFuzzer:  `make fuzz` (every target for FUZZ_TIME s) or `make fuzz-libfuzzer` (build only).
 *   plain:      built with cc in every test run: a main() that runs each file named on the
 *               command line through the target (tests/integration/fuzz_corpus.sh replays
 *               tests/fuzz/corpus/fuzz_config/).
 *
 * The input is written to fuzz.json in a scratch directory that also holds base.json (a valid
 * config), so `extends` chains are reachable. Beyond "does not crash": a rejection carries a
 * message, and an accepted config's effective JSON is canonical-stable and loads again, from a
 * file of its own, to the same effective config. A violated promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dag/config.h"
#include "dag/session.h"
#include "stages/registry.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_main.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_config: broken invariant: %s\n", what);
        abort();
    }
}

static const char base_json[] =
    "{\n  \"pipeline\": {\"source\": \"synth\", \"model\": \"baseline_knn\", \"threads\": 2},\n"
    "  \"synth\": {\"preset\": \"smoke\", \"seed\": 1},\n"
    "  \"baseline\": {\"knn\": {\"thumb\": 16}}\n}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fz_write("base.json", base_json, sizeof base_json - 1);
        ready = 1;
    }
    const char *path = fz_write("fuzz.json", data, size);
    fl_session s;
    fl_err e = {{0}};
    if (fl_session_open(&s, &fl_pipeline_registry, path, &e) != 0) {
        fz_check(e.msg[0] != '\0', "a rejected config has a message");
        fl_session_close(&s);
        return 0;
    }
    const fl_config *c = &s.cfg;
    char where[1200];
    for (size_t i = 0; i < c->norigins; i++)
        fz_check(fl_config_where(c, c->origins[i].path, where, sizeof where) != NULL &&
                     c->origins[i].line >= 1,
                 "every key has an origin line");
    char *canon = fl_config_canonical(c->root);
    fz_check(canon != NULL, "an accepted config has a canonical form");
    cJSON *again = cJSON_Parse(canon);
    fz_check(again != NULL, "the canonical form parses");
    char *canon2 = fl_config_canonical(again);
    fz_check(canon2 && !strcmp(canon, canon2), "the canonical form is stable");
    cJSON_Delete(again);
    free(canon2);
    /* The effective config, standing alone, is a config that means the same. */
    const char *path2 = fz_write("effective.json", canon, strlen(canon));
    fl_config c2;
    fl_err e2 = {{0}};
    if (fl_config_load(&c2, path2, fl_pipeline_registry.schemas, &e2) != 0) {
        fprintf(stderr, "fuzz_config: effective config %s rejected: %s\n", canon, e2.msg);
        fz_check(0, "an accepted config's effective JSON loads again");
    }
    char *canon3 = fl_config_canonical(c2.root);
    fz_check(canon3 && !strcmp(canon, canon3), "reloading the effective config changes nothing");
    free(canon3);
    fl_config_free(&c2);
    free(canon);
    fl_session_close(&s);
    return 0;
}
