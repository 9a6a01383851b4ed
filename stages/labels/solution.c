/* The hidden solution: image,individual_id,Usage (Public/Private) and optionally species. */
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"
#include "stages/labels/labels_internal.h"

int fl_solution_read(const char *path, fl_solution *s, fl_err *e) {
    memset(s, 0, sizeof *s);
    if (fl_csv_read(path, &s->csv, e) != 0) return -1;
    static const char *const cols[] = {"image", "individual_id", "Usage"};
    int idx[3];
    if (fl_csv_require(&s->csv, cols, 3, idx, e) != 0) goto fail;
    if (fl_labels_check_rows(&s->csv, "test images", e) != 0) goto fail;
    int sp = fl_csv_col(&s->csv, "species");
    int n = s->csv.nrows;
    s->n = n;
    s->image = calloc((size_t)n + 1, sizeof *s->image);
    s->individual = calloc((size_t)n + 1, sizeof *s->individual);
    s->species = calloc((size_t)n + 1, sizeof *s->species);
    s->is_public = calloc((size_t)n + 1, sizeof *s->is_public);
    s->line = calloc((size_t)n + 1, sizeof *s->line);
    if (!s->image || !s->individual || !s->species || !s->is_public || !s->line) {
        fl_errf(e, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const fl_csv_row *r = &s->csv.rows[i + 1];
        s->image[i] = r->f[idx[0]];
        s->individual[i] = r->f[idx[1]];
        s->line[i] = r->line;
        if (fl_labels_check_image_name(&s->csv, r->line, s->image[i], e) != 0) goto fail;
        if (fl_labels_check_label(&s->csv, r->line, "individual_id", s->individual[i], e) != 0)
            goto fail;
        const char *u = r->f[idx[2]];
        if (strcmp(u, "Public") == 0) s->is_public[i] = 1;
        else if (strcmp(u, "Private") == 0) s->is_public[i] = 0;
        else {
            fl_errf(e, "%s:%d: Usage \"%.*s%s\" is neither Public nor Private", path, r->line,
                    FL_Q(u));
            goto fail;
        }
        if (sp >= 0) s->species[i] = fl_species_fix(r->f[sp], NULL);
    }
    if (fl_labels_check_unique(&s->csv, s->image, s->line, n, "image", e) != 0) goto fail;
    return 0;
fail:
    fl_solution_free(s);
    return -1;
}

void fl_solution_free(fl_solution *s) {
    if (!s) return;
    free(s->image);
    free(s->individual);
    free(s->species);
    free(s->is_public);
    free(s->line);
    fl_csv_free(&s->csv);
    memset(s, 0, sizeof *s);
}
