/* The run report's writer: a growing buffer of XHTML-compatible markup (every tag closed, every
 * attribute quoted, text escaped and made valid UTF-8), numbers that may be NaN, and inline SVG
 * charts (lines with gaps at non-finite points, bars) that show missing data as such. */
#ifndef FLUKE_REPORT_HTML_H
#define FLUKE_REPORT_HTML_H

#include <stddef.h>
#include <stdint.h>

typedef struct fl_html {
    char *p;
    size_t n, cap;
    int oom; /* an allocation failed: the text is incomplete (the caller reports it) */
} fl_html;

void fl_html_free(fl_html *h);
/* Appends markup as is (the caller's own tags). */
void fl_html_raw(fl_html *h, const char *s);
void fl_html_rawn(fl_html *h, const char *s, size_t n);
void fl_html_printf(fl_html *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text escaped for an element or a quoted attribute (& < > " '), control characters
 * and invalid UTF-8 replaced by U+FFFD; NULL appends nothing. */
void fl_html_text(fl_html *h, const char *s);
/* A number with a printf format for doubles ("%.4f"): NaN as "NaN", infinities as "inf" /
 * "-inf", so bad data reads as such. */
void fl_html_num(fl_html *h, const char *fmt, double v);
/* Wall time: "0.42 s", "3 min 05 s", "1 h 02 min"; NaN or negative: "?". */
void fl_html_secs(fl_html *h, double s);

/* One line of a chart: n points (x[i], y[i]); a non-finite y breaks the line (a gap) and is
 * counted in the legend; a non-finite x drops the point. */
typedef struct fl_series {
    const char *name;
    const double *x, *y;
    size_t n;
    const char *cls; /* CSS class of the path: s0 .. s5 colour it */
} fl_series;

typedef struct fl_chart {
    const char *title, *xlabel, *ylabel;
    const char *attrs; /* extra attributes of the <svg> (data-*), markup as is, or NULL */
    const fl_series *s;
    size_t ns;
    double mark_x;          /* a vertical marker (the chosen threshold); NaN: none */
    const char *mark_label; /* its label */
    int w, h;               /* pixels; 0: 420 x 220 */
} fl_chart;

/* Appends the chart as <svg class="chart">; every series gets a <path class="series ...">
 * (with data-points = its finite points), an empty one a legend entry "no data". */
void fl_html_chart(fl_html *h, const fl_chart *c);

/* Horizontal bars of values in [0, 1] (MAP@5): label, value, and n shown beside it (n < 0: not
 * shown); a non-finite value is drawn without a bar and labelled NaN. */
void fl_html_bars(fl_html *h, const char *title, const char *attrs, const char *const *labels,
                  const double *v, const double *n, size_t count);

/* Exponential moving average over the finite values (TensorBoard's smoothing, debiased), a
 * non-finite input staying non-finite in out. alpha in [0, 1). */
void fl_report_smooth(const double *y, size_t n, double alpha, double *out);

/* RFC 4648 base64 of len bytes (for data: URIs). */
void fl_html_base64(fl_html *h, const uint8_t *d, size_t len);

#endif
