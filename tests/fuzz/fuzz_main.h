/* The replay entry point shared by the fuzz targets: built with plain cc (no -DFL_FUZZ_LIBFUZZER),
 * a target is a program that runs every file named on its command line through
 * LLVMFuzzerTestOneInput, which is how tests/integration/fuzz_corpus.sh replays the corpus. */
#ifndef FLUKE_FUZZ_MAIN_H
#define FLUKE_FUZZ_MAIN_H

#if !defined(FL_FUZZ_LIBFUZZER) && !defined(FL_FUZZ_NO_MAIN)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "artifacts/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        fl_err e = {{0}};
        size_t len = 0;
        char *buf = fl_read_file(argv[i], &len, &e);
        if (!buf) {
            fprintf(stderr, "%s: %s\n", argv[0], e.msg);
            return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        free(buf);
    }
    return 0;
}
#endif

#endif
