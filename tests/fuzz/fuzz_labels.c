/* Fuzz target for the competition's CSV readers (stages/labels): train.csv, submissions (also
 * sample_submission.csv), the solution, the CSV parser itself, and MAP@5 on what they accept.
 *
 *   libFuzzer:  `make fuzz` (every target for FUZZ_TIME s) or `make fuzz-libfuzzer` (build only).
 *   plain:      built with cc in every test run: a main() that runs each file named on the
 *               command line through the target (tests/integration/fuzz_corpus.sh replays
 *               tests/fuzz/corpus/fuzz_labels/).
 *
 * The first byte picks the reader (mod 5): 0 train.csv, 1 submission, 2 solution, 3 the CSV
 * parser on the buffer, 4 solution and submission split at the first NUL byte, then scored.
 * Beyond "does not crash": a rejection names the file, and what is accepted keeps the readers'
 * promises (every field a string, lines inside the file, species already fixed, scores within
 * [0, 1]). A violated promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_main.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_labels: broken invariant: %s\n", what);
        abort();
    }
}

static int max_line; /* the last line an input can have */

static void check_rejected(const fl_err *e, const char *name) {
    fz_check(strstr(e->msg, name) != NULL, "a rejected file is named in the message");
}

static void check_line(int line) {
    fz_check(line >= 1 && line <= max_line, "a reported line is inside the file");
}

static void check_str(const char *s) {
    fz_check(s != NULL, "a field is a string");
    (void)strlen(s); /* ASan: the string is terminated inside its buffer */
}

static void fuzz_train(const uint8_t *d, size_t n) {
    const char *path = fz_write("train.csv", d, n);
    fl_train_set t;
    fl_err e = {{0}};
    if (fl_train_read(path, NULL, &t, &e) != 0) return check_rejected(&e, "train.csv");
    fz_check(t.n == t.csv.nrows, "one train entry per row");
    for (int i = 0; i < t.n; i++) {
        check_str(t.image[i]), check_str(t.species[i]), check_str(t.individual[i]);
        check_line(t.line[i]);
        int rule;
        fz_check(!strcmp(fl_species_fix(t.species[i], &rule), t.species[i]) && rule < 0,
                 "train species are already fixed");
    }
    fl_train_free(&t);
}

static void check_submission(const fl_submission *s) {
    for (int i = 0; i < s->n; i++) {
        check_str(s->image[i]);
        check_line(s->line[i]);
        fz_check(s->npred[i] >= 0, "a prediction count is not negative");
        for (int k = 0; k < s->npred[i] && k < FL_MAP_K; k++) check_str(s->pred[i][k]);
    }
}

static void fuzz_submission(const uint8_t *d, size_t n) {
    const char *path = fz_write("submission.csv", d, n);
    fl_submission s;
    fl_err e = {{0}};
    if (fl_submission_read(path, &s, &e) != 0) return check_rejected(&e, "submission.csv");
    check_submission(&s);
    /* Validate against its own image list, every label it uses known. */
    fl_strmap known;
    fl_err ve = {{0}};
    if (fl_strmap_init(&known, (size_t)s.n * FL_MAP_K + 1, &ve) == 0) {
        for (int i = 0; i < s.n; i++)
            for (int k = 0; k < s.npred[i] && k < FL_MAP_K; k++)
                fz_check(fl_strmap_put(&known, s.pred[i][k], 1) != -2, "the map grows");
        if (fl_submission_validate(&s, s.image, s.n, &known, &ve) != 0)
            fz_check(ve.msg[0] != '\0', "an invalid submission has a message");
        fl_strmap_free(&known);
    }
    fl_submission_free(&s);
}

static void check_solution(const fl_solution *s) {
    for (int i = 0; i < s->n; i++) {
        check_str(s->image[i]), check_str(s->individual[i]);
        if (s->species[i]) check_str(s->species[i]);
        fz_check(s->is_public[i] == 0 || s->is_public[i] == 1, "Usage is Public or Private");
        check_line(s->line[i]);
    }
}

static void fuzz_solution(const uint8_t *d, size_t n) {
    const char *path = fz_write("solution.csv", d, n);
    fl_solution s;
    fl_err e = {{0}};
    if (fl_solution_read(path, &s, &e) != 0) return check_rejected(&e, "solution.csv");
    check_solution(&s);
    fl_solution_free(&s);
}

static void fuzz_csv(const uint8_t *d, size_t n) {
    /* A private copy of exactly the bytes, so reading one past the end is caught. */
    char *buf = malloc(n ? n : 1);
    if (!buf) return;
    memcpy(buf, d, n);
    fl_csv c;
    fl_err e = {{0}};
    if (fl_csv_parse(buf, n, "fuzz.csv", &c, &e) != 0) {
        check_rejected(&e, "fuzz.csv");
    } else {
        fz_check(c.nrows >= 0 && c.header == c.rows[0].f && c.ncols == c.rows[0].nf,
                 "the header is row 0");
        for (int r = 0; r <= c.nrows; r++) {
            check_line(c.rows[r].line);
            fz_check(r == 0 || c.rows[r].line > c.rows[r - 1].line, "rows are in line order");
            fz_check(c.rows[r].nf >= 1, "a row has a field");
            for (int k = 0; k < c.rows[r].nf; k++) check_str(c.rows[r].f[k]);
        }
        for (int k = 0; k < c.ncols; k++) fz_check(fl_csv_col(&c, c.header[k]) == k, "columns are found");
        fl_csv_free(&c);
    }
    free(buf);
}

static void fuzz_score(const uint8_t *d, size_t n) {
    const uint8_t *nul = memchr(d, 0, n);
    size_t a = nul ? (size_t)(nul - d) : n;
    const char *sp = fz_write("solution.csv", d, a);
    const char *bp = fz_write("submission.csv", nul ? nul + 1 : d + n, nul ? n - a - 1 : 0);
    fl_solution sol;
    fl_submission sub;
    fl_err e = {{0}};
    if (fl_solution_read(sp, &sol, &e) != 0) return check_rejected(&e, "solution.csv");
    if (fl_submission_read(bp, &sub, &e) != 0) {
        fl_solution_free(&sol);
        return check_rejected(&e, "submission.csv");
    }
    fl_map5_result r;
    fl_err se = {{0}};
    if (fl_map5_score(&sol, &sub, &r, &se) == 0) {
        const double v[] = {r.all, r.pub, r.priv, r.known, r.fresh};
        for (int k = 0; k < 5; k++) fz_check(v[k] >= 0 && v[k] <= 1, "MAP@5 is within [0, 1]");
        fz_check(r.n_all == sol.n && r.n_pub + r.n_priv == r.n_all, "every image is counted once");
        for (int k = 0; k < r.n_species; k++)
            fz_check(r.species[k].n >= 1 && r.species[k].sum >= 0 &&
                         r.species[k].sum <= r.species[k].n + 1e-9,
                     "a species' score is within its count");
        fl_map5_result_free(&r);
    } else {
        fz_check(se.msg[0] != '\0', "a refused score has a message");
    }
    fl_submission_free(&sub);
    fl_solution_free(&sol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    max_line = 1;
    for (size_t i = 0; i < n; i++) max_line += d[i] == '\n' || d[i] == '\r';
    switch (data[0] % 5) {
    case 0: fuzz_train(d, n); break;
    case 1: fuzz_submission(d, n); break;
    case 2: fuzz_solution(d, n); break;
    case 3: fuzz_csv(d, n); break;
    default: fuzz_score(d, n); break;
    }
    return 0;
}
