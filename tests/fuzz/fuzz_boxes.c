/* Fuzz target for the box parser (stages/labels/boxes.c): one `bbox` value, and whole box files
 * in both public formats.
 *
 *   libFuzzer:  `make fuzz` (every target for FUZZ_TIME s) or `make fuzz-libfuzzer` (build only).
 *   plain:      built with cc in every test run: a main() that runs each file named on the
 *               command line through the target (tests/integration/fuzz_corpus.sh replays
 *               tests/fuzz/corpus/fuzz_boxes/).
 *
 * The first byte picks (even: fl_bbox_parse on the rest as a string; odd: fl_boxes_read on the
 * rest as a file). Beyond "does not crash": every accepted box is finite with x2 > x1 and
 * y2 > y1, no boxes means no array, a refusal leaves nothing allocated and has a message (for
 * a file, naming it). A violated promise aborts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_main.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_boxes: broken invariant: %s\n", what);
        abort();
    }
}

static void check_boxes(const float *xyxy, int nbox) {
    fz_check(nbox >= 0 && (nbox == 0) == (xyxy == NULL), "no boxes exactly when no array");
    for (int b = 0; b < nbox; b++) {
        const float *v = xyxy + 4 * b;
        fz_check(isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]) && isfinite(v[3]),
                 "coordinates are finite");
        fz_check(v[2] > v[0] && v[3] > v[1], "a box has x2 > x1 and y2 > y1");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1) {
        const char *path = fz_write("boxes.csv", data + 1, size - 1);
        fl_box_set b;
        fl_err e = {{0}};
        if (fl_boxes_read(path, NULL, &b, &e) != 0) {
            fz_check(strstr(e.msg, "boxes.csv") != NULL, "a rejected box file is named");
            fz_check(b.n == 0 && b.entry == NULL, "a rejected box file leaves nothing");
            return 0;
        }
        fz_check(b.n == b.csv.nrows, "one entry per row");
        for (int i = 0; i < b.n; i++) {
            fz_check(b.entry[i].image && b.entry[i].image[0], "an entry names its image");
            check_boxes(b.entry[i].xyxy, b.entry[i].nbox);
        }
        fl_boxes_free(&b);
        return 0;
    }
    /* A NUL-terminated private copy: reading past the terminator is caught. */
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    float *xyxy = (float *)1; /* the parser must set it either way */
    int nbox = -1;
    fl_err e = {{0}};
    if (fl_bbox_parse(s, &xyxy, &nbox, &e) != 0) {
        fz_check(e.msg[0] != '\0', "a rejected bbox has a message");
        fz_check(xyxy == NULL && nbox == 0, "a rejected bbox leaves nothing");
    } else {
        check_boxes(xyxy, nbox);
        free(xyxy);
    }
    free(s);
    return 0;
}
