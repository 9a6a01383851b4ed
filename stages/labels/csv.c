/* RFC 4180 CSV with the usual real-world variations: a UTF-8 BOM, CRLF or LF (or lone CR)
 * line ends, quoted fields with doubled quotes and embedded line breaks, blank lines skipped.
 * Errors name the file and the line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/labels.h"

typedef struct rowbuf {
    fl_csv_row *rows;
    int n, cap;
} rowbuf;

int fl_csv_parse(const char *text, size_t len, const char *name, fl_csv *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    out->name = strdup(name ? name : "<csv>");
    size_t i = 0;
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        i = 3;
    /* Each field needs at most its bytes plus a NUL; a field pointer per separator or line. */
    size_t nfield_max = 1;
    for (size_t k = i; k < len; k++)
        if (text[k] == ',' || text[k] == '\n' || text[k] == '\r') nfield_max++;
    out->buf = malloc(len - i + nfield_max + 1);
    out->fields = malloc(nfield_max * sizeof *out->fields);
    rowbuf rb = {0};
    if (!out->name || !out->buf || !out->fields) goto oom;
    char *w = out->buf;
    size_t nf_total = 0;
    int line = 1;
    while (i < len) {
        /* Blank line: skip. */
        if (text[i] == '\n' || text[i] == '\r') {
            if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n') i++;
            i++, line++;
            continue;
        }
        int start_line = line;
        size_t first = nf_total;
        for (;;) { /* one field */
            out->fields[nf_total++] = w;
            if (i < len && text[i] == '"') {
                int open_line = line;
                i++;
                for (;;) {
                    if (i >= len) {
                        fl_errf(e, "%s:%d: unterminated quoted field (runs to the end of the "
                                "file at line %d)", out->name, open_line, line);
                        goto fail;
                    }
                    char c = text[i];
                    if (c == '"') {
                        if (i + 1 < len && text[i + 1] == '"') { *w++ = '"'; i += 2; continue; }
                        i++;
                        break;
                    }
                    if (c == '\0') {
                        fl_errf(e, "%s:%d: NUL byte in field", out->name, line);
                        goto fail;
                    }
                    if (c == '\n' || (c == '\r' && !(i + 1 < len && text[i + 1] == '\n'))) line++;
                    *w++ = c;
                    i++;
                }
                if (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
                    fl_errf(e, "%s:%d: unexpected character '%c' after a closing quote", out->name,
                            line, text[i]);
                    goto fail;
                }
            } else {
                while (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
                    if (text[i] == '\0') {
                        fl_errf(e, "%s:%d: NUL byte in field", out->name, line);
                        goto fail;
                    }
                    if (text[i] == '"') {
                        fl_errf(e, "%s:%d: quote inside an unquoted field", out->name, line);
                        goto fail;
                    }
                    *w++ = text[i++];
                }
            }
            *w++ = '\0';
            if (i < len && text[i] == ',') { i++; continue; }
            break;
        }
        if (i < len) { /* end of record */
            if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n') i++;
            i++;
            line++;
        }
        if (rb.n == rb.cap) {
            int cap = rb.cap ? rb.cap * 2 : 256;
            fl_csv_row *nr = realloc(rb.rows, (size_t)cap * sizeof *nr);
            if (!nr) goto oom;
            rb.rows = nr, rb.cap = cap;
        }
        rb.rows[rb.n].line = start_line;
        rb.rows[rb.n].nf = (int)(nf_total - first);
        rb.rows[rb.n].f = out->fields + first; /* fields was sized for the worst case once */
        rb.n++;
    }
    if (rb.n == 0) {
        fl_errf(e, "%s: empty file (no header line)", out->name);
        goto fail;
    }
    out->ncols = rb.rows[0].nf;
    out->header = rb.rows[0].f;
    out->nrows = rb.n - 1;
    out->rows = rb.rows;
    for (int a = 0; a < out->ncols; a++)
        for (int b = a + 1; b < out->ncols; b++)
            if (strcmp(out->header[a], out->header[b]) == 0) {
                fl_errf(e, "%s:%d: column \"%s\" appears twice in the header", out->name,
                        rb.rows[0].line, out->header[a]);
                fl_csv_free(out);
                return -1;
            }
    return 0;
oom:
    fl_errf(e, "%s: out of memory", out->name ? out->name : "<csv>");
fail:
    free(rb.rows);
    out->rows = NULL;
    fl_csv_free(out);
    return -1;
}

int fl_csv_read(const char *path, fl_csv *out, fl_err *e) {
    size_t len = 0;
    memset(out, 0, sizeof *out);
    char *text = fl_read_file(path, &len, e);
    if (!text) return -1;
    int rc = fl_csv_parse(text, len, path, out, e);
    free(text);
    return rc;
}

void fl_csv_free(fl_csv *c) {
    if (!c) return;
    free(c->name);
    free(c->buf);
    free(c->fields);
    free(c->rows);
    memset(c, 0, sizeof *c);
}

int fl_csv_col(const fl_csv *c, const char *name) {
    for (int k = 0; k < c->ncols; k++)
        if (strcmp(c->header[k], name) == 0) return k;
    return -1;
}

int fl_csv_require(const fl_csv *c, const char *const *cols, int n, int *idx, fl_err *e) {
    for (int k = 0; k < n; k++) {
        idx[k] = fl_csv_col(c, cols[k]);
        if (idx[k] < 0) {
            char have[512] = "";
            size_t off = 0;
            for (int j = 0; j < c->ncols && off < sizeof have - 1; j++)
                off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", j ? "," : "",
                                        c->header[j]);
            return fl_errf(e, "%s:%d: missing column \"%s\" (header is: %s)", c->name,
                           c->rows[0].line, cols[k], have);
        }
    }
    for (int r = 1; r <= c->nrows; r++)
        if (c->rows[r].nf != c->ncols)
            return fl_errf(e, "%s:%d: %d field%s, expected %d (%s columns)", c->name,
                           c->rows[r].line, c->rows[r].nf, c->rows[r].nf == 1 ? "" : "s",
                           c->ncols, c->rows[r].nf < c->ncols ? "missing" : "extra");
    return 0;
}
