/* fluke: the command-line entry point. Only main exits. */
#include "dag/cli.h"
#include "stages/registry.h"

int main(int argc, char **argv) { return fl_cli_main(argc, argv, &fl_pipeline_registry); }
