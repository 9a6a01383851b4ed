/* fluke: the command-line entry point. Only main exits. */
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "fluke: the executor is not built yet\n");
    return 1;
}
