/* The fluke command line, shared by the real binary (the pipeline registry) and the executor
 * test binary (test-only stages). Only main() exits; this returns the exit code.
 *
 * Exit codes: 0 success; 1 a stage failed, or verify found corruption; 2 usage or config error
 * (bad arguments, malformed JSON, unknown key, wrong type, cycle, unknown stage); 3 the store
 * cannot be opened, locked or written; 130 interrupted. */
#ifndef FLUKE_CLI_H
#define FLUKE_CLI_H

#include "stages/api/stage.h"

enum { FL_EXIT_OK = 0, FL_EXIT_FAILED = 1, FL_EXIT_USAGE = 2, FL_EXIT_STORE = 3, FL_EXIT_INTR = 130 };

int fl_cli_main(int argc, char **argv, const fl_registry *reg);

#endif
